//! Sources and sinks: Kafka (rdkafka, bundled librdkafka), an in-process log
//! of the same shape, InfluxDB, object stores, JSON-lines files, webhooks.
//!
//! Connectors move bytes and offsets. They know Kafka, HTTP and files, not
//! verification semantics: mapping the pipeline's outputs to records is
//! [`records`]' only job. [`stream`] states the seam the runtime drives
//! (source, sink, output log, broker); [`kafka`] and [`memory`] keep it.

pub mod file;
pub mod influx;
pub mod kafka;
pub mod memory;
pub mod records;
pub mod s3;
pub mod stream;
pub mod webhooks;
