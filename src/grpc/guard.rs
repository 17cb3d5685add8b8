//! Two tower layers around every gRPC service, for what tonic answers before or around our
//! methods (SPEC section 13):
//! - [`CatchPanicLayer`]: a method that panics answers `INTERNAL` and the connection goes on
//!   (without it the panic ends the connection's task, and every call on it); a stream that
//!   panics while making a message ends with `INTERNAL` in its trailers.
//! - [`UndecodableLayer`]: a request that cannot be decoded (bad protobuf bytes, bad
//!   grpc-web base64, a length prefix longer than the message) is `INVALID_ARGUMENT` in our
//!   own words. tonic answers those `INTERNAL` with prost's, hyper's or tonic-web's text,
//!   before it calls any method. The layer tells them apart from a method's own `INTERNAL`
//!   by a mark each call leaves when it reaches one of our methods ([`reached`], called by
//!   [`super::observe`]), not by the text tonic happens to write.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tonic::codegen::http;

/// What a call whose request could not be decoded is told.
pub const UNDECODABLE: &str = "invalid request: the message cannot be decoded (a malformed \
     gRPC frame, protobuf message or grpc-web encoding)";

/// What a call whose method panicked is told; the panic's text goes to standard error.
pub const PANICKED: &str = "internal error: the call failed; it may be retried";

/// Answers a call whose service panicked with `INTERNAL`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer;

impl<S> tower::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The service of [`CatchPanicLayer`].
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for CatchPanic<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<tonic::body::Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let inner = &mut self.inner;
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(request)));
        Box::pin(async move {
            let answer = match call {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            match answer {
                Ok(answer) => answer.map(|response| {
                    response.map(|body| {
                        tonic::body::Body::new(CatchPanicBody {
                            inner: body,
                            done: false,
                        })
                    })
                }),
                Err(_) => {
                    tracing::error!(
                        "a gRPC method panicked: answered INTERNAL; the server goes on"
                    );
                    Ok(tonic::Status::internal(PANICKED).into_http())
                }
            }
        })
    }
}

/// A response body that ends with `INTERNAL` in its trailers when making a frame panics.
struct CatchPanicBody {
    inner: tonic::body::Body,
    done: bool,
}

impl http_body::Body for CatchPanicBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll_frame(cx)
        })) {
            Ok(frame) => frame,
            Err(_) => {
                tracing::error!("a gRPC stream panicked: ended with INTERNAL; the server goes on");
                self.done = true;
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
                trailers.insert(
                    "grpc-message",
                    http::HeaderValue::from_str(&percent_encode(PANICKED))
                        .expect("a percent-encoded message is a valid header value"),
                );
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The mark a call leaves in its request's extensions when it reaches one of our methods.
#[derive(Clone, Debug, Default)]
pub struct Reached(Arc<AtomicBool>);

/// Marks `request` as having reached a method: its message was decoded.
pub fn reached<T>(request: &tonic::Request<T>) {
    if let Some(mark) = request.extensions().get::<Reached>() {
        mark.0.store(true, Ordering::Release);
    }
}

/// Rewrites tonic's `INTERNAL` for a request it could not decode into `INVALID_ARGUMENT`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UndecodableLayer;

impl<S> tower::Layer<S> for UndecodableLayer {
    type Service = Undecodable<S>;

    fn layer(&self, inner: S) -> Undecodable<S> {
        Undecodable { inner }
    }
}

/// The service of [`UndecodableLayer`].
#[derive(Clone, Debug)]
pub struct Undecodable<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Undecodable<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let mark = Reached::default();
        request.extensions_mut().insert(mark.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            // A request that never reached a method and was answered INTERNAL (in the
            // headers: a trailers-only answer) was not decoded: the client's fault.
            let headers = response.headers_mut();
            if !mark.0.load(Ordering::Acquire)
                && headers.get("grpc-status").is_some_and(|s| s == "13")
            {
                headers.insert("grpc-status", http::HeaderValue::from_static("3"));
                headers.insert(
                    "grpc-message",
                    http::HeaderValue::from_str(&percent_encode(UNDECODABLE))
                        .expect("a percent-encoded message is a valid header value"),
                );
                headers.remove("grpc-status-details-bin");
            }
            Ok(response)
        })
    }
}

/// `text` as gRPC's `grpc-message` carries it: percent-encoded outside printable ASCII and
/// `%`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer, Service, ServiceExt};

    use super::*;

    type Response = http::Response<tonic::body::Body>;

    fn request() -> http::Request<()> {
        http::Request::new(())
    }

    #[tokio::test]
    async fn a_panic_while_answering_or_before_is_internal_in_our_words() {
        let mut late = CatchPanicLayer.layer(tower::service_fn(|_: http::Request<()>| async {
            if true {
                panic!("a method's bug, on purpose");
            }
            Ok::<Response, Infallible>(Response::default())
        }));
        for _ in 0..2 {
            let answer = late.ready().await.unwrap().call(request()).await.unwrap();
            let status = tonic::Status::from_header_map(answer.headers()).unwrap();
            assert_eq!(status.code(), tonic::Code::Internal);
            assert_eq!(status.message(), PANICKED);
        }
        let mut early = CatchPanicLayer.layer(tower::service_fn(|_: http::Request<()>| {
            if true {
                panic!("a bug before any future, on purpose");
            }
            std::future::ready(Ok::<Response, Infallible>(Response::default()))
        }));
        let answer = early.ready().await.unwrap().call(request()).await.unwrap();
        let status = tonic::Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Internal);
    }

    /// A body whose second frame panics.
    struct PanickingBody(bool);

    impl http_body::Body for PanickingBody {
        type Data = bytes::Bytes;
        type Error = tonic::Status;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
            if std::mem::replace(&mut self.0, true) {
                panic!("a stream's bug, on purpose");
            }
            Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
                b"first",
            )))))
        }
    }

    #[tokio::test]
    async fn a_stream_that_panics_ends_with_internal_in_its_trailers() {
        let mut service = CatchPanicLayer.layer(tower::service_fn(|_: http::Request<()>| {
            std::future::ready(Ok::<Response, Infallible>(Response::new(
                tonic::body::Body::new(PanickingBody(false)),
            )))
        }));
        let answer = service
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
        let mut body = answer.into_body();
        let first = next(&mut body).await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first");
        let last = next(&mut body).await.unwrap().unwrap();
        let trailers = last.into_trailers().unwrap();
        let status = tonic::Status::from_header_map(&trailers).unwrap();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), PANICKED);
        assert!(next(&mut body).await.is_none());
    }

    async fn next(
        body: &mut tonic::body::Body,
    ) -> Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>> {
        use http_body::Body as _;
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await
    }

    #[tokio::test]
    async fn only_an_internal_before_any_method_becomes_invalid_argument() {
        // tonic refusing what it could not decode: no method was reached.
        let mut undecoded = UndecodableLayer.layer(tower::service_fn(|_: http::Request<()>| {
            std::future::ready(Ok::<Response, Infallible>(
                tonic::Status::internal("failed to decode Protobuf message: buffer underflow")
                    .into_http(),
            ))
        }));
        let answer = undecoded
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
        let status = tonic::Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), UNDECODABLE);
        // A method's own INTERNAL stays INTERNAL.
        let mut method = UndecodableLayer.layer(tower::service_fn(|r: http::Request<()>| {
            reached(&tonic::Request::from_http(r));
            std::future::ready(Ok::<Response, Infallible>(
                tonic::Status::internal("the random source failed").into_http(),
            ))
        }));
        let answer = method.ready().await.unwrap().call(request()).await.unwrap();
        let status = tonic::Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "the random source failed");
    }
}
