//! The event-time clock made of watermarks (PRODUCT §4): each source of evidence has a watermark,
//! the latest event time it delivered less the allowed lateness; the clock is the least watermark
//! of the sources that are not idle, and follows the receive clock (less the lateness) when every
//! source is idle. Unlike the usual stream-processing rule, the clock may move back: a source that
//! is behind and becomes active (a backfill, a consumer resuming a backlog) pulls it down to its
//! own watermark, so its evidence is judged in its own event time.
//!
//! **Invariants:**
//! - Pure and deterministic: the clock is a function of what was observed (source, event time,
//!   receive time) and the receive time asked about, never of a clock read here. Replaying the
//!   observations of a log therefore gives the live run's clock, which a rebuild relies on.
//! - For the same observations, [`Watermarks::clock`] never decreases as the receive time grows
//!   (sources only go idle, and the wall term only grows), so any number of ticks between two
//!   receive times judges what one tick at the later time judges.
//! - The clock never runs ahead of the receive time less the lateness: no deadline counts as
//!   passed before it has passed where evidence is received.
//! - Bounded: at most [`MAX_SOURCES`] sources are remembered; beyond that, the one heard from
//!   longest ago is forgotten (it is idle long since) and is new again if it comes back.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Sources remembered at once.
pub const MAX_SOURCES: usize = 4_096;

/// How late evidence may arrive, and when a silent source stops holding the clock back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkConfig {
    /// Subtracted from every watermark and from the receive clock: evidence up to this late is
    /// judged as if on time.
    pub allowed_lateness: Duration,
    /// A source that delivered nothing for this long no longer holds the clock back.
    pub idle_after: Duration,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig { allowed_lateness: Duration::from_secs(5), idle_after: Duration::from_secs(30) }
    }
}

/// What is known of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceView {
    pub name: String,
    /// Its watermark: the latest event time it delivered less the allowed lateness; `None` for a
    /// source the model declares that delivered nothing yet.
    pub watermark: Option<DateTime<Utc>>,
    /// The receive time of its latest delivery.
    pub last_heard: Option<DateTime<Utc>>,
    /// Whether it holds the clock back at the receive time asked about.
    pub idle: bool,
    pub events: u64,
    /// Events it delivered stamped before the clock at their arrival (judged late, still applied
    /// by their event time).
    pub late_events: u64,
    /// The largest of their lateness (clock at arrival less event time).
    pub max_lateness: Duration,
    /// The sum of their lateness, for an average.
    pub total_lateness: Duration,
}

#[derive(Debug, Clone)]
struct Source {
    name: String,
    /// Latest event time delivered, µs; `None` until it delivers.
    latest: Option<i64>,
    /// Receive time of its latest delivery, µs; `None` until it delivers (a declared source then
    /// counts from the first evidence of all).
    heard: Option<i64>,
    events: u64,
    late: u64,
    max_late: i64,
    total_late: i64,
}

/// The watermarks of every source, and the clock they make.
#[derive(Debug, Clone)]
pub struct Watermarks {
    lateness: i64,
    idle: i64,
    sources: Vec<Source>,
    index: HashMap<String, usize>,
    /// The place of the source observed last: a log delivers runs of one source's events, which
    /// then need no lookup. Checked against the name (a place is reused when the sources are full).
    last: usize,
    /// Receive time of the first evidence: a declared source that never delivered is idle from
    /// `idle_after` after it.
    first_heard: Option<i64>,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

impl Watermarks {
    /// Watermarks for the given sources, known before they deliver (the model's services): until
    /// each delivered or went idle, nothing is judged, so a producer that starts a little after
    /// another does not find its reactions judged missing.
    pub fn new<S: Into<String>>(config: WatermarkConfig, declared: impl IntoIterator<Item = S>) -> Watermarks {
        let mut w = Watermarks {
            lateness: micros(config.allowed_lateness),
            idle: micros(config.idle_after),
            sources: Vec::new(),
            index: HashMap::new(),
            last: 0,
            first_heard: None,
        };
        for name in declared {
            w.declare(name);
        }
        w
    }

    /// A source known before it delivers (a broker partition assigned to causeway, say): it holds
    /// the clock from now until it delivers or goes idle. Known already: nothing changes.
    pub fn declare<S: Into<String>>(&mut self, name: S) {
        let name = name.into();
        if !self.index.contains_key(&name) && self.sources.len() < MAX_SOURCES {
            self.index.insert(name.clone(), self.sources.len());
            self.sources.push(Source { name, latest: None, heard: None, events: 0, late: 0, max_late: 0, total_late: 0 });
        }
    }

    /// One event delivered by `source`, received at `received_at`; `clock` is the evaluator's
    /// clock as it arrives. Returns whether it is late: stamped before that clock.
    pub fn observe(&mut self, source: &str, event_time: DateTime<Utc>, received_at: DateTime<Utc>, clock: Option<DateTime<Utc>>) -> bool {
        let (t, r) = (event_time.timestamp_micros(), received_at.timestamp_micros());
        self.first_heard.get_or_insert(r);
        let i = match self.sources.get(self.last) {
            Some(s) if s.name == source => self.last,
            _ => {
                let i = match self.index.get(source) {
                    Some(&i) => i,
                    None => self.add(source),
                };
                self.last = i;
                i
            }
        };
        let s = &mut self.sources[i];
        s.latest = Some(s.latest.map_or(t, |l| l.max(t)));
        s.heard = Some(s.heard.map_or(r, |h| h.max(r)));
        s.events += 1;
        match clock.map(|c| c.timestamp_micros()) {
            Some(c) if t < c => {
                let late = c - t;
                s.late += 1;
                s.max_late = s.max_late.max(late);
                s.total_late = s.total_late.saturating_add(late);
                true
            }
            _ => false,
        }
    }

    fn add(&mut self, source: &str) -> usize {
        if self.sources.len() < MAX_SOURCES {
            self.index.insert(source.to_owned(), self.sources.len());
            self.sources.push(Source { name: source.to_owned(), latest: None, heard: None, events: 0, late: 0, max_late: 0, total_late: 0 });
            return self.sources.len() - 1;
        }
        // Full: the source heard from longest ago (never-heard ones first) gives its place.
        let (i, _) = self.sources.iter().enumerate().min_by_key(|(i, s)| (s.heard.unwrap_or(i64::MIN), *i)).expect("sources");
        self.index.remove(&self.sources[i].name);
        self.index.insert(source.to_owned(), i);
        self.sources[i] = Source { name: source.to_owned(), latest: None, heard: None, events: 0, late: 0, max_late: 0, total_late: 0 };
        i
    }

    /// Whether `s` holds the clock back at receive time `r`.
    fn active(&self, s: &Source, r: i64) -> bool {
        match s.heard.or(self.first_heard) {
            Some(h) => r.saturating_sub(h) < self.idle,
            None => false,
        }
    }

    /// The clock at receive time `received_at`: the least watermark of the active sources, never
    /// past `received_at` less the lateness. `None` while a source the model declares has not
    /// delivered and is not idle yet, or before any evidence: no deadline is judged then.
    pub fn clock(&self, received_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let r = received_at.timestamp_micros();
        self.first_heard?;
        let mut clock = r.saturating_sub(self.lateness);
        for s in &self.sources {
            if self.active(s, r) {
                clock = clock.min(s.latest?.saturating_sub(self.lateness));
            }
        }
        Some(time(clock))
    }

    /// When, after receive time `received_at` and with nothing more observed, the clock next
    /// moves far enough to judge something: a source going idle, or `next_deadline` passing
    /// while the clock follows the receive clock. `None`: nothing is due to change.
    pub fn next_change(&self, received_at: DateTime<Utc>, next_deadline: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let r = received_at.timestamp_micros();
        let mut next = next_deadline.map(|d| d.timestamp_micros().saturating_add(self.lateness)).filter(|&t| t > r);
        for s in &self.sources {
            if self.active(s, r)
                && let Some(h) = s.heard.or(self.first_heard)
            {
                let idle_at = h.saturating_add(self.idle);
                next = Some(next.map_or(idle_at, |n: i64| n.min(idle_at)));
            }
        }
        next.map(time)
    }

    /// Every source, as of receive time `received_at`, in the order first seen.
    pub fn sources(&self, received_at: DateTime<Utc>) -> Vec<SourceView> {
        let r = received_at.timestamp_micros();
        let dur = |us: i64| Duration::from_micros(us.max(0) as u64);
        self.sources
            .iter()
            .map(|s| SourceView {
                name: s.name.clone(),
                watermark: s.latest.map(|l| time(l.saturating_sub(self.lateness))),
                last_heard: s.heard.map(time),
                idle: !self.active(s, r),
                events: s.events,
                late_events: s.late,
                max_lateness: dur(s.max_late),
                total_lateness: dur(s.total_late),
            })
            .collect()
    }

    /// Late events over all sources.
    pub fn late_events(&self) -> u64 {
        self.sources.iter().map(|s| s.late).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn config(lateness: u64, idle: u64) -> WatermarkConfig {
        WatermarkConfig { allowed_lateness: Duration::from_secs(lateness), idle_after: Duration::from_secs(idle) }
    }

    #[test]
    fn the_clock_is_the_least_watermark_of_active_sources() {
        let mut w = Watermarks::new(config(5, 30), Vec::<String>::new());
        assert_eq!(w.clock(at(0)), None, "no evidence, no clock");
        w.observe("b", at(40), at(1_000), None);
        w.observe("a", at(100), at(1_010), None);
        assert_eq!(w.clock(at(1_010)), Some(at(35)));
        // b goes idle: a holds the clock alone.
        assert_eq!(w.clock(at(1_030)), Some(at(95)));
        w.observe("a", at(120), at(1_020), None);
        assert_eq!(w.clock(at(1_040)), Some(at(115)));
        // Both idle: the receive clock less the lateness.
        assert_eq!(w.clock(at(1_050)), Some(at(1_045)));
    }

    #[test]
    fn the_clock_moves_back_when_a_source_behind_becomes_active() {
        let mut w = Watermarks::new(config(5, 30), Vec::<String>::new());
        w.observe("live", at(1_000), at(1_000), None);
        assert_eq!(w.clock(at(2_000)), Some(at(1_995)), "idle: follows the receive clock");
        w.observe("backfill", at(100), at(2_000), w.clock(at(2_000)));
        assert_eq!(w.clock(at(2_000)), Some(at(95)));
    }

    #[test]
    fn the_clock_never_passes_the_receive_clock() {
        let mut w = Watermarks::new(config(5, 30), Vec::<String>::new());
        w.observe("ahead", at(5_000), at(1_000), None);
        assert_eq!(w.clock(at(1_000)), Some(at(995)));
    }

    #[test]
    fn a_declared_source_holds_the_clock_until_it_delivers_or_goes_idle() {
        let mut w = Watermarks::new(config(5, 30), ["order", "payment"]);
        w.observe("order", at(100), at(1_000), None);
        assert_eq!(w.clock(at(1_000)), None, "payment has said nothing yet");
        assert_eq!(w.clock(at(1_029)), None);
        assert_eq!(w.clock(at(1_030)), Some(at(1_025)), "payment idle since the first evidence, and order too");
        w.observe("payment", at(90), at(1_001), None);
        assert_eq!(w.clock(at(1_001)), Some(at(85)));
        assert_eq!(w.next_change(at(1_001), None), Some(at(1_030)), "order goes idle first");
    }

    #[test]
    fn the_clock_never_falls_as_the_receive_clock_grows() {
        let mut w = Watermarks::new(config(2, 7), ["x"]);
        let events = [("a", 50, 0), ("b", 10, 1), ("a", 70, 3), ("c", 30, 9), ("b", 20, 12), ("x", 5, 13)];
        for (s, t, r) in events {
            w.observe(s, at(t), at(r), None);
            let mut last = None;
            for later in r..r + 40 {
                let c = w.clock(at(later));
                assert!(c >= last, "clock fell at {later}: {c:?} after {last:?}");
                last = c;
            }
        }
    }

    #[test]
    fn late_events_are_counted_per_source() {
        let mut w = Watermarks::new(config(5, 30), Vec::<String>::new());
        assert!(!w.observe("a", at(100), at(100), None));
        assert!(w.observe("a", at(90), at(101), Some(at(95))));
        assert!(!w.observe("a", at(96), at(101), Some(at(95))));
        let a = &w.sources(at(101))[0];
        assert_eq!((a.events, a.late_events, a.max_lateness), (3, 1, Duration::from_secs(5)));
        assert_eq!(w.late_events(), 1);
    }

    #[test]
    fn sources_are_bounded_and_the_longest_silent_gives_way() {
        let mut w = Watermarks::new(config(0, 1_000_000), Vec::<String>::new());
        for i in 0..MAX_SOURCES as i64 {
            w.observe(&format!("s{i}"), at(i), at(i), None);
        }
        w.observe("new", at(10_000), at(10_000), None);
        let names: Vec<String> = w.sources(at(10_000)).into_iter().map(|s| s.name).collect();
        assert_eq!(names.len(), MAX_SOURCES);
        assert!(!names.contains(&"s0".to_string()) && names.contains(&"new".to_string()) && names.contains(&"s1".to_string()));
    }

    #[test]
    fn each_event_counts_for_its_own_source_when_places_are_reused() {
        let mut w = Watermarks::new(config(0, 1_000_000), Vec::<String>::new());
        for i in 0..MAX_SOURCES as i64 {
            w.observe(&format!("s{i}"), at(i), at(i), None);
        }
        // "new" takes s0's place; s0 comes back in s1's; runs of one source alternate.
        for (source, t) in [("new", 10_000), ("new", 10_001), ("s0", 10_002), ("new", 10_003), ("s0", 10_004), ("s0", 10_005)] {
            w.observe(source, at(t), at(t), None);
        }
        let sources = w.sources(at(10_005));
        let of = |name: &str| sources.iter().find(|s| s.name == name).map(|s| (s.events, s.watermark));
        assert_eq!(of("new"), Some((3, Some(at(10_003)))));
        assert_eq!(of("s0"), Some((3, Some(at(10_005)))));
        assert_eq!(of("s1"), None);
        assert_eq!(of("s2"), Some((1, Some(at(2)))));
    }
}
