//! The evaluator: membership, per-instance state, timers and findings.

use std::borrow::Cow;
use std::collections::VecDeque;

use causeway_envelope::Event;
use causeway_model::{Model, format_duration as duration};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::compact::{Chunked, CompactStr, Probe, U64Map, U64Set, hash_raw, hash_str, mix};
use crate::compiled::{Compiled, JourneyDef, KeyDef, NONE, Rule};
use crate::flat::{FingerIndex, FlatMap};
use crate::render::{list, or_list};
use crate::timers::Timers;
use crate::{Change, Config, Finding, FindingId, FindingKind, InstanceId, JourneyState, JourneyView, Memory, MilestoneView, Stats};

const IN_FLIGHT: u8 = 0;
const STALLED: u8 = 1;
/// States from here on are outcomes: `OUTCOME + outcome index`.
const OUTCOME: u8 = 2;

/// Instance flags.
const DEADLINE_FIRED: u8 = 1;

/// "No timer scheduled".
const NEVER: i64 = i64::MAX;

const MASK56: u64 = (1 << 56) - 1;

/// One event of a journey type, as an instance remembers it (40 bytes). Its causation id is not
/// kept: when its cause is already recorded the link is checked on arrival, and otherwise the
/// instance notes it in `Extra::awaiting` until the cause arrives.
struct Rec {
    id: CompactStr,
    /// Local type index in the top byte; 56 bits of the hash of the event id below. Causes are
    /// matched by these hashes.
    packed: u64,
    time: i64,
}

impl Rec {
    fn ty(&self) -> u8 {
        (self.packed >> 56) as u8
    }
    fn id_hash(&self) -> u64 {
        self.packed & MASK56
    }
}

/// A reaction a policy expects (16 bytes).
struct Obligation {
    due: i64,
    /// The open `missing_reaction`, 0 while none was raised.
    finding: u32,
    /// Index into `Compiled::journeys[j].policies`.
    policy: u8,
    /// The record of the `when` event.
    when: u8,
}

/// What few instances need: kept out of line so the common instance stays small.
#[derive(Default)]
struct Extra {
    correlations: Vec<CompactStr>,
    findings: Vec<u32>,
    /// `requires` violations that a late-arriving earlier event can still clear.
    requires_open: Vec<RequiresOpen>,
    /// (invariant, record) pairs already reported by `forbidden_after`.
    forbidden_seen: Vec<(u8, u8)>,
    /// Records whose cause has not arrived yet, with the hash of its id (at most
    /// [`MAX_AWAITING`]).
    awaiting: Vec<(u8, u64)>,
}

/// Records per instance that wait for their cause; later ones are not linked to it.
const MAX_AWAITING: usize = 16;

struct RequiresOpen {
    finding: u32,
    invariant: u8,
    time: i64,
    missing: u64,
}

struct Instance {
    journey: u16,
    state: u8,
    flags: u8,
    timer_gen: u32,
    events: u32,
    stall_finding: u32,
    deadline_finding: u32,
    key: CompactStr,
    correlation: Option<CompactStr>,
    /// Hash of `correlation` (as the correlation index computes it), to recognise it cheaply.
    corr_hash: u64,
    started: i64,
    updated: i64,
    /// Event time of the latest milestone reached (the start until one is).
    progress: i64,
    /// Due time of the live deadline-queue entry, or [`NEVER`].
    timer_at: i64,
    reached: u64,
    records: Vec<Rec>,
    obligations: Vec<Obligation>,
    extra: Option<Box<Extra>>,
}

impl Instance {
    fn terminal(&self) -> bool {
        self.state >= OUTCOME
    }

    /// Whether the instance has correlation id `c` (whose correlation hash is `h`). The primary
    /// one is recognised by its hash, further ones by comparison.
    fn has_correlation(&self, c: &str, h: u64) -> bool {
        (self.correlation.is_some() && self.corr_hash == h)
            || self.extra.as_ref().is_some_and(|x| {
                let p = Probe::new(c);
                x.correlations.iter().any(|x| x.eq_probe(&p))
            })
    }

    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    fn id_of(&self, r: u8) -> String {
        self.records[r as usize].id.to_string()
    }
}

/// The fields of an event the engine reads, with its ids prepared once for comparisons.
struct Ev<'a> {
    id: &'a str,
    id_c: CompactStr,
    /// [`id_hash`] of the id and of the causation id (0: none).
    id_hash: u64,
    cause_hash: u64,
    /// The correlation index's hash of the correlation id.
    corr_hash: u64,
    source: &'a str,
    type_name: &'a str,
    ty: Option<u16>,
    time: i64,
    correlation: Option<&'a str>,
    causation: Option<&'a str>,
    idem: Option<&'a str>,
}

/// An event held until the event carrying its journey's key arrives.
struct Parked {
    id: String,
    source: String,
    type_name: String,
    ty: Option<u16>,
    time: i64,
    correlation: String,
    causation: Option<String>,
    idem: Option<String>,
    key: Option<String>,
}

impl Parked {
    fn ev(&self) -> Ev<'_> {
        Ev {
            id: &self.id,
            id_c: CompactStr::new(&self.id),
            id_hash: id_hash(&self.id),
            cause_hash: self.causation.as_deref().map_or(0, id_hash),
            corr_hash: hash_raw(2, &self.correlation),
            source: &self.source,
            type_name: &self.type_name,
            ty: self.ty,
            time: self.time,
            correlation: Some(&self.correlation),
            causation: self.causation.as_deref(),
            idem: self.idem.as_deref(),
        }
    }
}

struct ParkedList {
    generation: u64,
    journey: u16,
    correlation: String,
    events: Vec<Parked>,
}

/// A sequence gap on one aggregate, cleared when its missing sequences arrive.
struct Gap {
    finding: u32,
    first: i64,
    /// Bit `k` set: sequence `first + k` still missing (gaps of at most 64).
    missing: u64,
}

/// A finding about to be raised.
struct New {
    kind: FindingKind,
    instance: Option<u32>,
    correlation: Option<String>,
    event_id: Option<String>,
    expected: Vec<String>,
    rule: Option<String>,
    at: i64,
    detail: String,
    owner: Option<String>,
}

/// The journey engine. See the crate documentation and README.md.
pub struct Evaluator {
    c: Compiled,
    s: Core,
}

/// Everything that changes; split from the compiled model so both can be borrowed at once.
struct Core {
    config: Config,
    inst: Chunked<Instance>,
    by_key: FingerIndex,
    /// Recently looked-up keys: (upper hash bits, instance), direct-mapped.
    recent: Vec<(u32, u32)>,
    by_corr: FingerIndex,
    /// (due, instance, generation): one live entry per instance, stale ones skipped.
    timers: Timers,
    findings: Vec<Finding>,
    /// (instance, type, idempotency key) → record index.
    idem: FlatMap<u8>,
    /// (context or source, subject) → last sequence, bounded (see `rotate_sequences`).
    seqs: FlatMap<i64>,
    /// The previous generation of `seqs`.
    seqs_old: FlatMap<i64>,
    gaps: U64Map<Vec<Gap>>,
    parked: U64Map<ParkedList>,
    parked_order: VecDeque<(u64, u64)>,
    parked_generation: u64,
    /// Redeliveries already reported, by (source, id).
    redelivered: U64Set,
    now: i64,
    changes: Vec<Change>,
    stats: Stats,
}

impl Evaluator {
    pub fn new(model: &Model) -> Evaluator {
        Evaluator::with_config(model, Config::default())
    }

    pub fn with_config(model: &Model, mut config: Config) -> Evaluator {
        config.max_records = config.max_records.clamp(1, 190);
        config.max_correlations = config.max_correlations.max(1);
        config.max_aggregates = config.max_aggregates.max(2);
        Evaluator {
            c: Compiled::new(model),
            s: Core {
                config,
                inst: Chunked::default(),
                by_key: FingerIndex::default(),
                recent: vec![(0, u32::MAX); RECENT],
                by_corr: FingerIndex::default(),
                timers: Timers::default(),
                findings: Vec::new(),
                idem: FlatMap::default(),
                seqs: FlatMap::default(),
                seqs_old: FlatMap::default(),
                gaps: U64Map::default(),
                parked: U64Map::default(),
                parked_order: VecDeque::new(),
                parked_generation: 0,
                redelivered: U64Set::default(),
                now: i64::MIN,
                changes: Vec::new(),
                stats: Stats::default(),
            },
        }
    }

    /// Processes one stored, accepted event, in store order. `redelivery` is the store's verdict
    /// that this (source, id) was already stored: the event is then only reported (`duplicate`),
    /// never counted again. Call [`Evaluator::advance`] with the clock before each call, so that
    /// deadlines that passed before the event are judged first.
    pub fn ingest(&mut self, event: &Event, redelivery: bool) -> Vec<Change> {
        let mut out = Vec::new();
        self.ingest_into(event, redelivery, &mut out);
        out
    }

    /// [`Evaluator::ingest`], appending to a buffer the caller reuses.
    pub fn ingest_into(&mut self, event: &Event, redelivery: bool, out: &mut Vec<Change>) {
        // Changes go straight into the caller's buffer.
        std::mem::swap(&mut self.s.changes, out);
        let c = &self.c;
        let ty = c.type_id(&event.event_type);
        // The index slots this event will read are requested first, so that their cache misses
        // overlap the work below instead of stalling it.
        let aggregate = aggregate_hash(c, ty, event);
        if let Some((h, _, _)) = aggregate {
            self.s.seqs.prefetch(h);
            self.s.seqs_old.prefetch(h);
        }
        let mut first_key = c.journeys.first().and_then(|d| key_of(c, d, ty, event)).map(|k| {
            let h = key_hash(0, &k);
            self.s.by_key.prefetch(h);
            (k, h)
        });
        let correlation = event.correlation_id.as_deref().filter(|s| !s.is_empty());
        let causation = event.causation_id.as_deref().filter(|s| !s.is_empty());
        let ev = Ev {
            id: &event.id,
            id_c: CompactStr::new(&event.id),
            id_hash: id_hash(&event.id),
            cause_hash: causation.map_or(0, id_hash),
            corr_hash: correlation.map_or(0, |c| hash_raw(2, c)),
            source: &event.source,
            type_name: &event.event_type,
            ty,
            time: event.time.timestamp_micros(),
            correlation,
            causation,
            idem: event.idempotency_key.as_deref().filter(|s| !s.is_empty()),
        };
        if redelivery {
            self.s.stats.redeliveries += 1;
            self.s.redelivery(c, &ev, event);
        } else {
            self.s.stats.events += 1;
            let mut first = None;
            for j in 0..c.journeys.len() {
                let key = if j == 0 {
                    first_key.take()
                } else {
                    key_of(c, &c.journeys[j], ev.ty, event).map(|k| {
                        let h = key_hash(j, &k);
                        (k, h)
                    })
                };
                if let Some(i) = self.s.place(c, j, &ev, key.as_ref().map(|(k, h)| (k.as_ref(), *h))) {
                    first.get_or_insert(i);
                }
            }
            if let (Some(aggregate), Some(seq)) = (aggregate, event.sequence) {
                self.s.sequence(c, &ev, aggregate, seq, first);
            }
        }
        std::mem::swap(&mut self.s.changes, out);
    }

    /// Moves the clock to `now` and fires every deadline that passed: those strictly before `now`
    /// (a `within` window includes its last instant). `serve` passes wall-clock time, `analyze`
    /// the latest event time seen (PRODUCT §4). The clock never goes back.
    pub fn advance(&mut self, now: DateTime<Utc>) -> Vec<Change> {
        let mut out = Vec::new();
        self.advance_into(now, &mut out);
        out
    }

    /// [`Evaluator::advance`], appending to a buffer the caller reuses.
    pub fn advance_into(&mut self, now: DateTime<Utc>, out: &mut Vec<Change>) {
        let now = now.timestamp_micros();
        self.s.now = self.s.now.max(now);
        if self.s.timers.peek_cached().is_none_or(|next| next >= self.s.now) {
            return;
        }
        std::mem::swap(&mut self.s.changes, out);
        while let Some((due, i, generation)) = self.s.timers.pop_before(self.s.now) {
            let inst = &mut self.s.inst[i as usize];
            if inst.timer_gen != generation {
                continue;
            }
            inst.timer_at = NEVER;
            self.s.fire(&self.c, i, due);
            self.s.schedule(&self.c, i);
        }
        std::mem::swap(&mut self.s.changes, out);
    }

    /// The clock: the latest time passed to [`Evaluator::advance`].
    pub fn now(&self) -> Option<DateTime<Utc>> {
        (self.s.now != i64::MIN).then(|| time(self.s.now))
    }

    /// The earliest pending deadline (possibly one already cancelled): when `serve` should tick.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.s.timers.peek().map(time)
    }

    /// The limits this evaluator runs with.
    pub fn config(&self) -> &Config {
        &self.s.config
    }

    /// One journey instance by journey name and key.
    pub fn journey(&self, journey: &str, key: &str) -> Option<JourneyView> {
        let j = self.c.journeys.iter().position(|d| d.name == journey)?;
        let i = self.s.lookup_key(j, key)?;
        Some(self.view(InstanceId(i)))
    }

    /// A snapshot of an instance.
    ///
    /// # Panics
    /// If `id` was not handed out by this evaluator.
    pub fn view(&self, id: InstanceId) -> JourneyView {
        self.s.view(&self.c, id.0)
    }

    /// How many instances are in each state (`in_flight`, `stalled`, an outcome name), sorted by
    /// state. A pass over the instances without building views.
    pub fn count_by_state(&self) -> Vec<(String, u64)> {
        let mut counts: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for inst in self.s.inst.iter() {
            *counts.entry(state_name(&self.c.journeys[inst.journey as usize], inst.state)).or_default() += 1;
        }
        counts.into_iter().map(|(s, n)| (s.to_string(), n)).collect()
    }

    /// How many findings of each kind are open and resolved, sorted by kind.
    pub fn count_findings_by_kind(&self) -> Vec<(&'static str, u64, u64)> {
        let mut counts: std::collections::BTreeMap<&'static str, (u64, u64)> = std::collections::BTreeMap::new();
        for f in &self.s.findings {
            let slot = counts.entry(f.kind.as_str()).or_default();
            if f.is_open() { slot.0 += 1 } else { slot.1 += 1 }
        }
        counts.into_iter().map(|(k, (open, resolved))| (k, open, resolved)).collect()
    }

    /// The journey name and key of an instance: what [`Evaluator::view`] tells of it, without
    /// building the rest (for recording membership per event).
    ///
    /// # Panics
    /// If `id` was not handed out by this evaluator.
    pub fn instance_key(&self, id: InstanceId) -> (&str, String) {
        let inst = &self.s.inst[id.0 as usize];
        (&self.c.journeys[inst.journey as usize].name, inst.key.to_string())
    }

    /// Instances of `journey` (all journeys when `None`) in `state` (`in_flight`, `stalled`, an
    /// outcome name, or `None` for all), in creation order. A linear scan: for listings.
    pub fn instances<'a>(&'a self, journey: Option<&'a str>, state: Option<&'a str>) -> impl Iterator<Item = InstanceId> + 'a {
        self.s.inst.iter().enumerate().filter_map(move |(i, inst)| {
            let def = &self.c.journeys[inst.journey as usize];
            if journey.is_some_and(|j| j != def.name) {
                return None;
            }
            if let Some(s) = state
                && state_name(def, inst.state) != s
            {
                return None;
            }
            Some(InstanceId(i as u32))
        })
    }

    pub fn finding(&self, id: FindingId) -> Option<&Finding> {
        let i = usize::try_from(id.0).ok()?.checked_sub(1)?;
        self.s.findings.get(i)
    }

    /// Every finding, open or resolved, in the order raised (`findings()[k].id == k + 1`).
    pub fn findings(&self) -> &[Finding] {
        &self.s.findings
    }

    /// Heap bytes held, by structure (computed by a pass over the instances: for reports, not
    /// for every request).
    pub fn memory(&self) -> Memory {
        let s = &self.s;
        let mut m = Memory { instances: s.inst.heap_bytes(), ..Memory::default() };
        for inst in s.inst.iter() {
            m.records += inst.records.capacity() * std::mem::size_of::<Rec>() + inst.records.iter().map(|r| r.id.heap_bytes()).sum::<usize>();
            m.obligations += inst.obligations.capacity() * std::mem::size_of::<Obligation>();
            m.instances += inst.key.heap_bytes() + inst.correlation.as_ref().map_or(0, CompactStr::heap_bytes);
            if let Some(x) = &inst.extra {
                m.instances += std::mem::size_of::<Extra>()
                    + x.correlations.capacity() * std::mem::size_of::<CompactStr>()
                    + x.findings.capacity() * 4
                    + x.requires_open.capacity() * std::mem::size_of::<RequiresOpen>()
                    + x.forbidden_seen.capacity() * 2
                    + x.awaiting.capacity() * 16;
            }
        }
        m.indexes = s.by_key.heap_bytes() + s.by_corr.heap_bytes() + s.idem.heap_bytes();
        m.sequences = s.seqs.heap_bytes() + s.seqs_old.heap_bytes() + s.gaps.capacity() * 40;
        m.timers = s.timers.heap_bytes();
        m.findings = s.findings.capacity() * std::mem::size_of::<Finding>()
            + s.findings
                .iter()
                .map(|f| {
                    let o = |x: &Option<String>| x.as_ref().map_or(0, String::capacity);
                    f.detail.capacity()
                        + o(&f.journey)
                        + o(&f.key)
                        + o(&f.correlation_id)
                        + o(&f.event_id)
                        + o(&f.rule)
                        + o(&f.owner)
                        + f.expected.iter().map(|e| e.capacity() + 24).sum::<usize>()
                })
                .sum::<usize>();
        m.pending = s.parked.values().map(|p| p.events.capacity() * std::mem::size_of::<Parked>() + 64).sum();
        m
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.s.stats.clone();
        s.instances = self.s.inst.len() as u64;
        s.findings = self.s.findings.len() as u64;
        s.pending = self.s.parked.values().map(|p| p.events.len() as u64).sum();
        s.timers = self.s.timers.len() as u64;
        s
    }

    /// Every journey instance and finding as sorted canonical lines (ids left out, so that the
    /// text depends on what was found, not on numbering). For comparing two runs line by line.
    pub fn canonical_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = (0..self.s.inst.len() as u32)
            .map(|i| crate::render::canonical_journey(&self.s.view(&self.c, i)))
            .chain(self.s.findings.iter().map(crate::render::canonical_finding))
            .collect();
        lines.sort_unstable();
        lines
    }

    /// A digest of every journey instance and finding: FNV-1a 64 over the sorted FNV-1a 64 hashes
    /// of their canonical lines. Independent of the order things were found in and of hash-map
    /// iteration, stable across versions and platforms; memory is 8 bytes per line.
    pub fn digest(&self) -> u64 {
        let mut hashes: Vec<u64> = (0..self.s.inst.len() as u32)
            .map(|i| crate::compact::Fnv64::hash(crate::render::canonical_journey(&self.s.view(&self.c, i)).as_bytes()))
            .chain(self.s.findings.iter().map(|f| crate::compact::Fnv64::hash(crate::render::canonical_finding(f).as_bytes())))
            .collect();
        hashes.sort_unstable();
        let mut h = crate::compact::Fnv64::default();
        for x in hashes {
            h.write(&x.to_le_bytes());
        }
        h.finish()
    }
}

fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn state_name(def: &JourneyDef, state: u8) -> &str {
    match state {
        IN_FLIGHT => "in_flight",
        STALLED => "stalled",
        o => &def.outcomes[(o - OUTCOME) as usize],
    }
}

/// The journey keys an event carries, read as the evaluator reads them but without one: for input
/// that never reaches it, such as an event refused at ingest, whose journey instance is still
/// worth knowing.
pub struct JourneyKeys {
    c: Compiled,
}

impl JourneyKeys {
    pub fn new(model: &Model) -> JourneyKeys {
        JourneyKeys { c: Compiled::new(model) }
    }

    /// `(journey, key)` for each journey, in model order, to which the event's type is relevant
    /// and whose key the event carries (README, Membership: 1).
    pub fn of(&self, event: &Event) -> Vec<(&str, String)> {
        let Some(ty) = self.c.type_id(&event.event_type) else { return Vec::new() };
        self.c
            .journeys
            .iter()
            .filter(|def| def.local_of[ty as usize] != NONE)
            .filter_map(|def| Some((def.name.as_str(), key_of(&self.c, def, Some(ty), event)?.into_owned())))
            .collect()
    }
}

/// The journey key of an event: the pointer's value in the payload (a string, or a number's
/// text), or the subject.
fn key_of<'e>(c: &Compiled, def: &JourneyDef, ty: Option<u16>, event: &'e Event) -> Option<Cow<'e, str>> {
    match &def.key {
        KeyDef::Subject { aggregate } => {
            if let (Some(journey_aggregate), Some(Some(own))) = (aggregate, ty.map(|t| &c.type_aggregate[t as usize]))
                && own != journey_aggregate
            {
                return None;
            }
            event.subject.as_deref().filter(|s| !s.is_empty()).map(Cow::Borrowed)
        }
        KeyDef::Pointer(tokens) => match crate::compiled::resolve(event.data.as_ref()?, tokens)? {
            Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s.as_str())),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        },
    }
}

/// Slots of the recent-keys cache in front of the key index.
const RECENT: usize = 4096;

fn recent_slot(h: u64) -> usize {
    (h as usize) & (RECENT - 1)
}

/// The key index's hash of journey `j`'s key `key`.
fn key_hash(j: usize, key: &str) -> u64 {
    mix(j as u64, hash_raw(1, key))
}

/// The sequence table's hash of the event's aggregate — (owning context of its type, else its
/// source; subject) — with the scope's name and the subject, when it has a subject and a sequence.
fn aggregate_hash<'e>(c: &'e Compiled, ty: Option<u16>, event: &'e Event) -> Option<(u64, &'e str, &'e str)> {
    let subject = event.subject.as_deref()?;
    event.sequence?;
    let (scope, scope_hash) = match ty.and_then(|t| c.type_context[t as usize].as_deref()) {
        Some(context) => (context, c.type_scope[ty.expect("known type") as usize]),
        None => (event.source.as_str(), hash_str(7, &event.source)),
    };
    Some((mix(scope_hash, hash_raw(8, subject)), scope, subject))
}

fn bit(l: u8) -> u64 {
    1u64 << l
}

/// 56 bits of an event id's hash, never 0: event ids and causation ids are matched by these
/// (within one instance, where a collision has odds of about 2^-44 even at 64 records).
fn id_hash(s: &str) -> u64 {
    (hash_str(0xC0, s) & MASK56).max(1)
}

impl Core {
    // ---- indexes -------------------------------------------------------------------------

    fn lookup_key(&self, j: usize, key: &str) -> Option<u32> {
        let inst = &self.inst;
        self.by_key.get(key_hash(j, key), |i| {
            let x = &inst[i as usize];
            x.journey as usize == j && x.key.eq_str(key)
        })
    }

    /// [`Core::lookup_key`] with the key's hash already computed. Journeys in flight are found
    /// in a small direct-mapped cache of recent lookups first (32 KiB, so it stays in cache): the
    /// big index, whose slots are a cache miss each once it holds millions of journeys, is read
    /// only for a journey not seen lately.
    fn lookup_key_hashed(&mut self, j: usize, key: &str, h: u64) -> Option<u32> {
        let inst = &self.inst;
        let verify = |i: u32| {
            let x = &inst[i as usize];
            x.journey as usize == j && x.key.eq_str(key)
        };
        let slot = recent_slot(h);
        let (f, i) = self.recent[slot];
        if f == (h >> 32) as u32 && i != u32::MAX && verify(i) {
            return Some(i);
        }
        let found = self.by_key.get(h, verify)?;
        self.recent[slot] = ((h >> 32) as u32, found);
        Some(found)
    }

    /// The instance of journey `j` that correlation id `c` (correlation hash `ch`) leads to.
    fn lookup_corr(&self, j: usize, c: &str, ch: u64) -> Option<u32> {
        let inst = &self.inst;
        self.by_corr.get(mix(j as u64, ch), |i| {
            let x = &inst[i as usize];
            x.journey as usize == j && x.has_correlation(c, ch)
        })
    }

    /// Adds `c` to the instance; true when `c` now leads to it (the first instance to claim a
    /// correlation id keeps it).
    fn add_correlation(&mut self, j: usize, i: u32, c: &str, ch: u64) -> bool {
        let max = self.config.max_correlations;
        let inst = &mut self.inst[i as usize];
        if inst.has_correlation(c, ch) {
            return false;
        }
        if inst.correlation.is_none() {
            inst.correlation = Some(CompactStr::new(c));
            inst.corr_hash = ch;
        } else {
            let extra = inst.extra();
            if extra.correlations.len() + 1 >= max {
                return false;
            }
            extra.correlations.push(CompactStr::new(c));
        }
        if self.lookup_corr(j, c, ch).is_some() {
            return false;
        }
        self.by_corr.insert(mix(j as u64, ch), i);
        true
    }

    // ---- membership ----------------------------------------------------------------------

    /// Finds or creates the instance of journey `j` that the event belongs to and applies the
    /// event to it; or parks the event until its key is known.
    fn place(&mut self, c: &Compiled, j: usize, ev: &Ev, key: Option<(&str, u64)>) -> Option<u32> {
        let def = &c.journeys[j];
        let local = ev.ty.map(|t| def.local_of[t as usize]).filter(|l| *l != NONE);
        let found = match key {
            Some((k, h)) => match self.lookup_key_hashed(j, k, h) {
                Some(i) => Some(i),
                None if local.is_some_and(|l| def.create_mask & bit(l) != 0) => Some(self.create(c, j, k, h, ev.time)),
                // A subject names an aggregate; a journey spans several, so fall back to correlation.
                None if matches!(def.key, KeyDef::Subject { .. }) => ev.correlation.and_then(|cid| self.lookup_corr(j, cid, ev.corr_hash)),
                None => None,
            },
            None => ev.correlation.and_then(|cid| self.lookup_corr(j, cid, ev.corr_hash)),
        };
        match found {
            Some(i) => {
                self.changes.push(Change::Joined(InstanceId(i)));
                self.join(c, i, ev, local);
                Some(i)
            }
            None => {
                if local.is_some()
                    && let Some(cid) = ev.correlation
                {
                    self.park(j, cid, ev, key.map(|(k, _)| k));
                }
                None
            }
        }
    }

    fn create(&mut self, c: &Compiled, j: usize, key: &str, key_hash: u64, t: i64) -> u32 {
        let def = &c.journeys[j];
        let i = u32::try_from(self.inst.len()).expect("fewer than 2^32 journey instances");
        self.inst.push(Instance {
            journey: j as u16,
            state: IN_FLIGHT,
            flags: 0,
            timer_gen: 0,
            events: 0,
            stall_finding: 0,
            deadline_finding: 0,
            key: CompactStr::new(key),
            correlation: None,
            corr_hash: 0,
            started: t,
            updated: t,
            progress: t,
            timer_at: NEVER,
            reached: 0,
            records: Vec::with_capacity((def.milestones as usize + 1).clamp(2, 16)),
            obligations: Vec::new(),
            extra: None,
        });
        self.stats.in_flight += 1;
        self.by_key.insert(key_hash, i);
        self.recent[recent_slot(key_hash)] = ((key_hash >> 32) as u32, i);
        i
    }

    /// The event joins instance `i`: counted, its correlation id recorded, and applied when it is
    /// of a journey type; then events waiting on a newly known correlation id are attached.
    fn join(&mut self, c: &Compiled, i: u32, ev: &Ev, local: Option<u8>) {
        let j = self.inst[i as usize].journey as usize;
        self.inst[i as usize].events += 1;
        let new_corr = match ev.correlation {
            Some(cid) => self.add_correlation(j, i, cid, ev.corr_hash),
            None => false,
        };
        if let Some(l) = local {
            self.apply(c, i, ev, l);
        }
        if new_corr {
            self.attach(c, j, i, ev.correlation.expect("new correlation"));
        }
    }

    fn park(&mut self, j: usize, cid: &str, ev: &Ev, key: Option<&str>) {
        let h = mix(j as u64, hash_str(3, cid));
        let per = self.config.pending_per_correlation;
        let parked = Parked {
            id: ev.id.to_string(),
            source: ev.source.to_string(),
            type_name: ev.type_name.to_string(),
            ty: ev.ty,
            time: ev.time,
            correlation: cid.to_string(),
            causation: ev.causation.map(str::to_owned),
            idem: ev.idem.map(str::to_owned),
            key: key.map(str::to_owned),
        };
        match self.parked.get_mut(&h) {
            Some(list) => {
                if list.journey as usize != j || list.correlation != cid || list.events.len() >= per {
                    self.stats.pending_dropped += 1;
                    return;
                }
                list.events.push(parked);
            }
            None => {
                self.parked_generation += 1;
                let generation = self.parked_generation;
                self.parked.insert(h, ParkedList { generation, journey: j as u16, correlation: cid.to_string(), events: vec![parked] });
                self.parked_order.push_back((h, generation));
            }
        }
        self.stats.pending += 1;
        while self.stats.pending > self.config.pending_total as u64 {
            let Some((h, generation)) = self.parked_order.pop_front() else { break };
            if self.parked.get(&h).is_some_and(|l| l.generation == generation) {
                let list = self.parked.remove(&h).expect("present");
                self.stats.pending -= list.events.len() as u64;
                self.stats.pending_dropped += list.events.len() as u64;
            }
        }
    }

    fn attach(&mut self, c: &Compiled, j: usize, i: u32, cid: &str) {
        let h = mix(j as u64, hash_str(3, cid));
        let Some(list) = self.parked.get(&h) else { return };
        if list.journey as usize != j || list.correlation != cid {
            return;
        }
        let list = self.parked.remove(&h).expect("present");
        self.stats.pending -= list.events.len() as u64;
        let def = &c.journeys[j];
        for p in &list.events {
            if p.key.as_deref().is_some_and(|k| !self.inst[i as usize].key.eq_str(k)) {
                self.stats.pending_dropped += 1;
                continue;
            }
            let local = p.ty.map(|t| def.local_of[t as usize]).filter(|l| *l != NONE);
            self.changes.push(Change::Attached { instance: InstanceId(i), event_id: p.id.clone() });
            self.join(c, i, &p.ev(), local);
        }
    }

    // ---- one event in one instance -------------------------------------------------------

    fn apply(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8) {
        let j = self.inst[i as usize].journey as usize;
        let def = &c.journeys[j];
        let t = ev.time;
        let max_records = self.config.max_records;

        // Deadlines this event proves were missed although no tick noticed it in time: reported as
        // of their deadline (before the event changes anything), and resolved by the event below.
        let mut late: Vec<u32> = Vec::new();
        let inst = &mut self.inst[i as usize];
        let first_milestone = def.is_milestone(l) && inst.reached & bit(l) == 0;
        if first_milestone
            && inst.state == IN_FLIGHT
            && let Some(stall) = def.stall_after_us
        {
            let due = inst.progress.saturating_add(stall);
            if t > due {
                late.push(self.raise_stalled(c, i, due));
            }
        }
        let inst = &mut self.inst[i as usize];
        if def.outcome_of[l as usize] != NONE
            && !inst.terminal()
            && inst.flags & DEADLINE_FIRED == 0
            && let Some(within) = def.complete_within_us
        {
            let due = inst.started.saturating_add(within);
            if t > due {
                inst.flags |= DEADLINE_FIRED;
                late.push(self.raise_deadline(c, i, due));
            }
        }

        let inst = &mut self.inst[i as usize];
        let first_of_kind = (def.is_milestone(l) && inst.reached & bit(l) == 0) || (def.outcome_of[l as usize] != NONE && !inst.terminal());
        let rec = if inst.records.len() < max_records || first_of_kind {
            if inst.records.len() == inst.records.capacity() {
                inst.records.reserve_exact(4);
            }
            inst.records.push(Rec { id: ev.id_c.clone(), packed: (u64::from(l) << 56) | ev.id_hash, time: t });
            Some((inst.records.len() - 1) as u8)
        } else {
            None
        };
        if t < inst.started {
            inst.started = t;
        }
        if t > inst.updated {
            inst.updated = t;
        }
        let mut moved = false;

        // Records that were waiting for this event as their cause.
        let mut effects: Vec<u8> = Vec::new();
        if let Some(extra) = self.inst[i as usize].extra.as_mut() {
            extra.awaiting.retain(|&(r, cause)| {
                let mine = cause == ev.id_hash;
                if mine {
                    effects.push(r);
                }
                !mine
            });
        }
        if let Some(r) = rec {
            self.causation(c, i, ev, r, &effects);
            if let Some(k) = ev.idem {
                self.idempotency(c, i, ev, l, r, k);
            }
        }

        // Milestones.
        let inst = &mut self.inst[i as usize];
        if def.is_milestone(l) && inst.reached & bit(l) == 0 {
            inst.reached |= bit(l);
            inst.progress = inst.progress.max(t);
            moved = true;
            if inst.state == STALLED {
                let f = std::mem::take(&mut inst.stall_finding);
                self.set_state(i, IN_FLIGHT);
                self.resolve(f, t);
            }
        }

        // Outcomes.
        let outcome = def.outcome_of[l as usize];
        if outcome != NONE && !self.inst[i as usize].terminal() {
            moved = true;
            let inst = &mut self.inst[i as usize];
            let stall = std::mem::take(&mut inst.stall_finding);
            let deadline = std::mem::take(&mut inst.deadline_finding);
            self.set_state(i, OUTCOME + outcome);
            self.resolve(stall, t);
            self.resolve(deadline, t);
        }

        for f in late {
            self.resolve(f, t);
        }
        if def.invariant_mask & bit(l) != 0 {
            self.invariants(c, i, ev, l, rec);
        }
        if def.then_mask & bit(l) != 0 {
            self.reactions(c, i, ev, l);
        }
        if def.when_mask & bit(l) != 0
            && let Some(r) = rec
        {
            self.expect_reactions(c, i, ev, l, r, &effects);
        }
        self.schedule(c, i);
        if moved {
            self.changes.push(Change::Updated(InstanceId(i)));
        }
    }

    /// `out_of_order` between an event and its cause, both in the instance: an effect stamped
    /// before its cause, or (with `delivery_order`) delivered before it.
    fn causation(&mut self, c: &Compiled, i: u32, ev: &Ev, r: u8, effects: &[u8]) {
        let inst = &self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let mut found: Vec<(u8, u8, bool)> = Vec::new(); // (effect, cause, times inverted)
        if ev.cause_hash != 0 {
            match inst.records[..r as usize].iter().position(|x| x.id_hash() == ev.cause_hash) {
                Some(k) => {
                    if inst.records[k].time > ev.time {
                        found.push((r, k as u8, true));
                    }
                }
                None => {
                    let inst = &mut self.inst[i as usize];
                    let extra = inst.extra();
                    if extra.awaiting.len() < MAX_AWAITING {
                        extra.awaiting.push((r, ev.cause_hash));
                    }
                }
            }
        }
        let inst = &self.inst[i as usize];
        for &k in effects {
            let x = &inst.records[k as usize];
            if x.time < ev.time {
                found.push((k, r, true));
            } else if self.config.delivery_order {
                found.push((k, r, false));
            }
        }
        for (effect, cause, inverted) in found {
            let inst = &self.inst[i as usize];
            let (e, x) = (&inst.records[effect as usize], &inst.records[cause as usize]);
            let (ename, xname) = (def.local_name(c, e.ty()), def.local_name(c, x.ty()));
            let detail = if inverted {
                format!(
                    "{ename} {} is stamped {} before its cause {xname} {}: the producers' clocks disagree or the chain is wrong",
                    e.id,
                    duration_us(x.time - e.time),
                    x.id
                )
            } else {
                format!("{ename} {} was delivered before its cause {xname} {}", e.id, x.id)
            };
            let event_id = inst.id_of(effect);
            let owner = owner(c, Some(def), Some(def.local[e.ty() as usize]), None);
            self.raise(
                c,
                New {
                    kind: FindingKind::OutOfOrder,
                    instance: Some(i),
                    correlation: ev.correlation.map(str::to_owned),
                    event_id: Some(event_id),
                    expected: Vec::new(),
                    rule: None,
                    at: ev.time,
                    detail,
                    owner,
                },
            );
        }
    }

    /// `duplicate_effect`: the same idempotency key on two events of one type in one instance.
    fn idempotency(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8, r: u8, key: &str) {
        let h = mix(mix(u64::from(i), u64::from(l)), hash_raw(4, key));
        match self.idem.get(h) {
            None => {
                self.idem.insert(h, r);
            }
            Some(first) => {
                let inst = &self.inst[i as usize];
                if inst.records[first as usize].id == ev.id_c {
                    return;
                }
                let def = &c.journeys[inst.journey as usize];
                let name = def.local_name(c, l);
                let detail = format!(
                    "{name} {} repeats idempotency key '{key}' of {name} {}: the effect happened twice",
                    ev.id, inst.records[first as usize].id
                );
                let owner = owner(c, Some(def), ev.ty, Some(ev.source));
                self.raise(
                    c,
                    New {
                        kind: FindingKind::DuplicateEffect,
                        instance: Some(i),
                        correlation: ev.correlation.map(str::to_owned),
                        event_id: Some(ev.id.to_string()),
                        expected: Vec::new(),
                        rule: None,
                        at: ev.time,
                        detail,
                        owner,
                    },
                );
            }
        }
    }

    fn invariants(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8, rec: Option<u8>) {
        let j = self.inst[i as usize].journey as usize;
        let def = &c.journeys[j];
        let t = ev.time;
        for (k, inv) in def.invariants.iter().enumerate() {
            let k = k as u8;
            let records = &self.inst[i as usize].records;
            let others = records.iter().enumerate().filter(|(x, _)| Some(*x as u8) != rec).map(|(_, x)| x);
            match inv.rule {
                Rule::Requires(mask) if inv.event == l => {
                    let before = others.filter(|x| x.time <= t).fold(0u64, |m, x| m | bit(x.ty()));
                    let missing = mask & !before;
                    if missing != 0 {
                        let detail = format!(
                            "{} {} happened without {} before it (invariant '{}')",
                            def.local_name(c, l),
                            ev.id,
                            list(&def.names(c, missing)),
                            inv.name
                        );
                        let f = self.raise_invariant(c, i, ev, ev.id.to_string(), t, &inv.name, detail);
                        self.inst[i as usize].extra().requires_open.push(RequiresOpen { finding: f, invariant: k, time: t, missing });
                    }
                }
                Rule::Requires(mask) if mask & bit(l) != 0 => {
                    // A required event delivered late can clear a violation it predates.
                    let Some(extra) = self.inst[i as usize].extra.as_mut() else { continue };
                    let mut cleared = Vec::new();
                    extra.requires_open.retain_mut(|o| {
                        if o.invariant == k && t <= o.time {
                            o.missing &= !bit(l);
                            if o.missing == 0 {
                                cleared.push(o.finding);
                                return false;
                            }
                        }
                        true
                    });
                    for f in cleared {
                        self.resolve(f, t);
                    }
                }
                Rule::AtMost(n) if inv.event == l => {
                    let count = records.iter().filter(|x| x.ty() == l).count() + usize::from(rec.is_none());
                    if count > n as usize {
                        let name = def.local_name(c, l);
                        let detail = format!(
                            "{name} {} is {name} number {count} in {} {}; invariant '{}' allows at most {n}",
                            ev.id, def.name, self.inst[i as usize].key, inv.name
                        );
                        self.raise_invariant(c, i, ev, ev.id.to_string(), t, &inv.name, detail);
                    }
                }
                Rule::ForbiddenAfter(mask) => {
                    // Judged by event time, whichever of the two arrives first.
                    let mut pairs: Vec<(u8, u8)> = Vec::new(); // (the event, the one it came after)
                    if inv.event == l
                        && let Some(x) = records
                            .iter()
                            .enumerate()
                            .filter(|(x, r)| Some(*x as u8) != rec && mask & bit(r.ty()) != 0 && r.time <= t)
                            .min_by_key(|(_, r)| r.time)
                        && let Some(me) = rec
                    {
                        pairs.push((me, x.0 as u8));
                    }
                    if mask & bit(l) != 0
                        && let Some(me) = rec
                    {
                        for (x, r) in records.iter().enumerate() {
                            if x as u8 != me && r.ty() == inv.event && r.time >= t {
                                pairs.push((x as u8, me));
                            }
                        }
                    }
                    for (late, early) in pairs {
                        let inst = &mut self.inst[i as usize];
                        if inst.extra.as_ref().is_some_and(|e| e.forbidden_seen.contains(&(k, late))) {
                            continue;
                        }
                        inst.extra().forbidden_seen.push((k, late));
                        let (a, b) = (&inst.records[late as usize], &inst.records[early as usize]);
                        let detail = format!(
                            "{} {} happened after {} {} (invariant '{}')",
                            def.local_name(c, a.ty()),
                            a.id,
                            def.local_name(c, b.ty()),
                            b.id,
                            inv.name
                        );
                        let late_id = inst.id_of(late);
                        let at = a.time.max(b.time).max(t);
                        self.raise_invariant(c, i, ev, late_id, at, &inv.name, detail);
                    }
                }
                _ => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn raise_invariant(&mut self, c: &Compiled, i: u32, ev: &Ev, event_id: String, at: i64, rule: &str, detail: String) -> u32 {
        let def = &c.journeys[self.inst[i as usize].journey as usize];
        self.raise(
            c,
            New {
                kind: FindingKind::InvariantViolation,
                instance: Some(i),
                correlation: ev.correlation.map(str::to_owned),
                event_id: Some(event_id),
                expected: Vec::new(),
                rule: Some(rule.to_string()),
                at,
                detail,
                owner: owner(c, Some(def), ev.ty, Some(ev.source)),
            },
        )
    }

    /// A reaction arrived: it satisfies every obligation it answers (any one of `then` will do),
    /// on time or late.
    fn reactions(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8) {
        let inst = &mut self.inst[i as usize];
        if inst.obligations.is_empty() {
            return;
        }
        let def = &c.journeys[inst.journey as usize];
        let t = ev.time;
        let mut k = 0;
        while k < self.inst[i as usize].obligations.len() {
            let inst = &mut self.inst[i as usize];
            let o = &inst.obligations[k];
            let when = &inst.records[o.when as usize];
            let answers = def.policies[o.policy as usize].then_mask & bit(l) != 0
                && (t >= when.time || (ev.cause_hash != 0 && when.id_hash() == ev.cause_hash));
            if !answers {
                k += 1;
                continue;
            }
            let o = inst.obligations.remove(k);
            if o.finding != 0 {
                self.resolve(o.finding, t);
            } else if t > o.due {
                let f = self.raise_missing(c, i, o.policy, o.when, o.due);
                self.resolve(f, t);
            }
        }
    }

    /// A policy's `when` arrived: expect one of its reactions, unless one already arrived (out of
    /// order) that answers it.
    fn expect_reactions(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8, r: u8, effects: &[u8]) {
        let inst = &mut self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        for (pi, p) in def.policies.iter().enumerate() {
            if p.when != l {
                continue;
            }
            let answered = inst
                .records
                .iter()
                .enumerate()
                .any(|(k, x)| k as u8 != r && p.then_mask & bit(x.ty()) != 0 && (x.time >= ev.time || effects.contains(&(k as u8))));
            if answered {
                continue;
            }
            if inst.obligations.len() == inst.obligations.capacity() {
                inst.obligations.reserve_exact((inst.obligations.len() / 2).max(1));
            }
            inst.obligations.push(Obligation { due: ev.time.saturating_add(p.within_us), finding: 0, policy: pi as u8, when: r });
        }
    }

    // ---- timers --------------------------------------------------------------------------

    /// The earliest deadline the instance still has, or [`NEVER`].
    fn earliest(&self, c: &Compiled, i: u32) -> (i64, usize) {
        let inst = &self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let mut due = (NEVER, 0);
        for o in &inst.obligations {
            if o.finding == 0 && o.due < due.0 {
                due = (o.due, def.policies[o.policy as usize].class);
            }
        }
        if !inst.terminal() {
            if inst.state == IN_FLIGHT
                && let Some(s) = def.stall_after_us
            {
                let d = inst.progress.saturating_add(s);
                if d < due.0 {
                    due = (d, def.stall_class);
                }
            }
            if inst.flags & DEADLINE_FIRED == 0
                && let Some(w) = def.complete_within_us
            {
                let d = inst.started.saturating_add(w);
                if d < due.0 {
                    due = (d, def.complete_class);
                }
            }
        }
        due
    }

    /// Makes sure the queue holds an entry no later than the instance's earliest deadline. A
    /// later deadline leaves the entry alone: it fires early, finds nothing due, and reschedules.
    fn schedule(&mut self, c: &Compiled, i: u32) {
        let (due, class) = self.earliest(c, i);
        let inst = &mut self.inst[i as usize];
        if due < inst.timer_at {
            inst.timer_gen = inst.timer_gen.wrapping_add(1);
            inst.timer_at = due;
            self.timers.push((due, i, inst.timer_gen), class);
        }
    }

    /// Everything of instance `i` due at or before `at`.
    fn fire(&mut self, c: &Compiled, i: u32, at: i64) {
        let inst = &self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let due: Vec<(usize, i64, u8, u8)> =
            inst.obligations.iter().enumerate().filter(|(_, o)| o.finding == 0 && o.due <= at).map(|(k, o)| (k, o.due, o.policy, o.when)).collect();
        for (k, d, policy, when) in due {
            let f = self.raise_missing(c, i, policy, when, d);
            self.inst[i as usize].obligations[k].finding = f;
        }
        let inst = &self.inst[i as usize];
        if inst.terminal() {
            return;
        }
        if inst.state == IN_FLIGHT
            && let Some(s) = def.stall_after_us
        {
            let d = inst.progress.saturating_add(s);
            if d <= at {
                let f = self.raise_stalled(c, i, d);
                self.inst[i as usize].stall_finding = f;
                self.set_state(i, STALLED);
                self.changes.push(Change::Updated(InstanceId(i)));
            }
        }
        let inst = &mut self.inst[i as usize];
        if inst.flags & DEADLINE_FIRED == 0
            && let Some(w) = def.complete_within_us
        {
            let d = inst.started.saturating_add(w);
            if d <= at {
                inst.flags |= DEADLINE_FIRED;
                let f = self.raise_deadline(c, i, d);
                self.inst[i as usize].deadline_finding = f;
            }
        }
    }

    // ---- findings ------------------------------------------------------------------------

    fn raise_missing(&mut self, c: &Compiled, i: u32, policy: u8, when: u8, due: i64) -> u32 {
        let inst = &self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let p = &def.policies[policy as usize];
        let pdef = &c.policies[p.policy as usize];
        let w = &inst.records[when as usize];
        let expected: Vec<String> = pdef.then.iter().map(|t| c.type_name(*t).to_string()).collect();
        let detail = format!(
            "{} {} should have been followed by {} within {} (policy '{}'), but it was not",
            def.local_name(c, w.ty()),
            w.id,
            or_list(&expected),
            duration(pdef.within_ms),
            pdef.name
        );
        let owner = owner(c, Some(def), pdef.then.first().copied(), None);
        let event_id = inst.id_of(when);
        let correlation = inst.correlation.as_ref().map(ToString::to_string);
        self.raise(
            c,
            New {
                kind: FindingKind::MissingReaction,
                instance: Some(i),
                correlation,
                event_id: Some(event_id),
                expected,
                rule: Some(pdef.name.clone()),
                at: due,
                detail,
                owner,
            },
        )
    }

    fn raise_stalled(&mut self, c: &Compiled, i: u32, due: i64) -> u32 {
        let inst = &self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let last = (0..def.milestones)
            .rev()
            .filter(|m| inst.reached & bit(*m) != 0)
            .filter_map(|m| inst.records.iter().find(|r| r.ty() == m))
            .max_by_key(|r| r.time);
        let since = match last {
            Some(r) => format!("{} {}", def.local_name(c, r.ty()), r.id),
            None => "it started".to_string(),
        };
        let next = self.next_expected(c, i);
        let detail = format!(
            "{} {} has reached no new milestone for {} since {since}; next expected: {}",
            def.name,
            inst.key,
            duration(def.stall_after_ms.unwrap_or(0)),
            if next.is_empty() { "nothing".to_string() } else { list(&next) }
        );
        let next_type = next.first().and_then(|n| c.type_id(n)).or(def.local.first().copied());
        let event_id = last.map(|r| r.id.to_string());
        let correlation = inst.correlation.as_ref().map(ToString::to_string);
        let owner = owner(c, Some(def), next_type, None);
        self.raise(
            c,
            New { kind: FindingKind::Stalled, instance: Some(i), correlation, event_id, expected: Vec::new(), rule: None, at: due, detail, owner },
        )
    }

    fn raise_deadline(&mut self, c: &Compiled, i: u32, due: i64) -> u32 {
        let inst = &self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let next = self.next_expected(c, i);
        let reached = def.names(c, inst.reached);
        let detail = format!(
            "{} {} did not reach an outcome ({}) within {} of its start; reached: {}",
            def.name,
            inst.key,
            or_list(&def.outcomes),
            duration(def.complete_within_ms.unwrap_or(0)),
            if reached.is_empty() { "nothing".to_string() } else { list(&reached) }
        );
        let next_type = next.first().and_then(|n| c.type_id(n)).or(def.local.first().copied());
        let correlation = inst.correlation.as_ref().map(ToString::to_string);
        let owner = owner(c, Some(def), next_type, None);
        self.raise(
            c,
            New {
                kind: FindingKind::DeadlineMissed,
                instance: Some(i),
                correlation,
                event_id: None,
                expected: Vec::new(),
                rule: None,
                at: due,
                detail,
                owner,
            },
        )
    }

    fn raise(&mut self, c: &Compiled, n: New) -> u32 {
        let id = self.findings.len() as u64 + 1;
        let (journey, key) = match n.instance {
            Some(i) => {
                let inst = &mut self.inst[i as usize];
                inst.extra().findings.push(id as u32);
                (Some(c.journeys[inst.journey as usize].name.clone()), Some(inst.key.to_string()))
            }
            None => (None, None),
        };
        self.findings.push(Finding {
            id: FindingId(id),
            kind: n.kind,
            journey,
            key,
            instance: n.instance.map(InstanceId),
            correlation_id: n.correlation,
            event_id: n.event_id,
            expected: n.expected,
            rule: n.rule,
            detected_at: time(n.at),
            resolved_at: None,
            detail: n.detail,
            owner: n.owner,
        });
        self.stats.open_findings += 1;
        self.stats.open_by_kind[n.kind.index()] += 1;
        self.changes.push(Change::Raised(FindingId(id)));
        id as u32
    }

    fn resolve(&mut self, f: u32, at: i64) {
        if f == 0 {
            return;
        }
        let finding = &mut self.findings[f as usize - 1];
        if finding.resolved_at.is_some() {
            return;
        }
        finding.resolved_at = Some(time(at).max(finding.detected_at));
        self.stats.open_findings -= 1;
        self.stats.open_by_kind[finding.kind.index()] -= 1;
        self.changes.push(Change::Resolved(FindingId(u64::from(f))));
    }

    fn set_state(&mut self, i: u32, state: u8) {
        let inst = &mut self.inst[i as usize];
        let old = std::mem::replace(&mut inst.state, state);
        for (s, delta) in [(old, -1i64), (state, 1)] {
            let counter = match s {
                IN_FLIGHT => &mut self.stats.in_flight,
                STALLED => &mut self.stats.stalled,
                _ => &mut self.stats.completed,
            };
            *counter = counter.wrapping_add_signed(delta);
        }
    }

    // ---- event-level checks --------------------------------------------------------------

    /// A redelivery: reported once per (source, id), against the instance the event belongs to.
    fn redelivery(&mut self, c: &Compiled, ev: &Ev, event: &Event) {
        if !self.redelivered.insert(mix(hash_str(5, ev.source), hash_str(6, ev.id))) {
            return;
        }
        let mut instance = None;
        for (j, def) in c.journeys.iter().enumerate() {
            let found = match key_of(c, def, ev.ty, event) {
                Some(k) => self.lookup_key(j, &k),
                None => None,
            }
            .or_else(|| ev.correlation.and_then(|cid| self.lookup_corr(j, cid, ev.corr_hash)));
            if found.is_some() {
                instance = found;
                break;
            }
        }
        let def = instance.map(|i| &c.journeys[self.inst[i as usize].journey as usize]);
        let detail = format!("{} {} from {} was delivered again; it is stored and counted once", ev.type_name, ev.id, ev.source);
        self.raise(
            c,
            New {
                kind: FindingKind::Duplicate,
                instance,
                correlation: ev.correlation.map(str::to_owned),
                event_id: Some(ev.id.to_string()),
                expected: Vec::new(),
                rule: None,
                at: ev.time,
                detail,
                owner: owner(c, def, ev.ty, Some(ev.source)),
            },
        );
    }

    /// `out_of_order` by per-aggregate `sequence`: a gap (cleared when the missing sequences
    /// arrive) or a regression. The aggregate is (owning context of the type, else source; subject).
    fn sequence(&mut self, c: &Compiled, ev: &Ev, aggregate: (u64, &str, &str), seq: i64, first: Option<u32>) {
        let (h, scope, subject) = aggregate;
        // Values are `sequence << 1 | touched`: the touched bit is what the sweep keeps.
        let known = self.seqs.get(h).or_else(|| self.seqs_old.get(h));
        self.seqs.insert(h, known.map_or(seq, |last| last.max(seq)));
        if self.seqs.len() >= (self.config.max_aggregates / 2).max(1) {
            self.rotate_sequences();
        }
        let Some(last) = known else { return };
        if seq == last.saturating_add(1) {
            return;
        }
        let def = first.map(|i| &c.journeys[self.inst[i as usize].journey as usize]);
        let owner = owner(c, def, ev.ty, Some(ev.source));
        if seq > last {
            let missing = seq - last - 1;
            let which =
                if missing == 1 { format!("sequence {} is missing", last + 1) } else { format!("sequences {}–{} are missing", last + 1, seq - 1) };
            let detail =
                format!("{} {} has sequence {seq} on {scope} aggregate {subject}, but the last one seen was {last}: {which}", ev.type_name, ev.id);
            let f = self.raise(
                c,
                New {
                    kind: FindingKind::OutOfOrder,
                    instance: first,
                    correlation: ev.correlation.map(str::to_owned),
                    event_id: Some(ev.id.to_string()),
                    expected: Vec::new(),
                    rule: None,
                    at: ev.time,
                    detail,
                    owner,
                },
            );
            if missing <= 64 {
                let mask = if missing == 64 { u64::MAX } else { (1u64 << missing) - 1 };
                self.gaps.entry(h).or_default().push(Gap { finding: f, first: last + 1, missing: mask });
            }
            return;
        }
        // Behind the last one: either a late arrival filling a gap, or a regression.
        if let Some(gaps) = self.gaps.get_mut(&h)
            && let Some(g) = gaps.iter_mut().find(|g| seq >= g.first && seq - g.first < 64 && g.missing & (1 << (seq - g.first)) != 0)
        {
            g.missing &= !(1 << (seq - g.first));
            if g.missing == 0 {
                let f = g.finding;
                gaps.retain(|g| g.missing != 0);
                if gaps.is_empty() {
                    self.gaps.remove(&h);
                }
                self.resolve(f, ev.time);
            }
            return;
        }
        let detail = if seq == last {
            format!("{} {} repeats sequence {seq} on {scope} aggregate {subject}", ev.type_name, ev.id)
        } else {
            format!(
                "{} {} has sequence {seq} on {scope} aggregate {subject}, after {last} was already seen: the sequence went back",
                ev.type_name, ev.id
            )
        };
        self.raise(
            c,
            New {
                kind: FindingKind::OutOfOrder,
                instance: first,
                correlation: ev.correlation.map(str::to_owned),
                event_id: Some(ev.id.to_string()),
                expected: Vec::new(),
                rule: None,
                at: ev.time,
                detail,
                owner,
            },
        );
    }

    /// Keeps the sequence tables bounded: when the current generation holds half the bound it
    /// becomes the previous one, and the one before is dropped with its open gaps. An aggregate
    /// is remembered while it is seen at least once a generation; a forgotten one starts afresh
    /// (its next sequence is not judged).
    fn rotate_sequences(&mut self) {
        // The generation before last is dropped, and its table becomes the new current one.
        std::mem::swap(&mut self.seqs, &mut self.seqs_old);
        let slots = self.seqs_old.slot_count();
        self.seqs.clear_to(slots);
        let old = &self.seqs_old;
        self.gaps.retain(|h, _| old.contains(*h));
    }

    // ---- views ---------------------------------------------------------------------------

    /// Reactions still expected, then the milestones after the furthest one reached.
    fn next_expected<'c>(&self, c: &'c Compiled, i: u32) -> Vec<&'c str> {
        let inst = &self.inst[i as usize];
        if inst.terminal() {
            return Vec::new();
        }
        let def = &c.journeys[inst.journey as usize];
        let mut out: Vec<&str> = Vec::new();
        for o in &inst.obligations {
            for t in &c.policies[def.policies[o.policy as usize].policy as usize].then {
                let name = c.type_name(*t);
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        let furthest = (0..def.milestones).rev().find(|m| inst.reached & bit(*m) != 0).map_or(0, |m| m + 1);
        for m in furthest..def.milestones {
            let name = def.local_name(c, m);
            if inst.reached & bit(m) == 0 && !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    fn view(&self, c: &Compiled, i: u32) -> JourneyView {
        let inst = &self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let milestones = (0..def.milestones)
            .filter(|m| inst.reached & bit(*m) != 0)
            .filter_map(|m| {
                let r = inst.records.iter().find(|r| r.ty() == m)?;
                Some(MilestoneView { event: def.local_name(c, m).to_string(), reached_at: time(r.time), event_id: r.id.to_string() })
            })
            .collect();
        let state = match inst.state {
            IN_FLIGHT => JourneyState::InFlight,
            STALLED => JourneyState::Stalled,
            o => JourneyState::Outcome(def.outcomes[(o - OUTCOME) as usize].clone()),
        };
        let mut correlation_ids: Vec<String> = inst.correlation.iter().map(ToString::to_string).collect();
        let mut findings = Vec::new();
        if let Some(extra) = &inst.extra {
            correlation_ids.extend(extra.correlations.iter().map(ToString::to_string));
            findings = extra.findings.iter().map(|f| self.findings[*f as usize - 1].clone()).collect();
        }
        JourneyView {
            id: InstanceId(i),
            journey: def.name.clone(),
            key: inst.key.to_string(),
            state,
            milestones,
            next_expected: self.next_expected(c, i).into_iter().map(str::to_owned).collect(),
            findings,
            correlation_ids,
            started_at: time(inst.started),
            updated_at: time(inst.updated),
            events: inst.events,
        }
    }
}

/// The journey's reconciliation owner, else the owner of the type's context, else of the
/// producing service's context.
fn owner(c: &Compiled, def: Option<&JourneyDef>, ty: Option<u16>, source: Option<&str>) -> Option<String> {
    if let Some(o) = def.and_then(|d| d.reconciliation_owner.as_ref()) {
        return Some(o.clone());
    }
    if let Some(o) = ty.and_then(|t| c.type_owner[t as usize].as_ref()) {
        return Some(o.clone());
    }
    source.and_then(|s| c.service_owner.get(s)).cloned()
}

fn duration_us(us: i64) -> String {
    if us % 1000 == 0 { duration((us / 1000).unsigned_abs()) } else { format!("{}µs", us) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids that differ in any one character (the last one included: raw hashes carry it only in
    /// their top bits, which a 56-bit id hash would drop unmixed) have different id hashes.
    #[test]
    fn id_hashes_tell_ids_apart() {
        let base = "6f1c2a4e-9b3d-4c8e-a1f2-3d4e5f6a7b8c-and-some-more-text-here";
        let mut seen = std::collections::HashSet::new();
        for n in 1..base.len() {
            let s = &base[..n];
            assert!(seen.insert(id_hash(s)), "{s}");
            for i in 0..n {
                let mut t = s.as_bytes().to_vec();
                t[i] = if t[i] == b'0' { b'1' } else { b'0' };
                assert!(seen.insert(id_hash(std::str::from_utf8(&t).unwrap())), "{s} at {i}");
            }
        }
    }

    /// The sizes README.md states; memory per journey is built from them.
    #[test]
    fn layout() {
        assert_eq!(std::mem::size_of::<Rec>(), 40);
        assert_eq!(std::mem::size_of::<Obligation>(), 16);
        assert_eq!(std::mem::size_of::<Instance>(), 176);
    }
}
