//! The life of an issued code (SPEC section 12): `issue` draws a code for a subject from the
//! type's live configuration, exactly as `generate` does, and stores only its keyed hash;
//! `verify` answers whether a typed code is a pending code of the subject, at most once.
//! Both go through the store's codes flow ([`crate::store::codes`]) on a blocking thread,
//! and answer once its effect is durable.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::activity::HourCounts;
use super::{Error, Grant, Operation, ReadGenerators, Service, Subject, Violation};
use crate::store::codes::{IssueRequest, Issued, UnlockRequest, VerifyRequest, ordered_id};
use crate::store::{from_micros, to_micros, truncate_to_micros};
use crate::token::Permission;
use crate::verification::{
    CodeFor, CodeSubject, Keyring, Limits, TypedCode, VerifyResult, guess_chance,
};
use secretgen_engine::generator::Code;
use secretgen_engine::generator_type::GeneratorType;

/// Issue a code for a subject.
#[derive(Debug)]
pub enum IssueCodes {}

impl Operation for IssueCodes {
    const PERMISSION: Permission = Permission::CodesIssue;
    const RATE_LIMITED: bool = true;
}

/// Verify a subject's code.
#[derive(Debug)]
pub enum VerifyCodes {}

impl Operation for VerifyCodes {
    const PERMISSION: Permission = Permission::CodesVerify;
    const RATE_LIMITED: bool = true;
}

/// Lift a subject's lock (an admin's change, recorded in the log).
#[derive(Debug)]
pub enum UnlockSubjects {}

impl Operation for UnlockSubjects {
    const PERMISSION: Permission = Permission::IamWrite;
    const RATE_LIMITED: bool = false;
}

/// What an unlock did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlocked {
    /// The failures cleared; 0 when there was nothing to clear (and nothing was written).
    pub failures: u64,
    /// Whether the subject was locked.
    pub was_locked: bool,
    /// The event that records it: its sequence and time; `None` when nothing was cleared.
    pub event: Option<(u64, SystemTime)>,
}

/// What issuing and verifying need: the keys and the limits.
#[derive(Clone, Debug)]
pub struct CodeSettings {
    /// The keys codes and subjects are hashed under.
    pub keys: Arc<Keyring>,
    /// The limits on attempts and issues.
    pub limits: Limits,
}

/// An issued code: shown to the caller once, zeroed when dropped.
#[derive(Debug)]
pub struct IssuedCode {
    /// Its id, `vc_…`.
    pub id: String,
    /// The code.
    pub code: Code,
    /// When it expires.
    pub expires_at: SystemTime,
    /// The sequence of the configuration it was drawn with.
    pub sequence: u64,
    /// The verifications it may take.
    pub attempts_left: u32,
}

/// What a verification found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verification {
    /// The result.
    pub result: VerifyResult,
    /// How many more verifications the subject's pending codes may take.
    pub attempts_left: u32,
}

/// The subject, or its violation.
fn subject(text: &str) -> Result<CodeSubject, Violation> {
    CodeSubject::new(text).map_err(|e| Violation {
        subject: Subject::CodeSubject,
        description: e.to_string(),
    })
}

impl Service {
    /// These use cases with issuing and verifying codes under `settings`.
    pub fn with_codes(mut self, settings: CodeSettings) -> Service {
        self.codes = Some(settings);
        self
    }

    fn code_settings(&self) -> Result<&CodeSettings, Error> {
        self.codes.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(
                "this server issues no codes: it was started without a verify key".to_owned(),
            )
        })
    }

    /// Issues a code of `generator_type` for `subject`: drawn from the live configuration,
    /// stored as its keyed hash, and returned once that is durable. Refused (400) for a type
    /// whose codes never expire, and (429, with the wait) while the subject is locked or
    /// has had too many issues lately.
    pub async fn issue(
        &self,
        _: &Grant<IssueCodes>,
        generator_type: GeneratorType,
        subject_text: &str,
    ) -> Result<IssuedCode, Error> {
        let subject = subject(subject_text).map_err(|v| Error::Invalid {
            message: "invalid issue request",
            violations: vec![v],
        })?;
        let settings = self.code_settings()?;
        let snapshot = self.control.get(generator_type);
        let expiry = snapshot.config().expiry();
        if expiry.is_never() {
            return Err(Error::FailedPrecondition(format!(
                "codes of {generator_type} never expire (expiry 0s), so they cannot be issued: \
                 give the type an expiry first"
            )));
        }
        let code = snapshot
            .generator()
            .generate()
            .map_err(|_| Error::Internal("the operating system gave no randomness"))?;
        let instance = self.instance_id().clone();
        let now = truncate_to_micros(SystemTime::now());
        let expires_at = now + expiry.duration();
        // In time order, as the subjects' ids: see `ordered_id`.
        let id = ordered_id("vc_", to_micros(now));
        let what = CodeFor {
            instance: &instance,
            generator_type,
            subject: &subject,
            id: &id,
        };
        let (key_id, mac) = settings.keys.sign_code(&what, code.expose());
        let subjects = settings
            .keys
            .subject_macs(&instance, generator_type, &subject);
        let request = IssueRequest::new(
            instance,
            generator_type,
            subjects,
            id.clone(),
            key_id.as_str(),
            &mac,
            to_micros(now),
            to_micros(expires_at),
        );
        let store = Arc::clone(self.control.store());
        let limits = settings.limits;
        let issued = store.issue_code(request, &limits).await.map_err(|e| {
            Error::store(
                e,
                "the store cannot record the code",
                "the store is damaged",
            )
        })?;
        match issued {
            Issued::Stored { attempts_left } => {
                self.metrics.code_issued(generator_type);
                self.activity.issued(generator_type, now);
                Ok(IssuedCode {
                    id,
                    code,
                    expires_at,
                    sequence: snapshot.version().sequence,
                    attempts_left,
                })
            }
            Issued::Locked { until } => Err(Error::RateLimited {
                message: "this subject is locked after too many failed verifications",
                retry_after: wait_until(until, now),
            }),
            Issued::TooSoon { retry_after } => Err(Error::RateLimited {
                message: "too many codes issued for this subject lately; retry later",
                retry_after: Duration::from_micros(retry_after.max(0) as u64),
            }),
        }
    }

    /// Checks `typed` against the pending codes of `subject` and `generator_type`, once: an
    /// approval consumes them all; a failure is counted before the answer.
    pub async fn verify(
        &self,
        _: &Grant<VerifyCodes>,
        generator_type: GeneratorType,
        subject_text: &str,
        typed: &str,
    ) -> Result<Verification, Error> {
        let alphabet = self.control.get(generator_type);
        let subject = subject(subject_text);
        let typed =
            TypedCode::new(typed, alphabet.config().alphabet().as_str()).map_err(|e| Violation {
                subject: Subject::TypedCode,
                description: e.to_string(),
            });
        let (subject, typed) = match (subject, typed) {
            (Ok(s), Ok(t)) => (s, t),
            (s, t) => {
                return Err(Error::Invalid {
                    message: "invalid verify request",
                    violations: [s.err(), t.err()].into_iter().flatten().collect(),
                });
            }
        };
        let settings = self.code_settings()?;
        let now = to_micros(SystemTime::now());
        let request = VerifyRequest::new(
            self.instance_id().clone(),
            generator_type,
            subject,
            typed,
            Arc::clone(&settings.keys),
            now,
        );
        let store = Arc::clone(self.control.store());
        let limits = settings.limits;
        let verified = store.verify_code(request, &limits).await.map_err(|e| {
            Error::store(
                e,
                "the store cannot record the verification",
                "the store is damaged",
            )
        })?;
        self.metrics
            .code_verified(generator_type, verified.result, verified.locked);
        self.activity
            .verified(generator_type, verified.result, SystemTime::now());
        if verified.locked {
            tracing::warn!(generator_type = %generator_type, "subject locked after too many failed verifications");
        }
        Ok(Verification {
            result: verified.result,
            attempts_left: verified.attempts_left,
        })
    }
}

impl Service {
    /// Lifts the lock of `subject` of `generator_type` and clears its failures, recorded in
    /// the log as made by the grant's principal; nothing is written when there is nothing to
    /// clear.
    pub async fn unlock(
        &self,
        grant: &Grant<UnlockSubjects>,
        generator_type: GeneratorType,
        subject_text: &str,
    ) -> Result<Unlocked, Error> {
        let subject = subject(subject_text).map_err(|v| Error::Invalid {
            message: "invalid unlock request",
            violations: vec![v],
        })?;
        let settings = self.code_settings()?;
        let request = UnlockRequest::new(
            self.instance_id().clone(),
            generator_type,
            &subject,
            &settings.keys,
            to_micros(SystemTime::now()),
        );
        let author = crate::store::Author {
            name: grant.principal.name.clone(),
            token_id: grant.principal.token_id().map(str::to_owned),
        };
        let store = Arc::clone(self.control.store());
        let event = tokio::task::spawn_blocking(move || store.unlock_subject(request, &author))
            .await
            .map_err(|_| Error::Internal("the unlock was interrupted"))?
            .map_err(|e| {
                Error::store(
                    e,
                    "the store cannot record the unlock",
                    "the store is damaged",
                )
            })?;
        let Some(event) = event else {
            return Ok(Unlocked {
                failures: 0,
                was_locked: false,
                event: None,
            });
        };
        let crate::store::Change::Unlock(facts) = &event.change else {
            return Err(Error::Internal("the store recorded another event"));
        };
        tracing::info!(
            generator_type = %generator_type,
            sequence = event.sequence,
            by = %grant.principal.name,
            failures = facts.failures,
            "subject unlocked"
        );
        Ok(Unlocked {
            failures: u64::try_from(facts.failures).unwrap_or(0),
            was_locked: facts.locked_until.is_some(),
            event: Some((event.sequence, event.created_at)),
        })
    }
}

/// What issued codes did lately, per type, and what an attacker could achieve.
#[derive(Clone, Debug)]
pub struct CodeStats {
    /// The limits in force.
    pub limits: Limits,
    /// Every type, in type order.
    pub types: Vec<TypeStats>,
}

/// One type's figures.
#[derive(Clone, Debug)]
pub struct TypeStats {
    /// The type.
    pub generator_type: GeneratorType,
    /// What this server issued and verified in the last hour.
    pub hour: HourCounts,
    /// Subjects locked now (the whole deployment's, from the store).
    pub locked_subjects: u64,
    /// The entropy of one code of the live configuration, in bits.
    pub entropy_bits: f64,
    /// The chance of guessing a pending code within the failures a lock allows: that many
    /// guesses over the number of codes the configuration can make.
    pub guess_chance: f64,
}

impl Service {
    /// What issued codes did in the last hour on this server, the locked subjects of the
    /// deployment, and the chance of a guess within the limits, per type.
    pub async fn code_stats(&self, _: &Grant<ReadGenerators>) -> Result<CodeStats, Error> {
        let settings = self.code_settings()?;
        let store = Arc::clone(self.control.store());
        let now = SystemTime::now();
        let counts = tokio::task::spawn_blocking(move || store.code_counts(to_micros(now)))
            .await
            .map_err(|_| Error::Internal("the count was interrupted"))?
            .map_err(|e| {
                Error::store(
                    e,
                    "the store cannot count the locks",
                    "the store is damaged",
                )
            })?;
        let types = GeneratorType::ALL
            .into_iter()
            .map(|t| {
                let config = self.control.get(t);
                let entropy_bits = config.config().entropy_bits();
                TypeStats {
                    generator_type: t,
                    hour: self.activity.hour(t, now),
                    locked_subjects: counts
                        .locked
                        .iter()
                        .find(|(locked, _)| *locked == t)
                        .map_or(0, |(_, n)| *n),
                    entropy_bits,
                    guess_chance: guess_chance(entropy_bits, settings.limits.lock_after),
                }
            })
            .collect();
        Ok(CodeStats {
            limits: settings.limits,
            types,
        })
    }
}

/// The time from `now` to `until` (microseconds), at least a microsecond.
fn wait_until(until: i64, now: SystemTime) -> Duration {
    from_micros(until)
        .duration_since(now)
        .unwrap_or(Duration::from_micros(1))
}
