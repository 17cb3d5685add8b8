//! The core's Prometheus metrics: codes generated and configuration changes per type, the
//! live configuration's sequence per type, tokens created and revoked, events read, the
//! store's reachability and the propagation of other replicas' changes. The transports add
//! their own families (requests, latency, connections closed) to the same [`Registry`]
//! before the metrics are shared ([`Metrics::registry_mut`]), so `/metrics` is one
//! exposition.
//!
//! The per-type counters are resolved once, at start, so counting a generated code is one
//! atomic add: no lock on the data plane's path. Every label takes its value from a fixed
//! set, never from what a client sent (the bug class of CVE-2022-21698).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::verification::VerifyResult;
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::Instance;

/// The label of per-type metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    generator_type: &'static str,
}

/// The label of verification results.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    generator_type: &'static str,
    result: &'static str,
}

/// The core's metrics, and the registry the transports add theirs to.
#[derive(Debug)]
pub struct Metrics {
    enabled: bool,
    registry: Registry,
    codes: [Counter; 8],
    changes: [Counter; 8],
    sequence: [Gauge; 8],
    applied_sequence: Gauge,
    tokens_created: Counter,
    tokens_revoked: Counter,
    events_read: Counter,
    store_up: Gauge,
    reconnects: Counter,
    propagation: Histogram,
    issued: [Counter; 8],
    verified: [[Counter; 5]; 8],
    locks: [Counter; 8],
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
        let issued_family = Family::<TypeLabel, Counter>::default();
        let verified_family = Family::<ResultLabel, Counter>::default();
        let locks_family = Family::<TypeLabel, Counter>::default();
        let issued = GeneratorType::ALL.map(|t| issued_family.get_or_create(&per_type(t)).clone());
        let locks = GeneratorType::ALL.map(|t| locks_family.get_or_create(&per_type(t)).clone());
        let verified = GeneratorType::ALL.map(|t| {
            VerifyResult::ALL.map(|r| {
                verified_family
                    .get_or_create(&ResultLabel {
                        generator_type: t.full_name(),
                        result: r.label(),
                    })
                    .clone()
            })
        });
        registry.register(
            "codes_issued",
            "Codes issued for a subject, by generator type",
            issued_family,
        );
        registry.register(
            "verifications",
            "Verifications of issued codes, by generator type and result",
            verified_family,
        );
        registry.register(
            "verify_locks",
            "Subjects locked after too many failed verifications, by generator type",
            locks_family,
        );
        Metrics {
            enabled: true,
            issued,
            verified,
            locks,
            registry,
            codes,
            changes,
            sequence,
            applied_sequence,
            tokens_created,
            tokens_revoked,
            events_read,
            store_up,
            reconnects,
            propagation,
        }
    }

    /// The registry, for a transport to add its families to before the metrics are shared.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
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

    /// A code of `t` was issued for a subject.
    pub fn code_issued(&self, t: GeneratorType) {
        if self.enabled {
            self.issued[t.number() as usize - 1].inc();
        }
    }

    /// A code of `t` was verified with `result`; `locked` when this verification locked
    /// its subject.
    pub fn code_verified(&self, t: GeneratorType, result: VerifyResult, locked: bool) {
        if !self.enabled {
            return;
        }
        let at = VerifyResult::ALL
            .iter()
            .position(|&r| r == result)
            .unwrap_or(0);
        self.verified[t.number() as usize - 1][at].inc();
        if locked {
            self.locks[t.number() as usize - 1].inc();
        }
    }

    /// A change of `t` was written.
    pub fn config_changed(&self, t: GeneratorType) {
        if !self.enabled {
            return;
        }
        self.changes[t.number() as usize - 1].inc();
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
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// A count and a latency histogram per label set, as each transport keeps for what it
/// answers. The series of a label set given a slot is resolved from the families once and
/// kept there, so counting it is a few atomic adds with no lock and no allocation; a label set
/// without a slot (a rarer one, still of a bounded set) takes the families' read lock.
#[derive(Debug)]
pub struct Timed<L: Clone + std::hash::Hash + Eq> {
    enabled: bool,
    count: Family<L, Counter>,
    latency: Family<L, Histogram, fn() -> Histogram>,
    /// Filled on first use: a series appears in the exposition once something had its labels.
    kept: Box<[OnceLock<(Counter, Histogram)>]>,
}

impl<L> Timed<L>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    /// The two families, `count` and `latency` (each a name and its help), added to
    /// `registry`, with `slots` kept series; `enabled` false records nothing.
    pub fn register(
        registry: &mut Registry,
        enabled: bool,
        count: (&str, &str),
        latency: (&str, &str),
        slots: usize,
    ) -> Timed<L> {
        let count_family = Family::<L, Counter>::default();
        let latency_family: Family<L, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(Histogram::default);
        registry.register(count.0, count.1, count_family.clone());
        registry.register(latency.0, latency.1, latency_family.clone());
        Timed {
            enabled,
            count: count_family,
            latency: latency_family,
            kept: (0..slots).map(|_| OnceLock::new()).collect(),
        }
    }

    /// One answer with `labels` took `seconds`; its series is kept in `slot` when given.
    pub fn observe(&self, labels: &L, slot: Option<usize>, seconds: f64) {
        if !self.enabled {
            return;
        }
        let resolve = || {
            (
                self.count.get_or_create(labels).clone(),
                self.latency.get_or_create(labels).clone(),
            )
        };
        let observe = |(count, latency): &(Counter, Histogram)| {
            count.inc();
            latency.observe(seconds);
        };
        match slot.and_then(|s| self.kept.get(s)) {
            Some(kept) => observe(kept.get_or_init(resolve)),
            None => observe(&resolve()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretgen_engine::registry::InstanceId;
    use std::time::SystemTime;

    #[test]
    fn counters_move_and_render() {
        let metrics = Metrics::new();
        metrics.codes_generated(GeneratorType::OtpSms, 1000);
        metrics.codes_generated(GeneratorType::OtpSms, 5);
        metrics.config_changed(GeneratorType::AppSecret);
        metrics.change_propagated(0.3);
        let instance = Instance::with_defaults(InstanceId::new("i").unwrap(), SystemTime::now());
        let text = metrics.render(&instance, 7);
        assert!(
            text.contains(
                "secretgen_codes_generated_total{generator_type=\"SECRET_GENERATOR_TYPE_OTP_SMS\"} 1005"
            ),
            "{text}"
        );
        assert!(text.contains(
            "secretgen_config_changes_total{generator_type=\"SECRET_GENERATOR_TYPE_APP_SECRET\"} 1"
        ));
        assert!(text.contains("secretgen_config_sequence{generator_type="));
        assert!(text.contains("secretgen_store_applied_sequence 7"));
        assert!(text.contains("secretgen_store_propagation_seconds_count 1"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_timed_series_with_a_slot_is_kept_and_one_without_is_found_each_time() {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Labels {
            route: &'static str,
        }
        let mut metrics = Metrics::new();
        let timed = Timed::<Labels>::register(
            metrics.registry_mut(),
            true,
            ("probe", "A probe"),
            ("probe_seconds", "A probe's time"),
            2,
        );
        let (a, b) = (Labels { route: "a" }, Labels { route: "b" });
        timed.observe(&a, Some(1), 0.001);
        timed.observe(&a, Some(1), 0.001);
        timed.observe(&b, None, 0.001);
        assert!(timed.kept[1].get().is_some(), "the slot keeps its series");
        assert!(timed.kept[0].get().is_none());
        let off = Timed::<Labels>::register(
            &mut Registry::default(),
            false,
            ("off", "Off"),
            ("off_seconds", "Off"),
            1,
        );
        off.observe(&a, Some(0), 0.001);
        assert!(off.kept[0].get().is_none(), "nothing is recorded when off");
        let instance = Instance::with_defaults(InstanceId::new("i").unwrap(), SystemTime::now());
        let text = metrics.render(&instance, 0);
        assert!(
            text.contains("secretgen_probe_total{route=\"a\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("secretgen_probe_total{route=\"b\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("secretgen_probe_seconds_count{route=\"a\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn the_histogram_renders_cumulative_buckets_its_count_and_sum() {
        let mut metrics = Metrics::new();
        let histogram = Histogram::default();
        metrics
            .registry_mut()
            .register("probe_seconds", "A probe", histogram.clone());
        for seconds in [0.000_01, 0.000_05, 0.000_07, 0.3, 5.0] {
            histogram.observe(seconds);
        }
        let instance = Instance::with_defaults(InstanceId::new("i").unwrap(), SystemTime::now());
        let text = metrics.render(&instance, 0);
        let series = |suffix: &str| {
            let prefix = format!("secretgen_probe_seconds_{suffix}");
            text.lines()
                .filter(|l| l.starts_with(&prefix))
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
}
