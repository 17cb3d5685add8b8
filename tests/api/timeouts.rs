//! SPEC section 13 over real sockets: a connection whose peer stopped reading is closed after
//! `--send-timeout`, one that carries no request after `--idle-timeout`, on both ports; with
//! every connection slot held by such clients, a new client on a NEW connection (what a
//! locked-out client sees) is answered, with or without a token; a gRPC connection's never
//! read streams make a bounded number of codes however many there are.
//!
//! The timeouts are 1 s here (the defaults are 10 s); "answered in time" is asserted with a
//! wide margin (5 s, where the SPEC allows 2 s) and the code before these rules answered
//! never, for as long as the attackers stayed.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use secretgen::grpc::proto::secretgen::v1::code_service_client::CodeServiceClient;
use secretgen::grpc::proto::secretgen::v1::{GenerateRequest, GenerateStreamRequest};
use secretgen::net::conn::Timeouts;
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

use crate::helpers::{TestApp, spawn_app_configured};

/// SLOTS connection slots, 1 s timeouts.
const SLOTS: usize = 8;

fn spawn() -> TestApp {
    spawn_app_configured(|s| {
        s.max_connections = NonZeroUsize::new(SLOTS).unwrap();
        s.timeouts = Timeouts {
            send: Duration::from_secs(1),
            idle: Duration::from_secs(1),
        };
    })
}

fn http_addr(app: &TestApp) -> String {
    app.base.strip_prefix("http://").unwrap().to_owned()
}

fn grpc_addr(app: &TestApp) -> String {
    app.grpc
        .as_deref()
        .unwrap()
        .strip_prefix("http://")
        .unwrap()
        .to_owned()
}

/// A new connection's answer to `request`: its status code, or `None` when none came in
/// `wait`.
fn fresh_status(addr: &str, request: &str, wait: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = [0u8; 256];
    match stream.read(&mut answer) {
        Ok(n) if n > 0 => String::from_utf8_lossy(&answer[..n])
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok()),
        _ => None,
    }
}

/// The value of `secretgen_connections_closed_total` for `port` and `reason`.
fn closed(app: &TestApp, port: &str, reason: &str) -> u64 {
    let metrics = app.request("GET", "/metrics", None, None);
    let text = metrics.body.as_str().unwrap().to_owned();
    let series =
        format!("secretgen_connections_closed_total{{port=\"{port}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|n| n.parse().unwrap())
        .unwrap_or_else(|| panic!("{series} in {text}"))
}

/// Whether `stream` is closed by the server within `wait`: a read gives the end or a
/// reset (after whatever was already sent).
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 16];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn http_clients_that_stop_reading_cannot_lock_a_new_client_out() {
    let app = spawn();
    let addr = http_addr(&app);
    // Every slot: a client that pipelines the largest answer many times and never reads.
    let pipeline = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    let attackers: Vec<TcpStream> = (0..SLOTS)
        .map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            // A small receive buffer: the server's writes fill it at once.
            socket.set_recv_buffer_size(4096).unwrap();
            socket
                .connect(&addr.parse::<std::net::SocketAddr>().unwrap().into())
                .unwrap();
            let mut stream: TcpStream = socket.into();
            stream
                .set_write_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let _ = stream.write_all(pipeline.as_bytes());
            stream
        })
        .collect();
    let start = Instant::now();
    let healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(
        fresh_status(&addr, healthz, Duration::from_secs(5)),
        Some(200),
        "a new client without a token was locked out"
    );
    let generate = format!(
        "POST /v1/codes/OTP_SMS/_generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
        app.token
    );
    assert_eq!(
        fresh_status(&addr, &generate, Duration::from_secs(5)),
        Some(200),
        "a new client with a token was locked out"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    for mut attacker in attackers {
        assert!(closed_within(&mut attacker, Duration::from_secs(5)));
    }
    assert!(closed(&app, "http", "send_timeout") >= 1);
}

#[test]
fn silent_connections_cannot_lock_a_new_client_out_of_either_port() {
    let app = spawn();
    let (http, grpc) = (http_addr(&app), grpc_addr(&app));
    // Every slot of each port: connections that never send a byte.
    let silent: Vec<TcpStream> = (0..SLOTS)
        .flat_map(|_| {
            [
                TcpStream::connect(&http).unwrap(),
                TcpStream::connect(&grpc).unwrap(),
            ]
        })
        .collect();
    let healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(
        fresh_status(&http, healthz, Duration::from_secs(5)),
        Some(200)
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let token = app.token.clone();
    let endpoint = app.grpc.clone().unwrap();
    let answered = runtime.block_on(async move {
        let call = async {
            let channel = Channel::from_shared(endpoint).unwrap().connect().await?;
            let mut client = CodeServiceClient::new(channel);
            let mut request = Request::new(GenerateRequest {
                generator_type: 7,
                count: None,
            });
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            client
                .generate(request)
                .await
                .map(|r| r.into_inner().codes.len())
                .map_err(|s| Box::new(s) as Box<dyn std::error::Error>)
        };
        tokio::time::timeout(Duration::from_secs(5), call).await
    });
    assert!(matches!(answered, Ok(Ok(1))), "{answered:?}");
    for mut connection in silent {
        assert!(closed_within(&mut connection, Duration::from_secs(5)));
    }
    // HTTP/1's silent connections may be closed by actix-http's own request timeout (set
    // to the idle timeout) before the watchdog looks; gRPC's are the watchdog's.
    assert!(closed(&app, "grpc", "idle_timeout") >= SLOTS as u64);
}

/// The server's count of OTP_SMS codes made, from /metrics.
fn otp_sms_codes_made(app: &TestApp) -> u64 {
    let text = app.request("GET", "/metrics", None, None).body;
    let text = text.as_str().unwrap();
    let series =
        "secretgen_codes_generated_total{generator_type=\"SECRET_GENERATOR_TYPE_OTP_SMS\"} ";
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_read_grpc_streams_make_a_bounded_number_of_codes_and_are_closed() {
    let app = spawn();
    // A client with HTTP/2's default windows (64 KiB), as most clients have.
    let channel = Endpoint::from_shared(app.grpc.clone().unwrap())
        .unwrap()
        .initial_connection_window_size(65_535)
        .initial_stream_window_size(65_535)
        .connect()
        .await
        .unwrap();
    // The most streams the connection may open, each of ten million codes, none read.
    let mut streams = Vec::new();
    for _ in 0..secretgen::grpc::MAX_CONCURRENT_STREAMS {
        let mut client = CodeServiceClient::new(channel.clone());
        let mut request = Request::new(GenerateStreamRequest {
            generator_type: 7,
            count: 10_000_000,
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", app.token).parse().unwrap(),
        );
        streams.push(client.generate_stream(request).await.unwrap().into_inner());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // What the connection's budget lets ahead of its socket (256 KiB), the peer's window
    // and a chunk or two of 8,192 codes in a race: not a chunk per stream (32 x 8,192),
    // let alone HTTP/2's send buffer per stream.
    let made = otp_sms_codes_made(&app);
    assert!(
        made < 150_000,
        "{made} codes made for {} streams never read",
        streams.len()
    );
    // Nothing was read for the send timeout: the connection is closed, and each stream
    // ends in an error after what had reached the client.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        for stream in &mut streams {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("a stream of ten million codes ended whole"),
                    Err(_) => break,
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the streams were not cut off");
}

/// A request whose body trickles in for longer than both timeouts, but within
/// `--body-timeout`, is a request at work, not an idle connection or a peer that stopped
/// reading: it is answered.
#[test]
fn a_request_at_work_is_neither_idle_nor_a_peer_that_stopped_reading() {
    let app = spawn();
    let body = r#"{"length": 9, "expiry": "300s", "includeDigits": true}"#;
    let mut stream = TcpStream::connect(http_addr(&app)).unwrap();
    write!(
        stream,
        "PUT /admin/v1/secretgenerators/OTP_SMS HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        app.token,
        body.len()
    )
    .unwrap();
    let (first, rest) = body.split_at(10);
    stream.write_all(first.as_bytes()).unwrap();
    // 2.5 s with the body unfinished: past the 1 s idle and send timeouts.
    std::thread::sleep(Duration::from_millis(2500));
    stream.write_all(rest.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap_or(0);
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    assert_eq!(
        app.get_generator("OTP_SMS").body["secretGenerator"]["length"],
        9
    );
}
