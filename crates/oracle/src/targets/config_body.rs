//! `config_body`: a PUT body, read the way the server reads it, for each of the eight types.
//!
//! Checks, for bytes in and each generator type: [`secretgen::api::wire::object`], then
//! `config_draft` and [`secretgen::GeneratorConfig::new`], never panic; the draft holds what
//! the body says (booleans, the expiry, the length), and a field of the wrong JSON
//! type is unreadable; the validator's answer is the
//! rules' ([`rules::check_verdict`]: a valid configuration satisfies every rule and is what
//! the body says, an invalid one names exactly the violated fields); the API's error body
//! carries the same fields. The same body also goes through `wire::search` and
//! `wire::count`, whose answers are what the body says and whose errors name their own
//! fields.

use std::fmt;

use arbitrary::{Arbitrary, Result, Unstructured};
use secretgen::api::error::{GrpcCode, json_name};
use secretgen::api::{ApiError, wire};
use secretgen::service::{self, Subject};
use secretgen::{ConfigError, Field, GeneratorConfig, GeneratorType};
use serde_json::{Map, Value};

use crate::spec::FLAGS;
use crate::{adapter, rules};

/// Whether a configuration error may name `field`.
pub fn known_field(field: &str) -> bool {
    FLAGS.contains(&field) || ["generatorType", "length", "expiry", "entropyBits"].contains(&field)
}

/// A request body: all of the fuzzer's bytes, so a corpus file is a plain JSON body.
pub struct Input(pub Vec<u8>);

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Vec::arbitrary(u).map(Input)
    }

    fn arbitrary_take_rest(u: Unstructured<'a>) -> Result<Self> {
        Ok(Input(u.take_rest().to_vec()))
    }
}

impl fmt::Debug for Input {
    /// `Input(b"...")`, a Rust literal of the body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Input(b\"{}\")", self.0.escape_ascii())
    }
}

/// Panics when the body breaks an invariant; see the module.
pub fn check(input: &Input) {
    // What a plain parse (where a repeated key's last value wins) makes of the body.
    let plain = serde_json::from_slice::<Value>(&input.0);
    let object = match wire::object(&input.0) {
        Ok(object) => object,
        Err(e) => {
            assert_eq!(e.code(), GrpcCode::InvalidArgument);
            match fields(&e)[..] {
                // Not JSON, or not an object.
                [] => assert!(!matches!(plain, Ok(Value::Object(_))) || input.0.is_empty()),
                // A repeated key, named in the message: the body is otherwise JSON.
                [ref key] => {
                    assert!(plain.is_ok(), "{:?}", e.body());
                    let message = e.body()["message"].as_str().unwrap_or("").to_owned();
                    assert!(message.contains(&format!("{key:?}")), "{message}");
                    assert!(names_twice(key, &input.0), "{key:?} is not repeated");
                }
                _ => panic!("{:?}", e.body()),
            }
            return;
        }
    };
    // Accepted: the same value the plain parse makes (an empty body is `{}`).
    if !input.0.is_empty() {
        assert_eq!(plain.ok(), Some(Value::Object(object.clone())));
    }
    for t in GeneratorType::ALL {
        check_config(&object, t);
    }
    check_search(&object);
    check_count(&object);
}

/// Whether the body names the repeated key of path `key` (`query.limit`) at least twice,
/// judged on the text: the key is the path's last part, or a longer tail of it when the
/// key itself holds dots. `true` when the text cannot say (escapes).
fn names_twice(key: &str, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    if text.contains('\\') {
        return true;
    }
    let mut tail = key;
    loop {
        if text.matches(&format!("\"{tail}\"")).count() >= 2 {
            return true;
        }
        match tail.split_once('.') {
            Some((_, rest)) => tail = rest,
            None => return false,
        }
    }
}

/// The names of an error's field violations.
fn fields(e: &ApiError) -> Vec<String> {
    let body = e.body();
    body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["fieldViolations"].as_array().into_iter().flatten())
        .map(|v| {
            assert!(v["description"].as_str().is_some_and(|d| !d.is_empty()));
            v["field"].as_str().expect("a field name").to_owned()
        })
        .collect()
}

fn present<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

fn check_config(object: &Map<String, Value>, t: GeneratorType) {
    let draft = wire::config_draft(object, Ok(t));
    for v in &draft.unreadable {
        assert!(known_field(v.field.name()), "{v:?}");
        assert!(!v.description.is_empty());
    }
    let p = adapter::proposal(&draft);
    assert_eq!(p.generator_type, t.number());
    let unreadable = |name: &str| p.unreadable.contains(&name);

    // The draft holds what the body says; a field of the wrong JSON type is unreadable.
    let [lower, upper, digits, symbols] = p.classes();
    let flags = [
        lower,
        upper,
        digits,
        symbols,
        p.exclude_ambiguous,
        p.require_each_class,
    ];
    for (name, got) in FLAGS.into_iter().zip(flags) {
        match present(object, name) {
            None => assert!(!got && !unreadable(name), "{name}"),
            Some(Value::Bool(b)) => assert!(got == *b && !unreadable(name), "{name}"),
            Some(_) => assert!(!got && unreadable(name), "{name}"),
        }
    }
    match present(object, "expiry") {
        None => assert!(p.expiry == "0s" && !unreadable("expiry")),
        // Read into a typed expiry: the same one the rules read, or refused for the same
        // reason.
        Some(Value::String(s)) => {
            assert!(rules::expiry(&p.expiry) == rules::expiry(s) && !unreadable("expiry"));
        }
        Some(_) => assert!(p.expiry == "0s" && unreadable("expiry")),
    }
    match present(object, "length") {
        None => assert!(p.length == 0 && !unreadable("length")),
        Some(Value::Number(n)) if n.as_i64().is_some() => {
            assert!(Some(p.length) == n.as_i64() && !unreadable("length"));
        }
        Some(Value::Bool(_) | Value::Array(_) | Value::Object(_)) => {
            assert!(p.length == 0 && unreadable("length"));
        }
        // A number beyond 64 bits or with a fraction, or a string: read as an integer
        // (clamped to 64 bits), or unreadable and 0.
        Some(_) => assert!(!unreadable("length") || p.length == 0),
    }

    // The validator's verdict, against the rules.
    let answer = GeneratorConfig::new(&draft);
    let names = |e: ConfigError| e.fields().into_iter().map(Field::name).collect();
    rules::check_verdict(&p, &answer.clone().map_err(names));
    if let Err(e) = answer {
        for v in e.violations() {
            assert!(!v.description.is_empty());
        }
        // The API's error body carries the same violations, by their JSON names.
        let api = ApiError::from(service::Error::from(e.clone()));
        let want: Vec<&str> = e
            .fields()
            .into_iter()
            .map(|f| json_name(Subject::Config(f)))
            .collect();
        assert_eq!(fields(&api), want);
    }
}

fn check_search(object: &Map<String, Value>) {
    match wire::search(object) {
        Ok(s) => {
            assert!(s.offset <= u64::from(u32::MAX) && s.limit <= u64::from(u32::MAX));
            if present(object, "queries").is_none() {
                assert_eq!(s.types, None);
            }
            if let Some(types) = &s.types {
                assert!(types.len() <= 1, "{types:?}");
            }
            if present(object, "query").is_none() {
                assert!(s.ascending && s.offset == 0 && s.limit == 0);
            }
        }
        Err(e) => {
            assert_eq!(e.code(), GrpcCode::InvalidArgument);
            let fields = fields(&e);
            assert!(!fields.is_empty());
            for f in fields {
                assert!(f.starts_with("query") || f.starts_with("queries"), "{f}");
            }
        }
    }
}

fn check_count(object: &Map<String, Value>) {
    match wire::count(object) {
        Ok(n) => match present(object, "count") {
            None => assert_eq!(n, 1),
            Some(Value::Number(v)) if v.as_i64().is_some() => {
                assert_eq!(Some(n), v.as_i64().map(i128::from));
            }
            Some(_) => {}
        },
        Err(e) => {
            assert_eq!(e.code(), GrpcCode::InvalidArgument);
            assert_eq!(fields(&e), ["count"]);
        }
    }
}
