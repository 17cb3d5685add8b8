//! The gRPC port's connections: accepted at most `--max-connections` at once (past it,
//! connections wait in the kernel's backlog until one closes), each watched for SPEC section
//! 13's send and idle timeouts ([`crate::net::conn`]), under TLS when configured (re-read on
//! SIGHUP), then served by hyper as HTTP/2 or, for grpc-web, HTTP/1.1.
//!
//! hyper is driven here rather than through tonic's own server so that what a connection may
//! hold is capped on the server's side whatever the client announces: [`MAX_CONCURRENT_STREAMS`]
//! streams, receive windows of [`STREAM_WINDOW`] and [`CONNECTION_WINDOW`] (a request is at
//! most 64 KiB), a stream's send buffer of [`STREAM_SEND_BUFFER`] (about one chunk of a
//! `GenerateStream`), and [`AHEAD`] bytes of answers handed to HTTP/2 and not yet written to
//! the socket, over all its streams (a body waits while they are spent: a stream makes its
//! next chunk only once the last has gone out).
//!
//! [`MAX_CONCURRENT_STREAMS`]: super::MAX_CONCURRENT_STREAMS

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::codegen::http::{Request, Response};

use super::GrpcOptions;
use crate::net::conn::{self, Activity, Budgeted};
use crate::net::metrics::Port;

/// A stream's receive window: a request message (at most 64 KiB) and its prefix fit.
pub const STREAM_WINDOW: u32 = 128 * 1024;

/// A connection's receive window, over all its streams.
pub const CONNECTION_WINDOW: u32 = 256 * 1024;

/// What a stream may hold written to HTTP/2 beyond what the peer's window lets out.
pub const STREAM_SEND_BUFFER: usize = 64 * 1024;

/// Bytes of answers a connection may hold handed to HTTP/2 and not yet written out.
pub const AHEAD: usize = 256 * 1024;

/// HTTP/1.1 (grpc-web): the largest read buffer of a connection.
const HTTP1_BUFFER: usize = 128 * 1024;

/// The service every call goes through: the layers over tonic's routes.
pub type Calls = tower::util::BoxCloneService<
    Request<tonic::body::Body>,
    Response<tonic::body::Body>,
    std::convert::Infallible,
>;

/// The calls of one connection: each in flight on it until its answer's body is finished,
/// and each answer's body counted against its budget of bytes ahead of the socket.
#[derive(Clone)]
struct Tracked {
    calls: Calls,
    activity: Arc<Activity>,
}

impl tower::Service<Request<Incoming>> for Tracked {
    type Response = Response<Budgeted<tonic::body::Body>>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.calls.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let busy = self.activity.answer();
        let activity = Arc::clone(&self.activity);
        let call = self.calls.call(request.map(tonic::body::Body::new));
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| Budgeted::new(body, activity, AHEAD, busy)))
        })
    }
}

/// hyper's settings for every connection.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(super::MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .adaptive_window(false)
        .max_send_buf_size(STREAM_SEND_BUFFER)
        .max_header_list_size(16 * 1024)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(HTTP1_BUFFER);
    builder
}

/// Accepts and serves connections of `listener` with `calls` until `stopped` fires, then
/// asks every connection to finish (HTTP/2 GOAWAY; calls in flight finish) and returns once
/// they all have. Runs on the gRPC runtime.
pub(super) async fn serve(
    listener: TcpListener,
    calls: Calls,
    options: GrpcOptions,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let places = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = builder();
    loop {
        let permit = tokio::select! {
            _ = &mut stopped => break,
            permit = Arc::clone(&places).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a gRPC connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (calls, builder, watcher) = (calls.clone(), builder.clone(), graceful.watcher());
        let (tls, timeouts, metrics) = (
            options.tls.clone(),
            options.timeouts,
            Arc::clone(&options.connections),
        );
        tokio::spawn(async move {
            let _place = permit;
            let closed = move |reason| metrics.closed(Port::Grpc, reason);
            let Ok(stream) = conn::accept(stream, timeouts, tls.as_deref(), closed).await else {
                return;
            };
            let activity = Arc::clone(stream.activity());
            let service = TowerToHyperService::new(Tracked { calls, activity });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "a gRPC connection ended with an error");
            }
        });
    }
    // No new connections: the port closes now, not once the last call has finished.
    drop(listener);
    graceful.shutdown().await;
}
