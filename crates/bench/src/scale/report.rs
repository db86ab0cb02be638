//! The scale run's results, the targets of the issue "store at ten million events", and its
//! Markdown report.

use std::fmt::Write as _;

use causeway_store::StoreStats;

use crate::report::{Machine, QueryKind, QueryResult, Stats, Verdict, group, mib, ms, nearest_rank_ms, size_label};

/// Ingest over the last million at least this share of the rate over the first.
pub const INGEST_KEPT: f64 = 0.8;
/// Ingest over HTTP at least this many times PostgreSQL's, over the whole run.
pub const INGEST_FACTOR: f64 = 1.5;
/// Each query's p99 over HTTP at the largest size at most this many times its p99 at the smallest.
pub const SCALING_FACTOR: f64 = 2.0;
/// Each query's p99 over HTTP at the largest size at most this many times PostgreSQL's there.
pub const LATENCY_FACTOR: f64 = 1.0;
/// Everything causeway keeps on disk at most this share of the events' JSON.
pub const DISK_FACTOR: f64 = 0.5;
/// Batch p99 while retention removes history, at most this many times its p99 without.
pub const RETENTION_FACTOR: f64 = 2.0;
/// The stretches compared for the ingest rate kept: the first and the last million.
pub const SPAN: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSettings {
    pub events: usize,
    pub checkpoints: Vec<usize>,
    pub latency_at: Vec<usize>,
    pub concurrency: usize,
    pub batch: usize,
    pub samples: usize,
    pub warmup: usize,
    /// Rounds of the latency measurement at each latency checkpoint.
    pub rounds: usize,
    pub seed: u64,
    pub segment_events: u64,
    pub command: String,
}

/// Lineage query latency at one checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    /// Per query, each side's median round ([`median_round`]).
    pub queries: Vec<QueryResult>,
    /// Per query, every round's p99 over HTTP and PostgreSQL's, in the order measured.
    pub rounds_p99_ms: Vec<Vec<(f64, f64)>>,
    /// `GET /healthz`.
    pub floor_http: Stats,
    /// `SELECT 1`.
    pub floor_postgres: Stats,
    /// PostgreSQL's `VACUUM ANALYZE` before the queries (untimed otherwise).
    pub vacuum_s: f64,
    /// Causeway's data directory read once before the queries, its counterpart (untimed otherwise).
    pub warm_s: f64,
    pub warm_bytes: u64,
}

impl Latency {
    pub fn query(&self, kind: QueryKind) -> Option<&QueryResult> {
        self.queries.iter().find(|q| q.kind == kind)
    }
}

/// One query's rounds as one result: per side, the median of the rounds' p50s, of their p99s and
/// of their means (each on its own; the upper median for an even count). The machine's noise
/// comes in bursts that can land on one round of a query and not on the next: one round's p99
/// says as much about the burst as about the store, the median of three says more.
pub fn median_round(rounds: &[QueryResult]) -> QueryResult {
    let side = |pick: fn(&QueryResult) -> &Stats| median_stats(&rounds.iter().map(pick).collect::<Vec<_>>());
    QueryResult {
        kind: rounds[0].kind,
        causeway_http: side(|q| &q.causeway_http),
        causeway_in_process: side(|q| &q.causeway_in_process),
        postgres: side(|q| &q.postgres),
    }
}

/// [`median_round`] for one side: samples and rows are the rounds' together.
pub fn median_stats(rounds: &[&Stats]) -> Stats {
    let median = |field: fn(&Stats) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(|s| field(s)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let samples = rounds.iter().map(|s| s.samples).sum::<usize>();
    let rows = rounds.iter().map(|s| s.mean_rows.map(|r| r * s.samples as f64)).sum::<Option<f64>>();
    Stats {
        samples,
        p50_ms: median(|s| s.p50_ms),
        p99_ms: median(|s| s.p99_ms),
        mean_ms: median(|s| s.mean_ms),
        mean_rows: rows.map(|r| r / samples.max(1) as f64),
    }
}

/// A latency checkpoint: the events then, and what was measured.
type LatencyPoint<'a> = (usize, &'a Latency);

/// Everything measured at one checkpoint, and the ingest of the stretch that led to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Events ingested by each side so far.
    pub events: usize,
    /// The JSON of those events, as sent (without the NDJSON newlines).
    pub raw_bytes: u64,
    /// Each side's ingest time for the stretch since the previous checkpoint.
    pub causeway_s: f64,
    pub postgres_s: f64,
    /// The wait for causeway's sealer to catch up after its stretch (in no side's time).
    pub seal_wait_s: f64,
    /// PostgreSQL's `CHECKPOINT` after its stretch, so that its background writes do not land in
    /// causeway's next stretch (in no side's time either).
    pub pg_checkpoint_s: f64,
    /// Every file of causeway's data directory: database, WAL, segments.
    pub causeway_bytes: u64,
    /// The store's own accounts: database with its WAL, and segment files.
    pub database_bytes: u64,
    pub segment_bytes: u64,
    pub segments: usize,
    pub sealed_events: usize,
    pub hot_events: usize,
    /// Table, TOAST and indexes (`pg_total_relation_size`).
    pub postgres_bytes: u64,
    pub latency: Option<Latency>,
}

/// Both sides' ingest rate over the stretches from `from` to `to` events (events/s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub from: usize,
    pub to: usize,
    pub causeway: f64,
    pub postgres: f64,
}

impl Span {
    fn label(&self) -> String {
        format!("{} → {}", size_label(self.from), size_label(self.to))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScaleReport {
    pub started: String,
    pub elapsed_s: f64,
    pub machine: Machine,
    /// PostgreSQL's settings that matter as the table grows.
    pub postgres_settings: String,
    pub settings: ScaleSettings,
    pub correlations: usize,
    /// The generator threads' CPU time per event sent (the same work for both sides).
    pub generate_us_per_event: f64,
    pub checkpoints: Vec<Checkpoint>,
    /// The store's statistics at the end, once the sealer caught up.
    pub store: StoreStats,
    pub notes: Vec<String>,
    /// Retention removing history while ingest runs, after the last checkpoint.
    pub retention: Option<RetentionRun>,
}

/// Per-batch ingest latency over one stretch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchLatency {
    pub batches: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl BatchLatency {
    pub fn of(mut times: Vec<std::time::Duration>) -> BatchLatency {
        times.sort();
        let at = |q: f64| nearest_rank_ms(&times, q);
        BatchLatency { batches: times.len(), p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

/// Retention removing history while ingest runs: a stretch without removal, then one with.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionRun {
    /// Events ingested per stretch.
    pub stretch: usize,
    pub removed_events: i64,
    pub removed_segments: usize,
    /// The removed segments' files: their bytes, and how many are still on disk.
    pub removed_bytes: u64,
    pub removed_files_left: usize,
    pub baseline: BatchLatency,
    pub during: BatchLatency,
    /// The second stretch's wall time.
    pub stretch_s: f64,
    /// Every file of the data directory, before the removal and after it (and the second stretch).
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub segment_bytes_before: u64,
    pub segment_bytes_after: u64,
    /// The stored events' JSON before and after.
    pub raw_bytes_before: i64,
    pub raw_bytes_after: i64,
}

impl ScaleReport {
    /// Both sides' rate from `from` to `to`, over the stretches between (both must be checkpoints, or 0).
    pub fn span(&self, from: usize, to: usize) -> Span {
        let (mut events, mut causeway_s, mut postgres_s) = (0, 0.0, 0.0);
        let mut previous = 0;
        for c in &self.checkpoints {
            if previous >= from && c.events <= to {
                events += c.events - previous;
                causeway_s += c.causeway_s;
                postgres_s += c.postgres_s;
            }
            previous = c.events;
        }
        Span { from, to, causeway: events as f64 / causeway_s, postgres: events as f64 / postgres_s }
    }

    /// The whole run.
    pub fn total(&self) -> Span {
        self.span(0, self.settings.events)
    }

    /// The first and the last million (a tenth of the run if it is shorter than ten million),
    /// widened to the nearest checkpoints.
    pub fn first_and_last(&self) -> (Span, Span) {
        let events = self.settings.events;
        let width = SPAN.min(events / 10).max(1);
        let ends: Vec<usize> = self.checkpoints.iter().map(|c| c.events).collect();
        let first_end = ends.iter().copied().find(|&c| c >= width).unwrap_or(events);
        let last_start = std::iter::once(0).chain(ends.iter().copied()).filter(|&c| c <= events.saturating_sub(width)).max().unwrap_or(0);
        (self.span(0, first_end), self.span(last_start, events))
    }

    fn latency_points(&self) -> impl Iterator<Item = LatencyPoint<'_>> {
        self.checkpoints.iter().filter_map(|c| c.latency.as_ref().map(|l| (c.events, l)))
    }

    /// The smallest and the largest latency checkpoints.
    fn latency_ends(&self) -> Option<(LatencyPoint<'_>, LatencyPoint<'_>)> {
        Some((self.latency_points().next()?, self.latency_points().last()?))
    }

    /// Every number the report prints is there and positive.
    pub fn is_complete(&self) -> bool {
        let filled = |s: &Stats| s.samples > 0 && s.p50_ms > 0.0 && s.p99_ms >= s.p50_ms && s.mean_ms > 0.0;
        let total = self.total();
        !self.checkpoints.is_empty()
            && self.checkpoints.last().is_some_and(|c| c.events == self.settings.events)
            && total.causeway > 0.0
            && total.postgres > 0.0
            && self
                .checkpoints
                .iter()
                .all(|c| c.causeway_s > 0.0 && c.postgres_s > 0.0 && c.raw_bytes > 0 && c.causeway_bytes > 0 && c.postgres_bytes > 0)
            && self.latency_points().count() == self.settings.latency_at.len()
            && self.latency_points().all(|(_, l)| {
                l.queries.len() == QueryKind::ALL.len()
                    && filled(&l.floor_http)
                    && filled(&l.floor_postgres)
                    && l.queries.iter().all(|q| filled(&q.causeway_http) && filled(&q.causeway_in_process) && filled(&q.postgres))
            })
    }

    /// The targets of the issue, judged.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut out = Vec::new();
        let (first, last) = self.first_and_last();
        let kept = last.causeway / first.causeway;
        out.push(Verdict {
            target: format!("ingest over HTTP {} ≥ {:.0}% of {}", last.label(), INGEST_KEPT * 100.0, first.label()),
            measured: format!("{:.0}% (PostgreSQL {:.0}%)", kept * 100.0, last.postgres / first.postgres * 100.0),
            pass: kept >= INGEST_KEPT,
        });
        let total = self.total();
        let ratio = total.causeway / total.postgres;
        out.push(Verdict {
            target: format!("ingest over HTTP ≥ {INGEST_FACTOR}× PostgreSQL ({} events)", size_label(self.settings.events)),
            measured: format!("{ratio:.2}× (last stretch {:.2}×)", last.causeway / last.postgres),
            pass: ratio >= INGEST_FACTOR,
        });
        if let Some(((small, a), (large, b))) = self.latency_ends() {
            if large > small {
                for kind in QueryKind::ALL {
                    let (Some(x), Some(y)) = (a.query(kind), b.query(kind)) else { continue };
                    let ratio = y.causeway_http.p99_ms / x.causeway_http.p99_ms;
                    out.push(Verdict {
                        target: format!(
                            "{} p99 over HTTP at {} ≤ {SCALING_FACTOR}× its p99 at {}",
                            kind.name(),
                            size_label(large),
                            size_label(small)
                        ),
                        measured: format!("{ratio:.2}×"),
                        pass: ratio <= SCALING_FACTOR,
                    });
                }
            }
            for q in &b.queries {
                let ratio = q.causeway_http.p99_ms / q.postgres.p99_ms;
                out.push(Verdict {
                    target: format!("{} p99 over HTTP ≤ {LATENCY_FACTOR}× PostgreSQL's ({})", q.kind.name(), size_label(large)),
                    measured: format!("{ratio:.2}×"),
                    pass: ratio <= LATENCY_FACTOR,
                });
            }
        }
        if let Some(r) = &self.retention {
            let ratio = r.during.p99_ms / r.baseline.p99_ms;
            out.push(Verdict {
                target: format!("batch p99 while retention removes {} events ≤ {RETENTION_FACTOR}× without", group(r.removed_events as f64)),
                measured: format!("{ratio:.2}× ({:.1} ms, {:.1} ms without)", r.during.p99_ms, r.baseline.p99_ms),
                pass: ratio <= RETENTION_FACTOR,
            });
            out.push(Verdict {
                target: "the removed segments' disk space is returned".into(),
                measured: format!("{} in {} files removed, {} left", mib(r.removed_bytes), r.removed_segments, r.removed_files_left),
                pass: r.removed_segments > 0 && r.removed_files_left == 0,
            });
        }
        if let Some(c) = self.checkpoints.last() {
            let ratio = c.causeway_bytes as f64 / c.raw_bytes as f64;
            out.push(Verdict {
                target: format!("causeway on disk ≤ {DISK_FACTOR}× the events' JSON ({})", size_label(c.events)),
                measured: format!("{ratio:.2}× ({} of {})", mib(c.causeway_bytes), mib(c.raw_bytes)),
                pass: ratio <= DISK_FACTOR,
            });
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let st = &self.settings;
        let m = &self.machine;
        let labels = |points: &[usize]| points.iter().map(|&p| size_label(p)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(md, "### Store at scale: run of {} ({:.0} s)\n", self.started, self.elapsed_s);
        let _ = writeln!(md, "Command: `{}`\n", st.command);
        m.write_rows(&mut md);
        let _ = writeln!(md, "| PostgreSQL, as the table grows | {} |", self.postgres_settings);
        let sealing = if st.segment_events > 0 {
            format!(
                "history sealed every {} events into compressed segment files in the background (`[store] segment_events`)",
                group(st.segment_events as f64)
            )
        } else {
            "sealing off (`[store] segment_events = 0`)".to_string()
        };
        let _ = writeln!(
            md,
            "| causeway | commit {}; server in-process (axum, tokio multi-thread runtime), SQLite WAL `synchronous=FULL`; {sealing} |",
            m.commit
        );
        let mean = self.checkpoints.last().map_or(0.0, |c| c.raw_bytes as f64 / c.events as f64);
        let _ = writeln!(
            md,
            "| run | {} events ({} correlations, mean event JSON {mean:.0} B), streamed; checkpoints {}; queries timed at {}; {} concurrent clients; \
             batches of {}; {} samples per query per side after {} warm-up, in each of {} rounds; seed {} |\n",
            group(st.events as f64),
            group(self.correlations as f64),
            labels(&st.checkpoints),
            labels(&st.latency_at),
            st.concurrency,
            st.batch,
            st.samples,
            st.warmup,
            st.rounds,
            st.seed
        );

        let _ = writeln!(md, "#### Durable ingest as the store grows (events/s, higher is better)\n");
        let _ = writeln!(
            md,
            "| stretch | causeway HTTP | PostgreSQL | HTTP ÷ PostgreSQL | causeway so far | PostgreSQL so far | sealer catching up after the stretch (untimed) | PostgreSQL checkpoint after the stretch (untimed) |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        let mut previous = 0;
        for c in &self.checkpoints {
            let stretch = self.span(previous, c.events);
            let so_far = self.span(0, c.events);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2}× | {} | {} | {:.1} s | {:.1} s |",
                stretch.label(),
                group(stretch.causeway),
                group(stretch.postgres),
                stretch.causeway / stretch.postgres,
                group(so_far.causeway),
                group(so_far.postgres),
                c.seal_wait_s,
                c.pg_checkpoint_s
            );
            previous = c.events;
        }
        let total = self.total();
        let _ = writeln!(
            md,
            "| **all {}** | **{}** | **{}** | **{:.2}×** | | | {:.1} s | {:.1} s |",
            size_label(st.events),
            group(total.causeway),
            group(total.postgres),
            total.causeway / total.postgres,
            self.checkpoints.iter().map(|c| c.seal_wait_s).sum::<f64>(),
            self.checkpoints.iter().map(|c| c.pg_checkpoint_s).sum::<f64>()
        );
        let (first, last) = self.first_and_last();
        let _ = writeln!(md, "\n| ingest kept | causeway HTTP | PostgreSQL |\n|---|---:|---:|");
        let _ = writeln!(md, "| first: {} | {} | {} |", first.label(), group(first.causeway), group(first.postgres));
        let _ = writeln!(md, "| last: {} | {} | {} |", last.label(), group(last.causeway), group(last.postgres));
        let _ = writeln!(md, "| last ÷ first | {:.2} | {:.2} |", last.causeway / first.causeway, last.postgres / first.postgres);
        let _ = writeln!(
            md,
            "\nEach side ingests a stretch on its own, causeway first; the rates are stretch events ÷ stretch time. The events are \
             generated while they are sent, by a thread beside each side's clients ({:.1} µs of CPU per event: {:.0}% of a core at \
             causeway's mean rate, {:.0}% at PostgreSQL's), inside both sides' times.",
            self.generate_us_per_event,
            self.generate_us_per_event * total.causeway / 1e4,
            self.generate_us_per_event * total.postgres / 1e4
        );

        let _ = writeln!(md, "\n#### Bytes on disk (lower is better)\n");
        let _ = writeln!(
            md,
            "| events | events' JSON | causeway, everything | ÷ JSON | database + WAL | segment files | segments | sealed events | hot events | \
             PostgreSQL table + indexes | ÷ JSON |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for c in &self.checkpoints {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2}× | {} | {} | {} | {} | {} | {} | {:.2}× |",
                group(c.events as f64),
                mib(c.raw_bytes),
                mib(c.causeway_bytes),
                c.causeway_bytes as f64 / c.raw_bytes as f64,
                mib(c.database_bytes),
                mib(c.segment_bytes),
                c.segments,
                group(c.sealed_events as f64),
                group(c.hot_events as f64),
                mib(c.postgres_bytes),
                c.postgres_bytes as f64 / c.raw_bytes as f64
            );
        }
        let s = &self.store;
        let _ = writeln!(
            md,
            "\nRead once the sealer has caught up. At the end the store counts {} events ({} sealed in {} segments, {} hot), {} of JSON as stored, \
             {} on disk ({}).",
            group(s.events as f64),
            group(s.sealed_events as f64),
            s.segments.len(),
            group(s.hot_events as f64),
            mib(s.raw_bytes.max(0) as u64),
            mib(s.disk_bytes),
            s.disk_ratio.map_or_else(|| "no ratio".to_string(), |r| format!("{r:.2}× by its own count"))
        );

        let _ = writeln!(md, "\n#### Query latency (ms, single client, keep-alive; lower is better)\n");
        let _ = writeln!(
            md,
            "| events | query | rows | causeway HTTP p50 | p99 | in-process p50 | p99 | PostgreSQL p50 | p99 | HTTP p99 ÷ PostgreSQL p99 |"
        );
        let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (events, l) in self.latency_points() {
            for q in &l.queries {
                let (h, p, g) = (&q.causeway_http, &q.causeway_in_process, &q.postgres);
                let rows = g.mean_rows.or(p.mean_rows).map(|r| format!("{r:.1}")).unwrap_or_default();
                let _ = writeln!(
                    md,
                    "| {} | {} | {rows} | {} | {} | {} | {} | {} | {} | {:.2}× |",
                    group(events as f64),
                    q.kind.name(),
                    ms(h.p50_ms),
                    ms(h.p99_ms),
                    ms(p.p50_ms),
                    ms(p.p99_ms),
                    ms(g.p50_ms),
                    ms(g.p99_ms),
                    h.p99_ms / g.p99_ms
                );
            }
            let (h, g) = (&l.floor_http, &l.floor_postgres);
            let _ = writeln!(
                md,
                "| {} | round trip (`GET /healthz`, `SELECT 1`) | | {} | {} | | | {} | {} | {:.2}× |",
                group(events as f64),
                ms(h.p50_ms),
                ms(h.p99_ms),
                ms(g.p50_ms),
                ms(g.p99_ms),
                h.p99_ms / g.p99_ms
            );
        }
        let _ = writeln!(
            md,
            "\nIds drawn uniformly from every event ingested so far; the sides asked in turn, id by id (causeway over HTTP before causeway in-process; each timed request after an untimed round trip to its side). Before the queries PostgreSQL gets \
             `VACUUM ANALYZE`, which reads its whole heap (untimed: {}), and causeway's data directory is read once, its \
             counterpart (untimed: {}): both sides answer from pages just read.",
            self.latency_points().map(|(e, l)| format!("{:.1} s at {}", l.vacuum_s, size_label(e))).collect::<Vec<_>>().join(", "),
            self.latency_points()
                .map(|(e, l)| format!("{:.1} MiB in {:.1} s at {}", l.warm_bytes as f64 / 1048576.0, l.warm_s, size_label(e)))
                .collect::<Vec<_>>()
                .join(", ")
        );

        if self.settings.rounds > 1 {
            let _ = writeln!(
                md,
                "\nEach figure above is the median of {} rounds, each with ids of its own (per side, the median of the rounds' p50s, and of their p99s). \
                 Every round's p99 (ms), causeway over HTTP / PostgreSQL:\n",
                self.settings.rounds
            );
            let _ = writeln!(md, "| events | query | {} |", (1..=self.settings.rounds).map(|r| format!("round {r}")).collect::<Vec<_>>().join(" | "));
            let _ = writeln!(md, "|---:|---|{}", "---:|".repeat(self.settings.rounds));
            for (events, l) in self.latency_points() {
                for (q, rounds) in l.queries.iter().zip(&l.rounds_p99_ms) {
                    let cells: Vec<String> = rounds.iter().map(|(h, g)| format!("{} / {}", ms(*h), ms(*g))).collect();
                    let _ = writeln!(md, "| {} | {} | {} |", group(events as f64), q.kind.name(), cells.join(" | "));
                }
            }
        }

        if let Some(((small, a), (large, b))) = self.latency_ends()
            && large > small
        {
            crate::report::write_scaling(&mut md, large, small, |kind| a.query(kind).zip(b.query(kind)));
        }
        if let Some(r) = &self.retention {
            let _ = writeln!(md, "\n#### Retention while ingest runs\n");
            let _ = writeln!(
                md,
                "After the last checkpoint, {} more events over HTTP ({} clients, batches of {}), every batch timed; then {} more while retention removes \
                 the {} oldest segments ({} events: `[store] retention` set to the age of the newest of them). The second stretch took {:.1} s.\n",
                group(r.stretch as f64),
                self.settings.concurrency,
                self.settings.batch,
                group(r.stretch as f64),
                r.removed_segments,
                group(r.removed_events as f64),
                r.stretch_s
            );
            let _ = writeln!(md, "| stretch | batches | p50 (ms) | p99 (ms) | max (ms) |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|");
            for (name, b) in [("without removal", &r.baseline), ("during the removal", &r.during)] {
                let _ = writeln!(md, "| {name} | {} | {:.1} | {:.1} | {:.1} |", b.batches, b.p50_ms, b.p99_ms, b.max_ms);
            }
            let _ = writeln!(
                md,
                "\nOn disk: {} of removed segment files ({} still there); the data directory {} → {}, its segment files {} → {} (the second \
                 stretch's events sealed meanwhile); the stored events' JSON {} → {}.",
                mib(r.removed_bytes),
                r.removed_files_left,
                mib(r.bytes_before),
                mib(r.bytes_after),
                mib(r.segment_bytes_before),
                mib(r.segment_bytes_after),
                mib(r.raw_bytes_before.max(0) as u64),
                mib(r.raw_bytes_after.max(0) as u64)
            );
        }
        crate::report::write_verdicts(&mut md, &self.verdicts());
        if !self.notes.is_empty() {
            let _ = writeln!(md, "\nNotes:\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(samples: usize, p50_ms: f64, p99_ms: f64, rows: Option<f64>) -> Stats {
        Stats { samples, p50_ms, p99_ms, mean_ms: p50_ms, mean_rows: rows }
    }

    fn round(http_p99: f64, postgres_p99: f64) -> QueryResult {
        QueryResult {
            kind: QueryKind::Descendants,
            causeway_http: stats(100, http_p99 / 2.0, http_p99, None),
            causeway_in_process: stats(100, 0.1, 0.2, Some(2.0)),
            postgres: stats(100, postgres_p99 / 4.0, postgres_p99, Some(3.0)),
        }
    }

    #[test]
    fn a_query_s_rounds_give_each_side_its_median_round() {
        // The burst in the second round of HTTP and the first of PostgreSQL does not decide.
        let median = median_round(&[round(0.6, 9.0), round(2.5, 0.5), round(0.7, 0.4)]);
        assert_eq!((median.causeway_http.p99_ms, median.causeway_http.p50_ms), (0.7, 0.35));
        assert_eq!((median.postgres.p99_ms, median.postgres.p50_ms), (0.5, 0.125));
        assert_eq!((median.causeway_http.samples, median.postgres.mean_rows), (300, Some(3.0)));
        assert_eq!(median.causeway_http.mean_rows, None);
        // Of an even count, the upper median: the slower of the middle two.
        let two = median_stats(&[&stats(10, 1.0, 4.0, None), &stats(10, 2.0, 3.0, None)]);
        assert_eq!((two.p50_ms, two.p99_ms), (2.0, 4.0));
    }
}
