//! An in-process log of partitioned topics with consumer groups: the
//! [`Broker`] the demo, in-process replays and the delivery-guarantee tests run
//! on, with no server.
//!
//! It keeps the contract of [`crate::stream`] the way Kafka does, including
//! the parts that make crashes interesting:
//! - a [`MemorySink`] holds records until [`RecordSink::flush`] (or until it
//!   has [`MemoryBroker::with_linger`] records), so a process that dies loses
//!   what it had not flushed, as a producer's queue dies with its process;
//! - a [`MemorySource`] dropped without [`Source::close`] is a member that
//!   died: its partitions are free at once for the others, with no revoke
//!   callback and no commit (a session timeout, immediately);
//! - partitions move between members cooperatively: a partition is assigned
//!   only after its previous owner's revoke callback ran (and committed).
//!
//! Assignment: the members of a group, in joining order, take the partitions
//! round-robin (partition `p` to member `p % members`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use veriflow_common::hash::partition_of;

use crate::stream::{
    Broker, Message, OnRecord, OutputLog, PartitionListener, RecordSink, Source, SourceEvent,
    StreamError, TailRecord, TopicRecord, TopicSpec,
};

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl StoredRecord {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

#[derive(Default)]
struct Group {
    /// Member ids in joining order.
    members: Vec<u64>,
    /// Which member holds each partition now (per topic).
    owner: HashMap<(String, i32), u64>,
    committed: HashMap<(String, i32), i64>,
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, Vec<Vec<StoredRecord>>>,
    groups: HashMap<String, Group>,
}

struct Shared {
    state: Mutex<State>,
    /// Notified on every append, commit and membership change.
    changed: Condvar,
    next_member: AtomicU64,
    /// Records a sink holds before it appends them without a flush.
    linger: usize,
    /// Partitions of a topic created by a first write.
    default_partitions: i32,
}

/// The in-process log. Cloning shares it.
#[derive(Clone)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        MemoryBroker::new(4)
    }
}

impl MemoryBroker {
    /// A broker whose topics, when created by a first write, have `partitions`.
    pub fn new(partitions: i32) -> Self {
        MemoryBroker {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                next_member: AtomicU64::new(1),
                linger: 64,
                default_partitions: partitions.max(1),
            }),
        }
    }

    /// Sinks append without a flush once they hold `records` (0: only at flush).
    pub fn with_linger(self, records: usize) -> Self {
        let shared = Arc::try_unwrap(self.shared)
            .map(|mut s| {
                s.linger = records;
                Arc::new(s)
            })
            .unwrap_or_else(|shared| shared);
        MemoryBroker { shared }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.state()
            .topics
            .entry(name.to_owned())
            .or_insert_with(|| vec![Vec::new(); partitions.max(1) as usize]);
    }

    /// Appends one record to `topic` (created if missing), in the partition of
    /// its key (`partition_of`), or partition 0 without a key. Returns
    /// `(partition, offset)`.
    pub fn produce(&self, topic: &str, key: Option<&[u8]>, value: &[u8]) -> (i32, i64) {
        let record = StoredRecord {
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            headers: Vec::new(),
        };
        let at = self.append(topic, std::iter::once(record));
        at[0]
    }

    fn append(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = StoredRecord>,
    ) -> Vec<(i32, i64)> {
        let mut state = self.state();
        let partitions = state
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| vec![Vec::new(); self.shared.default_partitions as usize]);
        let n = partitions.len() as u32;
        let mut at = Vec::new();
        for r in records {
            let p = r.key.as_deref().map_or(0, |k| partition_of(k, n));
            let log = &mut partitions[p as usize];
            at.push((p, log.len() as i64));
            log.push(r);
        }
        drop(state);
        self.shared.changed.notify_all();
        at
    }

    /// Every record of `topic`: `(partition, offset, record)`, by partition and offset.
    pub fn records(&self, topic: &str) -> Vec<(i32, i64, StoredRecord)> {
        let state = self.state();
        let Some(partitions) = state.topics.get(topic) else {
            return Vec::new();
        };
        partitions
            .iter()
            .enumerate()
            .flat_map(|(p, log)| {
                log.iter()
                    .enumerate()
                    .map(move |(o, r)| (p as i32, o as i64, r.clone()))
            })
            .collect()
    }

    /// The group's committed offsets for `topic`.
    pub fn committed(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        let state = self.state();
        state
            .groups
            .get(group)
            .map(|g| {
                g.committed
                    .iter()
                    .filter(|((t, _), _)| t == topic)
                    .map(|((_, p), o)| (*p, *o))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Broker for MemoryBroker {
    type Source = MemorySource;

    fn describe(&self) -> String {
        "memory".into()
    }

    fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), StreamError> {
        for t in topics {
            self.create_topic(&t.name, t.partitions);
        }
        Ok(())
    }

    fn subscribe(
        &self,
        group: &str,
        topic: &str,
        listener: Arc<dyn PartitionListener>,
    ) -> Result<MemorySource, StreamError> {
        let id = self.shared.next_member.fetch_add(1, Ordering::Relaxed);
        self.state()
            .groups
            .entry(group.to_owned())
            .or_default()
            .members
            .push(id);
        self.shared.changed.notify_all();
        Ok(MemorySource {
            broker: self.clone(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            member: id,
            listener,
            positions: Mutex::new(BTreeMap::new()),
            at_end: Mutex::new(BTreeSet::new()),
            cursor: Mutex::new(0),
            closed: AtomicBool::new(false),
        })
    }

    fn sink(&self) -> Result<Arc<dyn RecordSink>, StreamError> {
        Ok(Arc::new(MemorySink {
            broker: self.clone(),
            pending: Mutex::new(Vec::new()),
        }))
    }

    fn log(&self, _group: &str) -> Result<Arc<dyn OutputLog>, StreamError> {
        Ok(Arc::new(self.clone()))
    }

    fn follow(
        &self,
        _group: &str,
        topic: &str,
        stop: Arc<AtomicBool>,
        mut on_record: OnRecord,
    ) -> Result<JoinHandle<()>, StreamError> {
        let broker = self.clone();
        let topic = topic.to_owned();
        std::thread::Builder::new()
            .name(format!("follow-{topic}"))
            .spawn(move || {
                let mut next: Vec<usize> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let fresh: Vec<StoredRecord> = {
                        let state = broker.state();
                        let mut fresh = Vec::new();
                        if let Some(partitions) = state.topics.get(&topic) {
                            next.resize(partitions.len(), 0);
                            for (p, log) in partitions.iter().enumerate() {
                                fresh.extend(log[next[p]..].iter().cloned());
                                next[p] = log.len();
                            }
                        }
                        fresh
                    };
                    for r in &fresh {
                        if let Some(k) = &r.key {
                            on_record(k, &r.value);
                        }
                    }
                    if fresh.is_empty() {
                        let state = broker.state();
                        let _ = broker
                            .shared
                            .changed
                            .wait_timeout(state, Duration::from_millis(50));
                    }
                }
            })
            .map_err(|e| StreamError::new("starting a follower thread", e))
    }
}

impl OutputLog for MemoryBroker {
    fn high_watermarks(&self, topic: &str) -> Result<Vec<(i32, i64)>, StreamError> {
        let state = self.state();
        Ok(state
            .topics
            .get(topic)
            .map(|ps| {
                ps.iter()
                    .enumerate()
                    .map(|(p, log)| (p as i32, log.len() as i64))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn read_tail(&self, from: &[(String, i32, i64)]) -> Result<Vec<TailRecord>, StreamError> {
        let state = self.state();
        let mut out = Vec::new();
        for (topic, partition, offset) in from {
            let Some(log) = state
                .topics
                .get(topic)
                .and_then(|ps| ps.get(*partition as usize))
            else {
                continue;
            };
            for (o, r) in log.iter().enumerate().skip((*offset).max(0) as usize) {
                out.push(TailRecord {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: o as i64,
                    headers: r.headers.clone(),
                });
            }
        }
        Ok(out)
    }

    fn read_topic(&self, topic: &str) -> Result<Vec<TopicRecord>, StreamError> {
        Ok(self
            .records(topic)
            .into_iter()
            .map(|(partition, offset, r)| TopicRecord {
                partition,
                offset,
                timestamp_ms: None,
                payload: r.value,
            })
            .collect())
    }
}

/// A record handed out by [`MemorySource::poll`].
pub struct MemoryMessage {
    partition: i32,
    offset: i64,
    record: StoredRecord,
}

impl Message for MemoryMessage {
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn key(&self) -> Option<&[u8]> {
        self.record.key.as_deref()
    }
    fn payload(&self) -> &[u8] {
        &self.record.value
    }
}

/// A member of a consumer group on a [`MemoryBroker`].
pub struct MemorySource {
    broker: MemoryBroker,
    group: String,
    topic: String,
    member: u64,
    listener: Arc<dyn PartitionListener>,
    /// Next offset to read, per held partition.
    positions: Mutex<BTreeMap<i32, i64>>,
    /// Held partitions whose end was reported since their last record.
    at_end: Mutex<BTreeSet<i32>>,
    /// Round-robin position over held partitions.
    cursor: Mutex<usize>,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemorySource {
    /// This member's partitions should be: `p % members == my index`.
    fn target(&self, state: &State) -> BTreeSet<i32> {
        let Some(group) = state.groups.get(&self.group) else {
            return BTreeSet::new();
        };
        let Some(index) = group.members.iter().position(|m| *m == self.member) else {
            return BTreeSet::new();
        };
        let n = group.members.len();
        let partitions = state.topics.get(&self.topic).map_or(0, Vec::len);
        (0..partitions as i32)
            .filter(|p| *p as usize % n == index)
            .collect()
    }

    /// Applies membership changes: revokes what is no longer ours (the
    /// listener checkpoints, we commit), then takes what is ours and free.
    fn rebalance(&self) {
        let held: BTreeSet<i32> = lock(&self.positions).keys().copied().collect();
        let target = self.target(&self.broker.state());
        let revoke: Vec<i32> = held.difference(&target).copied().collect();
        if !revoke.is_empty() {
            let offsets = self.listener.revoked(&revoke);
            let _ = Source::commit(self, &offsets);
            let mut state = self.broker.state();
            if let Some(g) = state.groups.get_mut(&self.group) {
                for p in &revoke {
                    g.owner.remove(&(self.topic.clone(), *p));
                }
            }
            drop(state);
            let mut positions = lock(&self.positions);
            for p in &revoke {
                positions.remove(p);
                lock(&self.at_end).remove(p);
            }
            self.broker.shared.changed.notify_all();
        }
        let assign: Vec<i32> = {
            let mut state = self.broker.state();
            let topic = self.topic.clone();
            let Some(g) = state.groups.get_mut(&self.group) else {
                return;
            };
            let free: Vec<i32> = target
                .iter()
                .copied()
                .filter(|p| !held.contains(p) && !g.owner.contains_key(&(topic.clone(), *p)))
                .collect();
            for p in &free {
                g.owner.insert((topic.clone(), *p), self.member);
            }
            free
        };
        if assign.is_empty() {
            return;
        }
        let starts: HashMap<i32, i64> = self.listener.assigned(&assign).into_iter().collect();
        let committed = self.broker.committed(&self.group, &self.topic);
        let mut positions = lock(&self.positions);
        for p in assign {
            let start = starts
                .get(&p)
                .or_else(|| committed.get(&p))
                .copied()
                .unwrap_or(0);
            positions.insert(p, start);
        }
    }

    /// The next record of a held partition, round-robin; or a newly reached end.
    fn next_record(&self) -> Option<SourceEvent<MemoryMessage>> {
        let state = self.broker.state();
        let logs = state.topics.get(&self.topic)?;
        let mut positions = lock(&self.positions);
        let held: Vec<i32> = positions.keys().copied().collect();
        if held.is_empty() {
            return None;
        }
        let mut cursor = lock(&self.cursor);
        let mut at_end = lock(&self.at_end);
        for i in 0..held.len() {
            let p = held[(*cursor + i) % held.len()];
            let Some(log) = logs.get(p as usize) else {
                continue;
            };
            let Some(next) = positions.get_mut(&p) else {
                continue;
            };
            if let Some(record) = log.get((*next).max(0) as usize) {
                let message = MemoryMessage {
                    partition: p,
                    offset: *next,
                    record: record.clone(),
                };
                *next += 1;
                at_end.remove(&p);
                *cursor = (*cursor + i + 1) % held.len();
                return Some(SourceEvent::Record(message));
            }
            if at_end.insert(p) {
                return Some(SourceEvent::EndOfPartition(p));
            }
        }
        None
    }
}

impl Source for MemorySource {
    type Message<'a> = MemoryMessage;

    fn poll(&self, timeout: Duration) -> Result<SourceEvent<MemoryMessage>, StreamError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.rebalance();
            if let Some(event) = self.next_record() {
                return Ok(event);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(SourceEvent::Idle);
            }
            let state = self.broker.state();
            let _ = self
                .broker
                .shared
                .changed
                .wait_timeout(state, (deadline - now).min(Duration::from_millis(20)));
        }
    }

    fn commit(&self, offsets: &[(i32, i64)]) -> Result<(), StreamError> {
        let mut state = self.broker.state();
        let group = state.groups.entry(self.group.clone()).or_default();
        for (p, o) in offsets {
            group.committed.insert((self.topic.clone(), *p), *o);
        }
        Ok(())
    }

    fn rejoin(&self) -> Result<(), StreamError> {
        Ok(())
    }

    fn close(self) {
        let held: Vec<i32> = lock(&self.positions).keys().copied().collect();
        if !held.is_empty() {
            let offsets = self.listener.revoked(&held);
            let _ = Source::commit(&self, &offsets);
        }
        self.closed.store(true, Ordering::Relaxed);
        // Drop leaves the group.
    }
}

impl Drop for MemorySource {
    /// Leaves the group. Without a `close` first this is a member that died:
    /// no revoke, no commit, its partitions free for the others at once.
    fn drop(&mut self) {
        let mut state = self.broker.state();
        if let Some(g) = state.groups.get_mut(&self.group) {
            g.members.retain(|m| *m != self.member);
            g.owner.retain(|_, owner| *owner != self.member);
        }
        drop(state);
        self.broker.shared.changed.notify_all();
    }
}

/// A producer on a [`MemoryBroker`].
pub struct MemorySink {
    broker: MemoryBroker,
    /// Records not yet in the log: (topic, record).
    pending: Mutex<Vec<(String, StoredRecord)>>,
}

impl MemorySink {
    fn append_pending(&self) {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let mut by_topic: Vec<(String, Vec<StoredRecord>)> = Vec::new();
        for (topic, r) in pending {
            match by_topic.last_mut() {
                Some((t, rs)) if *t == topic => rs.push(r),
                _ => by_topic.push((topic, vec![r])),
            }
        }
        for (topic, records) in by_topic {
            self.broker.append(&topic, records);
        }
    }
}

impl RecordSink for MemorySink {
    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(), StreamError> {
        let record = StoredRecord {
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                .collect(),
        };
        let full = {
            let mut pending = lock(&self.pending);
            pending.push((topic.to_owned(), record));
            self.broker.shared.linger > 0 && pending.len() >= self.broker.shared.linger
        };
        if full {
            self.append_pending();
        }
        Ok(())
    }

    fn flush(&self, _timeout: Duration) -> Result<(), StreamError> {
        self.append_pending();
        Ok(())
    }
}

/// One item of an [`IterSource`]'s iterator.
pub enum Fed<K, V> {
    /// A record: its key (partitioning) and value.
    Record(Option<K>, V),
    /// Nothing yet (a paced feed): the source answers `Idle`.
    Pending,
}

/// Records from an iterator, partitioned by key (`partition_of`; no key:
/// partition 0), with offsets counted per partition: the source of in-process
/// replays (training, forecast evaluation, the bench, the demo's simulator).
/// It owns all its partitions from the first poll and reports each one's end
/// once the iterator is exhausted. Nothing is committed anywhere.
pub struct IterSource<I> {
    items: Mutex<I>,
    partitions: u32,
    listener: Arc<dyn PartitionListener>,
    state: Mutex<IterState>,
}

#[derive(Default)]
struct IterState {
    assigned: bool,
    /// Next offset per partition.
    next: Vec<i64>,
    /// The iterator is exhausted.
    ended: bool,
    /// Partitions whose end was reported (0, 1, ... in turn).
    ends_reported: i32,
}

/// A record an [`IterSource`] hands out (owning its bytes, moved out of the
/// iterator's item: no copy).
pub struct IterMessage<K, V> {
    partition: i32,
    offset: i64,
    key: Option<K>,
    value: V,
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> Message for IterMessage<K, V> {
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_ref().map(AsRef::as_ref)
    }
    fn payload(&self) -> &[u8] {
        self.value.as_ref()
    }
}

impl<I> IterSource<I> {
    pub fn new(items: I, partitions: u32, listener: Arc<dyn PartitionListener>) -> Self {
        IterSource {
            items: Mutex::new(items),
            partitions: partitions.max(1),
            listener,
            state: Mutex::new(IterState::default()),
        }
    }

    /// Its partitions: `0..partitions`.
    pub fn partitions(&self) -> BTreeSet<i32> {
        (0..self.partitions as i32).collect()
    }
}

impl<I, K, V> Source for IterSource<I>
where
    I: Iterator<Item = Fed<K, V>> + Send,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    type Message<'a>
        = IterMessage<K, V>
    where
        Self: 'a;

    fn poll(&self, _timeout: Duration) -> Result<SourceEvent<IterMessage<K, V>>, StreamError> {
        let first = {
            let mut st = lock(&self.state);
            let first = !st.assigned;
            st.assigned = true;
            first
        };
        if first {
            let all: Vec<i32> = (0..self.partitions as i32).collect();
            // An iterator cannot seek: a restored start (none without a
            // checkpoint store) would be skipped by the pipeline by offset.
            let _starts = self.listener.assigned(&all);
            lock(&self.state).next = vec![0; self.partitions as usize];
        }
        let mut st = lock(&self.state);
        if !st.ended {
            match lock(&self.items).next() {
                Some(Fed::Pending) => return Ok(SourceEvent::Idle),
                Some(Fed::Record(key, value)) => {
                    let partition = key
                        .as_ref()
                        .map_or(0, |k| partition_of(k.as_ref(), self.partitions));
                    let offset = st.next[partition as usize];
                    st.next[partition as usize] += 1;
                    return Ok(SourceEvent::Record(IterMessage {
                        partition,
                        offset,
                        key,
                        value,
                    }));
                }
                None => st.ended = true,
            }
        }
        if st.ends_reported < self.partitions as i32 {
            st.ends_reported += 1;
            return Ok(SourceEvent::EndOfPartition(st.ends_reported - 1));
        }
        Ok(SourceEvent::Idle)
    }

    fn commit(&self, _offsets: &[(i32, i64)]) -> Result<(), StreamError> {
        Ok(())
    }

    fn rejoin(&self) -> Result<(), StreamError> {
        Ok(())
    }

    fn close(self) {
        let all: Vec<i32> = (0..self.partitions as i32).collect();
        if lock(&self.state).assigned {
            let _ = self.listener.revoked(&all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(Mutex<Vec<String>>);

    impl PartitionListener for Counting {
        fn assigned(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
            lock(&self.0).push(format!("assigned {partitions:?}"));
            Vec::new()
        }
        fn revoked(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
            lock(&self.0).push(format!("revoked {partitions:?}"));
            partitions.iter().map(|p| (*p, 1)).collect()
        }
    }

    #[test]
    fn members_share_partitions_and_hand_them_over_after_revoking() {
        let broker = MemoryBroker::new(4);
        broker.create_topic("in", 4);
        for i in 0..40 {
            broker.produce("in", Some(format!("k{i}").as_bytes()), b"v");
        }
        let a_log = Arc::new(Counting(Mutex::new(Vec::new())));
        let a = broker.subscribe("g", "in", a_log.clone()).unwrap();
        let mut seen = 0;
        while let SourceEvent::Record(_) | SourceEvent::EndOfPartition(_) =
            a.poll(Duration::from_millis(5)).unwrap()
        {
            seen += 1;
        }
        assert_eq!(seen, 40 + 4, "every record, then each partition's end");
        let b_log = Arc::new(Counting(Mutex::new(Vec::new())));
        let b = broker.subscribe("g", "in", b_log.clone()).unwrap();
        // b cannot take partitions a still holds.
        let _ = b.poll(Duration::from_millis(5));
        assert!(lock(&b_log.0).is_empty());
        let _ = a.poll(Duration::from_millis(5));
        assert_eq!(lock(&a_log.0).last().unwrap(), "revoked [1, 3]");
        let _ = b.poll(Duration::from_millis(5));
        assert_eq!(lock(&b_log.0).as_slice(), ["assigned [1, 3]"]);
        assert_eq!(broker.committed("g", "in")[&1], 1);
        // b dies: a takes its partitions without b's revoke.
        drop(b);
        let _ = a.poll(Duration::from_millis(5));
        assert_eq!(lock(&a_log.0).last().unwrap(), "assigned [1, 3]");
        assert_eq!(lock(&b_log.0).len(), 1);
    }

    #[test]
    fn a_sink_holds_records_until_flushed() {
        let broker = MemoryBroker::new(2).with_linger(0);
        let sink = broker.sink().unwrap();
        sink.send("out", Some(b"k"), b"v", &[("h", b"1")]).unwrap();
        assert!(broker.records("out").is_empty());
        sink.flush(Duration::from_secs(1)).unwrap();
        let records = broker.records("out");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].2.header("h"), Some("1"));
        assert_eq!(
            broker
                .high_watermarks("out")
                .unwrap()
                .iter()
                .map(|(_, o)| o)
                .sum::<i64>(),
            1
        );
    }
}
