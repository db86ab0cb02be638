//! Two or more kept stores of the same generated events (say, written by two builds), asked the
//! same `descendants` reads in one process, store after store for each id with the first store
//! rotating: the machine's noise falls on every store alike, so the ratios mean something where
//! two separate runs' absolute figures would not. Each store's first read of an id finds its
//! blocks cold, as a server's does for an id it was never asked about.
//!
//! `cargo run --release -p causeway-bench --example compare_stores -- N PICKS DIR DIR…` (N: the
//! events each store holds, written by `lineage_tail N SEGMENT dir=DIR`).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use causeway_bench::data::Dataset;
use causeway_bench::report::nearest_rank_ms;
use causeway_store::Store;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!("usage: compare_stores N PICKS DIR DIR…");
    }
    let n: usize = args[0].parse().context("N")?;
    let picks: usize = args[1].parse().context("PICKS")?;
    let dirs = &args[2..];
    let stores = dirs.iter().map(|d| Store::open(std::path::Path::new(d))).collect::<Result<Vec<_>, _>>()?;
    for (store, dir) in stores.iter().zip(dirs) {
        let held = store.counts()?.events as usize;
        if held != n {
            bail!("{dir} holds {held} events, not {n}");
        }
    }
    let data = Dataset::generate(n, 42);
    let picks = data.sample_indexes(picks, 9);
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(picks.len()); stores.len()];
    for (k, &i) in picks.iter().enumerate() {
        for turn in 0..stores.len() {
            let s = (k + turn) % stores.len();
            let started = Instant::now();
            stores[s].descendants(&data.events[i].id, 10_001)?.context("a generated event is missing")?;
            times[s].push(started.elapsed());
        }
    }
    for (mut t, dir) in times.into_iter().zip(dirs) {
        t.sort();
        let at = |q: f64| nearest_rank_ms(&t, q);
        println!("{dir}: descendants p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms", at(0.5), at(0.9), at(0.99), at(1.0));
    }
    Ok(())
}
