//! Kafka as the runtime's [`Broker`]: one `[kafka]` configuration, from which
//! the consumer-group source, the idempotent producer, the offsets reader and
//! the compacted-topic follower are made.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use super::{KafkaConfig, KafkaSink, KafkaSource, OffsetsReader, ensure_topics, follow};
use crate::stream::{
    Broker, OnRecord, OutputLog, PartitionListener, RecordSink, StreamError, TailRecord,
    TopicRecord, TopicSpec,
};

#[derive(Debug, Clone)]
pub struct KafkaBroker {
    config: KafkaConfig,
}

impl KafkaBroker {
    pub fn new(config: KafkaConfig) -> Self {
        KafkaBroker { config }
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn with_group(&self, group: &str) -> KafkaConfig {
        KafkaConfig {
            group_id: group.to_owned(),
            ..self.config.clone()
        }
    }
}

impl Broker for KafkaBroker {
    type Source = KafkaSource;

    fn describe(&self) -> String {
        self.config.brokers.clone()
    }

    fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), StreamError> {
        ensure_topics(&self.config, topics).map_err(|e| {
            StreamError::new(
                "creating topics",
                format!("{e} (on {})", self.config.brokers),
            )
        })
    }

    fn subscribe(
        &self,
        group: &str,
        topic: &str,
        listener: Arc<dyn PartitionListener>,
    ) -> Result<KafkaSource, StreamError> {
        KafkaSource::subscribe(&self.with_group(group), topic, listener)
            .map_err(|e| StreamError::new("subscribing", format!("{topic}: {e}")))
    }

    fn sink(&self) -> Result<Arc<dyn RecordSink>, StreamError> {
        let sink = KafkaSink::new(&self.config).map_err(|e| StreamError::new("producer", e))?;
        Ok(Arc::new(sink))
    }

    fn log(&self, group: &str) -> Result<Arc<dyn OutputLog>, StreamError> {
        let reader = OffsetsReader::new(&self.with_group(group))
            .map_err(|e| StreamError::new("offsets reader", e))?;
        Ok(Arc::new(reader))
    }

    fn follow(
        &self,
        group: &str,
        topic: &str,
        stop: Arc<AtomicBool>,
        mut on_record: OnRecord,
    ) -> Result<JoinHandle<()>, StreamError> {
        follow(&self.with_group(group), topic, stop, move |k, v| {
            on_record(k, v)
        })
        .map_err(|e| StreamError::new("following", format!("{topic}: {e}")))
    }
}

impl OutputLog for OffsetsReader {
    fn high_watermarks(&self, topic: &str) -> Result<Vec<(i32, i64)>, StreamError> {
        OffsetsReader::high_watermarks(self, topic)
            .map_err(|e| StreamError::new("reading high watermarks", format!("{topic}: {e}")))
    }

    fn read_tail(&self, from: &[(String, i32, i64)]) -> Result<Vec<TailRecord>, StreamError> {
        OffsetsReader::read_tail(self, from)
            .map_err(|e| StreamError::new("reading back outputs", e))
    }

    fn read_topic(&self, topic: &str) -> Result<Vec<TopicRecord>, StreamError> {
        OffsetsReader::read_topic(self, topic)
            .map_err(|e| StreamError::new("reading a topic", format!("{topic}: {e}")))
    }
}
