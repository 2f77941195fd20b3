//! How pipeline outputs become Kafka records.
//!
//! Dead letters and late events follow Kafka Connect's dead-letter convention: the
//! value and key are the original bytes, untouched, and the context travels in
//! headers (`veriflow.reason`, `veriflow.field`, `veriflow.detail`,
//! `veriflow.source.topic`, `veriflow.source.partition`, `veriflow.source.offset`),
//! so a consumer can inspect, fix and re-produce the original message as it was.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use veriflow_pipelines::alerts::Alert;
use veriflow_pipelines::features::FeatureRecord;
use veriflow_pipelines::routes::{Counts, HALF_LIVES, RouteSnapshot};
use veriflow_pipelines::scoring::ScoredRequest;
use veriflow_pipelines::time::format_rfc3339;
use veriflow_pipelines::{Outcome, OutputId, Rejected};

use crate::stream::{RecordSink, StreamError};

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
    sink: &dyn RecordSink,
    topic: &str,
    source_topic: &str,
    outcome: &Outcome,
) -> Result<(), StreamError> {
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
    sink: &dyn RecordSink,
    topic: &str,
    source_topic: &str,
    record: &FeatureRecord,
) -> Result<(), StreamError> {
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
    sink: &dyn RecordSink,
    topic: &str,
    source_topic: &str,
    scored: &ScoredRequest,
) -> Result<(), StreamError> {
    let identity = Identity {
        header: HEADER_SCORED_ID,
        id: scored.scored_id.clone(),
        source_topic,
        partition: scored.partition,
    };
    send_identified(sink, topic, &scored.tenant_id, &scored.record, identity)
}

/// A `veriflow.alerts` record as written and read: the Standard Webhooks
/// body shape `{type, timestamp, data}`, so the fan-out passes `data` on as is.
/// Fields are in alphabetical order, the order the record has always had on
/// the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord<'a> {
    #[serde(borrow)]
    pub data: AlertData<'a>,
    pub timestamp: String,
    /// `kpi.alert` or `route.degraded`.
    #[serde(rename = "type", borrow)]
    pub event_type: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertData<'a> {
    /// Deterministic: rule, key and window.
    #[serde(borrow)]
    pub alert_id: Cow<'a, str>,
    pub baseline: Option<f64>,
    #[serde(borrow)]
    pub country: Cow<'a, str>,
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow)]
    pub metric: Cow<'a, str>,
    #[serde(borrow)]
    pub provider: Cow<'a, str>,
    #[serde(borrow)]
    pub rule: Cow<'a, str>,
    #[serde(borrow)]
    pub severity: Cow<'a, str>,
    /// `*` for a rule across tenants.
    #[serde(borrow)]
    pub tenant: Cow<'a, str>,
    pub threshold: f64,
    pub value: f64,
    pub volume: u32,
    pub window_start: String,
}

impl<'a> AlertRecord<'a> {
    pub fn of(alert: &'a Alert) -> Self {
        AlertRecord {
            event_type: Cow::Borrowed(&alert.event_type),
            timestamp: format_rfc3339(alert.at),
            data: AlertData {
                alert_id: Cow::Owned(alert.alert_id()),
                rule: Cow::Borrowed(&alert.rule),
                severity: Cow::Borrowed(&alert.severity),
                tenant: Cow::Borrowed(&alert.tenant),
                country: Cow::Borrowed(&alert.country),
                provider: Cow::Borrowed(&alert.provider),
                metric: Cow::Borrowed(alert.metric.as_str()),
                value: alert.value,
                baseline: alert.baseline,
                threshold: alert.threshold,
                volume: alert.volume,
                window_start: format_rfc3339(alert.window_start),
                message: Cow::Borrowed(&alert.message),
            },
        }
    }
}

/// An alert, for the webhook fan-out: key `tenant` (`*` for a rule across tenants),
/// an [`AlertRecord`], its deterministic `alert_id` in the headers (and in `data`).
pub fn send_alert(
    sink: &dyn RecordSink,
    topic: &str,
    source_topic: &str,
    alert: &Alert,
) -> Result<(), StreamError> {
    let record = AlertRecord::of(alert);
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let identity = Identity {
        header: HEADER_ALERT_ID,
        id: record.data.alert_id.into_owned(),
        source_topic,
        partition: alert.partition,
    };
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
    sink: &dyn RecordSink,
    topic: &str,
    tenant: &str,
    value: &[u8],
    identity: Identity<'_>,
) -> Result<(), StreamError> {
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
    if let Some(id) = header(HEADER_SCORED_ID) {
        return Some((partition, OutputId::Scored(id)));
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
    sink: &dyn RecordSink,
    topic: &str,
    source_topic: &str,
    rejected: &Rejected,
) -> Result<(), StreamError> {
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
    sink: &dyn RecordSink,
    topic: &str,
    record: &RouteStatsRecord,
) -> Result<(), StreamError> {
    let value = serde_json::to_vec(record).unwrap_or_default();
    sink.send(topic, Some(record.key().as_bytes()), &value, &[])
}
