//! Issuing and verifying codes over gRPC (SPEC sections 9 and 12): `CodeService.Issue` and
//! `Verify` with tonic's own client against the real server, with the fields, permissions,
//! results and error statuses of `_issue` and `_verify`.

use std::time::{Duration, SystemTime};

use secretgen::grpc::proto::secretgen::v1::code_service_client::CodeServiceClient;
use secretgen::grpc::proto::secretgen::v1::{
    IssueRequest, IssueResponse, VerifyRequest, VerifyResponse, VerifyResult,
};
use secretgen::grpc::proto::zitadel::settings::v1::SecretGeneratorType;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::grpc::{OTP_SMS, authed, codes, violated_fields};
use crate::helpers::{TestApp, spawn_app};

fn issue_request(generator_type: i32, subject: &str) -> IssueRequest {
    IssueRequest {
        generator_type,
        subject: subject.to_owned(),
    }
}

fn verify_request(generator_type: i32, subject: &str, code: &str) -> VerifyRequest {
    VerifyRequest {
        generator_type,
        subject: subject.to_owned(),
        code: code.to_owned(),
    }
}

async fn issue(
    client: &mut CodeServiceClient<Channel>,
    token: &str,
    subject: &str,
) -> Result<IssueResponse, Status> {
    let request = authed(issue_request(OTP_SMS, subject), token);
    client.issue(request).await.map(|r| r.into_inner())
}

/// A verification's result and attempts left.
async fn verify(
    client: &mut CodeServiceClient<Channel>,
    token: &str,
    subject: &str,
    code: &str,
) -> (VerifyResult, u32) {
    let request = authed(verify_request(OTP_SMS, subject, code), token);
    let VerifyResponse {
        result,
        attempts_left,
    } = client.verify(request).await.unwrap().into_inner();
    (VerifyResult::try_from(result).unwrap(), attempts_left)
}

/// A code of the same length and alphabet that is not `code`.
fn other_than(code: &str) -> String {
    let mut wrong: Vec<char> = code.chars().collect();
    wrong[0] = if wrong[0] == '1' { '2' } else { '1' };
    wrong.into_iter().collect()
}

fn metrics(app: &TestApp) -> String {
    let answer = app.request("GET", "/metrics", None, None);
    answer
        .body
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_code_is_approved_once_and_a_wrong_one_counts() {
    let app = spawn_app();
    let mut client = codes(&app).await;
    let before = SystemTime::now();
    let issued = issue(&mut client, &app.token, "user-1:+41790000000")
        .await
        .unwrap();
    assert!(issued.id.starts_with("vc_"), "{}", issued.id);
    assert_eq!(issued.code.len(), 8);
    assert!(issued.code.bytes().all(|b| b.is_ascii_digit()));
    let expires = issued.expires_at.expect("an expiry");
    let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(expires.seconds as u64);
    let ahead = expires.duration_since(before).unwrap();
    assert!(
        (Duration::from_secs(299)..=Duration::from_secs(301)).contains(&ahead),
        "{ahead:?}"
    );
    assert_eq!(
        issued.sequence.to_string(),
        app.get_generator("OTP_SMS").body["secretGenerator"]["details"]["sequence"]
            .as_str()
            .unwrap()
    );
    assert_eq!(issued.attempts_left, 5);

    let subject = "user-1:+41790000000";
    let wrong = verify(&mut client, &app.token, subject, &other_than(&issued.code)).await;
    assert_eq!(wrong, (VerifyResult::Rejected, 4));
    let right = verify(&mut client, &app.token, subject, &issued.code).await;
    assert_eq!(right, (VerifyResult::Approved, 0));
    let again = verify(&mut client, &app.token, subject, &issued.code).await;
    assert_eq!(again, (VerifyResult::NotFound, 0));
    let never = verify(&mut client, &app.token, "nobody", &issued.code).await;
    assert_eq!(never, (VerifyResult::NotFound, 0));

    // The same codes as HTTP's: a code issued there is approved here, typed as a person would.
    let http = app.issue("OTP_SMS", &app.token, "user-2");
    assert_eq!(http.status, 200, "{:?}", http.body);
    let code = http.body["code"].as_str().unwrap();
    let typed = format!("{} {}", &code[..4], &code[4..]);
    let approved = verify(&mut client, &app.token, "user-2", &typed).await;
    assert_eq!(approved, (VerifyResult::Approved, 0));

    // Counted in the metrics under their own methods.
    let text = metrics(&app);
    for series in [
        "secretgen_grpc_requests_total{method=\"/secretgen.v1.CodeService/Issue\",code=\"OK\"} 1",
        "secretgen_grpc_requests_total{method=\"/secretgen.v1.CodeService/Verify\",code=\"OK\"} 5",
    ] {
        assert!(text.contains(series), "{series} not in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_needs_its_permission_before_its_request_is_read() {
    let app = spawn_app();
    let issuer = app.create_token("issuer", "codes.issue");
    let verifier = app.create_token("verifier", "codes.verify");
    let generator = app.create_token("generator", "codes.generate");
    let mut client = codes(&app).await;
    // Requests that would be refused as invalid: the caller is judged first.
    let bad_issue = issue_request(0, "");
    let bad_verify = verify_request(0, "", "");

    let none = client
        .issue(Request::new(bad_issue.clone()))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let none = client
        .verify(Request::new(bad_verify.clone()))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    for token in [&generator, &verifier] {
        let denied = client
            .issue(authed(bad_issue.clone(), token))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    }
    for token in [&generator, &issuer] {
        let denied = client
            .verify(authed(bad_verify.clone(), token))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    }

    // Each with its own permission gets as far as the rules, then through.
    let status = client.issue(authed(bad_issue, &issuer)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let issued = issue(&mut client, &issuer, "lena").await.unwrap();
    let approved = verify(&mut client, &verifier, "lena", &issued.code).await;
    assert_eq!(approved, (VerifyResult::Approved, 0));

    let text = metrics(&app);
    for series in [
        "secretgen_grpc_requests_total{method=\"/secretgen.v1.CodeService/Issue\",code=\"PERMISSION_DENIED\"} 2",
        "secretgen_grpc_requests_total{method=\"/secretgen.v1.CodeService/Verify\",code=\"UNAUTHENTICATED\"} 1",
    ] {
        assert!(text.contains(series), "{series} not in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_invalid_argument_by_protobuf_field_name() {
    let app = spawn_app();
    let mut client = codes(&app).await;
    let status = issue(&mut client, &app.token, "").await.unwrap_err();
    assert_eq!(violated_fields(&status), ["subject"]);
    let status = client
        .issue(authed(issue_request(OTP_SMS, "a\nb"), &app.token))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["subject"]);
    let status = client
        .verify(authed(verify_request(OTP_SMS, "", " - "), &app.token))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["subject", "code"]);

    // An unspecified, unknown or negative type, as Generate refuses it.
    for t in [0, 9, -1] {
        let status = client
            .issue(authed(issue_request(t, "mia"), &app.token))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["generator_type"], "type {t}");
        let status = client
            .verify(authed(verify_request(t, "mia", "12345678"), &app.token))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["generator_type"], "type {t}");
    }

    // None of it issued a code or counted a failure.
    let issued = issue(&mut client, &app.token, "mia").await.unwrap();
    let wrong = verify(&mut client, &app.token, "mia", &other_than(&issued.code)).await;
    assert_eq!(wrong, (VerifyResult::Rejected, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_that_never_expires_cannot_be_issued() {
    let app = spawn_app();
    let mut client = codes(&app).await;
    let app_secret = SecretGeneratorType::AppSecret as i32;
    let status = client
        .issue(authed(issue_request(app_secret, "nina"), &app.token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("never expire"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_issue_right_away_is_resource_exhausted_with_the_wait() {
    let app = spawn_app();
    let mut client = codes(&app).await;
    issue(&mut client, &app.token, "olga").await.unwrap();
    let status = issue(&mut client, &app.token, "olga").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let wait = status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a RetryInfo");
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(30)).contains(&wait),
        "{wait:?}"
    );
    // Another subject is not held back.
    issue(&mut client, &app.token, "paul").await.unwrap();
}
