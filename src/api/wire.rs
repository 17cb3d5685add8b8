//! The API's JSON, as grpc-gateway writes it (protobuf's JSON mapping): lowerCamelCase names,
//! enums by name, 64-bit integers as strings, durations as `"300s"`, timestamps in RFC 3339
//! UTC. Request bodies are read leniently the protobuf way (a field left out or `null` takes
//! its zero value, integers may come as strings, unknown fields are ignored) and strictly
//! everywhere else: a field of the wrong type is a field violation.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{ApiError, Violation};
use crate::config::{ConfigDraft, floor_hundredths};
use crate::generator_type::GeneratorType;
use crate::registry::{InstanceId, Snapshot, Version};

/// A timestamp as protojson writes it: UTC, with 0, 3, 6 or 9 fractional digits.
pub fn timestamp(time: SystemTime) -> String {
    let nanos = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    if nanos == 0 {
        humantime::format_rfc3339_seconds(time).to_string()
    } else if nanos.is_multiple_of(1_000_000) {
        humantime::format_rfc3339_millis(time).to_string()
    } else if nanos.is_multiple_of(1_000) {
        humantime::format_rfc3339_micros(time).to_string()
    } else {
        humantime::format_rfc3339_nanos(time).to_string()
    }
}

/// `details` of a generator.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    sequence: String,
    creation_date: String,
    change_date: String,
    resource_owner: String,
}

impl Details {
    /// The details of `version` in `instance`.
    pub fn of(version: Version, instance: &InstanceId) -> Details {
        Details {
            sequence: version.sequence.to_string(),
            creation_date: timestamp(version.creation_date),
            change_date: timestamp(version.change_date),
            resource_owner: instance.to_string(),
        }
    }
}

/// A `secretGenerator` object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretGenerator {
    generator_type: &'static str,
    details: Details,
    length: usize,
    expiry: String,
    include_lower_letters: bool,
    include_upper_letters: bool,
    include_digits: bool,
    include_symbols: bool,
    exclude_ambiguous: bool,
    require_each_class: bool,
    entropy_bits: f64,
}

impl SecretGenerator {
    /// The generator of `snapshot`, in `instance`.
    pub fn of(snapshot: &Snapshot, instance: &InstanceId) -> SecretGenerator {
        let c = snapshot.config();
        let d = c.to_draft();
        SecretGenerator {
            generator_type: c.generator_type().full_name(),
            details: Details::of(snapshot.version(), instance),
            length: c.length().get(),
            expiry: d.expiry,
            include_lower_letters: d.include_lower_letters,
            include_upper_letters: d.include_upper_letters,
            include_digits: d.include_digits,
            include_symbols: d.include_symbols,
            exclude_ambiguous: d.exclude_ambiguous,
            require_each_class: d.require_each_class,
            entropy_bits: floor_hundredths(c.entropy_bits()),
        }
    }
}

/// A request body as a JSON object; an empty body is an empty object. A body of only
/// whitespace is not empty: it is refused as invalid JSON, as every JSON parser refuses it.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// The value of `name`, `None` when it is absent or `null`.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

/// An integer field, as a number or a string of digits (protojson accepts both).
fn integer(value: &Value) -> Option<i128> {
    match value {
        // Written as an integer: `8`, not `8.0` (which JSON Schema's draft 4, as OpenAPI 3.0
        // uses it, does not count as an integer).
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        // Digits, with a minus sign at most: what the OpenAPI description promises.
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        _ => None,
    }
}

fn read_integer(
    object: &Map<String, Value>,
    name: &str,
    path: &str,
    violations: &mut Vec<Violation>,
) -> Option<i128> {
    let value = field(object, name)?;
    let n = integer(value);
    if n.is_none() {
        violations.push(Violation::new(path, "must be an integer"));
    }
    n
}

fn read_bool(
    object: &Map<String, Value>,
    name: &str,
    path: &str,
    violations: &mut Vec<Violation>,
) -> bool {
    match field(object, name) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            violations.push(Violation::new(path, "must be true or false"));
            false
        }
    }
}

/// A PUT body as a [`ConfigDraft`] for `generator_type`, with the violations of fields of
/// the wrong JSON type. Those fields take their zero value in the draft; the caller drops
/// the draft's own violations of them.
pub fn config_draft(
    object: &Map<String, Value>,
    generator_type: GeneratorType,
) -> (ConfigDraft, Vec<Violation>) {
    let mut violations = Vec::new();
    let length = read_integer(object, "length", "length", &mut violations).unwrap_or(0);
    let expiry = match field(object, "expiry") {
        None => "0s".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            violations.push(Violation::new(
                "expiry",
                "must be a duration string such as \"300s\"",
            ));
            "0s".to_owned()
        }
    };
    let mut flag = |name: &str| read_bool(object, name, name, &mut violations);
    let draft = ConfigDraft {
        generator_type: generator_type.full_name().to_owned(),
        length: i64::try_from(length).unwrap_or(if length < 0 { i64::MIN } else { i64::MAX }),
        expiry,
        include_lower_letters: flag("includeLowerLetters"),
        include_upper_letters: flag("includeUpperLetters"),
        include_digits: flag("includeDigits"),
        include_symbols: flag("includeSymbols"),
        exclude_ambiguous: flag("excludeAmbiguous"),
        require_each_class: flag("requireEachClass"),
    };
    (draft, violations)
}

/// A search request: paging and the types asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Search {
    /// Results to skip.
    pub offset: u64,
    /// Most results to return; 0 for all.
    pub limit: u64,
    /// Ascending by type number (the default); `"asc": false` reverses.
    pub ascending: bool,
    /// Only these types, when given (several type queries must all hold, as in ZITADEL).
    pub types: Option<Vec<GeneratorType>>,
}

/// A `_search` body.
pub fn search(object: &Map<String, Value>) -> Result<Search, ApiError> {
    let mut violations = Vec::new();
    let mut search = Search {
        offset: 0,
        limit: 0,
        ascending: true,
        types: None,
    };
    match field(object, "query") {
        None => {}
        Some(Value::Object(query)) => {
            let mut count = |name: &str| {
                let path = format!("query.{name}");
                match read_integer(query, name, &path, &mut violations) {
                    Some(n) if n < 0 || n > i128::from(u32::MAX) => {
                        violations.push(Violation::new(path, "must be between 0 and 4294967295"));
                        0
                    }
                    n => n.unwrap_or(0) as u64,
                }
            };
            search.offset = count("offset");
            search.limit = count("limit");
            match field(query, "asc") {
                None => {}
                Some(Value::Bool(b)) => search.ascending = *b,
                Some(_) => violations.push(Violation::new("query.asc", "must be true or false")),
            }
        }
        Some(_) => violations.push(Violation::new("query", "must be an object")),
    }
    match field(object, "queries") {
        None => {}
        Some(Value::Array(queries)) => {
            for (i, q) in queries.iter().enumerate() {
                let path = format!("queries[{i}].typeQuery.generatorType");
                let t = q
                    .get("typeQuery")
                    .and_then(|tq| tq.get("generatorType"))
                    .and_then(Value::as_str);
                match t.map(str::parse::<GeneratorType>) {
                    Some(Ok(t)) => {
                        let types = search
                            .types
                            .get_or_insert_with(|| GeneratorType::ALL.to_vec());
                        types.retain(|&kept| kept == t);
                    }
                    Some(Err(e)) => violations.push(Violation::new(path, e.to_string())),
                    None => violations.push(Violation::new(
                        format!("queries[{i}]"),
                        "must be {\"typeQuery\": {\"generatorType\": \"...\"}}",
                    )),
                }
            }
        }
        Some(_) => violations.push(Violation::new("queries", "must be an array")),
    }
    if violations.is_empty() {
        Ok(search)
    } else {
        Err(ApiError::invalid("invalid search request", violations))
    }
}

/// The most codes one `_generate` returns.
pub const MAX_COUNT: i128 = 1000;

/// The `count` of a `_generate` body: 1 when absent.
pub fn count(object: &Map<String, Value>) -> Result<usize, ApiError> {
    let mut violations = Vec::new();
    match read_integer(object, "count", "count", &mut violations) {
        None if violations.is_empty() => Ok(1),
        Some(n) if (1..=MAX_COUNT).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(
            "invalid generate request",
            vec![Violation::new(
                "count",
                format!("must be between 1 and {MAX_COUNT}, got {n}"),
            )],
        )),
        None => Err(ApiError::invalid("invalid generate request", violations)),
    }
}

/// The `_generate` answer for `count` codes of `length` characters laid end to end in
/// `codes`, written directly: codes are drawn from alphabets without `"` or `\`, so they
/// need no escaping.
pub fn generate_response(
    generator_type: GeneratorType,
    sequence: u64,
    codes: &[u8],
    length: usize,
    expires_at: Option<SystemTime>,
) -> Vec<u8> {
    let expires = expires_at.map(timestamp);
    let per_code = length + 12 + expires.as_ref().map_or(0, |e| e.len() + 16);
    let mut out = Vec::with_capacity(96 + codes.len() / length.max(1) * per_code);
    out.extend_from_slice(b"{\"generatorType\":\"");
    out.extend_from_slice(generator_type.full_name().as_bytes());
    out.extend_from_slice(b"\",\"sequence\":\"");
    out.extend_from_slice(sequence.to_string().as_bytes());
    out.extend_from_slice(b"\",\"codes\":[");
    for (i, code) in codes.chunks_exact(length).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"code\":\"");
        out.extend_from_slice(code);
        out.push(b'"');
        if let Some(expires) = &expires {
            out.extend_from_slice(b",\"expiresAt\":\"");
            out.extend_from_slice(expires.as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Seconds and nanoseconds of a duration, for tests.
#[cfg(test)]
fn at(secs: u64, nanos: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::{DIGITS, LOWER, SYMBOLS, UPPER};
    use serde_json::json;

    #[test]
    fn timestamps_are_written_like_protojson() {
        assert_eq!(timestamp(at(1_795_339_958, 0)), "2026-11-22T09:32:38Z");
        assert_eq!(
            timestamp(at(1_795_339_958, 719_000_000)),
            "2026-11-22T09:32:38.719Z"
        );
        assert_eq!(
            timestamp(at(1_795_339_958, 719_123_000)),
            "2026-11-22T09:32:38.719123Z"
        );
        assert_eq!(
            timestamp(at(1_795_339_958, 719_123_456)),
            "2026-11-22T09:32:38.719123456Z"
        );
    }

    #[test]
    fn codes_need_no_json_escaping() {
        for alphabet in [LOWER, UPPER, DIGITS, SYMBOLS] {
            assert!(!alphabet.contains('"') && !alphabet.contains('\\'));
        }
        let body = generate_response(GeneratorType::OtpSms, 9, b"12345678abcdefgh", 8, None);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"generatorType": "SECRET_GENERATOR_TYPE_OTP_SMS", "sequence": "9",
                   "codes": [{"code": "12345678"}, {"code": "abcdefgh"}]})
        );
        let body = generate_response(
            GeneratorType::OtpSms,
            9,
            b"~!@#$^&*",
            8,
            Some(at(1_795_339_958, 0)),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["codes"][0]["code"], "~!@#$^&*");
        assert_eq!(v["codes"][0]["expiresAt"], "2026-11-22T09:32:38Z");
    }

    #[test]
    fn config_bodies_take_zero_values_and_report_wrong_types() {
        let body =
            object(br#"{"length": "10", "expiry": "60s", "includeDigits": true, "x": 1}"#).unwrap();
        let (draft, violations) = config_draft(&body, GeneratorType::OtpSms);
        assert!(violations.is_empty());
        assert_eq!(draft.length, 10);
        assert!(draft.include_digits && !draft.include_upper_letters);
        let body = object(
            br#"{"length": 8.5, "expiry": 300, "includeDigits": "yes", "excludeAmbiguous": null}"#,
        )
        .unwrap();
        let (draft, violations) = config_draft(&body, GeneratorType::OtpSms);
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["length", "expiry", "includeDigits"]);
        assert_eq!((draft.length, draft.expiry.as_str()), (0, "0s"));
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(object(b"").unwrap().is_empty());
        assert!(object(b"  \n").is_err());
        assert!(object(b"\t").is_err());
        assert!(object(b"[1]").is_err());
        assert!(object(b"{\"length\": ").is_err());
    }

    #[test]
    fn counts_default_to_one_and_stay_in_range() {
        assert_eq!(count(&object(b"{}").unwrap()).unwrap(), 1);
        assert_eq!(
            count(&object(b"{\"count\": \"1000\"}").unwrap()).unwrap(),
            1000
        );
        for bad in [
            &b"{\"count\": 0}"[..],
            b"{\"count\": 1001}",
            b"{\"count\": -1}",
            b"{\"count\": true}",
        ] {
            assert!(count(&object(bad).unwrap()).is_err());
        }
    }

    #[test]
    fn searches_read_paging_and_type_queries() {
        let s = search(&object(b"").unwrap()).unwrap();
        assert_eq!(
            (s.offset, s.limit, s.ascending, s.types),
            (0, 0, true, None)
        );
        let s = search(
            &object(
                br#"{"query": {"offset": "1", "limit": 2, "asc": false},
                        "queries": [{"typeQuery": {"generatorType": "otp_sms"}}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!((s.offset, s.limit, s.ascending), (1, 2, false));
        assert_eq!(s.types, Some(vec![GeneratorType::OtpSms]));
        let err = search(
            &object(br#"{"query": {"limit": -1}, "queries": [{"typeQuery": {"generatorType": "SECRET_GENERATOR_TYPE_UNSPECIFIED"}}]}"#)
                .unwrap(),
        )
        .unwrap_err();
        let body = err.body();
        let fields: Vec<&str> = body["details"][0]["fieldViolations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            ["query.limit", "queries[0].typeQuery.generatorType"]
        );
    }
}
