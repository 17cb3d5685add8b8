//! Durability under SIGKILL: a child process applies updates in a loop, printing each one
//! the store acknowledged; it is killed at a random moment. After reopening, every
//! acknowledged update must be in the log, the log must replay, and its sequences must run
//! without gaps. Repeated on one data directory, so each round also recovers from the last;
//! and the same on a PostgreSQL database (when the tests have one, see `common/pg.rs`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use secretgen::store::{EventLog, PostgresOptions, PostgresStore};
use secretgen::{ConfigDraft, ControlPlane, GeneratorConfig, GeneratorType, SqliteStore, Store};

/// Tells the child test where its data directory is.
const CHILD_DIR: &str = "SECRETGEN_CRASH_CHILD_DIR";
/// Or its PostgreSQL database.
const CHILD_DATABASE: &str = "SECRETGEN_CRASH_CHILD_DATABASE";
const ROUNDS: usize = 25;

/// The configuration of update number `n`: each one differs from the one before it.
fn update_config(n: u64) -> (GeneratorType, ConfigDraft) {
    let t = if n.is_multiple_of(2) {
        GeneratorType::OtpSms
    } else {
        GeneratorType::OtpEmail
    };
    let draft = ConfigDraft {
        length: secretgen::CodeLength::new(8 + (n % 5) as i64),
        expiry: secretgen::Expiry::from_secs(1 + n % 2_678_000),
        include_digits: true,
        ..ConfigDraft::new(t)
    };
    (t, draft)
}

/// The child: updates forever, printing `ack <sequence> <n>` after each acknowledged one.
/// It does nothing when run as an ordinary test.
#[test]
fn crash_child() {
    let store: Arc<dyn Store> = if let Ok(dir) = std::env::var(CHILD_DIR) {
        Arc::new(SqliteStore::open(Path::new(&dir)).expect("child opens the store"))
    } else if let Ok(url) = std::env::var(CHILD_DATABASE) {
        Arc::new(PostgresStore::connect(&url, PostgresOptions::default()).expect("child connects"))
    } else {
        return;
    };
    let control = ControlPlane::open(store, None).expect("child replays the log");
    let start: u64 = std::env::var("SECRETGEN_CRASH_FIRST")
        .unwrap()
        .parse()
        .unwrap();
    let mut out = std::io::stdout().lock();
    for n in start.. {
        let (t, draft) = update_config(n);
        let config = GeneratorConfig::new(&draft).expect("a valid configuration");
        assert_eq!(config.generator_type(), t);
        let snapshot = control.update(config, "crash-child").expect("update");
        writeln!(out, "ack {} {n}", snapshot.version().sequence).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn every_acknowledged_update_survives_sigkill() {
    let dir = common::private_dir();
    let acked = kill_rounds(
        ROUNDS,
        &|child| {
            child.env(CHILD_DIR, dir.path());
        },
        &|| Arc::new(SqliteStore::open(dir.path()).expect("reopen after SIGKILL")),
        // The files as the kill left them, with the WAL's header damaged and the shared
        // index gone: the store must refuse them or hold every acknowledged update, never
        // start over.
        &|acked, round| damaged_wal_image_holds_or_refuses(dir.path(), acked, round),
    );
    assert!(
        acked > ROUNDS * 2,
        "too few updates to mean anything: {acked}"
    );
    common::assert_check_passes(dir.path());
}

#[test]
fn every_acknowledged_update_survives_sigkill_on_postgresql() {
    let Some(db) = common::pg::TestDatabase::create("crash on PostgreSQL") else {
        return;
    };
    let rounds = 15;
    let acked = kill_rounds(
        rounds,
        &|child| {
            child.env(CHILD_DATABASE, db.url());
        },
        &|| {
            Arc::new(
                PostgresStore::connect(db.url(), PostgresOptions::default())
                    .expect("reconnect after SIGKILL"),
            )
        },
        &|_, _| {},
    );
    assert!(
        acked > rounds * 2,
        "too few updates to mean anything: {acked}"
    );
}

/// Acknowledged updates: (sequence, update number).
type Acks = [(u64, u64)];

/// `rounds` times: runs the child (set up by `child_env`), kills it a random while into its
/// updates, calls `after_kill`, reopens the store with `open` and checks that every
/// acknowledged update is in the log. Returns how many updates were acknowledged.
fn kill_rounds(
    rounds: usize,
    child_env: &dyn Fn(&mut Command),
    open: &dyn Fn() -> Arc<dyn Store>,
    after_kill: &dyn Fn(&Acks, usize),
) -> usize {
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(0x5ec2e7);
    let mut next = 0u64;
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut total_lost_in_flight = 0;
    for round in 0..rounds {
        let mut command = Command::new(&exe);
        command
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("SECRETGEN_CRASH_FIRST", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        child_env(&mut command);
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ack ") {
                    let mut parts = rest.split(' ').map(|p| p.parse::<u64>().unwrap());
                    let (seq, n) = (parts.next().unwrap(), parts.next().unwrap());
                    if tx.send((seq, n)).is_err() {
                        break;
                    }
                }
            }
        });
        // Wait for the child to be under way, then kill it a random while later.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("round {round}: the child acknowledged nothing"));
        acked.push(first);
        let delay = Duration::from_millis(rng.random_range(5..150));
        let deadline = Instant::now() + delay;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(ack) => acked.push(ack),
                Err(_) => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Acknowledgements already in the pipe when the child died count too.
        acked.extend(rx.try_iter());
        next = acked.last().unwrap().1 + 1;

        after_kill(&acked, round);

        // Reopen: the log must replay and hold every acknowledged update.
        let store = open();
        let control =
            ControlPlane::open(Arc::clone(&store), None).expect("the log replays after SIGKILL");
        let events = store.events(control.instance().id()).unwrap();
        let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        assert_eq!(
            sequences,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "round {round}: sequences have gaps"
        );
        for &(seq, n) in &acked {
            let event = &events[seq as usize - 1];
            let (t, draft) = update_config(n);
            assert_eq!(
                event.generator_type(),
                Some(t),
                "round {round}: event {seq}"
            );
            assert_eq!(
                GeneratorConfig::new(event.config().unwrap()).unwrap(),
                GeneratorConfig::new(&draft).unwrap(),
                "round {round}: acknowledged update {n} (event {seq}) is not what was stored"
            );
        }
        // At most the one update in flight at the kill may be stored unacknowledged.
        let last_acked = acked.last().unwrap().0;
        let unacked = events.len() as u64 - last_acked;
        assert!(
            unacked <= 1,
            "round {round}: {unacked} events past the last acknowledged"
        );
        total_lost_in_flight += unacked;
        if unacked == 1 {
            // Continue numbering after the update that made it to disk unacknowledged.
            let extra = events.last().unwrap();
            assert_eq!(extra.creator, "crash-child");
            next += 1;
            acked.push((extra.sequence, next - 1));
        }
        // The live state is the last event of each type.
        for t in [GeneratorType::OtpSms, GeneratorType::OtpEmail] {
            let last = events
                .iter()
                .rev()
                .find(|e| e.generator_type() == Some(t))
                .unwrap();
            assert_eq!(control.get(t).version().sequence, last.sequence);
        }
    }
    eprintln!(
        "{rounds} SIGKILLs, {} acknowledged updates all found, {total_lost_in_flight} \
         stored in flight",
        acked.len()
    );
    acked.len()
}

/// A copy of the store in `dir` (just killed) whose WAL header is noise and whose shared
/// index is gone: opening it must fail as damaged, or give the same instance with every
/// acknowledged update.
fn damaged_wal_image_holds_or_refuses(dir: &Path, acked: &[(u64, u64)], round: usize) {
    let image = common::private_dir();
    std::fs::copy(dir.join("secretgen.db"), image.path().join("secretgen.db")).unwrap();
    let mut wal = std::fs::read(dir.join("secretgen.db-wal")).unwrap_or_default();
    wal.resize(wal.len().max(32), 0);
    for (i, b) in wal[..32].iter_mut().enumerate() {
        *b = (i * 53 % 249) as u8;
    }
    std::fs::write(image.path().join("secretgen.db-wal"), &wal).unwrap();
    let Ok(store) = SqliteStore::open(image.path()) else {
        return; // refused: nothing served, nothing changed
    };
    let store = Arc::new(store);
    let control = ControlPlane::open(Arc::clone(&store) as Arc<dyn Store>, None)
        .unwrap_or_else(|e| panic!("round {round}: the image opened but did not replay: {e}"));
    let events = store.events(control.instance().id()).unwrap();
    let last = acked.last().unwrap().0;
    assert!(
        events.len() as u64 >= last,
        "round {round}: a damaged WAL lost acknowledged updates ({} events, {last} acknowledged)",
        events.len()
    );
}

// Issued codes under SIGKILL (SPEC section 12): `secretgen serve` on the embedded store,
// clients issuing and verifying codes over real sockets, the server killed at random moments
// and restarted on the same data directory.

/// Failures that lock a subject in the codes test. With `--verify-max-attempts` far above it,
/// an answer's `attemptsLeft` is `CODES_LOCK_AFTER - failures` (the flow answers the least
/// of the checks its live code has left and the failures left before the lock), so every
/// answer received tells the subject's failure count.
const CODES_LOCK_AFTER: u64 = 20;
/// The type whose codes the test issues (8 digits, 300 s: none expires during the test).
const CODES_TYPE: &str = "OTP_SMS";
/// Client threads, each with subjects of its own.
const CODES_CLIENTS: usize = 4;
/// Subjects each client has pending at once.
const CODES_PENDING: usize = 6;
/// Answers the clients receive in a round before its random wait for the kill begins.
const CODES_STEPS_BEFORE_KILL: u64 = 60;

/// What the answers received say of a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Its code is pending: it was issued, no approval was sent, it is not locked.
    Live,
    /// An approval was received: the code must never approve again.
    Approved,
    /// A lock was received: it stays locked (for a day).
    Locked,
    /// Its right code was sent and the answer lost: approved or not.
    Unsure,
}

/// A subject, with what was received of it.
#[derive(Debug)]
struct Subject {
    name: String,
    code: String,
    /// Sends only wrong codes, until it is locked.
    attacker: bool,
    fate: Fate,
    /// The `attemptsLeft` of the last answer received for it (its issue or a rejection), so
    /// `CODES_LOCK_AFTER - left` failures were counted and durable then.
    left: u64,
    /// Whether every verification sent since that answer was answered: the failures are
    /// then exactly `CODES_LOCK_AFTER - left`; otherwise at least that many.
    exact: bool,
}

/// What the clients and the checks saw, over every round.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    answers: u64,
    lost: u64,
    issued: u64,
    approved: u64,
    rejected: u64,
    locked: u64,
    /// After restarts: approved codes verified again (all answered NOT_FOUND).
    approvals_rechecked: u64,
    /// After restarts: live subjects given a wrong code (each counted one more failure).
    failures_rechecked: u64,
    /// Of those, the ones whose failures were known exactly (nothing lost since).
    failures_rechecked_exactly: u64,
    /// After restarts: subjects whose approval was lost, settled.
    unsure_settled: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.answers += other.answers;
        self.lost += other.lost;
        self.issued += other.issued;
        self.approved += other.approved;
        self.rejected += other.rejected;
        self.locked += other.locked;
        self.approvals_rechecked += other.approvals_rechecked;
        self.failures_rechecked += other.failures_rechecked;
        self.failures_rechecked_exactly += other.failures_rechecked_exactly;
        self.unsure_settled += other.unsure_settled;
    }
}

/// A `_verify` answer: result and attempts left; `None` when the answer was lost (the
/// server was killed before it was received).
type VerifyAnswer = Option<(String, u64)>;

impl Subject {
    /// A code of the subject's length that is not its code.
    fn wrong_code(&self) -> String {
        let mut wrong: Vec<char> = self.code.chars().collect();
        wrong[0] = if wrong[0] == '1' { '2' } else { '1' };
        wrong.into_iter().collect()
    }

    /// Takes in the answer to a verification of the subject with its code (`right`) or a
    /// wrong one; panics when the answer contradicts an answer received before.
    fn verified(&mut self, right: bool, got: VerifyAnswer, tally: &mut Tally, when: &str) {
        let Some((result, left)) = got else {
            tally.lost += 1;
            match (self.fate, right) {
                (Fate::Live, true) => self.fate = Fate::Unsure,
                // A failure may or may not have been counted.
                (Fate::Live, false) => self.exact = false,
                // Nothing a verification of these can change.
                _ => {}
            }
            return;
        };
        tally.answers += 1;
        let fail = |why: &str| -> ! {
            panic!(
                "{when}: subject {} ({:?}, {} attempts left as last received, exactly: {}): \
                 the {} code answered {result} with {left} attempts left: {why}",
                self.name,
                self.fate,
                self.left,
                self.exact,
                if right { "right" } else { "wrong" },
            )
        };
        match (self.fate, right, result.as_str()) {
            (Fate::Live, false, "VERIFY_RESULT_REJECTED") => {
                if left >= self.left {
                    fail("a counted failure came back");
                }
                if self.exact && left != self.left - 1 {
                    fail("every verification was answered: one more failure was expected");
                }
                tally.rejected += 1;
                self.left = left;
                self.exact = true;
            }
            (Fate::Live, false, "VERIFY_RESULT_LOCKED") => {
                if self.exact && self.left != 1 {
                    fail("locked before its last failure");
                }
                tally.locked += 1;
                self.fate = Fate::Locked;
            }
            (Fate::Live, true, "VERIFY_RESULT_APPROVED") => {
                tally.approved += 1;
                self.fate = Fate::Approved;
            }
            // A lost wrong verification may have been its last failure.
            (Fate::Live, true, "VERIFY_RESULT_LOCKED") if !self.exact => {
                tally.locked += 1;
                self.fate = Fate::Locked;
            }
            (Fate::Approved, true, "VERIFY_RESULT_NOT_FOUND") => {}
            (Fate::Locked, _, "VERIFY_RESULT_LOCKED") => {}
            (Fate::Unsure, true, "VERIFY_RESULT_APPROVED" | "VERIFY_RESULT_NOT_FOUND") => {
                tally.unsure_settled += 1;
                self.fate = Fate::Approved;
            }
            (Fate::Unsure, true, "VERIFY_RESULT_LOCKED") if !self.exact => {
                tally.unsure_settled += 1;
                self.fate = Fate::Locked;
            }
            (Fate::Approved, ..) => fail("an approved code was found again"),
            (Fate::Locked, ..) => fail("a lock was lifted"),
            _ => fail("not what the answers before allow"),
        }
    }
}

/// A client's subjects, and the answers it received.
struct CodeClient {
    id: usize,
    rng: StdRng,
    subjects: Vec<Subject>,
    tally: Tally,
}

/// The admin token of the codes test's server.
fn codes_token() -> String {
    format!("sg_{}", "K".repeat(43))
}

/// A `POST` of `body` to `path`: `None` when the answer was lost; any answer but a 200
/// fails the test (nothing here may be refused).
fn post_code(
    client: &common::http::Client,
    path: &str,
    body: &serde_json::Value,
) -> Option<serde_json::Value> {
    let answer = client
        .try_request("POST", path, Some(&codes_token()), Some(&body.to_string()))
        .ok()?;
    assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    Some(answer.body)
}

fn verify_code(client: &common::http::Client, subject: &str, code: &str) -> VerifyAnswer {
    let body = post_code(
        client,
        &format!("/v1/codes/{CODES_TYPE}/_verify"),
        &serde_json::json!({"subject": subject, "code": code}),
    )?;
    Some((
        body["result"].as_str().unwrap().to_owned(),
        body["attemptsLeft"].as_u64().unwrap(),
    ))
}

impl CodeClient {
    /// One issue or verification; `false` once an answer was lost (the server is gone).
    fn step(&mut self, client: &common::http::Client) -> bool {
        let live: Vec<usize> = (0..self.subjects.len())
            .filter(|&i| self.subjects[i].fate == Fate::Live)
            .collect();
        if live.len() < CODES_PENDING {
            let name = format!("client{}-subject{}", self.id, self.subjects.len());
            let issued = post_code(
                client,
                &format!("/v1/codes/{CODES_TYPE}/_issue"),
                &serde_json::json!({"subject": name}),
            );
            let Some(body) = issued else {
                // A code may have been stored for it, unknown: the subject is not used again.
                self.tally.lost += 1;
                self.subjects.push(Subject {
                    name,
                    code: String::new(),
                    attacker: false,
                    fate: Fate::Unsure,
                    left: 0,
                    exact: false,
                });
                return false;
            };
            self.tally.answers += 1;
            self.tally.issued += 1;
            assert_eq!(body["attemptsLeft"], CODES_LOCK_AFTER, "{name}: {body}");
            let attacker = self.rng.random_bool(0.2);
            self.subjects.push(Subject {
                name,
                code: body["code"].as_str().unwrap().to_owned(),
                attacker,
                fate: Fate::Live,
                left: CODES_LOCK_AFTER,
                exact: true,
            });
            return true;
        }
        let i = live[self.rng.random_range(0..live.len())];
        let subject = &mut self.subjects[i];
        // Ordinary subjects approve before they come near the lock; attackers never do.
        let right = !subject.attacker && (subject.left <= 3 || self.rng.random_bool(0.3));
        let code = if right {
            subject.code.clone()
        } else {
            subject.wrong_code()
        };
        let got = verify_code(client, &subject.name, &code);
        let answered = got.is_some();
        subject.verified(right, got, &mut self.tally, "while running");
        answered
    }

    /// After a restart: every subject's state, as the answers received before the kill
    /// left it. An approved code answers NOT_FOUND; a live subject takes one more failure
    /// (and answers fewer attempts left than it last did, exactly one fewer when nothing
    /// was lost since); a lock holds; a lost approval is approved now or was before.
    fn check(&mut self, client: &common::http::Client, round: usize) {
        let when = format!("after restart {round}");
        for subject in &mut self.subjects {
            if subject.code.is_empty() {
                continue; // its issue was lost: nothing is known of it
            }
            let right = subject.fate != Fate::Live;
            let code = if right {
                subject.code.clone()
            } else {
                subject.wrong_code()
            };
            match subject.fate {
                Fate::Approved => self.tally.approvals_rechecked += 1,
                Fate::Live => {
                    self.tally.failures_rechecked += 1;
                    if subject.exact {
                        self.tally.failures_rechecked_exactly += 1;
                    }
                }
                Fate::Locked | Fate::Unsure => {}
            }
            let got = verify_code(client, &subject.name, &code);
            assert!(got.is_some(), "{when}: the server did not answer");
            subject.verified(right, got, &mut self.tally, &when);
        }
    }
}

/// Starts `secretgen serve` on `dir` for the codes test: issues are not limited, a code
/// takes up to 1000 checks, a subject locks after `CODES_LOCK_AFTER` failures.
fn serve_codes(dir: &Path) -> common::server::ServerProcess {
    let lock_after = CODES_LOCK_AFTER.to_string();
    common::server::Serve::embedded(dir)
        .args(&[
            "--grpc-listen",
            "off",
            "--verify-resend-after",
            "0",
            "--verify-issues-per-window",
            "1000",
            "--verify-max-attempts",
            "1000",
            "--verify-lock-after",
            &lock_after,
        ])
        .bootstrap_token(&codes_token())
        .start()
}

/// SPEC section 12, durability: an answer is sent only after its effect is durable, so
/// after any SIGKILL an approved code never approves again and a counted failure never
/// comes back. Clients issue and verify codes (right and wrong) over many subjects while
/// the server is killed at random moments; after each restart every answer received is
/// checked against the store. Answers lost to a kill are unknown and assert nothing.
#[test]
fn no_approved_code_approves_again_and_no_counted_failure_comes_back_after_sigkill() {
    let started = Instant::now();
    let dir = common::private_dir();
    let mut rng = StdRng::seed_from_u64(0xc0de_5ec2e7);
    let kills = rng.random_range(5..=8);
    let mut clients: Vec<CodeClient> = (0..CODES_CLIENTS)
        .map(|id| CodeClient {
            id,
            rng: StdRng::seed_from_u64(rng.random()),
            subjects: Vec::new(),
            tally: Tally::default(),
        })
        .collect();
    for round in 0..=kills {
        let mut server = serve_codes(dir.path());
        let client = common::http::Client::new(&server.base);
        if round > 0 {
            for c in &mut clients {
                c.check(&client, round);
            }
        }
        if round == kills {
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let steps = Arc::new(AtomicU64::new(0));
        let running: Vec<_> = clients
            .drain(..)
            .map(|mut c| {
                let (client, stop, steps) = (client.clone(), Arc::clone(&stop), Arc::clone(&steps));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        if !c.step(&client) {
                            break;
                        }
                        steps.fetch_add(1, Ordering::SeqCst);
                    }
                    c
                })
            })
            .collect();
        // Under way (however slow the machine), then killed a random while later.
        let under_way = Instant::now() + Duration::from_secs(30);
        while steps.load(Ordering::SeqCst) < CODES_STEPS_BEFORE_KILL && Instant::now() < under_way {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..=300)));
        server.kill(); // SIGKILL, in the middle of the clients' requests
        stop.store(true, Ordering::SeqCst);
        clients = running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
    }
    let mut tally = Tally::default();
    for c in &clients {
        tally.add(&c.tally);
    }
    eprintln!("{kills} SIGKILLs in {:?}: {tally:?}", started.elapsed());
    assert!(
        tally.approvals_rechecked >= 50 && tally.failures_rechecked_exactly >= 50,
        "too few answers checked to mean anything: {tally:?}"
    );
    assert!(tally.locked >= 1, "no subject was locked: {tally:?}");
    common::assert_check_passes(dir.path());
}
