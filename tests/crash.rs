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
