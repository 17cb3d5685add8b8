//! Prometheus metrics at `/metrics` (OpenMetrics text): codes generated and configuration
//! changes per type, the live configuration's sequence per type, requests and their
//! latency per route, method and status, and log lines dropped.
//!
//! The per-type counters are resolved once, at start, so counting a generated code is one
//! atomic add: no lock on the data plane's path.
//!
//! Every label takes its value from a fixed set, never from what a client sent (the bug class
//! of CVE-2022-21698, where each invented method name made a new series): `route` is one of
//! the registered [`Route`]s or `unmatched`, `method` one of [`Method`]'s eight values (the
//! methods HTTP defines that clients use, and `other`), `status` one of 100 to 599 or
//! `other`. Labels are `Copy`. The series of a request whose status is one the API answers
//! (`KEPT_STATUSES`) is resolved from the families once and then kept, and the latency
//! histogram is made of atomics ([`Histogram`]), so counting such a request is a few atomic
//! adds: no allocation, no lock. A request with any other status (a bounded set too) takes
//! the families' read lock to find its series.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::generator_type::GeneratorType;
use crate::registry::Instance;

/// The label of per-type metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    generator_type: &'static str,
}

/// A registered route, by its pattern: the `route` label. The server registers each route
/// under [`Route::pattern`] with the `Route` as the resource's data, so that a request's
/// route is read back without matching the path again.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Route {
    /// `POST /admin/v1/secretgenerators/_search`.
    Search,
    /// `GET`/`PUT /admin/v1/secretgenerators/{generatorType}`.
    Generator,
    /// `POST /v1/codes/{generatorType}/_generate`.
    Generate,
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/metrics`.
    Metrics,
    /// `/openapi.json`.
    OpenApi,
    /// `POST /admin/v1/tokens`.
    Tokens,
    /// `POST /admin/v1/tokens/_search`.
    TokenSearch,
    /// `DELETE /admin/v1/tokens/{id}`.
    Token,
    /// `POST /admin/v1/events/_search`.
    EventSearch,
    /// `POST /admin/v1/secretgenerators/{generatorType}/_preview`.
    Preview,
    /// `GET /console/`.
    Console,
    /// `GET /console/{file}`.
    ConsoleFile,
    /// No route matched the path: `unmatched`.
    Unmatched,
}

impl Route {
    /// Every value, in label-table order.
    pub const ALL: [Route; 15] = [
        Route::Search,
        Route::Generator,
        Route::Generate,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::OpenApi,
        Route::Tokens,
        Route::TokenSearch,
        Route::Token,
        Route::EventSearch,
        Route::Preview,
        Route::Console,
        Route::ConsoleFile,
        Route::Unmatched,
    ];

    /// The route's pattern as registered, and its label; `unmatched` for no route.
    pub const fn pattern(self) -> &'static str {
        match self {
            Route::Search => "/admin/v1/secretgenerators/_search",
            Route::Generator => "/admin/v1/secretgenerators/{generatorType}",
            Route::Generate => "/v1/codes/{generatorType}/_generate",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::Tokens => "/admin/v1/tokens",
            Route::TokenSearch => "/admin/v1/tokens/_search",
            Route::Token => "/admin/v1/tokens/{id}",
            Route::EventSearch => "/admin/v1/events/_search",
            Route::Preview => "/admin/v1/secretgenerators/{generatorType}/_preview",
            Route::Console => "/console/",
            Route::ConsoleFile => "/console/{file}",
            Route::Unmatched => "unmatched",
        }
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.pattern())
    }
}

/// The `method` label: the methods of RFC 9110 (and PATCH) that clients send, and `other`
/// for every other token a client may invent.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `PATCH`.
    Patch,
    /// `OPTIONS`.
    Options,
    /// Any other method: `other`.
    Other,
}

impl Method {
    /// Every value, in label-table order.
    pub const ALL: [Method; 8] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
        Method::Options,
        Method::Other,
    ];

    /// The label of a request's method (methods are case-sensitive: `get` is `other`).
    pub fn of(method: &str) -> Method {
        Method::ALL[..Method::ALL.len() - 1]
            .iter()
            .copied()
            .find(|m| m.as_str() == method)
            .unwrap_or(Method::Other)
    }

    /// The label's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other => "other",
        }
    }
}

impl EncodeLabelValue for Method {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The `status` label: the status code, 100 to 599; anything else is `other`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Status(u16);

impl Status {
    /// The label of `code`.
    pub fn of(code: u16) -> Status {
        Status(if (100..=599).contains(&code) { code } else { 0 })
    }
}

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self.0 {
            0 => encoder.write_str("other"),
            code => write!(encoder, "{code}"),
        }
    }
}

/// The statuses the API answers, whose series are kept once resolved; a request with any
/// other status (still one of a bounded set) goes through the family.
const KEPT_STATUSES: [u16; 12] = [200, 400, 401, 403, 404, 405, 408, 413, 429, 500, 503, 0];

/// The labels of request metrics: each from a fixed set, so that the label set stays small
/// whatever clients send.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    method: Method,
    status: Status,
}

impl RequestLabels {
    /// The position of these labels in [`Metrics::kept`], when their status is kept.
    fn slot(self) -> Option<usize> {
        let status = KEPT_STATUSES.iter().position(|&s| s == self.status.0)?;
        let (route, method) = (self.route as usize, self.method as usize);
        Some((route * Method::ALL.len() + method) * KEPT_STATUSES.len() + status)
    }
}

/// A gRPC method secretgen serves, for the `method` label of the gRPC metrics.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum GrpcMethod {
    /// `zitadel.admin.v1.AdminService/ListSecretGenerators`.
    ListSecretGenerators,
    /// `zitadel.admin.v1.AdminService/GetSecretGenerator`.
    GetSecretGenerator,
    /// `zitadel.admin.v1.AdminService/UpdateSecretGenerator`.
    UpdateSecretGenerator,
    /// `secretgen.v1.CodeService/Generate`.
    Generate,
    /// `secretgen.v1.CodeService/GenerateStream`.
    GenerateStream,
}

impl GrpcMethod {
    /// Every value, in label-table order.
    pub const ALL: [GrpcMethod; 5] = [
        GrpcMethod::ListSecretGenerators,
        GrpcMethod::GetSecretGenerator,
        GrpcMethod::UpdateSecretGenerator,
        GrpcMethod::Generate,
        GrpcMethod::GenerateStream,
    ];

    /// The method's full name, as in its path: `/package.Service/Method`.
    pub const fn path(self) -> &'static str {
        match self {
            GrpcMethod::ListSecretGenerators => {
                "/zitadel.admin.v1.AdminService/ListSecretGenerators"
            }
            GrpcMethod::GetSecretGenerator => "/zitadel.admin.v1.AdminService/GetSecretGenerator",
            GrpcMethod::UpdateSecretGenerator => {
                "/zitadel.admin.v1.AdminService/UpdateSecretGenerator"
            }
            GrpcMethod::Generate => "/secretgen.v1.CodeService/Generate",
            GrpcMethod::GenerateStream => "/secretgen.v1.CodeService/GenerateStream",
        }
    }
}

impl EncodeLabelValue for GrpcMethod {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.path())
    }
}

/// The `code` label of the gRPC metrics: a status code's canonical name, `OK` to
/// `UNAUTHENTICATED`; a number outside 0 to 16 is `UNKNOWN`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct GrpcCode(u8);

/// The canonical names of the gRPC status codes, by number.
const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl GrpcCode {
    /// The label of status code `code`.
    pub fn of(code: i32) -> GrpcCode {
        GrpcCode(u8::try_from(code).ok().filter(|&c| c <= 16).unwrap_or(2))
    }
}

impl EncodeLabelValue for GrpcCode {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(GRPC_CODE_NAMES[self.0 as usize])
    }
}

/// The labels of gRPC call metrics.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: GrpcMethod,
    code: GrpcCode,
}

/// Room for every gRPC series: each method with each code.
const GRPC_KEPT: usize = GrpcMethod::ALL.len() * GRPC_CODE_NAMES.len();

type GrpcLatencyFamily = Family<GrpcLabels, Histogram, fn() -> Histogram>;

/// The labels of `secretgen_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    port: &'static str,
    reason: &'static str,
}

/// A request series' counter and histogram, resolved from the families once.
type Series = (Counter, Histogram);

/// Room for every kept series.
const KEPT: usize = Route::ALL.len() * Method::ALL.len() * KEPT_STATUSES.len();

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Every metric the server keeps.
#[derive(Debug)]
pub struct Metrics {
    enabled: bool,
    registry: Registry,
    codes: [Counter; 8],
    changes: [Counter; 8],
    sequence: [Gauge; 8],
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    /// The series of each label set with a kept status, filled on first use: a series
    /// appears in the exposition only once a request had its labels.
    kept: Box<[OnceLock<Series>]>,
    grpc_calls: Family<GrpcLabels, Counter>,
    grpc_latency: GrpcLatencyFamily,
    /// The series of each gRPC method and code, filled on first use.
    grpc_kept: Box<[OnceLock<Series>]>,
    log_lines_dropped: Counter,
    applied_sequence: Gauge,
    tokens_created: Counter,
    tokens_revoked: Counter,
    events_read: Counter,
    store_up: Gauge,
    reconnects: Counter,
    propagation: Histogram,
    /// Connections the watchdog closed, by port (`http`, `grpc`) and rule.
    closed: [Counter; 4],
}

fn latency_histogram() -> Histogram {
    Histogram::default()
}

/// Upper bounds of the latency buckets: 50 µs, doubling, to about 1.6 s; then +Inf.
const LATENCY_BOUNDS: [f64; 16] = {
    let mut bounds = [0.000_05; 16];
    let mut i = 1;
    while i < bounds.len() {
        bounds[i] = bounds[i - 1] * 2.0;
        i += 1;
    }
    bounds
};

/// A latency histogram of atomics: observing is a few relaxed atomic adds, with no lock
/// (prometheus-client's own histogram takes a mutex per observation). A scrape reads the
/// atomics one by one, so it may see an observation in its bucket and not yet in the sum:
/// Prometheus tolerates that, as every lock-free client library does.
#[derive(Clone, Debug, Default)]
pub struct Histogram(std::sync::Arc<HistogramCells>);

/// The cells of a [`Histogram`].
#[derive(Debug, Default)]
pub struct HistogramCells {
    /// Observations per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    /// The sum of observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation of `seconds`.
    pub fn observe(&self, seconds: f64) {
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = (seconds * 1e9).clamp(0.0, u64::MAX as f64) as u64;
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(f64::INFINITY, 0u64); LATENCY_BOUNDS.len() + 1];
        for (i, (bound, count)) in buckets.iter_mut().enumerate() {
            *bound = LATENCY_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY);
            *count = self.0.buckets[i].load(Ordering::Relaxed);
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics that record nothing (`--metrics off`), to measure what recording costs.
    pub fn disabled() -> Metrics {
        Metrics {
            enabled: false,
            ..Metrics::new()
        }
    }

    /// Whether metrics are recorded and served.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("secretgen");
        let codes_family = Family::<TypeLabel, Counter>::default();
        let changes_family = Family::<TypeLabel, Counter>::default();
        let sequence_family = Family::<TypeLabel, Gauge>::default();
        let per_type = |t: GeneratorType| TypeLabel {
            generator_type: t.full_name(),
        };
        let codes = GeneratorType::ALL.map(|t| codes_family.get_or_create(&per_type(t)).clone());
        let changes =
            GeneratorType::ALL.map(|t| changes_family.get_or_create(&per_type(t)).clone());
        let sequence =
            GeneratorType::ALL.map(|t| sequence_family.get_or_create(&per_type(t)).clone());
        registry.register(
            "codes_generated",
            "Codes generated, by generator type",
            codes_family,
        );
        registry.register(
            "config_changes",
            "Configuration changes written, by generator type",
            changes_family,
        );
        registry.register(
            "config_sequence",
            "Sequence of the live configuration, by generator type",
            sequence_family,
        );
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route, method and status",
            latency.clone(),
        );
        let grpc_calls = Family::<GrpcLabels, Counter>::default();
        let grpc_latency: GrpcLatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "grpc_requests",
            "gRPC calls answered, by method and status code",
            grpc_calls.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "Time to answer gRPC calls (to the first message of a stream), by method and code",
            grpc_latency.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because standard error could not take them",
            log_lines_dropped.clone(),
        );
        let applied_sequence = Gauge::default();
        registry.register(
            "store_applied_sequence",
            "Sequence of the last event of the log this server applied",
            applied_sequence.clone(),
        );
        let tokens_created = Counter::default();
        registry.register(
            "tokens_created",
            "Tokens created through the API",
            tokens_created.clone(),
        );
        let tokens_revoked = Counter::default();
        registry.register(
            "tokens_revoked",
            "Tokens revoked through the API",
            tokens_revoked.clone(),
        );
        let events_read = Counter::default();
        registry.register(
            "events_read",
            "Events of the log returned by the audit search",
            events_read.clone(),
        );
        let store_up = Gauge::default();
        store_up.set(1);
        registry.register(
            "store_up",
            "Whether the store answered the last time it was asked (1) or not (0)",
            store_up.clone(),
        );
        let reconnects = Counter::default();
        registry.register(
            "store_reconnects",
            "Times the connection that receives other replicas' changes was made again",
            reconnects.clone(),
        );
        let propagation = Histogram::default();
        registry.register(
            "store_propagation_seconds",
            "Time from another replica's change to this server serving it",
            propagation.clone(),
        );
        let closed_family = Family::<ClosedLabels, Counter>::default();
        let closed = [
            ("http", "send_timeout"),
            ("http", "idle_timeout"),
            ("grpc", "send_timeout"),
            ("grpc", "idle_timeout"),
        ]
        .map(|(port, reason)| {
            closed_family
                .get_or_create(&ClosedLabels { port, reason })
                .clone()
        });
        registry.register(
            "connections_closed",
            "Connections closed for SPEC section 13's rules: an answer unread for --send-timeout, nothing in flight for --idle-timeout",
            closed_family,
        );
        Metrics {
            enabled: true,
            registry,
            codes,
            changes,
            sequence,
            requests,
            latency,
            kept: (0..KEPT).map(|_| OnceLock::new()).collect(),
            grpc_calls,
            grpc_latency,
            grpc_kept: (0..GRPC_KEPT).map(|_| OnceLock::new()).collect(),
            log_lines_dropped,
            applied_sequence,
            tokens_created,
            tokens_revoked,
            events_read,
            store_up,
            reconnects,
            propagation,
            closed,
        }
    }

    /// The watchdog closed a connection of `port` (`grpc` or else `http`) for `reason`.
    pub fn connection_closed(&self, grpc: bool, reason: crate::net::conn::Closed) {
        let slot = 2 * usize::from(grpc) + usize::from(reason == crate::net::conn::Closed::Idle);
        self.closed[slot].inc();
    }

    /// A token was created through the API.
    pub fn token_created(&self) {
        self.tokens_created.inc();
    }

    /// A token was revoked through the API.
    pub fn token_revoked(&self) {
        self.tokens_revoked.inc();
    }

    /// `n` events of the log were returned by the audit search.
    pub fn events_read(&self, n: usize) {
        self.events_read.inc_by(n as u64);
    }

    /// Whether the store answers.
    pub fn store_reachable(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// The connection that receives other replicas' changes was made again.
    pub fn store_reconnected(&self) {
        self.reconnects.inc();
    }

    /// A change made on another replica was served `seconds` after it was made.
    pub fn change_propagated(&self, seconds: f64) {
        self.propagation.observe(seconds);
    }

    /// `n` codes of `t` were generated.
    pub fn codes_generated(&self, t: GeneratorType, n: usize) {
        if !self.enabled {
            return;
        }
        self.codes[t.number() as usize - 1].inc_by(n as u64);
    }

    /// A change of `t` was written.
    pub fn config_changed(&self, t: GeneratorType) {
        if !self.enabled {
            return;
        }
        self.changes[t.number() as usize - 1].inc();
    }

    /// A request to `route` with `method` was answered with `status` in `seconds`.
    pub fn request(&self, route: Route, method: Method, status: u16, seconds: f64) {
        if !self.enabled {
            return;
        }
        let labels = RequestLabels {
            route,
            method,
            status: Status::of(status),
        };
        let resolve = || {
            (
                self.requests.get_or_create(&labels).clone(),
                self.latency.get_or_create(&labels).clone(),
            )
        };
        match labels.slot() {
            Some(slot) => {
                let (count, latency) = self.kept[slot].get_or_init(resolve);
                count.inc();
                latency.observe(seconds);
            }
            None => {
                let (count, latency) = resolve();
                count.inc();
                latency.observe(seconds);
            }
        }
    }

    /// A gRPC call of `method` was answered with status `code` in `seconds`.
    pub fn grpc_call(&self, method: GrpcMethod, code: i32, seconds: f64) {
        if !self.enabled {
            return;
        }
        let labels = GrpcLabels {
            method,
            code: GrpcCode::of(code),
        };
        let slot = method as usize * GRPC_CODE_NAMES.len() + labels.code.0 as usize;
        let (count, latency) = self.grpc_kept[slot].get_or_init(|| {
            (
                self.grpc_calls.get_or_create(&labels).clone(),
                self.grpc_latency.get_or_create(&labels).clone(),
            )
        });
        count.inc();
        latency.observe(seconds);
    }

    /// The text exposition, with the live sequences of `instance` read now and `applied`,
    /// the last event of the log applied.
    pub fn render(&self, instance: &Instance, applied: u64) -> String {
        for t in GeneratorType::ALL {
            let sequence = instance.load(t).version().sequence;
            self.sequence[t.number() as usize - 1].set(i64::try_from(sequence).unwrap_or(i64::MAX));
        }
        self.applied_sequence
            .set(i64::try_from(applied).unwrap_or(i64::MAX));
        // Counted globally (logging starts before any state); brought up to date here.
        self.log_lines_dropped.inner().fetch_max(
            crate::logging::lines_dropped(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::InstanceId;
    use std::time::SystemTime;

    #[test]
    fn counters_move_and_render() {
        let metrics = Metrics::new();
        metrics.codes_generated(GeneratorType::OtpSms, 1000);
        metrics.codes_generated(GeneratorType::OtpSms, 5);
        metrics.config_changed(GeneratorType::AppSecret);
        metrics.request(Route::Healthz, Method::of("GET"), 200, 0.0001);
        let instance = Instance::with_defaults(InstanceId::new("i").unwrap(), SystemTime::now());
        let text = metrics.render(&instance, 0);
        assert!(
            text.contains(
                "secretgen_codes_generated_total{generator_type=\"SECRET_GENERATOR_TYPE_OTP_SMS\"} 1005"
            ),
            "{text}"
        );
        assert!(text.contains(
            "secretgen_config_changes_total{generator_type=\"SECRET_GENERATOR_TYPE_APP_SECRET\"} 1"
        ));
        assert!(text.contains(
            "secretgen_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"
        ));
        assert!(text.contains("secretgen_config_sequence{generator_type="));
        assert!(text.contains("secretgen_http_request_duration_seconds_bucket{"));
        assert!(text.contains("secretgen_log_lines_dropped_total "));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_latency_histogram_renders_cumulative_buckets_its_count_and_sum() {
        let metrics = Metrics::new();
        for seconds in [0.000_01, 0.000_05, 0.000_07, 0.3, 5.0] {
            metrics.request(Route::Generate, Method::Post, 200, seconds);
        }
        let instance = Instance::with_defaults(InstanceId::new("i").unwrap(), SystemTime::now());
        let text = metrics.render(&instance, 0);
        let series = |suffix: &str| {
            let prefix = format!("secretgen_http_request_duration_seconds_{suffix}{{");
            text.lines()
                .filter(|l| l.starts_with(&prefix) && l.contains("route=\"/v1/codes/"))
                .map(|l| l.rsplit(' ').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        // 50 µs holds two (the bound is inclusive), 100 µs three, +Inf all five.
        let buckets = series("bucket");
        assert_eq!(buckets.len(), 17, "{text}");
        assert_eq!(buckets[0], "2");
        assert_eq!(buckets[1], "3");
        assert_eq!(buckets[12], "3");
        assert_eq!(buckets[13], "4", "0.3 s falls in the 0.4096 s bucket");
        assert_eq!(buckets[16], "5");
        assert_eq!(series("count"), ["5"]);
        let sum: f64 = series("sum")[0].parse().unwrap();
        assert!((sum - 5.30013).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn labels_come_from_fixed_sets_whatever_clients_send() {
        let metrics = Metrics::new();
        for i in 0..500 {
            let method = format!("FOO{i}");
            metrics.request(Route::Unmatched, Method::of(&method), 405, 0.0001);
            metrics.request(
                Route::Healthz,
                Method::of(&method.to_lowercase()),
                405,
                0.0001,
            );
            metrics.request(
                Route::Generate,
                Method::of("POST"),
                100 + (i % 1000) as u16,
                0.0001,
            );
        }
        metrics.request(Route::Healthz, Method::of("GET"), 999, 0.0001);
        metrics.request(Route::Healthz, Method::of("GET"), 200, 0.0001);
        metrics.request(Route::Healthz, Method::of("GET"), 200, 0.0001);
        let instance = Instance::with_defaults(InstanceId::new("i").unwrap(), SystemTime::now());
        let text = metrics.render(&instance, 0);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("secretgen_http_requests_total{"))
            .collect();
        // Unmatched/other/405, /healthz/other/405, 500 statuses of 100..=599, GET 200 and
        // GET other: never one series per invented method.
        assert_eq!(series.len(), 2 + 500 + 2, "{series:#?}");
        let methods: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
        for line in &series {
            let method = line
                .split("method=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap();
            assert!(methods.contains(&method), "{line}");
        }
        assert!(text.contains(
            "secretgen_http_requests_total{route=\"unmatched\",method=\"other\",status=\"405\"} 500"
        ));
        assert!(text.contains(
            "secretgen_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"other\"} 1"
        ));
        assert!(text.contains(
            "secretgen_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 2"
        ));
    }

    #[test]
    fn every_kept_label_set_has_its_own_slot() {
        let mut seen = std::collections::HashSet::new();
        for route in Route::ALL {
            for method in Method::ALL {
                for status in KEPT_STATUSES {
                    let labels = RequestLabels {
                        route,
                        method,
                        status: Status(status),
                    };
                    let slot = labels.slot().unwrap();
                    assert!(slot < KEPT && seen.insert(slot));
                }
            }
        }
        assert_eq!(seen.len(), KEPT);
        assert_eq!(Method::of("get"), Method::Other);
        assert_eq!(Status::of(99), Status::of(600));
    }
}
