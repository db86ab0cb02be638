//! `causeway serve`: configuration (file, environment, flags) and the server's lifecycle.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use causeway_auth::Role;
use causeway_auth::rate::Rate;
use causeway_envelope::{Limits, ParseOptions};
use causeway_journey::WatermarkConfig;
use causeway_server::auth::{Auth, AuthMode};
use causeway_server::kafka::{KafkaConfig, Start};
use causeway_server::lag::LagConfig;
use causeway_server::nats::{NatsAuth, NatsConfig};
use causeway_server::notify::{Format, NotifyConfig, Webhook};
use causeway_server::source::SourceStatus;
use causeway_server::{AppState, Clock, ConnectionLimits, Consumer, IngestLimits, ModelSlot, Replayer, ServerTls};
use causeway_store::{SqlLimits, Store, StoreSettings};
use clap::Args;
use serde::Deserialize;

use crate::out::say;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4600";
pub const DEFAULT_DATA: &str = "./causeway-data";

/// Flags of `serve`. Precedence: flag, then its `CAUSEWAY_*` variable, then the config file, then
/// the default.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store [default: ./causeway-data].
    #[arg(long, env = "CAUSEWAY_DATA")]
    pub data: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:4600].
    #[arg(long, env = "CAUSEWAY_LISTEN")]
    pub listen: Option<String>,
    /// The event-storming model (YAML) whose contracts apply at ingest; reloaded on SIGHUP and
    /// POST /v1/model/reload.
    #[arg(long, env = "CAUSEWAY_MODEL")]
    pub model: Option<PathBuf>,
    /// Key of the keyed hash that replaces PII values [default: a random key kept in DATA/pii.key].
    #[arg(long, env = "CAUSEWAY_PII_SECRET", hide_env_values = true)]
    pub pii_secret: Option<String>,
    /// The clock deadlines are judged against: `watermark` (event time, per source of evidence,
    /// following the wall clock when every source is idle), or the overrides `wall` (receive
    /// time) and `event` (the latest event time seen) [default: watermark].
    #[arg(long, env = "CAUSEWAY_CLOCK", value_parser = ["watermark", "wall", "event"])]
    pub clock: Option<String>,
    /// With the watermark clock: how late evidence may arrive and still be judged as if on time,
    /// e.g. `5s`, `0s` [default: 5s].
    #[arg(long, env = "CAUSEWAY_ALLOWED_LATENESS")]
    pub allowed_lateness: Option<String>,
    /// With the watermark clock: how long a source may send nothing before it stops holding the
    /// clock back, e.g. `30s` [default: 30s].
    #[arg(long, env = "CAUSEWAY_IDLE_AFTER")]
    pub idle_after: Option<String>,
    /// Serve HTTPS only: the server's certificate chain (PEM, its own certificate first); needs
    /// --tls-key [default: plain HTTP].
    #[arg(long, env = "CAUSEWAY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, RSA or SEC1, unencrypted).
    #[arg(long, env = "CAUSEWAY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Ask every request for a token (`required`), or none (`off`) [default: off on a loopback
    /// address, required on any other].
    #[arg(long, env = "CAUSEWAY_AUTH", value_parser = ["required", "off"])]
    pub auth: Option<String>,
    /// Allow `--auth off` on an address beyond loopback: anyone who reaches the port may do
    /// anything.
    #[arg(long, env = "CAUSEWAY_INSECURE")]
    pub insecure: bool,
    // Boxed: the limits are most of the flags, and `serve`'s arguments would otherwise dwarf
    // every other verb's.
    #[command(flatten)]
    pub limits: Box<LimitArgs>,
}

/// The documented limits, each with its flag.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitArgs {
    /// Largest request body in bytes [default: 16777216].
    #[arg(long, env = "CAUSEWAY_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Largest single event in bytes [default: 1048576].
    #[arg(long, env = "CAUSEWAY_MAX_EVENT_BYTES")]
    pub max_event_bytes: Option<usize>,
    /// Deepest JSON nesting of a request [default: 64].
    #[arg(long, env = "CAUSEWAY_MAX_JSON_DEPTH")]
    pub max_json_depth: Option<usize>,
    /// Most events in one request [default: 10000].
    #[arg(long, env = "CAUSEWAY_MAX_BATCH_EVENTS")]
    pub max_batch_events: Option<usize>,
    /// Time limit of one SQL query in milliseconds, counted from its request (a wait for a slot
    /// included) [default: 5000].
    #[arg(long, env = "CAUSEWAY_SQL_TIMEOUT_MS")]
    pub sql_timeout_ms: Option<u64>,
    /// Most rows one SQL answer carries [default: 10000].
    #[arg(long, env = "CAUSEWAY_SQL_MAX_ROWS")]
    pub sql_max_rows: Option<usize>,
    /// Most bytes of JSON the rows of one SQL answer take, and most bytes one value in a query may
    /// hold [default: 16777216].
    #[arg(long, env = "CAUSEWAY_SQL_MAX_ANSWER_BYTES")]
    pub sql_max_answer_bytes: Option<usize>,
    /// Most SQL queries running at once; others wait for a slot within the SQL time limit, then
    /// get 503 [default: the number of cores less one, at least 1].
    #[arg(long, env = "CAUSEWAY_SQL_MAX_CONCURRENT", value_parser = clap::value_parser!(u16).range(1..))]
    pub sql_max_concurrent: Option<u16>,
    /// CPU priority of SQL queries: `idle` (only cores ingest leaves idle) or `normal` [default:
    /// idle].
    #[arg(long, env = "CAUSEWAY_SQL_PRIORITY", value_parser = ["idle", "normal"])]
    pub sql_priority: Option<String>,
    /// Most connections served at once; at the cap the longest-idle are closed for new ones
    /// [default: the open-file limit less a sixteenth of it (at least 384), at most 65536].
    #[arg(long, env = "CAUSEWAY_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Most time a request head may take to arrive, in milliseconds [default: 10000].
    #[arg(long, env = "CAUSEWAY_HEADER_READ_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: Option<u64>,
    /// Most time a connection stays open with no request in progress, or stalled on the client,
    /// in milliseconds [default: 60000].
    #[arg(long, env = "CAUSEWAY_IDLE_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: Option<u64>,
    /// Most time an ingest request body may take to arrive, in milliseconds [default: 30000].
    #[arg(long, env = "CAUSEWAY_BODY_READ_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: Option<u64>,
    /// Most bytes of request bodies ingest holds at once (at least --max-request-bytes)
    /// [default: 67108864].
    #[arg(long, env = "CAUSEWAY_INGEST_BUFFER_BYTES")]
    pub ingest_buffer_bytes: Option<usize>,
    /// How long an ingest request waits for room in that buffer before 503, in milliseconds
    /// [default: 1000].
    #[arg(long, env = "CAUSEWAY_INGEST_WAIT_MS")]
    pub ingest_wait_ms: Option<u64>,
    /// Rows queued for the store's writer past which ingest answers 503 [default: 100000].
    #[arg(long, env = "CAUSEWAY_MAX_WRITE_QUEUE")]
    pub max_write_queue: Option<usize>,
    /// Log entries the journey engine may be behind before ingest answers 503; 0: no limit
    /// [default: 100000].
    #[arg(long, env = "CAUSEWAY_MAX_JOURNEY_LAG")]
    pub max_journey_lag: Option<u64>,
}

/// The config file (PRODUCT §10). Keys that later components read are accepted and documented.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    data: Option<PathBuf>,
    model: Option<PathBuf>,
    pii_secret: Option<String>,
    clock: Option<String>,
    allowed_lateness: Option<String>,
    idle_after: Option<String>,
    /// HTTPS: the certificate chain and private key files (PEM).
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// Tokens and rates.
    auth: Option<AuthSection>,
    #[serde(default)]
    limits: LimitArgs,
    /// The estate's consumers, for DLQ replay (PRODUCT §10).
    #[serde(default)]
    consumers: BTreeMap<String, ConsumerConfig>,
    /// The Kafka source.
    kafka: Option<KafkaSection>,
    /// A section of PRODUCT §10 for a part this version does not have yet: read so that a file
    /// written for it is refused with a sentence that says so, not "unknown field".
    store: Option<StoreSection>,
    /// The NATS JetStream source.
    nats: Option<NatsSection>,
    /// The lag monitor (with `[kafka]`).
    lag: Option<LagSection>,
    /// Notifications to webhook receivers.
    notify: Option<NotifySection>,
}

/// `[auth]`: whether tokens are asked for, and each role's rate per token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    /// `required` or `off` [default: by the listen address].
    mode: Option<String>,
    /// Allow `off` beyond loopback.
    insecure: Option<bool>,
    /// Per token, by role: `producer = "5000/s"` (an ingest takes one unit per event, any other
    /// request one).
    #[serde(default)]
    rates: BTreeMap<String, String>,
}

/// `[notify]`: when alerts are judged and sent, and where (`[[notify.webhook]]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifySection {
    /// How often alerts are judged and receivers notified [default: 15s].
    interval: Option<String>,
    /// An unchanged firing group is sent again after this long [default: 4h].
    repeat_interval: Option<String>,
    /// Prefix of runbook links [default: the server's own /runbooks pages].
    runbook_base: Option<String>,
    /// How receivers reach this server [default: http:// (https:// with TLS) and the address it listens on].
    external_url: Option<String>,
    /// Stalled instances of one journey that make a surge [default: 10].
    stall_surge: Option<u64>,
    #[serde(default)]
    webhook: Vec<WebhookSection>,
}

/// `[[notify.webhook]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSection {
    /// The receiver's name in payloads and metrics [default: webhook-N].
    name: Option<String>,
    url: Option<String>,
    /// `alertmanager` or `plain` [default: alertmanager].
    format: Option<String>,
}

/// `[lag]`: the lag monitor's settings; Burrow's names and defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LagSection {
    /// Off with `false`; on by default whenever `[kafka]` is configured.
    enabled: Option<bool>,
    /// How often high watermarks are read and groups evaluated (Burrow's `offset-refresh`).
    interval: Option<String>,
    /// Commits kept per partition (Burrow's `intervals`).
    intervals: Option<usize>,
    /// Commits closer than this replace the newest (Burrow's `min-distance`).
    min_distance: Option<String>,
    /// A group silent this long is forgotten (Burrow's `expire-group`).
    expire_group: Option<String>,
    /// Not Burrow: a floor under the STOP threshold, against false STOPs on quiet partitions.
    stop_grace: Option<String>,
    /// Where the brokers keep commits.
    offsets_topic: Option<String>,
}

/// `[nats]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NatsSection {
    url: Option<String>,
    stream: Option<String>,
    #[serde(default)]
    subjects: Vec<String>,
    durable: Option<String>,
    /// CA certificates (PEM) to trust for the server's certificate, instead of the system's.
    tls_ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for a server that verifies clients.
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// Refuse to connect without TLS.
    tls_required: Option<bool>,
    /// User and password (the password may come from `CAUSEWAY_NATS_PASSWORD` instead).
    user: Option<String>,
    password: Option<String>,
    /// A token (or `CAUSEWAY_NATS_TOKEN`).
    token: Option<String>,
    /// A `.creds` file: a user JWT and its NKey seed.
    creds: Option<PathBuf>,
}

/// `[store]`: the embedded store's memory, sealing and retention; the external store of PRODUCT
/// §10 is read so that a file naming it is refused with a sentence, not run without it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    /// The writer's page cache, e.g. "256MiB".
    cache: Option<String>,
    /// Events per sealed segment; 0 keeps the whole history unsealed.
    segment_events: Option<u64>,
    url: Option<toml::Value>,
    /// How long sealed history is kept, e.g. "30d".
    retention: Option<String>,
    /// The most the data directory may hold, e.g. "50GiB".
    max_disk: Option<String>,
}

/// `[kafka]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaSection {
    brokers: Option<String>,
    topics: Option<Vec<String>>,
    group: Option<String>,
    start: Option<String>,
    /// Dead-letter topics: a name, or a list of names, where `{topic}` stands for each source
    /// topic [default: "{topic}.dlq"]; `[]` reads none.
    dlq_topics: Option<DlqTopics>,
    /// librdkafka properties passed as they are (security, timeouts).
    #[serde(default)]
    client: BTreeMap<String, String>,
}

/// `[kafka] dlq_topics`: one entry or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DlqTopics {
    One(String),
    Many(Vec<String>),
}

/// `[consumers.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerConfig {
    /// Where replays of the consumer's dead letters are POSTed.
    replay_url: Option<String>,
    /// Or the Kafka topic they are published to (with `[kafka]`).
    replay_topic: Option<String>,
    /// Its Kafka consumer group, for lag; accepted now.
    group: Option<String>,
}

/// Whether tokens are asked for, resolved but for the address, which is known once bound.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `None`: required unless the server listens on loopback only.
    pub mode: Option<AuthMode>,
    pub insecure: bool,
    pub rates: HashMap<Role, Rate>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub auth: AuthSettings,
    /// HTTPS: the certificate chain and key files; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    pub data: PathBuf,
    pub model: Option<PathBuf>,
    pub pii_secret: Option<String>,
    pub clock: Clock,
    pub parse: ParseOptions,
    pub sql: SqlLimits,
    pub consumers: BTreeMap<String, Consumer>,
    /// The connection cap; `None`: derived from the open-file limit at start.
    pub max_connections: Option<usize>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub ingest: IngestLimits,
    /// The NATS JetStream source, when `[nats]` is configured.
    pub nats: Option<NatsConfig>,
    /// The Kafka source, when `[kafka]` is configured. No topics: the model's `topic` fields.
    pub kafka: Option<KafkaConfig>,
    /// The lag monitor: with `[kafka]`, unless `[lag] enabled = false`.
    pub lag: Option<LagConfig>,
    /// The notifier, when `[notify]` names receivers.
    pub notify: Option<NotifyConfig>,
    pub store: StoreSettings,
}

/// `--tls-cert` and `--tls-key`, read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server's TLS files: both or neither, each by the usual precedence (flag or its variable,
/// then the config file).
fn tls_files(args: &ServeArgs, file: &ConfigFile) -> anyhow::Result<Option<TlsFiles>> {
    let cert = args.tls_cert.clone().or_else(|| file.tls_cert.clone());
    let key = args.tls_key.clone().or_else(|| file.tls_key.clone());
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(cert), None) => anyhow::bail!(
            "TLS needs a certificate and its key: {} is given as the certificate but no key; add --tls-key FILE \
             (or CAUSEWAY_TLS_KEY, or tls_key in the config file)",
            cert.display()
        ),
        (None, Some(key)) => anyhow::bail!(
            "TLS needs a certificate and its key: {} is given as the key but no certificate; add --tls-cert FILE \
             (or CAUSEWAY_TLS_CERT, or tls_cert in the config file)",
            key.display()
        ),
    }
}

/// `[nats]`, with the secrets the environment gives (`env` looks a variable up): its password and
/// token win over the file's. Combinations that cannot work are refused with what to change.
fn nats_config(n: &NatsSection, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<NatsConfig> {
    let password = env("CAUSEWAY_NATS_PASSWORD").or_else(|| n.password.clone());
    let token = env("CAUSEWAY_NATS_TOKEN").or_else(|| n.token.clone());
    let given: Vec<&str> = [
        (n.user.is_some() || password.is_some(), "user and password"),
        (token.is_some(), "token (or CAUSEWAY_NATS_TOKEN)"),
        (n.creds.is_some(), "creds"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if given.len() > 1 {
        anyhow::bail!("[nats] authenticates one way: {} are all given; keep one of them", given.join(" and "));
    }
    let auth = match (&n.user, password, token, &n.creds) {
        (Some(user), Some(password), None, None) => NatsAuth::UserPassword { user: user.clone(), password },
        (Some(user), None, _, _) => {
            anyhow::bail!("[nats] user = \"{user}\" needs a password: set password in [nats] or, better, CAUSEWAY_NATS_PASSWORD")
        }
        (None, Some(_), _, _) => anyhow::bail!(
            "[nats] a password is given (in [nats] or CAUSEWAY_NATS_PASSWORD) but no user: add user = \"NAME\" to [nats], \
             or unset the password to connect without one"
        ),
        (None, None, Some(token), None) => NatsAuth::Token(token),
        (None, None, None, Some(creds)) => NatsAuth::Creds(creds.clone()),
        _ => NatsAuth::None,
    };
    let tls_client = match (&n.tls_cert, &n.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        (Some(_), None) => anyhow::bail!("[nats] tls_cert needs tls_key, the private key of the client certificate"),
        (None, Some(_)) => anyhow::bail!("[nats] tls_key needs tls_cert, the client certificate it belongs to"),
    };
    let url = n.url.clone().unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let tls_required = n.tls_required.unwrap_or(false);
    if tls_required && url.split(',').any(|u| u.trim().starts_with("ws://")) {
        anyhow::bail!("[nats] tls_required = true with url {url}: a ws:// URL is not encrypted; use wss:// or tls://");
    }
    let config = NatsConfig {
        url,
        stream: n.stream.clone().ok_or_else(|| anyhow::anyhow!("[nats] needs `stream`, the JetStream stream to read"))?,
        subject: match n.subjects.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            _ => anyhow::bail!(
                "[nats] subjects: give one filter (wildcards allow several subjects, e.g. \"orders.>\"); several filters need NATS 2.10"
            ),
        },
        durable: n.durable.clone().unwrap_or_else(|| "causeway".into()),
        tls_ca: n.tls_ca.clone(),
        tls_client,
        tls_required,
        auth,
    };
    config.check().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// The environment variable that gives `[kafka.client]` its `sasl.password`.
const KAFKA_SASL_PASSWORD_ENV: &str = "CAUSEWAY_KAFKA_SASL_PASSWORD";

/// `[kafka.client]` with `sasl.password` from the environment when it is set there (it wins
/// over the file's).
fn kafka_client(client: &BTreeMap<String, String>, env: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    let mut client = client.clone();
    if let Some(password) = env(KAFKA_SASL_PASSWORD_ENV) {
        client.insert("sasl.password".into(), password);
    }
    client
}

/// librdkafka properties that name a file (or, for `ssl.ca.location`, a directory).
const KAFKA_FILE_PROPERTIES: [&str; 6] =
    ["ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.crl.location", "ssl.keystore.location", "sasl.kerberos.keytab"];

/// Each file `[kafka.client]` names can be read: librdkafka's own message for one it cannot
/// read does not name it.
fn check_kafka_files(client: &BTreeMap<String, String>) -> anyhow::Result<()> {
    for (key, value) in client.iter().filter(|(k, _)| KAFKA_FILE_PROPERTIES.contains(&k.as_str())) {
        // `probe`: librdkafka looks for the system's CA certificates.
        if key == "ssl.ca.location" && value == "probe" {
            continue;
        }
        let path = Path::new(value);
        let readable = if path.is_dir() { std::fs::read_dir(path).map(drop) } else { std::fs::File::open(path).map(drop) };
        readable.with_context(|| format!("[kafka.client] \"{key}\": cannot read {value}"))?;
    }
    Ok(())
}

/// A variable of the process's environment; unset and empty are the same.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ServerConfig {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
        let file = match &args.config {
            Some(path) => read_config(path)?,
            None => ConfigFile::default(),
        };
        let pick = |flag: Option<usize>, file: Option<usize>| flag.or(file);
        let (a, f) = (&*args.limits, &file.limits);
        let defaults = Limits::default();
        let sql_defaults = SqlLimits::default();
        let limits = Limits {
            max_request_bytes: pick(a.max_request_bytes, f.max_request_bytes).unwrap_or(defaults.max_request_bytes),
            max_event_bytes: pick(a.max_event_bytes, f.max_event_bytes).unwrap_or(defaults.max_event_bytes),
            max_json_depth: pick(a.max_json_depth, f.max_json_depth).unwrap_or(defaults.max_json_depth),
            max_batch_events: pick(a.max_batch_events, f.max_batch_events).unwrap_or(defaults.max_batch_events),
        };
        let sql = SqlLimits {
            timeout: a.sql_timeout_ms.or(f.sql_timeout_ms).map(Duration::from_millis).unwrap_or(sql_defaults.timeout),
            max_rows: pick(a.sql_max_rows, f.sql_max_rows).unwrap_or(sql_defaults.max_rows),
            max_answer_bytes: pick(a.sql_max_answer_bytes, f.sql_max_answer_bytes).unwrap_or(sql_defaults.max_answer_bytes),
            max_concurrent: match a.sql_max_concurrent.or(f.sql_max_concurrent) {
                Some(0) => anyhow::bail!("sql_max_concurrent must be at least 1"),
                Some(n) => n.into(),
                None => sql_defaults.max_concurrent,
            },
            idle_priority: match a.sql_priority.as_deref().or(f.sql_priority.as_deref()) {
                None | Some("idle") => true,
                Some("normal") => false,
                Some(other) => anyhow::bail!("sql_priority must be 'idle' or 'normal', not '{other}'"),
            },
        };
        let ms = |flag: Option<u64>, file: Option<u64>, default: Duration| flag.or(file).map_or(default, Duration::from_millis);
        let ingest_defaults = IngestLimits::default();
        let ingest = IngestLimits {
            buffer_bytes: pick(a.ingest_buffer_bytes, f.ingest_buffer_bytes).unwrap_or(ingest_defaults.buffer_bytes),
            wait: ms(a.ingest_wait_ms, f.ingest_wait_ms, ingest_defaults.wait),
            max_write_queue: pick(a.max_write_queue, f.max_write_queue).unwrap_or(ingest_defaults.max_write_queue),
            max_journey_lag: a.max_journey_lag.or(f.max_journey_lag).unwrap_or(ingest_defaults.max_journey_lag),
            body_read_timeout: ms(a.body_read_timeout_ms, f.body_read_timeout_ms, ingest_defaults.body_read_timeout),
        };
        // The file's values are not checked by clap.
        for (name, value) in [
            ("max_connections", a.max_connections.or(f.max_connections)),
            ("header_read_timeout_ms", a.header_read_timeout_ms.or(f.header_read_timeout_ms)),
            ("idle_timeout_ms", a.idle_timeout_ms.or(f.idle_timeout_ms)),
            ("body_read_timeout_ms", a.body_read_timeout_ms.or(f.body_read_timeout_ms)),
        ] {
            if value == Some(0) {
                anyhow::bail!("{name} must be at least 1");
            }
        }
        let clock = clock(args, &file)?;
        let tls = tls_files(args, &file)?;
        let nats = file.nats.as_ref().map(|n| nats_config(n, env_var)).transpose()?;
        if let Some(k) = &file.kafka {
            check_kafka_files(&k.client)?;
        }
        let kafka = match &file.kafka {
            None => None,
            Some(k) => Some(KafkaConfig {
                brokers: k.brokers.clone().unwrap_or_else(|| "127.0.0.1:9092".into()),
                topics: k.topics.clone().unwrap_or_default(),
                group: k.group.clone().unwrap_or_else(|| "causeway".into()),
                start: match k.start.as_deref() {
                    None => Start::Earliest,
                    Some(text) => Start::parse(text).ok_or_else(|| {
                        anyhow::anyhow!(
                            "[kafka] start must be \"earliest\", \"latest\" or an RFC 3339 time such as \"2026-12-01T00:00:00Z\", not \"{text}\""
                        )
                    })?,
                },
                client: kafka_client(&k.client, env_var),
                dlq_topics: dlq_topics(k.dlq_topics.as_ref())?,
                replay_topics: replay_topics(&file.consumers)?,
            }),
        };
        if file.kafka.is_none()
            && let Some((name, c)) = file.consumers.iter().find(|(_, c)| c.replay_topic.is_some())
        {
            anyhow::bail!(
                "[consumers.{name}] replay_topic = \"{}\" publishes replays through the Kafka source: add a [kafka] section with its brokers, \
                 or replay over HTTP with replay_url",
                c.replay_topic.as_deref().unwrap_or_default()
            );
        }
        let lag = match (&kafka, file.lag.as_ref()) {
            (None, Some(_)) => anyhow::bail!("[lag] watches Kafka consumer groups: configure [kafka] brokers too"),
            (None, None) => None,
            (Some(_), Some(LagSection { enabled: Some(false), .. })) => None,
            (Some(k), section) => Some(lag_config(k, section.unwrap_or(&LagSection::default()), &file.consumers)?),
        };
        let store = StoreSettings {
            writer_cache_bytes: match file.store.as_ref().and_then(|s| s.cache.as_deref()) {
                None => causeway_store::DEFAULT_WRITER_CACHE_BYTES,
                Some(text) => bytes(text).map_err(|e| anyhow::anyhow!("[store] cache: {e}"))?,
            },
            segment_events: match file.store.as_ref().and_then(|s| s.segment_events) {
                None => causeway_store::DEFAULT_SEGMENT_EVENTS,
                Some(n @ (0 | 1_000..=10_000_000)) => n,
                Some(n) => anyhow::bail!("[store] segment_events = {n}: give 0 (never seal) or between 1000 and 10000000 events per segment"),
            },
            // Set where the store opens, from whether a model is configured.
            journey_engine: false,
            retention: causeway_store::Retention {
                age: match file.store.as_ref().and_then(|s| s.retention.as_deref()) {
                    None => None,
                    Some(text) => Some(std::time::Duration::from_millis(
                        causeway_model::parse_duration(text).map_err(|e| anyhow::anyhow!("[store] retention: {e}"))?,
                    )),
                },
                max_disk_bytes: match file.store.as_ref().and_then(|s| s.max_disk.as_deref()) {
                    None => None,
                    Some(text) => Some(bytes(text).map_err(|e| anyhow::anyhow!("[store] max_disk: {e}"))?),
                },
            },
        };
        if store.retention.is_on() && store.segment_events == 0 {
            anyhow::bail!(
                "[store] retention and max_disk remove whole sealed segments, and sealing is off: set [store] segment_events too ({} is recommended, and the default)",
                causeway_store::RECOMMENDED_SEGMENT_EVENTS
            );
        }
        let notify = file.notify.as_ref().map(notify_config).transpose()?;
        let auth = auth_settings(args, file.auth.as_ref())?;
        Ok(ServerConfig {
            auth,
            tls,
            store,
            notify,
            nats,
            kafka,
            lag,
            max_connections: a.max_connections.or(f.max_connections).map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            header_read_timeout: ms(a.header_read_timeout_ms, f.header_read_timeout_ms, causeway_server::DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: ms(a.idle_timeout_ms, f.idle_timeout_ms, causeway_server::DEFAULT_IDLE_TIMEOUT),
            ingest,
            listen: args.listen.clone().or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.into()),
            data: args.data.clone().or(file.data).unwrap_or_else(|| DEFAULT_DATA.into()),
            model: args.model.clone().or(file.model),
            pii_secret: args.pii_secret.clone().or(file.pii_secret),
            clock,
            parse: ParseOptions { limits, correlation_required: true },
            sql,
            consumers: consumers(file.consumers)?,
        })
    }
}

/// `--auth`, `--insecure` and `[auth]`.
fn auth_settings(args: &ServeArgs, section: Option<&AuthSection>) -> anyhow::Result<AuthSettings> {
    let mode = match args.auth.as_deref().or(section.and_then(|s| s.mode.as_deref())) {
        None => None,
        Some("required") => Some(AuthMode::Required),
        Some("off") => Some(AuthMode::Off),
        Some(other) => anyhow::bail!("[auth] mode must be \"required\" or \"off\", not \"{other}\""),
    };
    let mut rates = HashMap::new();
    for (role, text) in section.map(|s| &s.rates).into_iter().flatten() {
        let r = Role::parse(role).ok_or_else(|| anyhow::anyhow!("[auth.rates] {role}: roles are reader, producer, operator and admin"))?;
        rates.insert(r, Rate::parse(text).map_err(|e| anyhow::anyhow!("[auth.rates] {role}: {e}"))?);
    }
    Ok(AuthSettings { mode, insecure: args.insecure || section.and_then(|s| s.insecure).unwrap_or(false), rates })
}

/// The auth mode for a server bound to `addr`: refused when it would let anyone beyond this
/// machine in without `--insecure`.
pub fn auth_mode(settings: &AuthSettings, addr: SocketAddr) -> anyhow::Result<AuthMode> {
    let loopback = addr.ip().is_loopback();
    match settings.mode {
        Some(mode @ AuthMode::Required) => Ok(mode),
        None if loopback => Ok(AuthMode::Off),
        None => Ok(AuthMode::Required),
        Some(AuthMode::Off) if loopback || settings.insecure => Ok(AuthMode::Off),
        Some(AuthMode::Off) => anyhow::bail!(
            "--auth off on {addr} would let anyone who reaches it read, write and replay: listen on 127.0.0.1, use --auth required \
             (make tokens with `causeway token create`), or add --insecure if a proxy in front authenticates"
        ),
    }
}

/// A duration setting (`30s`, `5m`, the model's syntax), if given; `0` in any unit is zero where
/// `zero` allows it. Errors name the setting.
fn duration(name: &str, text: Option<&str>, zero: bool) -> anyhow::Result<Option<Duration>> {
    match text {
        None => Ok(None),
        Some(t) if zero && t.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" => Ok(Some(Duration::ZERO)),
        Some(t) => causeway_model::parse_duration(t).map(|ms| Some(Duration::from_millis(ms))).map_err(|e| anyhow::anyhow!("{name}: {e}")),
    }
}

/// `[lag]` with the connection of `[kafka]` and the groups of `[consumers.*]`.
fn lag_config(kafka: &KafkaConfig, section: &LagSection, consumers: &BTreeMap<String, ConsumerConfig>) -> anyhow::Result<LagConfig> {
    let ms = |name: &str, text: &Option<String>, default: i64| -> anyhow::Result<i64> {
        Ok(duration(&format!("[lag] {name}"), text.as_deref(), true)?.map_or(default, |d| d.as_millis() as i64))
    };
    let defaults = causeway_lag::Settings::default();
    let settings = causeway_lag::Settings {
        intervals: match section.intervals {
            Some(0) => anyhow::bail!("[lag] intervals must be at least 1"),
            Some(n) => n,
            None => defaults.intervals,
        },
        min_distance_ms: ms("min_distance", &section.min_distance, defaults.min_distance_ms)?,
        expire_group_ms: ms("expire_group", &section.expire_group, defaults.expire_group_ms)?,
        stop_grace_ms: ms("stop_grace", &section.stop_grace, defaults.stop_grace_ms)?,
        ..defaults
    };
    let interval = ms("interval", &section.interval, 10_000)?;
    anyhow::ensure!(interval > 0, "[lag] interval must be more than 0");
    Ok(LagConfig {
        brokers: kafka.brokers.clone(),
        client: kafka.client.clone(),
        interval: Duration::from_millis(interval as u64),
        groups: consumers.iter().filter_map(|(name, c)| Some((c.group.clone()?, name.clone()))).collect(),
        settings,
        offsets_topic: section.offsets_topic.clone().unwrap_or_else(|| "__consumer_offsets".into()),
    })
}

/// `[notify]` and its receivers, each checked now so that a typo fails at start-up.
fn notify_config(section: &NotifySection) -> anyhow::Result<NotifyConfig> {
    let defaults = NotifyConfig::default();
    anyhow::ensure!(
        !section.webhook.is_empty(),
        "[notify] names no receiver: add a [[notify.webhook]] with url and format (\"alertmanager\" or \"plain\"), or remove [notify]"
    );
    let mut webhooks: Vec<Webhook> = Vec::new();
    for (i, w) in section.webhook.iter().enumerate() {
        let name = w.name.clone().unwrap_or_else(|| format!("webhook-{}", i + 1));
        anyhow::ensure!(
            !name.trim().is_empty() && !webhooks.iter().any(|o| o.name == name),
            "[[notify.webhook]] name \"{name}\": each receiver needs a name of its own"
        );
        let Some(url) = w.url.clone() else { anyhow::bail!("[[notify.webhook]] {name} needs `url`, where its notifications are POSTed") };
        let parsed = reqwest::Url::parse(&url).with_context(|| format!("[[notify.webhook]] {name}: url '{url}' is not a URL"))?;
        anyhow::ensure!(
            parsed.scheme() == "http",
            "[[notify.webhook]] {name}: url '{url}': receivers are http:// URLs (put a TLS-terminating proxy in front of an https one)"
        );
        let format = match w.format.as_deref() {
            None => Format::Alertmanager,
            Some(f) => Format::parse(f)
                .ok_or_else(|| anyhow::anyhow!("[[notify.webhook]] {name}: format must be \"alertmanager\" or \"plain\", not \"{f}\""))?,
        };
        webhooks.push(Webhook { name, url, format });
    }
    let stall_surge = section.stall_surge.unwrap_or(defaults.stall_surge);
    anyhow::ensure!(stall_surge > 0, "[notify] stall_surge must be at least 1");
    if let Some(base) = &section.runbook_base {
        reqwest::Url::parse(base).with_context(|| format!("[notify] runbook_base '{base}' is not a URL"))?;
    }
    if let Some(external) = &section.external_url {
        reqwest::Url::parse(external).with_context(|| format!("[notify] external_url '{external}' is not a URL"))?;
    }
    Ok(NotifyConfig {
        interval: duration("[notify] interval", section.interval.as_deref(), false)?.unwrap_or(defaults.interval),
        repeat_interval: duration("[notify] repeat_interval", section.repeat_interval.as_deref(), false)?.unwrap_or(defaults.repeat_interval),
        runbook_base: section.runbook_base.clone(),
        external_url: section.external_url.clone(),
        stall_surge,
        webhooks,
    })
}

/// The journey engine's clock: the watermark clock with its two durations, or an override.
fn clock(args: &ServeArgs, file: &ConfigFile) -> anyhow::Result<Clock> {
    let defaults = WatermarkConfig::default();
    let pick = |name: &str, flag: &Option<String>, file: &Option<String>, default: Duration, zero: bool| -> anyhow::Result<Duration> {
        Ok(duration(name, flag.as_deref().or(file.as_deref()), zero)?.unwrap_or(default))
    };
    let watermark = WatermarkConfig {
        allowed_lateness: pick("allowed_lateness", &args.allowed_lateness, &file.allowed_lateness, defaults.allowed_lateness, true)?,
        idle_after: pick("idle_after", &args.idle_after, &file.idle_after, defaults.idle_after, false)?,
    };
    match args.clock.as_deref().or(file.clock.as_deref()) {
        None | Some("watermark") => Ok(Clock::Watermark(watermark)),
        Some("wall") => Ok(Clock::Wall),
        Some("event") => Ok(Clock::Event),
        Some(other) => anyhow::bail!("clock must be 'watermark', 'wall' or 'event', not '{other}'"),
    }
}

/// `[kafka] dlq_topics`, checked: each entry a topic name once `{topic}` in it is replaced.
fn dlq_topics(entries: Option<&DlqTopics>) -> anyhow::Result<Vec<String>> {
    let entries = match entries {
        None => vec![causeway_server::kafka::DEFAULT_DLQ_TOPICS.to_string()],
        Some(DlqTopics::One(one)) => vec![one.clone()],
        Some(DlqTopics::Many(many)) => many.clone(),
    };
    for entry in &entries {
        if !causeway_server::kafka::is_topic_name(&entry.replace("{topic}", "t")) {
            anyhow::bail!(
                "[kafka] dlq_topics: \"{entry}\" is not a topic name: use letters, digits, '.', '_' and '-', with {{topic}} standing for \
                 each source topic (e.g. \"{{topic}}.dlq\", \"{{topic}}-dlt\") or a topic's own name"
            );
        }
    }
    Ok(entries)
}

/// The consumers replayed to a Kafka topic, each topic checked.
fn replay_topics(config: &BTreeMap<String, ConsumerConfig>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, c) in config {
        let Some(topic) = &c.replay_topic else { continue };
        if !causeway_server::kafka::is_topic_name(topic) {
            anyhow::bail!("[consumers.{name}] replay_topic \"{topic}\" is not a topic name: use letters, digits, '.', '_' and '-'");
        }
        out.insert(name.clone(), topic.clone());
    }
    Ok(out)
}

/// Checks each replay target now, so a typo fails at start-up rather than at the first replay.
fn consumers(config: BTreeMap<String, ConsumerConfig>) -> anyhow::Result<BTreeMap<String, Consumer>> {
    let mut out = BTreeMap::new();
    for (name, c) in config {
        if c.replay_url.is_some() && c.replay_topic.is_some() {
            anyhow::bail!(
                "[consumers.{name}] has both replay_url and replay_topic: a consumer's dead letters are replayed to one target, keep one of them"
            );
        }
        if let Some(target) = &c.replay_url {
            let parsed = reqwest::Url::parse(target).with_context(|| format!("[consumers.{name}] replay_url '{target}' is not a URL"))?;
            if parsed.scheme() != "http" {
                anyhow::bail!(
                    "[consumers.{name}] replay_url '{target}': replay targets are http:// URLs (put a TLS-terminating proxy in front of an https one)"
                );
            }
        }
        out.insert(name, Consumer { replay_url: c.replay_url });
    }
    Ok(out)
}

/// A size such as `256MiB`, `1GiB`, `512MB` or `1048576` (bytes).
fn bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("'{text}' is not a size such as 256MiB or 1GiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown unit '{other}' in '{text}': use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("'{text}' is too large"))
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))?;
    if let Some(store) = &file.store
        && store.url.is_some()
    {
        anyhow::bail!(
            "config file {}: [store] url configures an external store, which this version of causeway does not have yet; remove it to start",
            path.display()
        );
    }
    Ok(file)
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let config = ServerConfig::resolve(&args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let running = start(&config).await?;
        // A closed stdout does not stop a server: it goes on, logging to stderr.
        say!("causeway listening on {}", running.url());
        say!("data directory: {}", config.data.display());
        say!("{}", running.auth_line(&config.data));
        running.wait_for_shutdown_signal().await
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAUSEWAY_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// A server running in this process.
pub struct Running {
    pub addr: SocketAddr,
    /// Serving HTTPS (`--tls-cert`, `--tls-key`).
    pub tls: bool,
    pub auth: AuthMode,
    /// With auth required: the live tokens at start, or why the token file cannot be read.
    pub live_tokens: Option<Result<usize, String>>,
    /// Its audit log, whose tallies are written at shutdown.
    audit: Arc<Auth>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// What the start-up output says about tokens.
    pub fn auth_line(&self, data: &Path) -> String {
        match (self.auth, &self.live_tokens) {
            (AuthMode::Off, _) if self.addr.ip().is_loopback() => {
                "auth: off (loopback only): every client on this machine may read, write and replay".into()
            }
            (AuthMode::Off, _) => format!("auth: OFF on {} (--insecure): anyone who reaches this port may read, write and replay", self.addr),
            (AuthMode::Required, Some(Ok(0)) | None) => {
                format!("auth: required, and no token exists yet: make one with `causeway token create --role admin --data {}`", data.display())
            }
            (AuthMode::Required, Some(Ok(n))) => format!("auth: required ({} live)", crate::count(*n as u64, "token")),
            (AuthMode::Required, Some(Err(e))) => format!("auth: required, and the token file cannot be read ({e}): every token is refused"),
        }
    }
}

/// The topics the model's events name, each once.
fn model_topics(state: &AppState) -> Vec<String> {
    let Some(model) = state.model.current() else { return Vec::new() };
    let topics: std::collections::BTreeSet<String> = model.model().events.values().filter_map(|e| e.topic.clone()).collect();
    topics.into_iter().collect()
}

/// Opens the store, binds the address and starts serving.
pub async fn start(config: &ServerConfig) -> anyhow::Result<Running> {
    // Each connection takes a file: allow as many as the system lets this process have.
    let nofile = causeway_server::raise_file_limit().context("cannot read the open-file limit")?;
    let mut connection_limits = ConnectionLimits::for_file_limit(nofile);
    connection_limits.header_read_timeout = config.header_read_timeout;
    connection_limits.idle_timeout = config.idle_timeout;
    if let Some(max) = config.max_connections {
        connection_limits.max_connections = max;
    }
    tracing::info!(message = "connection limits", open_files = nofile, max_connections = connection_limits.max_connections);
    // The certificate and key are read before anything else starts: a bad file stops nothing.
    let tls = match &config.tls {
        None => None,
        Some(files) => Some(ServerTls::from_pem_files(&files.cert, &files.key)?),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // With a model, the journey engine tells retention which journeys are open once it starts.
    let settings = StoreSettings { journey_engine: config.model.is_some(), ..config.store.clone() };
    let store = Store::open_with(&config.data, &settings).with_context(|| format!("cannot open the store in {}", config.data.display()))?;
    let listener = bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let auth_mode = auth_mode(&config.auth, addr)?;
    let mut auth = Auth::open(&config.data, auth_mode, config.auth.rates.clone())
        .with_context(|| format!("cannot open the tokens and audit log in {}", config.data.display()))?;
    auth.secure_cookies = tls.is_some();
    let live_tokens = auth.live_tokens();
    let mut state =
        AppState::new(store, config.parse, config.sql).with_consumers(config.consumers.clone()).with_ingest_limits(config.ingest).with_auth(auth);
    let auth = state.auth.clone();
    {
        // Audit entries reach the disk within a second, and write tallies when their window ends.
        let auth = auth.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let auth = auth.clone();
                let _ = tokio::task::spawn_blocking(move || auth.flush(false)).await;
            }
        });
    }
    if let Some(path) = &config.model {
        let key = pii_key(config)?;
        let slot = ModelSlot::load(path, key).map_err(|diagnostics| {
            let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the model {} has errors:\n{}", path.display(), shown.join("\n"))
        })?;
        reload_on_sighup(slot.clone())?;
        state = state.with_model(slot).with_journeys(config.clock);
    }
    if let Some(nats) = &config.nats {
        let status = Arc::new(Mutex::new(SourceStatus::default()));
        state.nats = Some(status.clone());
        tokio::spawn(causeway_server::nats::run(nats.clone(), state.sink(), status));
    }
    if let Some(kafka) = &config.kafka {
        let mut kafka = kafka.clone();
        if kafka.topics.is_empty() {
            kafka.topics = model_topics(&state);
        }
        anyhow::ensure!(!kafka.topics.is_empty(), "[kafka] names no `topics` and the model gives no event a `topic`: say which topics to read");
        let status = Arc::new(Mutex::new(SourceStatus::default()));
        state.kafka = Some(status.clone());
        // Replays to Kafka go through one producer on the same brokers.
        let producer = causeway_server::kafka::producer_config(&kafka);
        let replayer = Replayer::new(config.consumers.clone()).with_kafka(&producer, kafka.replay_topics.clone());
        state.dlq = Arc::new(replayer.context("cannot create the Kafka producer for replays")?);
        tokio::spawn(causeway_server::kafka::run(kafka, state.sink(), status));
    }
    if let Some(lag) = &config.lag {
        let report = Arc::new(std::sync::RwLock::new(causeway_server::lag::LagReport::default()));
        state.lag = Some(report.clone());
        causeway_server::lag::spawn(lag.clone(), state.store.clone(), report);
    }
    // Silences are kept whether or not receivers are configured, so they are in place before any.
    let notifications = Arc::new(
        causeway_server::notify::Notifications::open(&config.data)
            .with_context(|| format!("cannot read the silences in {}", config.data.display()))?,
    );
    state = state.with_notifications(notifications.clone());
    if let Some(notify) = &config.notify {
        let external = notify.external_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
        causeway_server::notify::spawn(notify.clone(), external, notifications, &config.data, state.journeys.clone(), state.store.clone())
            .context("cannot start the notifier")?;
    }
    let connection_stats = state.connections.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served_tls = tls.is_some();
    let task = tokio::spawn(causeway_server::serve_with(listener, tls, state, connection_limits, connection_stats, async {
        let _ = stopped.await;
    }));
    Ok(Running { addr, tls: served_tls, auth: auth_mode, live_tokens, audit: auth, stop, task })
}

/// Connections waiting to be accepted; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `listen` with a deep backlog: a wave of new connections waits in it rather than having
/// its SYNs dropped (a dropped SYN costs its client a second), as a health check's might be.
async fn bind(listen: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the address resolves to nothing")))
}

/// The PII hashing key: the configured secret, else a random key created once in the data
/// directory, so equal values keep correlating across restarts.
fn pii_key(config: &ServerConfig) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.pii_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = config.data.join("pii.key");
    if let Ok(key) = std::fs::read(&path)
        && key.len() >= 32
    {
        return Ok(key);
    }
    let mut key = vec![0u8; 32];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("cannot read /dev/urandom for the PII key: set --pii-secret")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write as _;
    options
        .open(&path)
        .and_then(|mut f| f.write_all(&key).and_then(|_| f.sync_all()))
        .with_context(|| format!("cannot write the PII key {}", path.display()))?;
    Ok(key)
}

/// SIGHUP reloads the model; a model with errors is refused and the running one stays.
///
/// The handler is installed before this returns, so before the server says it listens: a SIGHUP
/// sent right after that line reloads. Installed later, in the task, such a signal took the
/// default action, or none at all where SIGHUP is ignored (under nohup), and was lost.
fn reload_on_sighup(slot: ModelSlot) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let slot = slot.clone();
                match tokio::task::spawn_blocking(move || slot.reload()).await {
                    Ok(Ok(Some(m))) => {
                        tracing::warn!(message = "model reloaded", model = %m.model().name)
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(diagnostics)) => {
                        for d in &diagnostics {
                            tracing::error!(message = "model reload refused", diagnostic = %d);
                        }
                    }
                    Err(e) => tracing::error!(message = "model reload failed", error = %e),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = slot;
    Ok(())
}

impl Running {
    /// `http://ADDR` or, with TLS, `https://ADDR`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Serves until SIGINT or SIGTERM, then drains in-flight requests.
    pub async fn wait_for_shutdown_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        self.stop().await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        let audit = self.audit;
        tokio::task::spawn_blocking(move || audit.flush(true)).await?;
        Ok(())
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::{ConfigFile, NatsAuth, bytes, kafka_client, nats_config, notify_config};
    use causeway_server::notify::Format;

    fn notify(text: &str) -> anyhow::Result<causeway_server::notify::NotifyConfig> {
        let file: ConfigFile = toml::from_str(text).unwrap();
        notify_config(file.notify.as_ref().expect("a [notify] section"))
    }

    #[test]
    fn notify_takes_receivers_with_defaults_and_refuses_mistakes_at_start() {
        let c = notify(
            "[notify]\ninterval = \"200ms\"\n[[notify.webhook]]\nurl = \"http://a/\"\n[[notify.webhook]]\nurl = \"http://b/\"\nformat = \"plain\"\n",
        )
        .unwrap();
        assert_eq!(c.interval, std::time::Duration::from_millis(200));
        assert_eq!(c.repeat_interval, std::time::Duration::from_secs(4 * 3600));
        assert_eq!(c.stall_surge, 10);
        let hooks: Vec<(&str, Format)> = c.webhooks.iter().map(|w| (w.name.as_str(), w.format)).collect();
        assert_eq!(hooks, [("webhook-1", Format::Alertmanager), ("webhook-2", Format::Plain)]);
        for (text, says) in [
            ("[notify]\n", "names no receiver"),
            ("[notify]\n[[notify.webhook]]\nurl = \"https://a/\"\n", "receivers are http:// URLs"),
            ("[notify]\n[[notify.webhook]]\nurl = \"http://a/\"\nformat = \"slack\"\n", "format must be"),
            ("[notify]\n[[notify.webhook]]\nformat = \"plain\"\n", "needs `url`"),
            (
                "[notify]\n[[notify.webhook]]\nname = \"x\"\nurl = \"http://a/\"\n[[notify.webhook]]\nname = \"x\"\nurl = \"http://b/\"\n",
                "a name of its own",
            ),
            ("[notify]\ninterval = \"0s\"\n[[notify.webhook]]\nurl = \"http://a/\"\n", "[notify] interval"),
            ("[notify]\nstall_surge = 0\n[[notify.webhook]]\nurl = \"http://a/\"\n", "stall_surge must be at least 1"),
        ] {
            let e = format!("{:#}", notify(text).unwrap_err());
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    fn nats(text: &str, env: &[(&str, &str)]) -> anyhow::Result<causeway_server::nats::NatsConfig> {
        let file: ConfigFile = toml::from_str(text).unwrap();
        nats_config(file.nats.as_ref().expect("a [nats] section"), |name| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn nats_credentials_come_from_the_file_or_the_environment_one_way_at_a_time() {
        let c = nats("[nats]\nstream = \"S\"\nuser = \"u\"\npassword = \"file\"\n", &[("CAUSEWAY_NATS_PASSWORD", "env")]).unwrap();
        assert_eq!(c.auth, NatsAuth::UserPassword { user: "u".into(), password: "env".into() });
        assert!(!format!("{c:?}").contains("env"), "the password is not shown: {c:?}");
        let c = nats("[nats]\nstream = \"S\"\nuser = \"u\"\npassword = \"file\"\n", &[]).unwrap();
        assert_eq!(c.auth, NatsAuth::UserPassword { user: "u".into(), password: "file".into() });
        let c = nats("[nats]\nstream = \"S\"\n", &[("CAUSEWAY_NATS_TOKEN", "t")]).unwrap();
        assert_eq!(c.auth, NatsAuth::Token("t".into()));
        let c = nats("[nats]\nstream = \"S\"\n", &[]).unwrap();
        assert_eq!((c.auth, c.tls_required, c.tls_ca, c.tls_client), (NatsAuth::None, false, None, None));
        for (text, env, says) in [
            ("user = \"u\"\n", vec![], "needs a password"),
            ("", vec![("CAUSEWAY_NATS_PASSWORD", "p")], "but no user"),
            ("user = \"u\"\npassword = \"p\"\n", vec![("CAUSEWAY_NATS_TOKEN", "t")], "authenticates one way"),
            ("token = \"t\"\ncreds = \"/c\"\n", vec![], "authenticates one way"),
            ("tls_key = \"/k\"\n", vec![], "tls_key needs tls_cert"),
            ("url = \"ws://h:80\"\ntls_required = true\n", vec![], "not encrypted"),
            ("creds = \"/nonexistent.creds\"\n", vec![], "[nats] creds: cannot read /nonexistent.creds"),
        ] {
            let e = format!("{:#}", nats(&format!("[nats]\nstream = \"S\"\n{text}"), &env).unwrap_err());
            assert!(e.contains(says), "{text} {env:?}: {e}");
        }
    }

    #[test]
    fn the_kafka_sasl_password_may_come_from_the_environment() {
        let file: std::collections::BTreeMap<String, String> = [("sasl.password".to_string(), "file".to_string())].into();
        assert_eq!(kafka_client(&file, |_| None)["sasl.password"], "file");
        let from_env = kafka_client(&file, |name| (name == "CAUSEWAY_KAFKA_SASL_PASSWORD").then(|| "env".to_string()));
        assert_eq!(from_env["sasl.password"], "env");
        assert!(kafka_client(&Default::default(), |_| None).is_empty());
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(bytes("256MiB"), Ok(256 << 20));
        assert_eq!(bytes("1GiB"), Ok(1 << 30));
        assert_eq!(bytes("512 MB"), Ok(512_000_000));
        assert_eq!(bytes("4096"), Ok(4096));
        assert!(bytes("MiB").unwrap_err().contains("is not a size"));
        assert!(bytes("99999999999999GiB").unwrap_err().contains("too large"));
    }
}
