//! The Prometheus rules and the Grafana dashboards, judged by Prometheus's own tool: `promtool
//! check rules` reads the rule file (and every PromQL expression of the dashboards, wrapped as
//! rules), and `promtool test rules` evaluates the rules over synthetic `causeway_slo_events_total`
//! series to show the burn-rate alerts fire as the SRE workbook's table says: a fast burn pages, a
//! slow one opens a ticket and does not page, a burn that has stopped does not page.
//!
//! promtool is Debian's `prometheus` package, which scripts/test installs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use causeway_gen::{DASHBOARDS, GeneratedFile, Options, RULES_FILE};
use causeway_model::Model;
use serde_json::Value;

/// Every metric causeway's server exposes: the contract the rules and dashboards are written
/// against. Nothing generated may read another.
const METRICS: &[&str] = &[
    "causeway_events_ingested_total",
    "causeway_ingest_requests_total",
    "causeway_ingest_bodies_rejected_total",
    "causeway_findings_open",
    "causeway_journeys",
    "causeway_journey_engine_lag",
    "causeway_journey_clock_seconds",
    "causeway_store_events",
    "causeway_dlq_records",
    "causeway_dlq_pending",
    "causeway_dlq_oldest_pending_age_seconds",
    "causeway_consumer_group_status",
    "causeway_consumer_group_lag_messages",
    "causeway_consumer_group_lag_seconds",
    "causeway_source_late_events",
    "causeway_event_lateness_max_seconds",
    "causeway_slo_events_total",
    "causeway_slo_objective_ratio",
    "causeway_slo_error_budget_remaining_ratio",
    "causeway_slo_burn_rate",
    "causeway_slo_alert",
    "causeway_dlq_pending_by_topic",
];

/// The histograms among them, read through their `_bucket`, `_count` and `_sum` series.
const HISTOGRAMS: &[&str] = &["causeway_ingest_duration_seconds", "causeway_reaction_latency_seconds", "causeway_journey_completion_seconds"];

fn allowed_metric(name: &str) -> bool {
    METRICS.contains(&name) || HISTOGRAMS.iter().any(|h| ["_bucket", "_count", "_sum"].iter().any(|suffix| name.strip_prefix(h) == Some(suffix)))
}

fn example() -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment/model.yaml");
    causeway_model::load(&path).into_result().unwrap_or_else(|d| panic!("the example model has errors: {d:?}"))
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = match Command::new("promtool").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) => panic!("promtool did not start ({e}): install Debian's prometheus package, as scripts/test does"),
    };
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Writes the rule file into a fresh directory.
fn rules_dir(model: &Model, options: &Options) -> (tempfile::TempDir, String) {
    let files = causeway_gen::prometheus_rules(model, options);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, RULES_FILE);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(RULES_FILE), &files[0].contents).unwrap();
    (dir, files[0].contents.clone())
}

fn check_rules(dir: &Path, file: &str) -> String {
    let (ok, said) = promtool(&["check", "rules", file], dir);
    assert!(ok && said.contains("SUCCESS"), "promtool check rules {file}:\n{said}\n{}", fs::read_to_string(dir.join(file)).unwrap_or_default());
    said
}

#[test]
fn the_rules_pass_promtool_check() {
    let model = example();
    let (dir, rules) = rules_dir(&model, &Options::default());
    let said = check_rules(dir.path(), RULES_FILE);
    // Per SLO: seven error ratios, the objective, the budget, a page and a ticket alert; then three
    // alerts on the estate.
    let expected = model.slos.len() * 11 + 3;
    assert!(said.contains(&format!("SUCCESS: {expected} rules found")), "{said}");
    for window in causeway_gen::WINDOWS {
        assert_eq!(rules.matches(&format!("- record: slo:sli_error:ratio_rate{window}\n")).count(), model.slos.len(), "{window}");
    }
    assert!(rules.contains("runbook_url: journeys/order.md"));
    assert!(rules.contains("runbook_url: policies/ship-after-reservation.md"));

    let published = Options { runbook_base: Some("https://git.example/ops/runbooks".into()) };
    let (dir, rules) = rules_dir(&model, &published);
    check_rules(dir.path(), RULES_FILE);
    assert!(rules.contains("runbook_url: https://git.example/ops/runbooks/journeys/order.md"), "{rules}");
}

#[test]
fn the_rules_read_only_causeway_metrics_and_their_own_recordings() {
    let (_, rules) = rules_dir(&example(), &Options::default());
    let recorded: BTreeSet<String> =
        rules.lines().filter_map(|l| l.trim_start().strip_prefix("- record: ")).map(|name| name.trim().to_string()).collect();
    let exprs = rule_expressions(&rules);
    assert!(exprs.len() > 30, "{exprs:?}");
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(allowed_metric(&name) || recorded.contains(&name), "{name} in {expr} is not a metric causeway exposes");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The burn-rate alerts, evaluated

/// The alert of the example's `order-completion` SLO (journey `order`, 99% over 7d: a budget of 1%).
const ALERT: &str = "OrderCompletionBudgetBurn";

/// What promtool must see for one firing alert of `order-completion`: its labels, and its
/// annotations as the rule file writes them with `$value` rendered as `humanizePercentage` does.
fn expected_alert(rules: &str, severity: &str, value: &str) -> String {
    let annotations = annotations_of(rules, ALERT, severity);
    assert!(annotations["summary"].contains("order journeys complete late"), "the summary speaks of journeys: {annotations:?}");
    let mut yaml = format!(
        "          - exp_labels: {{severity: {severity}, slo: order-completion, sli: journey_completion, journey: order, owner: team-checkout}}\n            exp_annotations:\n"
    );
    for (key, text) in &annotations {
        let rendered = render(text, value);
        yaml.push_str(&format!("              {key}: {}\n", serde_json::to_string(&rendered).unwrap()));
    }
    yaml
}

/// The two templates the SLO annotations use.
fn render(text: &str, value: &str) -> String {
    text.replace("{{ $value | humanizePercentage }}", value).replace("{{ \"{{\" }}", "{{")
}

/// The annotations of the alerting rule `alert` with `severity: …`, read from the generated file.
fn annotations_of(rules: &str, alert: &str, severity: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = rules.lines().collect();
    let blocks = lines.iter().enumerate().filter(|(_, l)| l.trim_start().strip_prefix("- alert: ") == Some(alert)).map(|(i, _)| {
        let end = lines[i + 1..].iter().position(|l| l.trim_start().starts_with("- ")).map_or(lines.len(), |n| i + 1 + n);
        &lines[i + 1..end]
    });
    let block = blocks
        .into_iter()
        .find(|block| block.iter().any(|l| l.trim() == format!("severity: {severity}")))
        .unwrap_or_else(|| panic!("no {alert} with severity {severity}"));
    let start = block.iter().position(|l| l.trim() == "annotations:").expect("annotations");
    block[start + 1..]
        .iter()
        .map(|l| {
            let (key, value) = l.trim().split_once(": ").unwrap();
            (key.to_string(), unquote(value))
        })
        .collect()
}

fn unquote(scalar: &str) -> String {
    if let Some(inner) = scalar.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else if scalar.starts_with('"') {
        // The generator's double-quoted escapes are JSON's.
        serde_json::from_str(scalar).unwrap_or_else(|e| panic!("{scalar}: {e}"))
    } else {
        scalar.to_string()
    }
}

fn series(outcome: &str, values: &str) -> String {
    format!("      - series: 'causeway_slo_events_total{{slo=\"order-completion\",outcome=\"{outcome}\"}}'\n        values: '{values}'\n")
}

#[test]
fn burn_rate_alerts_page_on_a_fast_burn_ticket_on_a_slow_one_and_stop_with_the_burn() {
    let (dir, rules) = rules_dir(&example(), &Options::default());
    let labels = r#"journey="order", sli="journey_completion", slo="order-completion""#;
    let mut t = format!("rule_files: [{RULES_FILE}]\nevaluation_interval: 1m\ntests:\n");

    // Half the journeys late for an hour on a 99% objective: a burn rate of 50, over 14.4 in the
    // hour and in its last five minutes. The ticket fires too (Alertmanager inhibits it under the
    // page); the other SLOs stay quiet.
    t.push_str("  - name: fast burn pages\n    interval: 1m\n    input_series:\n");
    t.push_str(&series("good", "0+50x70"));
    t.push_str(&series("bad", "0+50x70"));
    t.push_str(&format!("    alert_rule_test:\n      - eval_time: 60m\n        alertname: {ALERT}\n        exp_alerts:\n"));
    t.push_str(&expected_alert(&rules, "page", "50%"));
    t.push_str(&expected_alert(&rules, "ticket", "50%"));
    t.push_str("      - eval_time: 60m\n        alertname: ShippingSpeedBudgetBurn\n        exp_alerts: []\n");

    // 4% late for a day and more: a burn rate of 4, over 3 (1d, 2h) and 1 (3d, 6h) but under 6
    // and 14.4: a ticket, no page.
    t.push_str("  - name: slow burn opens a ticket and does not page\n    interval: 1m\n    input_series:\n");
    t.push_str(&series("good", "0+96x1560"));
    t.push_str(&series("bad", "0+4x1560"));
    t.push_str(&format!("    alert_rule_test:\n      - eval_time: 25h\n        alertname: {ALERT}\n        exp_alerts:\n"));
    t.push_str(&expected_alert(&rules, "ticket", "4%"));

    // Half late for 55 minutes, then none: 35 minutes later the hour still burns at 29% (over
    // 14.4 × 1%) and six hours at 38%, but the last 5 and 30 minutes are clean: no page. The day
    // burns (2750 bad of 7250) and the ticket stays.
    t.push_str("  - name: a long window hot and a short window cool does not page\n    interval: 1m\n    input_series:\n");
    t.push_str(&series("good", "0+50x120"));
    t.push_str(&series("bad", "0+50x55 2750+0x65"));
    t.push_str(&format!("    alert_rule_test:\n      - eval_time: 90m\n        alertname: {ALERT}\n        exp_alerts:\n"));
    t.push_str(&expected_alert(&rules, "ticket", "37.93%"));
    t.push_str("    promql_expr_test:\n");
    for (expr, value) in [
        ("slo:sli_error:ratio_rate1h{slo=\"order-completion\"} > bool (14.4 * 0.01)", "1"),
        ("slo:sli_error:ratio_rate6h{slo=\"order-completion\"} > bool (6 * 0.01)", "1"),
        ("slo:sli_error:ratio_rate5m{slo=\"order-completion\"} > bool 0", "0"),
        ("slo:sli_error:ratio_rate30m{slo=\"order-completion\"} > bool 0", "0"),
    ] {
        t.push_str(&format!(
            "      - expr: '{expr}'\n        eval_time: 90m\n        exp_samples:\n          - labels: '{{{labels}}}'\n            value: {value}\n"
        ));
    }

    // Nothing late: nothing fires.
    t.push_str("  - name: no burn, no alert\n    interval: 1m\n    input_series:\n");
    t.push_str(&series("good", "0+50x130"));
    t.push_str(&series("bad", "0+0x130"));
    t.push_str(&format!("    alert_rule_test:\n      - eval_time: 2h\n        alertname: {ALERT}\n        exp_alerts: []\n"));

    fs::write(dir.path().join("burn.test.yml"), &t).unwrap();
    let (ok, said) = promtool(&["test", "rules", "burn.test.yml"], dir.path());
    assert!(ok && said.contains("SUCCESS"), "promtool test rules:\n{said}\n\n{t}");
}

#[test]
fn the_estate_alerts_wait_as_long_as_they_say() {
    let (dir, _) = rules_dir(&example(), &Options::default());
    // A group 10 minutes behind from the start; another in ERR for 3 minutes, then OK; a dead
    // letter pending from the start.
    let mut t = format!(
        "rule_files: [{RULES_FILE}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n\
         \x20     - series: 'causeway_consumer_group_lag_seconds{{group=\"inventory\"}}'\n        values: '600+0x30'\n\
         \x20     - series: 'causeway_consumer_group_status{{group=\"shipping\"}}'\n        values: '3+0x3 1+0x27'\n\
         \x20     - series: 'causeway_dlq_oldest_pending_age_seconds'\n        values: '0+60x120'\n\
         \x20   promql_expr_test:\n"
    );
    for (at, alert, labels, state) in [
        // Lag past 5m pends for its 10m, then fires.
        ("5m", "CausewayConsumerGroupLagging", r#"group="inventory", severity="ticket""#, Some("pending")),
        ("15m", "CausewayConsumerGroupLagging", r#"group="inventory", severity="ticket""#, Some("firing")),
        // Three minutes of ERR do not page; the group is OK again.
        ("2m", "CausewayConsumerGroupFailing", r#"group="shipping", severity="page""#, Some("pending")),
        ("10m", "CausewayConsumerGroupFailing", "", None),
        // A dead letter pending for an hour is a ticket at once.
        ("59m", "CausewayDeadLettersWaiting", "", None),
        ("62m", "CausewayDeadLettersWaiting", r#"severity="ticket""#, Some("firing")),
    ] {
        t.push_str(&format!("      - expr: 'ALERTS{{alertname=\"{alert}\"}}'\n        eval_time: {at}\n"));
        match state {
            Some(state) => t.push_str(&format!(
                "        exp_samples:\n          - labels: 'ALERTS{{alertname=\"{alert}\", alertstate=\"{state}\", {labels}}}'\n            value: 1\n"
            )),
            None => t.push_str("        exp_samples: []\n"),
        }
    }
    fs::write(dir.path().join("estate.test.yml"), &t).unwrap();
    let (ok, said) = promtool(&["test", "rules", "estate.test.yml"], dir.path());
    assert!(ok && said.contains("SUCCESS"), "promtool test rules:\n{said}\n\n{t}");
}

// ---------------------------------------------------------------------------------------------
// Grafana

fn dashboards(model: &Model) -> Vec<(String, Value)> {
    let files: Vec<GeneratedFile> = causeway_gen::grafana(model);
    assert_eq!(files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), DASHBOARDS);
    files.iter().map(|f| (f.path.clone(), serde_json::from_str(&f.contents).unwrap_or_else(|e| panic!("{}: {e}", f.path)))).collect()
}

fn panels(dashboard: &Value) -> Vec<&Value> {
    dashboard["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row").collect()
}

fn exprs(panel: &Value) -> Vec<String> {
    panel["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()).collect()
}

/// Grafana's own variables, as Grafana would fill them.
fn as_grafana_sends(expr: &str) -> String {
    let filled = expr.replace("$__rate_interval", "5m").replace("$__range", "1d").replace("$__interval", "1m");
    assert!(!filled.contains('$'), "an unknown variable in {expr}");
    filled
}

/// Every expression of every dashboard, as recording rules promtool checks.
fn check_dashboard_queries(model: &Model) {
    let mut rules = String::from("groups:\n");
    let mut count = 0;
    for (path, dashboard) in dashboards(model) {
        rules.push_str(&format!("  - name: {}\n    rules:\n", serde_json::to_string(&path).unwrap()));
        for panel in panels(&dashboard) {
            for expr in exprs(panel) {
                count += 1;
                rules.push_str(&format!(
                    "      - record: grafana:query{count}\n        expr: {}\n",
                    serde_json::to_string(&as_grafana_sends(&expr)).unwrap()
                ));
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("dashboards.rules.yml"), &rules).unwrap();
    let said = check_rules(dir.path(), "dashboards.rules.yml");
    assert!(said.contains(&format!("SUCCESS: {count} rules found")), "{said}");
}

#[test]
fn every_dashboard_query_parses_and_reads_only_causeway_metrics() {
    let model = example();
    check_dashboard_queries(&model);
    let mut used = BTreeSet::new();
    for (path, dashboard) in dashboards(&model) {
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap();
            let exprs = exprs(panel);
            assert!(!exprs.is_empty(), "{path}: {title} has no query");
            for expr in exprs {
                let names = metric_names(&expr);
                assert!(!names.is_empty(), "{path}: {title}: {expr} reads no metric");
                for name in names {
                    assert!(allowed_metric(&name), "{path}: {title}: {name} is not a metric causeway exposes");
                    used.insert(HISTOGRAMS.iter().find(|h| name.starts_with(*h)).map_or(name.clone(), |h| h.to_string()));
                }
            }
        }
    }
    // And every metric has a place on some dashboard.
    let unused: Vec<&&str> = METRICS.iter().chain(HISTOGRAMS).filter(|m| !used.contains(**m)).collect();
    assert!(unused.is_empty(), "on no dashboard: {unused:?}");
}

fn titles(dashboard: &Value) -> Vec<&str> {
    dashboard["panels"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap()).collect()
}

fn panel<'a>(dashboard: &'a Value, title: &str) -> &'a Value {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title}: {:?}", titles(dashboard)))
}

/// The values of a panel's threshold steps past the base colour.
fn threshold_values(panel: &Value) -> Vec<f64> {
    panel["fieldConfig"]["defaults"]["thresholds"]["steps"].as_array().unwrap().iter().filter_map(|s| s["value"].as_f64()).collect()
}

#[test]
fn each_dashboard_has_its_panels_laid_out_on_the_grid() {
    let model = example();
    let boards = dashboards(&model);
    let mut uids = BTreeSet::new();
    for (path, d) in &boards {
        assert_eq!(d["schemaVersion"], 39, "{path}");
        let uid = d["uid"].as_str().unwrap();
        assert!(uid.len() <= 40 && uids.insert(uid.to_string()), "{path}: uid {uid}");
        let variables = d["templating"]["list"].as_array().unwrap();
        assert!(variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"), "{path}");
        let mut ids = BTreeSet::new();
        let mut cells = BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{path}: id {} twice", p["id"]);
            let g = &p["gridPos"];
            let (x, y, w, h) = (g["x"].as_u64().unwrap(), g["y"].as_u64().unwrap(), g["w"].as_u64().unwrap(), g["h"].as_u64().unwrap());
            assert!(x + w <= 24 && w > 0 && h > 0, "{path}: {} off the grid", p["title"]);
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                assert!(cells.insert(cell), "{path}: {} overlaps another panel at {cell:?}", p["title"]);
            }
            if p["type"] != "row" {
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{path}: {}", p["title"]);
                for t in p["targets"].as_array().unwrap() {
                    assert_eq!(t["datasource"]["uid"], "${datasource}", "{path}: {}", p["title"]);
                }
            }
        }
    }
    let [(_, executive), (_, on_call), (_, debug)] = &boards[..] else { panic!("three dashboards") };

    for title in ["Event success rate by context", "Top failing event types"] {
        panel(executive, title);
    }
    for slo in model.slos.keys() {
        for suffix in ["error budget left", "SLI and objective", "burn rate"] {
            panel(executive, &format!("{slo}: {suffix}"));
        }
    }
    assert_eq!(threshold_values(panel(executive, "order-completion: burn rate")), [1.0, 6.0, 14.4]);
    panel(executive, "order: journeys completed per minute");

    for title in [
        "SLO pages firing",
        "SLO tickets firing",
        "SLO alerts firing",
        "Consumer lag per group (age of the oldest unconsumed message)",
        "Consumer lag per group (messages)",
        "Consumer group status (Burrow's rules)",
        "order: stalled",
        "order: in flight",
        "Stalled journeys",
        "Pending dead letters by error type",
        "Pending dead letters by source topic",
        "Oldest pending dead letter",
        "Open findings by kind",
    ] {
        panel(on_call, title);
    }
    let status = panel(on_call, "Consumer group status (Burrow's rules)");
    assert_eq!(status["fieldConfig"]["defaults"]["mappings"][0]["options"]["3"]["text"], "ERR");
    assert_eq!(threshold_values(panel(on_call, "Consumer lag per group (age of the oldest unconsumed message)")), [300.0]);

    for title in
        ["Events ingested by outcome (per second)", "Ingest duration, POST /v1/events", "Journey engine lag", "Journey clock behind the wall clock"]
    {
        panel(debug, title);
    }
    // The model's windows are the red lines: every policy's `within`, the journey's `complete_within`.
    for (name, policy) in &model.policies {
        let p = panel(debug, &format!("Reaction latency: {name}"));
        assert_eq!(threshold_values(p), [policy.within_ms as f64 / 1000.0], "{name}");
        assert_eq!(p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"], "line");
        assert_eq!(exprs(p).len(), 3, "p50, p90, p99");
    }
    assert_eq!(threshold_values(panel(debug, "Completion time: order")), [300.0]);
}

// ---------------------------------------------------------------------------------------------
// Names that need quoting everywhere

const ODD_NAMES: &str = r#"
name: "odd \"names\" $model"
contexts:
  "ctx $1": {owner: "team \"a\"", services: [svc]}
events:
  "Thing{{Happened}}": {context: "ctx $1"}
  "Other'Event\\": {context: "ctx $1"}
policies:
  "react: now #1": {when: "Thing{{Happened}}", then: ["Other'Event\\"], within: 90s}
journeys:
  "jöurney\n2":
    key: subject
    milestones: ["Thing{{Happened}}", "Other'Event\\"]
    outcomes: {done: ["Other'Event\\"]}
    complete_within: 5m
    reconciliation_owner: "true"
slos:
  "slo \"one\" $x": {sli: journey_completion, journey: "jöurney\n2", objective: 99.5%, window: 30d}
  "true": {sli: reaction_latency, policy: "react: now #1", objective: 95%, window: 1d}
  "{{ .x }}": {sli: event_success, context: "ctx $1", objective: 99%, window: 7d}
  "😀": {sli: event_success, event_type: "Thing{{Happened}}", objective: 90%, window: 7d}
"#;

#[test]
fn names_with_quotes_dollars_braces_and_newlines_survive_yaml_promql_and_templates() {
    let model = causeway_model::load_str("odd.yaml", ODD_NAMES).into_result().unwrap_or_else(|d| panic!("{d:?}"));
    let (dir, _) = rules_dir(&model, &Options { runbook_base: Some("https://runbooks.example/{{x}}".into()) });
    check_rules(dir.path(), RULES_FILE);
    check_dashboard_queries(&model);

    // The escaped label values match the series: a fast burn of the oddly named SLO pages, with
    // its labels read back as the model writes them.
    let slo = "slo \"one\" $x";
    let quoted = serde_json::to_string(slo).unwrap();
    let t = format!(
        "rule_files: [{RULES_FILE}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n\
         \x20     - series: {}\n        values: '0+50x70'\n\
         \x20     - series: {}\n        values: '0+50x70'\n\
         \x20   promql_expr_test:\n\
         \x20     - expr: {}\n        eval_time: 60m\n        exp_samples:\n\
         \x20         - labels: {}\n            value: 1\n",
        serde_json::to_string(&format!("causeway_slo_events_total{{slo={quoted},outcome=\"good\"}}")).unwrap(),
        serde_json::to_string(&format!("causeway_slo_events_total{{slo={quoted},outcome=\"bad\"}}")).unwrap(),
        serde_json::to_string("ALERTS{alertname=\"SloOneXBudgetBurn\",severity=\"page\"}").unwrap(),
        serde_json::to_string(&format!(
            "ALERTS{{alertname=\"SloOneXBudgetBurn\",alertstate=\"firing\",journey={},owner=\"true\",severity=\"page\",sli=\"journey_completion\",slo={quoted}}}",
            serde_json::to_string("jöurney\n2").unwrap()
        ))
        .unwrap(),
    );
    fs::write(dir.path().join("odd.test.yml"), &t).unwrap();
    let (ok, said) = promtool(&["test", "rules", "odd.test.yml"], dir.path());
    assert!(ok && said.contains("SUCCESS"), "promtool test rules:\n{said}\n\n{t}");
}

// ---------------------------------------------------------------------------------------------
// PromQL, read just enough to name the metrics an expression selects

/// The expressions of a rule file as the generator writes it: `expr: |` blocks and one-line `expr:`s.
fn rule_expressions(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr: ") else { continue };
        if value == "|" {
            let indent = line.len() - line.trim_start().len() + 2;
            let block: Vec<&str> =
                lines[i + 1..].iter().take_while(|l| l.len() > indent && l[..indent].trim().is_empty()).map(|l| &l[indent..]).collect();
            out.push(block.join("\n"));
        } else {
            out.push(unquote(value));
        }
    }
    out
}

/// Words of PromQL that are not metric names: aggregations, operators, modifiers.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
    "atan2",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
];

/// The metric names an expression selects: identifiers outside strings, label matchers, ranges
/// and label lists that are neither keywords nor function calls.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    // Skips from an opening bracket to its closing one, over strings.
    let skip = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some(_) if c == '\\' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None if c == open => depth += 1,
                None if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                None => {}
            }
            i += 1;
        }
        panic!("unbalanced {open} in {expr}");
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip(i, '{', '}');
        } else if c == '[' {
            i = skip(i, '[', ']');
        } else if c == '"' || c == '\'' || c == '`' {
            let mut j = i + 1;
            while chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&word.as_str()) && next == Some('(') {
                let open = i + chars[i..].iter().position(|c| *c == '(').unwrap();
                i = skip(open, '(', ')');
            } else if !KEYWORDS.contains(&word.as_str()) && next != Some('(') {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_selectors_only() {
    assert_eq!(
        metric_names(r#"sum by (le, job) (rate(a_bucket{x="y{",z=~"b|c"}[$__rate_interval])) / on (le) group_left b or vector(0) > bool 1e3"#),
        ["a_bucket", "b"]
    );
    assert_eq!(metric_names("time() - max(causeway_journey_clock_seconds)"), ["causeway_journey_clock_seconds"]);
    assert_eq!(metric_names("slo:sli_error:ratio_rate5m{slo=\"x\"} > (14.4 * 0.01)"), ["slo:sli_error:ratio_rate5m"]);
    assert!(allowed_metric("causeway_reaction_latency_seconds_bucket"));
    assert!(!allowed_metric("causeway_reaction_latency_seconds_total"));
    assert!(!allowed_metric("up"));
}
