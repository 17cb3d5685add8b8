//! Latency of a configuration update: validate, append the event to the embedded store (WAL,
//! full synchronous commit, then a checkpoint into the database file: the change is in the
//! database file when it returns), swap the snapshot. `chain_hash` times the event hash.
//! Run: `cargo bench --bench update`.
//!
//! Criterion times `changed` (every update writes an event) and `unchanged` (an update equal
//! to the live configuration: validated, compared, nothing written). Criterion reports means
//! and medians, not tails, so the bench also times 2000 single updates itself and prints
//! p50, p99 and the maximum. The store lives in a temporary directory: set `TMPDIR` to
//! measure another disk.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use secretgen::{ConfigDraft, ControlPlane, GeneratorConfig, GeneratorType, SqliteStore};

/// Configuration number `n` of `t`, checked (the check is part of every update's cost).
fn config(t: GeneratorType, n: u64) -> GeneratorConfig {
    GeneratorConfig::new(&ConfigDraft {
        length: secretgen::CodeLength::new(8),
        expiry: secretgen::Expiry::from_secs(60 + n % 2),
        include_digits: true,
        ..ConfigDraft::new(t)
    })
    .unwrap()
}

fn open(dir: &std::path::Path) -> ControlPlane {
    let store = Arc::new(SqliteStore::open(dir).expect("store opens"));
    ControlPlane::open(store, None).expect("control plane opens")
}

fn update(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    // The store makes its data directory private; a temporary directory is not.
    let control = open(&dir.path().join("data"));
    let mut group = c.benchmark_group("update");
    let mut n = 0u64;
    group.bench_function("changed", |b| {
        b.iter(|| {
            n += 1;
            black_box(
                control
                    .update(config(GeneratorType::OtpSms, n), "bench")
                    .unwrap(),
            )
        })
    });
    group.bench_function("unchanged", |b| {
        b.iter(|| {
            black_box(
                control
                    .update(config(GeneratorType::OtpSms, n), "bench")
                    .unwrap(),
            )
        })
    });
    // What chaining costs an event: one SHA-256 over the previous hash and the row.
    let row = secretgen::store::EventRow {
        instance_id: "123456789012345678",
        sequence: 1234,
        event_type: "instance.secret.generator.changed",
        generator_type: "SECRET_GENERATOR_TYPE_OTP_SMS",
        payload: r#"{"length":8,"expiry":"300s","includeLowerLetters":false,"includeUpperLetters":false,"includeDigits":true,"includeSymbols":false,"excludeAmbiguous":false,"requireEachClass":false}"#,
        created_at: 1_795_000_000_000_000,
        creator: "bench",
        creator_id: "",
    };
    group.bench_function("chain_hash", |b| {
        b.iter(|| secretgen::store::chain_hash(black_box(&[7; 32]), black_box(&row)))
    });
    group.finish();
    percentiles(&control);
}

/// Times single changed updates and prints their percentiles.
fn percentiles(control: &ControlPlane) {
    const SAMPLES: usize = 2000;
    let mut times: Vec<Duration> = (0..SAMPLES as u64)
        .map(|i| {
            let start = Instant::now();
            control
                .update(config(GeneratorType::OtpEmail, i), "bench")
                .unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((SAMPLES as f64 * q) as usize).min(SAMPLES - 1)];
    println!(
        "update/changed latency over {SAMPLES} updates: p50 {:?}, p99 {:?}, max {:?}",
        at(0.50),
        at(0.99),
        times[SAMPLES - 1]
    );
}

criterion_group!(benches, update);
criterion_main!(benches);
