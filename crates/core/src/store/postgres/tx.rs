//! The PostgreSQL store's write transaction ([`Tx`]): the shared flows' steps in
//! PostgreSQL's SQL. A log's lock is a transaction-scoped advisory lock on its instance, so
//! writers on every replica queue for it; a change is announced with `NOTIFY`, delivered
//! when it commits.

use deadpool_postgres::Transaction;

use super::{CHANNEL, insert_rows, insert_token, instance_lock, sql, token_row};
use crate::store::flow::{Changed, Tx};
use crate::store::{StoreError, StoreErrorKind, StoredEvent, TokenRecord, to_micros};
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::InstanceId;

/// A write transaction (read committed: each statement after the log's lock sees every
/// change committed before it was taken).
pub(super) struct PgTx<'a, 'c>(pub(super) &'a Transaction<'c>);

/// The refusal of a token row whose hash is not 64 hex digits.
fn damaged(why: String) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, why)
}

/// `DELETE FROM tokens WHERE {column} = $1`, returning the rows deleted.
fn delete_tokens(column: &str) -> String {
    format!(
        "DELETE FROM tokens WHERE {column} = $1 RETURNING id, name, hash, permissions, \
         created_at, expires_at, created_by"
    )
}

impl Tx for PgTx<'_, '_> {
    async fn default_instance(&mut self) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .query_opt("SELECT value FROM meta WHERE key = 'default_instance'", &[])
            .await
            .map_err(sql)?
            .map(|row| row.get(0)))
    }

    async fn lock_log(&mut self, instance: &InstanceId) -> Result<(), StoreError> {
        self.0
            .execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&instance_lock(instance.as_str())],
            )
            .await
            .map_err(sql)?;
        Ok(())
    }

    async fn last_event(
        &mut self,
        instance: &InstanceId,
    ) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .0
            .query_opt(
                "SELECT sequence, hash FROM events WHERE instance_id = $1 \
                 ORDER BY sequence DESC LIMIT 1",
                &[&instance.as_str()],
            )
            .await
            .map_err(sql)?
            .map(|row| (row.get(0), row.get(1))))
    }

    async fn latest_payload(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .query_opt(
                "SELECT payload FROM events WHERE instance_id = $1 \
                 AND generator_type = $2 ORDER BY sequence DESC LIMIT 1",
                &[&instance.as_str(), &generator_type.full_name()],
            )
            .await
            .map_err(sql)?
            .map(|row| row.get(0)))
    }

    async fn insert_events(&mut self, rows: &[StoredEvent]) -> Result<(), StoreError> {
        insert_rows(self.0, rows).await
    }

    async fn name_taken(&mut self, token: &TokenRecord) -> Result<bool, StoreError> {
        let taken = self
            .0
            .query_opt(
                "SELECT 1 FROM tokens WHERE name = $1 \
                 AND (expires_at IS NULL OR expires_at > $2) AND id <> $3 LIMIT 1",
                &[&token.name, &to_micros(token.created_at), &token.id],
            )
            .await
            .map_err(sql)?;
        Ok(taken.is_some())
    }

    async fn holds_tokens(&mut self) -> Result<bool, StoreError> {
        let any = self
            .0
            .query_opt("SELECT 1 FROM tokens LIMIT 1", &[])
            .await
            .map_err(sql)?;
        Ok(any.is_some())
    }

    async fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        insert_token(self.0, token).await
    }

    async fn delete_token(&mut self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = self
            .0
            .query_opt(&delete_tokens("id"), &[&id])
            .await
            .map_err(sql)?;
        row.map(|row| token_row(&row).map_err(damaged)).transpose()
    }

    async fn delete_tokens_created_by(
        &mut self,
        parent: &str,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let delete = self
            .0
            .prepare_cached(&delete_tokens("created_by"))
            .await
            .map_err(sql)?;
        self.0
            .query(&delete, &[&parent])
            .await
            .map_err(sql)?
            .iter()
            .map(|row| token_row(row).map_err(damaged))
            .collect()
    }

    async fn notify(&mut self, changed: Changed) -> Result<(), StoreError> {
        let payload = match changed {
            Changed::Events => "events",
            Changed::Tokens => "tokens",
        };
        self.0
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .map_err(sql)?;
        Ok(())
    }

    fn corrupt(&self, why: String) -> StoreError {
        damaged(why)
    }
}
