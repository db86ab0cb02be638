//! What authentication costs a request: the real router in process (no socket), with tokens off
//! and with a reader's bearer token checked (a `stat` of the token file, a SHA-256, the role, the
//! rate bucket), on `GET /v1/events/{id}` and on the public `GET /healthz`; and one ingest request
//! of 100 events by a producer, whose audit entry is summed per minute. Variants interleave, so
//! machine noise hits each alike; the figure is the median of each variant's rounds.
//!
//! `cargo run --release -p causeway-bench --example auth_overhead [ROUNDS]`

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use causeway_auth::Role;
use causeway_envelope::ParseOptions;
use causeway_server::AppState;
use causeway_server::auth::{Auth, AuthMode};
use causeway_store::{SqlLimits, Store};
use tower::ServiceExt as _;

const PER_ROUND: usize = 2_000;

fn event(i: usize) -> serde_json::Value {
    serde_json::json!({"specversion": "1.0", "id": format!("e-{i}"), "source": "bench", "type": "Measured",
        "time": "2026-12-07T10:00:00Z", "correlationid": format!("c-{}", i / 10), "data": {"n": i}})
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(7);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let tokens = causeway_auth::TokenStore::new(dirs[1].path());
    let reader = tokens.create(Role::Reader, vec![], None)?.token;
    let producer = tokens.create(Role::Producer, vec!["*".into()], None)?.token;
    let states: Vec<AppState> = dirs
        .iter()
        .zip([AuthMode::Off, AuthMode::Required])
        .map(|(dir, mode)| -> anyhow::Result<AppState> {
            let store = Store::open(dir.path())?;
            Ok(AppState::new(store, ParseOptions::default(), SqlLimits::default()).with_auth(Auth::open(dir.path(), mode, Default::default())?))
        })
        .collect::<anyhow::Result<_>>()?;
    let routers: Vec<axum::Router> = states.iter().map(|s| causeway_server::app(s.clone())).collect();
    let batch = serde_json::to_vec(&(0..100).map(event).collect::<Vec<_>>())?;
    runtime.block_on(async {
        // The event every lookup finds, in both stores.
        for (router, token) in routers.iter().zip([None, Some(&producer)]) {
            let mut request = Request::post("/v1/events").header("content-type", "application/json");
            if let Some(t) = token {
                request = request.header("authorization", format!("Bearer {t}"));
            }
            let answer = router.clone().oneshot(request.body(Body::from(batch.clone()))?).await?;
            anyhow::ensure!(answer.status() == 200, "the setup batch was refused: {}", answer.status());
        }
        let mut samples: Vec<[Vec<f64>; 2]> = vec![Default::default(), Default::default(), Default::default()];
        for round in 0..rounds {
            for (variant, (router, token)) in routers.iter().zip([None, Some(&reader)]).enumerate() {
                for (k, path) in ["/v1/events/e-7", "/healthz"].into_iter().enumerate() {
                    let started = Instant::now();
                    for _ in 0..PER_ROUND {
                        let mut request = Request::get(path);
                        if let Some(t) = token {
                            request = request.header("authorization", format!("Bearer {t}"));
                        }
                        let answer = router.clone().oneshot(request.body(Body::empty())?).await?;
                        anyhow::ensure!(answer.status() == 200, "{path}: {}", answer.status());
                    }
                    samples[k][variant].push(started.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64);
                }
            }
            // Ingest: 100 new events a request (new ids each round), as a producer would.
            for (variant, (router, token)) in routers.iter().zip([None, Some(&producer)]).enumerate() {
                let events: Vec<serde_json::Value> = (0..100).map(|i| event(1_000_000 * (round + 1) + 1000 * variant + i)).collect();
                let body = serde_json::to_vec(&events)?;
                let started = Instant::now();
                for _ in 0..20 {
                    let mut request = Request::post("/v1/events").header("content-type", "application/json");
                    if let Some(t) = token {
                        request = request.header("authorization", format!("Bearer {t}"));
                    }
                    let answer = router.clone().oneshot(request.body(Body::from(body.clone()))?).await?;
                    anyhow::ensure!(answer.status() == 200, "ingest: {}", answer.status());
                }
                samples[2][variant].push(started.elapsed().as_secs_f64() * 1e6 / 20.0);
            }
        }
        println!("| request | tokens off (µs) | reader/producer token (µs) | ratio |");
        println!("|---|---:|---:|---:|");
        for (name, s) in
            ["GET /v1/events/{id}", "GET /healthz (public)", "POST /v1/events, 100 events (mostly duplicates)"].iter().zip(samples.iter_mut())
        {
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (off, on) = (median(&mut s[0]), median(&mut s[1]));
            println!("| {name} | {off:.1} | {on:.1} | {:.2}× |", on / off);
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
