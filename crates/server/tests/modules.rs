//! The server's module graph stays as ARCHITECTURE.md draws it: no cycles between the modules of
//! `crates/server/src`, no module importing from the crate root (`lib.rs` only declares and
//! re-exports), and no core module (outside `api/`) using a handler module.
//!
//! The sources are read as tokens (comments, strings and chars dropped), and every path that
//! names a module of the crate counts: `use crate::x::…`, groups `use crate::{x::…, y::{…}}`,
//! inline paths `crate::x::f(…)`, `super::x`, `self::x`, and a child module's bare name (`dlq::get`
//! in `api/mod.rs`). An inline `mod name { … }` (a `mod tests`) is a module of its own, so a test
//! module may drive the router without making its parent depend on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The crate root's name in the graph; other modules are named by their path (`api::dlq`).
const ROOT: &str = "crate";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Open,
    Close,
    Comma,
    Other(char),
}

/// Rust source as the tokens that matter for paths: comments, string, byte-string, raw-string and
/// char literals are dropped (a path in a doc comment or a message is no reference), lifetimes
/// too; numbers and other punctuation are `Other`.
fn tokens(source: &str) -> Vec<Tok> {
    let c: Vec<char> = source.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let ident_start = |ch: char| ch == '_' || ch.is_alphabetic();
    let ident_char = |ch: char| ch == '_' || ch.is_alphanumeric();
    // A quoted string from the `"` at `i`, with escapes; returns the index after it.
    let skip_string = |mut i: usize| {
        i += 1;
        while i < c.len() && c[i] != '"' {
            i += if c[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    // A raw string from the `#`s or `"` at `i`: `#…#"…"#…#`; returns the index after it.
    let skip_raw = |mut i: usize| {
        let mut hashes = 0;
        while at(i) == '#' {
            hashes += 1;
            i += 1;
        }
        i += 1;
        loop {
            if i >= c.len() {
                return i;
            }
            if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                return i + 1 + hashes;
            }
            i += 1;
        }
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        match ch {
            _ if ch.is_whitespace() => i += 1,
            '/' if at(i + 1) == '/' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                loop {
                    if i >= c.len() {
                        break;
                    }
                    if c[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            '"' => i = skip_string(i),
            '\'' => {
                // A char literal ('x', '\n', '\u{…}', '{'), else a lifetime's quote.
                if at(i + 1) == '\\' {
                    // The quote, the backslash and the escaped char, then up to the closing quote.
                    i += 3;
                    while i < c.len() && c[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if at(i + 2) == '\'' {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            ':' if at(i + 1) == ':' => {
                out.push(Tok::Sep);
                i += 2;
            }
            '{' => {
                out.push(Tok::Open);
                i += 1;
            }
            '}' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            _ if ident_start(ch) => {
                let start = i;
                while i < c.len() && ident_char(c[i]) {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                match (word.as_str(), at(i), at(i + 1)) {
                    ("b", '\'', _) => {
                        // b'x', b'\n'
                        i += 1;
                        i += if at(i) == '\\' { 2 } else { 1 };
                        while i < c.len() && c[i] != '\'' {
                            i += 1;
                        }
                        i += 1;
                    }
                    ("b" | "c", '"', _) => i = skip_string(i),
                    ("r" | "br" | "cr", '"', _) | ("r" | "br" | "cr", '#', '"' | '#') => i = skip_raw(i),
                    ("r", '#', next) if ident_start(next) => {
                        // A raw identifier, r#name.
                        let start = i + 1;
                        i += 1;
                        while i < c.len() && ident_char(c[i]) {
                            i += 1;
                        }
                        out.push(Tok::Ident(c[start..i].iter().collect()));
                    }
                    _ => out.push(Tok::Ident(word)),
                }
            }
            _ if ch.is_ascii_digit() => {
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Other('0'));
            }
            _ => {
                out.push(Tok::Other(ch));
                i += 1;
            }
        }
    }
    out
}

/// What one file says: its inline modules, and each path (as segments) written in each module.
#[derive(Debug, Default)]
struct Parsed {
    inline: Vec<String>,
    paths: Vec<(String, Vec<String>)>,
}

fn child(parent: &str, name: &str) -> String {
    if parent == ROOT { name.to_string() } else { format!("{parent}::{name}") }
}

fn parent(module: &str) -> Option<String> {
    match module.rsplit_once("::") {
        Some((p, _)) => Some(p.to_string()),
        None if module == ROOT => None,
        None => Some(ROOT.to_string()),
    }
}

/// The path trees starting at `i`: `a::b::c`, `a::{b, c::{d, e}}`, `a::*`, `a::{self, b as c}`.
/// Returns each full path and the index after the tree.
fn tree(t: &[Tok], mut i: usize, mut segments: Vec<String>) -> (Vec<Vec<String>>, usize) {
    loop {
        match t.get(i) {
            Some(Tok::Ident(s)) => {
                segments.push(s.clone());
                i += 1;
            }
            Some(Tok::Open) => return group(t, i, &segments),
            Some(Tok::Other('*')) => return (vec![segments], i + 1),
            _ => return (vec![segments], i),
        }
        if t.get(i) == Some(&Tok::Sep) {
            i += 1;
        } else {
            return (vec![segments], i);
        }
    }
}

/// A `{…}` group of path trees under `prefix`, from its `{` at `i`.
fn group(t: &[Tok], mut i: usize, prefix: &[String]) -> (Vec<Vec<String>>, usize) {
    i += 1;
    let mut out = Vec::new();
    while let Some(tok) = t.get(i) {
        match tok {
            Tok::Close => return (out, i + 1),
            Tok::Ident(_) | Tok::Open | Tok::Other('*') => {
                let (paths, next) = tree(t, i, prefix.to_vec());
                out.extend(paths);
                i = next;
                if t.get(i) == Some(&Tok::Ident("as".into())) {
                    i += 2;
                }
            }
            _ => i += 1,
        }
    }
    (out, i)
}

/// The paths written in the file of module `module`, by the (inline) module they are written in.
fn parse(module: &str, source: &str) -> Parsed {
    let t = tokens(source);
    let mut parsed = Parsed::default();
    // Inline modules open here: (module, the brace depth inside its block).
    let mut open: Vec<(String, usize)> = vec![(module.to_string(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        let current = open.last().expect("the file's module").0.clone();
        match &t[i] {
            Tok::Ident(word) if word == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Open)) = (t.get(i + 1), t.get(i + 2)) {
                    let inner = child(&current, name);
                    parsed.inline.push(inner.clone());
                    depth += 1;
                    open.push((inner, depth));
                    i += 3;
                    continue;
                }
                i += 1;
            }
            Tok::Open => {
                depth += 1;
                i += 1;
            }
            Tok::Close => {
                if open.len() > 1 && open.last().is_some_and(|(_, d)| *d == depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            // The start of a path: a name followed by `::`, not itself after `::`.
            Tok::Ident(_) if t.get(i + 1) == Some(&Tok::Sep) && (i == 0 || t[i - 1] != Tok::Sep) => {
                let (paths, next) = tree(&t, i, Vec::new());
                parsed.paths.extend(paths.into_iter().map(|p| (current.clone(), p)));
                i = next;
            }
            _ => i += 1,
        }
    }
    parsed
}

/// Where a path written in `from` leads: the deepest module of the crate it names, and whether
/// it names an item of the crate root. `None` for a path outside the crate (`std::…`, `axum::…`).
fn resolve(from: &str, path: &[String], modules: &BTreeSet<String>) -> Option<(String, bool)> {
    let (first, rest) = path.split_first()?;
    let mut base = match first.as_str() {
        "crate" => ROOT.to_string(),
        "self" => from.to_string(),
        "super" => parent(from)?,
        name if modules.contains(&child(from, name)) => child(from, name),
        _ => return None,
    };
    let mut rest = rest;
    while first == "super" && rest.first().is_some_and(|s| s == "super") {
        base = parent(&base)?;
        rest = &rest[1..];
    }
    let mut descended = false;
    for segment in rest.iter().filter(|s| *s != "self") {
        let next = child(&base, segment);
        if !modules.contains(&next) {
            break;
        }
        base = next;
        descended = true;
    }
    let root_item = base == ROOT && !descended && rest.iter().any(|s| s != "self");
    Some((base, root_item))
}

/// The module graph of a crate's sources, given as (path under `src/`, text).
#[derive(Debug, Default)]
struct Graph {
    modules: BTreeSet<String>,
    /// Module → the modules it refers to (itself left out).
    edges: BTreeMap<String, BTreeSet<String>>,
    /// (module, path as written) for each item of the crate root used outside the root.
    root_items: Vec<(String, String)>,
}

/// `lib.rs` → the root, `api/mod.rs` → `api`, `api/dlq.rs` → `api::dlq`.
fn module_of(file: &str) -> String {
    let file = file.strip_suffix(".rs").unwrap_or(file);
    let file = file.strip_suffix("/mod").unwrap_or(file);
    if file == "lib" || file == "main" { ROOT.to_string() } else { file.replace('/', "::") }
}

fn graph(files: &[(String, String)]) -> Graph {
    let parsed: Vec<(String, Parsed)> = files.iter().map(|(file, text)| (module_of(file), parse(&module_of(file), text))).collect();
    let mut g = Graph::default();
    for (module, p) in &parsed {
        g.modules.insert(module.clone());
        g.modules.extend(p.inline.iter().cloned());
    }
    for (_, p) in &parsed {
        for (from, path) in &p.paths {
            let Some((to, root_item)) = resolve(from, path, &g.modules) else { continue };
            if root_item && from != ROOT {
                g.root_items.push((from.clone(), path.join("::")));
            }
            // An item of the root is reported as such, not as an edge (the root reaches every
            // module, so it would also show as a cycle).
            if &to != from && to != ROOT {
                g.edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    g
}

/// Every cycle a depth-first walk meets, each as `a -> b -> a`.
fn cycles(g: &Graph) -> Vec<String> {
    fn walk(g: &Graph, node: &str, stack: &mut Vec<String>, done: &mut BTreeSet<String>, found: &mut Vec<String>) {
        if let Some(at) = stack.iter().position(|m| m == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            found.push(cycle.join(" -> "));
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_string());
        for next in g.edges.get(node).into_iter().flatten() {
            walk(g, next, stack, done, found);
        }
        stack.pop();
        done.insert(node.to_string());
    }
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for module in &g.modules {
        walk(g, module, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn is_test_module(module: &str) -> bool {
    module == "tests" || module.ends_with("::tests")
}

/// Every breach of the rules, one sentence each.
fn problems(g: &Graph) -> Vec<String> {
    let mut out: Vec<String> = cycles(g).into_iter().map(|c| format!("module cycle: {c}")).collect();
    for (module, path) in &g.root_items {
        out.push(format!("{module} imports `{path}` from the crate root: import it from the module that defines it"));
    }
    let in_api = |m: &str| m == "api" || m.starts_with("api::");
    for (from, to) in g.edges.iter().flat_map(|(f, ts)| ts.iter().map(move |t| (f, t))) {
        if from != ROOT && !in_api(from) && !is_test_module(from) && in_api(to) {
            out.push(format!("core module {from} uses handler module {to}: handlers depend on the core, never the reverse"));
        }
    }
    out
}

fn sources(dir: &Path, under: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, under, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.strip_prefix(under).unwrap().to_string_lossy().replace('\\', "/");
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn the_server_modules_form_no_cycle_and_skip_the_root() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    let g = graph(&files);
    // The parser sees the crate at all: a few edges that must be there.
    for (from, to) in [("api::dlq", "engine"), ("api::dlq", "api::journeys"), ("api", "state"), ("state", "engine"), ("crate", "api")] {
        assert!(g.edges.get(from).is_some_and(|t| t.contains(to)), "expected {from} -> {to} among {:#?}", g.edges);
    }
    let found = problems(&g);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect()
}

fn edges_of(g: &Graph, module: &str) -> Vec<String> {
    g.edges.get(module).map(|t| t.iter().cloned().collect()).unwrap_or_default()
}

#[test]
fn groups_nested_braces_inline_paths_and_super_are_references() {
    let g = graph(&files(&[
        ("lib.rs", "mod a; mod b; mod c; mod d; mod api; pub use a::X;"),
        ("a.rs", "use crate::{b::{self, Y}, c::Z as W};\nfn f() { let _ = crate::d::g(1); }"),
        ("b.rs", "pub struct Y;"),
        ("c.rs", "pub struct Z;"),
        ("d.rs", "pub fn g(_: u8) {}"),
        ("api/mod.rs", "mod x; mod y;\npub fn app() { x::h(); }"),
        ("api/x.rs", "use super::y::Q;\npub fn h() { self::inner(); }\nfn inner() {}"),
        ("api/y.rs", "pub struct Q; fn k() -> std::time::Duration { todo!() }"),
    ]));
    assert_eq!(edges_of(&g, "a"), ["b", "c", "d"]);
    assert_eq!(edges_of(&g, "api"), ["api::x"], "a child's bare name counts");
    assert_eq!(edges_of(&g, "api::x"), ["api::y"], "super:: is the parent; self:: is no edge; std:: is outside");
    assert_eq!(edges_of(&g, "crate"), ["a"], "`mod a;` declares; `pub use a::X` refers");
    assert!(problems(&g).is_empty(), "{:?}", problems(&g));
}

#[test]
fn comments_strings_and_chars_are_no_references() {
    let g = graph(&files(&[
        ("lib.rs", "mod a; mod b;"),
        (
            "a.rs",
            r####"
            //! See crate::b::Y.
            /* crate::b::Y /* nested crate::b::Y */ */
            fn f() -> &'static str { let _c = '{'; let _d = b'}'; let _e = '\''; r#"crate::b::Y"# }
            fn g() -> &'static str { "crate::b::Y \" crate::b::Y" }
            "####,
        ),
        ("b.rs", "pub struct Y;"),
    ]));
    assert_eq!(edges_of(&g, "a"), Vec::<String>::new(), "{g:#?}");
}

#[test]
fn a_cycle_is_reported_by_name() {
    let g = graph(&files(&[
        ("lib.rs", "mod api; mod engine;"),
        ("api/mod.rs", "mod dlq; mod journeys;\npub fn app() { dlq::get(); }"),
        ("api/dlq.rs", "use super::journeys::journey_body;\npub fn get() { journey_body(); }"),
        ("api/journeys.rs", "pub fn journey_body() { let _ = crate::api::dlq::get; }"),
        ("engine.rs", "pub struct Engine;"),
    ]));
    assert_eq!(cycles(&g), ["api::dlq -> api::journeys -> api::dlq"]);
    assert_eq!(problems(&g), ["module cycle: api::dlq -> api::journeys -> api::dlq"]);
}

#[test]
fn root_imports_and_core_modules_using_handlers_are_reported() {
    let g = graph(&files(&[
        ("lib.rs", "mod api; mod state; mod engine; pub use state::AppState;"),
        ("state.rs", "pub struct AppState;"),
        ("engine.rs", "use crate::{AppState, state};\nfn f() { crate::api::handler(); }\n#[cfg(test)]\nmod tests { use crate::api::handler; }"),
        ("api/mod.rs", "pub fn handler() {}"),
    ]));
    assert_eq!(
        problems(&g),
        [
            "engine imports `crate::AppState` from the crate root: import it from the module that defines it",
            "core module engine uses handler module api: handlers depend on the core, never the reverse",
        ],
        "a test module (engine::tests) may use the handlers"
    );
    assert_eq!(edges_of(&g, "engine::tests"), ["api"]);
}
