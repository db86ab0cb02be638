//! The `causeway` binary: flag parsing and dispatch. Logic lives in the library crates.

mod analyze;
mod client;
mod demo;
mod dlq;
mod r#gen;
mod model;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// causeway — the event-storming model, executed against the running event-driven estate.
#[derive(Debug, Parser)]
#[command(name = "causeway", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: ingest, store and answer questions about events.
    Serve(serve::ServeArgs),
    /// Start a server on a fresh store and drive simulated order-fulfilment traffic through it.
    Demo(demo::DemoArgs),
    /// Check the event-storming model, or render it as a canvas.
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
    },
    /// Generate JSON Schemas, an AsyncAPI document or runbooks from the model.
    Gen {
        #[command(subcommand)]
        command: r#gen::GenCommand,
    },
    /// Send an NDJSON file of events to a running server (`-` reads standard input).
    Ingest {
        /// NDJSON file, one event per line in any accepted shape.
        file: PathBuf,
        /// Events per request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the causation chain of a correlation id as a tree.
    Chain {
        /// The correlation id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show where one journey instance is: milestones, state, what is expected next, findings.
    Journey {
        /// The journey's name in the model.
        name: String,
        /// The instance's key (e.g. the order id).
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List findings: missing reactions, stalls, broken invariants, schema errors…
    Findings {
        #[command(flatten)]
        filter: client::FindingArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Dead letters: list, summarise, show, replay to the consumer, discard or resolve.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Show a read model's state (an aggregate) now or as of a time or an event.
    State {
        /// The read model's name in the model (e.g. Order).
        kind: String,
        /// The aggregate's key (e.g. the order id).
        id: String,
        /// An RFC 3339 time or an event id: the state as of then.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Judge an event log file against the model offline: journeys and findings, no server.
    Analyze(analyze::AnalyzeArgs),
    /// Run a read-only SQL query over the store (views: event_lineage, dlq_events, findings).
    Sql {
        /// One SELECT statement.
        query: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Options of the verbs that talk to a running server.
#[derive(Debug, Clone, Args)]
struct ClientArgs {
    /// Address of the causeway server.
    #[arg(long, env = "CAUSEWAY_SERVER", default_value = "http://127.0.0.1:4600")]
    server: String,
    /// Print JSON instead of a human table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Demo(_)) {
        // A verb whose output is piped into `head` ends quietly when the pipe closes, as Unix
        // tools do (Rust ignores SIGPIPE, which makes printing panic). The server keeps ignoring
        // it: a client gone mid-answer must not stop it.
        // SAFETY: restoring a signal's default disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Model { command } => model::run(command),
        Command::Gen { command } => r#gen::run(command),
        Command::Ingest { file, batch, client } => client::ingest(&client, &file, batch),
        Command::Chain { id, client } => client::chain(&client, &id),
        Command::Sql { query, client } => client::sql(&client, &query),
        Command::Journey { name, key, client } => client::journey(&client, &name, &key),
        Command::Findings { filter, client } => client::findings(&client, &filter),
        Command::Analyze(args) => analyze::run(args),
        Command::Dlq { command } => dlq::run(command),
        Command::State { kind, id, at, client } => dlq::state(&client, &kind, &id, at.as_deref()),
    }
}
