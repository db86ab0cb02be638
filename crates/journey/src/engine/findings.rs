//! Raising and resolving findings, and who owns them (README, Findings: owner).
//!
//! **Invariants:** finding ids count from 1 in the order raised (`findings[id - 1]`); a finding is
//! resolved at most once, never before it was detected; `Stats::open_findings` and `open_by_kind`
//! always equal the open findings; every raise and resolve is reported as a `Change`.

use super::{Core, Ev, time};
use crate::compiled::{Compiled, JourneyDef};
use crate::{Change, Finding, FindingId, FindingKind, InstanceId};

/// A finding about to be raised.
pub(super) struct New {
    pub(super) kind: FindingKind,
    pub(super) instance: Option<u32>,
    pub(super) correlation: Option<String>,
    pub(super) event_id: Option<String>,
    pub(super) expected: Vec<String>,
    pub(super) rule: Option<String>,
    pub(super) at: i64,
    pub(super) detail: String,
    pub(super) owner: Option<String>,
}

impl New {
    /// A finding about event `ev` itself, as of its time (a duplicate, an out-of-order event, an
    /// invariant it breaks): its id and correlation id, no expected reactions.
    pub(super) fn about(ev: &Ev, kind: FindingKind, instance: Option<u32>, rule: Option<String>, detail: String, owner: Option<String>) -> New {
        New {
            kind,
            instance,
            correlation: ev.correlation.map(str::to_owned),
            event_id: Some(ev.id.to_string()),
            expected: Vec::new(),
            rule,
            at: ev.time,
            detail,
            owner,
        }
    }
}

impl Core {
    /// Records a new finding (about its instance, if any) and returns its id.
    pub(super) fn raise(&mut self, c: &Compiled, n: New) -> u32 {
        let id = self.findings.len() as u64 + 1;
        let (journey, key) = match n.instance {
            Some(i) => {
                let inst = &mut self.inst[i as usize];
                inst.extra().findings.push(id as u32);
                (Some(c.journeys[inst.journey as usize].name.clone()), Some(inst.key.to_string()))
            }
            None => (None, None),
        };
        self.findings.push(Finding {
            id: FindingId(id),
            kind: n.kind,
            journey,
            key,
            instance: n.instance.map(InstanceId),
            correlation_id: n.correlation,
            event_id: n.event_id,
            expected: n.expected,
            rule: n.rule,
            detected_at: time(n.at),
            resolved_at: None,
            detail: n.detail,
            owner: n.owner,
        });
        self.stats.open_findings += 1;
        self.stats.open_by_kind[n.kind.index()] += 1;
        self.changes.push(Change::Raised(FindingId(id)));
        id as u32
    }

    /// Resolves finding `f` at event time `at` (no earlier than it was detected); 0 and findings
    /// already resolved are left alone, so callers need not check.
    pub(super) fn resolve(&mut self, f: u32, at: i64) {
        if f == 0 {
            return;
        }
        let finding = &mut self.findings[f as usize - 1];
        if finding.resolved_at.is_some() {
            return;
        }
        finding.resolved_at = Some(time(at).max(finding.detected_at));
        self.stats.open_findings -= 1;
        self.stats.open_by_kind[finding.kind.index()] -= 1;
        self.changes.push(Change::Resolved(FindingId(u64::from(f))));
    }
}

/// The journey's reconciliation owner, else the owner of the type's context, else of the
/// producing service's context.
pub(super) fn owner(c: &Compiled, def: Option<&JourneyDef>, ty: Option<u16>, source: Option<&str>) -> Option<String> {
    if let Some(o) = def.and_then(|d| d.reconciliation_owner.as_ref()) {
        return Some(o.clone());
    }
    if let Some(o) = ty.and_then(|t| c.type_owner[t as usize].as_ref()) {
        return Some(o.clone());
    }
    source.and_then(|s| c.service_owner.get(s)).cloned()
}
