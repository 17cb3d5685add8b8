//! The codes flow on both stores (SPEC section 12): each case drives a store's `CodeStore`
//! directly, with a keyring of its own, as the use cases do.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use secretgen::store::codes::{IssueRequest, Issued, UnlockRequest, VerifyRequest};
use secretgen::store::{Author, Change, EventType};
use secretgen::verification::{CodeFor, CodeSubject, Keyring, Limits, TypedCode, VerifyResult};
use secretgen::{GeneratorType, Store};

use super::claimed;

const T: GeneratorType = GeneratorType::OtpSms;
const DIGITS: &str = "0123456789";
const SECOND: i64 = 1_000_000;

/// A clock for the cases: a fixed start, in microseconds.
const START: i64 = 1_800_000_000 * SECOND;

struct Codes {
    store: Arc<dyn Store>,
    keys: Arc<Keyring>,
    limits: Limits,
    next: u32,
}

impl Codes {
    fn new(store: Arc<dyn Store>, limits: Limits) -> Codes {
        claimed(&*store);
        Codes {
            store,
            keys: Arc::new(Keyring::generate()),
            limits,
            next: 0,
        }
    }

    fn instance(&self) -> secretgen::InstanceId {
        self.store.default_instance().unwrap().unwrap()
    }

    /// Issues `code` to `subject` at `now`, expiring 300 s later.
    fn issue(&mut self, subject: &str, code: &str, now: i64) -> Issued {
        self.next += 1;
        self.issue_as(&format!("vc_{:04}", self.next), subject, code, now)
    }

    /// Issues `code` to `subject` at `now` as the code `id`, expiring 300 s later.
    fn issue_as(&self, id: &str, subject: &str, code: &str, now: i64) -> Issued {
        let request = self.issue_request(id, subject, code, now);
        self.store.issue_code(request, &self.limits).wait().unwrap()
    }

    /// The request that issues `code` to `subject` at `now` as the code `id`.
    fn issue_request(&self, id: &str, subject: &str, code: &str, now: i64) -> IssueRequest {
        let instance = self.instance();
        let subject = CodeSubject::new(subject).unwrap();
        let what = CodeFor {
            instance: &instance,
            generator_type: T,
            subject: &subject,
            id,
        };
        let (key_id, mac) = self.keys.sign_code(&what, code);
        let subjects = self.keys.subject_macs(&instance, T, &subject);
        IssueRequest::new(
            instance.clone(),
            T,
            subjects,
            id.to_owned(),
            key_id.as_str(),
            &mac,
            now,
            now + 300 * SECOND,
        )
    }

    fn verify(&self, subject: &str, typed: &str, now: i64) -> (VerifyResult, u32) {
        let request = VerifyRequest::new(
            self.instance(),
            T,
            CodeSubject::new(subject).unwrap(),
            TypedCode::new(typed, DIGITS).unwrap(),
            Arc::clone(&self.keys),
            now,
        );
        let verified = self
            .store
            .verify_code(request, &self.limits)
            .wait()
            .unwrap();
        (verified.result, verified.attempts_left)
    }
}

fn free_issues() -> Limits {
    Limits {
        resend_after: Duration::ZERO,
        issues_per_window: 1000,
        ..Limits::default()
    }
}

pub fn a_code_is_approved_once(store: Arc<dyn Store>) {
    let mut c = Codes::new(store, free_issues());
    assert_eq!(
        c.issue("alice", "123456", START),
        Issued::Stored { attempts_left: 5 }
    );
    assert_eq!(
        c.verify("bob", "123456", START),
        (VerifyResult::NotFound, 0)
    );
    assert_eq!(
        c.verify("alice", "654321", START),
        (VerifyResult::Rejected, 4)
    );
    assert_eq!(
        c.verify("alice", "123456", START),
        (VerifyResult::Approved, 0)
    );
    assert_eq!(
        c.verify("alice", "123456", START),
        (VerifyResult::NotFound, 0)
    );
    assert_eq!(c.store.code_counts(START).unwrap().codes, 0);
    // Expired: said so until it is purged.
    c.issue("alice", "111111", START);
    let late = START + 301 * SECOND;
    assert_eq!(
        c.verify("alice", "111111", late),
        (VerifyResult::Expired, 0)
    );
}

pub fn failures_count_across_codes_and_lock(store: Arc<dyn Store>) {
    let mut c = Codes::new(
        store,
        Limits {
            max_attempts: 3,
            lock_after: 7,
            ..free_issues()
        },
    );
    c.issue("eve", "000001", START);
    assert_eq!(c.verify("eve", "9", START), (VerifyResult::Rejected, 2));
    assert_eq!(c.verify("eve", "9", START), (VerifyResult::Rejected, 1));
    assert_eq!(c.verify("eve", "9", START), (VerifyResult::Rejected, 0));
    // Dead after its attempts, even for the right code.
    assert_eq!(
        c.verify("eve", "000001", START),
        (VerifyResult::NotFound, 0)
    );
    // A new code does not reset the subject's failures.
    assert_eq!(
        c.issue("eve", "000002", START),
        Issued::Stored { attempts_left: 3 }
    );
    c.verify("eve", "9", START);
    c.verify("eve", "9", START);
    assert_eq!(c.verify("eve", "9", START), (VerifyResult::Rejected, 0));
    assert_eq!(
        c.issue("eve", "000003", START),
        Issued::Stored { attempts_left: 1 }
    );
    assert_eq!(c.verify("eve", "9", START), (VerifyResult::Locked, 0));
    assert_eq!(c.verify("eve", "000003", START), (VerifyResult::Locked, 0));
    let lock_end = START + 86_400 * SECOND;
    assert_eq!(
        c.issue("eve", "000004", START),
        Issued::Locked { until: lock_end }
    );
    // The lock ends by itself, and with it the failures that made it.
    let after = lock_end + SECOND;
    assert_eq!(
        c.issue("eve", "000005", after),
        Issued::Stored { attempts_left: 3 }
    );
    assert_eq!(c.verify("eve", "9", after), (VerifyResult::Rejected, 2));
}

pub fn a_fourth_code_retires_the_oldest_and_issues_are_limited(store: Arc<dyn Store>) {
    let mut c = Codes::new(store, Limits::default());
    c.issue("fay", "000001", START);
    assert_eq!(
        c.issue("fay", "000002", START + 10 * SECOND),
        Issued::TooSoon {
            retry_after: 20 * SECOND
        }
    );
    let mut at = START;
    for code in ["000002", "000003", "000004"] {
        at += 30 * SECOND;
        assert!(matches!(c.issue("fay", code, at), Issued::Stored { .. }));
    }
    // Five within ten minutes: the sixth waits for the first to leave the window.
    assert_eq!(
        c.issue("fay", "000005", at + 30 * SECOND),
        Issued::Stored { attempts_left: 5 }
    );
    assert_eq!(
        c.issue("fay", "000006", at + 60 * SECOND),
        Issued::TooSoon {
            retry_after: START + 600 * SECOND - (at + 60 * SECOND)
        }
    );
    let now = at + 60 * SECOND;
    // Three pending: 1 and 2 were retired.
    assert_eq!(c.verify("fay", "000001", now).0, VerifyResult::Rejected);
    assert_eq!(c.verify("fay", "000002", now).0, VerifyResult::Rejected);
    assert_eq!(c.verify("fay", "000003", now).0, VerifyResult::Approved);
}

pub fn an_unlock_is_an_event_of_the_log(store: Arc<dyn Store>) {
    let mut c = Codes::new(
        Arc::clone(&store),
        Limits {
            lock_after: 2,
            ..free_issues()
        },
    );
    let unlock = |c: &Codes| {
        let subject = CodeSubject::new("gus").unwrap();
        let request = UnlockRequest::new(c.instance(), T, &subject, &c.keys, START);
        c.store
            .unlock_subject(request, &Author::named("ops"))
            .unwrap()
    };
    assert_eq!(unlock(&c), None);
    c.issue("gus", "000001", START);
    c.verify("gus", "1", START);
    assert_eq!(c.verify("gus", "1", START), (VerifyResult::Locked, 0));
    let event = unlock(&c).expect("an unlock event");
    assert_eq!(event.event_type, EventType::SubjectUnlocked);
    let Change::Unlock(facts) = &event.change else {
        panic!("{event:?}")
    };
    assert_eq!(facts.failures, 2);
    assert_eq!(facts.generator_type, T);
    assert_eq!(facts.locked_until, Some(START + 86_400 * SECOND));
    // The log's chain holds it, after the instance's other events.
    let log = store.events(&c.instance()).unwrap();
    assert_eq!(log.last().unwrap(), &event);
    assert_eq!(unlock(&c), None, "nothing left to lift");
    assert!(matches!(
        c.issue("gus", "000002", START),
        Issued::Stored { .. }
    ));
    assert_eq!(c.verify("gus", "000002", START).0, VerifyResult::Approved);
}

pub fn the_purge_keeps_what_is_pending(store: Arc<dyn Store>) {
    let mut c = Codes::new(store, free_issues());
    c.issue("hal", "000001", START);
    c.issue("ida", "000002", START + 400 * SECOND);
    c.verify("joe", "1", START); // no subject: nothing stored
    let counts = c.store.code_counts(START).unwrap();
    assert_eq!((counts.codes, counts.subjects), (2, 2));
    // Hal's code expired 100 s before the cut: purged; Ida's is pending.
    let now = START + 1000 * SECOND;
    let purged = c.store.purge_codes(now, START + 400 * SECOND).unwrap();
    assert_eq!(purged.codes, 1);
    // Hal's subject has no failures, no code and no recent issue: purged too.
    assert_eq!(purged.subjects, 1);
    let counts = c.store.code_counts(START).unwrap();
    assert_eq!((counts.codes, counts.subjects), (1, 1));
    assert_eq!(
        c.verify("ida", "000002", START + 401 * SECOND).0,
        VerifyResult::Approved
    );
}

/// Runs `each` on `n` threads at once (as near as a barrier makes it); their answers.
fn race<T: Send + 'static>(
    c: &Codes,
    n: usize,
    each: impl Fn(&Codes, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let c = Arc::new(Codes {
        store: Arc::clone(&c.store),
        keys: Arc::clone(&c.keys),
        limits: c.limits,
        next: 0,
    });
    let each = Arc::new(each);
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (c, barrier, each) = (Arc::clone(&c), Arc::clone(&barrier), Arc::clone(&each));
            std::thread::spawn(move || {
                barrier.wait();
                each(&c, i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// An operation that fails leaves nothing behind: an issue whose code id is taken fails, and
/// neither its new subject nor its count of issues is kept (on SQLite, where operations are
/// committed in groups, its savepoint is rolled back and the group goes on).
pub fn a_failed_issue_leaves_nothing_behind(store: Arc<dyn Store>) {
    let c = Codes::new(
        store,
        Limits {
            resend_after: Duration::ZERO,
            issues_per_window: 1,
            ..Limits::default()
        },
    );
    assert_eq!(
        c.issue_as("vc_taken", "alice", "123456", START),
        Issued::Stored { attempts_left: 5 }
    );
    let before = c.store.code_counts(START).unwrap();
    let taken = c.issue_request("vc_taken", "bob", "654321", START);
    assert!(c.store.issue_code(taken, &c.limits).wait().is_err());
    let after = c.store.code_counts(START).unwrap();
    assert_eq!(
        (after.codes, after.subjects),
        (before.codes, before.subjects)
    );
    // Bob's window holds no issue: his one issue of the window is still his.
    assert_eq!(
        c.issue_as("vc_bob", "bob", "654321", START),
        Issued::Stored { attempts_left: 5 }
    );
    assert_eq!(
        c.verify("bob", "654321", START),
        (VerifyResult::Approved, 0)
    );
    assert_eq!(
        c.verify("alice", "123456", START),
        (VerifyResult::Approved, 0)
    );
}

pub fn concurrent_verifications_approve_once(store: Arc<dyn Store>) {
    let mut c = Codes::new(store, free_issues());
    for round in 0..30 {
        let subject = format!("race{round}");
        c.issue(&subject, "424242", START);
        let results = race(&c, 16, move |c, _| c.verify(&subject, "424242", START).0);
        let approved = results
            .iter()
            .filter(|r| **r == VerifyResult::Approved)
            .count();
        assert_eq!(approved, 1, "{results:?}");
    }
}

/// Concurrent wrong guesses are each counted: none is lost to another's write.
pub fn concurrent_failures_are_each_counted(store: Arc<dyn Store>) {
    let mut c = Codes::new(
        store,
        Limits {
            max_attempts: 100,
            lock_after: 12,
            ..free_issues()
        },
    );
    for round in 0..5 {
        let subject = format!("guess{round}");
        c.issue(&subject, "424242", START);
        let guessed = subject.clone();
        let results = race(&c, 12, move |c, i| {
            c.verify(&guessed, &format!("{:06}", 100 + i), START).0
        });
        let locks = results
            .iter()
            .filter(|r| **r == VerifyResult::Locked)
            .count();
        assert_eq!(locks, 1, "the 12th failure locks, once: {results:?}");
        assert_eq!(
            c.verify(&subject, "424242", START).0,
            VerifyResult::Locked,
            "12 failures lock the subject"
        );
    }
}

/// Concurrent issues to a subject not stored yet make one subject, with its newest codes,
/// and each is counted.
pub fn concurrent_issues_to_a_new_subject_make_one(store: Arc<dyn Store>) {
    let mut c = Codes::new(
        store,
        Limits {
            issues_per_window: 16,
            ..free_issues()
        },
    );
    let before = c.store.code_counts(START).unwrap();
    let results = race(&c, 16, |c, i| {
        c.issue_as(&format!("vc_new{i:02}"), "newcomer", "777777", START)
    });
    assert!(
        results.iter().all(|r| matches!(r, Issued::Stored { .. })),
        "{results:?}"
    );
    let after = c.store.code_counts(START).unwrap();
    assert_eq!(after.subjects - before.subjects, 1);
    assert_eq!(after.codes - before.codes, u64::from(c.limits.pending));
    assert!(
        matches!(c.issue("newcomer", "777777", START), Issued::TooSoon { .. }),
        "the 16 issues were each counted in the window"
    );
    assert_eq!(
        c.verify("newcomer", "777777", START).0,
        VerifyResult::Approved
    );
}

/// The embedded store's committer answers what was handed to it before the store was
/// dropped: 24 issues queued without waiting, the store dropped at once, and every reply says
/// stored; opened again, the store approves each code.
pub fn queued_issues_are_committed_when_the_store_is_dropped(dir: &std::path::Path) {
    let codes = Codes::new(
        Arc::new(secretgen::SqliteStore::open(dir).unwrap()),
        free_issues(),
    );
    let replies: Vec<_> = (0..24)
        .map(|i| {
            let request = codes.issue_request(
                &format!("vc_q{i:02}"),
                &format!("queued{i}@example.com"),
                "123456",
                START,
            );
            codes.store.issue_code(request, &codes.limits)
        })
        .collect();
    let Codes { store, keys, .. } = codes;
    assert_eq!(Arc::strong_count(&store), 1);
    drop(store);
    for reply in replies {
        assert!(matches!(reply.wait(), Ok(Issued::Stored { .. })));
    }
    let reopened = Codes {
        store: Arc::new(secretgen::SqliteStore::open(dir).unwrap()),
        keys,
        limits: free_issues(),
        next: 0,
    };
    for i in 0..24 {
        let subject = format!("queued{i}@example.com");
        assert_eq!(
            reopened.verify(&subject, "123456", START + SECOND).0,
            VerifyResult::Approved,
            "{subject}"
        );
    }
}
