//! The event types endpoints can subscribe to, each with a JSON Schema of its
//! `data` and an example: `GET /v1/webhooks/event-types`. The runtime's
//! tests check the examples against the records the pipeline really writes,
//! so the catalogue cannot drift from the stream.
//!
//! Besides these, a tenant may publish its own events (`POST
//! /v1/webhooks/messages`) under types of its own in the `app.` namespace.

use serde_json::{Value, json};

/// Event types veriflow produces.
pub const EVENT_TYPES: [&str; 7] = [
    "verification.approved",
    "verification.expired",
    "fraud.flagged",
    "kpi.alert",
    "route.degraded",
    "webhook.test",
    "endpoint.disabled",
];

/// A tenant's own event types: `app.` and a name.
pub const APP_TYPE_PATTERN: &str = "^app\\.[a-z0-9][a-z0-9_.-]{0,59}$";

/// Whether endpoints may subscribe to `event_type`, and tenants publish it.
pub fn is_known(event_type: &str) -> bool {
    EVENT_TYPES.contains(&event_type) || is_app_type(event_type)
}

pub fn is_app_type(event_type: &str) -> bool {
    event_type.strip_prefix("app.").is_some_and(|name| {
        !name.is_empty()
            && name.len() <= 60
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
    })
}

/// One entry of the catalogue.
pub struct EventType {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: Value,
    pub example: Value,
}

fn outcome_schema() -> Value {
    json!({
        "type": "object",
        "required": ["outcome_id", "verification_id", "tenant_id", "outcome", "requested_at",
                     "decided_at", "country", "channel", "service", "providers", "attempts",
                     "failed_attempts", "delivered", "undelivered", "check_failed"],
        "properties": {
            "outcome_id": {"type": "string"},
            "verification_id": {"type": "string"},
            "tenant_id": {"type": "string"},
            "outcome": {"enum": ["approved", "expired"]},
            "requested_at": {"type": "string", "format": "date-time"},
            "decided_at": {"type": "string", "format": "date-time"},
            "time_to_approve_ms": {"type": ["integer", "null"]},
            "country": {"type": "string"},
            "channel": {"enum": ["sms", "voice", "whatsapp", "email"]},
            "service": {"type": "string"},
            "providers": {"type": "array", "items": {"type": "string"}},
            "attempts": {"type": "integer"},
            "failed_attempts": {"type": "integer"},
            "delivered": {"type": "integer"},
            "undelivered": {"type": "integer"},
            "check_failed": {"type": "integer"},
            "cost": {"type": ["number", "null"]},
            "currency": {"type": ["string", "null"]},
            "scores": {"type": ["object", "null"]}
        }
    })
}

fn outcome_example(outcome: &str) -> Value {
    let approved = outcome == "approved";
    json!({
        "outcome_id": "acme:v-1042",
        "verification_id": "v-1042",
        "tenant_id": "acme",
        "outcome": outcome,
        "requested_at": "2026-01-05T10:00:00.000Z",
        "decided_at": if approved { "2026-01-05T10:00:21.400Z" } else { "2026-01-05T10:10:00.000Z" },
        "time_to_approve_ms": if approved { json!(21400) } else { Value::Null },
        "country": "BR",
        "channel": "sms",
        "service": "login",
        "providers": ["sinch"],
        "attempts": 1,
        "failed_attempts": if approved { 0 } else { 1 },
        "delivered": 1,
        "undelivered": 0,
        "check_failed": 0,
        "cost": 0.0123,
        "currency": "USD",
        "scores": {"variant": "champion", "fraud_score": 0.012, "fraud_decision": "allow"}
    })
}

fn alert_schema() -> Value {
    json!({
        "type": "object",
        "required": ["alert_id", "rule", "severity", "tenant", "country", "provider", "metric",
                     "value", "threshold", "volume", "window_start", "message"],
        "properties": {
            "alert_id": {"type": "string"},
            "rule": {"type": "string"},
            "severity": {"type": "string"},
            "tenant": {"type": "string", "description": "`*` for a rule across tenants"},
            "country": {"type": "string"},
            "provider": {"type": "string"},
            "metric": {"enum": ["requests", "conversion_rate", "delivery_rate"]},
            "value": {"type": "number"},
            "baseline": {"type": ["number", "null"]},
            "threshold": {"type": "number"},
            "volume": {"type": "integer"},
            "window_start": {"type": "string", "format": "date-time"},
            "message": {"type": "string"}
        }
    })
}

fn alert_example(rule: &str, metric: &str, tenant: &str) -> Value {
    json!({
        "alert_id": format!("alert-{rule}-{tenant}-GN-sinch-1767607200000"),
        "baseline": 0.71,
        "country": "GN",
        "message": format!("{metric} in GN fell to 0.08 (baseline 0.71)"),
        "metric": metric,
        "provider": if metric == "delivery_rate" { "sinch" } else { "" },
        "rule": rule,
        "severity": "critical",
        "tenant": tenant,
        "threshold": 0.5,
        "value": 0.08,
        "volume": 64,
        "window_start": "2026-01-05T10:00:00.000Z"
    })
}

/// The catalogue, in [`EVENT_TYPES`] order.
pub fn catalogue() -> Vec<EventType> {
    vec![
        EventType {
            name: "verification.approved",
            description: "A verification succeeded: its code was entered within the TTL (the verifications.outcomes record).",
            schema: outcome_schema(),
            example: outcome_example("approved"),
        },
        EventType {
            name: "verification.expired",
            description: "A verification ended without approval within the TTL (the verifications.outcomes record).",
            schema: outcome_schema(),
            example: outcome_example("expired"),
        },
        EventType {
            name: "fraud.flagged",
            description: "A request the fraud model scored `review` or `block` (the verifications.scored record).",
            schema: json!({
                "type": "object",
                "required": ["scored_id", "verification_id", "tenant_id", "event_id", "requested_at",
                             "country", "features", "variant", "fraud_score", "fraud_decision",
                             "fraud_reasons", "fraud_thresholds", "routes", "model"],
                "properties": {
                    "scored_id": {"type": "string"},
                    "verification_id": {"type": "string"},
                    "tenant_id": {"type": "string"},
                    "event_id": {"type": "string"},
                    "requested_at": {"type": "string", "format": "date-time"},
                    "country": {"type": "string"},
                    "features": {"type": "object"},
                    "variant": {"enum": ["champion", "challenger"]},
                    "fraud_score": {"type": "number", "minimum": 0, "maximum": 1},
                    "fraud_decision": {"enum": ["review", "block"]},
                    "fraud_reasons": {"type": "array", "items": {"type": "string"}},
                    "fraud_thresholds": {"type": "object"},
                    "routes": {"type": "array"},
                    "choice": {"type": ["string", "null"]},
                    "model": {"type": "object"},
                    "shadow": {"type": "object"}
                }
            }),
            example: json!({
                "scored_id": "acme:v-1043:v-1043-e1",
                "verification_id": "v-1043",
                "tenant_id": "acme",
                "event_id": "v-1043-e1",
                "requested_at": "2026-01-05T10:00:03.000Z",
                "country": "GN",
                "features": {"prefix_requests_10m": 212, "ip_distinct_numbers_1h": 90},
                "variant": "champion",
                "fraud_score": 0.97,
                "fraud_decision": "block",
                "fraud_reasons": ["prefix_requests_10m", "ip_distinct_numbers_1h"],
                "fraud_thresholds": {"review": 0.02, "block": 0.05},
                "routes": [{"provider": "sinch", "p_success": 0.41}],
                "choice": "sinch",
                "model": {
                    "fraud": {"name": "veriflow-scoring-fraud", "version": "20260105T10-s1"},
                    "success": {"name": "veriflow-scoring-success", "version": "20260105T10-s1"},
                    "feature_schema": "v3-…"
                }
            }),
        },
        EventType {
            name: "kpi.alert",
            description: "An alert rule fired on a KPI window (conversion drop, volume spike, your own rules).",
            schema: alert_schema(),
            example: alert_example("conversion_drop", "conversion_rate", "acme"),
        },
        EventType {
            name: "route.degraded",
            description: "A route's delivery rate fell under its baseline (every tenant with a subscribed endpoint gets it).",
            schema: alert_schema(),
            example: alert_example("route_degraded", "delivery_rate", "*"),
        },
        EventType {
            name: "webhook.test",
            description: "Sent by POST /v1/webhooks/endpoints/{id}/test.",
            schema: json!({
                "type": "object",
                "required": ["endpoint_id", "sent_at"],
                "properties": {
                    "endpoint_id": {"type": "string"},
                    "sent_at": {"type": "string", "format": "date-time"}
                }
            }),
            example: json!({"endpoint_id": "ep_0123456789abcdef01234567", "sent_at": "2026-01-05T10:00:00.000Z"}),
        },
        EventType {
            name: "endpoint.disabled",
            description: "An endpoint of yours was disabled (410 Gone, or failing without a success for webhooks.disable_after).",
            schema: json!({
                "type": "object",
                "required": ["endpoint_id", "reason"],
                "properties": {
                    "endpoint_id": {"type": "string"},
                    "url": {"type": "string"},
                    "reason": {"type": "string"},
                    "failing_since": {"type": ["string", "null"], "format": "date-time"}
                }
            }),
            example: json!({
                "endpoint_id": "ep_0123456789abcdef01234567",
                "url": "https://hooks.acme.com/veriflow",
                "reason": "the endpoint answered 410 Gone",
                "failing_since": null
            }),
        },
    ]
}

/// Whether `data` has every property `schema` requires (the check the
/// catalogue's own tests and the runtime's run).
pub fn has_required(schema: &Value, data: &Value) -> Result<(), Vec<String>> {
    let missing: Vec<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|k| data.get(*k).is_none())
        .map(str::to_owned)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_an_entry_whose_example_fits_its_schema() {
        let c = catalogue();
        let names: Vec<&str> = c.iter().map(|e| e.name).collect();
        assert_eq!(names, EVENT_TYPES);
        for e in &c {
            has_required(&e.schema, &e.example).unwrap_or_else(|m| panic!("{}: {m:?}", e.name));
        }
    }

    #[test]
    fn app_types_are_a_namespace() {
        assert!(is_known("app.order.shipped"));
        assert!(is_known("kpi.alert"));
        assert!(!is_known("app."));
        assert!(!is_known("app.Order"));
        assert!(!is_known("order.shipped"));
        assert!(!is_known(&format!("app.{}", "a".repeat(61))));
    }
}
