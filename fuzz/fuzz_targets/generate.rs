#![no_main]
//! See `secretgen_fuzz::generate`.

use libfuzzer_sys::fuzz_target;
use secretgen_fuzz::generate::{Input, check};

fuzz_target!(|input: Input| check(&input));
