//! The HTTP API of SPEC section 5: ZITADEL's admin routes for secret generators, the code
//! endpoint, and the operational routes. Only this module knows HTTP and JSON; it turns
//! requests into calls on [`ControlPlane`] and the live generators, and every failure into
//! the one error body ([`ApiError`]).

pub mod auth;
pub mod error;
pub mod metrics;
pub mod wire;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::ContentType;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;
use zeroize::Zeroize;

pub use auth::{Authenticator, Principal};
pub use error::{ApiError, Violation};
pub use metrics::{Metrics, Route};

use crate::config::GeneratorConfig;
use crate::control::{ControlPlane, UpdateError};
use crate::generator_type::GeneratorType;
use crate::store::StoreErrorKind;
use crate::token::Permission;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long a request body may take to arrive, whole, unless the server is told otherwise
/// (`--body-timeout`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests per second per token on the data plane.
type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    control: Arc<ControlPlane>,
    auth: Authenticator,
    metrics: Metrics,
    limiter: Option<Limiter>,
    body_timeout: Duration,
}

impl AppState {
    /// The state of a server over `control`, limiting each token to `rate_limit` data-plane
    /// requests a second (bursts of as many), or not at all when `None`, and each request
    /// body to `body_timeout` to arrive whole.
    pub fn new(
        control: Arc<ControlPlane>,
        rate_limit: Option<NonZeroU32>,
        metrics: bool,
        body_timeout: Duration,
    ) -> AppState {
        let auth = Authenticator::new(Arc::clone(control.store()));
        AppState {
            control,
            auth,
            metrics: if metrics {
                Metrics::new()
            } else {
                Metrics::disabled()
            },
            limiter: rate_limit.map(|rps| Limiter::keyed(governor::Quota::per_second(rps))),
            body_timeout,
        }
    }

    /// Refuses `principal`'s request when it is over its rate.
    fn check_rate(&self, principal: &Principal) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&principal.id).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::rate_limited(wait)
        })
    }
}

/// A resource for `route`: registered under its pattern, with the route itself as the
/// resource's data, which the request middleware reads back for the metrics' `route` label.
fn resource(route: Route) -> actix_web::Resource {
    web::resource(route.pattern()).app_data(route)
}

/// Registers every route. Unknown routes answer 404 through [`not_found`], which the app
/// installs as its default service; known routes answer other methods with 405. Every GET
/// route answers HEAD too, through the same handler (so with the same authentication,
/// status and headers); actix-http leaves the body out.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
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
        resource(Route::Generate)
            .route(web::post().to(generate))
            .default_service(web::to(|r: HttpRequest| not_allowed(r, "POST"))),
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

/// The header that carries a request's id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// Gives every request an id (the caller's `x-request-id` when it is short and plain, a new
/// one otherwise), runs it inside a tracing span that carries the id, answers the id in
/// `x-request-id`, logs the request (method, path, status, time; never headers or bodies,
/// which carry tokens and codes) and counts it in the metrics.
pub async fn observe_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let start = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(new_request_id, str::to_owned);
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
    let request = response.request();
    let status = response.status().as_u16();
    if let Some(state) = request.app_data::<web::Data<AppState>>() {
        let route = request
            .app_data::<Route>()
            .copied()
            .unwrap_or(Route::Unmatched);
        state.metrics.request(
            route,
            metrics::Method::of(request.method().as_str()),
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

/// 16 hex digits: a random start drawn once per process, then counting up. Unique within a
/// process and unlikely to repeat across restarts, without a system call per request; drawn
/// apart from the codes' random stream, which feeds nothing but codes.
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            bytes = nanos.to_le_bytes();
        }
        u64::from_le_bytes(bytes)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", start.wrapping_add(n))
}

fn generator_type(raw: &str) -> Result<GeneratorType, ApiError> {
    raw.parse()
        .map_err(|e: crate::generator_type::ParseGeneratorTypeError| {
            ApiError::invalid(
                "invalid generator type",
                vec![Violation::new("generatorType", e.to_string())],
            )
        })
}

/// The request body, whole, read within the state's body timeout: the time from the first
/// read to the last byte, however slowly or steadily the bytes trickle in. A body that does
/// not arrive in time is answered 408 and the connection closed, so that a client cannot
/// hold a connection and a worker by declaring more than it sends.
async fn body(payload: web::Payload, state: &AppState) -> Result<web::Bytes, ApiError> {
    let read = payload.to_bytes_limited(BODY_LIMIT);
    match actix_web::rt::time::timeout(state.body_timeout, read).await {
        Ok(Ok(Ok(bytes))) => Ok(bytes),
        Ok(Ok(Err(e))) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
        Ok(Err(_limit)) => Err(ApiError::too_large(BODY_LIMIT)),
        Err(_elapsed) => Err(ApiError::body_timeout(state.body_timeout)),
    }
}

fn json_response(value: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(value)
}

async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require(&req, Permission::IamRead)?;
    let t = generator_type(&path)?;
    let snapshot = state.control.get(t);
    let id = state.control.instance().id();
    Ok(json_response(
        &json!({"secretGenerator": wire::SecretGenerator::of(&snapshot, id)}),
    ))
}

async fn put(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = state.auth.require(&req, Permission::IamWrite)?;
    let t = generator_type(&path)?;
    let object = wire::object(&body(payload, &state).await?)?;
    let (draft, mut violations) = wire::config_draft(&object, t);
    // Fields of the wrong JSON type are reported once, as such; every other rule as the
    // configuration's own check finds it.
    if let Err(e) = GeneratorConfig::new(&draft) {
        let hidden = consequences(&violations);
        violations.extend(
            e.violations()
                .iter()
                .filter(|v| !hidden.contains(&v.field))
                .map(|v| Violation::new(v.field, v.description.clone())),
        );
    }
    if !violations.is_empty() {
        return Err(ApiError::invalid(
            "invalid secret generator configuration",
            violations,
        ));
    }
    let before = state.control.get(t).version().sequence;
    let control = Arc::clone(&state.control);
    let creator = principal.name.clone();
    // The update waits for the disk: off the async workers.
    let snapshot = web::block(move || control.update(t, &draft, &creator))
        .await
        .map_err(|_| ApiError::internal("the update was interrupted"))?
        .map_err(|e| match e {
            UpdateError::Invalid(e) => ApiError::invalid_config(&e),
            UpdateError::Store(e) => {
                tracing::error!(error = %e, "a configuration change could not be stored");
                match e.kind() {
                    StoreErrorKind::Corrupt => ApiError::internal("the store is damaged"),
                    _ => ApiError::unavailable("the store cannot record the change"),
                }
            }
        })?;
    if snapshot.version().sequence != before {
        state.metrics.config_changed(t);
    }
    tracing::info!(
        generator_type = %t,
        sequence = snapshot.version().sequence,
        by = %principal.name,
        "configuration changed"
    );
    let id = state.control.instance().id();
    Ok(json_response(
        &json!({"details": wire::Details::of(snapshot.version(), id)}),
    ))
}

/// The fields whose rules cannot be judged when `broken` fields (of the wrong JSON type)
/// were read as their zero value: the broken fields themselves, and the rules that depend
/// on them.
fn consequences(broken: &[Violation]) -> Vec<&'static str> {
    const CLASSES: [&str; 5] = [
        "includeLowerLetters",
        "includeUpperLetters",
        "includeDigits",
        "includeSymbols",
        "excludeAmbiguous",
    ];
    let mut hidden = Vec::new();
    for v in broken {
        let f = v.field.as_str();
        if CLASSES.contains(&f) {
            hidden.extend(CLASSES);
            hidden.extend(["entropyBits", "requireEachClass"]);
        } else if f == "length" {
            hidden.extend(["length", "entropyBits", "requireEachClass"]);
        } else if f == "expiry" {
            hidden.push("expiry");
        } else if f == "requireEachClass" {
            hidden.extend(["requireEachClass", "entropyBits"]);
        }
    }
    hidden
}

async fn search(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.auth.require(&req, Permission::IamRead)?;
    let search = wire::search(&wire::object(&body(payload, &state).await?)?)?;
    let instance = state.control.instance();
    let mut snapshots: Vec<_> = GeneratorType::ALL
        .into_iter()
        .filter(|t| search.types.as_ref().is_none_or(|types| types.contains(t)))
        .map(|t| instance.snapshot(t))
        .collect();
    if !search.ascending {
        snapshots.reverse();
    }
    let processed = GeneratorType::ALL
        .into_iter()
        .map(|t| instance.load(t).version().sequence)
        .max()
        .unwrap_or(0);
    let total = snapshots.len();
    let limit = if search.limit == 0 {
        usize::MAX
    } else {
        search.limit as usize
    };
    let result: Vec<_> = snapshots
        .iter()
        .skip(search.offset.min(usize::MAX as u64) as usize)
        .take(limit)
        .map(|s| wire::SecretGenerator::of(s, instance.id()))
        .collect();
    Ok(json_response(&json!({
        "details": {
            "totalResult": total.to_string(),
            "processedSequence": processed.to_string(),
            "viewTimestamp": wire::timestamp(SystemTime::now()),
        },
        "result": result,
    })))
}

async fn generate(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = state.auth.require(&req, Permission::CodesGenerate)?;
    state.check_rate(&principal)?;
    let t = generator_type(&path)?;
    let count = wire::count(&wire::object(&body(payload, &state).await?)?)?;
    // Loaded after the request was read: a PUT answered before this point is seen.
    let snapshot = state.control.instance().load(t);
    let generator = snapshot.generator();
    let mut codes = vec![0u8; count * generator.length()];
    let made_at = SystemTime::now();
    generator.fill_codes(&mut codes).map_err(|e| {
        tracing::error!(error = %e, "code generation failed");
        ApiError::internal("the random source failed; no code was made")
    })?;
    let body = wire::generate_response(
        t,
        snapshot.version().sequence,
        &codes,
        generator.length(),
        generator.expires_at(made_at),
    );
    codes.zeroize();
    state.metrics.codes_generated(t, count);
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
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
    if !state.metrics.enabled() {
        return ApiError::not_found(req.path()).error_response();
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render(state.control.instance()))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// SPEC section 5: 200 whenever configurations are loaded (they are, before the server
/// binds), with what the store is doing. Generation never needs the store, so a load
/// balancer must not take the server out because the store is down.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let control = Arc::clone(&state.control);
    let store = web::block(move || control.store().check())
        .await
        .map_err(|_| ApiError::internal("the check was interrupted"))?;
    let store = match store {
        Ok(()) => "up",
        Err(e) => {
            tracing::warn!(error = %e, "store down");
            "down"
        }
    };
    Ok(HttpResponse::Ok().json(json!({"status": "ready", "store": store})))
}
