//! Idempotent producer. Delivery failures are counted and surfaced by [`KafkaSink::flush`],
//! which is how the caller learns that effects are durable before committing input.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::{KafkaConfig, KafkaConnectorError};

#[derive(Default)]
struct DeliveryTracker {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_error.lock()
                && first.is_none()
            {
                *first = Some(e.to_string());
            }
        }
    }
}

pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryTracker>,
}

impl KafkaSink {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaConnectorError> {
        let mut c = cfg.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "500000")
            .set("message.timeout.ms", "60000");
        cfg.apply_overrides(&mut c);
        let producer = c
            .create_with_context(DeliveryTracker::default())
            .map_err(KafkaConnectorError::Client)?;
        Ok(KafkaSink { producer })
    }

    /// Queues one message. When the local queue is full this waits for room
    /// (back-pressure) instead of dropping.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(), KafkaConnectorError> {
        let owned_headers = (!headers.is_empty()).then(|| {
            headers.iter().fold(
                OwnedHeaders::new_with_capacity(headers.len()),
                |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(*v),
                    })
                },
            )
        });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(h) = owned_headers {
            record = record.headers(h);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((source, _)) => {
                    return Err(KafkaConnectorError::Produce {
                        topic: topic.to_owned(),
                        source,
                    });
                }
            }
        }
    }

    /// Waits until every queued message is acknowledged by the broker, then reports
    /// any delivery failure since the last flush.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaConnectorError> {
        self.producer
            .flush(timeout)
            .map_err(|source| KafkaConnectorError::Produce {
                topic: "*".into(),
                source,
            })?;
        let ctx = self.producer.context();
        let failed = ctx.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let first = ctx
                .first_error
                .lock()
                .ok()
                .and_then(|mut f| f.take())
                .unwrap_or_default();
            return Err(KafkaConnectorError::Delivery {
                count: failed,
                first,
            });
        }
        Ok(())
    }
}

impl crate::stream::RecordSink for KafkaSink {
    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(), crate::stream::StreamError> {
        KafkaSink::send(self, topic, key, value, headers)
            .map_err(|e| crate::stream::StreamError::new("producing", e))
    }

    fn flush(&self, timeout: Duration) -> Result<(), crate::stream::StreamError> {
        KafkaSink::flush(self, timeout)
            .map_err(|e| crate::stream::StreamError::new("flushing the producer", e))
    }
}
