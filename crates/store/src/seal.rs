//! The sealer: a thread that moves the oldest runs of `events_hot` into segment files.
//!
//! **Invariants:**
//! - A segment file is complete and fsynced under its final name before the writer is asked to
//!   register it; the registration and the removal of its rows from `events_hot` are one commit.
//!   A crash in between leaves a file no `segments` row names, which the next open deletes.
//! - Only the sealer starts seals, one at a time, so segments follow each other in seq order.
//! - The newest `keep_hot` log positions always stay in `events_hot`, where the journey engine and
//!   the lookups of the latest events find them without opening a segment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use crate::StoreError;
use crate::sealed::SegmentSet;
use crate::segment::{SealedRow, Segment, write_segment};
use crate::writer::{Job, JobQueue};

/// The directory of segment files inside the data directory.
pub const SEGMENTS_DIR: &str = "segments";

/// The file name of the segment holding `first..=last`.
pub(crate) fn segment_file(first: i64, last: i64) -> String {
    format!("{first:012}-{last:012}.cwseg")
}

/// A test hook: the sealer waits this many milliseconds between writing a segment file and asking
/// for its registration, so that a test can kill the process in between (read once, when the
/// sealer starts). Never set it otherwise.
const FAULT_SEAL_STALL_ENV: &str = "CAUSEWAY_FAULT_SEAL_STALL_MS";

/// How sealing runs.
#[derive(Clone)]
pub(crate) struct SealerConfig {
    pub db_path: PathBuf,
    pub segments_dir: PathBuf,
    /// Log positions per segment.
    pub segment_events: i64,
    /// Newest log positions never sealed.
    pub keep_hot: i64,
    /// What retention removes, after each seal and every [`RETENTION_INTERVAL`] (changed by
    /// [`crate::Store::set_retention`]).
    pub retention: Arc<Mutex<crate::Retention>>,
    /// Asked which journeys are open before a removal (set by the server's journey engine).
    pub open_journeys: Arc<Mutex<Option<crate::OpenJourneys>>>,
}

/// How often the sealer looks for history to remove when nothing wakes it.
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Wakes the sealer, or stops it.
#[derive(Default)]
pub(crate) struct Signal {
    state: Mutex<(bool, bool)>, // (woken, stopping)
    ready: Condvar,
}

impl Signal {
    pub(crate) fn wake(&self) {
        self.state.lock().expect("seal signal").0 = true;
        self.ready.notify_one();
    }

    pub(crate) fn stop(&self) {
        self.state.lock().expect("seal signal").1 = true;
        self.ready.notify_one();
    }

    /// Waits to be woken, or for `timeout`; `false` once stopping.
    fn wait(&self, timeout: Option<std::time::Duration>) -> bool {
        let mut state = self.state.lock().expect("seal signal");
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while !state.0 && !state.1 {
            match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    state = self.ready.wait_timeout(state, left).expect("seal signal").0;
                }
                None => state = self.ready.wait(state).expect("seal signal"),
            }
        }
        state.0 = false;
        !state.1
    }

    fn stopping(&self) -> bool {
        self.state.lock().expect("seal signal").1
    }
}

pub(crate) fn spawn(
    config: SealerConfig,
    set: Arc<SegmentSet>,
    queue: JobQueue,
    signal: Arc<Signal>,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("causeway-sealer".into())
        .spawn(move || {
            let conn = match crate::open_reader(&config.db_path, &set, crate::sql::Reader::Store) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(message = "the sealer cannot read the store; history stays unsealed", error = %e);
                    return;
                }
            };
            let stall = std::env::var(FAULT_SEAL_STALL_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()).map(std::time::Duration::from_millis);
            if let Some(stall) = stall {
                tracing::warn!(
                    message = "CAUSEWAY_FAULT_SEAL_STALL_MS: the sealer stalls before each registration, on purpose",
                    ms = stall.as_millis() as u64
                );
            }
            let retention = || *config.retention.lock().expect("retention");
            while signal.wait(retention().is_on().then_some(RETENTION_INTERVAL)) {
                loop {
                    let sealed = match seal_one(&conn, &config, &set, &queue, stall) {
                        Ok(sealed) => sealed,
                        Err(e) => {
                            // The rows stay in events_hot, readable and safe; the next wake tries again.
                            tracing::error!(message = "sealing failed; the events stay unsealed", error = %e);
                            false
                        }
                    };
                    // After each seal, not once sealing has caught up: under a steady stream the
                    // sealer may never catch up, and retention must not wait for it.
                    while retention().is_on() && !signal.stopping() {
                        let open = config.open_journeys.lock().expect("open journeys").clone();
                        match crate::retention::retire_due(&conn, &config.db_path, &config.segments_dir, &set, &queue, &retention(), open.as_ref()) {
                            Ok(true) => continue,
                            Ok(false) => break,
                            Err(e) => {
                                // The segments stay, readable and safe; the next wake tries again.
                                tracing::error!(message = "retention failed; the history stays", error = %e);
                                break;
                            }
                        }
                    }
                    if !sealed || signal.stopping() {
                        break;
                    }
                }
            }
        })
        .map_err(|e| StoreError::Io { path: "sealer thread".into(), source: e })
}

/// Seals the next run of `events_hot` if a full one is there beyond the newest `keep_hot`
/// positions; `true` when it did.
fn seal_one(
    conn: &Connection,
    config: &SealerConfig,
    set: &SegmentSet,
    queue: &JobQueue,
    stall: Option<std::time::Duration>,
) -> Result<bool, StoreError> {
    let upto = set.snapshot().last().map_or(0, |s| s.info().last_seq);
    let log_end: i64 = conn.query_row(crate::schema::LOG_END, [], |r| r.get(0))?;
    // The run's extent first, from seqs alone; its rows then stream into the file. Only this
    // thread removes rows from `events_hot`, so the same rows are there for both statements.
    let (count, first, last): (i64, Option<i64>, Option<i64>) = conn.query_row(
        "SELECT count(*), min(seq), max(seq) FROM (SELECT seq FROM events_hot WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
        params![upto, config.segment_events],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (Some(first), Some(last)) = (first, last) else { return Ok(false) };
    if count < config.segment_events || log_end - last < config.keep_hot {
        return Ok(false);
    }
    let file = segment_file(first, last);
    let path = config.segments_dir.join(&file);
    let started = std::time::Instant::now();
    write_run(conn, upto, config.segment_events, &path)?;
    let segment = Arc::new(Segment::open(&path)?);
    let info = segment.info().clone();
    if let Some(stall) = stall {
        std::thread::sleep(stall);
    }
    let (reply, answer) = oneshot::channel();
    queue.send(Job::Seal { segment, file, reply })?;
    answer.blocking_recv().map_err(|_| StoreError::WriterGone)??;
    let unsealed = log_end - last;
    tracing::info!(
        message = "sealed a segment",
        first_seq = first,
        last_seq = last,
        events = info.rows,
        raw_bytes = info.raw_bytes,
        file_bytes = info.file_bytes,
        ms = started.elapsed().as_millis() as u64,
        unsealed
    );
    Ok(true)
}

/// Writes the segment file of up to `limit` rows of `events_hot` after `upto`, in seq order,
/// streamed: a segment's rows are never all in memory at once (100,000 of them took 100–150 MiB,
/// the process's peak while the store sealed).
fn write_run(conn: &Connection, upto: i64, limit: i64, path: &Path) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        r#"SELECT seq, event_id, source, event_type, correlation_id, causation_id, subject, time, topic, received_at,
                  envelope, partition, "offset", message_time
           FROM events_hot WHERE seq > ?1 ORDER BY seq LIMIT ?2"#,
    )?;
    let rows = stmt.query_map(params![upto, limit], |r| {
        Ok(SealedRow {
            seq: r.get(0)?,
            event_id: r.get(1)?,
            source: r.get(2)?,
            event_type: r.get(3)?,
            correlation_id: r.get(4)?,
            causation_id: r.get(5)?,
            subject: r.get(6)?,
            time: r.get(7)?,
            topic: r.get(8)?,
            received_at: r.get(9)?,
            // Counted in `sealed_redeliveries` from the seal on.
            redeliveries: 0,
            envelope: r.get(10)?,
            partition: r.get(11)?,
            offset: r.get(12)?,
            message_time: r.get(13)?,
        })
    })?;
    // A read that fails mid-way ends the stream; the file it leaves is then removed, not used.
    let mut failed = None;
    let written = write_segment(path, rows.map_while(|r| r.map_err(|e| failed = Some(e)).ok()));
    if let Some(e) = failed {
        let _ = std::fs::remove_file(path);
        return Err(e.into());
    }
    written.map(drop)
}

/// The last seq the sealed history covers (0 when nothing was ever sealed), as the `segments`
/// table registers it (a retention's kept segment covers more seqs than it holds), or as far as
/// retention removed it.
pub(crate) const SEALED_UPTO: &str = concat!(
    "SELECT max(coalesce(",
    crate::schema::last_sealed_seq!(),
    ", 0), coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'retired_upto'), 0))"
);

pub(crate) fn sealed_upto(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(SEALED_UPTO, [], |r| r.get(0))
}

/// Opens the segments the `segments` table names, oldest first, and deletes the files it does not
/// name (a seal interrupted before its commit, a retention pass interrupted after it).
pub(crate) fn open_segments(conn: &Connection, dir: &Path) -> Result<Vec<Arc<Segment>>, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Io { path: dir.to_path_buf(), source: e })?;
    let files: Vec<String> = conn.prepare("SELECT file FROM segments ORDER BY first_seq")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let listing = std::fs::read_dir(dir).map_err(|e| StoreError::Io { path: dir.to_path_buf(), source: e })?;
    for entry in listing.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !files.contains(&name) {
            tracing::info!(message = "removing a segment file no commit registered", file = %name);
            std::fs::remove_file(entry.path()).map_err(|e| StoreError::Io { path: entry.path(), source: e })?;
        }
    }
    files.iter().map(|f| Segment::open(&dir.join(f)).map(Arc::new)).collect()
}

/// The segments the `segments` table names, oldest first, leaving other files alone.
pub(crate) fn registered_segments(conn: &Connection, dir: &Path) -> Result<Vec<Arc<Segment>>, StoreError> {
    registered_files(conn)?.iter().map(|f| Segment::open(&dir.join(f)).map(Arc::new)).collect()
}

fn registered_files(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT file FROM segments ORDER BY first_seq")?;
    Ok(stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?)
}
