//! The fuzz targets' inputs and checks, one module per target, shared by `fuzz/fuzz_targets/`
//! and by the replay in `tests/fuzz_regressions.rs`.
//!
//! Each module has an `Input` (an [`Arbitrary`] type whose `Debug` is a reproducer:
//! `cargo fuzz fmt <target> <file>` prints it) and a `check` that panics when an invariant
//! breaks.

use std::fmt;

use arbitrary::{Arbitrary, Unstructured};

pub mod config_body;
pub mod expiry;
pub mod generate;
pub mod generator_type;

/// Every target, by its name in `fuzz/Cargo.toml` and under `fuzz/corpus/` and
/// `fuzz/regressions/`.
pub const TARGETS: [&str; 4] = ["config_body", "generator_type", "expiry", "generate"];

/// A text input, for the targets that parse text: all of the fuzzer's bytes up to the first
/// invalid UTF-8.
#[derive(Debug)]
pub struct Text(pub String);

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        String::arbitrary(u).map(Text)
    }

    fn arbitrary_take_rest(u: Unstructured<'a>) -> arbitrary::Result<Self> {
        String::arbitrary_take_rest(u).map(Text)
    }
}

/// Why bytes did not become a target's input; `fuzz_target!` skips such inputs silently.
#[derive(Debug)]
pub enum Undecoded {
    /// Fewer bytes than the input type's minimum size.
    TooShort {
        /// The input type's minimum, from its size hint.
        minimum: usize,
    },
    /// The input type refused the bytes.
    Refused(arbitrary::Error),
}

impl fmt::Display for Undecoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undecoded::TooShort { minimum } => {
                write!(f, "shorter than the input's minimum of {minimum} bytes")
            }
            Undecoded::Refused(e) => write!(f, "refused by the input type: {e}"),
        }
    }
}

/// Decodes `data` as `target`'s input exactly as `libfuzzer_sys::fuzz_target!` does, and
/// checks it.
///
/// # Errors
/// When the bytes do not decode, where `fuzz_target!` would skip them.
///
/// # Panics
/// When `target` is unknown, or the input breaks an invariant of the target.
pub fn run(target: &str, data: &[u8]) -> Result<(), Undecoded> {
    match target {
        "config_body" => decode(data).map(|i| config_body::check(&i)),
        "generator_type" => decode(data).map(|i| generator_type::check(&i)),
        "expiry" => decode(data).map(|i| expiry::check(&i)),
        "generate" => decode(data).map(|i| generate::check(&i)),
        _ => panic!("unknown fuzz target {target:?}; known: {TARGETS:?}"),
    }
}

/// `fuzz_target!`'s decoding (libfuzzer-sys 0.4): inputs shorter than the type's minimum
/// size hint are skipped, the rest go whole to `arbitrary_take_rest`.
fn decode<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Result<T, Undecoded> {
    let minimum = T::size_hint(0).0;
    if data.len() < minimum {
        return Err(Undecoded::TooShort { minimum });
    }
    T::arbitrary_take_rest(Unstructured::new(data)).map_err(Undecoded::Refused)
}
