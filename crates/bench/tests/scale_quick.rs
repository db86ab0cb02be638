//! A small scale run end to end against the local PostgreSQL, with segments small enough that the
//! store seals during it, so the scale benchmark cannot rot: every row filled, every target judged.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (user postgres, database test) or `CAUSEWAY_BENCH_PG`.

use causeway_bench::QueryKind;
use causeway_bench::scale::{self, ScaleConfig};

#[test]
fn a_small_scale_run_fills_every_row() {
    let cfg = ScaleConfig {
        checkpoints: vec![2_000, 4_000],
        latency_at: vec![2_000, 6_000],
        samples: 50,
        warmup: 5,
        rounds: 2,
        segment_events: 1_000,
        retention_stretch: 4_000,
        pg_url: std::env::var("CAUSEWAY_BENCH_PG").unwrap_or_else(|_| causeway_bench::DEFAULT_PG_URL.into()),
        // Its own table, so a real run at the same time is not disturbed.
        pg_table: "bench_event_lineage_scale_test".into(),
        command: "cargo test -p causeway-bench".into(),
        verbose: false,
        ..ScaleConfig::new(6_000)
    };
    let report = scale::run(&cfg).expect("the scale benchmark runs (is PostgreSQL up at 127.0.0.1:5432?)");
    assert!(report.is_complete(), "{report:#?}");
    assert_eq!(report.checkpoints.iter().map(|c| c.events).collect::<Vec<_>>(), [2_000, 4_000, 6_000]);
    assert!(report.notes.is_empty(), "the sides answered differently: {:?}", report.notes);
    // Sealed while it ran: 1,000 per segment, the newest 500 to 1,499 positions kept hot.
    let end = report.checkpoints.last().unwrap();
    assert_eq!(report.store.events, 6_000);
    assert!(end.segments >= 4 && end.sealed_events + end.hot_events == 6_000 && end.hot_events < 1_500, "{end:#?}");
    assert!(end.segment_bytes > 0 && end.causeway_bytes >= end.segment_bytes + end.database_bytes / 2);
    // The same events on both sides: the raw JSON grows with them.
    assert!(report.checkpoints.windows(2).all(|w| w[0].raw_bytes < w[1].raw_bytes));
    let (first, last) = report.first_and_last();
    assert_eq!((first.from, first.to, last.from, last.to), (0, 2_000, 4_000, 6_000));

    // Retention removed the history up to the first checkpoint past half the run (4,000), and
    // perhaps the next segment, sealed soon after: their files are gone.
    let retention = report.retention.as_ref().expect("a retention run");
    assert!(retention.removed_segments >= 4 && retention.removed_events >= 4_000 && retention.removed_files_left == 0, "{retention:#?}");
    assert_eq!((retention.baseline.batches, retention.during.batches), (4, 4));
    // Two ingest targets, three scaling, three against PostgreSQL, two of retention, one on disk.
    let verdicts = report.verdicts();
    assert_eq!(verdicts.len(), 2 + 2 * QueryKind::ALL.len() + 2 + 1, "{verdicts:#?}");
    let md = report.to_markdown();
    assert!(!md.contains("NaN") && !md.contains("inf×") && !md.contains("| inf"), "{md}");
    assert!(md.contains("| 2000 → 4000 |"), "{md}");
    // Two rounds at each latency checkpoint: each query's median and every round's p99.
    let latencies: Vec<_> = report.checkpoints.iter().filter_map(|c| c.latency.as_ref()).collect();
    assert!(latencies.iter().all(|l| l.rounds_p99_ms.len() == QueryKind::ALL.len() && l.rounds_p99_ms.iter().all(|r| r.len() == 2)));
    assert!(latencies.iter().all(|l| l.queries.iter().all(|q| q.causeway_http.samples == 2 * 50 && q.postgres.samples == 2 * 50)));
    assert!(md.contains("| events | query | round 1 | round 2 |"), "{md}");
    assert_eq!(md.matches("PASS").count() + md.matches("FAIL").count(), verdicts.len(), "{md}");
}
