//! The control plane: reading and changing generators, and every validation rule.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, violated_fields};

/// SPEC section 2: type, length, expiry, lower, upper, digits, symbols.
const DEFAULTS: [(&str, u64, &str, bool, bool, bool, bool); 8] = [
    ("INIT_CODE", 6, "259200s", false, true, true, false),
    ("VERIFY_EMAIL_CODE", 6, "3600s", false, true, true, false),
    ("VERIFY_PHONE_CODE", 6, "3600s", false, true, true, false),
    ("PASSWORD_RESET_CODE", 6, "3600s", false, true, true, false),
    (
        "PASSWORDLESS_INIT_CODE",
        12,
        "3600s",
        true,
        true,
        true,
        false,
    ),
    ("APP_SECRET", 64, "0s", true, true, true, false),
    ("OTP_SMS", 8, "300s", false, false, true, false),
    ("OTP_EMAIL", 8, "300s", false, false, true, false),
];

fn generator(app: &TestApp, t: &str) -> Value {
    let answer = app.get_generator(t);
    assert_eq!(answer.status, 200, "{t}: {:?}", answer.body);
    answer.body["secretGenerator"].clone()
}

#[test]
fn every_type_starts_with_zitadels_default_and_details() {
    let app = spawn_app();
    let mut owner = None;
    for (i, (t, length, expiry, lower, upper, digits, symbols)) in DEFAULTS.iter().enumerate() {
        let g = generator(&app, t);
        assert_eq!(g["generatorType"], format!("SECRET_GENERATOR_TYPE_{t}"));
        assert_eq!(g["length"], *length);
        assert_eq!(g["expiry"], *expiry);
        assert_eq!(g["includeLowerLetters"], *lower);
        assert_eq!(g["includeUpperLetters"], *upper);
        assert_eq!(g["includeDigits"], *digits);
        assert_eq!(g["includeSymbols"], *symbols);
        assert_eq!(g["excludeAmbiguous"], false);
        assert_eq!(g["requireEachClass"], false);
        assert!(g["entropyBits"].as_f64().unwrap() > 19.9);
        let d = &g["details"];
        assert_eq!(d["sequence"], (i + 1).to_string(), "sequences are strings");
        assert_eq!(d["creationDate"], d["changeDate"]);
        assert!(d["creationDate"].as_str().unwrap().ends_with('Z'));
        owner.get_or_insert_with(|| d["resourceOwner"].clone());
        assert_eq!(Some(&d["resourceOwner"]), owner.as_ref());
    }
    // Every field is written, false included, in the SPEC's order.
    let g = generator(&app, "OTP_SMS");
    let keys: Vec<&str> = g.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "generatorType",
            "details",
            "length",
            "expiry",
            "includeLowerLetters",
            "includeUpperLetters",
            "includeDigits",
            "includeSymbols",
            "excludeAmbiguous",
            "requireEachClass",
            "entropyBits"
        ]
    );
    assert_eq!(g["entropyBits"], 26.57);
}

#[test]
fn types_are_read_by_full_name_short_name_in_any_case_and_number() {
    let app = spawn_app();
    let full = generator(&app, "SECRET_GENERATOR_TYPE_OTP_EMAIL");
    for t in ["OTP_EMAIL", "otp_email", "Otp_Email", "8"] {
        assert_eq!(generator(&app, t), full, "{t}");
    }
}

#[test]
fn a_put_changes_the_generator_and_its_details() {
    let app = spawn_app();
    let before = generator(&app, "otp_sms");
    let answer = app.put_generator(
        "otp_sms",
        &json!({"length": 10, "expiry": "120s", "includeUpperLetters": true, "includeDigits": true,
                "excludeAmbiguous": true, "requireEachClass": true}),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let details = &answer.body["details"];
    assert_eq!(answer.body.as_object().unwrap().len(), 1);
    // 1 to 8: the defaults; 9: the first admin token's creation.
    assert_eq!(details["sequence"], "10");
    assert_eq!(details["creationDate"], before["details"]["creationDate"]);
    assert_ne!(details["changeDate"], before["details"]["changeDate"]);
    let after = generator(&app, "7");
    assert_eq!(&after["details"], details);
    assert_eq!(after["length"], 10);
    assert_eq!(after["expiry"], "120s");
    assert_eq!(after["includeUpperLetters"], true);
    assert_eq!(after["excludeAmbiguous"], true);
    assert_eq!(after["requireEachClass"], true);
    // Other types are untouched.
    assert_eq!(generator(&app, "otp_email")["details"]["sequence"], "8");
}

#[test]
fn a_put_that_changes_nothing_answers_the_unchanged_details_and_writes_nothing() {
    let app = spawn_app();
    let body = json!({"length": 8, "expiry": "300s", "includeDigits": true});
    let before = generator(&app, "otp_sms");
    let answer = app.put_generator("otp_sms", &body);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["details"], before["details"]);
    // Written differently, still the same configuration.
    let answer = app.put_generator(
        "SECRET_GENERATOR_TYPE_OTP_SMS",
        &json!({"length": "8", "expiry": "300.000s", "includeDigits": true, "includeSymbols": false}),
    );
    assert_eq!(answer.body["details"], before["details"]);
    // The next real change takes the next sequence: nothing was written in between.
    let answer = app.put_generator(
        "otp_sms",
        &json!({"length": 9, "expiry": "300s", "includeDigits": true}),
    );
    assert_eq!(answer.body["details"]["sequence"], "10");
}

#[test]
fn fields_left_out_take_their_zero_value_and_unknown_fields_are_ignored() {
    let app = spawn_app();
    // APP_SECRET may never expire: leaving expiry out means "0s".
    let answer = app.put_generator(
        "app_secret",
        &json!({"length": 40, "includeLowerLetters": true, "includeUpperLetters": true,
                "includeDigits": true, "color": "blue", "generatorType": "OTP_SMS"}),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let g = generator(&app, "app_secret");
    assert_eq!(g["expiry"], "0s");
    assert_eq!(g["length"], 40);
    // The path names the type, whatever the body says.
    assert_eq!(generator(&app, "otp_sms")["details"]["sequence"], "7");
    // For other types the zero expiry is refused.
    let answer = app.put_generator("otp_sms", &json!({"length": 8, "includeDigits": true}));
    assert_eq!(violated_fields(&answer), ["expiry"]);
}

/// One body per rule of SPEC section 4, with the fields it must name.
#[test]
fn every_validation_rule_is_enforced_and_named() {
    let app = spawn_app();
    let digits = |length: i64, expiry: &str| json!({"length": length, "expiry": expiry, "includeDigits": true});
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("otp_sms", digits(0, "300s"), vec!["length"]),
        ("otp_sms", digits(1025, "300s"), vec!["length"]),
        ("otp_sms", digits(-3, "300s"), vec!["length"]),
        (
            "otp_sms",
            json!({"length": 8, "expiry": "300s"}),
            vec![
                "includeLowerLetters",
                "includeUpperLetters",
                "includeDigits",
                "includeSymbols",
            ],
        ),
        ("otp_sms", digits(8, "5m"), vec!["expiry"]),
        ("otp_sms", digits(8, "300"), vec!["expiry"]),
        ("otp_sms", digits(8, "-1s"), vec!["expiry"]),
        ("otp_sms", digits(8, "2678401s"), vec!["expiry"]),
        ("otp_sms", digits(8, "0s"), vec!["expiry"]),
        // Under a second codes are born expired: refused, APP_SECRET included.
        ("otp_sms", digits(8, "0.000000001s"), vec!["expiry"]),
        ("otp_sms", digits(8, "0.999999999s"), vec!["expiry"]),
        (
            "app_secret",
            json!({"length": 64, "expiry": "0.5s", "includeLowerLetters": true, "includeUpperLetters": true, "includeDigits": true}),
            vec!["expiry"],
        ),
        ("otp_sms", digits(5, "300s"), vec!["entropyBits"]),
        (
            "app_secret",
            json!({"length": 21, "expiry": "0s", "includeLowerLetters": true, "includeUpperLetters": true, "includeDigits": true}),
            vec!["entropyBits"],
        ),
        (
            "init_code",
            json!({"length": 1, "expiry": "60s", "includeUpperLetters": true, "includeDigits": true, "requireEachClass": true}),
            vec!["requireEachClass"],
        ),
        (
            "otp_sms",
            json!({"length": true, "expiry": 300, "includeDigits": "yes"}),
            vec!["length", "expiry", "includeDigits"],
        ),
    ];
    let before: Vec<Value> = ["otp_sms", "app_secret", "init_code"]
        .iter()
        .map(|t| generator(&app, t))
        .collect();
    for (t, body, fields) in cases {
        let answer = app.put_generator(t, &body);
        assert_eq!(violated_fields(&answer), fields, "{t} {body}");
    }
    // The longest length and the longest expiry are accepted.
    let answer = app.put_generator("otp_email", &digits(1024, "2678400s"));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // Six digits is the floor (19.93 bits).
    let answer = app.put_generator("otp_email", &digits(6, "1.5s"));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(generator(&app, "otp_email")["expiry"], "1.500s");
    // One second is the shortest expiry.
    let answer = app.put_generator("otp_email", &digits(6, "1s"));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let answer = app.put_generator("otp_email", &digits(6, "0.5s"));
    let description = answer.body["details"][0]["fieldViolations"][0]["description"].clone();
    assert_eq!(violated_fields(&answer), ["expiry"]);
    assert!(
        description.as_str().unwrap().contains("at least 1s"),
        "{description}"
    );
    assert_eq!(generator(&app, "otp_email")["expiry"], "1s");
    // Nothing refused changed anything.
    let after: Vec<Value> = ["otp_sms", "app_secret", "init_code"]
        .iter()
        .map(|t| generator(&app, t))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn every_violation_is_reported_at_once() {
    let app = spawn_app();
    let answer = app.put_generator(
        "otp_sms",
        &json!({"length": 2000, "expiry": "0s", "requireEachClass": true}),
    );
    let fields = violated_fields(&answer);
    for f in ["length", "expiry", "includeLowerLetters", "includeDigits"] {
        assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
    }
    for v in answer.body["details"][0]["fieldViolations"]
        .as_array()
        .unwrap()
    {
        assert!(!v["description"].as_str().unwrap().is_empty());
    }
}
