//! `/journeys/{journey}/{key}`, `/correlations/{id}` and `/events/{id}`: one business journey,
//! one causation chain, one event. The journey shows its milestones reached against those the
//! model expects, the causation tree, the trace waterfall, its findings and the read-model state
//! at each milestone (time travel).

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::Value;

use super::{causation_tree, findings_table, list, n, opt, s};
use crate::charts::{Span, waterfall};
use crate::{heading, json_block, link, thousands};

fn millis(time: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time).ok().map(|t| t.timestamp_millis())
}

/// The events (envelopes) on a shared time axis from the first, each with its cause's time when
/// the cause is among them, in time order, indented by causation depth.
pub fn spans(events: &[Value]) -> Vec<Span> {
    let mut sorted: Vec<(&Value, i64)> = events.iter().filter_map(|e| Some((e, millis(s(e, "time"))?))).collect();
    sorted.sort_by_key(|(e, t)| (*t, s(e, "id").to_string()));
    let Some(start) = sorted.first().map(|(_, t)| *t) else { return Vec::new() };
    let at: HashMap<&str, i64> = sorted.iter().map(|&(e, t)| (s(e, "id"), t)).collect();
    let cause_of: HashMap<&str, &str> = sorted.iter().filter_map(|&(e, _)| Some((s(e, "id"), opt(e, "causationid")?))).collect();
    // Hops up to the first cause not among the events (at most 32, whatever a cycle does).
    fn depth<'a>(cause_of: &HashMap<&'a str, &'a str>, at: &HashMap<&'a str, i64>, mut id: &'a str) -> usize {
        let mut d = 0;
        while let Some(c) = cause_of.get(id).filter(|c| at.contains_key(*c)) {
            d += 1;
            id = c;
            if d > 32 {
                break;
            }
        }
        d
    }
    sorted
        .iter()
        .map(|(e, t)| Span {
            label: s(e, "type").to_string(),
            detail: s(e, "source").to_string(),
            href: link::event_href(s(e, "id")),
            depth: depth(&cause_of, &at, s(e, "id")),
            at_ms: (t - start) as f64,
            cause_ms: opt(e, "causationid").and_then(|c| at.get(c)).map(|c| (c - start) as f64),
        })
        .collect()
}

/// What the journey page shows.
pub struct Journey<'a> {
    /// `/v1/journeys/{journey}/{key}?states=true`.
    pub body: &'a Value,
    /// The milestones the model lists for this journey, in order, then its outcomes' events.
    pub expected: &'a [String],
    pub outcomes: &'a [(String, Vec<String>)],
    /// The events of its correlations (envelopes), for the tree and the waterfall.
    pub events: &'a [Value],
    /// DLQ records of its correlations (the API's records).
    pub dead_letters: &'a [Value],
}

pub fn journey_page(p: &Journey) -> Markup {
    let b = p.body;
    let reached: HashMap<&str, &Value> = list(b, "milestones").iter().map(|m| (s(m, "event"), m)).collect();
    let next: Vec<&str> = list(b, "next_expected").iter().filter_map(Value::as_str).collect();
    let state = s(b, "state");
    let tone = match state {
        "completed" => "badge good",
        "stalled" | "failed" | "deadline_missed" => "badge bad",
        _ => "badge warn",
    };
    let with_state: Vec<&Value> = list(b, "milestones").iter().filter(|m| m.get("state").is_some()).collect();
    html! {
        h1 { (s(b, "journey")) " " span.mono { (s(b, "key")) } " " span class=(tone) data-state=(state) { (state) } span.live-status { "live" } }
        p.muted {
            "Started " (link::time(s(b, "started_at"))) ", last event " (link::time(s(b, "updated_at"))) ", "
            (thousands(n(b, "events"))) " events; correlation "
            @for (i, c) in list(b, "correlation_ids").iter().filter_map(Value::as_str).enumerate() { @if i > 0 { ", " } (link::correlation(c)) }
        }
        section.panel.wide aria-labelledby="milestones" style="margin-bottom: 14px" {
            h2 #milestones { "Milestones: reached and expected" }
            ol.timeline {
                @for m in p.expected {
                    @if let Some(r) = reached.get(m.as_str()) {
                        li.reached data-milestone=(m) data-reached="true" {
                            strong { (m) } br; (link::time(s(r, "reached_at"))) br; (link::event(s(r, "event_id")))
                        }
                    } @else if next.contains(&m.as_str()) {
                        li.next data-milestone=(m) data-reached="false" { strong { (m) } br; span.muted { "next expected" } }
                    } @else {
                        li.expected data-milestone=(m) data-reached="false" { strong { (m) } br; span.muted { "not reached" } }
                    }
                }
                @for (outcome, events) in p.outcomes {
                    @let hit = events.iter().find_map(|e| reached.get(e.as_str()));
                    li class=(if hit.is_some() { "reached" } else { "expected" }) data-outcome=(outcome) {
                        strong { "outcome: " (outcome) } br;
                        @if let Some(r) = hit { (link::time(s(r, "reached_at"))) br; (link::event(s(r, "event_id"))) } @else { span.muted { (events.join(" or ")) } }
                    }
                }
            }
        }
        section.panel.wide aria-labelledby="findings" style="margin-bottom: 14px" { h2 #findings { "Findings" } (findings_table(list(b, "findings"))) }
        @if !p.dead_letters.is_empty() {
            section.panel.wide aria-labelledby="dead-letters" style="margin-bottom: 14px" {
                h2 #dead-letters { "Dead letters" span.muted { " events of this journey a consumer could not handle" } }
                @for r in p.dead_letters {
                    p data-dlq=(n(r, "id")) { (link::dlq(n(r, "id"))) " " span.badge { (s(r, "status")) } " " (s(r, "event_type")) " "
                        @if let Some(e) = opt(r, "event_id") { (link::event(e)) } " · " (s(r, "consumer")) ": " strong { (s(r, "error_type")) } " " (s(r, "error_message")) }
                }
            }
        }
        div.grid {
            section.panel aria-labelledby="tree" { h2 #tree { "Causation tree" } (causation_tree(p.events)) }
            section.panel aria-labelledby="waterfall" {
                h2 #waterfall { "Trace waterfall" span.muted { " event times, and the gap from each cause" } }
                (waterfall(&spans(p.events)))
            }
        }
        section.panel.wide aria-labelledby="states" {
            h2 #states { "Read-model state at each milestone" }
            @if with_state.is_empty() {
                p.empty { "The model declares no read model over this journey's key." }
            } @else {
                @for m in with_state {
                    details data-state-at=(s(m, "event")) {
                        summary { "after " strong { (s(m, "event")) } " at " (link::time(s(m, "reached_at"))) }
                        (json_block(m.get("state").unwrap_or(&Value::Null)))
                    }
                }
            }
        }
    }
}

/// `/correlations/{id}`: `body` is `/v1/correlations/{id}`; `journey` the instance it belongs to.
pub fn correlation_page(body: &Value, journey: Option<(&str, &str)>) -> Markup {
    let events = list(body, "events");
    html! {
        (heading("Correlation", Some(s(body, "correlation_id")), false))
        p {
            (events.len()) " events"
            @if body.get("truncated").and_then(Value::as_bool).unwrap_or(false) { " (the first ones; more are stored)" }
            @if let Some((j, k)) = journey { " · journey " (link::journey(j, k)) }
        }
        div.grid {
            section.panel aria-labelledby="tree" { h2 #tree { "Causation tree" } (causation_tree(events)) }
        }
        section.panel.wide aria-labelledby="waterfall" {
            h2 #waterfall { "Trace waterfall" }
            (waterfall(&spans(events)))
        }
    }
}

/// What the event page shows.
pub struct EventPage<'a> {
    pub envelope: &'a Value,
    /// When and where it arrived (`causeway-received-at`, topic, partition, offset).
    pub arrival: &'a [(&'static str, String)],
    /// The root of its causation chain and the hops to it.
    pub root: Option<(&'a Value, i64)>,
    /// Its descendants (envelopes).
    pub descendants: &'a [Value],
    pub journey: Option<(&'a str, &'a str)>,
    pub findings: &'a [Value],
    /// DLQ records of this event (the API's records).
    pub dead_letters: &'a [Value],
}

pub fn event_page(p: &EventPage) -> Markup {
    let e = p.envelope;
    html! {
        (heading(s(e, "type"), Some(s(e, "id")), false))
        div.grid {
            section.panel aria-labelledby="lineage" {
                h2 #lineage { "Lineage" }
                dl.fields {
                    dt { "source" } dd { (s(e, "source")) }
                    dt { "time" } dd { (link::time(s(e, "time"))) }
                    @for (name, value) in p.arrival { dt { (name) } dd.mono { (value) } }
                    dt { "correlation" } dd { @if let Some(c) = opt(e, "correlationid") { (link::correlation(c)) } @else { span.muted { "none" } } }
                    dt { "caused by" } dd { @if let Some(c) = opt(e, "causationid") { (link::event(c)) } @else { span.muted { "nothing: a root" } } }
                    @if let Some((root, hops)) = p.root { @if hops > 0 {
                        dt { "root" } dd { (s(root, "type")) " " (link::event(s(root, "id"))) " " span.muted { "(" (hops) " hops up)" } }
                    } }
                    dt { "journey" } dd { @if let Some((j, k)) = p.journey { (link::journey(j, k)) } @else { span.muted { "none" } } }
                }
            }
            section.panel aria-labelledby="descendants" {
                h2 #descendants { "What it caused" }
                (causation_tree(p.descendants))
            }
        }
        div.grid {
            section.panel aria-labelledby="findings" { h2 #findings { "Findings about it" } (findings_table(p.findings)) }
            section.panel aria-labelledby="dead-letters" {
                h2 #dead-letters { "Dead letters" }
                @if p.dead_letters.is_empty() { p.empty { "No consumer reported failing on it." } }
                @for r in p.dead_letters {
                    p { (link::dlq(n(r, "id"))) " " span.badge { (s(r, "status")) } " " (s(r, "consumer")) ": " strong { (s(r, "error_type")) } " " (s(r, "error_message")) }
                }
            }
        }
        section.panel.wide aria-labelledby="envelope" { h2 #envelope { "The event as stored" } (json_block(e)) }
    }
}

/// `/journeys`: instances of a journey in a state (`body` is `/v1/journeys?…`), with the pickers.
pub fn journeys_list(body: &Value, journeys: &[String], journey: &str, state: &str) -> Markup {
    const STATES: [&str; 5] = ["", "in_flight", "stalled", "completed", "failed"];
    let rows = list(body, "journeys");
    html! {
        (heading("Journeys", None, true))
        form.filters method="get" action="/journeys" {
            label { "journey" select name="journey" {
                option value="" selected[journey.is_empty()] { "any" }
                @for j in journeys { option value=(j) selected[j == journey] { (j) } }
            } }
            label { "state" select name="state" {
                @for st in STATES { option value=(st) selected[st == state] { (if st.is_empty() { "any" } else { st }) } }
            } }
            button type="submit" { "Show" }
        }
        p.muted { (thousands(n(body, "total"))) " instances" @if n(body, "total") > rows.len() as i64 { "; the first " (rows.len()) " shown" } "." }
        @if rows.is_empty() { p.empty { "None." } } @else {
            section.panel.wide {
                table {
                    thead { tr { th { "journey" } th { "state" } th { "milestones reached" } th { "next expected" } th.num { "open findings" } th { "started" } th { "last event" } } }
                    tbody {
                        @for j in rows {
                            tr {
                                td { (link::journey(s(j, "journey"), s(j, "key"))) }
                                td { span.badge { (s(j, "state")) } }
                                td { (list(j, "milestones").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" → ")) }
                                td { (list(j, "next_expected").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) }
                                td.num { (n(j, "open_findings")) }
                                td { (link::time(s(j, "started_at"))) }
                                td { (link::time(s(j, "updated_at"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_waterfall_measures_from_the_first_event_and_from_each_cause() {
        let events = [
            json!({"id": "b", "type": "Paid", "source": "pay", "time": "2026-12-06T10:00:01.500Z", "causationid": "a"}),
            json!({"id": "a", "type": "Placed", "source": "order", "time": "2026-12-06T10:00:00Z"}),
            json!({"id": "c", "type": "Shipped", "source": "ship", "time": "2026-12-06T10:00:04Z", "causationid": "b"}),
        ];
        let spans = spans(&events);
        let got: Vec<(&str, f64, Option<f64>, usize)> = spans.iter().map(|s| (s.label.as_str(), s.at_ms, s.cause_ms, s.depth)).collect();
        assert_eq!(got, [("Placed", 0.0, None, 0), ("Paid", 1500.0, Some(0.0), 1), ("Shipped", 4000.0, Some(1500.0), 2)]);
    }
}
