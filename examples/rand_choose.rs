//! The yardstick of `benches/cli.sh`: what a Rust user would write to print alphanumeric
//! codes with rand 0.10. `COUNT` codes (default 20,000,000) of 8 characters, each drawn with
//! `IndexedRandom::choose` from the 62 characters `A-Za-z0-9` over `StdRng` (ChaCha12, keyed
//! from the operating system), one per line on standard output through a 64 KiB buffer.
//!
//! `cargo run --release --example rand_choose -- 1000 | head -3`

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

/// The 62 characters of an alnum8 code, as secretgen's lower, upper and digit classes.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Characters per code.
const LENGTH: usize = 8;

fn main() -> ExitCode {
    let count: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 20_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("rand_choose: COUNT: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rng: StdRng = rand::make_rng();
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut line = [b'\n'; LENGTH + 1];
    for _ in 0..count {
        for slot in &mut line[..LENGTH] {
            *slot = *ALPHABET.choose(&mut rng).expect("a non-empty alphabet");
        }
        if let Err(e) = out.write_all(&line) {
            return quit(e);
        }
    }
    match out.flush() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => quit(e),
    }
}

/// A closed pipe ends the run quietly, as it ends `secretgen generate`.
fn quit(e: io::Error) -> ExitCode {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return ExitCode::SUCCESS;
    }
    eprintln!("rand_choose: {e}");
    ExitCode::from(1)
}
