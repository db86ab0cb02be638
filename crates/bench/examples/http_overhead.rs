//! Where the HTTP latency goes: the real server's lineage endpoints against minimal axum handlers
//! doing the same store call inline, behind `spawn_blocking`, or nothing at all — interleaved, on
//! one kept-alive connection, so machine noise hits every variant alike. Each id is first asked
//! in-process, so every HTTP variant finds its rows in cache.
//!
//! `cargo run --release -p causeway-bench --example http_overhead -- DIR [current|multi]`

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use causeway_bench::data::Dataset;
use causeway_bench::http::HttpClient;
use causeway_envelope::ParseOptions;
use causeway_server::AppState;
use causeway_store::{SqlLimits, Store};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/causeway-breakdown".into()));
    let flavor = args.next().unwrap_or_else(|| "multi".into());
    let store = Store::open(&dir)?;
    let n = store.counts()?.events as usize;
    let data = Dataset::generate(n, 42);
    let runtime = if flavor == "current" {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?
    };
    let real = causeway_server::app(AppState::new(store.clone(), ParseOptions::default(), SqlLimits::default()));
    let mini = Router::new()
        .route("/noop/{id}", get(|Path(id): Path<String>| async move { format!("{{\"event_id\":\"{id}\"}}") }))
        .route("/big/{id}", get(|Path(id): Path<String>| async move { format!("{{\"event_id\":\"{id}\",\"pad\":\"{}\"}}", "x".repeat(8_000)) }))
        .route(
            "/inline/root/{id}",
            get(|State(s): State<Store>, Path(id): Path<String>| async move {
                let (row, hops) = s.root(&id).unwrap().unwrap();
                format!("{{\"event_id\":\"{id}\",\"root\":{},\"hops\":{hops}}}", row.envelope)
            }),
        )
        .route(
            "/blocking/root/{id}",
            get(|State(s): State<Store>, Path(id): Path<String>| async move {
                let lookup = id.clone();
                let (row, hops) = tokio::task::spawn_blocking(move || s.root(&lookup)).await.unwrap().unwrap().unwrap();
                format!("{{\"event_id\":\"{id}\",\"root\":{},\"hops\":{hops}}}", row.envelope)
            }),
        )
        .with_state(store.clone());
    let app = real.merge(mini);
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    // The server runs on its own thread, which drives the runtime (a current-thread runtime only
    // makes progress inside block_on).
    std::thread::spawn(move || runtime.block_on(async move { axum::serve(listener, app).await }));
    type PathFor = fn(&str, &str) -> String;
    let variants: [(&str, PathFor); 8] = [
        ("noop handler", |id, _| format!("/noop/{id}")),
        ("noop handler, 8 KB answer", |id, _| format!("/big/{id}")),
        ("root: store.root inline", |id, _| format!("/inline/root/{id}")),
        ("root: store.root in spawn_blocking", |id, _| format!("/blocking/root/{id}")),
        ("root: real GET /v1/events/{id}/root", |id, _| format!("/v1/events/{id}/root")),
        ("descendants: real endpoint", |id, _| format!("/v1/events/{id}/descendants")),
        ("chain: real GET /v1/correlations/{id}", |_, c| format!("/v1/correlations/{c}")),
        ("healthz", |_, _| "/healthz".to_string()),
    ];
    let picks = data.sample_indexes(2200, 5);
    let mut client = HttpClient::new(addr);
    let mut body = Vec::new();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    let mut inproc: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    for (k, &i) in picks.iter().enumerate() {
        let e = &data.events[i];
        // In-process first: every HTTP variant after it finds the same rows in cache, so the
        // variants differ by their HTTP path alone; their order rotates from id to id.
        let t = Instant::now();
        store.root(&e.id)?;
        let a = t.elapsed();
        let t = Instant::now();
        store.descendants(&e.id, 10_001)?;
        let b = t.elapsed();
        let t = Instant::now();
        store.correlation(&e.correlation_id, 10_001)?;
        let c = t.elapsed();
        if k >= 200 {
            inproc[0].push(a);
            inproc[1].push(b);
            inproc[2].push(c);
        }
        for turn in 0..variants.len() {
            let v = (k + turn) % variants.len();
            let path = (variants[v].1)(&e.id, &e.correlation_id);
            let t = Instant::now();
            let status = client.get(&path, &mut body)?;
            let dt = t.elapsed();
            assert_eq!(status.0, 200, "{path}");
            if k >= 200 {
                times[v].push(dt);
            }
        }
    }
    let show = |name: &str, mut t: Vec<Duration>| {
        t.sort();
        let p = |q: f64| t[((q * t.len() as f64) as usize).min(t.len() - 1)].as_secs_f64() * 1e6;
        println!("{name:<42} p50 {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs", p(0.5), p(0.9), p(0.99));
    };
    println!("runtime: {flavor}-thread, {n} events");
    for (v, (name, _)) in variants.iter().enumerate() {
        show(name, times[v].clone());
    }
    show("in-process Store::root", inproc[0].clone());
    show("in-process Store::descendants", inproc[1].clone());
    show("in-process Store::correlation", inproc[2].clone());
    Ok(())
}
