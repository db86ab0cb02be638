//! `GET /metrics`: the process's counters (`metrics.rs`), the store's totals, the journey engine's
//! gauges and the DLQ's, as Prometheus text.
//!
//! **Invariant:** label values taken from clients (DLQ error types) are at most
//! [`ERROR_TYPE_SERIES`] plus `other`, each with control characters replaced and escaped, so a
//! client cannot grow the page or break its lines.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use causeway_journey::FindingKind;

use crate::api::findings::INGEST_KINDS;
use crate::engine::{Clock, ClockView};
use crate::metrics::{Histogram, Metrics};
use crate::state::AppState;

/// Series of `causeway_dlq_pending` by error type, beside `other`. Error types come from clients
/// (`POST /v1/dlq`), so their number is bounded here, not by them.
const ERROR_TYPE_SERIES: usize = 20;

/// The longest label value taken from a client, in characters; longer ones are cut and end in `…`.
const MAX_LABEL_CHARS: usize = 100;

/// The label value a client's text becomes: control characters and the Unicode line and
/// paragraph separators (which scrapers refuse, or split lines at) replaced by U+FFFD, and at most
/// [`MAX_LABEL_CHARS`] characters.
fn label_value(raw: &str) -> String {
    let breaks = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    let mut out: String = raw.chars().take(MAX_LABEL_CHARS).map(|c| if breaks(c) { '\u{FFFD}' } else { c }).collect();
    if raw.chars().nth(MAX_LABEL_CHARS).is_some() {
        out.pop();
        out.push('…');
    }
    out
}

/// A label value escaped as the text format requires: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Counts by client-given value (most first) as at most `top` series, one per [`label_value`]
/// (values that become the same label add up), then `other` with the rest, always present.
fn top_labels(counts: &[(String, i64)], top: usize) -> Vec<(String, i64)> {
    let mut merged: Vec<(String, i64)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut other = 0;
    for (raw, n) in counts {
        let label = label_value(raw);
        if label == "other" {
            other += n;
            continue;
        }
        match index.get(&label) {
            Some(&i) => merged[i].1 += n,
            None => {
                index.insert(label.clone(), merged.len());
                merged.push((label, *n));
            }
        }
    }
    merged.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    other += merged.iter().skip(top).map(|(_, n)| n).sum::<i64>();
    merged.truncate(top);
    merged.push(("other".into(), other));
    merged
}

pub async fn exposition(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP causeway_ingest_requests_total Requests to POST /v1/events.");
    let _ = writeln!(out, "# TYPE causeway_ingest_requests_total counter");
    let _ = writeln!(out, "causeway_ingest_requests_total {}", Metrics::get(&m.requests));
    let _ = writeln!(
        out,
        "# HELP causeway_events_ingested_total Events received, by context, event type (other: one the model does not name) and outcome (accepted, schema_error: accepted but breaking its schema, duplicate, rejected)."
    );
    let _ = writeln!(out, "# TYPE causeway_events_ingested_total counter");
    for ((context, event_type, outcome), n) in m.ingested.lock().expect("ingest counters").iter() {
        let _ = writeln!(
            out,
            "causeway_events_ingested_total{{context=\"{}\",event_type=\"{}\",outcome=\"{outcome}\"}} {n}",
            escape_label(context),
            escape_label(event_type)
        );
    }
    let duration = m.ingest_duration.lock().expect("ingest duration").clone();
    let _ = writeln!(out, "# HELP causeway_ingest_duration_seconds How long POST /v1/events took to answer, from the request to the answer.");
    let _ = writeln!(out, "# TYPE causeway_ingest_duration_seconds histogram");
    write_histogram(&mut out, "causeway_ingest_duration_seconds", None, &duration);
    let _ = writeln!(out, "# HELP causeway_ingest_bodies_rejected_total Request bodies refused as a whole (malformed, too large, too deep).");
    let _ = writeln!(out, "# TYPE causeway_ingest_bodies_rejected_total counter");
    let _ = writeln!(out, "causeway_ingest_bodies_rejected_total {}", Metrics::get(&m.bodies_rejected));
    let _ = writeln!(
        out,
        "# HELP causeway_auth_refusals_total Requests refused by authentication or authorization: no or unknown token (unauthenticated), a role without the route (forbidden), a cookie write without its CSRF token (csrf), over the token's rate (rate_limited)."
    );
    let _ = writeln!(out, "# TYPE causeway_auth_refusals_total counter");
    for (reason, n) in state.auth.refusals() {
        let _ = writeln!(out, "causeway_auth_refusals_total{{reason=\"{reason}\"}} {n}");
    }
    let c = &state.connections;
    let load = |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::Relaxed);
    let count = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(out, "# HELP causeway_connections Connections open now: served as usual, or past the cap (one request each).");
    let _ = writeln!(out, "# TYPE causeway_connections gauge");
    let _ = writeln!(out, "causeway_connections{{state=\"open\"}} {}", load(&c.open));
    let _ = writeln!(out, "causeway_connections{{state=\"overflow\"}} {}", load(&c.overflow));
    let _ = writeln!(
        out,
        "# HELP causeway_connections_closed_total Connections the server closed: idle ones evicted at the cap, ones refused past it, ones timed out."
    );
    let _ = writeln!(out, "# TYPE causeway_connections_closed_total counter");
    for (reason, n) in [("evicted", count(&c.evicted)), ("refused", count(&c.refused)), ("timed_out", count(&c.timed_out))] {
        let _ = writeln!(out, "causeway_connections_closed_total{{reason=\"{reason}\"}} {n}");
    }
    let store = state.store.clone();
    let engine = state.journeys.clone();
    let engine_on = engine.is_some();
    let now = chrono::Utc::now().timestamp();
    let read = tokio::task::spawn_blocking(move || {
        let clock = engine.as_ref().and_then(|e| e.clock_snapshot());
        let slos = engine.as_ref().and_then(|e| e.slo_snapshot());
        let by_journey = engine.as_ref().and_then(|e| e.journey_counts());
        (store.counts(), engine.and_then(|e| e.stats()), store.dlq_summary(now), store.count_findings(&INGEST_KINDS), clock, slos, by_journey)
    });
    let Ok((counts, journeys, dlq, ingest_findings, clock, slos, by_journey)) = read.await else {
        return ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out);
    };
    // Open findings by kind: the label set is the fixed list of kinds, each always present. The
    // engine's come from its counters; without an engine there are none; while it is busy (a
    // rebuild) they are left out rather than reported as zero.
    let engine_open: Option<Vec<(&str, u64)>> = match &journeys {
        Some((stats, _)) => Some(FindingKind::ALL.iter().map(|k| (k.as_str(), stats.open_by_kind[k.index()])).collect()),
        None if !engine_on => Some(FindingKind::ALL.iter().map(|k| (k.as_str(), 0)).collect()),
        None => None,
    };
    let ingest_open: Option<Vec<(String, i64)>> = ingest_findings.ok();
    if engine_open.is_some() || ingest_open.is_some() {
        let _ = writeln!(
            out,
            "# HELP causeway_findings_open Findings not resolved, by kind: the journey engine's, and those raised at ingest (which never resolve)."
        );
        let _ = writeln!(out, "# TYPE causeway_findings_open gauge");
        for (kind, n) in engine_open.into_iter().flatten() {
            let _ = writeln!(out, "causeway_findings_open{{kind=\"{kind}\"}} {n}");
        }
        for (kind, n) in ingest_open.into_iter().flatten() {
            let _ = writeln!(out, "causeway_findings_open{{kind=\"{kind}\"}} {n}");
        }
    }
    if let Some((stats, position)) = journeys {
        let _ = writeln!(out, "# HELP causeway_journeys Journey instances, by journey and state (completed: an outcome reached).");
        let _ = writeln!(out, "# TYPE causeway_journeys gauge");
        for (journey, counts) in by_journey.iter().flatten() {
            for (s, n) in ["in_flight", "stalled", "completed"].iter().zip(counts) {
                let _ = writeln!(out, "causeway_journeys{{journey=\"{}\",state=\"{s}\"}} {n}", escape_label(journey));
            }
        }
        let _ = writeln!(out, "# HELP causeway_journey_findings Findings the journey engine raised, by status.");
        let _ = writeln!(out, "# TYPE causeway_journey_findings gauge");
        let _ = writeln!(out, "causeway_journey_findings{{status=\"open\"}} {}", stats.open_findings);
        let _ = writeln!(out, "causeway_journey_findings{{status=\"resolved\"}} {}", stats.findings - stats.open_findings);
        if let Ok(c) = &counts {
            let end = c.log_end;
            let _ = writeln!(out, "# HELP causeway_journey_engine_lag Log entries stored that the journey engine has not read yet.");
            let _ = writeln!(out, "# TYPE causeway_journey_engine_lag gauge");
            let _ = writeln!(out, "causeway_journey_engine_lag {}", (end - position).max(0));
        }
    }
    if let Some(clock) = clock {
        write_clock(&mut out, &clock);
    }
    if let Ok(counts) = counts {
        let _ = writeln!(out, "# HELP causeway_store_events Events stored.");
        let _ = writeln!(out, "# TYPE causeway_store_events gauge");
        let _ = writeln!(out, "causeway_store_events {}", counts.events);
        let _ = writeln!(out, "# HELP causeway_store_dlq_records Dead-letter records stored.");
        let _ = writeln!(out, "# TYPE causeway_store_dlq_records gauge");
        let _ = writeln!(out, "causeway_store_dlq_records {}", counts.dlq);
    }
    if let Ok(dlq) = dlq {
        let _ = writeln!(out, "# HELP causeway_dlq_records Dead-letter records, by status.");
        let _ = writeln!(out, "# TYPE causeway_dlq_records gauge");
        for status in causeway_store::DlqStatus::ALL {
            let n = dlq.by_status.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "causeway_dlq_records{{status=\"{}\"}} {n}", status.as_str());
        }
        let _ = writeln!(
            out,
            "# HELP causeway_dlq_pending Pending dead-letter records, by error type (the {ERROR_TYPE_SERIES} most common, then other)."
        );
        let _ = writeln!(out, "# TYPE causeway_dlq_pending gauge");
        for (label, n) in top_labels(&dlq.by_error_type, ERROR_TYPE_SERIES) {
            let _ = writeln!(out, "causeway_dlq_pending{{error_type=\"{}\"}} {n}", escape_label(&label));
        }
        let _ = writeln!(
            out,
            "# HELP causeway_dlq_pending_by_topic Pending dead-letter records, by the topic they came from (the {ERROR_TYPE_SERIES} most common, then other; none: not from a topic)."
        );
        let _ = writeln!(out, "# TYPE causeway_dlq_pending_by_topic gauge");
        let topics: Vec<(String, i64)> =
            dlq.by_source_topic.iter().map(|(t, n)| (if t.is_empty() { "none".to_string() } else { t.clone() }, *n)).collect();
        for (label, n) in top_labels(&topics, ERROR_TYPE_SERIES) {
            let _ = writeln!(out, "causeway_dlq_pending_by_topic{{source_topic=\"{}\"}} {n}", escape_label(&label));
        }
        let oldest = dlq.oldest_pending_failed_at.as_deref().and_then(|t| causeway_envelope::parse_time(t).ok());
        let _ = writeln!(out, "# HELP causeway_dlq_oldest_pending_age_seconds Age of the oldest pending dead letter (0 when none).");
        let _ = writeln!(out, "# TYPE causeway_dlq_oldest_pending_age_seconds gauge");
        let _ = writeln!(out, "causeway_dlq_oldest_pending_age_seconds {}", oldest.map_or(0, |t| (now - t.timestamp()).max(0)));
    }
    if let Some(lag) = &state.lag {
        write_lag(&mut out, &lag.read().expect("lag report"));
    }
    if let Some(slos) = &slos {
        write_slos(&mut out, slos);
    }
    write_notifications(&mut out, &state.notify.status());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The notifier's deliveries per receiver and its alerts (`notify.rs`), when it runs. Receivers
/// are named in the configuration; every alert name, severity and state has a series.
fn write_notifications(out: &mut String, status: &crate::notify::Status) {
    if !status.running {
        return;
    }
    let _ = writeln!(out, "# HELP causeway_notifications_total Notifications posted to each webhook receiver, by outcome.");
    let _ = writeln!(out, "# TYPE causeway_notifications_total counter");
    for r in &status.receivers {
        let name = escape_label(&label_value(&r.name));
        let _ = writeln!(out, "causeway_notifications_total{{receiver=\"{name}\",status=\"sent\"}} {}", r.sent);
        let _ = writeln!(out, "causeway_notifications_total{{receiver=\"{name}\",status=\"failed\"}} {}", r.failed);
    }
    let _ = writeln!(
        out,
        "# HELP causeway_alerts Alerts the notifier judged active in its last round, by name, severity and state (firing, or held back by a silence)."
    );
    let _ = writeln!(out, "# TYPE causeway_alerts gauge");
    for alertname in crate::notify::ALERT_NAMES {
        for severity in ["page", "ticket"] {
            for state in ["firing", "silenced"] {
                let n = status
                    .alerts
                    .iter()
                    .filter(|a| {
                        a.alert.labels.get("alertname").is_some_and(|v| v == alertname)
                            && a.alert.labels.get("severity").is_some_and(|v| v == severity)
                            && a.state() == state
                    })
                    .count();
                let _ = writeln!(out, "causeway_alerts{{alertname=\"{alertname}\",severity=\"{severity}\",state=\"{state}\"}} {n}");
            }
        }
    }
}

/// Consumer groups given series, worst first: their names come from the brokers.
const GROUP_SERIES: usize = 200;

/// The lag monitor's evaluation (PRODUCT §6 `/v1/lag`).
fn write_lag(out: &mut String, report: &crate::lag::LagReport) {
    let groups = &report.groups[..report.groups.len().min(GROUP_SERIES)];
    let _ = writeln!(
        out,
        "# HELP causeway_consumer_group_status Burrow's status of each consumer group as a number: 0 NOTFOUND, 1 OK, 2 WARN, 3 ERR (the {GROUP_SERIES} worst groups)."
    );
    let _ = writeln!(out, "# TYPE causeway_consumer_group_status gauge");
    for g in groups {
        let _ = writeln!(out, "causeway_consumer_group_status{{group=\"{}\"}} {}", escape_label(&label_value(&g.group)), g.status as u8);
    }
    let _ = writeln!(out, "# HELP causeway_consumer_group_lag_messages Messages not consumed yet, over the group's partitions.");
    let _ = writeln!(out, "# TYPE causeway_consumer_group_lag_messages gauge");
    for g in groups {
        let _ = writeln!(out, "causeway_consumer_group_lag_messages{{group=\"{}\"}} {}", escape_label(&label_value(&g.group)), g.total_lag);
    }
    let _ = writeln!(out, "# HELP causeway_consumer_group_lag_seconds Age of the group's oldest unconsumed message (0 when caught up).");
    let _ = writeln!(out, "# TYPE causeway_consumer_group_lag_seconds gauge");
    for g in groups {
        let _ = writeln!(
            out,
            "causeway_consumer_group_lag_seconds{{group=\"{}\"}} {}",
            escape_label(&label_value(&g.group)),
            g.max_lag_seconds.unwrap_or(0.0)
        );
    }
}

/// Series of the late-event metrics by source, beside `other`: sources are named by clients.
const SOURCE_SERIES: usize = 20;

/// The journey engine's clock and its sources' lateness (PRODUCT §4).
fn write_clock(out: &mut String, clock: &ClockView) {
    if let Some(now) = clock.now {
        let _ = writeln!(out, "# HELP causeway_journey_clock_seconds The time journey deadlines are judged up to (Unix seconds).");
        let _ = writeln!(out, "# TYPE causeway_journey_clock_seconds gauge");
        let _ = writeln!(out, "causeway_journey_clock_seconds {:.3}", now.timestamp_micros() as f64 / 1e6);
    }
    if !matches!(clock.clock, Clock::Watermark(_)) {
        return;
    }
    let idle = clock.sources.iter().filter(|s| s.idle).count();
    let _ = writeln!(out, "# HELP causeway_sources Sources of evidence, by whether they hold the clock back (active) or not (idle).");
    let _ = writeln!(out, "# TYPE causeway_sources gauge");
    let _ = writeln!(out, "causeway_sources{{state=\"active\"}} {}", clock.sources.len() - idle);
    let _ = writeln!(out, "causeway_sources{{state=\"idle\"}} {idle}");
    let late: Vec<(String, i64)> = clock.sources.iter().map(|s| (s.name.clone(), s.late_events as i64)).collect();
    let _ = writeln!(
        out,
        "# HELP causeway_source_late_events Events stamped before the clock when they arrived (applied by event time all the same), so far, by source (the {SOURCE_SERIES} with most, then other)."
    );
    let _ = writeln!(out, "# TYPE causeway_source_late_events gauge");
    for (label, n) in top_labels(&late, SOURCE_SERIES) {
        let _ = writeln!(out, "causeway_source_late_events{{source=\"{}\"}} {n}", escape_label(&label));
    }
    let worst = clock.sources.iter().map(|s| s.max_lateness).max().unwrap_or_default();
    let _ = writeln!(out, "# HELP causeway_event_lateness_max_seconds The most any event was late (clock at arrival less its event time).");
    let _ = writeln!(out, "# TYPE causeway_event_lateness_max_seconds gauge");
    let _ = writeln!(out, "causeway_event_lateness_max_seconds {:.3}", worst.as_secs_f64());
}

/// The SLOs (`/v1/slo`) and the latency histograms beside them. Label values are the model's
/// names (SLOs, policies, journeys): bounded by the model.
fn write_slos(out: &mut String, snapshot: &crate::engine::SloSnapshot) {
    let _ = writeln!(out, "# HELP causeway_slo_events_total What each SLO's SLI judged, by verdict (by event time, since the log's start).");
    let _ = writeln!(out, "# TYPE causeway_slo_events_total counter");
    for v in &snapshot.slos {
        let name = escape_label(&v.objective.name);
        let _ = writeln!(out, "causeway_slo_events_total{{slo=\"{name}\",outcome=\"good\"}} {}", v.totals.good);
        let _ = writeln!(out, "causeway_slo_events_total{{slo=\"{name}\",outcome=\"bad\"}} {}", v.totals.bad);
    }
    let _ = writeln!(out, "# HELP causeway_slo_objective_ratio The share of good verdicts each SLO promises.");
    let _ = writeln!(out, "# TYPE causeway_slo_objective_ratio gauge");
    for v in &snapshot.slos {
        let _ = writeln!(out, "causeway_slo_objective_ratio{{slo=\"{}\"}} {}", escape_label(&v.objective.name), v.objective.target);
    }
    let _ = writeln!(
        out,
        "# HELP causeway_slo_error_budget_remaining_ratio The error budget left over each SLO's window (1 untouched, below 0 overspent)."
    );
    let _ = writeln!(out, "# TYPE causeway_slo_error_budget_remaining_ratio gauge");
    for v in &snapshot.slos {
        let _ = writeln!(
            out,
            "causeway_slo_error_budget_remaining_ratio{{slo=\"{}\"}} {}",
            escape_label(&v.objective.name),
            v.evaluation.budget_remaining
        );
    }
    let _ = writeln!(
        out,
        "# HELP causeway_slo_burn_rate How fast each SLO spends its budget over each window, by event time (1: exactly over its window)."
    );
    let _ = writeln!(out, "# TYPE causeway_slo_burn_rate gauge");
    for v in &snapshot.slos {
        for (window, rate) in &v.evaluation.burn_rates {
            let _ = writeln!(out, "causeway_slo_burn_rate{{slo=\"{}\",window=\"{window}\"}} {rate}", escape_label(&v.objective.name));
        }
    }
    let _ =
        writeln!(out, "# HELP causeway_slo_alert Whether each SLO's burn rates call for a page or a ticket (the SRE workbook's multi-window table).");
    let _ = writeln!(out, "# TYPE causeway_slo_alert gauge");
    for v in &snapshot.slos {
        for severity in [causeway_slo::Severity::Page, causeway_slo::Severity::Ticket] {
            let on = v.evaluation.firing.iter().any(|r| r.severity == severity);
            let _ = writeln!(
                out,
                "causeway_slo_alert{{slo=\"{}\",severity=\"{}\"}} {}",
                escape_label(&v.objective.name),
                severity.as_str(),
                u8::from(on)
            );
        }
    }
    write_histograms(
        out,
        "causeway_reaction_latency_seconds",
        "Time from a policy's trigger to its reaction (event time), on time or late.",
        "policy",
        &snapshot.reaction_latency,
    );
    write_histograms(
        out,
        "causeway_journey_completion_seconds",
        "Time from a journey instance's first event to its outcome (event time).",
        "journey",
        &snapshot.completion_time,
    );
}

fn write_histograms(out: &mut String, name: &str, help: &str, label: &str, by: &std::collections::HashMap<String, Histogram>) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut keys: Vec<&String> = by.keys().collect();
    keys.sort();
    for key in keys {
        write_histogram(out, name, Some((label, key)), &by[key]);
    }
}

/// One histogram's series, with one label or none.
fn write_histogram(out: &mut String, name: &str, label: Option<(&str, &str)>, h: &Histogram) {
    let labels = label.map(|(l, v)| format!("{l}=\"{}\",", escape_label(v))).unwrap_or_default();
    let bare = labels.trim_end_matches(',');
    let bare = if bare.is_empty() { String::new() } else { format!("{{{bare}}}") };
    for (n, bound) in h.buckets.iter().zip(h.bounds) {
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{bare} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{bare} {}", h.count);
}
