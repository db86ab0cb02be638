//! `/canvas`: the event-storming board of the model, with live evidence on each sticky note: how
//! many events, how many in the last hour, p95 latency from their cause, open findings; a policy
//! whose reactions go missing is ringed in red. A note opens a panel of its recent events and
//! findings (`/canvas/notes/{id}`).

use causeway_canvas::{Board, Kind};
use maud::{Markup, PreEscaped, html};
use serde_json::Value;

use super::{findings_table, s};
use crate::charts::format_ms;
use crate::{link, thousands};

/// What was seen of one note's element of the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoteEvidence {
    /// Events of this type stored (an event); reactions that happened (a policy).
    pub count: i64,
    /// Of those, in the last hour of event time.
    pub last_hour: i64,
    /// 95th percentile of the time from the cause to this event.
    pub p95_from_cause_ms: Option<f64>,
    pub open_findings: i64,
    /// A policy whose reactions went missing (open `missing_reaction` findings).
    pub alarm: bool,
}

/// A count in at most five characters: `950`, `1.5k`, `12k`, `1.2M`.
pub fn compact(n: i64) -> String {
    let f = n as f64;
    match n.abs() {
        0..1_000 => n.to_string(),
        1_000..10_000 => format!("{:.1}k", f / 1e3),
        10_000..1_000_000 => format!("{:.0}k", f / 1e3),
        1_000_000..10_000_000 => format!("{:.1}M", f / 1e6),
        _ => format!("{:.0}M", f / 1e6),
    }
}

/// The board with `evidence[i]` drawn over `board.notes[i]`.
/// `reload`: whether this reader may reload the model from the page.
pub fn render(board: &Board, evidence: &[Option<NoteEvidence>], as_of: Option<&str>, reload: bool) -> Markup {
    let svg = causeway_canvas::render_board(board);
    let mut overlay = String::from("<g class=\"evidence\">\n");
    for (note, ev) in board.notes.iter().zip(evidence) {
        let Some(ev) = ev else { continue };
        let r = note.rect;
        let first = match note.kind {
            Kind::Policy => format!("{} reacted", compact(ev.count)),
            _ => format!("{} · {}/h", compact(ev.count), compact(ev.last_hour)),
        };
        let second = ev.p95_from_cause_ms.map(|p95| format!("p95 {}", format_ms(p95)));
        // Sized to stay legible with the board fitted to a window (about half its size), and no
        // wider than the note and its margin, so that neighbours' chips do not overlap.
        let lines = 1 + i64::from(second.is_some());
        let chip = html! {
            g.chip data-note=(note.id) data-count=(ev.count) data-last-hour=(ev.last_hour) data-open-findings=(ev.open_findings) data-alarm=(ev.alarm) {
                @if ev.alarm { rect.alarm x=(r.x - 5) y=(r.y - 5) width=(r.w + 10) height=(r.h + 10) rx="5" {} }
                rect.chip x=(r.x - 6) y=(r.y + r.h - 4) width=(r.w + 12) height=(lines * 20 + 6) rx="4" {}
                text x=(r.x) y=(r.y + r.h + 13) { (first) }
                @if let Some(second) = &second { text x=(r.x) y=(r.y + r.h + 33) { (second) } }
                @if ev.open_findings > 0 {
                    rect.alarm-chip x=(r.x + r.w - 44) y=(r.y - 14) width="56" height="26" rx="13" {}
                    text x=(r.x + r.w - 36) y=(r.y + 5) { "⚠ " (compact(ev.open_findings)) }
                }
            }
        };
        overlay.push_str(&chip.into_string());
        overlay.push('\n');
    }
    overlay.push_str("</g>\n");
    let svg = match svg.rfind("</svg>") {
        Some(end) => format!("{}{overlay}{}", &svg[..end], &svg[end..]),
        None => svg,
    };
    let alarms = evidence.iter().flatten().filter(|e| e.alarm).count();
    html! {
        h1 { "Canvas" span.sub { "the model, with what the estate did" } span.live-status { "live" } }
        p.muted {
            "Each note: events stored · in the last hour · p95 from their cause; ⚠ open findings. "
            @if alarms > 0 { strong { (alarms) " polic" (if alarms == 1 { "y is" } else { "ies are" }) " missing reactions (ringed in red)." } " " }
            @if let Some(t) = as_of { "Event time up to " (link::time(t)) "." }
        }
        div.actions-row {
            button type="button" data-zoom { "Actual size" } " "
            span.muted { "The board is fitted to the window; a note opens its panel below it. " }
            @if reload {
                form.inline data-api="/v1/model/reload" data-reload data-action="reload-model"
                    data-confirm="Reload the model from its file? Journeys are judged again from the stored events with the new model." {
                    button type="submit" { "Reload the model" }
                    pre.json.mono data-result hidden {}
                }
            }
        }
        div.canvas-board { (PreEscaped(svg)) }
        aside.note-panel.panel #note-panel aria-live="polite" {
            p.muted { "Choose a note to see its recent events and findings." }
        }
    }
}

/// The panel of one note: its evidence, recent events (envelopes) and open findings.
pub fn note_panel(kind: &str, name: &str, evidence: Option<&NoteEvidence>, recent: &[Value], findings: &[Value]) -> Markup {
    html! {
        div data-panel-note=(name) {
            h2 { (name) " " span.badge { (kind) } " " button type="button" data-close-panel aria-label="Close" { "×" } }
            @if let Some(ev) = evidence {
                p {
                    (thousands(ev.count)) " in all, " (thousands(ev.last_hour)) " in the last hour"
                    @if let Some(p95) = ev.p95_from_cause_ms { ", p95 " (format_ms(p95)) " from their cause" }
                    "."
                }
            }
            h2 { "Recent events" }
            @if recent.is_empty() { p.empty { "None stored." } }
            ul.tree {
                @for e in recent {
                    li { (link::event(s(e, "id"))) " " (link::time(s(e, "time"))) " " span.muted { (s(e, "source")) } }
                }
            }
            h2 { "Open findings" }
            (findings_table(findings))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fit_a_note() {
        assert_eq!(compact(950), "950");
        assert_eq!(compact(1_528), "1.5k");
        assert_eq!(compact(12_345), "12k");
        assert_eq!(compact(1_234_567), "1.2M");
        assert_eq!(compact(98_765_432), "99M");
    }
}
