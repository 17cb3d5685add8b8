//! secretgen's generation engine: configurations, exactly uniform sampling and the snapshots
//! readers load without a lock.
//!
//! It knows no transport and no storage: no serde, no HTTP, no store, no lock, no logging
//! (`.ci/engine-boundary.sh` fails CI when one of them comes in). The `secretgen` crate
//! re-exports every module here under the same path (`secretgen::generator`, ...).
//!
//! 1. A [`ConfigDraft`] (what an admin wrote) becomes a [`GeneratorConfig`] through one
//!    constructor that checks every rule and reports every violation at once.
//! 2. A valid configuration is compiled once into a [`Generator`]: alphabet table, rejection
//!    zone and exact entropy.
//! 3. A [`Snapshot`] (configuration, generator, version) is swapped whole into its
//!    [`Instance`]; readers load it without a lock and never see half an update.
//! 4. [`Generator::generate`] makes an owned [`Code`] with its expiry, and
//!    [`Generator::fill`] writes a code into a caller's buffer without allocating.
//!
//! Every code is exactly uniform over its alphabet (rejection sampling, see [`Generator`]),
//! drawn from ChaCha12 keyed by the operating system per thread (see [`rng`]).

pub mod alphabet;
pub mod config;
mod entropy;
pub mod expiry;
pub mod generator;
pub mod generator_type;
pub mod registry;
pub mod rng;

pub use alphabet::{Alphabet, CharClass, ClassSet};
pub use config::{CodeLength, ConfigDraft, ConfigError, FieldViolation, GeneratorConfig};
pub use expiry::Expiry;
pub use generator::{Code, FillError, Generator};
pub use generator_type::GeneratorType;
pub use registry::{Instance, InstanceId, Snapshot, Version};
pub use rng::{CodeRng, EntropyError};
