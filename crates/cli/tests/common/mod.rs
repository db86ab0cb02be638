//! What the binary's test files share: the built binary and a `causeway serve` child process.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// A `causeway serve` child on a free port; `url` is read from its first line, so it is up.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_with(Command::new(BIN), data, extra)
    }

    /// `start`, from a command prepared by the caller (environment, resource limits).
    pub fn start_with(command: Command, data: &Path, extra: &[&str]) -> Server {
        Server::spawn(command, data, extra, Stdio::inherit())
    }

    /// `start_with`, its log (standard error) written to the file `log`.
    pub fn start_logged(command: Command, data: &Path, extra: &[&str], log: &Path) -> Server {
        Server::spawn(command, data, extra, std::fs::File::create(log).unwrap().into())
    }

    fn spawn(mut command: Command, data: &Path, extra: &[&str], stderr: Stdio) -> Server {
        let mut child =
            command.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data).args(extra).stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("the server prints its address").unwrap();
        let url = first.strip_prefix("causeway listening on ").unwrap_or_else(|| panic!("unexpected: {first}")).to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url }
    }

    /// `host:port`, for raw TCP.
    pub fn addr(&self) -> &str {
        self.url.strip_prefix("http://").expect("the server listens on http://")
    }

    /// SIGKILL, and wait for it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// An HTTP receiver (a replay target, a webhook) at `path` on a free port: answers 200 to every
/// POST, on kept-alive connections too, and hands each body over.
pub fn receiver(path: &str) -> (String, std::sync::mpsc::Receiver<Vec<u8>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut length = 0usize;
                    let mut first = String::new();
                    if reader.read_line(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send(body);
                    if stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A few hundred orders, their events spread from an hour to twenty minutes ago, in the
/// simulator's delivery order (5% of orders suffer each fault: duplicates, out-of-order
/// deliveries, a consumer failure, a missing correlation id, a producer clock behind).
pub fn traffic(seed: u64) -> Vec<serde_json::Value> {
    let now = chrono::Utc::now();
    let (mut t, end) = (now - chrono::Duration::minutes(60), now - chrono::Duration::minutes(20));
    let mut sim = causeway_sim::Simulator::new(causeway_sim::SimConfig { seed, fault_rate: 0.05, concurrency: 6 });
    let mut events = Vec::new();
    while t < end {
        events.extend(sim.next_batch(3, t).into_iter().map(|d| d.event));
        t += chrono::Duration::seconds(4);
    }
    assert!(sim.stats().orders_started >= 250, "a few hundred journeys: {:?}", sim.stats());
    events
}

/// A broker message for one simulated event, in one of four forms by `n`: CloudEvents binary
/// mode (attributes as headers named with `ce_prefix`, the data as body), structured CloudEvents,
/// the hand-rolled headers, or (for the metadata/payload shape) the JSON as it is.
pub fn broker_message(e: &serde_json::Value, n: usize, ce_prefix: &str) -> (Vec<(String, String)>, Vec<u8>) {
    use serde_json::Value;
    let mut headers = Vec::new();
    if e.get("metadata").is_some() {
        return (headers, e.to_string().into_bytes());
    }
    match n % 3 {
        0 => {
            for (name, value) in e.as_object().unwrap() {
                if name == "data" {
                    continue;
                }
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                headers.push((format!("{ce_prefix}{name}"), text));
            }
            headers.push(("content-type".into(), "application/json".into()));
            (headers, e["data"].to_string().into_bytes())
        }
        1 => {
            headers.push(("content-type".into(), "application/cloudevents+json".into()));
            (headers, e.to_string().into_bytes())
        }
        _ => {
            for (header, attribute) in [
                ("event-id", "id"),
                ("event-type", "type"),
                ("source-service", "source"),
                ("correlation-id", "correlationid"),
                ("causation-id", "causationid"),
                ("traceparent", "traceparent"),
                ("event-time", "time"),
            ] {
                if let Some(v) = e[attribute].as_str() {
                    headers.push((header.into(), v.into()));
                }
            }
            (headers, e["data"].to_string().into_bytes())
        }
    }
}

/// One HTTP answer read off a raw connection.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one answer off a raw connection (plain or TLS): its head, then its body by its length.
pub fn read_answer(c: &mut impl std::io::Read) -> Answer {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("the connection ended before an answer ({other:?}); read {:?}", String::from_utf8_lossy(&head)),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let length: usize = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0u8; length];
    c.read_exact(&mut body).unwrap();
    Answer { status, headers, body: String::from_utf8(body).unwrap() }
}

/// Waits (at most `bound`) for the server to close the connection: true if it did.
pub fn closed(c: &mut std::net::TcpStream, bound: std::time::Duration) -> bool {
    use std::io::Read as _;
    c.set_read_timeout(Some(bound)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A JSON answer to a GET.
pub fn get(url: &str) -> serde_json::Value {
    client().get(url).send().unwrap().json().unwrap()
}

/// One HTTP client for the whole test binary: building one loads the system's certificates (about
/// 65 ms here), which a test polling or posting in a loop must not pay per request.
pub fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap())
}

/// The answer of `POST /v1/sql`.
pub fn sql(url: &str, query: &str) -> serde_json::Value {
    client().post(format!("{url}/v1/sql")).json(&serde_json::json!({"query": query})).send().unwrap().json().unwrap()
}

/// Events stored, as `event_lineage` counts them.
pub fn stored(url: &str) -> u64 {
    sql(url, "SELECT count(*) FROM event_lineage")["rows"][0][0].as_u64().unwrap()
}

/// `promtool check metrics` (Debian's `prometheus` package, installed by scripts/test) accepts
/// `text` as a scrape.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool check metrics:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
