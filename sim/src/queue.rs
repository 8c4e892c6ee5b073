//! The event queue: events in (virtual time, insertion) order.
//!
//! Distributed systems schedule in bursts at one time (a broadcast over
//! fixed-latency links, timers of one period). Such a burst goes to one
//! FIFO bucket for its time (a min-heap holds the distinct times of the
//! buckets): pushes and pops are a `VecDeque` append and pop at the ends,
//! without keys or comparisons per event, and the queue stays flat (cache
//! friendly) however many events a round has in flight. An event alone at
//! its time so far (random latencies) goes to a plain heap keyed by (time,
//! sequence), as a bucket of one would cost more.
//!
//! The order is exactly that of one heap of (time, sequence): within a
//! bucket, insertion order is sequence order; a bucket opens for a time at
//! the second push in a row at that time, and takes every later push at
//! that time until it empties, so the heap's events at that time all came
//! before the bucket's, and are popped first.
//!
//! The time -> bucket map is lookup-only (never iterated), so its hasher
//! cannot leak into the order of events.

use distzero_core::net::FxBuild;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// Buckets kept for reuse, and the largest capacity a kept bucket may have
/// (explicit limits: a burst's bucket is reused, not hoarded)...
const MAX_SPARE: usize = 64;
const MAX_SPARE_CAPACITY: usize = 1 << 16;
/// ...but once bursts recur (a second big bucket empties), one big bucket
/// is kept, up to this capacity: a workload that broadcasts round after
/// round in a large cluster reuses it every round instead of growing a new
/// one by doublings. It keeps what a burst's peak needed anyway; a one-off
/// burst (spawning many machines at once) keeps nothing.
const MAX_BIG_SPARE_CAPACITY: usize = 1 << 24;

/// An event alone at its time (so far), in the heap of singles.
struct Single<T> {
    time: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Single<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.time, self.seq) == (o.time, o.seq)
    }
}
impl<T> Eq for Single<T> {}
impl<T> PartialOrd for Single<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Single<T> {
    // Reversed: BinaryHeap is a max-heap, the earliest (time, seq) on top.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.time, o.seq).cmp(&(self.time, self.seq))
    }
}

pub(crate) struct Queue<T> {
    /// Events alone at their time so far.
    singles: BinaryHeap<Single<T>>,
    seq: u64,
    /// The time of the last push, if it went to `singles`: a second push in
    /// a row at that time opens a bucket.
    last_single: Option<u64>,
    /// Distinct times that have a bucket, earliest on top.
    times: BinaryHeap<Reverse<u64>>,
    /// Time -> index of its bucket in `buckets`. Lookup only.
    index: HashMap<u64, u32, FxBuild>,
    buckets: Vec<VecDeque<T>>,
    /// Indices of empty slots in `buckets`.
    free: Vec<u32>,
    /// Emptied buckets, kept with their capacity.
    spare: Vec<VecDeque<T>>,
    /// The largest emptied bucket over `MAX_SPARE_CAPACITY`, if any.
    big_spare: Option<VecDeque<T>>,
    /// A big bucket has emptied before: bursts recur.
    bursts: bool,
    /// The bucket of the last push: bursts go to one time.
    last: Option<(u64, u32)>,
    /// The bucket of the earliest time, once looked up.
    front: Option<(u64, u32)>,
    len: usize,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            singles: BinaryHeap::new(),
            seq: 0,
            last_single: None,
            times: BinaryHeap::new(),
            index: HashMap::default(),
            buckets: Vec::new(),
            free: Vec::new(),
            spare: Vec::new(),
            big_spare: None,
            bursts: false,
            last: None,
            front: None,
            len: 0,
        }
    }
}

impl<T> Queue<T> {
    /// Events waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Add an event at `time`, after every event already at that time.
    #[inline(always)]
    pub fn push(&mut self, time: u64, item: T) {
        self.len += 1;
        if let Some((t, b)) = self.last {
            if t == time {
                self.buckets[b as usize].push_back(item);
                return;
            }
        }
        let b = match self.index.get(&time) {
            Some(&b) => b,
            None if self.last_single == Some(time) => self.open(time),
            None => {
                self.seq += 1;
                self.singles.push(Single {
                    time,
                    seq: self.seq,
                    item,
                });
                self.last_single = Some(time);
                return;
            }
        };
        self.last = Some((time, b));
        self.last_single = None;
        self.buckets[b as usize].push_back(item);
    }

    #[cold]
    fn open(&mut self, time: u64) -> u32 {
        let bucket = self
            .big_spare
            .take()
            .or_else(|| self.spare.pop())
            .unwrap_or_default();
        let b = match self.free.pop() {
            Some(b) => {
                self.buckets[b as usize] = bucket;
                b
            }
            None => {
                self.buckets.push(bucket);
                (self.buckets.len() - 1) as u32
            }
        };
        self.index.insert(time, b);
        self.times.push(Reverse(time));
        b
    }

    /// Remove the earliest event if its time is at most `until`.
    #[inline(always)]
    pub fn pop_until(&mut self, until: u64) -> Option<(u64, T)> {
        if !self.singles.is_empty() {
            if let Some(popped) = self.pop_single(until) {
                return popped;
            }
        }
        let time = self.times.peek()?.0;
        if time > until {
            return None;
        }
        let b = match self.front {
            Some((t, b)) if t == time => b,
            _ => {
                let b = self.index[&time];
                self.front = Some((time, b));
                b
            }
        };
        let bucket = &mut self.buckets[b as usize];
        let item = bucket.pop_front().expect("a listed time has events");
        self.len -= 1;
        if bucket.is_empty() {
            self.close(time, b);
        }
        Some((time, item))
    }

    /// Pop the earliest single if it comes before every bucket: `None` when
    /// a bucket comes first, `Some(None)` when the earliest is after `until`.
    #[inline(never)]
    fn pop_single(&mut self, until: u64) -> Option<Option<(u64, T)>> {
        let s = self.singles.peek()?;
        // At one time, singles came before the bucket: they go first.
        if self.times.peek().is_some_and(|b| b.0 < s.time) {
            return None;
        }
        if s.time > until {
            return Some(None);
        }
        let s = self.singles.pop().expect("peeked");
        self.len -= 1;
        Some(Some((s.time, s.item)))
    }

    /// The event `k` places after the next one to pop, if it is in the
    /// same time's bucket (for prefetching its target's memory).
    #[inline(always)]
    pub fn peek_ahead(&self, k: usize) -> Option<&T> {
        let (_, b) = self.front?;
        self.buckets.get(b as usize)?.get(k)
    }

    #[cold]
    fn close(&mut self, time: u64, b: u32) {
        self.times.pop();
        self.index.remove(&time);
        self.front = None;
        if self.last.is_some_and(|(t, _)| t == time) {
            self.last = None;
        }
        let bucket = std::mem::take(&mut self.buckets[b as usize]);
        let capacity = bucket.capacity();
        if capacity <= MAX_SPARE_CAPACITY {
            if self.spare.len() < MAX_SPARE {
                self.spare.push(bucket);
            }
        } else if !std::mem::replace(&mut self.bursts, true) {
            // The first big burst: it may be the only one.
        } else if capacity <= MAX_BIG_SPARE_CAPACITY
            && self
                .big_spare
                .as_ref()
                .is_none_or(|b| b.capacity() < capacity)
        {
            self.big_spare = Some(bucket);
        }
        self.free.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The queue pops in exactly the order of a heap of (time, seq): with
    /// bursts and scattered times, and with few times (singles and buckets
    /// at one time, interleaved).
    #[test]
    fn same_order_as_a_heap_of_time_and_sequence() {
        for seed in 0..8 {
            same_order(seed, 5000);
            same_order(seed, 3);
        }
    }

    fn same_order(seed: u64, spread: u64) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut q = Queue::default();
        let mut reference = BinaryHeap::new();
        let mut seq = 0u64;
        let mut now = 0u64;
        let mut popped = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..20_000 {
            if rng.gen_bool(0.55) {
                // Bursts at one time, and scattered times.
                let time = now
                    + match rng.gen_range(0..3) {
                        0 => 0,
                        1 => 1000,
                        _ => rng.gen_range(0..spread),
                    };
                seq += 1;
                q.push(time, seq);
                reference.push(Reverse((time, seq)));
            } else {
                let until = now + rng.gen_range(0..3000);
                while let Some((t, s)) = q.pop_until(until) {
                    popped.push((t, s));
                    now = t;
                }
                while reference.peek().is_some_and(|r| r.0 .0 <= until) {
                    expected.push(reference.pop().unwrap().0);
                }
                now = now.max(until);
                assert_eq!(q.len(), reference.len());
            }
        }
        assert_eq!(popped, expected);
        assert!(popped.len() > 1000);
    }
}
