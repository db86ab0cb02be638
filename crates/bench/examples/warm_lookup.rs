//! The fixed cost of a lookup, with everything in cache: asks the same event, correlation and
//! descendants of a few events spread over a kept store's history (seqs 5,000, 3M, 7M, 9.95M, or
//! those that exist) 20,000 times each and prints the mean. What is left is the path itself
//! (statements, filters, locks), not the disk or the decompression.
//! `cargo run --release -p causeway-bench --example warm_lookup -- DIR` (a store `lineage_tail
//! N SEGMENT dir=DIR` kept).

use std::time::Instant;

use causeway_store::Store;

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: warm_lookup DIR"))?);
    let store = Store::open(&dir)?;
    let picks: Vec<(String, String, String)> = store.with_reader(|c| {
        let mut s = c.prepare(
            "SELECT event_id, correlation_id, causation_id FROM events WHERE seq IN (5000, 3000000, 7000000, 9950000) AND causation_id IS NOT NULL ORDER BY seq",
        )?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })?;
    type Read<'a> = Box<dyn Fn() -> anyhow::Result<()> + 'a>;
    for (id, correlation, cause) in &picks {
        let reads: [(&str, Read); 3] = [
            ("event", Box::new(|| Ok(store.event(id).map(drop)?))),
            ("correlation", Box::new(|| Ok(store.correlation(correlation, 10_001).map(drop)?))),
            ("descendants of its cause", Box::new(|| Ok(store.descendants(cause, 10_001).map(drop)?))),
        ];
        for (name, read) in reads {
            for _ in 0..200 {
                read()?;
            }
            let n = 20_000;
            let t = Instant::now();
            for _ in 0..n {
                read()?;
            }
            println!("{id} {name}: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
    }
    Ok(())
}
