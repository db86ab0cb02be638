//! Policies (README, "Policies"): a `when` event creates an obligation to see any one of its
//! `then` reactions within `within`; a reaction answers every obligation it can, on time or late;
//! an obligation overdue becomes a `missing_reaction` (raised here, when a timer fires or when a
//! late reaction proves it).
//!
//! **Invariant:** an obligation is removed only when answered, and carries its open finding
//! (0 while none) so that the answer resolves it; obligations outlive an outcome.

use causeway_model::format_duration as duration;

use super::findings::{New, owner};
use super::{Core, Ev, Obligation, bit};
use crate::compiled::Compiled;
use crate::render::or_list;
use crate::{Change, FindingKind, InstanceId};

impl Core {
    /// A reaction arrived: it satisfies every obligation it answers (any one of `then` will do),
    /// on time or late.
    pub(super) fn reactions(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8) {
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
            let trigger = inst.records[o.when as usize].time;
            let policy = def.policies[o.policy as usize].policy;
            if o.finding != 0 {
                self.resolve(o.finding, t);
            } else if t > o.due {
                let f = self.raise_missing(c, i, o.policy, o.when, o.due);
                self.resolve(f, t);
            }
            self.changes.push(Change::Reacted { instance: InstanceId(i), policy, latency_us: t - trigger, on_time: t <= o.due });
        }
    }

    /// A policy's `when` arrived: expect one of its reactions, unless one already arrived (out of
    /// order) that answers it. One stamped past the window proves the reaction was missed, as it
    /// would had it arrived after its trigger: raised as of the deadline and resolved by it.
    pub(super) fn expect_reactions(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8, r: u8, effects: &[u8]) {
        let inst = &mut self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let mut late: Vec<(u8, i64, i64)> = Vec::new();
        for (pi, p) in def.policies.iter().enumerate() {
            if p.when != l {
                continue;
            }
            let due = ev.time.saturating_add(p.within_us);
            // The earliest reaction already here that answers it, if any.
            let answered = inst
                .records
                .iter()
                .enumerate()
                .filter(|(k, x)| *k as u8 != r && p.then_mask & bit(x.ty()) != 0 && (x.time >= ev.time || effects.contains(&(*k as u8))))
                .map(|(_, x)| x.time)
                .min();
            match answered {
                Some(at) if at > due => late.push((pi as u8, due, at)),
                // The reaction came first (out of order), on time.
                Some(at) => self.changes.push(Change::Reacted { instance: InstanceId(i), policy: p.policy, latency_us: at - ev.time, on_time: true }),
                None => {
                    if inst.obligations.len() == inst.obligations.capacity() {
                        inst.obligations.reserve_exact((inst.obligations.len() / 2).max(1));
                    }
                    inst.obligations.push(Obligation { due, finding: 0, policy: pi as u8, when: r });
                }
            }
        }
        for (policy, due, at) in late {
            let f = self.raise_missing(c, i, policy, r, due);
            self.resolve(f, at);
            let global = c.journeys[self.inst[i as usize].journey as usize].policies[policy as usize].policy;
            self.changes.push(Change::Reacted { instance: InstanceId(i), policy: global, latency_us: at - ev.time, on_time: false });
        }
    }

    /// `missing_reaction` for the obligation of `policy` (its index in the journey) on record
    /// `when`, as of its deadline `due`.
    pub(super) fn raise_missing(&mut self, c: &Compiled, i: u32, policy: u8, when: u8, due: i64) -> u32 {
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
}
