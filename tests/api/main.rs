//! The server as a black box on port 0 with a fresh data directory per test, driven over
//! real sockets: the library's `Application` in the test process for what the API answers,
//! the real `secretgen serve` process for its command line, logs, signals and restarts
//! (helpers.rs says which is which).

mod audit;
mod codes;
#[path = "../common/mod.rs"]
mod common;
mod console;
mod errors;
mod generators;
mod grpc;
mod grpc_codes;
mod helpers;
mod lifecycle;
mod limits;
mod logging;
mod operations;
mod preview;
mod search;
mod timeouts;
mod tls;
mod tokens;
mod verify;
