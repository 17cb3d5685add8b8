//! HTTPS with --tls-cert and --tls-key: a client that trusts the test certificate talks to
//! the server; one that does not, or that speaks plain HTTP, does not. And the command line's
//! serving options (TLS files, rate limit, metrics) reach the server.

use std::fs;
use std::path::Path;

use secretgen::server::TlsFiles;

use crate::helpers::{TestApp, spawn_app_configured, spawn_app_in};

/// A self-signed certificate for localhost and 127.0.0.1 written in `dir`: the files, and
/// the certificate's DER for a client to trust.
fn certificate(dir: &Path) -> (TlsFiles, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    fs::write(&cert, certified.cert.pem()).unwrap();
    fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (TlsFiles { cert, key }, certified.cert.der().to_vec())
}

/// The server in this process, serving HTTPS with a certificate made in `dir`.
fn tls_app(dir: &Path) -> (TestApp, Vec<u8>) {
    let (files, der) = certificate(dir);
    let app = spawn_app_configured(|s| s.tls = Some(files));
    (app, der)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn trusting(der: &[u8]) -> ureq::Agent {
    let root = ureq::tls::Certificate::from_der(der).to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[root]))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .build()
        .into()
}

#[test]
fn a_client_that_trusts_the_certificate_talks_https() {
    let temp = tempfile::tempdir().unwrap();
    let (app, der) = tls_app(temp.path());
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    let app = app.with_agent(trusting(&der));
    assert_eq!(app.request("GET", "/healthz", None, None).status, 200);
    let answer = app.generate("otp_sms", 3);
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["codes"].as_array().unwrap().len(), 3);
}

#[test]
fn untrusting_and_plain_http_clients_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (app, _der) = tls_app(temp.path());
    // The system's roots do not include the test certificate.
    assert!(ureq::get(&app.url("/healthz")).call().is_err());
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = app.url("/healthz").replacen("https://", "http://", 1);
    let answer = ureq::get(&plain).call();
    assert!(
        answer.as_ref().map_or(true, |r| r.status() != 200),
        "plain HTTP was served: {answer:?}"
    );
}

/// `secretgen serve`'s TLS files, rate limit and metrics switch, as set on its command line
/// (environment), reach the server: the tests above and in operations.rs test what each does
/// on the server in this process.
#[test]
fn the_command_lines_tls_rate_limit_and_metrics_reach_the_server() {
    let temp = tempfile::tempdir().unwrap();
    let (files, der) = certificate(temp.path());
    let app = spawn_app_in(
        &temp.path().join("data"),
        &[
            ("SECRETGEN_TLS_CERT", path(&files.cert)),
            ("SECRETGEN_TLS_KEY", path(&files.key)),
            ("SECRETGEN_RATE_LIMIT", "1"),
            ("SECRETGEN_METRICS", "off"),
        ],
    );
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    let app = app.with_agent(trusting(&der));
    assert_eq!(app.request("GET", "/healthz", None, None).status, 200);
    assert_eq!(app.request("GET", "/metrics", None, None).status, 404);
    // One request a second: the first of a quick few passes, a later one is refused.
    let statuses: Vec<u16> = (0..4).map(|_| app.generate("otp_sms", 1).status).collect();
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[test]
fn bad_tls_files_stop_the_server_with_a_clear_message() {
    let temp = tempfile::tempdir().unwrap();
    let cert = temp.path().join("cert.pem");
    fs::write(&cert, "not a certificate").unwrap();
    let child = crate::helpers::start(
        &temp.path().join("data"),
        &[
            ("SECRETGEN_TLS_CERT", cert.to_str().unwrap()),
            ("SECRETGEN_TLS_KEY", cert.to_str().unwrap()),
        ],
    );
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS certificate"), "{err}");
    assert!(
        !temp.path().join("data").exists(),
        "nothing was created before TLS was checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_is_served_with_the_same_certificate() {
    use secretgen::grpc::proto::secretgen::v1::GenerateRequest;
    use secretgen::grpc::proto::secretgen::v1::code_service_client::CodeServiceClient;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    let temp = tempfile::tempdir().unwrap();
    let (app, _) = tls_app(temp.path());
    let addr = app
        .grpc
        .as_ref()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let request = || {
        let mut request = tonic::Request::new(GenerateRequest {
            generator_type: 7,
            count: Some(2),
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", app.token).parse().unwrap(),
        );
        request
    };
    let pem = fs::read(temp.path().join("cert.pem")).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let answer = CodeServiceClient::new(channel)
        .generate(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.codes.len(), 2);

    // A client that speaks plain HTTP/2 to the TLS port gets no answer.
    let plain = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(plain) = plain {
        let refused = CodeServiceClient::new(plain).generate(request()).await;
        assert!(refused.is_err(), "{refused:?}");
    }
}

/// Waits up to 10 s for `app`'s logs to contain `line` `times` times.
fn wait_for_log(app: &TestApp, line: &str, times: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.logs().matches(line).count() < times {
        assert!(
            std::time::Instant::now() < deadline,
            "no {line:?} in {}",
            app.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn hangup(app: &TestApp) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &app.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SPEC section 7: SIGHUP re-reads the certificate and key; new connections on both ports
/// get the new certificate, a connection already open goes on, and files that cannot be read
/// keep the previous certificate, with one log line.
#[test]
fn sighup_reads_the_certificate_again_for_new_connections_on_both_ports() {
    let temp = tempfile::tempdir().unwrap();
    let (files, old) = certificate(temp.path());
    let app = spawn_app_in(
        &temp.path().join("data"),
        &[
            ("SECRETGEN_TLS_CERT", path(&files.cert)),
            ("SECRETGEN_TLS_KEY", path(&files.key)),
        ],
    );
    // A client that trusts the first certificate only, with a connection kept open.
    let kept = app.with_agent(trusting(&old));
    assert_eq!(kept.request("GET", "/healthz", None, None).status, 200);

    // New files in the same places, then SIGHUP.
    let replaced = tempfile::tempdir().unwrap();
    let (new_files, new) = certificate(replaced.path());
    fs::copy(&new_files.cert, &files.cert).unwrap();
    fs::copy(&new_files.key, &files.key).unwrap();
    hangup(&kept);
    wait_for_log(&kept, "TLS certificate and key read again", 1);
    // The open connection goes on (a new one would fail: its client trusts the old
    // certificate only).
    assert_eq!(kept.request("GET", "/healthz", None, None).status, 200);
    // New connections get the new certificate.
    let fresh_old = trusting(&old);
    assert!(fresh_old.get(&kept.url("/healthz")).call().is_err());
    let fresh_new = trusting(&new);
    let answer = fresh_new.get(&kept.url("/healthz")).call().unwrap();
    assert_eq!(answer.status(), 200);
    let grpc = kept
        .grpc
        .clone()
        .unwrap()
        .replacen("http://", "https://", 1);
    let pem = fs::read(&files.cert).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let grpc_with = |pem: Vec<u8>| {
        runtime.block_on(async {
            use secretgen::grpc::proto::secretgen::v1::GenerateRequest;
            use secretgen::grpc::proto::secretgen::v1::code_service_client::CodeServiceClient;
            use tonic::transport::{Certificate, Channel, ClientTlsConfig};
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem))
                .domain_name("localhost");
            let channel = Channel::from_shared(grpc.clone())
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let mut request = tonic::Request::new(GenerateRequest {
                generator_type: 7,
                count: Some(1),
            });
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", kept.token).parse().unwrap(),
            );
            CodeServiceClient::new(channel)
                .generate(request)
                .await
                .map(|r| r.into_inner().codes.len())
                .map_err(|s| s.to_string())
        })
    };
    assert_eq!(grpc_with(pem.clone()), Ok(1));

    // A certificate file that cannot be read: the previous certificate stays, one line.
    fs::write(&files.cert, "not a certificate").unwrap();
    hangup(&kept);
    wait_for_log(&kept, "TLS files not reloaded", 1);
    let answer = fresh_new.get(&kept.url("/healthz")).call().unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(grpc_with(pem), Ok(1));
    assert_eq!(kept.logs().matches("TLS files not reloaded").count(), 1);
}
