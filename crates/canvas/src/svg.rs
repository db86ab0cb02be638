//! Drawing a laid-out [`Board`] as SVG text, by hand: rectangles, text and polylines, integer
//! coordinates, no scripts and no external resources.

use std::fmt::Write as _;

use crate::layout::{ArrowKind, Board, Kind, LANE_LABEL_W, Lane, LaneKind, MARGIN, Note};
use crate::text::{self, ASCENT_EM, LINE_BOX_EM, LINE_HEIGHT_EM};

/// The fonts the canvas asks for; the text metrics are DejaVu Sans'.
pub const FONT_FAMILY: &str = "'DejaVu Sans', Verdana, sans-serif";

/// Padding inside a note.
const PAD: f64 = 8.0;
/// Size of the small header and footer lines of a note.
const SMALL: f64 = 10.0;
/// Font sizes tried for a note's name, largest first.
const NAME_SIZES: [f64; 5] = [14.0, 13.0, 12.0, 11.0, 10.0];

const INK: &str = "#212529";
const MUTED: &str = "#495057";

pub fn arrow_colour(kind: ArrowKind) -> &'static str {
    match kind {
        ArrowKind::Emits => "#3d5a80",
        ArrowKind::Triggers | ArrowKind::Reaction => "#7048b0",
    }
}

/// Escapes text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn px(v: f64) -> i64 {
    v.round() as i64
}

/// One line of summary: `5 contexts · 7 events · …`.
pub fn summary(board: &Board) -> String {
    let count = |kind: Kind| {
        let mut names: Vec<&str> = board.notes.iter().filter(|n| n.kind == kind).map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    };
    let contexts = board.lanes.iter().filter(|l| l.kind == LaneKind::Context).count();
    let parts = [
        (contexts, "context"),
        (count(Kind::Event), "event"),
        (count(Kind::Command), "command"),
        (count(Kind::Aggregate), "aggregate"),
        (count(Kind::Policy), "policy"),
        (count(Kind::ReadModel), "read model"),
        (count(Kind::External), "external system"),
    ];
    parts
        .iter()
        .map(|(n, word)| {
            let plural = if *n == 1 {
                (*word).to_string()
            } else if let Some(stem) = word.strip_suffix('y') {
                format!("{stem}ies")
            } else {
                format!("{word}s")
            };
            format!("{n} {plural}")
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The board as SVG. `standalone` adds the title and summary line at the top, which a page that
/// has its own heading leaves out.
pub fn render(board: &Board, standalone: bool) -> String {
    let (w, h) = (board.width, board.height);
    // A standalone document scales the whole board into the window that opens it; inside the
    // HTML page it keeps its natural size and the page scrolls.
    let size = if standalone {
        r#"width="100%" height="100%" preserveAspectRatio="xMidYMid meet""#.to_string()
    } else {
        format!(r#"width="{w}" height="{h}""#)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="causeway-canvas" {size} viewBox="0 0 {w} {h}" font-family="{}" data-model="{}">"#,
        escape(FONT_FAMILY),
        escape(&board.title)
    );
    let _ = writeln!(out, "<title>{} — event-storming canvas</title>", escape(&board.title));
    out.push_str("<defs>\n");
    for kind in [ArrowKind::Emits, ArrowKind::Reaction] {
        let _ = writeln!(
            out,
            r#"<marker id="arrow-{}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{}"/></marker>"#,
            kind.as_str(),
            arrow_colour(kind)
        );
    }
    out.push_str(r##"<filter id="shadow" x="-10%" y="-10%" width="130%" height="130%"><feDropShadow dx="1" dy="2" stdDeviation="1.5" flood-color="#000000" flood-opacity="0.22"/></filter>"##);
    out.push_str("\n</defs>\n");
    let _ = writeln!(out, r##"<rect class="background" x="0" y="0" width="{w}" height="{h}" fill="#fbfbfc"/>"##);
    if standalone {
        let _ = writeln!(
            out,
            r#"<text class="board-title" x="{MARGIN}" y="34" font-size="22" font-weight="bold" fill="{INK}">{}</text>"#,
            escape(&text::ellipsize(&board.title, 22.0, true, (w - 2 * MARGIN) as f64 / 2.0))
        );
        let _ = writeln!(
            out,
            r#"<text class="board-summary" x="{MARGIN}" y="54" font-size="12" fill="{MUTED}">{}</text>"#,
            escape(&format!("event-storming canvas · {}", summary(board)))
        );
    }
    let _ = writeln!(
        out,
        r#"<text class="time-axis" x="{}" y="54" font-size="12" text-anchor="end" fill="{MUTED}">time, along the journeys →</text>"#,
        w - MARGIN
    );

    out.push_str("<g class=\"lanes\">\n");
    let mut context_index = 0;
    for lane in &board.lanes {
        let fill = match lane.kind {
            LaneKind::Context => {
                context_index += 1;
                if context_index % 2 == 1 { "#f1f3f5" } else { "#e9ecef" }
            }
            LaneKind::Externals => "#fbeff4",
            LaneKind::ReadModels => "#eff7ec",
        };
        draw_lane(&mut out, lane, fill);
    }
    out.push_str("</g>\n");

    out.push_str("<g class=\"arrows\">\n");
    for arrow in &board.arrows {
        let d: Vec<String> = arrow.points.iter().enumerate().map(|(i, (x, y))| format!("{}{x} {y}", if i == 0 { "M" } else { "L" })).collect();
        let marker = if arrow.kind == ArrowKind::Emits { "emits" } else { "reaction" };
        let dash = if arrow.kind == ArrowKind::Triggers { r#" stroke-dasharray="4 3""# } else { "" };
        let _ = writeln!(
            out,
            r#"<path class="arrow {}" data-from="{}" data-to="{}" d="{}" fill="none" stroke="{}" stroke-width="1.6" stroke-linejoin="round"{dash} marker-end="url(#arrow-{marker})"/>"#,
            arrow.kind.as_str(),
            escape(&board.notes[arrow.from].id),
            escape(&board.notes[arrow.to].id),
            d.join(" "),
            arrow_colour(arrow.kind),
        );
    }
    out.push_str("</g>\n");

    out.push_str("<g class=\"notes\">\n");
    for note in &board.notes {
        draw_note(&mut out, note);
    }
    out.push_str("</g>\n");

    out.push_str("<g class=\"arrow-labels\">\n");
    for arrow in &board.arrows {
        if let Some((label, x, y)) = &arrow.label {
            let _ = writeln!(
                out,
                r##"<text class="arrow-label" x="{x}" y="{y}" font-size="10" fill="{}" stroke="#fbfbfc" stroke-width="3" paint-order="stroke">{}</text>"##,
                arrow_colour(arrow.kind),
                escape(label)
            );
        }
    }
    out.push_str("</g>\n</svg>\n");
    out
}

fn draw_lane(out: &mut String, lane: &Lane, fill: &str) {
    let r = lane.rect;
    let kind = match lane.kind {
        LaneKind::Context => "context",
        LaneKind::Externals => "externals",
        LaneKind::ReadModels => "read-models",
    };
    let _ = writeln!(
        out,
        r#"<g class="lane {kind}" id="lane-{}" data-kind="{kind}" data-name="{}">"#,
        escape(&crate::layout::sanitize(&lane.title)),
        escape(&lane.title)
    );
    let _ = writeln!(out, r#"<rect x="{}" y="{}" width="{}" height="{}" rx="6" fill="{fill}"/>"#, r.x, r.y, r.w, r.h);
    let _ = writeln!(out, r##"<rect x="{}" y="{}" width="{LANE_LABEL_W}" height="{}" rx="6" fill="#000000" fill-opacity="0.05"/>"##, r.x, r.y, r.h);
    let x = r.x + 14;
    let max_w = (LANE_LABEL_W - 28) as f64;
    let mut y = r.y as f64 + 14.0;
    let title = text::fit(&lane.title, max_w, 56.0, &[16.0, 14.0, 12.0], true);
    for line in &title.lines {
        y += title.size * LINE_HEIGHT_EM;
        let _ = writeln!(
            out,
            r#"<text class="lane-title" x="{x}" y="{}" font-size="{}" font-weight="bold" fill="{INK}">{}</text>"#,
            px(y),
            title.size,
            escape(line)
        );
    }
    let mut small = Vec::new();
    if let Some(subtitle) = &lane.subtitle {
        small.push(("lane-owner", subtitle.clone()));
    }
    for service in &lane.services {
        small.push(("lane-service", format!("· {service}")));
    }
    y += 6.0;
    let bottom = (r.y + r.h) as f64 - 10.0;
    let room = text::max_lines(11.0, bottom - y);
    let total = small.len();
    for (i, (class, line)) in small.into_iter().enumerate() {
        if i >= room {
            break;
        }
        let line = if i + 1 == room && total > room { format!("+{} more", total - i) } else { line };
        y += 11.0 * LINE_HEIGHT_EM + if i == 0 { 0.0 } else { 1.0 };
        let _ = writeln!(
            out,
            r#"<text class="{class}" x="{x}" y="{}" font-size="11" fill="{MUTED}">{}</text>"#,
            px(y),
            escape(&text::ellipsize(&line, 11.0, false, max_w))
        );
    }
    out.push_str("</g>\n");
}

fn draw_note(out: &mut String, note: &Note) {
    let r = note.rect;
    let (fill, edge) = note.kind.colours();
    let kind = note.kind.as_str();
    let _ = writeln!(out, r#"<g class="note {kind}" id="{}" data-kind="{kind}" data-name="{}">"#, escape(&note.id), escape(&note.name));
    let _ = writeln!(out, "<title>{}</title>", escape(&note.tooltip));
    let _ = writeln!(
        out,
        r#"<rect class="sticky" x="{}" y="{}" width="{}" height="{}" rx="2" fill="{fill}" stroke="{edge}" stroke-width="1" filter="url(#shadow)"/>"#,
        r.x, r.y, r.w, r.h
    );
    let inner = r.w as f64 - 2.0 * PAD;
    let cx = r.center_x();
    let mut top = r.y as f64 + PAD;
    let mut bottom = (r.y + r.h) as f64 - PAD;
    if let Some(header) = &note.header {
        let style = if note.kind == Kind::Command { r#" font-style="italic""# } else { "" };
        let _ = writeln!(
            out,
            r#"<text class="note-header" x="{cx}" y="{}" font-size="{SMALL}" text-anchor="middle" fill="{MUTED}"{style}>{}</text>"#,
            px(top + SMALL * ASCENT_EM + 1.0),
            escape(&text::ellipsize(header, SMALL, false, inner))
        );
        top += SMALL * LINE_BOX_EM + 3.0;
    }
    if let Some(footer) = &note.footer {
        let _ = writeln!(
            out,
            r#"<text class="note-footer" x="{cx}" y="{}" font-size="{SMALL}" text-anchor="middle" fill="{MUTED}">{}</text>"#,
            px(bottom - SMALL * (LINE_BOX_EM - ASCENT_EM) - 1.0),
            escape(&text::ellipsize(footer, SMALL, false, inner))
        );
        bottom -= SMALL * LINE_BOX_EM + 3.0;
    }
    let fitted = text::fit(&note.name, inner, bottom - top, &NAME_SIZES, true);
    let size = fitted.size;
    let block = (fitted.lines.len().max(1) - 1) as f64 * LINE_HEIGHT_EM * size + LINE_BOX_EM * size;
    let first = top + ((bottom - top) - block) / 2.0 + ASCENT_EM * size;
    let _ = write!(out, r#"<text class="note-name" font-size="{size}" font-weight="bold" text-anchor="middle" fill="{INK}">"#);
    for (i, line) in fitted.lines.iter().enumerate() {
        let y = first + i as f64 * LINE_HEIGHT_EM * size;
        let _ = write!(out, r#"<tspan x="{cx}" y="{}">{}</tspan>"#, px(y), escape(line));
    }
    out.push_str("</text>\n</g>\n");
}
