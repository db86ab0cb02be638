//! The slowest lineage reads of a store, for profiling a p99 tail: ingests N generated events
//! in-process (sealing at SEGMENT events, 0 = off), then times `descendants`, `root` and
//! `correlation` for a sample of ids and prints the slowest, each asked again to tell a slow id
//! from a slow moment (`cargo run --release -p causeway-bench --example lineage_tail -- N SEGMENT
//! [cold] [dir=PATH] [picks=N] [cache_mib=N] [only=NAME] [rounds=N]`). With `cold` (as root), the page cache is dropped before each kind of read, so they
//! find the store's files on disk, as when another database's data pushed them out. With
//! `dir=PATH` the store is kept there, and a later run on the same PATH skips the ingest; the
//! ingest prints its rate per tenth, to tell a store that slows as it grows from a busy machine.
//! `cache_mib=N` sets the writer's page cache (`[store] cache`). Each kind of read also prints its
//! page faults per read: a first touch of a mapped page of a segment costs one.

use std::time::{Duration, Instant};

use causeway_bench::data::Dataset;
use causeway_bench::report::nearest_rank_ms;
use causeway_envelope::{ParseOptions, parse_body};
use causeway_store::{NewEvent, Store, StoreSettings};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(300_000);
    let segment_events: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let rest: Vec<String> = args.collect();
    let cold = rest.iter().any(|a| a == "cold");
    let temp = tempfile::tempdir()?;
    let dir = rest.iter().find_map(|a| a.strip_prefix("dir=")).map_or_else(|| temp.path().to_path_buf(), std::path::PathBuf::from);
    let cache = rest.iter().find_map(|a| a.strip_prefix("cache_mib=")).map(str::parse::<u64>).transpose()?;
    let mut settings = StoreSettings { segment_events, ..StoreSettings::default() };
    if let Some(mib) = cache {
        settings.writer_cache_bytes = mib << 20;
    }
    let data = Dataset::generate(n, 42);
    let opened = Instant::now();
    let store = Store::open_with(&dir, &settings)?;
    let options = ParseOptions::default();
    let stored = store.counts()?.events as usize;
    if stored != 0 && stored != n {
        anyhow::bail!("{} holds {stored} events, not {n}", dir.display());
    }
    if stored == 0 {
        let tenth = (n / 10).max(1);
        let (mut sent, mut since) = (0, Instant::now());
        for body in data.ndjson_batches(1000) {
            let events: Vec<NewEvent> =
                parse_body(Some("application/x-ndjson"), &[], &body, &options)?.into_iter().map(|i| NewEvent::new(i.result.unwrap())).collect();
            sent += events.len();
            store.append_blocking(events, vec![])?;
            if sent % tenth == 0 {
                println!("ingested {sent}: {:.0} events/s over the last {tenth}", tenth as f64 / since.elapsed().as_secs_f64());
                since = Instant::now();
            }
        }
    }
    if segment_events > 0 {
        let want = (n as i64 - segment_events as i64 / 2) / segment_events as i64 * segment_events as i64;
        while store.stats()?.sealed_upto < want {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The combined filters of every 16 segments are built on a thread of their own: measured here,
    // and waited for, so the reads below are the store's steady state.
    let groups = store.stats()?.segments.len() / 16;
    while store.segment_groups() < groups {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "{n} events, {} sealed, {groups} segment groups built {:.2} s after the store opened",
        store.stats()?.sealed_events,
        opened.elapsed().as_secs_f64()
    );
    let picks = rest.iter().find_map(|a| a.strip_prefix("picks=")).map_or(Ok(3000), str::parse)?;
    let picks = data.sample_indexes(picks, 9);
    type Read = fn(&Store, &causeway_bench::data::GenEvent) -> anyhow::Result<usize>;
    let reads: [(&str, Read); 3] = [
        ("descendants", |s, e| Ok(s.descendants(&e.id, 10_001)?.map_or(0, |v| v.len()))),
        ("root", |s, e| Ok(s.root(&e.id)?.map_or(0, |(_, hops)| hops))),
        ("correlation", |s, e| Ok(s.correlation(&e.correlation_id, 10_001)?.len())),
    ];
    // `only=NAME` times one kind of read, `rounds=N` asks its sample N times: a profile of one read.
    let only = rest.iter().find_map(|a| a.strip_prefix("only="));
    let rounds: usize = rest.iter().find_map(|a| a.strip_prefix("rounds=")).map_or(Ok(1), str::parse)?;
    for (name, read) in reads.into_iter().filter(|(name, _)| only.is_none_or(|o| o == *name)) {
        for _ in 1..rounds {
            for &i in &picks {
                read(&store, &data.events[i])?;
            }
        }
        if cold {
            // Clean pages only: the store's are written back already (fsynced).
            std::fs::write("/proc/sys/vm/drop_caches", "1")?;
        }
        let mut times: Vec<(Duration, usize, usize)> = Vec::new();
        let faults = minor_faults();
        for &i in &picks {
            let t = Instant::now();
            let rows = read(&store, &data.events[i])?;
            times.push((t.elapsed(), rows, i));
        }
        let faults = (minor_faults() - faults) as f64 / picks.len() as f64;
        times.sort();
        let sorted: Vec<Duration> = times.iter().map(|t| t.0).collect();
        let at = |q: f64| nearest_rank_ms(&sorted, q);
        println!("{name}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {faults:.1} page faults per read", at(0.5), at(0.99), at(1.0));
        for (took, rows, i) in times.iter().rev().take(5) {
            let again = Instant::now();
            read(&store, &data.events[*i])?;
            let e = &data.events[*i];
            println!(
                "  {:.3} ms ({rows} rows; again {:.3} ms) {} {} caused by {:?}",
                took.as_secs_f64() * 1e3,
                again.elapsed().as_secs_f64() * 1e3,
                e.event_type,
                e.id,
                e.causation_id
            );
        }
    }
    Ok(())
}

/// This process's minor page faults so far (`/proc/self/stat`, field 10): a first touch of a
/// mapped page of a segment file costs one, even when the page is in the page cache.
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    fields.get(7).and_then(|f| f.parse().ok()).unwrap_or(0)
}
