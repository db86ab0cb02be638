//! Membership (README, "Membership"): which instance of each journey an event belongs to — by its
//! key, else by a correlation id that already leads to an instance — creating the instance when
//! the event may start it, or holding the event back until an instance gains its correlation id.
//! Also the key and correlation indexes and [`JourneyKeys`], the same key reading without an
//! evaluator.
//!
//! **Invariant:** the key index holds one instance per (journey, key), and a correlation id leads
//! to the first instance of the journey that claimed it; both indexes and the recent-keys cache
//! store hashes only, so every candidate they return is verified against the instance. Waiting
//! events are attached in arrival order, right after the event that gave the instance their
//! correlation id, and are bounded (`Config::pending_per_correlation`, `pending_total`).

use std::borrow::Cow;

use causeway_envelope::Event;
use causeway_model::Model;
use serde_json::Value;

use super::{Core, Ev, IN_FLIGHT, Instance, NEVER, bit, id_hash};
use crate::compact::{CompactStr, hash_raw, hash_str, mix};
use crate::compiled::{Compiled, JourneyDef, KeyDef, NONE};
use crate::{Change, InstanceId};

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
pub(super) fn key_of<'e>(c: &Compiled, def: &JourneyDef, ty: Option<u16>, event: &'e Event) -> Option<Cow<'e, str>> {
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
pub(super) const RECENT: usize = 4096;

fn recent_slot(h: u64) -> usize {
    (h as usize) & (RECENT - 1)
}

/// The key index's hash of journey `j`'s key `key`.
pub(super) fn key_hash(j: usize, key: &str) -> u64 {
    mix(j as u64, hash_raw(1, key))
}

/// An event held until the event carrying its journey's key arrives.
pub(super) struct Parked {
    pub(super) id: String,
    pub(super) source: String,
    type_name: String,
    ty: Option<u16>,
    time: i64,
    correlation: String,
    causation: Option<String>,
    idem: Option<String>,
    key: Option<String>,
    /// A `duplicate` raised about it while it waited (with no instance to name), reassigned to
    /// the instance it is attached to; 0: none.
    pub(super) duplicate: u32,
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

/// The events waiting under one (journey, correlation id), in arrival order. `generation` tells
/// this list from an earlier one under the same hash in `Core::parked_order`.
pub(super) struct ParkedList {
    generation: u64,
    journey: u16,
    correlation: String,
    pub(super) events: Vec<Parked>,
}

impl Core {
    // ---- indexes -------------------------------------------------------------------------

    /// The instance of journey `j` with key `key`.
    pub(super) fn lookup_key(&self, j: usize, key: &str) -> Option<u32> {
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
    pub(super) fn lookup_corr(&self, j: usize, c: &str, ch: u64) -> Option<u32> {
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

    // ---- placing an event -----------------------------------------------------------------

    /// Finds or creates the instance of journey `j` that the event belongs to and applies the
    /// event to it; or parks the event until its key is known.
    pub(super) fn place(&mut self, c: &Compiled, j: usize, ev: &Ev, key: Option<(&str, u64)>) -> Option<u32> {
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

    /// A new instance of journey `j`, in flight since `t`, indexed by its key.
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

    /// Holds the event under (journey `j`, correlation id `cid`) until an instance gains `cid`;
    /// drops it, or the oldest waiting correlation's events, when a bound is reached.
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
            duplicate: 0,
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

    /// Joins the events waiting under (journey `j`, `cid`) to instance `i`, which just gained
    /// `cid`; one whose own key names another instance is dropped.
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
            if p.duplicate != 0 {
                self.reassign(c, p.duplicate, i, p.ty, &p.source);
            }
            self.join(c, i, &p.ev(), local);
        }
    }
}
