//! Kafka through rdkafka: a consumer-group source, an idempotent producer sink, topic
//! administration, and the mapping of pipeline outputs to records.

mod admin;
mod broker;
mod follow;
mod offsets;
mod sink;
mod source;

use std::collections::BTreeMap;

pub use admin::ensure_topics;
pub use broker::KafkaBroker;
pub use follow::follow;
pub use offsets::OffsetsReader;
pub use sink::KafkaSink;
pub use source::{KafkaMessage, KafkaSource};

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use veriflow_common::config::{ConfigError, Validate, ensure};

/// `[kafka]`: how to reach the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`
    pub brokers: String,
    pub group_id: String,
    /// On restore, start this many records before the checkpoint's offset
    /// (for brokers that fetch from the next batch; see ARCHITECTURE.md).
    pub resume_rewind: i64,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, ...), applied
    /// last, passed through unchanged. Numbers and booleans are accepted as such
    /// (`session.timeout.ms = 6000`).
    #[serde(deserialize_with = "scalar_map")]
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "veriflow".into(),
            resume_rewind: 10_000,
            properties: BTreeMap::new(),
        }
    }
}

impl Validate for KafkaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            !self.brokers.trim().is_empty(),
            "brokers",
            "must name at least one host:port",
        )?;
        ensure(
            !self.group_id.trim().is_empty(),
            "group_id",
            "must not be empty",
        )?;
        ensure(
            self.resume_rewind >= 0,
            "resume_rewind",
            "must not be negative",
        )
    }
}

/// A table of scalars, each turned into the string librdkafka expects.
fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Text(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaConnectorError {
    #[error("kafka client setup failed: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {source}")]
    CreateTopic {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("producing to {topic}: {source}")]
    Produce {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("{count} message(s) could not be delivered; first error: {first}")]
    Delivery { count: u64, first: String },
    #[error("committing offsets: {0}")]
    Commit(#[source] rdkafka::error::KafkaError),
    #[error("consuming: {0}")]
    Consume(#[source] rdkafka::error::KafkaError),
}

impl KafkaConfig {
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", "veriflow");
        c
    }

    pub(crate) fn apply_overrides(&self, c: &mut ClientConfig) {
        for (k, v) in &self.properties {
            c.set(k, v);
        }
    }
}
