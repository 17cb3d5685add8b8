#![no_main]
//! See `secretgen_oracle::targets::expiry`.

use libfuzzer_sys::fuzz_target;
use secretgen_oracle::targets::expiry::{Input, check};

fuzz_target!(|input: Input| check(&input));
