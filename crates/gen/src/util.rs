//! Small helpers shared by the generators: names, durations, quoting, and questions about the model.

use causeway_model::{EventDef, Key, Model};

pub(crate) use causeway_model::format_duration as duration;

/// `99.0` → `99%`, `99.9` → `99.9%`.
pub(crate) fn percent(p: f64) -> String {
    format!("{p}%")
}

/// A name usable as one path segment: anything but letters, digits, `.`, `_` and `-` becomes `_`.
pub(crate) fn file_name(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with('.') { format!("_{s}") } else { s }
}

/// A name usable in a URN segment or a component key: letters, digits, `.`, `_`, `-`; others
/// percent-encoded (URN) or replaced by `_` (keys).
pub(crate) fn urn_part(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A key for an AsyncAPI map (`^[a-zA-Z0-9.\-_]+$`).
pub(crate) fn key(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.is_empty() { "_".into() } else { s }
}

/// `OrderCreated` → `Order created`.
pub(crate) fn humanize(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' {
            out.push(' ');
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
    }
    out
}

/// `10000` → `10,000`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An SQL string literal.
pub(crate) fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `a, b` as SQL literals for `IN (…)`.
pub(crate) fn sql_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items.into_iter().map(|s| sql_str(s.as_ref())).collect::<Vec<_>>().join(", ")
}

/// `causeway sql "…"`, quoted for a POSIX shell.
pub(crate) fn causeway_sql(query: &str) -> String {
    let mut q = String::new();
    for c in query.chars() {
        if matches!(c, '"' | '$' | '`' | '\\') {
            q.push('\\');
        }
        q.push(c);
    }
    format!("causeway sql \"{q}\"")
}

/// `` `a`, `b` and `c` ``.
pub(crate) fn code_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| format!("`{}`", s.as_ref())).collect();
    match items.len() {
        0 => "(none)".into(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

/// The services allowed to produce `event`: its owning context's services.
pub(crate) fn producers<'m>(model: &'m Model, event: &EventDef) -> &'m [String] {
    model.contexts.get(&event.context).map(|c| c.services.as_slice()).unwrap_or(&[])
}

/// `team-checkout` or `(no owner in the model)`.
pub(crate) fn owner_or_none(owner: Option<&str>) -> String {
    owner.map(|o| format!("`{o}`")).unwrap_or_else(|| "(no owner in the model)".into())
}

/// "context `ordering` (owner `team-checkout`)".
pub(crate) fn context_label(model: &Model, context: &str) -> String {
    match model.owner_of_context(context) {
        Some(owner) => format!("context `{context}` (owner `{owner}`)"),
        None => format!("context `{context}`"),
    }
}

/// The commands that emit `event`, in model order.
pub(crate) fn commands_emitting<'m>(model: &'m Model, event: &str) -> Vec<&'m str> {
    model.commands.iter().filter(|(_, c)| c.emits.iter().any(|e| e == event)).map(|(n, _)| n.as_str()).collect()
}

/// The journeys that name `event` as a milestone or outcome.
pub(crate) fn journeys_of<'m>(model: &'m Model, event: &str) -> Vec<&'m str> {
    model
        .journeys
        .iter()
        .filter(|(_, j)| j.milestones.iter().chain(j.outcomes.values().flatten()).any(|e| e == event))
        .map(|(n, _)| n.as_str())
        .collect()
}

/// Whether consumers read `event`'s business key from `subject`: its aggregate or a journey naming
/// it is keyed by subject, so a producer must set it.
pub(crate) fn needs_subject(model: &Model, name: &str, event: &EventDef) -> bool {
    let by_aggregate = event.aggregate.as_ref().and_then(|a| model.aggregates.get(a)).is_some_and(|a| matches!(a.key, Some(Key::Subject)));
    let by_journey = journeys_of(model, name).iter().any(|j| model.journeys[*j].key == Key::Subject);
    by_aggregate || by_journey
}

/// The schema versions of an event in ascending order; an event without a schema has version 1
/// with no schema (any payload).
pub(crate) fn versions(event: &EventDef) -> Vec<(u32, Option<&serde_json::Value>)> {
    if event.versions.is_empty() {
        return vec![(1, None)];
    }
    let mut v: Vec<(u32, Option<&serde_json::Value>)> = event.versions.iter().map(|(n, s)| (*n, Some(s))).collect();
    v.sort_by_key(|(n, _)| *n);
    v
}

/// The services that react to `event` through a policy, with the policies, in model order:
/// the services of the contexts owning each policy's `then` events. A context without services
/// stands for itself.
pub(crate) fn reactors<'m>(model: &'m Model, event: &str) -> Vec<Reactor<'m>> {
    let mut out: Vec<Reactor<'m>> = Vec::new();
    for (policy_name, policy) in model.policies.iter().filter(|(_, p)| p.when == event) {
        for then in &policy.then {
            let Some(then_def) = model.events.get(then) else { continue };
            let context = then_def.context.as_str();
            let services: Vec<&str> = match model.contexts.get(context) {
                Some(c) if !c.services.is_empty() => c.services.iter().map(String::as_str).collect(),
                _ => vec![context],
            };
            for service in services {
                match out.iter_mut().find(|r| r.service == service) {
                    Some(r) => {
                        if !r.policies.contains(&policy_name.as_str()) {
                            r.policies.push(policy_name);
                        }
                    }
                    None => out.push(Reactor { service, context, policies: vec![policy_name] }),
                }
            }
        }
    }
    out
}

pub(crate) struct Reactor<'m> {
    pub service: &'m str,
    pub context: &'m str,
    pub policies: Vec<&'m str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(file_name("a/b c"), "a_b_c");
        assert_eq!(file_name(".."), "_..");
        assert_eq!(urn_part("my model"), "my%20model");
        assert_eq!(humanize("OrderCreated"), "Order created");
        assert_eq!(humanize("reserve-after-payment"), "reserve after payment");
        assert_eq!(causeway_sql("SELECT '$x' AS \"a\""), r#"causeway sql "SELECT '\$x' AS \"a\"""#);
        assert_eq!(sql_str("it's"), "'it''s'");
        assert_eq!(percent(99.0), "99%");
        assert_eq!(percent(99.9), "99.9%");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
