use super::*;
use secretgen_engine::alphabet::{DIGITS, LOWER, SYMBOLS, UPPER};
use serde_json::json;

#[test]
fn codes_need_no_json_escaping() {
    for alphabet in [LOWER, UPPER, DIGITS, SYMBOLS] {
        assert!(!alphabet.contains('"') && !alphabet.contains('\\'));
    }
    let codes = Codes::from_parts(GeneratorType::OtpSms, 9, 8, None, b"12345678abcdefgh");
    let v: Value = serde_json::from_slice(&generate_response(&codes)).unwrap();
    assert_eq!(
        v,
        json!({"generatorType": "SECRET_GENERATOR_TYPE_OTP_SMS", "sequence": "9",
               "codes": [{"code": "12345678"}, {"code": "abcdefgh"}]})
    );
    let codes = Codes::from_parts(
        GeneratorType::OtpSms,
        9,
        8,
        Some(at(1_795_339_958, 0)),
        b"~!@#$^&*",
    );
    let v: Value = serde_json::from_slice(&generate_response(&codes)).unwrap();
    assert_eq!(v["codes"][0]["code"], "~!@#$^&*");
    assert_eq!(v["codes"][0]["expiresAt"], "2026-11-22T09:32:38Z");
}

#[test]
fn the_answer_is_sized_exactly_so_that_its_buffer_never_grows() {
    // generate_response asserts (debug) that what it wrote is the size it reserved;
    // every type name, sequence width, timestamp precision and count goes through it.
    for t in GeneratorType::ALL {
        for sequence in [0, 9, 10, 12_345, u64::MAX] {
            for expires in [None, Some(at(1, 0)), Some(at(1, 719_123_456))] {
                for count in [1, 2, 1000] {
                    let codes = Codes::from_parts(t, sequence, 3, expires, &vec![b'7'; 3 * count]);
                    let body = generate_response(&codes);
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["codes"].as_array().unwrap().len(), count);
                }
            }
        }
    }
}

#[test]
fn config_bodies_take_zero_values_and_report_wrong_types() {
    let body =
        object(br#"{"length": "10", "expiry": "60s", "includeDigits": true, "x": 1}"#).unwrap();
    let draft = config_draft(&body, Ok(GeneratorType::OtpSms));
    assert!(draft.unreadable.is_empty());
    assert_eq!(draft.length, CodeLength::new(10));
    assert_eq!(draft.expiry, secretgen_engine::Expiry::from_secs(60));
    assert!(draft.include_digits && !draft.include_upper_letters);
    let body = object(
        br#"{"length": 8.5, "expiry": 300, "includeDigits": "yes", "excludeAmbiguous": null}"#,
    )
    .unwrap();
    let draft = config_draft(&body, Ok(GeneratorType::OtpSms));
    let fields: Vec<Field> = draft.unreadable.iter().map(|v| v.field).collect();
    assert_eq!(fields, [Field::Length, Field::Expiry, Field::IncludeDigits]);
    assert_eq!(draft.length, CodeLength::new(0));
    assert_eq!(draft.expiry, Ok(secretgen_engine::Expiry::NEVER));
    // A bad type is one more unreadable field, listed first; the body is read all the
    // same.
    let draft = config_draft(&body, "nope".parse::<GeneratorType>());
    let fields: Vec<Field> = draft.unreadable.iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        [
            Field::GeneratorType,
            Field::Length,
            Field::Expiry,
            Field::IncludeDigits
        ]
    );
}

#[test]
fn bodies_must_be_json_objects() {
    assert!(object(b"").unwrap().is_empty());
    assert!(object(b"  \n").is_err());
    assert!(object(b"\t").is_err());
    assert!(object(b"[1]").is_err());
    assert!(object(b"{\"length\": ").is_err());
}

/// The fields of an error's violations and its message.
fn refusal(e: &ApiError) -> (Vec<String>, String) {
    let body = e.body();
    let fields = body["details"][0]["fieldViolations"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .map(|v| v["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (fields, body["message"].as_str().unwrap().to_owned())
}

#[test]
fn repeated_keys_are_refused_at_any_depth_naming_the_key() {
    for (body, path) in [
        (&br#"{"length": 8, "length": 9}"#[..], "length"),
        (br#"{"length": 8, "length": 8}"#, "length"),
        (
            br#"{"a": 1, "b": {"c": [1, {"d": 1, "d": null}]}}"#,
            "b.c[1].d",
        ),
        (br#"{"query": {"limit": 1, "limit": 2}}"#, "query.limit"),
        (
            br#"{"queries": [{"typeQuery": {"generatorType": 7, "generatorType": 8}}]}"#,
            "queries[0].typeQuery.generatorType",
        ),
        (br#"[{"x": 1, "x": 2}]"#, "[0].x"),
    ] {
        let e = object(body).unwrap_err();
        assert_eq!(e.code(), crate::api::error::GrpcCode::InvalidArgument);
        let (fields, message) = refusal(&e);
        assert_eq!(fields, [path], "{}", body.escape_ascii());
        assert!(message.contains(&format!("{path:?}")), "{message}");
    }
    // The same key in sibling objects, or as a value, is no repeat.
    let ok =
        object(br#"{"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}, {"x": 2}], "x": "x"}"#).unwrap();
    assert_eq!(ok.len(), 4);
    // What is accepted is exactly what serde_json reads, order kept.
    let text =
        br#"{"z": 1, "a": [1.5, -2, 18446744073709551615, "s", null, true, {}], "m": {"k": 1e3}}"#;
    assert_eq!(
        Value::Object(object(text).unwrap()),
        serde_json::from_slice::<Value>(text).unwrap()
    );
    let keys: Vec<String> = object(text).unwrap().keys().cloned().collect();
    assert_eq!(keys, ["z", "a", "m"]);
    // Other failures name no field.
    for bad in [&b"{\"a\": 1} x"[..], b"{\"a\": 1, \"a\""] {
        let (fields, _) = refusal(&object(bad).unwrap_err());
        assert!(fields.is_empty(), "{}", bad.escape_ascii());
    }
}

#[test]
fn type_queries_take_names_and_numbers() {
    for t in [json!(7), json!("7"), json!("OTP_SMS"), json!("otp_sms")] {
        let s = search(
            &object(
                json!({"queries": [{"typeQuery": {"generatorType": t}}]})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(s.types, Some(vec![GeneratorType::OtpSms]), "{t}");
    }
    for t in [
        json!(0),
        json!(9),
        json!(-7),
        json!(7.0),
        json!(7.5),
        json!(u64::MAX),
        json!(false),
    ] {
        let body = json!({"queries": [{"typeQuery": {"generatorType": t}}]}).to_string();
        let (fields, _) = refusal(&search(&object(body.as_bytes()).unwrap()).unwrap_err());
        assert_eq!(fields, ["queries[0].typeQuery.generatorType"], "{t}");
    }
}

#[test]
fn counts_default_to_one_and_are_read_as_written() {
    // The range (1 to 1000) is the use case's rule (`Service::generate`), not the wire's.
    assert_eq!(count(&object(b"{}").unwrap()).unwrap(), 1);
    for (body, n) in [
        (&b"{\"count\": \"1000\"}"[..], 1000),
        (b"{\"count\": 0}", 0),
        (b"{\"count\": -1}", -1),
        (b"{\"count\": 18446744073709551615}", i128::from(u64::MAX)),
    ] {
        assert_eq!(count(&object(body).unwrap()).unwrap(), n);
    }
    for bad in [
        &b"{\"count\": true}"[..],
        b"{\"count\": 1.5}",
        b"{\"count\": \"1e3\"}",
    ] {
        let (fields, _) = refusal(&count(&object(bad).unwrap()).unwrap_err());
        assert_eq!(fields, ["count"]);
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
