//! The fuzz targets' inputs and checks, shared by the targets in `fuzz_targets/` and by the
//! main crate's `tests/fuzz_regressions.rs`, which includes this file with `#[path]` and
//! replays every file of `corpus/` and `regressions/` through [`run`].
//!
//! Each target has a module with an `Input` (an [`Arbitrary`] type whose `Debug` is a
//! reproducer: `cargo fuzz fmt <target> <file>` prints it) and a `check` that panics when an
//! invariant breaks. Nothing here may depend on libFuzzer, so that the test can use it.

use arbitrary::{Arbitrary, Unstructured};

/// Every target, by its name in `Cargo.toml` and under `corpus/` and `regressions/`.
pub const TARGETS: [&str; 4] = ["config_body", "generator_type", "expiry", "generate"];

/// Decodes `data` exactly as `libfuzzer_sys::fuzz_target!` does (inputs shorter than the
/// type's minimum size, or that do not decode, are skipped) and checks it. `false` when the
/// input was skipped.
///
/// # Panics
/// When `target` is unknown, or the input breaks an invariant of the target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "config_body" => decode(data).map(|i| config_body::check(&i)).is_some(),
        "generator_type" => decode(data).map(|i| generator_type::check(&i)).is_some(),
        "expiry" => decode(data).map(|i| expiry::check(&i)).is_some(),
        "generate" => decode(data).map(|i| generate::check(&i)).is_some(),
        _ => panic!("unknown fuzz target {target:?}; known: {TARGETS:?}"),
    }
}

fn decode<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    if data.len() < T::size_hint(0).0 {
        return None;
    }
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

/// Properties of a valid configuration that every target holding one checks.
pub mod valid {
    use secretgen::alphabet::{AMBIGUOUS, CharClass};
    use secretgen::config::{MIN_APP_SECRET_ENTROPY_BITS, MIN_CODE_ENTROPY_BITS};
    use secretgen::{Expiry, GeneratorConfig, GeneratorType};

    /// Slack for comparing entropies computed two ways in floating point.
    const EPSILON: f64 = 1e-6;

    /// The alphabet of `classes`, built from the class constants, not from [`secretgen::Alphabet`].
    pub fn alphabet(classes: [bool; 4], exclude_ambiguous: bool) -> Vec<u8> {
        CharClass::ALL
            .into_iter()
            .zip(classes)
            .filter(|(_, on)| *on)
            .flat_map(|(c, _)| c.chars().bytes())
            .filter(|b| !(exclude_ambiguous && AMBIGUOUS.as_bytes().contains(b)))
            .collect()
    }

    /// Per included class, how many of its characters the alphabet keeps.
    pub fn class_sizes(classes: [bool; 4], exclude_ambiguous: bool) -> Vec<usize> {
        CharClass::ALL
            .into_iter()
            .zip(classes)
            .filter(|(_, on)| *on)
            .map(|(c, _)| {
                c.chars()
                    .bytes()
                    .filter(|b| !(exclude_ambiguous && AMBIGUOUS.as_bytes().contains(b)))
                    .count()
            })
            .collect()
    }

    /// Bounds on the entropy of a configuration, in bits: without `requireEachClass` both are
    /// `length * log2(N)`; with it, the count lies between "one character of each class in
    /// the first positions, anything after" and "anything".
    pub fn entropy_bounds(sizes: &[usize], length: usize, require_each_class: bool) -> (f64, f64) {
        let n: usize = sizes.iter().sum();
        let upper = length as f64 * (n as f64).log2();
        if !require_each_class {
            return (upper, upper);
        }
        let lower = sizes.iter().map(|&s| (s as f64).log2()).sum::<f64>()
            + (length - sizes.len()) as f64 * (n as f64).log2();
        (lower, upper)
    }

    /// The entropy floor of `t`.
    pub fn floor(t: GeneratorType) -> f64 {
        if t == GeneratorType::AppSecret {
            MIN_APP_SECRET_ENTROPY_BITS
        } else {
            MIN_CODE_ENTROPY_BITS
        }
    }

    /// Panics unless `c` satisfies every rule of SPEC section 4, checked independently of
    /// the validator.
    pub fn check(c: &GeneratorConfig) {
        let length = c.length().get();
        assert!((1..=1024).contains(&length), "length {length}");
        let classes = CharClass::ALL.map(|k| c.includes(k));
        assert!(classes.contains(&true), "no class: {c:?}");
        assert_eq!(c.classes().len(), classes.iter().filter(|k| **k).count());
        assert_eq!(c.alphabet().classes(), c.classes());
        let want = alphabet(classes, c.exclude_ambiguous());
        assert_eq!(c.alphabet().as_bytes(), &want[..], "{c:?}");
        assert!(c.expiry().duration() <= Expiry::MAX, "{c:?}");
        assert!(
            c.expiry().is_never() || c.expiry().duration() >= std::time::Duration::from_secs(1),
            "expiry under a second: {c:?}"
        );
        assert!(
            !c.expiry().is_never() || c.generator_type() == GeneratorType::AppSecret,
            "expiry 0 for {}",
            c.generator_type()
        );
        assert!(
            !c.require_each_class() || length >= c.classes().len(),
            "requireEachClass with {} classes and length {length}",
            c.classes().len()
        );
        let bits = c.entropy_bits();
        let floor = floor(c.generator_type());
        assert!(bits >= floor, "{bits} bits, floor {floor}: {c:?}");
        let sizes = class_sizes(classes, c.exclude_ambiguous());
        let (lower, upper) = entropy_bounds(&sizes, length, c.require_each_class());
        assert!(
            bits >= lower - EPSILON && bits <= upper + EPSILON,
            "{bits} bits outside [{lower}, {upper}]: {c:?}"
        );
        // The configuration is what it says: written back and checked again, it is itself.
        assert_eq!(GeneratorConfig::new(&c.to_draft()).as_ref(), Ok(c));
        assert_eq!(Expiry::parse(&c.expiry().to_string()), Ok(c.expiry()));
    }
}

/// `config_body`: a PUT body, read the way the server reads it, for each of the eight types.
///
/// Checks, for bytes in and each generator type: [`secretgen::api::wire::object`], then
/// `config_draft` and [`secretgen::GeneratorConfig::new`], never panic; the draft holds what
/// the body says (booleans, the expiry string, the length); a valid configuration satisfies
/// every rule ([`valid::check`]) and matches the draft; an invalid one names known fields
/// only, and exactly the fields an independent restatement of the rules names. The same body
/// also goes through `wire::search` and `wire::count`, whose answers stay in range and whose
/// errors name their own fields.
pub mod config_body {
    use std::fmt;

    use arbitrary::{Arbitrary, Result, Unstructured};
    use secretgen::alphabet::CharClass;
    use secretgen::api::wire;
    use secretgen::api::{ApiError, error::GrpcCode};
    use secretgen::{Expiry, GeneratorConfig, GeneratorType};
    use serde_json::{Map, Value};

    use super::valid;

    /// Every field a configuration error may name.
    pub const KNOWN_FIELDS: [&str; 10] = [
        "generatorType",
        "length",
        "expiry",
        "includeLowerLetters",
        "includeUpperLetters",
        "includeDigits",
        "includeSymbols",
        "excludeAmbiguous",
        "requireEachClass",
        "entropyBits",
    ];

    const FLAGS: [&str; 6] = [
        "includeLowerLetters",
        "includeUpperLetters",
        "includeDigits",
        "includeSymbols",
        "excludeAmbiguous",
        "requireEachClass",
    ];

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
        let (draft, wire_violations) = wire::config_draft(object, t);
        for v in &wire_violations {
            assert!(KNOWN_FIELDS.contains(&v.field.as_str()), "{v:?}");
            assert!(!v.description.is_empty());
        }
        let wire_broken = |name: &str| wire_violations.iter().any(|v| v.field == name);

        // The draft holds what the body says; a field of the wrong JSON type is reported.
        assert_eq!(draft.generator_type, t.full_name());
        let flags = [
            draft.include_lower_letters,
            draft.include_upper_letters,
            draft.include_digits,
            draft.include_symbols,
            draft.exclude_ambiguous,
            draft.require_each_class,
        ];
        for (name, got) in FLAGS.into_iter().zip(flags) {
            match present(object, name) {
                None => assert!(!got && !wire_broken(name), "{name}"),
                Some(Value::Bool(b)) => assert!(got == *b && !wire_broken(name), "{name}"),
                Some(_) => assert!(!got && wire_broken(name), "{name}"),
            }
        }
        match present(object, "expiry") {
            None => assert!(draft.expiry == "0s" && !wire_broken("expiry")),
            Some(Value::String(s)) => assert!(draft.expiry == *s && !wire_broken("expiry")),
            Some(_) => assert!(draft.expiry == "0s" && wire_broken("expiry")),
        }
        match present(object, "length") {
            None => assert!(draft.length == 0 && !wire_broken("length")),
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                assert!(Some(draft.length) == n.as_i64() && !wire_broken("length"));
            }
            Some(Value::Bool(_) | Value::Array(_) | Value::Object(_)) => {
                assert!(draft.length == 0 && wire_broken("length"));
            }
            // A number beyond 64 bits or a string: read as an integer, or reported and 0.
            Some(_) => assert!(!wire_broken("length") || draft.length == 0),
        }

        // The validator's verdict, against the rules restated.
        let want = expected_violations(&draft, t);
        match GeneratorConfig::new(&draft) {
            Ok(c) => {
                // Within the entropy bounds, `valid::check` checks the floor itself.
                assert!(
                    want.fields.is_empty(),
                    "accepted, but breaks {want:?}: {draft:?}"
                );
                valid::check(&c);
                assert_eq!(c.generator_type(), t);
                assert_eq!(c.length().get() as i64, draft.length);
                assert_eq!(Ok(c.expiry()), Expiry::parse(&draft.expiry));
                assert_eq!(c.exclude_ambiguous(), draft.exclude_ambiguous);
                assert_eq!(c.require_each_class(), draft.require_each_class);
                for (class, on) in CharClass::ALL.into_iter().zip(flags) {
                    assert_eq!(c.includes(class), on);
                }
            }
            Err(e) => {
                assert!(!e.violations().is_empty());
                for v in e.violations() {
                    assert!(KNOWN_FIELDS.contains(&v.field), "{v:?}");
                    assert!(!v.description.is_empty());
                }
                let mut got = e.fields();
                // The entropy rule is the one the restatement can only bound.
                if want.uncertain_entropy {
                    got.retain(|f| *f != "entropyBits");
                }
                assert_eq!(got, want.fields, "{draft:?}");
                // The API's error body carries the same violations.
                let api = ApiError::invalid_config(&e);
                assert_eq!(fields(&api), e.fields());
            }
        }
    }

    /// The fields a draft breaks, in the validator's order, by the rules of SPEC section 4.
    struct Expected {
        fields: Vec<&'static str>,
        /// The entropy lies between the bounds and the floor: leave `entropyBits` out.
        uncertain_entropy: bool,
    }

    impl fmt::Debug for Expected {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:?}", self.fields)?;
            if self.uncertain_entropy {
                f.write_str(" (and maybe entropyBits)")?;
            }
            Ok(())
        }
    }

    fn expected_violations(d: &secretgen::ConfigDraft, path_type: GeneratorType) -> Expected {
        let mut fields = Vec::new();
        let t = d.generator_type.parse::<GeneratorType>().ok();
        assert_eq!(t, Some(path_type));
        let length_ok = (1..=1024).contains(&d.length);
        if !length_ok {
            fields.push("length");
        }
        match Expiry::parse(&d.expiry) {
            Err(_) => fields.push("expiry"),
            Ok(e) if e.is_never() && path_type != GeneratorType::AppSecret => {
                fields.push("expiry");
            }
            Ok(_) => {}
        }
        let classes = [
            d.include_lower_letters,
            d.include_upper_letters,
            d.include_digits,
            d.include_symbols,
        ];
        let n_classes = classes.iter().filter(|c| **c).count();
        if n_classes == 0 {
            fields.extend(CharClass::ALL.map(|c| c.field()));
        }
        let short = length_ok && d.require_each_class && (d.length as usize) < n_classes;
        if short {
            fields.push("requireEachClass");
        }
        let mut uncertain_entropy = false;
        if length_ok && n_classes > 0 && !short {
            let sizes = valid::class_sizes(classes, d.exclude_ambiguous);
            let (lower, upper) =
                valid::entropy_bounds(&sizes, d.length as usize, d.require_each_class);
            let floor = valid::floor(path_type);
            if upper < floor {
                fields.push("entropyBits");
            } else if lower < floor {
                uncertain_entropy = true;
            }
        }
        Expected {
            fields,
            uncertain_entropy,
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
            Ok(n) => {
                assert!((1..=wire::MAX_COUNT as usize).contains(&n), "{n}");
                if present(object, "count").is_none() {
                    assert_eq!(n, 1);
                }
            }
            Err(e) => {
                assert_eq!(e.code(), GrpcCode::InvalidArgument);
                assert_eq!(fields(&e), ["count"]);
            }
        }
    }
}

/// `generator_type`: text into [`secretgen::GeneratorType`]'s `FromStr`.
///
/// Checks that parsing never panics; accepts exactly the full name and the short name in any
/// ASCII case and the numbers 1 to 8 (leading zeros allowed), to the right type; refuses
/// `UNSPECIFIED` and 0 as such; quotes at most a bounded part of the input in its error; and
/// that every accepted type's spellings parse back to it.
pub mod generator_type {
    use arbitrary::{Arbitrary, Result, Unstructured};
    use secretgen::GeneratorType;

    /// The text parsed: all of the fuzzer's bytes up to the first invalid UTF-8.
    #[derive(Debug)]
    pub struct Input(pub String);

    impl<'a> Arbitrary<'a> for Input {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            String::arbitrary(u).map(Input)
        }

        fn arbitrary_take_rest(u: Unstructured<'a>) -> Result<Self> {
            String::arbitrary_take_rest(u).map(Input)
        }
    }

    /// What the text should parse to: `Ok(type)`, `Err(true)` for UNSPECIFIED, `Err(false)`
    /// for anything else.
    fn expected(s: &str) -> std::result::Result<GeneratorType, bool> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let digits = s.trim_start_matches('0');
            return match digits {
                "" => Err(true),
                _ => GeneratorType::ALL
                    .into_iter()
                    .find(|t| t.number().to_string() == digits)
                    .ok_or(false),
            };
        }
        let upper = s.to_ascii_uppercase();
        if upper == "UNSPECIFIED" || upper == "SECRET_GENERATOR_TYPE_UNSPECIFIED" {
            return Err(true);
        }
        GeneratorType::ALL
            .into_iter()
            .find(|t| upper == t.full_name() || upper == t.short_name())
            .ok_or(false)
    }

    /// Panics when the parser disagrees with the table; see the module.
    pub fn check(input: &Input) {
        let s = input.0.as_str();
        match (s.parse::<GeneratorType>(), expected(s)) {
            (Ok(t), Ok(want)) => {
                assert_eq!(t, want, "{s:?}");
                assert_eq!(t.to_string(), t.full_name());
                for spelling in [
                    t.full_name().to_owned(),
                    t.short_name().to_owned(),
                    t.short_name().to_ascii_lowercase(),
                    t.number().to_string(),
                ] {
                    assert_eq!(spelling.parse(), Ok(t));
                }
                assert_eq!(GeneratorType::from_number(u64::from(t.number())), Ok(t));
            }
            (Err(e), Err(unspecified)) => {
                assert_eq!(e.is_unspecified(), unspecified, "{s:?}: {e}");
                // The input is quoted back, shortened to 64 characters (each at most
                // `\u{10ffff}` when escaped).
                assert!(e.to_string().len() <= 64 * 10 + 400, "{s:?}");
            }
            (got, want) => panic!("{s:?} parsed to {got:?}, expected {want:?}"),
        }
    }
}

/// `expiry`: text into [`secretgen::Expiry::parse`], and back through `Display`.
///
/// Checks that parsing never panics; accepts exactly `-?\d+(\.\d{1,9})?s` that is 0 or
/// within 1 second to 31 days, with the value read independently (and the same error kind); and that an accepted
/// expiry is written in the canonical form (no sign, 0, 3, 6 or 9 decimals, the fewest that
/// are exact) and parses back to itself.
pub mod expiry {
    use std::time::Duration;

    use arbitrary::{Arbitrary, Result, Unstructured};
    use secretgen::Expiry;
    use secretgen::expiry::ExpiryError;

    /// The text parsed: all of the fuzzer's bytes up to the first invalid UTF-8.
    #[derive(Debug)]
    pub struct Input(pub String);

    impl<'a> Arbitrary<'a> for Input {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            String::arbitrary(u).map(Input)
        }

        fn arbitrary_take_rest(u: Unstructured<'a>) -> Result<Self> {
            String::arbitrary_take_rest(u).map(Input)
        }
    }

    /// Splits text of the shape `-?\d+(\.\d{1,9})?s` into sign, seconds digits and fraction
    /// digits, byte by byte.
    fn shape(s: &str) -> Option<(bool, &str, &str)> {
        let b = s.as_bytes();
        let mut i = 0;
        let negative = b.first() == Some(&b'-');
        if negative {
            i += 1;
        }
        let secs_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let secs = &s[secs_start..i];
        if secs.is_empty() {
            return None;
        }
        let mut frac = "";
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac = &s[start..i];
            if frac.is_empty() || frac.len() > 9 {
                return None;
            }
        }
        (b.get(i) == Some(&b's') && i + 1 == b.len()).then_some((negative, secs, frac))
    }

    fn expected(s: &str) -> std::result::Result<Duration, ExpiryError> {
        let (negative, secs, frac) = shape(s).ok_or(ExpiryError::NotADuration)?;
        // Seconds beyond 64 bits are "too long" whatever the sign.
        let secs: u64 = secs.parse().map_err(|_| ExpiryError::TooLong)?;
        let nanos = frac
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(9)
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        let d = Duration::new(secs, nanos);
        if negative && !d.is_zero() {
            Err(ExpiryError::Negative)
        } else if d > Duration::from_secs(31 * 24 * 3600) {
            Err(ExpiryError::TooLong)
        } else if !d.is_zero() && d < Duration::from_secs(1) {
            Err(ExpiryError::TooShort)
        } else {
            Ok(d)
        }
    }

    /// Panics when parsing or writing breaks an invariant; see the module.
    pub fn check(input: &Input) {
        let s = input.0.as_str();
        let got = Expiry::parse(s);
        assert_eq!(got.map(Expiry::duration), expected(s), "{s:?}");
        let Ok(e) = got else { return };
        assert!(e.duration() <= Expiry::MAX);
        assert_eq!(Expiry::new(e.duration()), Ok(e));
        let text = e.to_string();
        assert_eq!(Expiry::parse(&text), Ok(e), "{s:?} written as {text:?}");
        let (negative, secs, frac) = shape(&text).expect("written in protobuf's form");
        assert!(!negative, "{text:?}");
        assert!(secs == "0" || !secs.starts_with('0'), "{text:?}");
        let nanos = e.duration().subsec_nanos();
        let decimals = match nanos {
            0 => 0,
            n if n % 1_000_000 == 0 => 3,
            n if n % 1_000 == 0 => 6,
            _ => 9,
        };
        assert_eq!(frac.len(), decimals, "{text:?}");
    }
}

/// `generate`: codes from an arbitrary valid configuration and a seeded [`CodeRng`].
///
/// The input is a mostly valid draft (inputs whose draft the validator refuses are skipped),
/// a seed, a time and how many codes. For each valid configuration it checks
/// [`valid::check`], then draws codes through `generate_with`, `fill_with` and
/// `fill_codes_with` (with a partial last code) from the same seed, and checks on every
/// code: its length; every character in the alphabet; no ambiguous character with
/// `excludeAmbiguous`; every included class with `requireEachClass`; that all three paths give
/// exactly the codes of plain sequential rejection sampling over the cipher's bytes (a
/// reference sampler written here); `expires_at == now + expiry`, `None` for 0; and that the
/// `_generate` response written from them is JSON holding the same codes and timestamps.
///
/// [`CodeRng`]: secretgen::CodeRng
pub mod generate {
    use std::time::{Duration, SystemTime};

    use arbitrary::{Arbitrary, Result, Unstructured};
    use rand_core::{Rng, SeedableRng};
    use secretgen::alphabet::{AMBIGUOUS, CharClass};
    use secretgen::api::wire;
    use secretgen::rng::Cipher;
    use secretgen::{CodeRng, ConfigDraft, Expiry, Generator, GeneratorConfig, GeneratorType};

    use super::valid;

    /// The latest `now` drawn: 31 days before the end of year 9999, the last instant an
    /// RFC 3339 timestamp can write.
    pub const MAX_NOW_SECS: u64 = 253_402_300_799 - 31 * 24 * 3600;

    /// A configuration to validate and, when valid, generate from.
    #[derive(Debug)]
    pub struct Input {
        /// The configuration, as an admin would write it.
        pub draft: ConfigDraft,
        /// The seed of the [`CodeRng`] codes are drawn from.
        pub seed: [u8; 32],
        /// "Now", since the Unix epoch.
        pub now: Duration,
        /// Codes drawn per path.
        pub codes: usize,
        /// Characters of one more, partial, code at the end of the bulk buffer.
        pub partial: usize,
    }

    impl<'a> Arbitrary<'a> for Input {
        /// Drafts are built to be valid often: any type in any spelling, lengths mostly
        /// short, expiries in range (0 mostly for APP_SECRET) in several spellings.
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let t = *u.choose(&GeneratorType::ALL)?;
            let generator_type = match u.int_in_range(0u8..=3)? {
                0 => t.full_name().to_owned(),
                1 => t.short_name().to_ascii_lowercase(),
                2 => t.number().to_string(),
                _ => t.short_name().to_owned(),
            };
            let length = if u.ratio(3u8, 4)? {
                u.int_in_range(1i64..=40)?
            } else {
                u.int_in_range(1i64..=1024)?
            };
            let max = Expiry::MAX.as_secs();
            let expiry = match u.int_in_range(0u8..=5)? {
                0 => "0s".to_owned(),
                1 => format!("{}s", u.int_in_range(1..=max)?),
                2 => format!(
                    "{}.{:03}s",
                    u.int_in_range(1..=max - 1)?,
                    u.int_in_range(0..=999u32)?
                ),
                3 => {
                    let nanos = u.int_in_range(0..=999_999_999u32)?;
                    format!("{}.{nanos:09}s", u.int_in_range(1..=max - 1)?)
                }
                4 => format!("{:08}s", u.int_in_range(1..=max)?),
                _ => match t {
                    GeneratorType::AppSecret => "0s".to_owned(),
                    _ => "300s".to_owned(),
                },
            };
            let flags: [bool; 6] = u.arbitrary()?;
            let draft = ConfigDraft {
                generator_type,
                length,
                expiry,
                include_lower_letters: flags[0],
                include_upper_letters: flags[1],
                include_digits: flags[2],
                include_symbols: flags[3],
                exclude_ambiguous: flags[4],
                require_each_class: flags[5],
            };
            let seed = u.arbitrary()?;
            let now = Duration::new(
                u.int_in_range(0..=MAX_NOW_SECS)?,
                u.int_in_range(0..=999_999_999)?,
            );
            let codes = u.int_in_range(1..=8)?;
            let partial = u.int_in_range(0..=length as usize - 1)?;
            Ok(Input {
                draft,
                seed,
                now,
                codes,
                partial,
            })
        }
    }

    /// Plain sequential rejection over the cipher's bytes: what the sampler is defined to
    /// give. A byte `b` is kept when `b < 256 - 256 % N` and stands for character `b % N`; a
    /// code lacking a required class is thrown away whole.
    struct Reference {
        cipher: Cipher,
        block: [u8; 64],
        used: usize,
        alphabet: Vec<u8>,
        required: Vec<&'static str>,
    }

    impl Reference {
        fn next_byte(&mut self) -> u8 {
            if self.used == self.block.len() {
                self.cipher.fill_bytes(&mut self.block);
                self.used = 0;
            }
            self.used += 1;
            self.block[self.used - 1]
        }

        fn code(&mut self, length: usize) -> Vec<u8> {
            let n = self.alphabet.len();
            loop {
                let code: Vec<u8> = (0..length)
                    .map(|_| {
                        loop {
                            let b = usize::from(self.next_byte());
                            if b < 256 - 256 % n {
                                break self.alphabet[b % n];
                            }
                        }
                    })
                    .collect();
                if self
                    .required
                    .iter()
                    .all(|class| code.iter().any(|c| class.as_bytes().contains(c)))
                {
                    return code;
                }
            }
        }
    }

    /// Panics unless `code` is a code of `c`: the per-code invariants.
    fn check_code(c: &GeneratorConfig, code: &[u8]) {
        assert_eq!(code.len(), c.length().get());
        let shown = String::from_utf8_lossy(code);
        for b in code {
            assert!(c.alphabet().as_bytes().contains(b), "{shown:?}");
            assert!(
                !(c.exclude_ambiguous() && AMBIGUOUS.as_bytes().contains(b)),
                "{shown:?}"
            );
        }
        if c.require_each_class() {
            for class in c.classes().iter() {
                assert!(
                    code.iter().any(|b| class.chars().as_bytes().contains(b)),
                    "{class:?} missing from {shown:?}"
                );
            }
        }
    }

    /// Panics when generation breaks an invariant; see the module.
    pub fn check(input: &Input) {
        let Ok(c) = GeneratorConfig::new(&input.draft) else {
            return;
        };
        valid::check(&c);
        let g = Generator::new(&c);
        let length = c.length().get();
        assert_eq!(g.length(), length);
        assert_eq!(g.alphabet_len(), c.alphabet().len());
        assert_eq!(g.entropy_bits().to_bits(), c.entropy_bits().to_bits());

        let mut reference = Reference {
            cipher: Cipher::from_seed(input.seed),
            block: [0; 64],
            used: 64,
            alphabet: c.alphabet().as_bytes().to_vec(),
            required: if c.require_each_class() {
                c.classes().iter().map(CharClass::chars).collect()
            } else {
                Vec::new()
            },
        };
        let want: Vec<Vec<u8>> = (0..=input.codes).map(|_| reference.code(length)).collect();
        for code in &want {
            check_code(&c, code);
        }
        let (whole, next) = want.split_at(input.codes);

        // The owned path, with its expiry.
        let now = SystemTime::UNIX_EPOCH + input.now;
        let expires_at = (!c.expiry().is_never()).then(|| now + c.expiry().duration());
        assert_eq!(g.expires_at(now), expires_at);
        let mut rng = CodeRng::from_seed(input.seed);
        for want in whole {
            let code = g
                .generate_with(&mut rng, now)
                .expect("a seeded CodeRng never fails");
            assert_eq!(code.len(), length);
            assert!(!code.is_empty());
            assert_eq!(code.expires_at(), expires_at);
            check_code(&c, code.expose().as_bytes());
            assert_eq!(code.expose().as_bytes(), &want[..]);
            if length >= 16 {
                assert!(
                    !format!("{code:?}").contains(code.expose()),
                    "Debug shows the code"
                );
            }
        }

        // One code at a time into a buffer.
        let mut rng = CodeRng::from_seed(input.seed);
        let mut buf = vec![0u8; length];
        for want in whole {
            g.fill_with(&mut rng, &mut buf)
                .expect("a seeded CodeRng never fails");
            assert_eq!(&buf, want);
        }

        // In bulk, with a partial code at the end: the start of the next whole code.
        let mut rng = CodeRng::from_seed(input.seed);
        let mut bulk = vec![0u8; input.codes * length + input.partial];
        g.fill_codes_with(&mut rng, &mut bulk)
            .expect("a seeded CodeRng never fails");
        let (codes, rest) = bulk.split_at(input.codes * length);
        for (got, want) in codes.chunks_exact(length).zip(whole) {
            check_code(&c, got);
            assert_eq!(got, &want[..]);
        }
        assert_eq!(rest, &next[0][..input.partial]);

        // The `_generate` response written from these codes.
        let t = c.generator_type();
        let body = wire::generate_response(t, 7, codes, length, expires_at);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("the response is JSON");
        assert_eq!(v["generatorType"], t.full_name());
        let listed = v["codes"].as_array().expect("a list of codes");
        assert_eq!(listed.len(), input.codes);
        for (item, want) in listed.iter().zip(whole) {
            assert_eq!(item["code"].as_str().map(str::as_bytes), Some(&want[..]));
            match expires_at {
                None => assert!(item.get("expiresAt").is_none()),
                Some(at) => {
                    let text = item["expiresAt"].as_str().expect("expiresAt");
                    assert_eq!(humantime::parse_rfc3339(text).ok(), Some(at), "{text}");
                }
            }
        }
    }
}
