//! The quick mode of the benchmark runs end to end against the local PostgreSQL, so the bench
//! cannot rot: every table row must be filled with positive numbers.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (user postgres, database test) or `CAUSEWAY_BENCH_PG`.

use causeway_bench::{Config, QueryKind, run};

#[test]
fn quick_mode_fills_every_row() {
    let cfg = Config {
        pg_url: std::env::var("CAUSEWAY_BENCH_PG").unwrap_or_else(|_| causeway_bench::DEFAULT_PG_URL.into()),
        // Its own table, so a full run at the same time is not disturbed.
        pg_table: "bench_event_lineage_test".into(),
        command: "cargo test -p causeway-bench".into(),
        verbose: false,
        ..Config::quick()
    };
    let report = run(&cfg).expect("the quick benchmark runs (is PostgreSQL up at 127.0.0.1:5432?)");
    assert!(report.is_complete(), "{report:#?}");
    assert_eq!(report.sizes.len(), 1);
    let size = &report.sizes[0];
    assert_eq!(size.events, 2_000);
    assert!(size.notes.is_empty(), "the sides answered differently: {:?}", size.notes);
    for kind in QueryKind::ALL {
        let q = size.query(kind).expect("every query measured");
        for stats in [q.causeway_http, q.causeway_in_process, q.postgres, size.floor_http, size.floor_postgres] {
            assert_eq!(stats.samples, cfg.samples);
            assert!(stats.p50_ms > 0.0 && stats.p99_ms >= stats.p50_ms && stats.mean_ms > 0.0, "{kind:?}: {stats:?}");
        }
    }

    let md = report.to_markdown();
    assert!(!md.contains("NaN") && !md.contains("| inf"), "{md}");
    // The data, ingest, three latency and round-trip rows, each with only positive numbers.
    let data_rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| 2,000 |")).collect();
    assert_eq!(data_rows.len(), 1 + 1 + QueryKind::ALL.len() + 1, "{md}");
    for row in &data_rows {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        for cell in cells.iter().filter(|c| c.starts_with(|ch: char| ch.is_ascii_digit())) {
            let number: f64 = cell
                .trim_end_matches(" MiB")
                .trim_end_matches(['×', ' ', 'B'])
                .replace(',', "")
                .parse()
                .unwrap_or_else(|_| panic!("cell {cell:?} of {row:?}"));
            assert!(number > 0.0, "cell {cell:?} of {row:?}");
        }
    }
    // Every target is judged (one ingest, three latency; no scaling with one size).
    let verdicts = report.verdicts();
    assert_eq!(verdicts.len(), 1 + QueryKind::ALL.len());
    assert!(md.contains("PASS") || md.contains("FAIL"));
}
