//! Issued codes on the embedded store: the codes flow's steps ([`CodesTx`]) in SQLite's SQL,
//! and the group commit that makes them fast.
//!
//! Every issue and verification must be durable before it is answered, and a commit here
//! costs a synced WAL write. So operations are committed in groups: a caller queues its
//! operation and gets a [`Reply`]; the store's committer thread takes everything queued, runs
//! it in one transaction (each operation in a savepoint of its own, so that one operation's
//! failure undoes only its own steps), commits, and answers them all. The writer is the
//! file's one writer, so the operations of a group run one after the other, each seeing the
//! ones before it: as atomic as if each had its own transaction. No caller's thread waits
//! for the writer: an async caller awaits its reply, and a request costs no thread handoff
//! beyond its answer.

use std::sync::Condvar;

use rusqlite::OptionalExtension;

use super::*;
use crate::store::codes::{
    self, Answer, CodeCounts, CodeRow, CodesTx, Found, IssueRequest, Issued, Purged, Reply,
    SubjectRow, SubjectWrite, UnlockRequest, Verified, VerifyRequest,
};
use crate::store::flow::ready;
use crate::verification::{Limits, SubjectMac};
use secretgen_engine::generator_type::GeneratorType;

/// The most rows a purge deletes in one transaction, so that it holds the writer briefly.
const PURGE_CHUNK: i64 = 10_000;

/// An operation on the codes' tables, queued for the next group commit, and where its
/// answer goes.
#[derive(Debug)]
pub(super) enum CodeOp {
    Issue(IssueRequest, Limits, Answer<Issued>),
    Verify(VerifyRequest, Limits, Answer<Verified>),
}

/// What an operation answered.
enum CodeAnswer {
    Issued(Issued),
    Verified(Verified),
}

impl CodeOp {
    /// Sends `answer`, the one this operation's own steps gave, to its caller (who may have
    /// gone away: then no one is told).
    fn answer(self, answer: Result<CodeAnswer, StoreError>) {
        match (self, answer) {
            (CodeOp::Issue(.., to), Ok(CodeAnswer::Issued(issued))) => {
                let _ = to.send(Ok(issued));
            }
            (CodeOp::Verify(.., to), Ok(CodeAnswer::Verified(verified))) => {
                let _ = to.send(Ok(verified));
            }
            (CodeOp::Issue(.., to), Err(e)) => {
                let _ = to.send(Err(e));
            }
            (CodeOp::Verify(.., to), Err(e)) => {
                let _ = to.send(Err(e));
            }
            (CodeOp::Issue(..), Ok(CodeAnswer::Verified(_)))
            | (CodeOp::Verify(..), Ok(CodeAnswer::Issued(_))) => {
                unreachable!("an operation is answered by its own kind")
            }
        }
    }
}

/// The operations waiting for the next group commit, and the committer's signal.
#[derive(Debug, Default)]
pub(super) struct CodeQueue {
    waiting: Mutex<Waiting>,
    /// Signalled when an operation is queued, and when the store stops.
    queued: Condvar,
}

#[derive(Debug, Default)]
struct Waiting {
    ops: Vec<CodeOp>,
    /// The store is being dropped: the committer commits what is queued and ends.
    stop: bool,
}

impl CodeQueue {
    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next group: everything queued, once there is anything; `None` once the store
    /// stops and nothing is left.
    fn next_group(&self) -> Option<Vec<CodeOp>> {
        let mut waiting = self.waiting();
        while waiting.ops.is_empty() && !waiting.stop {
            waiting = self.queued.wait(waiting).unwrap_or_else(|e| e.into_inner());
        }
        if waiting.ops.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut waiting.ops))
        }
    }
}

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
        let mut codes = self
            .tx
            .prepare_cached(CODES_OF_SUBJECT)
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
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.error())?;
        codes.sort_unstable_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(codes)
    }
}

/// The codes of a subject, in no order: with an `ORDER BY`, SQLite (built with STAT4)
/// prepared this statement again for each new subject id bound to it, a parse for every
/// issue and verification; a subject has a few codes, sorted after the read.
const CODES_OF_SUBJECT: &str = "SELECT id, key_id, mac, created_at, expires_at, attempts \
                                FROM verify_codes WHERE subject_id = ?1";

impl SqliteStore {
    /// Queues `op` for the next group commit; its answer comes once that is durable.
    ///
    /// One thread of the store's own, the committer (started by the first operation, ended
    /// when the store is dropped), takes whatever is queued, runs it in one transaction and
    /// answers every operation of it, again until the queue is empty, then waits. A caller
    /// takes no thread while it waits: an async one awaits its [`Reply`], and the committer
    /// wakes once for each group rather than once for each operation.
    fn queue_code_op(&self, op: CodeOp) {
        let started = self
            .require_mode(&[Mode::Writer], "issue or verify codes")
            .and_then(|()| self.start_committer());
        if let Err(e) = started {
            op.answer(Err(e));
            return;
        }
        self.codes.waiting().ops.push(op);
        self.codes.queued.notify_one();
    }

    /// Starts the committer unless it runs.
    fn start_committer(&self) -> Result<(), StoreError> {
        let mut committer = self.committer.lock().unwrap_or_else(|e| e.into_inner());
        if committer.is_some() {
            return Ok(());
        }
        let (path, inner, queue) = (
            self.path.clone(),
            Arc::clone(&self.inner),
            Arc::clone(&self.codes),
        );
        let thread = std::thread::Builder::new()
            .name("secretgen-codes".into())
            .spawn(move || {
                while let Some(group) = queue.next_group() {
                    // A panic answers the group's callers through their dropped senders
                    // (the store stopped before it answered) and leaves the connection
                    // without a transaction (rusqlite rolls an unfinished one back); the
                    // next group goes on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
                        commit_group(&path, &mut inner, group);
                    }));
                }
            })
            .map_err(|e| unavailable(format!("cannot start the codes' committer: {e}")))?;
        *committer = Some(thread);
        Ok(())
    }

    /// Stops the committer, once it has committed and answered what is queued.
    pub(super) fn stop_committer(&self) {
        let thread = self
            .committer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            self.codes.waiting().stop = true;
            self.codes.queued.notify_one();
            let _ = thread.join();
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

/// Runs `group` in one transaction, each operation in a savepoint of its own, commits it
/// through [`Inner::write_in_wal`] (durable in the synced WAL; no checkpoint each time) and
/// answers every operation: with its own answer when the group is durable, with the failure
/// otherwise.
fn commit_group(path: &Path, inner: &mut Inner, group: Vec<CodeOp>) {
    let mut answers = Vec::with_capacity(group.len());
    let committed = inner.write_in_wal(path, |conn| {
        let write_error = |e| sql_error(path, "cannot write", e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write_error)?;
        // The savepoint statements are prepared once per connection (rusqlite's `Savepoint`
        // formats and parses them again for every operation).
        let run = |sql: &str| tx.prepare_cached(sql).and_then(|mut s| s.execute([]));
        for op in &group {
            run("SAVEPOINT code_op").map_err(write_error)?;
            let mut steps = SqliteTx { tx: &tx, path };
            let answer = match op {
                CodeOp::Issue(request, limits, _) => {
                    ready(codes::issue(&mut steps, request, limits)).map(CodeAnswer::Issued)
                }
                CodeOp::Verify(request, limits, _) => {
                    ready(codes::verify(&mut steps, request, limits)).map(CodeAnswer::Verified)
                }
            };
            if answer.is_err() {
                // A failed operation leaves nothing behind; the group goes on.
                run("ROLLBACK TO code_op").map_err(write_error)?;
            }
            run("RELEASE code_op").map_err(write_error)?;
            answers.push(answer);
        }
        tx.commit().map_err(write_error)
    });
    match committed {
        Ok(()) => {
            for (op, answer) in group.into_iter().zip(answers) {
                op.answer(answer);
            }
        }
        Err(e) => {
            for op in group {
                op.answer(Err(StoreError::new(e.kind(), e.to_string())));
            }
        }
    }
}

impl crate::store::CodeStore for SqliteStore {
    fn issue_code(&self, request: IssueRequest, limits: &Limits) -> Reply<Issued> {
        let (answer, reply) = Reply::channel();
        self.queue_code_op(CodeOp::Issue(request, *limits, answer));
        reply
    }

    fn verify_code(&self, request: VerifyRequest, limits: &Limits) -> Reply<Verified> {
        let (answer, reply) = Reply::channel();
        self.queue_code_op(CodeOp::Verify(request, *limits, answer));
        reply
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every issue and verification reads its subject's codes with a new subject id: the
    /// statement must run as prepared, not be parsed and planned again for each (as SQLite
    /// does for the `ORDER BY` form, on a table with an index on the subject and time).
    #[test]
    fn reading_a_subjects_codes_is_never_prepared_again() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(CODES_TABLES).unwrap();
        for subject in ["vs_a", "vs_b", "vs_c", "vs_d"] {
            let mut stmt = conn.prepare_cached(CODES_OF_SUBJECT).unwrap();
            assert_eq!(stmt.query_map([subject], |_| Ok(())).unwrap().count(), 0);
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "prepared again for {subject}"
            );
        }
    }
}
