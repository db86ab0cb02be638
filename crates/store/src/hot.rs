//! The lookup keys of the unsealed history, in memory: event, correlation, causation and subject
//! ids of `events_hot`, each mapped to the seqs that carry it.
//!
//! B-tree indexes on these random keys made SQLite dirty about one page per index per event once
//! the table outgrew the cache, and ingest fell with the store's size (`docs/benchmarks.md`,
//! "Store at scale"). Here they cost a few hash-table-free inserts per event, and `events_hot`
//! keeps only indexes in ingest order (seq, time, type and time).
//!
//! **Invariants:**
//! - Only the writer thread changes the keys. It adds an event's keys before the commit that
//!   stores the event, so a reader whose snapshot holds an event finds it by any of its keys; an
//!   entry whose event is not (yet) in a reader's snapshot finds no row there and is skipped.
//! - Entries are hashes (`xxh3`, seeded by the kind of key): a hit is a candidate, checked against
//!   the row itself.
//! - Entries at or below the floor are gone: the writer raises it once a seal's commit removed
//!   those rows from `events_hot`, after their segment joined the shared set. A reader whose
//!   snapshot still holds such rows finds them through that segment (`sealed.rs`).
//! - Frozen runs are sorted and immutable; the newest events are in a small ordered set. Runs are
//!   merged so that at most about log2(unsealed / 4096) are searched per lookup.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use rusqlite::Connection;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::segment::Key;

/// Log positions gathered in the ordered set before they are frozen into a sorted run.
const RUN_SEQS: i64 = 4096;

/// The entry of `value` as a key of kind `key`.
fn entry(key: Key, value: &str) -> u64 {
    xxh3_64_with_seed(value.as_bytes(), key as u64 + 1)
}

/// A frozen run: entries of the seqs `first..=last`, sorted.
struct Run {
    first: i64,
    last: i64,
    entries: Vec<(u64, i64)>,
}

impl Run {
    fn find(&self, hash: u64, after: i64, out: &mut Vec<i64>) {
        if self.last <= after {
            return;
        }
        let start = self.entries.partition_point(|&(h, s)| (h, s) <= (hash, after));
        out.extend(self.entries[start..].iter().take_while(|(h, _)| *h == hash).map(|(_, s)| *s));
    }
}

#[derive(Default)]
struct State {
    /// Oldest first; their seq ranges ascend and do not overlap.
    runs: Vec<Arc<Run>>,
    /// The newest entries, after every run's.
    active: BTreeSet<(u64, i64)>,
    /// The seqs `active` spans (`None` when empty).
    active_span: Option<(i64, i64)>,
    floor: i64,
}

/// The unsealed history's lookup keys (see the module's invariants).
#[derive(Default)]
pub(crate) struct HotKeys {
    state: RwLock<State>,
}

/// An event's lookup keys, in `Key` order (missing ones `None`).
pub(crate) type EventKeys<'a> = [Option<&'a str>; 4];

impl HotKeys {
    /// Reads the keys of every row of `events_hot` after `floor`.
    pub(crate) fn load(conn: &Connection, floor: i64) -> rusqlite::Result<HotKeys> {
        let keys = HotKeys::default();
        keys.state.write().expect("hot keys").floor = floor;
        let mut statement =
            conn.prepare("SELECT seq, event_id, correlation_id, causation_id, subject FROM events_hot WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = statement.query([floor])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let (id, correlation, causation, subject) =
                (r.get_ref(1)?.as_str()?, r.get_ref(2)?.as_str_or_null()?, r.get_ref(3)?.as_str_or_null()?, r.get_ref(4)?.as_str_or_null()?);
            keys.add(seq, [Some(id), correlation, causation, subject]);
        }
        Ok(keys)
    }

    /// Adds the keys of the event at `seq`, which follows every seq added before.
    pub(crate) fn add(&self, seq: i64, keys: EventKeys<'_>) {
        let full = {
            let mut state = self.state.write().expect("hot keys");
            for (kind, value) in Key::ALL.iter().zip(keys) {
                if let Some(v) = value {
                    state.active.insert((entry(*kind, v), seq));
                }
            }
            let span = state.active_span.get_or_insert((seq, seq));
            span.1 = seq;
            span.1 - span.0 + 1 >= RUN_SEQS
        };
        if full {
            self.freeze();
        }
    }

    /// The seqs after `max(after, floor)` that may carry `value` as their `key`, ascending, and
    /// the floor they were read at.
    pub(crate) fn find(&self, key: Key, value: &str, after: i64) -> (i64, Vec<i64>) {
        let hash = entry(key, value);
        let state = self.state.read().expect("hot keys");
        let after = after.max(state.floor);
        let mut seqs = Vec::new();
        for run in &state.runs {
            run.find(hash, after, &mut seqs);
        }
        seqs.extend(state.active.range((hash, after.saturating_add(1))..=(hash, i64::MAX)).map(|(_, s)| *s));
        (state.floor, seqs)
    }

    /// Forgets every entry at or below `seq` (sealed, and removed from `events_hot`).
    pub(crate) fn raise_floor(&self, seq: i64) {
        let mut state = self.state.write().expect("hot keys");
        if seq <= state.floor {
            return;
        }
        state.floor = seq;
        state.runs.retain(|r| r.last > seq);
        if let Some(first) = state.runs.first_mut().filter(|r| r.first <= seq) {
            let entries = first.entries.iter().copied().filter(|(_, s)| *s > seq).collect();
            *first = Arc::new(Run { first: seq + 1, last: first.last, entries });
        }
        if state.active_span.is_some_and(|(first, _)| first <= seq) {
            state.active.retain(|(_, s)| *s > seq);
            state.active_span = state.active_span.filter(|(_, last)| *last > seq).map(|(_, last)| (seq + 1, last));
        }
    }

    /// Entries held, and roughly the bytes they take.
    pub(crate) fn size(&self) -> (usize, usize) {
        let state = self.state.read().expect("hot keys");
        let frozen: usize = state.runs.iter().map(|r| r.entries.len()).sum();
        // A B-tree entry costs about twice its 16 bytes.
        (frozen + state.active.len(), frozen * 16 + state.active.len() * 32)
    }

    /// Turns the ordered set into a run, then merges the newest runs while the older of the last
    /// two is at most twice the size of the newer. The merges happen outside the lock (only the
    /// writer changes runs), so readers wait for the swap alone.
    fn freeze(&self) {
        {
            let mut state = self.state.write().expect("hot keys");
            let Some((first, last)) = state.active_span.take() else { return };
            let entries: Vec<(u64, i64)> = std::mem::take(&mut state.active).into_iter().collect();
            state.runs.push(Arc::new(Run { first, last, entries }));
        }
        loop {
            let (older, newer) = {
                let state = self.state.read().expect("hot keys");
                let n = state.runs.len();
                if n < 2 || state.runs[n - 2].entries.len() > 2 * state.runs[n - 1].entries.len() {
                    return;
                }
                (state.runs[n - 2].clone(), state.runs[n - 1].clone())
            };
            let merged = Arc::new(merge(&older, &newer));
            let mut state = self.state.write().expect("hot keys");
            let n = state.runs.len();
            // A floor raised meanwhile may have filtered the older run: merge again.
            if n < 2 || !Arc::ptr_eq(&state.runs[n - 2], &older) || !Arc::ptr_eq(&state.runs[n - 1], &newer) {
                continue;
            }
            state.runs.truncate(n - 2);
            state.runs.push(merged);
        }
    }
}

fn merge(older: &Run, newer: &Run) -> Run {
    let mut entries = Vec::with_capacity(older.entries.len() + newer.entries.len());
    let (mut a, mut b) = (older.entries.iter().peekable(), newer.entries.iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => {
                if x <= y {
                    a.next()
                } else {
                    b.next()
                }
            }
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        entries.extend(next.copied());
    }
    Run { first: older.first, last: newer.last, entries }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(n: i64) -> (String, String, String) {
        (format!("e{n}"), format!("c{}", n / 5), format!("s{}", n % 97))
    }

    fn filled(events: i64) -> HotKeys {
        let keys = HotKeys::default();
        for seq in 1..=events {
            let (id, correlation, subject) = keys_of(seq);
            keys.add(seq, [Some(&id), Some(&correlation), None, Some(&subject)]);
        }
        keys
    }

    #[test]
    fn every_key_finds_its_seqs_across_runs_and_the_ordered_set() {
        let keys = filled(30_000);
        let runs = keys.state.read().unwrap().runs.len();
        assert!((2..=8).contains(&runs), "runs are merged: {runs}");
        for n in [1, 4095, 4096, 4097, 17_000, 29_999, 30_000] {
            let (id, correlation, subject) = keys_of(n);
            assert_eq!(keys.find(Key::EventId, &id, 0).1, vec![n]);
            let mut want: Vec<i64> = (n / 5 * 5..n / 5 * 5 + 5).filter(|s| (1..=30_000).contains(s)).collect();
            want.sort();
            assert_eq!(keys.find(Key::CorrelationId, &correlation, 0).1, want, "correlation of {n}");
            let subjects = keys.find(Key::Subject, &subject, 0).1;
            assert!(subjects.windows(2).all(|w| w[0] < w[1]) && subjects.contains(&n), "subject of {n}");
            // Kinds do not mix: an event id is not a correlation id.
            assert!(keys.find(Key::CorrelationId, &id, 0).1.is_empty());
            assert!(keys.find(Key::CausationId, &correlation, 0).1.is_empty());
        }
        assert_eq!(keys.find(Key::CorrelationId, "c100", 502).1, vec![503, 504]);
    }

    #[test]
    fn a_raised_floor_forgets_sealed_seqs_in_runs_and_the_ordered_set() {
        let keys = filled(10_000);
        keys.raise_floor(5_000);
        assert!(keys.find(Key::EventId, "e4999", 0).1.is_empty());
        assert!(keys.find(Key::EventId, "e5000", 0).1.is_empty());
        assert_eq!(keys.find(Key::EventId, "e5001", 0), (5_000, vec![5_001]));
        assert_eq!(keys.find(Key::CorrelationId, "c1000", 0).1, vec![5_001, 5_002, 5_003, 5_004]);
        keys.raise_floor(10_000);
        assert!(keys.find(Key::EventId, "e9999", 0).1.is_empty());
        assert_eq!(keys.size().0, 0);
        // Adding goes on after the floor.
        keys.add(10_001, [Some("e10001"), None, None, None]);
        assert_eq!(keys.find(Key::EventId, "e10001", 0).1, vec![10_001]);
    }

    #[test]
    fn loading_reads_the_unsealed_rows_after_the_floor() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE events_hot (seq INTEGER PRIMARY KEY, event_id TEXT, correlation_id TEXT, causation_id TEXT, subject TEXT);
             INSERT INTO events_hot VALUES (7, 'a', 'c', NULL, NULL), (8, 'b', 'c', 'a', 'order-1'), (9, 'c', NULL, 'b', 'order-1');",
        )
        .unwrap();
        let keys = HotKeys::load(&conn, 7).unwrap();
        assert!(keys.find(Key::EventId, "a", 0).1.is_empty());
        assert_eq!(keys.find(Key::CorrelationId, "c", 0).1, vec![8]);
        assert_eq!(keys.find(Key::CausationId, "b", 0).1, vec![9]);
        assert_eq!(keys.find(Key::Subject, "order-1", 0).1, vec![8, 9]);
    }
}
