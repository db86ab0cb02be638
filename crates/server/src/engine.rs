//! The journey engine in the server: a consumer of the store's log that feeds the evaluator in
//! ingest order, ticks its clock, and writes what it derives (journey membership, findings) back
//! to the store; and the links from its findings to the dead letters behind them. The journey
//! and finding endpoints that read it are in `api::journeys`; nothing here knows HTTP.
//!
//! **Invariants:**
//! - The evaluator sees the log (stored events and redeliveries) in ingest order. On the default
//!   watermark clock, the clock is set from the sources' watermarks (`causeway_journey::Watermarks`)
//!   at the receive time of each commit before its events are applied, and again when the engine
//!   ticks: every event of a commit is applied before the deadlines it makes due are judged. The
//!   clock is a function of the log alone (sources, event times, receive times), so a rebuild
//!   from the log after a restart gives the live run's journeys and findings, ids included
//!   (`digest` proves it).
//! - The clock only moves to the store's watermark: never past the receive time of a commit not
//!   yet read, so a tick cannot judge a deadline before an event received before it.
//! - A panic of the evaluator fails no request for long: the engine drops its state, reports the
//!   failure on `/readyz` and rebuilds from the log on the next call.
//! - Reads of journeys and findings first catch up with the log: an answer reflects every event
//!   acknowledged before the request.
//! - Derived rows are a projection of the log up to the position recorded with them: a rebuild
//!   under the same model derives the same rows up to there and writes only what comes after
//!   (findings keyed by the engine's id); under another model they are dropped and derived anew.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use causeway_envelope::{Event, format_time, parse_time};
use causeway_journey::{Change, Evaluator, Finding, FindingId, FindingKind, SourceView, WatermarkConfig, Watermarks};
use causeway_model::Model;
use causeway_store::{
    DerivedFinding, DerivedWrite, DlqFilter, DlqRow, DlqStatus, FindingFilter, Follower, INGEST_CONSUMER, NewFinding, ResolvedDeadLetter, Store,
    StoreError,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::evidence::Evidence;
use crate::model::{LoadedModel, ModelSlot};
use crate::slo::SloTracker;

/// The clock deadlines are judged against (PRODUCT §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The default: event time, from a watermark per source of evidence, following the receive
    /// clock when every source is idle (crates/journey/README.md, "Clocks").
    Watermark(WatermarkConfig),
    /// Receive time: every event is judged as if it happened when it arrived.
    Wall,
    /// The latest event time seen: nothing is judged while nothing arrives.
    Event,
}

impl Clock {
    pub fn name(&self) -> &'static str {
        match self {
            Clock::Watermark(_) => "watermark",
            Clock::Wall => "wall",
            Clock::Event => "event",
        }
    }
}

/// Log entries read per store round trip.
const BATCH: usize = 4096;
/// Longest the engine waits between ticks on the wall clock when nothing arrives.
const TICK: Duration = Duration::from_secs(1);
/// Events remembered while they wait for their journey's key (to record their membership when
/// they are attached); beyond this the oldest are forgotten and stay without a journey column.
const MAX_WAITING_MEMBERS: usize = 65_536;

/// The journey engine thread's name.
pub const JOURNEY_THREAD_NAME: &str = "causeway-journeys";

/// The running engine; cheap to clone.
#[derive(Clone)]
pub struct JourneyEngine {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    models: ModelSlot,
    clock: Clock,
    state: Mutex<EngineState>,
    wake: SyncSender<()>,
    /// The log entry being fed to the evaluator (-1: none): the one to skip if it panics.
    feeding: AtomicI64,
    health: Mutex<Health>,
    /// For the recovery test only: the evaluator panics on the event with this id
    /// (`CAUSEWAY_FAULT_PANIC_ON_EVENT`).
    fault_event: Option<String>,
    /// Broker channels (`topic/partition`) assigned to a source, known as sources of the
    /// watermark clock before they deliver; with a count of additions, so each sync declares only
    /// when something is new.
    channels: Mutex<(u64, BTreeSet<String>)>,
}

/// Failures of the engine, for `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// How often the engine failed (panicked) and was rebuilt from the log.
    pub failures: u64,
    /// The latest failure: when, and what.
    pub last_failure: Option<(DateTime<Utc>, String)>,
    /// Log entries skipped because feeding them made the engine fail.
    pub skipped: BTreeSet<i64>,
}

#[derive(Default)]
struct EngineState {
    /// The additions to `Shared::channels` declared to the watermarks so far.
    channels_declared: u64,
    /// The model the evaluator was built from.
    model: Option<Arc<LoadedModel>>,
    eval: Option<Evaluator>,
    /// The last log position read.
    cursor: i64,
    /// For the event clock: the latest event time seen.
    event_watermark: Option<DateTime<Utc>>,
    /// For the watermark clock: every source's watermark.
    watermarks: Option<Watermarks>,
    /// The receive time of the commit being applied: a new one first moves the clock.
    commit_at: Option<DateTime<Utc>>,
    /// Set when the evaluator was (re)built: the next write records the model and, if another
    /// model derived the stored rows, drops them first.
    reset_for_model: Option<String>,
    /// Until the first catch-up after a (re)build is written: findings the store holds beyond the
    /// rebuilt evaluator's are dropped then.
    rebuilding: bool,
    /// The log position the stored derived rows already cover: a rebuild under the same model
    /// derives the same rows up to there and need not write them again.
    written_upto: i64,
    /// Events that joined no instance yet (waiting for their key): event id to log position.
    waiting: HashMap<String, i64>,
    last_received: Option<(String, DateTime<Utc>)>,
    /// Entries the store's writer hands over as it commits them.
    follower: Option<Follower>,
    /// Log entries not fed to the evaluator: feeding them made it fail ([`Health::skipped`]).
    skipped: BTreeSet<i64>,
    /// Counts and latencies per event type, for the web UI (rebuilt with the evaluator).
    evidence: Evidence,
    /// The model's SLOs, judged from the same feed.
    slos: SloTracker,
}

/// What one catch-up derived, to be written.
#[derive(Default)]
struct Work {
    write: DerivedWrite,
    dirty: BTreeSet<FindingId>,
    changes: Vec<Change>,
}

/// The engine's thread: catches up whenever the log grows, and ticks the wall clock.
fn follow(shared: std::sync::Weak<Shared>, woken: Receiver<()>) {
    loop {
        let Some(shared) = shared.upgrade() else { return };
        let engine = JourneyEngine { shared };
        // A panic of the evaluator must not end the thread: the next sync rebuilds the engine.
        let next = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.sync())) {
            Ok(Ok(next)) => next,
            Ok(Err(e)) => {
                tracing::error!(message = "journey engine could not read or write the store", error = %e);
                None
            }
            Err(_) => Some(Utc::now()),
        };
        drop(engine);
        // Wake when the clock next judges something (a deadline, or a source going idle), at
        // least every tick; on the event clock only new events move time.
        let wait = next.map_or(TICK, |at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(TICK));
        match woken.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Reads the log from the store after the engine's position, up to `upto`.
fn catch_up(sh: &Shared, st: &mut EngineState, upto: i64, work: &mut Work) -> Result<(), StoreError> {
    loop {
        let entries = sh.store.log_after(st.cursor, BATCH)?;
        let full = entries.len() == BATCH;
        let parsed: Vec<(causeway_store::LogEntry, Option<Event>)> = entries
            .into_iter()
            .map(|e| {
                let p = parse_stored(&e.envelope);
                (e, p)
            })
            .collect();
        if st.slos.counts_events() {
            let ids: Vec<&str> = parsed.iter().filter(|(e, _)| e.seq <= upto).filter_map(|(_, p)| p.as_ref().map(|p| p.id.as_str())).collect();
            st.slos.add_flagged(sh.store.schema_errors_among(&ids)?);
        }
        for (entry, event) in parsed {
            if entry.seq > upto {
                return Ok(());
            }
            let Some(event) = event else {
                tracing::error!(message = "a stored envelope does not parse; the journey engine skips it", seq = entry.seq);
                st.cursor = entry.seq;
                continue;
            };
            let received = match &st.last_received {
                Some((text, t)) if *text == entry.received_at => *t,
                _ => {
                    let t = parse_time(&entry.received_at).unwrap_or_else(|_| Utc::now());
                    st.last_received = Some((entry.received_at.clone(), t));
                    t
                }
            };
            feed(sh, st, Entry { seq: entry.seq, received_at: received, redelivery: entry.redelivery, event, channel: entry.channel }, work);
        }
        if !full {
            return Ok(());
        }
    }
}

/// One entry of the log, read from the store or handed over by its writer.
struct Entry {
    seq: i64,
    received_at: DateTime<Utc>,
    redelivery: bool,
    event: Event,
    /// The broker channel that delivered it (`LogEntry::channel`).
    channel: Option<String>,
}

/// The journeys in flight or stalled, as `(journey, key)`: what retention keeps the events of,
/// once the journeys of the events up to `upto` are derived and written (`event_journeys`).
/// `None` before that, or while the engine has not caught up with the current model (it is
/// rebuilding, or has not started): what is open is not known yet. Without a model, none.
fn open_journeys(sh: &Shared, upto: i64) -> Option<std::collections::HashSet<(String, String)>> {
    let Some(current) = sh.models.current() else { return Some(Default::default()) };
    let st = sh.state.lock().ok()?;
    let eval = match &st.model {
        Some(model) if Arc::ptr_eq(model, &current) && !st.rebuilding && st.written_upto >= upto => st.eval.as_ref()?,
        _ => return None,
    };
    let mut open = std::collections::HashSet::new();
    for state in ["in_flight", "stalled"] {
        for id in eval.instances(None, Some(state)) {
            let (journey, key) = eval.instance_key(id);
            open.insert((journey.to_string(), key));
        }
    }
    Some(open)
}

/// One log entry into the evaluator, unless feeding it made the engine fail before.
fn feed(sh: &Shared, st: &mut EngineState, entry: Entry, work: &mut Work) {
    if st.skipped.contains(&entry.seq) {
        st.cursor = entry.seq;
        return;
    }
    // Read after a panic through the poisoned state lock, which orders it: no stronger ordering.
    sh.feeding.store(entry.seq, Ordering::Relaxed);
    if sh.fault_event.as_deref() == Some(entry.event.id.as_str()) {
        panic!("CAUSEWAY_FAULT_PANIC_ON_EVENT: the journey engine fails on event {}", entry.event.id);
    }
    st.feed(sh.clock, entry, work);
    sh.feeding.store(-1, Ordering::Relaxed);
}

impl EngineState {
    /// One log entry into the evaluator: the clock first, then the event; what changed is noted.
    fn feed(&mut self, clock: Clock, entry: Entry, work: &mut Work) {
        let Entry { seq, received_at, redelivery, event, channel } = entry;
        self.cursor = seq;
        let eval = self.eval.as_mut().expect("an evaluator");
        match clock {
            Clock::Watermark(_) => {
                let marks = self.watermarks.as_mut().expect("watermarks");
                if self.commit_at != Some(received_at) {
                    // A new commit: the ones before it are whole, so judge what they made due.
                    self.commit_at = Some(received_at);
                    eval.set_clock_into(marks.clock(received_at), &mut work.changes);
                }
                marks.observe(&event.source, event.time, received_at, eval.now());
                // A broker partition (or NATS subject) delivers in its own order: its own
                // watermark holds the clock while a backlog of it is caught up.
                if let Some(channel) = &channel {
                    marks.observe(channel, event.time, received_at, eval.now());
                }
            }
            Clock::Wall => eval.advance_into(received_at, &mut work.changes),
            Clock::Event => {
                let w = self.event_watermark.map_or(event.time, |w| w.max(event.time));
                self.event_watermark = Some(w);
                eval.advance_into(w, &mut work.changes);
            }
        }
        let by_clock = work.changes.len();
        eval.ingest_into(&event, redelivery, &mut work.changes);
        self.slos.observe_event(&event, redelivery);
        let event_ms = event.time.timestamp_millis();
        for (k, change) in work.changes.iter().enumerate() {
            self.slos.observe_change(eval, change, (k >= by_clock).then_some(event_ms));
        }
        if !redelivery {
            self.evidence.observe(&event.event_type, &event.id, &event.source, event.time.timestamp_millis(), event.causation_id.as_deref());
        }
        // Up to where the stored rows reach, a rebuild derives what they already hold.
        if seq <= self.written_upto {
            let joined = work.changes.drain(..).any(|c| matches!(c, Change::Joined(_)));
            if !joined && !redelivery {
                self.remember_waiting(event.id, seq);
            }
            return;
        }
        let mut joined = false;
        for change in work.changes.drain(..) {
            match change {
                Change::Joined(i) if !redelivery && !joined => {
                    joined = true;
                    let (journey, key) = eval.instance_key(i);
                    work.write.memberships.push((seq, journey.to_owned(), key));
                }
                Change::Attached { instance, event_id } => {
                    if let Some(waiting) = self.waiting.remove(&event_id) {
                        let (journey, key) = eval.instance_key(instance);
                        work.write.memberships.push((waiting, journey.to_owned(), key));
                    }
                }
                Change::Raised(f) | Change::Resolved(f) | Change::Reassigned(f) => {
                    work.dirty.insert(f);
                }
                Change::Joined(_) | Change::Updated(_) | Change::Reacted { .. } => {}
            }
        }
        if !joined && !redelivery {
            self.remember_waiting(event.id, seq);
        }
    }

    /// An event that joined no instance yet: its membership is recorded if it is attached later.
    fn remember_waiting(&mut self, event_id: String, seq: i64) {
        if self.waiting.len() >= MAX_WAITING_MEMBERS {
            self.waiting.clear();
        }
        self.waiting.insert(event_id, seq);
    }
}

/// The engine's clock as answered by `GET /v1/clock`.
#[derive(Debug, Clone)]
pub struct ClockView {
    pub clock: Clock,
    /// The time deadlines are judged up to; `None` before any (or while a source the model
    /// declares has not spoken yet and is not idle).
    pub now: Option<DateTime<Utc>>,
    /// The receive time the sources' idleness is judged at.
    pub as_of: DateTime<Utc>,
    /// With the watermark clock: every source, in the order first seen.
    pub sources: Vec<SourceView>,
}

/// What `/metrics` shows of the SLOs (`JourneyEngine::slo_snapshot`).
pub struct SloSnapshot {
    pub slos: Vec<crate::slo::SloView>,
    pub reaction_latency: HashMap<String, crate::metrics::Histogram>,
    pub completion_time: HashMap<String, crate::metrics::Histogram>,
}

/// What the notifier reads of the engine (`JourneyEngine::alert_inputs`).
#[derive(Debug)]
pub struct AlertInputs {
    /// The engine's clock.
    pub clock: Option<DateTime<Utc>>,
    pub slos: Vec<crate::slo::SloView>,
    /// Instances stalled now, per journey (in the model's order).
    pub stalled: Vec<(String, u64)>,
    /// Open findings of the engine's kinds.
    pub open_by_kind: Vec<(&'static str, u64)>,
}

/// A summary for the demo, `GET /v1/journeys/summary` and the restart test.
#[derive(Debug, Clone)]
pub struct Summary {
    pub model: String,
    pub position: i64,
    pub events: u64,
    pub redeliveries: u64,
    pub by_state: Vec<(String, u64)>,
    pub findings_by_kind: Vec<(&'static str, u64, u64)>,
    pub digest: Option<u64>,
    pub now: Option<DateTime<Utc>>,
}

impl JourneyEngine {
    /// Starts the engine's thread; it rebuilds from the log at once, then follows it.
    pub fn start(store: Store, models: ModelSlot, clock: Clock) -> JourneyEngine {
        let (wake, woken) = sync_channel(1);
        let shared = Shared {
            store,
            models,
            clock,
            state: Mutex::new(EngineState::default()),
            wake,
            feeding: AtomicI64::new(-1),
            health: Mutex::default(),
            fault_event: std::env::var("CAUSEWAY_FAULT_PANIC_ON_EVENT").ok().filter(|id| !id.is_empty()),
            channels: Mutex::new((0, BTreeSet::new())),
        };
        let engine = JourneyEngine { shared: Arc::new(shared) };
        // Retention keeps the events of the journeys still open; it asks here.
        let asked = Arc::downgrade(&engine.shared);
        engine.shared.store.set_open_journeys(Arc::new(move |upto| open_journeys(asked.upgrade()?.as_ref(), upto)));
        // The thread holds the engine weakly: once the server drops it, the wake channel closes
        // and the thread ends.
        let background = Arc::downgrade(&engine.shared);
        std::thread::Builder::new()
            .name(JOURNEY_THREAD_NAME.into())
            .spawn(move || follow(background, woken))
            .expect("spawn the journey engine thread");
        engine
    }

    /// Broker channels assigned to a source (Kafka partitions as `topic/partition`): each holds
    /// the watermark clock until it delivers or goes idle, so that while a backlog is caught up
    /// the clock does not pass evidence still waiting in a partition not read yet.
    pub fn declare_channels(&self, names: impl IntoIterator<Item = String>) {
        let mut channels = self.shared.channels.lock().expect("channels");
        let before = channels.1.len();
        channels.1.extend(names);
        if channels.1.len() > before {
            channels.0 += 1;
            drop(channels);
            self.notify();
        }
    }

    /// Tells the engine that the log grew.
    pub fn notify(&self) {
        let _ = self.shared.wake.try_send(());
    }

    /// Catches up with the log, moves the clock, and writes what changed. Returns the next
    /// deadline. Blocking: call it off the async runtime.
    pub fn sync(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.sync_locked().map(|(_, next)| next)
    }

    /// [`JourneyEngine::sync`], keeping the engine locked for a read of what it reached.
    fn sync_locked(&self) -> Result<(MutexGuard<'_, EngineState>, Option<DateTime<Utc>>), StoreError> {
        let sh = &*self.shared;
        let mut st = match sh.state.lock() {
            Ok(st) => st,
            // The evaluator panicked while the state was locked: what it holds may be half
            // updated, so it is dropped and rebuilt from the log below, without the entry it was
            // fed, if that is what failed.
            Err(poisoned) => {
                let mut st = poisoned.into_inner();
                *st = EngineState::default();
                sh.state.clear_poison();
                let seq = sh.feeding.swap(-1, Ordering::Relaxed);
                let what = if seq >= 0 {
                    format!("the journey engine failed on log entry {seq} (see the server's log); it was rebuilt from the log without it")
                } else {
                    "the journey engine failed (see the server's log); it was rebuilt from the log".to_string()
                };
                tracing::error!(message = what.as_str());
                let mut health = sh.health.lock().expect("health");
                health.failures += 1;
                health.last_failure = Some((Utc::now(), what));
                if seq >= 0 {
                    health.skipped.insert(seq);
                }
                st
            }
        };
        let current = sh.models.current();
        let same = match (&st.model, &current) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            *st = EngineState::default();
            if let Some(loaded) = &current {
                let fingerprint = model_fingerprint(loaded);
                match sh.store.derived_state()? {
                    Some((model, position)) if model == fingerprint => st.written_upto = position,
                    _ => st.reset_for_model = Some(fingerprint),
                }
                st.eval = Some(Evaluator::new(loaded.model()));
                st.slos = SloTracker::new(loaded.model());
                if let Clock::Watermark(config) = sh.clock {
                    st.watermarks = Some(Watermarks::new(config, loaded.model().contexts.values().flat_map(|c| c.services.iter().cloned())));
                }
                st.rebuilding = true;
                // Entries that made the engine fail are left out of every rebuild after it.
                st.skipped = sh.health.lock().expect("health").skipped.clone();
                // Follow the writer before reading the log, so that nothing falls in between.
                st.follower = Some(sh.store.follow());
            }
            st.model = current;
        }
        if st.eval.is_none() {
            return Ok((st, None));
        }
        {
            let channels = sh.channels.lock().expect("channels");
            if channels.0 != st.channels_declared {
                st.channels_declared = channels.0;
                if let Some(marks) = st.watermarks.as_mut() {
                    for name in &channels.1 {
                        marks.declare(name.clone());
                    }
                }
            }
        }
        // Read the watermark before the log: every commit stamped before it is visible now.
        let watermark = sh.store.watermark();
        let mut work = Work { write: DerivedWrite { reset_for_model: st.reset_for_model.clone(), ..DerivedWrite::default() }, ..Work::default() };
        // Entries the writer handed over since the last call; the log only where they do not reach.
        let mut fresh = Vec::new();
        let lagged = st.follower.as_ref().is_none_or(|f| f.drain(&mut fresh));
        if lagged {
            catch_up(sh, &mut st, i64::MAX, &mut work)?;
        }
        if st.slos.counts_events() {
            let ids: Vec<&str> = fresh.iter().map(|c| c.event.id.as_str()).collect();
            let flagged = sh.store.schema_errors_among(&ids)?;
            st.slos.add_flagged(flagged);
        }
        for c in fresh {
            if c.seq > st.cursor + 1 {
                catch_up(sh, &mut st, c.seq - 1, &mut work)?;
            }
            if c.seq == st.cursor + 1 {
                feed(
                    sh,
                    &mut st,
                    Entry { seq: c.seq, received_at: c.received_at, redelivery: c.redelivery, event: c.event, channel: c.channel },
                    &mut work,
                );
            }
        }
        st.slos.observe_refusals(&sh.store)?;
        let Work { mut write, mut dirty, mut changes } = work;
        let (rebuilding, position) = (st.rebuilding, st.cursor);
        let model = st.model.clone();
        let EngineState { eval, watermarks, slos, .. } = &mut *st;
        let eval = eval.as_mut().expect("an evaluator");
        // The tick: every commit read is whole, so judge up to the clock as of the watermark.
        let next = match sh.clock {
            Clock::Watermark(_) => {
                let marks = watermarks.as_ref().expect("watermarks");
                eval.set_clock_into(marks.clock(watermark), &mut changes);
                marks.next_change(watermark, eval.next_deadline())
            }
            Clock::Wall => {
                eval.advance_into(watermark, &mut changes);
                eval.next_deadline()
            }
            Clock::Event => None,
        };
        for change in changes.drain(..) {
            slos.observe_change(eval, &change, None);
            if let Change::Raised(f) | Change::Resolved(f) | Change::Reassigned(f) = change {
                dirty.insert(f);
            }
        }
        write.findings = dirty.into_iter().filter_map(|id| eval.finding(id)).map(derived).collect();
        if let Some(model) = &model {
            write.resolved_dead_letters = write.findings.iter().filter_map(|d| resolved_dead_letter(model.model(), d)).collect();
        }
        if rebuilding {
            write.drop_findings_above = Some(eval.findings().len() as u64);
        }
        write.position = Some(position);
        let nothing = write.reset_for_model.is_none()
            && write.memberships.is_empty()
            && write.findings.is_empty()
            && write.drop_findings_above.is_none()
            && st.cursor <= st.written_upto;
        if !nothing {
            sh.store.write_derived_blocking(write)?;
        }
        st.reset_for_model = None;
        st.rebuilding = false;
        st.written_upto = st.written_upto.max(st.cursor);
        Ok((st, next))
    }

    /// Runs `f` on the evaluator after catching up with the log; `None` without a model.
    pub fn read<T>(&self, f: impl FnOnce(&Evaluator, &LoadedModel) -> T) -> Result<Option<T>, StoreError> {
        self.read_at(|eval, model, _| f(eval, model))
    }

    /// [`JourneyEngine::read`], also passing what was seen of each event type.
    pub fn read_with_evidence<T>(&self, f: impl FnOnce(&Evaluator, &LoadedModel, &Evidence) -> T) -> Result<Option<T>, StoreError> {
        let (st, _) = self.sync_locked()?;
        Ok(match (&st.eval, &st.model) {
            (Some(eval), Some(model)) => Some(f(eval, model, &st.evidence)),
            _ => None,
        })
    }

    /// [`JourneyEngine::read`], passing the SLOs judged so far and the engine's clock instead.
    pub fn read_slos<T>(&self, f: impl FnOnce(&SloTracker, Option<DateTime<Utc>>) -> T) -> Result<Option<T>, StoreError> {
        let (st, _) = self.sync_locked()?;
        Ok(match (&st.eval, &st.model) {
            (Some(eval), Some(_)) => Some(f(&st.slos, eval.now())),
            _ => None,
        })
    }

    /// [`JourneyEngine::read`], also passing the log position read up to.
    fn read_at<T>(&self, f: impl FnOnce(&Evaluator, &LoadedModel, i64) -> T) -> Result<Option<T>, StoreError> {
        let (st, _) = self.sync_locked()?;
        Ok(match (&st.eval, &st.model) {
            (Some(eval), Some(model)) => Some(f(eval, model, st.cursor)),
            _ => None,
        })
    }

    /// How often the engine failed and was rebuilt, for `/readyz`.
    pub fn health(&self) -> Health {
        self.shared.health.lock().expect("health").clone()
    }

    /// The clock and every source's watermark, after catching up with the log; `None` without a
    /// model. Blocking: call it off the async runtime.
    pub fn clock_view(&self) -> Result<Option<ClockView>, StoreError> {
        let (st, _) = self.sync_locked()?;
        let as_of = self.shared.store.watermark();
        Ok(st.eval.as_ref().map(|eval| ClockView {
            clock: self.shared.clock,
            now: eval.now(),
            as_of,
            sources: st.watermarks.as_ref().map(|w| w.sources(as_of)).unwrap_or_default(),
        }))
    }

    /// [`JourneyEngine::clock_view`] without catching up, for metrics: `None` while the engine is
    /// busy.
    pub fn clock_snapshot(&self) -> Option<ClockView> {
        let st = self.shared.state.try_lock().ok()?;
        let as_of = Utc::now();
        Some(ClockView {
            clock: self.shared.clock,
            now: st.eval.as_ref()?.now(),
            as_of,
            sources: st.watermarks.as_ref().map(|w| w.sources(as_of)).unwrap_or_default(),
        })
    }

    /// The engine's position in the log, unless the engine holds its state right now (then
    /// `None`: the caller must not wait on it). Cheap enough for every ingest request.
    pub fn position(&self) -> Option<i64> {
        Some(self.shared.state.try_lock().ok()?.cursor)
    }

    /// The evaluator's counters and the log position it read up to, without catching up; `None`
    /// without a model, or while the engine is busy (a rebuild): metrics must not wait.
    pub fn stats(&self) -> Option<(causeway_journey::Stats, i64)> {
        let st = self.shared.state.try_lock().ok()?;
        Some((st.eval.as_ref()?.stats(), st.cursor))
    }

    /// Instances per journey: in flight, stalled, with an outcome; `None` as [`JourneyEngine::stats`].
    pub fn journey_counts(&self) -> Option<Vec<(String, [u64; 3])>> {
        let st = self.shared.state.try_lock().ok()?;
        Some(st.eval.as_ref()?.count_by_journey().into_iter().map(|(j, c)| (j.to_string(), c)).collect())
    }

    /// The SLOs as of the engine's clock and the latency histograms, without catching up;
    /// `None` without a model, or while the engine is busy: metrics must not wait (and a
    /// rebuild's counts, lower until it ends, would read as a counter reset).
    pub fn slo_snapshot(&self) -> Option<SloSnapshot> {
        let st = self.shared.state.try_lock().ok()?;
        let eval = st.eval.as_ref()?;
        Some(SloSnapshot {
            slos: st.slos.evaluate(eval.now()),
            reaction_latency: st.slos.reaction_latency.clone(),
            completion_time: st.slos.completion_time.clone(),
        })
    }

    /// What the notifier judges alerts from (`notify.rs`), in one look without catching up: the
    /// SLOs as of the engine's clock, stalled instances per journey, open findings by kind. `None`
    /// as [`JourneyEngine::stats`]: the notifier must not hold ingest up.
    pub fn alert_inputs(&self) -> Option<AlertInputs> {
        let st = self.shared.state.try_lock().ok()?;
        let eval = st.eval.as_ref()?;
        let clock = eval.now();
        let stats = eval.stats();
        Some(AlertInputs {
            clock,
            slos: st.slos.evaluate(clock),
            stalled: eval.count_by_journey().into_iter().map(|(j, c)| (j.to_string(), c[1])).collect(),
            open_by_kind: FindingKind::ALL.iter().map(|k| (k.as_str(), stats.open_by_kind[k.index()])).collect(),
        })
    }

    /// Journeys by state and findings by kind; with `digest`, also the digest of every journey
    /// and finding (a pass that renders each of them: seconds for a million journeys).
    pub fn summary(&self, digest: bool) -> Result<Option<Summary>, StoreError> {
        self.read_at(|eval, model, position| {
            let stats = eval.stats();
            Summary {
                model: model.model().name.clone(),
                position,
                events: stats.events,
                redeliveries: stats.redeliveries,
                by_state: eval.count_by_state(),
                findings_by_kind: eval.count_findings_by_kind(),
                digest: digest.then(|| eval.digest()),
                now: eval.now(),
            }
        })
    }
}

/// Identifies the model the derived rows come from: any change to the model (even a moved line)
/// makes the engine derive them anew.
fn model_fingerprint(loaded: &LoadedModel) -> String {
    let mut h = causeway_journey::Fnv64::default();
    h.write(format!("{:?}", loaded.model()).as_bytes());
    format!("{}:{:016x}", loaded.model().name, h.finish())
}

pub(crate) fn parse_stored(envelope: &str) -> Option<Event> {
    let obj: Map<String, Value> = serde_json::from_str(envelope).ok()?;
    Event::from_structured(obj, false).ok()
}

/// A resolved `missing_reaction`: the dead letters of its trigger held by the consumers expected
/// to react are resolved with it.
fn resolved_dead_letter(model: &Model, d: &DerivedFinding) -> Option<ResolvedDeadLetter> {
    if d.finding.kind != FindingKind::MissingReaction.as_str() {
        return None;
    }
    let at = d.resolved_at.clone()?;
    let event_id = d.finding.event_id.clone()?;
    let expected: Vec<String> = d.finding.expected.as_deref()?.split(',').map(str::to_owned).collect();
    let consumers = reacting_services(model, &expected);
    Some(ResolvedDeadLetter { event_id, consumers, reason: format!("the expected {} arrived", expected.join(", ")), at })
}

fn derived(f: &Finding) -> DerivedFinding {
    DerivedFinding {
        engine_id: f.id.0,
        finding: NewFinding {
            kind: f.kind.as_str().to_string(),
            journey: f.journey.clone(),
            journey_key: f.key.clone(),
            correlation_id: f.correlation_id.clone(),
            event_id: f.event_id.clone(),
            expected: (!f.expected.is_empty()).then(|| f.expected.join(",")),
            rule: f.rule.clone(),
            detail: f.detail.clone(),
            owner: f.owner.clone(),
        },
        detected_at: format_time(&f.detected_at),
        resolved_at: f.resolved_at.as_ref().map(format_time),
    }
}

// --- dead letters behind findings -------------------------------------------------------------

/// The services of the contexts that own `expected`: the consumers expected to react.
pub(crate) fn reacting_services(model: &Model, expected: &[String]) -> Vec<String> {
    let mut services: Vec<String> = expected
        .iter()
        .filter_map(|e| model.events.get(e))
        .filter_map(|def| model.contexts.get(&def.context))
        .flat_map(|c| c.services.iter().cloned())
        .collect();
    services.sort();
    services.dedup();
    services
}

/// Adds, to each `missing_reaction`, the dead letter behind it and a sentence saying so: its
/// trigger event dead-lettered by a consumer expected to react, or else the expected reaction
/// itself refused at ingest ([`refused_reaction`]).
pub(crate) fn link_dead_letters(store: &Store, model: Option<&Model>, findings: &mut [Value]) -> Result<(), StoreError> {
    for f in findings.iter_mut() {
        if f["kind"] != "missing_reaction" {
            continue;
        }
        let Some(event_id) = f["event_id"].as_str().map(str::to_owned) else { continue };
        let expected: Vec<String> =
            f["expected"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default();
        let services = model.map(|m| reacting_services(m, &expected)).unwrap_or_default();
        let records = store.dlq_list(&DlqFilter { event_id: Some(event_id), limit: 20, ..Default::default() })?;
        // Consumers report under their own names (often a consumer group's), rarely the service
        // the model says reacts: one the model names is preferred, else the oldest record still
        // open for the event — the one resolved with the finding (`dlq::resolve_for_event`).
        let candidates: Vec<DlqRow> =
            records.into_iter().filter(|r| r.status != DlqStatus::Discarded.as_str() && r.consumer != INGEST_CONSUMER).collect();
        let open = |r: &&DlqRow| r.status == DlqStatus::Pending.as_str() || r.status == DlqStatus::Replayed.as_str();
        let consumer_record = candidates
            .iter()
            .find(|r| services.contains(&r.consumer))
            .or_else(|| candidates.iter().filter(open).min_by_key(|r| r.id))
            .or_else(|| candidates.iter().min_by_key(|r| r.id))
            .cloned();
        let (record, note) = match consumer_record {
            Some(r) => {
                let note = format!("dead-lettered by {}: {} {}", r.consumer, r.error_type, r.error_message);
                (r, note)
            }
            None => match refused_reaction(store, f, &expected)? {
                Some(r) => {
                    let what = r.event_type.as_deref().unwrap_or("expected reaction");
                    let note = format!("the {what} was refused at ingest: {} {}", r.error_type, r.error_message);
                    (r, note)
                }
                None => continue,
            },
        };
        let detail = f["detail"].as_str().unwrap_or_default();
        f["detail"] = json!(format!("{detail}; {note}"));
        f["dead_letter"] = json!({
            "id": record.id, "consumer": record.consumer, "error_type": record.error_type,
            "error_message": record.error_message, "status": record.status, "href": format!("/v1/dlq/{}", record.id),
        });
    }
    Ok(())
}

/// The expected reaction of a `missing_reaction`, refused at ingest (consumer `causeway`): a record
/// of one of the `expected` types that belongs to the finding's journey instance — it carried
/// the finding's correlation id, or, refused for lacking one, the journey's key (recorded on its
/// `missing_correlation` finding at ingest). Both lookups are indexed; discarded records are left
/// out.
fn refused_reaction(store: &Store, f: &Value, expected: &[String]) -> Result<Option<DlqRow>, StoreError> {
    let wanted = |r: &DlqRow| {
        r.consumer == INGEST_CONSUMER && r.status != DlqStatus::Discarded.as_str() && r.event_type.as_ref().is_some_and(|t| expected.contains(t))
    };
    if let (Some(journey), Some(key)) = (f["journey"].as_str(), f["key"].as_str()) {
        let filter = FindingFilter {
            kind: Some("missing_correlation".into()),
            journey: Some(journey.into()),
            key: Some(key.into()),
            limit: 20,
            ..Default::default()
        };
        for refused in store.findings(&filter)? {
            let Some(event_id) = refused.event_id else { continue };
            let records = store.dlq_list(&DlqFilter { event_id: Some(event_id), limit: 20, ..Default::default() })?;
            if let Some(r) = records.into_iter().find(wanted) {
                return Ok(Some(r));
            }
        }
    }
    if let Some(correlation_id) = f["correlation_id"].as_str() {
        let filter = DlqFilter { correlation_id: Some(correlation_id.into()), limit: 100, ..Default::default() };
        return Ok(store.dlq_list(&filter)?.into_iter().find(wanted));
    }
    Ok(None)
}
