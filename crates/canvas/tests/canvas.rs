//! The canvas, end to end from model text: the example model against a checked-in SVG snapshot
//! (`UPDATE_EXPECT=1 cargo test -p causeway-canvas` rewrites it; review the diff), and a generated
//! 40-event model whose board must have no overlapping notes and every event exactly once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use causeway_canvas::{Board, Kind, layout, render_html, render_svg, text};
use causeway_model::Model;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> Model {
    causeway_model::load(&repo().join("examples/order-fulfillment/model.yaml"))
        .into_result()
        .unwrap_or_else(|d| panic!("the example model loads: {d:?}"))
}

/// Compares `actual` with the file, or rewrites the file under `UPDATE_EXPECT=1`.
fn expect_file(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{} differs from the rendering (first at line {}); rerun with UPDATE_EXPECT=1 and review the diff\nexpected: {:?}\nactual:   {:?}",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

/// 4 contexts × 10 events, a command per event, a policy between consecutive events of the two
/// journeys, two journeys of 20 milestones each across the contexts, read models and externals.
fn forty_event_model() -> String {
    let contexts = ["sales", "billing", "warehouse", "shipping"];
    let mut y = String::from("name: forty\ncontexts:\n");
    for c in contexts {
        let _ = writeln!(y, "  {c}: {{owner: team-{c}, services: [{c}-service]}}");
    }
    y += "aggregates:\n";
    for c in contexts {
        let _ = writeln!(y, "  {}Record: {{context: {c}, key: /id}}", capitalize(c));
    }
    let event = |c: usize, i: usize| format!("{}Step{i}RecordedAndConfirmed", capitalize(contexts[c]));
    y += "commands:\n";
    for (c, context) in contexts.iter().enumerate() {
        for i in 0..10 {
            let _ = writeln!(
                y,
                "  Record{}Step{i}: {{context: {context}, actor: {context}-service, aggregate: {}Record, emits: [{}]}}",
                capitalize(context),
                capitalize(context),
                event(c, i)
            );
        }
    }
    y += "events:\n";
    for (c, context) in contexts.iter().enumerate() {
        for i in 0..10 {
            let _ = writeln!(y, "  {}: {{context: {context}, aggregate: {}Record, topic: {context}.events}}", event(c, i), capitalize(context),);
        }
    }
    // Journey A visits sales and billing step by step; journey B warehouse and shipping.
    let journey = |a: usize, b: usize| -> Vec<String> { (0..10).flat_map(|i| [event(a, i), event(b, i)]).collect() };
    let first = journey(0, 1);
    let second = journey(2, 3);
    y += "policies:\n";
    for (j, milestones) in [&first, &second].into_iter().enumerate() {
        for (k, pair) in milestones.windows(2).enumerate().filter(|(k, _)| k % 3 == 0) {
            let _ = writeln!(y, "  react-{j}-{k}: {{when: {}, then: [{}], within: {}s}}", pair[0], pair[1], 10 + k);
        }
    }
    y += "journeys:\n";
    for (name, milestones) in [("alpha", &first), ("beta", &second)] {
        let _ = writeln!(y, "  {name}:\n    key: /id\n    milestones: [{}]", milestones.join(", "));
        let _ = writeln!(y, "    outcomes:\n      done: [{}]", milestones.last().unwrap());
    }
    y += "read_models:\n  Overview:\n    key: /id\n    on:\n";
    let _ = writeln!(y, "      {}: {{merge: /}}", event(0, 0));
    y += "externals:\n";
    let _ = writeln!(y, "  Bank: {{produces: [{}]}}", event(1, 3));
    let _ = writeln!(y, "  Carrier: {{consumes: [{}]}}", event(3, 9));
    y
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// No two notes share any area; every line of every note's text fits inside it.
fn assert_no_overlap(board: &Board) {
    for (i, a) in board.notes.iter().enumerate() {
        for b in &board.notes[i + 1..] {
            assert!(!a.rect.overlaps(&b.rect), "{} {:?} overlaps {} {:?}", a.id, a.rect, b.id, b.rect);
        }
        assert!(a.rect.x >= 0 && a.rect.y >= 0 && a.rect.right() <= board.width && a.rect.bottom() <= board.height);
    }
}

/// Every `data-name` of an event note in the SVG, with how often it appears.
fn event_names_in(svg: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for piece in svg.split(r#"<g class="note event""#).skip(1) {
        let name = piece.split(r#"data-name=""#).nth(1).and_then(|r| r.split('"').next()).unwrap();
        *counts.entry(name.to_string()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn example_model_snapshot() {
    let svg = render_svg(&example());
    expect_file(&repo().join("crates/canvas/tests/snapshots/order-fulfillment.svg"), &svg);
}

/// Regression: the standalone SVG had a fixed pixel size, so a browser window showed only its
/// top-left corner. It scales to whatever holds it, keeping its proportions; inside the HTML page
/// it keeps its natural size (the page scrolls).
#[test]
fn the_standalone_svg_scales_to_its_window() {
    let model = example();
    let board = layout(&model);
    let root = |text: &str| text[text.find("<svg ").unwrap()..].split_once('>').unwrap().0.to_string();
    let svg = root(&render_svg(&model));
    for attribute in [
        r#"width="100%""#.to_string(),
        r#"height="100%""#.to_string(),
        r#"preserveAspectRatio="xMidYMid meet""#.to_string(),
        format!(r#"viewBox="0 0 {} {}""#, board.width, board.height),
    ] {
        assert!(svg.contains(&attribute), "{attribute} missing from {svg}");
    }
    let page = root(&render_html(&model));
    assert!(page.contains(&format!(r#"width="{}" height="{}""#, board.width, board.height)), "{page}");
}

#[test]
fn rendering_is_deterministic() {
    let model = example();
    assert_eq!(render_svg(&model), render_svg(&model));
    assert_eq!(render_html(&model), render_html(&example()));
}

#[test]
fn example_board_reads_left_to_right() {
    let model = example();
    let board = layout(&model);
    assert_no_overlap(&board);
    let x = |kind: Kind, name: &str| board.notes.iter().find(|n| n.kind == kind && n.name == name).unwrap_or_else(|| panic!("{name} drawn")).rect.x;
    // The journey's milestones, in order.
    let milestones = &model.journeys["order"].milestones;
    for pair in milestones.windows(2) {
        assert!(x(Kind::Event, &pair[0]) < x(Kind::Event, &pair[1]), "{} before {}", pair[0], pair[1]);
    }
    // Commands just left of what they emit; policies between `when` and `then`.
    for (name, command) in &model.commands {
        let first = &command.emits[0];
        assert!(x(Kind::Command, name) < x(Kind::Event, first), "{name} left of {first}");
    }
    for (name, policy) in &model.policies {
        assert!(x(Kind::Event, &policy.when) < x(Kind::Policy, name), "{name} right of {}", policy.when);
        for then in &policy.then {
            assert!(x(Kind::Policy, name) < x(Kind::Event, then), "{name} left of {then}");
        }
    }
    // Each event in its context's lane.
    for note in board.notes.iter().filter(|n| n.kind == Kind::Event) {
        assert_eq!(board.lanes[note.lane].title, model.events[&note.name].context);
    }
    let counts = event_names_in(&render_svg(&model));
    assert_eq!(counts.len(), model.events.len());
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[test]
fn forty_events_never_overlap_and_each_appears_once() {
    let loaded = causeway_model::load_str("forty.yaml", &forty_event_model());
    let model = loaded.into_result().unwrap_or_else(|d| panic!("{}", d.iter().map(|d| format!("{d}\n")).collect::<String>()));
    assert_eq!(model.events.len(), 40);
    let board = layout(&model);
    assert_no_overlap(&board);
    let events: Vec<&str> = board.notes.iter().filter(|n| n.kind == Kind::Event).map(|n| n.name.as_str()).collect();
    assert_eq!(events.len(), 40);
    for name in model.events.keys() {
        assert_eq!(events.iter().filter(|e| **e == name).count(), 1, "{name} once");
    }
    let counts = event_names_in(&render_svg(&model));
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|&n| n == 1));
    // Every milestone right of the one before it.
    for journey in model.journeys.values() {
        let xs: Vec<i64> =
            journey.milestones.iter().map(|m| board.notes.iter().find(|n| n.kind == Kind::Event && &n.name == m).unwrap().rect.x).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
    }
    // Ids are unique.
    let mut ids: Vec<&str> = board.notes.iter().map(|n| n.id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before);
}

#[test]
fn note_text_fits_its_note() {
    let loaded = causeway_model::load_str("forty.yaml", &forty_event_model());
    let model = loaded.into_result().unwrap();
    let svg = render_svg(&model);
    // Every name line (a tspan) of the notes, measured at its font size, fits the note's inside.
    for note in svg.split(r#"<text class="note-name" font-size=""#).skip(1) {
        let size: f64 = note.split('"').next().unwrap().parse().unwrap();
        for span in note.split("<tspan").skip(1) {
            let line = span.split('>').nth(1).unwrap().split('<').next().unwrap();
            assert!(text::width(line, size, true) <= 112.0, "{line:?} at {size}px");
        }
    }
}

#[test]
fn html_page_is_standalone() {
    let html = render_html(&example());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>order-fulfillment — event-storming canvas · causeway</title>"));
    for kind in Kind::ALL {
        assert!(html.contains(&format!("<li data-kind=\"{}\">", kind.as_str())), "legend has {}", kind.label());
    }
    assert_eq!(html.matches("<svg ").count(), 1);
    assert_eq!(event_names_in(&html).len(), 7);
    for external in ["src=", "href=", "@import", "<link", "<script", "url(http", "url(/"] {
        assert!(!html.contains(external), "no external resource: found {external}");
    }
}
