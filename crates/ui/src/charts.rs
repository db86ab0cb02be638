//! SVG charts drawn on the server: horizontal bars (counts by kind), columns over time (flows by
//! hour) and a trace waterfall (events on a time axis, with the gap from each cause). Colours
//! come from the stylesheet's classes, so they follow light and dark mode. Each chart carries its
//! numbers as `data-` attributes and `<title>`s, for readers, tooltips and tests.

use maud::{Markup, html};

/// One bar: its label, its value, the text shown beside it, and where a click goes.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub text: String,
    pub href: Option<String>,
    /// `""`, `"alt"` or `"bad"`.
    pub class: &'static str,
}

impl Bar {
    pub fn count(label: impl Into<String>, n: i64) -> Bar {
        Bar { label: label.into(), value: n as f64, text: crate::thousands(n), href: None, class: "" }
    }

    pub fn href(mut self, href: String) -> Bar {
        self.href = Some(href);
        self
    }

    pub fn class(mut self, class: &'static str) -> Bar {
        self.class = class;
        self
    }
}

const ROW: i64 = 22;
const LABEL_W: i64 = 150;
const BAR_W: i64 = 200;
const VALUE_W: i64 = 70;

/// Horizontal bars, longest value the full width; an empty list says so.
pub fn bars(name: &str, rows: &[Bar]) -> Markup {
    if rows.is_empty() {
        return html! { p.empty { "Nothing to show." } };
    }
    let max = rows.iter().map(|r| r.value).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let height = ROW * rows.len() as i64 + 4;
    let width = LABEL_W + BAR_W + VALUE_W;
    html! {
        svg.chart.bars xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(name) data-chart=(name)
            width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) {
            @for (i, r) in rows.iter().enumerate() {
                @let y = i as i64 * ROW + 2;
                @let w = ((r.value / max) * BAR_W as f64).round().max(if r.value > 0.0 { 2.0 } else { 0.0 });
                g data-label=(r.label) data-value=(r.value) {
                    title { (r.label) ": " (r.text) }
                    @let label = crate::link::short_label(&r.label, 24);
                    @if let Some(href) = &r.href {
                        a href=(href) { text.label x=(LABEL_W - 8) y=(y + 15) text-anchor="end" { (label) } }
                    } @else {
                        text.label x=(LABEL_W - 8) y=(y + 15) text-anchor="end" { (label) }
                    }
                    rect class=(format!("bar {}", r.class)) x=(LABEL_W) y=(y + 3) width=(w) height=(ROW - 8) rx="2" {}
                    text x=(LABEL_W as f64 + w + 6.0) y=(y + 15) { (r.text) }
                }
            }
        }
    }
}

/// One column group on a time axis: its label and one value per series.
#[derive(Debug, Clone)]
pub struct Column {
    pub label: String,
    pub values: Vec<f64>,
}

const COL_H: i64 = 140;
const AXIS_W: i64 = 44;

/// Columns over time, one group per bucket, one column per series (at most three, styled
/// `bar`, `bar alt`, `bar bad`), with a legend. `every` labels every n-th bucket.
pub fn columns(name: &str, series: &[&str], buckets: &[Column], every: usize) -> Markup {
    if buckets.is_empty() {
        return html! { p.empty { "Nothing to show." } };
    }
    let classes = ["bar", "bar alt", "bar bad"];
    let max = buckets.iter().flat_map(|b| b.values.iter().copied()).fold(0.0, f64::max);
    let scale = if max > 0.0 { COL_H as f64 / max } else { 0.0 };
    let group_w = (640 / buckets.len() as i64).clamp(8, 40);
    let col_w = ((group_w - 2) / series.len().max(1) as i64).max(2);
    let width = AXIS_W + group_w * buckets.len() as i64 + 8;
    let height = COL_H + 34;
    html! {
        svg.chart.columns xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(name) data-chart=(name)
            width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) {
            line.axis x1=(AXIS_W) y1=(COL_H + 4) x2=(width) y2=(COL_H + 4) {}
            text x=(AXIS_W - 6) y="12" text-anchor="end" { (crate::thousands(max.round() as i64)) }
            text x=(AXIS_W - 6) y=(COL_H + 4) text-anchor="end" { "0" }
            @for (i, b) in buckets.iter().enumerate() {
                @let x0 = AXIS_W + i as i64 * group_w + 2;
                g data-label=(b.label) data-values=(b.values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")) {
                    title { (b.label) ": " (series.iter().zip(&b.values).map(|(s, v)| format!("{s} {}", crate::thousands(*v as i64))).collect::<Vec<_>>().join(", ")) }
                    @for (k, v) in b.values.iter().enumerate() {
                        @let h = (v * scale).round();
                        rect class=(classes[k.min(2)]) x=(x0 + k as i64 * col_w) y=(COL_H as f64 + 4.0 - h) width=(col_w - 1) height=(h) {}
                    }
                    @if every > 0 && i % every == 0 {
                        text x=(x0) y=(COL_H + 20) { (b.label) }
                    }
                }
            }
        }
        div.legend {
            @for (k, s) in series.iter().enumerate() {
                span { i style=(format!("background: var(--{})", ["bar", "bar2", "bad"][k.min(2)])) {} (s) }
            }
        }
    }
}

/// One row of a waterfall: an event at `at_ms` (from the first event), caused by one at
/// `cause_ms` when known.
#[derive(Debug, Clone)]
pub struct Span {
    pub label: String,
    pub detail: String,
    pub href: String,
    pub depth: usize,
    pub at_ms: f64,
    pub cause_ms: Option<f64>,
}

const WF_LABEL_W: i64 = 220;
const WF_W: i64 = 760;
const WF_ROW: i64 = 22;

/// The trace waterfall: each event a mark on a shared time axis, the gap from its cause drawn as
/// a band, so where the time went shows at a glance.
pub fn waterfall(rows: &[Span]) -> Markup {
    if rows.is_empty() {
        return html! { p.empty { "No events." } };
    }
    let end = rows.iter().map(|r| r.at_ms).fold(0.0, f64::max).max(1.0);
    // Room on the right for the last event's text.
    let x = |ms: f64| WF_LABEL_W as f64 + (ms / end) * (WF_W - 220) as f64;
    let height = WF_ROW * rows.len() as i64 + 24;
    let width = WF_LABEL_W + WF_W;
    html! {
        svg.chart.waterfall xmlns="http://www.w3.org/2000/svg" role="img" aria-label="trace waterfall" data-chart="waterfall"
            width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) {
            line.axis x1=(WF_LABEL_W) y1="16" x2=(width - 10) y2="16" {}
            text.muted x=(WF_LABEL_W) y="12" { "0" }
            text.muted x=(x(end)) y="12" text-anchor="end" { (format_ms(end)) }
            @for (i, r) in rows.iter().enumerate() {
                @let y = 20 + i as i64 * WF_ROW;
                g data-event=(r.label) data-at-ms=(r.at_ms) {
                    title { (r.label) " at +" (format_ms(r.at_ms)) @if let Some(c) = r.cause_ms { ", " (format_ms(r.at_ms - c)) " after its cause" } }
                    a href=(r.href) { text x=(8 + 12 * r.depth as i64) y=(y + 15) { (crate::link::short_label(&r.label, 30)) } }
                    @if let Some(c) = r.cause_ms {
                        rect.gap x=(x(c)) y=(y + 6) width=((x(r.at_ms) - x(c)).max(1.0)) height="8" {}
                        text.muted x=(x(r.at_ms) + 8.0) y=(y + 15) { "+" (format_ms(r.at_ms - c)) " " (r.detail) }
                    } @else {
                        text.muted x=(x(r.at_ms) + 8.0) y=(y + 15) { (r.detail) }
                    }
                    rect.span x=(x(r.at_ms) - 2.0) y=(y + 3) width="5" height="14" rx="1" {}
                }
            }
        }
    }
}

/// Milliseconds as `850 ms`, `2.4 s`, `3.1 min`.
pub fn format_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 120_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{:.1} min", ms / 60_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_carry_their_numbers() {
        let svg = bars("by kind", &[Bar::count("missing_reaction", 8), Bar::count("stalled", 2).href("/x".into())]).into_string();
        assert!(svg.contains(r#"data-label="missing_reaction" data-value="8""#), "{svg}");
        assert!(svg.contains(r#"width="200""#), "the largest bar spans the width: {svg}");
        assert!(svg.contains(r#"width="50""#), "2 of 8 is a quarter: {svg}");
        assert!(svg.contains(r#"<a href="/x">"#));
        assert!(bars("none", &[]).into_string().contains("Nothing to show"));
    }

    #[test]
    fn columns_and_waterfall_place_values_on_their_axes() {
        let svg = columns("flow", &["in", "out"], &[Column { label: "10:00".into(), values: vec![4.0, 2.0] }], 1).into_string();
        assert!(svg.contains(r#"data-values="4,2""#), "{svg}");
        assert!(svg.contains(r#"height="140""#) && svg.contains(r#"height="70""#), "{svg}");
        let wf = waterfall(&[
            Span { label: "A".into(), detail: String::new(), href: "/events/a".into(), depth: 0, at_ms: 0.0, cause_ms: None },
            Span { label: "B".into(), detail: String::new(), href: "/events/b".into(), depth: 1, at_ms: 1500.0, cause_ms: Some(0.0) },
        ])
        .into_string();
        assert!(wf.contains("+1.5 s"), "{wf}");
        assert!(wf.contains(r#"data-at-ms="1500""#));
        assert_eq!(format_ms(850.0), "850 ms");
        assert_eq!(format_ms(186_000.0), "3.1 min");
    }
}
