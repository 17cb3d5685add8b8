//! Bringing a store of an older schema version to this one: its writer's job, once.

use super::*;

impl SqliteStore {
    /// Brings the store to schema version `to` with `change`, in one transaction, then
    /// checkpoints; `what` says what the version adds, for the log line.
    pub(super) fn upgrade(
        &self,
        to: &str,
        what: &str,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner();
        let write_error = |e| sql_error(&self.path, "cannot upgrade", e);
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write_error)?;
        change(&tx).map_err(write_error)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [to],
        )
        .map_err(write_error)?;
        tx.commit().map_err(write_error)?;
        checkpoint(&inner.conn, &self.path);
        tracing::info!(path = %self.path.display(), "store upgraded to schema version {to} ({what})");
        Ok(())
    }

    /// Version 1 kept events without hashes: the writer chains them, once.
    pub(super) fn upgrade_from_version_1(&self) -> Result<(), StoreError> {
        self.upgrade("2", "events chained by hash", |tx| {
            tx.execute_batch("ALTER TABLE events ADD COLUMN hash TEXT NOT NULL DEFAULT ''")?;
            // The creator's id (version 4) too: the rows are read with it; all empty.
            if !has_column(tx, "events", "creator_id")? {
                tx.execute_batch(
                    "ALTER TABLE events ADD COLUMN creator_id TEXT NOT NULL DEFAULT ''",
                )?;
            }
            let rows = read_rows(tx, None)?;
            let mut previous: Option<(&str, [u8; 32])> = None;
            for row in &rows {
                let before = match previous {
                    Some((instance, hash)) if instance == row.instance_id => hash,
                    _ => GENESIS,
                };
                let hash = chain_hash(&before, &row.as_event_row());
                tx.execute(
                    "UPDATE events SET hash = ?1 WHERE instance_id = ?2 AND sequence = ?3",
                    rusqlite::params![hex(&hash), row.instance_id, row.sequence],
                )?;
                previous = Some((&row.instance_id, hash));
            }
            Ok(())
        })
    }

    /// Version 2 had no token expiry: the writer adds the column (tokens without one never
    /// expire).
    pub(super) fn upgrade_from_version_2(&self) -> Result<(), StoreError> {
        self.upgrade("3", "token expiry", |tx| {
            if !has_column(tx, "tokens", "expires_at")? {
                tx.execute_batch("ALTER TABLE tokens ADD COLUMN expires_at BIGINT")?;
            }
            Ok(())
        })
    }

    /// Version 3 had no token lineage and no indexes for the audit search: the writer adds
    /// the creator's id to events (empty for every event before: their hashes stay valid),
    /// the creating token to tokens (none for every token before: they are left as they
    /// are), and the indexes.
    pub(super) fn upgrade_from_version_3(&self) -> Result<(), StoreError> {
        self.upgrade("4", "token lineage, audit indexes", |tx| {
            if !has_column(tx, "events", "creator_id")? {
                tx.execute_batch(
                    "ALTER TABLE events ADD COLUMN creator_id TEXT NOT NULL DEFAULT ''",
                )?;
            }
            if !has_column(tx, "tokens", "created_by")? {
                tx.execute_batch("ALTER TABLE tokens ADD COLUMN created_by TEXT")?;
            }
            tx.execute_batch(
                "CREATE INDEX IF NOT EXISTS events_by_time ON events (instance_id, created_at); \
                 CREATE INDEX IF NOT EXISTS events_by_type ON events \
                 (instance_id, generator_type, sequence)",
            )?;
            tx.execute_batch(CREATOR_INDEXES)
        })
    }
}

impl SqliteStore {
    /// Version 4 had no issued codes: the writer adds their tables.
    pub(super) fn upgrade_from_version_4(&self) -> Result<(), StoreError> {
        self.upgrade(SCHEMA_VERSION, "issued codes", |tx| {
            tx.execute_batch(CODES_TABLES)
        })
    }
}

/// Whether `table` has `column`.
pub(super) fn has_column(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    column: &str,
) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |row| row.get(0),
    )
}
