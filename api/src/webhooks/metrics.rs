//! Per-endpoint delivery metrics (Prometheus), served with the API's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    endpoint: String,
    outcome: String,
}

pub struct WebhookMetrics {
    registry: Registry,
    attempts: Family<OutcomeLabels, Counter>,
    latency: Family<EndpointLabel, Histogram>,
    queue_depth: Family<EndpointLabel, Gauge>,
    disabled: Counter,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("veriflow_webhook");
        let attempts = Family::<OutcomeLabels, Counter>::default();
        let latency = Family::<EndpointLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
            ])
        });
        let queue_depth = Family::<EndpointLabel, Gauge>::default();
        let disabled = Counter::default();
        registry.register(
            "attempts",
            "Delivery attempts by endpoint and outcome (success, failure, timeout, connect_error, blocked)",
            attempts.clone(),
        );
        registry.register(
            "attempt_duration_seconds",
            "Time from sending a delivery to its answer",
            latency.clone(),
        );
        registry.register(
            "queue_depth",
            "Pending deliveries per endpoint",
            queue_depth.clone(),
        );
        registry.register(
            "endpoints_disabled",
            "Endpoints disabled by the engine (410 Gone or failing too long)",
            disabled.clone(),
        );
        WebhookMetrics {
            registry,
            attempts,
            latency,
            queue_depth,
            disabled,
        }
    }
}

impl WebhookMetrics {
    pub fn attempt(&self, endpoint: &str, outcome: &str, seconds: f64) {
        self.attempts
            .get_or_create(&OutcomeLabels {
                endpoint: endpoint.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabel {
                endpoint: endpoint.to_string(),
            })
            .observe(seconds);
    }

    /// Replaces the queue depth gauges (endpoints absent from `depths` read 0).
    pub fn set_queue_depths(&self, depths: &[(String, i64)]) {
        self.queue_depth.clear();
        for (endpoint, depth) in depths {
            self.queue_depth
                .get_or_create(&EndpointLabel {
                    endpoint: endpoint.clone(),
                })
                .set(*depth);
        }
    }

    pub fn endpoint_disabled(&self) {
        self.disabled.inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
