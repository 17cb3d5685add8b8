//! The log's payloads as JSON text, without a JSON library: a configuration and a token's
//! facts are flat objects of integers, strings, booleans, `null` and lists of strings, so the
//! core reads and writes them itself and keeps serde_json, a wire format's library, out of
//! its dependencies.
//!
//! Writing gives exactly the bytes serde_json gave (compact, fields in order, its escapes):
//! the chain's hashes cover the payload's text, and an append compares a new payload with the
//! last one as text. Reading takes what serde_json's derived readers took: any whitespace,
//! fields in any order, unknown fields (of any JSON value) ignored, a field given twice
//! refused. The tests check both against serde_json.

use std::fmt::Write as _;

/// A JSON value as a payload holds it; numbers keep their text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Nesting deeper than this is refused rather than followed (no payload nests at all).
const MAX_DEPTH: usize = 32;

/// The fields of the JSON object `text`, in order. Refuses anything else, and a field given
/// twice.
pub(crate) fn object(text: &str) -> Result<Fields, String> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = reader.value(0)?;
    reader.space();
    if reader.at != reader.bytes.len() {
        return Err(format!("trailing characters at byte {}", reader.at));
    }
    match value {
        Value::Object(fields) => {
            for (i, (name, _)) in fields.iter().enumerate() {
                if fields[..i].iter().any(|(n, _)| n == name) {
                    return Err(format!("duplicate field `{name}`"));
                }
            }
            Ok(Fields(fields))
        }
        _ => Err("expected an object".to_owned()),
    }
}

/// An object's fields, read by name with their expected kinds.
#[derive(Debug)]
pub(crate) struct Fields(Vec<(String, Value)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn required<'a, T>(
        &'a self,
        name: &str,
        kind: &str,
        read: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<T, String> {
        match self.get(name) {
            None => Err(format!("missing field `{name}`")),
            Some(value) => read(value).ok_or_else(|| format!("field `{name}` is not {kind}")),
        }
    }

    /// An integer field that must be there.
    pub(crate) fn int(&self, name: &str) -> Result<i64, String> {
        self.required(name, "an integer", |v| match v {
            Value::Number(n) => n.parse().ok(),
            _ => None,
        })
    }

    /// A string field that must be there.
    pub(crate) fn str(&self, name: &str) -> Result<&str, String> {
        self.required(name, "a string", |v| match v {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// A boolean field that must be there.
    pub(crate) fn bool(&self, name: &str) -> Result<bool, String> {
        self.required(name, "a boolean", |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })
    }

    /// A boolean field, false when absent.
    pub(crate) fn bool_or_false(&self, name: &str) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(false),
            Some(_) => self.bool(name),
        }
    }

    /// A list of strings that must be there.
    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        self.required(name, "a list of strings", |v| match v {
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        })
    }

    /// An integer or `null`, `None` when absent.
    pub(crate) fn optional_int(&self, name: &str) -> Result<Option<i64>, String> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.int(name).map(Some),
        }
    }

    /// A string or `null`, `None` when absent.
    pub(crate) fn optional_str(&self, name: &str) -> Result<Option<String>, String> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.str(name).map(|s| Some(s.to_owned())),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn error<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.at))
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            self.error("expected a value")
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return self.error("nested too deeply");
        }
        self.space();
        match self.bytes.get(self.at) {
            None => self.error("unexpected end"),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::Str),
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return self.error("expected `,` or `]`"),
                    }
                }
            }
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Value::Object(fields));
                }
                loop {
                    self.space();
                    if self.bytes.get(self.at) != Some(&b'"') {
                        return self.error("expected a field name");
                    }
                    let name = self.string()?;
                    self.space();
                    if self.bytes.get(self.at) != Some(&b':') {
                        return self.error("expected `:`");
                    }
                    self.at += 1;
                    fields.push((name, self.value(depth + 1)?));
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Object(fields));
                        }
                        _ => return self.error("expected `,` or `}`"),
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.error("expected a value"),
        }
    }

    /// A number as RFC 8259 writes it, kept as text.
    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        let digits = |r: &mut Self| {
            let from = r.at;
            while let Some(b'0'..=b'9') = r.bytes.get(r.at) {
                r.at += 1;
            }
            r.at - from
        };
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let int_start = self.at;
        let n = digits(self);
        if n == 0 || (n > 1 && self.bytes[int_start] == b'0') {
            return self.error("invalid number");
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return self.error("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return self.error("invalid number");
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).expect("ASCII digits");
        Ok(Value::Number(text.to_owned()))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let Some(digits) = self.bytes.get(self.at..self.at + 4) else {
            return self.error("unexpected end in an escape");
        };
        let text = std::str::from_utf8(digits).map_err(|_| "invalid escape".to_owned())?;
        let n = u32::from_str_radix(text, 16).map_err(|_| format!("invalid escape {text:?}"))?;
        self.at += 4;
        Ok(n)
    }

    /// A string; `self.at` is on its opening quote.
    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let start = self.at;
            while let Some(&b) = self.bytes.get(self.at) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // The input is a &str and the run stops only at ASCII: the slice is UTF-8.
            out.push_str(std::str::from_utf8(&self.bytes[start..self.at]).expect("UTF-8"));
            match self.bytes.get(self.at) {
                None => return self.error("unterminated string"),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(&escape) = self.bytes.get(self.at) else {
                        return self.error("unterminated string");
                    };
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&first) {
                                if !self.bytes[self.at..].starts_with(b"\\u") {
                                    return self.error("lone surrogate");
                                }
                                self.at += 2;
                                let second = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&second) {
                                    return self.error("lone surrogate");
                                }
                                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                            } else {
                                first
                            };
                            match char::from_u32(code) {
                                Some(c) => out.push(c),
                                None => return self.error("lone surrogate"),
                            }
                        }
                        _ => return self.error("invalid escape"),
                    }
                }
                Some(_) => return self.error("control character in a string"),
            }
        }
    }
}

/// Writes a JSON object, compact, its fields in the order written.
#[derive(Debug)]
pub(crate) struct Writer {
    out: String,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer {
            out: String::from("{"),
        }
    }

    fn name(&mut self, name: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        string(&mut self.out, name);
        self.out.push(':');
    }

    pub(crate) fn int(mut self, name: &str, value: i64) -> Writer {
        self.name(name);
        let _ = write!(self.out, "{value}");
        self
    }

    pub(crate) fn str(mut self, name: &str, value: &str) -> Writer {
        self.name(name);
        string(&mut self.out, value);
        self
    }

    pub(crate) fn bool(mut self, name: &str, value: bool) -> Writer {
        self.name(name);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    pub(crate) fn strings(mut self, name: &str, values: &[String]) -> Writer {
        self.name(name);
        self.out.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            string(&mut self.out, v);
        }
        self.out.push(']');
        self
    }

    pub(crate) fn int_or_null(mut self, name: &str, value: Option<i64>) -> Writer {
        match value {
            Some(v) => self.int(name, v),
            None => {
                self.name(name);
                self.out.push_str("null");
                self
            }
        }
    }

    pub(crate) fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// `value` as a JSON string, escaped as serde_json escapes.
fn string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them_and_read_back() {
        let mut texts: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        texts.extend(["", "é€😀", "\u{7f}\u{2028}", "\"\\/"].map(str::to_owned));
        for text in texts {
            let ours = Writer::new().str("k", &text).finish();
            let theirs = serde_json::json!({ "k": text }).to_string();
            assert_eq!(ours, theirs);
            assert_eq!(object(&ours).unwrap().str("k").unwrap(), text);
        }
    }

    #[test]
    fn what_serde_json_reads_is_read_and_what_it_refuses_is_refused() {
        let good = [
            r#" { "a" : 1 , "b":[ "x" , "y"],"c":null, "d":true, "e":"\u00e9\ud83d\ude00\/" } "#,
            r#"{"a":-7,"b":[],"c":1.5e-3,"d":false,"e":{"nested":[1,{"x":[]}]}}"#,
            r#"{"a":9223372036854775807,"b":[],"c":-2E+2,"d":false,"e":""}"#,
        ];
        for text in good {
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            let fields = object(text).unwrap();
            let a = fields.int("a").unwrap();
            assert_eq!(Some(a), theirs["a"].as_i64());
            assert_eq!(fields.bool("d").unwrap(), theirs["d"].as_bool().unwrap());
        }
        let e = object(good[0]).unwrap();
        assert_eq!(e.str("e").unwrap(), "é😀/");
        assert_eq!(e.strings("b").unwrap(), ["x", "y"]);
        assert_eq!(e.optional_int("c").unwrap(), None);
        assert_eq!(e.optional_int("missing").unwrap(), None);
        assert_eq!(
            object(r#"{"c":3}"#).unwrap().optional_int("c").unwrap(),
            Some(3)
        );
        assert_eq!(e.optional_str("missing").unwrap(), None);
        assert!(!e.bool_or_false("missing").unwrap());
        let bad = [
            "",
            "{",
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud83d"}"#,
            "{\"a\":\"\n\"}",
            r#"{"a":1} x"#,
            r#"{a:1}"#,
            r#"{"a":tru}"#,
        ];
        for text in bad {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text}"
            );
            assert!(object(text).is_err(), "{text}");
        }
        assert!(object("[]").is_err(), "not an object");
        // What serde's derived readers refuse: a field twice, a wrong kind, a missing one.
        assert!(object(r#"{"a":1,"a":2}"#).is_err());
        let fields = object(r#"{"a":"1","b":1.5}"#).unwrap();
        assert!(fields.int("a").is_err());
        assert!(fields.int("b").is_err());
        assert!(fields.int("c").unwrap_err().contains("missing field `c`"));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert!(object(&deep).is_err());
    }

    #[test]
    fn objects_are_written_compact_in_order() {
        let ours = Writer::new()
            .int("length", -8)
            .str("expiry", "300s")
            .bool("t", true)
            .strings("p", &["a".to_owned(), "b\"".to_owned()])
            .strings("none", &[])
            .int_or_null("n", None)
            .int_or_null("m", Some(5))
            .finish();
        let theirs = serde_json::to_string(&serde_json::json!({
            "length": -8, "expiry": "300s", "t": true, "p": ["a", "b\""], "none": [],
            "n": null, "m": 5,
        }))
        .unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(Writer::new().finish(), "{}");
    }
}
