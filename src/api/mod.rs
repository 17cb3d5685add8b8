//! The HTTP API of SPEC section 5: ZITADEL's admin routes for secret generators, the code
//! endpoint, and the operational routes. An adapter over [`Service`]: each handler reads the
//! bearer token and admits it, reads the path and body into the use case's typed input
//! (`wire`), calls the use case, and renders its result, or its error through the one error
//! body ([`ApiError`]). Only this module knows HTTP and JSON.

pub mod auth;
pub mod console;
pub mod error;
pub mod metrics;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::bearer;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::ContentType;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

pub use error::{ApiError, Violation};

use crate::net::metrics::ConnectionMetrics;
use crate::net::request::{BODY_LIMIT, REQUEST_ID, request_id};
use metrics::{HttpMetrics, Method, Route};
use secretgen_core::service::{
    GenerateCodes, IssueCodes, ManageTokens, ReadEvents, ReadGenerators, ReadTokens, Service,
    StoreState, UnlockSubjects, UpdateGenerator, VerifyCodes,
};
use secretgen_engine::generator_type::GeneratorType;

/// How long a request body may take to arrive, whole, unless the server is told otherwise
/// (`--body-timeout`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    service: Arc<Service>,
    body_timeout: Duration,
    metrics: Arc<HttpMetrics>,
    connections: Arc<ConnectionMetrics>,
}

impl AppState {
    /// The state of a server over `service`, each request body allowed `body_timeout` to
    /// arrive whole, counting its requests in `metrics` and the connections it closes in
    /// `connections`.
    pub fn new(
        service: Arc<Service>,
        body_timeout: Duration,
        metrics: Arc<HttpMetrics>,
        connections: Arc<ConnectionMetrics>,
    ) -> AppState {
        AppState {
            service,
            body_timeout,
            metrics,
            connections,
        }
    }

    /// The use cases.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Where the connections the watchdog closes are counted.
    pub fn connections(&self) -> &Arc<ConnectionMetrics> {
        &self.connections
    }
}

/// A resource for `route`: registered under its pattern (a code route under what follows
/// its type segment, inside the [`CODES`] scope: see [`take_type_segment`]), with the route
/// itself as the resource's data, which the request middleware reads back for the metrics'
/// `route` label (the whole pattern), and a handler's panic answered ([`guarded`]).
fn resource(
    route: Route,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let pattern = route.pattern();
    let registered = pattern
        .strip_prefix(CODES)
        .and_then(|rest| rest.strip_prefix("/{generatorType}"))
        .unwrap_or(pattern);
    guarded(web::resource(registered).app_data(route))
}

/// The prefix of the code routes, `/v1/codes/{generatorType}/…`: the data plane.
const CODES: &str = "/v1/codes";

/// The path parameter that names the generator type.
const GENERATOR_TYPE: &str = "generatorType";

/// Routes the type segment of a request under [`CODES`] by hand, as the router would match
/// `/{generatorType}/…` (a non-empty segment without `/`) but without running a regex and
/// allocating its captures per request: the segment becomes the `generatorType` path
/// parameter (read by `web::Path` as before) and is skipped, so that the static patterns of
/// [`resource`] match what follows. A path with no type segment and action after it
/// is skipped whole: no code route matches it, so it is answered 404 as before.
fn take_type_segment(req: &mut ServiceRequest) {
    let path = req.match_info_mut();
    let tail = path.unprocessed();
    let segment = tail
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .map(|(segment, _)| segment)
        .filter(|segment| !segment.is_empty());
    // actix-router counts a path in u16, as its own matching does (a request head is far
    // shorter: actix-http refuses one past 32 KiB).
    let skip = |len: usize| u16::try_from(len).unwrap_or(u16::MAX);
    match segment {
        Some(segment) => {
            let (len, segment) = (segment.len() + 1, segment.to_owned());
            path.add_static(GENERATOR_TYPE, segment);
            path.skip(skip(len));
        }
        None => {
            let len = tail.len();
            path.skip(skip(len));
        }
    }
}

/// `resource` with [`catch_panics`] around its handlers. On the resource, not the app: a
/// request is routed before it reaches the resource, and routing needs the request as its
/// only owner, which `catch_panics` is not (it keeps a handle to answer with).
pub fn guarded(
    resource: actix_web::Resource,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    resource.wrap(actix_web::middleware::from_fn(catch_panics))
}

/// Registers every route. Unknown routes answer 404 through [`not_found`], which the app
/// installs as its default service; known routes answer other methods with 405. Every GET
/// route answers HEAD too, through the same handler (so with the same authentication,
/// status and headers); actix-http leaves the body out.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // The data plane first, under a static prefix: matching it costs a string comparison, and
    // its type segment is routed by hand ([`take_type_segment`]).
    cfg.service(
        web::scope(CODES)
            .wrap_fn(|mut req, routes| {
                use actix_web::dev::Service;
                take_type_segment(&mut req);
                routes.call(req)
            })
            .service(
                resource(Route::Generate)
                    .route(web::post().to(generate))
                    .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
            )
            .service(
                resource(Route::Issue)
                    .route(web::post().to(issue))
                    .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
            )
            .service(
                resource(Route::Verify)
                    .route(web::post().to(verify))
                    .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
            ),
    )
    .service(
        resource(Route::Search)
            .route(web::post().to(search))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
    )
    .service(
        resource(Route::Generator)
            .route(web::get().to(get))
            .route(web::head().to(get))
            .route(web::put().to(put))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "GET, HEAD, PUT"))),
    )
    .service(
        resource(Route::Preview)
            .route(web::post().to(preview))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
    )
    .service(
        resource(Route::Unlock)
            .route(web::post().to(unlock))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
    )
    .service(
        resource(Route::CodeStats)
            .route(web::get().to(code_stats))
            .route(web::head().to(code_stats))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "GET, HEAD"))),
    )
    .service(
        resource(Route::Healthz)
            .route(web::get().to(healthz))
            .route(web::head().to(healthz))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "GET, HEAD"))),
    )
    .service(
        resource(Route::OpenApi)
            .route(web::get().to(openapi))
            .route(web::head().to(openapi))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "GET, HEAD"))),
    )
    .service(
        resource(Route::Metrics)
            .route(web::get().to(metrics))
            .route(web::head().to(metrics))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "GET, HEAD"))),
    )
    .service(
        resource(Route::Tokens)
            .route(web::post().to(create_token))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
    )
    .service(
        resource(Route::TokenSearch)
            .route(web::post().to(search_tokens))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
    )
    .service(
        resource(Route::Token)
            .route(web::delete().to(revoke_token))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "DELETE"))),
    )
    .service(
        resource(Route::EventSearch)
            .route(web::post().to(search_events))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
    )
    .service(
        resource(Route::Console)
            .route(web::get().to(console::index))
            .route(web::head().to(console::index))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "GET, HEAD"))),
    )
    .service(
        resource(Route::ConsoleFile)
            .route(web::get().to(console::asset))
            .route(web::head().to(console::asset))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "GET, HEAD"))),
    )
    .service(
        resource(Route::Readyz)
            .route(web::get().to(readyz))
            .route(web::head().to(readyz))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "GET, HEAD"))),
    );
}

/// The default service: no such route.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::not_found(req.path()).error_response()
}

async fn not_allowed(req: HttpRequest, allow: &'static str) -> HttpResponse {
    ApiError::method_not_allowed(req.method().as_str(), allow).error_response()
}

/// Gives every request an id (the caller's `x-request-id` when it is short and plain, a new
/// one otherwise), runs it inside a tracing span that carries the id, answers the id in
/// `x-request-id`, logs the request (method, path, status, time; never headers or bodies,
/// which carry tokens and codes) and counts it in the metrics. Every answer of a route that
/// hands out a secret says `Cache-Control: no-store` ([`carries_secret`]), its errors too:
/// the one place that decides it, so that a new route is a line in that list.
pub async fn observe_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let start = Instant::now();
    // In flight on its connection until the answer is handed over: the idle timeout waits.
    let _in_flight = req
        .conn_data::<Arc<crate::net::conn::Activity>>()
        .map(|activity| activity.request());
    let request_id = request_id(req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()));
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut response = next.call(req).instrument(span.clone()).await?;
    let elapsed = start.elapsed();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(REQUEST_ID),
            value,
        );
    }
    // The response keeps the request: method, path and state are read off it, and the
    // route off the data of the resource that answered (none: no route matched). Labels
    // come from fixed sets, whatever the client sent, and cost no allocation.
    let route = response
        .request()
        .app_data::<Route>()
        .copied()
        .unwrap_or(Route::Unmatched);
    if carries_secret(route) {
        response.headers_mut().insert(
            actix_web::http::header::CACHE_CONTROL,
            actix_web::http::header::HeaderValue::from_static("no-store"),
        );
    }
    let request = response.request();
    let status = response.status().as_u16();
    if let Some(state) = request.app_data::<web::Data<AppState>>() {
        state.metrics.request(
            route,
            Method::of(request.method().as_str()),
            status,
            elapsed.as_secs_f64(),
        );
    }
    span.in_scope(|| {
        tracing::info!(
            method = %request.method(),
            path = %request.path(),
            status,
            micros = elapsed.as_micros() as u64,
            "request"
        )
    });
    Ok(response)
}

/// Answers a request whose handler panicked with 500 and the one error body (code 13), so
/// that the connection and the server go on (SPEC section 13); without it the panic ends
/// the connection. The panic's own text goes to standard error through the panic hook, not
/// to the client. Installed on every resource ([`guarded`]), inside [`observe_requests`], so
/// the 500 is logged and counted.
pub async fn catch_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    use futures_util::FutureExt;
    let request = req.request().clone();
    let answer = std::panic::AssertUnwindSafe(async move { next.call(req).await })
        .catch_unwind()
        .await;
    match answer {
        Ok(answer) => answer.map(ServiceResponse::map_into_left_body),
        Err(_) => {
            tracing::error!("a handler panicked: answered 500; the server goes on");
            let response =
                ApiError::internal("internal error: the request failed; it may be retried")
                    .error_response();
            Ok(ServiceResponse::new(request, response).map_into_right_body())
        }
    }
}

/// Whether the answers of `route` carry a secret that no cache may keep (SPEC section 13):
/// codes (`_generate`), a new token (`POST /admin/v1/tokens`), sample codes (`_preview`).
pub fn carries_secret(route: Route) -> bool {
    matches!(
        route,
        Route::Generate | Route::Issue | Route::Tokens | Route::Preview
    )
}

/// The generator type of a path segment.
fn generator_type(raw: &str) -> Result<GeneratorType, ApiError> {
    raw.parse::<GeneratorType>()
        .map_err(|e| secretgen_core::service::Error::from(e).into())
}

/// The request body, whole, read within the state's body timeout: the time from the first
/// read to the last byte, however slowly or steadily the bytes trickle in. A body that does
/// not arrive in time is answered 408 and the connection closed, so that a client cannot
/// hold a connection and a worker by declaring more than it sends.
async fn body(payload: web::Payload, state: &AppState) -> Result<web::Bytes, ApiError> {
    let read = payload.to_bytes_limited(BODY_LIMIT);
    match within(state.body_timeout, read).await {
        Some(Ok(Ok(bytes))) => Ok(bytes),
        Some(Ok(Err(e))) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
        Some(Err(_limit)) => Err(ApiError::too_large(BODY_LIMIT)),
        None => Err(ApiError::body_timeout(state.body_timeout)),
    }
}

/// `read`'s output if it is done within `limit` of its first poll, `None` once the limit is
/// past. A timer costs its registration and removal, so it is set only for a read that is
/// not done by its second poll: the first poll of a body finds it pending (actix-http calls
/// the handler before it hands over the bytes that came with the head) and asks for the
/// second at once; a body that arrived with its head is done then, and needs no timer. A
/// body that is not has the rest of `limit`, counted from the first poll, as before.
async fn within<F: std::future::Future>(limit: Duration, read: F) -> Option<F::Output> {
    use actix_web::rt::time::{Instant, timeout};
    use std::task::Poll;
    let mut read = std::pin::pin!(read);
    let mut first = None;
    let early = std::future::poll_fn(|cx| match (read.as_mut().poll(cx), first) {
        (Poll::Ready(output), _) => Poll::Ready(Ok(output)),
        (Poll::Pending, None) => {
            first = Some(Instant::now());
            // Polled again at once, timer or not: the read is never left waiting for a
            // wake-up that may not come.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        (Poll::Pending, Some(first)) => Poll::Ready(Err(first)),
    })
    .await;
    let first = match early {
        Ok(output) => return Some(output),
        Err(first) => first,
    };
    let left = (first + limit).saturating_duration_since(Instant::now());
    timeout(left, read).await.ok()
}

fn json_response(value: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(value)
}

async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<ReadGenerators>(bearer(&req)?).await?;
    let snapshot = service.get(&grant, generator_type(&path)?);
    Ok(json_response(&json!({
        "secretGenerator": wire::SecretGenerator::of(&snapshot, service.instance_id())
    })))
}

async fn put(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<UpdateGenerator>(bearer(&req)?).await?;
    // A bad type is one violation among the body's (SPEC section 4): the body is read too.
    let t = path.parse::<GeneratorType>();
    let draft = wire::config_draft(&wire::object(&body(payload, &state).await?)?, t);
    let snapshot = service.update(&grant, draft).await?;
    Ok(json_response(&json!({
        "details": wire::Details::of(snapshot.version(), service.instance_id())
    })))
}

async fn preview(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<ReadGenerators>(bearer(&req)?).await?;
    let t = path.parse::<GeneratorType>();
    let draft = wire::config_draft(&wire::object(&body(payload, &state).await?)?, t);
    let preview = service.preview(&grant, &draft)?;
    Ok(json_response(&wire::preview(&preview)))
}

async fn search(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<ReadGenerators>(bearer(&req)?).await?;
    let query = wire::search(&wire::object(&body(payload, &state).await?)?)?;
    let found = service.search(&grant, &query);
    Ok(json_response(&wire::search_response(
        &found,
        service.instance_id(),
    )))
}

async fn generate(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<GenerateCodes>(bearer(&req)?).await?;
    let t = generator_type(&path)?;
    let count = wire::count(&wire::object(&body(payload, &state).await?)?)?;
    // Loaded after the request was read: a PUT answered before this point is seen.
    let codes = service.generate(&grant, t, count)?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(wire::generate_response(&codes)))
}

async fn issue(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<IssueCodes>(bearer(&req)?).await?;
    let t = generator_type(&path)?;
    let body = wire::object(&body(payload, &state).await?)?;
    let issued = service
        .issue(&grant, t, wire::issue_request(&body)?)
        .await?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(wire::issued(&issued)))
}

async fn verify(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<VerifyCodes>(bearer(&req)?).await?;
    let t = generator_type(&path)?;
    let body = wire::object(&body(payload, &state).await?)?;
    let (subject, code) = wire::verify_request(&body)?;
    let verification = service.verify(&grant, t, subject, code).await?;
    Ok(json_response(&wire::verified(&verification)))
}

async fn unlock(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<UnlockSubjects>(bearer(&req)?).await?;
    let body = wire::object(&body(payload, &state).await?)?;
    let (t, subject) = wire::unlock_request(&body)?;
    let unlocked = service.unlock(&grant, t, subject).await?;
    Ok(json_response(&wire::unlocked(
        &unlocked,
        service.instance_id(),
    )))
}

async fn code_stats(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<ReadGenerators>(bearer(&req)?).await?;
    let stats = service.code_stats(&grant).await?;
    Ok(json_response(&wire::code_stats(&stats)))
}

async fn create_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<ManageTokens>(bearer(&req)?).await?;
    let new = wire::new_token(&wire::object(&body(payload, &state).await?)?)?;
    let created = service.create_token(&grant, new).await?;
    Ok(json_response(&wire::created_token(
        &created,
        service.instance_id(),
    )))
}

async fn search_tokens(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<ReadTokens>(bearer(&req)?).await?;
    let query = wire::token_query(&wire::object(&body(payload, &state).await?)?)?;
    let page = service.list_tokens(&grant, query).await?;
    Ok(json_response(&wire::token_page(&page)))
}

async fn revoke_token(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<ManageTokens>(bearer(&req)?).await?;
    let revoked = service.revoke_token(&grant, &path).await?;
    // The version of the revocation's last event: the token's own, then those it made.
    Ok(json_response(&json!({
        "details": wire::Details::of(revoked.version, service.instance_id())
    })))
}

async fn search_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let grant = service.admit::<ReadEvents>(bearer(&req)?).await?;
    let query = wire::event_query(&wire::object(&body(payload, &state).await?)?)?;
    // Read and encoded on a blocking thread, a few at a time (see search_events_rendered).
    let body = service
        .search_events_rendered(&grant, query, |page| {
            wire::EventPageBody::of(&page).to_json()
        })
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// The API described as OpenAPI 3, kept honest by the contract test in `.ci/run`.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(OPENAPI)
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    match state.service.metrics_text() {
        Some(text) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        None => ApiError::not_found(req.path()).error_response(),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// SPEC section 5: 200 whenever configurations are loaded (they are, before the server
/// binds), with what the store is doing. Generation never needs the store, so a load
/// balancer must not take the server out because the store is down.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = match state.service.store_state().await {
        StoreState::Up => "up",
        StoreState::Down => "down",
    };
    HttpResponse::Ok().json(json!({"status": "ready", "store": store}))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};

    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, HttpServer, web};

    async fn panics(n: web::Path<u32>) -> HttpResponse {
        panic!("a handler's bug, on purpose ({n})");
    }

    /// One HTTP/1.1 answer off `reader`: status and body (by its Content-Length).
    fn answer(reader: &mut BufReader<std::net::TcpStream>) -> (u16, String) {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }

    /// SPEC section 13: a handler that panics answers 500 with the one error body, and the
    /// connection goes on. The panicking route exists only in this test: no request can
    /// reach a panic on purpose in a build that serves. The middlewares are the server's,
    /// installed as the server installs them (`observe_requests` on the app, `guarded` on
    /// each resource).
    #[test]
    fn a_handler_that_panics_answers_500_and_the_connection_goes_on() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                HttpServer::new(|| {
                    App::new()
                        .wrap(from_fn(super::observe_requests))
                        .service(
                            super::guarded(web::resource("/panic/{n}"))
                                .route(web::get().to(panics)),
                        )
                        .service(
                            super::guarded(web::resource("/ok"))
                                .route(web::get().to(|| async { HttpResponse::Ok().body("fine") })),
                        )
                })
                .workers(1)
                .listen(listener)
                .unwrap()
                .run()
                .await
            })
        });
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        for _ in 0..2 {
            writer
                .write_all(b"GET /panic/7 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let (status, body) = answer(&mut reader);
            assert_eq!(status, 500, "{body}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["code"], 13, "{body}");
            assert!(!body["message"].as_str().unwrap().contains("on purpose"));
            assert_eq!(body["details"], serde_json::json!([]));
        }
        // The same connection, still served.
        writer
            .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(answer(&mut reader), (200, "fine".to_owned()));
    }
}
