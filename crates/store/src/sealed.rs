//! The history as SQL sees it: the virtual table `events`, whose rows are the sealed ones (read
//! from the segment files every connection shares) followed by the unsealed ones (read from
//! `events_hot` by statements nested on the reader's own connection).
//!
//! **Invariants:**
//! - The set only grows at its end (a segment's first seq is after every earlier segment's last)
//!   and only shrinks at its start (retention): a seq names at most one sealed row.
//! - What a statement reads is bounded by the `segments` rows of its own snapshot (read by a
//!   nested statement in the same read transaction): sealed rows from the registered segments
//!   only, unsealed rows after the last of them. A reader whose snapshot predates a seal
//!   therefore reads those rows from `events_hot`, and never twice.
//! - Sealed rows come first, in seq order; unsealed ones follow, in seq order when the statement
//!   asks for that order (the table then claims it, and SQLite sorts nothing).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, c_int};
use std::ops::Range;
use std::sync::{Arc, Mutex, RwLock, Weak};

use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConfig, VTabConnection, VTabCursor, sqlite3_vtab, sqlite3_vtab_cursor,
};
use rusqlite::{Connection, ffi};

use crate::hot::HotKeys;
use crate::segment::{IdFilter, Key, SealedRow, Segment, key_hash};

/// Consecutive segments whose keys a [`SegmentGroup`] combines.
const GROUP_SEGMENTS: usize = 16;

/// The segments of the sealed history, oldest first.
#[derive(Default)]
pub(crate) struct SegmentSet {
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    /// The log's end as the writer last committed it: the planner's idea of the history's size.
    pub(crate) log_end: std::sync::atomic::AtomicI64,
    /// The unsealed rows' lookup keys, where a writer keeps them (`hot.rs`). Without them (a
    /// read-only connection beside another process's writer), lookups of unsealed rows scan.
    pub(crate) keys: std::sync::OnceLock<crate::hot::HotKeys>,
    /// Virtual machine steps the nested statements over `events_hot` took: what tests read to
    /// tell a lookup from a scan.
    pub(crate) nested_steps: Arc<std::sync::atomic::AtomicU64>,
    /// Combined filters of runs of consecutive segments, oldest first (see [`SegmentGroup`]).
    groups: RwLock<Arc<Vec<Arc<SegmentGroup>>>>,
    /// Held while groups are built, so that one thread builds each.
    grouping: Mutex<()>,
}

/// The keys of [`GROUP_SEGMENTS`] consecutive segments in one filter per kind of key, in memory: a
/// lookup by key asks the group first and its members only when the group may hold the key, so
/// that asking for an id costs about one probe per group instead of one per segment (a
/// descendants walk asks once per parent).
///
/// **Invariants:** a group's filters hold every key of every member, so "no" from a group is "no"
/// from each member. Members are held weakly and matched by address: a group never answers for a
/// segment that is not one of its members (retention's replacement of the oldest segments is a
/// new segment, asked directly), and a removed member's file is not kept open by its group.
pub(crate) struct SegmentGroup {
    members: Vec<Weak<Segment>>,
    first_seq: i64,
    last_seq: i64,
    /// Per [`Key`], in its order.
    filters: [IdFilter; 4],
}

impl SegmentGroup {
    fn build(members: &[Arc<Segment>]) -> SegmentGroup {
        let filters = Key::ALL.map(|key| IdFilter::build(members.iter().flat_map(|s| s.key_hashes(key)).collect()));
        SegmentGroup {
            members: members.iter().map(Arc::downgrade).collect(),
            first_seq: members.first().map_or(0, |s| s.info().first_seq),
            last_seq: members.last().map_or(0, |s| s.info().last_seq),
            filters,
        }
    }

    /// True when `segment` is a member and no member has `hash` as a `key`.
    fn rules_out(&self, segment: &Arc<Segment>, key: Key, hash: u64) -> bool {
        let info = segment.info();
        let member = info.first_seq >= self.first_seq
            && info.last_seq <= self.last_seq
            && self.members.iter().any(|m| std::ptr::eq(m.as_ptr(), Arc::as_ptr(segment)));
        member && !self.filters[key as usize].contains(hash)
    }

    fn has_members(&self) -> bool {
        self.members.iter().any(|m| m.strong_count() > 0)
    }
}

impl SegmentSet {
    /// The segments as they are now; later changes do not affect the returned list.
    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments.read().expect("segment set").clone()
    }

    /// Replaces the `n` oldest segments by `replacement` (retention), or removes them.
    pub(crate) fn replace_oldest(&self, n: usize, replacement: Option<Arc<Segment>>) {
        let mut guard = self.segments.write().expect("segment set");
        let next: Vec<Arc<Segment>> = replacement.into_iter().chain(guard.iter().skip(n).cloned()).collect();
        *guard = Arc::new(next);
    }

    /// Adds a segment after the last one.
    pub(crate) fn push(&self, segment: Arc<Segment>) {
        let mut guard = self.segments.write().expect("segment set");
        let mut next = guard.as_ref().clone();
        next.push(segment);
        *guard = Arc::new(next);
    }

    /// The groups as they are now.
    pub(crate) fn groups(&self) -> Arc<Vec<Arc<SegmentGroup>>> {
        self.groups.read().expect("segment groups").clone()
    }

    /// Groups every full run of [`GROUP_SEGMENTS`] segments after the last group, on a thread of
    /// its own (a group of 1.6 million events takes about a second to build), unless one is at it.
    pub(crate) fn group_in_background(set: &Arc<SegmentSet>) {
        if set.next_run().is_none() {
            return;
        }
        let set = Arc::downgrade(set);
        let spawned = std::thread::Builder::new().name("causeway-group".into()).spawn(move || {
            while let Some(set) = set.upgrade() {
                if !set.group_next_run() {
                    break;
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start a thread to group segments; lookups ask every segment");
        }
    }

    /// The first [`GROUP_SEGMENTS`] segments after the last group, when there are that many.
    fn next_run(&self) -> Option<Vec<Arc<Segment>>> {
        let after = self.groups().last().map_or(i64::MIN, |g| g.last_seq);
        let run: Vec<Arc<Segment>> = self.snapshot().iter().filter(|s| s.info().first_seq > after).take(GROUP_SEGMENTS).cloned().collect();
        (run.len() == GROUP_SEGMENTS).then_some(run)
    }

    /// Builds the group of the first full run of segments after the last group; false when there
    /// is none, or another thread is building.
    fn group_next_run(&self) -> bool {
        let Ok(_building) = self.grouping.try_lock() else { return false };
        let Some(run) = self.next_run() else { return false };
        let group = Arc::new(SegmentGroup::build(&run));
        let mut guard = self.groups.write().expect("segment groups");
        let mut next: Vec<Arc<SegmentGroup>> = guard.iter().filter(|g| g.has_members()).cloned().collect();
        next.push(group);
        *guard = Arc::new(next);
        true
    }
}

/// The sealed segments as the writer's identity check walks them: newest first, stopping where no
/// older segment holds an event as late as the one asked about (its time is past every older
/// segment's latest), so that checking a new event costs no walk over the whole history.
pub(crate) struct SealedIdentities<'a> {
    segments: &'a [Arc<Segment>],
    /// The latest event time of segments `0..=i`.
    latest_upto: Vec<&'a str>,
}

impl<'a> SealedIdentities<'a> {
    pub(crate) fn new(segments: &'a [Arc<Segment>]) -> SealedIdentities<'a> {
        let mut latest = "";
        let latest_upto = segments
            .iter()
            .map(|s| {
                latest = latest.max(s.info().max_time.as_str());
                latest
            })
            .collect();
        SealedIdentities { segments, latest_upto }
    }

    /// The sealed event with this identity, if any: its seq. Only segments whose event times span
    /// `time` are asked (a redelivery carries its event's own time), and of those only the ones
    /// whose in-memory filter may hold the id are read.
    pub(crate) fn find(&self, event_id: &str, source: &str, time: &str) -> Result<Option<i64>, crate::StoreError> {
        for (segment, latest) in self.segments.iter().zip(&self.latest_upto).rev() {
            if *latest < time {
                break;
            }
            let info = segment.info();
            if time < info.min_time.as_str() || time > info.max_time.as_str() || !segment.may_contain_event_id(event_id) {
                continue;
            }
            for pos in segment.find(Key::EventId, event_id)? {
                let row = segment.row(pos)?;
                if row.source == source {
                    return Ok(Some(row.seq));
                }
            }
        }
        Ok(None)
    }
}

/// The virtual table's name, as SQL names it: the history's rows, sealed and not.
pub(crate) const MODULE_NAME: &CStr = c"events";

/// Registers `events` on a connection, over `set`.
pub(crate) fn register(conn: &Connection, set: Arc<SegmentSet>) -> rusqlite::Result<()> {
    const MODULE: Module<EventsTab> = Module::eponymous_only_module();
    conn.create_module(MODULE_NAME, &MODULE, Some(set))
}

// The columns: those of `events_hot`, in its order.
const SEQ: c_int = 0;
const EVENT_ID: c_int = 1;
const EVENT_TYPE: c_int = 3;
const CORRELATION_ID: c_int = 4;
const CAUSATION_ID: c_int = 5;
const SUBJECT: c_int = 6;
const TIME: c_int = 7;
const REDELIVERIES: c_int = 12;
const ENVELOPE: c_int = 13;
/// `idx_num`'s flag for a plan whose rows must come in seq order.
const ORDERED: c_int = 1 << 30;
/// How many columns the table has.
const COLUMNS: u32 = 17;
/// The columns of `events_hot` the nested statements read, in the table's (and this table's) order.
const HOT_COLUMN_NAMES: [&str; COLUMNS as usize] = [
    "seq",
    "event_id",
    "source",
    "event_type",
    "correlation_id",
    "causation_id",
    "subject",
    "time",
    "topic",
    "journey",
    "journey_key",
    "received_at",
    "redeliveries",
    "envelope",
    "partition",
    "\"offset\"",
    "message_time",
];

const SCHEMA: &CStr = c"CREATE TABLE x(seq INTEGER, event_id TEXT, source TEXT, event_type TEXT, correlation_id TEXT, causation_id TEXT,
    subject TEXT, time TEXT, topic TEXT, journey TEXT, journey_key TEXT, received_at TEXT, redeliveries INTEGER, envelope TEXT,
    partition INTEGER, \"offset\" INTEGER, message_time TEXT)";

/// The sealed range of the statement's snapshot: the first segment's first seq and the last one's
/// last seq, each by one lookup of the rowid (`first_seq`).
pub(crate) const SEALED_BOUNDS: &str =
    concat!("SELECT coalesce((SELECT first_seq FROM segments ORDER BY first_seq LIMIT 1), 0), coalesce(", crate::schema::last_sealed_seq!(), ", 0)");

/// A sealed event's redeliveries since its seal.
const SEALED_REDELIVERIES: &str = "SELECT redeliveries FROM sealed_redeliveries WHERE seq = ?1";

#[repr(C)]
struct EventsTab {
    /// SQLite's part; must come first.
    base: sqlite3_vtab,
    set: Arc<SegmentSet>,
    /// The connection this table belongs to, for the nested statements.
    db: *mut ffi::sqlite3,
    /// Nested statements no cursor holds, by their SQL: prepared once per connection, not once per
    /// query.
    pool: Pool,
}

type Pool = std::rc::Rc<RefCell<BySql<Vec<Nested>>>>;

/// Nested statements by their SQL text. Every filter looks its statements up; SipHash over the
/// text showed at 5–7% of a lookup's time, xxh3 does not show.
type BySql<V> = HashMap<String, V, xxhash_rust::xxh3::Xxh3DefaultBuilder>;

/// What one argument handed to `filter` means; the plan's `idx_str` lists them in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    Key(Key),
    EventType,
    /// `event_type IN (…)`, its whole list given to one filter call: one pass in seq order
    /// instead of one per value (each a pass over every segment, and a join's lookups by seq
    /// then jumping about).
    EventTypes,
    SeqEq,
    SeqMin {
        inclusive: bool,
    },
    SeqMax {
        inclusive: bool,
    },
    TimeMin,
    TimeMax,
}

impl Arg {
    fn code(self) -> &'static str {
        match self {
            Arg::Key(Key::EventId) => "event_id",
            Arg::Key(Key::CorrelationId) => "correlation_id",
            Arg::Key(Key::CausationId) => "causation_id",
            Arg::Key(Key::Subject) => "subject",
            Arg::EventType => "event_type",
            Arg::EventTypes => "event_type_in",
            Arg::SeqEq => "seq=",
            Arg::SeqMin { inclusive: true } => "seq>=",
            Arg::SeqMin { inclusive: false } => "seq>",
            Arg::SeqMax { inclusive: true } => "seq<=",
            Arg::SeqMax { inclusive: false } => "seq<",
            Arg::TimeMin => "time>=",
            Arg::TimeMax => "time<=",
        }
    }

    fn parse(code: &str) -> Option<Arg> {
        [
            Arg::Key(Key::EventId),
            Arg::Key(Key::CorrelationId),
            Arg::Key(Key::CausationId),
            Arg::Key(Key::Subject),
            Arg::EventType,
            Arg::EventTypes,
            Arg::SeqEq,
            Arg::SeqMin { inclusive: true },
            Arg::SeqMin { inclusive: false },
            Arg::SeqMax { inclusive: true },
            Arg::SeqMax { inclusive: false },
            Arg::TimeMin,
            Arg::TimeMax,
        ]
        .into_iter()
        .find(|a| a.code() == code)
    }
}

unsafe impl<'vtab> VTab<'vtab> for EventsTab {
    type Aux = Arc<SegmentSet>;
    type Cursor = EventsCursor;

    fn connect(
        db: &mut VTabConnection,
        aux: Option<&Arc<SegmentSet>>,
        _module: &[u8],
        _database: &[u8],
        _table: &[u8],
        _args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, EventsTab)> {
        db.config(VTabConfig::Innocuous)?;
        let set = aux.cloned().unwrap_or_default();
        // SAFETY: the handle is only used while the connection that made this table is open:
        // SQLite disconnects its virtual tables before it closes.
        let handle = unsafe { db.handle() };
        Ok((Cow::Borrowed(SCHEMA), EventsTab { base: sqlite3_vtab::default(), set, db: handle, pool: Pool::default() }))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        use IndexConstraintOp::*;
        // (argument, constraint index): the key lookup with the best priority wins, every bound on
        // seq and time narrows whatever is read. No constraint is omitted: SQLite checks each row
        // again, which keeps the hash lookups and the block-level time pruning exact.
        let mut args: Vec<(Arg, usize)> = Vec::new();
        let mut key: Option<(Key, usize)> = None;
        let mut in_lists: Vec<usize> = Vec::new();
        let key_rank = |k: Key| match k {
            Key::EventId => 0,
            Key::CorrelationId => 1,
            Key::CausationId => 2,
            Key::Subject => 3,
        };
        for (i, c) in info.constraints().enumerate() {
            if !c.is_usable() {
                continue;
            }
            match (c.column(), c.operator()) {
                (EVENT_ID | CORRELATION_ID | CAUSATION_ID | SUBJECT, SQLITE_INDEX_CONSTRAINT_EQ) => {
                    let k = match c.column() {
                        EVENT_ID => Key::EventId,
                        CORRELATION_ID => Key::CorrelationId,
                        CAUSATION_ID => Key::CausationId,
                        _ => Key::Subject,
                    };
                    if key.is_none_or(|(best, _)| key_rank(k) < key_rank(best)) {
                        key = Some((k, i));
                    }
                }
                (EVENT_TYPE, SQLITE_INDEX_CONSTRAINT_EQ) if info.is_in_constraint(i)? => {
                    in_lists.push(i);
                    args.push((Arg::EventTypes, i));
                }
                (EVENT_TYPE, SQLITE_INDEX_CONSTRAINT_EQ) => args.push((Arg::EventType, i)),
                (SEQ, SQLITE_INDEX_CONSTRAINT_EQ) => args.push((Arg::SeqEq, i)),
                (SEQ, SQLITE_INDEX_CONSTRAINT_GT) => args.push((Arg::SeqMin { inclusive: false }, i)),
                (SEQ, SQLITE_INDEX_CONSTRAINT_GE) => args.push((Arg::SeqMin { inclusive: true }, i)),
                (SEQ, SQLITE_INDEX_CONSTRAINT_LT) => args.push((Arg::SeqMax { inclusive: false }, i)),
                (SEQ, SQLITE_INDEX_CONSTRAINT_LE) => args.push((Arg::SeqMax { inclusive: true }, i)),
                (TIME, SQLITE_INDEX_CONSTRAINT_GT) | (TIME, SQLITE_INDEX_CONSTRAINT_GE) => args.push((Arg::TimeMin, i)),
                (TIME, SQLITE_INDEX_CONSTRAINT_LT) | (TIME, SQLITE_INDEX_CONSTRAINT_LE) => args.push((Arg::TimeMax, i)),
                (TIME, SQLITE_INDEX_CONSTRAINT_EQ) => {
                    args.push((Arg::TimeMin, i));
                    args.push((Arg::TimeMax, i));
                }
                _ => {}
            }
        }
        if let Some((k, i)) = key {
            args.push((Arg::Key(k), i));
        }
        for i in in_lists {
            info.set_in_constraint(i, true)?;
        }
        // A constraint used twice (time = x) gets one argument slot.
        let mut codes = Vec::new();
        let mut slot_of: Vec<(usize, c_int)> = Vec::new();
        for (arg, i) in &args {
            let slot = match slot_of.iter().find(|(c, _)| c == i) {
                Some((_, s)) => *s,
                None => {
                    let s = slot_of.len() as c_int + 1;
                    slot_of.push((*i, s));
                    let mut usage = info.constraint_usage(*i);
                    usage.set_argv_index(s);
                    // Both halves apply an id lookup and an event type exactly (the segments' hash
                    // hits are checked against the rows, the type against each sealed row), so
                    // SQLite need not check them again.
                    usage.set_omit(matches!(arg, Arg::Key(_) | Arg::EventType | Arg::EventTypes));
                    s
                }
            };
            codes.push(format!("{}@{slot}", arg.code()));
        }
        let has = |f: &dyn Fn(&Arg) -> bool| args.iter().any(|(a, _)| f(a));
        // Costs in rows read, the history's size taken from the log's end. A lookup costs a filter
        // call's own work too (a nested statement, a search of the segments).
        let total = self.set.log_end.load(std::sync::atomic::Ordering::Relaxed).max(1_000);
        let (cost, rows) = if has(&|a| *a == Arg::SeqEq) {
            (1_000.0, 1)
        } else if key.is_some() {
            (20.0, 10)
        } else if has(&|a| matches!(a, Arg::SeqMin { .. })) && has(&|a| matches!(a, Arg::SeqMax { .. })) {
            (1_000.0, 1_000)
        } else if has(&|a| matches!(a, Arg::SeqMin { .. } | Arg::SeqMax { .. } | Arg::TimeMin | Arg::TimeMax | Arg::EventType | Arg::EventTypes)) {
            (total as f64 / 4.0, total / 4)
        } else {
            (total as f64, total)
        };
        // Sealed rows come in seq order whatever the plan, unsealed ones when asked to.
        let ordered = {
            let mut order_bys = info.order_bys();
            matches!((order_bys.next(), order_bys.next()), (Some(o), None) if o.column() == SEQ && !o.is_order_by_desc())
        };
        info.set_order_by_consumed(ordered);
        // The columns the statement reads (SQLite's last bit stands for every column past 63):
        // sealed rows decode envelopes only if it reads them, unsealed rows are read with only
        // these columns, so an index may answer without the table.
        let used = info.col_used();
        let used = if used & (1 << 63) != 0 { u64::MAX } else { used };
        // Bit 30: the rows must come in seq order (the unsealed ones are sorted only then).
        info.set_idx_num((used & ((1 << COLUMNS) - 1)) as c_int | if ordered { ORDERED } else { 0 });
        info.set_estimated_cost(cost);
        info.set_estimated_rows(rows);
        info.set_idx_str(&codes.join(","));
        Ok(true)
    }

    fn open(&'vtab mut self) -> rusqlite::Result<EventsCursor> {
        Ok(EventsCursor {
            base: sqlite3_vtab_cursor::default(),
            set: self.set.clone(),
            db: self.db,
            pool: self.pool.clone(),
            statements: BySql::default(),
            sealed: VecDeque::new(),
            at: 0,
            row: RefCell::new(None),
            block_seqs: RefCell::new(None),
            hot: None,
            done: true,
            bounds: None,
            envelopes: true,
            shape: None,
            event_types: None,
            candidates: None,
        })
    }
}

/// One block's seqs, with its segment (held, so the same address is the same segment) and its
/// positions.
type BlockSeqs = (Arc<Segment>, Range<u32>, Vec<i64>);

/// A stretch of one segment's positions to read.
enum Stretch {
    Range(Arc<Segment>, Range<u32>),
    Rows(Arc<Segment>, Vec<u32>),
}

impl Stretch {
    fn len(&self) -> usize {
        match self {
            Stretch::Range(_, r) => r.len(),
            Stretch::Rows(_, v) => v.len(),
        }
    }

    fn segment(&self) -> &Arc<Segment> {
        match self {
            Stretch::Range(s, _) | Stretch::Rows(s, _) => s,
        }
    }

    fn get(&self, i: usize) -> (&Segment, u32) {
        match self {
            Stretch::Range(s, r) => (s, r.start + i as u32),
            Stretch::Rows(s, v) => (s, v[i]),
        }
    }
}

#[repr(C)]
struct EventsCursor {
    /// SQLite's part; must come first.
    base: sqlite3_vtab_cursor,
    set: Arc<SegmentSet>,
    db: *mut ffi::sqlite3,
    pool: Pool,
    /// The nested statements this cursor holds, by their SQL; back to the pool when it closes.
    statements: BySql<Nested>,
    /// Sealed rows left to read; `at` indexes into the first stretch.
    sealed: VecDeque<Stretch>,
    at: usize,
    /// The current sealed row, decoded when a column other than seq is first asked for.
    row: RefCell<Option<SealedRow>>,
    /// The seqs of the block the last sealed seq was read from (which segment, its positions):
    /// a scan decodes each block's seqs once, not once per row.
    block_seqs: RefCell<Option<BlockSeqs>>,
    /// Once the sealed rows are read: the nested statement over `events_hot` (with its SQL), on
    /// its current row. Held apart from `statements` so reading a column looks nothing up.
    hot: Option<(String, Nested)>,
    done: bool,
    /// The first and last sealed seq of the statement's snapshot, once read.
    bounds: Option<(i64, i64)>,
    /// Whether the statement reads envelopes; without, sealed rows are decoded without them.
    envelopes: bool,
    /// The plan (`idx_str`, `idx_num`, whether it reads candidates) the statement in `hot` was made for.
    shape: Option<(String, c_int, bool)>,
    /// The event types the plan reads, if it names any: sealed rows of others are skipped.
    event_types: Option<Vec<String>>,
    /// For a key lookup or a narrow time range: the unsealed seqs left to read, ascending (`hot.rs`).
    candidates: Option<VecDeque<i64>>,
}

impl Drop for EventsCursor {
    fn drop(&mut self) {
        self.put_back_hot();
        let mut pool = self.pool.borrow_mut();
        for (sql, stmt) in self.statements.drain() {
            stmt.reset();
            pool.entry(sql).or_default().push(stmt);
        }
    }
}

impl EventsCursor {
    fn statement(&mut self, sql: &str) -> rusqlite::Result<&mut Nested> {
        if !self.statements.contains_key(sql) {
            let pooled = self.pool.borrow_mut().get_mut(sql).and_then(Vec::pop);
            let stmt = match pooled {
                Some(s) => s,
                None => Nested::prepare(self.db, sql, self.set.nested_steps.clone())?,
            };
            self.statements.insert(sql.to_string(), stmt);
        }
        Ok(self.statements.get_mut(sql).expect("just prepared"))
    }

    /// Moves past finished stretches, and past sealed rows of another event type when the plan
    /// has one.
    fn skip_empty(&mut self) -> rusqlite::Result<()> {
        loop {
            while self.sealed.front().is_some_and(|s| self.at >= s.len()) {
                self.sealed.pop_front();
                self.at = 0;
            }
            let Some(wanted) = &self.event_types else { return Ok(()) };
            let Some(stretch) = self.sealed.front() else { return Ok(()) };
            let (segment, pos) = stretch.get(self.at);
            // The lineage columns answer without decompressing the block.
            let matches = match segment.event_type_at(pos) {
                Some(t) => wanted.iter().any(|w| w == t),
                None => {
                    let row = self.sealed_row()?;
                    wanted.contains(&row.event_type)
                }
            };
            if matches {
                return Ok(());
            }
            self.at += 1;
            *self.row.get_mut() = None;
        }
    }

    /// After the sealed rows: steps the nested statement over `events_hot`.
    fn step_hot(&mut self) -> rusqlite::Result<()> {
        let more = match (&mut self.hot, &mut self.candidates) {
            (Some((_, stmt)), Some(candidates)) => loop {
                // A candidate not in this snapshot, or whose hash only collided, has no row.
                let Some(seq) = candidates.pop_front() else { break false };
                stmt.reset();
                stmt.bind(1, &seq.into())?;
                if stmt.step()? {
                    break true;
                }
            },
            (Some((_, stmt)), None) => stmt.step()?,
            (None, _) => false,
        };
        if !more {
            // Kept for the next filter with the same plan; done, it holds no read lock.
            self.done = true;
        }
        Ok(())
    }

    fn put_back_hot(&mut self) {
        self.shape = None;
        if let Some((sql, stmt)) = self.hot.take() {
            stmt.reset();
            self.statements.insert(sql, stmt);
        }
    }

    fn hot_row(&self) -> Option<&Nested> {
        self.hot.as_ref().map(|(_, stmt)| stmt)
    }

    /// The current sealed row's seq: scans that need nothing else (counts, joins on seq) never
    /// decompress a block.
    fn sealed_seq(&self) -> rusqlite::Result<i64> {
        if let Some(row) = self.row.borrow().as_ref() {
            return Ok(row.seq);
        }
        let stretch = self.sealed.front().ok_or_else(|| module_error("no current row"))?;
        let (segment, pos) = (stretch.segment(), stretch.get(self.at).1);
        let mut cached = self.block_seqs.borrow_mut();
        // The cache holds its segment, so the same address is the same segment.
        let hit = cached.as_ref().is_some_and(|(s, range, _)| Arc::ptr_eq(s, segment) && range.contains(&pos));
        if !hit {
            let (range, seqs) = segment.block_seqs_at(pos).map_err(|e| module_error(&e.to_string()))?;
            *cached = Some((segment.clone(), range, seqs));
        }
        let (_, range, seqs) = cached.as_ref().expect("just filled");
        Ok(seqs[(pos - range.start) as usize])
    }

    fn sealed_row(&self) -> rusqlite::Result<std::cell::Ref<'_, SealedRow>> {
        if self.row.borrow().is_none() {
            let stretch = self.sealed.front().ok_or_else(|| module_error("no current row"))?;
            let (segment, pos) = stretch.get(self.at);
            let row = if self.envelopes { segment.row(pos) } else { segment.row_attributes(pos) };
            *self.row.borrow_mut() = Some(row.map_err(|e| module_error(&e.to_string()))?);
        }
        Ok(std::cell::Ref::map(self.row.borrow(), |r| r.as_ref().expect("decoded")))
    }
}

fn module_error(message: &str) -> rusqlite::Error {
    rusqlite::Error::ModuleError(format!("events: {message}"))
}

/// The bounds a plan's arguments set.
#[derive(Default)]
struct Bounds {
    since: i64,
    upto: i64,
    /// The arguments the plan gave, whatever their values.
    given: Vec<Arg>,
    seq_min: Option<i64>,
    seq_max: Option<i64>,
    time_min: Option<String>,
    time_max: Option<String>,
    /// The event types allowed, when the plan names any (one `=`, an `IN` list, or both, which
    /// intersect); empty when none can match (`= NULL`).
    event_types: Option<Vec<String>>,
    key: Option<(Key, Option<String>)>,
}

impl Bounds {
    /// Narrows the allowed event types to those also in `types`.
    fn allow_event_types(&mut self, types: Vec<String>) {
        self.event_types = Some(match self.event_types.take() {
            Some(before) => before.into_iter().filter(|t| types.contains(t)).collect(),
            None => types,
        });
    }
}

unsafe impl VTabCursor for EventsCursor {
    fn filter(&mut self, idx_num: c_int, idx_str: Option<&str>, args: &Filters<'_>) -> rusqlite::Result<()> {
        let mut b = Bounds::default();
        for code in idx_str.unwrap_or("").split(',').filter(|c| !c.is_empty()) {
            let (name, slot) = code.rsplit_once('@').ok_or_else(|| module_error("bad plan"))?;
            let arg = Arg::parse(name).ok_or_else(|| module_error("bad plan"))?;
            let i: usize = slot.parse::<usize>().map_err(|_| module_error("bad plan"))? - 1;
            let narrow = |b: &mut Option<i64>, pick: fn(i64, i64) -> i64, v: Option<i64>| {
                if let Some(v) = v {
                    *b = Some(b.map_or(v, |old| pick(old, v)));
                }
            };
            let int = || -> rusqlite::Result<Option<i64>> {
                Ok(match args.get::<rusqlite::types::Value>(i)? {
                    rusqlite::types::Value::Integer(v) => Some(v),
                    rusqlite::types::Value::Real(f) => Some(f as i64),
                    rusqlite::types::Value::Null => None,
                    // A text or blob bound on seq: SQLite checks every row again; read them all.
                    _ => None,
                })
            };
            // A number compared with a text column compares as its text (the column's affinity);
            // a blob or NULL equals no text.
            let text = || match args.get::<rusqlite::types::Value>(i) {
                Ok(rusqlite::types::Value::Text(t)) => Some(t),
                Ok(rusqlite::types::Value::Integer(n)) => Some(n.to_string()),
                _ => None,
            };
            b.given.push(arg);
            match arg {
                Arg::SeqEq => {
                    let v = int()?;
                    narrow(&mut b.seq_min, i64::max, v);
                    narrow(&mut b.seq_max, i64::min, v);
                }
                Arg::SeqMin { inclusive } => narrow(&mut b.seq_min, i64::max, int()?.map(|v| if inclusive { v } else { v.saturating_add(1) })),
                Arg::SeqMax { inclusive } => narrow(&mut b.seq_max, i64::min, int()?.map(|v| if inclusive { v } else { v.saturating_sub(1) })),
                Arg::TimeMin => b.time_min = text(),
                Arg::TimeMax => b.time_max = text(),
                Arg::EventType => b.allow_event_types(text().into_iter().collect()),
                Arg::EventTypes => {
                    use rusqlite::fallible_streaming_iterator::FallibleStreamingIterator as _;
                    let mut list = Vec::new();
                    let mut values = args.in_values(i)?;
                    while let Some(v) = values.next()? {
                        match v.get_raw() {
                            rusqlite::types::ValueRef::Text(t) => list.push(String::from_utf8_lossy(t).into_owned()),
                            rusqlite::types::ValueRef::Integer(n) => list.push(n.to_string()),
                            _ => {}
                        }
                    }
                    b.allow_event_types(list);
                }
                Arg::Key(k) => b.key = Some((k, text())),
            }
        }
        if matches!(b.key, Some((_, None))) || b.event_types.as_ref().is_some_and(Vec::is_empty) {
            // `= NULL` (or a blob) matches nothing.
            self.sealed.clear();
            self.done = true;
            return Ok(());
        }
        // The sealed history of this statement's snapshot: read once, as a cursor serves one run
        // of one statement (a join's inner loop filters it again for every outer row).
        let (since, upto) = match self.bounds {
            Some(b) => b,
            None => {
                let bounds = self.statement(SEALED_BOUNDS)?;
                bounds.reset();
                bounds.step()?;
                let pair = (bounds.int(0).unwrap_or(0), bounds.int(1).unwrap_or(0));
                bounds.reset();
                self.bounds = Some(pair);
                pair
            }
        };
        b.since = since;
        b.upto = upto;
        let used = idx_num as u32;
        self.envelopes = used & (1 << ENVELOPE) != 0;
        self.sealed = plan(&self.set.snapshot(), &self.set.groups(), &b).map_err(|e| module_error(&e.to_string()))?.into();
        self.at = 0;
        *self.row.get_mut() = None;
        self.event_types = b.event_types.clone();
        self.skip_empty()?;
        if !self.sealed.is_empty() {
            self.statement(SEALED_REDELIVERIES)?;
        }

        // The unsealed rows: the same bounds, as SQL over events_hot and its indexes. Its text
        // depends on the plan alone (a NULL bound is bound as the widest value: SQLite checks
        // every row against the constraints again), so a join's inner loop, filtering again and
        // again with one plan, rebinds one statement.
        let has = |f: fn(&Arg) -> bool| b.given.iter().any(f);
        // One lower bound on seq: SQLite's range scan starts at one of them, whichever it likes,
        // and from the log's unsealed start that read a whole table to reach one row.
        let after = b.seq_min.map_or(upto, |m| upto.max(m.saturating_sub(1)));
        let mut values: Vec<rusqlite::types::Value> = vec![after.into()];
        let mut conditions: Vec<&str> = Vec::new();
        if let Some((k, Some(v))) = &b.key {
            conditions.push(match k {
                Key::EventId => "event_id = ?",
                Key::CorrelationId => "correlation_id = ?",
                Key::CausationId => "causation_id = ?",
                Key::Subject => "subject = ?",
            });
            values.push(v.clone().into());
        }
        match &b.event_types {
            // The statement's text depends on the plan alone: a plan with an IN list binds it
            // whole, as JSON, however many values it has.
            Some(types) if has(|a| *a == Arg::EventTypes) => {
                conditions.push("event_type IN (SELECT value FROM json_each(?))");
                values.push(serde_json::to_string(types).expect("strings serialise").into());
            }
            Some(types) => {
                conditions.push("event_type = ?");
                values.push(types[0].clone().into());
            }
            None => {}
        }
        if has(|a| matches!(a, Arg::SeqEq | Arg::SeqMax { .. })) {
            conditions.push("seq <= ?");
            values.push(b.seq_max.unwrap_or(i64::MAX).into());
        }
        if has(|a| *a == Arg::TimeMin) {
            conditions.push("time >= ?");
            values.push(b.time_min.clone().unwrap_or_default().into());
        }
        if has(|a| *a == Arg::TimeMax) {
            conditions.push("time <= ?");
            values.push(b.time_max.clone().unwrap_or_else(|| "\u{10FFFF}".into()).into());
        }
        // A key lookup reads the rows its keys name (`hot.rs`), one by one, in seq order; so does
        // a narrow time range without an event type (`events_hot` has no index on time alone).
        self.candidates = match (&b.key, self.set.keys.get()) {
            (Some((k, Some(v))), Some(keys)) => Some(unsealed_candidates(&self.set, keys, *k, v, &b).map_err(|e| module_error(&e.to_string()))?),
            // With an event type, `events_type_time` serves the range.
            (None, Some(keys)) if b.event_types.is_none() && has(|a| matches!(a, Arg::TimeMin | Arg::TimeMax)) => {
                keys.times_between(b.time_min.as_deref(), b.time_max.as_deref(), after).map(|mut seqs| {
                    seqs.retain(|s| b.seq_max.is_none_or(|max| *s <= max));
                    seqs.into()
                })
            }
            _ => None,
        };
        let by_candidates = self.candidates.is_some();
        let same_shape =
            self.shape.as_ref().is_some_and(|(s, n, c)| Some(s.as_str()) == idx_str && *n == idx_num && *c == by_candidates) && self.hot.is_some();
        if !same_shape {
            // seq always: it is the rowid.
            let columns: Vec<&str> =
                HOT_COLUMN_NAMES.iter().enumerate().map(|(i, name)| if i == 0 || used & (1 << i) != 0 { *name } else { "NULL" }).collect();
            let by_seq = if self.candidates.is_some() { "seq = ?1" } else { "seq > ?1" };
            let mut sql = format!("SELECT {} FROM events_hot WHERE {by_seq}", columns.join(", "));
            for (i, c) in conditions.iter().enumerate() {
                sql.push_str(&format!(" AND {}", c.replacen('?', &format!("?{}", i + 2), 1)));
            }
            if idx_num & ORDERED != 0 && self.candidates.is_none() {
                sql.push_str(" ORDER BY seq");
            }
            self.put_back_hot();
            self.statement(&sql)?;
            let stmt = self.statements.remove(&sql).expect("just prepared");
            self.hot = Some((sql, stmt));
            self.shape = Some((idx_str.unwrap_or("").to_string(), idx_num, by_candidates));
        }
        let (_, hot) = self.hot.as_ref().expect("a statement for the plan");
        hot.reset();
        for (i, v) in values.iter().enumerate() {
            hot.bind(i + 1, v)?;
        }
        self.done = false;
        if self.sealed.is_empty() {
            self.step_hot()?;
        }
        Ok(())
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        if self.sealed.is_empty() {
            return self.step_hot();
        }
        self.at += 1;
        *self.row.get_mut() = None;
        self.skip_empty()?;
        if self.sealed.is_empty() {
            self.step_hot()?;
        }
        Ok(())
    }

    fn eof(&self) -> bool {
        self.done
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        if self.sealed.is_empty() {
            let row = self.hot_row().ok_or_else(|| module_error("no current row"))?;
            return ctx.set_result(row.value(i as usize));
        }
        if i == SEQ {
            return ctx.set_result(self.sealed_seq()?);
        }
        if i == EVENT_TYPE || i == TIME {
            // From the lineage columns when the file has them: no block decompressed.
            let stretch = self.sealed.front().ok_or_else(|| module_error("no current row"))?;
            let (segment, pos) = stretch.get(self.at);
            if i == EVENT_TYPE
                && let Some(t) = segment.event_type_at(pos)
            {
                return ctx.set_result(t);
            }
            if i == TIME
                && let Some(t) = segment.time_at(pos)
            {
                return ctx.set_result(&t);
            }
        }
        if i == REDELIVERIES {
            // Counted beside the segment since the seal.
            let stmt = self.statements.get(SEALED_REDELIVERIES).ok_or_else(|| module_error("redeliveries not prepared"))?;
            return ctx.set_result(stmt.lookup_int(self.sealed_seq()?)?.unwrap_or(0));
        }
        let r = self.sealed_row()?;
        match i {
            1 => ctx.set_result(&r.event_id),
            2 => ctx.set_result(&r.source),
            3 => ctx.set_result(&r.event_type),
            4 => ctx.set_result(&r.correlation_id),
            5 => ctx.set_result(&r.causation_id),
            6 => ctx.set_result(&r.subject),
            7 => ctx.set_result(&r.time),
            8 => ctx.set_result(&r.topic),
            9 | 10 => ctx.set_result(rusqlite::types::Null),
            11 => ctx.set_result(&r.received_at),
            13 => ctx.set_result(&r.envelope),
            14 => ctx.set_result(r.partition),
            15 => ctx.set_result(r.offset),
            16 => ctx.set_result(&r.message_time),
            _ => Err(module_error("no such column")),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        if self.sealed.is_empty() {
            let row = self.hot_row().ok_or_else(|| module_error("no current row"))?;
            return Ok(row.int(0).unwrap_or(0));
        }
        self.sealed_seq()
    }
}

/// A statement nested on the connection of the statement that reads `events`: same read
/// transaction, same snapshot, same limits (authorizer, progress handler).
struct Nested {
    stmt: *mut ffi::sqlite3_stmt,
    db: *mut ffi::sqlite3,
    /// Where each run's virtual machine steps are added up (`SegmentSet::nested_steps`).
    steps: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for Nested {
    fn drop(&mut self) {
        // SAFETY: the statement was prepared by `prepare` and is finalized once, here.
        unsafe { ffi::sqlite3_finalize(self.stmt) };
    }
}

impl Nested {
    fn prepare(db: *mut ffi::sqlite3, sql: &str, steps: Arc<std::sync::atomic::AtomicU64>) -> rusqlite::Result<Nested> {
        let text = std::ffi::CString::new(sql).map_err(|_| module_error("SQL with a NUL"))?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `db` is the open connection this table belongs to; `text` outlives the call.
        let rc = unsafe { ffi::sqlite3_prepare_v2(db, text.as_ptr(), -1, &mut stmt, std::ptr::null_mut()) };
        let nested = Nested { stmt, db, steps };
        nested.check(rc)?;
        Ok(nested)
    }

    fn check(&self, rc: c_int) -> rusqlite::Result<()> {
        if rc == ffi::SQLITE_OK || rc == ffi::SQLITE_ROW || rc == ffi::SQLITE_DONE {
            return Ok(());
        }
        // SAFETY: the connection is open; the message is copied before any other call.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db)) }.to_string_lossy().into_owned();
        Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some(message)))
    }

    fn reset(&self) {
        // SAFETY: a prepared statement of an open connection.
        let steps = unsafe {
            ffi::sqlite3_reset(self.stmt);
            ffi::sqlite3_stmt_status(self.stmt, ffi::SQLITE_STMTSTATUS_VM_STEP, 1)
        };
        self.steps.fetch_add(steps.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn bind(&self, i: usize, v: &rusqlite::types::Value) -> rusqlite::Result<()> {
        use rusqlite::types::Value;
        let i = i as c_int;
        // SAFETY: binding to a prepared, reset statement; SQLITE_TRANSIENT makes SQLite copy text.
        let rc = unsafe {
            match v {
                Value::Integer(n) => ffi::sqlite3_bind_int64(self.stmt, i, *n),
                Value::Text(t) => ffi::sqlite3_bind_text(self.stmt, i, t.as_ptr().cast(), t.len() as c_int, ffi::SQLITE_TRANSIENT()),
                Value::Null => ffi::sqlite3_bind_null(self.stmt, i),
                Value::Real(f) => ffi::sqlite3_bind_double(self.stmt, i, *f),
                Value::Blob(b) => ffi::sqlite3_bind_blob(self.stmt, i, b.as_ptr().cast(), b.len() as c_int, ffi::SQLITE_TRANSIENT()),
            }
        };
        self.check(rc)
    }

    /// Steps; `true` on a row.
    fn step(&mut self) -> rusqlite::Result<bool> {
        // SAFETY: a prepared statement of an open connection.
        let rc = unsafe { ffi::sqlite3_step(self.stmt) };
        self.check(rc)?;
        Ok(rc == ffi::SQLITE_ROW)
    }

    fn int(&self, i: usize) -> Option<i64> {
        // SAFETY: the statement is on a row.
        unsafe { (ffi::sqlite3_column_type(self.stmt, i as c_int) != ffi::SQLITE_NULL).then(|| ffi::sqlite3_column_int64(self.stmt, i as c_int)) }
    }

    /// Column `i` of the current row, borrowed until the next step.
    fn value(&self, i: usize) -> rusqlite::types::ToSqlOutput<'_> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        let i = i as c_int;
        // SAFETY: the statement is on a row; the slices live until the next step or reset.
        unsafe {
            ToSqlOutput::Borrowed(match ffi::sqlite3_column_type(self.stmt, i) {
                ffi::SQLITE_INTEGER => ValueRef::Integer(ffi::sqlite3_column_int64(self.stmt, i)),
                ffi::SQLITE_FLOAT => ValueRef::Real(ffi::sqlite3_column_double(self.stmt, i)),
                ffi::SQLITE_TEXT => {
                    let p = ffi::sqlite3_column_text(self.stmt, i);
                    let n = ffi::sqlite3_column_bytes(self.stmt, i) as usize;
                    ValueRef::Text(if n == 0 { &[] } else { std::slice::from_raw_parts(p, n) })
                }
                ffi::SQLITE_BLOB => {
                    let p = ffi::sqlite3_column_blob(self.stmt, i).cast::<u8>();
                    let n = ffi::sqlite3_column_bytes(self.stmt, i) as usize;
                    ValueRef::Blob(if n == 0 { &[] } else { std::slice::from_raw_parts(p, n) })
                }
                _ => ValueRef::Null,
            })
        }
    }

    /// Runs a one-integer lookup with `?1 = key`: its first column, if a row matched.
    fn lookup_int(&self, key: i64) -> rusqlite::Result<Option<i64>> {
        self.reset();
        // SAFETY: a prepared statement of an open connection.
        let rc = unsafe { ffi::sqlite3_bind_int64(self.stmt, 1, key) };
        self.check(rc)?;
        let rc = unsafe { ffi::sqlite3_step(self.stmt) };
        self.check(rc)?;
        let found = if rc == ffi::SQLITE_ROW { self.int(0) } else { None };
        self.reset();
        Ok(found)
    }
}

/// The unsealed seqs within `b` that may carry `value` as their `key`, ascending: from the
/// in-memory keys, and for rows sealed since this statement's snapshot (which it still reads from
/// `events_hot`, but whose keys are gone) from their segments.
fn unsealed_candidates(set: &SegmentSet, keys: &HotKeys, key: Key, value: &str, b: &Bounds) -> Result<VecDeque<i64>, crate::StoreError> {
    let after = b.upto.max(b.seq_min.map_or(i64::MIN, |m| m.saturating_sub(1)));
    let (floor, mut seqs) = keys.find(key, value, after);
    if floor > after {
        for segment in set.snapshot().iter() {
            let info = segment.info();
            if info.last_seq <= after || info.first_seq > floor || !segment.may_contain(key, value) {
                continue;
            }
            for pos in segment.find(key, value)? {
                let seq = segment.seq_at(pos)?;
                if seq > after && seq <= floor {
                    seqs.push(seq);
                }
            }
        }
        seqs.sort_unstable();
    }
    if let Some(max) = b.seq_max {
        seqs.retain(|s| *s <= max);
    }
    Ok(seqs.into())
}

/// What a statement reads: for each segment within `since..=upto` and the seq bounds, the
/// positions the key lookup found, or the positions the seq and time bounds leave.
fn plan(segments: &[Arc<Segment>], groups: &[Arc<SegmentGroup>], b: &Bounds) -> Result<Vec<Stretch>, crate::StoreError> {
    let mut plan = Vec::new();
    let hash = match &b.key {
        Some((_, Some(value))) => key_hash(value),
        _ => 0,
    };
    // The group that may hold the current segment: both lists ascend by seq.
    let mut group = 0;
    for segment in segments {
        let info = segment.info();
        if info.first_seq < b.since || info.last_seq > b.upto {
            continue;
        }
        if b.seq_min.is_some_and(|m| info.last_seq < m) || b.seq_max.is_some_and(|m| info.first_seq > m) {
            continue;
        }
        if b.time_min.as_deref().is_some_and(|t| info.max_time.as_str() < t) || b.time_max.as_deref().is_some_and(|t| info.min_time.as_str() > t) {
            continue;
        }
        if let Some(types) = &b.event_types
            && !types.iter().any(|t| segment.may_contain_event_type(t))
        {
            continue;
        }
        let lo = b.seq_min.map_or(0, |m| segment.lower_bound_seq(m));
        let hi = b.seq_max.map_or(segment.len() as u32, |m| if m == i64::MAX { segment.len() as u32 } else { segment.lower_bound_seq(m + 1) });
        if lo >= hi {
            continue;
        }
        if let Some((key, Some(value))) = &b.key {
            while groups.get(group).is_some_and(|g| g.last_seq < info.first_seq) {
                group += 1;
            }
            if groups.get(group).is_some_and(|g| g.rules_out(segment, *key, hash)) || !segment.may_contain_hash(*key, hash) {
                continue;
            }
            let rows: Vec<u32> = segment.find(*key, value)?.into_iter().filter(|p| (lo..hi).contains(p)).collect();
            if !rows.is_empty() {
                plan.push(Stretch::Rows(segment.clone(), rows));
            }
            continue;
        }
        if b.time_min.is_some() || b.time_max.is_some() {
            for r in segment.positions_maybe_in_time(b.time_min.as_deref(), b.time_max.as_deref()) {
                let r = r.start.max(lo)..r.end.min(hi);
                if !r.is_empty() {
                    plan.push(Stretch::Range(segment.clone(), r));
                }
            }
            continue;
        }
        plan.push(Stretch::Range(segment.clone(), lo..hi));
    }
    Ok(plan)
}
