//! `POST /admin/v1/secretgenerators/_search`.

use serde_json::{Value, json};

use crate::helpers::{spawn_app, violated_fields};

fn types(answer: &Value) -> Vec<String> {
    answer["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["generatorType"]
                .as_str()
                .unwrap()
                .trim_start_matches("SECRET_GENERATOR_TYPE_")
                .to_owned()
        })
        .collect()
}

#[test]
fn search_lists_every_generator_by_type_number() {
    let app = spawn_app();
    let answer = app.request(
        "POST",
        "/admin/v1/secretgenerators/_search",
        Some(&app.token),
        None,
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        types(&answer.body),
        [
            "INIT_CODE",
            "VERIFY_EMAIL_CODE",
            "VERIFY_PHONE_CODE",
            "PASSWORD_RESET_CODE",
            "PASSWORDLESS_INIT_CODE",
            "APP_SECRET",
            "OTP_SMS",
            "OTP_EMAIL"
        ]
    );
    let details = &answer.body["details"];
    assert_eq!(details["totalResult"], "8");
    assert_eq!(details["processedSequence"], "8");
    assert!(details["viewTimestamp"].as_str().unwrap().ends_with('Z'));
    // Each result is what GET answers.
    let otp = app.get_generator("otp_sms").body["secretGenerator"].clone();
    assert_eq!(answer.body["result"][6], otp);
}

#[test]
fn search_pages_orders_and_filters() {
    let app = spawn_app();
    let page = app
        .search(&json!({"query": {"offset": "2", "limit": 3, "asc": true}}))
        .body;
    assert_eq!(
        types(&page),
        [
            "VERIFY_PHONE_CODE",
            "PASSWORD_RESET_CODE",
            "PASSWORDLESS_INIT_CODE"
        ]
    );
    assert_eq!(page["details"]["totalResult"], "8");
    let desc = app
        .search(&json!({"query": {"limit": 2, "asc": false}}))
        .body;
    assert_eq!(types(&desc), ["OTP_EMAIL", "OTP_SMS"]);
    let one = app
        .search(&json!({"queries": [{"typeQuery": {"generatorType": "otp_sms"}}]}))
        .body;
    assert_eq!(types(&one), ["OTP_SMS"]);
    assert_eq!(one["details"]["totalResult"], "1");
    let beyond = app.search(&json!({"query": {"offset": 50}})).body;
    assert_eq!(types(&beyond), Vec::<String>::new());
    // A change moves processedSequence.
    let answer = app.put_generator(
        "otp_sms",
        &json!({"length": 9, "expiry": "60s", "includeDigits": true}),
    );
    assert_eq!(answer.status, 200);
    let all = app.search(&json!({})).body;
    assert_eq!(all["details"]["processedSequence"], "10");
}

#[test]
fn bad_search_requests_name_their_fields() {
    let app = spawn_app();
    let answer = app.search(&json!({
        "query": {"limit": -1, "asc": "yes"},
        "queries": [{"typeQuery": {"generatorType": "UNSPECIFIED"}}, {"nameQuery": {}}]
    }));
    assert_eq!(
        violated_fields(&answer),
        [
            "query.limit",
            "query.asc",
            "queries[0].typeQuery.generatorType",
            "queries[1]"
        ]
    );
}

#[test]
fn type_queries_read_the_type_as_a_name_or_a_number() {
    let app = spawn_app();
    for t in [
        json!(7),
        json!("7"),
        json!("otp_sms"),
        json!("SECRET_GENERATOR_TYPE_OTP_SMS"),
    ] {
        let answer = app.search(&json!({"queries": [{"typeQuery": {"generatorType": t}}]}));
        assert_eq!(answer.status, 200, "{t}: {:?}", answer.body);
        assert_eq!(types(&answer.body), ["OTP_SMS"], "{t}");
    }
    let answer = app.search(&json!({"queries": [{"typeQuery": {"generatorType": 1}}]}));
    assert_eq!(types(&answer.body), ["INIT_CODE"]);
    // Numbers outside the table, or not integers, are refused as unknown names are.
    for t in [
        json!(0),
        json!(9),
        json!(-1),
        json!(7.5),
        json!(1e300),
        json!(true),
        json!([7]),
    ] {
        let answer = app.search(&json!({"queries": [{"typeQuery": {"generatorType": t}}]}));
        assert_eq!(
            violated_fields(&answer),
            ["queries[0].typeQuery.generatorType"],
            "{t}"
        );
    }
}
