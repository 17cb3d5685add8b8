//! Tokens with a life cycle (SPEC section 6): create with and without expiry, list without
//! secrets, revoke with effect on the very next request, expiry, grants limited to what the
//! caller holds, and revocation from the command line beside a running server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::cli::{refusal, stdout};
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
    let instance = secretgen::store::EventLog::default_instance(&store)
        .unwrap()
        .unwrap();
    let events = secretgen::store::EventLog::events(&store, &instance).unwrap();
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
    stdout(&app.command(&["token", "revoke", &id]));
    // The server notices another process's commit within its watch interval (20 ms).
    let start = Instant::now();
    while app.generate_with(&token) == 200 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the revocation did not reach the server within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let listing = stdout(&app.command(&["token", "list"]));
    assert!(listing.contains("bootstrap-admin"), "{listing}");
    assert!(!listing.contains(&id), "{listing}");
    assert!(!listing.contains("sg_"), "no token in the listing");
    refusal(&app.command(&["token", "revoke", &id]));
}

/// The id of the token named `name`, from the listing.
fn id_of(app: &TestApp, name: &str) -> String {
    let listed = list(app, &app.token, &json!({}));
    listed.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no token {name}: {:?}", listed.body))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A token made by `creator`: its answer's token, id and expiry.
fn made_by(app: &TestApp, creator: &str, body: &Value) -> (String, String, Option<String>) {
    let made = create(app, creator, body);
    assert_eq!(made.status, 200, "{body}: {:?}", made.body);
    (
        made.body["token"].as_str().unwrap().to_owned(),
        made.body["id"].as_str().unwrap().to_owned(),
        made.body["expiresAt"].as_str().map(str::to_owned),
    )
}

#[test]
fn a_token_expires_no_later_than_the_token_that_created_it() {
    let app = spawn_app();
    let (short, _, short_expiry) = made_by(
        &app,
        &app.token,
        &json!({"name": "short", "permissions": ["iam.write", "codes.generate"], "expiry": "5s"}),
    );
    let short_expiry = short_expiry.expect("5 s asked");
    // None asked, or a longer one: cut to the creator's, and the answer says so.
    for (name, expiry) in [("forever", None), ("a-day", Some("86400s"))] {
        let mut body = json!({"name": name, "permissions": ["codes.generate"]});
        if let Some(expiry) = expiry {
            body["expiry"] = expiry.into();
        }
        let (_, _, got) = made_by(&app, &short, &body);
        assert_eq!(got.as_deref(), Some(short_expiry.as_str()), "{name}");
    }
    // A shorter one is kept.
    let (_, _, sooner) = made_by(
        &app,
        &short,
        &json!({"name": "sooner", "permissions": ["codes.generate"], "expiry": "2s"}),
    );
    assert!(sooner.unwrap() < short_expiry);
    // The listing shows what each got.
    let listed = list(&app, &app.token, &json!({}));
    let forever = listed.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "forever")
        .unwrap()
        .clone();
    assert_eq!(forever["expiresAt"], short_expiry.as_str());
}

#[test]
fn revoking_a_token_revokes_every_token_it_created() {
    let app = spawn_app();
    let all = json!(["iam.read", "iam.write", "codes.generate"]);
    let (a, a_id, _) = made_by(&app, &app.token, &json!({"name": "a", "permissions": all}));
    let (b, b_id, _) = made_by(&app, &a, &json!({"name": "b", "permissions": all}));
    let (c, c_id, _) = made_by(
        &app,
        &b,
        &json!({"name": "c", "permissions": ["codes.generate"]}),
    );
    let (b2, b2_id, _) = made_by(
        &app,
        &a,
        &json!({"name": "b2", "permissions": ["codes.generate"]}),
    );
    let (other, _, _) = made_by(
        &app,
        &app.token,
        &json!({"name": "other", "permissions": ["codes.generate"]}),
    );
    for token in [&a, &b, &c, &b2, &other] {
        assert_eq!(app.generate_with(token), 200);
    }
    let revoked = revoke(&app, &app.token, &a_id);
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    for token in [&a, &b, &c, &b2] {
        assert_eq!(app.generate_with(token), 401, "a descendant still works");
    }
    assert_eq!(
        app.generate_with(&other),
        200,
        "an unrelated token was revoked"
    );
    // One event each, by the revoker, the token first, then its descendants nearest first;
    // the answer's sequence is the last of them.
    let log = app.request(
        "POST",
        "/admin/v1/events/_search",
        Some(&app.token),
        Some(&json!({"eventTypes": ["instance.token.removed"]}).to_string()),
    );
    let removed: Vec<(&str, &str, &str)> = log.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["tokenId"].as_str().unwrap(),
                e["creator"].as_str().unwrap(),
                e["creatorId"].as_str().unwrap(),
            )
        })
        .collect();
    let admin_id = id_of(&app, "bootstrap-admin");
    let ids: Vec<&str> = removed.iter().map(|r| r.0).collect();
    assert_eq!(ids[0], a_id);
    let mut children = ids[1..3].to_vec();
    children.sort();
    let mut expected = vec![b_id.as_str(), b2_id.as_str()];
    expected.sort();
    assert_eq!(children, expected);
    assert_eq!(ids[3], c_id);
    assert!(
        removed
            .iter()
            .all(|r| r.1 == "bootstrap-admin" && r.2 == admin_id),
        "{removed:?}"
    );
    assert_eq!(
        revoked.body["details"]["sequence"],
        log.body["result"][3]["sequence"]
    );
}

#[test]
fn only_a_token_that_holds_every_permission_of_another_may_revoke_it() {
    let app = spawn_app();
    let (writer, writer_id, _) = made_by(
        &app,
        &app.token,
        &json!({"name": "writer", "permissions": ["iam.write"]}),
    );
    let admin_id = id_of(&app, "bootstrap-admin");
    let refused = revoke(&app, &writer, &admin_id);
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_error_shape(&refused, 7);
    assert_eq!(app.generate_with(&app.token), 200, "the admin was revoked");
    // One that holds what the target holds may: itself, or a token like it.
    let (_, peer_id, _) = made_by(
        &app,
        &app.token,
        &json!({"name": "peer", "permissions": ["iam.write"]}),
    );
    assert_eq!(revoke(&app, &writer, &peer_id).status, 200);
    assert_eq!(revoke(&app, &writer, &writer_id).status, 200);
    assert_eq!(app.generate_with(&app.token), 200);
}

#[test]
fn names_are_unique_among_live_tokens_and_the_servers_own_names_are_reserved() {
    let app = spawn_app();
    let (_, first, _) = made_by(
        &app,
        &app.token,
        &json!({"name": "deploy", "permissions": ["codes.generate"]}),
    );
    let again = create(
        &app,
        &app.token,
        &json!({"name": "deploy", "permissions": ["codes.generate"]}),
    );
    // A conflict with what exists, not a bad request: 409, ALREADY_EXISTS, on the field.
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_error_shape(&again, 6);
    assert_eq!(
        again.body["details"][0]["fieldViolations"][0]["field"], "name",
        "{:?}",
        again.body
    );
    for reserved in [
        "system",
        "command line",
        "bootstrap-admin",
        "System",
        " bootstrap-admin ",
    ] {
        let taken = create(
            &app,
            &app.token,
            &json!({"name": reserved, "permissions": ["codes.generate"]}),
        );
        assert_eq!(taken.status, 400, "{reserved:?}: {:?}", taken.body);
        assert_eq!(violated_fields(&taken), ["name"], "{reserved:?}");
    }
    // A revoked or expired token's name is free again.
    assert_eq!(revoke(&app, &app.token, &first).status, 200);
    made_by(
        &app,
        &app.token,
        &json!({"name": "deploy", "permissions": ["codes.generate"]}),
    );
    let (brief, _, _) = made_by(
        &app,
        &app.token,
        &json!({"name": "brief", "permissions": ["codes.generate"], "expiry": "1s"}),
    );
    let start = Instant::now();
    while app.generate_with(&brief) == 200 {
        assert!(start.elapsed() < Duration::from_secs(5), "never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    made_by(
        &app,
        &app.token,
        &json!({"name": "brief", "permissions": ["codes.generate"]}),
    );
    // The command line keeps the same rules.
    for (name, why) in [
        ("system", "server's own"),
        ("deploy", "already has this name"),
    ] {
        let out = app.command(&[
            "token",
            "create",
            "--name",
            name,
            "--permissions",
            "iam.read",
        ]);
        let stderr = refusal(&out);
        assert!(stderr.contains(why), "{name}: {stderr}");
    }
}

#[test]
fn the_audit_log_records_the_creators_token_id_beside_its_name() {
    let app = spawn_app();
    let admin_id = id_of(&app, "bootstrap-admin");
    let (ops, ops_id, _) = made_by(
        &app,
        &app.token,
        &json!({"name": "ops", "permissions": ["iam.read", "iam.write"]}),
    );
    let put = app.request(
        "PUT",
        "/admin/v1/secretgenerators/OTP_SMS",
        Some(&ops),
        Some(&json!({"length": 9, "expiry": "300s", "includeDigits": true}).to_string()),
    );
    assert_eq!(put.status, 200, "{:?}", put.body);
    let log = app.request(
        "POST",
        "/admin/v1/events/_search",
        Some(&app.token),
        Some("{}"),
    );
    let by: Vec<(&str, &str, &str)> = log.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap(),
                e["creator"].as_str().unwrap(),
                e["creatorId"].as_str().unwrap(),
            )
        })
        .collect();
    let n = by.len();
    assert_eq!(by[0], ("instance.secret.generator.added", "system", ""));
    assert_eq!(
        by[n - 3],
        ("instance.token.added", "system", ""),
        "the first admin"
    );
    assert_eq!(
        by[n - 2],
        ("instance.token.added", "bootstrap-admin", admin_id.as_str())
    );
    assert_eq!(
        by[n - 1],
        ("instance.secret.generator.changed", "ops", ops_id.as_str())
    );
    // And it is a filter.
    let mine = app.request(
        "POST",
        "/admin/v1/events/_search",
        Some(&app.token),
        Some(&json!({"creatorId": ops_id}).to_string()),
    );
    assert_eq!(mine.body["details"]["totalResult"], "1");
}
