//! Prometheus metrics at `/metrics` (OpenMetrics text): codes generated and configuration
//! changes per type, the live configuration's sequence per type, requests and their
//! latency per route, method and status, and log lines dropped.
//!
//! The per-type counters are resolved once, at start, so counting a generated code is one
//! atomic add: no lock on the data plane's path.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::generator_type::GeneratorType;
use crate::registry::Instance;

/// The label of per-type metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    generator_type: &'static str,
}

/// The labels of request metrics. `route` is the route's pattern (`/v1/codes/{generatorType}
/// /_generate`), never the path a client sent, so that the label set stays small.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

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
    log_lines_dropped: Counter,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
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
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because standard error could not take them",
            log_lines_dropped.clone(),
        );
        Metrics {
            enabled: true,
            registry,
            codes,
            changes,
            sequence,
            requests,
            latency,
            log_lines_dropped,
        }
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

    /// A request was answered.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        if !self.enabled {
            return;
        }
        let labels = RequestLabels {
            route: route.to_owned(),
            method: method.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// The text exposition, with the live sequences of `instance` read now.
    pub fn render(&self, instance: &Instance) -> String {
        for t in GeneratorType::ALL {
            let sequence = instance.load(t).version().sequence;
            self.sequence[t.number() as usize - 1].set(i64::try_from(sequence).unwrap_or(i64::MAX));
        }
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
        metrics.request("/healthz", "GET", 200, 0.0001);
        let instance = Instance::with_defaults(InstanceId::new("i").unwrap(), SystemTime::now());
        let text = metrics.render(&instance);
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
}
