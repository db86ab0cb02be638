//! The lookup keys of the unsealed history, in memory: event, correlation, causation and subject
//! ids of `events_hot`, each mapped to the seqs that carry it, and the events' times in order.
//!
//! B-tree indexes on these random keys made SQLite dirty about one page per index per event once
//! the table outgrew the cache, and ingest fell with the store's size (`docs/benchmarks.md`,
//! "Store at scale"). Event time is no better a key: evidence arrives late and out of order (a
//! Kafka backlog comes partition by partition, each spanning the whole time range), so an index on
//! time is written at random places too. Here keys cost a few hash-table-free inserts per event,
//! and `events_hot` keeps one index besides its rowid, on event type and time, which queries by
//! type need when sealing is off.
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
//! - Times are kept as microseconds, whose order is the order of their canonical text (fixed
//!   width, years 0000–9999); a time bound of any text is turned into the microseconds whose
//!   canonical text meets it, so a range holds every row SQLite's text comparison accepts. A row
//!   whose stored time is not canonical (none is written so) is a candidate of every range.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use rusqlite::Connection;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::segment::Key;

/// A time range of at most this many unsealed events is read by seq, whatever the share.
const READ_IN_ORDER_OVER: usize = 1_024;

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
    /// (event time in microseconds, seq) of every unsealed event with a canonical time.
    times: BTreeSet<(i64, i64)>,
    /// Unsealed events whose stored time is not canonical text.
    odd_times: Vec<i64>,
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
            conn.prepare("SELECT seq, event_id, correlation_id, causation_id, subject, time FROM events_hot WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = statement.query([floor])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let (id, correlation, causation, subject) =
                (r.get_ref(1)?.as_str()?, r.get_ref(2)?.as_str_or_null()?, r.get_ref(3)?.as_str_or_null()?, r.get_ref(4)?.as_str_or_null()?);
            let time = r.get_ref(5)?.as_str_or_null()?.and_then(canonical_micros);
            keys.add(seq, [Some(id), correlation, causation, subject], time);
        }
        Ok(keys)
    }

    /// Adds the keys and the time (microseconds, `None` if its text is not canonical) of the event
    /// at `seq`, which follows every seq added before.
    pub(crate) fn add(&self, seq: i64, keys: EventKeys<'_>, time: Option<i64>) {
        let full = {
            let mut state = self.state.write().expect("hot keys");
            match time {
                Some(micros) => state.times.insert((micros, seq)),
                None => {
                    state.odd_times.push(seq);
                    true
                }
            };
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

    /// The seqs after `after` whose time may fall within `min..=max` (text bounds, as SQLite
    /// compares the column), ascending; `None` when reading `events_hot` in order is the better
    /// plan: the range holds more than a quarter of the unsealed events (and more than
    /// [`READ_IN_ORDER_OVER`]), or rows after `after`
    /// were sealed since (they are still in the reader's snapshot of `events_hot`, no longer here).
    pub(crate) fn times_between(&self, min: Option<&str>, max: Option<&str>, after: i64) -> Option<Vec<i64>> {
        let state = self.state.read().expect("hot keys");
        if state.floor > after {
            return None;
        }
        let mut seqs: Vec<i64> = state.odd_times.iter().copied().filter(|s| *s > after).collect();
        let (first, last) = (min.map_or(Some(FIRST_MICROS), first_at_or_after), max.map_or(Some(LAST_MICROS), last_at_or_before));
        if let (Some(first), Some(last)) = (first, last)
            && first <= last
        {
            let range = state.times.range((Bound::Included((first, i64::MIN)), Bound::Included((last, i64::MAX))));
            seqs.extend(range.map(|(_, s)| *s).filter(|s| *s > after));
        }
        if seqs.len() > READ_IN_ORDER_OVER.max((state.times.len() + state.odd_times.len()) / 4) {
            return None;
        }
        seqs.sort_unstable();
        Some(seqs)
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
        state.times.retain(|(_, s)| *s > seq);
        state.odd_times.retain(|s| *s > seq);
    }

    /// Entries held, and roughly the bytes they take.
    pub(crate) fn size(&self) -> (usize, usize) {
        let state = self.state.read().expect("hot keys");
        let frozen: usize = state.runs.iter().map(|r| r.entries.len()).sum();
        let ordered = state.active.len() + state.times.len();
        // A B-tree entry costs about twice its 16 bytes.
        (frozen + ordered + state.odd_times.len(), frozen * 16 + ordered * 32 + state.odd_times.len() * 8)
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

/// 0000-01-01T00:00:00.000000Z and 9999-12-31T23:59:59.999999Z, the times an event may carry.
const FIRST_MICROS: i64 = -62_167_219_200_000_000;
const LAST_MICROS: i64 = 253_402_300_799_999_999;

fn canonical(micros: i64) -> String {
    causeway_envelope::format_micros(micros).expect("a time within the years 0000-9999")
}

/// The key of an event's time: its microseconds, if its canonical text is fixed-width.
pub(crate) fn time_key(time: &chrono::DateTime<chrono::Utc>) -> Option<i64> {
    Some(time.timestamp_micros()).filter(|m| (FIRST_MICROS..=LAST_MICROS).contains(m))
}

/// The microseconds of a stored time, if it is canonical text.
fn canonical_micros(text: &str) -> Option<i64> {
    let micros = causeway_envelope::parse_time(text).ok()?.timestamp_micros();
    (causeway_envelope::format_micros(micros).as_deref() == Some(text)).then_some(micros)
}

/// The first time whose canonical text passes `past` (false, then true, as time goes on), or
/// `LAST_MICROS + 1` if none does: a binary search, since the order of canonical texts is the
/// order of times.
fn first_time_past(past: impl Fn(&str) -> bool) -> i64 {
    let (mut lo, mut hi) = (FIRST_MICROS, LAST_MICROS + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if past(&canonical(mid)) { hi = mid } else { lo = mid + 1 }
    }
    lo
}

/// The first time whose canonical text is at or after `bound`, if any.
fn first_at_or_after(bound: &str) -> Option<i64> {
    Some(first_time_past(|t| t >= bound)).filter(|m| *m <= LAST_MICROS)
}

/// The last time whose canonical text is at or before `bound`, if any.
fn last_at_or_before(bound: &str) -> Option<i64> {
    Some(first_time_past(|t| t > bound) - 1).filter(|m| *m >= FIRST_MICROS)
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
            keys.add(seq, [Some(&id), Some(&correlation), None, Some(&subject)], Some(seq * 1_000_000));
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
        keys.add(10_001, [Some("e10001"), None, None, None], None);
        assert_eq!(keys.find(Key::EventId, "e10001", 0).1, vec![10_001]);
    }

    #[test]
    fn loading_reads_the_unsealed_rows_after_the_floor() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE events_hot (seq INTEGER PRIMARY KEY, event_id TEXT, correlation_id TEXT, causation_id TEXT, subject TEXT, time TEXT);
             INSERT INTO events_hot VALUES (7, 'a', 'c', NULL, NULL, '2026-01-01T00:00:00.000000Z'),
                                           (8, 'b', 'c', 'a', 'order-1', '2026-01-01T00:00:01.000000Z'),
                                           (9, 'c', NULL, 'b', 'order-1', '2026-01-01T00:00:02Z');",
        )
        .unwrap();
        let keys = HotKeys::load(&conn, 7).unwrap();
        assert!(keys.find(Key::EventId, "a", 0).1.is_empty());
        assert_eq!(keys.find(Key::CorrelationId, "c", 0).1, vec![8]);
        assert_eq!(keys.find(Key::CausationId, "b", 0).1, vec![9]);
        assert_eq!(keys.find(Key::Subject, "order-1", 0).1, vec![8, 9]);
        // Seq 9's time is not canonical text: a candidate of every range.
        assert_eq!(keys.times_between(Some("2026-01-01T00:00:01"), None, 7), Some(vec![8, 9]));
        assert_eq!(keys.times_between(Some("2027"), None, 7), Some(vec![9]));
    }

    /// Times arrive out of order; whatever text bounds a query gives, the range holds exactly the
    /// seqs whose stored text SQLite's comparison accepts.
    #[test]
    fn a_time_range_holds_what_the_text_comparison_accepts() {
        let keys = HotKeys::default();
        let mut stored = Vec::new();
        let base = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap().timestamp_micros();
        for seq in 1..=4_000i64 {
            // Partition by partition: each stretch of 100 seqs spans the whole hour.
            let micros = base + (seq % 100) * 36_000_000 + seq / 100 * 7_919;
            stored.push((seq, canonical(micros)));
            keys.add(seq, [Some(&format!("e{seq}")), None, None, None], Some(micros));
        }
        let bounds = [
            "2026-12-06T10:00:00Z",
            "2026-12-06T10:00:00.000000Z",
            "2026-12-06T10:30",
            "2026-12-06T10:36:00.007919Z",
            "2026-12-06T10:59:24.1",
            "2026-12-06T11",
            "2026-12-06",
            "2026-12-06T10:12:00.000000Z",
            "2026-12-06T10:12:00.031676Z",
            "",
            "~",
            "1999",
        ];
        let mut checked = 0;
        for min in bounds.iter().map(Some).chain([None]) {
            for max in bounds.iter().map(Some).chain([None]) {
                for after in [0, 1_234] {
                    let want: Vec<i64> = stored
                        .iter()
                        .filter(|(seq, t)| *seq > after && min.is_none_or(|m| t.as_str() >= *m) && max.is_none_or(|m| t.as_str() <= *m))
                        .map(|(seq, _)| *seq)
                        .collect();
                    match keys.times_between(min.copied(), max.copied(), after) {
                        Some(got) => {
                            assert_eq!(got, want, "{min:?}..={max:?} after {after}");
                            checked += 1;
                        }
                        None => assert!(want.len() > 1_024, "{min:?}..={max:?} after {after}: {} of 4,000 is not a quarter", want.len()),
                    }
                }
            }
        }
        assert!(checked > 100, "most ranges are narrow: {checked}");
        // Sealed rows leave the range; a reader that may still see them reads events_hot instead.
        keys.raise_floor(2_000);
        assert_eq!(keys.times_between(Some("2026-12-06T10:12:00.031676Z"), Some("2026-12-06T10:12:00.031676Z"), 2_000), Some(vec![]));
        let early: Vec<i64> = stored.iter().filter(|(seq, t)| *seq > 2_000 && t.as_str() <= "2026-12-06T10:00:36.1").map(|(seq, _)| *seq).collect();
        assert_eq!(early.len(), 20, "seqs 2,100, 2,200 … 4,000: the hour's first second");
        assert_eq!(keys.times_between(None, Some("2026-12-06T10:00:36.1"), 2_000), Some(early));
        assert_eq!(keys.times_between(Some("2026"), Some("2027"), 1_999), None);
    }
}
