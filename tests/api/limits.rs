//! What one client may hold of the server: connections (`--max-connections`) and the size of
//! a request's header section. Memory and latency under attack are measured, not tested:
//! `benches/attacks/run.sh`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::cli::{output, refusal};
use crate::helpers::{StderrTo, TestApp, spawn_app, spawn_app_with};

/// `secretgen serve` with `args`: the cap is tested through the command line that sets it.
fn spawn(args: &[&str]) -> TestApp {
    let temp = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&temp.path().join("data"), args, &[], StderrTo::Collected);
    app.keeping(temp)
}

fn addr(app: &TestApp) -> String {
    app.base.strip_prefix("http://").unwrap().to_owned()
}

/// What a client hears on a connection within a wait.
#[derive(Debug, PartialEq)]
enum Heard {
    /// A status line with this code.
    Status(u16),
    /// The end of the connection (closed or reset) and no answer.
    Closed,
    /// Nothing: the connection is open and silent.
    Nothing,
}

/// Sends `GET /healthz` on `stream`; what came back within `wait`.
fn healthz(stream: &mut TcpStream, wait: Duration) -> Heard {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    hear(stream, wait)
}

/// What comes back on `stream` within `wait`; anything but a status line, the end of the
/// connection or silence fails the test.
fn hear(stream: &mut TcpStream, wait: Duration) -> Heard {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut answer = [0u8; 512];
    match stream.read(&mut answer) {
        Ok(0) => Heard::Closed,
        Ok(n) => {
            let text = String::from_utf8_lossy(&answer[..n]);
            let code = text
                .strip_prefix("HTTP/1.1 ")
                .and_then(|rest| rest.get(..3))
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("not a status line: {text:?}"));
            Heard::Status(code)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Heard::Nothing,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Heard::Closed,
        Err(e) => panic!("reading the answer: {e}"),
    }
}

#[test]
fn connections_over_the_cap_wait_until_one_closes() {
    let app = spawn(&["--workers", "1", "--max-connections", "2"]);
    let addr = addr(&app);
    let mut first = TcpStream::connect(&addr).unwrap();
    let mut second = TcpStream::connect(&addr).unwrap();
    assert_eq!(
        healthz(&mut first, Duration::from_secs(5)),
        Heard::Status(200)
    );
    assert_eq!(
        healthz(&mut second, Duration::from_secs(5)),
        Heard::Status(200)
    );

    // The kernel completes the third handshake, but the server does not take the connection
    // while two are held.
    let mut third = TcpStream::connect(&addr).unwrap();
    assert_eq!(healthz(&mut third, Duration::from_secs(1)), Heard::Nothing);
    // The held ones are still served.
    assert_eq!(
        healthz(&mut first, Duration::from_secs(5)),
        Heard::Status(200)
    );

    drop(second);
    assert_eq!(hear(&mut third, Duration::from_secs(5)), Heard::Status(200));
}

#[test]
fn max_connections_must_be_a_positive_number() {
    for bad in ["0", "-1", "many", "1000001"] {
        let out = output([
            "serve",
            "--listen",
            "127.0.0.1:0",
            &format!("--max-connections={bad}"),
        ]);
        assert_eq!(out.status.code(), Some(2), "--max-connections {bad}");
        let stderr = refusal(&out);
        assert!(stderr.contains("--max-connections"), "{stderr}");
    }
}

/// A header section can be at most 128 KiB (actix-http's limit, not configurable): past it the
/// answer is 431 and the connection is closed, and nothing of it stays with the server.
#[test]
fn a_header_section_over_128_kib_is_refused() {
    let app = spawn_app();
    let addr = addr(&app);
    let line = format!("X-Filler: {}\r\n", "a".repeat(3000));

    // Just under the limit: served.
    let mut stream = TcpStream::connect(&addr).unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        line.repeat(40)
    );
    assert!(head.len() < 128 * 1024);
    stream.write_all(head.as_bytes()).unwrap();
    assert_eq!(
        hear(&mut stream, Duration::from_secs(5)),
        Heard::Status(200)
    );

    // Over it: 431, or the connection closed while the client was still sending.
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        line.repeat(50)
    );
    assert!(head.len() > 128 * 1024);
    assert_refused(&addr, head.as_bytes());
    // The server goes on serving.
    assert_eq!(app.request("GET", "/healthz", None, None).status, 200);
}

/// Sends `head` on a new connection to `addr`: the server must answer 431 or close the
/// connection (the client's write or read then fails), within 5 s. Silence fails: a server
/// that stopped reading and kept the connection would hold the client forever.
fn assert_refused(addr: &str, head: &[u8]) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let heard = match stream.write_all(head) {
        Ok(()) => hear(&mut stream, Duration::from_secs(5)),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
            Heard::Closed
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Heard::Nothing,
        Err(e) => panic!("sending the head: {e}"),
    };
    assert!(
        matches!(heard, Heard::Status(431) | Heard::Closed),
        "{heard:?}"
    );
}

/// A client may pipeline: past the 16 requests a connection queues, the rest wait in the
/// read buffer and are all answered, in order (actix-http as patched in vendor/actix-http).
#[test]
fn pipelined_requests_past_the_queue_are_all_answered_in_order() {
    let app = spawn_app();
    let mut stream = TcpStream::connect(addr(&app)).unwrap();
    let generate = format!(
        "POST /v1/codes/OTP_SMS/_generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{{\"count\":1}}",
        app.token
    );
    let missing = "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut requests = String::new();
    for i in 0..100 {
        requests.push_str(if i % 10 == 9 { missing } else { &generate });
    }
    stream.write_all(requests.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answers = Vec::new();
    let mut buf = [0u8; 65536];
    while answers.windows(9).filter(|w| w == b"HTTP/1.1 ").count() < 100 {
        let n = stream.read(&mut buf).expect("all 100 answers within 10 s");
        assert_ne!(n, 0, "closed after {answers:?}");
        answers.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(answers).unwrap();
    let statuses: Vec<&str> = text.split("HTTP/1.1 ").skip(1).map(|a| &a[..3]).collect();
    let expected: Vec<&str> = (0..100)
        .map(|i| if i % 10 == 9 { "404" } else { "200" })
        .collect();
    assert_eq!(statuses, expected);
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("VmRSS in {status}"))
}

/// A client that pipelines requests and never reads its answers makes its connection queue
/// 16 requests and fill its read buffer, no more: 32 such clients cost the server a few MiB.
/// actix-http 3.20.0 as published (before the change of vendor/actix-http) decoded every
/// request of its 128 KiB buffer, over 3,000 here, read more and did it again, and kept them
/// all queued for as long as the client did not read: 32 clients grew the server by hundreds
/// of MiB (seen failing with the `[patch.crates-io]` entry left out).
#[test]
fn clients_that_pipeline_and_never_read_cost_the_server_little_memory() {
    const CLIENTS: usize = 32;
    let app = spawn(&[]);
    let addr: std::net::SocketAddr = addr(&app).parse().unwrap();
    let before = rss_kib(app.pid());
    // Small requests for a large answer, pipelined for 2 s.
    const REQUEST: &str = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    let pipeline = REQUEST.repeat(4_000);
    let until = std::time::Instant::now() + Duration::from_secs(2);
    let clients: Vec<TcpStream> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let pipeline = pipeline.as_bytes();
                scope.spawn(move || {
                    let socket =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .unwrap();
                    // A small receive buffer: the server's answers fill it at once.
                    socket.set_recv_buffer_size(4096).unwrap();
                    socket.connect(&addr.into()).unwrap();
                    let mut stream: TcpStream = socket.into();
                    stream
                        .set_write_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    // Whatever the server reads (a write that times out is cut short: the
                    // rest of its request goes first next time), never reading.
                    let mut at = 0;
                    while std::time::Instant::now() < until {
                        match stream.write(&pipeline[at..]) {
                            Ok(n) => at = (at + n) % REQUEST.len(),
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::WouldBlock | ErrorKind::TimedOut
                                ) => {}
                            Err(e) => panic!("the server closed a pipelining client: {e}"),
                        }
                    }
                    stream
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let grown_mib = rss_kib(app.pid()).saturating_sub(before) / 1024;
    // Patched: about 12 MiB (a read buffer of 128 KiB, 16 requests and the answer being
    // written, per connection); as published: hundreds of MiB.
    assert!(
        grown_mib < 48,
        "{CLIENTS} clients that never read grew the server by {grown_mib} MiB"
    );
    // The server goes on serving.
    assert_eq!(app.request("GET", "/healthz", None, None).status, 200);
    drop(clients);
}
