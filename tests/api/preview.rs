//! `POST /admin/v1/secretgenerators/{type}/_preview`: a draft checked against every rule, as a
//! PUT would check it, with its entropy and five sample codes; nothing saved.

use serde_json::{Value, json};

use crate::helpers::{assert_error_shape, spawn_app};

fn sequence(app: &crate::helpers::TestApp) -> Value {
    app.get_generator("otp_sms").body["secretGenerator"]["details"]["sequence"].clone()
}

#[test]
fn a_valid_draft_shows_its_entropy_and_five_codes_and_saves_nothing() {
    let app = spawn_app();
    let reader = app.create_token("console", "iam.read");
    let before = sequence(&app);
    let draft = json!({"length": 10, "expiry": "120s", "includeUpperLetters": true, "includeDigits": true,
                       "excludeAmbiguous": true});
    let answer = app.preview("otp_sms", &reader, &draft);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["valid"], true);
    assert_eq!(answer.body["violations"], json!([]));
    // 10 characters of 32 (A-Z and 0-9 without 0, O, 1 and I): 10 * log2(32).
    assert_eq!(answer.body["entropyBits"], 50.0);
    let samples = answer.body["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 5);
    for code in samples {
        let code = code.as_str().unwrap();
        assert_eq!(code.len(), 10, "{code}");
        assert!(
            code.bytes()
                .all(|b| (b.is_ascii_uppercase() || b.is_ascii_digit()) && !b"0O1I".contains(&b)),
            "{code}"
        );
    }
    // Nothing was saved, and the live configuration still makes 8 digits.
    assert_eq!(sequence(&app), before);
    assert_eq!(
        app.get_generator("otp_sms").body["secretGenerator"]["length"],
        8
    );
}

#[test]
fn an_invalid_draft_shows_every_violation_by_field_and_no_code() {
    let app = spawn_app();
    let before = sequence(&app);
    // Four digits: 13.28 bits, below the floor; the entropy is still shown.
    let weak = app.preview(
        "otp_sms",
        &app.token,
        &json!({"length": 4, "expiry": "60s", "includeDigits": true}),
    );
    assert_eq!(weak.status, 200, "{:?}", weak.body);
    assert_eq!(weak.body["valid"], false);
    assert_eq!(weak.body["violations"][0]["field"], "entropyBits");
    assert!(
        weak.body["violations"][0]["description"]
            .as_str()
            .unwrap()
            .contains("19.9")
    );
    assert_eq!(weak.body["entropyBits"], 13.28);
    assert_eq!(weak.body["samples"], json!([]));

    // No class and a bad expiry: the alphabet cannot be judged, so no entropy.
    let empty = app.preview(
        "otp_sms",
        &app.token,
        &json!({"length": 8, "expiry": "-1s"}),
    );
    assert_eq!(empty.status, 200);
    let fields: Vec<&str> = empty.body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "expiry",
            "includeLowerLetters",
            "includeUpperLetters",
            "includeDigits",
            "includeSymbols"
        ]
    );
    assert_eq!(empty.body["entropyBits"], Value::Null);
    // A field of the wrong JSON type is refused (400) with every violation, as by a PUT:
    // the preview judges values, not shapes.
    let unreadable = app.preview(
        "otp_sms",
        &app.token,
        &json!({"length": "eight", "includeDigits": "yes"}),
    );
    assert_eq!(unreadable.status, 400);
    assert_eq!(
        crate::helpers::violated_fields(&unreadable),
        ["length", "includeDigits", "expiry"]
    );
    // So is an unknown type, with the body's violations beside it.
    let unknown = app.preview("nope", &app.token, &json!({"length": 2}));
    assert_eq!(unknown.status, 400);
    assert_eq!(
        crate::helpers::violated_fields(&unknown),
        [
            "generatorType",
            "includeLowerLetters",
            "includeUpperLetters",
            "includeDigits",
            "includeSymbols"
        ]
    );
    assert_eq!(sequence(&app), before);
}

#[test]
fn a_preview_needs_iam_read_before_its_body_is_read_and_refuses_what_is_not_json() {
    let app = spawn_app();
    let generator_only = app.create_token("sender", "codes.generate");
    let path = "/admin/v1/secretgenerators/otp_sms/_preview";
    let none = app.request("POST", path, None, Some("not json"));
    assert_eq!(none.status, 401);
    assert_error_shape(&none, 16);
    let denied = app.request("POST", path, Some(&generator_only), Some("not json"));
    assert_eq!(denied.status, 403);
    assert_error_shape(&denied, 7);
    let bad_json = app.request("POST", path, Some(&app.token), Some("{"));
    assert_eq!(bad_json.status, 400);
    assert_error_shape(&bad_json, 3);
    let bad_type = app.request(
        "POST",
        "/admin/v1/secretgenerators/unspecified/_preview",
        Some(&app.token),
        Some("{}"),
    );
    assert_eq!(bad_type.status, 400);
    assert_error_shape(&bad_type, 3);
    let get = app.request("GET", path, Some(&app.token), None);
    assert_eq!(get.status, 405);
    assert_eq!(get.allow.as_deref(), Some("POST"));
}
