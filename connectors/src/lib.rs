//! Sources and sinks: Kafka (rdkafka, bundled librdkafka) and JSON-lines files.
//!
//! Connectors move bytes and offsets. They know Kafka and files, not verification
//! semantics: mapping the pipeline's outputs to records is [`kafka::records`]' only job.

pub mod file;
pub mod influx;
pub mod kafka;
pub mod s3;
pub mod webhooks;
