#![no_main]
//! See `secretgen_fuzz::generator_type`.

use libfuzzer_sys::fuzz_target;
use secretgen_fuzz::generator_type::{Input, check};

fuzz_target!(|input: Input| check(&input));
