//! `causeway-bench`: flags in, Markdown report out. The logic is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_bench::{Config, run};
use clap::Parser;

/// The foundation acceptance benchmark: causeway against a hand-built PostgreSQL event_lineage
/// table, same data, one run. Prints the Markdown report (and writes it to --out).
#[derive(Debug, Parser)]
#[command(name = "causeway-bench", version)]
struct Args {
    /// Data sizes in events, comma-separated; fresh stores and tables for each.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    sizes: Vec<usize>,
    /// Concurrent ingest clients per side.
    #[arg(long, short = 'c', default_value_t = 4)]
    concurrency: usize,
    /// Events per ingest request / INSERT statement.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Measured samples per query per side.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Unmeasured warm-up queries per query per side.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Seed of the generated data and of the queried ids.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// PostgreSQL connection string of the reference.
    #[arg(long, env = "CAUSEWAY_BENCH_PG", default_value = causeway_bench::DEFAULT_PG_URL)]
    pg: String,
    /// The reference table (dropped at start and end).
    #[arg(long, default_value = causeway_bench::DEFAULT_PG_TABLE)]
    pg_table: String,
    /// Parent directory of causeway's temporary data directories [default: the system temp dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Smoke run: 2,000 events, 200 samples; overrides --sizes, --samples and --warmup.
    #[arg(long)]
    quick: bool,
    /// Write the Markdown report to this file too.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let base = if args.quick { Config::quick() } else { Config::default() };
    let cfg = Config {
        sizes: if args.quick { base.sizes } else { args.sizes },
        concurrency: args.concurrency,
        batch: args.batch,
        samples: if args.quick { base.samples } else { args.samples },
        warmup: if args.quick { base.warmup } else { args.warmup },
        seed: args.seed,
        pg_url: args.pg,
        pg_table: args.pg_table,
        data_dir: args.data_dir,
        command: std::env::var("CAUSEWAY_BENCH_COMMAND")
            .unwrap_or_else(|_| std::iter::once("causeway-bench".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ")),
        verbose: !args.quiet,
    };
    causeway_bench::finish("causeway-bench", run(&cfg).map(|r| r.to_markdown()), args.out.as_deref())
}
