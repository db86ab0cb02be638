//! One event in one instance: the stall and completion deadlines it proves missed, what the
//! instance remembers of it, its times, milestones, outcome and state, and the order in which the
//! checks see it (causation, idempotency, invariants, reactions), before the instance's deadline
//! is rescheduled.
//!
//! **Invariants:** the checks run in a fixed order, on which finding ids depend (and so the
//! digest); the state counters in `Stats` change only through [`Core::set_state`] (and `create`,
//! which counts a new instance in flight); an outcome is terminal — later events are still
//! recorded and checked but change no state.

use super::{Core, DEADLINE_FIRED, Ev, IN_FLIGHT, OUTCOME, Rec, STALLED, bit};
use crate::compiled::{Compiled, NONE};
use crate::{Change, InstanceId};

impl Core {
    /// Applies event `ev`, of the journey's local type `l`, to instance `i`: deadlines it proves
    /// missed, its record, times, causation and idempotency, milestone, outcome, invariants and
    /// policies; then reschedules the instance's deadline.
    pub(super) fn apply(&mut self, c: &Compiled, i: u32, ev: &Ev, l: u8) {
        let j = self.inst[i as usize].journey as usize;
        let def = &c.journeys[j];
        let t = ev.time;
        let max_records = self.config.max_records;

        // Deadlines this event proves were missed although no tick noticed it in time: reported as
        // of their deadline (before the event changes anything), and resolved by the event below.
        // (Written here rather than in deadlines.rs: as a function it cost every event about a
        // dozen instructions more, even inlined.)
        let mut late: Vec<u32> = Vec::new();
        let inst = &mut self.inst[i as usize];
        // A first milestone or an outcome would have ended the stall: one stamped past its
        // deadline proves it happened.
        let first_milestone = def.is_milestone(l) && inst.reached & bit(l) == 0;
        let ends_stall = first_milestone || (def.outcome_of[l as usize] != NONE && !inst.terminal());
        if ends_stall
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
        let effects = self.effects_of(i, ev.id_hash);
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

    /// Moves instance `i` to `state` (`IN_FLIGHT`, `STALLED`, `OUTCOME + k`), keeping the
    /// counters of instances by state in step.
    pub(super) fn set_state(&mut self, i: u32, state: u8) {
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
}
