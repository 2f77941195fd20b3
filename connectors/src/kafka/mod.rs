//! Kafka through rdkafka: a consumer-group source, an idempotent producer sink, topic
//! administration, and the mapping of pipeline outputs to records.

mod admin;
mod follow;
mod offsets;
pub mod records;
mod sink;
mod source;

use std::collections::BTreeMap;

pub use admin::{TopicSpec, ensure_topics};
pub use follow::follow;
pub use offsets::{OffsetsReader, TailRecord, TopicRecord};
pub use sink::KafkaSink;
pub use source::{KafkaSource, PartitionListener, SourceEvent};

use rdkafka::ClientConfig;

/// How to reach the cluster. See `[kafka]` in `veriflow.toml`.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`
    pub brokers: String,
    pub group_id: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, ...), applied last.
    pub properties: BTreeMap<String, String>,
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
