//! Where causeway's time goes: a timing breakdown of in-process ingest and lineage reads on a kept
//! store, for profiling (`cargo run --release -p causeway-bench --example breakdown -- DIR N`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use causeway_bench::data::Dataset;
use causeway_envelope::{ParseOptions, parse_body};
use causeway_store::{NewEvent, Store};

fn p50(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/causeway-breakdown".into()));
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let data = Dataset::generate(n, 42);
    let fresh = !dir.join("causeway.db").exists();
    let store = Store::open(&dir)?;
    if fresh {
        let options = ParseOptions::default();
        let bodies = data.ndjson_batches(1000);
        let mut parse = Duration::ZERO;
        let mut append = Duration::ZERO;
        for body in &bodies {
            let t = Instant::now();
            let events: Vec<NewEvent> =
                parse_body(Some("application/x-ndjson"), &[], body, &options)?.into_iter().map(|i| NewEvent::new(i.result.unwrap())).collect();
            parse += t.elapsed();
            let t = Instant::now();
            store.append_blocking(events, vec![])?;
            append += t.elapsed();
        }
        println!(
            "ingest {n}: parse {:.2} s ({:.0} ev/s), append (1 thread, batches of 1000) {:.2} s ({:.0} ev/s)",
            parse.as_secs_f64(),
            n as f64 / parse.as_secs_f64(),
            append.as_secs_f64(),
            n as f64 / append.as_secs_f64()
        );
    }
    let picks = data.sample_indexes(3000, 9);
    for round in 0..2 {
        let mut by_id = Vec::new();
        let mut chain = Vec::new();
        let mut desc = Vec::new();
        let mut root = Vec::new();
        for &i in &picks {
            let e = &data.events[i];
            let t = Instant::now();
            store.event(&e.id)?;
            by_id.push(t.elapsed());
            let t = Instant::now();
            store.correlation(&e.correlation_id, 10_001)?;
            chain.push(t.elapsed());
            let t = Instant::now();
            store.descendants(&e.id, 10_001)?;
            desc.push(t.elapsed());
            let t = Instant::now();
            store.root(&e.id)?;
            root.push(t.elapsed());
        }
        println!(
            "round {round}: p50 µs: event {:.1}, correlation {:.1}, descendants {:.1}, root {:.1}",
            p50(by_id),
            p50(chain),
            p50(desc),
            p50(root)
        );
    }
    // The by-id lookup on connections with the store's reader settings added one by one,
    // interleaved with `Store::event` so machine noise hits every variant alike.
    let open = |stage: usize| -> anyhow::Result<rusqlite::Connection> {
        let mut c = rusqlite::Connection::open_with_flags(
            dir.join("causeway.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        if stage >= 1 {
            c.pragma_update(None, "busy_timeout", 5000)?;
            c.pragma_update(None, "query_only", true)?;
            c.pragma_update(None, "cache_size", -16384)?;
        }
        if stage == 3 {
            c.pragma_update(None, "mmap_size", 1i64 << 32)?;
        }
        if stage == 4 {
            c.pragma_update(None, "cache_size", -262144)?;
        }
        if stage >= 2 {
            c.authorizer(Some(|_: rusqlite::hooks::AuthContext<'_>| rusqlite::hooks::Authorization::Allow))?;
        }
        Ok(c)
    };
    let sql = "SELECT seq, event_id, source, event_type, correlation_id, causation_id, subject, time, redeliveries, envelope FROM events WHERE event_id = ?1 ORDER BY seq LIMIT 1";
    let conns: Vec<rusqlite::Connection> = (0..5).map(open).collect::<Result<_, _>>()?;
    let names = ["plain read-only", "+ pragmas", "+ authorizer", "+ mmap_size=4GiB", "+ cache_size=256MiB"];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); 7];
    for round in 0..2 {
        for t in &mut times {
            t.clear();
        }
        for &i in &picks {
            let id = &data.events[i].id;
            for (k, c) in conns.iter().enumerate() {
                let t = Instant::now();
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query([id])?;
                while let Some(r) = rows.next()? {
                    let s: String = r.get(9)?;
                    std::hint::black_box(s);
                }
                times[k].push(t.elapsed());
            }
            let t = Instant::now();
            std::hint::black_box(store.event(id)?);
            times[5].push(t.elapsed());
            let t = Instant::now();
            store.with_reader(|_| Ok(()))?;
            times[6].push(t.elapsed());
        }
        if round == 1 {
            for (k, name) in names.iter().enumerate() {
                println!("by id on a {name} connection: p50 {:.1} µs", p50(times[k].clone()));
            }
            println!("Store::event: p50 {:.1} µs", p50(times[5].clone()));
            println!("Store::with_reader(no-op): p50 {:.1} µs", p50(times[6].clone()));
        }
    }
    Ok(())
}
