//! Test oracles for secretgen, each property written once and driven by the property tests
//! (`tests/rules.rs`, `tests/statistics.rs`, `tests/hot_swap.rs`), the fuzz targets (`fuzz/`)
//! and the replay of their corpus and crashes (`tests/fuzz_regressions.rs`):
//!
//! - [`spec`]: the SPEC's tables restated (classes, ambiguous characters, type names, limits,
//!   floors), and what follows from them: a configuration's [`Shape`](spec::Shape), its
//!   alphabet, class sizes and entropy.
//! - [`rules`]: SPEC section 4, which fields a [`Proposal`](rules::Proposal) violates
//!   ([`rules::violations`]), the validator's answer checked against it
//!   ([`rules::check_verdict`]), and what every accepted configuration satisfies
//!   ([`rules::check_valid`]).
//! - [`fit`]: whether a code is one its configuration can produce ([`fit::fits`]).
//! - [`reference`]: the reference sampler, plain sequential rejection over a seeded stream.
//! - [`adapter`]: the one conversion between a proposal and the crate's draft type.
//! - [`targets`]: each fuzz target's input and check, one module per target, and
//!   [`targets::run`], which decodes bytes exactly as `libfuzzer_sys::fuzz_target!` does.
//!
//! Nothing here depends on libFuzzer, so that ordinary tests on the stable toolchain use it.
//! No check prints a generated code, even when it fails.

pub mod adapter;
pub mod fit;
pub mod reference;
pub mod rules;
pub mod spec;
pub mod targets;

pub use targets::{TARGETS, run};
