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
use crate::compact::{hash_raw, hash_str, mix};
use crate::compiled::Compiled;
use crate::{Change, FindingKind};

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
        let f = self.raise(c, New::about(ev, FindingKind::Duplicate, instance, None, detail, owner(c, def, ev.ty, Some(ev.source))));
        // Its event may be waiting for its instance (delivered before the event that carries the
        // key): the finding names that instance once it is attached, as it would have, had the
        // events arrived in time order.
        if instance.is_none()
            && let Some(cid) = ev.correlation
        {
            for j in 0..c.journeys.len() {
                let h = mix(j as u64, hash_str(3, cid));
                if let Some(list) = self.parked.get_mut(&h)
                    && let Some(p) = list.events.iter_mut().find(|p| p.id == ev.id && p.source == ev.source)
                {
                    p.duplicate = f;
                    break;
                }
            }
        }
    }

    /// A finding raised without an instance now names instance `i` (and its owner).
    pub(super) fn reassign(&mut self, c: &Compiled, f: u32, i: u32, ty: Option<u16>, source: &str) {
        let def = &c.journeys[self.inst[i as usize].journey as usize];
        let key = self.inst[i as usize].key.to_string();
        let owner = owner(c, Some(def), ty, Some(source));
        let Some(finding) = self.findings.get_mut(f as usize - 1) else { return };
        finding.journey = Some(def.name.clone());
        finding.key = Some(key);
        finding.instance = Some(crate::InstanceId(i));
        finding.owner = owner;
        self.inst[i as usize].extra().findings.push(f);
        self.changes.push(Change::Reassigned(crate::FindingId(u64::from(f))));
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
                self.raise(c, New::about(ev, FindingKind::DuplicateEffect, Some(i), None, detail, owner));
            }
        }
    }
}
