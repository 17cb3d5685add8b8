//! How PostgreSQL replicas should number the events they append: measured, not assumed.
//!
//! Two ways to keep per-instance sequences gap-free and strictly increasing under writers on
//! several replicas, each appending a chained event (its hash covers the previous event's):
//! - `advisory`: what `PostgresStore::append` does: take a transaction-scoped advisory lock on
//!   the instance, read the last event, insert the next one, commit. Writers queue.
//! - `retry`: ZITADEL's way: read the last event and insert the next one without a lock; the
//!   primary key refuses a writer that lost the race (unique violation), which rolls back and
//!   tries again.
//!
//! Each strategy runs with 1, 3 and 8 concurrent writers (a connection each, as replicas have),
//! every writer appending the same number of events to one instance of a scratch database
//! made on the PostgreSQL server named by the argument (default
//! `postgres://root@127.0.0.1:5432/postgres`) and dropped at the end. Prints appends a
//! second, the median and 99th percentile of one append, and the retries.
//!
//!     cargo run --release --example sequencing -- [URL] [appends per writer]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const SCHEMA: &str = secretgen::store::SCHEMA;

fn main() {
    let mut args = std::env::args().skip(1);
    let admin_url = args
        .next()
        .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/postgres".to_owned());
    let per_writer: usize = args.next().map_or(300, |n| n.parse().expect("a number"));
    let name = format!("sg_sequencing_{}", std::process::id());
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the scratch database");
    let url = match admin_url.rsplit_once('/') {
        Some((root, _)) => format!("{root}/{name}"),
        None => panic!("the URL names no database"),
    };
    println!(
        "{:<9} {:>7} {:>12} {:>9} {:>9} {:>8}",
        "strategy", "writers", "appends/s", "p50 ms", "p99 ms", "retries"
    );
    for writers in [1, 3, 8] {
        for strategy in [Strategy::Advisory, Strategy::Retry] {
            let result = run(&url, strategy, writers, per_writer);
            println!(
                "{:<9} {:>7} {:>12.0} {:>9.2} {:>9.2} {:>8}",
                strategy.name(),
                writers,
                result.per_second,
                result.p50.as_secs_f64() * 1e3,
                result.p99.as_secs_f64() * 1e3,
                result.retries
            );
        }
    }
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .expect("drop the scratch database");
}

#[derive(Clone, Copy)]
enum Strategy {
    Advisory,
    Retry,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::Advisory => "advisory",
            Strategy::Retry => "retry",
        }
    }
}

struct Outcome {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    retries: u64,
}

/// `writers` threads append `per_writer` events each to a fresh instance; checks that the log
/// came out gap-free.
fn run(url: &str, strategy: Strategy, writers: usize, per_writer: usize) -> Outcome {
    let mut setup = postgres::Client::connect(url, postgres::NoTls).unwrap();
    setup.batch_execute(SCHEMA).unwrap();
    let instance = format!("{}-{writers}", strategy.name());
    let barrier = Arc::new(Barrier::new(writers));
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (url, instance, barrier) = (url.to_owned(), instance.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                barrier.wait();
                let mut latencies = Vec::with_capacity(per_writer);
                let mut retries = 0u64;
                for n in 0..per_writer {
                    let began = Instant::now();
                    retries += append(&mut client, strategy, &instance, &format!("w{w}-{n}"));
                    latencies.push(began.elapsed());
                }
                (latencies, retries)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut retries = 0;
    for h in handles {
        let (l, r) = h.join().unwrap();
        latencies.extend(l);
        retries += r;
    }
    let elapsed = start.elapsed();
    let sequences: Vec<i64> = setup
        .query(
            "SELECT sequence FROM events WHERE instance_id = $1 ORDER BY sequence",
            &[&instance],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        sequences,
        (1..=(writers * per_writer) as i64).collect::<Vec<_>>(),
        "gap-free"
    );
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Outcome {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
        retries,
    }
}

/// Appends one chained event; returns how many times it had to start again.
fn append(client: &mut postgres::Client, strategy: Strategy, instance: &str, payload: &str) -> u64 {
    let mut retries = 0;
    loop {
        let mut tx = client.transaction().unwrap();
        if let Strategy::Advisory = strategy {
            let key =
                i64::from_be_bytes(Sha256::digest(instance.as_bytes())[..8].try_into().unwrap());
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
                .unwrap();
        }
        let last = tx
            .query_opt(
                "SELECT sequence, hash FROM events WHERE instance_id = $1 \
                 ORDER BY sequence DESC LIMIT 1",
                &[&instance],
            )
            .unwrap();
        let (sequence, previous): (i64, String) =
            last.map_or((0, String::new()), |r| (r.get(0), r.get(1)));
        let hash: String = Sha256::digest(format!("{previous}{instance}{}{payload}", sequence + 1))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let inserted = tx.execute(
            "INSERT INTO events (instance_id, sequence, event_type, generator_type, payload, \
             created_at, creator, hash) VALUES ($1, $2, 'bench', '', $3, 0, 'bench', $4)",
            &[&instance, &(sequence + 1), &payload, &hash],
        );
        match inserted.and_then(|_| tx.commit()) {
            Ok(()) => return retries,
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                retries += 1;
            }
            Err(e) => panic!("append failed: {e}"),
        }
    }
}
