//! `invariant_violation` (README, Findings): a journey's `requires`, `at_most` and
//! `forbidden_after` rules, judged by event time against the records an instance remembers.
//!
//! **Invariant:** a `requires` violation stays clearable (`Extra::requires_open`) until a late
//! required event stamped at or before it arrives; `forbidden_after` reports each (invariant,
//! event) pair once (`Extra::forbidden_seen`), whichever of the two events arrived first.

use super::findings::{New, owner};
use super::{Core, Ev, bit};
use crate::FindingKind;
use crate::compiled::{Compiled, Rule};
use crate::render::list;

/// An open `requires` violation: the event of invariant `invariant` at `time` lacked the required
/// types in `missing` (a mask of local types); it is resolved once none is missing.
pub(super) struct RequiresOpen {
    finding: u32,
    invariant: u8,
    time: i64,
    missing: u64,
}

impl Core {
    /// Judges every invariant of the instance's journey that event `ev` (local type `l`, record
    /// `rec` if remembered) is the subject of or is referenced by.
    pub(super) fn invariants(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8, rec: Option<u8>) {
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
}
