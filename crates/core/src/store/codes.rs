//! Issued codes in the store (SPEC section 12), the transaction logic written once for both
//! databases: issuing a code for a subject, verifying a typed code, lifting a lock and
//! purging what is no longer needed.
//!
//! A store implements [`CodesTx`] with its own SQL: an operation reads its subject
//! ([`CodesTx::find`]), decides (a pure function of what it read), and writes everything it
//! decided at once ([`CodesTx::write`]), committed before the caller is answered. What makes
//! an operation atomic is the write's condition: it is made only if the subject is as the
//! operation read it (PostgreSQL: the row's `xmin`; SQLite: the transaction is the file's one
//! writer), and otherwise the operation reads again ([`settle`]). Among any number of
//! concurrent verifications of a correct code, on any replica, the first write consumes every
//! pending code; the others read again and find nothing pending.
//!
//! The rows hold no code and no subject in clear: a code's keyed hash under a key named by
//! its id, and the subject's keyed hash ([`crate::verification::Keyring`]; the key never
//! enters the store).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::{StoreError, StoreErrorKind, UnlockFacts, hex};
use crate::verification::{
    CodeFor, CodeSubject, Keyring, Limits, SubjectMac, TypedCode, VerifyResult,
};
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::InstanceId;

/// The answer to an issue or a verification ([`super::CodeStore`]), sent once the operation
/// is durable by whoever ran it (the embedded store's committer, the PostgreSQL store's
/// runtime). An async caller awaits it, taking no thread while the store works; any other
/// waits for it ([`Reply::wait`]).
#[must_use = "the operation's answer, and whether it was stored, come through the reply"]
#[derive(Debug)]
pub struct Reply<T>(oneshot::Receiver<Result<T, StoreError>>);

/// Where the store sends a [`Reply`]'s answer.
pub(crate) type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

impl<T> Reply<T> {
    /// A reply and where its answer goes.
    pub(crate) fn channel() -> (Answer<T>, Reply<T>) {
        let (answer, reply) = oneshot::channel();
        (answer, Reply(reply))
    }

    /// Blocks this thread until the answer comes. Not from an async task: await the reply.
    pub fn wait(self) -> Result<T, StoreError> {
        self.0.blocking_recv().unwrap_or_else(|_| Err(unanswered()))
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err(unanswered())))
    }
}

/// A reply whose sender went away without an answer (the store stopped, or its worker
/// panicked): whether the operation was stored is not known.
fn unanswered() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "the store stopped before it answered",
    )
}

/// A subject's row: the state of one subject of one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SubjectRow {
    /// A random id that names the subject in its codes' rows.
    pub(crate) id: String,
    /// Consecutive failed verifications since its last approval.
    pub(crate) failures: i64,
    /// Until when it is locked (microseconds); 0 when it is not.
    pub(crate) locked_until: i64,
    /// The times of its issues within the window, oldest first (microseconds).
    pub(crate) issued: Vec<i64>,
    /// After when the row may be purged if it has no failures (microseconds).
    pub(crate) keep_until: i64,
    /// The version read, which a write requires unchanged (PostgreSQL: the row's `xmin`;
    /// SQLite: 0, unused).
    pub(crate) version: i64,
}

impl SubjectRow {
    /// The issue times as stored: comma-separated microseconds.
    pub(crate) fn issued_text(&self) -> String {
        let mut text = String::new();
        for (i, at) in self.issued.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&at.to_string());
        }
        text
    }

    /// Issue times as stored, or `None` when the text is not a list of them.
    pub(crate) fn parse_issued(text: &str) -> Option<Vec<i64>> {
        if text.is_empty() {
            return Some(Vec::new());
        }
        text.split(',').map(|t| t.parse().ok()).collect()
    }
}

/// A code's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CodeRow {
    /// Its id, `vc_…`, shown to the caller.
    pub(crate) id: String,
    /// The key its hash is under.
    pub(crate) key_id: String,
    /// Its keyed hash, lower-case hex.
    pub(crate) mac: String,
    /// When it was issued (microseconds).
    pub(crate) created_at: i64,
    /// When it expires (microseconds).
    pub(crate) expires_at: i64,
    /// How often it was checked and found wrong.
    pub(crate) attempts: i64,
}

/// A code to issue: the subject it is for (its keyed hash under every key, the signing
/// key's first) and the code's row.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    pub(crate) instance: InstanceId,
    pub(crate) generator_type: GeneratorType,
    pub(crate) subjects: Vec<SubjectMac>,
    pub(crate) code: CodeRow,
    pub(crate) now: i64,
}

impl IssueRequest {
    /// A request to store code `id`, keyed hash `mac` under `key_id`, issued at `now` and
    /// expiring at `expires_at` (microseconds), for the subject whose keyed hashes are
    /// `subjects`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        instance: InstanceId,
        generator_type: GeneratorType,
        subjects: Vec<SubjectMac>,
        id: String,
        key_id: &str,
        mac: &[u8; 32],
        now: i64,
        expires_at: i64,
    ) -> IssueRequest {
        IssueRequest {
            instance,
            generator_type,
            subjects,
            code: CodeRow {
                id,
                key_id: key_id.to_owned(),
                mac: hex(mac),
                created_at: now,
                expires_at,
                attempts: 0,
            },
            now,
        }
    }
}

/// What an issue did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issued {
    /// The code is stored; it may be tried this many times.
    Stored {
        /// The verifications it may take.
        attempts_left: u32,
    },
    /// The subject is locked until then (microseconds): nothing was stored.
    Locked {
        /// The end of the lock.
        until: i64,
    },
    /// Too many issues to the subject: nothing was stored; another may come after this wait
    /// (microseconds).
    TooSoon {
        /// The wait.
        retry_after: i64,
    },
}

/// A typed code to check against a subject's pending codes.
#[derive(Clone, Debug)]
pub struct VerifyRequest {
    pub(crate) instance: InstanceId,
    pub(crate) generator_type: GeneratorType,
    pub(crate) subject: CodeSubject,
    pub(crate) subjects: Vec<SubjectMac>,
    pub(crate) typed: Arc<TypedCode>,
    pub(crate) keys: Arc<Keyring>,
    pub(crate) now: i64,
}

impl VerifyRequest {
    /// A request to check `typed` against the pending codes of `subject`, at `now`
    /// (microseconds), with the keys of `keys`.
    pub fn new(
        instance: InstanceId,
        generator_type: GeneratorType,
        subject: CodeSubject,
        typed: TypedCode,
        keys: Arc<Keyring>,
        now: i64,
    ) -> VerifyRequest {
        let subjects = keys.subject_macs(&instance, generator_type, &subject);
        VerifyRequest {
            instance,
            generator_type,
            subject,
            subjects,
            typed: Arc::new(typed),
            keys,
            now,
        }
    }

    /// Whether the typed code is `code`.
    fn matches(&self, code: &CodeRow) -> bool {
        let Some(tag) = super::unhex(&code.mac) else {
            return false;
        };
        self.keys.verify_code(
            &code.key_id,
            &tag,
            &CodeFor {
                instance: &self.instance,
                generator_type: self.generator_type,
                subject: &self.subject,
                id: &code.id,
            },
            &self.typed,
        )
    }
}

/// What a verification found, and how many more verifications the subject's pending codes
/// may take (0 when none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The result.
    pub result: VerifyResult,
    /// Verifications left.
    pub attempts_left: u32,
    /// Whether this verification locked the subject (its last allowed failure).
    pub locked: bool,
}

/// What a purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Codes expired for longer than the window.
    pub codes: u64,
    /// Subjects with nothing left to remember.
    pub subjects: u64,
}

/// What the store holds of issued codes, for `secretgen check`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeCounts {
    /// Codes stored (pending, or expired and not purged yet).
    pub codes: u64,
    /// Subjects stored.
    pub subjects: u64,
    /// Subjects locked, by type (those with none left out).
    pub locked: Vec<(GeneratorType, u64)>,
}

/// The SQL of the locked subjects per type at a time (its one parameter), both stores'.
pub(crate) const LOCKED_BY_TYPE: &str = "SELECT generator_type, COUNT(*) FROM verify_subjects \
     WHERE locked_until > $1 GROUP BY generator_type ORDER BY generator_type";

/// Locked counts read by [`LOCKED_BY_TYPE`], by type; `bad` words a row whose type is not one.
pub(crate) fn locked_by_type(
    rows: Vec<(String, i64)>,
    bad: impl Fn(String) -> StoreError,
) -> Result<Vec<(GeneratorType, u64)>, StoreError> {
    rows.into_iter()
        .map(|(t, n)| {
            let t: GeneratorType = t
                .parse()
                .map_err(|e| bad(format!("a subject has a bad generator type: {e}")))?;
            Ok((t, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

/// A subject as read, with its codes: one consistent view of both.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    /// Which of the request's keyed hashes it is filed under (0: the signing key's).
    pub(crate) key: usize,
    /// Its row.
    pub(crate) row: SubjectRow,
    /// Its codes, oldest first.
    pub(crate) codes: Vec<CodeRow>,
}

/// What one operation changes of one subject, written in one step ([`CodesTx::write`]).
#[derive(Clone, Debug)]
pub(crate) struct SubjectWrite {
    /// The subject's row as it is to be (its `version` the one read).
    pub(crate) row: SubjectRow,
    /// The keyed hash it is filed under from now on.
    pub(crate) filed: SubjectMac,
    /// Whether the row is new (inserted, unless another operation inserted it first).
    pub(crate) new: bool,
    /// Every code of the subject deleted.
    pub(crate) clear: bool,
    /// Codes deleted.
    pub(crate) delete: Vec<String>,
    /// Codes checked and found wrong once more (their attempts counted up by one).
    pub(crate) failed: Vec<String>,
    /// A code inserted.
    pub(crate) insert: Option<CodeRow>,
}

impl SubjectWrite {
    fn new(row: SubjectRow, filed: &SubjectMac) -> SubjectWrite {
        SubjectWrite {
            row,
            filed: filed.clone(),
            new: false,
            clear: false,
            delete: Vec::new(),
            failed: Vec::new(),
            insert: None,
        }
    }
}

/// The codes' tables as an operation sees them: a read and a write, each one step (one
/// statement on PostgreSQL, where each is a transaction of its own unless a caller's
/// transaction holds them).
///
/// What makes an operation atomic is the write's condition: it changes the subject only if
/// the subject is as it was read (PostgreSQL: the row's version, `xmin`; SQLite: the
/// transaction is the file's one writer, so nothing changes between the two), and then
/// every change of the operation is made at once. An operation whose write finds the
/// subject changed reads it again and decides again ([`settle`]).
pub(crate) trait CodesTx {
    /// The subject filed under any of `subjects` (the signing key's first), with its codes.
    async fn find(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        subjects: &[SubjectMac],
    ) -> Result<Option<Found>, StoreError>;

    /// Makes `write`'s changes, all or none: none, and `false`, when the subject is no
    /// longer as it was read (or, a new one, when another was filed under its keyed hash
    /// first).
    async fn write(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        write: &SubjectWrite,
    ) -> Result<bool, StoreError>;
}

/// The most times an operation reads its subject again after a concurrent change. Every
/// lost race is another operation's win, so it is reached only by a subject under a flood of
/// concurrent operations; the operation then fails as unavailable, having changed nothing.
const TRIES: usize = 1_000;

/// Runs one operation: reads the subject, lets `decide` answer and say what to write, and
/// writes it, again from the read while the subject changed in between.
async fn settle<T>(
    tx: &mut impl CodesTx,
    instance: &InstanceId,
    generator_type: GeneratorType,
    subjects: &[SubjectMac],
    mut decide: impl FnMut(Option<Found>) -> (T, Option<SubjectWrite>),
) -> Result<T, StoreError> {
    for _ in 0..TRIES {
        let found = tx.find(instance, generator_type, subjects).await?;
        let (answer, write) = decide(found);
        match write {
            None => return Ok(answer),
            Some(write) if tx.write(instance, generator_type, &write).await? => return Ok(answer),
            Some(_) => {}
        }
    }
    Err(StoreError::new(
        StoreErrorKind::Unavailable,
        format!("the subject changed under each of {TRIES} tries"),
    ))
}

/// `subject` at `now`: a lock that has ended is gone, and so are the failures that made it.
fn at(mut subject: SubjectRow, now: i64) -> SubjectRow {
    if subject.locked_until != 0 && subject.locked_until <= now {
        subject.locked_until = 0;
        subject.failures = 0;
    }
    subject
}

/// Whether `code` may still be approved at `now`.
fn live(code: &CodeRow, now: i64, limits: &Limits) -> bool {
    code.expires_at > now && code.attempts < i64::from(limits.max_attempts)
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Issues `request`'s code: refused while the subject is locked or has had too many issues
/// lately; otherwise stored beside at most `limits.pending - 1` of its other live codes
/// (the oldest retired), with the issue counted in the subject's window.
pub(crate) async fn issue(
    tx: &mut impl CodesTx,
    request: &IssueRequest,
    limits: &Limits,
) -> Result<Issued, StoreError> {
    settle(
        tx,
        &request.instance,
        request.generator_type,
        &request.subjects,
        |found| decide_issue(found, request, limits),
    )
    .await
}

/// What an issue answers and writes, given the subject as found.
fn decide_issue(
    found: Option<Found>,
    request: &IssueRequest,
    limits: &Limits,
) -> (Issued, Option<SubjectWrite>) {
    let now = request.now;
    // Filed under the signing key from now on (a subject found under an older key too), so
    // that its failures outlive the old key.
    let signing = &request.subjects[0];
    let (subject, codes, new) = match found {
        Some(found) => (at(found.row, now), found.codes, false),
        None => {
            let row = SubjectRow {
                id: ordered_id("", now),
                failures: 0,
                locked_until: 0,
                issued: Vec::new(),
                keep_until: now,
                version: 0,
            };
            (row, Vec::new(), true)
        }
    };
    if subject.locked_until > now {
        return (
            Issued::Locked {
                until: subject.locked_until,
            },
            None,
        );
    }
    let mut subject = subject;
    let window = micros(limits.window);
    subject.issued.retain(|&at| at > now.saturating_sub(window));
    if let Some(&last) = subject.issued.last() {
        let next = last.saturating_add(micros(limits.resend_after));
        if next > now {
            return (
                Issued::TooSoon {
                    retry_after: next - now,
                },
                None,
            );
        }
    }
    let per_window = limits.issues_per_window as usize;
    if subject.issued.len() >= per_window {
        let oldest = subject.issued[subject.issued.len() - per_window];
        return (
            Issued::TooSoon {
                retry_after: (oldest.saturating_add(window) - now).max(1),
            },
            None,
        );
    }
    let (mut kept, dead): (Vec<CodeRow>, Vec<CodeRow>) =
        codes.into_iter().partition(|code| live(code, now, limits));
    let mut delete: Vec<String> = dead.into_iter().map(|code| code.id).collect();
    let pending = limits.pending as usize;
    while kept.len() >= pending {
        delete.push(kept.remove(0).id);
    }
    subject.issued.push(now);
    subject.keep_until = subject
        .keep_until
        .max(now.saturating_add(window))
        .max(request.code.expires_at.saturating_add(window));
    let attempts_left = limits.attempts_left(u32::try_from(subject.failures).unwrap_or(u32::MAX));
    let mut write = SubjectWrite::new(subject, signing);
    write.new = new;
    write.delete = delete;
    write.insert = Some(request.code.clone());
    (Issued::Stored { attempts_left }, Some(write))
}

/// Checks `request`'s typed code against every live code of its subject, in constant time
/// each and all of them whatever the first says. An approval consumes every code of the
/// subject and clears its failures; a failure is counted on each live code (a code checked
/// `limits.max_attempts` times is dead and deleted) and on the subject, which is locked at
/// `limits.lock_after` failures (its codes deleted).
pub(crate) async fn verify(
    tx: &mut impl CodesTx,
    request: &VerifyRequest,
    limits: &Limits,
) -> Result<Verified, StoreError> {
    settle(
        tx,
        &request.instance,
        request.generator_type,
        &request.subjects,
        |found| decide_verify(found, request, limits),
    )
    .await
}

/// What a verification answers and writes, given the subject as found.
fn decide_verify(
    found: Option<Found>,
    request: &VerifyRequest,
    limits: &Limits,
) -> (Verified, Option<SubjectWrite>) {
    let nothing = |result| Verified {
        result,
        attempts_left: 0,
        locked: false,
    };
    let now = request.now;
    let Some(found) = found else {
        return (nothing(VerifyResult::NotFound), None);
    };
    let filed = &request.subjects[found.key];
    let mut subject = at(found.row, now);
    if subject.locked_until > now {
        return (nothing(VerifyResult::Locked), None);
    }
    let codes = found.codes;
    let live: Vec<&CodeRow> = codes.iter().filter(|c| live(c, now, limits)).collect();
    if live.is_empty() {
        let expired = codes
            .iter()
            .any(|c| c.expires_at <= now && c.attempts < i64::from(limits.max_attempts));
        let result = if expired {
            VerifyResult::Expired
        } else {
            VerifyResult::NotFound
        };
        return (nothing(result), None);
    }
    let mut approved = false;
    for code in &live {
        approved |= request.matches(code);
    }
    if approved {
        subject.failures = 0;
        let mut write = SubjectWrite::new(subject, filed);
        write.clear = true;
        return (nothing(VerifyResult::Approved), Some(write));
    }
    subject.failures += 1;
    if subject.failures >= i64::from(limits.lock_after) {
        subject.locked_until = now.saturating_add(micros(limits.lock_for));
        subject.keep_until = subject.keep_until.max(subject.locked_until);
        let mut write = SubjectWrite::new(subject, filed);
        write.clear = true;
        let locked = Verified {
            locked: true,
            ..nothing(VerifyResult::Locked)
        };
        return (locked, Some(write));
    }
    let before_lock = i64::from(limits.lock_after) - subject.failures;
    let mut write = SubjectWrite::new(subject, filed);
    let mut most_left = 0;
    for code in live {
        let left = i64::from(limits.max_attempts) - (code.attempts + 1);
        if left <= 0 {
            write.delete.push(code.id.clone());
        } else {
            write.failed.push(code.id.clone());
            most_left = most_left.max(left);
        }
    }
    let rejected = Verified {
        result: VerifyResult::Rejected,
        attempts_left: u32::try_from(most_left.min(before_lock)).unwrap_or(0),
        locked: false,
    };
    (rejected, Some(write))
}

/// A subject to unlock: its keyed hash under every key, the signing key's first.
#[derive(Clone, Debug)]
pub struct UnlockRequest {
    pub(crate) instance: InstanceId,
    pub(crate) generator_type: GeneratorType,
    pub(crate) subjects: Vec<SubjectMac>,
    pub(crate) now: i64,
}

impl UnlockRequest {
    /// A request to lift the lock of `subject` of `generator_type` at `now` (microseconds),
    /// found by its keyed hashes under `keys`.
    pub fn new(
        instance: InstanceId,
        generator_type: GeneratorType,
        subject: &CodeSubject,
        keys: &Keyring,
        now: i64,
    ) -> UnlockRequest {
        let subjects = keys.subject_macs(&instance, generator_type, subject);
        UnlockRequest {
            instance,
            generator_type,
            subjects,
            now,
        }
    }

    /// The instance whose log records the unlock.
    pub(crate) fn instance(&self) -> &InstanceId {
        &self.instance
    }
}

/// Lifts the lock of `request`'s subject and clears its failures; what it cleared, `None`
/// when there was nothing to clear (no such subject, no failure, no lock: nothing written).
pub(crate) async fn unlock(
    tx: &mut impl CodesTx,
    request: &UnlockRequest,
) -> Result<Option<UnlockFacts>, StoreError> {
    settle(
        tx,
        &request.instance,
        request.generator_type,
        &request.subjects,
        |found| {
            let Some(found) = found else {
                return (None, None);
            };
            let mut subject = found.row;
            let locked = subject.locked_until > request.now;
            if subject.failures == 0 && !locked {
                return (None, None);
            }
            let filed = &request.subjects[found.key];
            let facts = UnlockFacts {
                generator_type: request.generator_type,
                subject_hash: hex(&filed.mac),
                key_id: filed.key_id.as_str().to_owned(),
                failures: subject.failures,
                locked_until: locked.then_some(subject.locked_until),
            };
            subject.failures = 0;
            subject.locked_until = 0;
            (Some(facts), Some(SubjectWrite::new(subject, filed)))
        },
    )
    .await
}

/// A new row id that sorts by when it was made: `prefix`, then 12 hex digits of the
/// milliseconds since the Unix epoch of `now_micros` (until the year 10889), then 20 hex
/// digits of randomness (80 bits, so ids made in the same millisecond differ too).
///
/// Why the time first: the stores keep every id in a B-tree (SQLite's index of each table's
/// key, `verify_codes (subject_id, …)`, PostgreSQL's primary keys). Random ids put each new
/// one on a random leaf page, so on a grown store every issue and verification read, dirtied,
/// logged and checkpointed a page of each index; ids in time order go to the right-hand edge
/// of each tree, whose pages are the ones the last operations touched. An id says when its
/// row was made and nothing else; the code's answer already shows when it expires.
pub(crate) fn ordered_id(prefix: &str, now_micros: i64) -> String {
    let millis = u64::try_from(now_micros / 1000).unwrap_or(0) & 0xffff_ffff_ffff;
    let mut random = [0u8; 10];
    getrandom::fill(&mut random).expect("the OS gives random bytes");
    format!("{prefix}{millis:012x}{}", hex(&random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_sort_by_time_and_differ_within_a_millisecond() {
        let t = 1_796_000_000_123_456; // microseconds, December 2026
        let a = ordered_id("vc_", t);
        let b = ordered_id("vc_", t);
        let later = ordered_id("vc_", t + 1000);
        assert_eq!(a.len(), 3 + 12 + 20);
        assert!(
            a[3..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(&a[3..15], &format!("{:012x}", t / 1000));
        assert_eq!(a[..15], b[..15]);
        assert_ne!(a, b);
        assert!(a < later && b < later);
        // Before the epoch (a clock set back): the time part is 0, never a panic.
        assert!(ordered_id("", -5).starts_with("000000000000"));
    }

    #[test]
    fn issue_times_are_stored_as_a_list() {
        let row = SubjectRow {
            id: "s".into(),
            failures: 0,
            locked_until: 0,
            issued: vec![1, 20, 300],
            keep_until: 0,
            version: 0,
        };
        assert_eq!(row.issued_text(), "1,20,300");
        assert_eq!(SubjectRow::parse_issued("1,20,300"), Some(vec![1, 20, 300]));
        assert_eq!(SubjectRow::parse_issued(""), Some(vec![]));
        assert_eq!(SubjectRow::parse_issued("1,x"), None);
    }
}
