//! `out_of_order` by causation (README, Findings): an effect stamped before its cause, or — with
//! `Config::delivery_order` — delivered before it, both in one instance, whichever arrives first.
//!
//! **Invariant:** an event's causation id is not kept; a record whose cause is not recorded yet
//! waits in `Extra::awaiting` (at most [`MAX_AWAITING`]) and is linked, and judged, once when the
//! cause arrives.

use causeway_model::format_duration as duration;

use super::findings::{New, owner};
use super::{Core, Ev};
use crate::FindingKind;
use crate::compiled::Compiled;

/// Records per instance that wait for their cause; later ones are not linked to it.
const MAX_AWAITING: usize = 16;

impl Core {
    /// Takes the records that were waiting for the event whose id hash is `id_hash` as their cause.
    pub(super) fn effects_of(&mut self, i: u32, id_hash: u64) -> Vec<u8> {
        let mut effects: Vec<u8> = Vec::new();
        if let Some(extra) = self.inst[i as usize].extra.as_mut() {
            extra.awaiting.retain(|&(r, cause)| {
                let mine = cause == id_hash;
                if mine {
                    effects.push(r);
                }
                !mine
            });
        }
        effects
    }

    /// `out_of_order` between an event and its cause, both in the instance: an effect stamped
    /// before its cause, or (with `delivery_order`) delivered before it.
    pub(super) fn causation(&mut self, c: &Compiled, i: u32, ev: &Ev, r: u8, effects: &[u8]) {
        let inst = &self.inst[i as usize];
        let def = &c.journeys[inst.journey as usize];
        let mut found: Vec<(u8, u8, bool)> = Vec::new(); // (effect, cause, times inverted)
        if ev.cause_hash != 0 {
            match inst.records[..r as usize].iter().position(|x| x.id_hash() == ev.cause_hash) {
                Some(k) => {
                    if inst.records[k].time > ev.time {
                        found.push((r, k as u8, true));
                    }
                }
                None => {
                    let inst = &mut self.inst[i as usize];
                    let extra = inst.extra();
                    if extra.awaiting.len() < MAX_AWAITING {
                        extra.awaiting.push((r, ev.cause_hash));
                    }
                }
            }
        }
        let inst = &self.inst[i as usize];
        for &k in effects {
            let x = &inst.records[k as usize];
            if x.time < ev.time {
                found.push((k, r, true));
            } else if self.config.delivery_order {
                found.push((k, r, false));
            }
        }
        for (effect, cause, inverted) in found {
            let inst = &self.inst[i as usize];
            let (e, x) = (&inst.records[effect as usize], &inst.records[cause as usize]);
            let (ename, xname) = (def.local_name(c, e.ty()), def.local_name(c, x.ty()));
            let detail = if inverted {
                format!(
                    "{ename} {} is stamped {} before its cause {xname} {}: the producers' clocks disagree or the chain is wrong",
                    e.id,
                    duration_us(x.time - e.time),
                    x.id
                )
            } else {
                format!("{ename} {} was delivered before its cause {xname} {}", e.id, x.id)
            };
            let event_id = inst.id_of(effect);
            let owner = owner(c, Some(def), Some(def.local[e.ty() as usize]), None);
            self.raise(
                c,
                New {
                    kind: FindingKind::OutOfOrder,
                    instance: Some(i),
                    correlation: ev.correlation.map(str::to_owned),
                    event_id: Some(event_id),
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

/// The distance between two event times for a sentence: the model's duration format when it is
/// whole milliseconds.
fn duration_us(us: i64) -> String {
    if us % 1000 == 0 { duration((us / 1000).unsigned_abs()) } else { format!("{}µs", us) }
}
