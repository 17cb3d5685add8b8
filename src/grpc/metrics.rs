//! The gRPC server's metrics: calls and their latency (to the first message of a stream) per
//! method and status code, in the registry of the core's
//! [`Metrics`](secretgen_core::metrics::Metrics). Both labels come from fixed sets; each series is
//! resolved once and kept, so counting a call is a few atomic adds.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::registry::Registry;

use secretgen_core::metrics::Timed;

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
    /// `secretgen.v1.CodeService/Issue`.
    Issue,
    /// `secretgen.v1.CodeService/Verify`.
    Verify,
}

impl GrpcMethod {
    /// Every value, in label-table order.
    pub const ALL: [GrpcMethod; 7] = [
        GrpcMethod::ListSecretGenerators,
        GrpcMethod::GetSecretGenerator,
        GrpcMethod::UpdateSecretGenerator,
        GrpcMethod::Generate,
        GrpcMethod::GenerateStream,
        GrpcMethod::Issue,
        GrpcMethod::Verify,
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
            GrpcMethod::Issue => "/secretgen.v1.CodeService/Issue",
            GrpcMethod::Verify => "/secretgen.v1.CodeService/Verify",
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

/// The gRPC server's call counters and latency histograms.
#[derive(Debug)]
pub struct GrpcMetrics(Timed<GrpcLabels>);

impl GrpcMetrics {
    /// The families, added to `registry`; `enabled` false records nothing.
    pub fn register(registry: &mut Registry, enabled: bool) -> GrpcMetrics {
        GrpcMetrics(Timed::register(
            registry,
            enabled,
            (
                "grpc_requests",
                "gRPC calls answered, by method and status code",
            ),
            (
                "grpc_request_duration_seconds",
                "Time to answer gRPC calls (to the first message of a stream), by method and code",
            ),
            GRPC_KEPT,
        ))
    }

    /// A call of `method` was answered with status `code` in `seconds`.
    pub fn call(&self, method: GrpcMethod, code: i32, seconds: f64) {
        let labels = GrpcLabels {
            method,
            code: GrpcCode::of(code),
        };
        let slot = method as usize * GRPC_CODE_NAMES.len() + labels.code.0 as usize;
        self.0.observe(&labels, Some(slot), seconds);
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
