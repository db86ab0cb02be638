//! One module per page of PRODUCT §9. Each takes the JSON the API answers for what it shows (the
//! server calls the same handlers) and returns the page's `<main>`.

pub mod canvas;
pub mod dlq;
pub mod journey;
pub mod oncall;
pub mod overview;

use maud::{Markup, html};
use serde_json::Value;

use crate::link;

/// Reading the API's JSON: absent or mistyped fields read as empty, so a page shows what is there.
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn opt<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|t| !t.is_empty())
}

/// A number field of an API answer, 0 when absent.
pub fn n(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

pub(crate) fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// A JSON object's entries as `(name, count)`, in its order.
pub(crate) fn counts(v: &Value, key: &str) -> Vec<(String, i64)> {
    v.get(key).and_then(Value::as_object).map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0))).collect()).unwrap_or_default()
}

/// The time ranges a page can be looked at over, as `?since=`.
pub const RANGES: [(&str, Option<i64>); 5] =
    [("1h", Some(3600)), ("6h", Some(6 * 3600)), ("24h", Some(86_400)), ("7d", Some(7 * 86_400)), ("all", None)];

/// The range picker: links to the same page over each range.
pub fn ranges(path: &str, current: &str) -> Markup {
    html! {
        nav.ranges aria-label="Time range" {
            @for (name, _) in RANGES {
                a href=(format!("{path}?since={name}")) aria-current=[(name == current).then_some("true")] { (name) }
            }
        }
    }
}

/// A table of findings (the API's `Finding`s), each id a link, with the kind's runbook.
pub fn findings_table(findings: &[Value]) -> Markup {
    if findings.is_empty() {
        return html! { p.empty { "No findings." } };
    }
    html! {
        table.findings {
            thead { tr { th { "kind" } th { "journey" } th { "what" } th { "event" } th { "owner" } th { "detected" } th { "" } } }
            tbody {
                @for f in findings {
                    tr data-finding=(n(f, "id")) {
                        td { span class=(if f.get("open").and_then(Value::as_bool).unwrap_or(false) { "badge bad" } else { "badge" }) { (s(f, "kind")) } }
                        td {
                            @match (opt(f, "journey"), opt(f, "key")) {
                                (Some(j), Some(k)) => { (link::journey(j, k)) }
                                _ => { @if let Some(c) = opt(f, "correlation_id") { (link::correlation(c)) } }
                            }
                        }
                        td {
                            @let expected: Vec<&str> = list(f, "expected").iter().filter_map(Value::as_str).collect();
                            @if !expected.is_empty() { "expected " code { (expected.join(", ")) } " " }
                            @if let Some(r) = opt(f, "rule") { span.muted { "(" (r) ") " } }
                            (s(f, "detail"))
                            @if let Some(d) = f.get("dead_letter").filter(|d| !d.is_null()) {
                                " · dead letter " (link::dlq(n(d, "id")))
                            }
                        }
                        td { @if let Some(e) = opt(f, "event_id") { (link::event(e)) } }
                        td { (s(f, "owner")) }
                        td { (link::time(s(f, "detected_at"))) }
                        td { (link::runbook(s(f, "kind"))) }
                    }
                }
            }
        }
    }
}

/// Events (the API's envelopes) as a causation tree: each under its cause, in time order; events
/// whose cause is not among them start their own branch.
pub fn causation_tree(events: &[Value]) -> Markup {
    use std::collections::{HashMap, HashSet};
    let ids: HashSet<&str> = events.iter().map(|e| s(e, "id")).collect();
    let mut children: HashMap<&str, Vec<&Value>> = HashMap::new();
    let mut roots = Vec::new();
    for e in events {
        match opt(e, "causationid").filter(|c| ids.contains(c) && *c != s(e, "id")) {
            Some(cause) => children.entry(cause).or_default().push(e),
            None => roots.push(e),
        }
    }
    fn branch(e: &Value, children: &std::collections::HashMap<&str, Vec<&Value>>, depth: usize) -> Markup {
        let kids = children.get(s(e, "id")).map(Vec::as_slice).unwrap_or(&[]);
        html! {
            li data-event-type=(s(e, "type")) {
                strong { (s(e, "type")) } " "
                span.muted { (s(e, "source")) } " "
                (link::time(s(e, "time"))) " "
                (link::event(s(e, "id")))
                @if !kids.is_empty() && depth < 64 {
                    ul { @for k in kids { (branch(k, children, depth + 1)) } }
                }
            }
        }
    }
    if events.is_empty() {
        return html! { p.empty { "No events." } };
    }
    html! { ul.tree { @for r in roots { (branch(r, &children, 0)) } } }
}
