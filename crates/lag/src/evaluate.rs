//! Burrow's evaluator: partition status from a window, group status from partition statuses.

use serde::{Deserialize, Serialize};

use crate::window::{BrokerOffset, Commit, PartitionWindow, Settings};

/// Burrow's status values, in Burrow's numeric order (a higher value is worse). ERR only occurs
/// for a group; STOP, STALL and REWIND only for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "NOTFOUND")]
    NotFound = 0,
    #[serde(rename = "OK")]
    Ok = 1,
    #[serde(rename = "WARN")]
    Warn = 2,
    #[serde(rename = "ERR")]
    Err = 3,
    #[serde(rename = "STOP")]
    Stop = 4,
    #[serde(rename = "STALL")]
    Stall = 5,
    #[serde(rename = "REWIND")]
    Rewind = 6,
}

impl Status {
    /// Every status, from best known to worst.
    pub const ALL: [Status; 7] = [Status::NotFound, Status::Ok, Status::Warn, Status::Err, Status::Stop, Status::Stall, Status::Rewind];

    /// Burrow's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotFound => "NOTFOUND",
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Err => "ERR",
            Status::Stop => "STOP",
            Status::Stall => "STALL",
            Status::Rewind => "REWIND",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One partition's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub status: Status,
    /// Stored commits over `intervals` (1.0 when the window is full).
    pub complete: f32,
    pub current_lag: i64,
    /// Oldest commit in the window.
    pub start: Option<Commit>,
    /// Newest commit in the window.
    pub end: Option<Commit>,
}

/// Evaluates one partition as Burrow's evaluator does. `now_ms` is truncated to whole seconds first,
/// as Burrow reads its clock in seconds.
pub fn evaluate_partition(window: &PartitionWindow, now_ms: i64, settings: &Settings) -> PartitionStatus {
    let commits = window.window(settings);
    let current_lag = window.current_lag();
    let mut out = PartitionStatus { status: Status::Ok, complete: 0.0, current_lag, start: None, end: None };
    if commits.is_empty() {
        return out;
    }
    out.complete = commits.len() as f32 / settings.ring_len() as f32;
    out.start = commits.first().copied();
    out.end = commits.last().copied();
    if out.complete >= settings.minimum_complete {
        out.status = partition_rules(commits, window.broker_window(settings), current_lag, now_ms, settings);
    }
    out
}

/// The rule sequence over a non-empty window.
pub(crate) fn partition_rules(commits: &[Commit], broker: &[BrokerOffset], current_lag: i64, now_ms: i64, settings: &Settings) -> Status {
    if current_lag <= 0 {
        return Status::Ok;
    }
    if stopped(commits, now_ms, settings.stop_grace_ms) && !recently_caught_up(commits, broker) {
        return Status::Stop;
    }
    if !lag_never_zero(commits) {
        return Status::Ok;
    }
    if rewound(commits) {
        Status::Rewind
    } else if stalled(commits) {
        Status::Stall
    } else if lag_not_decreasing(commits) {
        Status::Warn
    } else {
        Status::Ok
    }
}

/// True when no commit in the window was stored with zero lag.
pub(crate) fn lag_never_zero(commits: &[Commit]) -> bool {
    commits.iter().all(|c| c.lag != 0)
}

/// True when some committed offset is lower than the one before it.
pub(crate) fn rewound(commits: &[Commit]) -> bool {
    commits.windows(2).any(|p| p[1].offset < p[0].offset)
}

/// True when the time since the newest commit (clock in whole seconds) exceeds the window's span.
/// `grace_ms > 0` (not Burrow) also requires it to exceed `grace_ms`.
pub(crate) fn stopped(commits: &[Commit], now_ms: i64, grace_ms: i64) -> bool {
    let (Some(first), Some(last)) = (commits.first(), commits.last()) else { return false };
    let now = now_ms.div_euclid(1000) * 1000;
    let span = last.timestamp_ms - first.timestamp_ms;
    let threshold = if grace_ms > 0 { span.max(grace_ms) } else { span };
    now - last.timestamp_ms > threshold
}

/// True when every commit in the window has the same offset (a single commit counts).
pub(crate) fn stalled(commits: &[Commit]) -> bool {
    commits.windows(2).all(|p| p[1].offset == p[0].offset)
}

/// True when the lag never goes down from one commit to the next (a single commit counts).
pub(crate) fn lag_not_decreasing(commits: &[Commit]) -> bool {
    commits.windows(2).all(|p| p[1].lag >= p[0].lag)
}

/// True when some stored high watermark is at or below the newest committed offset: the group was
/// caught up within the broker history.
pub(crate) fn recently_caught_up(commits: &[Commit], broker: &[BrokerOffset]) -> bool {
    let Some(last) = commits.last() else { return false };
    broker.iter().any(|b| b.offset <= last.offset)
}

/// A partition of a group, named, with its evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupPartition {
    pub topic: String,
    pub partition: i32,
    #[serde(flatten)]
    pub status: PartitionStatus,
}

/// A group's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub status: Status,
    /// Fraction of partitions whose window is full.
    pub complete: f32,
    pub total_lag: i64,
    /// The partition with the highest current lag (the first one on a tie).
    pub max_lag: Option<GroupPartition>,
    pub partitions: Vec<GroupPartition>,
}

impl GroupStatus {
    /// Burrow's answer for a group it does not know, or has expired.
    pub fn not_found() -> Self {
        GroupStatus { status: Status::NotFound, complete: 1.0, total_lag: 0, max_lag: None, partitions: Vec::new() }
    }
}

/// Aggregates partition evaluations as Burrow's evaluator does: the group takes the worst partition
/// status, except that STOP, STALL and REWIND make it ERR; `complete` is the fraction of full
/// partitions (0.0 for a group with no partition); `total_lag` sums current lags.
pub fn evaluate_group(partitions: Vec<GroupPartition>) -> GroupStatus {
    let mut status = Status::Ok;
    let mut total_lag = 0;
    let mut max_lag: Option<&GroupPartition> = None;
    let mut full = 0usize;
    for p in &partitions {
        if p.status.status > status {
            status = p.status.status.min(Status::Err);
        }
        total_lag += p.status.current_lag;
        if max_lag.is_none_or(|m| p.status.current_lag > m.status.current_lag) {
            max_lag = Some(p);
        }
        if p.status.complete == 1.0 {
            full += 1;
        }
    }
    let complete = if partitions.is_empty() { 0.0 } else { full as f32 / partitions.len() as f32 };
    let max_lag = max_lag.cloned();
    GroupStatus { status, complete, total_lag, max_lag, partitions }
}

/// Burrow's group expiry: true when the group's newest commit (the latest of its partitions'
/// [`PartitionWindow::last_commit_ms`]) is older than `expire_group_ms` at `now_ms` (clock in whole
/// seconds). Such a group is reported [`GroupStatus::not_found`]. A group with no commit does not
/// expire.
pub fn group_expired(last_commit_ms: Option<i64>, now_ms: i64, settings: &Settings) -> bool {
    let now = now_ms.div_euclid(1000) * 1000;
    last_commit_ms.is_some_and(|last| now - settings.expire_group_ms > last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commits(rows: &[(i64, i64, i64)]) -> Vec<Commit> {
        rows.iter().map(|&(offset, timestamp_ms, lag)| Commit { offset, timestamp_ms, lag }).collect()
    }

    fn broker(offsets: &[i64]) -> Vec<BrokerOffset> {
        offsets.iter().map(|&offset| BrokerOffset { offset, timestamp_ms: 0 }).collect()
    }

    /// One scenario of Burrow's evaluator test table: the window, the broker history, the current
    /// lag, the clock (seconds), each rule's expected answer, and the expected status.
    struct Case {
        commits: Vec<Commit>,
        broker: Vec<i64>,
        current_lag: i64,
        now_s: i64,
        never_zero: bool,
        rewound: bool,
        stopped: bool,
        stalled: bool,
        not_decreasing: bool,
        caught_up: bool,
        status: Status,
    }

    fn check(name: &str, c: Case) {
        let now_ms = c.now_s * 1000;
        let b = broker(&c.broker);
        assert_eq!(lag_never_zero(&c.commits), c.never_zero, "{name}: lag never zero");
        assert_eq!(rewound(&c.commits), c.rewound, "{name}: rewound");
        assert_eq!(stopped(&c.commits, now_ms, 0), c.stopped, "{name}: stopped");
        assert_eq!(stalled(&c.commits), c.stalled, "{name}: stalled");
        assert_eq!(lag_not_decreasing(&c.commits), c.not_decreasing, "{name}: lag not decreasing");
        assert_eq!(recently_caught_up(&c.commits, &b), c.caught_up, "{name}: recently caught up");
        let status = partition_rules(&c.commits, &b, c.current_lag, now_ms, &Settings::default());
        assert_eq!(status, c.status, "{name}: status");
    }

    /// Five commits a hundred seconds apart, offsets 1000..5000, lag rising 0..200.
    fn rising_from_zero() -> Vec<Commit> {
        commits(&[(1000, 100_000, 0), (2000, 200_000, 50), (3000, 300_000, 100), (4000, 400_000, 150), (5000, 500_000, 200)])
    }

    fn rising_never_zero() -> Vec<Commit> {
        commits(&[(1000, 100_000, 50), (2000, 200_000, 100), (3000, 300_000, 150), (4000, 400_000, 200), (5000, 500_000, 250)])
    }

    /// Fifteen commits one second apart, each caught up at the time.
    fn busy_caught_up() -> Vec<Commit> {
        let ts = [
            1512224618356,
            1512224619362,
            1512224620366,
            1512224621367,
            1512224622370,
            1512224623373,
            1512224624378,
            1512224625379,
            1512224626383,
            1512224627383,
            1512224628383,
            1512224629388,
            1512224630391,
            1512224631394,
            1512224632397,
        ];
        ts.iter().enumerate().map(|(i, &t)| Commit { offset: 792748079 + i as i64, timestamp_ms: t, lag: 0 }).collect()
    }

    #[test]
    fn burrow_case_0_zero_lag_in_window_is_ok() {
        let c = Case {
            commits: rising_from_zero(),
            broker: vec![5200],
            current_lag: 200,
            now_s: 600,
            never_zero: false,
            rewound: false,
            stopped: false,
            stalled: false,
            not_decreasing: true,
            caught_up: false,
            status: Status::Ok,
        };
        check("case 0", c);
    }

    #[test]
    fn burrow_case_1_idle_exactly_the_span_is_not_stop() {
        let c = Case {
            commits: rising_from_zero(),
            broker: vec![5200],
            current_lag: 200,
            now_s: 900,
            never_zero: false,
            rewound: false,
            stopped: false,
            stalled: false,
            not_decreasing: true,
            caught_up: false,
            status: Status::Ok,
        };
        check("case 1", c);
    }

    #[test]
    fn burrow_case_2_idle_longer_than_span_is_stop_despite_zero_lag_in_window() {
        let c = Case {
            commits: rising_from_zero(),
            broker: vec![5200],
            current_lag: 200,
            now_s: 1000,
            never_zero: false,
            rewound: false,
            stopped: true,
            stalled: false,
            not_decreasing: true,
            caught_up: false,
            status: Status::Stop,
        };
        check("case 2", c);
    }

    #[test]
    fn burrow_case_3_stop_with_lag_always_present() {
        let c = Case {
            commits: rising_never_zero(),
            broker: vec![5250],
            current_lag: 250,
            now_s: 1000,
            never_zero: true,
            rewound: false,
            stopped: true,
            stalled: false,
            not_decreasing: true,
            caught_up: false,
            status: Status::Stop,
        };
        check("case 3", c);
    }

    #[test]
    fn burrow_case_4_unchanged_offset_with_a_zero_lag_commit_is_ok() {
        let c = Case {
            commits: commits(&[(1000, 100_000, 0), (1000, 200_000, 50), (1000, 300_000, 100), (1000, 400_000, 150), (1000, 500_000, 200)]),
            broker: vec![1200],
            current_lag: 200,
            now_s: 600,
            never_zero: false,
            rewound: false,
            stopped: false,
            stalled: true,
            not_decreasing: true,
            caught_up: false,
            status: Status::Ok,
        };
        check("case 4", c);
    }

    #[test]
    fn burrow_case_5_unchanged_offset_with_lag_throughout_is_stall() {
        let c = Case {
            commits: commits(&[(1000, 100_000, 100), (1000, 200_000, 150), (1000, 300_000, 200), (1000, 400_000, 250), (1000, 500_000, 300)]),
            broker: vec![1300],
            current_lag: 300,
            now_s: 600,
            never_zero: true,
            rewound: false,
            stopped: false,
            stalled: true,
            not_decreasing: true,
            caught_up: false,
            status: Status::Stall,
        };
        check("case 5", c);
    }

    #[test]
    fn burrow_case_6_stall_with_flat_lag() {
        let c = Case {
            commits: commits(&[(1000, 100_000, 100), (1000, 200_000, 100), (1000, 300_000, 100), (1000, 400_000, 100), (1000, 500_000, 100)]),
            broker: vec![1100],
            current_lag: 100,
            now_s: 600,
            never_zero: true,
            rewound: false,
            stopped: false,
            stalled: true,
            not_decreasing: true,
            caught_up: false,
            status: Status::Stall,
        };
        check("case 6", c);
    }

    #[test]
    fn burrow_case_7_offset_going_back_is_rewind_even_though_lag_falls() {
        let c = Case {
            commits: commits(&[(1000, 100_000, 100), (2000, 200_000, 150), (3000, 300_000, 200), (2000, 400_000, 1250), (4000, 500_000, 300)]),
            broker: vec![4300],
            current_lag: 300,
            now_s: 600,
            never_zero: true,
            rewound: true,
            stopped: false,
            stalled: false,
            not_decreasing: false,
            caught_up: false,
            status: Status::Rewind,
        };
        check("case 7", c);
    }

    #[test]
    fn burrow_case_8_zero_current_lag_is_ok_even_when_stopped_by_time() {
        let c = Case {
            commits: rising_never_zero(),
            broker: vec![5250],
            current_lag: 0,
            now_s: 1000,
            never_zero: true,
            rewound: false,
            stopped: true,
            stalled: false,
            not_decreasing: true,
            caught_up: false,
            status: Status::Ok,
        };
        check("case 8", c);
    }

    #[test]
    fn burrow_case_9_new_data_after_caught_up_window_is_stop() {
        let c = Case {
            commits: busy_caught_up(),
            broker: vec![792749024, 792749000, 792748800, 792748600, 792748500],
            current_lag: 931,
            now_s: 1512224650,
            never_zero: false,
            rewound: false,
            stopped: true,
            stalled: false,
            not_decreasing: true,
            caught_up: false,
            status: Status::Stop,
        };
        check("case 9", c);
    }

    #[test]
    fn burrow_case_10_caught_up_within_broker_history_is_not_stop() {
        let c = Case {
            commits: busy_caught_up(),
            broker: vec![792748094, 792748093, 792748093, 792748093],
            current_lag: 1,
            now_s: 1512224650,
            never_zero: false,
            rewound: false,
            stopped: true,
            stalled: false,
            not_decreasing: true,
            caught_up: true,
            status: Status::Ok,
        };
        check("case 10", c);
    }

    #[test]
    fn lag_growing_while_offsets_advance_is_warn() {
        let c = Case {
            commits: rising_never_zero(),
            broker: vec![5250],
            current_lag: 250,
            now_s: 600,
            never_zero: true,
            rewound: false,
            stopped: false,
            stalled: false,
            not_decreasing: true,
            caught_up: false,
            status: Status::Warn,
        };
        check("warn", c);
    }

    #[test]
    fn clock_is_read_in_whole_seconds() {
        // Case 1's window: the span is 400 s, the last commit at 500 s. 900.999 s reads as 900 s.
        let w = rising_from_zero();
        assert!(!stopped(&w, 900_999, 0));
        assert!(stopped(&w, 901_000, 0));
    }

    #[test]
    fn stop_grace_is_opt_in() {
        let w = rising_never_zero();
        let b = broker(&[5250]);
        let grace = Settings { stop_grace_ms: 900_000, ..Settings::default() };
        assert_eq!(partition_rules(&w, &b, 250, 1_000_000, &Settings::default()), Status::Stop);
        // Idle 500 s: beyond the 400 s span but within the 900 s floor, so the slow-consumer rule decides.
        assert_eq!(partition_rules(&w, &b, 250, 1_000_000, &grace), Status::Warn);
        assert_eq!(partition_rules(&w, &b, 250, 1_401_000, &grace), Status::Stop);
    }

    fn window_from(rows: &[(i64, i64, i64)], hw: &[i64], intervals: usize) -> PartitionWindow {
        let s = Settings { intervals, min_distance_ms: 0, ..Settings::default() };
        let mut w = PartitionWindow::new();
        for &(offset, ts, hw_then) in rows {
            w.record_commit(offset, ts, hw_then, &s);
        }
        for &h in hw {
            w.record_high_watermark(h, 0, &s);
        }
        w
    }

    #[test]
    fn empty_window_is_ok_and_incomplete() {
        let p = evaluate_partition(&PartitionWindow::new(), 1_000_000, &Settings::default());
        assert_eq!(p, PartitionStatus { status: Status::Ok, complete: 0.0, current_lag: 0, start: None, end: None });
    }

    #[test]
    fn partial_window_is_still_evaluated_by_default() {
        let w = window_from(&[(1000, 100_000, 1050), (2000, 200_000, 2100)], &[2100], 10);
        let p = evaluate_partition(&w, 400_000, &Settings::default());
        assert_eq!(p.complete, 0.2);
        assert_eq!(p.status, Status::Stop);
        assert_eq!(p.start.map(|c| c.offset), Some(1000));
        assert_eq!(p.end.map(|c| c.offset), Some(2000));
        assert_eq!(p.current_lag, 100);
    }

    #[test]
    fn minimum_complete_skips_thin_windows() {
        let w = window_from(&[(1000, 100_000, 1050), (2000, 200_000, 2100)], &[2100], 10);
        let at_threshold = Settings { minimum_complete: 0.2, ..Settings::default() };
        let above = Settings { minimum_complete: 0.3, ..Settings::default() };
        assert_eq!(evaluate_partition(&w, 400_000, &at_threshold).status, Status::Stop);
        let skipped = evaluate_partition(&w, 400_000, &above);
        assert_eq!(skipped.status, Status::Ok);
        assert_eq!(skipped.complete, 0.2);
    }

    #[test]
    fn rewind_recorded_through_storage_is_reported() {
        let w = window_from(&[(1000, 100_000, 1100), (2000, 200_000, 2200), (1500, 300_000, 2300)], &[2300], 10);
        assert_eq!(evaluate_partition(&w, 300_000, &Settings::default()).status, Status::Rewind);
    }

    /// Burrow's evaluator fixture: broker offset 4321, commits of 1000 + 100·i every 10 s starting
    /// 100 s before now; "testgroup" has ten (a full ring), "testgroup2" five.
    fn fixture_group(commits: i64, now_ms: i64) -> GroupStatus {
        let s = Settings { min_distance_ms: 0, ..Settings::default() };
        let mut w = PartitionWindow::new();
        w.record_high_watermark(4321, 9876, &s);
        let start = now_ms - 100_000;
        for i in 0..commits {
            w.record_commit(1000 + i * 100, start + i * 10_000, 4321, &s);
        }
        let p = GroupPartition { topic: "testtopic".into(), partition: 0, status: evaluate_partition(&w, now_ms, &s) };
        evaluate_group(vec![p])
    }

    #[test]
    fn burrow_fixture_full_ring_group_is_ok() {
        let g = fixture_group(10, 1_700_000_000_000);
        assert_eq!(g.status, Status::Ok);
        assert_eq!(g.complete, 1.0);
        assert_eq!(g.total_lag, 2421);
        assert_eq!(g.partitions.len(), 1);
    }

    #[test]
    fn burrow_fixture_half_ring_group_is_err_from_stop() {
        let g = fixture_group(5, 1_700_000_000_000);
        assert_eq!(g.status, Status::Err);
        assert_eq!(g.complete, 0.0);
        assert_eq!(g.total_lag, 2921);
        assert_eq!(g.partitions[0].status.complete, 0.5);
        assert_eq!(g.partitions[0].status.status, Status::Stop);
        let max = g.max_lag.expect("max lag partition");
        assert_eq!(max.status.start.map(|c| c.offset), Some(1000));
        assert_eq!(max.status.end.map(|c| c.offset), Some(1400));
    }

    fn part(name: &str, status: Status, lag: i64, complete: f32) -> GroupPartition {
        GroupPartition { topic: name.into(), partition: 0, status: PartitionStatus { status, complete, current_lag: lag, start: None, end: None } }
    }

    #[test]
    fn group_takes_the_worst_partition_with_errors_folded_into_err() {
        let cases = [
            (vec![Status::Ok, Status::Ok], Status::Ok),
            (vec![Status::Ok, Status::Warn], Status::Warn),
            (vec![Status::Warn, Status::Stop], Status::Err),
            (vec![Status::Stall], Status::Err),
            (vec![Status::Rewind, Status::Ok, Status::Warn], Status::Err),
            (vec![Status::Stop, Status::Rewind], Status::Err),
        ];
        for (parts, want) in cases {
            let g = evaluate_group(parts.iter().map(|&s| part("t", s, 0, 1.0)).collect());
            assert_eq!(g.status, want, "{parts:?}");
        }
    }

    #[test]
    fn group_totals_max_lag_and_completeness() {
        let g = evaluate_group(vec![
            part("a", Status::Ok, 5, 1.0),
            part("b", Status::Ok, 9, 0.4),
            part("c", Status::Ok, 9, 1.0),
            part("d", Status::Ok, 0, 1.0),
        ]);
        assert_eq!(g.total_lag, 23);
        assert_eq!(g.max_lag.map(|m| m.topic), Some("b".to_string()));
        assert_eq!(g.complete, 0.75);
    }

    #[test]
    fn group_without_partitions_is_ok_and_not_complete() {
        let g = evaluate_group(Vec::new());
        assert_eq!(g.status, Status::Ok);
        assert_eq!(g.complete, 0.0);
        assert_eq!(g.max_lag, None);
    }

    #[test]
    fn expired_group_is_not_found() {
        let s = Settings::default();
        let day = 86_400_000;
        let now = 30 * day;
        assert!(!group_expired(Some(now - 7 * day), now, &s));
        assert!(group_expired(Some(now - 7 * day - 1), now, &s));
        assert!(!group_expired(None, now, &s));
        let nf = GroupStatus::not_found();
        assert_eq!((nf.status, nf.complete, nf.total_lag), (Status::NotFound, 1.0, 0));
    }

    #[test]
    fn status_names_and_order_are_burrows() {
        let all = [Status::NotFound, Status::Ok, Status::Warn, Status::Err, Status::Stop, Status::Stall, Status::Rewind];
        let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["NOTFOUND", "OK", "WARN", "ERR", "STOP", "STALL", "REWIND"]);
        assert!(all.windows(2).all(|p| p[0] < p[1]));
        assert_eq!(all.iter().map(|&s| s as i32).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(serde_json::to_string(&Status::Stall).unwrap(), "\"STALL\"");
    }
}
