//! What Burrow does not report: lag as time, time to clear, trend, retention risk.

use serde::{Deserialize, Serialize};

use crate::window::{Commit, Settings};

/// Age of the oldest unconsumed message in seconds: `now` minus the timestamp of the message at
/// the committed offset, which the caller reads from the log. 0 when caught up (no lag); `None`
/// when there is lag but that timestamp is unknown. A timestamp in the future counts as 0.
pub fn lag_seconds(current_lag: i64, oldest_unconsumed_timestamp_ms: Option<i64>, now_ms: i64) -> Option<f64> {
    if current_lag <= 0 {
        return Some(0.0);
    }
    oldest_unconsumed_timestamp_ms.map(|ts| (now_ms - ts).max(0) as f64 / 1000.0)
}

/// Seconds until the current lag reaches zero if both sides keep their pace over the window:
/// consumption is offsets committed per second between the first and last commit; production is
/// high-watermark growth per second over the same span (the high watermark at each commit being its
/// offset plus its stored lag). `Some(0.0)` when already caught up. `None` means "never at this
/// rate": production keeps up with or outpaces consumption, or the window has fewer than two commits
/// or no time span to measure a rate over.
pub fn time_to_clear_seconds(commits: &[Commit], current_lag: i64) -> Option<f64> {
    if current_lag <= 0 {
        return Some(0.0);
    }
    let (first, last) = (commits.first()?, commits.last()?);
    let span_s = (last.timestamp_ms - first.timestamp_ms) as f64 / 1000.0;
    if span_s <= 0.0 {
        return None;
    }
    let consumed_per_s = (last.offset - first.offset) as f64 / span_s;
    let produced_per_s = ((last.offset + last.lag) - (first.offset + first.lag)) as f64 / span_s;
    let drain_per_s = consumed_per_s - produced_per_s;
    (drain_per_s > 0.0).then(|| current_lag as f64 / drain_per_s)
}

/// Direction of the lag over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    Growing,
    Shrinking,
    Steady,
}

impl Trend {
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Growing => "growing",
            Trend::Shrinking => "shrinking",
            Trend::Steady => "steady",
        }
    }
}

/// The sign of the least-squares slope of stored lag against commit time. The lag is steady when
/// the fitted change across the window's span is within `trend_tolerance` of the mean lag, or
/// within one message; also with fewer than two commits or no time span.
pub fn trend(commits: &[Commit], settings: &Settings) -> Trend {
    let Some(first) = commits.first() else { return Trend::Steady };
    let n = commits.len() as f64;
    let xs: Vec<f64> = commits.iter().map(|c| (c.timestamp_ms - first.timestamp_ms) as f64 / 1000.0).collect();
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = commits.iter().map(|c| c.lag as f64).sum::<f64>() / n;
    let var_x: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
    if commits.len() < 2 || var_x == 0.0 {
        return Trend::Steady;
    }
    let cov: f64 = xs.iter().zip(commits).map(|(x, c)| (x - mean_x) * (c.lag as f64 - mean_y)).sum();
    let span = xs.iter().copied().fold(f64::MIN, f64::max) - xs.iter().copied().fold(f64::MAX, f64::min);
    let change = cov / var_x * span;
    let tolerance = (settings.trend_tolerance * mean_y.abs()).max(1.0);
    if change > tolerance {
        Trend::Growing
    } else if change < -tolerance {
        Trend::Shrinking
    } else {
        Trend::Steady
    }
}

/// What [`retention_risk`] needs about a partition and a group's position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionInput {
    /// The oldest offset the broker still holds.
    pub log_start_offset: i64,
    /// The group's committed offset (the next message it will read).
    pub committed_offset: i64,
    pub high_watermark: i64,
    /// The topic's `retention.ms`, when time-based retention applies.
    pub retention_ms: Option<i64>,
    /// Timestamp of the message at the committed offset, when known.
    pub oldest_unconsumed_timestamp_ms: Option<i64>,
    pub now_ms: i64,
}

/// Whether retention is about to delete, or has deleted, messages the group has not consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "risk", rename_all = "snake_case")]
pub enum RetentionRisk {
    /// No backlog, or the backlog is well inside retention.
    Safe,
    /// The oldest unconsumed message will be deleted soon.
    Approaching {
        /// The committed offset is within `retention_offset_fraction` of the retained range from
        /// the log start.
        near_log_start: bool,
        /// The oldest unconsumed message is older than `retention_age_fraction` of retention.
        near_retention_age: bool,
        /// Retention time minus that message's age, when both are known (0 once due).
        ms_until_deletion: Option<i64>,
    },
    /// The committed offset is below the log start: these messages were deleted unread.
    DataLost { messages_lost: i64 },
}

impl RetentionRisk {
    pub fn message(&self) -> &'static str {
        match self {
            RetentionRisk::Safe => "backlog within retention",
            RetentionRisk::Approaching { .. } => "lag approaching retention: data loss imminent",
            RetentionRisk::DataLost { .. } => "committed offset below log start: data already lost",
        }
    }
}

/// Flags a backlog whose oldest message retention is about to delete (see [`RetentionRisk`]).
pub fn retention_risk(input: &RetentionInput, settings: &Settings) -> RetentionRisk {
    let RetentionInput { log_start_offset, committed_offset, high_watermark, retention_ms, oldest_unconsumed_timestamp_ms, now_ms } = *input;
    if committed_offset < log_start_offset {
        return RetentionRisk::DataLost { messages_lost: log_start_offset - committed_offset };
    }
    if committed_offset >= high_watermark {
        return RetentionRisk::Safe;
    }
    let retained = high_watermark - log_start_offset;
    let near_log_start = retained > 0 && (committed_offset - log_start_offset) as f64 <= settings.retention_offset_fraction * retained as f64;
    let (near_retention_age, ms_until_deletion) = match (retention_ms, oldest_unconsumed_timestamp_ms) {
        (Some(retention), Some(ts)) if retention > 0 => {
            let age = (now_ms - ts).max(0);
            (age as f64 >= settings.retention_age_fraction * retention as f64, Some((retention - age).max(0)))
        }
        _ => (false, None),
    };
    if near_log_start || near_retention_age {
        RetentionRisk::Approaching { near_log_start, near_retention_age, ms_until_deletion }
    } else {
        RetentionRisk::Safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commits(rows: &[(i64, i64, i64)]) -> Vec<Commit> {
        rows.iter().map(|&(offset, timestamp_ms, lag)| Commit { offset, timestamp_ms, lag }).collect()
    }

    #[test]
    fn lag_seconds_is_the_age_of_the_oldest_unconsumed_message() {
        assert_eq!(lag_seconds(0, Some(1_000), 90_000), Some(0.0));
        assert_eq!(lag_seconds(0, None, 90_000), Some(0.0));
        assert_eq!(lag_seconds(12, Some(30_000), 90_500), Some(60.5));
        assert_eq!(lag_seconds(12, None, 90_000), None);
        assert_eq!(lag_seconds(12, Some(95_000), 90_000), Some(0.0));
    }

    #[test]
    fn time_to_clear_from_consumption_minus_production() {
        // Over 100 s: consumed 1000 offsets (10/s); the high watermark went 1500 -> 2100 (6/s).
        // Net drain 4/s, current lag 100 -> 25 s.
        let w = commits(&[(1000, 0, 500), (1500, 50_000, 300), (2000, 100_000, 100)]);
        assert_eq!(time_to_clear_seconds(&w, 100), Some(25.0));
    }

    #[test]
    fn time_to_clear_is_never_when_production_keeps_up() {
        let growing = commits(&[(1000, 0, 100), (2000, 100_000, 300)]);
        assert_eq!(time_to_clear_seconds(&growing, 300), None);
        let flat = commits(&[(1000, 0, 100), (2000, 100_000, 100)]);
        assert_eq!(time_to_clear_seconds(&flat, 100), None);
        let stalled = commits(&[(1000, 0, 100), (1000, 100_000, 100)]);
        assert_eq!(time_to_clear_seconds(&stalled, 100), None);
    }

    #[test]
    fn time_to_clear_needs_a_measurable_span() {
        assert_eq!(time_to_clear_seconds(&commits(&[(1000, 0, 100)]), 100), None);
        assert_eq!(time_to_clear_seconds(&commits(&[(1000, 5_000, 100), (1100, 5_000, 0)]), 100), None);
        assert_eq!(time_to_clear_seconds(&[], 100), None);
        assert_eq!(time_to_clear_seconds(&[], 0), Some(0.0));
    }

    #[test]
    fn trend_follows_the_fitted_slope() {
        let s = Settings::default();
        let up = commits(&[(1, 0, 100), (2, 10_000, 120), (3, 20_000, 115), (4, 30_000, 160)]);
        assert_eq!(trend(&up, &s), Trend::Growing);
        let down = commits(&[(1, 0, 160), (2, 10_000, 115), (3, 20_000, 120), (4, 30_000, 100)]);
        assert_eq!(trend(&down, &s), Trend::Shrinking);
        // Jitter of a couple of percent around 1000.
        let flat = commits(&[(1, 0, 1000), (2, 10_000, 1020), (3, 20_000, 990), (4, 30_000, 1010)]);
        assert_eq!(trend(&flat, &s), Trend::Steady);
        assert_eq!(trend(&commits(&[(1, 0, 5)]), &s), Trend::Steady);
        assert_eq!(trend(&commits(&[(1, 0, 5), (2, 0, 500)]), &s), Trend::Steady);
        assert_eq!(trend(&[], &s), Trend::Steady);
        assert_eq!(Trend::Shrinking.as_str(), "shrinking");
    }

    #[test]
    fn trend_tolerance_has_a_one_message_floor() {
        let s = Settings::default();
        assert_eq!(trend(&commits(&[(1, 0, 0), (2, 10_000, 1)]), &s), Trend::Steady);
        assert_eq!(trend(&commits(&[(1, 0, 0), (2, 10_000, 2)]), &s), Trend::Growing);
    }

    fn input(log_start: i64, committed: i64, hw: i64) -> RetentionInput {
        RetentionInput {
            log_start_offset: log_start,
            committed_offset: committed,
            high_watermark: hw,
            retention_ms: None,
            oldest_unconsumed_timestamp_ms: None,
            now_ms: 0,
        }
    }

    #[test]
    fn committed_below_log_start_is_data_lost() {
        let r = retention_risk(&input(1000, 940, 5000), &Settings::default());
        assert_eq!(r, RetentionRisk::DataLost { messages_lost: 60 });
        assert_eq!(r.message(), "committed offset below log start: data already lost");
    }

    #[test]
    fn committed_near_log_start_is_approaching() {
        let s = Settings::default();
        let near = retention_risk(&input(1000, 1400, 5000), &s);
        assert_eq!(near, RetentionRisk::Approaching { near_log_start: true, near_retention_age: false, ms_until_deletion: None });
        assert_eq!(near.message(), "lag approaching retention: data loss imminent");
        assert_eq!(retention_risk(&input(1000, 1000, 5000), &s), near);
        assert_eq!(retention_risk(&input(1000, 1401, 5000), &s), RetentionRisk::Safe);
    }

    #[test]
    fn old_unconsumed_message_is_approaching() {
        let s = Settings::default();
        let hour = 3_600_000;
        let mut i = input(0, 4000, 5000);
        i.retention_ms = Some(10 * hour);
        i.now_ms = 100 * hour;
        i.oldest_unconsumed_timestamp_ms = Some(92 * hour);
        assert_eq!(
            retention_risk(&i, &s),
            RetentionRisk::Approaching { near_log_start: false, near_retention_age: true, ms_until_deletion: Some(2 * hour) }
        );
        i.oldest_unconsumed_timestamp_ms = Some(92 * hour + 1);
        assert_eq!(retention_risk(&i, &s), RetentionRisk::Safe);
    }

    #[test]
    fn no_backlog_is_safe() {
        let mut i = input(0, 5000, 5000);
        i.retention_ms = Some(1_000);
        i.oldest_unconsumed_timestamp_ms = Some(-1_000_000);
        assert_eq!(retention_risk(&i, &Settings::default()), RetentionRisk::Safe);
        assert_eq!(retention_risk(&input(5000, 5000, 5000), &Settings::default()), RetentionRisk::Safe);
    }
}
