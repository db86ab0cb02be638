//! The board as geometry: which note sits in which lane, column and row, and the arrows between
//! them. Rendering (SVG, HTML) only draws what this decides.
//!
//! The board is a grid. Each bounded context is a horizontal lane; read models and external systems
//! have a lane each at the bottom. Time runs left to right in *steps*: an event's step comes from the
//! journeys (each milestone one step after the previous one, an outcome at least one step after the
//! first milestone), from the policies (a `then` event at least one step after its `when` event)
//! and from the commands (events emitted by one command never left of its first one). Every step has
//! four columns: aggregate, command, event, policy. A cell holds at most one note, so notes cannot
//! overlap; columns that hold no note anywhere are dropped.
//!
//! Arrows run in the gutters between cells: from the right edge of their source, along the vertical
//! gutter next to it, then either straight into the left edge of a target in the next column, or
//! along the horizontal gutter above the target and down into its top edge. They never cross a
//! note.

use std::collections::{HashMap, HashSet};

use causeway_model::Model;

/// Width of a sticky note, px.
pub const NOTE_W: i64 = 128;
/// Height of a sticky note, px.
pub const NOTE_H: i64 = 96;
/// Gap between two notes side by side: the vertical gutter arrows run in.
pub const GUTTER_X: i64 = 40;
/// Gap between two notes one above the other: the horizontal gutter arrows and their labels run in.
pub const GUTTER_Y: i64 = 56;
pub const CELL_W: i64 = NOTE_W + GUTTER_X;
pub const CELL_H: i64 = NOTE_H + GUTTER_Y;
/// Width of the lane labels on the left.
pub const LANE_LABEL_W: i64 = 196;
/// Room above the first lane for the board's title.
pub const HEADER_H: i64 = 64;
/// Space between two lanes.
pub const LANE_GAP: i64 = 16;
pub const MARGIN: i64 = 16;

/// What a sticky note stands for; decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Event,
    Command,
    Aggregate,
    Policy,
    ReadModel,
    External,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Event, Kind::Command, Kind::Aggregate, Kind::Policy, Kind::ReadModel, Kind::External];

    /// The stable name used in `class`, `data-kind` and `id`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Command => "command",
            Kind::Aggregate => "aggregate",
            Kind::Policy => "policy",
            Kind::ReadModel => "read-model",
            Kind::External => "external",
        }
    }

    /// What the legend calls it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Event => "Domain event",
            Kind::Command => "Command",
            Kind::Aggregate => "Aggregate",
            Kind::Policy => "Policy",
            Kind::ReadModel => "Read model",
            Kind::External => "External system",
        }
    }

    /// Sticky-note colour (fill) and its darker edge, the event-storming conventions.
    pub fn colours(self) -> (&'static str, &'static str) {
        match self {
            Kind::Event => ("#ffb366", "#d9822b"),
            Kind::Command => ("#8ecbff", "#3b8fd9"),
            Kind::Aggregate => ("#ffe873", "#cfb52e"),
            Kind::Policy => ("#d7c4f5", "#9a7fcf"),
            Kind::ReadModel => ("#b5e8a8", "#5fae4c"),
            Kind::External => ("#ffbfd9", "#e0709e"),
        }
    }
}

/// An axis-aligned rectangle in board pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

impl Rect {
    /// True when the two rectangles share any area (touching edges do not count).
    pub fn overlaps(&self, other: &Rect) -> bool {
        self.x < other.x + other.w && other.x < self.x + self.w && self.y < other.y + other.h && other.y < self.y + self.h
    }

    pub fn right(&self) -> i64 {
        self.x + self.w
    }

    pub fn bottom(&self) -> i64 {
        self.y + self.h
    }

    pub fn center_x(&self) -> i64 {
        self.x + self.w / 2
    }

    pub fn center_y(&self) -> i64 {
        self.y + self.h / 2
    }
}

/// One sticky note.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub kind: Kind,
    /// The model name (`OrderCreated`).
    pub name: String,
    /// Unique on the board: `event-OrderCreated`; an aggregate drawn again further right gets `-2`, `-3`…
    pub id: String,
    pub lane: usize,
    /// Grid column and row within the lane.
    pub column: usize,
    pub row: usize,
    pub rect: Rect,
    /// Small line above the name (the actor of a command, the journey step of an event).
    pub header: Option<String>,
    /// Small line below the name (topic, window, key…).
    pub footer: Option<String>,
    /// Details shown on hover.
    pub tooltip: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneKind {
    Context,
    Externals,
    ReadModels,
}

/// A horizontal swimlane.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub kind: LaneKind,
    /// The context name, or the area's title.
    pub title: String,
    /// `owner: team-…`, when known.
    pub subtitle: Option<String>,
    pub services: Vec<String>,
    pub rows: usize,
    pub rect: Rect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrowKind {
    /// A command emits an event.
    Emits,
    /// An event triggers a policy.
    Triggers,
    /// A policy expects an event within its window.
    Reaction,
}

impl ArrowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArrowKind::Emits => "emits",
            ArrowKind::Triggers => "triggers",
            ArrowKind::Reaction => "reaction",
        }
    }
}

/// An arrow between two notes (indexes into [`Board::notes`]), as an orthogonal polyline.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrow {
    pub kind: ArrowKind,
    pub from: usize,
    pub to: usize,
    pub points: Vec<(i64, i64)>,
    /// Text and the point its baseline starts at (`within 30s`).
    pub label: Option<(String, i64, i64)>,
}

/// The laid-out board.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub title: String,
    pub width: i64,
    pub height: i64,
    pub columns: usize,
    pub lanes: Vec<Lane>,
    pub notes: Vec<Note>,
    pub arrows: Vec<Arrow>,
}

/// The four columns of a step, left to right.
const SLOT_AGGREGATE: usize = 0;
const SLOT_COMMAND: usize = 1;
const SLOT_EVENT: usize = 2;
const SLOT_POLICY: usize = 3;
const SLOTS: usize = 4;

fn column(step: usize, slot: usize) -> usize {
    step * SLOTS + slot
}

/// The step of every event, by its index in `model.events`, numbered densely from 0.
pub fn steps(model: &Model) -> Vec<usize> {
    let index: HashMap<&str, usize> = model.events.keys().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let at = |name: &String| index.get(name.as_str()).copied();
    // (from, to, minimum distance in steps)
    let mut edges: Vec<(usize, usize, usize)> = Vec::new();
    for journey in model.journeys.values() {
        let milestones: Vec<usize> = journey.milestones.iter().filter_map(at).collect();
        for pair in milestones.windows(2) {
            edges.push((pair[0], pair[1], 1));
        }
        if let Some(&first) = milestones.first() {
            for event in journey.outcomes.values().flatten().filter_map(at) {
                if !milestones.contains(&event) {
                    edges.push((first, event, 1));
                }
            }
        }
    }
    for policy in model.policies.values() {
        if let Some(when) = at(&policy.when) {
            for then in policy.then.iter().filter_map(at) {
                edges.push((when, then, 1));
            }
        }
    }
    for command in model.commands.values() {
        let emits: Vec<usize> = command.emits.iter().filter_map(at).collect();
        for &other in emits.iter().skip(1) {
            edges.push((emits[0], other, 0));
        }
    }
    edges.retain(|(from, to, _)| from != to);
    // Longest paths by relaxation; a cycle (a model that contradicts itself) stops after n rounds.
    let n = model.events.len();
    let mut step = vec![0usize; n];
    for _ in 0..=n {
        let mut changed = false;
        for &(from, to, distance) in &edges {
            if step[to] < step[from] + distance {
                step[to] = step[from] + distance;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut distinct: Vec<usize> = step.clone();
    distinct.sort_unstable();
    distinct.dedup();
    step.iter().map(|s| distinct.binary_search(s).expect("a step of the list")).collect()
}

/// Event indexes in journey order: each journey's milestones, then its outcomes, then the events no
/// journey names, in file order.
fn journey_order(model: &Model) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::new();
    let mut seen = HashSet::new();
    let names = model.journeys.values().flat_map(|j| j.milestones.iter().chain(j.outcomes.values().flatten())).chain(model.events.keys());
    for name in names {
        if let Some(i) = model.events.get_index_of(name)
            && seen.insert(i)
        {
            order.push(i);
        }
    }
    order
}

/// Where notes go while the grid is filled: the next free row of each (lane, column).
#[derive(Default)]
struct Grid {
    next_free: HashMap<(usize, usize), usize>,
}

impl Grid {
    /// The first free row at or below `preferred`; rows only grow, so every cell is used once.
    fn take(&mut self, lane: usize, column: usize, preferred: usize) -> usize {
        let next = self.next_free.entry((lane, column)).or_insert(0);
        let row = (*next).max(preferred);
        *next = row + 1;
        row
    }

    fn rows(&self, lane: usize) -> usize {
        self.next_free.iter().filter(|((l, _), _)| *l == lane).map(|(_, rows)| *rows).max().unwrap_or(0).max(1)
    }
}

struct Placed {
    kind: Kind,
    name: String,
    lane: usize,
    column: usize,
    row: usize,
    header: Option<String>,
    footer: Option<String>,
    tooltip: String,
}

pub use causeway_model::format_duration;

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Lays the model out as a board. Deterministic: the same model gives the same board.
pub fn layout(model: &Model) -> Board {
    // Lanes: the contexts in file order, then any context named but not declared.
    let mut lane_names: Vec<String> = model.contexts.keys().cloned().collect();
    let named = model
        .aggregates
        .values()
        .map(|a| &a.context)
        .chain(model.commands.values().map(|c| &c.context))
        .chain(model.events.values().map(|e| &e.context));
    for context in named {
        if !lane_names.contains(context) {
            lane_names.push(context.clone());
        }
    }
    if lane_names.is_empty() && !model.policies.is_empty() {
        lane_names.push("(no context)".to_string());
    }
    let lane_of = |context: &str| lane_names.iter().position(|n| n == context).unwrap_or(0);
    let externals_lane = (!model.externals.is_empty()).then_some(lane_names.len());
    let read_models_lane = (!model.read_models.is_empty()).then(|| lane_names.len() + usize::from(externals_lane.is_some()));

    let step = steps(model);
    let order = journey_order(model);
    let mut by_time: Vec<usize> = order.clone();
    by_time.sort_by_key(|&e| step[e]); // stable: journey order within a step
    let first_step =
        |names: &mut dyn Iterator<Item = &String>| names.filter_map(|n| model.events.get_index_of(n)).map(|i| step[i]).min().unwrap_or(0);

    // Where each event sits in the journeys, for its header.
    let journey_place = |event: &str| -> Option<String> {
        model.journeys.iter().find_map(|(name, j)| {
            let milestone = j.milestones.iter().position(|m| m == event).map(|i| format!("{name} #{}", i + 1));
            let outcome = j.outcomes.iter().find(|(_, evs)| evs.iter().any(|e| e == event)).map(|(o, _)| o.clone());
            match (milestone, outcome) {
                (Some(m), Some(o)) => Some(format!("{m} · {o}")),
                (Some(m), None) => Some(m),
                (None, Some(o)) => Some(format!("{name}: {o}")),
                (None, None) => None,
            }
        })
    };

    let mut grid = Grid::default();
    let mut placed: Vec<Placed> = Vec::new();
    let mut event_note: HashMap<&str, usize> = HashMap::new();
    let mut command_note: HashMap<&str, usize> = HashMap::new();
    let mut policy_note: HashMap<&str, usize> = HashMap::new();
    let mut aggregate_at: HashSet<(&str, usize)> = HashSet::new();

    for &e in &by_time {
        let (name, event) = model.events.get_index(e).expect("an event index");
        let lane = lane_of(&event.context);
        let s = step[e];
        let row = grid.take(lane, column(s, SLOT_EVENT), 0);
        let mut tooltip = format!("Domain event {name}\ncontext: {}", event.context);
        if let Some(a) = &event.aggregate {
            tooltip += &format!("\naggregate: {a}");
        }
        if let Some(t) = &event.topic {
            tooltip += &format!("\ntopic: {t}");
        }
        let versions: Vec<String> = event.versions.keys().map(u32::to_string).collect();
        if !versions.is_empty() {
            tooltip += &format!("\nschema versions: {}", versions.join(", "));
        }
        if !event.pii.is_empty() {
            tooltip += &format!("\npii: {}", event.pii.join(", "));
        }
        event_note.insert(name, placed.len());
        placed.push(Placed {
            kind: Kind::Event,
            name: name.clone(),
            lane,
            column: column(s, SLOT_EVENT),
            row,
            header: journey_place(name),
            footer: event.topic.as_ref().map(|t| format!("topic {t}")),
            tooltip,
        });

        for (command_name, command) in &model.commands {
            if command_note.contains_key(command_name.as_str()) || !command.emits.iter().any(|x| x == name) {
                continue;
            }
            let command_lane = lane_of(&command.context);
            let preferred = if command_lane == lane { row } else { 0 };
            let command_row = grid.take(command_lane, column(s, SLOT_COMMAND), preferred);
            let mut tooltip = format!("Command {command_name}\ncontext: {}", command.context);
            if let Some(a) = &command.actor {
                tooltip += &format!("\nactor: {a}");
            }
            if let Some(a) = &command.aggregate {
                tooltip += &format!("\naggregate: {a}");
            }
            tooltip += &format!("\nemits: {}", command.emits.join(", "));
            command_note.insert(command_name, placed.len());
            placed.push(Placed {
                kind: Kind::Command,
                name: command_name.clone(),
                lane: command_lane,
                column: column(s, SLOT_COMMAND),
                row: command_row,
                header: command.actor.clone(),
                footer: None,
                tooltip,
            });
        }

        if let Some((aggregate_name, aggregate)) = event.aggregate.as_ref().and_then(|a| model.aggregates.get_key_value(a))
            && aggregate_at.insert((aggregate_name.as_str(), s))
        {
            let aggregate_lane = lane_of(&aggregate.context);
            let preferred = if aggregate_lane == lane { row } else { 0 };
            let aggregate_row = grid.take(aggregate_lane, column(s, SLOT_AGGREGATE), preferred);
            placed.push(aggregate_note(aggregate_name, aggregate, aggregate_lane, column(s, SLOT_AGGREGATE), aggregate_row));
        }

        for (policy_name, policy) in model.policies.iter().filter(|(_, p)| &p.when == name) {
            let policy_row = grid.take(lane, column(s, SLOT_POLICY), row);
            policy_note.insert(policy_name, placed.len());
            placed.push(policy_placed(policy_name, policy, lane, column(s, SLOT_POLICY), policy_row));
        }
    }

    // What no event placed: commands that emit nothing known, aggregates without events, policies
    // on unknown events. They go to the first step of their lane.
    for (name, command) in &model.commands {
        if !command_note.contains_key(name.as_str()) {
            let lane = lane_of(&command.context);
            let row = grid.take(lane, column(0, SLOT_COMMAND), 0);
            command_note.insert(name, placed.len());
            placed.push(Placed {
                kind: Kind::Command,
                name: name.clone(),
                lane,
                column: column(0, SLOT_COMMAND),
                row,
                header: command.actor.clone(),
                footer: None,
                tooltip: format!("Command {name}\ncontext: {}", command.context),
            });
        }
    }
    for (name, aggregate) in &model.aggregates {
        if !aggregate_at.iter().any(|(a, _)| *a == name) {
            let lane = lane_of(&aggregate.context);
            let row = grid.take(lane, column(0, SLOT_AGGREGATE), 0);
            placed.push(aggregate_note(name, aggregate, lane, column(0, SLOT_AGGREGATE), row));
        }
    }
    for (name, policy) in &model.policies {
        if !policy_note.contains_key(name.as_str()) {
            let row = grid.take(0, column(0, SLOT_POLICY), 0);
            policy_note.insert(name, placed.len());
            placed.push(policy_placed(name, policy, 0, column(0, SLOT_POLICY), row));
        }
    }

    // External systems and read models: their own lanes, under the step of the first event they
    // relate to.
    if let Some(lane) = externals_lane {
        for (name, external) in &model.externals {
            let s = first_step(&mut external.produces.iter().chain(&external.consumes));
            let row = grid.take(lane, column(s, SLOT_EVENT), 0);
            let footer = match (external.produces.len(), external.consumes.len()) {
                (0, c) => format!("consumes {}", plural(c, "event")),
                (p, 0) => format!("produces {}", plural(p, "event")),
                (p, c) => format!("produces {p} · consumes {c}"),
            };
            let mut tooltip = format!("External system {name}");
            if !external.produces.is_empty() {
                tooltip += &format!("\nproduces: {}", external.produces.join(", "));
            }
            if !external.consumes.is_empty() {
                tooltip += &format!("\nconsumes: {}", external.consumes.join(", "));
            }
            placed.push(Placed {
                kind: Kind::External,
                name: name.clone(),
                lane,
                column: column(s, SLOT_EVENT),
                row,
                header: None,
                footer: Some(footer),
                tooltip,
            });
        }
    }
    if let Some(lane) = read_models_lane {
        for (name, read_model) in &model.read_models {
            let s = first_step(&mut read_model.on.keys());
            let row = grid.take(lane, column(s, SLOT_EVENT), 0);
            let on: Vec<&str> = read_model.on.keys().map(String::as_str).collect();
            placed.push(Placed {
                kind: Kind::ReadModel,
                name: name.clone(),
                lane,
                column: column(s, SLOT_EVENT),
                row,
                header: Some(format!("key {}", read_model.key.as_str())),
                footer: Some(format!("on {}", plural(on.len(), "event"))),
                tooltip: format!("Read model {name}\nkey: {}\non: {}", read_model.key.as_str(), on.join(", ")),
            });
        }
    }

    // Drop the columns nobody uses.
    let mut used: Vec<usize> = placed.iter().map(|p| p.column).collect();
    used.sort_unstable();
    used.dedup();
    let dense = |c: usize| used.binary_search(&c).expect("a used column");
    let columns = used.len().max(1);

    // Lanes, top to bottom.
    let mut lanes = Vec::new();
    let mut y = HEADER_H;
    let width = MARGIN + LANE_LABEL_W + columns as i64 * CELL_W + MARGIN;
    let lane_count = lane_names.len() + usize::from(externals_lane.is_some()) + usize::from(read_models_lane.is_some());
    for lane in 0..lane_count {
        let rows = grid.rows(lane);
        let rect = Rect { x: MARGIN, y, w: width - 2 * MARGIN, h: rows as i64 * CELL_H };
        let (kind, title, subtitle, services) = if Some(lane) == externals_lane {
            (LaneKind::Externals, "External systems".to_string(), None, Vec::new())
        } else if Some(lane) == read_models_lane {
            (LaneKind::ReadModels, "Read models".to_string(), None, Vec::new())
        } else {
            let name = lane_names.get(lane).expect("a context lane");
            let context = model.contexts.get(name);
            let owner = context.and_then(|c| c.owner.as_ref()).map(|o| format!("owner: {o}"));
            let services = context.map(|c| c.services.clone()).unwrap_or_default();
            (LaneKind::Context, name.clone(), owner, services)
        };
        lanes.push(Lane { kind, title, subtitle, services, rows, rect });
        y += rect.h + LANE_GAP;
    }
    let height = y - LANE_GAP + MARGIN;

    let grid_x = MARGIN + LANE_LABEL_W;
    let mut notes: Vec<Note> = Vec::with_capacity(placed.len());
    let mut ids: HashSet<String> = HashSet::new();
    for p in placed {
        let column = dense(p.column);
        let rect = Rect {
            x: grid_x + column as i64 * CELL_W + GUTTER_X / 2,
            y: lanes[p.lane].rect.y + p.row as i64 * CELL_H + GUTTER_Y / 2,
            w: NOTE_W,
            h: NOTE_H,
        };
        let base = format!("{}-{}", p.kind.as_str(), sanitize(&p.name));
        let mut id = base.clone();
        let mut n = 2;
        while !ids.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        notes.push(Note {
            kind: p.kind,
            name: p.name,
            id,
            lane: p.lane,
            column,
            row: p.row,
            rect,
            header: p.header,
            footer: p.footer,
            tooltip: p.tooltip,
        });
    }

    // Arrows: commands to what they emit, events to their policies, policies to their reactions.
    let mut arrows = Vec::new();
    for (name, command) in &model.commands {
        let Some(&from) = command_note.get(name.as_str()) else { continue };
        for (k, event) in command.emits.iter().enumerate() {
            if let Some(&to) = event_note.get(event.as_str()) {
                let points = route(&notes[from], &notes[to], offset(k));
                arrows.push(Arrow { kind: ArrowKind::Emits, from, to, points, label: None });
            }
        }
    }
    let mut reactions = 0;
    for (name, policy) in &model.policies {
        let Some(&note) = policy_note.get(name.as_str()) else { continue };
        if let Some(&from) = event_note.get(policy.when.as_str()) {
            let points = route(&notes[from], &notes[note], 0);
            arrows.push(Arrow { kind: ArrowKind::Triggers, from, to: note, points, label: None });
        }
        for then in &policy.then {
            if let Some(&to) = event_note.get(then.as_str()) {
                let points = route(&notes[note], &notes[to], offset(reactions));
                reactions += 1;
                // In the horizontal gutter above the target: right of the drop, or over its left edge.
                let (x, y) = if points.len() == 5 {
                    (points[3].0 + 5, points[3].1 + 13)
                } else {
                    (notes[to].rect.x + 2, notes[to].rect.y - GUTTER_Y / 2 + 13)
                };
                let label = Some((format!("within {}", format_duration(policy.within_ms)), x, y));
                arrows.push(Arrow { kind: ArrowKind::Reaction, from: note, to, points, label });
            }
        }
    }

    Board { title: model.name.clone(), width, height, columns, lanes, notes, arrows }
}

fn aggregate_note(name: &str, aggregate: &causeway_model::Aggregate, lane: usize, column: usize, row: usize) -> Placed {
    let key = aggregate.key.as_ref().map(|k| k.as_str().to_string());
    let mut tooltip = format!("Aggregate {name}\ncontext: {}", aggregate.context);
    if let Some(k) = &key {
        tooltip += &format!("\nkey: {k}");
    }
    Placed { kind: Kind::Aggregate, name: name.to_string(), lane, column, row, header: None, footer: key.map(|k| format!("key {k}")), tooltip }
}

fn policy_placed(name: &str, policy: &causeway_model::Policy, lane: usize, column: usize, row: usize) -> Placed {
    let within = format_duration(policy.within_ms);
    Placed {
        kind: Kind::Policy,
        name: name.to_string(),
        lane,
        column,
        row,
        header: None,
        footer: Some(format!("within {within}")),
        tooltip: format!("Policy {name}\nwhenever {} happens, {} is expected within {within}", policy.when, policy.then.join(" and ")),
    }
}

/// A small spread so that arrows sharing a gutter do not draw over each other: -8, -4, 0, 4, 8.
fn offset(k: usize) -> i64 {
    (k % 5) as i64 * 4 - 8
}

/// The path of an arrow from `from` to `to` through the gutters (see the module docs).
fn route(from: &Note, to: &Note, offset: i64) -> Vec<(i64, i64)> {
    let (s, t) = (from.rect, to.rect);
    if to.column == from.column + 1 {
        let gx = s.right() + GUTTER_X / 2;
        if s.center_y() == t.center_y() {
            return vec![(s.right(), s.center_y()), (t.x, t.center_y())];
        }
        return vec![(s.right(), s.center_y()), (gx, s.center_y()), (gx, t.center_y()), (t.x, t.center_y())];
    }
    let gx = s.right() + GUTTER_X / 2 + offset;
    let gy = t.y - GUTTER_Y / 2 + offset;
    let tx = t.center_x() + offset;
    vec![(s.right(), s.center_y()), (gx, s.center_y()), (gx, gy), (tx, gy), (tx, t.y)]
}

/// A name as it may appear in an `id`: letters, digits, `-` and `_`; anything else becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_overlap_only_when_they_share_area() {
        let a = Rect { x: 0, y: 0, w: 10, h: 10 };
        assert!(a.overlaps(&Rect { x: 9, y: 9, w: 10, h: 10 }));
        assert!(!a.overlaps(&Rect { x: 10, y: 0, w: 10, h: 10 }));
        assert!(!a.overlaps(&Rect { x: 0, y: 10, w: 10, h: 10 }));
    }

    #[test]
    fn grid_rows_are_never_reused() {
        let mut grid = Grid::default();
        assert_eq!(grid.take(0, 0, 0), 0);
        assert_eq!(grid.take(0, 0, 0), 1);
        assert_eq!(grid.take(0, 0, 3), 3);
        assert_eq!(grid.take(0, 0, 1), 4);
        assert_eq!(grid.take(1, 0, 0), 0);
        assert_eq!(grid.rows(0), 5);
    }
}
