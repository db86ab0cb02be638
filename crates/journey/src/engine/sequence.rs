//! `out_of_order` by per-aggregate `sequence` (README, Findings): a gap, resolved when every
//! missing sequence has arrived, or a regression. The aggregate is (owning context of the type,
//! else the producing source; subject), independent of journeys.
//!
//! **Invariant:** bounded memory — the last sequence per aggregate lives in two generations of
//! half `Config::max_aggregates` each, and a gap is tracked only while its aggregate is
//! remembered.

use causeway_envelope::Event;

use super::findings::{New, owner};
use super::{Core, Ev};
use crate::FindingKind;
use crate::compact::{hash_raw, hash_str, mix};
use crate::compiled::Compiled;

/// A sequence gap on one aggregate, cleared when its missing sequences arrive.
pub(super) struct Gap {
    finding: u32,
    first: i64,
    /// Bit `k` set: sequence `first + k` still missing (gaps of at most 64).
    missing: u64,
}

/// The sequence table's hash of the event's aggregate — (owning context of its type, else its
/// source; subject) — with the scope's name and the subject, when it has a subject and a sequence.
/// `#[inline]`: `ingest_into` calls it for every event, from another module.
#[inline]
pub(super) fn aggregate_hash<'e>(c: &'e Compiled, ty: Option<u16>, event: &'e Event) -> Option<(u64, &'e str, &'e str)> {
    let subject = event.subject.as_deref()?;
    event.sequence?;
    let (scope, scope_hash) = match ty.and_then(|t| c.type_context[t as usize].as_deref()) {
        Some(context) => (context, c.type_scope[ty.expect("known type") as usize]),
        None => (event.source.as_str(), hash_str(7, &event.source)),
    };
    Some((mix(scope_hash, hash_raw(8, subject)), scope, subject))
}

impl Core {
    /// `out_of_order` by per-aggregate `sequence`: a gap (cleared when the missing sequences
    /// arrive) or a regression. The aggregate is (owning context of the type, else source; subject).
    pub(super) fn sequence(&mut self, c: &Compiled, ev: &Ev, aggregate: (u64, &str, &str), seq: i64, first: Option<u32>) {
        let (h, scope, subject) = aggregate;
        // An aggregate known only to the previous generation moves into the current one.
        let known = self.seqs.get(h).or_else(|| self.seqs_old.get(h));
        self.seqs.insert(h, known.map_or(seq, |last| last.max(seq)));
        if self.seqs.len() >= (self.config.max_aggregates / 2).max(1) {
            self.rotate_sequences();
        }
        let Some(last) = known else { return };
        if seq == last.saturating_add(1) {
            return;
        }
        let def = first.map(|i| &c.journeys[self.inst[i as usize].journey as usize]);
        let owner = owner(c, def, ev.ty, Some(ev.source));
        if seq > last {
            let missing = seq - last - 1;
            let which =
                if missing == 1 { format!("sequence {} is missing", last + 1) } else { format!("sequences {}–{} are missing", last + 1, seq - 1) };
            let detail =
                format!("{} {} has sequence {seq} on {scope} aggregate {subject}, but the last one seen was {last}: {which}", ev.type_name, ev.id);
            let f = self.raise(c, New::about(ev, FindingKind::OutOfOrder, first, None, detail, owner));
            if missing <= 64 {
                let mask = if missing == 64 { u64::MAX } else { (1u64 << missing) - 1 };
                self.gaps.entry(h).or_default().push(Gap { finding: f, first: last + 1, missing: mask });
            }
            return;
        }
        // Behind the last one: either a late arrival filling a gap, or a regression.
        if let Some(gaps) = self.gaps.get_mut(&h)
            && let Some(g) = gaps.iter_mut().find(|g| seq >= g.first && seq - g.first < 64 && g.missing & (1 << (seq - g.first)) != 0)
        {
            g.missing &= !(1 << (seq - g.first));
            if g.missing == 0 {
                let f = g.finding;
                gaps.retain(|g| g.missing != 0);
                if gaps.is_empty() {
                    self.gaps.remove(&h);
                }
                self.resolve(f, ev.time);
            }
            return;
        }
        let detail = if seq == last {
            format!("{} {} repeats sequence {seq} on {scope} aggregate {subject}", ev.type_name, ev.id)
        } else {
            format!(
                "{} {} has sequence {seq} on {scope} aggregate {subject}, after {last} was already seen: the sequence went back",
                ev.type_name, ev.id
            )
        };
        self.raise(c, New::about(ev, FindingKind::OutOfOrder, first, None, detail, owner));
    }

    /// Keeps the sequence tables bounded: when the current generation holds half the bound it
    /// becomes the previous one, and the one before is dropped with its open gaps. An aggregate
    /// is remembered while it is seen at least once a generation; a forgotten one starts afresh
    /// (its next sequence is not judged).
    fn rotate_sequences(&mut self) {
        // The generation before last is dropped, and its table becomes the new current one.
        std::mem::swap(&mut self.seqs, &mut self.seqs_old);
        let slots = self.seqs_old.slot_count();
        self.seqs.clear_to(slots);
        let old = &self.seqs_old;
        self.gaps.retain(|h, _| old.contains(*h));
    }
}
