//! `causeway gen grafana`: three Grafana dashboards on causeway's metrics, as dashboard JSON
//! (schema version 39) to provision or import:
//!
//! - executive: event success by context, each SLO's budget, SLI and burn rate, the event types
//!   that fail most, journeys completed;
//! - on-call: alerts firing, consumer lag and Burrow's status, stalled journeys, dead letters by
//!   error type and topic, open findings by kind;
//! - debug: ingest by outcome and its duration, reaction latency per policy, completion time per
//!   journey, the journey engine's lag and clock, late events.
//!
//! Every panel reads the Prometheus data source picked by the `datasource` template variable.
//! Panels the model can name are derived from it: one set per SLO, per journey and per policy,
//! with the model's windows drawn as threshold lines.

use causeway_model::Model;

use crate::GeneratedFile;
use crate::json::{J, obj, strs};
use crate::prometheus::{CONSUMER_LAG_SECONDS, DLQ_OLDEST_PENDING_SECONDS, promql_str};
use crate::slos::{SloFacts, slo_facts};
use crate::util::{duration, percent};

/// The files written, in order: executive, on-call, debug.
pub const DASHBOARDS: [&str; 3] = ["causeway-executive.json", "causeway-on-call.json", "causeway-debug.json"];

const SCHEMA_VERSION: u32 = 39;
/// The template variable every panel's data source is.
const DATASOURCE: &str = "${datasource}";
const GRID_WIDTH: u32 = 24;
/// Grafana picks a rate window of at least four scrape intervals.
const RATE: &str = "$__rate_interval";
const QUANTILES: [(&str, &str); 3] = [("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99")];

pub fn grafana(model: &Model) -> Vec<GeneratedFile> {
    let facts = slo_facts(model);
    let boards = [executive(model, &facts), on_call(model), debug(model)];
    DASHBOARDS.iter().zip(boards).map(|(path, board)| GeneratedFile { path: path.to_string(), contents: board.pretty() }).collect()
}

// ---------------------------------------------------------------------------------------------
// The dashboards

fn executive(model: &Model, facts: &[SloFacts]) -> J {
    let mut b = Board::default();
    b.row("Events");
    // Contexts with no accepted event at all show 0 rather than nothing.
    let sent = format!("sum by (context) (rate(causeway_events_ingested_total{{outcome!=\"duplicate\"}}[{RATE}]))");
    let success = format!("(sum by (context) (rate(causeway_events_ingested_total{{outcome=\"accepted\"}}[{RATE}])) or 0 * {sent})\n/\n{sent}");
    b.add(
        12,
        8,
        Panel::timeseries(
            "Event success rate by context",
            "Share of each context's events accepted with their schema kept, over all it sent (refused ones included, redeliveries left out).",
            "percentunit",
        )
        .query(success, "{{context}}")
        .limits(None, Some(1.0)),
    );
    b.add(
        12,
        8,
        Panel::bars("Top failing event types", "Events refused or failing their schema over the time range, by type: the ten most.", "short").query(
            "topk(10, sum by (event_type) (increase(causeway_events_ingested_total{outcome=~\"rejected|schema_error\"}[$__range])))".into(),
            "{{event_type}}",
        ),
    );
    if !facts.is_empty() {
        b.row("Service level objectives");
    }
    for f in facts {
        let slo = promql_str(f.name);
        let about = format!("SLO {} ({}): {}", f.name, f.objective(), f.measure);
        b.add(
            4,
            7,
            Panel::stat(&format!("{}: error budget left", f.name), &about, "percentunit")
                .query(format!("causeway_slo_error_budget_remaining_ratio{{slo={slo}}}"), "")
                .thresholds("red", &[(0.0, "orange"), (0.25, "green")], false),
        );
        b.add(
            10,
            7,
            Panel::timeseries(&format!("{}: SLI and objective", f.name), &about, "percentunit")
                .query(
                    format!(
                        "sum(rate(causeway_slo_events_total{{slo={slo},outcome=\"good\"}}[{RATE}]))\n/\nsum(rate(causeway_slo_events_total{{slo={slo}}}[{RATE}]))"
                    ),
                    "SLI",
                )
                .query(format!("causeway_slo_objective_ratio{{slo={slo}}}"), "objective"),
        );
        b.add(
            10,
            7,
            Panel::timeseries(
                &format!("{}: burn rate", f.name),
                &format!(
                    "How fast SLO {} spends its error budget, by event time, per window: 1 spends it exactly over {}; the alerts page above 14.4 (1h and 5m) or 6 (6h and 30m), and open a ticket above 3 (1d and 2h) or 1 (3d and 6h).",
                    f.name,
                    duration(f.slo.window_ms)
                ),
                "short",
            )
            .query(format!("causeway_slo_burn_rate{{slo={slo}}}"), "{{window}}")
            .thresholds("green", &[(1.0, "yellow"), (6.0, "orange"), (14.4, "red")], true),
        );
    }
    if !model.journeys.is_empty() {
        b.row("Journeys");
    }
    for (name, journey) in &model.journeys {
        let outcomes: Vec<&str> = journey.outcomes.keys().map(String::as_str).collect();
        b.add(
            12,
            7,
            Panel::timeseries(
                &format!("{name}: journeys completed per minute"),
                &format!("Instances of journey {name} that reached an outcome ({}), per minute.", outcomes.join(", ")),
                "short",
            )
            .query(format!("sum(rate(causeway_journey_completion_seconds_count{{journey={}}}[{RATE}])) * 60", promql_str(name)), "completed"),
        );
    }
    dashboard(
        model,
        "executive",
        "Executive",
        "How the estate serves its business: events accepted per context, each SLO's error budget and burn, the event types that fail most, journeys completed.",
        "now-24h",
        b,
    )
}

fn on_call(model: &Model) -> J {
    let mut b = Board::default();
    b.row("Alerts");
    b.add(
        4,
        5,
        Panel::stat("SLO pages firing", "SLOs whose budget burns fast enough to page (causeway's own judgement, by event time).", "short")
            .query("sum(causeway_slo_alert{severity=\"page\"}) or vector(0)".into(), "")
            .thresholds("green", &[(1.0, "red")], false),
    );
    b.add(
        4,
        5,
        Panel::stat("SLO tickets firing", "SLOs whose budget burns fast enough for a ticket (causeway's own judgement, by event time).", "short")
            .query("sum(causeway_slo_alert{severity=\"ticket\"}) or vector(0)".into(), "")
            .thresholds("green", &[(1.0, "orange")], false),
    );
    b.add(
        16,
        5,
        Panel::table(
            "SLO alerts firing",
            "Each SLO alert firing now, by severity. The rules of `causeway gen prometheus-rules` judge the same table by scrape time and carry the runbook links.",
        )
        .query("causeway_slo_alert == 1".into(), ""),
    );

    b.row("Consumers");
    b.add(
        12,
        8,
        Panel::timeseries(
            "Consumer lag per group (age of the oldest unconsumed message)",
            &format!("Past {} for 10m a group gets a ticket.", duration(CONSUMER_LAG_SECONDS * 1000)),
            "s",
        )
        .query("max by (group) (causeway_consumer_group_lag_seconds)".into(), "{{group}}")
        .thresholds("green", &[(CONSUMER_LAG_SECONDS as f64, "red")], true),
    );
    b.add(
        12,
        8,
        Panel::timeseries("Consumer lag per group (messages)", "Messages not consumed yet, over the group's partitions.", "short")
            .query("max by (group) (causeway_consumer_group_lag_messages)".into(), "{{group}}"),
    );
    b.add(
        24,
        4,
        Panel::stat(
            "Consumer group status (Burrow's rules)",
            "ERR is a partition that stopped committing, stalls while messages arrive, or went back; five minutes of it pages.",
            "none",
        )
        .query("max by (group) (causeway_consumer_group_status)".into(), "{{group}}")
        .mappings(&[(0, "NOTFOUND", "blue"), (1, "OK", "green"), (2, "WARN", "orange"), (3, "ERR", "red")]),
    );

    if !model.journeys.is_empty() {
        b.row("Journeys");
    }
    for (name, journey) in &model.journeys {
        let j = promql_str(name);
        let stall = journey.stall_after_ms.map(|s| format!(" (no new milestone for {})", duration(s))).unwrap_or_default();
        b.add(
            4,
            5,
            Panel::stat(&format!("{name}: stalled"), &format!("Instances of journey {name} stalled now{stall}."), "short")
                .query(format!("sum(causeway_journeys{{journey={j},state=\"stalled\"}}) or vector(0)"), "")
                .thresholds("green", &[(1.0, "red")], false),
        );
        b.add(
            4,
            5,
            Panel::stat(&format!("{name}: in flight"), &format!("Instances of journey {name} started and not completed yet."), "short")
                .query(format!("sum(causeway_journeys{{journey={j},state=\"in_flight\"}}) or vector(0)"), "")
                .thresholds("blue", &[], false),
        );
    }
    if !model.journeys.is_empty() {
        b.add(
            16,
            5,
            Panel::timeseries("Stalled journeys", "Stalled instances, by journey.", "short")
                .query("sum by (journey) (causeway_journeys{state=\"stalled\"})".into(), "{{journey}}"),
        );
    }

    b.row("Dead letters");
    b.add(
        9,
        8,
        Panel::timeseries("Pending dead letters by error type", "Dead letters waiting for a replay or a decision.", "short")
            .query("sum by (error_type) (causeway_dlq_pending)".into(), "{{error_type}}"),
    );
    b.add(
        9,
        8,
        Panel::timeseries("Pending dead letters by source topic", "Dead letters waiting, by the topic the failed event came from.", "short")
            .query("sum by (source_topic) (causeway_dlq_pending_by_topic)".into(), "{{source_topic}}"),
    );
    b.add(
        3,
        8,
        Panel::stat("Oldest pending dead letter", &format!("Past {} it makes a ticket.", duration(DLQ_OLDEST_PENDING_SECONDS * 1000)), "s")
            .query("max(causeway_dlq_oldest_pending_age_seconds)".into(), "")
            .thresholds("green", &[(DLQ_OLDEST_PENDING_SECONDS as f64 / 4.0, "orange"), (DLQ_OLDEST_PENDING_SECONDS as f64, "red")], false),
    );
    b.add(
        3,
        8,
        Panel::stat("Dead letters by status", "Every dead letter stored, by status.", "short")
            .query("sum by (status) (causeway_dlq_records)".into(), "{{status}}")
            .thresholds("text", &[], false),
    );

    b.row("Findings");
    b.add(
        12,
        8,
        Panel::bars(
            "Open findings by kind",
            "Findings not resolved yet; each kind has a runbook, findings/<kind>.md of `causeway gen runbooks`.",
            "short",
        )
        .query("sort_desc(sum by (kind) (causeway_findings_open))".into(), "{{kind}}"),
    );
    b.add(
        12,
        8,
        Panel::timeseries("Open findings over time", "Findings not resolved yet, by kind.", "short")
            .query("sum by (kind) (causeway_findings_open)".into(), "{{kind}}"),
    );
    dashboard(
        model,
        "on-call",
        "On-call",
        "What needs a person now: alerts firing, consumers behind or failing, stalled journeys, dead letters waiting, open findings.",
        "now-3h",
        b,
    )
}

fn debug(model: &Model) -> J {
    let mut b = Board::default();
    b.row("Ingest");
    b.add(
        12,
        8,
        Panel::timeseries(
            "Events ingested by outcome (per second)",
            "Accepted, redelivered (duplicate), refused, or accepted with a schema error.",
            "short",
        )
        .query(format!("sum by (outcome) (rate(causeway_events_ingested_total[{RATE}]))"), "{{outcome}}"),
    );
    b.add(
        12,
        8,
        Panel::timeseries("Ingest duration, POST /v1/events", "Quantiles of the time to answer a request to ingest, storage included.", "s")
            .quantiles("causeway_ingest_duration_seconds_bucket"),
    );
    b.add(
        12,
        8,
        Panel::timeseries("Events ingested by event type (per second)", "Every outcome, by the event's type.", "short")
            .query(format!("sum by (event_type) (rate(causeway_events_ingested_total[{RATE}]))"), "{{event_type}}"),
    );
    b.add(
        12,
        8,
        Panel::timeseries(
            "Ingest requests and refused bodies (per second)",
            "Requests to POST /v1/events, and bodies refused as a whole (malformed, too large, too deep).",
            "short",
        )
        .query(format!("sum(rate(causeway_ingest_requests_total[{RATE}]))"), "requests")
        .query(format!("sum(rate(causeway_ingest_bodies_rejected_total[{RATE}]))"), "bodies refused"),
    );

    if !model.policies.is_empty() {
        b.row("Reactions");
    }
    for (name, policy) in &model.policies {
        let then = policy.then.join(" and ");
        b.add(
            12,
            8,
            Panel::timeseries(
                &format!("Reaction latency: {name}"),
                &format!("Time from {} to {then}; the policy expects it within {} (the red line).", policy.when, duration(policy.within_ms)),
                "s",
            )
            .quantiles(&format!("causeway_reaction_latency_seconds_bucket{{policy={}}}", promql_str(name)))
            .thresholds("green", &[(policy.within_ms as f64 / 1000.0, "red")], true),
        );
    }

    if !model.journeys.is_empty() {
        b.row("Journeys");
    }
    for (name, journey) in &model.journeys {
        let mut panel = Panel::timeseries(
            &format!("Completion time: {name}"),
            &match (journey.complete_within_ms, journey.objective_percent) {
                (Some(w), Some(o)) => {
                    format!(
                        "Time from the first event of a {name} instance to its outcome; {} should complete within {} (the red line).",
                        percent(o),
                        duration(w)
                    )
                }
                (Some(w), None) => {
                    format!("Time from the first event of a {name} instance to its outcome; it should be within {} (the red line).", duration(w))
                }
                _ => format!("Time from the first event of a {name} instance to its outcome."),
            },
            "s",
        )
        .quantiles(&format!("causeway_journey_completion_seconds_bucket{{journey={}}}", promql_str(name)));
        if let Some(w) = journey.complete_within_ms {
            panel = panel.thresholds("green", &[(w as f64 / 1000.0, "red")], true);
        }
        b.add(12, 8, panel);
    }

    b.row("Journey engine and clock");
    b.add(
        8,
        7,
        Panel::timeseries("Journey engine lag", "Log entries stored that the journey engine has not read yet.", "short")
            .query("max(causeway_journey_engine_lag)".into(), "entries behind"),
    );
    b.add(
        8,
        7,
        Panel::timeseries(
            "Journey clock behind the wall clock",
            "How far the time deadlines are judged up to trails the wall clock: the watermark waits for late sources.",
            "s",
        )
        .query("time() - max(causeway_journey_clock_seconds)".into(), "behind"),
    );
    b.add(
        8,
        7,
        Panel::timeseries("Most any event was late", "The clock at arrival less the event time, the most so far.", "s")
            .query("max(causeway_event_lateness_max_seconds)".into(), "lateness"),
    );
    b.add(
        12,
        7,
        Panel::timeseries(
            "Late events so far, by source",
            "Events stamped before the clock when they arrived (still applied by event time).",
            "short",
        )
        .query("sum by (source) (causeway_source_late_events)".into(), "{{source}}"),
    );
    b.add(12, 7, Panel::timeseries("Events stored", "Events in the store.", "short").query("max(causeway_store_events)".into(), "events"));
    dashboard(
        model,
        "debug",
        "Debug",
        "Where time goes: ingest by outcome and its duration, reaction latency per policy, completion time per journey, the journey engine's lag and clock, late events.",
        "now-1h",
        b,
    )
}

fn dashboard(model: &Model, slug: &str, title: &str, description: &str, from: &str, board: Board) -> J {
    obj([
        (
            "annotations",
            obj([(
                "list",
                J::Arr(vec![obj([
                    ("builtIn", J::from(1u32)),
                    ("datasource", obj([("type", J::from("grafana")), ("uid", J::from("-- Grafana --"))])),
                    ("enable", J::from(true)),
                    ("hide", J::from(true)),
                    ("iconColor", J::from("rgba(0, 211, 255, 1)")),
                    ("name", J::from("Annotations & Alerts")),
                    ("type", J::from("dashboard")),
                ])]),
            )]),
        ),
        (
            "description",
            J::from(format!("{description} Generated by `causeway gen grafana` from the model {}; regenerating overwrites it.", model.name)),
        ),
        ("editable", J::from(true)),
        ("fiscalYearStartMonth", J::from(0u32)),
        ("graphTooltip", J::from(1u32)),
        ("id", J::Null),
        (
            "links",
            J::Arr(vec![obj([
                ("asDropdown", J::from(false)),
                ("icon", J::from("external link")),
                ("includeVars", J::from(true)),
                ("keepTime", J::from(true)),
                ("tags", strs(["causeway", model.name.as_str()])),
                ("targetBlank", J::from(false)),
                ("title", J::from("causeway")),
                ("type", J::from("dashboards")),
            ])]),
        ),
        ("panels", J::Arr(board.panels)),
        ("refresh", J::from("1m")),
        ("schemaVersion", J::from(SCHEMA_VERSION)),
        ("tags", strs(["causeway", model.name.as_str()])),
        (
            "templating",
            obj([(
                "list",
                J::Arr(vec![obj([
                    ("current", obj::<&str>([])),
                    ("hide", J::from(0u32)),
                    ("includeAll", J::from(false)),
                    ("label", J::from("Data source")),
                    ("multi", J::from(false)),
                    ("name", J::from("datasource")),
                    ("options", J::Arr(Vec::new())),
                    ("query", J::from("prometheus")),
                    ("refresh", J::from(1u32)),
                    ("regex", J::from("")),
                    ("skipUrlSync", J::from(false)),
                    ("type", J::from("datasource")),
                ])]),
            )]),
        ),
        ("time", obj([("from", J::from(from)), ("to", J::from("now"))])),
        ("timepicker", obj::<&str>([])),
        ("timezone", J::from("browser")),
        ("title", J::from(format!("{} / {title}", model.name))),
        ("uid", J::from(format!("causeway-{:08x}-{slug}", fnv1a(&model.name) as u32))),
        ("version", J::from(1u32)),
        ("weekStart", J::from("")),
    ])
}

/// A stable hash of the model name, so each model's dashboards get their own uid (at most 40
/// characters, as Grafana wants) whatever the name holds.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

// ---------------------------------------------------------------------------------------------
// Layout and panels

/// Panels placed left to right on Grafana's 24-column grid, a new line when one does not fit.
#[derive(Default)]
struct Board {
    panels: Vec<J>,
    x: u32,
    y: u32,
    line_height: u32,
}

impl Board {
    fn next_id(&self) -> u32 {
        self.panels.len() as u32 + 1
    }

    fn new_line(&mut self) {
        if self.x > 0 {
            self.y += self.line_height;
            self.x = 0;
            self.line_height = 0;
        }
    }

    fn row(&mut self, title: &str) {
        self.new_line();
        let row = obj([
            ("collapsed", J::from(false)),
            ("gridPos", grid_pos(0, self.y, GRID_WIDTH, 1)),
            ("id", J::from(self.next_id())),
            ("panels", J::Arr(Vec::new())),
            ("title", J::from(title)),
            ("type", J::from("row")),
        ]);
        self.panels.push(row);
        self.y += 1;
    }

    fn add(&mut self, w: u32, h: u32, panel: Panel) {
        if self.x + w > GRID_WIDTH {
            self.new_line();
        }
        let json = panel.to_json(self.next_id(), grid_pos(self.x, self.y, w, h));
        self.panels.push(json);
        self.x += w;
        self.line_height = self.line_height.max(h);
    }
}

fn grid_pos(x: u32, y: u32, w: u32, h: u32) -> J {
    obj([("h", J::from(h)), ("w", J::from(w)), ("x", J::from(x)), ("y", J::from(y))])
}

fn datasource() -> J {
    obj([("type", J::from("prometheus")), ("uid", J::from(DATASOURCE))])
}

struct Panel {
    /// Grafana's panel type: `timeseries`, `stat`, `bargauge`, `table`.
    kind: &'static str,
    title: String,
    description: String,
    unit: &'static str,
    /// (PromQL, legend).
    queries: Vec<(String, String)>,
    base_color: &'static str,
    /// Threshold steps above the base colour: (from, colour).
    steps: Vec<(f64, &'static str)>,
    /// Whether a time series draws its thresholds as lines (the model's windows, alert thresholds).
    threshold_lines: bool,
    /// (value, text, colour).
    mappings: Vec<(u32, &'static str, &'static str)>,
    min: Option<f64>,
    max: Option<f64>,
}

impl Panel {
    fn new(kind: &'static str, title: &str, description: &str, unit: &'static str) -> Panel {
        Panel {
            kind,
            title: title.to_string(),
            description: description.to_string(),
            unit,
            queries: Vec::new(),
            base_color: "green",
            steps: Vec::new(),
            threshold_lines: false,
            mappings: Vec::new(),
            min: None,
            max: None,
        }
    }

    fn timeseries(title: &str, description: &str, unit: &'static str) -> Panel {
        // Latencies, lags and counts start at zero.
        Panel { min: Some(0.0), ..Panel::new("timeseries", title, description, unit) }
    }

    fn stat(title: &str, description: &str, unit: &'static str) -> Panel {
        Panel::new("stat", title, description, unit)
    }

    fn bars(title: &str, description: &str, unit: &'static str) -> Panel {
        Panel { min: Some(0.0), ..Panel::new("bargauge", title, description, unit) }
    }

    fn table(title: &str, description: &str) -> Panel {
        Panel::new("table", title, description, "none")
    }

    fn query(mut self, expr: String, legend: &str) -> Panel {
        self.queries.push((expr, legend.to_string()));
        self
    }

    /// p50, p90 and p99 of a histogram's buckets (`…_bucket{…}`).
    fn quantiles(mut self, buckets: &str) -> Panel {
        for (q, legend) in QUANTILES {
            self.queries.push((format!("histogram_quantile({q}, sum by (le) (rate({buckets}[{RATE}])))"), legend.to_string()));
        }
        self
    }

    fn thresholds(mut self, base_color: &'static str, steps: &[(f64, &'static str)], lines: bool) -> Panel {
        self.base_color = base_color;
        self.steps = steps.to_vec();
        self.threshold_lines = lines;
        self
    }

    fn mappings(mut self, mappings: &[(u32, &'static str, &'static str)]) -> Panel {
        self.mappings = mappings.to_vec();
        self
    }

    fn limits(mut self, min: Option<f64>, max: Option<f64>) -> Panel {
        self.min = min;
        self.max = max;
        self
    }

    /// Current values (stat, bar gauge, table) rather than a range over time.
    fn instant(&self) -> bool {
        self.kind != "timeseries"
    }

    fn to_json(&self, id: u32, grid: J) -> J {
        let mut steps = vec![obj([("color", J::from(self.base_color)), ("value", J::Null)])];
        steps.extend(self.steps.iter().map(|(from, color)| obj([("color", J::from(*color)), ("value", J::from(*from))])));
        let color_mode = if self.kind == "timeseries" { "palette-classic" } else { "thresholds" };
        let mut defaults = obj([("color", obj([("mode", J::from(color_mode))]))]);
        if self.kind == "timeseries" {
            defaults.push(
                "custom",
                obj([
                    ("drawStyle", J::from("line")),
                    ("fillOpacity", J::from(10u32)),
                    ("lineWidth", J::from(1u32)),
                    ("showPoints", J::from("never")),
                    ("spanNulls", J::from(false)),
                    ("thresholdsStyle", obj([("mode", J::from(if self.threshold_lines { "line" } else { "off" }))])),
                ]),
            );
        }
        let mappings = if self.mappings.is_empty() {
            Vec::new()
        } else {
            let options = self
                .mappings
                .iter()
                .enumerate()
                .map(|(index, (value, text, color))| {
                    (value.to_string(), obj([("color", J::from(*color)), ("index", J::from(index as u32)), ("text", J::from(*text))]))
                })
                .collect::<Vec<_>>();
            vec![obj([("options", J::Obj(options)), ("type", J::from("value"))])]
        };
        defaults.push("mappings", J::Arr(mappings));
        if let Some(max) = self.max {
            defaults.push("max", J::from(max));
        }
        if let Some(min) = self.min {
            defaults.push("min", J::from(min));
        }
        defaults.push("thresholds", obj([("mode", J::from("absolute")), ("steps", J::Arr(steps))]));
        defaults.push("unit", J::from(self.unit));

        let targets: Vec<J> = self
            .queries
            .iter()
            .enumerate()
            .map(|(n, (expr, legend))| {
                obj([
                    ("datasource", datasource()),
                    ("editorMode", J::from("code")),
                    ("expr", J::from(expr.as_str())),
                    ("format", J::from(if self.kind == "table" { "table" } else { "time_series" })),
                    ("instant", J::from(self.instant())),
                    ("legendFormat", J::from(if legend.is_empty() { "__auto" } else { legend.as_str() })),
                    ("range", J::from(!self.instant())),
                    ("refId", J::from(ref_id(n))),
                ])
            })
            .collect();

        let mut panel = obj([
            ("datasource", datasource()),
            ("description", J::from(self.description.as_str())),
            ("fieldConfig", obj([("defaults", defaults), ("overrides", J::Arr(Vec::new()))])),
            ("gridPos", grid),
            ("id", J::from(id)),
            ("options", self.options()),
            ("targets", J::Arr(targets)),
            ("title", J::from(self.title.as_str())),
        ]);
        if self.kind == "table" {
            // The value is 1 for every row (firing); the labels are what matters.
            panel.push(
                "transformations",
                J::Arr(vec![obj([
                    ("id", J::from("organize")),
                    ("options", obj([("excludeByName", obj([("Time", J::from(true)), ("Value", J::from(true)), ("__name__", J::from(true))]))])),
                ])]),
            );
        }
        panel.push("type", J::from(self.kind));
        panel
    }

    fn options(&self) -> J {
        let last_value = || obj([("calcs", strs(["lastNotNull"])), ("fields", J::from("")), ("values", J::from(false))]);
        match self.kind {
            "timeseries" => obj([
                (
                    "legend",
                    obj([
                        ("calcs", J::Arr(Vec::new())),
                        ("displayMode", J::from("list")),
                        ("placement", J::from("bottom")),
                        ("showLegend", J::from(true)),
                    ]),
                ),
                ("tooltip", obj([("mode", J::from("multi")), ("sort", J::from("desc"))])),
            ]),
            "stat" => obj([
                ("colorMode", J::from("value")),
                ("graphMode", J::from("none")),
                ("justifyMode", J::from("auto")),
                ("orientation", J::from("auto")),
                ("reduceOptions", last_value()),
                ("textMode", J::from(if self.queries.iter().any(|(_, legend)| legend.contains("{{")) { "value_and_name" } else { "value" })),
            ]),
            "bargauge" => obj([
                ("displayMode", J::from("gradient")),
                ("orientation", J::from("horizontal")),
                ("reduceOptions", last_value()),
                ("showUnfilled", J::from(true)),
                ("valueMode", J::from("color")),
            ]),
            _ => obj([("cellHeight", J::from("sm")), ("showHeader", J::from(true))]),
        }
    }
}

/// `A`, `B`, … as Grafana names a panel's queries.
fn ref_id(n: usize) -> String {
    char::from(b'A' + (n % 26) as u8).to_string()
}
