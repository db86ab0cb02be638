//! The model's SLOs as the Prometheus rules and the Grafana dashboards describe them, worded once:
//! the labels of the SLI, what goes wrong when its budget burns, what it counts as good and bad,
//! who owns it and which generated runbook to open.

use causeway_model::{Model, Sli, Slo};

use crate::runbooks::slo_runbook;
use crate::util::{duration, percent};

pub(crate) struct SloFacts<'m> {
    pub name: &'m str,
    pub slo: &'m Slo,
    /// The SLI kind as the model writes it: `event_success`, `reaction_latency`, `journey_completion`.
    pub sli: &'static str,
    /// The label naming what is measured, and its value: (`journey`, `order`).
    pub subject: (&'static str, &'m str),
    /// What goes wrong when the budget burns, in the model's words: "order journeys complete late or stall".
    pub problem: String,
    /// What the SLI counts as good and as bad.
    pub measure: String,
    /// The runbook to open, relative to the directory `causeway gen runbooks` writes.
    pub runbook: String,
    /// Who answers for it: the journey's reconciliation owner, the owner of the context that
    /// reacts or that produces the events.
    pub owner: Option<String>,
}

impl SloFacts<'_> {
    /// "99% over 7d".
    pub fn objective(&self) -> String {
        format!("{} over {}", percent(self.slo.objective_percent), duration(self.slo.window_ms))
    }

    /// The share of bad events the objective allows, as a ratio.
    pub fn budget_ratio(&self) -> String {
        ratio(100.0 - self.slo.objective_percent)
    }

    /// The same as a percentage: `0.1%`.
    pub fn budget_percent(&self) -> String {
        format!("{}%", decimal(100.0 - self.slo.objective_percent))
    }

    pub fn objective_ratio(&self) -> String {
        ratio(self.slo.objective_percent)
    }
}

/// A percentage as a ratio, written without the noise of binary fractions: `99.9` → `0.999`,
/// `100 - 99.9` → `0.001`.
pub(crate) fn ratio(percent: f64) -> String {
    decimal(percent / 100.0)
}

/// Ten decimals at most, trailing zeros left out.
fn decimal(x: f64) -> String {
    let s = format!("{x:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" { "0".into() } else { s.to_string() }
}

pub(crate) fn slo_facts(model: &Model) -> Vec<SloFacts<'_>> {
    model.slos.iter().map(|(name, slo)| facts(model, name, slo)).collect()
}

fn facts<'m>(model: &'m Model, name: &'m str, slo: &'m Slo) -> SloFacts<'m> {
    // What the server counts (`docs/slo.md`): only a schema error makes a stored event bad.
    const CONTRACT: &str = "stored and keeps its schema (no schema_error); events refused at ingest count as bad";
    let (sli, subject, problem, measure, owner) = match &slo.sli {
        Sli::EventSuccess { context } => (
            "event_success",
            ("context", context.as_str()),
            format!("{context} events are refused or break their schemas"),
            format!("An event of context {context} is good when it is {CONTRACT}."),
            model.owner_of_context(context).map(str::to_string),
        ),
        Sli::EventTypeSuccess { event_type } => (
            "event_success",
            ("event_type", event_type.as_str()),
            format!("{event_type} events are refused or break their schemas"),
            format!("A {event_type} event is good when it is {CONTRACT}."),
            model.events.get(event_type).and_then(|e| model.owner_of_context(&e.context)).map(str::to_string),
        ),
        Sli::ReactionLatency { policy } => {
            let (problem, measure, owner) = match model.policies.get(policy) {
                Some(p) => {
                    let then = p.then.join(" and ");
                    // The reacting side answers for a late reaction: the owners of the `then` events.
                    let mut owners: Vec<&str> = Vec::new();
                    for owner in p.then.iter().filter_map(|e| model.events.get(e)).filter_map(|e| model.owner_of_context(&e.context)) {
                        if !owners.contains(&owner) {
                            owners.push(owner);
                        }
                    }
                    (
                        format!("{then} late or missing after {} (policy {policy})", p.when),
                        format!(
                            "A reaction of policy {policy} is good when {then} follows {} within {}, bad when it comes later or not at all.",
                            p.when,
                            duration(p.within_ms)
                        ),
                        (!owners.is_empty()).then(|| owners.join(",")),
                    )
                }
                None => (
                    format!("reactions of policy {policy} come late or not at all"),
                    format!("A reaction of policy {policy} is good when it comes within the policy's window."),
                    None,
                ),
            };
            ("reaction_latency", ("policy", policy.as_str()), problem, measure, owner)
        }
        Sli::JourneyCompletion { journey } => {
            let j = model.journeys.get(journey);
            let outcomes = j.map(|j| j.outcomes.keys().map(String::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default();
            let outcomes = if outcomes.is_empty() { String::new() } else { format!(" ({outcomes})") };
            let measure = match j.and_then(|j| j.complete_within_ms) {
                Some(w) => format!(
                    "An instance of journey {journey} is good when it reaches an outcome{outcomes} within {}, bad when it stalls or misses that deadline first.",
                    duration(w)
                ),
                None => format!("An instance of journey {journey} is good when it reaches an outcome{outcomes}, bad when it stalls first."),
            };
            (
                "journey_completion",
                ("journey", journey.as_str()),
                format!("{journey} journeys complete late or stall"),
                measure,
                j.and_then(|j| j.reconciliation_owner.clone()),
            )
        }
    };
    SloFacts { name, slo, sli, subject, problem, measure, runbook: slo_runbook(&slo.sli), owner }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_read_as_written() {
        assert_eq!(ratio(99.9), "0.999");
        assert_eq!(ratio(100.0 - 99.9), "0.001");
        assert_eq!(ratio(99.0), "0.99");
        assert_eq!(ratio(100.0 - 99.0), "0.01");
        assert_eq!(ratio(100.0 - 99.95), "0.0005");
        assert_eq!(ratio(0.0), "0");
        assert_eq!(ratio(100.0), "1");
        assert_eq!(decimal(100.0 - 99.9), "0.1");
    }
}
