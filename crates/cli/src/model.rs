//! `causeway model …`: checking the event-storming model and rendering it as a canvas.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use causeway_model::{Loaded, Severity, load};
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use crate::count;

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
    /// Draw the model as an event-storming canvas (sticky notes in one lane per context).
    Render {
        /// The model file (YAML).
        file: PathBuf,
        /// Output format: a standalone SVG, or an HTML page with the SVG, a title and a legend.
        #[arg(long, value_enum, default_value_t = RenderFormat::Svg)]
        format: RenderFormat,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    Svg,
    Html,
}

pub fn run(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Check { file, strict, json } => check(&file, strict, json),
        ModelCommand::Render { file, format, out } => render(&file, format, out.as_deref()),
    }
}

/// Prints every diagnostic, then the error and warning counts when there are errors (what `check`
/// prints).
fn print_diagnostics(loaded: &Loaded, to: &mut dyn Write) -> std::io::Result<usize> {
    let errors = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = loaded.diagnostics.len() - errors;
    for d in &loaded.diagnostics {
        writeln!(to, "{d}")?;
    }
    if errors > 0 {
        writeln!(to, "{}, {}", count(errors as u64, "error"), count(warnings as u64, "warning"))?;
    }
    Ok(errors)
}

/// Renders the canvas; a model with errors is not drawn: its diagnostics go to standard error and
/// the exit code is 1. Warnings are printed to standard error and do not stop the drawing.
fn render(file: &Path, format: RenderFormat, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = load(file);
    let errors = print_diagnostics(&loaded, &mut std::io::stderr())?;
    if errors > 0 {
        return Ok(ExitCode::from(1));
    }
    let page = match format {
        RenderFormat::Svg => causeway_canvas::render_svg(&loaded.model),
        RenderFormat::Html => causeway_canvas::render_html(&loaded.model),
    };
    match out {
        Some(path) => std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(page.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn check(file: &Path, strict: bool, as_json: bool) -> anyhow::Result<ExitCode> {
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
        print_diagnostics(&loaded, &mut std::io::stdout())?;
        let m = &loaded.model;
        if errors == 0 {
            println!(
                "model '{}': {}, {}, {}, {}; {}",
                m.name,
                count(m.contexts.len() as u64, "context"),
                count(m.events.len() as u64, "event"),
                count(m.policies.len() as u64, "policy"),
                count(m.journeys.len() as u64, "journey"),
                count(warnings as u64, "warning")
            );
        }
    }
    Ok(if errors > 0 || (strict && warnings > 0) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
