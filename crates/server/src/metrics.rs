//! Internal counters of the ingest path; `api::metrics` writes them, with the store's and the
//! journey engine's gauges, as Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the ingest path. Process-local: they start at zero with the process, as Prometheus
/// counters do; totals that survive restarts come from the store.
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub bodies_rejected: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
