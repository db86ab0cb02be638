//! The `causeway` binary: flag parsing and dispatch. Logic lives in the library crates.

mod access;
mod analyze;
mod client;
mod demo;
mod dlq;
mod r#gen;
mod model;
mod out;
mod serve;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The allocator (docs/operations.md, "Memory"): jemalloc returns what a burst freed from a
/// background thread; the system's allocator kept it.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Generate JSON Schemas, an AsyncAPI document, runbooks, Prometheus rules or Grafana dashboards from the model.
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
    /// Show how far behind each Kafka consumer group is: Burrow's status, lag in messages and in
    /// seconds, trend, time to clear, retention risk.
    Lag {
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Only groups in this status, or with a partition in it (OK, WARN, ERR, NOTFOUND, STOP,
        /// STALL, REWIND).
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Each SLO of the model, judged by event time: the SLI over its window, the error budget
    /// left, burn rates and the alert state (page or ticket).
    Slo {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// What the store of a running server holds: events hot and sealed, bytes as received and on
    /// disk, the sealed segments.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// API tokens of a data directory: make one (printed once), list them, revoke one.
    Token {
        #[command(subcommand)]
        command: access::TokenCommand,
    },
    /// The audit log: export a server's entries as CloudEvents, or verify the chain on the files.
    Audit {
        #[command(subcommand)]
        command: access::AuditCommand,
    },
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
    /// Address of the causeway server: an http:// or https:// URL, or host:port.
    #[arg(long, env = "CAUSEWAY_SERVER", default_value = "http://127.0.0.1:4600", value_name = "URL", value_parser = server_url)]
    server: String,
    /// Print JSON instead of a human table.
    #[arg(long)]
    json: bool,
    /// API token, sent as `Authorization: Bearer` (make one with `causeway token create`).
    #[arg(long, env = "CAUSEWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificates (PEM) to trust for an https:// server, beside the system's.
    #[arg(long, env = "CAUSEWAY_CA_CERT", value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
}

/// `--server`: a URL, or `host:port` (what `serve` prints and `--listen` takes) read as http. The
/// answer is the base URL without a trailing slash.
fn server_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let full = match text.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => text.to_string(),
        Some((scheme, _)) => {
            return Err(format!("the server is reached over http:// or https://, not {scheme}://"));
        }
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!("'{text}' is only a port: give host:port (e.g. 127.0.0.1:{text}) or a URL"));
        }
        None => format!("http://{text}"),
    };
    let url = reqwest::Url::parse(&full).map_err(|e| format!("not a server address ({e}): give host:port or an http:// URL"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the address names no host: give host:port or an http:// URL".into());
    }
    Ok(full.trim_end_matches('/').to_string())
}

/// `1 event`, `2 events`, `0 policies`: a count with its noun in the right number.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    let bytes = noun.as_bytes();
    let plural = match bytes {
        [.., c, b'y'] if !b"aeiou".contains(c) => format!("{}ies", &noun[..noun.len() - 1]),
        [.., b's' | b'x'] | [.., b'c' | b's', b'h'] => format!("{noun}es"),
        _ => format!("{noun}s"),
    };
    format!("{n} {plural}")
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
        Command::Lag { group, status, client } => client::lag(&client, group.as_deref(), status.as_deref()),
        Command::Slo { client } => client::slo(&client),
        Command::Analyze(args) => analyze::run(args),
        Command::Dlq { command } => dlq::run(command),
        Command::Store { command } => store::run(command),
        Command::Token { command } => access::token(command),
        Command::Audit { command } => access::audit(command),
        Command::State { kind, id, at, client } => dlq::state(&client, &kind, &id, at.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(count(1, "event"), "1 event");
        assert_eq!(count(0, "event"), "0 events");
        assert_eq!(count(2, "policy"), "2 policies");
        assert_eq!(count(3, "journey"), "3 journeys");
        assert_eq!(count(1, "policy"), "1 policy");
        assert_eq!(count(2, "match"), "2 matches");
    }

    #[test]
    fn server_accepts_host_port_and_names_a_wrong_scheme() {
        assert_eq!(server_url("localhost:4790").unwrap(), "http://localhost:4790");
        assert_eq!(server_url("[::1]:4600").unwrap(), "http://[::1]:4600");
        assert_eq!(server_url("https://causeway.example/base/").unwrap(), "https://causeway.example/base");
        let wrong = server_url("ftp://localhost:4790").unwrap_err();
        assert!(wrong.contains("ftp://") && wrong.contains("http://"), "{wrong}");
        assert!(server_url("4600").unwrap_err().contains("host:port"));
        assert!(server_url("http://").is_err());
        assert!(server_url("localhost:port").is_err());
    }

    /// Every verb and every argument explains itself in `--help`.
    #[test]
    fn every_argument_and_subcommand_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue; // clap's own
                }
                if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help" && sub.get_about().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "causeway", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
