//! The single writer thread and its group commit.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_envelope::Event;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::StoreError;
use crate::dlq::{DlqDone, DlqOp, DlqReport};
use crate::sealed::SegmentSet;
use crate::segment::{Key, Segment};

/// An accepted event to store. Its canonical JSON is rendered here, on the caller's thread, so the
/// single writer thread only writes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    event: Event,
    envelope: String,
    time: String,
    /// Where a broker delivered it, if one did.
    pub origin: Origin,
    /// Findings about this event, stored with it unless it is a duplicate.
    pub findings: Vec<NewFinding>,
}

impl NewEvent {
    /// Takes the event as it will be stored: redact before, never after.
    pub fn new(event: Event) -> NewEvent {
        NewEvent { envelope: event.to_json(), time: event.time_string(), event, origin: Origin::default(), findings: Vec::new() }
    }

    pub fn event(&self) -> &Event {
        &self.event
    }
}

/// Where a broker delivered a message: kept on its event (`event_lineage.topic`, `partition`,
/// `offset`) or on the DLQ record of its refusal (`source_topic`, `source_partition`,
/// `source_offset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The Kafka topic or NATS subject.
    pub topic: Option<String>,
    /// The Kafka partition.
    pub partition: Option<i32>,
    /// The Kafka offset, or the NATS stream sequence.
    pub offset: Option<i64>,
    /// The broker's timestamp of the message (canonical RFC 3339).
    pub message_time: Option<String>,
}

impl Origin {
    /// The broker channel: `topic/partition` (Kafka), else the topic (a NATS subject).
    pub fn channel(&self) -> Option<String> {
        match (&self.topic, self.partition) {
            (Some(topic), Some(partition)) => Some(format!("{topic}/{partition}")),
            (topic, None) => topic.clone(),
            (None, Some(_)) => None,
        }
    }
}

/// A finding to store (PRODUCT §5). For an event's finding, the event and correlation ids are
/// taken from the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewFinding {
    pub kind: String,
    pub journey: Option<String>,
    pub journey_key: Option<String>,
    pub correlation_id: Option<String>,
    pub event_id: Option<String>,
    pub expected: Option<String>,
    /// The policy or invariant that was broken, if any (the journey engine's findings).
    pub rule: Option<String>,
    pub detail: String,
    pub owner: Option<String>,
}

/// Input refused at ingest, kept as a dead-letter record with its reason (consumer
/// [`INGEST_CONSUMER`](crate::INGEST_CONSUMER)).
#[derive(Debug, Clone, Default)]
pub struct NewRejection {
    pub record: DlqReport,
    /// Findings about the refused input (e.g. `missing_correlation`).
    pub findings: Vec<NewFinding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Accepted,
    Duplicate,
}

/// What an append did, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    pub events: Vec<EventOutcome>,
    /// The DLQ record id of each rejection.
    pub dlq_ids: Vec<i64>,
}

/// A finding the journey engine raised, keyed by the engine's id: written again (a rebuild, a
/// resolution) it updates its row in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedFinding {
    pub engine_id: u64,
    pub finding: NewFinding,
    pub detected_at: String,
    pub resolved_at: Option<String>,
}

/// What the journey engine derived from the log since its last write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DerivedWrite {
    /// Set on the first write of a rebuild under a model other than the one the derived rows
    /// came from: they are all dropped first. The value is recorded as the model they come from.
    pub reset_for_model: Option<String>,
    /// (events.seq, journey, key) for each event that joined a journey instance.
    pub memberships: Vec<(i64, String, String)>,
    pub findings: Vec<DerivedFinding>,
    /// Engine findings with an id above this no longer exist (the end of a rebuild).
    pub drop_findings_above: Option<u64>,
    /// The log position everything derived so far comes from: a rebuild under the same model
    /// need not write again what it derives up to there.
    pub position: Option<i64>,
    /// Dead-letter records whose expected reaction has now arrived: open records of the event
    /// held by one of the consumers become `resolved`.
    pub resolved_dead_letters: Vec<ResolvedDeadLetter>,
    /// Rows of the key-value table `meta` to set, e.g. the lag monitor's windows of commits
    /// (`lag:GROUP`), so they survive restarts.
    pub meta: Vec<(String, String)>,
}

/// See [`DerivedWrite::resolved_dead_letters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDeadLetter {
    /// The event the consumers failed on (the trigger of the missing reaction).
    pub event_id: String,
    pub consumers: Vec<String>,
    pub reason: String,
    pub at: String,
}

pub(crate) enum Job {
    Append {
        events: Vec<NewEvent>,
        rejections: Vec<NewRejection>,
        reply: oneshot::Sender<Result<AppendResult, StoreError>>,
    },
    Derived {
        write: DerivedWrite,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Dlq {
        op: DlqOp,
        reply: oneshot::Sender<Result<DlqDone, StoreError>>,
    },
    /// Registers a segment file the sealer wrote: from this commit on, its rows are read from it.
    Seal {
        segment: Arc<Segment>,
        file: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Removes the oldest segments (`retention.rs`), the events still needed (`kept`, by seq) in
    /// `replacement`.
    Retire {
        removed: Vec<Arc<Segment>>,
        replacement: Option<(Arc<Segment>, String)>,
        kept: Vec<i64>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Job {
    fn rows(&self) -> usize {
        match self {
            Job::Append { events, rejections, .. } => events.len() + rejections.len(),
            Job::Derived { write, .. } => write.memberships.len() + write.findings.len() + write.meta.len(),
            Job::Dlq { .. } | Job::Seal { .. } | Job::Retire { .. } => 1,
        }
    }

    fn fail(self, e: &StoreError) {
        let err = || StoreError::Poisoned(e.to_string());
        match self {
            Job::Append { reply, .. } => drop(reply.send(Err(err()))),
            Job::Derived { reply, .. } => drop(reply.send(Err(err()))),
            Job::Dlq { reply, .. } => drop(reply.send(Err(err()))),
            Job::Seal { reply, .. } | Job::Retire { reply, .. } => drop(reply.send(Err(err()))),
        }
    }
}

/// A committed entry of the log, handed to the follower (the journey engine) right after its
/// commit, so it need not read and parse it back.
#[derive(Debug, Clone)]
pub struct Committed {
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    pub redelivery: bool,
    pub event: Event,
    /// As [`LogEntry::channel`](crate::LogEntry::channel).
    pub channel: Option<String>,
}

/// Commits handed over per follower channel before it counts as lagging.
const FEED_CAPACITY: usize = 256;

/// The follower's channel. When it is full, entries are dropped and `lagged` is set: the follower
/// then reads them from the log.
#[derive(Default)]
pub(crate) struct Feed {
    tx: Mutex<Option<mpsc::SyncSender<Vec<Committed>>>>,
    lagged: std::sync::atomic::AtomicBool,
}

/// The receiving side of [`crate::Store::follow`].
pub struct Follower {
    rx: mpsc::Receiver<Vec<Committed>>,
    feed: Arc<Feed>,
}

impl Follower {
    /// Entries committed since the last call, in log order. `true` when some were dropped
    /// because the follower lagged: it must then read the log from its position.
    pub fn drain(&self, out: &mut Vec<Committed>) -> bool {
        let lagged = self.feed.lagged.swap(false, std::sync::atomic::Ordering::AcqRel);
        while let Ok(batch) = self.rx.try_recv() {
            out.extend(batch);
        }
        lagged
    }
}

/// The receive-time stamps of commits, shared with readers of the log: what a consumer of the log
/// may take as "now" without an event stamped earlier still to come.
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    /// The latest stamp handed out; stamps never go back, even if the system clock does.
    last: Option<DateTime<Utc>>,
    /// The stamp of the commit being written, if one is.
    in_progress: Option<DateTime<Utc>>,
}

/// The current time at the store's microsecond precision, never before an earlier stamp. A
/// commit's stamp (`commit`) is after every earlier one, so that the commits of the log can be
/// told apart by their receive time: the journey engine judges deadlines between commits, never
/// inside one, and a rebuild must find the same boundaries.
fn next_stamp(stamps: &mut Stamps, commit: bool) -> DateTime<Utc> {
    let now = Utc::now();
    let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let stamp = match stamps.last {
        Some(l) if commit && now <= l => l + chrono::TimeDelta::microseconds(1),
        Some(l) => l.max(now),
        None => now,
    };
    stamps.last = Some(stamp);
    stamp
}

/// How far the writer is behind: see [`crate::Store::backlog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Rows (events, rejections, derived rows, DLQ operations) queued or being committed.
    pub queued_rows: usize,
    /// The last log position committed (`seq`; 0 for an empty log).
    pub log_end: i64,
}

#[derive(Debug, Default)]
struct Depth {
    queued_rows: AtomicUsize,
    log_end: AtomicI64,
}

/// The writer's queue of jobs, counting their rows in [`Backlog::queued_rows`].
#[derive(Clone)]
pub(crate) struct JobQueue {
    tx: mpsc::Sender<Job>,
    depth: Arc<Depth>,
}

impl JobQueue {
    pub(crate) fn send(&self, job: Job) -> Result<(), StoreError> {
        let rows = job.rows();
        self.depth.queued_rows.fetch_add(rows, Ordering::AcqRel);
        let sent = self.tx.send(job).map_err(|_| StoreError::WriterGone);
        if sent.is_err() {
            self.depth.queued_rows.fetch_sub(rows, Ordering::AcqRel);
        }
        sent
    }
}

pub(crate) struct WriterHandle {
    /// `None` only while dropping: closing the channel ends the writer's loop.
    queue: Option<JobQueue>,
    depth: Arc<Depth>,
    /// The sealer thread and its signal, if sealing is on.
    sealer: Option<(Arc<crate::seal::Signal>, std::thread::JoinHandle<()>)>,
    poisoned: Arc<Mutex<Option<String>>>,
    stamps: Arc<Mutex<Stamps>>,
    feed: Arc<Feed>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterHandle {
    /// Ends the writer and waits for its thread: when this returns, the writer's connection is
    /// closed (its last commit done, the WAL checkpointed if no other connection is open).
    fn drop(&mut self) {
        // The sealer first: it may be waiting on the writer.
        if let Some((signal, thread)) = self.sealer.take() {
            signal.stop();
            let _ = thread.join();
        }
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread's name (what `ps -L` and `/proc/PID/task/*/comm` show, cut to 15 bytes).
pub const WRITER_THREAD_NAME: &str = "causeway-store-writer";

/// Most rows one group commit takes before it commits and starts the next.
const MAX_ROWS_PER_COMMIT: usize = 50_000;

/// The write-ahead log is checkpointed into the database, and starts again from its beginning,
/// once it holds this much: 64 MiB rather than SQLite's 4 MiB, so a page changed by many commits is
/// copied into the database once per checkpoint, not once per commit.
pub(crate) const WAL_CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;
/// How long a checkpoint waits for readers still reading frames of the log before it gives up
/// (reads are statements of milliseconds; a user query may take seconds).
const CHECKPOINT_WAIT: Duration = Duration::from_millis(100);
/// After a checkpoint that readers kept from restarting the log, the earliest next try.
const CHECKPOINT_RETRY: Duration = Duration::from_millis(100);
/// The writer's wait for a lock otherwise.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A test and bench hook that slows the store on purpose: the writer sleeps this many
/// milliseconds before each commit (read once, when the writer starts). For measuring how the
/// sources behave against a slow store (`kafka-bench`); never set it otherwise.
const FAULT_COMMIT_DELAY_ENV: &str = "CAUSEWAY_FAULT_COMMIT_DELAY_MS";

/// [`FAULT_COMMIT_DELAY_ENV`], if set to a positive number of milliseconds.
fn fault_commit_delay() -> Option<Duration> {
    let ms: u64 = std::env::var(FAULT_COMMIT_DELAY_ENV).ok()?.trim().parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl WriterHandle {
    /// Starts the writer on `conn`, and the sealer if `sealing` is given.
    pub(crate) fn spawn(conn: Connection, set: Arc<SegmentSet>, sealing: Option<crate::seal::SealerConfig>) -> Result<WriterHandle, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let poisoned = Arc::new(Mutex::new(None));
        let stamps = Arc::new(Mutex::new(Stamps::default()));
        // Events and redeliveries share one ingest order; the writer hands out its numbers.
        let next_seq: i64 = conn.query_row(crate::schema::LOG_END, [], |r| r.get::<_, i64>(0))? + 1;
        let feed = Arc::new(Feed::default());
        // The log's length after each commit, in frames (pages), for `checkpoint_if_due`. A hook of
        // our own replaces SQLite's automatic checkpoints.
        let wal_frames = Arc::new(AtomicI64::new(0));
        let frames = wal_frames.clone();
        let mut conn = conn;
        let sealed_upto = crate::seal::sealed_upto(&conn)?;
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
            frames.store(i64::from(pages), Ordering::Relaxed);
            Ok(())
        }))?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let depth = Arc::new(Depth { queued_rows: AtomicUsize::new(0), log_end: AtomicI64::new(next_seq - 1) });
        let writer = Writer {
            depth: depth.clone(),
            conn,
            next_seq,
            poisoned: poisoned.clone(),
            stamps: stamps.clone(),
            feed: feed.clone(),
            wal_frames,
            checkpoint_frames: (WAL_CHECKPOINT_BYTES as i64 / page_size.max(512)).max(1),
            next_checkpoint: Instant::now(),
            fault_commit_delay: fault_commit_delay(),
            sealed: Sealed { upto: sealed_upto, set: set.clone() },
            sealer: None,
        };
        if let Some(delay) = writer.fault_commit_delay {
            tracing::warn!(
                message = "CAUSEWAY_FAULT_COMMIT_DELAY_MS: the store sleeps before each commit, on purpose",
                delay_ms = delay.as_millis() as u64
            );
        }
        let mut writer = writer;
        set.log_end.store(next_seq - 1, Ordering::Relaxed);
        let queue = JobQueue { tx, depth: depth.clone() };
        let signal = Arc::new(crate::seal::Signal::default());
        let sealer = match sealing {
            Some(config) => {
                writer.sealer = Some(SealerLink { signal: signal.clone(), threshold: config.segment_events + config.keep_hot });
                // Whatever is unsealed already (a migrated store, a stop mid-seal) is sealed first.
                signal.wake();
                Some((signal.clone(), crate::seal::spawn(config, set, queue.clone(), signal)?))
            }
            None => None,
        };
        let thread = std::thread::Builder::new()
            .name(WRITER_THREAD_NAME.into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Io { path: "writer thread".into(), source: e })?;
        Ok(WriterHandle { queue: Some(queue), depth, sealer, poisoned, stamps, feed, thread: Some(thread) })
    }

    /// Replaces the follower: from now on every commit's entries go to the returned receiver.
    pub(crate) fn follow(&self) -> Follower {
        let (tx, rx) = mpsc::sync_channel(FEED_CAPACITY);
        *self.feed.tx.lock().expect("feed") = Some(tx);
        self.feed.lagged.store(true, std::sync::atomic::Ordering::Release);
        Follower { rx, feed: self.feed.clone() }
    }

    /// A time no later than the receive time of any commit not yet visible to readers: while a
    /// commit is being written, just before its stamp; otherwise now (and every later commit is
    /// stamped at or after it).
    pub(crate) fn watermark(&self) -> DateTime<Utc> {
        let mut stamps = self.stamps.lock().expect("stamps");
        match stamps.in_progress {
            Some(s) => s - chrono::TimeDelta::microseconds(1),
            None => next_stamp(&mut stamps, false),
        }
    }

    pub(crate) fn submit_derived(&self, write: DerivedWrite) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        self.check_writable()?;
        let (reply, rx) = oneshot::channel();
        self.send(Job::Derived { write, reply })?;
        Ok(rx)
    }

    pub(crate) fn submit_dlq(&self, op: DlqOp) -> Result<oneshot::Receiver<Result<DlqDone, StoreError>>, StoreError> {
        self.check_writable()?;
        let (reply, rx) = oneshot::channel();
        self.send(Job::Dlq { op, reply })?;
        Ok(rx)
    }

    /// Queues a job for the writer.
    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.queue.as_ref().ok_or(StoreError::WriterGone)?.send(job)
    }

    pub(crate) fn backlog(&self) -> Backlog {
        Backlog { queued_rows: self.depth.queued_rows.load(Ordering::Acquire), log_end: self.depth.log_end.load(Ordering::Acquire) }
    }

    /// Wakes the sealer (a retention change), if sealing is on.
    pub(crate) fn wake_sealer(&self) {
        if let Some((signal, _)) = &self.sealer {
            signal.wake();
        }
    }

    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        match self.poisoned.lock().expect("poison flag").clone() {
            Some(why) => Err(StoreError::Poisoned(why)),
            None => Ok(()),
        }
    }

    pub(crate) fn submit(
        &self,
        events: Vec<NewEvent>,
        rejections: Vec<NewRejection>,
    ) -> Result<oneshot::Receiver<Result<AppendResult, StoreError>>, StoreError> {
        self.check_writable()?;
        let (reply, rx) = oneshot::channel();
        self.send(Job::Append { events, rejections, reply })?;
        Ok(rx)
    }
}

struct Writer {
    conn: Connection,
    next_seq: i64,
    depth: Arc<Depth>,
    poisoned: Arc<Mutex<Option<String>>>,
    stamps: Arc<Mutex<Stamps>>,
    feed: Arc<Feed>,
    /// Frames in the log after the last commit (set by the WAL hook).
    wal_frames: Arc<AtomicI64>,
    /// [`WAL_CHECKPOINT_BYTES`] in frames.
    checkpoint_frames: i64,
    /// No checkpoint is tried before this (after one that readers held up).
    next_checkpoint: Instant,
    /// The test and bench hook [`FAULT_COMMIT_DELAY_ENV`]: a sleep before each commit.
    fault_commit_delay: Option<Duration>,
    sealed: Sealed,
    /// The sealer to wake once enough of the log is unsealed, if sealing is on.
    sealer: Option<SealerLink>,
}

/// What the writer knows of the sealer.
struct SealerLink {
    signal: Arc<crate::seal::Signal>,
    /// Unsealed log positions at which the sealer is woken.
    threshold: i64,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut rows = first.rows();
            let mut jobs = vec![first];
            while rows < MAX_ROWS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(job) => {
                        rows += job.rows();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            if let Some(why) = self.poisoned.lock().expect("poison flag").clone() {
                let e = StoreError::Poisoned(why);
                jobs.into_iter().for_each(|job| job.fail(&e));
                self.depth.queued_rows.fetch_sub(rows, Ordering::AcqRel);
                continue;
            }
            let stamp = {
                let mut stamps = self.stamps.lock().expect("stamps");
                let stamp = next_stamp(&mut stamps, true);
                stamps.in_progress = Some(stamp);
                stamp
            };
            let seq_before = self.next_seq;
            // Derived rows alone are a projection the journey engine rebuilds from the log after a
            // crash: their commit need not wait for an fsync. The next durable commit syncs the
            // WAL, their frames included.
            let derived_only = jobs.iter().all(|j| matches!(j, Job::Derived { .. }));
            if derived_only {
                let _ = self.conn.pragma_update(None, "synchronous", "NORMAL");
            }
            if let Some(delay) = self.fault_commit_delay {
                std::thread::sleep(delay);
            }
            let outcome = commit(&mut self.conn, &jobs, stamp, &mut self.next_seq, &mut self.sealed);
            if derived_only && let Err(e) = self.conn.pragma_update(None, "synchronous", "FULL") {
                // Never go on writing acknowledged events without the fsync.
                *self.poisoned.lock().expect("poison flag") = Some(format!("cannot restore synchronous=FULL: {e}"));
            }
            self.stamps.lock().expect("stamps").in_progress = None;
            match outcome {
                Ok(results) => {
                    // One look at the follower per commit: entries are built only when it exists.
                    let follower = self.feed.tx.lock().expect("feed").clone();
                    let following = follower.is_some();
                    let (mut entries, mut replies) = (Vec::new(), Vec::with_capacity(jobs.len()));
                    let mut seq = seq_before;
                    for (job, result) in jobs.into_iter().zip(results) {
                        match (job, result) {
                            (Job::Append { events, reply, .. }, Done::Append(r)) => {
                                if following {
                                    for (new, outcome) in events.into_iter().zip(&r.events) {
                                        let redelivery = *outcome == EventOutcome::Duplicate;
                                        let channel = if redelivery { None } else { new.origin.channel() };
                                        entries.push(Committed { seq, received_at: stamp, redelivery, event: new.event, channel });
                                        seq += 1;
                                    }
                                }
                                replies.push(Reply::Append(reply, r));
                            }
                            (Job::Derived { reply, .. } | Job::Seal { reply, .. } | Job::Retire { reply, .. }, _) => {
                                replies.push(Reply::Written(reply))
                            }
                            (Job::Dlq { reply, .. }, Done::Dlq(d)) => replies.push(Reply::Dlq(reply, d)),
                            (job, _) => job.fail(&StoreError::WriterGone),
                        }
                    }
                    // Hand the entries over before anyone is answered: a reader that follows an
                    // acknowledgement finds them with the follower.
                    if let Some(tx) = follower
                        && !entries.is_empty()
                        && tx.try_send(entries).is_err()
                    {
                        self.feed.lagged.store(true, std::sync::atomic::Ordering::Release);
                    }
                    self.depth.log_end.store(self.next_seq - 1, Ordering::Release);
                    self.sealed.set.log_end.store(self.next_seq - 1, Ordering::Relaxed);
                    self.depth.queued_rows.fetch_sub(rows, Ordering::AcqRel);
                    for reply in replies {
                        match reply {
                            Reply::Append(reply, r) => drop(reply.send(Ok(r))),
                            Reply::Written(reply) => drop(reply.send(Ok(()))),
                            Reply::Dlq(reply, d) => drop(reply.send(Ok(d))),
                        }
                    }
                    if let Some(sealer) = &self.sealer
                        && self.next_seq - 1 - self.sealed.upto >= sealer.threshold
                    {
                        sealer.signal.wake();
                    }
                    // After the answers: a checkpoint delays the next commit, not this one's.
                    self.checkpoint_if_due();
                }
                Err(e) => {
                    self.next_seq = seq_before;
                    tracing::error!(message = "store commit failed; refusing further writes", error = %e);
                    *self.poisoned.lock().expect("poison flag") = Some(e.to_string());
                    jobs.into_iter().for_each(|job| job.fail(&e));
                    self.depth.queued_rows.fetch_sub(rows, Ordering::AcqRel);
                }
            }
        }
    }
}

impl Writer {
    /// Once the log holds [`WAL_CHECKPOINT_BYTES`], copies it into the database and has it start
    /// again from its beginning (`RESTART`: waits, briefly, for readers still reading its frames).
    /// SQLite's own checkpoints never wait: under a steady stream of readers, one of them always
    /// held a frame, the log never restarted and grew without bound (966 MiB in 40 s with four
    /// busy readers). A checkpoint the readers hold up still copies what it can and is tried again
    /// shortly; `journal_size_limit` cuts the file back after each restart.
    fn checkpoint_if_due(&mut self) {
        if self.wal_frames.load(Ordering::Relaxed) < self.checkpoint_frames || Instant::now() < self.next_checkpoint {
            return;
        }
        let _ = self.conn.busy_timeout(CHECKPOINT_WAIT);
        let result = self.conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::RESTART);
        let _ = self.conn.busy_timeout(BUSY_TIMEOUT);
        match result {
            Ok(_) => self.wal_frames.store(0, Ordering::Relaxed),
            Err(e) => {
                // Busy: a reader kept its snapshot for longer than the wait. Not a lost write; the
                // log grows until a later try restarts it.
                self.next_checkpoint = Instant::now() + CHECKPOINT_RETRY;
                tracing::debug!(message = "checkpoint held up by readers; trying again shortly", error = %e);
            }
        }
    }
}

/// An answer held back until the commit's entries went to the follower.
enum Reply {
    Append(oneshot::Sender<Result<AppendResult, StoreError>>, AppendResult),
    Written(oneshot::Sender<Result<(), StoreError>>),
    Dlq(oneshot::Sender<Result<DlqDone, StoreError>>, DlqDone),
}

/// What one job of a commit did.
enum Done {
    Append(AppendResult),
    Written,
    Dlq(DlqDone),
}

/// Writes the jobs in one transaction, answering what each did.
fn commit(conn: &mut Connection, jobs: &[Job], stamp: DateTime<Utc>, next_seq: &mut i64, sealed: &mut Sealed) -> Result<Vec<Done>, StoreError> {
    let now = causeway_envelope::format_time(&stamp);
    let segments = sealed.set.snapshot();
    let identities = crate::sealed::SealedIdentities::new(&segments);
    let set = sealed.set.clone();
    let keys = set.keys.get().expect("the unsealed events' keys are loaded before the writer starts");
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(jobs.len());
    {
        // An event's identity is looked up in the unsealed history's keys (`hot.rs`), which hold
        // this commit's earlier events too: a redelivery costs one update by seq.
        let mut insert_event = tx.prepare_cached(
            r#"INSERT INTO events_hot (seq, event_id, source, event_type, correlation_id, causation_id, subject, time,
                                 topic, received_at, envelope, partition, "offset", message_time)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"#,
        )?;
        let mut source_of = tx.prepare_cached("SELECT source FROM events_hot WHERE seq = ?1")?;
        let mut count_redelivery = tx.prepare_cached("UPDATE events_hot SET redeliveries = redeliveries + 1 WHERE seq = ?1")?;
        let mut count_sealed_redelivery = tx.prepare_cached(
            "INSERT INTO sealed_redeliveries (seq, redeliveries) VALUES (?1, 1) ON CONFLICT (seq) DO UPDATE SET redeliveries = redeliveries + 1",
        )?;
        let mut log_redelivery = tx.prepare_cached("INSERT INTO redeliveries (seq, event_seq, received_at) VALUES (?1, ?2, ?3)")?;
        let mut insert_finding = tx.prepare_cached(
            "INSERT INTO finding_records (kind, journey, journey_key, correlation_id, event_id, expected,
                                          detected_at, detail, owner, rule)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut add_finding = |f: &NewFinding, event_id: Option<&String>, correlation_id: Option<&String>| {
            insert_finding.execute(params![
                f.kind,
                f.journey,
                f.journey_key,
                f.correlation_id.as_ref().or(correlation_id),
                f.event_id.as_ref().or(event_id),
                f.expected,
                now,
                f.detail,
                f.owner,
                f.rule
            ])
        };
        for job in jobs {
            let (events, rejections) = match job {
                Job::Append { events, rejections, .. } => (events, rejections),
                Job::Derived { write, .. } => {
                    write_derived(&tx, write)?;
                    results.push(Done::Written);
                    continue;
                }
                Job::Dlq { op, .. } => {
                    results.push(Done::Dlq(crate::dlq::apply(&tx, op, &now)?));
                    continue;
                }
                Job::Seal { segment, file, .. } => {
                    register_segment(&tx, segment, file, &now, sealed)?;
                    results.push(Done::Written);
                    continue;
                }
                Job::Retire { removed, replacement, kept, .. } => {
                    retire_segments(&tx, removed, replacement.as_ref(), kept, &now, sealed)?;
                    results.push(Done::Written);
                    continue;
                }
            };
            let mut outcomes = Vec::with_capacity(events.len());
            for new in events {
                let e = &new.event;
                let seq = *next_seq;
                *next_seq += 1;
                // Stored and sealed already: a redelivery, counted beside the segment.
                if !segments.is_empty()
                    && let Some(event_seq) = identities.find(&e.id, &e.source, &new.time)?
                {
                    count_sealed_redelivery.execute(params![event_seq])?;
                    log_redelivery.execute(params![seq, event_seq, now])?;
                    outcomes.push(EventOutcome::Duplicate);
                    continue;
                }
                let mut stored = None;
                for candidate in keys.find(Key::EventId, &e.id, sealed.upto).1 {
                    let source: Option<String> = source_of.query_row(params![candidate], |r| r.get(0)).optional()?;
                    if source.as_deref() == Some(e.source.as_str()) {
                        stored = Some(candidate);
                        break;
                    }
                }
                if let Some(event_seq) = stored {
                    count_redelivery.execute(params![event_seq])?;
                    log_redelivery.execute(params![seq, event_seq, now])?;
                    outcomes.push(EventOutcome::Duplicate);
                    continue;
                }
                // Before the commit: a reader whose snapshot holds the event finds it by its keys.
                keys.add(
                    seq,
                    [Some(&e.id), e.correlation_id.as_deref(), e.causation_id.as_deref(), e.subject.as_deref()],
                    crate::hot::time_key(&e.time),
                );
                insert_event.execute(params![
                    seq,
                    e.id,
                    e.source,
                    e.event_type,
                    e.correlation_id,
                    e.causation_id,
                    e.subject,
                    new.time,
                    new.origin.topic,
                    now,
                    new.envelope,
                    new.origin.partition,
                    new.origin.offset,
                    new.origin.message_time
                ])?;
                for f in &new.findings {
                    add_finding(f, Some(&e.id), e.correlation_id.as_ref())?;
                }
                outcomes.push(EventOutcome::Accepted);
            }
            let mut dlq_ids = Vec::with_capacity(rejections.len());
            for r in rejections {
                // A broker message refused before a crash is delivered again: one record.
                if let Some(id) = crate::dlq::refused_before(&tx, &r.record)? {
                    dlq_ids.push(id);
                    continue;
                }
                dlq_ids.push(crate::dlq::insert(&tx, &r.record, &now)?);
                for f in &r.findings {
                    add_finding(f, r.record.event_id.as_ref(), r.record.correlation_id.as_ref())?;
                }
            }
            results.push(Done::Append(AppendResult { events: outcomes, dlq_ids }));
        }
    }
    tx.commit()?;
    // The sealed rows are gone from events_hot now; readers of older snapshots find them in
    // their segments.
    keys.raise_floor(sealed.upto);
    Ok(results)
}

/// The writer's view of the sealed history.
pub(crate) struct Sealed {
    pub(crate) set: Arc<SegmentSet>,
    /// The last seq sealed (0 when nothing is).
    pub(crate) upto: i64,
}

/// Registers a segment the sealer wrote and removes its rows from `events_hot`, in the commit's
/// transaction. The segment joins the shared set before the commit: readers whose snapshot
/// predates it skip it by its seq range (see `sealed.rs`); should the commit fail, the store is
/// poisoned and the set no longer matters.
fn register_segment(tx: &rusqlite::Transaction<'_>, segment: &Arc<Segment>, file: &str, now: &str, sealed: &mut Sealed) -> Result<(), StoreError> {
    let info = segment.info();
    if info.first_seq <= sealed.upto {
        return Err(StoreError::Segment {
            path: segment.path().to_path_buf(),
            reason: format!("it starts at seq {} but the history is sealed up to {}", info.first_seq, sealed.upto),
        });
    }
    insert_segment_row(tx, segment, (info.first_seq, info.last_seq), file, now)?;
    tx.execute(
        "INSERT INTO sealed_redeliveries (seq, redeliveries)
         SELECT seq, redeliveries FROM events_hot WHERE seq BETWEEN ?1 AND ?2 AND redeliveries > 0
         ON CONFLICT (seq) DO UPDATE SET redeliveries = excluded.redeliveries",
        params![info.first_seq, info.last_seq],
    )?;
    tx.execute("DELETE FROM events_hot WHERE seq <= ?1", params![info.last_seq])?;
    sealed.set.push(segment.clone());
    SegmentSet::group_in_background(&sealed.set);
    sealed.upto = info.last_seq;
    Ok(())
}

/// The `segments` row of `segment`, covering the seqs `first..=last` (a retention's kept segment
/// covers the whole run it replaced, whatever seqs it holds).
fn insert_segment_row(tx: &rusqlite::Transaction<'_>, segment: &Segment, (first, last): (i64, i64), file: &str, now: &str) -> Result<(), StoreError> {
    let info = segment.info();
    tx.execute(
        "INSERT INTO segments (first_seq, last_seq, file, events, min_time, max_time, min_received_at, max_received_at,
                               raw_bytes, file_bytes, sealed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            first,
            last,
            file,
            info.rows as i64,
            info.min_time,
            info.max_time,
            info.min_received_at,
            info.max_received_at,
            info.raw_bytes as i64,
            info.file_bytes as i64,
            now
        ],
    )?;
    Ok(())
}

/// Removes the oldest segments `removed` (`retention.rs`) in the commit's transaction: their
/// `segments` rows, and the rows beside them of every event not in `kept`; registers
/// `replacement`, which holds the kept ones. The shared set swaps them before the commit, so a
/// reader never sees both (one whose snapshot predates the commit already misses the removed
/// events; should the commit fail, the store is poisoned and the set no longer matters).
fn retire_segments(
    tx: &rusqlite::Transaction<'_>,
    removed: &[Arc<Segment>],
    replacement: Option<&(Arc<Segment>, String)>,
    kept: &[i64],
    now: &str,
    sealed: &mut Sealed,
) -> Result<(), StoreError> {
    // By file: a kept segment covers more seqs than its rows span, as registered.
    let files: Vec<String> = removed.iter().map(|s| s.path().file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()).collect();
    let files = serde_json::to_string(&files).expect("strings serialize");
    let (first, last): (Option<i64>, Option<i64>) =
        tx.query_row("SELECT min(first_seq), max(last_seq) FROM segments WHERE file IN (SELECT value FROM json_each(?1))", params![files], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(first), Some(last)) = (first, last) else {
        return Err(StoreError::Segment {
            path: removed.first().map(|s| s.path().to_path_buf()).unwrap_or_default(),
            reason: "retired, but not registered".into(),
        });
    };
    tx.execute("DELETE FROM segments WHERE file IN (SELECT value FROM json_each(?1))", params![files])?;
    if let Some((segment, file)) = replacement {
        insert_segment_row(tx, segment, (first, last), file, now)?;
    }
    let kept = serde_json::to_string(kept).expect("integers serialize");
    for (table, column) in [("sealed_redeliveries", "seq"), ("event_journeys", "seq"), ("redeliveries", "event_seq")] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE {column} BETWEEN ?1 AND ?2 AND {column} NOT IN (SELECT value FROM json_each(?3))"),
            params![first, last, kept],
        )?;
    }
    // The seal frontier survives the removal of every segment.
    tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('retired_upto', ?1)", params![last.to_string()])?;
    sealed.set.replace_oldest(removed.len(), replacement.map(|(s, _)| s.clone()));
    Ok(())
}

/// Applies what the journey engine derived; rewriting an unchanged row costs a read, not a write.
fn write_derived(tx: &rusqlite::Transaction<'_>, write: &DerivedWrite) -> Result<(), StoreError> {
    if let Some(model) = &write.reset_for_model {
        tx.execute("DELETE FROM event_journeys", [])?;
        tx.execute("DELETE FROM finding_records WHERE engine_id IS NOT NULL", [])?;
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('journey_model', ?1)", params![model])?;
        tx.execute("DELETE FROM meta WHERE key = 'journey_position'", [])?;
    }
    let mut member = tx.prepare_cached(
        "INSERT INTO event_journeys (seq, journey, journey_key) VALUES (?1, ?2, ?3)
         ON CONFLICT (seq) DO UPDATE SET journey = excluded.journey, journey_key = excluded.journey_key
         WHERE journey IS NOT excluded.journey OR journey_key IS NOT excluded.journey_key",
    )?;
    for (seq, journey, key) in &write.memberships {
        member.execute(params![seq, journey, key])?;
    }
    let mut finding = tx.prepare_cached(
        "INSERT INTO finding_records (engine_id, kind, journey, journey_key, correlation_id, event_id, expected,
                                      detected_at, resolved_at, detail, owner, rule)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (engine_id) DO UPDATE SET
             kind = excluded.kind, journey = excluded.journey, journey_key = excluded.journey_key,
             correlation_id = excluded.correlation_id, event_id = excluded.event_id,
             expected = excluded.expected, detected_at = excluded.detected_at,
             resolved_at = excluded.resolved_at, detail = excluded.detail, owner = excluded.owner,
             rule = excluded.rule
         WHERE (kind, journey, journey_key, correlation_id, event_id, expected, detected_at, resolved_at, detail, owner, rule)
               IS NOT (excluded.kind, excluded.journey, excluded.journey_key, excluded.correlation_id,
                       excluded.event_id, excluded.expected, excluded.detected_at, excluded.resolved_at,
                       excluded.detail, excluded.owner, excluded.rule)",
    )?;
    for d in &write.findings {
        let f = &d.finding;
        finding.execute(params![
            d.engine_id as i64,
            f.kind,
            f.journey,
            f.journey_key,
            f.correlation_id,
            f.event_id,
            f.expected,
            d.detected_at,
            d.resolved_at,
            f.detail,
            f.owner,
            f.rule
        ])?;
    }
    if let Some(position) = write.position {
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('journey_position', ?1)", params![position.to_string()])?;
    }
    for (key, value) in &write.meta {
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
    }
    for r in &write.resolved_dead_letters {
        crate::dlq::resolve_for_event(tx, &r.event_id, &r.consumers, &r.reason, &r.at)?;
    }
    if let Some(max) = write.drop_findings_above {
        tx.execute("DELETE FROM finding_records WHERE engine_id > ?1", params![max as i64])?;
    }
    Ok(())
}
