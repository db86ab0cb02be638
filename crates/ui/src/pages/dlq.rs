//! `/dlq` and `/dlq/{id}`: the DLQ explorer. The summary of PRODUCT §6 (pending, oldest,
//! inflow and outflow, by topic, by error type, the 24-hour trend), a filterable list, and a
//! record with its lineage, journey, findings and replays; replay (dry run first) and discard.

use maud::{Markup, html};
use serde_json::{Value, json};

use super::{causation_tree, counts, findings_table, list, n, opt, s};
use crate::charts::{Bar, Column, bars, columns};
use crate::{Tone, heading, human_seconds, json_block, link, thousands, tile};

/// The list's filters, as `?status=&source_topic=&error_type=&q=`.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub status: String,
    pub source_topic: String,
    pub error_type: String,
    pub q: String,
}

const STATUSES: [&str; 5] = ["", "pending", "replayed", "discarded", "resolved"];

/// `summary`: `/v1/dlq/summary`; `records`: `/v1/dlq?…` with the filters.
pub fn list_page(summary: &Value, records: &Value, filters: &Filters) -> Markup {
    let pending = n(summary, "pending");
    let trend: Vec<Column> = list(summary, "trend")
        .iter()
        .map(|b| Column { label: s(b, "hour").get(11..16).unwrap_or("").to_string(), values: vec![n(b, "inflow") as f64, n(b, "outflow") as f64] })
        .collect();
    let by = |key: &str, param: &str| -> Vec<Bar> {
        counts(summary, key)
            .into_iter()
            .map(|(k, c)| {
                let href = format!("/dlq?status=pending&{param}={}", link::query_value(&k));
                Bar::count(k, c).href(href)
            })
            .collect()
    };
    let rows = list(records, "records");
    html! {
        (heading("Dead letters", Some("events a consumer could not handle"), true))
        div.tiles {
            (tile(thousands(pending), "pending", Tone::of_count(pending)))
            (tile(summary.get("oldest_pending").filter(|o| !o.is_null()).map(|o| human_seconds(n(o, "age_seconds") as f64)).unwrap_or_else(|| "–".into()), "oldest pending", Tone::Plain))
            (tile(thousands(n(summary, "inflow_last_hour")), "in, last hour", Tone::Plain))
            (tile(thousands(n(summary, "outflow_last_hour")), "out, last hour", Tone::Plain))
        }
        div.grid {
            section.panel.wide aria-labelledby="trend" {
                h2 #trend { "Last 24 hours" }
                (columns("DLQ inflow and outflow by hour", &["in", "out"], &trend, 3))
            }
            section.panel aria-labelledby="by-topic" { h2 #by-topic { "Pending by source topic" } (bars("pending by source topic", &by("by_source_topic", "source_topic"))) }
            section.panel aria-labelledby="by-error" { h2 #by-error { "Pending by error type" } (bars("pending by error type", &by("by_error_type", "error_type"))) }
            section.panel aria-labelledby="by-consumer" { h2 #by-consumer { "Pending by consumer" } (bars("pending by consumer", &counts(summary, "by_consumer").into_iter().map(|(k, c)| Bar::count(k, c)).collect::<Vec<_>>())) }
        }
        section.panel.wide aria-labelledby="records" {
            h2 #records { "Records" }
            form.filters method="get" action="/dlq" {
                label { "status" select name="status" {
                    @for st in STATUSES { option value=(st) selected[st == filters.status] { (if st.is_empty() { "any" } else { st }) } }
                } }
                label { "source topic" input name="source_topic" value=(filters.source_topic); }
                label { "error type" input name="error_type" value=(filters.error_type); }
                label { "words in the error" input name="q" value=(filters.q); }
                button type="submit" { "Filter" }
            }
            @if rows.is_empty() {
                p.empty { "No record matches." }
            } @else {
                table.dlq {
                    thead { tr { th { "id" } th { "status" } th { "event" } th { "consumer" } th { "source topic" } th { "error" } th.num { "attempts" } th { "last failed" } } }
                    tbody {
                        @for r in rows {
                            tr data-dlq=(n(r, "id")) {
                                td { (link::dlq(n(r, "id"))) }
                                td { span class=(if s(r, "status") == "pending" { "badge bad" } else { "badge" }) { (s(r, "status")) } }
                                td { @if let Some(t) = opt(r, "event_type") { (t) " " } @if let Some(e) = opt(r, "event_id") { (link::event(e)) } }
                                td { (s(r, "consumer")) }
                                td.mono { (s(r, "source_topic")) }
                                td { strong { (s(r, "error_type")) } " " span.muted { (crate::link::short_label(s(r, "error_message"), 80)) } }
                                td.num { (n(r, "attempts")) }
                                td { (link::time(s(r, "last_failed_at"))) }
                            }
                        }
                    }
                }
                @if let Some(before) = records.get("next_before").and_then(Value::as_i64) {
                    p { a href=(format!("/dlq?status={}&source_topic={}&error_type={}&q={}&before={before}",
                        link::query_value(&filters.status), link::query_value(&filters.source_topic),
                        link::query_value(&filters.error_type), link::query_value(&filters.q))) { "Older records →" } }
                }
            }
        }
    }
}

/// `body`: `/v1/dlq/{id}`. `actions`: whether this reader may replay and discard from the page.
pub fn record_page(body: &Value, actions: bool) -> Markup {
    let r = body.get("record").unwrap_or(&Value::Null);
    let id = n(r, "id");
    let pending = s(r, "status") == "pending";
    let chain = body.get("chain").filter(|c| !c.is_null());
    let journey = body.get("journey").filter(|j| !j.is_null());
    html! {
        (heading(&format!("Dead letter #{id}"), opt(r, "event_type"), false))
        div.grid {
            section.panel aria-labelledby="what" {
                h2 #what { "What failed" }
                dl.fields {
                    dt { "status" } dd { span class=(if pending { "badge bad" } else { "badge" }) data-status=(s(r, "status")) { (s(r, "status")) }
                        @if let Some(why) = opt(r, "status_reason") { " " span.muted { (why) } } }
                    dt { "error" } dd { strong { (s(r, "error_type")) } ": " (s(r, "error_message")) }
                    dt { "consumer" } dd { (s(r, "consumer")) }
                    dt { "source" } dd.mono { (s(r, "source_topic")) @if r.get("source_partition").is_some_and(|p| !p.is_null()) { " partition " (n(r, "source_partition")) " offset " (n(r, "source_offset")) } }
                    dt { "event" } dd { @if let Some(e) = opt(r, "event_id") { (link::event_full(e)) } @else { span.muted { "not stored (refused at ingest)" } } }
                    dt { "correlation" } dd { @if let Some(c) = opt(r, "correlation_id") { (link::correlation(c)) } }
                    dt { "producer" } dd { (s(r, "source_service")) }
                    dt { "attempts" } dd { (n(r, "attempts")) ", first failed " (link::time(s(r, "failed_at"))) ", last " (link::time(s(r, "last_failed_at"))) }
                    dt { "replays" } dd { (n(r, "replays")) @if let Some(t) = opt(body, "replay_target") { " · replays go to " code { (t) } } }
                }
            }
            section.panel aria-labelledby="actions" {
                h2 #actions { "Replay" }
                @if actions {
                    form data-api=(format!("/v1/dlq/{id}/replay")) data-body=(json!({"dry_run": true, "actor": "web-ui"}).to_string()) data-action="dry-run" {
                        button type="submit" { "Dry run" } " "
                        span.muted { "shows what would be sent, sends nothing" }
                        pre.json.mono data-result hidden {}
                    }
                    @if pending {
                        form data-api=(format!("/v1/dlq/{id}/replay")) data-body=(json!({"actor": "web-ui"}).to_string()) data-reload
                            data-confirm=(format!("Replay dead letter #{id} to its consumer? The consumer will handle the event again.")) data-action="replay" {
                            button.primary type="submit" { "Replay" }
                            pre.json.mono data-result hidden {}
                        }
                        form data-api=(format!("/v1/dlq/{id}/discard")) data-body=(json!({"actor": "web-ui", "reason": "discarded from the web UI"}).to_string()) data-reload
                            data-confirm=(format!("Discard dead letter #{id}? It will not be replayed.")) data-action="discard" {
                            button.danger type="submit" { "Discard" }
                            pre.json.mono data-result hidden {}
                        }
                    }
                } @else {
                    p.muted { "Replay and discard are offered on this server's own machine only (open the page on 127.0.0.1), or with " code { "causeway dlq replay " (id) } "." }
                }
                @if !list(body, "replays").is_empty() {
                    h2 { "Replays" }
                    table { thead { tr { th { "at" } th { "by" } th { "outcome" } } }
                        tbody { @for p in list(body, "replays") { tr { td { (link::time(s(p, "at"))) } td { (s(p, "actor")) } td { (s(p, "outcome")) @if p.get("dry_run").and_then(Value::as_bool).unwrap_or(false) { " (dry run)" } " " span.muted { (s(p, "error")) } } } } } }
                }
            }
        }
        @if let Some(j) = journey {
            section.panel.wide aria-labelledby="journey" style="margin-bottom: 14px" {
                h2 #journey { "Journey " (link::journey(s(j, "journey"), s(j, "key"))) " " @if let Some(st) = opt(j, "state") { span.badge { (st) } } }
                @if !list(j, "next_expected").is_empty() { p { "Next expected: " (list(j, "next_expected").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) } }
            }
        }
        @if let Some(c) = chain {
            section.panel.wide aria-labelledby="lineage" style="margin-bottom: 14px" {
                h2 #lineage { "Lineage of its correlation" }
                (causation_tree(list(c, "events")))
            }
        }
        section.panel.wide aria-labelledby="findings" style="margin-bottom: 14px" {
            h2 #findings { "Findings about its event" }
            (findings_table(list(body, "findings")))
        }
        section.panel.wide aria-labelledby="original" {
            h2 #original { "The event as it failed" }
            @match (r.get("original_event"), opt(r, "payload")) {
                (Some(original), _) => (json_block(original)),
                // The API leaves the payload out for a token without the operator role, and says so.
                (None, Some(why)) => p.muted { "The payload is " (why) "." },
                (None, None) => (json_block(&Value::Null)),
            }
            @if let Some(stack) = opt(r, "stack") { details { summary { "stack" } pre.json.mono { (stack) } } }
        }
    }
}
