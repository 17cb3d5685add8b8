//! A gRPC load client for `benches/grpc/run.sh`: tonic's own client against a running
//! secretgen server.
//!
//! ```text
//! grpc_load generate ADDR TOKEN SECONDS CONNECTIONS IN_FLIGHT
//!     CodeService.Generate count=1 (OTP_SMS), IN_FLIGHT calls at once spread over
//!     CONNECTIONS HTTP/2 connections, for SECONDS: prints "calls_per_second p50_us p99_us".
//! grpc_load stream ADDR TOKEN CODES STREAMS
//!     CodeService.GenerateStream (OTP_SMS, 8 digits), STREAMS streams of CODES codes at once,
//!     each on its own connection: prints "codes_per_second seconds".
//! ```
//! The client runs on one thread: on a two-core machine the other core is the server's.

use std::time::{Duration, Instant};

use secretgen::grpc::proto::secretgen::v1::code_service_client::CodeServiceClient;
use secretgen::grpc::proto::secretgen::v1::{GenerateRequest, GenerateStreamRequest};
use tonic::Request;
use tonic::transport::Channel;

const OTP_SMS: i32 = 7;

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("an ASCII token"),
    );
    request
}

async fn connect(addr: &str) -> CodeServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("an address")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("the server answers");
    CodeServiceClient::new(channel)
}

async fn generate(addr: &str, token: &str, seconds: u64, connections: usize, in_flight: usize) {
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(connect(addr).await);
    }
    // Warm up.
    for client in &mut clients {
        let request = authed(
            GenerateRequest {
                generator_type: OTP_SMS,
                count: None,
            },
            token,
        );
        client.generate(request).await.expect("a warm-up call");
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for i in 0..in_flight {
        let mut client = clients[i % connections].clone();
        let token = token.to_owned();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                let request = authed(
                    GenerateRequest {
                        generator_type: OTP_SMS,
                        count: None,
                    },
                    &token,
                );
                let answer = client.generate(request).await.expect("a code");
                assert_eq!(answer.get_ref().codes.len(), 1);
                latencies.push(start.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("a worker"));
    }
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    println!(
        "{:.0} {} {}",
        all.len() as f64 / seconds as f64,
        at(0.5),
        at(0.99)
    );
}

async fn stream(addr: &str, token: &str, codes: u64, streams: usize) {
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..streams {
        let mut client = connect(addr)
            .await
            .max_decoding_message_size(16 * 1024 * 1024);
        let token = token.to_owned();
        workers.push(tokio::spawn(async move {
            let request = authed(
                GenerateStreamRequest {
                    generator_type: OTP_SMS,
                    count: codes,
                },
                &token,
            );
            let mut stream = client
                .generate_stream(request)
                .await
                .expect("a stream")
                .into_inner();
            let mut got = 0u64;
            while let Some(chunk) = stream.message().await.expect("a chunk") {
                got += (chunk.codes.len() / chunk.length as usize) as u64;
            }
            got
        }));
    }
    let mut total = 0;
    for worker in workers {
        total += worker.await.expect("a stream");
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(total, codes * streams as u64, "every code arrived");
    println!("{:.0} {:.3}", total as f64 / elapsed, elapsed);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "grpc_load generate ADDR TOKEN SECONDS CONNECTIONS IN_FLIGHT | stream ADDR TOKEN CODES STREAMS";
    let number = |i: usize| -> u64 { args.get(i).and_then(|a| a.parse().ok()).expect(usage) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match args.get(1).map(String::as_str) {
        Some("generate") => runtime.block_on(generate(
            &args[2],
            &args[3],
            number(4),
            number(5) as usize,
            number(6) as usize,
        )),
        Some("stream") => {
            runtime.block_on(stream(&args[2], &args[3], number(4), number(5) as usize))
        }
        _ => panic!("{usage}"),
    }
}
