//! Retention: whole sealed segments go once they are older than `[store] retention`, or while the
//! data directory is over `[store] max_disk`; the events still needed stay.
//!
//! **Invariants:**
//! - Only the oldest segments go, a run of them at once, so the sealed history stays one run of
//!   seqs that only grows at its end and shrinks at its start.
//! - What is still needed is kept: the events of pending dead letters (their replay and their
//!   report name them), and the events of journeys still open (a rebuild of the journey engine
//!   replays them). They are rewritten into one new segment that takes the removed run's place.
//! - The removal is one commit: the `segments` rows of the run go, the kept segment's row comes,
//!   and the rows beside them (`sealed_redeliveries`, `event_journeys`, `redeliveries`) of the
//!   removed events go. The kept segment's file is fsynced before that commit; the removed files
//!   are unlinked after it. A crash before the commit leaves an unregistered kept file, after it
//!   unregistered removed files: the next open deletes both (`seal::open_segments`).
//! - Ingest never waits for it: the files are written by the sealer's thread, and the commit is
//!   a handful of range deletes by seq.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::StoreError;
use crate::sealed::SegmentSet;
use crate::segment::{Key, SealedRow, Segment, write_segment};
use crate::writer::{Job, JobQueue};

/// What retention removes (`[store] retention`, `[store] max_disk`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// A segment goes once its newest event is older than this, by event time and by receive
    /// time both: evidence that arrived late is kept this long after it arrived.
    pub age: Option<Duration>,
    /// The oldest segments go while the data directory (database, WAL, segments) is larger.
    pub max_disk_bytes: Option<u64>,
}

impl Retention {
    pub fn is_on(&self) -> bool {
        self.age.is_some() || self.max_disk_bytes.is_some()
    }
}

/// The journeys still open, as `(journey, key)`, asked of the journey engine when the events up to
/// the given log position are due to go; `None` while it cannot tell (it is rebuilding, or has not
/// derived and written the journeys of every event up to there), which puts the removal off.
pub type OpenJourneys = Arc<dyn Fn(i64) -> Option<HashSet<(String, String)>> + Send + Sync>;

/// When the oldest segment expires by age: the later of its newest event time and newest receive
/// time, plus the retention.
pub(crate) fn expires_at(segment: &Segment, age: Duration) -> Option<DateTime<Utc>> {
    let info = segment.info();
    let newest = info.max_time.as_str().max(info.max_received_at.as_str());
    let newest = DateTime::parse_from_rfc3339(newest).ok()?.with_timezone(&Utc);
    Some(newest + chrono::Duration::from_std(age).ok()?)
}

/// The bytes the data directory holds: the database, its WAL and the segments.
pub(crate) fn disk_bytes(db_path: &std::path::Path, segments: &[Arc<Segment>]) -> u64 {
    crate::stats::database_bytes(db_path) + segments.iter().map(|s| s.info().file_bytes).sum::<u64>()
}

/// How many of the oldest segments are due to go now.
pub(crate) fn due(segments: &[Arc<Segment>], retention: &Retention, now: DateTime<Utc>, disk: u64) -> usize {
    let by_age = match retention.age {
        Some(age) => segments.iter().take_while(|s| expires_at(s, age).is_some_and(|at| at <= now)).count(),
        None => 0,
    };
    let by_size = match retention.max_disk_bytes {
        Some(max) if disk > max => {
            let mut over = disk - max;
            let mut n = 0;
            for s in segments {
                if over == 0 {
                    break;
                }
                over = over.saturating_sub(s.info().file_bytes);
                n += 1;
            }
            n
        }
        _ => 0,
    };
    by_age.max(by_size)
}

/// Removes the segments due to go, keeping what is still needed; `true` when it removed some.
pub(crate) fn retire_due(
    conn: &Connection,
    db_path: &std::path::Path,
    segments_dir: &std::path::Path,
    set: &SegmentSet,
    queue: &JobQueue,
    retention: &Retention,
    open_journeys: Option<&OpenJourneys>,
) -> Result<bool, StoreError> {
    let segments = set.snapshot();
    let n = due(&segments, retention, Utc::now(), disk_bytes(db_path, &segments));
    tracing::debug!(message = "retention pass", segments = segments.len(), due = n);
    if n == 0 {
        return Ok(false);
    }
    let run = &segments[..n];
    let (first, last) = (run[0].info().first_seq, run[n - 1].info().last_seq);
    let open = match open_journeys {
        Some(ask) => match ask(last) {
            Some(open) => open,
            // The engine is rebuilding: what it needs is not known yet.
            None => {
                tracing::debug!(message = "retention waits: the journey engine has not yet told which journeys are open up to there");
                return Ok(false);
            }
        },
        None => HashSet::new(),
    };
    let kept = kept_rows(conn, run, first, last, &open)?;
    let total: usize = run.iter().map(|s| s.len()).sum();
    if kept.len() == total {
        // Everything is still needed; nothing to win.
        return Ok(false);
    }
    let started = std::time::Instant::now();
    let kept_seqs: Vec<i64> = kept.iter().map(|r| r.seq).collect();
    let replacement = if kept.is_empty() {
        None
    } else {
        // A name no earlier file had: the run's rows and when it was made.
        let file = format!("{first:012}-{last:012}.kept-{}.cwseg", Utc::now().timestamp_micros());
        let path = segments_dir.join(&file);
        write_segment(&path, kept)?;
        Some((Arc::new(Segment::open(&path)?), file))
    };
    let removed: Vec<Arc<Segment>> = run.to_vec();
    let (reply, answer) = oneshot::channel();
    queue.send(Job::Retire { removed: removed.clone(), replacement, kept: kept_seqs.clone(), reply })?;
    answer.blocking_recv().map_err(|_| StoreError::WriterGone)??;
    for segment in &removed {
        if let Err(e) = std::fs::remove_file(segment.path()) {
            // Unregistered now: the next open deletes it.
            tracing::warn!(message = "a retired segment file could not be removed", file = %segment.path().display(), error = %e);
        }
    }
    tracing::info!(
        message = "retention removed sealed history",
        first_seq = first,
        last_seq = last,
        segments = n,
        events = total - kept_seqs.len(),
        kept = kept_seqs.len(),
        bytes = removed.iter().map(|s| s.info().file_bytes).sum::<u64>(),
        ms = started.elapsed().as_millis() as u64
    );
    Ok(true)
}

/// The rows of `run` still needed: events of pending dead letters, and events of the journeys in
/// `open`, in seq order.
fn kept_rows(conn: &Connection, run: &[Arc<Segment>], first: i64, last: i64, open: &HashSet<(String, String)>) -> Result<Vec<SealedRow>, StoreError> {
    let mut seqs: HashSet<i64> = HashSet::new();
    if !open.is_empty() {
        let mut members = conn.prepare_cached("SELECT seq, journey, journey_key FROM event_journeys WHERE seq BETWEEN ?1 AND ?2")?;
        let mut rows = members.query([first, last])?;
        while let Some(r) = rows.next()? {
            let key = (r.get::<_, String>(1)?, r.get::<_, String>(2)?);
            if open.contains(&key) {
                seqs.insert(r.get(0)?);
            }
        }
    }
    let mut pending = conn.prepare_cached("SELECT DISTINCT event_id FROM dlq WHERE status = 'pending' AND event_id IS NOT NULL")?;
    let ids: HashSet<String> = pending.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut kept = Vec::new();
    for segment in run {
        let mut positions: Vec<u32> = Vec::new();
        for id in &ids {
            if segment.may_contain_event_id(id) {
                positions.extend(segment.find(Key::EventId, id)?);
            }
        }
        let info = segment.info();
        for seq in seqs.iter().filter(|s| (info.first_seq..=info.last_seq).contains(*s)) {
            positions.extend(segment.position_of_seq(*seq)?);
        }
        positions.sort_unstable();
        positions.dedup();
        for pos in positions {
            let mut row = segment.row(pos)?;
            // A hash hit of a pending event id is checked against the row.
            if seqs.contains(&row.seq) || ids.contains(&row.event_id) {
                row.redeliveries = 0;
                kept.push(row);
            }
        }
    }
    kept.sort_by_key(|r| r.seq);
    Ok(kept)
}
