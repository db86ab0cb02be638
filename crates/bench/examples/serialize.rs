//! What `GET /v1/correlations/{id}` spends after the store answered: building the causation tree and
//! encoding the JSON answer through serde with each stored envelope re-validated by
//! `RawValue::from_string` (as the server did), against splicing the stored JSON in unchecked (as
//! `spliced_object` in `crates/server/src/api/query.rs` does since this measurement).
//!
//! `cargo run --release -p causeway-bench --example serialize -- DIR`

use std::time::{Duration, Instant};

use causeway_bench::data::Dataset;
use causeway_store::{Store, build_tree};
use serde_json::value::RawValue;

/// The server's `CorrelationBody`.
#[derive(serde::Serialize)]
struct Body {
    correlation_id: Option<String>,
    events: Vec<Box<RawValue>>,
    tree: Vec<causeway_store::TreeNode>,
    truncated: bool,
}

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/tmp/causeway-breakdown".into()));
    let store = Store::open(&dir)?;
    let data = Dataset::generate(store.counts()?.events as usize, 42);
    let picks = data.sample_indexes(3000, 11);
    let answers: Vec<_> = picks.iter().map(|&i| store.correlation(&data.events[i].correlation_id, 10_001)).collect::<Result<_, _>>()?;
    let mut query = Vec::new();
    let mut tree_t = Vec::new();
    let mut raw_t = Vec::new();
    let mut encode_t = Vec::new();
    let mut splice_t = Vec::new();
    for (k, &i) in picks.iter().enumerate() {
        let t = Instant::now();
        std::hint::black_box(store.correlation(&data.events[i].correlation_id, 10_001)?);
        query.push(t.elapsed());
        let rows = &answers[k];
        let t = Instant::now();
        let tree = build_tree(rows);
        tree_t.push(t.elapsed());
        let t = Instant::now();
        let events: Vec<Box<RawValue>> = rows.iter().map(|r| RawValue::from_string(r.envelope.clone()).unwrap()).collect();
        raw_t.push(t.elapsed());
        let t = Instant::now();
        let body = serde_json::to_vec(&Body { correlation_id: rows[0].correlation_id.clone(), events, tree: tree.clone(), truncated: false })?;
        encode_t.push(t.elapsed());
        std::hint::black_box(body);
        // The stored envelopes are known to be JSON: splice them in without re-parsing.
        let t = Instant::now();
        let mut out = String::with_capacity(rows.iter().map(|r| r.envelope.len() + 1).sum::<usize>() + 64);
        out.push_str("{\"events\":[");
        for (j, r) in rows.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&r.envelope);
        }
        out.push_str("],\"tree\":");
        out.push_str(&serde_json::to_string(&tree)?);
        out.push('}');
        splice_t.push(t.elapsed());
        std::hint::black_box(out);
    }
    let p50 = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    println!(
        "chain answer, p50 µs: store query {:.1}, build_tree {:.1}, RawValue::from_string x rows {:.1}, serialize (derive) + to_vec {:.1}; spliced body incl. tree {:.1}",
        p50(query),
        p50(tree_t),
        p50(raw_t),
        p50(encode_t),
        p50(splice_t)
    );
    Ok(())
}
