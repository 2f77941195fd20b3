//! Following a compacted topic from its beginning, outside any consumer group: every
//! instance reads every partition, and keeps the latest value per key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{KafkaConfig, KafkaConnectorError};

/// Calls `on_record(key, value)` for every record of `topic`, old and new, on a
/// background thread, until `stop` is set.
pub fn follow(
    cfg: &KafkaConfig,
    topic: &str,
    stop: Arc<AtomicBool>,
    mut on_record: impl FnMut(&[u8], &[u8]) + Send + 'static,
) -> Result<JoinHandle<()>, KafkaConnectorError> {
    let mut c = cfg.client_config();
    c.set("group.id", format!("{}.follower", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    cfg.apply_overrides(&mut c);
    c.remove("group.instance.id");
    let consumer: BaseConsumer = c.create().map_err(KafkaConnectorError::Client)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(KafkaConnectorError::Consume)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .map_err(KafkaConnectorError::Consume)?;
        }
    }
    consumer
        .assign(&tpl)
        .map_err(KafkaConnectorError::Consume)?;
    let topic = topic.to_owned();
    std::thread::Builder::new()
        .name(format!("follow-{topic}"))
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        if let (Some(k), Some(v)) = (m.key(), m.payload()) {
                            on_record(k, v);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, topic, "following a compacted topic")
                    }
                    None => {}
                }
            }
        })
        .map_err(|_| {
            KafkaConnectorError::Consume(rdkafka::error::KafkaError::Global(
                rdkafka::types::RDKafkaErrorCode::Fail,
            ))
        })
}
