//! Hot swap: generation never sees half an update, and never an update older than one
//! already finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use secretgen::{GeneratorConfig, GeneratorType, Instance, InstanceId, Snapshot, Version};
use secretgen_oracle::adapter;
use secretgen_oracle::fit::fits;
use secretgen_oracle::rules::Proposal;

const SWAPS: u64 = 5_000;
const READERS: usize = 3;

/// Eight digits, 300 s: the SMS default.
fn config_a() -> GeneratorConfig {
    GeneratorConfig::default_for(GeneratorType::OtpSms)
}

/// Forty letters and symbols with every class, one hour: nothing in common with A.
fn config_b() -> GeneratorConfig {
    adapter::config(&Proposal {
        length: 40,
        expiry: "3600s".into(),
        include_lower_letters: true,
        include_upper_letters: true,
        include_digits: false,
        include_symbols: true,
        exclude_ambiguous: true,
        require_each_class: true,
        ..Proposal::new(GeneratorType::OtpSms.number())
    })
}

/// Whether `code` is one `config` can make.
fn matches(config: &GeneratorConfig, code: &[u8]) -> bool {
    fits(&adapter::shape(config), code).is_ok()
}

#[test]
fn readers_see_whole_snapshots_never_older_than_a_finished_swap() {
    let (a, b) = (config_a(), config_b());
    let t = GeneratorType::OtpSms;
    let start = SystemTime::now();
    let instance = Arc::new(Instance::with_defaults(
        InstanceId::new("test").unwrap(),
        start,
    ));
    // Odd sequences carry A, even ones B.
    let published = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Reads of a swapped-in configuration, so that the writer can wait for the readers on a
    // busy machine (else it may finish every swap before a reader is first scheduled).
    let reads = Arc::new(AtomicU64::new(0));

    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let (instance, published, done) = (instance.clone(), published.clone(), done.clone());
            let reads = reads.clone();
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut seen = [0u64; 2];
                let mut buf = Vec::new();
                while !done.load(Ordering::Acquire) {
                    let floor = published.load(Ordering::Acquire);
                    let snapshot = instance.load(t);
                    let seq = snapshot.version().sequence;
                    assert!(
                        seq >= floor,
                        "reader {reader}: saw {seq} after {floor} was done"
                    );
                    if seq == 0 {
                        continue; // the default, before the first swap
                    }
                    let now = SystemTime::now();
                    let code = snapshot.generator().generate().unwrap();
                    let code = code.expose().as_bytes();
                    let (in_a, in_b) = (matches(&a, code), matches(&b, code));
                    assert!(
                        in_a != in_b,
                        "code of length {} matches A {in_a}, B {in_b}",
                        code.len()
                    );
                    let want = if seq % 2 == 1 { &a } else { &b };
                    assert!(
                        matches(want, code),
                        "sequence {seq} gave the other config's code"
                    );
                    assert_eq!(snapshot.config(), want);
                    // The buffer path, sized from the same snapshot.
                    buf.resize(snapshot.generator().length(), 0);
                    snapshot.generator().fill(&mut buf).unwrap();
                    assert!(matches(want, &buf), "fill gave the other config's code");
                    let expiry = want.expiry().duration();
                    let expires = snapshot
                        .generator()
                        .generate()
                        .unwrap()
                        .expires_at()
                        .unwrap();
                    // The coarse clock may be a tick (a few ms) behind.
                    let tick = Duration::from_millis(20);
                    assert!(
                        expires + tick >= now + expiry
                            && expires <= now + expiry + Duration::from_secs(5)
                    );
                    seen[usize::from(seq % 2 == 0)] += 1;
                    reads.fetch_add(1, Ordering::Release);
                }
                seen
            })
        })
        .collect();

    for seq in 1..=SWAPS {
        let config = if seq % 2 == 1 { a.clone() } else { b.clone() };
        let version = Version {
            sequence: seq,
            creation_date: start,
            change_date: SystemTime::now(),
        };
        instance.replace(Snapshot::new(config, version));
        published.store(seq, Ordering::Release);
        if seq % 64 <= 1 {
            // After one swap of each configuration in every 64, let a reader read it (two
            // seconds at most: the assertions below say whether readers kept up).
            let before = reads.load(Ordering::Acquire);
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while reads.load(Ordering::Acquire) == before && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
        }
    }
    // Let the readers run on the last configuration for a moment, then stop them.
    std::thread::sleep(Duration::from_millis(20));
    done.store(true, Ordering::Release);

    let mut total = [0u64; 2];
    for r in readers {
        let seen = r.join().expect("a reader failed");
        total[0] += seen[0];
        total[1] += seen[1];
    }
    assert!(
        total[0] > 0 && total[1] > 0,
        "readers saw both configurations: {total:?}"
    );
    assert_eq!(instance.load(t).version().sequence, SWAPS);
}
