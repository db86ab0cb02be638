//! `causeway gen json-schema|asyncapi|runbooks|prometheus-rules|grafana --model FILE [--out DIR]`:
//! artefacts generated from the event-storming model (the generators live in `causeway-gen`; this
//! only reads and writes).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use causeway_gen::{Kind, Options};
use causeway_model::Severity;
use clap::{Args, Subcommand};

use crate::count;

#[derive(Debug, Subcommand)]
pub enum GenCommand {
    /// JSON Schemas (2020-12) per event version: the payload, and the whole CloudEvent producers send.
    JsonSchema(GenArgs),
    /// One AsyncAPI 3.0 document: a channel per topic, a message per event, send/receive operations.
    Asyncapi(GenArgs),
    /// Markdown runbook skeletons per journey, policy and finding kind, with an index.
    Runbooks(GenArgs),
    /// Prometheus rules: SLO error ratios and multi-window burn-rate alerts, consumer lag and dead-letter alerts.
    PrometheusRules(RulesArgs),
    /// Grafana dashboards (executive, on-call, debug) on causeway's metrics, with panels per SLO, journey and policy.
    Grafana(GenArgs),
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// The model file (YAML).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Directory to write into, created if missing; existing files of the same name are replaced
    /// [default: ./generated/KIND]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(flatten)]
    gen_args: GenArgs,
    /// Where the runbooks of `causeway gen runbooks` are published (a URL or a path), for the
    /// alerts' runbook_url [default: links relative to the runbooks' directory]
    #[arg(long, value_name = "URL")]
    runbook_base: Option<String>,
}

pub fn run(command: GenCommand) -> anyhow::Result<ExitCode> {
    let (kind, args, options) = match command {
        GenCommand::JsonSchema(args) => (Kind::JsonSchema, args, Options::default()),
        GenCommand::Asyncapi(args) => (Kind::AsyncApi, args, Options::default()),
        GenCommand::Runbooks(args) => (Kind::Runbooks, args, Options::default()),
        GenCommand::PrometheusRules(RulesArgs { gen_args, runbook_base }) => (Kind::PrometheusRules, gen_args, Options { runbook_base }),
        GenCommand::Grafana(args) => (Kind::Grafana, args, Options::default()),
    };
    let loaded = causeway_model::load(&args.model);
    if loaded.has_errors() {
        for d in &loaded.diagnostics {
            eprintln!("{d}");
        }
        let errors = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        eprintln!("{}: {}: nothing generated", args.model.display(), count(errors as u64, "error"));
        return Ok(ExitCode::from(1));
    }
    for warning in &loaded.diagnostics {
        eprintln!("{warning}");
    }
    let out = args.out.unwrap_or_else(|| Path::new("generated").join(kind.name()));
    let files = kind.generate_with(&loaded.model, &options);
    for file in &files {
        let path = out.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, &file.contents).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    eprintln!("{} written to {}", count(files.len() as u64, "file"), out.display());
    Ok(ExitCode::SUCCESS)
}
