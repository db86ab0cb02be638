//! The NATS JetStream source (PRODUCT §10 `[nats]`): a durable pull consumer on a stream's
//! subjects; each message mapped to an event (`causeway_envelope::parse_message`: `ce-*` headers,
//! the hand-rolled headers, or a JSON body), stored like an HTTP ingest (contracts, PII, the DLQ
//! for what is refused, with the subject and stream sequence), and acknowledged only then.
//!
//! **Invariants:** a message is acknowledged only after its event (or its refusal) is durable, so
//! a crash redelivers it and the store's identity check stores it once (at-least-once in,
//! exactly-once stored); a message that cannot be decoded is a DLQ record and does not stop the
//! stream; a fetch takes at most [`BATCH`] messages, so a slow store slows the consumer instead
//! of growing its memory.
//!
//! The connection may be TLS (a CA to trust, a client certificate, TLS required) and
//! authenticated (user and password, a token, or a `.creds` file); [`NatsConfig::check`] reads
//! every file named at start-up, so a wrong path is an error then, not a retry loop.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::PullConsumer, consumer::pull};
use causeway_envelope::parse_message;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use causeway_store::Origin;

use crate::ingest::Provenance;
use crate::source::{Delivered, Sink, SourceStatus, content_type};

/// Messages fetched, stored and acknowledged at once.
pub const BATCH: usize = 500;

/// `[nats]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    pub url: String,
    /// The JetStream stream to read; it must exist (the estate owns it).
    pub stream: String,
    /// The subject to read, as a filter (wildcards allowed); none: every subject of the stream.
    /// One filter: several need NATS 2.10, and this machine's server is older.
    pub subject: Option<String>,
    /// The durable consumer's name: causeway's position in the stream survives restarts.
    pub durable: String,
    /// CA certificates (PEM) trusted for the server's certificate, instead of the system's.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate chain and its private key (PEM), for a server that verifies clients.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Refuse to connect without TLS (a `tls://` URL requires it too).
    pub tls_required: bool,
    pub auth: NatsAuth,
}

/// How the source authenticates to the NATS server.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// A `.creds` file: a user JWT and its NKey seed.
    Creds(PathBuf),
}

/// Secrets are not shown.
impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword {{ user: {user:?}, password: \"…\" }}"),
            NatsAuth::Token(_) => f.write_str("Token(\"…\")"),
            NatsAuth::Creds(path) => write!(f, "Creds({path:?})"),
        }
    }
}

impl NatsConfig {
    /// Reads every file the configuration names and checks what it holds: the CA and client
    /// certificates, the client key, the `.creds` file. Errors name the `[nats]` key and the file.
    pub fn check(&self) -> Result<(), String> {
        use async_nats::rustls::pki_types::pem::PemObject as _;
        use async_nats::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |key: &str, path: &Path| std::fs::read(path).map_err(|e| format!("[nats] {key}: cannot read {}: {e}", path.display()));
        let certificates = |key: &str, path: &Path| -> Result<(), String> {
            let pem = read(key, path)?;
            match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(certs) if !certs.is_empty() => Ok(()),
                Ok(_) => Err(format!("[nats] {key}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())),
                Err(e) => Err(format!("[nats] {key}: {} is not valid PEM: {e}", path.display())),
            }
        };
        if let Some(ca) = &self.tls_ca {
            certificates("tls_ca", ca)?;
        }
        if let Some((cert, key)) = &self.tls_client {
            certificates("tls_cert", cert)?;
            let pem = read("tls_key", key)?;
            PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| format!("[nats] tls_key: {} holds no usable private key (PEM: PKCS#8, RSA or SEC1, unencrypted): {e}", key.display()))?;
        }
        if let NatsAuth::Creds(path) = &self.auth {
            let pem = read("creds", path)?;
            let text = String::from_utf8(pem).map_err(|_| format!("[nats] creds: {} is not a text file", path.display()))?;
            async_nats::ConnectOptions::with_credentials(&text)
                .map_err(|e| format!("[nats] creds: {} is not a NATS credentials file (a user JWT and an NKey seed): {e}", path.display()))?;
        }
        Ok(())
    }

    /// The client's options: TLS and authentication as configured.
    async fn options(&self) -> std::io::Result<async_nats::ConnectOptions> {
        let mut options = async_nats::ConnectOptions::new().name("causeway");
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.tls_required {
            options = options.require_tls(true);
        }
        Ok(match &self.auth {
            NatsAuth::None => options,
            NatsAuth::UserPassword { user, password } => options.user_and_password(user.clone(), password.clone()),
            NatsAuth::Token(token) => options.token(token.clone()),
            NatsAuth::Creds(path) => options.credentials_file(path).await?,
        })
    }
}

/// Runs the source until the server stops; errors (NATS down, no such stream) are retried every
/// few seconds and shown in `status`.
pub async fn run(config: NatsConfig, state: Sink, status: Arc<Mutex<SourceStatus>>) {
    status.lock().expect("status").state = "starting".into();
    loop {
        if let Err(e) = consume(&config, &state, &status).await {
            tracing::warn!(message = "the NATS source stopped; retrying", error = %e);
            let mut s = status.lock().expect("status");
            s.state = "retrying".into();
            s.last_error = Some(e.to_string());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn consume(config: &NatsConfig, state: &Sink, status: &Mutex<SourceStatus>) -> Result<(), async_nats::Error> {
    let client = config.options().await?.connect(&config.url).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream(&config.stream).await?;
    let consumer: PullConsumer = stream
        .get_or_create_consumer(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                ack_policy: AckPolicy::Explicit,
                filter_subject: config.subject.clone().unwrap_or_default(),
                ..Default::default()
            },
        )
        .await?;
    status.lock().expect("status").state = "consuming".into();
    loop {
        let mut batch = consumer.fetch().max_messages(BATCH).expires(Duration::from_secs(1)).messages().await?;
        let mut messages = Vec::new();
        while let Some(m) = batch.next().await {
            messages.push(m?);
        }
        if messages.is_empty() {
            continue;
        }
        let mut batch = Vec::with_capacity(messages.len());
        for m in &messages {
            let headers: Vec<(String, Vec<u8>)> = m
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .flat_map(|(name, values)| values.iter().map(move |v| (name.to_string(), v.as_str().as_bytes().to_vec())))
                .collect();
            let info = m.info()?;
            let published = DateTime::<Utc>::from_timestamp_nanos(info.published.unix_timestamp_nanos() as i64);
            let item = parse_message(&headers, &m.payload, Some(published), &state.parse);
            let origin = Origin {
                topic: Some(m.subject.to_string()),
                partition: None,
                offset: Some(info.stream_sequence as i64),
                message_time: Some(causeway_envelope::format_time(&published)),
            };
            let context = serde_json::json!({"stream": config.stream, "subject": m.subject.as_str(), "sequence": info.stream_sequence});
            batch.push(Delivered { item, content_type: content_type(&headers), from: Provenance { origin, context, key: None, headers: None } });
        }
        let done = state.store(batch).await?;
        // Durable now: acknowledge. A crash before this redelivers, and the store keeps one copy.
        for m in &messages {
            m.ack().await?;
        }
        status.lock().expect("status").stored(messages.len(), done);
    }
}
