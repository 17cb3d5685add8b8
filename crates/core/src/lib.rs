//! secretgen's core: what the server does, whatever the transport.
//!
//! - [`service`]: the use cases. Each takes typed input and a [`service::Grant`] of its
//!   operation, and returns view types of its own; HTTP, gRPC and the command line (the
//!   `secretgen` crate) are thin adapters over them.
//! - [`control`]: the control plane. A configuration change is durable in the store before
//!   it is swapped into the live [`secretgen_engine::registry::Instance`].
//! - [`store`]: the event log with its hash chain, tokens and the audit search, on the
//!   embedded SQLite store or on PostgreSQL replicas; one flow over both.
//! - [`token`]: access tokens, their permissions and their hashes.
//! - [`metrics`]: the core's Prometheus families, in the registry the transports add theirs to.
//! - [`verification`]: issued codes' subjects, typed codes, keys and limits (SPEC section 12).
//! - [`protojson`]: protobuf's JSON duration, the form the log stores and the APIs speak.
//!
//! No transport and no wire format: `.ci/core-boundary.sh` fails CI when the core gains a
//! dependency on actix, hyper, tower, tonic, prost, serde_json or clap.

pub mod control;
pub mod metrics;
pub mod protojson;
pub mod service;
pub mod store;
pub mod token;
pub mod verification;
