//! `invariant_violation` (README, Findings): a journey's `requires`, `at_most` and
//! `forbidden_after` rules, judged by event time against the records an instance remembers.
//!
//! **Invariants:** a `requires` violation is judged when the clock passes the event's time, not
//! when the event arrives: by then every required event stamped before it has arrived (on the
//! watermark clock), so evidence delivered out of order raises nothing that did not happen; it
//! stays clearable (`Extra::requires_open`) after that, until a late required event stamped at or
//! before it arrives. `forbidden_after` reports each (invariant, event) pair once
//! (`Extra::forbidden_seen`), whichever of the two events arrived first.

use super::findings::{New, owner};
use super::{Core, Ev, bit};
use crate::FindingKind;
use crate::compiled::{Compiled, Rule};
use crate::render::list;

/// A `requires` violation, pending or open: the event of invariant `invariant` at `time` lacked
/// the required types in `missing` (a mask of local types). Until the clock passes `time` it is
/// pending (`finding` 0, `event` kept to raise it); then raised; resolved once none is missing.
pub(super) struct RequiresOpen {
    pub(super) finding: u32,
    invariant: u8,
    pub(super) time: i64,
    missing: u64,
    event: Option<Box<PendingEvent>>,
}

/// What a pending `requires` violation needs of its event to be raised later.
pub(super) struct PendingEvent {
    id: String,
    correlation: Option<String>,
    ty: Option<u16>,
    source: String,
    local: u8,
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
                        // Judged once the clock passes `t` (`raise_requires`): a required event
                        // stamped before it may still be on its way.
                        let event = PendingEvent {
                            id: ev.id.to_string(),
                            correlation: ev.correlation.map(str::to_owned),
                            ty: ev.ty,
                            source: ev.source.to_owned(),
                            local: l,
                        };
                        let open = RequiresOpen { finding: 0, invariant: k, time: t, missing, event: Some(Box::new(event)) };
                        self.inst[i as usize].extra().requires_open.push(open);
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
                                if o.finding != 0 {
                                    cleared.push(o.finding);
                                }
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

    /// Raises the pending `requires` violations of instance `i` stamped at or before `at`, as of
    /// their event's time.
    pub(super) fn raise_requires(&mut self, c: &Compiled, i: u32, at: i64) {
        let Some(extra) = self.inst[i as usize].extra.as_mut() else { return };
        let due: Vec<(usize, u8, i64, u64, Box<PendingEvent>)> = extra
            .requires_open
            .iter_mut()
            .enumerate()
            .filter(|(_, o)| o.finding == 0 && o.time <= at)
            .filter_map(|(x, o)| Some((x, o.invariant, o.time, o.missing, o.event.take()?)))
            .collect();
        let def = &c.journeys[self.inst[i as usize].journey as usize];
        for (x, k, t, missing, e) in due {
            let inv = &def.invariants[k as usize];
            let detail = format!(
                "{} {} happened without {} before it (invariant '{}')",
                def.local_name(c, e.local),
                e.id,
                list(&def.names(c, missing)),
                inv.name
            );
            let owner = owner(c, Some(def), e.ty, Some(&e.source));
            let f = self.raise(
                c,
                New {
                    kind: FindingKind::InvariantViolation,
                    instance: Some(i),
                    correlation: e.correlation,
                    event_id: Some(e.id),
                    expected: Vec::new(),
                    rule: Some(inv.name.clone()),
                    at: t,
                    detail,
                    owner,
                },
            );
            if let Some(extra) = self.inst[i as usize].extra.as_mut() {
                extra.requires_open[x].finding = f;
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
