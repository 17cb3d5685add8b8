#![no_main]
//! See `secretgen_oracle::targets::config_body`.

use libfuzzer_sys::fuzz_target;
use secretgen_oracle::targets::config_body::{Input, check};

fuzz_target!(|input: Input| check(&input));
