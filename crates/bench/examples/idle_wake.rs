//! What a request costs when the server was idle just before it: `GET /healthz` and PostgreSQL's
//! `SELECT 1`, each asked right after the previous answer, and after the client waited 1 or 7 ms
//! (asleep, or spinning on its core; 7 ms is PostgreSQL's descendants query at ten million
//! events). The scale benchmark asks the sides in turn, so one side's request can follow the
//! other side's long query; on a virtual machine an idle core may first have to be woken.
//!
//! `cargo run --release -p causeway-bench --example idle_wake -- [ROUNDS]` (PostgreSQL at
//! `CAUSEWAY_BENCH_PG` or the default URL).

use std::time::{Duration, Instant};

use causeway_bench::http::HttpClient;
use causeway_bench::report::nearest_rank_ms;
use causeway_bench::{DEFAULT_PG_URL, Server, pg};
use causeway_envelope::ParseOptions;
use causeway_server::AppState;
use causeway_store::{SqlLimits, Store};

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let url = std::env::var("CAUSEWAY_BENCH_PG").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let dir = tempfile::tempdir()?;
    let server = Server::start(AppState::new(Store::open(dir.path())?, ParseOptions::default(), SqlLimits::default()))?;
    let mut http = HttpClient::new(server.addr);
    let mut postgres = pg::connect(&url)?;
    let mut body = Vec::new();
    let pauses: [(&str, Option<(Duration, bool)>); 5] = [
        ("right after the last answer", None),
        ("after 1 ms asleep", Some((Duration::from_millis(1), false))),
        ("after 7 ms asleep", Some((Duration::from_millis(7), false))),
        ("after 1 ms spinning", Some((Duration::from_millis(1), true))),
        ("after 7 ms spinning", Some((Duration::from_millis(7), true))),
    ];
    // Per pause, per side (HTTP, PostgreSQL).
    let mut times = vec![[Vec::new(), Vec::new()]; pauses.len()];
    for k in 0..rounds * pauses.len() * 2 {
        let (p, side) = ((k / 2) % pauses.len(), (k + k / (2 * pauses.len())) % 2);
        match pauses[p].1 {
            Some((d, false)) => std::thread::sleep(d),
            Some((d, true)) => {
                let started = Instant::now();
                while started.elapsed() < d {
                    std::hint::spin_loop();
                }
            }
            None => {}
        }
        let started = Instant::now();
        if side == 0 {
            http.get("/healthz", &mut body)?;
        } else {
            postgres.simple_query("SELECT 1")?;
        }
        times[p][side].push(started.elapsed());
    }
    println!("{:<30} {:>28} {:>28}", "", "GET /healthz p50 / p90 / p99", "SELECT 1 p50 / p90 / p99");
    for ((name, _), sides) in pauses.iter().zip(times) {
        let cells: Vec<String> = sides
            .into_iter()
            .map(|mut t| {
                t.sort();
                let at = |q: f64| nearest_rank_ms(&t, q);
                format!("{:.3} / {:.3} / {:.3} ms", at(0.5), at(0.9), at(0.99))
            })
            .collect();
        println!("{name:<30} {:>28} {:>28}", cells[0], cells[1]);
    }
    Ok(())
}
