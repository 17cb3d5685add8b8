//! The HTTP API's metrics: requests and their latency per route, method and status, in the
//! registry of the core's [`Metrics`](secretgen_core::metrics::Metrics). The route table ([`Route`])
//! is here too: the server registers each route under its pattern, with the `Route` as the
//! resource's data, so a request's `route` label is read back without matching the path again.
//!
//! Every label takes its value from a fixed set, never from what a client sent (the bug class
//! of CVE-2022-21698, where each invented method name made a new series): `route` is one of
//! the registered [`Route`]s or `unmatched`, `method` one of [`Method`]'s eight values (the
//! methods HTTP defines that clients use, and `other`), `status` one of 100 to 599 or
//! `other`. Labels are `Copy`. The series of a request whose status is one the API answers
//! (`KEPT_STATUSES`) is resolved from the families once and then kept (the core's [`Timed`]),
//! and the latency histogram is made of atomics, so counting such a request is a few atomic
//! adds: no allocation, no lock. A request with any other status (a bounded set too) takes
//! the families' read lock to find its series.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::registry::Registry;

use secretgen_core::metrics::Timed;

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
    /// `POST /v1/codes/{generatorType}/_issue`.
    Issue,
    /// `POST /v1/codes/{generatorType}/_verify`.
    Verify,
    /// `POST /admin/v1/verifications/_unlock`.
    Unlock,
    /// `GET /admin/v1/verifications/stats`.
    CodeStats,
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
    pub const ALL: [Route; 19] = [
        Route::Search,
        Route::Generator,
        Route::Generate,
        Route::Issue,
        Route::Verify,
        Route::Unlock,
        Route::CodeStats,
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
            Route::Issue => "/v1/codes/{generatorType}/_issue",
            Route::Verify => "/v1/codes/{generatorType}/_verify",
            Route::Unlock => "/admin/v1/verifications/_unlock",
            Route::CodeStats => "/admin/v1/verifications/stats",
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
    /// The slot of these labels' kept series, when their status is kept.
    fn slot(self) -> Option<usize> {
        let status = KEPT_STATUSES.iter().position(|&s| s == self.status.0)?;
        let (route, method) = (self.route as usize, self.method as usize);
        Some((route * Method::ALL.len() + method) * KEPT_STATUSES.len() + status)
    }
}

/// Room for every kept series.
const KEPT: usize = Route::ALL.len() * Method::ALL.len() * KEPT_STATUSES.len();

/// The HTTP API's request counters and latency histograms.
#[derive(Debug)]
pub struct HttpMetrics(Timed<RequestLabels>);

impl HttpMetrics {
    /// The families, added to `registry`; `enabled` false records nothing.
    pub fn register(registry: &mut Registry, enabled: bool) -> HttpMetrics {
        HttpMetrics(Timed::register(
            registry,
            enabled,
            (
                "http_requests",
                "HTTP requests answered, by route, method and status",
            ),
            (
                "http_request_duration_seconds",
                "Time to answer HTTP requests, by route, method and status",
            ),
            KEPT,
        ))
    }

    /// A request to `route` with `method` was answered with `status` in `seconds`.
    pub fn request(&self, route: Route, method: Method, status: u16, seconds: f64) {
        let labels = RequestLabels {
            route,
            method,
            status: Status::of(status),
        };
        self.0.observe(&labels, labels.slot(), seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition of a registry holding only `metrics`.
    fn render(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn a_request_is_counted_under_its_route_method_and_status() {
        let mut registry = Registry::with_prefix("secretgen");
        let metrics = HttpMetrics::register(&mut registry, true);
        metrics.request(Route::Healthz, Method::of("GET"), 200, 0.0001);
        for seconds in [0.000_01, 0.3] {
            metrics.request(Route::Generate, Method::Post, 200, seconds);
        }
        let text = render(&registry);
        assert!(
            text.contains(
                "secretgen_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "secretgen_http_request_duration_seconds_count{route=\"/v1/codes/{generatorType}/_generate\",method=\"POST\",status=\"200\"} 2"
        ));
        let mut quiet = Registry::default();
        let off = HttpMetrics::register(&mut quiet, false);
        off.request(Route::Healthz, Method::Get, 200, 0.0001);
        off.request(Route::Healthz, Method::Get, 999, 0.0001);
        assert!(!render(&quiet).contains("route="), "{}", render(&quiet));
    }

    #[test]
    fn labels_come_from_fixed_sets_whatever_clients_send() {
        let mut registry = Registry::with_prefix("secretgen");
        let metrics = HttpMetrics::register(&mut registry, true);
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
        let text = render(&registry);
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
