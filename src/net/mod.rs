//! What both transports stand on, below them: connections that no client can keep from
//! others ([`conn`]: SPEC section 13's send and idle timeouts, and the budget of bytes a
//! gRPC connection's answers may hold ahead of its socket) and TLS that SIGHUP re-reads
//! ([`tls`]). HTTP (`api`, served by `server`) and gRPC (`grpc`) accept their connections
//! through [`conn::accept`]. What they share about a request (the body limit, the request
//! id) is in [`request`]; the counters of connections the watchdog closed in [`metrics`].

pub mod conn;
pub mod metrics;
pub mod request;
pub mod tls;
