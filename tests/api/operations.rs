//! Operating the server: metrics, rate limits, request ids.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    RawResponse, TestApp, assert_error_shape, spawn_app, spawn_app_configured, spawn_app_process,
};

fn metrics(app: &TestApp) -> String {
    let response = ureq::get(&app.url("/metrics"))
        .call()
        .expect("metrics need no token");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.into_body().read_to_string().unwrap()
}

/// The value of the sample `name{labels}`, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_when_codes_are_generated_and_configurations_change() {
    let app = spawn_app();
    let sms = "{generator_type=\"SECRET_GENERATOR_TYPE_OTP_SMS\"}";
    let before = metrics(&app);
    assert_eq!(
        sample(&before, &format!("secretgen_codes_generated_total{sms}")),
        0.0
    );
    assert_eq!(
        sample(&before, &format!("secretgen_config_sequence{sms}")),
        7.0
    );

    assert_eq!(app.generate("otp_sms", 250).status, 200);
    assert_eq!(app.generate("otp_sms", 1).status, 200);
    let answer = app.put_generator(
        "otp_sms",
        &json!({"length": 9, "expiry": "60s", "includeDigits": true}),
    );
    assert_eq!(answer.status, 200);
    // An unchanged PUT is not a change.
    app.put_generator(
        "otp_sms",
        &json!({"length": 9, "expiry": "60s", "includeDigits": true}),
    );
    assert_eq!(app.request("GET", "/nope", None, None).status, 404);

    let after = metrics(&app);
    assert_eq!(
        sample(&after, &format!("secretgen_codes_generated_total{sms}")),
        251.0
    );
    assert_eq!(
        sample(&after, &format!("secretgen_config_changes_total{sms}")),
        1.0
    );
    assert_eq!(
        sample(&after, &format!("secretgen_config_sequence{sms}")),
        10.0
    );
    let generate = "route=\"/v1/codes/{generatorType}/_generate\",method=\"POST\",status=\"200\"";
    assert_eq!(
        sample(
            &after,
            &format!("secretgen_http_requests_total{{{generate}}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            &format!("secretgen_http_request_duration_seconds_count{{{generate}}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "secretgen_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}"
        ),
        1.0
    );
}

#[test]
fn the_rate_limit_answers_429_past_the_rate_and_200_after_the_window() {
    let app = spawn_app_configured(|s| s.rate_limit = std::num::NonZeroU32::new(5));
    let statuses: Vec<u16> = (0..12).map(|_| app.generate("otp_sms", 1).status).collect();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert!(
        (5..=7).contains(&ok),
        "a burst of the rate passes: {statuses:?}"
    );
    let refused = app.generate("otp_sms", 1);
    assert_eq!(refused.status, 429);
    assert_error_shape(&refused, 8);
    // Other tokens have their own allowance; the control plane is not limited.
    let other = app.create_token("other", "codes.generate");
    let answer = app.request("POST", "/v1/codes/otp_sms/_generate", Some(&other), None);
    assert_eq!(answer.status, 200);
    for _ in 0..10 {
        assert_eq!(app.get_generator("otp_sms").status, 200);
    }
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        app.generate("otp_sms", 1).status,
        200,
        "back after the window"
    );
}

#[test]
fn every_answer_carries_a_request_id_that_the_logs_carry_too() {
    let app = spawn_app_process();
    let response = ureq::get(&app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .call()
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let response = ureq::get(&app.url("/healthz")).call().unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 16, "{id}");
    // A header that is not a plain id is replaced.
    let response = ureq::get(&app.url("/healthz"))
        .header("x-request-id", "a b\"c")
        .call()
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "a b\"c");
    std::thread::sleep(Duration::from_millis(100));
    let logs = app.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("trace-me-42") && l.contains("status=200")),
        "{logs}"
    );
    assert!(logs.contains(&id));
}

#[test]
fn requests_without_an_id_each_get_a_new_one() {
    let app = spawn_app();
    let ids: std::collections::HashSet<String> = (0..20)
        .map(|_| {
            let response = ureq::get(&app.url("/healthz")).call().unwrap();
            let id = response.headers()["x-request-id"].to_str().unwrap();
            assert!(
                id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
            id.to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 20, "{ids:?}");
}

#[test]
fn the_openapi_description_is_served_and_names_every_route() {
    let app = spawn_app();
    let answer = app.request("GET", "/openapi.json", None, None);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["openapi"], "3.0.3");
    let mut paths: Vec<&str> = answer.body["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/admin/v1/events/_search",
            "/admin/v1/secretgenerators/_search",
            "/admin/v1/secretgenerators/{generatorType}",
            "/admin/v1/secretgenerators/{generatorType}/_preview",
            "/admin/v1/tokens",
            "/admin/v1/tokens/_search",
            "/admin/v1/tokens/{id}",
            "/admin/v1/verifications/_unlock",
            "/admin/v1/verifications/stats",
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/readyz",
            "/v1/codes/{generatorType}/_generate",
            "/v1/codes/{generatorType}/_issue",
            "/v1/codes/{generatorType}/_verify",
        ]
    );
    // Every documented operation exists: none answers 404 or 405.
    let mut made = 0;
    for (path, item) in answer.body["paths"].as_object().unwrap() {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
        {
            // A token of its own for the revocation route, which answers 404 for an unknown id
            // (names are unique among live tokens).
            made += 1;
            let throwaway = app.request(
                "POST",
                "/admin/v1/tokens",
                Some(&app.token),
                Some(&format!(
                    r#"{{"name": "throwaway {made}", "permissions": ["iam.read"]}}"#
                )),
            );
            let concrete = path
                .replace("{generatorType}", "OTP_SMS")
                .replace("{id}", throwaway.body["id"].as_str().unwrap());
            let answer = app.request(&method.to_uppercase(), &concrete, Some(&app.token), None);
            assert!(
                ![404, 405].contains(&answer.status),
                "{method} {path}: {}",
                answer.status
            );
        }
    }
}

#[test]
fn metrics_can_be_turned_off() {
    let app = spawn_app_configured(|s| s.metrics = false);
    assert_eq!(app.generate("otp_sms", 1).status, 200);
    let answer = app.request("GET", "/metrics", None, None);
    assert_eq!(answer.status, 404);
    assert_error_shape(&answer, 5);
}

/// The `method` label of every `secretgen_http_requests_total` series.
fn request_series(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("secretgen_http_requests_total{"))
        .map(|l| {
            let label = |name: &str| {
                l.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap()
                    .to_owned()
            };
            (label("route"), label("method"))
        })
        .collect()
}

#[test]
fn invented_methods_and_paths_make_no_new_metric_series() {
    let app = spawn_app();
    // Method tokens a client may invent, on a known route and on unknown paths.
    for i in 0..60u32 {
        let method = format!("FOO{}X{i}", i * 7919 % 1000);
        let path = if i % 2 == 0 {
            "/healthz".to_owned()
        } else {
            format!("/nope/{i}")
        };
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let (got, _, _) = app.raw(request.as_bytes());
        let status = RawResponse::parse(&got).status;
        assert!([404, 405].contains(&status), "{method} {path}: {status}");
    }
    let text = metrics(&app);
    let series = request_series(&text);
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
    ];
    let routes = [
        "/admin/v1/secretgenerators/_search",
        "/admin/v1/secretgenerators/{generatorType}",
        "/v1/codes/{generatorType}/_generate",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "unmatched",
    ];
    for (route, method) in &series {
        assert!(
            methods.contains(&method.as_str()),
            "method label {method:?}"
        );
        assert!(routes.contains(&route.as_str()), "route label {route:?}");
    }
    // other on /healthz (405), other on unmatched paths (404), and this GET /metrics is
    // counted after it answers: two series, not sixty.
    assert!(series.len() <= 3, "{series:?}");
    assert_eq!(
        sample(
            &text,
            "secretgen_http_requests_total{route=\"/healthz\",method=\"other\",status=\"405\"}"
        ),
        30.0
    );
    assert_eq!(
        sample(
            &text,
            "secretgen_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"}"
        ),
        30.0
    );
}

#[test]
fn head_answers_every_get_route_like_get_without_a_body() {
    let app = spawn_app();
    let reader = app.create_token("reader", "iam.read");
    let coder = app.create_token("coder", "codes.generate");
    let generator = "/admin/v1/secretgenerators/otp_sms";
    let cases: [(&str, Option<&str>, u16); 9] = [
        ("/healthz", None, 200),
        ("/readyz", None, 200),
        ("/metrics", None, 200),
        ("/openapi.json", None, 200),
        (generator, Some(&reader), 200),
        ("/admin/v1/secretgenerators/nope", Some(&reader), 400),
        // Authenticated exactly as GET: no token, unknown token, lacking iam.read.
        (generator, None, 401),
        (
            generator,
            Some("sg_not-a-token-anybody-ever-made-xxxxxxxxxxx"),
            401,
        ),
        (generator, Some(&coder), 403),
    ];
    for (path, token, status) in cases {
        let exchange = |method: &str| {
            let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
            );
            let (got, closed, _) = app.raw(request.as_bytes());
            assert!(closed, "{method} {path}: the connection stayed open");
            RawResponse::parse(&got)
        };
        let get = exchange("GET");
        let head = exchange("HEAD");
        assert_eq!(get.status, status, "GET {path}");
        assert_eq!(head.status, status, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} has a body: {head:?}");
        for name in ["content-type", "www-authenticate", "allow"] {
            assert_eq!(head.header(name), get.header(name), "HEAD {path}: {name}");
        }
        // The length GET's body has (metrics move between the two requests).
        let length = head
            .header("content-length")
            .map(|l| l.parse::<usize>().unwrap());
        if path != "/metrics" {
            assert_eq!(length, Some(get.body.len()), "HEAD {path}");
        }
    }
}

/// SPEC section 13: every answer that carries a secret (codes, a new token, sample codes)
/// says `Cache-Control: no-store`, and so do those routes' errors; answers that carry none
/// are left to the client.
#[test]
fn answers_that_carry_a_secret_are_not_stored_by_caches() {
    let app = spawn_app();
    let send = |method: &str, path: &str, token: Option<&str>, body: &str| {
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        RawResponse::parse(&app.raw(request.as_bytes()).0)
    };
    let token = app.token.clone();
    let secret_bearing = [
        ("POST", "/v1/codes/OTP_SMS/_generate", "{\"count\": 2}", 200),
        (
            "POST",
            "/admin/v1/tokens",
            r#"{"name": "cache-test", "permissions": ["codes.generate"]}"#,
            200,
        ),
        (
            "POST",
            "/admin/v1/secretgenerators/OTP_SMS/_preview",
            r#"{"length": 8, "expiry": "300s", "includeDigits": true}"#,
            200,
        ),
        // Their refusals too.
        ("POST", "/v1/codes/OTP_SMS/_generate", "{\"count\": 0}", 400),
        ("POST", "/admin/v1/tokens", "{", 400),
    ];
    for (method, path, body, status) in secret_bearing {
        let response = send(method, path, Some(&token), body);
        assert_eq!(response.status, status, "{method} {path}: {response:?}");
        assert_eq!(
            response.header("cache-control"),
            Some("no-store"),
            "{method} {path}: {response:?}"
        );
    }
    let unauthenticated = send("POST", "/v1/codes/OTP_SMS/_generate", None, "{}");
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(unauthenticated.header("cache-control"), Some("no-store"));
    // An answer without a secret says nothing about caching.
    let config = send(
        "GET",
        "/admin/v1/secretgenerators/OTP_SMS",
        Some(&token),
        "",
    );
    assert_eq!(config.status, 200);
    assert_eq!(config.header("cache-control"), None, "{config:?}");
}
