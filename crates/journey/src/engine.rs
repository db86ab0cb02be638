//! The evaluator: [`Evaluator`], the public facade, and the state every part of it shares — the
//! instance layout ([`Instance`] and the [`Rec`]ords, [`Obligation`]s and [`Extra`] parts it
//! holds), an event prepared for comparisons ([`Ev`]), and [`Core`], everything that changes.
//!
//! The work on that state is split by concern, one `impl Core` block per child module:
//!
//! | module | owns |
//! |---|---|
//! | `membership` | which instance an event belongs to: key and correlation indexes, create, join, park and attach; [`JourneyKeys`] |
//! | `apply` | one event in one instance: deadlines it proves missed, records, times, milestones, outcome and state; the order of the checks |
//! | `causation` | `out_of_order` between an effect and its cause |
//! | `duplicates` | `duplicate` (redeliveries) and `duplicate_effect` (idempotency keys) |
//! | `sequence` | `out_of_order` by per-aggregate sequence, and its bounded tables |
//! | `invariants` | `invariant_violation`: `requires`, `at_most`, `forbidden_after` |
//! | `reactions` | policies: obligations, their answers, `missing_reaction` |
//! | `deadlines` | timers: the earliest deadline, scheduling, firing; `stalled`, `deadline_missed` |
//! | `findings` | raising and resolving findings; owners |
//! | `view` | journey views and `next_expected` |
//!
//! The types here keep their fields private: child modules see them anyway, and nothing outside
//! `engine` does. What a child module offers its siblings is `pub(super)`.
//!
//! **Invariant kept here:** changes are collected in `Core::changes`, which is swapped with the
//! caller's buffer for the duration of one `ingest_into` or `advance_into`, so every `Change` of
//! a call reaches its caller in the order it happened; `advance_into` fires due entries in
//! (due, instance, generation) order and reschedules each instance before taking the next.

mod apply;
mod causation;
mod deadlines;
mod duplicates;
mod findings;
mod invariants;
mod membership;
mod reactions;
mod sequence;
mod view;

use std::collections::VecDeque;

use causeway_envelope::Event;
use causeway_model::Model;
use chrono::{DateTime, Utc};

use crate::compact::{Chunked, CompactStr, Probe, U64Map, U64Set, hash_raw, hash_str};
use crate::compiled::{Compiled, JourneyDef};
use crate::flat::{FingerIndex, FlatMap};
use crate::timers::Timers;
use crate::{Change, Config, Finding, FindingId, InstanceId, JourneyView, Memory, Stats};
use invariants::RequiresOpen;
pub use membership::JourneyKeys;
use membership::{Parked, ParkedList, RECENT, key_hash, key_of};
use sequence::{Gap, aggregate_hash};

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

// The small accessors below are `#[inline]` because the child modules call them on every event
// and may be compiled in other codegen units than this one: it keeps them inlined there, as they
// were when the evaluator was one module.
impl Rec {
    #[inline]
    fn ty(&self) -> u8 {
        (self.packed >> 56) as u8
    }
    #[inline]
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
    /// `causation::MAX_AWAITING`).
    awaiting: Vec<(u8, u64)>,
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
    #[inline]
    fn terminal(&self) -> bool {
        self.state >= OUTCOME
    }

    /// Whether the instance has correlation id `c` (whose correlation hash is `h`). The primary
    /// one is recognised by its hash, further ones by comparison.
    #[inline]
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

/// The bit of local type `l` in a journey's type masks.
#[inline]
fn bit(l: u8) -> u64 {
    1u64 << l
}

/// 56 bits of an event id's hash, never 0: event ids and causation ids are matched by these
/// (within one instance, where a collision has odds of about 2^-44 even at 64 records).
fn id_hash(s: &str) -> u64 {
    (hash_str(0xC0, s) & MASK56).max(1)
}

/// An event time in microseconds as a timestamp (the latest one for a value out of range).
fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What [`Evaluator::instance_times`] tells of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceTimes<'a> {
    pub journey: &'a str,
    /// `in_flight`, `stalled` or the outcome's name.
    pub state: &'a str,
    pub terminal: bool,
    /// Event time of its first event.
    pub started_us: i64,
    /// Event time of its latest event.
    pub updated_us: i64,
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

    /// Sets the clock to `now`, back or forth, and fires every deadline that passed if it moved
    /// on. The watermark clock moves back when a source that is behind becomes active (PRODUCT
    /// §4): deadlines already judged stay judged, and later ones wait until the clock passes them
    /// again. `None`: no time yet — nothing is judged until a time is set.
    pub fn set_clock_into(&mut self, now: Option<DateTime<Utc>>, out: &mut Vec<Change>) {
        match now {
            Some(now) => {
                self.s.now = self.s.now.min(now.timestamp_micros());
                self.advance_into(now, out);
            }
            None => self.s.now = i64::MIN,
        }
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

    /// Instances per journey (in the model's order): in flight, stalled, and with an outcome. A
    /// pass over the instances.
    pub fn count_by_journey(&self) -> Vec<(&str, [u64; 3])> {
        let mut counts: Vec<(&str, [u64; 3])> = self.c.journeys.iter().map(|j| (j.name.as_str(), [0; 3])).collect();
        for inst in self.s.inst.iter() {
            let slot = match inst.state {
                IN_FLIGHT => 0,
                STALLED => 1,
                _ => 2,
            };
            counts[inst.journey as usize].1[slot] += 1;
        }
        counts
    }

    /// Every instance's journey, state and times (microseconds since the epoch), in creation
    /// order: a pass without building views, for charts over many instances.
    pub fn instance_times(&self) -> impl Iterator<Item = InstanceTimes<'_>> + '_ {
        self.s.inst.iter().map(|inst| self.times(inst))
    }

    fn times<'a>(&'a self, inst: &Instance) -> InstanceTimes<'a> {
        let def = &self.c.journeys[inst.journey as usize];
        InstanceTimes {
            journey: &def.name,
            state: state_name(def, inst.state),
            terminal: inst.terminal(),
            started_us: inst.started,
            updated_us: inst.updated,
        }
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

    /// The name of the model's policy with this index (as [`Change::Reacted`] gives it).
    ///
    /// # Panics
    /// If no policy has that index.
    pub fn policy_name(&self, policy: u16) -> &str {
        &self.c.policies[policy as usize].name
    }

    /// What [`Evaluator::instance_times`] tells of one instance.
    ///
    /// # Panics
    /// If `id` was not handed out by this evaluator.
    pub fn times_of(&self, id: InstanceId) -> InstanceTimes<'_> {
        self.times(&self.s.inst[id.0 as usize])
    }

    /// A journey's `complete_within`, in microseconds, if it has one.
    pub fn complete_within_us(&self, journey: &str) -> Option<i64> {
        self.c.journeys.iter().find(|j| j.name == journey).and_then(|j| j.complete_within_us)
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
        // Kept by park, attach and the pending bound; the scan checks it in debug builds only.
        debug_assert_eq!(s.pending, self.s.parked.values().map(|p| p.events.len() as u64).sum::<u64>());
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

fn state_name(def: &JourneyDef, state: u8) -> &str {
    match state {
        IN_FLIGHT => "in_flight",
        STALLED => "stalled",
        o => &def.outcomes[(o - OUTCOME) as usize],
    }
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
