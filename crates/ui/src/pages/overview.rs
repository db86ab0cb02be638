//! `/`: the overview, for whoever asks "is the business flowing?". Event success by bounded
//! context, the model's SLOs with their budget, burn and alert, the journeys' completion
//! objectives, the event types that fail most, and journey throughput and completion by hour.

use maud::{Markup, html};

use crate::charts::{Bar, Column, bars, columns};
use crate::{Tone, heading, link, percent, thousands, tile};

/// One bounded context's events: stored, and failed (dead-lettered or refused at ingest).
#[derive(Debug, Clone, PartialEq)]
pub struct ContextHealth {
    pub context: String,
    pub owner: Option<String>,
    pub events: i64,
    pub failed: i64,
}

impl ContextHealth {
    /// Good events over all: stored and never failed, over stored and refused.
    pub fn success(&self) -> Option<f64> {
        let all = self.events.max(self.failed);
        (all > 0).then(|| 1.0 - self.failed as f64 / all as f64)
    }
}

/// A journey's completion objective (`objective` in the model) against what happened: instances
/// that reached an outcome within `complete_within` are good; those that missed it, stalled or
/// failed are bad; those still running within their window are not judged yet.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneySlo {
    pub journey: String,
    /// 0–1.
    pub objective: f64,
    pub window: String,
    pub good: i64,
    pub bad: i64,
    pub running: i64,
}

impl JourneySlo {
    pub fn sli(&self) -> Option<f64> {
        let judged = self.good + self.bad;
        (judged > 0).then(|| self.good as f64 / judged as f64)
    }

    /// The share of the error budget left: 1 with no bad instance, 0 when the bad share equals
    /// the budget, below 0 past it.
    pub fn budget_left(&self) -> Option<f64> {
        let allowed = 1.0 - self.objective;
        let judged = self.good + self.bad;
        if judged == 0 || allowed <= 0.0 {
            return None;
        }
        Some(1.0 - (self.bad as f64 / judged as f64) / allowed)
    }
}

/// One of the model's SLOs as the journey engine judged it (`GET /v1/slo`).
#[derive(Debug, Clone, PartialEq)]
pub struct SloRow {
    pub name: String,
    /// What it measures, e.g. `reaction_latency of ship-after-reservation`.
    pub measures: String,
    /// 0–1.
    pub objective: f64,
    pub window: String,
    pub good: u64,
    pub bad: u64,
    pub sli: Option<f64>,
    pub budget_left: f64,
    pub burn_1h: f64,
    pub burn_6h: f64,
    /// `page`, `ticket`, or none.
    pub alert: Option<String>,
}

pub struct Overview {
    pub model: Option<String>,
    pub events: i64,
    pub journeys_by_state: Vec<(String, i64)>,
    pub open_findings: i64,
    pub dlq_pending: i64,
    pub contexts: Vec<ContextHealth>,
    /// Event types by failures (dead letters and ingest findings), most first.
    pub failing_types: Vec<(String, i64)>,
    pub slos: Vec<JourneySlo>,
    /// The model's `slos`, judged by event time.
    pub objectives: Vec<SloRow>,
    /// By hour of event time: journeys started and finished (an outcome reached).
    pub throughput: Vec<Column>,
}

pub fn render(p: &Overview) -> Markup {
    let in_flight = p.journeys_by_state.iter().filter(|(s, _)| s == "in_flight").map(|(_, n)| n).sum::<i64>();
    // Every state but these two is an outcome reached (`fulfilled`, `cancelled`…).
    let finished = p.journeys_by_state.iter().filter(|(s, _)| s != "in_flight" && s != "stalled").map(|(_, n)| n).sum::<i64>();
    let stalled = p.journeys_by_state.iter().filter(|(s, _)| s == "stalled").map(|(_, n)| n).sum::<i64>();
    html! {
        (heading("Overview", p.model.as_deref(), true))
        div.tiles {
            (tile(thousands(p.events), "events stored", Tone::Plain))
            (tile(thousands(finished), "journeys finished", Tone::Good))
            (tile(thousands(in_flight), "journeys in flight", Tone::Plain))
            (tile(thousands(stalled), "journeys stalled", Tone::of_count(stalled)))
            (tile(thousands(p.open_findings), "open findings", Tone::of_count(p.open_findings)))
            (tile(thousands(p.dlq_pending), "DLQ pending", Tone::of_count(p.dlq_pending)))
        }
        div.grid {
            section.panel aria-labelledby="contexts" {
                h2 #contexts { "Event success by context" }
                @if p.contexts.is_empty() { p.empty { "No model is loaded." } } @else {
                    table {
                        thead { tr { th { "context" } th { "owner" } th.num { "events" } th.num { "failed" } th.num { "success" } } }
                        tbody {
                            @for c in &p.contexts {
                                tr data-context=(c.context) {
                                    td { (c.context) }
                                    td { (c.owner.as_deref().unwrap_or("")) }
                                    td.num { (thousands(c.events)) }
                                    td.num { (thousands(c.failed)) }
                                    td.num { span class=(match c.success() { Some(s) if s < 0.99 => "badge bad", Some(_) => "badge good", None => "badge" }) { (percent(c.success())) } }
                                }
                            }
                        }
                    }
                }
            }
            section.panel aria-labelledby="objectives" {
                h2 #objectives { "Service-level objectives" }
                @if p.objectives.is_empty() { p.empty { "The model declares no SLO (`slos`)." } } @else {
                    table {
                        thead { tr { th { "SLO" } th { "measures" } th.num { "objective" } th.num { "SLI" } th.num { "budget left" } th.num { "burn 1h" } th.num { "burn 6h" } th { "alert" } } }
                        tbody {
                            @for s in &p.objectives {
                                tr data-slo-name=(s.name) data-good=(s.good) data-bad=(s.bad) {
                                    td { (s.name) }
                                    td { (s.measures) " " span.muted { "over " (s.window) } }
                                    td.num { (percent(Some(s.objective))) }
                                    td.num { (percent(s.sli)) " " span.muted { "(" (thousands(s.good as i64)) " of " (thousands((s.good + s.bad) as i64)) ")" } }
                                    td.num { span class=(if s.budget_left < 0.0 { "badge bad" } else if s.budget_left < 0.25 { "badge warn" } else { "badge good" }) { (percent(Some(s.budget_left))) } }
                                    td.num { (format!("{:.1}×", s.burn_1h)) }
                                    td.num { (format!("{:.1}×", s.burn_6h)) }
                                    td { @match s.alert.as_deref() {
                                        Some(a) => span class=(if a == "page" { "badge bad" } else { "badge warn" }) { (a) },
                                        None => span.muted { "none" },
                                    } }
                                }
                            }
                        }
                    }
                    p.muted { "Judged by event time; alerts by the SRE workbook's multi-window burn rates (docs/slo.md)." }
                }
            }
            section.panel aria-labelledby="slos" {
                h2 #slos { "Journey completion objectives" }
                @if p.slos.is_empty() { p.empty { "No journey declares an objective and a completion window." } } @else {
                    table {
                        thead { tr { th { "journey" } th.num { "objective" } th { "within" } th.num { "completed in time" } th.num { "budget left" } th.num { "running" } } }
                        tbody {
                            @for s in &p.slos {
                                @let left = s.budget_left();
                                tr data-slo=(s.journey) {
                                    td { a href=(format!("/journeys?journey={}", link::query_value(&s.journey))) { (s.journey) } }
                                    td.num { (percent(Some(s.objective))) }
                                    td { (s.window) }
                                    td.num { (percent(s.sli())) " " span.muted { "(" (thousands(s.good)) " of " (thousands(s.good + s.bad)) ")" } }
                                    td.num { span class=(match left { Some(l) if l < 0.0 => "badge bad", Some(l) if l < 0.25 => "badge warn", Some(_) => "badge good", None => "badge" }) { (percent(left)) } }
                                    td.num { (thousands(s.running)) }
                                }
                            }
                        }
                    }
                    p.muted { "Each journey's own objective over all stored history; burn rates and alerts are those of the SLOs above." }
                }
            }
            section.panel aria-labelledby="failing" {
                h2 #failing { "Event types that fail most" }
                (bars("failures by event type", &p.failing_types.iter().take(10).map(|(t, n)| Bar::count(t.clone(), *n).class("bad")).collect::<Vec<_>>()))
            }
            section.panel aria-labelledby="throughput" {
                h2 #throughput { "Journeys started and finished, by hour" }
                (columns("journeys started and finished by hour", &["started", "finished"], &p.throughput, (p.throughput.len() / 6).max(1)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_what_the_objective_allows_minus_what_went_bad() {
        let slo = |good, bad| JourneySlo { journey: "order".into(), objective: 0.99, window: "1h".into(), good, bad, running: 0 };
        assert_eq!(slo(0, 0).budget_left(), None);
        assert_eq!(slo(100, 0).budget_left(), Some(1.0));
        assert!((slo(995, 5).budget_left().unwrap() - 0.5).abs() < 1e-9);
        assert!(slo(98, 2).budget_left().unwrap() < 0.0);
        assert_eq!(slo(3, 1).sli(), Some(0.75));
        let c = ContextHealth { context: "payments".into(), owner: None, events: 200, failed: 2 };
        assert_eq!(c.success(), Some(0.99));
    }
}
