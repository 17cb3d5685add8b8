//! Start, stop, restart: health, durability through the API, the data directory's lock,
//! bootstrap tokens, who made each change, and logs without secrets.

use std::path::Path;
use std::sync::Arc;

use secretgen::SqliteStore;
use secretgen::store::EventLog;
use serde_json::json;

use crate::common::cli::{refusal, run, secretgen};
use crate::helpers::{
    TestApp, assert_error_shape, spawn_app, spawn_app_in, spawn_app_process, start,
};

#[test]
fn health_and_readiness_need_no_token() {
    let app = spawn_app();
    let health = app.request("GET", "/healthz", None, None);
    assert_eq!(health.status, 200);
    assert_eq!(health.body, json!({"status": "ok"}));
    let ready = app.request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body, json!({"status": "ready", "store": "up"}));
}

#[test]
fn changes_survive_a_restart_through_the_api() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut app = spawn_app_in(&dir, &[]);
    assert!(app.token.starts_with("sg_"), "a first start prints a token");
    let answer = app.put_generator(
        "verify_email_code",
        &json!({"length": 9, "expiry": "1800s", "includeUpperLetters": true, "includeDigits": true, "excludeAmbiguous": true}),
    );
    assert_eq!(answer.status, 200);
    let before: Vec<_> = ["verify_email_code", "otp_sms", "app_secret"]
        .iter()
        .map(|t| app.get_generator(t).body)
        .collect();
    assert!(app.stop().success(), "SIGTERM ends the server cleanly");

    let mut again = spawn_app_in(&dir, &[]);
    assert!(again.token.is_empty(), "a restart prints no new token");
    again.token = app.token.clone();
    let after: Vec<_> = ["verify_email_code", "otp_sms", "app_secret"]
        .iter()
        .map(|t| again.get_generator(t).body)
        .collect();
    assert_eq!(before, after);
    let codes = again.generate("verify_email_code", 10);
    assert_eq!(codes.body["sequence"], "10");
}

#[test]
fn a_second_server_on_the_same_directory_is_refused() {
    let app = spawn_app_process();
    let child = start(&app.data_dir, &[]);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another secretgen process"), "{err}");
    // The first one still serves.
    assert_eq!(app.request("GET", "/healthz", None, None).status, 200);
}

#[test]
fn a_bootstrap_token_is_stored_instead_of_printing_one() {
    let temp = tempfile::tempdir().unwrap();
    let given = "automation-bootstrap-token-0123456789abcdef";
    let app = spawn_app_in(
        &temp.path().join("d"),
        &[("SECRETGEN_BOOTSTRAP_TOKEN", given)],
    );
    assert_eq!(app.token, given);
    assert_eq!(app.get_generator("otp_sms").status, 200);
    assert_eq!(app.generate("otp_sms", 1).status, 200);
    assert!(!app.logs().contains(given));
}

#[test]
fn every_event_records_the_token_that_made_it() {
    let mut app = spawn_app_process();
    let ops = app.create_token("ops-team", "iam.write");
    let answer = app.request(
        "PUT",
        "/admin/v1/secretgenerators/otp_sms",
        Some(&ops),
        Some(&json!({"length": 9, "expiry": "60s", "includeDigits": true}).to_string()),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    app.put_generator(
        "otp_email",
        &json!({"length": 9, "expiry": "60s", "includeDigits": true}),
    );
    assert!(app.stop().success());
    let store = Arc::new(SqliteStore::open_read_only(&app.data_dir).unwrap());
    let id = store.default_instance().unwrap().unwrap();
    let events = store.events(&id).unwrap();
    let creators = |token: bool| -> Vec<&str> {
        events
            .iter()
            .filter(|e| e.event_type.is_token() == token)
            .map(|e| e.creator.as_str())
            .collect()
    };
    let configs = creators(false);
    assert_eq!(&configs[8..], ["ops-team", "bootstrap-admin"]);
    assert!(configs[..8].iter().all(|c| *c == "system"));
    // The first admin token, made on the first start; then ops-team's, by `token create`.
    assert_eq!(creators(true), ["system", "command line"]);
}

/// Every code the test saw, looked for in every log line.
fn assert_logs_hold_none_of(app: &TestApp, secrets: &[String]) {
    let logs = app.logs();
    assert!(logs.contains("request"), "the server logs requests: {logs}");
    for secret in secrets {
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
    }
}

#[test]
fn logs_hold_no_code_and_no_token() {
    let mut app = spawn_app_process();
    // Long codes, so that no timestamp or id can hold one by chance.
    let answer = app.put_generator(
        "otp_sms",
        &json!({"length": 16, "expiry": "60s", "includeUpperLetters": true, "includeDigits": true}),
    );
    assert_eq!(answer.status, 200);
    let mut secrets = vec![app.token.clone()];
    for t in ["otp_sms", "app_secret", "passwordless_init_code"] {
        let answer = app.generate(t, 200);
        for c in answer.body["codes"].as_array().unwrap() {
            secrets.push(c["code"].as_str().unwrap().to_owned());
        }
    }
    let reader = app.create_token("reader", "iam.read");
    assert_eq!(
        app.request("GET", "/admin/v1/secretgenerators/1", Some(&reader), None)
            .status,
        200
    );
    assert_eq!(
        app.request("PUT", "/admin/v1/secretgenerators/1", Some(&reader), None)
            .status,
        403
    );
    secrets.push(reader);
    assert!(app.stop().success());
    assert_logs_hold_none_of(&app, &secrets);
}

#[test]
fn sigterm_finishes_the_requests_in_flight() {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut app = spawn_app_process();
    let addr = app.base.trim_start_matches("http://").to_owned();
    let body = "{\"count\": 5}";
    // A request whose body is still on its way when the signal comes.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /v1/codes/otp_sms/_generate HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        app.token,
        body.len(),
        &body[..5]
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = app.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    // The server is stopping: no new connection is served...
    assert!(
        app.try_request("GET", "/healthz", None, None).is_err(),
        "a stopping server takes no new requests"
    );
    // ...but the request in flight is finished.
    stream.write_all(&body.as_bytes()[5..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let answer: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(answer["codes"].as_array().unwrap().len(), 5);
    assert!(
        app.wait().success(),
        "the server exits cleanly after SIGTERM"
    );
    assert!(app.logs().contains("secretgen stopped"));
}

#[test]
fn logs_at_every_level_and_in_json_hold_no_code_and_no_token() {
    let temp = tempfile::tempdir().unwrap();
    let mut app = spawn_app_in(
        &temp.path().join("d"),
        &[("SECRETGEN_LOG", "trace"), ("SECRETGEN_LOG_FORMAT", "json")],
    );
    let answer = app.put_generator(
        "otp_email",
        &json!({"length": 20, "expiry": "60s", "includeUpperLetters": true, "includeDigits": true}),
    );
    assert_eq!(answer.status, 200);
    let mut secrets = vec![app.token.clone()];
    for _ in 0..5 {
        let answer = app.generate("otp_email", 100);
        for c in answer.body["codes"].as_array().unwrap() {
            secrets.push(c["code"].as_str().unwrap().to_owned());
        }
    }
    // A token's whole life through the API: neither it nor its hash reaches a log line.
    let made = app.request(
        "POST",
        "/admin/v1/tokens",
        Some(&app.token),
        Some(r#"{"name": "short", "permissions": ["codes.generate"], "expiry": "3600s"}"#),
    );
    let token = made.body["token"].as_str().unwrap().to_owned();
    assert_eq!(app.generate_with(&token), 200);
    let listed = app.request(
        "POST",
        "/admin/v1/tokens/_search",
        Some(&app.token),
        Some("{}"),
    );
    assert_eq!(listed.status, 200);
    let id = made.body["id"].as_str().unwrap();
    let path = format!("/admin/v1/tokens/{id}");
    assert_eq!(
        app.request("DELETE", &path, Some(&app.token), None).status,
        200
    );
    let read = app.request(
        "POST",
        "/admin/v1/events/_search",
        Some(&app.token),
        Some("{}"),
    );
    assert_eq!(read.status, 200);
    let hash: String = secretgen::token::hash(&token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    secrets.push(token);
    secrets.push(hash);
    assert!(app.stop().success());
    let logs = app.logs();
    for line in logs.lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON line: {line}");
    }
    assert_logs_hold_none_of(&app, &secrets);
}

/// `secretgen serve` with `args` on `data_dir`, run to its end (it must fail).
fn failed_start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = secretgen(["serve", "--data-dir"]);
    command
        .arg(data_dir)
        .args(args)
        .env("SECRETGEN_GRPC_LISTEN", "off")
        .envs(env.iter().copied());
    let out = run(&mut command);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    refusal(&out)
}

#[test]
fn a_failed_first_start_writes_nothing_and_the_next_start_prints_the_token() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let err = failed_start(&dir, &["--listen", &port], &[]);
    assert!(err.contains("cannot listen"), "{err}");
    for workers in ["0", "513", "many"] {
        let err = failed_start(
            &dir,
            &["--listen", "127.0.0.1:0", "--workers", workers],
            &[],
        );
        assert!(err.contains("--workers"), "{err}");
    }
    let err = failed_start(
        &dir,
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.pem",
        ],
        &[],
    );
    assert!(err.contains("TLS"), "{err}");
    assert!(!dir.exists(), "a failed start wrote nothing");
    let app = spawn_app_in(&dir, &[]);
    assert!(
        app.token.starts_with("sg_"),
        "the next start prints the token"
    );
    assert_eq!(app.get_generator("otp_sms").status, 200);
}

#[test]
fn a_bootstrap_token_file_is_read_and_never_shown() {
    let temp = tempfile::tempdir().unwrap();
    let given = "automation-bootstrap-token-from-a-file-0123456789";
    let file = temp.path().join("token");
    std::fs::write(&file, format!("{given}\n")).unwrap();
    let file_arg = file.to_str().unwrap();
    let err = failed_start(
        &temp.path().join("refused"),
        &[
            "--bootstrap-token",
            given,
            "--bootstrap-token-file",
            file_arg,
        ],
        &[],
    );
    assert!(err.contains("--bootstrap-token-file"), "{err}");
    let err = failed_start(
        &temp.path().join("refused"),
        &["--bootstrap-token-file", "/nonexistent/token"],
        &[],
    );
    assert!(err.contains("/nonexistent/token"), "{err}");
    assert!(!temp.path().join("refused").exists());

    let mut app = spawn_app_in(
        &temp.path().join("data"),
        &[("SECRETGEN_BOOTSTRAP_TOKEN_FILE", file_arg)],
    );
    assert!(app.token.is_empty(), "a given token is not printed");
    app.token = given.to_owned();
    assert_eq!(app.get_generator("otp_sms").status, 200);
    assert_eq!(app.generate("otp_sms", 1).status, 200);
    assert!(!app.logs().contains(given));
}

#[test]
fn a_store_deleted_under_the_server_refuses_writes_while_codes_are_still_served() {
    let mut app = spawn_app_process();
    app.leaves_a_damaged_store();
    let before = app.get_generator("otp_sms").body;
    std::fs::remove_file(app.data_dir.join("secretgen.db")).unwrap();

    let put = app.put_generator(
        "otp_sms",
        &json!({"length": 9, "expiry": "60s", "includeDigits": true}),
    );
    assert_eq!(put.status, 503, "{:?}", put.body);
    assert_error_shape(&put, 14);
    let ready = app.request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body, json!({"status": "ready", "store": "down"}));
    assert_eq!(
        app.get_generator("otp_sms").body,
        before,
        "nothing was swapped in"
    );
    let codes = app.generate("otp_sms", 3);
    assert_eq!(codes.status, 200);
    assert_eq!(codes.body["codes"][0]["code"].as_str().unwrap().len(), 8);

    // Restarted, the server does not start over: the remains are refused.
    assert!(app.stop().success());
    let err = failed_start(&app.data_dir, &["--listen", "127.0.0.1:0"], &[]);
    assert!(err.contains("no secretgen.db"), "{err}");
}
