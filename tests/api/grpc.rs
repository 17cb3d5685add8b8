//! gRPC (SPEC section 9) against the real server over real sockets, with tonic's own client:
//! ZITADEL's AdminService and the CodeService, every error status with its details, metadata
//! authentication before validation, a slow reader of a stream, grpc-web framing, health,
//! reflection, metrics and TLS.

use std::time::{Duration, SystemTime};

use secretgen::grpc::proto::secretgen::v1::code_service_client::CodeServiceClient;
use secretgen::grpc::proto::secretgen::v1::{GenerateRequest, GenerateStreamRequest};
use secretgen::grpc::proto::zitadel::admin::v1::admin_service_client::AdminServiceClient;
use secretgen::grpc::proto::zitadel::admin::v1::{
    GetSecretGeneratorRequest, ListSecretGeneratorsRequest, UpdateSecretGeneratorRequest,
};
use secretgen::grpc::proto::zitadel::settings::v1::{
    SecretGeneratorQuery, SecretGeneratorType, SecretGeneratorTypeQuery,
    secret_generator_query::Query,
};
use secretgen::grpc::proto::zitadel::v1::ListQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::helpers::{TestApp, spawn_app, spawn_app_configured, spawn_app_process};

pub(crate) const OTP_SMS: i32 = SecretGeneratorType::OtpSms as i32;

/// `message` with `authorization: Bearer token`.
pub(crate) fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn channel(app: &TestApp) -> Channel {
    let endpoint = app.grpc.clone().expect("the server serves gRPC");
    Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn admin(app: &TestApp) -> AdminServiceClient<Channel> {
    AdminServiceClient::new(channel(app).await)
}

pub(crate) async fn codes(app: &TestApp) -> CodeServiceClient<Channel> {
    CodeServiceClient::new(channel(app).await)
}

/// The fields of a status's `google.rpc.BadRequest`, in order.
pub(crate) fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let bad = details.bad_request().expect("a BadRequest detail");
    bad.field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}

/// A valid update of OTP_SMS: 10 characters from the digits, 600 s.
fn ten_digits() -> UpdateSecretGeneratorRequest {
    UpdateSecretGeneratorRequest {
        generator_type: OTP_SMS,
        length: 10,
        expiry: Some(prost_types::Duration {
            seconds: 600,
            nanos: 0,
        }),
        include_digits: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_service_reads_updates_and_lists_what_http_serves() {
    let app = spawn_app();
    let mut client = admin(&app).await;
    let get = |t| authed(GetSecretGeneratorRequest { generator_type: t }, &app.token);

    let before = client.get_secret_generator(get(OTP_SMS)).await.unwrap();
    let g = before.into_inner().secret_generator.unwrap();
    assert_eq!(g.generator_type, OTP_SMS);
    assert_eq!(
        (g.length, g.include_digits, g.include_upper_letters),
        (8, true, false)
    );
    assert_eq!(g.expiry.unwrap().seconds, 300);
    assert_eq!(g.entropy_bits, 26.57);
    let details = g.details.unwrap();
    assert_eq!(
        details.resource_owner,
        app.get_generator("otp_sms").body["secretGenerator"]["details"]["resourceOwner"]
    );

    let updated = client
        .update_secret_generator(authed(ten_digits(), &app.token))
        .await
        .unwrap()
        .into_inner();
    let sequence = updated.details.unwrap().sequence;
    assert!(
        sequence > details.sequence,
        "{sequence} after {}",
        details.sequence
    );

    // The same core: HTTP serves the change, and codes are made with it at once.
    let http = app.get_generator("otp_sms").body;
    assert_eq!(http["secretGenerator"]["length"], 10);
    assert_eq!(
        http["secretGenerator"]["details"]["sequence"],
        sequence.to_string()
    );
    let after = client
        .get_secret_generator(get(OTP_SMS))
        .await
        .unwrap()
        .into_inner();
    let g = after.secret_generator.unwrap();
    assert_eq!((g.length, g.expiry.unwrap().seconds), (10, 600));
    assert_eq!(g.details.unwrap().sequence, sequence);

    // An update that changes nothing writes nothing and answers the same details.
    let again = client
        .update_secret_generator(authed(ten_digits(), &app.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.details.unwrap().sequence, sequence);

    // Lists: every type in order without a query; paging; descending when asked; by type.
    let list = |query: Option<ListQuery>, queries: Vec<SecretGeneratorQuery>| {
        authed(ListSecretGeneratorsRequest { query, queries }, &app.token)
    };
    let all = client
        .list_secret_generators(list(None, vec![]))
        .await
        .unwrap()
        .into_inner();
    let types: Vec<i32> = all.result.iter().map(|g| g.generator_type).collect();
    assert_eq!(types, (1..=8).collect::<Vec<_>>());
    let details = all.details.unwrap();
    assert_eq!(details.total_result, 8);
    assert_eq!(details.processed_sequence, sequence);
    assert!(details.view_timestamp.is_some());
    let page = client
        .list_secret_generators(list(
            Some(ListQuery {
                offset: 2,
                limit: 3,
                asc: false,
            }),
            vec![],
        ))
        .await
        .unwrap()
        .into_inner();
    let types: Vec<i32> = page.result.iter().map(|g| g.generator_type).collect();
    assert_eq!(types, [6, 5, 4]);
    let by_type = SecretGeneratorQuery {
        query: Some(Query::TypeQuery(SecretGeneratorTypeQuery {
            generator_type: OTP_SMS,
        })),
    };
    let one = client
        .list_secret_generators(list(None, vec![by_type]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.result.len(), 1);
    assert_eq!(one.result[0].length, 10);
    assert_eq!(one.details.unwrap().total_result, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_statuses_with_the_spec_codes_and_change_nothing() {
    let app = spawn_app();
    let reader = app.create_token("reader", "iam.read");
    let mut client = admin(&app).await;
    let sequence_now = |app: &TestApp| {
        app.get_generator("otp_sms").body["secretGenerator"]["details"]["sequence"].clone()
    };
    let before = sequence_now(&app);
    let bad = UpdateSecretGeneratorRequest {
        generator_type: OTP_SMS,
        length: 0,
        ..Default::default()
    };

    // 401 and 403 equivalents come before validation: the bad request is not judged.
    let none = client
        .update_secret_generator(Request::new(bad))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let unknown = client
        .update_secret_generator(authed(bad, "sg_not_a_known_token"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    let mut basic = Request::new(bad);
    basic
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwdw==".parse().unwrap());
    let basic = client.update_secret_generator(basic).await.unwrap_err();
    assert_eq!(basic.code(), Code::Unauthenticated, "{basic:?}");
    let denied = client
        .update_secret_generator(authed(bad, &reader))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.get_error_details().bad_request().is_none());

    // Every violated rule at once, by protobuf field name.
    let invalid = client
        .update_secret_generator(authed(bad, &app.token))
        .await
        .unwrap_err();
    let fields = violated_fields(&invalid);
    assert!(fields.contains(&"length".to_owned()), "{fields:?}");
    assert!(
        fields.iter().any(|f| f.starts_with("include_")),
        "{fields:?}"
    );
    // A zero type, a type beyond 8, a negative one, and a malformed duration.
    for t in [0, 9, -1] {
        let status = client
            .get_secret_generator(authed(
                GetSecretGeneratorRequest { generator_type: t },
                &reader,
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["generator_type"], "type {t}");
    }
    let mut odd_expiry = ten_digits();
    odd_expiry.expiry = Some(prost_types::Duration {
        seconds: 5,
        nanos: -1,
    });
    let status = client
        .update_secret_generator(authed(odd_expiry, &app.token))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["expiry"]);
    let mut negative = ten_digits();
    negative.expiry = Some(prost_types::Duration {
        seconds: -5,
        nanos: 0,
    });
    let status = client
        .update_secret_generator(authed(negative, &app.token))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["expiry"]);
    let empty_query = ListSecretGeneratorsRequest {
        query: None,
        queries: vec![SecretGeneratorQuery { query: None }],
    };
    let status = client
        .list_secret_generators(authed(empty_query, &reader))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["queries[0]"]);

    // Nothing was written by any refused call.
    assert_eq!(sequence_now(&app), before);

    // The codes: a count out of range, a reader without codes.generate.
    let mut code_client = codes(&app).await;
    for count in [0, 1001] {
        let status = code_client
            .generate(authed(
                GenerateRequest {
                    generator_type: OTP_SMS,
                    count: Some(count),
                },
                &app.token,
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["count"], "count {count}");
    }
    for count in [0, 10_000_001] {
        let status = code_client
            .generate_stream(authed(
                GenerateStreamRequest {
                    generator_type: OTP_SMS,
                    count,
                },
                &app.token,
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["count"], "stream count {count}");
    }
    let status = code_client
        .generate(authed(
            GenerateRequest {
                generator_type: OTP_SMS,
                count: Some(1),
            },
            &reader,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Every other AdminService method, and any other service, is UNIMPLEMENTED.
    let mut raw = tonic::client::Grpc::new(channel(&app).await);
    for path in [
        "/zitadel.admin.v1.AdminService/ListOrgs",
        "/zitadel.admin.v1.AdminService/GetSMTPConfig",
        "/zitadel.management.v1.ManagementService/GetMyOrg",
    ] {
        raw.ready().await.unwrap();
        let status = raw
            .unary::<(), (), _>(
                authed((), &app.token),
                path.parse().unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_resource_exhausted_with_the_wait() {
    let app = spawn_app_configured(|s| s.rate_limit = std::num::NonZeroU32::new(2));
    let mut client = codes(&app).await;
    let mut refused = None;
    for _ in 0..20 {
        let request = authed(
            GenerateRequest {
                generator_type: OTP_SMS,
                count: None,
            },
            &app.token,
        );
        if let Err(status) = client.generate(request).await {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("20 calls at once exceed 2 a second");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let details = status.get_error_details();
    let wait = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a RetryInfo");
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_makes_codes_of_the_live_configuration() {
    let app = spawn_app();
    let mut client = codes(&app).await;
    let one = client
        .generate(authed(
            GenerateRequest {
                generator_type: OTP_SMS,
                count: None,
            },
            &app.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.codes.len(), 1, "no count means one code");
    assert_eq!(one.generator_type, OTP_SMS);
    let code = &one.codes[0];
    assert_eq!(code.code.len(), 8);
    assert!(
        code.code.bytes().all(|b| b.is_ascii_digit()),
        "{}",
        code.code
    );
    let expires = code.expires_at.unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now + 295..=now + 305).contains(&expires.seconds),
        "{expires:?} at {now}"
    );

    // A change made over gRPC is used by the next call, and named by its sequence.
    let mut admin = admin(&app).await;
    let details = admin
        .update_secret_generator(authed(ten_digits(), &app.token))
        .await
        .unwrap()
        .into_inner()
        .details
        .unwrap();
    let many = client
        .generate(authed(
            GenerateRequest {
                generator_type: OTP_SMS,
                count: Some(1000),
            },
            &app.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(many.sequence, details.sequence);
    assert_eq!(many.codes.len(), 1000);
    assert!(
        many.codes
            .iter()
            .all(|c| c.code.len() == 10 && c.code.bytes().all(|b| b.is_ascii_digit()))
    );
    let distinct: std::collections::HashSet<_> = many.codes.iter().map(|c| &c.code).collect();
    assert!(distinct.len() > 990, "{} distinct of 1000", distinct.len());

    // APP_SECRET never expires: no expires_at.
    let secret = client
        .generate(authed(
            GenerateRequest {
                generator_type: SecretGeneratorType::AppSecret as i32,
                count: None,
            },
            &app.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.codes[0].code.len(), 64);
    assert!(secret.codes[0].expires_at.is_none());
}

/// The server's count of OTP_SMS codes made, from /metrics.
fn otp_sms_codes_made(app: &TestApp) -> u64 {
    let answer = app.request("GET", "/metrics", None, None);
    let text = answer
        .body
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.body.to_string());
    text.lines()
        .find(|l| {
            l.starts_with(
                "secretgen_codes_generated_total{generator_type=\"SECRET_GENERATOR_TYPE_OTP_SMS\"}",
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_ten_million_codes_waits_for_a_slow_reader() {
    let app = spawn_app();
    let mut client = codes(&app).await;
    let mut stream = client
        .generate_stream(authed(
            GenerateStreamRequest {
                generator_type: OTP_SMS,
                count: 10_000_000,
            },
            &app.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("a first chunk");
    assert_eq!((first.generator_type, first.length), (OTP_SMS, 8));
    assert!(!first.codes.is_empty() && first.codes.len() % 8 == 0);
    // The reader stops. The server makes what fits in the flow-control windows and its
    // buffers (a few MiB), then waits: nowhere near the 80 MB of the whole stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let made_while_stalled = otp_sms_codes_made(&app);
    assert!(
        made_while_stalled < 1_000_000,
        "{made_while_stalled} codes made for a reader that took one chunk"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        otp_sms_codes_made(&app),
        made_while_stalled,
        "the stream kept going"
    );

    // The reader goes on, and gets every code, each chunk whole and in shape.
    let mut total = (first.codes.len() / 8) as u64;
    let mut chunks = 1;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert_eq!(chunk.length, 8);
        assert_eq!(chunk.codes.len() % 8, 0);
        if chunks % 97 == 0 {
            assert!(chunk.codes.iter().all(u8::is_ascii_digit));
        }
        assert!(chunk.expires_at.is_some());
        total += (chunk.codes.len() / 8) as u64;
        chunks += 1;
    }
    assert_eq!(total, 10_000_000);
    assert!(chunks > 100, "{chunks} chunks");
    assert_eq!(otp_sms_codes_made(&app), 10_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_follows_a_change_made_while_it_runs() {
    let app = spawn_app();
    let mut client = codes(&app).await;
    let mut stream = client
        .generate_stream(authed(
            GenerateStreamRequest {
                generator_type: OTP_SMS,
                count: 10_000_000,
            },
            &app.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.length, 8);
    let mut admin = admin(&app).await;
    let sequence = admin
        .update_secret_generator(authed(ten_digits(), &app.token))
        .await
        .unwrap()
        .into_inner()
        .details
        .unwrap()
        .sequence;
    // Chunks already made (in the windows) keep the old shape; every chunk made after the
    // answer has the new one, and once it changed it never goes back.
    let mut changed = false;
    while let Some(chunk) = stream.message().await.unwrap() {
        if chunk.sequence == sequence {
            changed = true;
            assert_eq!(chunk.length, 10);
            assert_eq!(chunk.codes.len() % 10, 0);
        } else {
            assert!(
                !changed,
                "a chunk of the old configuration after the new one"
            );
            assert_eq!(chunk.length, 8);
        }
    }
    assert!(changed, "no chunk used the change");
}

/// A grpc-web frame: flag, length, message.
fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The frames of a grpc-web body: (flag, payload).
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    assert!(body.is_empty(), "a torn frame");
    out
}

/// A grpc-web call over HTTP/1.1: status, content type, and body.
fn grpc_web(
    app: &TestApp,
    path: &str,
    content_type: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let url = format!("{}{path}", app.grpc.as_ref().unwrap());
    let agent = crate::common::http::agent();
    let mut request = agent
        .post(&url)
        .header("content-type", content_type)
        .header("accept", content_type)
        .header("x-grpc-web", "1");
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    let mut response = request.send(&body[..]).unwrap();
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut bytes = response.body_mut().read_to_vec().unwrap();
    if let Some(code) = grpc_status {
        // A trailers-only answer: the status is in the headers; carry it as a trailer frame.
        bytes.extend(frame(0x80, format!("grpc-status:{code}\r\n").as_bytes()));
    }
    (status, ct, bytes)
}

#[test]
fn grpc_web_speaks_binary_and_text_over_http1() {
    use base64::Engine;
    use prost::Message;
    let app = spawn_app();
    let path = "/zitadel.admin.v1.AdminService/GetSecretGenerator";
    let message = GetSecretGeneratorRequest {
        generator_type: OTP_SMS,
    }
    .encode_to_vec();

    let (status, content_type, body) = grpc_web(
        &app,
        path,
        "application/grpc-web+proto",
        Some(&app.token),
        frame(0, &message),
    );
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/grpc-web+proto");
    let binary = frames(&body);
    assert_eq!(binary[0].0, 0, "a data frame first");
    let answer = secretgen::grpc::proto::zitadel::admin::v1::GetSecretGeneratorResponse::decode(
        &binary[0].1[..],
    )
    .unwrap();
    assert_eq!(answer.secret_generator.unwrap().length, 8);
    let trailers = String::from_utf8(binary.last().unwrap().1.clone()).unwrap();
    assert_eq!(binary.last().unwrap().0, 0x80, "a trailer frame last");
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // The text form: the same frames in base64.
    let b64 = base64::engine::general_purpose::STANDARD;
    let (status, content_type, body) = grpc_web(
        &app,
        path,
        "application/grpc-web-text",
        Some(&app.token),
        b64.encode(frame(0, &message)).into_bytes(),
    );
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/grpc-web-text"),
        "{content_type}"
    );
    // The text body is base64 runs, one per frame, each padded: cut after each padding.
    let text = String::from_utf8(body).unwrap();
    let mut decoded = Vec::new();
    let mut run = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        run.push(c);
        if chars.peek().is_none() || (c == '=' && chars.peek() != Some(&'=')) {
            decoded.extend(b64.decode(&run).unwrap());
            run.clear();
        }
    }
    let frames_text = frames(&decoded);
    let answer = secretgen::grpc::proto::zitadel::admin::v1::GetSecretGeneratorResponse::decode(
        &frames_text[0].1[..],
    )
    .unwrap();
    assert_eq!(answer.secret_generator.unwrap().generator_type, OTP_SMS);

    // Without a token: UNAUTHENTICATED (16), in grpc-web too.
    let (_, _, body) = grpc_web(
        &app,
        path,
        "application/grpc-web+proto",
        None,
        frame(0, &message),
    );
    let last = frames(&body).pop().unwrap();
    let trailers = String::from_utf8(last.1).unwrap();
    assert!(trailers.contains("grpc-status:16"), "{trailers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_work_without_the_protos() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let app = spawn_app();
    let mut health = HealthClient::new(channel(&app).await);
    for service in [
        "",
        "zitadel.admin.v1.AdminService",
        "secretgen.v1.CodeService",
    ] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    use prost::Message;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel(&app).await);
    let ask = |request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let answers = reflection
        .server_reflection_info(tokio_stream::iter([
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "zitadel.settings.v1.SecretGenerator".to_owned(),
            )),
        ]))
        .await
        .unwrap()
        .into_inner();
    let answers: Vec<_> = tokio_stream::StreamExt::collect::<Vec<_>>(answers).await;
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers[0].as_ref().unwrap().message_response.clone()
    else {
        panic!("{:?}", answers[0]);
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for name in [
        "zitadel.admin.v1.AdminService",
        "secretgen.v1.CodeService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers[1].as_ref().unwrap().message_response.clone()
    else {
        panic!("{:?}", answers[1]);
    };
    let file = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(&bytes[..]).unwrap())
        .find(|f| f.package() == "zitadel.settings.v1")
        .expect("settings.proto");
    let generator = file
        .message_type
        .iter()
        .find(|m| m.name() == "SecretGenerator")
        .unwrap();
    let numbers: Vec<(&str, i32)> = generator
        .field
        .iter()
        .map(|f| (f.name(), f.number()))
        .collect();
    assert_eq!(
        numbers,
        [
            ("generator_type", 1),
            ("details", 2),
            ("length", 3),
            ("expiry", 4),
            ("include_lower_letters", 5),
            ("include_upper_letters", 6),
            ("include_digits", 7),
            ("include_symbols", 8),
            ("exclude_ambiguous", 1001),
            ("require_each_class", 1002),
            ("entropy_bits", 1003),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_counted_in_the_metrics() {
    let app = spawn_app();
    let mut client = admin(&app).await;
    client
        .get_secret_generator(authed(
            GetSecretGeneratorRequest {
                generator_type: OTP_SMS,
            },
            &app.token,
        ))
        .await
        .unwrap();
    client
        .get_secret_generator(Request::new(GetSecretGeneratorRequest {
            generator_type: OTP_SMS,
        }))
        .await
        .unwrap_err();
    let answer = app.request("GET", "/metrics", None, None);
    let text = answer
        .body
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.body.to_string());
    for series in [
        "secretgen_grpc_requests_total{method=\"/zitadel.admin.v1.AdminService/GetSecretGenerator\",code=\"OK\"} 1",
        "secretgen_grpc_requests_total{method=\"/zitadel.admin.v1.AdminService/GetSecretGenerator\",code=\"UNAUTHENTICATED\"} 1",
        "secretgen_grpc_request_duration_seconds_count{method=\"/zitadel.admin.v1.AdminService/GetSecretGenerator\",code=\"OK\"} 1",
    ] {
        assert!(text.contains(series), "{series} not in\n{text}");
    }
}

#[test]
fn the_process_prints_its_grpc_address_logs_calls_without_secrets_and_stops_on_sigterm() {
    let mut app = spawn_app_process();
    let endpoint = app.grpc.clone().expect("a listening on grpc:// line");
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let code = runtime.block_on(async {
        let mut client = codes(&app).await;
        let answer = client
            .generate(authed(
                GenerateRequest {
                    generator_type: OTP_SMS,
                    count: Some(3),
                },
                &app.token,
            ))
            .await
            .unwrap()
            .into_inner();
        answer.codes[0].code.clone()
    });
    let status = app.stop();
    assert!(status.success(), "{status:?}");
    // Read once the server has stopped: every line it wrote is in.
    let logs = app.logs();
    assert!(logs.contains("grpc call"), "{logs}");
    assert!(
        logs.contains("/secretgen.v1.CodeService/Generate"),
        "{logs}"
    );
    assert!(!logs.contains(&code), "a code in the logs");
    assert!(!logs.contains(&app.token), "the token in the logs");
    let addr = endpoint.trim_start_matches("http://");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "gRPC still listens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_wait_for_a_place() {
    let app = spawn_app_configured(|s| s.max_connections = std::num::NonZeroUsize::new(2).unwrap());
    let call = |mut client: CodeServiceClient<Channel>, token: String| async move {
        client
            .generate(authed(
                GenerateRequest {
                    generator_type: OTP_SMS,
                    count: None,
                },
                &token,
            ))
            .await
            .map(|_| client)
    };
    // Two connections, each served.
    let first = call(codes(&app).await, app.token.clone()).await.unwrap();
    let second = call(codes(&app).await, app.token.clone()).await.unwrap();
    // A third is left in the backlog: its call gets no answer while both stay open.
    let endpoint = app.grpc.clone().unwrap();
    let third = tokio::spawn({
        let token = app.token.clone();
        async move {
            let channel = Channel::from_shared(endpoint).unwrap().connect_lazy();
            call(CodeServiceClient::new(channel), token)
                .await
                .map(|_| ())
                .map_err(|status| status.to_string())
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    if third.is_finished() {
        panic!(
            "a third connection was answered beside two: {:?}",
            third.await
        );
    }
    // One closes: the third takes its place and is answered.
    drop(first);
    let answered = tokio::time::timeout(Duration::from_secs(10), third).await;
    assert!(matches!(answered, Ok(Ok(Ok(())))), "{answered:?}");
    drop(second);
}

#[test]
fn a_store_gone_under_the_server_answers_unavailable_while_codes_and_health_stay() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut app = spawn_app_process();
    app.leaves_a_damaged_store();
    std::fs::remove_file(app.data_dir.join("secretgen.db")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let refused = admin(&app)
            .await
            .update_secret_generator(authed(ten_digits(), &app.token))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        let codes = codes(&app)
            .await
            .generate(authed(
                GenerateRequest {
                    generator_type: OTP_SMS,
                    count: Some(3),
                },
                &app.token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(codes.codes.len(), 3);
        assert_eq!(codes.codes[0].code.len(), 8, "the old configuration, still");
        let health = HealthClient::new(channel(&app).await)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status, ServingStatus::Serving as i32);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_64_kib_is_invalid_argument_as_a_body_over_64_kib_is() {
    let app = spawn_app();
    let queries = (0..20_000)
        .map(|_| SecretGeneratorQuery {
            query: Some(Query::TypeQuery(SecretGeneratorTypeQuery {
                generator_type: OTP_SMS,
            })),
        })
        .collect();
    let status = admin(&app)
        .await
        .list_secret_generators(authed(
            ListSecretGeneratorsRequest {
                query: None,
                queries,
            },
            &app.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");
}

/// SPEC section 4: UpdateSecretGenerator with a bad type lists the message's other
/// violations too, the type's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_of_a_bad_type_lists_every_other_violation_too() {
    let app = spawn_app();
    let mut client = admin(&app).await;
    for t in [0, 9, -1] {
        let status = client
            .update_secret_generator(authed(
                UpdateSecretGeneratorRequest {
                    generator_type: t,
                    length: 0,
                    expiry: Some(prost_types::Duration {
                        seconds: -1,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                &app.token,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            violated_fields(&status),
            [
                "generator_type",
                "length",
                "expiry",
                "include_lower_letters",
                "include_upper_letters",
                "include_digits",
                "include_symbols"
            ],
            "type {t}"
        );
    }
}

/// A raw gRPC call over HTTP/2 on `channel`: `body` as the request body, as is; the status
/// of the trailers-only answer.
async fn raw_call(channel: Channel, path: &str, token: &str, body: Vec<u8>) -> Status {
    use tonic::codegen::http;
    use tower::ServiceExt;
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(tonic::body::Body::new(String::from_utf8(body).unwrap()))
        .unwrap();
    let response = channel.oneshot(request).await.unwrap();
    Status::from_header_map(response.headers())
        .unwrap_or_else(|| panic!("not a trailers-only answer: {response:?}"))
}

/// SPEC section 13: a request that cannot be decoded is INVALID_ARGUMENT in our words,
/// never INTERNAL with prost's, hyper's or tonic-web's text; over HTTP/2 and grpc-web.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_decoded_is_invalid_argument() {
    use secretgen::grpc::guard::UNDECODABLE;
    let app = spawn_app();
    let path = "/zitadel.admin.v1.AdminService/GetSecretGenerator";
    // Field 0 with wire type 7: no protobuf message.
    let bad_protobuf = frame(0, b"\x07\x07\x07");
    // A length prefix of 100 before 3 bytes.
    let mut short = frame(0, b"abc");
    short[1..5].copy_from_slice(&100u32.to_be_bytes());
    for (what, body) in [
        ("bad protobuf", bad_protobuf.clone()),
        ("short", short.clone()),
    ] {
        for path in [path, "/secretgen.v1.CodeService/GenerateStream"] {
            let status = raw_call(channel(&app).await, path, &app.token, body.clone()).await;
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{what} {path}: {status:?}"
            );
            assert_eq!(status.message(), UNDECODABLE, "{what} {path}");
        }
    }

    // grpc-web: the same, and base64 that is none.
    let b64 = base64::engine::general_purpose::STANDARD;
    let web = [
        ("application/grpc-web+proto", bad_protobuf.clone()),
        ("application/grpc-web+proto", short.clone()),
        ("application/grpc-web-text", {
            use base64::Engine;
            b64.encode(&bad_protobuf).into_bytes()
        }),
        (
            "application/grpc-web-text",
            b"!!not base64 at all!!".to_vec(),
        ),
    ];
    let agent = crate::common::http::agent();
    for (content_type, body) in web {
        let response = agent
            .post(format!("{}{path}", app.grpc.as_ref().unwrap()))
            .header("content-type", content_type)
            .header("x-grpc-web", "1")
            .header("authorization", &format!("Bearer {}", app.token))
            .send(&body[..])
            .unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let shown = format!("{content_type} {:?}", String::from_utf8_lossy(&body));
        assert_eq!(header("grpc-status").as_deref(), Some("3"), "{shown}");
        let message = header("grpc-message").unwrap_or_default();
        assert!(
            message.starts_with("invalid%20request") || message.starts_with("invalid request"),
            "{shown}: {message}"
        );
    }

    // The connection and the server go on: a good call on a new channel works.
    let answer = admin(&app)
        .await
        .get_secret_generator(authed(
            GetSecretGeneratorRequest {
                generator_type: OTP_SMS,
            },
            &app.token,
        ))
        .await
        .unwrap();
    assert_eq!(answer.into_inner().secret_generator.unwrap().length, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_expired_token_ends_the_streams_it_started() {
    let app = spawn_app();
    let make = |name: &str, expiry: Option<&str>| {
        let mut body = serde_json::json!({"name": name, "permissions": ["codes.generate"]});
        if let Some(expiry) = expiry {
            body["expiry"] = expiry.into();
        }
        let made = app.request(
            "POST",
            "/admin/v1/tokens",
            Some(&app.token),
            Some(&body.to_string()),
        );
        assert_eq!(made.status, 200, "{:?}", made.body);
        (
            made.body["token"].as_str().unwrap().to_owned(),
            made.body["id"].as_str().unwrap().to_owned(),
        )
    };
    let (revoked, revoked_id) = make("streamer", None);
    let (expiring, _) = make("brief-streamer", Some("2s"));
    let client = codes(&app).await;
    let open = |token: String| {
        let mut client = client.clone();
        async move {
            client
                .generate_stream(authed(
                    GenerateStreamRequest {
                        generator_type: OTP_SMS,
                        count: 10_000_000,
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut cut = open(revoked).await;
    let mut lapsing = open(expiring).await;
    for stream in [&mut cut, &mut lapsing] {
        stream.message().await.unwrap().expect("a first chunk");
    }
    let gone = app.request(
        "DELETE",
        &format!("/admin/v1/tokens/{revoked_id}"),
        Some(&app.token),
        None,
    );
    assert_eq!(gone.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // What was made before (the windows' worth) still arrives; then the stream ends.
    for (what, stream) in [("revoked", &mut cut), ("expired", &mut lapsing)] {
        let mut codes = 0usize;
        let status = loop {
            match stream.message().await {
                Ok(Some(chunk)) => codes += chunk.codes.len() / 8,
                Ok(None) => panic!("the {what} token's stream ran to its end"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert!(
            codes < 2_000_000,
            "{what}: {codes} codes after the first chunk"
        );
    }
}
