//! `/console/`: the admin console's files, embedded in the binary, served with a
//! Content-Security-Policy that allows only the server's own origin. (What the page does is
//! tested in a real Chromium: tests/console/.)

use crate::helpers::{assert_error_shape, spawn_app};

/// The response headers of `path`, by raw request.
fn headers(app: &crate::helpers::TestApp, method: &str, path: &str) -> crate::helpers::RawResponse {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (bytes, _, _) = app.raw(request.as_bytes());
    crate::helpers::RawResponse::parse(&bytes)
}

#[test]
fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let app = spawn_app();
    for (path, content_type, file) in [
        (
            "/console/",
            "text/html; charset=utf-8",
            "console/index.html",
        ),
        (
            "/console/app.js",
            "text/javascript; charset=utf-8",
            "console/app.js",
        ),
        (
            "/console/common.js",
            "text/javascript; charset=utf-8",
            "console/common.js",
        ),
        (
            "/console/verify.js",
            "text/javascript; charset=utf-8",
            "console/verify.js",
        ),
        (
            "/console/style.css",
            "text/css; charset=utf-8",
            "console/style.css",
        ),
    ] {
        let response = headers(&app, "GET", path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        let policy = response
            .header("content-security-policy")
            .unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        // Exactly the repository's file.
        let expected =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + file).unwrap();
        assert!(response.body == expected, "{path}: not the bytes of {file}");
        // Nothing from another host: no absolute URL in any file.
        let text = String::from_utf8(expected).unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{file} names another host"
        );
        let head = headers(&app, "HEAD", path);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }
    let missing = app.request("GET", "/console/secret.txt", None, None);
    assert_eq!(missing.status, 404);
    assert_error_shape(&missing, 5);
    let post = app.request("POST", "/console/", None, Some("{}"));
    assert_eq!(post.status, 405);
    assert_eq!(post.allow.as_deref(), Some("GET, HEAD"));
}
