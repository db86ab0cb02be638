//! The per-partition window and the storage rules that feed it (Burrow's in-memory storage module).

use serde::{Deserialize, Serialize};

/// Tunables. [`Settings::default`] gives Burrow's values; every field beyond Burrow's own is off
/// (or inert) by default so that the default evaluation is Burrow's exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Commits kept per partition, and broker high watermarks kept per partition (Burrow's storage
    /// `intervals`, default 10). Zero is treated as one.
    pub intervals: usize,
    /// A commit less than this many milliseconds after the newest stored one replaces it instead of
    /// being appended (Burrow's storage `min-distance`, in seconds there). Default 1 000 ms, the value
    /// of Burrow's shipped `burrow.toml`; Burrow's code falls back to 0 when the key is absent.
    pub min_distance_ms: i64,
    /// A group whose newest commit is older than this is reported NOTFOUND (Burrow's storage
    /// `expire-group`, default 604 800 s = 7 days).
    pub expire_group_ms: i64,
    /// A partition whose window is filled to less than this fraction is reported OK without running
    /// the rules (Burrow's evaluator `minimum-complete`, default 0.0: every partition is evaluated).
    pub minimum_complete: f32,
    /// Not Burrow: a floor under the STOP rule's threshold. When positive, STOP needs the time since
    /// the last commit to exceed both the window's span and this. Default 0 (off, Burrow's rule).
    pub stop_grace_ms: i64,
    /// Not Burrow: [`crate::trend`] calls the lag steady when the fitted change across the window is
    /// within this fraction of the mean lag (or within one message). Default 0.05.
    pub trend_tolerance: f64,
    /// Not Burrow: [`crate::retention_risk`] flags a backlog whose committed offset sits within this
    /// fraction of the retained range from the log start. Default 0.10.
    pub retention_offset_fraction: f64,
    /// Not Burrow: [`crate::retention_risk`] flags a backlog whose oldest unconsumed message is older
    /// than this fraction of the retention time. Default 0.80.
    pub retention_age_fraction: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            intervals: 10,
            min_distance_ms: 1_000,
            expire_group_ms: 604_800_000,
            minimum_complete: 0.0,
            stop_grace_ms: 0,
            trend_tolerance: 0.05,
            retention_offset_fraction: 0.10,
            retention_age_fraction: 0.80,
        }
    }
}

impl Settings {
    pub(crate) fn ring_len(&self) -> usize {
        self.intervals.max(1)
    }
}

/// One stored offset commit: the committed offset (the next message the group will read), when it
/// was committed (as stored: see [`PartitionWindow::record_commit`]), and the lag computed when it
/// was stored, from the high watermark known then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub lag: i64,
}

/// One high watermark (log end offset) read from the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerOffset {
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// What [`PartitionWindow::record_commit`] did with a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Added as the newest commit (dropping the oldest when the window was full).
    Appended,
    /// Too close in time to the newest commit (min-distance): it took that commit's place, keeping
    /// the stored timestamp.
    ReplacedNewest,
}

/// A partition's stored history for one consumer group: the last `intervals` commits, oldest first,
/// and the last `intervals` broker high watermarks, oldest first. Serialisable so the caller can
/// persist it and keep evaluating across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWindow {
    commits: Vec<Commit>,
    broker: Vec<BrokerOffset>,
}

impl PartitionWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a commit as Burrow's storage does:
    /// - its lag is `high_watermark - offset` with the high watermark known at that moment, floored
    ///   at zero (the broker is read periodically, so a commit can be ahead of the last reading);
    /// - when a commit is already stored and the new one's timestamp is less than `min_distance_ms`
    ///   after it (an earlier timestamp included), the new offset and lag overwrite that newest
    ///   commit, which keeps its own timestamp — so a group committing faster than min-distance
    ///   still adds an entry once min-distance has passed since the stored one;
    /// - otherwise it is appended, the oldest commit dropping out once `intervals` are held;
    /// - an offset lower than the previous one is stored like any other: the window keeps it and
    ///   the evaluator reports REWIND.
    pub fn record_commit(&mut self, offset: i64, timestamp_ms: i64, high_watermark: i64, settings: &Settings) -> Recorded {
        let lag = (high_watermark - offset).max(0);
        if let Some(newest) = self.commits.last_mut()
            && timestamp_ms - newest.timestamp_ms < settings.min_distance_ms
        {
            newest.offset = offset;
            newest.lag = lag;
            return Recorded::ReplacedNewest;
        }
        self.commits.push(Commit { offset, timestamp_ms, lag });
        trim_front(&mut self.commits, settings.ring_len());
        Recorded::Appended
    }

    /// Stores a broker high watermark reading. Burrow keeps the last `intervals` readings per
    /// partition (each periodic read is one entry); the newest gives the current lag, and all of
    /// them feed the "recently caught up" exception to STOP.
    pub fn record_high_watermark(&mut self, high_watermark: i64, timestamp_ms: i64, settings: &Settings) {
        self.broker.push(BrokerOffset { offset: high_watermark, timestamp_ms });
        trim_front(&mut self.broker, settings.ring_len());
    }

    /// All stored commits, oldest first.
    pub fn commits(&self) -> &[Commit] {
        &self.commits
    }

    /// All stored broker readings, oldest first.
    pub fn high_watermarks(&self) -> &[BrokerOffset] {
        &self.broker
    }

    /// The commits the evaluator looks at: the newest `intervals` (more are only held when
    /// `intervals` was lowered since they were stored).
    pub fn window(&self, settings: &Settings) -> &[Commit] {
        newest(&self.commits, settings.ring_len())
    }

    pub(crate) fn broker_window(&self, settings: &Settings) -> &[BrokerOffset] {
        newest(&self.broker, settings.ring_len())
    }

    /// The newest commit's stored timestamp (what Burrow's group expiry compares against).
    pub fn last_commit_ms(&self) -> Option<i64> {
        self.commits.last().map(|c| c.timestamp_ms)
    }

    /// The newest high watermark reading, if any.
    pub fn high_watermark(&self) -> Option<i64> {
        self.broker.last().map(|b| b.offset)
    }

    /// Burrow's current lag: newest high watermark minus the newest committed offset, floored at
    /// zero; zero with no commit. With no high watermark recorded yet (Burrow never has a commit
    /// without one) the newest commit's stored lag stands in.
    pub fn current_lag(&self) -> i64 {
        match (self.commits.last(), self.high_watermark()) {
            (None, _) => 0,
            (Some(c), Some(hw)) => (hw - c.offset).max(0),
            (Some(c), None) => c.lag,
        }
    }
}

fn trim_front<T>(v: &mut Vec<T>, cap: usize) {
    if v.len() > cap {
        let excess = v.len() - cap;
        v.drain(..excess);
    }
}

fn newest<T>(v: &[T], cap: usize) -> &[T] {
    &v[v.len().saturating_sub(cap)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(intervals: usize, min_distance_ms: i64) -> Settings {
        Settings { intervals, min_distance_ms, ..Settings::default() }
    }

    #[test]
    fn defaults_are_burrows() {
        let s = Settings::default();
        assert_eq!(s.intervals, 10);
        assert_eq!(s.min_distance_ms, 1_000);
        assert_eq!(s.expire_group_ms, 7 * 24 * 3600 * 1000);
        assert_eq!(s.minimum_complete, 0.0);
        assert_eq!(s.stop_grace_ms, 0);
    }

    #[test]
    fn ring_keeps_the_newest_intervals_commits() {
        let s = settings(10, 0);
        let mut w = PartitionWindow::new();
        for i in 0..12 {
            assert_eq!(w.record_commit(100 + i, 1_000 * i, 200, &s), Recorded::Appended);
        }
        assert_eq!(w.commits().len(), 10);
        assert_eq!(w.commits()[0].offset, 102);
        assert_eq!(w.commits()[9].offset, 111);
        assert_eq!(w.commits()[9].lag, 89);
    }

    #[test]
    fn commit_within_min_distance_replaces_newest_and_keeps_its_timestamp() {
        let s = settings(10, 1_000);
        let mut w = PartitionWindow::new();
        assert_eq!(w.record_commit(10, 50_000, 20, &s), Recorded::Appended);
        assert_eq!(w.record_commit(15, 50_999, 21, &s), Recorded::ReplacedNewest);
        assert_eq!(w.commits(), &[Commit { offset: 15, timestamp_ms: 50_000, lag: 6 }]);
        // Exactly min-distance after the stored timestamp: appended.
        assert_eq!(w.record_commit(16, 51_000, 21, &s), Recorded::Appended);
        assert_eq!(w.commits().len(), 2);
    }

    #[test]
    fn frequent_committer_still_fills_the_ring() {
        // Commits every 400 ms with min-distance 1 s: the stored timestamp is kept on replace, so
        // the third replacement-candidate (1 200 ms after the stored one) is appended.
        let s = settings(10, 1_000);
        let mut w = PartitionWindow::new();
        let outcomes: Vec<Recorded> = (0..4).map(|i| w.record_commit(i, 400 * i, 10, &s)).collect();
        assert_eq!(outcomes, vec![Recorded::Appended, Recorded::ReplacedNewest, Recorded::ReplacedNewest, Recorded::Appended]);
        assert_eq!(w.commits(), &[Commit { offset: 2, timestamp_ms: 0, lag: 8 }, Commit { offset: 3, timestamp_ms: 1_200, lag: 7 }]);
    }

    #[test]
    fn commit_with_an_older_timestamp_replaces_newest_even_without_min_distance() {
        let s = settings(10, 0);
        let mut w = PartitionWindow::new();
        w.record_commit(10, 5_000, 10, &s);
        assert_eq!(w.record_commit(11, 4_000, 12, &s), Recorded::ReplacedNewest);
        assert_eq!(w.commits(), &[Commit { offset: 11, timestamp_ms: 5_000, lag: 1 }]);
    }

    #[test]
    fn offset_going_back_is_stored_as_is() {
        let s = settings(10, 0);
        let mut w = PartitionWindow::new();
        w.record_commit(500, 1_000, 600, &s);
        w.record_commit(300, 2_000, 600, &s);
        assert_eq!(w.commits().iter().map(|c| (c.offset, c.lag)).collect::<Vec<_>>(), vec![(500, 100), (300, 300)]);
    }

    #[test]
    fn lag_is_floored_at_zero_when_commit_is_ahead_of_the_known_watermark() {
        let s = settings(10, 0);
        let mut w = PartitionWindow::new();
        w.record_commit(120, 1_000, 100, &s);
        assert_eq!(w.commits()[0].lag, 0);
        w.record_high_watermark(110, 1_500, &s);
        assert_eq!(w.current_lag(), 0);
        w.record_high_watermark(150, 2_000, &s);
        assert_eq!(w.current_lag(), 30);
    }

    #[test]
    fn current_lag_without_watermark_readings_uses_the_commit_lag() {
        let s = settings(10, 0);
        let mut w = PartitionWindow::new();
        assert_eq!(w.current_lag(), 0);
        w.record_commit(40, 1_000, 100, &s);
        assert_eq!(w.current_lag(), 60);
    }

    #[test]
    fn broker_history_keeps_the_newest_intervals_readings() {
        let s = settings(3, 0);
        let mut w = PartitionWindow::new();
        for i in 0..5 {
            w.record_high_watermark(100 + i, i, &s);
        }
        assert_eq!(w.high_watermarks().iter().map(|b| b.offset).collect::<Vec<_>>(), vec![102, 103, 104]);
    }

    #[test]
    fn lowering_intervals_narrows_the_evaluated_window() {
        let mut w = PartitionWindow::new();
        for i in 0..10 {
            w.record_commit(i, 1_000 * i, 20, &settings(10, 0));
        }
        let narrow = settings(4, 0);
        assert_eq!(w.window(&narrow).iter().map(|c| c.offset).collect::<Vec<_>>(), vec![6, 7, 8, 9]);
        w.record_commit(10, 20_000, 20, &narrow);
        assert_eq!(w.commits().len(), 4);
    }

    #[test]
    fn window_survives_a_json_round_trip() {
        let s = settings(10, 1_000);
        let mut w = PartitionWindow::new();
        w.record_high_watermark(900, 0, &s);
        for i in 0..6 {
            w.record_commit(100 * i, 10_000 * i, 900, &s);
        }
        let json = serde_json::to_string(&w).unwrap();
        let back: PartitionWindow = serde_json::from_str(&json).unwrap();
        assert_eq!(back, w);
        let settings_back: Settings = serde_json::from_str(r#"{"intervals": 15}"#).unwrap();
        assert_eq!(settings_back, Settings { intervals: 15, ..Settings::default() });
    }
}
