//! The deadline queue: every pending deadline of every instance, taken in (due, instance,
//! generation) order, without touching the ones that are not due.
//!
//! Deadlines are an event time plus one of the model's durations (a policy's `within`, a
//! journey's `stall_after` or `complete_within`). Events mostly arrive in time order, so the
//! deadlines made with one duration mostly arrive in order too: each duration gets a FIFO queue,
//! appended to at the back. A deadline that would break its queue's order (an event older than
//! the last one) goes to one binary heap instead. The next deadline is the least of the queues'
//! fronts and the heap's top — a handful of comparisons, and the millions of deadlines behind
//! them are never read until they come up. Cancelled deadlines are not removed: the evaluator
//! skips entries whose generation is no longer the instance's (lazy cancellation).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// One pending deadline: (due, instance, generation).
pub(crate) type Entry = (i64, u32, u32);

/// Queues kept per duration; deadlines of further durations go to the heap.
pub(crate) const MAX_QUEUES: usize = 32;

#[derive(Default)]
pub(crate) struct Timers {
    queues: Vec<VecDeque<Entry>>,
    heap: BinaryHeap<Reverse<Entry>>,
    len: usize,
    /// The least due time, checked first by every `advance`.
    next: Option<i64>,
}

impl Timers {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<Entry>();
        self.queues.iter().map(|q| q.capacity() * entry).sum::<usize>()
            + self.queues.capacity() * std::mem::size_of::<VecDeque<Entry>>()
            + self.heap.capacity() * entry
    }

    /// Adds a deadline made with duration number `class` (any number; those beyond
    /// [`MAX_QUEUES`] share the heap).
    pub fn push(&mut self, entry: Entry, class: usize) {
        if class < MAX_QUEUES {
            if self.queues.len() <= class {
                self.queues.resize_with(class + 1, VecDeque::new);
            }
            let queue = &mut self.queues[class];
            if queue.back().is_none_or(|last| *last <= entry) {
                queue.push_back(entry);
            } else {
                self.heap.push(Reverse(entry));
            }
        } else {
            self.heap.push(Reverse(entry));
        }
        self.len += 1;
        if self.next.is_none_or(|n| entry.0 < n) {
            self.next = Some(entry.0);
        }
    }

    /// The least entry, if it is due strictly before `now`, removed.
    pub fn pop_before(&mut self, now: i64) -> Option<Entry> {
        if self.next.is_none_or(|n| n >= now) {
            return None;
        }
        // Where the least entry is: a queue's front (its index) or the heap (None).
        let mut best: Option<(Entry, Option<usize>)> = self.heap.peek().map(|Reverse(e)| (*e, None));
        for (k, q) in self.queues.iter().enumerate() {
            if let Some(front) = q.front()
                && best.is_none_or(|(b, _)| *front < b)
            {
                best = Some((*front, Some(k)));
            }
        }
        let (entry, source) = best.expect("next is set, so an entry exists");
        match source {
            Some(k) => self.queues[k].pop_front(),
            None => self.heap.pop().map(|Reverse(e)| e),
        };
        self.len -= 1;
        self.next = self.peek();
        Some(entry)
    }

    /// The least due time, as last computed (what [`Timers::pop_before`] checks).
    #[inline]
    pub fn peek_cached(&self) -> Option<i64> {
        self.next
    }

    /// The least due time.
    pub fn peek(&self) -> Option<i64> {
        let fronts = self.queues.iter().filter_map(|q| q.front().map(|e| e.0));
        fronts.chain(self.heap.peek().map(|Reverse(e)| e.0)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_order_and_only_when_due() {
        let mut t = Timers::default();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut all = Vec::new();
        let mut clock = 0i64;
        for i in 0..5_000u32 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Mostly increasing event times, now and then an older one; a few durations.
            clock += (rng % 1_000) as i64;
            let time = if rng.is_multiple_of(10) { clock - (rng % 50_000) as i64 } else { clock };
            let class = (rng >> 20) as usize % 4;
            let due = time + [30_000_000, 120_000_000, 300_000_000, 1][class];
            let class = if class == 3 { MAX_QUEUES + 1 } else { class };
            all.push((due, i, i % 7));
            t.push((due, i, i % 7), class);
        }
        all.sort();
        assert_eq!(t.len(), all.len());
        assert_eq!(t.peek(), Some(all[0].0));
        let cut = all[2_500].0;
        let mut got = Vec::new();
        while let Some(e) = t.pop_before(cut) {
            got.push(e);
        }
        let expected: Vec<Entry> = all.iter().copied().filter(|e| e.0 < cut).collect();
        assert_eq!(got, expected);
        // An earlier deadline pushed after popping still comes out first.
        t.push((i64::MIN + 5, 1, 1), 0);
        assert_eq!(t.pop_before(i64::MIN + 6), Some((i64::MIN + 5, 1, 1)));
        let mut rest = Vec::new();
        while let Some(e) = t.pop_before(i64::MAX) {
            rest.push(e);
        }
        assert_eq!(rest, all.iter().copied().filter(|e| e.0 >= cut).collect::<Vec<_>>());
        assert_eq!(t.len(), 0);
        assert_eq!(t.peek(), None);
    }
}
