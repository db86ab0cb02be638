//! When each offset was written, estimated from a partition's high watermark over time: how lag in
//! messages becomes lag in seconds without reading the message at the committed offset (the
//! approach of kafka-lag-exporter's interpolation table).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::window::BrokerOffset;

/// Readings kept per partition: at a 30 s polling interval, about two hours of history.
pub const HISTORY_LEN: usize = 256;

/// A partition's high watermark readings, oldest first; consecutive equal readings are one, at
/// the latest time it was seen (the last moment nothing new had been written).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OffsetHistory {
    readings: VecDeque<BrokerOffset>,
}

/// When the message at an offset was written.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WrittenAt {
    pub timestamp_ms: i64,
    /// The offset was written before the oldest reading: it is at most this time (so the lag in
    /// seconds is at least what it gives).
    pub at_most: bool,
}

impl OffsetHistory {
    pub fn record(&mut self, high_watermark: i64, timestamp_ms: i64) {
        match self.readings.back_mut() {
            Some(last) if last.offset == high_watermark => last.timestamp_ms = last.timestamp_ms.max(timestamp_ms),
            _ => {
                self.readings.push_back(BrokerOffset { offset: high_watermark, timestamp_ms });
                while self.readings.len() > HISTORY_LEN {
                    self.readings.pop_front();
                }
            }
        }
    }

    /// When the message at `offset` was written: between the last reading that had not reached
    /// it and the first that had, linearly by offset. `None` when no reading has reached it yet.
    pub fn written_at(&self, offset: i64) -> Option<WrittenAt> {
        let after = self.readings.iter().position(|r| r.offset > offset)?;
        let reached = self.readings[after];
        let Some(before) = after.checked_sub(1).map(|i| self.readings[i]) else {
            return Some(WrittenAt { timestamp_ms: reached.timestamp_ms, at_most: true });
        };
        // Messages before.offset ..= reached.offset - 1 were written in (before.t, reached.t].
        let share = (offset - before.offset + 1) as f64 / (reached.offset - before.offset) as f64;
        let t = before.timestamp_ms as f64 + share * (reached.timestamp_ms - before.timestamp_ms) as f64;
        Some(WrittenAt { timestamp_ms: t.round() as i64, at_most: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(readings: &[(i64, i64)]) -> OffsetHistory {
        let mut h = OffsetHistory::default();
        for &(offset, t) in readings {
            h.record(offset, t);
        }
        h
    }

    #[test]
    fn an_offset_between_two_readings_is_placed_linearly() {
        // 100 messages written between t=10 s and t=20 s: the 50th of them at 15 s.
        let h = history(&[(0, 10_000), (100, 20_000)]);
        assert_eq!(h.written_at(49), Some(WrittenAt { timestamp_ms: 15_000, at_most: false }));
        assert_eq!(h.written_at(99), Some(WrittenAt { timestamp_ms: 20_000, at_most: false }));
    }

    #[test]
    fn equal_readings_keep_the_last_time_nothing_was_new() {
        // Nothing new from 10 s to 19 s, then 10 messages by 20 s: they were written in (19, 20].
        let h = history(&[(0, 10_000), (0, 15_000), (0, 19_000), (10, 20_000)]);
        assert_eq!(h.written_at(0).unwrap().timestamp_ms, 19_100);
    }

    #[test]
    fn an_offset_older_than_the_history_is_a_bound_and_an_unwritten_one_is_none() {
        let h = history(&[(500, 10_000), (600, 20_000)]);
        assert_eq!(h.written_at(10), Some(WrittenAt { timestamp_ms: 10_000, at_most: true }));
        assert_eq!(h.written_at(600), None);
    }

    #[test]
    fn the_history_is_bounded() {
        let h = history(&(0..(HISTORY_LEN as i64 + 50)).map(|i| (i, i * 1000)).collect::<Vec<_>>());
        assert_eq!(h.readings.len(), HISTORY_LEN);
        assert_eq!(h.readings.front().unwrap().offset, 50);
    }
}
