//! Issued codes on PostgreSQL: the codes flow's steps ([`CodesTx`]) in PostgreSQL's SQL.
//! Each operation is a transaction of its own on a pooled connection; the subject's row is
//! taken `FOR UPDATE`, so the issues and verifications of one subject, on every replica,
//! queue for it and each sees what the one before it committed (read committed: every
//! statement after the lock reads the latest rows). PostgreSQL itself flushes the commits of
//! concurrent transactions together.

use super::*;
use crate::store::codes::{
    self, CodeCounts, CodeRow, CodesTx, IssueRequest, Issued, Purged, SubjectRow, UnlockRequest,
    Verified, VerifyRequest,
};
use crate::store::{CodeStore, hex};
use crate::verification::{Limits, SubjectMac};
use secretgen_engine::generator_type::GeneratorType;

impl PgTx<'_, '_> {
    /// Runs `statement`, prepared once per connection (a statement given as text is parsed
    /// and planned in a round trip of its own each time).
    async fn execute(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let statement = self.0.prepare_cached(statement).await.map_err(sql)?;
        self.0.execute(&statement, params).await.map_err(sql)?;
        Ok(())
    }

    async fn rows(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let statement = self.0.prepare_cached(statement).await.map_err(sql)?;
        self.0.query(&statement, params).await.map_err(sql)
    }
}

/// The codes flow's steps in a write transaction ([`PgTx`], the same as the other flows').
impl CodesTx for PgTx<'_, '_> {
    async fn subject(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        mac: &str,
    ) -> Result<Option<SubjectRow>, StoreError> {
        let Some(row) = self
            .rows(
                "SELECT id, failures, locked_until, issued, keep_until FROM verify_subjects \
                 WHERE instance_id = $1 AND generator_type = $2 AND subject_mac = $3 \
                 FOR UPDATE",
                &[&instance.as_str(), &generator_type.full_name(), &mac],
            )
            .await?
            .pop()
        else {
            return Ok(None);
        };
        let id: String = row.get(0);
        let issued = SubjectRow::parse_issued(row.get(3)).ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("subject {id} has invalid issue times"),
            )
        })?;
        Ok(Some(SubjectRow {
            id,
            failures: row.get(1),
            locked_until: row.get(2),
            issued,
            keep_until: row.get(4),
        }))
    }

    async fn insert_subject(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        subject: &SubjectMac,
        row: &SubjectRow,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO verify_subjects (id, instance_id, generator_type, subject_mac, key_id, \
             failures, locked_until, issued, keep_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (instance_id, generator_type, subject_mac) DO NOTHING",
            &[
                &row.id,
                &instance.as_str(),
                &generator_type.full_name(),
                &hex(&subject.mac),
                &subject.key_id.as_str(),
                &row.failures,
                &row.locked_until,
                &row.issued_text(),
                &row.keep_until,
            ],
        )
        .await
    }

    async fn rekey_subject(&mut self, id: &str, subject: &SubjectMac) -> Result<(), StoreError> {
        self.execute(
            "UPDATE verify_subjects SET subject_mac = $1, key_id = $2 WHERE id = $3",
            &[&hex(&subject.mac), &subject.key_id.as_str(), &id],
        )
        .await
    }

    async fn update_subject(&mut self, row: &SubjectRow) -> Result<(), StoreError> {
        self.execute(
            "UPDATE verify_subjects SET failures = $1, locked_until = $2, issued = $3, \
             keep_until = $4 WHERE id = $5",
            &[
                &row.failures,
                &row.locked_until,
                &row.issued_text(),
                &row.keep_until,
                &row.id,
            ],
        )
        .await
    }

    async fn codes(&mut self, subject_id: &str) -> Result<Vec<CodeRow>, StoreError> {
        Ok(self
            .rows(
                "SELECT id, key_id, mac, created_at, expires_at, attempts FROM verify_codes \
                 WHERE subject_id = $1 ORDER BY created_at, id",
                &[&subject_id],
            )
            .await?
            .iter()
            .map(|row| CodeRow {
                id: row.get(0),
                key_id: row.get(1),
                mac: row.get(2),
                created_at: row.get(3),
                expires_at: row.get(4),
                attempts: row.get(5),
            })
            .collect())
    }

    async fn insert_code(&mut self, subject_id: &str, code: &CodeRow) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO verify_codes (id, subject_id, key_id, mac, created_at, expires_at, \
             attempts) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &code.id,
                &subject_id,
                &code.key_id,
                &code.mac,
                &code.created_at,
                &code.expires_at,
                &code.attempts,
            ],
        )
        .await
    }

    async fn set_attempts(&mut self, id: &str, attempts: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE verify_codes SET attempts = $1 WHERE id = $2",
            &[&attempts, &id],
        )
        .await
    }

    async fn delete_code(&mut self, id: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM verify_codes WHERE id = $1", &[&id])
            .await
    }

    async fn delete_codes(&mut self, subject_id: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM verify_codes WHERE subject_id = $1",
            &[&subject_id],
        )
        .await
    }
}

/// The most rows a purge deletes in one transaction.
const PURGE_CHUNK: i64 = 10_000;

impl CodeStore for PostgresStore {
    fn issue_code(&self, request: IssueRequest, limits: &Limits) -> Result<Issued, StoreError> {
        let limits = *limits;
        self.write("cannot write", move |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(sql)?;
            let issued = codes::issue(&mut PgTx(&tx), &request, &limits).await?;
            tx.commit().await.map_err(sql)?;
            Ok(issued)
        })
    }

    fn verify_code(&self, request: VerifyRequest, limits: &Limits) -> Result<Verified, StoreError> {
        let limits = *limits;
        self.write("cannot write", move |pool| async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(sql)?;
            let verified = codes::verify(&mut PgTx(&tx), &request, &limits).await?;
            tx.commit().await.map_err(sql)?;
            Ok(verified)
        })
    }

    fn unlock_subject(
        &self,
        request: UnlockRequest,
        by: &Author,
    ) -> Result<Option<Event>, StoreError> {
        Ok(self
            .transaction("cannot write", Write::Unlock(request, by.clone()))?
            .pop())
    }

    fn purge_codes(&self, now: i64, expired_before: i64) -> Result<Purged, StoreError> {
        let mut purged = Purged::default();
        loop {
            let (codes, subjects) = self.write("cannot purge", move |pool| async move {
                let client = pool.get().await.map_err(pool_error)?;
                let codes = client
                    .execute(
                        "DELETE FROM verify_codes WHERE id IN (SELECT id FROM verify_codes \
                         WHERE expires_at <= $1 LIMIT $2)",
                        &[&expired_before, &PURGE_CHUNK],
                    )
                    .await
                    .map_err(sql)?;
                // A subject locked by a transaction (FOR UPDATE) is skipped, not waited for.
                let subjects = client
                    .execute(
                        "DELETE FROM verify_subjects WHERE id IN (SELECT s.id FROM \
                         verify_subjects s WHERE s.keep_until <= $1 AND s.failures = 0 \
                         AND s.locked_until <= $1 AND NOT EXISTS (SELECT 1 FROM verify_codes c \
                         WHERE c.subject_id = s.id) LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        &[&now, &PURGE_CHUNK],
                    )
                    .await
                    .map_err(sql)?;
                Ok((codes, subjects))
            })?;
            purged.codes += codes;
            purged.subjects += subjects;
            if codes < PURGE_CHUNK as u64 && subjects < PURGE_CHUNK as u64 {
                return Ok(purged);
            }
        }
    }

    fn code_counts(&self, now: i64) -> Result<CodeCounts, StoreError> {
        let (codes, subjects, rows) = self.run("cannot read", move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM verify_codes), \
                     (SELECT COUNT(*) FROM verify_subjects)",
                    &[],
                )
                .await
                .map_err(sql)?;
            let locked = client
                .query(codes::LOCKED_BY_TYPE, &[&now])
                .await
                .map_err(sql)?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect::<Vec<_>>();
            Ok((
                row.get::<_, i64>(0) as u64,
                row.get::<_, i64>(1) as u64,
                locked,
            ))
        })?;
        Ok(CodeCounts {
            codes,
            subjects,
            locked: codes::locked_by_type(rows, self.corrupt())?,
        })
    }
}
