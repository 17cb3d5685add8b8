//! The embedded store's write transaction ([`Tx`]): the shared flows' steps in SQLite's
//! SQL. The transaction is `BEGIN IMMEDIATE`, so it is the file's one writer from its first
//! statement on, and taking a log's lock is nothing more.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OptionalExtension};

use super::{SELECT_TOKENS, sql_error, token_row};
use crate::store::flow::{Changed, Tx};
use crate::store::{StoreError, StoreErrorKind, StoredEvent, TokenRecord, corrupt, hex, to_micros};
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::InstanceId;

/// A write transaction (or a savepoint in one) on the store at `path`.
pub(super) struct SqliteTx<'a> {
    pub(super) tx: &'a Connection,
    pub(super) path: &'a Path,
}

impl SqliteTx<'_> {
    fn read_error(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| sql_error(self.path, "cannot read", e)
    }

    fn write_error(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| sql_error(self.path, "cannot write", e)
    }

    /// The tokens of `SELECT_TOKENS … WHERE {clause}`, their hashes left zero (a revocation
    /// needs none).
    fn select_tokens(&self, clause: &str, value: &str) -> Result<Vec<TokenRecord>, StoreError> {
        self.tx
            .prepare_cached(&format!("{SELECT_TOKENS} WHERE {clause}"))
            .and_then(|mut stmt| {
                stmt.query_map([value], token_row)?
                    .map(|row| row.map(|(record, _)| record))
                    .collect()
            })
            .map_err(self.read_error())
    }
}

impl Tx for SqliteTx<'_> {
    async fn default_instance(&mut self) -> Result<Option<String>, StoreError> {
        self.tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'default_instance'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.read_error())
    }

    async fn lock_log(&mut self, _instance: &InstanceId) -> Result<(), StoreError> {
        Ok(())
    }

    async fn last_event(
        &mut self,
        instance: &InstanceId,
    ) -> Result<Option<(i64, String)>, StoreError> {
        self.tx
            .query_row(
                "SELECT sequence, hash FROM events WHERE instance_id = ?1 \
                 ORDER BY sequence DESC LIMIT 1",
                [instance.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(self.read_error())
    }

    async fn latest_payload(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
    ) -> Result<Option<String>, StoreError> {
        self.tx
            .query_row(
                "SELECT payload FROM events WHERE instance_id = ?1 \
                 AND generator_type = ?2 ORDER BY sequence DESC LIMIT 1",
                [instance.as_str(), generator_type.full_name()],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.read_error())
    }

    async fn insert_events(&mut self, rows: &[StoredEvent]) -> Result<(), StoreError> {
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO events (instance_id, sequence, event_type, generator_type, \
                 payload, created_at, creator, creator_id, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(self.write_error())?;
        for row in rows {
            insert
                .execute(rusqlite::params![
                    row.instance_id,
                    row.sequence,
                    row.event_type,
                    row.generator_type,
                    row.payload,
                    row.created_at,
                    row.creator,
                    row.creator_id,
                    hex(&row.hash),
                ])
                .map_err(self.write_error())?;
        }
        Ok(())
    }

    async fn name_taken(&mut self, token: &TokenRecord) -> Result<bool, StoreError> {
        self.tx
            .query_row(
                "SELECT COUNT(*) > 0 FROM tokens WHERE name = ?1 \
                 AND (expires_at IS NULL OR expires_at > ?2) AND id <> ?3",
                rusqlite::params![token.name, to_micros(token.created_at), token.id],
                |row| row.get(0),
            )
            .map_err(self.read_error())
    }

    async fn holds_tokens(&mut self) -> Result<bool, StoreError> {
        self.tx
            .query_row("SELECT EXISTS (SELECT 1 FROM tokens)", [], |row| row.get(0))
            .map_err(self.read_error())
    }

    async fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        let result = self.tx.execute(
            "INSERT INTO tokens (id, name, hash, permissions, created_at, expires_at, \
             created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                token.id,
                token.name,
                hex(&token.hash),
                token.permissions.join(","),
                to_micros(token.created_at),
                token.expires_at.map(to_micros),
                token.created_by,
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                Err(StoreError::new(
                    StoreErrorKind::Refused,
                    "a token with this id or hash is already stored",
                )
                .caused_by(e))
            }
            Err(e) => Err(self.write_error()(e)),
        }
    }

    async fn delete_token(&mut self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let found = self.select_tokens("id = ?1", id)?.pop();
        if found.is_some() {
            self.tx
                .execute("DELETE FROM tokens WHERE id = ?1", [id])
                .map_err(self.write_error())?;
        }
        Ok(found)
    }

    async fn delete_tokens_created_by(
        &mut self,
        parent: &str,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let children = self.select_tokens("created_by = ?1", parent)?;
        if !children.is_empty() {
            self.tx
                .execute("DELETE FROM tokens WHERE created_by = ?1", [parent])
                .map_err(self.write_error())?;
        }
        Ok(children)
    }

    /// Nothing to send: the server notices other processes' commits itself
    /// ([`crate::store::Store::watch`]).
    async fn notify(&mut self, _changed: Changed) -> Result<(), StoreError> {
        Ok(())
    }

    fn corrupt(&self, why: String) -> StoreError {
        corrupt(self.path, &why)
    }
}
