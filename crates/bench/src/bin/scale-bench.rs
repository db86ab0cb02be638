//! `scale-bench`: the store at ten million events against the PostgreSQL reference, grown side by
//! side and measured at checkpoints (`causeway_bench::scale`). Flags in, Markdown report out.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_bench::scale::{self, ScaleConfig};
use clap::Parser;

/// The store at scale: causeway (over HTTP) and a hand-built PostgreSQL event_lineage table fed the
/// same streamed events up to --events, with ingest rates, bytes on disk and lineage query latency
/// measured at checkpoints. Prints the Markdown report (and writes it to --out).
#[derive(Debug, Parser)]
#[command(name = "scale-bench", version)]
struct Args {
    /// Events per side [default: 10M; 30k with --quick]. Counts take a k or M suffix.
    #[arg(long, value_parser = count)]
    events: Option<usize>,
    /// Where to stop and measure, comma-separated; the total is always one [default: 10k, then every million].
    #[arg(long, value_delimiter = ',', value_parser = count)]
    checkpoints: Option<Vec<usize>>,
    /// The checkpoints at which the queries are timed [default: the first, 1M if a checkpoint, the last].
    #[arg(long, value_delimiter = ',', value_parser = count)]
    latency_at: Option<Vec<usize>>,
    /// Concurrent ingest clients per side.
    #[arg(long, short = 'c', default_value_t = 4)]
    concurrency: usize,
    /// Events per ingest request / INSERT statement.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Measured samples per query per side at each latency checkpoint [default: 1000; 200 with --quick].
    #[arg(long)]
    samples: Option<usize>,
    /// Unmeasured warm-up queries per query per side [default: 100; 20 with --quick].
    #[arg(long)]
    warmup: Option<usize>,
    /// Rounds of the latency measurement at each latency checkpoint, each with ids of its own; the
    /// report gives each side's median round and every round's p99 [default: 3; 1 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Seed of the generated data and of the queried ids.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The store's `[store] segment_events`: log positions per sealed segment (the store's
    /// default); 0 turns sealing off.
    #[arg(long, default_value_t = causeway_store::RECOMMENDED_SEGMENT_EVENTS)]
    segment_events: u64,
    /// Events per stretch of the retention run after the last checkpoint (twice: without, then
    /// while retention removes the history up to the first million); 0 skips it.
    #[arg(long, default_value_t = scale::RETENTION_STRETCH)]
    retention_stretch: usize,
    /// PostgreSQL connection string of the reference.
    #[arg(long, env = "CAUSEWAY_BENCH_PG", default_value = causeway_bench::DEFAULT_PG_URL)]
    pg: String,
    /// The reference table (dropped at start and end).
    #[arg(long, default_value = scale::DEFAULT_PG_TABLE)]
    pg_table: String,
    /// Parent directory of causeway's temporary data directory [default: the system temp dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Smoke run: 30,000 events, checkpoints 10k, 20k, 30k, 200 samples (flags given still apply).
    #[arg(long)]
    quick: bool,
    /// Write the Markdown report to this file too.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// `10000`, `10_000`, `10k`, `1M`.
fn count(text: &str) -> Result<usize, String> {
    let text = text.trim().replace('_', "");
    let (digits, factor) = match text.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1_000),
        None => match text.strip_suffix('M') {
            Some(d) => (d, 1_000_000),
            None => (text.as_str(), 1),
        },
    };
    digits.parse::<usize>().map(|n| n * factor).map_err(|_| format!("'{text}' is not a count (10000, 10k, 1M)"))
}

fn config(args: &Args) -> ScaleConfig {
    let base = match (args.quick, args.events) {
        (true, None) => ScaleConfig::quick(),
        (true, Some(events)) => {
            let quick = ScaleConfig::quick();
            ScaleConfig { samples: quick.samples, warmup: quick.warmup, rounds: quick.rounds, ..ScaleConfig::new(events) }
        }
        (false, events) => ScaleConfig::new(events.unwrap_or(scale::DEFAULT_EVENTS)),
    };
    let checkpoints = args.checkpoints.clone().unwrap_or(base.checkpoints);
    let latency_at = match (&args.latency_at, &args.checkpoints) {
        (Some(at), _) => at.clone(),
        (None, Some(given)) => {
            let mut all = given.clone();
            all.push(base.events);
            all.sort_unstable();
            all.dedup();
            scale::default_latency_at(&all)
        }
        (None, None) => base.latency_at,
    };
    ScaleConfig {
        checkpoints,
        latency_at,
        concurrency: args.concurrency,
        batch: args.batch,
        samples: args.samples.unwrap_or(base.samples),
        warmup: args.warmup.unwrap_or(base.warmup),
        rounds: args.rounds.unwrap_or(base.rounds),
        seed: args.seed,
        segment_events: args.segment_events,
        retention_stretch: args.retention_stretch,
        pg_url: args.pg.clone(),
        pg_table: args.pg_table.clone(),
        data_dir: args.data_dir.clone(),
        command: std::env::var("CAUSEWAY_BENCH_COMMAND")
            .unwrap_or_else(|_| std::iter::once("scale-bench".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ")),
        verbose: !args.quiet,
        ..base
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    causeway_bench::finish("scale-bench", scale::run(&config(&args)).map(|r| r.to_markdown()), args.out.as_deref())
}
