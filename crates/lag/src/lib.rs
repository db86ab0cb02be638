//! Consumer lag evaluation: the status rules of LinkedIn's Burrow (as in Burrow 1.2.x, the release
//! Debian ships) over a stored window of commits per partition, plus what Burrow does not report —
//! lag as time, time to clear, trend and retention risk.
//!
//! Pure and deterministic: no IO, no clock. The caller feeds each partition's [`PartitionWindow`]
//! with the group's offset commits ([`PartitionWindow::record_commit`]) and periodic broker high
//! watermark readings ([`PartitionWindow::record_high_watermark`]), persists it (it is serde), and
//! asks for [`evaluate_partition`] / [`evaluate_group`] with the time to judge at.
//!
//! # Storage (Burrow's in-memory storage module)
//!
//! - A window holds the last `intervals` commits (default 10); a new one pushes the oldest out.
//! - Each commit's lag is fixed when it is stored: the high watermark known then minus the
//!   committed offset, floored at zero. It is never recomputed.
//! - A commit arriving less than `min_distance_ms` after the newest stored one (or with an earlier
//!   timestamp) overwrites that newest entry's offset and lag but keeps its timestamp.
//! - An offset lower than the previous one is stored unchanged; the evaluator reports it.
//! - The last `intervals` high watermark readings are kept too. The current lag is the newest
//!   reading minus the newest committed offset, floored at zero.
//! - A group whose newest commit is older than `expire_group_ms` (default 7 days) is forgotten:
//!   [`group_expired`], then [`GroupStatus::not_found`].
//!
//! # Partition rules (Burrow's evaluator), in order
//!
//! A window that is filled to less than `minimum_complete` (default 0.0, so never) is OK without
//! further checks; otherwise, with the clock read in whole seconds as Burrow does:
//!
//! 1. A current lag of zero is OK: nothing else is checked.
//! 2. STOP: the time since the newest commit exceeds the time between the oldest and newest commit
//!    of the window — unless one of the stored high watermark readings is at or below the newest
//!    committed offset, meaning the group was caught up only moments ago. This is checked before
//!    rule 3, so a stopped consumer is reported even if its window once showed zero lag.
//! 3. If any commit in the window was stored with zero lag, the partition is OK.
//! 4. REWIND: some committed offset is lower than the one before it.
//! 5. STALL: every commit in the window has the same offset (the group commits but does not move).
//! 6. WARN: the lag never goes down from one commit to the next, while offsets move.
//! 7. Otherwise OK.
//!
//! # Group rules (Burrow's evaluator)
//!
//! The group takes its worst partition's status, except that STOP, STALL and REWIND all make it ERR;
//! `total_lag` sums current lags; `max_lag` is the partition with the highest current lag;
//! `complete` is the fraction of partitions whose window is full (0.0 with no partition).
//!
//! # Burrow status → what it means for an on-call engineer
//!
//! | Status | Meaning | First move |
//! |---|---|---|
//! | OK | Caught up, or caught up at some point in the window, or lag falling. | Nothing. |
//! | WARN | Committing and moving, but lag never fell across the window: the consumer is at best keeping pace, likely falling behind. | Watch the trend and time to clear; add consumers or throughput if it persists. |
//! | ERR | Group only: at least one partition is STOP, STALL or REWIND. | Open the partition list. |
//! | STOP | No commit for longer than the window spans, with lag waiting. | The consumer is dead, hung, unassigned or stuck in a rebalance: check it runs and owns the partition. |
//! | STALL | Commits keep arriving but the offset never moves, with lag throughout. | Stuck on one message (poison pill, retry loop, blocked dependency): read its logs and the DLQ. |
//! | REWIND | The committed offset went backwards. | Someone reset offsets or the consumer replays: expect duplicates; confirm it was intended. |
//! | NOTFOUND | Unknown group, or no commit for `expire_group_ms`. | Check the group name, or that the service was retired on purpose. |
//!
//! # Beyond Burrow
//!
//! - [`lag_seconds`]: the oldest unconsumed message's age (Burrow only counts messages).
//! - [`time_to_clear_seconds`]: current lag over the net drain rate (consumption minus production
//!   over the window); `None` is "never at this rate".
//! - [`trend`]: growing, shrinking or steady, from a least-squares fit of lag against time.
//! - [`retention_risk`]: the backlog's oldest message is near deletion ("lag approaching retention:
//!   data loss imminent"), or the committed offset is already below the log start.
//!
//! # A deliberate difference, opt-in
//!
//! Burrow's STOP threshold is relative: a partition that saw a quick burst of commits and then
//! nothing (a low-throughput topic) has a window spanning seconds, so the first new message that
//! takes longer than that to be committed turns it STOP once the high watermark history (about
//! `intervals` broker reads) no longer shows it caught up — a false alarm discussed in Burrow issue
//! #303 ("Improve lag evaluation rules"). [`Settings::stop_grace_ms`] puts a floor under that
//! threshold (we would suggest a few minutes, at least the consumers' commit interval); it is 0 by
//! default, which is Burrow's behaviour.

mod evaluate;
mod extras;
mod history;
pub mod offsets_topic;
mod window;

pub use evaluate::{GroupPartition, GroupStatus, PartitionStatus, Status, evaluate_group, evaluate_partition, group_expired};
pub use extras::{RetentionInput, RetentionRisk, Trend, lag_seconds, retention_risk, time_to_clear_seconds, trend};
pub use history::{HISTORY_LEN, OffsetHistory, WrittenAt};
pub use window::{BrokerOffset, Commit, PartitionWindow, Recorded, Settings};
