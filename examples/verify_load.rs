//! An HTTP load client for `benches/verify/run.sh`: issue-and-verify pairs against running
//! secretgen servers, and `_generate` calls beside them.
//!
//! ```text
//! verify_load pairs TOKEN SECONDS CONNECTIONS BASE [BASE ...]
//!     CONNECTIONS keep-alive connections (spread over the BASE URLs), each issuing an OTP_SMS
//!     code for a subject of its own and verifying it on the next BASE, for SECONDS: prints
//!     "pairs PAIRS_PER_SECOND P50_MS P99_MS FAILURES" (latency of a whole pair).
//! verify_load generate TOKEN SECONDS CONNECTIONS BASE
//!     CONNECTIONS connections calling _generate count=1: "generate CALLS_PER_SECOND P50 P99 FAILURES".
//! verify_load both TOKEN SECONDS CONNECTIONS BASE
//!     both at once, CONNECTIONS connections each: the two lines.
//! ```
//! With `PAIRS_PER_SECOND=N` in the environment, the pairs are paced to N a second in all
//! (a steady load rather than the most the server takes). With `ISSUE_ONLY=1`, `pairs` only
//! issues (to fill the store with codes that expire, for the purge).
//! The client is one thread of async tasks speaking plain HTTP/1.1 (as wrk does), so that on a
//! two-core machine it leaves the server as much as it can.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection to `host:port`.
struct Conn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(base: &str) -> Conn {
        let host = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let stream = TcpStream::connect(&host).await.expect("the server accepts");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            host,
            buf: Vec::with_capacity(4096),
        }
    }

    /// POSTs `body` to `path`; the status and the body of the answer.
    async fn post(&mut self, path: &str, token: &str, body: &str) -> (u16, String) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .await
            .expect("a write");
        self.buf.clear();
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().expect("a length"));
                if self.buf.len() >= end + 4 + length {
                    let status = head[9..12].parse().expect("a status");
                    let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + length]);
                    return (status, body.into_owned());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.expect("a read");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of `"code":"…"` in an issue's answer.
fn code_of(answer: &str) -> &str {
    let start = answer.find("\"code\":\"").expect("a code") + 8;
    &answer[start..start + answer[start..].find('"').expect("its end")]
}

/// Latencies in ms: (p50, p99).
fn percentiles(mut latencies: Vec<f64>) -> (f64, f64) {
    if latencies.is_empty() {
        return (0.0, 0.0);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

/// One connection's loop of pairs until `deadline`: its latencies and failures.
async fn pairs(
    client: usize,
    connections: usize,
    token: String,
    (mut issuer, mut verifier): (Conn, Conn),
    deadline: Instant,
) -> (Vec<f64>, usize) {
    let run = std::process::id();
    let (mut latencies, mut failures) = (Vec::new(), 0);
    // Paced: this connection's share of PAIRS_PER_SECOND, on a schedule of its own.
    let interval = std::env::var("PAIRS_PER_SECOND")
        .ok()
        .and_then(|r| r.parse::<f64>().ok())
        .map(|rate| Duration::from_secs_f64(connections as f64 / rate));
    let issue_only = std::env::var("ISSUE_ONLY").is_ok_and(|v| v == "1");
    let mut next = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        if let Some(interval) = interval {
            next += interval;
            tokio::time::sleep_until(next.into()).await;
        }
        n += 1;
        let subject = format!("user{run}x{client}x{n}@example.com");
        let t = Instant::now();
        let (status, answer) = issuer
            .post(
                "/v1/codes/OTP_SMS/_issue",
                &token,
                &format!(r#"{{"subject":"{subject}"}}"#),
            )
            .await;
        if status != 200 {
            failures += 1;
            continue;
        }
        if issue_only {
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
            continue;
        }
        let body = format!(r#"{{"subject":"{subject}","code":"{}"}}"#, code_of(&answer));
        let (status, answer) = verifier
            .post("/v1/codes/OTP_SMS/_verify", &token, &body)
            .await;
        if status == 200 && answer.contains("VERIFY_RESULT_APPROVED") {
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
        } else {
            failures += 1;
        }
    }
    (latencies, failures)
}

/// One connection's loop of `_generate` calls until `deadline`.
async fn generate(token: String, mut conn: Conn, deadline: Instant) -> (Vec<f64>, usize) {
    let (mut latencies, mut failures) = (Vec::new(), 0);
    while Instant::now() < deadline {
        let t = Instant::now();
        if conn
            .post("/v1/codes/OTP_SMS/_generate", &token, "{}")
            .await
            .0
            == 200
        {
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
        } else {
            failures += 1;
        }
    }
    (latencies, failures)
}

async fn report(name: &str, tasks: Vec<tokio::task::JoinHandle<(Vec<f64>, usize)>>, seconds: f64) {
    let (mut all, mut failures) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, failed) = task.await.expect("a client");
        all.extend(latencies);
        failures += failed;
    }
    let n = all.len();
    let (p50, p99) = percentiles(all);
    println!(
        "{name} {:.0} {p50:.2} {p99:.2} {failures}",
        n as f64 / seconds
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, token, seconds, connections, bases @ ..] = args.as_slice() else {
        eprintln!("usage: verify_load pairs|generate|both TOKEN SECONDS CONNECTIONS BASE...");
        std::process::exit(2);
    };
    let seconds: f64 = seconds.parse().expect("seconds");
    let connections: usize = connections.parse().expect("connections");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // Every connection is opened before any load starts, one kind after the other: a
        // server hands accepted connections to its workers in turn, so connections opened
        // alternately (a pair's, a generate's, ...) would put each kind on every other
        // worker, and with two workers all of one kind on one core.
        let generating = mode == "generate" || mode == "both";
        let pairing = mode == "pairs" || mode == "both";
        let mut generate_conns = Vec::new();
        for _ in 0..if generating { connections } else { 0 } {
            generate_conns.push(Conn::open(&bases[0]).await);
        }
        let mut issuers = Vec::new();
        let mut verifiers = Vec::new();
        for c in 0..if pairing { connections } else { 0 } {
            issuers.push(Conn::open(&bases[c % bases.len()]).await);
        }
        for c in 0..if pairing { connections } else { 0 } {
            // Verified on the next replica: any replica serves any code.
            verifiers.push(Conn::open(&bases[(c + 1) % bases.len()]).await);
        }
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let generate_tasks: Vec<_> = generate_conns
            .into_iter()
            .map(|conn| tokio::spawn(generate(token.clone(), conn, deadline)))
            .collect();
        let pair_tasks: Vec<_> = issuers
            .into_iter()
            .zip(verifiers)
            .enumerate()
            .map(|(c, conns)| tokio::spawn(pairs(c, connections, token.clone(), conns, deadline)))
            .collect();
        if !pair_tasks.is_empty() {
            report("pairs", pair_tasks, seconds).await;
        }
        if !generate_tasks.is_empty() {
            report("generate", generate_tasks, seconds).await;
        }
    });
}
