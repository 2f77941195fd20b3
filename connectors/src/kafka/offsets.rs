//! Reading positions and tails of topics, outside any consumer group. Used to record
//! where the outputs stood at a checkpoint, and after a crash to find which outputs
//! were already written past that point.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{KafkaConfig, KafkaConnectorError};
use crate::stream::{TailRecord, TopicRecord};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a partition must stay silent past its reported end to count as read.
const QUIET: Duration = Duration::from_millis(500);
/// How long a read may go without a record while partitions are still unread.
const STALL: Duration = Duration::from_secs(30);

pub struct OffsetsReader {
    consumer: BaseConsumer,
}

impl OffsetsReader {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaConnectorError> {
        let mut c = cfg.client_config();
        // A group id is required by the client, but this reader never joins or commits.
        c.set("group.id", format!("{}.offsets-reader", cfg.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        cfg.apply_overrides(&mut c);
        c.remove("group.instance.id");
        let consumer = c.create().map_err(KafkaConnectorError::Client)?;
        Ok(OffsetsReader { consumer })
    }

    /// `(partition, high watermark)` for every partition of `topic`.
    pub fn high_watermarks(&self, topic: &str) -> Result<Vec<(i32, i64)>, KafkaConnectorError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(KafkaConnectorError::Consume)?;
        let mut out = Vec::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(topic, p.id(), TIMEOUT)
                    .map_err(KafkaConnectorError::Consume)?;
                out.push((p.id(), high));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every record from each `(topic, partition, from_offset)` to the current end.
    pub fn read_tail(
        &self,
        from: &[(String, i32, i64)],
    ) -> Result<Vec<TailRecord>, KafkaConnectorError> {
        let mut records = Vec::new();
        self.read_to_end(from, |m| {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            records.push(TailRecord {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                headers,
            });
        })?;
        Ok(records)
    }

    /// Every record of every partition of `topic`, from the beginning to the
    /// current end (history to replay, e.g. for training).
    pub fn read_topic(&self, topic: &str) -> Result<Vec<TopicRecord>, KafkaConnectorError> {
        let from: Vec<(String, i32, i64)> = self
            .high_watermarks(topic)?
            .into_iter()
            .map(|(partition, _)| (topic.to_owned(), partition, 0))
            .collect();
        let mut records = Vec::new();
        self.read_to_end(&from, |m| {
            records.push(TopicRecord {
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis(),
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        })?;
        Ok(records)
    }

    /// Hands each record from each `(topic, partition, from_offset)` to the
    /// current end to `each`. The end is where a partition stays quiet after
    /// the reported high watermark was reached: tansu 0.6.0 reports the last
    /// *batch's* base offset + 1 as the high watermark, which would cut the
    /// read short. A read that makes no progress for [`STALL`] fails.
    fn read_to_end(
        &self,
        from: &[(String, i32, i64)],
        mut each: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<(), KafkaConnectorError> {
        let mut tpl = TopicPartitionList::new();
        let mut ends: HashMap<(String, i32), i64> = HashMap::new();
        for (topic, partition, offset) in from {
            let (_, high) = self
                .consumer
                .fetch_watermarks(topic, *partition, TIMEOUT)
                .map_err(KafkaConnectorError::Consume)?;
            if high > *offset {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(KafkaConnectorError::Consume)?;
                ends.insert((topic.clone(), *partition), high);
            }
        }
        if ends.is_empty() {
            return Ok(());
        }
        self.consumer
            .assign(&tpl)
            .map_err(KafkaConnectorError::Consume)?;
        let mut last_progress = Instant::now();
        let mut quiet_since: Option<Instant> = None;
        loop {
            let Some(result) = self.consumer.poll(Duration::from_millis(100)) else {
                if ends.is_empty() {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= QUIET {
                        break;
                    }
                } else if last_progress.elapsed() > STALL {
                    let _ = self.consumer.unassign();
                    return Err(KafkaConnectorError::Consume(
                        rdkafka::error::KafkaError::MessageConsumption(
                            rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                        ),
                    ));
                }
                continue;
            };
            quiet_since = None;
            last_progress = Instant::now();
            let m = result.map_err(KafkaConnectorError::Consume)?;
            each(&m);
            let key = (m.topic().to_owned(), m.partition());
            if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                ends.remove(&key);
            }
        }
        let _ = self.consumer.unassign();
        Ok(())
    }
}
