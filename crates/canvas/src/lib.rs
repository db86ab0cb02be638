//! The event-storming canvas: the model (PRODUCT §3) drawn as the board a workshop would leave on
//! the wall — sticky notes in the conventional colours, one swimlane per bounded context, time
//! running left to right along the journeys.
//!
//! [`layout`] decides where every note and arrow goes; [`render_svg`] draws that as a standalone
//! SVG and [`render_html`] wraps it in a page with a title and a legend. `docs/canvas.md` describes
//! the layout rules for users.
//!
//! **Invariants:** pure (no IO, no clock); the same model gives byte-identical output; no two notes
//! overlap (each note has a grid cell of its own); every event of the model is drawn exactly once;
//! every line of text fits its note by the fixed DejaVu Sans metrics in `text`; the output loads no
//! external resource.

mod layout;
mod svg;
pub mod text;

use causeway_model::Model;

pub use layout::{Arrow, ArrowKind, Board, Kind, Lane, LaneKind, Note, Rect, format_duration, layout, steps};

/// The board as a standalone SVG document.
pub fn render_svg(model: &Model) -> String {
    svg::render(&layout(model), true)
}

/// A laid-out board as SVG to place in a page that has its own heading (natural size, no title
/// line): the live canvas of the web UI draws its evidence over this.
pub fn render_board(board: &Board) -> String {
    svg::render(board, false)
}

/// A standalone HTML page (no external resources) with a title, a legend and the board's SVG.
pub fn render_html(model: &Model) -> String {
    let board = layout(model);
    let title = svg::escape(&model.name);
    let mut legend = String::new();
    for kind in Kind::ALL {
        let (fill, edge) = kind.colours();
        legend.push_str(&format!(
            "<li data-kind=\"{}\"><span class=\"swatch\" style=\"background:{fill};border-color:{edge}\"></span>{}</li>\n",
            kind.as_str(),
            kind.label()
        ));
    }
    for (kind, style, text) in [
        (ArrowKind::Emits, "solid", "command emits event"),
        (ArrowKind::Triggers, "dashed", "event triggers policy"),
        (ArrowKind::Reaction, "solid", "policy expects event within its window"),
    ] {
        legend.push_str(&format!(
            "<li class=\"arrow-key\" data-kind=\"{}\"><span class=\"line\" style=\"border-top:2px {style} {}\"></span>{text}</li>\n",
            kind.as_str(),
            svg::arrow_colour(kind)
        ));
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — event-storming canvas · causeway</title>
<style>
body {{ margin: 0; background: #fbfbfc; color: #212529; font-family: {font}; }}
header {{ padding: 16px 16px 4px; }}
h1 {{ margin: 0 0 4px; font-size: 22px; }}
.summary {{ margin: 0 0 10px; color: #495057; font-size: 13px; }}
.legend {{ display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 0; padding: 0; list-style: none; font-size: 13px; }}
.legend li {{ display: flex; align-items: center; gap: 6px; }}
.swatch {{ display: inline-block; width: 16px; height: 16px; border: 1px solid; border-radius: 2px; }}
.line {{ display: inline-block; width: 22px; }}
main {{ overflow: auto; }}
main svg {{ display: block; }}
</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p class="summary">event-storming canvas · {summary} · hover a note for its details</p>
<ul class="legend">
{legend}</ul>
</header>
<main>
{svg}</main>
</body>
</html>
"#,
        font = svg::FONT_FAMILY,
        summary = svg::escape(&svg::summary(&board)),
        svg = svg::render(&board, false),
    )
}
