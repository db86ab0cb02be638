//! Snapshots of an instance: [`JourneyView`] and the `next_expected` list that views and the
//! stall and deadline findings share.
//!
//! **Invariant:** read-only; a view is built from the instance alone (plus its findings), so it
//! is the same whenever the instance is, which the digest relies on.

use super::{Core, IN_FLIGHT, OUTCOME, STALLED, bit, time};
use crate::compiled::Compiled;
use crate::{InstanceId, JourneyState, JourneyView, MilestoneView};

impl Core {
    /// Reactions still expected, then the milestones after the furthest one reached.
    pub(super) fn next_expected<'c>(&self, c: &'c Compiled, i: u32) -> Vec<&'c str> {
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

    /// A snapshot of instance `i`.
    pub(super) fn view(&self, c: &Compiled, i: u32) -> JourneyView {
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
