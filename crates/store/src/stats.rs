//! What the store holds and where: `causeway store stats`, `GET /v1/store`.

use rusqlite::Connection;
use serde::Serialize;

use crate::{SEGMENTS_DIR, Store, StoreError};

/// One sealed segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentStats {
    pub file: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub events: i64,
    pub min_time: String,
    pub max_time: String,
    pub min_received_at: String,
    pub max_received_at: String,
    /// The events' JSON, as received.
    pub raw_bytes: i64,
    pub file_bytes: i64,
    pub sealed_at: String,
}

/// The store as a whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStats {
    /// Events stored (redeliveries not counted).
    pub events: i64,
    /// The last position of the log.
    pub log_end: i64,
    /// Events not sealed yet, in `events_hot`.
    pub hot_events: i64,
    pub sealed_events: i64,
    /// Sealed up to this log position (0: nothing sealed), whether retention removed it since or not.
    pub sealed_upto: i64,
    pub segments: Vec<SegmentStats>,
    /// The stored events' JSON: what the store would hold uncompressed.
    pub raw_bytes: i64,
    /// The database file and its write-ahead log.
    pub database_bytes: u64,
    pub segment_bytes: u64,
    /// Everything on disk: database, log and segments.
    pub disk_bytes: u64,
    /// `disk_bytes` ÷ `raw_bytes`.
    pub disk_ratio: Option<f64>,
    /// The earliest event time kept, and the earliest receive time.
    pub oldest_time: Option<String>,
    pub oldest_received_at: Option<String>,
    /// Log positions per segment (0: sealing off).
    pub segment_events: u64,
    /// `[store] retention`, in seconds, when set.
    pub retention_seconds: Option<u64>,
    /// `[store] max_disk`, in bytes, when set.
    pub max_disk_bytes: Option<u64>,
    /// The segment retention removes next, when retention is on and a segment exists.
    pub next_removal: Option<NextRemoval>,
}

/// The oldest segment, and when retention removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextRemoval {
    pub file: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub events: i64,
    pub file_bytes: i64,
    /// When it is older than the retention (RFC 3339); `None` without `retention`.
    pub expires_at: Option<String>,
    /// `max_disk` when the data directory is over it (the segment goes at the next pass), else
    /// `retention`.
    pub reason: &'static str,
}

impl Store {
    /// Virtual machine steps SQLite took in the statements `events` nests over the unsealed
    /// rows, since the store opened: for tests that tell a lookup from a scan.
    #[doc(hidden)]
    pub fn nested_steps(&self) -> u64 {
        self.inner.segments.nested_steps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Groups of segments whose combined filters lookups ask first: for tests and benchmarks that
    /// wait for them.
    #[doc(hidden)]
    pub fn segment_groups(&self) -> usize {
        self.inner.segments.groups().len()
    }

    /// Envelope frames the sealed segments decompressed since they opened: for tests that tell a
    /// walk over links from one that reads whole rows.
    #[doc(hidden)]
    pub fn envelope_frames_decoded(&self) -> u64 {
        self.inner.segments.snapshot().iter().map(|s| s.envelope_decodes()).sum()
    }

    /// What the store holds: counts, bytes raw and on disk, the segments, the oldest event, and
    /// what retention removes next.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let counts = self.counts()?;
        let (segments, sealed_upto, hot_events, hot_raw, hot_oldest, hot_oldest_received) = self.with_reader(|c| {
            loop {
                let segments = segments(c)?;
                let sealed_upto = crate::seal::sealed_upto(c)?;
                // One statement, one snapshot: its bound tells whether a seal came between the two.
                let (upto, hot, raw, oldest, oldest_received): (i64, i64, i64, Option<String>, Option<String>) = c.query_row(
                    concat!(
                        "WITH b(upto) AS (SELECT coalesce(",
                        crate::schema::last_sealed_seq!(),
                        ", 0))
                         SELECT b.upto, count(h.seq), coalesce(sum(length(CAST(h.envelope AS BLOB))), 0), min(h.time),
                                (SELECT received_at FROM events_hot WHERE seq > b.upto ORDER BY seq LIMIT 1)
                         FROM b LEFT JOIN events_hot h ON h.seq > b.upto"
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?;
                if segments.last().map_or(0, |s| s.last_seq) == upto {
                    return Ok((segments, sealed_upto, hot, raw, oldest, oldest_received));
                }
            }
        })?;
        let dir = self.path().parent().unwrap_or(std::path::Path::new("."));
        let database_bytes = database_bytes(self.path());
        let retention = self.retention();
        let segment_bytes: u64 =
            std::fs::read_dir(dir.join(SEGMENTS_DIR)).map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0);
        let sealed_events: i64 = segments.iter().map(|s| s.events).sum();
        let raw_bytes = hot_raw + segments.iter().map(|s| s.raw_bytes).sum::<i64>();
        let disk_bytes = database_bytes + segment_bytes;
        let oldest_time = segments.iter().map(|s| s.min_time.clone()).chain(hot_oldest).min();
        let oldest_received_at = segments.first().map(|s| s.min_received_at.clone()).or(hot_oldest_received);
        Ok(StoreStats {
            events: counts.events,
            log_end: counts.log_end,
            hot_events,
            sealed_events,
            sealed_upto,
            disk_ratio: (raw_bytes > 0).then(|| disk_bytes as f64 / raw_bytes as f64),
            segments,
            raw_bytes,
            database_bytes,
            segment_bytes,
            disk_bytes,
            oldest_time,
            oldest_received_at,
            segment_events: self.inner.segment_events,
            retention_seconds: retention.age.map(|a| a.as_secs()),
            max_disk_bytes: retention.max_disk_bytes,
            next_removal: self.next_removal(disk_bytes),
        })
    }
}

impl Store {
    fn retention(&self) -> crate::Retention {
        *self.inner.retention.lock().expect("retention")
    }

    fn next_removal(&self, disk_bytes: u64) -> Option<NextRemoval> {
        let retention = &self.retention();
        if !retention.is_on() {
            return None;
        }
        let segments = self.inner.segments.snapshot();
        let oldest = segments.first()?;
        let info = oldest.info();
        let expires_at = retention.age.and_then(|age| crate::retention::expires_at(oldest, age)).map(|t| causeway_envelope::format_time(&t));
        let over = retention.max_disk_bytes.is_some_and(|max| disk_bytes > max);
        if !over && expires_at.is_none() {
            return None;
        }
        Some(NextRemoval {
            file: oldest.path().file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            first_seq: info.first_seq,
            last_seq: info.last_seq,
            events: info.rows as i64,
            file_bytes: info.file_bytes as i64,
            expires_at,
            reason: if over { "max_disk" } else { "retention" },
        })
    }
}

/// The database file at `db_path`, its WAL and its shared-memory index, in bytes.
pub(crate) fn database_bytes(db_path: &std::path::Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut path = db_path.as_os_str().to_owned();
            path.push(suffix);
            std::fs::metadata(path).map_or(0, |m| m.len())
        })
        .sum()
}

fn segments(c: &Connection) -> Result<Vec<SegmentStats>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT file, first_seq, last_seq, events, min_time, max_time, min_received_at, max_received_at, raw_bytes, file_bytes, sealed_at
         FROM segments ORDER BY first_seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(SegmentStats {
            file: r.get(0)?,
            first_seq: r.get(1)?,
            last_seq: r.get(2)?,
            events: r.get(3)?,
            min_time: r.get(4)?,
            max_time: r.get(5)?,
            min_received_at: r.get(6)?,
            max_received_at: r.get(7)?,
            raw_bytes: r.get(8)?,
            file_bytes: r.get(9)?,
            sealed_at: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
