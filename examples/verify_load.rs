//! An HTTP load client for `benches/verify/run.sh`: issue-and-verify pairs against running
//! secretgen servers, and `_generate` calls beside them.
//!
//! ```text
//! verify_load pairs TOKEN SECONDS CONNECTIONS BASE [BASE ...]
//!     CONNECTIONS clients (threads with a keep-alive connection each, spread over the BASE
//!     URLs), each issuing an OTP_SMS code for a subject of its own and verifying it, for
//!     SECONDS: prints "pairs_per_second pair_p50_ms pair_p99_ms failures".
//! verify_load generate TOKEN SECONDS CONNECTIONS BASE
//!     CONNECTIONS clients calling _generate count=1: prints "calls_per_second p50_ms p99_ms".
//! verify_load both TOKEN SECONDS CONNECTIONS BASE
//!     both at once, CONNECTIONS clients each: prints the two lines above.
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, token: &str, body: &str) -> (u16, String) {
    let mut response = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body)
        .expect("the server answers");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
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

/// Runs `work` on `clients` threads until `stop`; each returns its latencies and failures.
fn run(
    clients: usize,
    stop: &Arc<AtomicBool>,
    work: impl Fn(usize, &ureq::Agent) -> bool + Send + Sync + 'static,
) -> std::thread::JoinHandle<(usize, Vec<f64>, usize)> {
    let work = Arc::new(work);
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let (work, stop) = (Arc::clone(&work), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let agent = agent();
                    let (mut latencies, mut failures) = (Vec::new(), 0);
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        if work(c, &agent) {
                            latencies.push(t.elapsed().as_secs_f64() * 1e3);
                        } else {
                            failures += 1;
                        }
                    }
                    (latencies, failures)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut failures = 0;
        for t in threads {
            let (l, f) = t.join().expect("a client");
            all.extend(l);
            failures += f;
        }
        (all.len(), all, failures)
    })
}

fn pairs(token: String, bases: Vec<String>) -> impl Fn(usize, &ureq::Agent) -> bool {
    let counter = std::sync::atomic::AtomicU64::new(0);
    move |client, agent| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let base = &bases[client % bases.len()];
        let subject = format!("user{client}-{n}@example.com");
        let (status, answer) = post(
            agent,
            &format!("{base}/v1/codes/OTP_SMS/_issue"),
            &token,
            &format!(r#"{{"subject":"{subject}"}}"#),
        );
        if status != 200 {
            return false;
        }
        // Verified on the next replica: any replica serves any code.
        let base = &bases[(client + 1) % bases.len()];
        let (status, answer) = post(
            agent,
            &format!("{base}/v1/codes/OTP_SMS/_verify"),
            &token,
            &format!(r#"{{"subject":"{subject}","code":"{}"}}"#, code_of(&answer)),
        );
        status == 200 && answer.contains("VERIFY_RESULT_APPROVED")
    }
}

fn generate(token: String, base: String) -> impl Fn(usize, &ureq::Agent) -> bool {
    move |_, agent| {
        let url = format!("{base}/v1/codes/OTP_SMS/_generate");
        post(agent, &url, &token, "{}").0 == 200
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, token, seconds, connections, bases @ ..] = args.as_slice() else {
        eprintln!("usage: verify_load pairs|generate|both TOKEN SECONDS CONNECTIONS BASE...");
        std::process::exit(2);
    };
    let seconds: f64 = seconds.parse().expect("seconds");
    let connections: usize = connections.parse().expect("connections");
    let stop = Arc::new(AtomicBool::new(false));
    let mut runs = Vec::new();
    if mode == "pairs" || mode == "both" {
        runs.push((
            "pairs",
            run(connections, &stop, pairs(token.clone(), bases.to_vec())),
        ));
    }
    if mode == "generate" || mode == "both" {
        runs.push((
            "generate",
            run(
                connections,
                &stop,
                generate(token.clone(), bases[0].clone()),
            ),
        ));
    }
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for (name, run) in runs {
        let (n, latencies, failures) = run.join().expect("the run");
        let (p50, p99) = percentiles(latencies);
        println!(
            "{name} {:.0} {p50:.2} {p99:.2} {failures}",
            n as f64 / seconds
        );
    }
}
