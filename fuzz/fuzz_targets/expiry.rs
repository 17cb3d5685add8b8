#![no_main]
//! See `secretgen_fuzz::expiry`.

use libfuzzer_sys::fuzz_target;
use secretgen_fuzz::expiry::{Input, check};

fuzz_target!(|input: Input| check(&input));
