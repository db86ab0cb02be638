//! Reading marked YAML nodes into plain values, reporting type errors where they stand.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span as YamlSpan};
use serde_json::Value;

use crate::Position;
use crate::diagnostic::Sink;

pub(crate) fn pos(span: &YamlSpan) -> Position {
    span.start().map(|m| Position { file: m.source(), line: m.line(), column: m.column() }).unwrap_or_default()
}

pub(crate) fn node_pos(node: &Node) -> Position {
    pos(node.span())
}

fn kind(node: &Node) -> &'static str {
    match node {
        Node::Scalar(_) => "a scalar",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

/// Reports keys of `map` not in `allowed`, suggesting the closest allowed key.
pub(crate) fn check_keys(sink: &mut Sink, map: &MarkedMappingNode, allowed: &[&str], what: &str) {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let hint = closest(key.as_str(), allowed.iter().copied()).map(|k| format!("; did you mean '{k}'?")).unwrap_or_default();
            sink.error(pos(key.span()), format!("unknown key '{}' in {what} (expected one of: {}){hint}", key.as_str(), allowed.join(", ")));
        }
    }
}

/// The allowed name closest to `word`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub(crate) fn as_mapping<'a>(sink: &mut Sink, node: &'a Node, what: &str) -> Option<&'a MarkedMappingNode> {
    match node {
        Node::Mapping(m) => Some(m),
        other => {
            sink.error(node_pos(other), format!("{what} must be a mapping, found {}", kind(other)));
            None
        }
    }
}

pub(crate) fn as_scalar<'a>(sink: &mut Sink, node: &'a Node, what: &str) -> Option<&'a MarkedScalarNode> {
    match node {
        Node::Scalar(s) => Some(s),
        other => {
            sink.error(node_pos(other), format!("{what} must be a single value, found {}", kind(other)));
            None
        }
    }
}

/// A string value; the position is the value's.
pub(crate) fn string(sink: &mut Sink, node: &Node, what: &str) -> Option<(String, Position)> {
    let s = as_scalar(sink, node, what)?;
    if s.as_str().is_empty() {
        sink.error(pos(s.span()), format!("{what} must not be empty"));
        return None;
    }
    Some((s.as_str().to_string(), pos(s.span())))
}

/// A list of strings; a single string is accepted as a list of one.
pub(crate) fn string_list(sink: &mut Sink, node: &Node, what: &str) -> Vec<(String, Position)> {
    match node {
        Node::Sequence(items) => items.iter().filter_map(|item| string(sink, item, &format!("an entry of {what}"))).collect(),
        Node::Scalar(_) => string(sink, node, what).into_iter().collect(),
        Node::Mapping(_) => {
            sink.error(node_pos(node), format!("{what} must be a list of names, found a mapping"));
            Vec::new()
        }
    }
}

/// The JSON value of a YAML node (for schemas and constants). Plain scalars are typed the way YAML
/// 1.2's core schema types them; quoted scalars stay strings.
pub(crate) fn to_json(node: &Node) -> Value {
    match node {
        Node::Scalar(s) => scalar_json(s),
        Node::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Node::Mapping(m) => Value::Object(m.iter().map(|(k, v)| (k.as_str().to_string(), to_json(v))).collect()),
    }
}

fn scalar_json(s: &MarkedScalarNode) -> Value {
    let text = s.as_str();
    if !s.may_coerce() {
        return Value::String(text.to_string());
    }
    match text {
        "null" | "Null" | "NULL" | "~" | "" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if text.contains(['.', 'e', 'E'])
        && !text.starts_with('.')
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

/// The node at a JSON pointer below `node`, if the path exists.
pub(crate) fn node_at<'a>(node: &'a Node, pointer: &str) -> Option<&'a Node> {
    let mut current = node;
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        current = match current {
            Node::Mapping(m) => m.get(segment.as_str())?,
            Node::Sequence(items) => items.get(segment.parse::<usize>().ok()?)?,
            Node::Scalar(_) => return None,
        };
    }
    Some(current)
}
