//! The audit search's benchmark, for `benches/audit/run.sh` (SPEC section 13: a page of 100
//! from a log of 1,000,000 events in under 10 ms; 32 concurrent full readers leave
//! `_generate`'s p99 within 2x of its quiet figure).
//!
//! ```text
//! audit_log build sqlite DIR EVENTS | build postgres URL EVENTS
//!     A store holding a log of EVENTS events, appended straight through the store API in
//!     batches of 10,000 (configuration changes, a fifth of them by a token with an id).
//! audit_log page sqlite DIR ROUNDS | page postgres URL ROUNDS
//!     Times pages of 100 through Store::events_page, ROUNDS of each kind: the first page, a
//!     page by fromSequence in the middle, the newest page, a page by offset in the middle,
//!     and a filtered page (by creator id, from the middle). Prints the median and p99 of each.
//! audit_log load BASE TOKEN SECONDS READERS
//!     Against a running server: _generate count=1 on 2 connections, one request at a time
//!     each, for SECONDS alone (quiet), then again beside READERS clients that each page
//!     through the whole log (1000 events a page, by fromSequence) over and over. Prints each
//!     phase's _generate p50 and p99, the ratio, and the events the readers read per second.
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use secretgen::store::{EventFilter, EventType, NewEvent, PostgresOptions, PostgresStore};
use secretgen::{ConfigDraft, ControlPlane, GeneratorConfig, GeneratorType, SqliteStore, Store};

fn open(kind: &str, at: &str) -> Arc<dyn Store> {
    match kind {
        "sqlite" => Arc::new(SqliteStore::open(std::path::Path::new(at)).expect("the store opens")),
        "postgres" => Arc::new(
            PostgresStore::connect(
                at,
                PostgresOptions {
                    timeout: Duration::from_secs(120),
                    ..PostgresOptions::default()
                },
            )
            .expect("the database answers"),
        ),
        other => panic!("unknown store {other:?}: sqlite or postgres"),
    }
}

fn config(length: i64) -> GeneratorConfig {
    GeneratorConfig::new(&ConfigDraft {
        length: secretgen::CodeLength::new(length),
        expiry: secretgen::Expiry::from_secs(300),
        include_digits: true,
        ..ConfigDraft::new(GeneratorType::OtpSms)
    })
    .expect("a valid configuration")
}

fn build(kind: &str, at: &str, events: u64) {
    let store = open(kind, at);
    let control = ControlPlane::open(Arc::clone(&store), None).expect("the control plane opens");
    let instance = control.instance().id().clone();
    let start = Instant::now();
    let mut written = store.events(&instance).expect("the log reads").len() as u64;
    let mut n = 0u64;
    while written < events {
        let batch = (events - written).min(10_000);
        let now = SystemTime::now();
        let changes: Vec<NewEvent> = (0..batch)
            .map(|i| {
                n += 1;
                let by_token = n.is_multiple_of(5);
                NewEvent {
                    event_type: EventType::Changed,
                    // Alternating lengths: every event changes something.
                    config: config(8 + (n % 2) as i64),
                    created_at: secretgen::store::truncate_to_micros(
                        now + Duration::from_micros(i),
                    ),
                    creator: if by_token { "ops" } else { "bench" }.to_owned(),
                    creator_id: by_token.then(|| "tok_00000000000000ab".to_owned()),
                }
            })
            .collect();
        written += store
            .append(&instance, &changes)
            .expect("the batch appends")
            .len() as u64;
        eprint!("\r{written} events");
    }
    eprintln!(
        "\r{written} events in the log ({:.0} s)",
        start.elapsed().as_secs_f64()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn page(kind: &str, at: &str, rounds: usize) {
    let store = open(kind, at);
    let instance = store
        .default_instance()
        .expect("the store reads")
        .expect("a store with an instance");
    let last = store
        .events_page(
            &instance,
            &EventFilter {
                limit: 1,
                ..EventFilter::default()
            },
        )
        .expect("a page")
        .last_sequence;
    println!("{kind}: log of {last} events; pages of 100, {rounds} rounds each");
    let kinds: [(&str, EventFilter); 5] = [
        (
            "first page",
            EventFilter {
                limit: 100,
                ..EventFilter::default()
            },
        ),
        (
            "fromSequence = middle",
            EventFilter {
                limit: 100,
                from_sequence: last / 2,
                ..EventFilter::default()
            },
        ),
        (
            "newest (asc=false)",
            EventFilter {
                limit: 100,
                ascending: false,
                ..EventFilter::default()
            },
        ),
        (
            "offset = middle",
            EventFilter {
                limit: 100,
                offset: last / 2,
                ..EventFilter::default()
            },
        ),
        (
            "creatorId, from the middle",
            EventFilter {
                limit: 100,
                from_sequence: last / 2,
                creator_id: Some("tok_00000000000000ab".into()),
                ..EventFilter::default()
            },
        ),
    ];
    println!(
        "{:<30} {:>10} {:>10} {:>8}",
        "page", "median ms", "p99 ms", "events"
    );
    for (name, filter) in kinds {
        let mut times = Vec::with_capacity(rounds);
        let mut got = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let page = store.events_page(&instance, &filter).expect("a page");
            times.push(start.elapsed());
            got = page.entries.len();
        }
        times.sort();
        println!(
            "{name:<30} {:>10.3} {:>10.3} {got:>8}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `_generate` count=1 on `clients` connections until `stop`: every latency.
fn generate_load(base: &str, token: &str, clients: usize, seconds: u64) -> Vec<Duration> {
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let url = format!("{base}/v1/codes/OTP_SMS/_generate");
            let auth = format!("Bearer {token}");
            std::thread::spawn(move || {
                let agent = agent();
                let mut times = Vec::new();
                let end = Instant::now() + Duration::from_secs(seconds);
                while Instant::now() < end {
                    let start = Instant::now();
                    let answer = agent
                        .post(&url)
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .send("{}")
                        .expect("the server answers");
                    assert_eq!(answer.status(), 200);
                    let _ = answer.into_body().read_to_vec();
                    times.push(start.elapsed());
                }
                times
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    all
}

fn load(base: &str, token: &str, seconds: u64, readers: usize) {
    let quiet = generate_load(base, token, 2, seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let passes = Arc::new(AtomicU64::new(0));
    let reader_threads: Vec<_> = (0..readers)
        .map(|_| {
            let (stop, read, passes) = (Arc::clone(&stop), Arc::clone(&read), Arc::clone(&passes));
            let url = format!("{base}/admin/v1/events/_search");
            let auth = format!("Bearer {token}");
            std::thread::spawn(move || {
                let agent = agent();
                let mut from = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    let body =
                        format!(r#"{{"fromSequence": "{from}", "query": {{"limit": 1000}}}}"#);
                    let answer = agent
                        .post(&url)
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .send(body.as_str())
                        .expect("the server answers");
                    assert_eq!(answer.status(), 200);
                    // The last event's sequence, found without parsing the page: the
                    // readers share the machine with the server.
                    let page = answer.into_body().read_to_vec().expect("a body");
                    let text = String::from_utf8_lossy(&page);
                    let last = text.rfind(r#""sequence":""#).map(|at| {
                        let digits = &text[at + 12..];
                        let end = digits.find('"').expect("a closing quote");
                        digits[..end].parse::<u64>().expect("a sequence")
                    });
                    match last {
                        Some(last) if last >= from => {
                            read.fetch_add(last + 1 - from, Ordering::Relaxed);
                            from = last + 1;
                        }
                        _ => {
                            passes.fetch_add(1, Ordering::Relaxed);
                            from = 1;
                        }
                    }
                }
            })
        })
        .collect();
    // Let the readers get going before measuring.
    std::thread::sleep(Duration::from_secs(1));
    let before = read.load(Ordering::Relaxed);
    let started = Instant::now();
    let loaded = generate_load(base, token, 2, seconds);
    let events_per_second =
        (read.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in reader_threads {
        t.join().unwrap();
    }
    let (q50, q99) = (percentile(&quiet, 0.5), percentile(&quiet, 0.99));
    let (l50, l99) = (percentile(&loaded, 0.5), percentile(&loaded, 0.99));
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "_generate count=1, 2 clients", "requests", "p50 ms", "p99 ms"
    );
    println!(
        "{:<44} {:>10} {:>10.3} {:>10.3}",
        "quiet",
        quiet.len(),
        q50,
        q99
    );
    println!(
        "{:<44} {:>10} {:>10.3} {:>10.3}",
        format!("beside {readers} full readers"),
        loaded.len(),
        l50,
        l99
    );
    println!("p99 loaded / quiet: {:.2} (goal <= 2)", l99 / q99);
    println!(
        "readers: {events_per_second:.0} events/s read, {} whole passes",
        passes.load(Ordering::Relaxed)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let number = |i: usize| arg(i).parse::<u64>().expect("a number");
    match arg(0) {
        "build" => build(arg(1), arg(2), number(3)),
        "page" => page(arg(1), arg(2), number(3) as usize),
        "load" => load(arg(1), arg(2), number(3), number(4) as usize),
        _ => {
            eprintln!("usage: see the top of examples/audit_log.rs");
            std::process::exit(2);
        }
    }
}
