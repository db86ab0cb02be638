//! `causeway token` (tokens of a data directory, made, listed and revoked on the files, so the
//! first admin token needs no server) and `causeway audit` (the audit log: exported from a
//! running server as CloudEvents, or its chain verified on the files). docs/security.md.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use causeway_auth::audit::{AuditLog, verify};
use causeway_auth::{Role, TokenStore};
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};

use crate::ClientArgs;
use crate::client::{api_error, call, http, url};
use crate::serve::DEFAULT_DATA;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it, once: only its hash is kept.
    Create {
        /// reader (queries, UI), producer (ingest, for --context), operator (DLQ replay and
        /// discard, model reload), admin (tokens, audit log).
        #[arg(long, value_parser = ["reader", "producer", "operator", "admin"])]
        role: String,
        /// A bounded context whose events a producer may send; once per context, '*' for any.
        #[arg(long = "context", value_name = "NAME")]
        contexts: Vec<String>,
        /// What the token is for, e.g. the service that holds it.
        #[arg(long)]
        name: Option<String>,
        /// The server's data directory [default: ./causeway-data].
        #[arg(long, env = "CAUSEWAY_DATA")]
        data: Option<PathBuf>,
    },
    /// List the tokens of a data directory (never the tokens themselves).
    List {
        /// The server's data directory [default: ./causeway-data].
        #[arg(long, env = "CAUSEWAY_DATA")]
        data: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id: refused from the next request on.
    Revoke {
        /// The token's id (the part after `cw_`, as `token list` shows it).
        id: String,
        /// The server's data directory [default: ./causeway-data].
        #[arg(long, env = "CAUSEWAY_DATA")]
        data: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print a running server's audit entries as CloudEvents, one per line (needs an admin token).
    Export {
        /// Only entries at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check the audit log's hash chain on the files: a line changed, removed or inserted is named.
    Verify {
        /// The server's data directory [default: ./causeway-data].
        #[arg(long, env = "CAUSEWAY_DATA")]
        data: Option<PathBuf>,
    },
}

fn data_dir(data: Option<PathBuf>) -> PathBuf {
    data.unwrap_or_else(|| DEFAULT_DATA.into())
}

/// Who ran a `causeway token` command, for the audit log.
fn local_user() -> Value {
    json!({"token": null, "role": null, "local_user": std::env::var("USER").ok(), "via": "causeway token"})
}

pub fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create { role, contexts, name, data } => {
            let data = data_dir(data);
            let role = Role::parse(&role).expect("clap checked the role");
            let made = TokenStore::new(&data).create(role, contexts, name)?;
            let record = &made.record;
            AuditLog::open(&data)?.append(
                "token.create",
                "cli",
                json!({"token_id": record.id, "role": role.name(), "contexts": record.contexts, "actor": local_user()}),
            )?;
            println!("{}", made.token);
            let scope = if record.contexts.is_empty() { String::new() } else { format!(" for {}", record.contexts.join(", ")) };
            eprintln!("token {} ({role}{scope}) made; it is shown this once: keep it in a secret store", record.id);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { data, json } => {
            let tokens = TokenStore::new(&data_dir(data)).list()?;
            if json {
                let shown: Vec<Value> = tokens
                    .iter()
                    .map(|t| json!({"id": t.id, "name": t.name, "role": t.role.name(), "contexts": t.contexts, "created_at": t.created_at, "revoked_at": t.revoked_at}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json!({"tokens": shown}))?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_header(["id", "role", "contexts", "name", "created", "revoked"]);
            for t in &tokens {
                table.add_row([
                    t.id.clone(),
                    t.role.name().to_string(),
                    t.contexts.join(", "),
                    t.name.clone().unwrap_or_default(),
                    t.created_at.clone(),
                    t.revoked_at.clone().unwrap_or_default(),
                ]);
            }
            println!("{table}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { id, data } => {
            let data = data_dir(data);
            let record = TokenStore::new(&data).revoke(&id)?;
            AuditLog::open(&data)?.append("token.revoke", "cli", json!({"token_id": record.id, "actor": local_user()}))?;
            println!("token {} revoked", record.label());
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Export { since, limit, client: args } => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &limit.to_string());
            if let Some(since) = &since {
                query.append_pair("since", since);
            }
            let path = format!("/v1/audit?{}", query.finish());
            let (status, body) = call(http(&args)?.get(url(&args, &path)), &args.server)?;
            anyhow::ensure!(status == 200, "{}", api_error(&body));
            for entry in body["entries"].as_array().into_iter().flatten() {
                println!("{entry}");
            }
            if body["truncated"] == json!(true) {
                eprintln!("more entries follow: export again with --since set to the last entry's time");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { data } => {
            let data = data_dir(data);
            let path = data.join(causeway_auth::AUTH_DIR).join("audit.ndjson");
            let entries = verify(&path).map_err(anyhow::Error::msg).with_context(|| format!("the audit log {} is broken", path.display()))?;
            println!("{}: {entries} entries, the chain holds", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
