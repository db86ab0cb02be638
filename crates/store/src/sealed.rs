//! Sealed history: the open segment files, shared by every connection, and the virtual table
//! `sealed_events` that shows their rows to SQL with the columns of `events_hot`.
//!
//! **Invariants:**
//! - The set only grows at its end (a segment's first seq is after every earlier segment's last)
//!   and only shrinks at its start (retention): a seq names at most one sealed row.
//! - What a statement reads is bounded by the `since` and `upto` it is given, which the `events`
//!   view reads from the `segments` table in the statement's own snapshot. A reader whose
//!   snapshot predates a seal therefore reads the rows from `events_hot`, not a second time from
//!   the new segment.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{CStr, c_int};
use std::ops::Range;
use std::sync::{Arc, RwLock};

use rusqlite::Connection;
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConfig, VTabConnection, VTabCursor, sqlite3_vtab, sqlite3_vtab_cursor,
};

use crate::segment::{Key, SealedRow, Segment};

/// The segments of the sealed history, oldest first.
#[derive(Default)]
pub(crate) struct SegmentSet {
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
}

impl SegmentSet {
    /// The segments as they are now; later changes do not affect the returned list.
    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments.read().expect("segment set").clone()
    }

    /// Adds a segment after the last one.
    pub(crate) fn push(&self, segment: Arc<Segment>) {
        let mut guard = self.segments.write().expect("segment set");
        let mut next = guard.as_ref().clone();
        next.push(segment);
        *guard = Arc::new(next);
    }
}

/// The sealed event with this identity in `segments`, if any: its seq. Only segments whose event
/// times span `time` are asked (a redelivery carries its event's own time), and of those only the
/// ones whose in-memory filter may hold the id are read.
pub(crate) fn find_identity(segments: &[Arc<Segment>], event_id: &str, source: &str, time: &str) -> Result<Option<i64>, crate::StoreError> {
    for segment in segments.iter().rev() {
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

/// The virtual table's name, as SQL names it.
pub(crate) const MODULE_NAME: &CStr = c"sealed_events";

/// Registers `sealed_events` on a connection, over `set`.
pub(crate) fn register(conn: &Connection, set: Arc<SegmentSet>) -> rusqlite::Result<()> {
    const MODULE: Module<SealedTab> = Module::eponymous_only_module();
    conn.create_module(MODULE_NAME, &MODULE, Some(set))
}

// The columns: those of `events_hot`, in its order, then the two bounds.
const SEQ: c_int = 0;
const EVENT_ID: c_int = 1;
const CORRELATION_ID: c_int = 4;
const CAUSATION_ID: c_int = 5;
const SUBJECT: c_int = 6;
const TIME: c_int = 7;
const SINCE: c_int = 17;
const UPTO: c_int = 18;

const SCHEMA: &CStr = c"CREATE TABLE x(seq INTEGER, event_id TEXT, source TEXT, event_type TEXT, correlation_id TEXT, causation_id TEXT,
    subject TEXT, time TEXT, topic TEXT, journey TEXT, journey_key TEXT, received_at TEXT, redeliveries INTEGER, envelope TEXT,
    partition INTEGER, \"offset\" INTEGER, message_time TEXT, since HIDDEN, upto HIDDEN)";

#[repr(C)]
struct SealedTab {
    /// SQLite's part; must come first.
    base: sqlite3_vtab,
    set: Arc<SegmentSet>,
}

/// What one argument handed to `filter` means; the plan's `idx_str` lists them in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    Since,
    Upto,
    Key(Key),
    SeqEq,
    SeqMin { inclusive: bool },
    SeqMax { inclusive: bool },
    TimeMin,
    TimeMax,
}

impl Arg {
    fn code(self) -> &'static str {
        match self {
            Arg::Since => "since",
            Arg::Upto => "upto",
            Arg::Key(Key::EventId) => "event_id",
            Arg::Key(Key::CorrelationId) => "correlation_id",
            Arg::Key(Key::CausationId) => "causation_id",
            Arg::Key(Key::Subject) => "subject",
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
        Some(match code {
            "since" => Arg::Since,
            "upto" => Arg::Upto,
            "event_id" => Arg::Key(Key::EventId),
            "correlation_id" => Arg::Key(Key::CorrelationId),
            "causation_id" => Arg::Key(Key::CausationId),
            "subject" => Arg::Key(Key::Subject),
            "seq=" => Arg::SeqEq,
            "seq>=" => Arg::SeqMin { inclusive: true },
            "seq>" => Arg::SeqMin { inclusive: false },
            "seq<=" => Arg::SeqMax { inclusive: true },
            "seq<" => Arg::SeqMax { inclusive: false },
            "time>=" => Arg::TimeMin,
            "time<=" => Arg::TimeMax,
            _ => return None,
        })
    }
}

unsafe impl<'vtab> VTab<'vtab> for SealedTab {
    type Aux = Arc<SegmentSet>;
    type Cursor = SealedCursor;

    fn connect(
        db: &mut VTabConnection,
        aux: Option<&Arc<SegmentSet>>,
        _module: &[u8],
        _database: &[u8],
        _table: &[u8],
        _args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, SealedTab)> {
        db.config(VTabConfig::Innocuous)?;
        let set = aux.cloned().unwrap_or_default();
        Ok((Cow::Borrowed(SCHEMA), SealedTab { base: sqlite3_vtab::default(), set }))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        use IndexConstraintOp::*;
        // (argument, constraint index, omit): the key lookup with the best priority wins, every
        // bound on seq and time narrows whatever is read.
        let mut args: Vec<(Arg, usize, bool)> = Vec::new();
        let mut key: Option<(Key, usize)> = None;
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
            let op = c.operator();
            match (c.column(), op) {
                (SINCE, SQLITE_INDEX_CONSTRAINT_EQ) => args.push((Arg::Since, i, true)),
                (UPTO, SQLITE_INDEX_CONSTRAINT_EQ) => args.push((Arg::Upto, i, true)),
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
                (SEQ, SQLITE_INDEX_CONSTRAINT_EQ) => args.push((Arg::SeqEq, i, false)),
                (SEQ, SQLITE_INDEX_CONSTRAINT_GT) => args.push((Arg::SeqMin { inclusive: false }, i, false)),
                (SEQ, SQLITE_INDEX_CONSTRAINT_GE) => args.push((Arg::SeqMin { inclusive: true }, i, false)),
                (SEQ, SQLITE_INDEX_CONSTRAINT_LT) => args.push((Arg::SeqMax { inclusive: false }, i, false)),
                (SEQ, SQLITE_INDEX_CONSTRAINT_LE) => args.push((Arg::SeqMax { inclusive: true }, i, false)),
                (TIME, SQLITE_INDEX_CONSTRAINT_GT | SQLITE_INDEX_CONSTRAINT_GE) => args.push((Arg::TimeMin, i, false)),
                (TIME, SQLITE_INDEX_CONSTRAINT_LT | SQLITE_INDEX_CONSTRAINT_LE) => args.push((Arg::TimeMax, i, false)),
                (TIME, SQLITE_INDEX_CONSTRAINT_EQ) => {
                    args.push((Arg::TimeMin, i, false));
                    args.push((Arg::TimeMax, i, false));
                }
                _ => {}
            }
        }
        if let Some((k, i)) = key {
            args.push((Arg::Key(k), i, false));
        }
        // A constraint used twice (time = x) gets one argument slot.
        let mut codes = Vec::new();
        let mut slot_of: Vec<(usize, c_int)> = Vec::new();
        for (arg, i, omit) in &args {
            let slot = match slot_of.iter().find(|(c, _)| c == i) {
                Some((_, s)) => *s,
                None => {
                    let s = slot_of.len() as c_int + 1;
                    slot_of.push((*i, s));
                    let mut usage = info.constraint_usage(*i);
                    usage.set_argv_index(s);
                    usage.set_omit(*omit);
                    s
                }
            };
            codes.push(format!("{}@{slot}", arg.code()));
        }
        let has = |f: &dyn Fn(&Arg) -> bool| args.iter().any(|(a, _, _)| f(a));
        let (cost, rows) = if key.is_some() || has(&|a| *a == Arg::SeqEq) {
            (10.0, 10)
        } else if has(&|a| matches!(a, Arg::SeqMin { .. })) && has(&|a| matches!(a, Arg::SeqMax { .. })) {
            (1_000.0, 1_000)
        } else if has(&|a| matches!(a, Arg::SeqMin { .. } | Arg::SeqMax { .. } | Arg::TimeMin | Arg::TimeMax)) {
            (1_000_000.0, 1_000_000)
        } else {
            (10_000_000.0, 10_000_000)
        };
        // Rows come in seq order whatever the plan.
        let ordered = {
            let mut order_bys = info.order_bys();
            matches!((order_bys.next(), order_bys.next()), (Some(o), None) if o.column() == SEQ && !o.is_order_by_desc())
        };
        info.set_order_by_consumed(ordered);
        info.set_estimated_cost(cost);
        info.set_estimated_rows(rows);
        info.set_idx_str(&codes.join(","));
        Ok(true)
    }

    fn open(&'vtab mut self) -> rusqlite::Result<SealedCursor> {
        Ok(SealedCursor {
            base: sqlite3_vtab_cursor::default(),
            set: self.set.clone(),
            plan: Vec::new(),
            at: 0,
            row: RefCell::new(None),
            bounds: (0, 0),
        })
    }
}

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

    fn get(&self, i: usize) -> (&Segment, u32) {
        match self {
            Stretch::Range(s, r) => (s, r.start + i as u32),
            Stretch::Rows(s, v) => (s, v[i]),
        }
    }
}

#[repr(C)]
struct SealedCursor {
    /// SQLite's part; must come first.
    base: sqlite3_vtab_cursor,
    set: Arc<SegmentSet>,
    /// What is left to read; `at` indexes into the first stretch.
    plan: Vec<Stretch>,
    at: usize,
    /// The current row, decoded when a column is first asked for.
    row: RefCell<Option<SealedRow>>,
    /// The `since` and `upto` given, answered as the hidden columns.
    bounds: (i64, i64),
}

impl SealedCursor {
    fn skip_empty(&mut self) {
        while self.plan.first().is_some_and(|s| self.at >= s.len()) {
            self.plan.remove(0);
            self.at = 0;
        }
    }

    /// The current row's seq: scans that need nothing else (counts, joins on seq) never
    /// decompress a block.
    fn seq(&self) -> rusqlite::Result<i64> {
        if let Some(row) = self.row.borrow().as_ref() {
            return Ok(row.seq);
        }
        let stretch = self.plan.first().ok_or_else(|| module_error("no current row"))?;
        let (segment, pos) = stretch.get(self.at);
        segment.seq_at(pos).map_err(|e| module_error(&e.to_string()))
    }

    fn current(&self) -> rusqlite::Result<std::cell::Ref<'_, SealedRow>> {
        if self.row.borrow().is_none() {
            let stretch = self.plan.first().ok_or_else(|| module_error("no current row"))?;
            let (segment, pos) = stretch.get(self.at);
            *self.row.borrow_mut() = Some(segment.row(pos).map_err(|e| module_error(&e.to_string()))?);
        }
        Ok(std::cell::Ref::map(self.row.borrow(), |r| r.as_ref().expect("decoded")))
    }
}

fn module_error(message: &str) -> rusqlite::Error {
    rusqlite::Error::ModuleError(format!("sealed_events: {message}"))
}

/// The bounds a plan's arguments set.
#[derive(Default)]
struct Bounds {
    since: Option<i64>,
    upto: Option<i64>,
    seq_min: Option<i64>,
    seq_max: Option<i64>,
    time_min: Option<String>,
    time_max: Option<String>,
    key: Option<(Key, Option<String>)>,
}

unsafe impl VTabCursor for SealedCursor {
    fn filter(&mut self, _idx_num: c_int, idx_str: Option<&str>, args: &Filters<'_>) -> rusqlite::Result<()> {
        let mut b = Bounds::default();
        for code in idx_str.unwrap_or("").split(',').filter(|c| !c.is_empty()) {
            let (name, slot) = code.rsplit_once('@').ok_or_else(|| module_error("bad plan"))?;
            let arg = Arg::parse(name).ok_or_else(|| module_error("bad plan"))?;
            let i: usize = slot.parse::<usize>().map_err(|_| module_error("bad plan"))? - 1;
            let int = |b: &mut Option<i64>, pick: fn(i64, i64) -> i64, v: Option<i64>| {
                if let Some(v) = v {
                    *b = Some(b.map_or(v, |old| pick(old, v)));
                }
            };
            let as_int = || -> rusqlite::Result<Option<i64>> {
                Ok(match args.get::<rusqlite::types::Value>(i)? {
                    rusqlite::types::Value::Integer(v) => Some(v),
                    rusqlite::types::Value::Real(f) => Some(f as i64),
                    rusqlite::types::Value::Null => None,
                    // A text or blob seq bound never matches an integer seq: read nothing.
                    _ => Some(i64::MIN),
                })
            };
            match arg {
                Arg::Since => b.since = as_int()?,
                Arg::Upto => b.upto = as_int()?,
                Arg::SeqEq => {
                    let v = as_int()?;
                    int(&mut b.seq_min, i64::max, v);
                    int(&mut b.seq_max, i64::min, v);
                }
                Arg::SeqMin { inclusive } => int(&mut b.seq_min, i64::max, as_int()?.map(|v| if inclusive { v } else { v.saturating_add(1) })),
                Arg::SeqMax { inclusive } => int(&mut b.seq_max, i64::min, as_int()?.map(|v| if inclusive { v } else { v.saturating_sub(1) })),
                Arg::TimeMin => b.time_min = args.get::<Option<String>>(i).ok().flatten(),
                Arg::TimeMax => b.time_max = args.get::<Option<String>>(i).ok().flatten(),
                Arg::Key(k) => b.key = Some((k, args.get::<Option<String>>(i).ok().flatten())),
            }
        }
        self.bounds = (b.since.unwrap_or(0), b.upto.unwrap_or(0));
        self.plan = plan(&self.set.snapshot(), &b).map_err(|e| module_error(&e.to_string()))?;
        self.at = 0;
        *self.row.get_mut() = None;
        self.skip_empty();
        Ok(())
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.at += 1;
        *self.row.get_mut() = None;
        self.skip_empty();
        Ok(())
    }

    fn eof(&self) -> bool {
        self.plan.is_empty()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        match i {
            SINCE => return ctx.set_result(self.bounds.0),
            UPTO => return ctx.set_result(self.bounds.1),
            _ => {}
        }
        if i == SEQ {
            return ctx.set_result(self.seq()?);
        }
        let r = self.current()?;
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
            12 => ctx.set_result(r.redeliveries),
            13 => ctx.set_result(&r.envelope),
            14 => ctx.set_result(r.partition),
            15 => ctx.set_result(r.offset),
            16 => ctx.set_result(&r.message_time),
            _ => Err(module_error("no such column")),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        self.seq()
    }
}

/// What a statement reads: for each segment within `since..=upto` and the seq bounds, the
/// positions the key lookup found, or the positions the seq and time bounds leave.
fn plan(segments: &[Arc<Segment>], b: &Bounds) -> Result<Vec<Stretch>, crate::StoreError> {
    let mut plan = Vec::new();
    if let Some((_, None)) = b.key {
        return Ok(plan); // `= NULL` matches nothing
    }
    for segment in segments {
        let info = segment.info();
        if b.since.is_some_and(|s| info.first_seq < s) || b.upto.is_some_and(|u| info.last_seq > u) {
            continue;
        }
        if b.seq_min.is_some_and(|m| info.last_seq < m) || b.seq_max.is_some_and(|m| info.first_seq > m) {
            continue;
        }
        if b.time_min.as_deref().is_some_and(|t| info.max_time.as_str() < t) || b.time_max.as_deref().is_some_and(|t| info.min_time.as_str() > t) {
            continue;
        }
        let lo = b.seq_min.map_or(0, |m| segment.lower_bound_seq(m));
        let hi = b.seq_max.map_or(segment.len() as u32, |m| if m == i64::MAX { segment.len() as u32 } else { segment.lower_bound_seq(m + 1) });
        if lo >= hi {
            continue;
        }
        if let Some((key, Some(value))) = &b.key {
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
