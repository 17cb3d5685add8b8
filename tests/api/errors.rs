//! Every error row of the SPEC's table, in the one error body; refused requests change
//! nothing.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    RawResponse, assert_error_shape, read_until_closed, spawn_app, spawn_app_in, violated_fields,
};

#[test]
fn unknown_routes_answer_404_in_the_error_body() {
    let app = spawn_app();
    for path in [
        "/",
        "/nope",
        "/admin/v1/secretgenerators",
        "/v1/codes/otp_sms",
    ] {
        let answer = app.request("GET", path, Some(&app.token), None);
        assert_eq!(answer.status, 404, "{path}");
        assert_error_shape(&answer, 5);
    }
}

#[test]
fn wrong_methods_answer_405_with_the_allowed_ones() {
    let app = spawn_app();
    for (method, path, allow) in [
        (
            "DELETE",
            "/admin/v1/secretgenerators/otp_sms",
            "GET, HEAD, PUT",
        ),
        (
            "POST",
            "/admin/v1/secretgenerators/otp_sms",
            "GET, HEAD, PUT",
        ),
        ("GET", "/admin/v1/secretgenerators/_search", "POST"),
        ("HEAD", "/admin/v1/secretgenerators/_search", "POST"),
        ("GET", "/v1/codes/otp_sms/_generate", "POST"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PUT", "/readyz", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
        ("PATCH", "/openapi.json", "GET, HEAD"),
    ] {
        let answer = app.request(method, path, Some(&app.token), None);
        assert_eq!(answer.status, 405, "{method} {path}");
        if method == "HEAD" {
            // The same answer without its body.
            assert_eq!(answer.body, serde_json::Value::Null);
        } else {
            assert_error_shape(&answer, 12);
        }
        assert_eq!(answer.allow.as_deref(), Some(allow));
    }
}

#[test]
fn requests_without_a_known_token_answer_401() {
    let app = spawn_app();
    let routes = [
        ("GET", "/admin/v1/secretgenerators/otp_sms"),
        ("PUT", "/admin/v1/secretgenerators/otp_sms"),
        ("POST", "/admin/v1/secretgenerators/_search"),
        ("POST", "/v1/codes/otp_sms/_generate"),
    ];
    for (method, path) in routes {
        let none = app.request(method, path, None, Some("{}"));
        assert_eq!(none.status, 401, "{method} {path}");
        assert_error_shape(&none, 16);
        let unknown = app.request(
            method,
            path,
            Some("sg_not-a-token-anybody-ever-made-xxxxxxxxxxx"),
            None,
        );
        assert_eq!(unknown.status, 401, "{method} {path}");
        assert_error_shape(&unknown, 16);
    }
}

#[test]
fn tokens_need_the_permission_of_the_route() {
    let app = spawn_app();
    let reader = app.create_token("reader", "iam.read");
    let writer = app.create_token("writer", "iam.write");
    let coder = app.create_token("coder", "codes.generate");
    let put_body = json!({"length": 10, "expiry": "60s", "includeDigits": true}).to_string();
    let cases = [
        (
            "GET",
            "/admin/v1/secretgenerators/otp_sms",
            None,
            &reader,
            &coder,
        ),
        (
            "PUT",
            "/admin/v1/secretgenerators/otp_sms",
            Some(put_body.as_str()),
            &writer,
            &reader,
        ),
        (
            "POST",
            "/admin/v1/secretgenerators/_search",
            Some("{}"),
            &reader,
            &writer,
        ),
        ("POST", "/v1/codes/otp_sms/_generate", None, &coder, &reader),
    ];
    for (method, path, body, allowed, denied) in cases {
        let ok = app.request(method, path, Some(allowed), body);
        assert_eq!(ok.status, 200, "{method} {path}: {:?}", ok.body);
        let refused = app.request(method, path, Some(denied), body);
        assert_eq!(refused.status, 403, "{method} {path}");
        assert_error_shape(&refused, 7);
    }
}

#[test]
fn authentication_and_permission_come_before_validation() {
    let app = spawn_app();
    let reader = app.create_token("reader", "iam.read");
    let bad = "{\"length\": 0";
    // Bad type and bad body, no token: 401.
    let answer = app.request("PUT", "/admin/v1/secretgenerators/nope", None, Some(bad));
    assert_eq!(answer.status, 401);
    // Same with a token lacking iam.write: 403.
    let answer = app.request(
        "PUT",
        "/admin/v1/secretgenerators/nope",
        Some(&reader),
        Some(bad),
    );
    assert_eq!(answer.status, 403);
    let answer = app.request(
        "POST",
        "/v1/codes/nope/_generate",
        Some(&reader),
        Some("{\"count\": 0}"),
    );
    assert_eq!(answer.status, 403);
    // With the permission: 400.
    let answer = app.request(
        "PUT",
        "/admin/v1/secretgenerators/nope",
        Some(&app.token),
        Some(bad),
    );
    assert_eq!(answer.status, 400);
}

#[test]
fn bad_generator_types_answer_400_naming_the_field() {
    let app = spawn_app();
    for t in [
        "nope",
        "0",
        "9",
        "SECRET_GENERATOR_TYPE_UNSPECIFIED",
        "unspecified",
        "-1",
    ] {
        let answer = app.get_generator(t);
        assert_eq!(violated_fields(&answer), ["generatorType"], "{t}");
        let answer = app.generate(t, 1);
        assert_eq!(violated_fields(&answer), ["generatorType"], "{t}");
    }
}

/// SPEC section 4: a bad type hides no other violation of the body; every one is listed at
/// once, the type's first.
#[test]
fn a_put_of_a_bad_type_lists_every_other_violation_too() {
    let app = spawn_app();
    for t in ["nope", "0", "unspecified"] {
        let answer = app.put_generator(
            t,
            &json!({"length": 0, "expiry": "-1s", "includeDigits": "yes"}),
        );
        assert_eq!(answer.status, 400, "{t}");
        assert_error_shape(&answer, 3);
        assert_eq!(
            violated_fields(&answer),
            ["generatorType", "includeDigits", "length", "expiry"],
            "{t}"
        );
        let answer = app.put_generator(t, &json!({"length": 3, "includeSymbols": false}));
        assert_eq!(
            violated_fields(&answer),
            [
                "generatorType",
                "includeLowerLetters",
                "includeUpperLetters",
                "includeDigits",
                "includeSymbols"
            ],
            "{t}"
        );
    }
}

#[test]
fn malformed_bodies_answer_400_and_change_nothing() {
    let app = spawn_app();
    let before = app.get_generator("otp_sms").body;
    for body in [
        "{",
        "[]",
        "\"length\"",
        "{\"length\": 10,}",
        "nul",
        "\t",
        " \n",
    ] {
        let answer = app.request(
            "PUT",
            "/admin/v1/secretgenerators/otp_sms",
            Some(&app.token),
            Some(body),
        );
        assert_eq!(answer.status, 400, "{body}");
        assert_error_shape(&answer, 3);
        let answer = app.request(
            "POST",
            "/v1/codes/otp_sms/_generate",
            Some(&app.token),
            Some(body),
        );
        assert_eq!(answer.status, 400, "{body}");
        let answer = app.request(
            "POST",
            "/admin/v1/secretgenerators/_search",
            Some(&app.token),
            Some(body),
        );
        assert_eq!(answer.status, 400, "{body}");
    }
    assert_eq!(app.get_generator("otp_sms").body, before);
}

#[test]
fn bodies_over_64_kib_answer_413_and_change_nothing() {
    let app = spawn_app();
    let before = app.get_generator("otp_sms").body;
    let padding = "x".repeat(64 * 1024);
    let body = json!({"length": 10, "expiry": "60s", "includeDigits": true, "padding": padding})
        .to_string();
    assert!(body.len() > 64 * 1024);
    let answer = app.request(
        "PUT",
        "/admin/v1/secretgenerators/otp_sms",
        Some(&app.token),
        Some(&body),
    );
    assert_eq!(answer.status, 413, "{:?}", answer.body);
    assert_error_shape(&answer, 3);
    assert_eq!(app.get_generator("otp_sms").body, before);
    // Just under the limit is read.
    let body = json!({"length": 10, "expiry": "60s", "includeDigits": true, "padding": "x".repeat(60 * 1024)}).to_string();
    let answer = app.request(
        "PUT",
        "/admin/v1/secretgenerators/otp_sms",
        Some(&app.token),
        Some(&body),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

#[test]
fn repeated_keys_answer_400_naming_the_key_and_change_nothing() {
    let app = spawn_app();
    let before = app.get_generator("otp_sms").body;
    let cases = [
        (
            "PUT",
            "/admin/v1/secretgenerators/otp_sms",
            r#"{"length": 8, "expiry": "60s", "includeDigits": true, "length": 9}"#,
            "length",
        ),
        (
            "PUT",
            "/admin/v1/secretgenerators/otp_sms",
            r#"{"length": 9, "expiry": "60s", "includeDigits": true, "x": {"y": 1, "y": 1}}"#,
            "x.y",
        ),
        (
            "POST",
            "/v1/codes/otp_sms/_generate",
            r#"{"count": 1, "count": 2}"#,
            "count",
        ),
        (
            "POST",
            "/admin/v1/secretgenerators/_search",
            r#"{"query": {"limit": 1, "asc": true, "limit": 2}}"#,
            "query.limit",
        ),
        (
            "POST",
            "/admin/v1/secretgenerators/_search",
            r#"{"queries": [{"typeQuery": {"generatorType": "otp_sms"}},
                {"typeQuery": {"generatorType": "otp_sms", "generatorType": "otp_email"}}]}"#,
            "queries[1].typeQuery.generatorType",
        ),
    ];
    for (method, path, body, key) in cases {
        let answer = app.request(method, path, Some(&app.token), Some(body));
        assert_eq!(violated_fields(&answer), [key], "{body}");
        let message = answer.body["message"].as_str().unwrap();
        assert!(message.contains(&format!("{key:?}")), "{message}");
    }
    assert_eq!(app.get_generator("otp_sms").body, before);
    // The same key in different objects is not a repeat.
    let answer = app.request(
        "POST",
        "/admin/v1/secretgenerators/_search",
        Some(&app.token),
        Some(r#"{"queries": [{"typeQuery": {"generatorType": "otp_sms"}}, {"typeQuery": {"generatorType": "otp_sms"}}]}"#),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

/// A request whose body does not arrive in time: headers declaring 100 bytes, then `sent`.
fn partial_put(token: &str, sent: &str) -> String {
    format!(
        "PUT /admin/v1/secretgenerators/otp_sms HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{sent}"
    )
}

fn assert_timed_out(got: &[u8], closed: bool, took: Duration) {
    assert!(
        !got.is_empty(),
        "no answer within {took:?}: the body read is not bounded"
    );
    let response = RawResponse::parse(got);
    assert_eq!(response.status, 408, "{response:?}");
    assert_error_shape(&response.answer(), 4);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert!(closed, "the connection stayed open");
}

#[test]
fn bodies_that_do_not_arrive_in_time_answer_408_and_close_the_connection() {
    let temp = tempfile::tempdir().unwrap();
    let app = spawn_app_in(&temp.path().join("d"), &[("SECRETGEN_BODY_TIMEOUT", "1")]);
    let before = app.get_generator("otp_sms").body;

    // The two slow bodies below are sent side by side: each is answered after the timeout
    // and its connection closed a second later (actix's grace for the client to close).
    std::thread::scope(|s| {
        // Four bytes of a hundred, then silence.
        let silent = s.spawn(|| app.raw(partial_put(&app.token, "{\"le").as_bytes()));

        // A body that keeps trickling in, a byte every 200 ms, never idle for the whole
        // timeout: the bound is on the whole body, not on the gaps.
        let mut stream = TcpStream::connect(app.addr()).unwrap();
        stream
            .write_all(partial_put(&app.token, "").as_bytes())
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let trickle = s.spawn(move || {
            for _ in 0..40 {
                if writer.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let (got, closed, took) = read_until_closed(&mut stream, Duration::from_secs(10));
        assert_timed_out(&got, closed, took);
        trickle.join().unwrap();

        let (got, closed, took) = silent.join().unwrap();
        assert_timed_out(&got, closed, took);
    });

    // The server goes on: a well-formed request on a new connection is served.
    assert_eq!(app.get_generator("otp_sms").body, before);
    let answer = app.put_generator(
        "otp_sms",
        &json!({"length": 9, "expiry": "60s", "includeDigits": true}),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let logs = app.logs();
    assert!(logs.contains("status=408"), "{logs}");
}
