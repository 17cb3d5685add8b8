//! The one error of the use cases. Each transport turns it into its own answer (an HTTP status
//! and the SPEC's JSON body, a gRPC status), through one mapping of its own.

use std::time::Duration;

use crate::store::{StoreError, StoreErrorKind};
use crate::token::Permission;
use secretgen_engine::config::{ConfigError, Field};
use secretgen_engine::generator_type::ParseGeneratorTypeError;

/// What a field violation is about: a configuration field, or a field of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A field of a configuration (the generator type of a path is one too).
    Config(Field),
    /// How many codes a generate request asks for.
    Count,
    /// A new token's name.
    TokenName,
    /// A new token's permissions.
    TokenPermissions,
    /// A new token's expiry.
    TokenExpiry,
    /// What an issued code is for (`subject`).
    CodeSubject,
    /// A code as a person typed it (`code`).
    TypedCode,
}

/// One violated rule of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What it is about.
    pub subject: Subject,
    /// What is wrong, for a person.
    pub description: String,
}

/// Why a use case refused or failed. A refused call changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credential, or one the server does not know.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller lacks the permission the use case needs.
    #[error("the token lacks the permission {0}")]
    PermissionDenied(Permission),
    /// The caller is over its rate, or a subject over its limits; it may try again after
    /// the wait.
    #[error("{message}")]
    RateLimited {
        /// What is over its limit, for a person.
        message: &'static str,
        /// How long until the next call is let through.
        retry_after: Duration,
    },
    /// The request breaks rules; every violation at once.
    #[error("{message}")]
    Invalid {
        /// What kind of request was refused.
        message: &'static str,
        /// Every violated rule.
        violations: Vec<Violation>,
    },
    /// What the call names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid, but what it would make exists already (a live token's name):
    /// the same request may succeed once that changes.
    #[error("{message}")]
    AlreadyExists {
        /// What kind of request was refused.
        message: &'static str,
        /// The field that names what exists.
        violation: Violation,
    },
    /// The store cannot do what was asked now; the caller may try again.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A store call failed: unavailable to the caller (who may try again), or internal when
    /// the store is damaged ([`Error::is_damaged`]). `source` is the store's own words, for
    /// the server's log and the command line; a transport never sends them (they name files).
    #[error("{message}")]
    Store {
        /// What could not be done, for the caller.
        message: &'static str,
        /// Why.
        source: StoreError,
    },
    /// The request is valid, but the state of what it names does not allow it (a code of a
    /// type that never expires cannot be issued).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Something broke that the caller cannot fix.
    #[error("{0}")]
    Internal(&'static str),
}

impl Error {
    /// An invalid request with one violation.
    pub fn invalid(message: &'static str, subject: Subject, description: String) -> Error {
        Error::Invalid {
            message,
            violations: vec![Violation {
                subject,
                description,
            }],
        }
    }

    /// The failure of a store call, said `damaged` when the store is corrupt, `unavailable`
    /// otherwise. Logged here, once, with the store's own words.
    pub(crate) fn store(e: StoreError, unavailable: &'static str, damaged: &'static str) -> Error {
        tracing::error!(error = %e, "{unavailable}");
        Error::Store {
            message: match e.kind() {
                StoreErrorKind::Corrupt => damaged,
                _ => unavailable,
            },
            source: e,
        }
    }

    /// Whether this is the failure of a damaged store: an internal error, not one to retry.
    pub fn is_damaged(&self) -> bool {
        matches!(self, Error::Store { source, .. } if source.kind() == StoreErrorKind::Corrupt)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Invalid {
            message: "invalid secret generator configuration",
            violations: e
                .violations()
                .iter()
                .map(|v| Violation {
                    subject: Subject::Config(v.field),
                    description: v.description.clone(),
                })
                .collect(),
        }
    }
}

impl From<ParseGeneratorTypeError> for Error {
    fn from(e: ParseGeneratorTypeError) -> Error {
        Error::invalid(
            "invalid generator type",
            Subject::Config(Field::GeneratorType),
            e.to_string(),
        )
    }
}
