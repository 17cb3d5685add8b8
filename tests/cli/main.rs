//! The command line, run as real processes: `generate` with the defaults (generate.rs), and
//! the commands that use a store: `generate` with a stored configuration, `token`, `backup`,
//! `check`, and the clear refusals of stores that cannot be used (store.rs).

#[path = "../common/mod.rs"]
mod common;
mod generate;
mod store;
