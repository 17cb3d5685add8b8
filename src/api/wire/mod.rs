//! The API's JSON, as grpc-gateway writes it (protobuf's JSON mapping): lowerCamelCase names,
//! enums by name, 64-bit integers as strings, durations as `"300s"`, timestamps in RFC 3339
//! UTC. Request bodies are read leniently the protobuf way (a field left out or `null` takes
//! its zero value, integers may come as strings, unknown fields are ignored) and strictly
//! everywhere else: a field of the wrong type is a field violation.

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{ApiError, Violation};
use secretgen_core::service::{Codes, GeneratorView, Preview, SearchQuery, SearchResult};
use secretgen_engine::config::{CodeLength, ConfigDraft, Field, FieldViolation, floor_hundredths};
use secretgen_engine::generator_type::{GeneratorType, ParseGeneratorTypeError};
use secretgen_engine::registry::{InstanceId, Version};

pub use crate::protojson::timestamp;
pub use codes::{
    code_stats, issue_request, issued, unlock_request, unlocked, verified, verify_request,
};
pub use events::{EventPageBody, event_query};
pub use tokens::{created_token, new_token, token_page, token_query};

mod codes;
mod events;
mod tokens;

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

/// A configuration's fields, the one HTTP rendering of a configuration: in a
/// `secretGenerator` and in the audit log's `config` and `previous`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFields {
    length: i64,
    /// `null` only for a draft whose expiry is unacceptable, which no stored event holds.
    expiry: Option<String>,
    include_lower_letters: bool,
    include_upper_letters: bool,
    include_digits: bool,
    include_symbols: bool,
    exclude_ambiguous: bool,
    require_each_class: bool,
}

impl ConfigFields {
    /// The fields of `draft` (a valid configuration's draft, or an event's).
    pub fn of(draft: &ConfigDraft) -> ConfigFields {
        ConfigFields {
            length: match draft.length {
                Ok(length) => length.get() as i64,
                Err(e) => e.value(),
            },
            expiry: draft
                .expiry
                .ok()
                .map(|e| crate::protojson::duration_text(e.duration())),
            include_lower_letters: draft.include_lower_letters,
            include_upper_letters: draft.include_upper_letters,
            include_digits: draft.include_digits,
            include_symbols: draft.include_symbols,
            exclude_ambiguous: draft.exclude_ambiguous,
            require_each_class: draft.require_each_class,
        }
    }
}

/// A `secretGenerator` object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretGenerator {
    generator_type: &'static str,
    details: Details,
    #[serde(flatten)]
    config: ConfigFields,
    entropy_bits: f64,
}

impl SecretGenerator {
    /// The generator of `snapshot`, in `instance`.
    pub fn of(snapshot: &GeneratorView, instance: &InstanceId) -> SecretGenerator {
        let c = snapshot.config();
        SecretGenerator {
            generator_type: c.generator_type().full_name(),
            details: Details::of(snapshot.version(), instance),
            config: ConfigFields::of(&c.to_draft()),
            entropy_bits: floor_hundredths(c.entropy_bits()),
        }
    }
}

/// A request body as a JSON object; an empty body is an empty object. A body of only
/// whitespace is not empty: it is refused as invalid JSON, as every JSON parser refuses it.
/// A key repeated in any object of the body, at any depth, is refused (400, naming the key
/// as a field violation), as protojson and grpc-gateway refuse it, rather than letting the
/// last one win. The body is parsed once.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    use serde::de::DeserializeSeed;
    if body.is_empty() {
        return Ok(Map::new());
    }
    let repeated = std::cell::Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = UniqueKeys {
        at: At::Root,
        repeated: &repeated,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match (parsed, repeated.take()) {
        (Err(e), _) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
        (Ok(_), Some(path)) => Err(ApiError::invalid(
            format!(
                "the request body has the key {path:?} more than once; each key may appear \
                 once in an object"
            ),
            vec![Violation::new(path, "appears more than once in its object")],
        )),
        (Ok(Value::Object(map)), None) => Ok(map),
        (Ok(_), None) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
    }
}

/// Where a value sits in a body, to name a repeated key the way field violations name
/// fields: `query.limit`, `queries[0].typeQuery.generatorType`. Borrowed from the parser's
/// stack: nothing is allocated unless a key repeats.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn write(&self, out: &mut String) {
        match self {
            At::Root => {}
            At::Key(parent, key) => {
                parent.write(out);
                if !matches!(parent, At::Root) {
                    out.push('.');
                }
                out.push_str(key);
            }
            At::Index(parent, i) => {
                parent.write(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
}

/// Deserializes a [`Value`] exactly as `Value`'s own `Deserialize` does, and leaves in
/// `repeated` the path of the first key an object repeats. The parse goes on to the end, so
/// that a body that is not JSON at all is reported as such. serde_json's recursion limit
/// (128 levels) still bounds the depth.
#[derive(Clone, Copy)]
struct UniqueKeys<'a> {
    at: At<'a>,
    repeated: &'a std::cell::Cell<Option<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let at = At::Index(&self.at, items.len());
            let seed = UniqueKeys {
                at,
                repeated: self.repeated,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let first = self.repeated.take().unwrap_or_else(|| {
                    let mut path = String::new();
                    At::Key(&self.at, &key).write(&mut path);
                    path
                });
                self.repeated.set(Some(first));
            }
            let value = map.next_value_seed(UniqueKeys {
                at: At::Key(&self.at, &key),
                repeated: self.repeated,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
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

/// A PUT body as a [`ConfigDraft`] for `generator_type`, the path's type or why it is
/// none (then the draft's type is unreadable and the body is read all the same, so that
/// every violation is listed at once). A field of the wrong JSON type is listed as
/// unreadable (with why) and takes its zero value; the one check of the draft,
/// [`secretgen_engine::GeneratorConfig::new`], reports it and judges no rule that reads it.
pub fn config_draft(
    object: &Map<String, Value>,
    generator_type: Result<GeneratorType, ParseGeneratorTypeError>,
) -> ConfigDraft {
    let mut draft = match generator_type {
        Ok(t) => ConfigDraft::new(t),
        Err(e) => ConfigDraft::with_unreadable_type(e.to_string()),
    };
    let mut unreadable = |field: Field, why: &str| {
        draft.unreadable.push(FieldViolation {
            field,
            description: why.to_owned(),
        })
    };
    let mut length = CodeLength::new(0);
    if let Some(value) = field(object, "length") {
        match integer(value) {
            Some(n) => length = CodeLength::new(n),
            None => unreadable(Field::Length, "must be an integer"),
        }
    }
    let mut expiry = None;
    match field(object, "expiry") {
        None => {}
        Some(Value::String(s)) => expiry = Some(crate::protojson::expiry(s)),
        Some(_) => unreadable(Field::Expiry, "must be a duration string such as \"300s\""),
    }
    let mut flags = [false; 6];
    for (flag, field_) in flags.iter_mut().zip(Field::FLAGS) {
        match field(
            object,
            super::error::json_name(secretgen_core::service::Subject::Config(field_)),
        ) {
            None => {}
            Some(Value::Bool(b)) => *flag = *b,
            Some(_) => unreadable(field_, "must be true or false"),
        }
    }
    draft.length = length;
    if let Some(expiry) = expiry {
        draft.expiry = expiry;
    }
    [
        draft.include_lower_letters,
        draft.include_upper_letters,
        draft.include_digits,
        draft.include_symbols,
        draft.exclude_ambiguous,
        draft.require_each_class,
    ] = flags;
    draft
}

/// The paging of a search body's `query` (`offset`, `limit`, `asc`), ZITADEL's
/// `ListQuery`: offset and limit 0 when absent, ascending unless `asc` is false.
fn list_query(object: &Map<String, Value>, violations: &mut Vec<Violation>) -> (u64, u64, bool) {
    let mut paging = (0, 0, true);
    match field(object, "query") {
        None => {}
        Some(Value::Object(query)) => {
            let mut count = |name: &str| {
                let path = format!("query.{name}");
                match read_integer(query, name, &path, violations) {
                    Some(n) if n < 0 || n > i128::from(u32::MAX) => {
                        violations.push(Violation::new(path, "must be between 0 and 4294967295"));
                        0
                    }
                    n => n.unwrap_or(0) as u64,
                }
            };
            paging.0 = count("offset");
            paging.1 = count("limit");
            match field(query, "asc") {
                None => {}
                Some(Value::Bool(b)) => paging.2 = *b,
                Some(_) => violations.push(Violation::new("query.asc", "must be true or false")),
            }
        }
        Some(_) => violations.push(Violation::new("query", "must be an object")),
    }
    paging
}

/// A `_search` body.
pub fn search(object: &Map<String, Value>) -> Result<SearchQuery, ApiError> {
    let mut violations = Vec::new();
    let mut search = SearchQuery::default();
    (search.offset, search.limit, search.ascending) = list_query(object, &mut violations);
    match field(object, "queries") {
        None => {}
        Some(Value::Array(queries)) => {
            for (i, q) in queries.iter().enumerate() {
                let path = format!("queries[{i}].typeQuery.generatorType");
                let t = q
                    .get("typeQuery")
                    .and_then(|tq| tq.get("generatorType"))
                    .filter(|t| !t.is_null());
                match t.map(generator_type) {
                    Some(Ok(t)) => search.narrow(t),
                    Some(Err(e)) => violations.push(Violation::new(path, e)),
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

/// A generator type in a JSON field: its full or short name, or its number as a JSON number
/// or a string of digits (SPEC section 1), read as the path segment is read.
fn generator_type(value: &Value) -> Result<GeneratorType, String> {
    match value {
        Value::String(s) => s
            .parse()
            .map_err(|e: ParseGeneratorTypeError| e.to_string()),
        // Written as an integer (`7`, not `7.0`), as integer fields are read.
        Value::Number(n) => n
            .to_string()
            .parse()
            .map_err(|e: ParseGeneratorTypeError| e.to_string()),
        _ => Err(
            "must be a generator type: a name such as \"SECRET_GENERATOR_TYPE_OTP_SMS\" \
                  or \"otp_sms\", or a number from 1 to 8"
                .to_owned(),
        ),
    }
}

/// The `count` of a `_generate` body: 1 when absent. Its range is the use case's rule.
pub fn count(object: &Map<String, Value>) -> Result<i128, ApiError> {
    let mut violations = Vec::new();
    match read_integer(object, "count", "count", &mut violations) {
        None if violations.is_empty() => Ok(1),
        Some(n) => Ok(n),
        None => Err(ApiError::invalid("invalid generate request", violations)),
    }
}

/// The `_preview` answer: `valid`, every violation (by JSON name, as a PUT's 400 names
/// them), `entropyBits` (null when the length or the alphabet is not valid) and the sample
/// codes (empty unless valid).
pub fn preview(preview: &Preview) -> Value {
    let violations: Vec<Value> = preview
        .violations
        .iter()
        .map(|v| {
            serde_json::json!({
                "field": super::error::json_name(v.subject),
                "description": v.description,
            })
        })
        .collect();
    let samples: Vec<Value> = preview
        .samples
        .iter()
        .flat_map(Codes::iter)
        .map(|code| Value::String(String::from_utf8_lossy(code).into_owned()))
        .collect();
    serde_json::json!({
        "valid": preview.violations.is_empty(),
        "violations": violations,
        "entropyBits": preview.entropy_bits.map(floor_hundredths),
        "samples": samples,
    })
}

/// The `_search` answer.
pub fn search_response(found: &SearchResult, instance: &InstanceId) -> Value {
    let result: Vec<SecretGenerator> = found
        .generators
        .iter()
        .map(|s| SecretGenerator::of(s, instance))
        .collect();
    serde_json::json!({
        "details": {
            "totalResult": found.total.to_string(),
            "processedSequence": found.processed_sequence.to_string(),
            "viewTimestamp": timestamp(found.view_timestamp),
        },
        "result": result,
    })
}

/// The `_generate` answer, with the codes written straight into it: codes are drawn from
/// alphabets without `"` or `\\`, so they need no escaping. The answer's buffer is zeroed
/// when the server is done with it (it holds the codes); what actix-http copies into a
/// connection's write buffer, and the kernel's socket buffers, are not ours to zero.
pub fn generate_response(codes: &Codes) -> actix_web::web::Bytes {
    let expires = codes.expires_at.map(timestamp);
    let sequence = codes.sequence.to_string();
    let name = codes.generator_type.full_name();
    // Exactly the answer's size, so that the buffer never grows: growing would free a copy
    // of the codes written so far without zeroing it.
    let per_code = codes.length + 12 + expires.as_ref().map_or(0, |e| e.len() + 15);
    let size = 45 + name.len() + sequence.len() + codes.count() * per_code - 1;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"generatorType\":\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\",\"sequence\":\"");
    out.extend_from_slice(sequence.as_bytes());
    out.extend_from_slice(b"\",\"codes\":[");
    for (i, code) in codes.iter().enumerate() {
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
    debug_assert_eq!(out.len(), size, "the answer's size is computed exactly");
    actix_web::web::Bytes::from_owner(secretgen_core::service::SecretBytes(out))
}

/// Seconds and nanoseconds of a duration, for tests.
#[cfg(test)]
fn at(secs: u64, nanos: u32) -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests;
