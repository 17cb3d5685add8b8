//! Issuing and verifying codes (SPEC section 12), over real sockets: every result, single
//! use under a race, attempts that a resend cannot reset, the limits on issues, the
//! normalisation of a typed code, bad input, key rotation, and what the store keeps.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;

use crate::common::http::Client;
use crate::helpers::{StderrTo, TestApp, spawn_app, spawn_app_configured, spawn_app_with};
use secretgen::verification::Limits;

/// A server whose issue limits never get in the way: no wait between issues, many per
/// window.
fn app_with(limits: Limits) -> TestApp {
    spawn_app_configured(|s| s.codes.limits = limits)
}

fn unlimited_issues() -> Limits {
    Limits {
        resend_after: Duration::ZERO,
        issues_per_window: 1000,
        ..Limits::default()
    }
}

fn code_of(answer: &crate::common::http::Answer) -> String {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["code"].as_str().unwrap().to_owned()
}

/// A verification's result and attempts left (a `String`, compared with `&str`s).
fn result(answer: &crate::common::http::Answer) -> (String, u64) {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    (
        answer.body["result"].as_str().unwrap().to_owned(),
        answer.body["attemptsLeft"].as_u64().unwrap(),
    )
}

/// A code of the same length and alphabet that is not `code`.
fn other_than(code: &str) -> String {
    let mut wrong: Vec<char> = code.chars().collect();
    wrong[0] = if wrong[0] == '1' { '2' } else { '1' };
    wrong.into_iter().collect()
}

#[test]
fn an_issued_code_is_approved_once_and_a_wrong_one_counts() {
    let app = spawn_app();
    let issued = app.issue("OTP_SMS", &app.token, "user-1:+41790000000");
    assert_eq!(issued.status, 200, "{:?}", issued.body);
    assert_eq!(issued.cache_control.as_deref(), Some("no-store"));
    let body = &issued.body;
    assert!(body["id"].as_str().unwrap().starts_with("vc_"), "{body}");
    let code = body["code"].as_str().unwrap();
    assert_eq!(code.len(), 8);
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert!(body["expiresAt"].as_str().unwrap().ends_with('Z'), "{body}");
    assert_eq!(
        body["sequence"],
        app.get_generator("OTP_SMS").body["secretGenerator"]["details"]["sequence"]
    );
    assert_eq!(body["attemptsLeft"], 5);

    let wrong = app.verify(
        "OTP_SMS",
        &app.token,
        "user-1:+41790000000",
        &other_than(code),
    );
    assert_eq!(result(&wrong), ("VERIFY_RESULT_REJECTED".to_owned(), 4));
    let right = app.verify("OTP_SMS", &app.token, "user-1:+41790000000", code);
    assert_eq!(right.cache_control, None);
    assert_eq!(result(&right), ("VERIFY_RESULT_APPROVED".to_owned(), 0));
    let again = app.verify("OTP_SMS", &app.token, "user-1:+41790000000", code);
    assert_eq!(result(&again), ("VERIFY_RESULT_NOT_FOUND".to_owned(), 0));
    let never = app.verify("OTP_SMS", &app.token, "nobody", code);
    assert_eq!(result(&never), ("VERIFY_RESULT_NOT_FOUND".to_owned(), 0));
}

#[test]
fn a_code_is_bound_to_its_subject_and_type() {
    let app = app_with(unlimited_issues());
    let code = code_of(&app.issue("OTP_SMS", &app.token, "alice"));
    // The same code for another subject, or of another type, approves nothing...
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "bob", &code));
    assert_eq!(r, "VERIFY_RESULT_NOT_FOUND");
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "Alice", &code));
    assert_eq!(r, "VERIFY_RESULT_NOT_FOUND");
    let email = code_of(&app.issue("OTP_EMAIL", &app.token, "alice"));
    let (r, _) = result(&app.verify("OTP_EMAIL", &app.token, "alice", &code));
    assert_eq!(
        r,
        if email == code {
            "VERIFY_RESULT_APPROVED"
        } else {
            "VERIFY_RESULT_REJECTED"
        }
    );
    // ...and leaves the right one valid.
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "alice", &code));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");
}

#[test]
fn among_64_concurrent_verifications_of_the_right_code_exactly_one_is_approved() {
    let app = spawn_app();
    for round in 0..5 {
        let subject = format!("race-{round}");
        let code = code_of(&app.issue("OTP_SMS", &app.token, &subject));
        let barrier = Arc::new(Barrier::new(64));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let (client, barrier) = (Client::new(app.url("").as_str()), Arc::clone(&barrier));
                let (token, subject, code) = (app.token.clone(), subject.clone(), code.clone());
                std::thread::spawn(move || {
                    let body = json!({"subject": subject, "code": code}).to_string();
                    barrier.wait();
                    let answer = client.request(
                        "POST",
                        "/v1/codes/OTP_SMS/_verify",
                        Some(&token),
                        Some(&body),
                    );
                    assert_eq!(answer.status, 200, "{:?}", answer.body);
                    answer.body["result"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        let results: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let approved = results
            .iter()
            .filter(|r| *r == "VERIFY_RESULT_APPROVED")
            .count();
        assert_eq!(approved, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .all(|r| r == "VERIFY_RESULT_APPROVED" || r == "VERIFY_RESULT_NOT_FOUND"),
            "{results:?}"
        );
    }
}

#[test]
fn a_code_dies_after_its_attempts_and_failures_spread_over_new_codes_lock_at_100() {
    let app = app_with(unlimited_issues());
    let subject = "mallory";
    let mut failures = 0;
    let mut last_code = String::new();
    while failures < 100 {
        last_code = code_of(&app.issue("OTP_SMS", &app.token, subject));
        for attempt in 1..=5 {
            if failures == 100 {
                break;
            }
            failures += 1;
            let answer = app.verify("OTP_SMS", &app.token, subject, &other_than(&last_code));
            let (r, left) = result(&answer);
            if failures == 100 {
                assert_eq!(
                    (r, left),
                    ("VERIFY_RESULT_LOCKED".to_owned(), 0),
                    "failure {failures}"
                );
            } else {
                assert_eq!(r, "VERIFY_RESULT_REJECTED", "failure {failures}");
                // Each code takes 5 checks; the lock comes first near the end.
                assert_eq!(
                    left,
                    (5 - attempt).min(100 - failures),
                    "failure {failures}"
                );
            }
        }
        if failures < 100 {
            // The code is dead after 5 failures: even the right code no longer approves.
            let (r, _) = result(&app.verify("OTP_SMS", &app.token, subject, &last_code));
            assert_eq!(r, "VERIFY_RESULT_NOT_FOUND", "after failure {failures}");
        }
    }
    // Locked: the right code of a new issue is refused, and so is the issue.
    let (r, left) = result(&app.verify("OTP_SMS", &app.token, subject, &last_code));
    assert_eq!((r, left), ("VERIFY_RESULT_LOCKED".to_owned(), 0));
    let refused = app.issue("OTP_SMS", &app.token, subject);
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    assert_eq!(refused.body["code"], 8);
    let wait: u64 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((86_000..=86_400).contains(&wait), "{wait}");
    // Another subject, and another type of the same subject, are not locked.
    assert_eq!(app.issue("OTP_SMS", &app.token, "carol").status, 200);
    assert_eq!(app.issue("OTP_EMAIL", &app.token, subject).status, 200);
}

#[test]
fn an_approval_resets_the_failures() {
    let app = app_with(Limits {
        lock_after: 3,
        ..unlimited_issues()
    });
    for _ in 0..3 {
        let code = code_of(&app.issue("OTP_SMS", &app.token, "dave"));
        let (r, left) = result(&app.verify("OTP_SMS", &app.token, "dave", &other_than(&code)));
        assert_eq!((r, left), ("VERIFY_RESULT_REJECTED".to_owned(), 2));
        let (r, _) = result(&app.verify("OTP_SMS", &app.token, "dave", &code));
        assert_eq!(r, "VERIFY_RESULT_APPROVED");
    }
    let code = code_of(&app.issue("OTP_SMS", &app.token, "dave"));
    assert_eq!(
        result(&app.verify("OTP_SMS", &app.token, "dave", &other_than(&code))),
        ("VERIFY_RESULT_REJECTED".to_owned(), 2)
    );
    assert_eq!(
        result(&app.verify("OTP_SMS", &app.token, "dave", &other_than(&code))),
        ("VERIFY_RESULT_REJECTED".to_owned(), 1)
    );
    assert_eq!(
        result(&app.verify("OTP_SMS", &app.token, "dave", &other_than(&code))),
        ("VERIFY_RESULT_LOCKED".to_owned(), 0)
    );
}

#[test]
fn an_earlier_code_still_works_after_a_resend_and_a_fourth_retires_the_oldest() {
    let app = app_with(unlimited_issues());
    let first = code_of(&app.issue("OTP_SMS", &app.token, "erin"));
    let second = code_of(&app.issue("OTP_SMS", &app.token, "erin"));
    // The earlier code approves, and consumes the later one.
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "erin", &first));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "erin", &second));
    assert_eq!(r, "VERIFY_RESULT_NOT_FOUND");

    let codes: Vec<String> = (0..4)
        .map(|_| code_of(&app.issue("OTP_SMS", &app.token, "frank")))
        .collect();
    // Four codes, three pending: the first was retired (unless a later one equals it).
    if !codes[1..].contains(&codes[0]) {
        let (r, _) = result(&app.verify("OTP_SMS", &app.token, "frank", &codes[0]));
        assert_eq!(r, "VERIFY_RESULT_REJECTED");
    }
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "frank", &codes[1]));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");
}

#[test]
fn issues_are_limited_per_subject_with_a_retry_after() {
    let app = spawn_app();
    assert_eq!(app.issue("OTP_SMS", &app.token, "gina").status, 200);
    let again = app.issue("OTP_SMS", &app.token, "gina");
    assert_eq!(again.status, 429, "{:?}", again.body);
    assert_eq!(again.body["code"], 8);
    let wait: u64 = again.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    // Another subject is not held back.
    assert_eq!(app.issue("OTP_SMS", &app.token, "hank").status, 200);

    // Five in the window at most, whatever the resend wait.
    let app = app_with(Limits {
        resend_after: Duration::ZERO,
        ..Limits::default()
    });
    for _ in 0..5 {
        assert_eq!(app.issue("OTP_SMS", &app.token, "ivy").status, 200);
    }
    let sixth = app.issue("OTP_SMS", &app.token, "ivy");
    assert_eq!(sixth.status, 429, "{:?}", sixth.body);
    let wait: u64 = sixth.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((590..=600).contains(&wait), "{wait}");
}

#[test]
fn a_typed_code_is_normalised_for_its_alphabet() {
    let app = app_with(unlimited_issues());
    let code = code_of(&app.issue("OTP_SMS", &app.token, "jack"));
    let typed = format!(" {}-{} ", &code[..4], &code[4..]);
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "jack", &typed));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");

    // Upper-case letters only: a lower-cased code is the same code.
    let put = app.put_generator(
        "VERIFY_EMAIL_CODE",
        &json!({"length": 10, "expiry": "3600s", "includeUpperLetters": true, "includeDigits": true}),
    );
    assert_eq!(put.status, 200, "{:?}", put.body);
    let code = code_of(&app.issue("VERIFY_EMAIL_CODE", &app.token, "jack"));
    let typed = code.to_ascii_lowercase();
    let (r, _) = result(&app.verify("VERIFY_EMAIL_CODE", &app.token, "jack", &typed));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");

    // Both cases: case matters.
    let code = code_of(&app.issue("PASSWORDLESS_INIT_CODE", &app.token, "jack"));
    if code.bytes().any(|b| b.is_ascii_alphabetic()) {
        let swapped: String = code
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        let (r, _) = result(&app.verify("PASSWORDLESS_INIT_CODE", &app.token, "jack", &swapped));
        assert_eq!(r, "VERIFY_RESULT_REJECTED");
    }
}

/// The violations of a 400, as (field, description) pairs.
fn fields(answer: &crate::common::http::Answer) -> Vec<String> {
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["code"], 3, "{:?}", answer.body);
    answer.body["details"][0]["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn bad_input_is_400_with_its_field_and_changes_nothing() {
    let app = app_with(unlimited_issues());
    let code = code_of(&app.issue("OTP_SMS", &app.token, "kate"));
    let post = |route: &str, body: &str| {
        app.request(
            "POST",
            &format!("/v1/codes/OTP_SMS/{route}"),
            Some(&app.token),
            Some(body),
        )
    };
    let long = "a".repeat(257);
    for (body, field) in [
        ("{}", "subject"),
        (r#"{"subject": 7}"#, "subject"),
        (r#"{"subject": ""}"#, "subject"),
        (&*format!(r#"{{"subject": "{long}"}}"#), "subject"),
        (r#"{"subject": "a\u0000b"}"#, "subject"),
    ] {
        assert_eq!(fields(&post("_issue", body)), [field], "{body}");
    }
    for (body, expected) in [
        (r#"{"subject": "kate"}"#, vec!["code"]),
        (r#"{"code": "123"}"#, vec!["subject"]),
        (r#"{"subject": "kate", "code": " - "}"#, vec!["code"]),
        (r#"{"subject": "", "code": ""}"#, vec!["subject", "code"]),
        (r#"{"subject": "kate", "code": 12345678}"#, vec!["code"]),
    ] {
        assert_eq!(fields(&post("_verify", body)), expected, "{body}");
    }
    for route in ["_issue", "_verify"] {
        let answer = post(route, "not json");
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        let answer = app.request(
            "POST",
            &format!("/v1/codes/NO_SUCH_TYPE/{route}"),
            Some(&app.token),
            Some(r#"{"subject": "kate", "code": "1"}"#),
        );
        assert_eq!(answer.status, 400, "{:?}", answer.body);
    }
    // A type whose codes never expire cannot be issued: FAILED_PRECONDITION.
    let never = app.issue("APP_SECRET", &app.token, "kate");
    assert_eq!(never.status, 400, "{:?}", never.body);
    assert_eq!(never.body["code"], 9);
    // None of it counted a failure or touched the pending code.
    let (r, left) = result(&app.verify("OTP_SMS", &app.token, "kate", &other_than(&code)));
    assert_eq!((r, left), ("VERIFY_RESULT_REJECTED".to_owned(), 4));
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "kate", &code));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");
}

#[test]
fn a_token_needs_its_permission_before_its_request_is_read() {
    let app = spawn_app();
    let issuer = app.create_token("issuer", "codes.issue");
    let verifier = app.create_token("verifier", "codes.verify");
    let generator = app.create_token("generator", "codes.generate");
    let bad = Some("not json");
    for (route, allowed, refused) in [
        ("_issue", &issuer, [&verifier, &generator]),
        ("_verify", &verifier, [&issuer, &generator]),
    ] {
        let path = format!("/v1/codes/OTP_SMS/{route}");
        let none = app.request("POST", &path, None, bad);
        assert_eq!((none.status, none.body["code"].clone()), (401, json!(16)));
        let unknown = app.request("POST", &path, Some("sg_unknown"), bad);
        assert_eq!(unknown.status, 401);
        for token in refused {
            let answer = app.request("POST", &path, Some(token), bad);
            assert_eq!(
                (answer.status, answer.body["code"].clone()),
                (403, json!(7)),
                "{route}"
            );
        }
        assert_eq!(app.request("POST", &path, Some(allowed), bad).status, 400);
    }
    let code = code_of(&app.issue("OTP_SMS", &issuer, "liam"));
    let (r, _) = result(&app.verify("OTP_SMS", &verifier, "liam", &code));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");
}

#[test]
fn an_expired_code_answers_expired() {
    let app = spawn_app();
    let put = app.put_generator(
        "OTP_SMS",
        &json!({"length": 8, "expiry": "1s", "includeDigits": true}),
    );
    assert_eq!(put.status, 200, "{:?}", put.body);
    let code = code_of(&app.issue("OTP_SMS", &app.token, "mia"));
    std::thread::sleep(Duration::from_millis(1300));
    let (r, left) = result(&app.verify("OTP_SMS", &app.token, "mia", &code));
    assert_eq!((r, left), ("VERIFY_RESULT_EXPIRED".to_owned(), 0));
}

#[test]
fn codes_are_refused_with_503_when_the_store_is_gone_while_generate_serves() {
    let app = spawn_app();
    let code = code_of(&app.issue("OTP_SMS", &app.token, "noah"));
    // The store's file replaced under the server: it refuses every write.
    let db = app.data_dir.join("secretgen.db");
    std::fs::rename(&db, app.data_dir.join("moved.db")).unwrap();
    std::fs::copy(app.data_dir.join("moved.db"), &db).unwrap();
    for answer in [
        app.verify("OTP_SMS", &app.token, "noah", &code),
        app.issue("OTP_SMS", &app.token, "olivia"),
    ] {
        assert_eq!(
            (answer.status, answer.body["code"].clone()),
            (503, json!(14)),
            "{:?}",
            answer.body
        );
    }
    assert_eq!(app.generate("OTP_SMS", 1).status, 200);
    std::fs::rename(app.data_dir.join("moved.db"), &db).unwrap();
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "noah", &code));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");
}

/// A key file line for `key`.
fn key_line(id: &str, key: u8) -> String {
    use base64::Engine;
    format!(
        "{id}:{}\n",
        base64::engine::general_purpose::STANDARD.encode([key; 32])
    )
}

#[test]
fn keys_rotate_without_invalidating_pending_codes() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let keys = temp.path().join("keys");
    let serve = |text: &str| {
        std::fs::write(&keys, text).unwrap();
        spawn_app_with(
            &data,
            &["--verify-key-file", keys.to_str().unwrap()],
            &[("SECRETGEN_VERIFY_RESEND_AFTER", "0")],
            StderrTo::Collected,
        )
    };
    let mut app = serve(&key_line("old", 1));
    let token = app.token.clone();
    let first = code_of(&app.issue("OTP_SMS", &token, "pat"));
    let kept = code_of(&app.issue("OTP_SMS", &token, "quinn"));
    app.stop();
    // A new key signs; the old one, second, still verifies.
    let mut app = serve(&(key_line("new", 2) + &key_line("old", 1)));
    let app_token = |app: &TestApp| {
        if app.token.is_empty() {
            token.clone()
        } else {
            app.token.clone()
        }
    };
    let t = app_token(&app);
    let (r, _) = result(&app.verify("OTP_SMS", &t, "pat", &first));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");
    let second = code_of(&app.issue("OTP_SMS", &t, "pat"));
    app.stop();
    // The old key gone: codes under the new one verify, codes under the old one do not.
    let app = serve(&key_line("new", 2));
    let t = app_token(&app);
    let (r, _) = result(&app.verify("OTP_SMS", &t, "pat", &second));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");
    let (r, _) = result(&app.verify("OTP_SMS", &t, "quinn", &kept));
    assert_ne!(r, "VERIFY_RESULT_APPROVED");
}

#[test]
fn the_embedded_store_makes_a_private_key_file_once_and_stores_no_code_or_subject_in_clear() {
    use std::os::unix::fs::PermissionsExt;
    let app = app_with(unlimited_issues());
    let key = app.data_dir.join("verify.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("k1:"), "{text}");

    let threads: Vec<_> = (0..8)
        .map(|t| {
            let client = Client::new(app.url("").as_str());
            let token = app.token.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for i in 0..250 {
                    let subject = format!("person{t}x{i}@example.com");
                    let answer = client.request(
                        "POST",
                        "/v1/codes/PASSWORDLESS_INIT_CODE/_issue",
                        Some(&token),
                        Some(&json!({"subject": subject}).to_string()),
                    );
                    assert_eq!(answer.status, 200, "{:?}", answer.body);
                    seen.push((subject, answer.body["code"].as_str().unwrap().to_owned()));
                }
                seen
            })
        })
        .collect();
    let issued: Vec<(String, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&app.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path != key {
            files.push(std::fs::read(&path).unwrap());
        }
    }
    let holds = |needle: &[u8]| {
        files
            .iter()
            .any(|f| f.windows(needle.len()).any(|w| w == needle))
    };
    assert!(holds(b"verify_codes"), "the scan reads the store");
    for (subject, code) in &issued {
        assert!(!holds(subject.as_bytes()), "{subject} is stored in clear");
        assert!(!holds(code.as_bytes()), "a code is stored in clear");
    }
    // The key is in its own file only.
    let line = text.lines().next().unwrap();
    assert!(!holds(line.split(':').nth(1).unwrap().as_bytes()));
    // `secretgen check` counts them, beside the server.
    let out = app.command(&["check"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("issued codes: 2000 stored for 2000 subjects, 0 subjects locked"),
        "{report}"
    );
}

#[test]
fn an_admin_lifts_a_lock_and_the_audit_log_records_it_without_the_subject() {
    let app = app_with(Limits {
        lock_after: 3,
        ..unlimited_issues()
    });
    let unlock = |token: &str, body: &serde_json::Value| {
        app.request(
            "POST",
            "/admin/v1/verifications/_unlock",
            Some(token),
            Some(&body.to_string()),
        )
    };
    let body = json!({"generatorType": "OTP_SMS", "subject": "rosa@example.com"});
    // Nothing to lift: nothing written.
    let nothing = unlock(&app.token, &body);
    assert_eq!(nothing.status, 200, "{:?}", nothing.body);
    assert_eq!(
        nothing.body,
        json!({"unlocked": false, "wasLocked": false, "failures": 0})
    );

    let code = code_of(&app.issue("OTP_SMS", &app.token, "rosa@example.com"));
    for _ in 0..3 {
        app.verify(
            "OTP_SMS",
            &app.token,
            "rosa@example.com",
            &other_than(&code),
        );
    }
    assert_eq!(
        app.issue("OTP_SMS", &app.token, "rosa@example.com").status,
        429
    );

    // Only iam.write may lift it, and a bad body is refused first with its fields.
    let reader = app.create_token("reader", "iam.read,codes.issue,codes.verify");
    assert_eq!(unlock(&reader, &body).status, 403);
    let bad = unlock(&app.token, &json!({"generatorType": "NOPE", "subject": ""}));
    assert_eq!(fields(&bad), ["generatorType", "subject"]);
    assert_eq!(
        fields(&unlock(&app.token, &json!({}))),
        ["generatorType", "subject"]
    );

    let lifted = unlock(&app.token, &body);
    assert_eq!(lifted.status, 200, "{:?}", lifted.body);
    assert_eq!(lifted.body["unlocked"], true);
    assert_eq!(lifted.body["wasLocked"], true);
    assert_eq!(lifted.body["failures"], 3);
    let sequence = lifted.body["details"]["sequence"].clone();
    assert!(sequence.is_string(), "{:?}", lifted.body);
    // The subject issues and verifies again.
    let code = code_of(&app.issue("OTP_SMS", &app.token, "rosa@example.com"));
    let (r, _) = result(&app.verify("OTP_SMS", &app.token, "rosa@example.com", &code));
    assert_eq!(r, "VERIFY_RESULT_APPROVED");

    let events = app.request(
        "POST",
        "/admin/v1/events/_search",
        Some(&app.token),
        Some(r#"{"eventTypes": ["instance.verification.unlocked"]}"#),
    );
    assert_eq!(events.status, 200, "{:?}", events.body);
    let found = events.body["result"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{:?}", events.body);
    let event = &found[0];
    assert_eq!(event["sequence"], sequence);
    assert_eq!(event["generatorType"], "SECRET_GENERATOR_TYPE_OTP_SMS");
    assert_eq!(event["creator"], "bootstrap-admin");
    assert_eq!(event["unlock"]["failures"], 3);
    assert_eq!(event["unlock"]["keyId"], "k1");
    assert_eq!(event["unlock"]["subjectHash"].as_str().unwrap().len(), 64);
    assert!(event["unlock"]["lockedUntil"].is_string(), "{event}");
    assert!(
        !events.body.to_string().contains("rosa"),
        "{:?}",
        events.body
    );
}

#[test]
fn the_stats_count_the_last_hour_the_locks_and_the_chance_of_a_guess() {
    let app = app_with(Limits {
        lock_after: 2,
        ..unlimited_issues()
    });
    let code = code_of(&app.issue("OTP_SMS", &app.token, "sam"));
    app.verify("OTP_SMS", &app.token, "sam", &code);
    app.verify("OTP_SMS", &app.token, "sam", &code);
    let code = code_of(&app.issue("OTP_SMS", &app.token, "tess"));
    app.verify("OTP_SMS", &app.token, "tess", &other_than(&code));
    app.verify("OTP_SMS", &app.token, "tess", &other_than(&code));
    let stats = app.request(
        "GET",
        "/admin/v1/verifications/stats",
        Some(&app.token),
        None,
    );
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats.body["limits"]["lockAfter"], 2);
    assert_eq!(stats.body["limits"]["lockFor"], "86400s");
    let types = stats.body["result"].as_array().unwrap();
    assert_eq!(types.len(), 8);
    let sms = types
        .iter()
        .find(|t| t["generatorType"] == "SECRET_GENERATOR_TYPE_OTP_SMS")
        .unwrap();
    assert_eq!(sms["issued"], "2");
    assert_eq!(
        sms["verified"],
        json!({"approved": "1", "rejected": "1", "expired": "0", "locked": "1", "notFound": "1"})
    );
    assert_eq!(sms["lockedSubjects"], "1");
    // Eight digits, two guesses before the lock: 2 in 10^8.
    let chance = sms["guessChance"].as_f64().unwrap();
    assert!((chance - 2e-8).abs() < 1e-15, "{chance}");
    let email = types
        .iter()
        .find(|t| t["generatorType"] == "SECRET_GENERATOR_TYPE_OTP_EMAIL")
        .unwrap();
    assert_eq!(email["issued"], "0");
    assert_eq!(email["lockedSubjects"], "0");

    let issuer = app.create_token("issuer", "codes.issue");
    let refused = app.request("GET", "/admin/v1/verifications/stats", Some(&issuer), None);
    assert_eq!(refused.status, 403);
    assert_eq!(
        app.request("GET", "/admin/v1/verifications/stats", None, None)
            .status,
        401
    );
}
