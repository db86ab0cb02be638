//! The causation tree of a correlation, built from its events.
//!
//! **Invariant:** every event of the correlation appears exactly once in the tree. An event whose
//! parent is not (yet) stored is a root marked `orphan`; when the parent arrives, the next build
//! attaches it. Events caught in a causation cycle become roots marked `cycle`. A chain deeper than
//! [`MAX_TREE_DEPTH`] continues as a new root marked `continued`, so no consumer of the tree needs
//! unbounded recursion.

use std::collections::HashMap;

use serde::Serialize;

use crate::EventRow;

/// Deepest nesting in one tree; deeper events start a `continued` root.
pub const MAX_TREE_DEPTH: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeNode {
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The causation id names an event that is not stored (yet).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub orphan: bool,
    /// The event is part of a causation cycle.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cycle: bool,
    /// The chain is deeper than the tree nests: this event's parent is shown elsewhere in the forest.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
    pub children: Vec<TreeNode>,
}

/// Builds the forest of `events` (given by time); children are ordered by time too.
pub fn build_tree(events: &[EventRow]) -> Vec<TreeNode> {
    let index: HashMap<&str, usize> = events.iter().enumerate().rev().map(|(i, e)| (e.event_id.as_str(), i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); events.len()];
    let mut roots = Vec::new();
    for (i, e) in events.iter().enumerate() {
        match e.causation_id.as_deref().and_then(|p| index.get(p)) {
            Some(&parent) if parent != i => children[parent].push(i),
            _ => roots.push(i),
        }
    }
    let mut placed = vec![false; events.len()];
    let mut forest: Vec<TreeNode> = roots.iter().map(|&i| build(i, events, &children, &mut placed, Start::Root)).collect();
    // Whatever no root reached is too deep (its parent is placed) or sits on a cycle.
    for i in 0..events.len() {
        if !placed[i] {
            let parent_placed = events[i].causation_id.as_deref().and_then(|p| index.get(p)).is_some_and(|&p| placed[p]);
            let start = if parent_placed { Start::Continued } else { Start::Cycle };
            forest.push(build(i, events, &children, &mut placed, start));
        }
    }
    forest.sort_by(|a, b| a.time.cmp(&b.time));
    forest
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    Root,
    Continued,
    Cycle,
}

fn build(i: usize, events: &[EventRow], children: &[Vec<usize>], placed: &mut [bool], start: Start) -> TreeNode {
    // Iterative depth-first construction: a deep chain must not overflow the stack.
    placed[i] = true;
    let mut stack: Vec<(usize, Vec<TreeNode>, usize)> = vec![(i, Vec::new(), 0)];
    loop {
        let (node, _, next) = stack.last_mut().expect("stack not empty");
        if let Some(&child) = children[*node].get(*next) {
            *next += 1;
            if !placed[child] && stack.len() < MAX_TREE_DEPTH {
                placed[child] = true;
                stack.push((child, Vec::new(), 0));
            }
            continue;
        }
        let (node, built, _) = stack.pop().expect("stack not empty");
        let e = &events[node];
        let finished = TreeNode {
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            source: e.source.clone(),
            time: e.time.clone(),
            causation_id: e.causation_id.clone(),
            orphan: stack.is_empty() && start == Start::Root && e.causation_id.is_some(),
            cycle: stack.is_empty() && start == Start::Cycle,
            continued: stack.is_empty() && start == Start::Continued,
            children: built,
        };
        match stack.last_mut() {
            Some((_, parent_built, _)) => parent_built.push(finished),
            None => return finished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, cause: Option<&str>, t: u32) -> EventRow {
        EventRow {
            seq: t as i64,
            event_id: id.into(),
            source: "s".into(),
            event_type: format!("T{id}"),
            correlation_id: Some("c".into()),
            causation_id: cause.map(Into::into),
            subject: None,
            time: format!("2026-11-23T10:00:{t:02}.000000Z"),
            redeliveries: 0,
            envelope: "{}".into(),
            received_at: String::new(),
            origin: Default::default(),
        }
    }

    fn shape(nodes: &[TreeNode]) -> String {
        nodes
            .iter()
            .map(|n| {
                let flag = if n.orphan {
                    "?"
                } else if n.cycle {
                    "@"
                } else {
                    ""
                };
                if n.children.is_empty() { format!("{}{flag}", n.event_id) } else { format!("{}{flag}({})", n.event_id, shape(&n.children)) }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn tree_orders_children_and_marks_orphans() {
        let events = [ev("a", None, 1), ev("b", Some("a"), 2), ev("c", Some("a"), 3), ev("d", Some("b"), 4), ev("x", Some("missing"), 5)];
        assert_eq!(shape(&build_tree(&events)), "a(b(d) c) x?");
    }

    #[test]
    fn orphan_attaches_when_its_parent_arrives() {
        let before = [ev("b", Some("a"), 2)];
        assert_eq!(shape(&build_tree(&before)), "b?");
        let after = [ev("a", None, 1), ev("b", Some("a"), 2)];
        assert_eq!(shape(&build_tree(&after)), "a(b)");
    }

    #[test]
    fn cycles_and_self_causation_do_not_lose_events() {
        let events = [ev("a", Some("b"), 1), ev("b", Some("a"), 2), ev("s", Some("s"), 3)];
        assert_eq!(shape(&build_tree(&events)), "a@(b) s?");
    }

    #[test]
    fn deep_chain_does_not_overflow() {
        let mut events = vec![ev("e0", None, 0)];
        for i in 1..50_000 {
            let mut e = ev(&format!("e{i}"), Some(&format!("e{}", i - 1)), 0);
            e.seq = i;
            events.push(e);
        }
        let tree = build_tree(&events);
        assert_eq!(tree.len(), 50_000 / MAX_TREE_DEPTH);
        assert!(tree[1..].iter().all(|n| n.continued));
        // Dropping a deep tree recursively would overflow too; unlink it iteratively.
        let mut pending = tree;
        let mut count = 0;
        while let Some(mut n) = pending.pop() {
            count += 1;
            pending.append(&mut n.children);
        }
        assert_eq!(count, 50_000);
    }
}
