//! Code generation, side by side with what a Rust user would otherwise reach for.
//!
//! One group per default generator type (ZITADEL's defaults), plus `alnum8` (8 characters of
//! `A-Za-z0-9`, where every contender applies) and `swap` (generation while another thread
//! swaps the configuration 1000 times a second). Run: `cargo bench --bench generate`.
//!
//! Contenders, all cryptographically secure:
//! - `secretgen/owned`: [`Generator::generate`], an owned code with its expiry.
//! - `secretgen/fill`: [`Generator::fill`], one code into the caller's buffer.
//! - `secretgen/fill_codes`: [`Generator::fill_codes`], 1000 codes per call into the caller's
//!   buffer; the time shown is per code.
//! - `rand/choose`: rand 0.10, `IndexedRandom::choose` per character over `StdRng` (ChaCha12),
//!   collected into a `String`.
//! - `rand/choose_into_buffer`: the same draws written into a byte buffer.
//! - `rand/alphanumeric`: rand 0.10, `Alphanumeric.sample_string` over `StdRng` (62-character
//!   alphabets only: it has no other).
//! - `nanoid`: `nanoid!(len, &alphabet)`, nanoid's default (it keys a new `StdRng` per call).
//! - `passwords`: `PasswordGenerator::generate_one` with the matching classes.
//!
//! And `keystream`: the ciphers alone, each filling the random bytes 1000 alnum8 codes of the
//! byte-wise sampler draw (8 × 256/248 ≈ 8.26 bytes a code, measured on the reference sampler
//! at start), timed per code like
//! `alnum8/secretgen/fill_codes`, so the two groups compare line by line:
//! - `chacha20/ChaCha12Rng`: chacha20 0.10's ChaCha12 RNG (runtime-detected AVX2 on x86-64;
//!   its RNG interface has no AVX-512 backend).
//! - `rand_chacha/ChaCha12Rng`: rand_chacha 0.10's (ppv-lite86, runtime-detected AVX2).
//! - `chacha20/core_blocks`: chacha20 0.10's ChaCha12 core writing the blocks straight into
//!   the buffer (`write_keystream_blocks`; runtime-detected AVX-512, 16 blocks at a time, with
//!   the workspace's `--cfg chacha20_avx512`): the fastest keystream here, and what the
//!   engine's generator refills from (`crates/engine/src/rng.rs`). It writes 1 KiB at a time
//!   (its full width) and its time is scaled from the whole kibibytes to the byte count.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chacha20::cipher::{Array, StreamCipherCore};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::distr::{Alphanumeric, SampleString};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use secretgen::{
    CharClass, ConfigDraft, Generator, GeneratorConfig, GeneratorType, Instance, InstanceId,
    Snapshot, Version,
};
use secretgen_oracle::adapter;
use secretgen_oracle::reference::Reference;

/// Codes per call of the bulk path.
const BULK: usize = 1000;

fn contenders(c: &mut Criterion, name: &str, config: &GeneratorConfig) {
    let generator = Generator::new(config);
    let alphabet = config.alphabet().as_bytes().to_vec();
    let alphabet_chars: Vec<char> = alphabet.iter().map(|&b| char::from(b)).collect();
    let len = config.length().get();
    let mut group = c.benchmark_group(name);
    // Every time is per code: codes per second beside it, as in `keystream`.
    group.throughput(Throughput::Elements(1));

    group.bench_function("secretgen/owned", |b| {
        b.iter(|| black_box(generator.generate().unwrap()))
    });
    let mut buf = vec![0u8; len];
    group.bench_function("secretgen/fill", |b| {
        b.iter(|| {
            generator.fill(&mut buf).unwrap();
            black_box(&buf);
        })
    });
    // The bulk path: 1000 codes per call into one buffer, timed per code.
    let mut bulk = vec![0u8; len * BULK];
    group.bench_function("secretgen/fill_codes", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                generator.fill_codes(&mut bulk).unwrap();
                black_box(&bulk);
            }
            start.elapsed() / BULK as u32
        })
    });
    let mut rng: StdRng = rand::make_rng();
    group.bench_function("rand/choose", |b| {
        b.iter(|| {
            let code: String = (0..len)
                .map(|_| char::from(*alphabet.choose(&mut rng).unwrap()))
                .collect();
            black_box(code)
        })
    });
    // The same draws into a buffer, no String: the like of our fill path.
    group.bench_function("rand/choose_into_buffer", |b| {
        b.iter(|| {
            for slot in buf.iter_mut() {
                *slot = *alphabet.choose(&mut rng).unwrap();
            }
            black_box(&buf);
        })
    });
    let alphanumeric = config.classes().len() == 3 && !config.includes(CharClass::Symbols);
    if alphanumeric && !config.exclude_ambiguous() {
        group.bench_function("rand/alphanumeric", |b| {
            b.iter(|| black_box(Alphanumeric.sample_string(&mut rng, len)))
        });
    }
    group.bench_function("nanoid", |b| {
        b.iter(|| black_box(nanoid::nanoid!(len, &alphabet_chars)))
    });
    if !config.includes(CharClass::Symbols) && !config.exclude_ambiguous() {
        let passwords = passwords::PasswordGenerator::new()
            .length(len)
            .numbers(config.includes(CharClass::Digits))
            .lowercase_letters(config.includes(CharClass::Lower))
            .uppercase_letters(config.includes(CharClass::Upper))
            .symbols(false)
            .spaces(false)
            .exclude_similar_characters(false)
            .strict(false);
        group.bench_function("passwords", |b| {
            b.iter(|| black_box(passwords.generate_one().unwrap()))
        });
    }
    group.finish();
}

fn by_type(c: &mut Criterion) {
    for t in GeneratorType::ALL {
        contenders(c, t.short_name(), &GeneratorConfig::default_for(t));
    }
}

/// 8 characters of `A-Za-z0-9`, 300 s expiry.
fn alnum8_config() -> GeneratorConfig {
    GeneratorConfig::new(&ConfigDraft {
        length: secretgen::CodeLength::new(8),
        expiry: secretgen::Expiry::from_secs(300),
        include_lower_letters: true,
        include_upper_letters: true,
        include_digits: true,
        ..ConfigDraft::new(GeneratorType::OtpSms)
    })
    .unwrap()
}

fn alnum8(c: &mut Criterion) {
    contenders(c, "alnum8", &alnum8_config());
}

/// The random bytes [`BULK`] codes of `config` draw: measured over a million codes of the
/// reference sampler (the law the engine is tested against), from a fixed seed.
fn bytes_per_bulk(config: &GeneratorConfig) -> usize {
    const SAMPLE: u64 = 1_000_000;
    let mut reference = Reference::new(&adapter::shape(config), [1; 32]);
    for _ in 0..SAMPLE {
        black_box(reference.code());
    }
    (reference.bytes_drawn() * BULK as u64).div_ceil(SAMPLE) as usize
}

/// The keystreams alone: each fills the bytes [`BULK`] alnum8 codes draw, timed per code.
fn keystream(c: &mut Criterion) {
    let bytes = bytes_per_bulk(&alnum8_config());
    eprintln!(
        "keystream: {bytes} bytes per {BULK} alnum8 codes ({:.3} a code, measured)",
        bytes as f64 / BULK as f64
    );
    let mut group = c.benchmark_group("keystream");
    group.throughput(Throughput::Elements(1));
    let mut buf = vec![0u8; bytes];
    fn per_code<R: Rng>(rng: &mut R, buf: &mut [u8]) -> impl FnMut(u64) -> Duration {
        move |iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rng.fill_bytes(buf);
                black_box(&*buf);
            }
            start.elapsed() / BULK as u32
        }
    }
    let mut chacha20 = chacha20::ChaCha12Rng::from_seed(rand::random());
    group.bench_function("chacha20/ChaCha12Rng", |b| {
        b.iter_custom(per_code(&mut chacha20, &mut buf))
    });
    let mut rand_chacha = rand_chacha::ChaCha12Rng::from_seed(rand::random());
    group.bench_function("rand_chacha/ChaCha12Rng", |b| {
        b.iter_custom(per_code(&mut rand_chacha, &mut buf))
    });
    let mut core = chacha20::ChaChaCore::<chacha20::R12, chacha20::variants::Legacy>::from_seed(
        rand::random(),
    );
    // 16 blocks (1 KiB) at a time, its full width, as the engine writes them; the time of the
    // whole 1 KiB writes is scaled to the byte count.
    let mut blocks = [[0u8; 64]; 16];
    let chunks = bytes / 1024;
    group.bench_function("chacha20/core_blocks", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..chunks {
                    core.write_keystream_blocks(Array::cast_slice_from_core_mut(&mut blocks));
                    black_box(&blocks);
                }
            }
            start
                .elapsed()
                .mul_f64(bytes as f64 / (chunks * 1024) as f64)
                / BULK as u32
        })
    });
    group.finish();
}

/// Generation through the registry, alone and while another thread swaps the configuration
/// 1000 times a second between two of the same shape (so only the swapping differs).
fn swap(c: &mut Criterion) {
    let t = GeneratorType::OtpSms;
    let start = SystemTime::now();
    let instance = Arc::new(Instance::with_defaults(
        InstanceId::new("bench").unwrap(),
        start,
    ));
    let a = GeneratorConfig::default_for(t);
    let mut draft = a.to_draft();
    draft.expiry = secretgen::Expiry::from_secs(600);
    let b = GeneratorConfig::new(&draft).unwrap();
    let mut group = c.benchmark_group("swap");
    let mut buf = vec![0u8; a.length().get()];

    let mut run = |name: &str, group: &mut criterion::BenchmarkGroup<_>| {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let snapshot = instance.load(t);
                snapshot.generator().fill(&mut buf).unwrap();
                black_box(&buf);
            })
        });
    };
    run("no_swaps", &mut group);

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (instance, stop) = (instance.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sequence = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                sequence += 1;
                let config = if sequence.is_multiple_of(2) {
                    a.clone()
                } else {
                    b.clone()
                };
                let version = Version {
                    sequence,
                    creation_date: start,
                    change_date: SystemTime::now(),
                };
                instance.replace(Snapshot::new(config, version));
                next += Duration::from_millis(1);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            sequence
        })
    };
    let began = Instant::now();
    run("1000_swaps_per_second", &mut group);
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    group.finish();
    eprintln!(
        "swap: {swaps} swaps in {:.1} s ({:.0} per second)",
        began.elapsed().as_secs_f64(),
        swaps as f64 / began.elapsed().as_secs_f64()
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = alnum8, keystream, swap, by_type
}
criterion_main!(benches);
