//! The seam between the engine's driver and a log of partitioned records:
//! what the runtime needs of "Kafka", stated once, so that it runs over the
//! real broker ([`crate::kafka::KafkaBroker`]) and, for tests, demos and
//! replays, over an in-process log ([`crate::memory::MemoryBroker`]).
//!
//! The contract each implementation keeps:
//! - a [`Source`] belongs to one consumer group and one input topic. It
//!   calls its [`PartitionListener`] *inside* `poll`, on the polling thread:
//!   `revoked` before a partition goes (the offsets it returns are committed
//!   before anyone else gets the partition), `assigned` when one arrives (the
//!   offsets it returns replace the committed start).
//! - offsets are committed only by [`Source::commit`], never automatically.
//! - a [`RecordSink`] may hold records until [`RecordSink::flush`] returns
//!   `Ok`; after that every record sent before it is in the log, in order per
//!   partition. A record for one key always lands in one partition.
//! - an [`OutputLog`] reads positions and tails of topics outside any group.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

/// Errors of any implementation, as text plus what failed: the driver can
/// only report them (and stop), so one type serves all.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct StreamError {
    pub what: &'static str,
    pub message: String,
}

impl StreamError {
    pub fn new(what: &'static str, message: impl std::fmt::Display) -> Self {
        StreamError {
            what,
            message: message.to_string(),
        }
    }
}

/// A topic veriflow reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// `cleanup.policy=compact` (state and changelog topics).
    pub compacted: bool,
}

/// One consumed record.
pub trait Message {
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn key(&self) -> Option<&[u8]>;
    /// An empty message (a tombstone) is an empty payload.
    fn payload(&self) -> &[u8];
}

pub enum SourceEvent<M> {
    Record(M),
    /// The consumer reached the current end of a partition.
    EndOfPartition(i32),
    /// Nothing arrived within the poll timeout.
    Idle,
}

/// Told about partitions coming and going, from inside the source's poll.
pub trait PartitionListener: Send + Sync {
    /// Partitions newly assigned to this instance (restore their state here).
    /// Returns `(partition, offset)` for partitions that must start somewhere other
    /// than their committed offset.
    fn assigned(&self, partitions: &[i32]) -> Vec<(i32, i64)>;
    /// Partitions about to be taken away. Make their effects durable and return the
    /// offsets to commit for them; they are committed before the partitions go.
    fn revoked(&self, partitions: &[i32]) -> Vec<(i32, i64)>;
}

/// A consumer-group member reading one topic.
pub trait Source {
    type Message<'a>: Message
    where
        Self: 'a;

    fn poll(&self, timeout: Duration) -> Result<SourceEvent<Self::Message<'_>>, StreamError>;
    /// Commits `next offset to read` per partition, synchronously.
    fn commit(&self, offsets: &[(i32, i64)]) -> Result<(), StreamError>;
    /// Leaves and rejoins the group (a member left without partitions by a
    /// coordinator that kept a dead leader; see ARCHITECTURE.md).
    fn rejoin(&self) -> Result<(), StreamError>;
    /// Leaves the group; the revoke callback runs for the remaining partitions.
    fn close(self);
}

/// Where outputs go.
pub trait RecordSink: Send + Sync {
    /// Queues one record; waits for room when the queue is full (back-pressure,
    /// never loss).
    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(), StreamError>;
    /// Waits until every record queued so far is in the log; reports any
    /// delivery failure since the last flush.
    fn flush(&self, timeout: Duration) -> Result<(), StreamError>;
}

/// A record read back from a topic: where it is, and its headers.
#[derive(Debug, Clone)]
pub struct TailRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TailRecord {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// A record of a topic read whole: where it is, when it was produced, its value.
#[derive(Debug, Clone)]
pub struct TopicRecord {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (producer create time, or log append time).
    pub timestamp_ms: Option<i64>,
    pub payload: Vec<u8>,
}

/// Positions and tails of topics, outside any group.
pub trait OutputLog: Send + Sync {
    /// `(partition, end offset)` for every partition of `topic`.
    fn high_watermarks(&self, topic: &str) -> Result<Vec<(i32, i64)>, StreamError>;
    /// Every record from each `(topic, partition, from_offset)` to the current end.
    fn read_tail(&self, from: &[(String, i32, i64)]) -> Result<Vec<TailRecord>, StreamError>;
    /// Every record of every partition of `topic`, from the beginning.
    fn read_topic(&self, topic: &str) -> Result<Vec<TopicRecord>, StreamError>;
}

/// What a follower calls with each `(key, value)` of the topic it follows.
pub type OnRecord = Box<dyn FnMut(&[u8], &[u8]) + Send>;

/// A log of partitioned topics: what the runtime is deployed on.
pub trait Broker: Send + Sync + 'static {
    type Source: Source + Send;
    /// Where it is, for logs and errors (`127.0.0.1:9092`, `memory`).
    fn describe(&self) -> String;
    /// Creates the topics that do not exist yet; existing ones stay as they are.
    fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), StreamError>;
    /// Joins `group` and subscribes to `topic`. Without a committed offset a
    /// partition starts at its beginning.
    fn subscribe(
        &self,
        group: &str,
        topic: &str,
        listener: Arc<dyn PartitionListener>,
    ) -> Result<Self::Source, StreamError>;
    fn sink(&self) -> Result<Arc<dyn RecordSink>, StreamError>;
    fn log(&self, group: &str) -> Result<Arc<dyn OutputLog>, StreamError>;
    /// Calls `on_record(key, value)` for every record of `topic`, old and new,
    /// on a thread of its own, until `stop` is set.
    fn follow(
        &self,
        group: &str,
        topic: &str,
        stop: Arc<AtomicBool>,
        on_record: OnRecord,
    ) -> Result<JoinHandle<()>, StreamError>;
}

/// The partitions of `topic` as the log reports them.
pub fn partitions_of(log: &dyn OutputLog, topic: &str) -> Result<BTreeSet<i32>, StreamError> {
    Ok(log
        .high_watermarks(topic)?
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}
