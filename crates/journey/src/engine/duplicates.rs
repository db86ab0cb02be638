//! The same thing twice: `duplicate` (a redelivery the store flagged, reported once per
//! (source, id)) and `duplicate_effect` (a second event of one type in one instance carrying an
//! idempotency key already seen there, with a different id).
//!
//! **Invariant:** neither moves an instance (both only add a finding): a redelivery is never
//! applied or counted again, and the idempotency index remembers the first record of each
//! (instance, type, key) for as long as the instance lives.

use causeway_envelope::Event;

use super::findings::{New, owner};
use super::membership::key_of;
use super::{Core, Ev};
use crate::FindingKind;
use crate::compact::{hash_raw, hash_str, mix};
use crate::compiled::Compiled;

impl Core {
    /// A redelivery: reported once per (source, id), against the instance the event belongs to.
    pub(super) fn redelivery(&mut self, c: &Compiled, ev: &Ev, event: &Event) {
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

    /// `duplicate_effect`: the same idempotency key on two events of one type in one instance.
    pub(super) fn idempotency(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8, r: u8, key: &str) {
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
}
