//! Results, the targets they are judged against, and the Markdown report.

use std::fmt::Write as _;
use std::time::Duration;

/// The three lineage queries compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Chain,
    Descendants,
    Root,
}

impl QueryKind {
    pub const ALL: [QueryKind; 3] = [QueryKind::Chain, QueryKind::Descendants, QueryKind::Root];

    pub fn name(self) -> &'static str {
        match self {
            QueryKind::Chain => "chain-by-correlation",
            QueryKind::Descendants => "descendants",
            QueryKind::Root => "root-cause",
        }
    }
}

/// Latency summary of one query on one side, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// Mean rows (events) per answer, where the side reports it.
    pub mean_rows: Option<f64>,
}

/// The `q` quantile (0 < q ≤ 1) of `sorted` times, by nearest rank, in milliseconds; 0 when empty.
/// Every percentile the benchmarks print is this one.
pub fn nearest_rank_ms(sorted: &[Duration], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1].as_secs_f64() * 1000.0
}

impl Stats {
    pub fn from_samples(mut samples: Vec<Duration>, rows: Option<usize>) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        Stats {
            samples: n,
            p50_ms: nearest_rank_ms(&samples, 0.50),
            p99_ms: nearest_rank_ms(&samples, 0.99),
            mean_ms: samples.iter().map(|d| d.as_secs_f64() * 1000.0).sum::<f64>() / n as f64,
            mean_rows: rows.map(|r| r as f64 / n as f64),
        }
    }

    fn is_filled(&self) -> bool {
        self.samples > 0 && self.p50_ms > 0.0 && self.p99_ms > 0.0 && self.mean_ms > 0.0
    }
}

/// Durable ingest throughput, events per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ingest {
    pub causeway_http: f64,
    pub causeway_in_process: f64,
    pub postgres: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryResult {
    pub kind: QueryKind,
    pub causeway_http: Stats,
    pub causeway_in_process: Stats,
    pub postgres: Stats,
}

/// Everything measured at one data size.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeResult {
    pub events: usize,
    pub correlations: usize,
    pub mean_event_bytes: f64,
    pub ingest: Ingest,
    pub queries: Vec<QueryResult>,
    /// The round trip without store work: `GET /healthz`.
    pub floor_http: Stats,
    /// The round trip without table work: `SELECT 1`.
    pub floor_postgres: Stats,
    /// Database files (with WAL) after ingest over HTTP.
    pub causeway_bytes: u64,
    /// Table plus indexes.
    pub postgres_bytes: u64,
    /// Notes on anything odd seen while measuring (answers that differed between the sides…).
    pub notes: Vec<String>,
}

impl SizeResult {
    pub fn query(&self, kind: QueryKind) -> Option<&QueryResult> {
        self.queries.iter().find(|q| q.kind == kind)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
    /// `/proc/loadavg` when the run started: other work on the machine skews every number.
    pub load_at_start: String,
    /// `/proc/loadavg` when it ended.
    pub load_at_end: String,
    pub postgres: String,
    pub commit: String,
}

impl Machine {
    /// The head of the machine table and its rows up to PostgreSQL's; the caller adds its own.
    pub(crate) fn write_rows(&self, md: &mut String) {
        let _ = writeln!(md, "| machine | |\n|---|---|");
        let _ = writeln!(md, "| nproc | {} |", self.nproc);
        let _ = writeln!(md, "| CPU | {} |", self.cpu);
        let _ = writeln!(md, "| memory | {} |", self.memory);
        let _ = writeln!(md, "| kernel | {} |", self.kernel);
        let _ = writeln!(
            md,
            "| load average (1, 5, 15 min) | {} at start, {} at end (other work on the machine skews every number) |",
            self.load_at_start, self.load_at_end
        );
        let _ = writeln!(md, "| PostgreSQL | {} |", self.postgres);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub sizes: Vec<usize>,
    pub concurrency: usize,
    pub batch: usize,
    pub samples: usize,
    pub warmup: usize,
    pub seed: u64,
    pub command: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub started: String,
    pub elapsed_s: f64,
    pub machine: Machine,
    pub settings: Settings,
    pub sizes: Vec<SizeResult>,
}

/// Ingest target: causeway over HTTP at least this many times PostgreSQL's throughput.
pub const INGEST_FACTOR: f64 = 3.0;
/// Latency target: causeway's p99 over HTTP at least this many times lower than PostgreSQL's.
pub const LATENCY_FACTOR: f64 = 3.0;
/// Scaling target: p99 at the largest size at most this many times the p99 at the smallest.
pub const SCALING_FACTOR: f64 = 2.0;

impl Report {
    /// Every row of every table has positive numbers.
    pub fn is_complete(&self) -> bool {
        !self.sizes.is_empty()
            && self.sizes.iter().all(|s| {
                s.ingest.causeway_http > 0.0
                    && s.ingest.causeway_in_process > 0.0
                    && s.ingest.postgres > 0.0
                    && s.queries.len() == QueryKind::ALL.len()
                    && s.floor_http.is_filled()
                    && s.floor_postgres.is_filled()
                    && s.queries.iter().all(|q| q.causeway_http.is_filled() && q.causeway_in_process.is_filled() && q.postgres.is_filled())
            })
    }

    /// The targets of the foundation issue, judged.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut out = Vec::new();
        for s in &self.sizes {
            let ratio = s.ingest.causeway_http / s.ingest.postgres;
            out.push(Verdict {
                target: format!("ingest over HTTP ≥ {INGEST_FACTOR}× PostgreSQL ({})", size_label(s.events)),
                measured: format!("{ratio:.2}×"),
                pass: ratio >= INGEST_FACTOR,
            });
        }
        for s in &self.sizes {
            for q in &s.queries {
                let ratio = q.postgres.p99_ms / q.causeway_http.p99_ms;
                out.push(Verdict {
                    target: format!("{} p99 over HTTP ≥ {LATENCY_FACTOR}× lower than PostgreSQL ({})", q.kind.name(), size_label(s.events)),
                    measured: format!("{ratio:.2}× lower"),
                    pass: ratio >= LATENCY_FACTOR,
                });
            }
        }
        if let (Some(small), Some(large)) = (self.smallest(), self.largest())
            && large.events > small.events
        {
            for kind in QueryKind::ALL {
                let (Some(a), Some(b)) = (small.query(kind), large.query(kind)) else { continue };
                for (side, x, y) in [("HTTP", a.causeway_http, b.causeway_http), ("in-process", a.causeway_in_process, b.causeway_in_process)] {
                    let ratio = y.p99_ms / x.p99_ms;
                    out.push(Verdict {
                        target: format!(
                            "{} p99 ({side}) at {} ≤ {SCALING_FACTOR}× its p99 at {}",
                            kind.name(),
                            size_label(large.events),
                            size_label(small.events)
                        ),
                        measured: format!("{ratio:.2}×"),
                        pass: ratio <= SCALING_FACTOR,
                    });
                }
            }
        }
        out
    }

    fn smallest(&self) -> Option<&SizeResult> {
        self.sizes.iter().min_by_key(|s| s.events)
    }

    fn largest(&self) -> Option<&SizeResult> {
        self.sizes.iter().max_by_key(|s| s.events)
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let st = &self.settings;
        let m = &self.machine;
        let _ = writeln!(md, "### Run of {} ({:.0} s)\n", self.started, self.elapsed_s);
        let _ = writeln!(md, "Command: `{}`\n", st.command);
        m.write_rows(&mut md);
        let _ =
            writeln!(md, "| causeway | commit {}; server in-process (axum, tokio multi-thread runtime), SQLite WAL `synchronous=FULL` |", m.commit);
        let _ = writeln!(
            md,
            "| run | sizes {}; {} concurrent clients; batches of {}; {} samples per query per side after {} warm-up; seed {} |\n",
            st.sizes.iter().map(|s| size_label(*s)).collect::<Vec<_>>().join(", "),
            st.concurrency,
            st.batch,
            st.samples,
            st.warmup,
            st.seed
        );

        let _ = writeln!(md, "#### Data\n");
        let _ = writeln!(md, "| events | correlations | mean event JSON | causeway on disk | PostgreSQL table + indexes |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
        for s in &self.sizes {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} B | {} | {} |",
                group(s.events as f64),
                group(s.correlations as f64),
                s.mean_event_bytes,
                mib(s.causeway_bytes),
                mib(s.postgres_bytes)
            );
        }

        let _ = writeln!(md, "\n#### Durable ingest (events/s, higher is better)\n");
        let _ = writeln!(md, "| events | causeway HTTP | causeway in-process | PostgreSQL reference | HTTP ÷ PostgreSQL |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
        for s in &self.sizes {
            let i = &s.ingest;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2}× |",
                group(s.events as f64),
                group(i.causeway_http),
                group(i.causeway_in_process),
                group(i.postgres),
                i.causeway_http / i.postgres
            );
        }

        let _ = writeln!(md, "\n#### Query latency (ms, single client, keep-alive; lower is better)\n");
        let _ = writeln!(
            md,
            "| events | query | rows | causeway HTTP p50 | p99 | mean | in-process p50 | p99 | mean | PostgreSQL p50 | p99 | mean | PG p99 ÷ HTTP p99 |"
        );
        let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for s in &self.sizes {
            for q in &s.queries {
                let (h, p, g) = (&q.causeway_http, &q.causeway_in_process, &q.postgres);
                let rows = g.mean_rows.or(p.mean_rows).map(|r| format!("{r:.1}")).unwrap_or_default();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2}× |",
                    group(s.events as f64),
                    q.kind.name(),
                    rows,
                    ms(h.p50_ms),
                    ms(h.p99_ms),
                    ms(h.mean_ms),
                    ms(p.p50_ms),
                    ms(p.p99_ms),
                    ms(p.mean_ms),
                    ms(g.p50_ms),
                    ms(g.p99_ms),
                    ms(g.mean_ms),
                    g.p99_ms / h.p99_ms
                );
            }
        }

        let _ = writeln!(
            md,
            "\nThe three sides are asked in turn, id by id, so a burst of other work on the machine hits them alike; \
             causeway over HTTP before causeway in-process, each timed request after an untimed round trip to its side. \
             Round trip without store work, asked the same way:\n"
        );
        let _ = writeln!(md, "| events | causeway `GET /healthz` p50 | p99 | mean | PostgreSQL `SELECT 1` p50 | p99 | mean |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|");
        for s in &self.sizes {
            let (h, g) = (&s.floor_http, &s.floor_postgres);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                group(s.events as f64),
                ms(h.p50_ms),
                ms(h.p99_ms),
                ms(h.mean_ms),
                ms(g.p50_ms),
                ms(g.p99_ms),
                ms(g.mean_ms)
            );
        }

        if let (Some(small), Some(large)) = (self.smallest(), self.largest())
            && large.events > small.events
        {
            write_scaling(&mut md, large.events, small.events, |kind| small.query(kind).zip(large.query(kind)));
        }
        write_verdicts(&mut md, &self.verdicts());
        let notes: Vec<String> = self.sizes.iter().flat_map(|s| s.notes.iter().map(move |n| format!("{}: {n}", size_label(s.events)))).collect();
        if !notes.is_empty() {
            let _ = writeln!(md, "\nNotes:\n");
            for n in notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }
}

/// `10k`, `1M`, `2000`.
/// The scaling table: each query's p99 at `large` events ÷ its p99 at `small`, per side.
pub fn write_scaling<'a>(md: &mut String, large: usize, small: usize, pair: impl Fn(QueryKind) -> Option<(&'a QueryResult, &'a QueryResult)>) {
    let _ = writeln!(md, "\n#### Scaling (p99 at {} ÷ p99 at {}; lower is better)\n", size_label(large), size_label(small));
    let _ = writeln!(md, "| query | causeway HTTP | causeway in-process | PostgreSQL |\n|---|---:|---:|---:|");
    for kind in QueryKind::ALL {
        let Some((a, b)) = pair(kind) else { continue };
        let _ = writeln!(
            md,
            "| {} | {:.2}× | {:.2}× | {:.2}× |",
            kind.name(),
            b.causeway_http.p99_ms / a.causeway_http.p99_ms,
            b.causeway_in_process.p99_ms / a.causeway_in_process.p99_ms,
            b.postgres.p99_ms / a.postgres.p99_ms
        );
    }
}

/// The targets table with its PASS/FAIL count.
pub fn write_verdicts(md: &mut String, verdicts: &[Verdict]) {
    let passed = verdicts.iter().filter(|v| v.pass).count();
    let _ = writeln!(md, "\n#### Targets: {passed} of {} pass\n", verdicts.len());
    let _ = writeln!(md, "| target | measured | verdict |\n|---|---:|---|");
    for v in verdicts {
        let _ = writeln!(md, "| {} | {} | {} |", v.target, v.measured, if v.pass { "PASS" } else { "FAIL" });
    }
}

pub fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 10_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

pub fn group(x: f64) -> String {
    let n = x.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.1}")
    } else if x >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The head of a run's report table: the machine (cores and CPU model) and the load average at
/// the run's start (`/proc/loadavg` as read then) and now.
pub fn run_table_head(md: &mut String, load_at_start: &str) {
    use std::fmt::Write as _;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_default();
    let load_at_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(", ");
    let _ = writeln!(md, "| run | |\n|---|---|");
    let _ = writeln!(md, "| machine | {} cores, {cpu} |", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let _ = writeln!(md, "| load average | {} at start, {} at end |", load(load_at_start), load(&load_at_end));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_formatting() {
        let s = Stats::from_samples((1..=100).map(Duration::from_millis).collect(), Some(200));
        assert_eq!((s.p50_ms, s.p99_ms, s.mean_ms, s.mean_rows), (50.0, 99.0, 50.5, Some(2.0)));
        assert_eq!(group(1234567.4), "1,234,567");
        assert_eq!(group(999.0), "999");
        assert_eq!(size_label(1_000_000), "1M");
        assert_eq!(size_label(10_000), "10k");
        assert_eq!(size_label(2_000), "2000");
    }
}
