//! The data plane: `POST /v1/codes/{generatorType}/_generate`.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::helpers::{spawn_app, violated_fields};

fn codes(answer: &Value) -> Vec<String> {
    answer["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect()
}

fn parse_time(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap()
}

#[test]
fn generate_answers_one_code_by_default_with_its_expiry() {
    let app = spawn_app();
    let before = SystemTime::now();
    let answer = app.request(
        "POST",
        "/v1/codes/otp_sms/_generate",
        Some(&app.token),
        None,
    );
    let after = SystemTime::now();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        answer.body["generatorType"],
        "SECRET_GENERATOR_TYPE_OTP_SMS"
    );
    assert_eq!(answer.body["sequence"], "7");
    let all = answer.body["codes"].as_array().unwrap();
    assert_eq!(all.len(), 1);
    let code = all[0]["code"].as_str().unwrap();
    assert!(
        code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    let expires = parse_time(all[0]["expiresAt"].as_str().unwrap());
    let expiry = Duration::from_secs(300);
    assert!(expires >= before + expiry - Duration::from_millis(50) && expires <= after + expiry);
}

#[test]
fn generate_gives_count_codes_of_the_configuration() {
    let app = spawn_app();
    let answer = app.generate("password_reset_code", 1000);
    let all = codes(&answer.body);
    assert_eq!(all.len(), 1000);
    assert!(all.iter().all(|c| {
        c.len() == 6
            && c.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    }));
    let distinct: HashSet<&String> = all.iter().collect();
    assert!(distinct.len() > 990, "{} distinct of 1000", distinct.len());
    // APP_SECRET never expires: no expiresAt.
    let answer = app.generate("app_secret", 3);
    for c in answer.body["codes"].as_array().unwrap() {
        assert_eq!(c.as_object().unwrap().len(), 1, "{c}");
        assert_eq!(c["code"].as_str().unwrap().len(), 64);
    }
    // Counts come as numbers or strings.
    let answer = app.request(
        "POST",
        "/v1/codes/7/_generate",
        Some(&app.token),
        Some("{\"count\": \"5\"}"),
    );
    assert_eq!(codes(&answer.body).len(), 5);
}

#[test]
fn generate_refuses_counts_out_of_range() {
    let app = spawn_app();
    for count in ["0", "1001", "-1", "1.5", "\"many\"", "true"] {
        let answer = app.request(
            "POST",
            "/v1/codes/otp_sms/_generate",
            Some(&app.token),
            Some(&format!("{{\"count\": {count}}}")),
        );
        assert_eq!(violated_fields(&answer), ["count"], "{count}");
    }
}

/// The configuration a code must match, whole: length and alphabet.
fn matches(code: &str, config: &Value) -> bool {
    let length = config["length"].as_u64().unwrap() as usize;
    let upper = config["includeUpperLetters"].as_bool().unwrap_or(false);
    let digits = config["includeDigits"].as_bool().unwrap_or(false);
    code.len() == length
        && code
            .bytes()
            .all(|b| (upper && b.is_ascii_uppercase()) || (digits && b.is_ascii_digit()))
}

#[test]
fn a_put_that_answered_is_seen_by_every_generate_after_it() {
    let app = spawn_app();
    let configs = [
        json!({"length": 12, "expiry": "60s", "includeUpperLetters": true}),
        json!({"length": 7, "expiry": "90s", "includeDigits": true}),
    ];
    for round in 0..20 {
        let config = &configs[round % 2];
        let answer = app.put_generator("otp_email", config);
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let sequence = answer.body["details"]["sequence"].clone();
        std::thread::scope(|s| {
            let clients: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..3 {
                            let answer = app.generate("otp_email", 20);
                            assert_eq!(answer.body["sequence"], sequence, "round {round}");
                            for code in codes(&answer.body) {
                                assert!(
                                    matches(&code, config),
                                    "round {round}: {code} is not of {config}"
                                );
                            }
                        }
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
        });
    }
}
