//! The web UI of PRODUCT §9: every page as HTML rendered on the server, from the same JSON the
//! API answers (so a page shows what `/v1/…` says), with SVG charts drawn here and one stylesheet
//! and one small script compiled into the binary. Nothing is loaded from elsewhere: no CDN, no web
//! font.
//!
//! The server (`causeway-server`, `api/pages.rs`) gathers each page's data and calls
//! [`pages`]; this crate holds no state and does no I/O.
//!
//! **Invariants:**
//! - Every text that comes from data is escaped (maud escapes by default; the canvas's SVG comes
//!   from `causeway-canvas`, which escapes its own).
//! - Every id shown is a link to its page ([`link`]): finding → journey → correlation → event →
//!   DLQ record.
//! - A page's `<main>` is also served alone ([`Shell::fragment`]), which the script swaps in for
//!   live updates.

pub mod charts;
pub mod link;
pub mod pages;

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The stylesheet, served at [`STYLE_PATH`].
pub const STYLE: &str = include_str!("../assets/ui.css");
/// The script, served at [`SCRIPT_PATH`].
pub const SCRIPT: &str = include_str!("../assets/ui.js");
/// The icon, served at [`ICON_PATH`] (a browser asks for one; without it, a console error).
pub const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#f59e0b"/><path d="M6 22h20M9 22V12M16 22V8M23 22v-7" stroke="#1d2330" stroke-width="3" stroke-linecap="round"/></svg>"##;
pub const STYLE_PATH: &str = "/ui/causeway.css";
pub const SCRIPT_PATH: &str = "/ui/causeway.js";
pub const ICON_PATH: &str = "/ui/icon.svg";

/// The sections of the header's navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    OnCall,
    Journeys,
    Dlq,
    Canvas,
    Runbooks,
    /// A page of no section (an event, a correlation, a search).
    Other,
}

const NAV: [(Section, &str, &str); 6] = [
    (Section::Overview, "/", "Overview"),
    (Section::OnCall, "/on-call", "On-call"),
    (Section::Journeys, "/journeys", "Journeys"),
    (Section::Dlq, "/dlq", "DLQ"),
    (Section::Canvas, "/canvas", "Canvas"),
    (Section::Runbooks, "/runbooks", "Runbooks"),
];

/// What every page shares: its title, section, and whether it updates itself.
#[derive(Debug, Clone)]
pub struct Shell {
    pub title: String,
    pub section: Section,
    /// The model's name, shown beside the brand.
    pub model: Option<String>,
    /// Seconds between live updates of `<main>`; none for a page that does not change.
    pub live: Option<u32>,
    /// What the search field holds.
    pub query: String,
}

impl Shell {
    pub fn new(title: impl Into<String>, section: Section) -> Shell {
        Shell { title: title.into(), section, model: None, live: None, query: String::new() }
    }

    pub fn live(mut self, seconds: u32) -> Shell {
        self.live = Some(seconds);
        self
    }

    pub fn model(mut self, name: Option<String>) -> Shell {
        self.model = name;
        self
    }

    pub fn query(mut self, text: impl Into<String>) -> Shell {
        self.query = text.into();
        self
    }

    /// The whole page around `main` (the page's content).
    pub fn document(&self, main: Markup) -> String {
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    title { (self.title) " · causeway" }
                    link rel="icon" href=(ICON_PATH) type="image/svg+xml";
                    link rel="stylesheet" href=(STYLE_PATH);
                    script src=(SCRIPT_PATH) defer {}
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href="/" { "causeway" @if let Some(m) = &self.model { small { (m) } } }
                        nav aria-label="Sections" {
                            @for (section, href, label) in NAV {
                                @if section == self.section {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        form.search role="search" action="/search" method="get" {
                            input type="search" name="q" value=(self.query) aria-label="Search"
                                placeholder="event id, correlation id, business key or DLQ record" accesskey="k";
                            button type="submit" { "Go" }
                        }
                        // Shown by the script to a browser signed in with a token.
                        form.sign-out method="post" action="/sign-out" hidden {
                            button type="submit" { "Sign out" }
                        }
                    }
                    main id="main" data-live=[self.live] { (main) }
                }
            }
        };
        page.into_string()
    }

    /// `main` alone, for a live update.
    pub fn fragment(&self, main: Markup) -> String {
        main.into_string()
    }
}

/// The heading of a page, with the live marker when it updates itself.
pub fn heading(title: &str, sub: Option<&str>, live: bool) -> Markup {
    html! {
        h1 {
            (title)
            @if let Some(s) = sub { span.sub { (s) } }
            @if live { span.live-status { "live" } }
        }
    }
}

/// A page for a thing that is not there, or a request that cannot be answered, with what to do.
pub fn problem(title: &str, sentence: &str) -> Markup {
    html! {
        h1 { (title) }
        div.notice.bad { p { (sentence) } }
        p { a href="/" { "Back to the overview" } }
    }
}

/// A small figure: a big number and what it counts.
pub fn tile(value: impl std::fmt::Display, label: &str, tone: Tone) -> Markup {
    html! {
        div class=(format!("tile {}", tone.class())) data-tile=(label) {
            div.value { (value) }
            div.label { (label) }
        }
    }
}

/// How a figure should be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Plain => "",
            Tone::Good => "good",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
        }
    }

    /// Bad when there are any, good when none.
    pub fn of_count(n: i64) -> Tone {
        if n > 0 { Tone::Bad } else { Tone::Good }
    }
}

/// JSON, indented, in a scrollable block.
pub fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json.mono { (text) } }
}

/// Markdown (a generated runbook) as HTML. Raw HTML in it is shown as text, not interpreted.
pub fn markdown(text: &str) -> Markup {
    use pulldown_cmark::{Event, Options, Parser};
    let parser = Parser::new_ext(text, Options::ENABLE_TABLES).map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    html! { div.markdown { (PreEscaped(out)) } }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A duration in seconds, as a person reads it: `45 s`, `12 min`, `3.5 h`, `2.1 d`.
pub fn human_seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86400.0)
    }
}

/// A percentage with one decimal, or `–` for none.
pub fn percent(share: Option<f64>) -> String {
    match share {
        Some(p) => format!("{:.1}%", p * 100.0),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(-1234567), "-1,234,567");
        assert_eq!(human_seconds(0.25), "250 ms");
        assert_eq!(human_seconds(45.0), "45 s");
        assert_eq!(human_seconds(720.0), "12 min");
        assert_eq!(human_seconds(12_600.0), "3.5 h");
        assert_eq!(percent(Some(0.9876)), "98.8%");
        assert_eq!(percent(None), "–");
    }

    #[test]
    fn data_is_escaped_and_markdown_html_is_not_interpreted() {
        let page = Shell::new("<script>alert(1)</script>", Section::Other).document(html! { p { "<b>" } });
        assert!(!page.contains("<script>alert(1)"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<p>&lt;b&gt;</p>"));
        let md = markdown("# Title\n\n<img src=x onerror=alert(1)>\n\n`code`").into_string();
        assert!(md.contains("<h1>Title</h1>"), "{md}");
        assert!(!md.contains("<img"), "{md}");
        assert!(md.contains("<code>code</code>"));
    }

    #[test]
    fn the_current_section_is_marked_for_assistive_technology() {
        let page = Shell::new("DLQ", Section::Dlq).live(5).document(html! {});
        assert!(page.contains(r#"<a href="/dlq" aria-current="page">DLQ</a>"#), "{page}");
        assert!(page.contains(r#"data-live="5""#));
        assert_eq!(page.matches("aria-current").count(), 1);
    }
}
