#![no_main]
//! See `secretgen_oracle::targets::generator_type`.

use libfuzzer_sys::fuzz_target;
use secretgen_oracle::targets::generator_type::{Input, check};

fuzz_target!(|input: Input| check(&input));
