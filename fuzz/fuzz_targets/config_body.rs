#![no_main]
//! See `secretgen_fuzz::config_body`.

use libfuzzer_sys::fuzz_target;
use secretgen_fuzz::config_body::{Input, check};

fuzz_target!(|input: Input| check(&input));
