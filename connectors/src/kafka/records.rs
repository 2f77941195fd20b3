//! How pipeline outputs become Kafka records.
//!
//! Dead letters and late events follow Kafka Connect's dead-letter convention: the
//! value and key are the original bytes, untouched, and the context travels in
//! headers (`veriflow.reason`, `veriflow.field`, `veriflow.detail`,
//! `veriflow.source.topic`, `veriflow.source.partition`, `veriflow.source.offset`),
//! so a consumer can inspect, fix and re-produce the original message as it was.

use veriflow_pipelines::alerts::Alert;
use veriflow_pipelines::features::FeatureRecord;
use veriflow_pipelines::routes::{Counts, HALF_LIVES, RouteSnapshot};
use veriflow_pipelines::time::format_rfc3339;
use veriflow_pipelines::{Outcome, OutputId, Rejected};

use super::{KafkaConnectorError, KafkaSink};

pub const HEADER_REASON: &str = "veriflow.reason";
pub const HEADER_FIELD: &str = "veriflow.field";
pub const HEADER_DETAIL: &str = "veriflow.detail";
pub const HEADER_SOURCE_TOPIC: &str = "veriflow.source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "veriflow.source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "veriflow.source.offset";
pub const HEADER_OUTCOME_ID: &str = "veriflow.outcome_id";
pub const HEADER_FEATURES_ID: &str = "veriflow.features_id";
pub const HEADER_ALERT_ID: &str = "veriflow.alert_id";
pub const HEADER_SCORED_ID: &str = "veriflow.scored_id";

/// An outcome: key `tenant_id`, JSON value; its deterministic id and the input
/// partition that decided it in headers.
pub fn send_outcome(
    sink: &KafkaSink,
    topic: &str,
    source_topic: &str,
    outcome: &Outcome,
) -> Result<(), KafkaConnectorError> {
    let identity = Identity {
        header: HEADER_OUTCOME_ID,
        id: outcome.outcome_id(),
        source_topic,
        partition: outcome.partition,
    };
    send_identified(
        sink,
        topic,
        &outcome.tenant_id,
        &outcome.to_json_bytes(),
        identity,
    )
}

/// A feature record: key `tenant_id`, JSON value, its id and source in headers.
pub fn send_features(
    sink: &KafkaSink,
    topic: &str,
    source_topic: &str,
    record: &FeatureRecord,
) -> Result<(), KafkaConnectorError> {
    let identity = Identity {
        header: HEADER_FEATURES_ID,
        id: record.features_id(),
        source_topic,
        partition: record.partition,
    };
    send_identified(
        sink,
        topic,
        &record.request.tenant_id,
        &record.to_json_bytes(),
        identity,
    )
}

/// A scored request (`verifications.scored`): key `tenant`, the JSON built by
/// the scoring stage, its id (the features id) in the headers.
pub fn send_scored(
    sink: &KafkaSink,
    topic: &str,
    source_topic: &str,
    record: &FeatureRecord,
    value: &[u8],
) -> Result<(), KafkaConnectorError> {
    let identity = Identity {
        header: HEADER_SCORED_ID,
        id: record.features_id(),
        source_topic,
        partition: record.partition,
    };
    send_identified(sink, topic, &record.request.tenant_id, value, identity)
}

/// An alert, for the webhook fan-out: key `tenant` (`*` for a rule across tenants),
/// the Standard Webhooks body shape `{type, timestamp, data}`, its deterministic
/// `alert_id` in the headers (and in `data`).
pub fn send_alert(
    sink: &KafkaSink,
    topic: &str,
    source_topic: &str,
    alert: &Alert,
) -> Result<(), KafkaConnectorError> {
    let id = alert.alert_id();
    let body = serde_json::json!({
        "type": alert.event_type,
        "timestamp": format_rfc3339(alert.at),
        "data": {
            "alert_id": id,
            "rule": alert.rule,
            "severity": alert.severity,
            "tenant": alert.tenant.as_str(),
            "country": alert.country.as_str(),
            "provider": alert.provider.as_str(),
            "metric": alert.metric.as_str(),
            "value": alert.value,
            "baseline": alert.baseline,
            "threshold": alert.threshold,
            "volume": alert.volume,
            "window_start": format_rfc3339(alert.window_start),
            "message": alert.message,
        }
    });
    let identity = Identity {
        header: HEADER_ALERT_ID,
        id,
        source_topic,
        partition: alert.partition,
    };
    let value = serde_json::to_vec(&body).unwrap_or_default();
    send_identified(sink, topic, &alert.tenant, &value, identity)
}

/// What lets a restored run recognise a record it is about to write again.
struct Identity<'a> {
    header: &'static str,
    id: String,
    source_topic: &'a str,
    partition: i32,
}

fn send_identified(
    sink: &KafkaSink,
    topic: &str,
    tenant: &str,
    value: &[u8],
    identity: Identity<'_>,
) -> Result<(), KafkaConnectorError> {
    let partition = identity.partition.to_string();
    sink.send(
        topic,
        Some(tenant.as_bytes()),
        value,
        &[
            (identity.header, identity.id.as_bytes()),
            (HEADER_SOURCE_TOPIC, identity.source_topic.as_bytes()),
            (HEADER_SOURCE_PARTITION, partition.as_bytes()),
        ],
    )
}

/// Reads back `(source partition, output id)` from the headers of a record veriflow
/// wrote for `source_topic`; `None` for anything else.
pub fn output_identity(
    source_topic: &str,
    header: impl Fn(&str) -> Option<String>,
) -> Option<(i32, OutputId)> {
    if header(HEADER_SOURCE_TOPIC)?.as_str() != source_topic {
        return None;
    }
    let partition = header(HEADER_SOURCE_PARTITION)?.parse().ok()?;
    if let Some(id) = header(HEADER_FEATURES_ID) {
        return Some((partition, OutputId::Features(id)));
    }
    if let Some(id) = header(HEADER_ALERT_ID) {
        return Some((partition, OutputId::Alert(id)));
    }
    match header(HEADER_OUTCOME_ID) {
        Some(id) => Some((partition, OutputId::Outcome(id))),
        None => Some((
            partition,
            OutputId::Rejected(header(HEADER_SOURCE_OFFSET)?.parse().ok()?),
        )),
    }
}

/// A rejected input: original key and bytes, context in headers.
pub fn send_rejected(
    sink: &KafkaSink,
    topic: &str,
    source_topic: &str,
    rejected: &Rejected,
) -> Result<(), KafkaConnectorError> {
    let partition = rejected.partition.to_string();
    let offset = rejected.offset.to_string();
    let r = &rejected.rejection;
    let mut headers: Vec<(&str, &[u8])> = vec![
        (HEADER_REASON, r.reason.as_str().as_bytes()),
        (HEADER_DETAIL, r.detail.as_bytes()),
        (HEADER_SOURCE_TOPIC, source_topic.as_bytes()),
        (HEADER_SOURCE_PARTITION, partition.as_bytes()),
        (HEADER_SOURCE_OFFSET, offset.as_bytes()),
    ];
    if let Some(field) = r.field {
        headers.push((HEADER_FIELD, field.as_bytes()));
    }
    sink.send(topic, rejected.key.as_deref(), &rejected.payload, &headers)
}

/// One partition's statistics for one route, as published to the compacted
/// route-statistics topic (key `<source topic>/<partition>/<country>/<provider>`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RouteStatsRecord {
    pub source_topic: String,
    pub partition: i32,
    pub country: String,
    pub provider: String,
    /// Event time the decayed counts refer to (ms since the epoch).
    pub at_ms: i64,
    /// Decayed counts by half-life name (`5m`, `1h`, `24h`).
    pub windows: std::collections::BTreeMap<String, Counts>,
    pub total: Counts,
}

impl RouteStatsRecord {
    pub fn new(
        source_topic: &str,
        partition: i32,
        country: &str,
        provider: &str,
        s: &RouteSnapshot,
    ) -> Self {
        RouteStatsRecord {
            source_topic: source_topic.to_owned(),
            partition,
            country: country.to_owned(),
            provider: provider.to_owned(),
            at_ms: s.at,
            windows: HALF_LIVES
                .iter()
                .zip(s.decayed)
                .map(|((name, _), c)| ((*name).to_owned(), c))
                .collect(),
            total: s.total,
        }
    }

    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.source_topic, self.partition, self.country, self.provider
        )
    }

    pub fn snapshot(&self) -> RouteSnapshot {
        let mut decayed = [Counts::default(); 3];
        for (i, (name, _)) in HALF_LIVES.iter().enumerate() {
            decayed[i] = self.windows.get(*name).copied().unwrap_or_default();
        }
        RouteSnapshot {
            at: self.at_ms,
            decayed,
            total: self.total,
        }
    }
}

pub fn send_route_stats(
    sink: &KafkaSink,
    topic: &str,
    record: &RouteStatsRecord,
) -> Result<(), KafkaConnectorError> {
    let value = serde_json::to_vec(record).unwrap_or_default();
    sink.send(topic, Some(record.key().as_bytes()), &value, &[])
}
