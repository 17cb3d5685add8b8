//! The gRPC server's metrics: calls and their latency (to the first message of a stream) per
//! method and status code, in the registry of the core's
//! [`Metrics`](secretgen_core::metrics::Metrics). Both labels come from fixed sets; each series is
//! resolved once and kept, so counting a call is a few atomic adds.

use std::fmt::Write as _;
use std::sync::OnceLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use secretgen_core::metrics::Histogram;

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

/// A call series' counter and histogram, resolved from the families once.
type Series = (Counter, Histogram);

/// The gRPC server's call counters and latency histograms.
#[derive(Debug)]
pub struct GrpcMetrics {
    enabled: bool,
    calls: Family<GrpcLabels, Counter>,
    latency: GrpcLatencyFamily,
    /// The series of each method and code, filled on first use.
    kept: Box<[OnceLock<Series>]>,
}

impl GrpcMetrics {
    /// The families, added to `registry`; `enabled` false records nothing.
    pub fn register(registry: &mut Registry, enabled: bool) -> GrpcMetrics {
        let calls = Family::<GrpcLabels, Counter>::default();
        let latency: GrpcLatencyFamily = Family::new_with_constructor(Histogram::default);
        registry.register(
            "grpc_requests",
            "gRPC calls answered, by method and status code",
            calls.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "Time to answer gRPC calls (to the first message of a stream), by method and code",
            latency.clone(),
        );
        GrpcMetrics {
            enabled,
            calls,
            latency,
            kept: (0..GRPC_KEPT).map(|_| OnceLock::new()).collect(),
        }
    }

    /// A call of `method` was answered with status `code` in `seconds`.
    pub fn call(&self, method: GrpcMethod, code: i32, seconds: f64) {
        if !self.enabled {
            return;
        }
        let labels = GrpcLabels {
            method,
            code: GrpcCode::of(code),
        };
        let slot = method as usize * GRPC_CODE_NAMES.len() + labels.code.0 as usize;
        let (count, latency) = self.kept[slot].get_or_init(|| {
            (
                self.calls.get_or_create(&labels).clone(),
                self.latency.get_or_create(&labels).clone(),
            )
        });
        count.inc();
        latency.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_counted_under_its_method_and_code_and_strange_codes_are_unknown() {
        let mut registry = Registry::with_prefix("secretgen");
        let metrics = GrpcMetrics::register(&mut registry, true);
        metrics.call(GrpcMethod::Generate, 0, 0.001);
        metrics.call(GrpcMethod::Generate, 0, 0.001);
        metrics.call(GrpcMethod::GetSecretGenerator, 99, 0.001);
        metrics.call(GrpcMethod::GetSecretGenerator, -1, 0.001);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "secretgen_grpc_requests_total{method=\"/secretgen.v1.CodeService/Generate\",code=\"OK\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "secretgen_grpc_requests_total{method=\"/zitadel.admin.v1.AdminService/GetSecretGenerator\",code=\"UNKNOWN\"} 2"
        ));
    }
}
