//! Connections the watchdog closed ([`Closed`]), by port (`http`, `grpc`) and rule:
//! `secretgen_connections_closed_total`, in the registry of the core's
//! [`Metrics`](secretgen_core::metrics::Metrics). Both transports count here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::conn::Closed;

/// The labels of `secretgen_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    port: &'static str,
    reason: &'static str,
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The HTTP API's.
    Http,
    /// gRPC's.
    Grpc,
}

/// The counters of connections closed, one per port and rule, resolved at start.
#[derive(Debug)]
pub struct ConnectionMetrics {
    closed: [Counter; 4],
}

impl ConnectionMetrics {
    /// The family, added to `registry`.
    pub fn register(registry: &mut Registry) -> ConnectionMetrics {
        let family = Family::<ClosedLabels, Counter>::default();
        let closed = [
            ("http", Closed::Send),
            ("http", Closed::Idle),
            ("grpc", Closed::Send),
            ("grpc", Closed::Idle),
        ]
        .map(|(port, reason)| {
            family
                .get_or_create(&ClosedLabels {
                    port,
                    reason: reason.label(),
                })
                .clone()
        });
        registry.register(
            "connections_closed",
            "Connections closed for SPEC section 13's rules: an answer unread for --send-timeout, nothing in flight for --idle-timeout",
            family,
        );
        ConnectionMetrics { closed }
    }

    /// The watchdog closed a connection of `port` for `reason`.
    pub fn closed(&self, port: Port, reason: Closed) {
        let slot = 2 * usize::from(port == Port::Grpc) + usize::from(reason == Closed::Idle);
        self.closed[slot].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_port_and_rule_has_its_series() {
        let mut registry = Registry::with_prefix("secretgen");
        let metrics = ConnectionMetrics::register(&mut registry);
        metrics.closed(Port::Grpc, Closed::Idle);
        metrics.closed(Port::Grpc, Closed::Idle);
        metrics.closed(Port::Http, Closed::Send);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for (labels, n) in [
            ("port=\"grpc\",reason=\"idle_timeout\"", 2),
            ("port=\"http\",reason=\"send_timeout\"", 1),
            ("port=\"http\",reason=\"idle_timeout\"", 0),
            ("port=\"grpc\",reason=\"send_timeout\"", 0),
        ] {
            let line = format!("secretgen_connections_closed_total{{{labels}}} {n}");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }
}
