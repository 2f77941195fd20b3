//! Consumer-group source. Offsets are committed only when the caller says so — after
//! the effects of everything before them are durable — never automatically.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::bindings::rd_kafka_resp_err_t as RDKafkaRespErr;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{KafkaConfig, KafkaConnectorError};
use crate::stream::{PartitionListener, SourceEvent, StreamError};

struct SourceContext {
    topic: String,
    listener: Arc<dyn PartitionListener>,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition is reported through `SourceEvent::EndOfPartition`, not an error.
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::warn!(%error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for SourceContext {
    /// Replaces rdkafka's default so that restored partitions start where their
    /// checkpoint says, set in the assignment itself — which works for both the eager
    /// and the cooperative protocol (a second `assign` inside the callback does not).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                for (partition, offset) in self.listener.assigned(&partitions_of(tpl, &self.topic))
                {
                    if let Err(e) =
                        tpl.set_partition_offset(&self.topic, partition, Offset::Offset(offset))
                    {
                        tracing::error!(error = %e, partition, "cannot position a restored partition");
                    }
                }
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let offsets = self.listener.revoked(&partitions_of(tpl, &self.topic));
                if !offsets.is_empty()
                    && let Err(e) = commit(consumer, &self.topic, &offsets)
                {
                    tracing::warn!(error = %e, "commit on revoke failed; the next owner replays from the previous commit");
                }
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "consumer group rebalance error");
                if cooperative {
                    Ok(())
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying a rebalance failed");
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect()
}

fn commit(
    consumer: &BaseConsumer<SourceContext>,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Result<(), KafkaConnectorError> {
    let mut tpl = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(KafkaConnectorError::Commit)?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(KafkaConnectorError::Commit)
}

/// One consumed record.
pub struct KafkaMessage<'a>(BorrowedMessage<'a>);

impl crate::stream::Message for KafkaMessage<'_> {
    fn partition(&self) -> i32 {
        self.0.partition()
    }
    fn offset(&self) -> i64 {
        self.0.offset()
    }
    fn key(&self) -> Option<&[u8]> {
        self.0.key()
    }
    fn payload(&self) -> &[u8] {
        self.0.payload().unwrap_or_default()
    }
}

pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    topic: String,
}

impl KafkaSource {
    /// Joins the consumer group and subscribes to `topic`. Without a committed offset
    /// a partition starts at its beginning: nothing produced before veriflow first
    /// ran is skipped.
    pub fn subscribe(
        cfg: &KafkaConfig,
        topic: &str,
        listener: Arc<dyn PartitionListener>,
    ) -> Result<Self, KafkaConnectorError> {
        let mut c = cfg.client_config();
        c.set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            // Incremental rebalancing: partitions move one by one instead of the whole
            // group stopping, and a member that died is replaced cleanly.
            .set("partition.assignment.strategy", "cooperative-sticky")
            // Short, so a crashed member is replaced quickly (6 s is the broker minimum;
            // on tansu 0.6.0 a lone replacement after a crash only joins with it).
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000");
        cfg.apply_overrides(&mut c);
        let consumer: BaseConsumer<SourceContext> = c
            .create_with_context(SourceContext {
                topic: topic.to_owned(),
                listener,
            })
            .map_err(KafkaConnectorError::Client)?;
        consumer
            .subscribe(&[topic])
            .map_err(KafkaConnectorError::Client)?;
        Ok(KafkaSource {
            consumer,
            topic: topic.to_owned(),
        })
    }

    pub fn poll(
        &self,
        timeout: Duration,
    ) -> Result<SourceEvent<KafkaMessage<'_>>, KafkaConnectorError> {
        match self.consumer.poll(timeout) {
            None => Ok(SourceEvent::Idle),
            Some(Ok(message)) => Ok(SourceEvent::Record(KafkaMessage(message))),
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                Ok(SourceEvent::EndOfPartition(partition))
            }
            Some(Err(e)) => Err(KafkaConnectorError::Consume(e)),
        }
    }

    /// Commits `next offset to read` per partition, synchronously.
    pub fn commit(&self, offsets: &[(i32, i64)]) -> Result<(), KafkaConnectorError> {
        if offsets.is_empty() {
            return Ok(());
        }
        commit(&self.consumer, &self.topic, offsets)
    }

    /// Leaves and rejoins the group, forcing a new generation. For an instance left
    /// without partitions by a coordinator that kept a dead member as the group's
    /// leader (tansu 0.6.0 does after a crash): the dead leader never hands out an
    /// assignment, and a fresh JoinGroup gets it replaced.
    pub fn rejoin(&self) -> Result<(), KafkaConnectorError> {
        self.consumer.unsubscribe();
        self.consumer
            .subscribe(&[self.topic.as_str()])
            .map_err(KafkaConnectorError::Client)
    }

    /// Leaves the group; the revoke callback runs for the remaining partitions.
    pub fn close(self) {
        self.consumer.unsubscribe();
    }
}

impl crate::stream::Source for KafkaSource {
    type Message<'a> = KafkaMessage<'a>;

    fn poll(&self, timeout: Duration) -> Result<SourceEvent<KafkaMessage<'_>>, StreamError> {
        KafkaSource::poll(self, timeout).map_err(|e| StreamError::new("consuming", e))
    }

    fn commit(&self, offsets: &[(i32, i64)]) -> Result<(), StreamError> {
        KafkaSource::commit(self, offsets).map_err(|e| StreamError::new("committing offsets", e))
    }

    fn rejoin(&self) -> Result<(), StreamError> {
        KafkaSource::rejoin(self).map_err(|e| StreamError::new("rejoining the group", e))
    }

    fn close(self) {
        KafkaSource::close(self)
    }
}
