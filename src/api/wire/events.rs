//! The audit log's JSON: a search's filters and paging read from its body, and a page of
//! events written straight into the answer's bytes.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{ConfigFields, field, generator_type, list_query, read_integer, timestamp};
use crate::api::error::{ApiError, Violation};
use secretgen_core::service::{Change, EventType};
use secretgen_core::service::{EventPage, EventQuery};

/// A `POST /admin/v1/events/_search` body: the filters (`generatorType`, `eventTypes`,
/// `creator`, `creatorId`, `fromSequence`, `since`, `until`) and the paging of `query` (a
/// limit of 0 or over [`secretgen_core::service::audit::MAX_PAGE`] is read as that cap).
pub fn event_query(object: &Map<String, Value>) -> Result<EventQuery, ApiError> {
    let mut violations = Vec::new();
    let mut query = EventQuery::default();
    (query.offset, query.limit, query.ascending) = list_query(object, &mut violations);
    if let Some(value) = field(object, "generatorType") {
        match generator_type(value) {
            Ok(t) => query.generator_type = Some(t),
            Err(e) => violations.push(Violation::new("generatorType", e)),
        }
    }
    match field(object, "eventTypes") {
        None => {}
        Some(Value::Array(items)) => {
            let mut types = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str().and_then(EventType::from_name) {
                    Some(t) => types.push(t),
                    None => violations.push(Violation::new(
                        format!("eventTypes[{i}]"),
                        format!(
                            "must be one of {}",
                            EventType::ALL.map(EventType::as_str).join(", ")
                        ),
                    )),
                }
            }
            query.event_types = Some(types);
        }
        Some(_) => violations.push(Violation::new("eventTypes", "must be an array of names")),
    }
    match field(object, "creator") {
        None => {}
        Some(Value::String(c)) => query.creator = Some(c.clone()),
        Some(_) => violations.push(Violation::new("creator", "must be a string")),
    }
    match field(object, "creatorId") {
        None => {}
        Some(Value::String(c)) => query.creator_id = Some(c.clone()),
        Some(_) => violations.push(Violation::new("creatorId", "must be a string")),
    }
    match read_integer(object, "fromSequence", "fromSequence", &mut violations) {
        Some(n) if n < 0 || n > i128::from(i64::MAX) => violations.push(Violation::new(
            "fromSequence",
            "must be between 0 and 9223372036854775807",
        )),
        Some(n) => query.from_sequence = n as u64,
        None => {}
    }
    for (name, slot) in [("since", &mut query.since), ("until", &mut query.until)] {
        match field(object, name) {
            None => {}
            Some(Value::String(text)) => match rfc3339(text) {
                Some(t) => *slot = Some(t),
                None => violations.push(Violation::new(
                    name,
                    "must be an RFC 3339 time such as \"2026-12-01T00:00:00Z\"",
                )),
            },
            Some(_) => violations.push(Violation::new(name, "must be an RFC 3339 time string")),
        }
    }
    if violations.is_empty() {
        Ok(query)
    } else {
        Err(ApiError::invalid("invalid event search", violations))
    }
}

/// An RFC 3339 time (`2026-12-01T10:00:00Z`, `2026-12-01T12:00:00.5+02:00`), from 1970 on.
fn rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (base, offset_secs) = if let Some(base) = text.strip_suffix(['Z', 'z']) {
        (base, 0i64)
    } else {
        // Not `split_at`: the text is a client's, and byte 6 from the end may fall inside a
        // character.
        let split = text.len().checked_sub(6)?;
        let (base, offset) = (text.get(..split)?, text.get(split..)?);
        let sign = match offset.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = offset[1..].split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        if h > 23 || m > 59 {
            return None;
        }
        (base, sign * (h * 3600 + m * 60))
    };
    let utc = humantime::parse_rfc3339(&format!("{}Z", base.replace('t', "T"))).ok()?;
    let shifted = if offset_secs >= 0 {
        utc.checked_sub(std::time::Duration::from_secs(offset_secs as u64))?
    } else {
        utc.checked_add(std::time::Duration::from_secs((-offset_secs) as u64))?
    };
    Some(shifted)
}

/// The answer to an event search: each event with its sequence, type, what it is about, what
/// it wrote (a configuration, or a token's public facts), what it replaced, when and by whom.
/// Typed and borrowed, written straight into the answer's bytes: a page of a thousand events
/// costs a few allocations an event, not a JSON tree of them (SPEC section 13: readers of the
/// log must not eat the server's memory).
#[derive(Serialize)]
pub struct EventPageBody<'a> {
    details: PageDetails,
    result: Vec<EventItem<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageDetails {
    total_result: String,
    /// Present (`true`) only when more events match than `totalResult`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    total_result_is_lower_bound: bool,
    processed_sequence: String,
    view_timestamp: String,
}

/// One event of a page, in the order grpc-gateway writes its fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventItem<'a> {
    sequence: String,
    event_type: &'static str,
    creation_date: String,
    creator: &'a str,
    creator_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    generator_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<ConfigFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<ConfigFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<TokenItem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unlock: Option<UnlockItem<'a>>,
}

/// An unlock's facts: the subject's keyed hash, never the subject.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UnlockItem<'a> {
    subject_hash: &'a str,
    key_id: &'a str,
    failures: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_until: Option<String>,
}

/// A token event's public facts (never the token or its hash).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenItem<'a> {
    name: &'a str,
    permissions: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

impl EventPageBody<'_> {
    /// The answer for `page`.
    pub fn of(page: &EventPage) -> EventPageBody<'_> {
        let result = page
            .entries
            .iter()
            .map(|entry| {
                let e = entry;
                let mut item = EventItem {
                    sequence: e.sequence.to_string(),
                    event_type: e.event_type.as_str(),
                    creation_date: timestamp(e.created_at),
                    creator: &e.creator,
                    creator_id: e.creator_id.as_deref().unwrap_or_default(),
                    generator_type: None,
                    config: None,
                    previous: None,
                    token_id: None,
                    token: None,
                    unlock: None,
                };
                match &e.change {
                    Change::Config(config) => {
                        item.generator_type = Some(config.generator_type.full_name());
                        item.config = Some(ConfigFields::of(config));
                        item.previous = entry.previous.as_ref().map(ConfigFields::of);
                    }
                    Change::Token(facts) => {
                        item.token_id = Some(&facts.token_id);
                        item.token = Some(TokenItem {
                            name: &facts.name,
                            permissions: &facts.permissions,
                            expires_at: facts.expires().map(timestamp),
                        });
                    }
                    Change::Unlock(facts) => {
                        item.generator_type = Some(facts.generator_type.full_name());
                        item.unlock = Some(UnlockItem {
                            subject_hash: &facts.subject_hash,
                            key_id: &facts.key_id,
                            failures: facts.failures,
                            locked_until: facts.locked_until().map(timestamp),
                        });
                    }
                }
                item
            })
            .collect();
        EventPageBody {
            details: PageDetails {
                total_result: page.total.to_string(),
                total_result_is_lower_bound: page.total_is_lower_bound,
                processed_sequence: page.processed_sequence.to_string(),
                view_timestamp: timestamp(SystemTime::now()),
            },
            result,
        }
    }

    /// The answer's JSON bytes, in one buffer sized for the page.
    pub fn to_json(&self) -> Vec<u8> {
        // About 600 bytes an event with both configurations: one allocation, seldom grown.
        let mut out = Vec::with_capacity(256 + 640 * self.result.len());
        serde_json::to_writer(&mut out, self).expect("plain fields serialize");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::at;
    use secretgen_engine::config::{CodeLength, ConfigDraft};
    use secretgen_engine::generator_type::GeneratorType;
    use serde_json::json;

    #[test]
    fn an_event_page_is_written_as_the_api_shows_it() {
        use secretgen_core::service::{AuditEntry, Change, EventType, TokenFacts};
        use secretgen_engine::config::GeneratorConfig;
        let config = GeneratorConfig::default_for(GeneratorType::OtpSms).to_draft();
        let previous = ConfigDraft {
            length: CodeLength::new(6),
            ..config.clone()
        };
        let event = |sequence, event_type, change, previous| AuditEntry {
            sequence,
            event_type,
            change,
            created_at: at(1_795_339_958, 719_000_000),
            creator: "ops".into(),
            creator_id: Some("tok_1".into()),
            previous,
        };
        let token = TokenFacts {
            token_id: "tok_2".into(),
            name: "reader".into(),
            permissions: vec!["iam.read".into()],
            expires_at: Some(1_795_339_958_000_000),
            created_by: Some("tok_1".into()),
        };
        let mut page = EventPage {
            total: 12,
            total_is_lower_bound: false,
            processed_sequence: 30,
            entries: vec![
                event(
                    7,
                    EventType::Changed,
                    Change::Config(config),
                    Some(previous),
                ),
                event(8, EventType::TokenAdded, Change::Token(token), None),
            ],
        };
        let written = |page: &EventPage| -> Value {
            serde_json::from_slice(&EventPageBody::of(page).to_json()).unwrap()
        };
        let body = written(&page);
        let sms = |length| {
            json!({"length": length, "expiry": "300s", "includeLowerLetters": false,
                   "includeUpperLetters": false, "includeDigits": true, "includeSymbols": false,
                   "excludeAmbiguous": false, "requireEachClass": false})
        };
        assert_eq!(
            body["result"],
            json!([
                {"sequence": "7", "eventType": "instance.secret.generator.changed",
                 "creationDate": "2026-11-22T09:32:38.719Z", "creator": "ops",
                 "creatorId": "tok_1", "generatorType": "SECRET_GENERATOR_TYPE_OTP_SMS",
                 "config": sms(8), "previous": sms(6)},
                {"sequence": "8", "eventType": "instance.token.added",
                 "creationDate": "2026-11-22T09:32:38.719Z", "creator": "ops",
                 "creatorId": "tok_1", "tokenId": "tok_2",
                 "token": {"name": "reader", "permissions": ["iam.read"],
                           "expiresAt": "2026-11-22T09:32:38Z"}},
            ])
        );
        assert_eq!(body["details"]["totalResult"], "12");
        assert_eq!(body["details"]["processedSequence"], "30");
        assert!(body["details"].get("totalResultIsLowerBound").is_none());
        page.total_is_lower_bound = true;
        assert_eq!(written(&page)["details"]["totalResultIsLowerBound"], true);
    }
}
