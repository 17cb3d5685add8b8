//! Tokens with a life cycle (SPEC section 6): create with and without expiry, list without
//! secrets, revoke with effect on the very next request, expiry, grants limited to what the
//! caller holds, and revocation from the command line beside a running server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{
    Answer, TestApp, assert_error_shape, spawn_app, spawn_app_process, violated_fields,
};

fn create(app: &TestApp, token: &str, body: &Value) -> Answer {
    app.request(
        "POST",
        "/admin/v1/tokens",
        Some(token),
        Some(&body.to_string()),
    )
}

fn list(app: &TestApp, token: &str, body: &Value) -> Answer {
    app.request(
        "POST",
        "/admin/v1/tokens/_search",
        Some(token),
        Some(&body.to_string()),
    )
}

fn revoke(app: &TestApp, token: &str, id: &str) -> Answer {
    app.request(
        "DELETE",
        &format!("/admin/v1/tokens/{id}"),
        Some(token),
        None,
    )
}

#[test]
fn a_created_token_works_at_once_and_is_shown_only_in_its_answer() {
    let app = spawn_app();
    let made = create(
        &app,
        &app.token,
        &json!({"name": "deploy-bot", "permissions": ["codes.generate"]}),
    );
    assert_eq!(made.status, 200, "{:?}", made.body);
    let token = made.body["token"].as_str().unwrap().to_owned();
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sg_") && token.len() == 46);
    assert!(made.body.get("expiresAt").is_none(), "no expiry asked");
    assert!(made.body["details"]["resourceOwner"].is_string());
    assert_eq!(app.generate_with(&token), 200);
    let read = app.request(
        "GET",
        "/admin/v1/secretgenerators/OTP_SMS",
        Some(&token),
        None,
    );
    assert_eq!(read.status, 403, "codes.generate only");

    let listed = list(&app, &app.token, &json!({}));
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body["details"]["totalResult"], "2");
    let text = listed.body.to_string();
    assert!(!text.contains(&token), "the token is never listed");
    assert!(!text.contains(&app.token));
    let entry = listed.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["name"], "deploy-bot");
    assert_eq!(entry["permissions"], json!(["codes.generate"]));
    assert!(entry["creationDate"].is_string());
    let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "name", "permissions", "creationDate"]);
}

#[test]
fn listing_pages_oldest_first_and_needs_iam_read() {
    let app = spawn_app();
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let made = create(
            &app,
            &app.token,
            &json!({"name": name, "permissions": ["iam.read"]}),
        );
        ids.push(made.body["id"].as_str().unwrap().to_owned());
    }
    let page = list(
        &app,
        &app.token,
        &json!({"query": {"offset": 1, "limit": 2}}),
    );
    let names: Vec<&str> = page.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "after the bootstrap token, oldest first");
    assert_eq!(page.body["details"]["totalResult"], "4");
    let newest = list(
        &app,
        &app.token,
        &json!({"query": {"limit": 1, "asc": false}}),
    );
    assert_eq!(newest.body["result"][0]["name"], "c");
    let writer = create(
        &app,
        &app.token,
        &json!({"name": "w", "permissions": ["codes.generate"]}),
    );
    let refused = list(&app, writer.body["token"].as_str().unwrap(), &json!({}));
    assert_eq!(refused.status, 403);
    assert_error_shape(&refused, 7);
}

#[test]
fn a_revoked_token_is_refused_on_the_very_next_request() {
    let app = spawn_app();
    let made = create(
        &app,
        &app.token,
        &json!({"name": "leaked", "permissions": ["codes.generate"]}),
    );
    let token = made.body["token"].as_str().unwrap();
    let id = made.body["id"].as_str().unwrap();
    assert_eq!(app.generate_with(token), 200);
    let revoked = revoke(&app, &app.token, id);
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert!(revoked.body["details"]["changeDate"].is_string());
    let after = app.request("POST", "/v1/codes/OTP_SMS/_generate", Some(token), None);
    assert_eq!(after.status, 401);
    assert_error_shape(&after, 16);
    let listed = list(&app, &app.token, &json!({}));
    assert!(!listed.body.to_string().contains(id));
    // Both are events in the log, with their creator and never the token.
    let store = secretgen::SqliteStore::open_read_only(&app.data_dir).unwrap();
    let instance = secretgen::Store::default_instance(&store).unwrap().unwrap();
    let events = secretgen::Store::events(&store, &instance).unwrap();
    let last: Vec<(&str, &str)> = events[events.len() - 2..]
        .iter()
        .map(|e| (e.event_type.as_str(), e.creator.as_str()))
        .collect();
    assert_eq!(
        last,
        [
            ("instance.token.added", "bootstrap-admin"),
            ("instance.token.removed", "bootstrap-admin")
        ]
    );
    let logged = format!("{:?}", events[events.len() - 1].change);
    assert!(logged.contains(id) && !logged.contains(token), "{logged}");
    assert_eq!(
        revoked.body["details"]["sequence"],
        events.len().to_string()
    );
    // Unknown, and already revoked: 404 with the error body.
    for unknown in [id, "tok_0000000000000000"] {
        let missing = revoke(&app, &app.token, unknown);
        assert_eq!(missing.status, 404);
        assert_error_shape(&missing, 5);
    }
}

#[test]
fn an_expired_token_is_refused() {
    let app = spawn_app();
    let made = create(
        &app,
        &app.token,
        &json!({"name": "short-lived", "permissions": ["codes.generate"], "expiry": "1s"}),
    );
    assert_eq!(made.status, 200, "{:?}", made.body);
    let token = made.body["token"].as_str().unwrap();
    let expires = made.body["expiresAt"].as_str().unwrap();
    assert!(expires > made.body["details"]["creationDate"].as_str().unwrap());
    let listed = list(&app, &app.token, &json!({}));
    assert!(
        listed.body.to_string().contains(expires),
        "listed with its expiry"
    );
    assert_eq!(app.generate_with(token), 200);
    let start = Instant::now();
    while app.generate_with(token) == 200 {
        assert!(start.elapsed() < Duration::from_secs(5), "never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = app.request("POST", "/v1/codes/OTP_SMS/_generate", Some(token), None);
    assert_eq!(refused.status, 401);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn a_caller_grants_only_what_it_holds() {
    let app = spawn_app();
    let admin_of_tokens = create(
        &app,
        &app.token,
        &json!({"name": "token-admin", "permissions": ["iam.write"]}),
    );
    let limited = admin_of_tokens.body["token"].as_str().unwrap();
    let escalate = create(
        &app,
        limited,
        &json!({"name": "escalated", "permissions": ["iam.write", "codes.generate"]}),
    );
    assert_eq!(escalate.status, 403, "{:?}", escalate.body);
    assert_error_shape(&escalate, 7);
    let fine = create(
        &app,
        limited,
        &json!({"name": "same", "permissions": ["iam.write"]}),
    );
    assert_eq!(fine.status, 200);
    // A reader may not create or revoke at all.
    let reader = create(
        &app,
        &app.token,
        &json!({"name": "reader", "permissions": ["iam.read"]}),
    );
    let reader = reader.body["token"].as_str().unwrap();
    let refused = create(
        &app,
        reader,
        &json!({"name": "x", "permissions": ["iam.read"]}),
    );
    assert_eq!(refused.status, 403);
    let id = fine.body["id"].as_str().unwrap();
    assert_eq!(revoke(&app, reader, id).status, 403);
    assert_eq!(revoke(&app, "sg_nope", id).status, 401);
    // Refused calls changed nothing.
    let listed = list(&app, &app.token, &json!({}));
    assert_eq!(listed.body["details"]["totalResult"], "4");
}

#[test]
fn bad_token_requests_name_every_field_and_change_nothing() {
    let app = spawn_app();
    let bad = create(
        &app,
        &app.token,
        &json!({"name": " ", "permissions": ["iam.read", "root"], "expiry": "1.5s"}),
    );
    let mut fields = violated_fields(&bad);
    fields.sort();
    assert_eq!(fields, ["expiry", "name", "permissions"]);
    let types = create(
        &app,
        &app.token,
        &json!({"name": 7, "permissions": "iam.read", "expiry": 60}),
    );
    let mut fields = violated_fields(&types);
    fields.sort();
    assert_eq!(fields, ["expiry", "name", "permissions"]);
    let empty = create(&app, &app.token, &json!({"name": "x", "permissions": []}));
    assert_eq!(violated_fields(&empty), ["permissions"]);
    for expiry in ["0s", "1000000000s", "-1s", "1d"] {
        let answer = create(
            &app,
            &app.token,
            &json!({"name": "x", "permissions": ["iam.read"], "expiry": expiry}),
        );
        assert_eq!(violated_fields(&answer), ["expiry"], "{expiry}");
    }
    let listed = list(&app, &app.token, &json!({}));
    assert_eq!(listed.body["details"]["totalResult"], "1");
}

#[test]
fn revoking_from_the_command_line_beside_a_running_server_takes_effect_at_once() {
    let app = spawn_app_process();
    let token = app.create_token("cli-made", "codes.generate");
    assert_eq!(app.generate_with(&token), 200);
    let id = {
        let listed = list(&app, &app.token, &json!({}));
        listed.body["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "cli-made")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_secretgen"))
        .args(["token", "revoke", &id])
        .env("SECRETGEN_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server notices another process's commit within its watch interval (20 ms).
    let start = Instant::now();
    while app.generate_with(&token) == 200 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the revocation did not reach the server within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let list_out = std::process::Command::new(env!("CARGO_BIN_EXE_secretgen"))
        .args(["token", "list"])
        .env("SECRETGEN_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    let listing = String::from_utf8(list_out.stdout).unwrap();
    assert!(listing.contains("bootstrap-admin"), "{listing}");
    assert!(!listing.contains(&id), "{listing}");
    assert!(!listing.contains("sg_"), "no token in the listing");
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_secretgen"))
        .args(["token", "revoke", &id])
        .env("SECRETGEN_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
}
