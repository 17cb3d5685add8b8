//! Issued codes in the store (SPEC section 12), the transaction logic written once for both
//! databases: issuing a code for a subject, verifying a typed code, lifting a lock and
//! purging what is no longer needed.
//!
//! A store implements [`CodesTx`] with its own SQL and runs each operation in one write
//! transaction, whose effect is committed before the caller is answered. What makes an
//! operation atomic is the subject's row: [`CodesTx::subject`] locks it for the rest of the
//! transaction (PostgreSQL: `FOR UPDATE`; SQLite: the transaction is the file's one writer),
//! so that every issue and verification of one subject and type, on any replica, runs after
//! the one before it has committed. Among any number of concurrent verifications of a
//! correct code, the first to take the lock consumes every pending code, and the others find
//! nothing pending.
//!
//! The rows hold no code and no subject in clear: a code's keyed hash under a key named by
//! its id, and the subject's keyed hash ([`crate::verification::Keyring`]; the key never
//! enters the store).

use std::sync::Arc;

use super::{StoreError, StoreErrorKind, UnlockFacts, hex};
use crate::verification::{
    CodeFor, CodeSubject, Keyring, Limits, SubjectMac, TypedCode, VerifyResult,
};
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::InstanceId;

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

/// One write transaction's steps on the codes' tables.
pub(crate) trait CodesTx {
    /// The row of the subject whose keyed hash under key `key_id` is `mac` (hex), locked
    /// until the transaction ends.
    async fn subject(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        mac: &str,
    ) -> Result<Option<SubjectRow>, StoreError>;

    /// Inserts a subject's row unless one with its keyed hash is there.
    async fn insert_subject(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        subject: &SubjectMac,
        row: &SubjectRow,
    ) -> Result<(), StoreError>;

    /// Files the subject `id` under the keyed hash `subject` (a newer key's).
    async fn rekey_subject(&mut self, id: &str, subject: &SubjectMac) -> Result<(), StoreError>;

    /// Writes a subject's failures, lock, issues and keep time.
    async fn update_subject(&mut self, row: &SubjectRow) -> Result<(), StoreError>;

    /// The codes of the subject `subject_id`, oldest first.
    async fn codes(&mut self, subject_id: &str) -> Result<Vec<CodeRow>, StoreError>;

    /// Inserts a code of the subject `subject_id`.
    async fn insert_code(&mut self, subject_id: &str, code: &CodeRow) -> Result<(), StoreError>;

    /// Sets the attempts of code `id`.
    async fn set_attempts(&mut self, id: &str, attempts: i64) -> Result<(), StoreError>;

    /// Deletes code `id`.
    async fn delete_code(&mut self, id: &str) -> Result<(), StoreError>;

    /// Deletes every code of the subject `subject_id`.
    async fn delete_codes(&mut self, subject_id: &str) -> Result<(), StoreError>;
}

/// The subject's row, found under any of its keyed hashes (the signing key's first) and
/// locked.
async fn find_subject(
    tx: &mut impl CodesTx,
    instance: &InstanceId,
    generator_type: GeneratorType,
    subjects: &[SubjectMac],
) -> Result<Option<(usize, SubjectRow)>, StoreError> {
    for (n, subject) in subjects.iter().enumerate() {
        if let Some(row) = tx
            .subject(instance, generator_type, &hex(&subject.mac))
            .await?
        {
            return Ok(Some((n, row)));
        }
    }
    Ok(None)
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
    let (instance, generator_type, now) = (&request.instance, request.generator_type, request.now);
    let signing = &request.subjects[0];
    let subject = match find_subject(tx, instance, generator_type, &request.subjects).await? {
        Some((0, row)) => row,
        Some((_, row)) => {
            // Found under an older key: filed under the signing key from now on, so that its
            // failures outlive the old key.
            tx.rekey_subject(&row.id, signing).await?;
            row
        }
        None => {
            let row = SubjectRow {
                id: new_subject_id(),
                failures: 0,
                locked_until: 0,
                issued: Vec::new(),
                keep_until: now,
            };
            tx.insert_subject(instance, generator_type, signing, &row)
                .await?;
            // Another transaction may have inserted it first: read whichever is stored.
            let (_, row) = find_subject(tx, instance, generator_type, &request.subjects[..1])
                .await?
                .ok_or_else(|| {
                    StoreError::new(StoreErrorKind::Unavailable, "a new subject was not stored")
                })?;
            row
        }
    };
    let mut subject = at(subject, now);
    if subject.locked_until > now {
        return Ok(Issued::Locked {
            until: subject.locked_until,
        });
    }
    let window = micros(limits.window);
    subject.issued.retain(|&at| at > now.saturating_sub(window));
    if let Some(&last) = subject.issued.last() {
        let next = last.saturating_add(micros(limits.resend_after));
        if next > now {
            return Ok(Issued::TooSoon {
                retry_after: next - now,
            });
        }
    }
    let per_window = limits.issues_per_window as usize;
    if subject.issued.len() >= per_window {
        let oldest = subject.issued[subject.issued.len() - per_window];
        return Ok(Issued::TooSoon {
            retry_after: (oldest.saturating_add(window) - now).max(1),
        });
    }
    let mut kept = Vec::new();
    for code in tx.codes(&subject.id).await? {
        if live(&code, now, limits) {
            kept.push(code);
        } else {
            tx.delete_code(&code.id).await?;
        }
    }
    let pending = limits.pending as usize;
    while kept.len() >= pending {
        let oldest = kept.remove(0);
        tx.delete_code(&oldest.id).await?;
    }
    tx.insert_code(&subject.id, &request.code).await?;
    subject.issued.push(now);
    subject.keep_until = subject
        .keep_until
        .max(now.saturating_add(window))
        .max(request.code.expires_at.saturating_add(window));
    tx.update_subject(&subject).await?;
    Ok(Issued::Stored {
        attempts_left: limits.attempts_left(u32::try_from(subject.failures).unwrap_or(u32::MAX)),
    })
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
    let nothing = |result| Verified {
        result,
        attempts_left: 0,
        locked: false,
    };
    let now = request.now;
    let Some((_, subject)) = find_subject(
        tx,
        &request.instance,
        request.generator_type,
        &request.subjects,
    )
    .await?
    else {
        return Ok(nothing(VerifyResult::NotFound));
    };
    let mut subject = at(subject, now);
    if subject.locked_until > now {
        return Ok(nothing(VerifyResult::Locked));
    }
    let codes = tx.codes(&subject.id).await?;
    let live: Vec<&CodeRow> = codes.iter().filter(|c| live(c, now, limits)).collect();
    if live.is_empty() {
        let expired = codes
            .iter()
            .any(|c| c.expires_at <= now && c.attempts < i64::from(limits.max_attempts));
        return Ok(nothing(if expired {
            VerifyResult::Expired
        } else {
            VerifyResult::NotFound
        }));
    }
    let mut approved = false;
    for code in &live {
        approved |= request.matches(code);
    }
    if approved {
        tx.delete_codes(&subject.id).await?;
        subject.failures = 0;
        tx.update_subject(&subject).await?;
        return Ok(nothing(VerifyResult::Approved));
    }
    subject.failures += 1;
    if subject.failures >= i64::from(limits.lock_after) {
        subject.locked_until = now.saturating_add(micros(limits.lock_for));
        subject.keep_until = subject.keep_until.max(subject.locked_until);
        tx.delete_codes(&subject.id).await?;
        tx.update_subject(&subject).await?;
        return Ok(Verified {
            locked: true,
            ..nothing(VerifyResult::Locked)
        });
    }
    let mut most_left = 0;
    for code in live {
        let attempts = code.attempts + 1;
        let left = i64::from(limits.max_attempts) - attempts;
        if left <= 0 {
            tx.delete_code(&code.id).await?;
        } else {
            tx.set_attempts(&code.id, attempts).await?;
            most_left = most_left.max(left);
        }
    }
    tx.update_subject(&subject).await?;
    let before_lock = i64::from(limits.lock_after) - subject.failures;
    Ok(Verified {
        result: VerifyResult::Rejected,
        attempts_left: u32::try_from(most_left.min(before_lock)).unwrap_or(0),
        locked: false,
    })
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
    let Some((n, mut subject)) = find_subject(
        tx,
        &request.instance,
        request.generator_type,
        &request.subjects,
    )
    .await?
    else {
        return Ok(None);
    };
    let locked = subject.locked_until > request.now;
    if subject.failures == 0 && !locked {
        return Ok(None);
    }
    let facts = UnlockFacts {
        generator_type: request.generator_type,
        subject_hash: hex(&request.subjects[n].mac),
        key_id: request.subjects[n].key_id.as_str().to_owned(),
        failures: subject.failures,
        locked_until: locked.then_some(subject.locked_until),
    };
    subject.failures = 0;
    subject.locked_until = 0;
    tx.update_subject(&subject).await?;
    Ok(Some(facts))
}

/// A new subject row's id: 16 random bytes in hex.
fn new_subject_id() -> String {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).expect("the OS gives random bytes");
    hex(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_times_are_stored_as_a_list() {
        let row = SubjectRow {
            id: "s".into(),
            failures: 0,
            locked_until: 0,
            issued: vec![1, 20, 300],
            keep_until: 0,
        };
        assert_eq!(row.issued_text(), "1,20,300");
        assert_eq!(SubjectRow::parse_issued("1,20,300"), Some(vec![1, 20, 300]));
        assert_eq!(SubjectRow::parse_issued(""), Some(vec![]));
        assert_eq!(SubjectRow::parse_issued("1,x"), None);
    }
}
