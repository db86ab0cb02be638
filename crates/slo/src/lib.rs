//! SLOs judged by event time (PRODUCT §3 `slos`, §6 `/v1/slo`).
//!
//! Each SLO keeps a [`Ledger`]: how many of the things its SLI judges were good and bad, per
//! minute of event time. [`evaluate`] turns a ledger into what an on-call engineer reads: the SLI
//! over the SLO's window, the error budget left, the burn rate over each of the SRE workbook's
//! windows and the alert state its multi-window, multi-burn-rate table gives.
//!
//! **Invariants:**
//! - Judged by event time: a verdict is filed under the minute it happened in (a late reaction's
//!   deadline, a journey's outcome), whenever the evidence arrived; `now` is the journey engine's
//!   event-time clock.
//! - A window `W` ending at `now` covers the whole minutes `(now − W, now]`: the 5-minute window
//!   is the five minutes up to and including the current one.
//! - Bounded memory: a ledger keeps the minutes of its longest window (the SLO's own, or 3 days)
//!   behind the latest verdict and forgets older ones; its running totals (for counters) keep
//!   growing.
//! - An alert needs both of its windows over the threshold, so a burst that has passed (long
//!   window hot, short window cool) pages no one, and a window with nothing judged burns nothing.

use std::collections::BTreeMap;

use causeway_model::{Model, Sli};

const MINUTE_MS: i64 = 60_000;

/// The burn-rate windows, in minutes, by name.
pub const WINDOWS: [(&str, i64); 7] = [("5m", 5), ("30m", 30), ("1h", 60), ("2h", 120), ("6h", 360), ("1d", 1_440), ("3d", 4_320)];

/// The SRE workbook's table: a severity fires when the burn rate exceeds `factor` over both the
/// long and the short window.
pub const RULES: [AlertRule; 4] = [
    AlertRule { severity: Severity::Page, factor: 14.4, long: "1h", short: "5m" },
    AlertRule { severity: Severity::Page, factor: 6.0, long: "6h", short: "30m" },
    AlertRule { severity: Severity::Ticket, factor: 3.0, long: "1d", short: "2h" },
    AlertRule { severity: Severity::Ticket, factor: 1.0, long: "3d", short: "6h" },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ticket,
    Page,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ticket => "ticket",
            Severity::Page => "page",
        }
    }
}

/// One row of the alerting table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertRule {
    pub severity: Severity,
    pub factor: f64,
    pub long: &'static str,
    pub short: &'static str,
}

/// Good and bad verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub good: u64,
    pub bad: u64,
}

impl Tally {
    pub fn total(self) -> u64 {
        self.good + self.bad
    }

    fn add(&mut self, other: Tally) {
        self.good += other.good;
        self.bad += other.bad;
    }

    /// The share of bad verdicts; `None` when nothing was judged.
    pub fn error_ratio(self) -> Option<f64> {
        (self.total() > 0).then(|| self.bad as f64 / self.total() as f64)
    }
}

/// An SLO as the model declares it, with what its SLI measures in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub name: String,
    pub sli: Sli,
    /// The share of good verdicts promised, 0–1.
    pub target: f64,
    pub window_minutes: i64,
}

impl Objective {
    /// The model's SLOs, in its order.
    pub fn all(model: &Model) -> Vec<Objective> {
        model
            .slos
            .iter()
            .map(|(name, slo)| Objective {
                name: name.clone(),
                sli: slo.sli.clone(),
                // Rounded so that 99.9% reads 0.999, not 0.9990000000000001.
                target: (slo.objective_percent * 1e7).round() / 1e9,
                window_minutes: (slo.window_ms as i64 / MINUTE_MS).max(1),
            })
            .collect()
    }

    /// The error budget as a ratio: the share of bad verdicts the objective allows.
    pub fn budget(&self) -> f64 {
        // From the percentage: 1 − 0.99 is 0.010000000000000009.
        ((1.0 - self.target) * 1e9).round() / 1e9
    }

    /// The SLI's kind as the model names it.
    pub fn sli_kind(&self) -> &'static str {
        match self.sli {
            Sli::EventSuccess { .. } | Sli::EventTypeSuccess { .. } => "event_success",
            Sli::ReactionLatency { .. } => "reaction_latency",
            Sli::JourneyCompletion { .. } => "journey_completion",
        }
    }

    /// What the SLI is about: (`context`, `event_type`, `policy` or `journey`, its name).
    pub fn subject(&self) -> (&'static str, &str) {
        match &self.sli {
            Sli::EventSuccess { context } => ("context", context),
            Sli::EventTypeSuccess { event_type } => ("event_type", event_type),
            Sli::ReactionLatency { policy } => ("policy", policy),
            Sli::JourneyCompletion { journey } => ("journey", journey),
        }
    }

    /// How many minutes of verdicts evaluating this SLO needs.
    pub fn minutes_kept(&self) -> i64 {
        self.window_minutes.max(WINDOWS.iter().map(|(_, m)| *m).max().unwrap_or(0))
    }
}

/// Verdicts by minute of event time.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    minutes: BTreeMap<i64, Tally>,
    /// Every verdict ever filed, forgotten minutes included: what counters report.
    totals: Tally,
    /// The latest minute a verdict was filed under.
    latest: Option<i64>,
}

impl Ledger {
    /// Files a verdict at `at_ms` (event time, ms since the epoch), keeping `keep_minutes` behind
    /// the latest verdict.
    pub fn record(&mut self, at_ms: i64, good: bool, keep_minutes: i64) {
        let one = if good { Tally { good: 1, bad: 0 } } else { Tally { good: 0, bad: 1 } };
        self.record_tally(at_ms, one, keep_minutes);
    }

    /// Files several verdicts of the same minute at once.
    pub fn record_tally(&mut self, at_ms: i64, tally: Tally, keep_minutes: i64) {
        let minute = at_ms.div_euclid(MINUTE_MS);
        self.minutes.entry(minute).or_default().add(tally);
        self.totals.add(tally);
        if self.latest.is_none_or(|l| minute > l) {
            self.latest = Some(minute);
            let horizon = minute - keep_minutes;
            // Forget whole minutes that no window reaches any more.
            while let Some((&first, _)) = self.minutes.first_key_value() {
                if first > horizon {
                    break;
                }
                self.minutes.pop_first();
            }
        }
    }

    pub fn totals(&self) -> Tally {
        self.totals
    }

    /// Verdicts in the `minutes` whole minutes up to and including the one of `now_ms`.
    pub fn window(&self, now_ms: i64, minutes: i64) -> Tally {
        let end = now_ms.div_euclid(MINUTE_MS);
        let mut sum = Tally::default();
        for (_, t) in self.minutes.range(end - minutes + 1..=end) {
            sum.add(*t);
        }
        sum
    }
}

/// An SLO as of one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Verdicts over the SLO's window.
    pub window: Tally,
    /// The share of good verdicts over the window; `None` when nothing was judged.
    pub sli: Option<f64>,
    /// The error budget left over the window: 1 untouched, 0 spent, below 0 overspent.
    pub budget_remaining: f64,
    /// Burn rate per [`WINDOWS`] entry, in its order: the window's error ratio over the budget
    /// (1 spends the budget exactly over the SLO's window); 0 with nothing judged.
    pub burn_rates: Vec<(&'static str, f64)>,
    /// The most severe alert whose two windows both burn too fast, if any.
    pub alert: Option<Severity>,
    /// The rules that fire.
    pub firing: Vec<AlertRule>,
}

impl Evaluation {
    pub fn burn_rate(&self, window: &str) -> f64 {
        self.burn_rates.iter().find(|(w, _)| *w == window).map_or(0.0, |(_, b)| *b)
    }
}

/// Evaluates `objective` from its ledger at `now_ms` (the event-time clock).
pub fn evaluate(objective: &Objective, ledger: &Ledger, now_ms: i64) -> Evaluation {
    // The model refuses a 100% objective, so the budget is above zero.
    let budget = objective.budget().max(f64::MIN_POSITIVE);
    let window = ledger.window(now_ms, objective.window_minutes);
    let burn = |t: Tally| t.error_ratio().map_or(0.0, |r| r / budget);
    let burn_rates: Vec<(&'static str, f64)> = WINDOWS.iter().map(|(name, minutes)| (*name, burn(ledger.window(now_ms, *minutes)))).collect();
    let rate = |w: &str| burn_rates.iter().find(|(n, _)| *n == w).map_or(0.0, |(_, b)| *b);
    let firing: Vec<AlertRule> = RULES.iter().filter(|r| rate(r.long) > r.factor && rate(r.short) > r.factor).copied().collect();
    let budget_remaining = 1.0 - burn(window);
    Evaluation {
        window,
        sli: window.error_ratio().map(|r| 1.0 - r),
        budget_remaining,
        burn_rates,
        alert: firing.iter().map(|r| r.severity).max(),
        firing,
    }
}
