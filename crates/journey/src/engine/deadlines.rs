//! Timers (README, "Timers"): an instance's earliest deadline — a policy's reaction, a stall, the
//! completion window — kept in the deadline queue, and what firing it raises: `missing_reaction`
//! (via reactions.rs), `stalled` and `deadline_missed`. When an event proves one of the last two
//! missed before any tick noticed, apply.rs raises it with the same functions.
//!
//! **Invariant:** one live queue entry per instance, never later than its earliest deadline
//! (`timer_at`, `timer_gen`); an entry that comes up early finds nothing due and reschedules, a
//! stale one (older generation) is skipped. Deadline findings carry the deadline as their time.

use causeway_model::format_duration as duration;

use super::findings::{New, owner};
use super::{Core, DEADLINE_FIRED, IN_FLIGHT, NEVER, STALLED, bit};
use crate::compiled::Compiled;
use crate::render::{list, or_list};
use crate::{Change, FindingKind, InstanceId};

impl Core {
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
        if let Some(extra) = &inst.extra {
            for o in &extra.requires_open {
                if o.finding == 0 && o.time < due.0 {
                    // No duration of its own: into the queue's heap.
                    due = (o.time, usize::MAX);
                }
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
    pub(super) fn schedule(&mut self, c: &Compiled, i: u32) {
        let (due, class) = self.earliest(c, i);
        let inst = &mut self.inst[i as usize];
        if due < inst.timer_at {
            inst.timer_gen = inst.timer_gen.wrapping_add(1);
            inst.timer_at = due;
            self.timers.push((due, i, inst.timer_gen), class);
        }
    }

    /// Everything of instance `i` due at or before `at`.
    pub(super) fn fire(&mut self, c: &Compiled, i: u32, at: i64) {
        let inst = &self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let due: Vec<(usize, i64, u8, u8)> =
            inst.obligations.iter().enumerate().filter(|(_, o)| o.finding == 0 && o.due <= at).map(|(k, o)| (k, o.due, o.policy, o.when)).collect();
        for (k, d, policy, when) in due {
            let f = self.raise_missing(c, i, policy, when, d);
            self.inst[i as usize].obligations[k].finding = f;
        }
        self.raise_requires(c, i, at);
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

    /// `stalled`, as of the stall deadline `due`.
    pub(super) fn raise_stalled(&mut self, c: &Compiled, i: u32, due: i64) -> u32 {
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

    /// `deadline_missed`, as of the completion deadline `due`.
    pub(super) fn raise_deadline(&mut self, c: &Compiled, i: u32, due: i64) -> u32 {
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
}
