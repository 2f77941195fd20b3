//! A queue of items released in event-time order as the watermark passes them.
//!
//! What a `BinaryHeap` does, for the access pattern of a watermark: items
//! arrive roughly in time order, a lateness window (minutes of traffic) is
//! held, and they leave from the oldest. A heap of a few hundred thousand
//! entries sifts through cache misses on every push and pop, and moves whole
//! entries as it does; here items wait in per-second buckets and a bucket is
//! sorted once, when its turn comes. The order out is the same total order —
//! `(time, item)` — whatever the order in, so results stay deterministic.

use std::collections::{BTreeMap, VecDeque};

use crate::time::EventTime;

/// Bucket width: 1,024 ms.
const BUCKET_SHIFT: u32 = 10;

#[derive(Debug, Clone)]
pub struct TimeQueue<T> {
    /// The earliest bucket, sorted, being released.
    head: VecDeque<(EventTime, T)>,
    /// The bucket `head` came from (`None` when none was opened yet).
    head_bucket: Option<i64>,
    /// Later buckets, unsorted.
    later: BTreeMap<i64, Vec<(EventTime, T)>>,
    len: usize,
}

impl<T> Default for TimeQueue<T> {
    fn default() -> Self {
        TimeQueue {
            head: VecDeque::new(),
            head_bucket: None,
            later: BTreeMap::new(),
            len: 0,
        }
    }
}

fn bucket(t: EventTime) -> i64 {
    t >> BUCKET_SHIFT
}

impl<T: Ord> TimeQueue<T> {
    pub fn push(&mut self, at: EventTime, item: T) {
        self.len += 1;
        let b = bucket(at);
        match self.head_bucket {
            // Into the bucket being released (or an earlier one: a late item
            // goes first): keep `head` sorted.
            Some(h) if b <= h => {
                let entry = (at, item);
                let i = self.head.partition_point(|e| *e < entry);
                self.head.insert(i, entry);
            }
            _ => self.later.entry(b).or_default().push((at, item)),
        }
    }

    /// The time of the next item out.
    pub fn peek_time(&mut self) -> Option<EventTime> {
        self.fill_head();
        self.head.front().map(|(t, _)| *t)
    }

    pub fn pop(&mut self) -> Option<(EventTime, T)> {
        self.fill_head();
        let out = self.head.pop_front()?;
        self.len -= 1;
        Some(out)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every item, in the order they would leave.
    pub fn sorted(&self) -> Vec<(EventTime, &T)> {
        let mut out: Vec<(EventTime, &T)> = self.head.iter().map(|(t, x)| (*t, x)).collect();
        for bucket in self.later.values() {
            let mut b: Vec<(EventTime, &T)> = bucket.iter().map(|(t, x)| (*t, x)).collect();
            b.sort();
            out.extend(b);
        }
        out
    }

    fn fill_head(&mut self) {
        if !self.head.is_empty() {
            return;
        }
        if let Some((b, mut items)) = self.later.pop_first() {
            items.sort();
            self.head = items.into();
            self.head_bucket = Some(b);
        }
    }
}

impl<T: Ord> FromIterator<(EventTime, T)> for TimeQueue<T> {
    fn from_iter<I: IntoIterator<Item = (EventTime, T)>>(items: I) -> Self {
        let mut q = TimeQueue::default();
        for (t, x) in items {
            q.push(t, x);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// Any interleaving of pushes and pops gives the heap's order.
    #[test]
    fn leaves_in_the_order_a_heap_would() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        let (mut q, mut heap) = (TimeQueue::default(), BinaryHeap::new());
        let mut now = 0i64;
        let (mut from_q, mut from_heap) = (Vec::new(), Vec::new());
        for i in 0..20_000u64 {
            now += (next() % 50) as i64;
            // Mostly in order, some up to two minutes late, some ties.
            let at = now - (next() % 4 == 0) as i64 * (next() % 120_000) as i64;
            q.push(at, i % 97);
            heap.push(Reverse((at, i % 97)));
            if next() % 3 == 0 {
                let watermark = now - 120_000;
                while q.peek_time().is_some_and(|t| t < watermark) {
                    from_q.push(q.pop().unwrap());
                    let Reverse(x) = heap.pop().unwrap();
                    from_heap.push(x);
                }
            }
        }
        assert_eq!(q.len(), heap.len());
        assert_eq!(
            q.sorted()
                .into_iter()
                .map(|(t, x)| (t, *x))
                .collect::<Vec<_>>(),
            heap.clone()
                .into_sorted_vec()
                .into_iter()
                .rev()
                .map(|Reverse(x)| x)
                .collect::<Vec<_>>()
        );
        while let Some(x) = q.pop() {
            from_q.push(x);
            let Reverse(y) = heap.pop().unwrap();
            from_heap.push(y);
        }
        assert!(from_q.len() > 10_000);
        assert_eq!(from_q, from_heap);
    }
}
