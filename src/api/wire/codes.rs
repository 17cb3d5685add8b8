//! The JSON of issued codes (SPEC section 12): the `_issue` and `_verify` bodies and their
//! answers. The answer to an issue holds the code, so it is written straight into a buffer
//! of its exact size that is zeroed when the server is done with it, as `_generate`'s is.

use serde_json::{Map, Value};

use super::{Details, field, generator_type, timestamp};
use crate::api::error::{ApiError, Violation};
use secretgen_core::service::{CodeStats, IssuedCode, Unlocked, Verification};
use secretgen_core::verification::CodeSubject;
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::{InstanceId, Version};

/// A string field that must be there.
fn required_string<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    violations: &mut Vec<Violation>,
) -> &'a str {
    match field(object, name) {
        Some(Value::String(text)) => text,
        None | Some(Value::Null) => {
            violations.push(Violation::new(name, "is required"));
            ""
        }
        Some(_) => {
            violations.push(Violation::new(name, "must be a string"));
            ""
        }
    }
}

/// An `_issue` body: `{"subject": "…"}`. Only the JSON type is checked here; the rules are
/// the use case's.
pub fn issue_request(object: &Map<String, Value>) -> Result<&str, ApiError> {
    let mut violations = Vec::new();
    let subject = required_string(object, "subject", &mut violations);
    if violations.is_empty() {
        Ok(subject)
    } else {
        Err(ApiError::invalid("invalid issue request", violations))
    }
}

/// A `_verify` body: `{"subject": "…", "code": "…"}`.
pub fn verify_request(object: &Map<String, Value>) -> Result<(&str, &str), ApiError> {
    let mut violations = Vec::new();
    let subject = required_string(object, "subject", &mut violations);
    let code = required_string(object, "code", &mut violations);
    if violations.is_empty() {
        Ok((subject, code))
    } else {
        Err(ApiError::invalid("invalid verify request", violations))
    }
}

/// The `_issue` answer: `{"id", "code", "expiresAt", "sequence", "attemptsLeft"}`, in a
/// buffer zeroed when dropped.
pub fn issued(issued: &IssuedCode) -> actix_web::web::Bytes {
    let expires = timestamp(issued.expires_at);
    let sequence = issued.sequence.to_string();
    let attempts = issued.attempts_left.to_string();
    let parts: [&[u8]; 11] = [
        b"{\"id\":\"",
        issued.id.as_bytes(),
        b"\",\"code\":\"",
        issued.code.expose().as_bytes(),
        b"\",\"expiresAt\":\"",
        expires.as_bytes(),
        b"\",\"sequence\":\"",
        sequence.as_bytes(),
        b"\",\"attemptsLeft\":",
        attempts.as_bytes(),
        b"}",
    ];
    // Exactly the answer's size, so that the buffer never grows (and frees a copy unzeroed).
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    actix_web::web::Bytes::from_owner(secretgen_core::service::SecretBytes(out))
}

/// The `_verify` answer: `{"result": "VERIFY_RESULT_…", "attemptsLeft": N}`.
pub fn verified(verification: &Verification) -> Value {
    serde_json::json!({
        "result": verification.result.name(),
        "attemptsLeft": verification.attempts_left,
    })
}

/// A `POST /admin/v1/verifications/_unlock` body: `{"generatorType": "…", "subject": "…"}`.
pub fn unlock_request(object: &Map<String, Value>) -> Result<(GeneratorType, &str), ApiError> {
    let mut violations = Vec::new();
    let t = match field(object, "generatorType") {
        None | Some(Value::Null) => {
            violations.push(Violation::new("generatorType", "is required"));
            None
        }
        Some(value) => generator_type(value)
            .map_err(|why| violations.push(Violation::new("generatorType", why)))
            .ok(),
    };
    let read = violations.len();
    let subject = required_string(object, "subject", &mut violations);
    if t.is_none() && violations.len() == read {
        // Refused anyway: the subject's own rule is reported with the type's.
        if let Err(e) = CodeSubject::new(subject) {
            violations.push(Violation::new("subject", e.to_string()));
        }
    }
    match t {
        Some(t) if violations.is_empty() => Ok((t, subject)),
        _ => Err(ApiError::invalid("invalid unlock request", violations)),
    }
}

/// The `_unlock` answer: `{"unlocked", "wasLocked", "failures"}`, and the `details` of the
/// event that records it when something was cleared.
pub fn unlocked(unlocked: &Unlocked, instance: &InstanceId) -> Value {
    let mut answer = serde_json::json!({
        "unlocked": unlocked.event.is_some(),
        "wasLocked": unlocked.was_locked,
        "failures": unlocked.failures,
    });
    if let Some((sequence, at)) = unlocked.event {
        let version = Version {
            sequence,
            creation_date: at,
            change_date: at,
        };
        answer["details"] =
            serde_json::to_value(Details::of(version, instance)).expect("details serialize");
    }
    answer
}

/// The `GET /admin/v1/verifications/stats` answer: the limits, and per type the last hour's
/// counts on this server, the deployment's locked subjects, the entropy and the chance of a
/// guess within the limits. Counts are int64 strings, as protobuf's JSON writes them.
pub fn code_stats(stats: &CodeStats) -> Value {
    use secretgen_core::verification::VerifyResult;
    let limits = &stats.limits;
    let types: Vec<Value> = stats
        .types
        .iter()
        .map(|t| {
            let mut verified = Map::new();
            for result in VerifyResult::ALL {
                let name = match result {
                    VerifyResult::Approved => "approved",
                    VerifyResult::Rejected => "rejected",
                    VerifyResult::Expired => "expired",
                    VerifyResult::Locked => "locked",
                    VerifyResult::NotFound => "notFound",
                };
                verified.insert(name.to_owned(), t.hour.verified(result).to_string().into());
            }
            serde_json::json!({
                "generatorType": t.generator_type.full_name(),
                "issued": t.hour.issued.to_string(),
                "verified": verified,
                "lockedSubjects": t.locked_subjects.to_string(),
                "entropyBits": secretgen_engine::config::floor_hundredths(t.entropy_bits),
                "guessChance": t.guess_chance,
            })
        })
        .collect();
    serde_json::json!({
        "window": "3600s",
        "limits": {
            "maxAttempts": limits.max_attempts,
            "lockAfter": limits.lock_after,
            "lockFor": secretgen_core::protojson::duration_text(limits.lock_for),
            "pending": limits.pending,
            "resendAfter": secretgen_core::protojson::duration_text(limits.resend_after),
            "issuesPerWindow": limits.issues_per_window,
            "window": secretgen_core::protojson::duration_text(limits.window),
        },
        "result": types,
    })
}
