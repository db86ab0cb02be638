//! What the estate did, per event type, for the web UI's canvas and overview: how many events,
//! how many in the last hour, and how long after its cause each one happened. Fed by the journey
//! engine with every event it reads from the log (so rebuilt with it, from the log, after a
//! restart or a model reload).
//!
//! **Invariants:**
//! - Judged by event time, never arrival time: "the last hour" is the hour before the latest
//!   event time seen, and the latency from a cause is the difference of their event times.
//! - Bounded memory: per type at most [`MINUTES_KEPT`] minute buckets and [`LATENCY_BUCKETS`]
//!   histogram buckets; at most [`CAUSES_REMEMBERED`] recent event times to find causes in (a
//!   cause older than those is not measured).

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Minutes of per-type counts kept behind the latest event time (a day).
pub const MINUTES_KEPT: i64 = 24 * 60;
/// Recent events whose times are kept to measure their effects' latency.
pub const CAUSES_REMEMBERED: usize = 50_000;
/// The latest events (by event time) kept per type, for the canvas's note panel.
pub const RECENT_KEPT: usize = 10;
/// Histogram buckets: bucket `i` holds latencies up to `BASE_MS × GROWTH^i` milliseconds.
pub const LATENCY_BUCKETS: usize = 96;
const BASE_MS: f64 = 1.0;
const GROWTH: f64 = 1.25;

/// One event type's evidence.
#[derive(Debug, Clone, Default)]
pub struct TypeEvidence {
    pub count: u64,
    /// Events by minute of event time (minutes since the epoch).
    minutes: BTreeMap<i64, u32>,
    /// Latency from the cause, by bucket.
    from_cause: Vec<u64>,
    measured: u64,
    /// The latest events by event time, newest first: (time in ms, id, source).
    recent: Vec<(i64, String, String)>,
}

impl TypeEvidence {
    /// Events whose time falls in the hour up to `latest_ms`.
    pub fn last_hour(&self, latest_ms: i64) -> u64 {
        let from = latest_ms.div_euclid(60_000) - 59;
        self.minutes.range(from..).map(|(_, n)| u64::from(*n)).sum()
    }

    /// The latest events of this type by event time, newest first: (time in ms, id, source).
    pub fn recent(&self) -> &[(i64, String, String)] {
        &self.recent
    }

    /// The `q` quantile (0–1) of the latency from the cause, in milliseconds: the upper bound of
    /// the bucket it falls in (at most 25% above the true value). `None` when none was measured.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        if self.measured == 0 {
            return None;
        }
        let rank = ((q * self.measured as f64).ceil() as u64).clamp(1, self.measured);
        let mut seen = 0;
        for (i, n) in self.from_cause.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_bound(i));
            }
        }
        None
    }
}

fn bucket_bound(i: usize) -> f64 {
    BASE_MS * GROWTH.powi(i as i32)
}

fn bucket_of(ms: f64) -> usize {
    if ms <= BASE_MS {
        return 0;
    }
    ((ms / BASE_MS).ln() / GROWTH.ln()).ceil().clamp(0.0, (LATENCY_BUCKETS - 1) as f64) as usize
}

/// Evidence of every event type seen.
#[derive(Debug, Default)]
pub struct Evidence {
    types: HashMap<String, TypeEvidence>,
    /// Recent events' times (ms), to find a cause's time by its id.
    times: HashMap<String, i64>,
    order: VecDeque<String>,
    latest_ms: Option<i64>,
}

impl Evidence {
    /// One stored event (not a redelivery): its type, id, source, event time and cause.
    pub fn observe(&mut self, event_type: &str, id: &str, source: &str, time_ms: i64, causation_id: Option<&str>) {
        let latest = self.latest_ms.map_or(time_ms, |l| l.max(time_ms));
        self.latest_ms = Some(latest);
        let cause_ms = causation_id.and_then(|c| self.times.get(c)).copied();
        let t = match self.types.get_mut(event_type) {
            Some(t) => t,
            None => self.types.entry(event_type.to_string()).or_default(),
        };
        t.count += 1;
        if t.recent.len() < RECENT_KEPT || t.recent.last().is_some_and(|(last, _, _)| *last < time_ms) {
            let at = t.recent.partition_point(|(other, _, _)| *other >= time_ms);
            t.recent.insert(at, (time_ms, id.to_string(), source.to_string()));
            t.recent.truncate(RECENT_KEPT);
        }
        *t.minutes.entry(time_ms.div_euclid(60_000)).or_default() += 1;
        let oldest = latest.div_euclid(60_000) - MINUTES_KEPT;
        while t.minutes.first_key_value().is_some_and(|(m, _)| *m < oldest) {
            t.minutes.pop_first();
        }
        if let Some(cause) = cause_ms {
            if t.from_cause.is_empty() {
                t.from_cause = vec![0; LATENCY_BUCKETS];
            }
            t.from_cause[bucket_of((time_ms - cause).max(0) as f64)] += 1;
            t.measured += 1;
        }
        if self.times.insert(id.to_string(), time_ms).is_none() {
            self.order.push_back(id.to_string());
            if self.order.len() > CAUSES_REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.times.remove(&old);
            }
        }
    }

    pub fn of(&self, event_type: &str) -> Option<&TypeEvidence> {
        self.types.get(event_type)
    }

    /// The latest event time seen (ms since the epoch).
    pub fn latest_ms(&self) -> Option<i64> {
        self.latest_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn the_last_hour_is_judged_by_event_time_whatever_the_arrival_order() {
        let mut e = Evidence::default();
        let t0 = 1_800_000_000_000 - 1_800_000_000_000 % MIN;
        // Arrives late: an event two hours before the others comes last.
        for (i, t) in [t0, t0 + 30 * MIN, t0 + 90 * MIN, t0 + 119 * MIN, t0 - 2 * MIN].into_iter().enumerate() {
            e.observe("OrderCreated", &format!("e{i}"), "order-service", t, None);
        }
        let order = e.of("OrderCreated").unwrap();
        assert_eq!(order.count, 5);
        assert_eq!(e.latest_ms(), Some(t0 + 119 * MIN));
        assert_eq!(order.last_hour(t0 + 119 * MIN), 2, "90 and 119 minutes in are within the hour before 119");
        assert_eq!(order.latency_quantile_ms(0.95), None);
        let recent: Vec<&str> = order.recent().iter().map(|(_, id, _)| id.as_str()).collect();
        assert_eq!(recent, ["e3", "e2", "e1", "e0", "e4"], "newest event time first, whatever the arrival order");
    }

    #[test]
    fn the_latest_events_are_kept_by_event_time() {
        let mut e = Evidence::default();
        for i in 0..100 {
            // Out of order: odd ones are older.
            let t = if i % 2 == 0 { 1_000_000 + i * 1000 } else { i * 1000 };
            e.observe("Paid", &format!("p{i}"), "pay", t, None);
        }
        let kept: Vec<&str> = e.of("Paid").unwrap().recent().iter().map(|(_, id, _)| id.as_str()).collect();
        assert_eq!(kept, ["p98", "p96", "p94", "p92", "p90", "p88", "p86", "p84", "p82", "p80"]);
    }

    #[test]
    fn latency_from_the_cause_is_a_quantile_within_a_bucket() {
        let mut e = Evidence::default();
        for i in 0..100 {
            let t = 1_000_000 + i * 10_000;
            e.observe("OrderCreated", &format!("o{i}"), "order-service", t, None);
            // 95 reactions after 100 ms, 5 after 10 s.
            let after = if i < 95 { 100 } else { 10_000 };
            e.observe("PaymentProcessed", &format!("p{i}"), "payment-service", t + after, Some(&format!("o{i}")));
        }
        let paid = e.of("PaymentProcessed").unwrap();
        let p95 = paid.latency_quantile_ms(0.95).unwrap();
        assert!((100.0..=125.0).contains(&p95), "{p95}");
        let p99 = paid.latency_quantile_ms(0.99).unwrap();
        assert!((10_000.0..=12_500.0).contains(&p99), "{p99}");
        assert_eq!(e.of("OrderCreated").unwrap().latency_quantile_ms(0.5), None, "a root has no cause");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut e = Evidence::default();
        for i in 0..(CAUSES_REMEMBERED as i64 + 10) {
            e.observe("Tick", &format!("t{i}"), "clock", i * MIN, None);
        }
        assert_eq!(e.times.len(), CAUSES_REMEMBERED);
        assert_eq!(e.order.len(), CAUSES_REMEMBERED);
        assert!(e.of("Tick").unwrap().minutes.len() as i64 <= MINUTES_KEPT + 1);
        // The oldest causes are forgotten: a reaction to one is counted but not measured.
        e.observe("Tock", "x", "clock", 0, Some("t0"));
        assert_eq!(e.of("Tock").unwrap().latency_quantile_ms(0.5), None);
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(1e12), LATENCY_BUCKETS - 1);
    }
}
