//! `causeway model …`: checking the event-storming model.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_model::{Severity, load};
use clap::Subcommand;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Report every problem of a model as FILE:LINE:COLUMN; exit 1 on errors.
    Check {
        /// The model file (YAML).
        file: PathBuf,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
        /// Print the diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Check { file, strict, json } => check(&file, strict, json),
    }
}

fn check(file: &PathBuf, strict: bool, as_json: bool) -> anyhow::Result<ExitCode> {
    let loaded = load(file);
    let errors = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = loaded.diagnostics.len() - errors;
    if as_json {
        let list: Vec<_> = loaded
            .diagnostics
            .iter()
            .map(|d| {
                json!({"severity": if d.severity == Severity::Error { "error" } else { "warning" },
                       "file": d.file, "line": d.position.line, "column": d.position.column, "message": d.message})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({"errors": errors, "warnings": warnings, "diagnostics": list}))?);
    } else {
        for d in &loaded.diagnostics {
            println!("{d}");
        }
        let m = &loaded.model;
        if errors == 0 {
            println!(
                "model '{}': {} contexts, {} events, {} policies, {} journeys; {warnings} warning{}",
                m.name,
                m.contexts.len(),
                m.events.len(),
                m.policies.len(),
                m.journeys.len(),
                if warnings == 1 { "" } else { "s" }
            );
        } else {
            println!("{errors} error{}, {warnings} warning{}", if errors == 1 { "" } else { "s" }, if warnings == 1 { "" } else { "s" });
        }
    }
    Ok(if errors > 0 || (strict && warnings > 0) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
