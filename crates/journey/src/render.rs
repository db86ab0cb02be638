//! Text for people (lists in finding details) and the canonical lines the digest
//! hashes.

use causeway_envelope::format_time;

use crate::{Finding, JourneyView};

/// `A`, `A and B`, `A, B and C`.
pub(crate) fn list(items: &[&str]) -> String {
    join(items, "and")
}

/// `A`, `A or B`, `A, B or C`.
pub(crate) fn or_list(items: &[String]) -> String {
    join(&items.iter().map(String::as_str).collect::<Vec<_>>(), "or")
}

fn join(items: &[&str], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., tail] => format!("{} {last} {tail}", init.join(", ")),
    }
}

/// One journey instance as a digest line.
pub(crate) fn canonical_journey(v: &JourneyView) -> String {
    let milestones: Vec<String> = v.milestones.iter().map(|m| format!("{}@{}/{}", m.event, format_time(&m.reached_at), m.event_id)).collect();
    format!(
        "journey\t{}\t{}\tstate={}\tstarted={}\tupdated={}\tevents={}\tcorrelations={}\tmilestones={}\tnext={}\tfindings={}",
        v.journey,
        v.key,
        v.state.as_str(),
        format_time(&v.started_at),
        format_time(&v.updated_at),
        v.events,
        v.correlation_ids.join(","),
        milestones.join(","),
        v.next_expected.join(","),
        v.findings.len()
    )
}

/// One finding as a digest line (without its id, which depends on numbering).
pub(crate) fn canonical_finding(f: &Finding) -> String {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    format!(
        "finding\t{}\t{}\t{}\tcorrelation={}\tevent={}\texpected={}\trule={}\tdetected={}\tresolved={}\towner={}\t{}",
        f.kind.as_str(),
        opt(&f.journey),
        opt(&f.key),
        opt(&f.correlation_id),
        opt(&f.event_id),
        f.expected.join(","),
        opt(&f.rule),
        format_time(&f.detected_at),
        f.resolved_at.as_ref().map(format_time).unwrap_or_default(),
        opt(&f.owner),
        f.detail
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_like_sentences() {
        assert_eq!(list(&[]), "");
        assert_eq!(list(&["A"]), "A");
        assert_eq!(list(&["A", "B"]), "A and B");
        assert_eq!(or_list(&["A".into(), "B".into(), "C".into()]), "A, B or C");
    }
}
