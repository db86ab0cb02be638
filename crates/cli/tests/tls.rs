//! TLS against the built binary, with a CA and certificates made at test time (rcgen):
//! `causeway serve --tls-cert --tls-key` answers HTTPS to a client that trusts the CA (health,
//! ingest, SQL), answers plain HTTP on its port with `400` and a sentence, fails the handshake of a
//! client that does not trust the CA, closes a connection that sends nothing (or stalls
//! mid-handshake) after the header-read timeout, and refuses to start on one file alone or on a
//! file that is not what it should be. The NATS source reaches a second `nats-server` (TLS with
//! client certificates, user and password; started here on a free port) and stores its events; a
//! wrong password leaves it retrying with the server's answer on `/readyz`. The Kafka source's
//! `[kafka.client]` security properties reach the source's consumer, the replay producer and the
//! lag monitor (librdkafka's mock cluster, which speaks neither TLS nor SASL, shows it), and
//! `sasl.password` may come from the environment.

mod common;

use std::io::{BufRead as _, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Answer, BIN, Server, closed, read_answer};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

/// The most any wait below may take: far above every timeout configured.
const BOUND: Duration = Duration::from_secs(30);

/// A CA, a server certificate for 127.0.0.1 and localhost and a client certificate signed by it,
/// and a second CA that signed nothing here; each as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca_params = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            p
        };
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params("causeway test CA").self_signed(&ca_key).unwrap();
        let ca = write("ca.pem", ca_cert.pem());
        let other_key = KeyPair::generate().unwrap();
        let other_ca = write("other-ca.pem", ca_params("another CA").self_signed(&other_key).unwrap().pem());
        let issuer = Issuer::new(ca_params("causeway test CA"), ca_key);
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            (p.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
        };
        let (cert, key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth, "causeway test server");
        let (server_cert, server_key) = (write("server.pem", cert), write("server.key", key));
        let (cert, key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, "causeway test client");
        let (client_cert, client_key) = (write("client.pem", cert), write("client.key", key));
        Pki { dir, ca, other_ca, server_cert, server_key, client_cert, client_key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A TLS client configuration trusting the CA certificates of `ca` (a PEM file) only.
fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    // The process's provider: ring, the one rustls is built with here.
    Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr` as `name`, handshake done; the handshake's error otherwise.
fn tls_connect(addr: &str, name: &str, ca: &Path) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(BOUND))?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(client_config(ca), name).unwrap();
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// One request over a new TLS connection that trusts `ca`.
fn https(addr: &str, ca: &Path, method: &str, path: &str, body: Option<(&str, &str)>) -> Answer {
    let mut c = tls_connect(addr, "127.0.0.1", ca).unwrap();
    let request = match body {
        None => format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        Some((content_type, body)) => format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    };
    c.write_all(request.as_bytes()).unwrap();
    c.flush().unwrap();
    read_answer(&mut c)
}

fn event(id: &str) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"test","type":"T","time":"2026-01-01T00:00:00Z","correlationid":"c-{id}"}}"#)
}

/// `host:port` of a server started with TLS, checked to say https:// on its first line.
fn tls_addr(server: &Server) -> &str {
    server.url.strip_prefix("https://").unwrap_or_else(|| panic!("a TLS server says https://, not {}", server.url))
}

#[test]
fn https_serves_health_and_ingest_and_refuses_plain_http_unknown_cas_and_silence() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let args = ["--tls-cert", s(&pki.server_cert), "--tls-key", s(&pki.server_key), "--header-read-timeout-ms", "300"];
    let server = Server::start(dir.path(), &args);
    let addr = tls_addr(&server);

    // A client that trusts the CA: health, ingest and a query over HTTPS.
    assert_eq!(https(addr, &pki.ca, "GET", "/healthz", None).status, 200);
    let ingest = https(addr, &pki.ca, "POST", "/v1/events", Some(("application/cloudevents+json", &event("tls-1"))));
    assert_eq!(ingest.status, 200, "{ingest:?}");
    let query = https(addr, &pki.ca, "POST", "/v1/sql", Some(("application/json", r#"{"query":"SELECT event_id FROM event_lineage"}"#)));
    assert_eq!(query.status, 200, "{query:?}");
    let rows: Value = serde_json::from_str(&query.body).unwrap();
    assert_eq!(rows["rows"], json!([["tls-1"]]), "{rows}");
    // The CLI's verbs reach it with the CA trusted (--ca-cert), and refuse it without.
    let url = format!("https://{addr}");
    let verb = |extra: &[&str]| Command::new(BIN).args(["sql", "SELECT event_id FROM event_lineage", "--server", &url]).args(extra).output().unwrap();
    let trusted = verb(&["--ca-cert", s(&pki.ca), "--json"]);
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("tls-1"));
    let untrusted = verb(&[]);
    assert!(!untrusted.status.success());
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("certificate"), "{}", String::from_utf8_lossy(&untrusted.stderr));
    // The name in the certificate is checked: localhost is in it too.
    let mut by_name = tls_connect(addr, "localhost", &pki.ca).unwrap();
    by_name.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut by_name).status, 200);

    // Plain HTTP on the TLS port: no 200, a sentence that says to use https://.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.set_read_timeout(Some(BOUND)).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let answer = read_answer(&mut plain);
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("https://"), "{answer:?}");
    assert!(closed(&mut plain, BOUND));

    // A client that does not trust the CA fails the handshake.
    let untrusted = tls_connect(addr, "127.0.0.1", &pki.other_ca).map(|_| ()).unwrap_err();
    assert!(untrusted.to_string().contains("UnknownIssuer") || untrusted.to_string().contains("invalid peer certificate"), "{untrusted}");
    // And a certificate for another name does not pass for this one.
    let wrong_name = tls_connect(addr, "example.org", &pki.ca).map(|_| ()).unwrap_err();
    assert!(wrong_name.to_string().contains("not valid for name"), "{wrong_name}");

    // A connection that sends nothing is closed after the header-read timeout, and so is one whose
    // handshake stops after a record header.
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    assert!(closed(&mut silent, BOUND), "a silent connection to the TLS port stays open");
    assert!(closed(&mut stalled, BOUND), "a connection stalled in its handshake stays open");
    // Both are counted as timed out; the server serves on.
    let metrics = https(addr, &pki.ca, "GET", "/metrics", None);
    let timed_out = metrics.body.lines().find_map(|l| l.strip_prefix("causeway_connections_closed_total{reason=\"timed_out\"} "));
    assert!(timed_out.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 2), "{}", metrics.body);
}

/// Runs `causeway serve` expecting it to refuse to start; returns what it said on stderr.
fn refused(env: &[(&str, &str)], args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("causeway serve {args:?} started; it should have refused");
        }
        // Paces the check; what is awaited is the process's exit.
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success(), "{args:?}: {stderr}");
    stderr
}

#[test]
fn tls_files_are_both_given_and_read_at_start() {
    let pki = Pki::new();
    let (cert, key) = (s(&pki.server_cert), s(&pki.server_key));
    for (env, args, says) in [
        (vec![], vec!["--tls-cert", cert], "add --tls-key FILE"),
        (vec![("CAUSEWAY_TLS_KEY", key)], vec![], "add --tls-cert FILE"),
        (vec![], vec!["--tls-cert", "/nonexistent/cert.pem", "--tls-key", key], "cannot read the TLS certificate file /nonexistent/cert.pem"),
        (vec![], vec!["--tls-cert", cert, "--tls-key", "/nonexistent/key.pem"], "cannot read the TLS key file /nonexistent/key.pem"),
        (vec![], vec!["--tls-cert", cert, "--tls-key", cert], "holds no private key"),
        (vec![], vec!["--tls-cert", key, "--tls-key", key], "holds no certificate"),
        (vec![], vec!["--tls-cert", cert, "--tls-key", s(&pki.client_key)], "do not make a usable pair"),
    ] {
        let said = refused(&env, &args);
        assert!(said.contains(says), "{env:?} {args:?}: {said}");
    }
    // The config file's keys, under the flags: a flag given alone still needs its pair.
    let config = pki.path("causeway.toml");
    std::fs::write(&config, format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\"\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--config", s(&config)]);
    assert_eq!(https(tls_addr(&server), &pki.ca, "GET", "/healthz", None).status, 200);
    let said = refused(&[], &["--config", s(&config), "--tls-key", "/nonexistent/key.pem"]);
    assert!(said.contains("/nonexistent/key.pem"), "{said}");
}

/// A `nats-server` of the test's own (JetStream, TLS with client certificates from `pki`, one
/// user), on a free port; killed when dropped.
struct NatsServer {
    child: Child,
    url: String,
}

impl NatsServer {
    fn start(pki: &Pki, user: &str, password: &str) -> NatsServer {
        let store = pki.path("jetstream");
        let config = pki.path("nats.conf");
        std::fs::write(
            &config,
            format!(
                "host: \"127.0.0.1\"\nport: -1\njetstream {{\n  store_dir: \"{}\"\n}}\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  \
                 verify: true\n  timeout: 5\n}}\nauthorization {{\n  user: \"{user}\"\n  password: \"{password}\"\n}}\n",
                s(&store),
                s(&pki.server_cert),
                s(&pki.server_key),
                s(&pki.ca)
            ),
        )
        .unwrap();
        let mut child = Command::new("nats-server")
            .args(["-js", "-c", s(&config)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server (Debian's nats-server package)");
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut server = NatsServer { child, url: String::new() };
        // Its log says where it listens, then that it is ready.
        let mut log = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some((_, at)) = line.split_once("Listening for client connections on ") {
                server.url = format!("nats://{}", at.trim());
            }
            let ready = line.contains("Server is ready");
            log.push(line);
            if ready {
                break;
            }
        }
        assert!(server.url.starts_with("nats://127.0.0.1:"), "nats-server did not start:\n{}", log.join("\n"));
        std::thread::spawn(move || for _ in lines {});
        server
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` (paced, at most `BOUND`): what is awaited is what it reads from the server.
fn wait_until(what: &str, url: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + BOUND;
    loop {
        let ready = common::get(&format!("{url}/readyz"));
        if done(&ready) {
            return ready;
        }
        assert!(Instant::now() < deadline, "{what}: {ready}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_nats_source_connects_with_tls_and_a_password_and_a_wrong_password_is_shown() {
    let pki = Pki::new();
    let password = "correct horse battery staple";
    let nats = NatsServer::start(&pki, "causeway", password);

    // A stream, and some events published on it by a client with the same credentials.
    let events: Vec<Value> = (0..25).map(|i| serde_json::from_str(&event(&format!("nats-tls-{i}"))).unwrap()).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .add_root_certificates(pki.ca.clone())
            .add_client_certificate(pki.client_cert.clone(), pki.client_key.clone())
            .user_and_password("causeway".into(), password.into())
            .connect(&nats.url)
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config { name: "TLSTEST".into(), subjects: vec!["tlstest.>".into()], ..Default::default() })
            .await
            .unwrap();
        for e in &events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("content-type", "application/cloudevents+json");
            js.publish_with_headers("tlstest.orders", headers, e.to_string().into()).await.unwrap().await.unwrap();
        }
    });

    // The password from the environment, the rest from the file.
    let config = pki.path("causeway.toml");
    std::fs::write(
        &config,
        format!(
            "[nats]\nurl = \"{}\"\nstream = \"TLSTEST\"\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_required = true\nuser = \"causeway\"\n",
            nats.url,
            s(&pki.ca),
            s(&pki.client_cert),
            s(&pki.client_key)
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command.env("CAUSEWAY_NATS_PASSWORD", password);
    let server = Server::start_with(command, data.path(), &["--config", s(&config)]);
    let ready = wait_until("the NATS source stored nothing", &server.url, |r| r["events"] == events.len());
    assert_eq!(ready["nats"]["state"], "consuming", "{ready}");
    assert_eq!(common::stored(&server.url), events.len() as u64);
    drop(server);

    // A wrong password: the source retries, and says why.
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command.env("CAUSEWAY_NATS_PASSWORD", "wrong");
    let server = Server::start_with(command, data.path(), &["--config", s(&config)]);
    let ready = wait_until("the source does not say it was refused", &server.url, |r| {
        r["nats"]["state"] == "retrying" && r["nats"]["last_error"].as_str().is_some_and(|e| e.contains("authorization violation"))
    });
    assert_eq!(ready["events"], 0, "{ready}");
    drop(server);

    // Without the client certificate the server, which verifies clients, refuses the handshake.
    let no_client_cert = pki.path("no-client-cert.toml");
    std::fs::write(
        &no_client_cert,
        format!(
            "[nats]\nurl = \"{}\"\nstream = \"TLSTEST\"\ntls_ca = \"{}\"\nuser = \"causeway\"\npassword = \"{password}\"\n",
            nats.url,
            s(&pki.ca)
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--config", s(&no_client_cert)]);
    let ready = wait_until("the source does not retry without its certificate", &server.url, |r| {
        r["nats"]["state"] == "retrying" && r["nats"]["last_error"].is_string()
    });
    assert_eq!(ready["events"], 0, "{ready}");

    // Mistakes in [nats] are refused at start, with what to change.
    let mistakes = [
        ("user = \"causeway\"\n", "needs a password"),
        ("password = \"p\"\n", "but no user"),
        ("user = \"u\"\npassword = \"p\"\ntoken = \"t\"\n", "authenticates one way"),
        ("tls_cert = \"/x.pem\"\n", "tls_cert needs tls_key"),
        ("tls_ca = \"/nonexistent/ca.pem\"\n", "[nats] tls_ca: cannot read /nonexistent/ca.pem"),
        (&format!("tls_ca = \"{}\"\n", s(&pki.server_key)), "holds no PEM certificate"),
        (&format!("creds = \"{}\"\n", s(&pki.ca)), "is not a NATS credentials file"),
    ];
    for (keys, says) in mistakes {
        let config = pki.path("mistake.toml");
        std::fs::write(&config, format!("[nats]\nstream = \"TLSTEST\"\n{keys}")).unwrap();
        let said = refused(&[], &["--config", s(&config)]);
        assert!(said.contains(says), "{keys}: {said}");
    }
}

#[test]
fn kafka_security_properties_reach_the_source_the_replay_producer_and_the_lag_monitor() {
    use rdkafka::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let pki = Pki::new();
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    cluster.create_topic("__consumer_offsets", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let (headers, body) = common::broker_message(&serde_json::from_str(&event("kafka-tls-1")).unwrap(), 1, "ce_");
    let mut kafka_headers = rdkafka::message::OwnedHeaders::new();
    for (name, value) in &headers {
        kafka_headers = kafka_headers.insert(rdkafka::message::Header { key: name, value: Some(value) });
    }
    producer.send(BaseRecord::to("orders").key("k").payload(&body).headers(kafka_headers)).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    // With `replay`, a consumer whose dead letters are replayed to a topic: the replay producer is
    // made at start.
    let config_with = |client: &str, replay: bool| {
        let path = pki.path(if replay { "kafka-replay.toml" } else { "kafka.toml" });
        let consumers = if replay { "[consumers.notifier]\nreplay_topic = \"replays\"\n" } else { "" };
        let text = format!("{consumers}[kafka]\nbrokers = \"{brokers}\"\ntopics = [\"orders\"]\n[lag]\ninterval = \"1s\"\n[kafka.client]\n{client}");
        std::fs::write(&path, text).unwrap();
        path
    };
    let config = |client: &str| config_with(client, false);
    let lag = |url: &str| common::get(&format!("{url}/v1/lag"));

    // TLS towards a broker that speaks plain Kafka: the source's handshake fails and it says so,
    // the lag monitor cannot read the brokers, and nothing is consumed.
    let tls = config(&format!("\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"{}\"\n", s(&pki.ca)));
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--config", s(&tls)]);
    let ready = wait_until("the Kafka source reports no TLS failure", &server.url, |r| {
        r["kafka"]["last_error"].as_str().is_some_and(|e| e.to_ascii_lowercase().contains("ssl"))
    });
    assert_eq!(ready["events"], 0, "{ready}");
    assert_eq!(ready["kafka"]["messages"], 0, "{ready}");
    let deadline = Instant::now() + BOUND;
    while lag(&server.url)["last_error"].is_null() {
        assert!(Instant::now() < deadline, "the lag monitor reports no failure: {}", lag(&server.url));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(lag(&server.url)["state"], "watching");
    drop(server);

    // The same brokers without the property: the event is stored and the lag monitor watches.
    let plain = config("");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--config", s(&plain)]);
    wait_until("the plain Kafka source stored nothing", &server.url, |r| r["events"] == 1);
    let deadline = Instant::now() + BOUND;
    while lag(&server.url)["state"] != "watching" {
        assert!(Instant::now() < deadline, "the lag monitor does not watch: {}", lag(&server.url));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);

    // A CA file that is not there: refused at start, naming it. One that is not a CA certificate:
    // librdkafka refuses to make the client. The replay producer is made at start, so the server
    // does not start; the source and the lag monitor say so and retry.
    let missing_ca = config("\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"/nonexistent/ca.pem\"\n");
    let said = refused(&[], &["--config", s(&missing_ca)]);
    assert!(said.contains("[kafka.client] \"ssl.ca.location\": cannot read /nonexistent/ca.pem"), "{said}");
    let not_a_ca = format!("\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"{}\"\n", s(&pki.server_key));
    let said = refused(&[], &["--config", s(&config_with(&not_a_ca, true))]);
    assert!(said.contains("producer for replays") && said.contains("ssl.ca.location"), "{said}");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--config", s(&config(&not_a_ca))]);
    let ready = wait_until("the source does not say its CA file is not one", &server.url, |r| {
        r["kafka"]["state"] == "retrying" && r["kafka"]["last_error"].as_str().is_some_and(|e| e.contains("ssl.ca.location"))
    });
    assert_eq!(ready["events"], 0, "{ready}");
    let deadline = Instant::now() + BOUND;
    while !lag(&server.url)["last_error"].as_str().is_some_and(|e| e.contains("ssl.ca.location")) {
        assert!(Instant::now() < deadline, "the lag monitor does not say its CA file is not one: {}", lag(&server.url));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);

    // SASL: a user without a password is refused by librdkafka; the password may come from the
    // environment, and then the clients are made and try SASL, which the mock broker does not speak.
    let sasl = "\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanisms\" = \"PLAIN\"\n\"sasl.username\" = \"causeway\"\n";
    let said = refused(&[], &["--config", s(&config_with(sasl, true))]);
    assert!(said.contains("sasl.username and sasl.password must be set"), "{said}");
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command.env("CAUSEWAY_KAFKA_SASL_PASSWORD", "secret");
    let server = Server::start_with(command, data.path(), &["--config", s(&config_with(sasl, true))]);
    let ready = wait_until("the SASL source reports no failure", &server.url, |r| r["kafka"]["last_error"].is_string());
    assert_eq!(ready["events"], 0, "{ready}");
    let error = ready["kafka"]["last_error"].as_str().unwrap();
    assert!(!error.contains("sasl.password must be set"), "{error}");
}
