//! secretgen: cryptographically random, exactly uniform secrets and one-time codes.
//!
//! The engine in four steps:
//! 1. A [`ConfigDraft`] (what an admin wrote) becomes a [`GeneratorConfig`] through one
//!    constructor that checks every rule and reports every violation at once.
//! 2. A valid configuration is compiled once into a [`Generator`]: alphabet table, rejection
//!    zone and exact entropy.
//! 3. A [`Snapshot`] (configuration, generator, version) is swapped whole into its
//!    [`Instance`]; readers load it without a lock and never see half an update.
//! 4. [`Generator::generate`] makes an owned [`Code`] with its expiry, and
//!    [`Generator::fill`] writes a code into a caller's buffer without allocating.
//!
//! ```
//! use secretgen::{Generator, GeneratorConfig, GeneratorType};
//!
//! let config = GeneratorConfig::default_for(GeneratorType::OtpSms);
//! let generator = Generator::new(&config);
//! let code = generator.generate()?;
//! assert_eq!(code.expose().len(), 8);
//! assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every code is exactly uniform over its alphabet (rejection sampling, see [`Generator`]),
//! drawn from ChaCha12 keyed by the operating system per thread (see [`rng`]).
//!
//! The engine (the steps above) is its own crate, `secretgen-engine`, with no serde, no HTTP,
//! no store and no lock; this crate re-exports its modules under the same paths and adds the
//! store, the control plane and the HTTP API.

pub mod api;
pub mod grpc;
pub mod logging;
pub mod net;
pub mod protojson;
pub mod server;

// The core (its own crate, `crates/core`), under the paths it always had.
pub use secretgen_core::{control, metrics, service, store, token, verification};

// The engine (its own crate, `crates/engine`), under the paths it always had.
pub use secretgen_engine::{alphabet, config, expiry, generator, generator_type, registry, rng};

pub use alphabet::{Alphabet, CharClass, ClassSet};
pub use config::{CodeLength, ConfigDraft, ConfigError, Field, FieldViolation, GeneratorConfig};
pub use control::{ControlPlane, OpenError};
pub use expiry::Expiry;
pub use generator::{Code, FillError, Generator};
pub use generator_type::GeneratorType;
pub use registry::{Instance, InstanceId, Snapshot, Version};
pub use rng::{CodeRng, EntropyError};
pub use store::{SqliteStore, Store, StoreError, StoreErrorKind};
