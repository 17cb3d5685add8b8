//! A steady loop over the `alnum8` generator (8 characters of `A-Za-z0-9`, 300 s expiry), for
//! instruction counts and quick timings:
//!
//! ```text
//! cargo build --release --example profile
//! valgrind --tool=callgrind target/release/examples/profile owned 200000
//! target/release/examples/profile owned 5000000
//! ```
//!
//! Modes: `owned` ([`Generator::generate`]), `fill` ([`Generator::fill`]), `fill_codes`
//! ([`Generator::fill_codes`], 1000 codes per call). Prints the characters drawn and the time
//! per code, never a code.

use std::hint::black_box;

use secretgen::{ConfigDraft, Generator, GeneratorConfig, GeneratorType};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "owned".into());
    let n: usize = args.next().map_or(100_000, |s| s.parse().expect("a count"));
    let config = GeneratorConfig::new(&ConfigDraft {
        length: secretgen::CodeLength::new(8),
        expiry: secretgen::Expiry::from_secs(300),
        include_lower_letters: true,
        include_upper_letters: true,
        include_digits: true,
        ..ConfigDraft::new(GeneratorType::OtpSms)
    })
    .expect("a valid configuration");
    let generator = Generator::new(&config);
    let mut total = 0usize;
    let start = std::time::Instant::now();
    match mode.as_str() {
        "owned" => {
            for _ in 0..n {
                total += black_box(generator.generate().expect("entropy")).len();
            }
        }
        "fill" => {
            let mut buf = [0u8; 8];
            for _ in 0..n {
                generator.fill(&mut buf).expect("entropy");
                total += black_box(&buf).len();
            }
        }
        "fill_codes" => {
            let mut buf = vec![0u8; 8 * 1000];
            for _ in 0..n / 1000 {
                total += generator.fill_codes(&mut buf).expect("entropy");
                black_box(&buf);
            }
        }
        other => panic!("unknown mode {other}"),
    }
    let per = start.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64;
    println!("{mode}: {total} chars, {per:.2} ns per code");
}
