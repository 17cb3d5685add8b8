//! Issued codes on the embedded store: the codes flow's steps ([`CodesTx`]) in SQLite's SQL,
//! and the group commit that makes them fast.
//!
//! Every issue and verification must be durable before it is answered, and a commit here
//! costs a synced WAL write. So operations are committed in groups: a
//! caller queues its operation, then waits for the writer's connection; whoever takes it
//! first runs every queued operation in one transaction (each in a savepoint of its own, so
//! that one operation's failure undoes only its own steps), commits, and answers
//! them all. The writer is the file's one writer, so the operations of a group run one after
//! the other, each seeing the ones before it: as atomic as if each had its own transaction.

use std::sync::mpsc;

use rusqlite::OptionalExtension;

use super::*;
use crate::store::codes::{
    self, CodeCounts, CodeRow, CodesTx, Found, IssueRequest, Issued, Purged, SubjectRow,
    SubjectWrite, UnlockRequest, Verified, VerifyRequest,
};
use crate::store::flow::ready;
use crate::verification::{Limits, SubjectMac};
use secretgen_engine::generator_type::GeneratorType;

/// The most rows a purge deletes in one transaction, so that it holds the writer briefly.
const PURGE_CHUNK: i64 = 10_000;

/// An operation on the codes' tables, queued for the next group commit.
#[derive(Debug)]
pub(super) enum CodeOp {
    Issue(IssueRequest, Limits),
    Verify(VerifyRequest, Limits),
}

/// What an operation answered.
pub(super) enum CodeAnswer {
    Issued(Issued),
    Verified(Verified),
}

/// A queued operation and where its answer goes.
pub(super) type Queued = (CodeOp, mpsc::SyncSender<Result<CodeAnswer, StoreError>>);

impl SqliteTx<'_> {
    fn error(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| sql_error(self.path, "cannot write", e)
    }

    /// Runs `sql`; the rows it changed.
    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
        self.tx
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params))
            .map_err(self.error())
    }
}

/// Clears the leader's flag when dropped.
struct StepDown<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StepDown<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The codes flow's steps in a write transaction ([`SqliteTx`], the same as the other flows').
/// The transaction is the file's one writer: nothing changes between a read and a write.
impl CodesTx for SqliteTx<'_> {
    async fn find(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        subjects: &[SubjectMac],
    ) -> Result<Option<Found>, StoreError> {
        for (key, subject) in subjects.iter().enumerate() {
            if let Some(row) = self.subject(instance, generator_type, &hex(&subject.mac))? {
                let codes = self.codes(&row.id)?;
                return Ok(Some(Found { key, row, codes }));
            }
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
        let (mac, key_id) = (hex(&write.filed.mac), write.filed.key_id.as_str());
        let written = if write.new {
            self.execute(
                "INSERT INTO verify_subjects (id, instance_id, generator_type, subject_mac, \
                 key_id, failures, locked_until, issued, keep_until) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                rusqlite::params![
                    row.id,
                    instance.as_str(),
                    generator_type.full_name(),
                    mac,
                    key_id,
                    row.failures,
                    row.locked_until,
                    row.issued_text(),
                    row.keep_until,
                ],
            )?
        } else {
            self.execute(
                "UPDATE verify_subjects SET subject_mac = ?1, key_id = ?2, failures = ?3, \
                 locked_until = ?4, issued = ?5, keep_until = ?6 WHERE id = ?7",
                rusqlite::params![
                    mac,
                    key_id,
                    row.failures,
                    row.locked_until,
                    row.issued_text(),
                    row.keep_until,
                    row.id
                ],
            )?
        };
        if written == 0 {
            return Ok(false);
        }
        if write.clear {
            self.execute("DELETE FROM verify_codes WHERE subject_id = ?1", [&row.id])?;
        }
        for id in &write.delete {
            self.execute("DELETE FROM verify_codes WHERE id = ?1", [id])?;
        }
        for id in &write.failed {
            self.execute(
                "UPDATE verify_codes SET attempts = attempts + 1 WHERE id = ?1",
                [id],
            )?;
        }
        if let Some(code) = &write.insert {
            self.execute(
                "INSERT INTO verify_codes (id, subject_id, key_id, mac, created_at, expires_at, \
                 attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    code.id,
                    row.id,
                    code.key_id,
                    code.mac,
                    code.created_at,
                    code.expires_at,
                    code.attempts
                ],
            )?;
        }
        Ok(true)
    }
}

impl SqliteTx<'_> {
    /// The row of the subject whose keyed hash is `mac` (hex).
    fn subject(
        &self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        mac: &str,
    ) -> Result<Option<SubjectRow>, StoreError> {
        let found = self
            .tx
            .prepare_cached(
                "SELECT id, failures, locked_until, issued, keep_until FROM verify_subjects \
                 WHERE instance_id = ?1 AND generator_type = ?2 AND subject_mac = ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    rusqlite::params![instance.as_str(), generator_type.full_name(), mac],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, i64>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, i64>(4)?,
                        ))
                    },
                )
                .optional()
            })
            .map_err(self.error())?;
        found
            .map(|(id, failures, locked_until, issued, keep_until)| {
                let issued = SubjectRow::parse_issued(&issued).ok_or_else(|| {
                    corrupt(self.path, &format!("subject {id} has invalid issue times"))
                })?;
                Ok(SubjectRow {
                    id,
                    failures,
                    locked_until,
                    issued,
                    keep_until,
                    version: 0,
                })
            })
            .transpose()
    }

    /// The codes of the subject `subject_id`, oldest first.
    fn codes(&self, subject_id: &str) -> Result<Vec<CodeRow>, StoreError> {
        self.tx
            .prepare_cached(
                "SELECT id, key_id, mac, created_at, expires_at, attempts FROM verify_codes \
                 WHERE subject_id = ?1 ORDER BY created_at, id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([subject_id], |row| {
                    Ok(CodeRow {
                        id: row.get(0)?,
                        key_id: row.get(1)?,
                        mac: row.get(2)?,
                        created_at: row.get(3)?,
                        expires_at: row.get(4)?,
                        attempts: row.get(5)?,
                    })
                })?
                .collect()
            })
            .map_err(self.error())
    }
}

impl SqliteStore {
    /// Runs `op` in the next group commit, and answers once that is durable.
    ///
    /// A caller queues its operation; the first to find no leader becomes it and commits
    /// groups (whatever is queued, each time) until the queue is empty; the others wait for
    /// their answer alone, without taking turns at the writer's lock. A leader that steps
    /// down looks at the queue once more, so an operation queued as it stepped down is never
    /// left without one.
    pub(super) fn code_op(&self, op: CodeOp) -> Result<CodeAnswer, StoreError> {
        self.require_mode(&[Mode::Writer], "issue or verify codes")?;
        let (send, answer) = mpsc::sync_channel(1);
        self.queue().push((op, send));
        while !self.code_leader.swap(true, Ordering::SeqCst) {
            {
                // Steps down however the groups end (a panic included).
                let _leading = StepDown(&self.code_leader);
                let mut inner = self.inner();
                loop {
                    let group = std::mem::take(&mut *self.queue());
                    if group.is_empty() {
                        break;
                    }
                    self.commit_group(&mut inner, group);
                }
            }
            if self.queue().is_empty() {
                break;
            }
        }
        answer.recv().unwrap_or_else(|_| {
            Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the group commit ended without an answer",
            ))
        })
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Queued>> {
        self.code_queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `group` in one transaction, each operation in a savepoint of its own, commits it
    /// through [`SqliteStore::write_locked_in_wal`] (durable in the synced WAL; no checkpoint
    /// each time) and answers every operation: with its own
    /// answer when the group is durable, with the failure otherwise.
    fn commit_group(&self, inner: &mut MutexGuard<'_, Inner>, group: Vec<Queued>) {
        let path = self.path.as_path();
        let mut answers = Vec::with_capacity(group.len());
        let committed = self.write_locked_in_wal(inner, |conn| {
            let write_error = |e| sql_error(path, "cannot write", e);
            let mut tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(write_error)?;
            for (op, _) in &group {
                let savepoint = tx.savepoint().map_err(write_error)?;
                let mut steps = SqliteTx {
                    tx: &savepoint,
                    path,
                };
                let answer = match op {
                    CodeOp::Issue(request, limits) => {
                        ready(codes::issue(&mut steps, request, limits)).map(CodeAnswer::Issued)
                    }
                    CodeOp::Verify(request, limits) => {
                        ready(codes::verify(&mut steps, request, limits)).map(CodeAnswer::Verified)
                    }
                };
                if answer.is_ok() {
                    savepoint.commit().map_err(write_error)?;
                }
                // Dropped without a commit, a savepoint rolls its steps back.
                answers.push(answer);
            }
            tx.commit().map_err(write_error)
        });
        match committed {
            Ok(()) => {
                for ((_, send), answer) in group.into_iter().zip(answers) {
                    let _ = send.send(answer);
                }
            }
            Err(e) => {
                for (_, send) in group {
                    let _ = send.send(Err(StoreError::new(e.kind(), e.to_string())));
                }
            }
        }
    }

    /// Deletes codes expired before `expired_before` and subjects with nothing left to keep
    /// at `now` (no failures, no lock, no code, past their keep time), a chunk at a time.
    pub(super) fn purge(&self, now: i64, expired_before: i64) -> Result<Purged, StoreError> {
        self.require_mode(&[Mode::Writer], "purge codes")?;
        let mut purged = Purged::default();
        loop {
            let (codes, subjects) = self.write(|conn| {
                let write_error = |e| sql_error(&self.path, "cannot purge", e);
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(write_error)?;
                let codes = tx
                    .execute(
                        "DELETE FROM verify_codes WHERE id IN (SELECT id FROM verify_codes \
                         WHERE expires_at <= ?1 LIMIT ?2)",
                        rusqlite::params![expired_before, PURGE_CHUNK],
                    )
                    .map_err(write_error)?;
                let subjects = tx
                    .execute(
                        "DELETE FROM verify_subjects WHERE id IN (SELECT s.id FROM \
                         verify_subjects s WHERE s.keep_until <= ?1 AND s.failures = 0 \
                         AND s.locked_until <= ?1 AND NOT EXISTS (SELECT 1 FROM verify_codes c \
                         WHERE c.subject_id = s.id) LIMIT ?2)",
                        rusqlite::params![now, PURGE_CHUNK],
                    )
                    .map_err(write_error)?;
                tx.commit().map_err(write_error)?;
                Ok((codes as u64, subjects as u64))
            })?;
            purged.codes += codes;
            purged.subjects += subjects;
            if codes < PURGE_CHUNK as u64 && subjects < PURGE_CHUNK as u64 {
                return Ok(purged);
            }
        }
    }

    /// How many codes and subjects are stored, and the locked subjects by type at `now`.
    pub(super) fn count_codes(&self, now: i64) -> Result<CodeCounts, StoreError> {
        let inner = self.inner();
        let read_error = |e| sql_error(&self.path, "cannot read", e);
        let count = |table: &str| {
            inner
                .conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(read_error)
        };
        let rows = inner
            .conn
            .prepare_cached(codes::LOCKED_BY_TYPE)
            .and_then(|mut stmt| {
                stmt.query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<Vec<(String, i64)>, _>>()
            })
            .map_err(read_error)?;
        Ok(CodeCounts {
            codes: count("verify_codes")?,
            subjects: count("verify_subjects")?,
            locked: codes::locked_by_type(rows, |why| corrupt(&self.path, &why))?,
        })
    }
}

impl crate::store::CodeStore for SqliteStore {
    fn issue_code(&self, request: IssueRequest, limits: &Limits) -> Result<Issued, StoreError> {
        match self.code_op(CodeOp::Issue(request, *limits))? {
            CodeAnswer::Issued(issued) => Ok(issued),
            CodeAnswer::Verified(_) => unreachable!("an issue is answered as one"),
        }
    }

    fn verify_code(&self, request: VerifyRequest, limits: &Limits) -> Result<Verified, StoreError> {
        match self.code_op(CodeOp::Verify(request, *limits))? {
            CodeAnswer::Verified(verified) => Ok(verified),
            CodeAnswer::Issued(_) => unreachable!("a verification is answered as one"),
        }
    }

    fn unlock_subject(
        &self,
        request: UnlockRequest,
        by: &Author,
    ) -> Result<Option<Event>, StoreError> {
        self.require_mode(&[Mode::Writer], "unlock a subject")?;
        Ok(self.transaction(&Write::Unlock(request, by.clone()))?.pop())
    }

    fn purge_codes(&self, now: i64, expired_before: i64) -> Result<Purged, StoreError> {
        self.purge(now, expired_before)
    }

    fn code_counts(&self, now: i64) -> Result<CodeCounts, StoreError> {
        self.count_codes(now)
    }
}
