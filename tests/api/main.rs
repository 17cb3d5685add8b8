//! The server as a black box: the real `secretgen serve` on port 0 with a fresh data
//! directory per test, driven over real sockets.

mod codes;
mod errors;
mod generators;
mod helpers;
mod lifecycle;
mod limits;
mod logging;
mod operations;
mod search;
mod tls;
