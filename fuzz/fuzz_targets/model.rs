//! The model loader on arbitrary YAML, with includes.
//!
//! Input layout: up to three files separated by a line `---8<---`: `model.yaml` (loaded), then
//! `a.yaml` and `sub/b.yaml`, which the model may include. They are written to one temporary
//! directory; an input whose includes reach an existing file outside it is skipped, so the loader
//! never reads the machine's files (or blocks on a device).
//!
//! Asserted beyond "no panic": diagnostics are sorted, point into a file the model was read from at
//! a line and column from 1, and each says something; when no diagnostic is an error, every name
//! the model uses resolves, every schema is valid JSON Schema 2020-12 and compiles, every duration
//! is positive and every percentage within 0–100, and loading again gives the same model.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use causeway_model::{Key, Loaded, Model, Reducer, Severity, Sli, load};
use libfuzzer_sys::fuzz_target;
use marked_yaml::Node;
use marked_yaml::loader::{LoaderOptions, parse_yaml_with_options};

const SEPARATOR: &str = "\n---8<---\n";
const FILES: [&str; 3] = ["model.yaml", "a.yaml", "sub/b.yaml"];

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("causeway-fuzz-model").tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("sub")).expect("sub directory");
        dir
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parts: Vec<&str> = text.splitn(FILES.len(), SEPARATOR).collect();
    let dir = dir();
    let ours: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    for (i, path) in ours.iter().enumerate() {
        match parts.get(i) {
            Some(part) => std::fs::write(path, part).expect("write a model file"),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    if !includes_stay_inside(&parts, &ours) {
        return;
    }
    let loaded = load(&ours[0]);
    check_diagnostics(&loaded, &ours[0]);
    if !loaded.has_errors() {
        check_model(&loaded.model);
        let again = load(&ours[0]);
        assert_eq!(again.model, loaded.model, "loading is deterministic");
        assert_eq!(again.diagnostics, loaded.diagnostics, "loading is deterministic");
    }
});

/// Whether every `include` of our files names one of them, or something that does not exist.
fn includes_stay_inside(parts: &[&str], ours: &[PathBuf]) -> bool {
    let canonical: Vec<PathBuf> = ours.iter().filter_map(|p| p.canonicalize().ok()).collect();
    for (i, part) in parts.iter().enumerate() {
        let options = LoaderOptions::default().error_on_duplicate_keys(true);
        let Ok(Node::Mapping(root)) = parse_yaml_with_options(i, part, options) else { continue };
        let Some(include) = root.get("include") else { continue };
        let base = ours[i].parent().expect("a file in a directory");
        let mut names = Vec::new();
        scalars(include, &mut names);
        for name in names {
            let path = base.join(name);
            if std::fs::symlink_metadata(&path).is_ok() || path.canonicalize().is_ok() {
                match path.canonicalize() {
                    Ok(c) if canonical.contains(&c) => {}
                    _ => return false,
                }
            }
        }
    }
    true
}

fn scalars<'a>(node: &'a Node, out: &mut Vec<&'a str>) {
    match node {
        Node::Scalar(s) => out.push(s.as_str()),
        Node::Sequence(items) => items.iter().for_each(|n| scalars(n, out)),
        Node::Mapping(m) => m.values().for_each(|n| scalars(n, out)),
    }
}

fn check_diagnostics(loaded: &Loaded, main: &Path) {
    let files = &loaded.model.files;
    assert_eq!(files.first().map(PathBuf::as_path), Some(main), "the main file comes first");
    let mut previous = None;
    for d in &loaded.diagnostics {
        assert!(!d.message.is_empty(), "an empty diagnostic");
        assert!(d.position.file < files.len(), "{d}: file index {} of {}", d.position.file, files.len());
        assert_eq!(d.file, files[d.position.file], "{d}: names another file than its position");
        assert!(d.position.line >= 1 && d.position.column >= 1, "{d}: no place in the file");
        let key = (d.position.file, d.position.line, d.position.column);
        assert!(previous.is_none_or(|p| p <= key), "diagnostics out of order at {d}");
        previous = Some(key);
    }
    assert_eq!(loaded.has_errors(), loaded.diagnostics.iter().any(|d| d.severity == Severity::Error));
}

fn check_model(m: &Model) {
    let context = |name: &str, what: &str| assert!(m.contexts.contains_key(name), "{what} names unknown context {name:?}");
    let aggregate = |name: &str, what: &str| assert!(m.aggregates.contains_key(name), "{what} names unknown aggregate {name:?}");
    let event = |name: &str, what: &str| assert!(m.events.contains_key(name), "{what} names unknown event {name:?}");
    let journey = |name: &str, what: &str| assert!(m.journeys.contains_key(name), "{what} names unknown journey {name:?}");
    let duration = |ms: u64, what: &str| assert!(ms > 0, "{what}: a zero duration");
    let percent = |p: f64, what: &str| assert!((0.0..=100.0).contains(&p), "{what}: {p}% out of range");
    let pointer = |key: &Key, what: &str| {
        if let Key::Pointer(p) = key {
            assert!(p.starts_with('/'), "{what}: key {p:?} is not a JSON pointer");
        }
    };
    assert!(!m.name.is_empty(), "a model without a name");
    for (name, a) in &m.aggregates {
        context(&a.context, name);
        if let Some(k) = &a.key {
            pointer(k, name);
        }
    }
    for (name, c) in &m.commands {
        context(&c.context, name);
        if let Some(a) = &c.aggregate {
            aggregate(a, name);
        }
        c.emits.iter().for_each(|e| event(e, name));
    }
    for (name, e) in &m.events {
        context(&e.context, name);
        if let Some(a) = &e.aggregate {
            aggregate(a, name);
        }
        for (version, schema) in &e.versions {
            assert!(*version >= 1, "{name}: schema version {version}");
            assert!(jsonschema::draft202012::meta::is_valid(schema), "{name} v{version}: not a valid JSON Schema: {schema}");
            assert!(jsonschema::draft202012::new(schema).is_ok(), "{name} v{version}: schema does not compile: {schema}");
        }
        for p in &e.pii {
            assert!(p.starts_with('/') && p.len() > 1, "{name}: pii {p:?} is not a pointer to a field");
        }
    }
    for (name, p) in &m.policies {
        event(&p.when, name);
        p.then.iter().for_each(|e| event(e, name));
        duration(p.within_ms, name);
    }
    for (name, j) in &m.journeys {
        pointer(&j.key, name);
        j.milestones.iter().for_each(|e| event(e, name));
        for (outcome, events) in &j.outcomes {
            assert!(!events.is_empty(), "{name}: outcome {outcome} ends with no event");
            events.iter().for_each(|e| event(e, name));
        }
        for inv in &j.invariants {
            event(&inv.event, name);
            match &inv.rule {
                causeway_model::InvariantRule::Requires(list) | causeway_model::InvariantRule::ForbiddenAfter(list) => {
                    list.iter().for_each(|e| event(e, name));
                }
                causeway_model::InvariantRule::AtMost(_) => {}
            }
        }
        j.complete_within_ms.into_iter().chain(j.stall_after_ms).for_each(|ms| duration(ms, name));
        if let Some(p) = j.objective_percent {
            percent(p, name);
            assert!(j.complete_within_ms.is_some(), "{name}: an objective without a window");
        }
    }
    for (name, r) in &m.read_models {
        pointer(&r.key, name);
        for (e, reducers) in &r.on {
            event(e, name);
            for reducer in reducers {
                match reducer {
                    Reducer::Merge(p) => assert!(p.starts_with('/'), "{name}: merge {p:?}"),
                    Reducer::Append(fields) => {
                        assert!(fields.values().all(|p| p.starts_with('/')), "{name}: append {fields:?}")
                    }
                    Reducer::Set(_) | Reducer::Unset(_) => {}
                }
            }
        }
    }
    for (name, s) in &m.slos {
        match &s.sli {
            Sli::EventSuccess { context: c } => context(c, name),
            Sli::EventTypeSuccess { event_type } => event(event_type, name),
            Sli::ReactionLatency { policy } => assert!(m.policies.contains_key(policy), "{name}: unknown policy {policy}"),
            Sli::JourneyCompletion { journey: j } => journey(j, name),
        }
        percent(s.objective_percent, name);
        assert!(s.objective_percent < 100.0, "{name}: an objective leaving no error budget");
        duration(s.window_ms, name);
    }
    for (name, x) in &m.externals {
        x.consumes.iter().chain(&x.produces).for_each(|e| event(e, name));
    }
}
