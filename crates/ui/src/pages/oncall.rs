//! `/on-call`: what needs a person now. Open findings by kind with owner and runbook, stalled
//! journeys, the DLQ, schema errors and consumer lag, over a chosen time range.

use maud::{Markup, html};
use serde_json::Value;

use super::{counts, findings_table, list, n, ranges, s};
use crate::charts::{Bar, bars};
use crate::{Tone, heading, human_seconds, link, thousands, tile};

/// Findings listed per kind; the rest are a link away.
const PER_KIND: usize = 25;

/// What the page shows, each the API's answer.
pub struct OnCall<'a> {
    /// The `?since=` range (`1h` … `all`).
    pub range: &'a str,
    /// `/v1/journeys/summary`, when a model is loaded.
    pub summary: Option<&'a Value>,
    /// `/v1/findings?open=true&since=…`.
    pub findings: &'a [Value],
    /// `/v1/journeys?state=stalled`, when a model is loaded.
    pub stalled: Option<&'a Value>,
    /// `/v1/dlq/summary`.
    pub dlq: &'a Value,
    /// `/v1/lag`, when the lag monitor runs.
    pub lag: Option<&'a Value>,
}

pub fn render(p: &OnCall) -> Markup {
    let open_by_kind = p.summary.map(|s| counts(s, "findings_by_kind")).unwrap_or_default();
    let stalled_total = p.stalled.map(|v| n(v, "total")).unwrap_or(0);
    let schema_errors = p.findings.iter().filter(|f| s(f, "kind") == "schema_error").count() as i64;
    let pending = n(p.dlq, "pending");
    let mut kinds: Vec<(String, i64)> = Vec::new();
    for f in p.findings {
        match kinds.iter_mut().find(|(k, _)| k == s(f, "kind")) {
            Some((_, c)) => *c += 1,
            None => kinds.push((s(f, "kind").to_string(), 1)),
        }
    }
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let lag_groups = p.lag.map(|l| list(l, "groups")).unwrap_or(&[]);
    let lagging = lag_groups.iter().filter(|g| s(g, "status") != "OK").count() as i64;
    html! {
        (heading("On-call", Some("what needs a person now"), true))
        (ranges("/on-call", p.range))
        div.tiles {
            (tile(thousands(p.findings.len() as i64), &format!("open findings ({})", p.range), Tone::of_count(p.findings.len() as i64)))
            (tile(thousands(stalled_total), "stalled journeys", Tone::of_count(stalled_total)))
            (tile(thousands(pending), "DLQ pending", Tone::of_count(pending)))
            (tile(thousands(schema_errors), "schema errors", Tone::of_count(schema_errors)))
            @if p.lag.is_some() {
                (tile(thousands(lagging), "consumer groups lagging", Tone::of_count(lagging)))
            }
        }
        div.grid {
            section.panel aria-labelledby="by-kind" {
                h2 #by-kind { "Open findings by kind" }
                (bars("open findings by kind", &kinds.iter().map(|(k, c)| Bar::count(k.clone(), *c).class("bad").href(format!("#kind-{k}"))).collect::<Vec<_>>()))
                @if !open_by_kind.is_empty() {
                    p.muted { "All time, open: "
                        @for (i, (k, _)) in open_by_kind.iter().enumerate() {
                            @if i > 0 { ", " }
                            (k) " " (p.summary.and_then(|s| s.pointer(&format!("/findings_by_kind/{k}/open"))).and_then(Value::as_i64).unwrap_or(0))
                        }
                    }
                }
            }
            section.panel aria-labelledby="dlq" {
                h2 #dlq { a href="/dlq" { "Dead letters" } }
                @if let Some(oldest) = p.dlq.get("oldest_pending").filter(|o| !o.is_null()) {
                    p { "Oldest pending failed " (human_seconds(n(oldest, "age_seconds") as f64)) " ago; "
                        (n(p.dlq, "inflow_last_hour")) " in and " (n(p.dlq, "outflow_last_hour")) " out in the last hour." }
                } @else {
                    p.muted { "Nothing pending." }
                }
                (bars("pending by error type", &counts(p.dlq, "by_error_type").into_iter().map(|(k, c)| {
                    let href = format!("/dlq?status=pending&error_type={}", link::query_value(&k));
                    Bar::count(k, c).href(href)
                }).collect::<Vec<_>>()))
            }
            section.panel aria-labelledby="lag" {
                h2 #lag { "Consumer lag" }
                @match p.lag {
                    None => p.empty { "The lag monitor runs with the Kafka source; none is configured." },
                    Some(_) if lag_groups.is_empty() => p.empty { "No consumer group has committed yet." },
                    Some(_) => table {
                        thead { tr { th { "group" } th { "status" } th.num { "lag (messages)" } th { "worst partition" } } }
                        tbody {
                            @for g in lag_groups {
                                tr {
                                    td { (s(g, "group")) }
                                    td { span class=(if s(g, "status") == "OK" { "badge good" } else { "badge bad" }) { (s(g, "status")) } }
                                    td.num { (thousands(n(g, "total_lag"))) }
                                    td.mono { @if let Some(m) = g.get("max_lag").filter(|m| !m.is_null()) { (s(m, "topic")) "/" (n(m, "partition")) } }
                                }
                            }
                        }
                    },
                }
            }
        }
        section.panel.wide aria-labelledby="stalled" {
            h2 #stalled { "Stalled journeys" }
            @match p.stalled {
                None => p.empty { "No model is loaded, so there are no journeys." },
                Some(v) if list(v, "journeys").is_empty() => p.empty { "No journey is stalled." },
                Some(v) => {
                    table {
                        thead { tr { th { "journey" } th { "milestones reached" } th { "next expected" } th.num { "open findings" } th { "last event" } } }
                        tbody {
                            @for j in list(v, "journeys") {
                                tr {
                                    td { (link::journey(s(j, "journey"), s(j, "key"))) }
                                    td { (list(j, "milestones").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" → ")) }
                                    td { (list(j, "next_expected").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) }
                                    td.num { (n(j, "open_findings")) }
                                    td { (link::time(s(j, "updated_at"))) }
                                }
                            }
                        }
                    }
                    @if n(v, "total") > list(v, "journeys").len() as i64 {
                        p.muted { "The first " (list(v, "journeys").len()) " of " (thousands(n(v, "total"))) "." }
                    }
                }
            }
        }
        @for (kind, count) in &kinds {
            section.panel.wide id=(format!("kind-{kind}")) style="margin-top: 14px" {
                h2 { (kind) " " span.muted { "(" (count) " open) · " } (link::runbook(kind)) }
                (findings_table(&p.findings.iter().filter(|f| s(f, "kind") == kind).take(PER_KIND).cloned().collect::<Vec<_>>()))
                @if *count as usize > PER_KIND {
                    p.muted { "The latest " (PER_KIND) " of " (count) "; all of them: "
                        a href=(format!("/v1/findings?open=true&kind={}&limit=10000", link::query_value(kind))) { "GET /v1/findings?open=true&kind=" (kind) } "." }
                }
            }
        }
        @if p.findings.is_empty() {
            section.panel.wide style="margin-top: 14px" { h2 { "Open findings" } p.empty { "No open finding in this range." } }
        }
    }
}
