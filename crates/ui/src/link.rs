//! Links to the pages of PRODUCT §9, by their stable addresses. Every id a page shows goes
//! through here, so every id is a link and every link is encoded the same way.

use maud::{Markup, html};

/// A path segment with everything but the unreserved characters percent-encoded: an id with `/`,
/// `?`, `#` or spaces stays one segment.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string value, encoded as a form would.
pub fn query_value(text: &str) -> String {
    segment(text)
}

pub fn event_href(id: &str) -> String {
    format!("/events/{}", segment(id))
}

pub fn correlation_href(id: &str) -> String {
    format!("/correlations/{}", segment(id))
}

pub fn journey_href(journey: &str, key: &str) -> String {
    format!("/journeys/{}/{}", segment(journey), segment(key))
}

pub fn dlq_href(id: i64) -> String {
    format!("/dlq/{id}")
}

/// The generated runbook of a finding kind (`causeway gen runbooks`, served at `/runbooks/…`).
pub fn runbook_href(kind: &str) -> String {
    format!("/runbooks/findings/{}", segment(kind))
}

/// Long ids (UUIDs) shortened for tables; the whole id stays in the title and the link.
pub fn short(id: &str) -> String {
    if id.chars().count() > 14 { format!("{}…", id.chars().take(8).collect::<String>()) } else { id.to_string() }
}

/// A label cut to `max` characters, ending in `…` when cut.
pub fn short_label(text: &str, max: usize) -> String {
    if text.chars().count() > max { format!("{}…", text.chars().take(max - 1).collect::<String>()) } else { text.to_string() }
}

pub fn event(id: &str) -> Markup {
    html! { a.mono href=(event_href(id)) title=(id) data-link="event" { (short(id)) } }
}

pub fn event_full(id: &str) -> Markup {
    html! { a.mono href=(event_href(id)) data-link="event" { (id) } }
}

pub fn correlation(id: &str) -> Markup {
    html! { a.mono href=(correlation_href(id)) title=(id) data-link="correlation" { (short(id)) } }
}

pub fn journey(journey: &str, key: &str) -> Markup {
    html! { a href=(journey_href(journey, key)) data-link="journey" { (journey) " " span.mono { (key) } } }
}

pub fn dlq(id: i64) -> Markup {
    html! { a.mono href=(dlq_href(id)) data-link="dlq" { "#" (id) } }
}

pub fn runbook(kind: &str) -> Markup {
    html! { a href=(runbook_href(kind)) data-link="runbook" { "runbook" } }
}

/// An RFC 3339 time shown to the second, the whole text in its title.
pub fn time(text: &str) -> Markup {
    let shown = text.get(..19).map(|t| t.replace('T', " ")).unwrap_or_else(|| text.to_string());
    html! { time datetime=(text) title=(text) { (shown) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(segment("ord-000014"), "ord-000014");
        assert_eq!(segment("a/b c?#"), "a%2Fb%20c%3F%23");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(journey_href("order", "o/1"), "/journeys/order/o%2F1");
        assert_eq!(short("27905a1d-447c-46c4-a6e5-c983a8893ed9"), "27905a1d…");
        assert_eq!(short("ord-1"), "ord-1");
        assert_eq!(
            time("2026-12-06T04:16:16.253000Z").into_string(),
            r#"<time datetime="2026-12-06T04:16:16.253000Z" title="2026-12-06T04:16:16.253000Z">2026-12-06 04:16:16</time>"#
        );
    }
}
