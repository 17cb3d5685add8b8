//! The embedded store's rows and connections, and SQLite's errors as store errors.

use super::*;

/// The tokens' columns, in the order [`token_row`] reads them.
pub(super) const SELECT_TOKENS: &str =
    "SELECT id, name, hash, permissions, created_at, expires_at, created_by FROM tokens";

/// A row of [`SELECT_TOKENS`]: the record (its hash still zero) and the hash as stored
/// (hex), for the caller to check.
pub(super) fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(TokenRecord, String)> {
    let permissions: String = row.get(3)?;
    Ok((
        TokenRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            hash: [0; 32],
            permissions: permissions
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            created_at: from_micros(row.get(4)?),
            expires_at: row.get::<_, Option<i64>>(5)?.map(from_micros),
            created_by: row.get(6)?,
        },
        row.get(2)?,
    ))
}

/// The event rows of `instance` from sequence `from` on, in order.
pub(super) fn read_rows_from(
    conn: &Connection,
    instance: &str,
    from: i64,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT instance_id, sequence, event_type, generator_type, payload, created_at, \
         creator, creator_id, hash FROM events WHERE instance_id = ?1 AND sequence >= ?2 \
         ORDER BY sequence",
    )?;
    stmt.query_map(rusqlite::params![instance, from], stored_row)?
        .collect()
}

/// The event rows of `instance` (all instances when `None`), by instance and sequence.
pub(super) fn read_rows(
    conn: &Connection,
    instance: Option<&str>,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT instance_id, sequence, event_type, generator_type, payload, created_at, \
         creator, creator_id, hash FROM events WHERE ?1 IS NULL OR instance_id = ?1 \
         ORDER BY instance_id, sequence",
    )?;
    stmt.query_map([instance], stored_row)?.collect()
}

/// An event row of a `SELECT instance_id, sequence, event_type, generator_type, payload,
/// created_at, creator, creator_id, hash FROM events`.
pub(super) fn stored_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        instance_id: row.get(0)?,
        sequence: row.get(1)?,
        event_type: row.get(2)?,
        generator_type: row.get(3)?,
        payload: row.get(4)?,
        created_at: row.get(5)?,
        creator: row.get(6)?,
        creator_id: row.get(7)?,
        hash: unhex(&row.get::<_, String>(8)?).unwrap_or([0; 32]),
    })
}

/// A connection that never checkpoints when it closes (a refused store must be left as it
/// is; the store checkpoints after every write itself), with the busy timeout set.
pub(super) fn connection(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))?;
    Ok(conn)
}

/// Copies the WAL into the database file and empties the WAL, so that what was committed
/// lives in the database file itself. Returns whether it went the whole way; when it did not
/// (a reader held an old snapshot past the busy timeout), the commit is still durable in the
/// WAL, and the next write checkpoints again.
pub(super) fn checkpoint(conn: &Connection, path: &Path) -> bool {
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(0) => true,
        Ok(_) => {
            tracing::warn!(path = %path.display(), "checkpoint blocked by a reader; the change is durable in the WAL");
            false
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "checkpoint failed; the change is durable in the WAL");
            false
        }
    }
}

pub(super) fn sql_error(path: &Path, action: &str, e: rusqlite::Error) -> StoreError {
    let error = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => corrupt(path, &e.to_string()),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::new(
            StoreErrorKind::Locked,
            format!(
                "{action} {}: it is locked by another process ({e})",
                path.display()
            ),
        ),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            unavailable(format!(
                "{action} {}: {e} (the file and its directory {} must be writable: the \
                 store keeps its write-ahead log there)",
                path.display(),
                dir.display()
            ))
        }
        _ => unavailable(format!("{action} {}: {e}", path.display())),
    };
    error.caused_by(e)
}
