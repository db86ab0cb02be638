//! The embedded event store: one SQLite database in WAL mode with `synchronous=FULL`.
//!
//! **Invariants:**
//! - An append is answered only after its transaction committed (the WAL is fsynced): an
//!   acknowledged event survives `kill -9` and power loss.
//! - One writer thread owns the only read-write connection and group-commits whatever appends are
//!   queued, so concurrent producers share one fsync.
//! - Events are unique on their CloudEvents identity (`event_id`, `source`); a redelivery is a
//!   `Duplicate`, stored once, its count kept in `redeliveries`.
//! - After a failed commit the store is poisoned and refuses further writes instead of pretending.
//! - Reads use separate read-only connections; user SQL runs on them under an authorizer that allows
//!   nothing but reading, within a time limit that reaches inside function calls, and answers of
//!   bounded size.

mod aggregate;
mod dlq;
mod error;
mod hot;
mod lineage;
mod read;
mod retention;
pub use retention::{OpenJourneys, Retention};
mod schema;
#[doc(hidden)]
pub use schema::create_at_version;
mod seal;
mod sealed;
mod segment;
pub use seal::SEGMENTS_DIR;
pub use segment::{Key, SealedRow, Segment, SegmentInfo, key_hash, write_segment};
mod sql;
mod stats;
pub use stats::{NextRemoval, SegmentStats, StoreStats};
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

pub use aggregate::AggregateLookup;
pub use dlq::{
    DlqFilter, DlqReport, DlqRow, DlqStatus, DlqSummary, FlowBucket, INGEST_CONSUMER, IngestRefusal, ReplayAttempt, ReplayOutcome, ReplayRow,
    Reported, StatusChange,
};
pub use error::StoreError;
pub use lineage::{TreeNode, build_tree};
pub use read::{EventRow, FindingFilter, FindingRow, LogEntry, StoreCounts};
pub use sql::{DLQ_PAYLOAD_COLUMNS, SqlLimits, SqlResult, SqlScope};
pub use writer::{
    AppendResult, Backlog, Committed, DerivedFinding, DerivedWrite, EventOutcome, Follower, NewEvent, NewFinding, NewRejection, Origin,
    ResolvedDeadLetter, WRITER_THREAD_NAME,
};

/// The database file inside the data directory.
pub const DB_FILE: &str = "causeway.db";

/// How the store uses the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// The writer's page cache: the pages of `events_hot` a commit writes (its end) and the seal
    /// deletes (its start) stay in memory between them; most of the process's resident memory
    /// under load.
    pub writer_cache_bytes: u64,
    /// Log positions per sealed segment; the newest half as many again always stay unsealed.
    /// `0` turns sealing off (the history stays in `events_hot`).
    pub segment_events: u64,
    /// What retention removes (`retention.rs`); it removes sealed segments only.
    pub retention: Retention,
    /// A journey engine will tell retention which journeys are open ([`Store::set_open_journeys`]).
    /// Until it does, retention removes nothing: a server that starts with a model must not lose
    /// the events of open journeys in the moments before its engine registers.
    pub journey_engine: bool,
}

/// The segment size `docs/operations.md` recommends, and the default.
pub const RECOMMENDED_SEGMENT_EVENTS: u64 = 100_000;

/// [`StoreSettings::segment_events`] unless configured: the recommended size. Sealed history
/// answers every query the unsealed store answers, lookups through the segments' indexes and
/// filters, scans by event type and time through their lineage columns (`docs/operations.md`).
pub const DEFAULT_SEGMENT_EVENTS: u64 = RECOMMENDED_SEGMENT_EVENTS;

/// [`StoreSettings::writer_cache_bytes`] unless configured: 64 MiB. It was 256 MiB while
/// `events_hot` kept indexes on random keys, whose pages every commit touched all over; with
/// indexes in ingest order and the history sealed, in-process ingest of 2,000,000 events ran as
/// fast with 64 MiB as with 256 (`lineage_tail … cache_mib=N`, `docs/benchmarks.md`).
pub const DEFAULT_WRITER_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            writer_cache_bytes: DEFAULT_WRITER_CACHE_BYTES,
            segment_events: DEFAULT_SEGMENT_EVENTS,
            retention: Retention::default(),
            journey_engine: false,
        }
    }
}

/// A handle to the store; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    // Fields drop in this order: the pooled readers close first, then the writer's drop ends its
    // thread and waits for it. The last connection to close checkpoints the WAL into the database
    // file and removes it only if it is a writer, so a dropped store leaves its file whole.
    readers: Mutex<Vec<Connection>>,
    /// Users' SQL runs on connections of its own (`sql.rs`).
    sql: sql::SqlPool,
    writer: writer::WriterHandle,
    /// The sealed history every connection reads through `sealed_events`.
    segments: Arc<sealed::SegmentSet>,
    /// [`StoreSettings::segment_events`].
    segment_events: u64,
    retention: Arc<Mutex<Retention>>,
    /// Asked by retention which journeys are open ([`Store::set_open_journeys`]).
    open_journeys: Arc<Mutex<Option<OpenJourneys>>>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. Recovery of an interrupted WAL happens here.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, &StoreSettings::default())
    }

    /// [`Store::open`] with settings.
    pub fn open_with(dir: &Path, settings: &StoreSettings) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io { path: dir.to_path_buf(), source: e })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path)?;
        let segments = Arc::new(sealed::SegmentSet::default());
        sealed::register(&conn, segments.clone())?;
        schema::prepare_writer(&conn, settings.writer_cache_bytes)?;
        let segments_dir = dir.join(SEGMENTS_DIR);
        for segment in seal::open_segments(&conn, &segments_dir)? {
            segments.push(segment);
        }
        sealed::SegmentSet::group_in_background(&segments);
        let sealed_upto = seal::sealed_upto(&conn)?;
        let started = std::time::Instant::now();
        let keys = hot::HotKeys::load(&conn, sealed_upto)?;
        let (entries, bytes) = keys.size();
        tracing::info!(entries, bytes, elapsed_ms = started.elapsed().as_millis() as u64, "indexed the unsealed events' lookup keys");
        let _ = segments.keys.set(keys);
        // "Not known yet" (`None` from the engine's answer) puts every removal off until it registers.
        let not_yet_known: OpenJourneys = Arc::new(|_| None);
        let open_journeys: Arc<Mutex<Option<OpenJourneys>>> = Arc::new(Mutex::new(settings.journey_engine.then_some(not_yet_known)));
        let retention = Arc::new(Mutex::new(settings.retention));
        let sealing = (settings.segment_events > 0).then(|| seal::SealerConfig {
            db_path: path.clone(),
            segments_dir,
            segment_events: settings.segment_events as i64,
            keep_hot: (settings.segment_events / 2) as i64,
            retention: retention.clone(),
            open_journeys: open_journeys.clone(),
        });
        let writer = writer::WriterHandle::spawn(conn, segments.clone(), sealing)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                writer,
                readers: Mutex::new(Vec::new()),
                sql: sql::SqlPool::default(),
                segments,
                segment_events: settings.segment_events,
                retention,
                open_journeys,
            }),
        })
    }

    /// Changes what retention removes, from the next pass on (which this starts). Retention
    /// removes sealed segments: without sealing it removes nothing.
    pub fn set_retention(&self, retention: Retention) {
        *self.inner.retention.lock().expect("retention") = retention;
        self.inner.writer.wake_sealer();
    }

    /// How retention learns which journeys are still open (their events are kept): the journey
    /// engine registers this when it starts. Without it, only pending dead letters' events are
    /// kept.
    pub fn set_open_journeys(&self, open: OpenJourneys) {
        *self.inner.open_journeys.lock().expect("open journeys") = Some(open);
    }

    /// `Err` once a failed commit poisoned the store.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        self.inner.writer.check_writable()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends events and rejected inputs in one durable transaction (shared with other callers'
    /// appends queued at the same time). Resolves after the commit.
    pub async fn append(&self, events: Vec<NewEvent>, rejections: Vec<NewRejection>) -> Result<AppendResult, StoreError> {
        self.inner.writer.submit(events, rejections)?.await.map_err(|_| StoreError::WriterGone)?
    }

    /// [`Store::append`], queued for the writer before this returns, so appends queued one after
    /// the other are logged in that order; the future resolves after the commit.
    pub fn queue_append(
        &self,
        events: Vec<NewEvent>,
        rejections: Vec<NewRejection>,
    ) -> Result<impl std::future::Future<Output = Result<AppendResult, StoreError>> + Send + 'static, StoreError> {
        let answer = self.inner.writer.submit(events, rejections)?;
        Ok(async move { answer.await.map_err(|_| StoreError::WriterGone)? })
    }

    /// [`Store::append`] for callers outside an async runtime.
    pub fn append_blocking(&self, events: Vec<NewEvent>, rejections: Vec<NewRejection>) -> Result<AppendResult, StoreError> {
        self.inner.writer.submit(events, rejections)?.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Writes what the journey engine derived, in one transaction with whatever else is queued.
    /// Blocks until it is committed; call it off the async runtime.
    pub fn write_derived_blocking(&self, write: DerivedWrite) -> Result<(), StoreError> {
        self.inner.writer.submit_derived(write)?.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Rows queued for the writer and the log's end: how far the writer is behind, for admission
    /// control.
    pub fn backlog(&self) -> Backlog {
        self.inner.writer.backlog()
    }

    /// Hands every later commit's log entries to the returned follower (replacing any earlier
    /// one). Its first `drain` reports a lag: read the log up to now from the store first.
    pub fn follow(&self) -> Follower {
        self.inner.writer.follow()
    }

    /// A time no later than the receive time (`received_at`) of any write not yet visible to
    /// readers. A consumer of the log that has read everything visible may advance its clock to it
    /// without an event received earlier still to come.
    pub fn watermark(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.writer.watermark()
    }

    /// Runs `f` on a pooled read-only connection.
    pub fn with_reader<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.inner.readers.lock().expect("reader pool lock").pop();
        let mut conn = match conn {
            Some(c) => c,
            None => open_reader(&self.inner.path, &self.inner.segments, sql::Reader::Store)?,
        };
        let result = f(&mut conn);
        let mut pool = self.inner.readers.lock().expect("reader pool lock");
        if pool.len() < 16 {
            pool.push(conn);
        }
        result
    }
}

/// A read-only connection to the store in `dir`, with the sealed history readable: for tools and
/// tests that read the database beside a running server. Its segments are those registered when
/// it opens.
pub fn open_read_only(dir: &Path) -> Result<Connection, StoreError> {
    let path = dir.join(DB_FILE);
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let segments = Arc::new(sealed::SegmentSet::default());
    sealed::register(&conn, segments.clone())?;
    for segment in seal::registered_segments(&conn, &dir.join(SEGMENTS_DIR))? {
        segments.push(segment);
    }
    Ok(conn)
}

fn open_reader(path: &Path, segments: &Arc<sealed::SegmentSet>, reader: sql::Reader) -> Result<Connection, StoreError> {
    let mut conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)?;
    sealed::register(&conn, segments.clone())?;
    schema::prepare_reader(&mut conn, reader)?;
    Ok(conn)
}
