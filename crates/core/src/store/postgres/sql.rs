//! The PostgreSQL store's statements and rows, and its driver's errors as store errors.

use super::*;

pub(super) const INSERT_EVENT: &str = "INSERT INTO events (instance_id, sequence, event_type, \
     generator_type, payload, created_at, creator, creator_id, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(super) const SELECT_EVENTS: &str = "SELECT instance_id, sequence, event_type, generator_type, \
     payload, created_at, creator, creator_id, hash FROM events WHERE instance_id = $1 \
     AND sequence >= $2 ORDER BY sequence";

/// The tokens' columns, in the order [`token_row`] reads them.
pub(super) const SELECT_TOKENS: &str =
    "SELECT id, name, hash, permissions, created_at, expires_at, created_by FROM tokens";

/// Inserts `rows`: one at a time when there is one (a prepared statement, cached), else
/// a thousand a statement through `UNNEST` (a bulk append, `secretgen migrate`), so that a
/// batch costs a round trip per thousand rows, not per row.
pub(super) async fn insert_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[StoredEvent],
) -> Result<(), StoreError> {
    if let [row] = rows {
        let insert = tx.prepare_cached(INSERT_EVENT).await.map_err(sql)?;
        return insert_row(tx, &insert, row).await;
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO events (instance_id, sequence, event_type, generator_type, payload, \
             created_at, creator, creator_id, hash) SELECT * FROM UNNEST($1::text[], \
             $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], \
             $8::text[], $9::text[])",
        )
        .await
        .map_err(sql)?;
    for chunk in rows.chunks(1000) {
        let text = |f: fn(&StoredEvent) -> &String| -> Vec<&str> {
            chunk.iter().map(|r| f(r).as_str()).collect()
        };
        let hashes: Vec<String> = chunk.iter().map(|r| hex(&r.hash)).collect();
        tx.execute(
            &insert,
            &[
                &text(|r| &r.instance_id),
                &chunk.iter().map(|r| r.sequence).collect::<Vec<i64>>(),
                &text(|r| &r.event_type),
                &text(|r| &r.generator_type),
                &text(|r| &r.payload),
                &chunk.iter().map(|r| r.created_at).collect::<Vec<i64>>(),
                &text(|r| &r.creator),
                &text(|r| &r.creator_id),
                &hashes,
            ],
        )
        .await
        .map_err(sql)?;
    }
    Ok(())
}

pub(super) async fn insert_row(
    tx: &deadpool_postgres::Transaction<'_>,
    insert: &tokio_postgres::Statement,
    row: &StoredEvent,
) -> Result<(), StoreError> {
    tx.execute(
        insert,
        &[
            &row.instance_id,
            &row.sequence,
            &row.event_type,
            &row.generator_type,
            &row.payload,
            &row.created_at,
            &row.creator,
            &row.creator_id,
            &hex(&row.hash),
        ],
    )
    .await
    .map_err(sql)?;
    Ok(())
}

pub(super) async fn insert_token(
    tx: &deadpool_postgres::Transaction<'_>,
    token: &TokenRecord,
) -> Result<(), StoreError> {
    let result = tx
        .execute(
            "INSERT INTO tokens (id, name, hash, permissions, created_at, expires_at, \
             created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &token.id,
                &token.name,
                &hex(&token.hash),
                &token.permissions.join(","),
                &to_micros(token.created_at),
                &token.expires_at.map(to_micros),
                &token.created_by,
            ],
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            Err(StoreError::new(
                StoreErrorKind::Refused,
                "a token with this id or hash is already stored",
            ))
        }
        Err(e) => Err(sql(e)),
    }
}

pub(super) async fn holds_store(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<bool, StoreError> {
    let row = client
        .query_one(
            "SELECT (SELECT COUNT(*) FROM meta WHERE key = 'default_instance') \
             + (SELECT COUNT(*) FROM (SELECT 1 FROM events LIMIT 1) AS e) \
             + (SELECT COUNT(*) FROM (SELECT 1 FROM tokens LIMIT 1) AS t)",
            &[],
        )
        .await
        .map_err(sql)?;
    Ok(row.get::<_, i64>(0) > 0)
}

pub(super) fn event_row(row: &tokio_postgres::Row) -> StoredEvent {
    StoredEvent {
        instance_id: row.get(0),
        sequence: row.get(1),
        event_type: row.get(2),
        generator_type: row.get(3),
        payload: row.get(4),
        created_at: row.get(5),
        creator: row.get(6),
        creator_id: row.get(7),
        hash: unhex(row.get::<_, &str>(8)).unwrap_or([0; 32]),
    }
}

/// The record of a [`SELECT_TOKENS`] row; an error when its hash is not 64 hex digits.
pub(super) fn token_row(row: &tokio_postgres::Row) -> Result<TokenRecord, String> {
    let id: String = row.get(0);
    let hash =
        unhex(row.get::<_, &str>(2)).ok_or_else(|| format!("token {id} has a malformed hash"))?;
    Ok(TokenRecord {
        name: row.get(1),
        hash,
        permissions: row
            .get::<_, &str>(3)
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: from_micros(row.get(4)),
        expires_at: row.get::<_, Option<i64>>(5).map(from_micros),
        created_by: row.get(6),
        id,
    })
}

/// The advisory lock key of an instance's log: writers of one instance queue for it.
pub(super) fn instance_lock(instance: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("secretgen log {instance}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// A driver error as a store error: unique violations and other refusals by the database
/// are `Refused`; everything else (no connection, a lost one, a timeout, a lock not let go
/// within `lock_timeout`, a session ended by the server) `Unavailable`.
pub(super) fn sql(e: tokio_postgres::Error) -> StoreError {
    let kind = match e.as_db_error() {
        Some(db) if !e.is_closed() && !transient(db.code()) => StoreErrorKind::Refused,
        _ => StoreErrorKind::Unavailable,
    };
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            if let Some(source) = std::error::Error::source(&e) {
                text.push_str(&format!(": {source}"));
            }
            text
        }
    };
    StoreError::new(kind, text).caused_by(e)
}

/// Whether the database refused for a while, not for good: a lock or statement timeout, a
/// session it ended (idle in a transaction, an operator, a shutdown), a connection
/// exception, too few resources, a conflict with another transaction.
pub(super) fn transient(code: &tokio_postgres::error::SqlState) -> bool {
    use tokio_postgres::error::SqlState;
    let code = code.code();
    code == SqlState::LOCK_NOT_AVAILABLE.code()
        || code == SqlState::T_R_SERIALIZATION_FAILURE.code()
        || code == SqlState::T_R_DEADLOCK_DETECTED.code()
        || code == "25P03" // idle_in_transaction_session_timeout
        || ["08", "53", "57", "58"].iter().any(|class| code.starts_with(class))
}

pub(super) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => sql(e),
        other => StoreError::new(StoreErrorKind::Unavailable, other.to_string()).caused_by(other),
    }
}

/// `user@host:port/database`, for messages.
pub(super) fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "PostgreSQL database {} at {}@{host}:{port}",
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default user)"),
    )
}
