//! How pipeline outputs become Kafka records.
//!
//! Dead letters and late events follow Kafka Connect's dead-letter convention: the
//! value and key are the original bytes, untouched, and the context travels in
//! headers (`veriflow.reason`, `veriflow.field`, `veriflow.detail`,
//! `veriflow.source.topic`, `veriflow.source.partition`, `veriflow.source.offset`),
//! so a consumer can inspect, fix and re-produce the original message as it was.

use veriflow_pipelines::{Outcome, Rejected};

use super::{KafkaConnectorError, KafkaSink};

pub const HEADER_REASON: &str = "veriflow.reason";
pub const HEADER_FIELD: &str = "veriflow.field";
pub const HEADER_DETAIL: &str = "veriflow.detail";
pub const HEADER_SOURCE_TOPIC: &str = "veriflow.source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "veriflow.source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "veriflow.source.offset";
pub const HEADER_OUTCOME_ID: &str = "veriflow.outcome_id";

/// An outcome: key `tenant_id`, JSON value, and its deterministic id as a header.
pub fn send_outcome(
    sink: &KafkaSink,
    topic: &str,
    outcome: &Outcome,
) -> Result<(), KafkaConnectorError> {
    let id = outcome.outcome_id();
    sink.send(
        topic,
        Some(outcome.tenant_id.as_bytes()),
        &outcome.to_json_bytes(),
        &[(HEADER_OUTCOME_ID, id.as_bytes())],
    )
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
