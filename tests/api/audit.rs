//! The audit log (SPEC section 10): after a scripted series of configuration changes and
//! token events, `events/_search` returns exactly them, in order, with each filter and with
//! paging, each change with the configuration it replaced, and no secret in any field.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error_shape, spawn_app, violated_fields};

fn events(app: &TestApp, token: &str, body: &Value) -> Value {
    let answer = app.request(
        "POST",
        "/admin/v1/events/_search",
        Some(token),
        Some(&body.to_string()),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

/// (sequence, event type, creator) of each event of an answer.
fn summary(answer: &Value) -> Vec<(u64, String, String)> {
    answer["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["sequence"].as_str().unwrap().parse().unwrap(),
                e["eventType"].as_str().unwrap().to_owned(),
                e["creator"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const ADDED: &str = "instance.secret.generator.added";
const CHANGED: &str = "instance.secret.generator.changed";
const TOKEN_ADDED: &str = "instance.token.added";
const TOKEN_REMOVED: &str = "instance.token.removed";

#[test]
fn the_log_holds_exactly_the_scripted_changes_in_order_with_filters_and_paging() {
    let app = spawn_app();
    // 10: a change by the admin; 11: a token made; 12: a change by it; 13: its revocation.
    let first = app.put_generator(
        "otp_sms",
        &json!({"length": 9, "expiry": "120s", "includeDigits": true}),
    );
    assert_eq!(first.status, 200);
    let made = app.request(
        "POST",
        "/admin/v1/tokens",
        Some(&app.token),
        Some(r#"{"name": "ops-team", "permissions": ["iam.write", "iam.read"]}"#),
    );
    let ops = made.body["token"].as_str().unwrap().to_owned();
    let ops_id = made.body["id"].as_str().unwrap().to_owned();
    let second = app.request(
        "PUT",
        "/admin/v1/secretgenerators/otp_email",
        Some(&ops),
        Some(r#"{"length": 10, "expiry": "60s", "includeUpperLetters": true, "includeDigits": true}"#),
    );
    assert_eq!(second.status, 200);
    let revoked = app.request(
        "DELETE",
        &format!("/admin/v1/tokens/{ops_id}"),
        Some(&app.token),
        None,
    );
    assert_eq!(revoked.status, 200);

    let all = events(&app, &app.token, &json!({}));
    assert_eq!(all["details"]["totalResult"], "13");
    assert_eq!(all["details"]["processedSequence"], "13");
    let got = summary(&all);
    let mut expected: Vec<(u64, String, String)> = (1..=8)
        .map(|s| (s, ADDED.to_owned(), "system".to_owned()))
        .collect();
    for (s, t, c) in [
        (9, TOKEN_ADDED, "system"),
        (10, CHANGED, "bootstrap-admin"),
        (11, TOKEN_ADDED, "bootstrap-admin"),
        (12, CHANGED, "ops-team"),
        (13, TOKEN_REMOVED, "bootstrap-admin"),
    ] {
        expected.push((s, t.to_owned(), c.to_owned()));
    }
    assert_eq!(got, expected);

    // A change shows what it wrote and what it replaced.
    let change = &all["result"][9];
    assert_eq!(change["generatorType"], "SECRET_GENERATOR_TYPE_OTP_SMS");
    assert_eq!(change["config"]["length"], 9);
    assert_eq!(change["config"]["expiry"], "120s");
    assert_eq!(
        change["previous"]["length"], 8,
        "ZITADEL's default before it"
    );
    assert_eq!(change["previous"]["expiry"], "300s");
    assert!(
        all["result"][0].get("previous").is_none(),
        "an added event replaced nothing"
    );
    // A token event shows the token's public facts, never the token.
    let token_event = &all["result"][10];
    assert_eq!(token_event["tokenId"], ops_id.as_str());
    assert_eq!(token_event["token"]["name"], "ops-team");
    assert!(token_event.get("generatorType").is_none());

    // Filters, each alone.
    let by_type = events(&app, &app.token, &json!({"generatorType": "OTP_SMS"}));
    assert_eq!(
        summary(&by_type).iter().map(|e| e.0).collect::<Vec<_>>(),
        [7, 10]
    );
    let by_types = events(
        &app,
        &app.token,
        &json!({"eventTypes": [TOKEN_ADDED, TOKEN_REMOVED]}),
    );
    assert_eq!(
        summary(&by_types).iter().map(|e| e.0).collect::<Vec<_>>(),
        [9, 11, 13]
    );
    let by_creator = events(&app, &app.token, &json!({"creator": "ops-team"}));
    assert_eq!(
        summary(&by_creator),
        [(12, CHANGED.to_owned(), "ops-team".to_owned())]
    );
    let from = events(&app, &app.token, &json!({"fromSequence": "12"}));
    assert_eq!(
        summary(&from).iter().map(|e| e.0).collect::<Vec<_>>(),
        [12, 13]
    );
    let tenth = all["result"][9]["creationDate"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = events(&app, &app.token, &json!({"since": tenth}));
    assert_eq!(summary(&since).first().map(|e| e.0), Some(10));
    let until = events(&app, &app.token, &json!({"until": tenth}));
    assert_eq!(summary(&until).last().map(|e| e.0), Some(9));
    let none = events(
        &app,
        &app.token,
        &json!({"until": "1971-01-01T00:00:00+01:00"}),
    );
    assert_eq!(none["details"]["totalResult"], "0");

    // Paging, both ways, over the filtered list.
    let page = events(
        &app,
        &app.token,
        &json!({"query": {"offset": 8, "limit": 2}}),
    );
    assert_eq!(
        summary(&page).iter().map(|e| e.0).collect::<Vec<_>>(),
        [9, 10]
    );
    assert_eq!(page["details"]["totalResult"], "13");
    let newest = events(
        &app,
        &app.token,
        &json!({"query": {"limit": 2, "asc": false}, "creator": "bootstrap-admin"}),
    );
    assert_eq!(
        summary(&newest).iter().map(|e| e.0).collect::<Vec<_>>(),
        [13, 11]
    );
    // A reader sees no secret in any field: neither a token nor its hash.
    let reader = app.request(
        "POST",
        "/admin/v1/tokens",
        Some(&app.token),
        Some(r#"{"name": "auditor", "permissions": ["iam.read"]}"#),
    );
    let reader = reader.body["token"].as_str().unwrap().to_owned();
    let seen = events(&app, &reader, &json!({})).to_string();
    for secret in [&ops, &app.token, &reader] {
        let hash: String = secretgen::token::hash(secret)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            !seen.contains(secret.as_str()) && !seen.contains(&hash),
            "{seen}"
        );
    }
}

#[test]
fn reading_the_log_needs_iam_read_and_bad_filters_are_named() {
    let app = spawn_app();
    let made = app.request(
        "POST",
        "/admin/v1/tokens",
        Some(&app.token),
        Some(r#"{"name": "bot", "permissions": ["codes.generate"]}"#),
    );
    let bot = made.body["token"].as_str().unwrap();
    let refused = app.request("POST", "/admin/v1/events/_search", Some(bot), Some("{}"));
    assert_eq!(refused.status, 403);
    assert_error_shape(&refused, 7);
    let bad = app.request(
        "POST",
        "/admin/v1/events/_search",
        Some(&app.token),
        Some(
            &json!({
                "generatorType": "NOPE",
                "eventTypes": ["instance.secret.generator.removed"],
                "creator": 5,
                "fromSequence": -1,
                // Six bytes from the end fall inside a character: this once killed the
                // connection (the contract test found it).
                "since": "yÊµ\u{8}\u{a7}x\u{1f9e7}",
                "until": "2026-02-31T00:00:00Z"
            })
            .to_string(),
        ),
    );
    let mut fields = violated_fields(&bad);
    fields.sort();
    assert_eq!(
        fields,
        [
            "creator",
            "eventTypes[0]",
            "fromSequence",
            "generatorType",
            "since",
            "until"
        ]
    );
}

#[test]
fn an_answer_holds_at_most_1000_events_and_paging_by_sequence_reads_the_whole_log() {
    // A log of 1,208 events, written straight into the store before the server starts.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    {
        let store = std::sync::Arc::new(secretgen::SqliteStore::open(&dir).unwrap());
        let control = secretgen::ControlPlane::open(store, None).unwrap();
        let now = std::time::SystemTime::now();
        let changes: Vec<secretgen::store::NewEvent> = (0..1200)
            .map(|i| secretgen::store::NewEvent {
                event_type: secretgen::store::EventType::Changed,
                config: secretgen::GeneratorConfig::new(&secretgen::ConfigDraft {
                    length: secretgen::CodeLength::new(6 + i % 2),
                    expiry: secretgen::Expiry::from_secs(60),
                    include_digits: true,
                    ..secretgen::ConfigDraft::new(secretgen::GeneratorType::OtpSms)
                })
                .unwrap(),
                created_at: secretgen::store::truncate_to_micros(now),
                creator: "bulk".into(),
                creator_id: None,
            })
            .collect();
        let written = control
            .store()
            .append(control.instance().id(), &changes)
            .unwrap();
        assert_eq!(written.len(), 1200);
    }
    let token = "k".repeat(40);
    let app =
        crate::helpers::spawn_app_in(&dir, &[("SECRETGEN_BOOTSTRAP_TOKEN", &token)]).keeping(temp);
    for body in [json!({}), json!({"query": {"limit": 5000}})] {
        let page = events(&app, &app.token, &body);
        assert_eq!(page["result"].as_array().unwrap().len(), 1000, "{body}");
        assert_eq!(page["details"]["totalResult"], "1209", "{body}");
        assert_eq!(page["details"]["processedSequence"], "1209");
    }
    // A reader of the whole log pages by sequence: every event once, in order.
    let mut from = 1u64;
    let mut seen = Vec::new();
    loop {
        let page = events(
            &app,
            &app.token,
            &json!({"fromSequence": from, "query": {"limit": 500}}),
        );
        let got = summary(&page);
        if got.is_empty() {
            break;
        }
        from = got.last().unwrap().0 + 1;
        seen.extend(got.into_iter().map(|e| e.0));
    }
    assert_eq!(seen, (1..=1209).collect::<Vec<u64>>());
    // And by offset, newest first.
    let newest = events(
        &app,
        &app.token,
        &json!({"query": {"offset": 1000, "limit": 1000, "asc": false}}),
    );
    let sequences: Vec<u64> = summary(&newest).into_iter().map(|e| e.0).collect();
    assert_eq!(sequences, (1..=209).rev().collect::<Vec<u64>>());
}
