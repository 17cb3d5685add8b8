//! gRPC (SPEC section 9): ZITADEL's `AdminService` for secret generators and secretgen's
//! `CodeService`, with health, reflection and grpc-web, on a port of its own beside the HTTP
//! API. A second adapter over the same use cases ([`Service`]) as [`crate::api`]: each method
//! admits its caller from the `authorization` metadata before it reads the request, reads the
//! message into the use case's typed input, calls the use case, and renders its result or the
//! one error ([`status::status`]).
//!
//! tonic runs on a tokio runtime of its own ([`GrpcServer`]), started with the HTTP server and
//! stopped with it; actix-web keeps its own workers.

pub mod admin;
pub mod code;
pub mod guard;
pub mod incoming;
pub mod metrics;
pub mod proto;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::net::metrics::ConnectionMetrics;
use crate::net::request::{REQUEST_ID, request_id};
use metrics::{GrpcMethod, GrpcMetrics};
use proto::secretgen::v1::code_service_server::CodeServiceServer;
use proto::zitadel::admin::v1::admin_service_server::AdminServiceServer;
use secretgen_core::service::{self, Grant, Operation, Service};
use secretgen_engine::generator_type::GeneratorType;

/// The largest request message accepted, as the HTTP API's body limit.
pub const MESSAGE_LIMIT: usize = crate::net::request::BODY_LIMIT;

/// Streams one connection may have open at once (HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_CONCURRENT_STREAMS: u32 = 16;

/// Admits the caller of `request` to operation `O` by its `authorization: Bearer` metadata.
pub(crate) async fn admit<O: Operation, T>(
    service: &Service,
    request: &Request<T>,
) -> Result<Grant<O>, Status> {
    let value = request
        .metadata()
        .get("authorization")
        .map(|v| v.as_bytes());
    let token = service::tokens::bearer(value).map_err(status::status)?;
    service.admit::<O>(token).await.map_err(status::status)
}

/// The generator type of a protobuf enum value; 0 (`UNSPECIFIED`), negative and unknown
/// numbers are refused, in the words the HTTP API uses.
pub(crate) fn generator_type(number: i32) -> Result<GeneratorType, service::Error> {
    Ok(number.to_string().parse::<GeneratorType>()?)
}

/// Runs one call of `method` inside a span with its request id (the caller's `x-request-id`
/// when it is short and plain, a new one otherwise), answers the id in `x-request-id`, logs
/// the call (method, code, time; never metadata or messages, which carry tokens and codes)
/// and counts it in the metrics.
pub(crate) async fn observe<R, T>(
    metrics: &GrpcMetrics,
    method: GrpcMethod,
    request: &Request<R>,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<Response<T>, Status> {
    use tracing::Instrument;
    // Its message was decoded: an INTERNAL from here on is ours, not a refusal of it.
    guard::reached(request);
    let start = Instant::now();
    let request_id = request_id(
        request
            .metadata()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok()),
    );
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut answer = call.instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let code = match &answer {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    if let Ok(value) = request_id.parse::<tonic::metadata::MetadataValue<_>>() {
        match &mut answer {
            Ok(response) => response.metadata_mut().insert(REQUEST_ID, value),
            Err(status) => status.metadata_mut().insert(REQUEST_ID, value),
        };
    }
    metrics.call(method, code as i32, elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            method = method.path(),
            code = ?code,
            micros = elapsed.as_micros() as u64,
            "grpc call"
        )
    });
    answer
}

/// tonic refuses a request message over [`MESSAGE_LIMIT`] with `OUT_OF_RANGE`; SPEC section
/// 5 answers a body too large with code 3, `INVALID_ARGUMENT` (as HTTP's 413). The refusal
/// is a trailers-only answer: its status is in the headers, rewritten here.
fn too_large_is_invalid<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers.get("grpc-message").is_some_and(|m| {
            let m = m.as_bytes();
            m.starts_with(b"Error,%20decoded%20message%20length%20too%20large")
                || m.starts_with(b"Error, decoded message length too large")
        });
    if too_large {
        headers.insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from_static("3"),
        );
    }
    response
}

/// Why the gRPC server could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// Its runtime could not be made.
    #[error("cannot start the gRPC runtime: {0}")]
    Runtime(std::io::Error),
    /// The listener could not be handed to tokio.
    #[error("cannot listen for gRPC: {0}")]
    Listen(std::io::Error),
    /// tonic refused the TLS files or the reflection descriptors.
    #[error("cannot configure the gRPC server: {0}")]
    Configure(String),
}

/// A running gRPC server, on its own runtime.
pub struct GrpcServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    health: tonic_health::server::HealthReporter,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The names of the services the health service reports on, besides the server as a whole
/// (`""`).
pub const SERVICE_NAMES: [&str; 2] = ["zitadel.admin.v1.AdminService", "secretgen.v1.CodeService"];

/// How the gRPC server serves its connections.
#[derive(Debug)]
pub struct GrpcOptions {
    /// Worker threads of its runtime.
    pub threads: usize,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// TLS, re-read on SIGHUP; `None` for plain HTTP/2 (and HTTP/1.1 for grpc-web).
    pub tls: Option<Arc<crate::net::tls::Reloadable>>,
    /// SPEC section 13's send and idle timeouts.
    pub timeouts: crate::net::conn::Timeouts,
    /// Where its calls are counted.
    pub metrics: Arc<GrpcMetrics>,
    /// Where the connections its watchdog closes are counted.
    pub connections: Arc<ConnectionMetrics>,
}

impl GrpcServer {
    /// Serves `service` on `listener` (already bound) as `options` say. Must be called on
    /// a thread that runs no tokio runtime of its own but may run the HTTP server's.
    pub fn start(
        listener: std::net::TcpListener,
        service: Arc<Service>,
        options: GrpcOptions,
    ) -> Result<GrpcServer, GrpcError> {
        let addr = listener.local_addr().map_err(GrpcError::Listen)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads.max(1))
            .thread_name("secretgen-grpc")
            .enable_all()
            .build()
            .map_err(GrpcError::Runtime)?;
        listener.set_nonblocking(true).map_err(GrpcError::Listen)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(GrpcError::Listen)?
        };
        let configure = |e: &dyn std::fmt::Display| GrpcError::Configure(e.to_string());
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| configure(&e))?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| configure(&e))?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let metrics = Arc::clone(&options.metrics);
        let routes = tonic::service::Routes::new(
            AdminServiceServer::new(admin::Admin::new(
                Arc::clone(&service),
                Arc::clone(&metrics),
            ))
            .max_decoding_message_size(MESSAGE_LIMIT),
        )
        .add_service(
            CodeServiceServer::new(code::CodeServer::new(service, metrics))
                .max_decoding_message_size(MESSAGE_LIMIT),
        )
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha);
        let calls = incoming::Calls::new(
            tower::ServiceBuilder::new()
                .layer(tonic_web::GrpcWebLayer::new())
                .layer(tower::util::MapResponseLayer::new(too_large_is_invalid))
                .layer(guard::UndecodableLayer)
                .layer(guard::CatchPanicLayer)
                .service(routes),
        );
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let reporter = health.clone();
        // Not `block_on`: the HTTP server's runtime is running on this thread.
        let done = runtime.spawn(async move {
            // Configurations are loaded before the server binds: codes can be served.
            for name in std::iter::once("").chain(SERVICE_NAMES) {
                reporter
                    .set_service_status(name, tonic_health::ServingStatus::Serving)
                    .await;
            }
            incoming::serve(listener, calls, options, stopped).await;
        });
        Ok(GrpcServer {
            addr,
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            done: Some(done),
            health,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking calls, reports NOT_SERVING, lets the calls in flight finish for up to
    /// `grace`, then stops.
    pub async fn stop(mut self, grace: Duration) {
        let health = self.health.clone();
        if let Some(runtime) = &self.runtime {
            let _ = runtime
                .spawn(async move {
                    for name in std::iter::once("").chain(SERVICE_NAMES) {
                        health
                            .set_service_status(name, tonic_health::ServingStatus::NotServing)
                            .await;
                    }
                })
                .await;
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(done) = self.done.take()
            && tokio::time::timeout(grace, done).await.is_err()
        {
            tracing::warn!("gRPC calls still running after the grace period");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    /// lowerCamelCase, as protobuf's JSON mapping names a field.
    fn json_name(field: &str) -> String {
        let mut out = String::new();
        let mut upper = false;
        for c in field.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The protos and the OpenAPI description agree on names: each message and the schema
    /// that the HTTP API writes for it have the same fields, by JSON name, but for what the
    /// HTTP API carries in the path (the generator type of a request).
    #[test]
    fn the_protos_and_the_openapi_description_name_the_same_fields() {
        let files = prost_types::FileDescriptorSet::decode(super::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let openapi: serde_json::Value =
            serde_json::from_str(crate::api::OPENAPI).expect("openapi.json parses");
        let pairs = [
            (
                "zitadel.settings.v1",
                "SecretGenerator",
                "SecretGenerator",
                &[][..],
            ),
            ("zitadel.v1", "ObjectDetails", "Details", &[]),
            (
                "zitadel.admin.v1",
                "UpdateSecretGeneratorRequest",
                "SecretGeneratorConfig",
                &["generatorType"],
            ),
            (
                "zitadel.admin.v1",
                "ListSecretGeneratorsRequest",
                "SearchRequest",
                &[],
            ),
            (
                "zitadel.admin.v1",
                "ListSecretGeneratorsResponse",
                "SearchResponse",
                &[],
            ),
            (
                "secretgen.v1",
                "GenerateRequest",
                "GenerateRequest",
                &["generatorType"],
            ),
            ("secretgen.v1", "GenerateResponse", "GenerateResponse", &[]),
            (
                "secretgen.v1",
                "IssueRequest",
                "IssueRequest",
                &["generatorType"],
            ),
            ("secretgen.v1", "IssueResponse", "IssueResponse", &[]),
            (
                "secretgen.v1",
                "VerifyRequest",
                "VerifyRequest",
                &["generatorType"],
            ),
            ("secretgen.v1", "VerifyResponse", "VerifyResponse", &[]),
        ];
        for (package, message, schema, in_path) in pairs {
            let descriptor = files
                .file
                .iter()
                .filter(|f| f.package() == package)
                .flat_map(|f| &f.message_type)
                .find(|m| m.name() == message)
                .unwrap_or_else(|| panic!("{package}.{message} in proto/"));
            let mut proto: Vec<String> = descriptor
                .field
                .iter()
                .map(|f| json_name(f.name()))
                .filter(|name| !in_path.contains(&name.as_str()))
                .collect();
            let properties = openapi["components"]["schemas"][schema]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("schema {schema} in openapi.json"));
            let mut http: Vec<String> = properties.keys().cloned().collect();
            proto.sort();
            http.sort();
            assert_eq!(proto, http, "{package}.{message} and schema {schema}");
        }
    }
}
