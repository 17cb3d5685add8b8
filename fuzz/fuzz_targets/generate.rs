#![no_main]
//! See `secretgen_oracle::targets::generate`.

use libfuzzer_sys::fuzz_target;
use secretgen_oracle::targets::generate::{Input, check};

fuzz_target!(|input: Input| check(&input));
