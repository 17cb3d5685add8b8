//! Issued codes on PostgreSQL: the codes flow's steps ([`CodesTx`]) in PostgreSQL's SQL.
//! An issue or a verification is two statements on a pooled connection, each a transaction
//! of its own: the subject and its codes read in one, and everything decided written in the
//! other, conditional on the subject row's `xmin` being the one read (an update waits for a
//! concurrent one and checks its condition again on the result, so of two operations that read
//! the same version only one writes; the other reads again). PostgreSQL flushes the commits
//! of concurrent statements together.

use super::*;
use crate::store::codes::{
    self, CodeCounts, CodeRow, CodesTx, Found, IssueRequest, Issued, Purged, Reply, SubjectRow,
    SubjectWrite, UnlockRequest, Verified, VerifyRequest,
};
use crate::store::{CodeStore, hex};
use crate::verification::{Limits, SubjectMac};
use deadpool_postgres::GenericClient;
use secretgen_engine::generator_type::GeneratorType;

/// The codes flow's steps on a connection or in a transaction: on a connection (issues and
/// verifications) each statement is a transaction of its own, so an operation is two of
/// them, a read and a conditional write, each one round trip.
pub(super) struct PgCodes<'a, C>(pub(super) &'a C);

impl<C: GenericClient> PgCodes<'_, C> {
    /// Runs `statement`, prepared once per connection (a statement given as text is parsed
    /// and planned in a round trip of its own each time).
    async fn rows(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.0.prepare_cached(statement).await?;
        self.0.query(&statement, params).await
    }
}

/// A subject's row, found by its keyed hash under one key, and its codes, in one statement
/// (one snapshot): a row a code, or one with no code. One key at a time, each compared with
/// `=`: with `= ANY` of all keys, the plan the connection cached scanned every subject of the
/// type (measured: 360 rows fetched a lookup, half the throughput).
const FIND: &str = "SELECT s.id, s.failures, s.locked_until, s.issued, s.keep_until, \
     s.xmin::text::bigint, c.id, c.key_id, c.mac, c.created_at, c.expires_at, c.attempts \
     FROM verify_subjects s LEFT JOIN verify_codes c ON c.subject_id = s.id \
     WHERE s.instance_id = $1 AND s.generator_type = $2 AND s.subject_mac = $3 \
     ORDER BY c.created_at, c.id";

/// A subject's new row and its first code, in one statement: neither when a row is filed
/// under its keyed hash already.
const INSERT: &str = "WITH s AS (INSERT INTO verify_subjects (id, instance_id, generator_type, \
     subject_mac, key_id, failures, locked_until, issued, keep_until) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING id), \
     i AS (INSERT INTO verify_codes (id, subject_id, key_id, mac, created_at, expires_at, \
     attempts) SELECT $10::text, id, $11, $12, $13, $14, 0 FROM s WHERE $10::text IS NOT NULL) \
     SELECT COUNT(*) FROM s";

/// A subject's row and its codes changed in one statement, if the row's version is still the
/// one read (`xmin` changes with each update, and a concurrent update is waited for and the
/// condition checked again on its result).
const UPDATE: &str = "WITH s AS (UPDATE verify_subjects SET subject_mac = $2, key_id = $3, \
     failures = $4, locked_until = $5, issued = $6, keep_until = $7 \
     WHERE id = $1 AND xmin::text::bigint = $8 RETURNING id), \
     d AS (DELETE FROM verify_codes WHERE subject_id IN (SELECT id FROM s) \
     AND ($9 OR id = ANY($10))), \
     f AS (UPDATE verify_codes SET attempts = attempts + 1 \
     WHERE subject_id IN (SELECT id FROM s) AND id = ANY($11)), \
     i AS (INSERT INTO verify_codes (id, subject_id, key_id, mac, created_at, expires_at, \
     attempts) SELECT $12::text, id, $13, $14, $15, $16, 0 FROM s WHERE $12::text IS NOT NULL) \
     SELECT COUNT(*) FROM s";

impl<C: GenericClient> CodesTx for PgCodes<'_, C> {
    async fn find(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        subjects: &[SubjectMac],
    ) -> Result<Option<Found>, StoreError> {
        for (key, subject) in subjects.iter().enumerate() {
            let rows = self
                .rows(
                    FIND,
                    &[
                        &instance.as_str(),
                        &generator_type.full_name(),
                        &hex(&subject.mac),
                    ],
                )
                .await
                .map_err(sql)?;
            let Some(first) = rows.first() else {
                continue;
            };
            let id: String = first.get(0);
            let issued = SubjectRow::parse_issued(first.get(3)).ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("subject {id} has invalid issue times"),
                )
            })?;
            let row = SubjectRow {
                id,
                failures: first.get(1),
                locked_until: first.get(2),
                issued,
                keep_until: first.get(4),
                version: first.get(5),
            };
            let codes = rows
                .iter()
                .filter(|r| r.get::<_, Option<&str>>(6).is_some())
                .map(|r| CodeRow {
                    id: r.get(6),
                    key_id: r.get(7),
                    mac: r.get(8),
                    created_at: r.get(9),
                    expires_at: r.get(10),
                    attempts: r.get(11),
                })
                .collect();
            return Ok(Some(Found { key, row, codes }));
        }
        Ok(None)
    }

    async fn write(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        write: &SubjectWrite,
    ) -> Result<bool, StoreError> {
        let row = &write.row;
        let (mac, key_id, issued) = (
            hex(&write.filed.mac),
            write.filed.key_id.as_str(),
            row.issued_text(),
        );
        let code = write.insert.as_ref();
        let (code_id, code_key, code_mac, created, expires) = (
            code.map(|c| c.id.as_str()),
            code.map(|c| c.key_id.as_str()),
            code.map(|c| c.mac.as_str()),
            code.map(|c| c.created_at),
            code.map(|c| c.expires_at),
        );
        let written = if write.new {
            self.rows(
                INSERT,
                &[
                    &row.id,
                    &instance.as_str(),
                    &generator_type.full_name(),
                    &mac,
                    &key_id,
                    &row.failures,
                    &row.locked_until,
                    &issued,
                    &row.keep_until,
                    &code_id,
                    &code_key,
                    &code_mac,
                    &created,
                    &expires,
                ],
            )
            .await
        } else {
            self.rows(
                UPDATE,
                &[
                    &row.id,
                    &mac,
                    &key_id,
                    &row.failures,
                    &row.locked_until,
                    &issued,
                    &row.keep_until,
                    &row.version,
                    &write.clear,
                    &write.delete,
                    &write.failed,
                    &code_id,
                    &code_key,
                    &code_mac,
                    &created,
                    &expires,
                ],
            )
            .await
        };
        match written {
            Ok(rows) => Ok(rows.first().is_some_and(|r| r.get::<_, i64>(0) == 1)),
            // Re-filed under a keyed hash that another operation filed a subject under
            // since the read: read again.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Ok(false)
            }
            Err(e) => Err(sql(e)),
        }
    }
}

/// The codes flow's steps in the shared flows' write transaction (an unlock, with its
/// event).
impl CodesTx for PgTx<'_, '_> {
    async fn find(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        subjects: &[SubjectMac],
    ) -> Result<Option<Found>, StoreError> {
        PgCodes(self.0)
            .find(instance, generator_type, subjects)
            .await
    }

    async fn write(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        write: &SubjectWrite,
    ) -> Result<bool, StoreError> {
        PgCodes(self.0).write(instance, generator_type, write).await
    }
}

/// The most rows a purge deletes in one transaction.
const PURGE_CHUNK: i64 = 10_000;

impl CodeStore for PostgresStore {
    fn issue_code(&self, request: IssueRequest, limits: &Limits) -> Reply<Issued> {
        let limits = *limits;
        self.write_reply("cannot write", move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            codes::issue(&mut PgCodes(&*client), &request, &limits).await
        })
    }

    fn verify_code(&self, request: VerifyRequest, limits: &Limits) -> Reply<Verified> {
        let limits = *limits;
        self.write_reply("cannot write", move |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            codes::verify(&mut PgCodes(&*client), &request, &limits).await
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
