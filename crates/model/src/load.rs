//! Reading model files into the typed model, section by section, with a diagnostic for every
//! problem (all of them at once, never just the first).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use marked_yaml::loader::{LoaderOptions, parse_yaml_with_options};
use marked_yaml::types::MarkedMappingNode;
use marked_yaml::{LoadError, Node};
use serde_json::Value;

use crate::diagnostic::Sink;
use crate::yaml::{as_mapping, check_keys, node_pos, pos, string, string_list, to_json};
use crate::{
    Aggregate, Command, Context, Diagnostic, EnvelopeRules, EventDef, External, Invariant, InvariantRule, Journey, Key, Model, Policy, Position,
    ReadModel, Reducer, Severity, Sli, Slo, parse_duration, parse_percent,
};

/// A loaded model and everything said about it.
#[derive(Debug)]
pub struct Loaded {
    /// Built as far as the files allow; only trustworthy when [`Loaded::has_errors`] is false.
    pub model: Model,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// The model, or every diagnostic when any is an error.
    pub fn into_result(self) -> Result<Model, Vec<Diagnostic>> {
        if self.has_errors() { Err(self.diagnostics) } else { Ok(self.model) }
    }
}

/// What kind of thing a name refers to, for the reference check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefKind {
    Context,
    Aggregate,
    Event,
    Journey,
    Policy,
}

/// A name used somewhere, to be resolved once every file is read.
#[derive(Debug, Clone)]
pub(crate) struct Ref {
    pub kind: RefKind,
    pub name: String,
    pub at: Position,
    pub what: String,
}

pub(crate) struct Builder {
    pub sink: Sink,
    pub model: Model,
    pub refs: Vec<Ref>,
    /// Position of each journey's key, for the key-satisfiability check.
    pub key_positions: IndexMap<String, Position>,
    visited: HashSet<PathBuf>,
}

/// Loads a model file and the files it includes.
pub fn load(path: &Path) -> Loaded {
    let mut b = Builder::new();
    b.load_file(path, None);
    b.finish()
}

/// Loads a model from text; `name` is used in diagnostics and includes resolve from the current
/// directory.
pub fn load_str(name: &str, text: &str) -> Loaded {
    let mut b = Builder::new();
    b.sink.files.push(PathBuf::from(name));
    b.load_text(0, text, Path::new("."));
    b.finish()
}

const TOP_KEYS: &[&str] =
    &["name", "include", "contexts", "aggregates", "commands", "events", "policies", "journeys", "read_models", "slos", "externals", "envelope"];

/// Parses one entry of a top-level section (its name, where it is, its node).
type SectionParser = fn(&mut Builder, &str, Position, &Node);

impl Builder {
    fn new() -> Builder {
        Builder {
            sink: Sink::default(),
            model: Model {
                name: String::new(),
                files: Vec::new(),
                contexts: IndexMap::new(),
                aggregates: IndexMap::new(),
                commands: IndexMap::new(),
                events: IndexMap::new(),
                policies: IndexMap::new(),
                journeys: IndexMap::new(),
                read_models: IndexMap::new(),
                slos: IndexMap::new(),
                externals: IndexMap::new(),
                envelope: EnvelopeRules::default(),
            },
            refs: Vec::new(),
            key_positions: IndexMap::new(),
            visited: HashSet::new(),
        }
    }

    fn finish(mut self) -> Loaded {
        crate::check::check(&mut self);
        self.model.files = self.sink.files.clone();
        let mut diagnostics = self.sink.diagnostics;
        diagnostics.sort_by_key(|a| (a.position.file, a.position.line, a.position.column));
        diagnostics.dedup();
        Loaded { model: self.model, diagnostics }
    }

    fn load_file(&mut self, path: &Path, included_at: Option<Position>) {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if !self.visited.insert(canonical) {
            if let Some(at) = included_at {
                self.sink.error(at, format!("{} is included more than once (or includes itself)", path.display()));
            }
            return;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                match included_at {
                    Some(at) => self.sink.error(at, format!("cannot read included file {}: {e}", path.display())),
                    None => {
                        self.sink.files.push(path.to_path_buf());
                        let file = self.sink.files.len() - 1;
                        self.sink.error(Position { file, line: 1, column: 1 }, format!("cannot read the model: {e}"))
                    }
                }
                return;
            }
        };
        self.sink.files.push(path.to_path_buf());
        let file = self.sink.files.len() - 1;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        self.load_text(file, &text, &dir);
    }

    fn load_text(&mut self, file: usize, text: &str, dir: &Path) {
        let options = LoaderOptions::default().error_on_duplicate_keys(true);
        let root = match parse_yaml_with_options(file, text, options) {
            Ok(root) => root,
            Err(e) => {
                self.yaml_error(file, e);
                return;
            }
        };
        let Some(map) = as_mapping(&mut self.sink, &root, "the model") else { return };
        check_keys(&mut self.sink, map, TOP_KEYS, "the model");
        if let Some(node) = map.get("name") {
            if let Some((name, at)) = string(&mut self.sink, node, "name") {
                if file == 0 {
                    self.model.name = name;
                } else {
                    self.sink.error(at, "'name' belongs in the main model file, not in an included one");
                }
            }
        } else if file == 0 {
            self.sink.error(Position { file, line: 1, column: 1 }, "the model has no 'name': add e.g. `name: order-fulfillment`");
        }
        let sections: [(&str, SectionParser); 9] = [
            ("contexts", Builder::context),
            ("aggregates", Builder::aggregate),
            ("commands", Builder::command),
            ("events", Builder::event),
            ("policies", Builder::policy),
            ("journeys", Builder::journey),
            ("read_models", Builder::read_model),
            ("slos", Builder::slo),
            ("externals", Builder::external),
        ];
        for (section, parse) in sections {
            let Some(node) = map.get(section) else { continue };
            let Some(entries) = as_mapping(&mut self.sink, node, &format!("'{section}'")) else { continue };
            for (key, value) in entries.iter() {
                parse(self, key.as_str(), pos(key.span()), value);
            }
        }
        if let Some(node) = map.get("envelope") {
            self.envelope(node);
        }
        if let Some(node) = map.get("include") {
            for (path, at) in string_list(&mut self.sink, node, "include") {
                self.load_file(&dir.join(path), Some(at));
            }
        }
    }

    fn yaml_error(&mut self, file: usize, e: LoadError) {
        let (at, message) = match &e {
            LoadError::ScanError(m, se) => (*m, format!("invalid YAML: {}", se.info())),
            LoadError::DuplicateKey(inner) => {
                let first = pos(inner.prev_key.span());
                let at = inner.key.span().start().copied();
                let message = format!("duplicate key '{}' (first at line {}, column {})", inner.key.as_str(), first.line, first.column);
                match at {
                    Some(m) => (m, message),
                    None => {
                        self.sink.error(first, message);
                        return;
                    }
                }
            }
            LoadError::TopLevelMustBeMapping(m) => (*m, "the model must be a YAML mapping (name:, contexts:, events: …)".into()),
            LoadError::UnexpectedAnchor(m) => (*m, "YAML anchors are not supported in models".into()),
            LoadError::UnexpectedTag(m) => (*m, "YAML tags are not supported in models".into()),
            LoadError::MappingKeyMustBeScalar(m) => (*m, "mapping keys must be plain names".into()),
            LoadError::TopLevelMustBeSequence(m) => (*m, e.to_string()),
        };
        let _ = file;
        self.sink.error(Position { file: at.source(), line: at.line(), column: at.column() }, message);
    }

    fn refer(&mut self, kind: RefKind, name: &str, at: Position, what: impl Into<String>) {
        self.refs.push(Ref { kind, name: name.to_string(), at, what: what.into() });
    }

    fn refer_all(&mut self, kind: RefKind, names: &[(String, Position)], what: &str) {
        for (name, at) in names {
            self.refer(kind, name, *at, what);
        }
    }

    /// Inserts a named item, reporting a duplicate across files.
    fn insert<T>(sink: &mut Sink, map: &mut IndexMap<String, T>, section: &str, name: &str, at: Position, item: T, span_of: fn(&T) -> Position) {
        if let Some(existing) = map.get(name) {
            let first = sink.render(span_of(existing));
            sink.error(at, format!("duplicate {section} '{name}': already defined at {first}"));
            return;
        }
        map.insert(name.to_string(), item);
    }

    fn field<'a>(&mut self, map: &'a MarkedMappingNode, key: &str, owner: &str, at: Position) -> Option<&'a Node> {
        let node = map.get(key);
        if node.is_none() {
            self.sink.error(at, format!("{owner} has no '{key}'"));
        }
        node
    }

    fn string_field(&mut self, map: &MarkedMappingNode, key: &str, owner: &str) -> Option<(String, Position)> {
        string(&mut self.sink, map.get(key)?, &format!("'{key}' of {owner}"))
    }

    fn duration_field(&mut self, map: &MarkedMappingNode, key: &str, owner: &str) -> Option<u64> {
        let (text, at) = self.string_field(map, key, owner)?;
        match parse_duration(&text) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.sink.error(at, format!("'{key}' of {owner}: {e}"));
                None
            }
        }
    }

    fn percent_field(&mut self, map: &MarkedMappingNode, key: &str, owner: &str) -> Option<f64> {
        let (text, at) = self.string_field(map, key, owner)?;
        match parse_percent(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.sink.error(at, format!("'{key}' of {owner}: {e}"));
                None
            }
        }
    }

    fn key_field(&mut self, map: &MarkedMappingNode, owner: &str) -> Option<(Key, Position)> {
        let (text, at) = self.string_field(map, "key", owner)?;
        if text == "subject" {
            return Some((Key::Subject, at));
        }
        if !text.starts_with('/') {
            self.sink.error(at, format!("'key' of {owner} must be a JSON pointer into the payload (e.g. /orderId) or `subject`, not '{text}'"));
            return None;
        }
        Some((Key::Pointer(text), at))
    }

    fn context(&mut self, name: &str, at: Position, node: &Node) {
        let owner = format!("context '{name}'");
        let Some(map) = as_mapping(&mut self.sink, node, &owner) else { return };
        check_keys(&mut self.sink, map, &["owner", "services"], &owner);
        let owner_name = self.string_field(map, "owner", &owner).map(|(s, _)| s);
        let services: Vec<String> = map
            .get("services")
            .map(|n| string_list(&mut self.sink, n, &format!("'services' of {owner}")).into_iter().map(|(s, _)| s).collect())
            .unwrap_or_default();
        let listed_empty = matches!(map.get("services"), None | Some(Node::Sequence(_)));
        if services.is_empty() && listed_empty {
            self.sink.warning(at, format!("{owner} lists no services: nothing may produce its events"));
        }
        let item = Context { owner: owner_name, services, span: at };
        Self::insert(&mut self.sink, &mut self.model.contexts, "context", name, at, item, |c| c.span);
    }

    fn aggregate(&mut self, name: &str, at: Position, node: &Node) {
        let owner = format!("aggregate '{name}'");
        let Some(map) = as_mapping(&mut self.sink, node, &owner) else { return };
        check_keys(&mut self.sink, map, &["context", "key"], &owner);
        let context = self.field(map, "context", &owner, at).and_then(|n| string(&mut self.sink, n, "context"));
        if let Some((c, cat)) = &context {
            self.refer(RefKind::Context, c, *cat, owner.to_string());
        }
        let key = if map.contains_key("key") { self.key_field(map, &owner).map(|(k, _)| k) } else { None };
        let item = Aggregate { context: context.map(|c| c.0).unwrap_or_default(), key, span: at };
        Self::insert(&mut self.sink, &mut self.model.aggregates, "aggregate", name, at, item, |a| a.span);
    }

    fn command(&mut self, name: &str, at: Position, node: &Node) {
        let owner = format!("command '{name}'");
        let Some(map) = as_mapping(&mut self.sink, node, &owner) else { return };
        check_keys(&mut self.sink, map, &["context", "actor", "aggregate", "emits"], &owner);
        let context = self.field(map, "context", &owner, at).and_then(|n| string(&mut self.sink, n, "context"));
        if let Some((c, cat)) = &context {
            self.refer(RefKind::Context, c, *cat, owner.clone());
        }
        let aggregate = self.string_field(map, "aggregate", &owner);
        if let Some((a, aat)) = &aggregate {
            self.refer(RefKind::Aggregate, a, *aat, owner.clone());
        }
        let emits = map.get("emits").map(|n| string_list(&mut self.sink, n, &format!("'emits' of {owner}"))).unwrap_or_default();
        self.refer_all(RefKind::Event, &emits, &format!("'emits' of {owner}"));
        let item = Command {
            context: context.map(|c| c.0).unwrap_or_default(),
            actor: self.string_field(map, "actor", &owner).map(|a| a.0),
            aggregate: aggregate.map(|a| a.0),
            emits: emits.into_iter().map(|e| e.0).collect(),
            span: at,
        };
        Self::insert(&mut self.sink, &mut self.model.commands, "command", name, at, item, |c| c.span);
    }

    fn event(&mut self, name: &str, at: Position, node: &Node) {
        let owner = format!("event '{name}'");
        let Some(map) = as_mapping(&mut self.sink, node, &owner) else { return };
        check_keys(&mut self.sink, map, &["context", "aggregate", "topic", "schema", "versions", "pii"], &owner);
        let context = self.field(map, "context", &owner, at).and_then(|n| string(&mut self.sink, n, "context"));
        if let Some((c, cat)) = &context {
            self.refer(RefKind::Context, c, *cat, owner.clone());
        }
        let aggregate = self.string_field(map, "aggregate", &owner);
        if let Some((a, aat)) = &aggregate {
            self.refer(RefKind::Aggregate, a, *aat, owner.clone());
        }
        let mut versions = IndexMap::new();
        match (map.get("schema"), map.get("versions")) {
            (Some(_), Some(v)) => {
                self.sink
                    .error(node_pos(v), format!("{owner} has both 'schema' and 'versions': put the schema under versions: {{1: {{schema: …}}}}"));
            }
            (Some(schema), None) => {
                if let Some(s) = self.schema(schema, &format!("the schema of {owner}")) {
                    versions.insert(1, s);
                }
            }
            (None, Some(v)) => {
                if let Some(vmap) = as_mapping(&mut self.sink, v, &format!("'versions' of {owner}")) {
                    for (version, body) in vmap.iter() {
                        let vat = pos(version.span());
                        let Some(number) = version.as_str().parse::<u32>().ok().filter(|n| *n >= 1) else {
                            self.sink.error(vat, format!("schema version '{}' of {owner} must be a positive integer", version.as_str()));
                            continue;
                        };
                        let what = format!("version {number} of {owner}");
                        let Some(bmap) = as_mapping(&mut self.sink, body, &what) else { continue };
                        check_keys(&mut self.sink, bmap, &["schema"], &what);
                        let Some(schema) = bmap.get("schema") else {
                            self.sink.error(vat, format!("{what} has no 'schema'"));
                            continue;
                        };
                        if let Some(s) = self.schema(schema, &format!("the schema of {what}")) {
                            versions.insert(number, s);
                        }
                    }
                }
            }
            (None, None) => {}
        }
        let mut pii = Vec::new();
        if let Some(node) = map.get("pii") {
            for (pointer, pat) in string_list(&mut self.sink, node, &format!("'pii' of {owner}")) {
                if pointer.starts_with('/') && pointer.len() > 1 {
                    pii.push(pointer);
                } else {
                    self.sink.error(pat, format!("pii entry '{pointer}' of {owner} must be a JSON pointer to a field, e.g. /customerEmail"));
                }
            }
        }
        let item = EventDef {
            context: context.map(|c| c.0).unwrap_or_default(),
            aggregate: aggregate.map(|a| a.0),
            topic: self.string_field(map, "topic", &owner).map(|t| t.0),
            versions,
            pii,
            span: at,
        };
        Self::insert(&mut self.sink, &mut self.model.events, "event", name, at, item, |e| e.span);
    }

    /// A JSON Schema 2020-12, checked against its meta-schema and compiled.
    fn schema(&mut self, node: &Node, what: &str) -> Option<Value> {
        let value = to_json(node);
        if let Err(e) = jsonschema::draft202012::meta::validate(&value) {
            let path = e.instance_path().to_string();
            let place = if path.is_empty() { String::new() } else { format!(" at {path}") };
            // Point at the offending keyword itself, not at the start of the schema.
            let at = crate::yaml::node_at(node, &path).map(node_pos).unwrap_or_else(|| node_pos(node));
            self.sink.error(at, format!("{what} is not a valid JSON Schema (2020-12){place}: {e}"));
            return None;
        }
        if let Err(e) = jsonschema::draft202012::new(&value) {
            self.sink.error(node_pos(node), format!("{what} cannot be used: {e}"));
            return None;
        }
        Some(value)
    }

    fn policy(&mut self, name: &str, at: Position, node: &Node) {
        let owner = format!("policy '{name}'");
        let Some(map) = as_mapping(&mut self.sink, node, &owner) else { return };
        check_keys(&mut self.sink, map, &["when", "then", "within"], &owner);
        let when = self.field(map, "when", &owner, at).and_then(|n| string(&mut self.sink, n, &format!("'when' of {owner}")));
        if let Some((w, wat)) = &when {
            self.refer(RefKind::Event, w, *wat, format!("'when' of {owner}"));
        }
        let then = self.field(map, "then", &owner, at).map(|n| string_list(&mut self.sink, n, &format!("'then' of {owner}"))).unwrap_or_default();
        self.refer_all(RefKind::Event, &then, &format!("'then' of {owner}"));
        let within = if self.field(map, "within", &owner, at).is_some() { self.duration_field(map, "within", &owner) } else { None };
        let item = Policy {
            when: when.map(|w| w.0).unwrap_or_default(),
            then: then.into_iter().map(|t| t.0).collect(),
            within_ms: within.unwrap_or(0),
            span: at,
        };
        Self::insert(&mut self.sink, &mut self.model.policies, "policy", name, at, item, |p| p.span);
    }

    fn journey(&mut self, name: &str, at: Position, node: &Node) {
        let owner = format!("journey '{name}'");
        let Some(map) = as_mapping(&mut self.sink, node, &owner) else { return };
        check_keys(
            &mut self.sink,
            map,
            &["key", "milestones", "outcomes", "invariants", "complete_within", "objective", "stall_after", "reconciliation_owner"],
            &owner,
        );
        let key = if self.field(map, "key", &owner, at).is_some() { self.key_field(map, &owner) } else { None };
        if let Some((_, kat)) = &key {
            self.key_positions.insert(name.to_string(), *kat);
        }
        let milestones = self
            .field(map, "milestones", &owner, at)
            .map(|n| string_list(&mut self.sink, n, &format!("'milestones' of {owner}")))
            .unwrap_or_default();
        self.refer_all(RefKind::Event, &milestones, &format!("'milestones' of {owner}"));
        let mut seen = HashSet::new();
        for (m, mat) in &milestones {
            if !seen.insert(m.clone()) {
                self.sink.error(*mat, format!("milestone '{m}' is listed twice in {owner}"));
            }
        }
        let mut outcomes: IndexMap<String, Vec<String>> = IndexMap::new();
        let mut outcome_of: IndexMap<String, String> = IndexMap::new();
        if let Some(node) = map.get("outcomes") {
            if let Some(omap) = as_mapping(&mut self.sink, node, &format!("'outcomes' of {owner}")) {
                for (outcome, events) in omap.iter() {
                    let oname = outcome.as_str().to_string();
                    if matches!(oname.as_str(), "in_flight" | "stalled") {
                        self.sink
                            .error(pos(outcome.span()), format!("outcome '{oname}' of {owner} clashes with a journey state name: choose another"));
                    }
                    let list = string_list(&mut self.sink, events, &format!("outcome '{oname}' of {owner}"));
                    if list.is_empty() {
                        self.sink.error(pos(outcome.span()), format!("outcome '{oname}' of {owner} names no terminal event"));
                    }
                    self.refer_all(RefKind::Event, &list, &format!("outcome '{oname}' of {owner}"));
                    for (event, eat) in &list {
                        if let Some(other) = outcome_of.insert(event.clone(), oname.clone()) {
                            self.sink.error(*eat, format!("event '{event}' ends {owner} in two outcomes, '{other}' and '{oname}'"));
                        }
                        // An outcome is terminal: no milestone may follow it.
                        if let Some(i) = milestones.iter().position(|(m, _)| m == event)
                            && let Some((after, _)) = milestones.get(i + 1)
                        {
                            self.sink.error(*eat, format!("outcome event '{event}' of {owner} is followed by milestone '{after}': an outcome ends the journey, so '{after}' is unreachable"));
                        }
                    }
                    outcomes.insert(oname, list.into_iter().map(|e| e.0).collect());
                }
            }
        } else if !milestones.is_empty() {
            self.sink.warning(at, format!("{owner} has no 'outcomes': no instance can ever complete"));
        }
        let mut invariants = Vec::new();
        if let Some(node) = map.get("invariants") {
            match node {
                Node::Sequence(items) => {
                    for item in items.iter() {
                        if let Some(inv) = self.invariant(item, &owner) {
                            invariants.push(inv);
                        }
                    }
                }
                other => self.sink.error(node_pos(other), format!("'invariants' of {owner} must be a list")),
            }
        }
        let complete_within_ms = self.duration_field(map, "complete_within", &owner);
        let stall_after_ms = self.duration_field(map, "stall_after", &owner);
        if let (Some(stall), Some(complete)) = (stall_after_ms, complete_within_ms)
            && stall > complete
        {
            self.sink.warning(
                at,
                format!("{owner} stalls after longer than its completion window: 'stall_after' can never fire before 'complete_within'"),
            );
        }
        let objective_percent = self.percent_field(map, "objective", &owner);
        if objective_percent.is_some() && complete_within_ms.is_none() {
            self.sink.error(at, format!("{owner} has an 'objective' but no 'complete_within' window to measure it against"));
        }
        let item = Journey {
            key: key.map(|k| k.0).unwrap_or(Key::Subject),
            milestones: milestones.into_iter().map(|m| m.0).collect(),
            outcomes,
            invariants,
            complete_within_ms,
            objective_percent,
            stall_after_ms,
            reconciliation_owner: self.string_field(map, "reconciliation_owner", &owner).map(|o| o.0),
            span: at,
        };
        Self::insert(&mut self.sink, &mut self.model.journeys, "journey", name, at, item, |j| j.span);
    }

    fn invariant(&mut self, node: &Node, journey: &str) -> Option<Invariant> {
        let at = node_pos(node);
        let map = as_mapping(&mut self.sink, node, &format!("an invariant of {journey}"))?;
        check_keys(&mut self.sink, map, &["name", "event", "requires", "at_most", "forbidden_after"], &format!("an invariant of {journey}"));
        let name = self.field(map, "name", &format!("an invariant of {journey}"), at).and_then(|n| string(&mut self.sink, n, "name"));
        let owner = format!("invariant '{}' of {journey}", name.as_ref().map(|n| n.0.as_str()).unwrap_or("?"));
        let event = self.field(map, "event", &owner, at).and_then(|n| string(&mut self.sink, n, &format!("'event' of {owner}")));
        if let Some((e, eat)) = &event {
            self.refer(RefKind::Event, e, *eat, format!("'event' of {owner}"));
        }
        let rules: Vec<&str> = ["requires", "at_most", "forbidden_after"].into_iter().filter(|k| map.contains_key(*k)).collect();
        if rules.len() != 1 {
            self.sink.error(
                at,
                format!(
                    "{owner} needs exactly one rule of requires, at_most, forbidden_after (found {})",
                    if rules.is_empty() { "none".to_string() } else { rules.join(", ") }
                ),
            );
            return None;
        }
        let rule = match rules[0] {
            "at_most" => {
                let (text, tat) = self.string_field(map, "at_most", &owner)?;
                match text.parse::<u32>() {
                    Ok(n) => InvariantRule::AtMost(n),
                    Err(_) => {
                        self.sink.error(tat, format!("'at_most' of {owner} must be a whole number, not '{text}'"));
                        return None;
                    }
                }
            }
            key => {
                let list = string_list(&mut self.sink, map.get(key).expect("present"), &format!("'{key}' of {owner}"));
                self.refer_all(RefKind::Event, &list, &format!("'{key}' of {owner}"));
                if let Some((e, _)) = &event
                    && let Some((_, sat)) = list.iter().find(|(n, _)| n == e)
                {
                    self.sink.error(*sat, format!("{owner} relates '{e}' to itself"));
                }
                let names = list.into_iter().map(|l| l.0).collect();
                if key == "requires" { InvariantRule::Requires(names) } else { InvariantRule::ForbiddenAfter(names) }
            }
        };
        Some(Invariant { name: name?.0, event: event?.0, rule, span: at })
    }

    fn read_model(&mut self, name: &str, at: Position, node: &Node) {
        let owner = format!("read model '{name}'");
        let Some(map) = as_mapping(&mut self.sink, node, &owner) else { return };
        check_keys(&mut self.sink, map, &["key", "on"], &owner);
        let key = if self.field(map, "key", &owner, at).is_some() { self.key_field(map, &owner) } else { None };
        let mut on = IndexMap::new();
        if let Some(node) = self.field(map, "on", &owner, at)
            && let Some(omap) = as_mapping(&mut self.sink, node, &format!("'on' of {owner}"))
        {
            for (event, spec) in omap.iter() {
                let eat = pos(event.span());
                self.refer(RefKind::Event, event.as_str(), eat, format!("'on' of {owner}"));
                let specs: Vec<&Node> = match spec {
                    Node::Sequence(items) => items.iter().collect(),
                    other => vec![other],
                };
                let mut reducers = Vec::new();
                for spec in specs {
                    reducers.extend(self.reducers(spec, &format!("the reducer of '{}' in {owner}", event.as_str())));
                }
                on.insert(event.as_str().to_string(), reducers);
            }
        }
        let item = ReadModel { key: key.map(|k| k.0).unwrap_or(Key::Subject), on, span: at };
        Self::insert(&mut self.sink, &mut self.model.read_models, "read model", name, at, item, |r| r.span);
    }

    fn reducers(&mut self, node: &Node, what: &str) -> Vec<Reducer> {
        let Some(map) = as_mapping(&mut self.sink, node, what) else { return Vec::new() };
        check_keys(&mut self.sink, map, &["merge", "set", "unset", "append"], what);
        let mut out = Vec::new();
        for (op, arg) in map.iter() {
            let at = pos(op.span());
            match op.as_str() {
                "merge" => {
                    if let Some((p, pat)) = string(&mut self.sink, arg, &format!("'merge' of {what}")) {
                        if p.starts_with('/') {
                            out.push(Reducer::Merge(p))
                        } else {
                            self.sink.error(pat, format!("'merge' of {what} takes a JSON pointer (/ for the whole payload), not '{p}'"))
                        }
                    }
                }
                "set" => {
                    if let Some(fields) = as_mapping(&mut self.sink, arg, &format!("'set' of {what}")) {
                        out.push(Reducer::Set(fields.iter().map(|(k, v)| (k.as_str().to_string(), to_json(v))).collect()));
                    }
                }
                "unset" => {
                    out.push(Reducer::Unset(string_list(&mut self.sink, arg, &format!("'unset' of {what}")).into_iter().map(|f| f.0).collect()))
                }
                "append" => {
                    if let Some(fields) = as_mapping(&mut self.sink, arg, &format!("'append' of {what}")) {
                        let mut pairs = IndexMap::new();
                        for (field, pointer) in fields.iter() {
                            if let Some((p, pat)) = string(&mut self.sink, pointer, &format!("'append' of {what}")) {
                                if p.starts_with('/') {
                                    pairs.insert(field.as_str().to_string(), p);
                                } else {
                                    self.sink.error(pat, format!("'append' of {what} takes JSON pointers, not '{p}'"))
                                }
                            }
                        }
                        out.push(Reducer::Append(pairs));
                    }
                }
                _ => {
                    let _ = at;
                }
            }
        }
        out
    }

    fn slo(&mut self, name: &str, at: Position, node: &Node) {
        let owner = format!("SLO '{name}'");
        let Some(map) = as_mapping(&mut self.sink, node, &owner) else { return };
        check_keys(&mut self.sink, map, &["sli", "context", "event_type", "journey", "policy", "objective", "window"], &owner);
        let sli = match self.field(map, "sli", &owner, at).and_then(|n| string(&mut self.sink, n, &format!("'sli' of {owner}"))) {
            Some((kind, kat)) if kind == "event_success" => {
                match (self.string_field(map, "context", &owner), self.string_field(map, "event_type", &owner)) {
                    (Some((c, cat)), None) => {
                        self.refer(RefKind::Context, &c, cat, owner.clone());
                        Some(Sli::EventSuccess { context: c })
                    }
                    (None, Some((t, tat))) => {
                        self.refer(RefKind::Event, &t, tat, owner.clone());
                        Some(Sli::EventTypeSuccess { event_type: t })
                    }
                    (Some(_), Some(_)) => {
                        self.sink.error(kat, format!("{owner} measures event_success: name its 'context' or its 'event_type', not both"));
                        None
                    }
                    (None, None) => {
                        self.sink.error(kat, format!("{owner} measures event_success: name its 'context' or its 'event_type'"));
                        None
                    }
                }
            }
            Some((kind, kat)) if kind == "reaction_latency" => match self.string_field(map, "policy", &owner) {
                Some((p, pat)) => {
                    self.refer(RefKind::Policy, &p, pat, owner.clone());
                    Some(Sli::ReactionLatency { policy: p })
                }
                None => {
                    self.sink.error(kat, format!("{owner} measures reaction_latency: name its 'policy'"));
                    None
                }
            },
            Some((kind, kat)) if kind == "journey_completion" => match self.string_field(map, "journey", &owner) {
                Some((j, jat)) => {
                    self.refer(RefKind::Journey, &j, jat, owner.clone());
                    Some(Sli::JourneyCompletion { journey: j })
                }
                None => {
                    self.sink.error(kat, format!("{owner} measures journey_completion: name its 'journey'"));
                    None
                }
            },
            Some((kind, kat)) => {
                self.sink.error(kat, format!("'sli' of {owner} is '{kind}': use event_success, reaction_latency or journey_completion"));
                None
            }
            None => None,
        };
        let mut objective = if self.field(map, "objective", &owner, at).is_some() { self.percent_field(map, "objective", &owner) } else { None };
        if objective.is_some_and(|p| p >= 100.0)
            && let Some((_, oat)) = self.string_field(map, "objective", &owner)
        {
            // Burn rates and alerts divide by the budget.
            self.sink.error(oat, format!("'objective' of {owner} is 100%, which leaves no error budget: promise less (e.g. 99.99%)"));
            objective = None;
        }
        let window = if self.field(map, "window", &owner, at).is_some() { self.duration_field(map, "window", &owner) } else { None };
        if let (Some(sli), Some(objective_percent), Some(window_ms)) = (sli, objective, window) {
            let item = Slo { sli, objective_percent, window_ms, span: at };
            Self::insert(&mut self.sink, &mut self.model.slos, "SLO", name, at, item, |s| s.span);
        }
    }

    fn external(&mut self, name: &str, at: Position, node: &Node) {
        let owner = format!("external system '{name}'");
        let Some(map) = as_mapping(&mut self.sink, node, &owner) else { return };
        check_keys(&mut self.sink, map, &["consumes", "produces"], &owner);
        let consumes = map.get("consumes").map(|n| string_list(&mut self.sink, n, &format!("'consumes' of {owner}"))).unwrap_or_default();
        let produces = map.get("produces").map(|n| string_list(&mut self.sink, n, &format!("'produces' of {owner}"))).unwrap_or_default();
        self.refer_all(RefKind::Event, &consumes, &format!("'consumes' of {owner}"));
        self.refer_all(RefKind::Event, &produces, &format!("'produces' of {owner}"));
        let item =
            External { consumes: consumes.into_iter().map(|c| c.0).collect(), produces: produces.into_iter().map(|p| p.0).collect(), span: at };
        Self::insert(&mut self.sink, &mut self.model.externals, "external system", name, at, item, |e| e.span);
    }

    fn envelope(&mut self, node: &Node) {
        let Some(map) = as_mapping(&mut self.sink, node, "'envelope'") else { return };
        check_keys(&mut self.sink, map, &["correlation"], "'envelope'");
        if let Some((value, at)) = self.string_field(map, "correlation", "'envelope'") {
            match value.as_str() {
                "required" => self.model.envelope.correlation_required = true,
                "optional" => self.model.envelope.correlation_required = false,
                other => self.sink.error(at, format!("'correlation' of 'envelope' is '{other}': use required or optional")),
            }
        }
    }
}
