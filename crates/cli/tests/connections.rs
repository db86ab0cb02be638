//! Connections against the built binary: the header-read and idle timeouts, the connection cap
//! (the longest-idle connections make room; past the cap with every connection busy, health is
//! still served), the open-file limit, and ingest's 503 and 408 under load. Timeouts are set short;
//! every wait is on something the client can see (an answer, a closed socket), with a generous
//! upper bound.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Answer, BIN, Server, closed, read_answer};

/// The most any wait below may take: far above every timeout configured.
const BOUND: Duration = Duration::from_secs(20);

/// Raw HTTP/1.1 over TCP, to control exactly what a connection sends and when.
trait RawHttp {
    fn connect(&self) -> TcpStream;
    /// One request on a new connection.
    fn get(&self, path: &str) -> Answer;
}

impl RawHttp for Server {
    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr()).unwrap();
        stream.set_read_timeout(Some(BOUND)).unwrap();
        stream
    }

    fn get(&self, path: &str) -> Answer {
        let mut c = self.connect();
        send(&mut c, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        read_answer(&mut c)
    }
}

fn send(c: &mut TcpStream, text: &str) {
    c.write_all(text.as_bytes()).unwrap();
}

/// True while the server has not closed the connection (looked at without waiting).
fn open(c: &TcpStream) -> bool {
    c.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let result = c.peek(&mut buf);
    c.set_nonblocking(false).unwrap();
    matches!(result, Err(ref e) if e.kind() == ErrorKind::WouldBlock)
}

fn event(id: &str) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"test","type":"T","time":"2026-01-01T00:00:00Z","correlationid":"c-{id}"}}"#)
}

/// Starts an ingest request whose body is `length` bytes, sends `part` of it, and returns once
/// the server reads the body (it answers `100 Continue`): from then on the request is in progress.
fn ingest_in_progress(server: &Server, length: usize, part: &str) -> TcpStream {
    let mut c = server.connect();
    send(
        &mut c,
        &format!(
            "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        ),
    );
    let interim = read_answer(&mut c);
    assert_eq!(interim.status, 100, "{interim:?}");
    send(&mut c, part);
    c
}

fn post_event(c: &mut TcpStream, id: &str) -> Answer {
    let body = event(id);
    send(
        c,
        &format!("POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/cloudevents+json\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
    );
    read_answer(c)
}

#[test]
fn a_connection_that_sends_no_head_in_time_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--header-read-timeout-ms", "300"]);
    // Nothing sent at all.
    let mut silent = server.connect();
    assert!(open(&silent));
    assert!(closed(&mut silent, BOUND), "a silent connection stays open");
    // A head that never ends, one header line at a time (slowloris): closed while it still sends.
    let mut slow = server.connect();
    send(&mut slow, "GET /healthz HTTP/1.1\r\nHost: t\r\n");
    let started = Instant::now();
    let mut lines = 0;
    while open(&slow) && started.elapsed() < BOUND {
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break;
        }
        lines += 1;
        // Paces the client only; what is awaited is the server closing the connection.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() < BOUND, "a head trickled line by line kept the connection for {lines} lines");
    // A head that arrives in time is answered.
    assert_eq!(server.get("/healthz").status, 200);
    // Both closings are counted on /metrics.
    let metrics = server.get("/metrics");
    let timed_out = metrics.body.lines().find_map(|l| l.strip_prefix("causeway_connections_closed_total{reason=\"timed_out\"} "));
    assert!(timed_out.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 2), "{}", metrics.body);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_and_a_stalled_body_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--idle-timeout-ms", "400", "--header-read-timeout-ms", "20000"]);
    let mut c = server.connect();
    assert_eq!(post_event(&mut c, "k1").status, 200);
    // Kept alive: the next request on the same connection is answered.
    assert_eq!(post_event(&mut c, "k2").status, 200);
    assert!(closed(&mut c, BOUND), "an idle keep-alive connection stays open");
    // A body that stops arriving: the server waits on the client, then closes.
    let mut stalled = ingest_in_progress(&server, 1000, "{\"specversion\"");
    assert!(closed(&mut stalled, BOUND), "a connection whose body stalled stays open");
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn at_the_cap_the_longest_idle_connections_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-connections", "20", "--header-read-timeout-ms", "60000", "--idle-timeout-ms", "60000"]);
    let idle: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
    // Health checks and ingest are answered on new connections, one after another.
    for i in 0..20 {
        assert_eq!(server.get("/healthz").status, 200);
        assert_eq!(server.get("/readyz").status, 200);
        let mut c = server.connect();
        assert_eq!(post_event(&mut c, &format!("cap-{i}")).status, 200);
    }
    // The oldest idle connections were closed to make room (no timeout is near).
    let mut idle = idle;
    for (i, c) in idle.iter_mut().take(150).enumerate() {
        assert!(closed(c, BOUND), "idle connection {i} of 200 is still open with a cap of 20");
    }
}

#[test]
fn past_the_cap_with_every_connection_busy_health_is_served_and_ingest_told_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--max-connections", "3", "--header-read-timeout-ms", "60000", "--idle-timeout-ms", "60000", "--body-read-timeout-ms", "60000"],
    );
    let mut busy: Vec<TcpStream> = (0..3).map(|_| ingest_in_progress(&server, 1000, "{")).collect();
    // Health, readiness and metrics: answered, once per connection.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let mut c = server.connect();
        send(&mut c, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let answer = read_answer(&mut c);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{path}");
        assert!(closed(&mut c, BOUND));
    }
    // Anything else: 503 with Retry-After, and the connection closes.
    let mut c = server.connect();
    let answer = post_event(&mut c, "past-cap");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("too_many_connections"), "{}", answer.body);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(closed(&mut c, BOUND));
    // A busy connection finishes its request: it is idle now, and makes room for a new one.
    let rest = format!("{}{}", &event("b0")[1..], " ".repeat(1000 - event("b0").len()));
    send(&mut busy[0], &rest);
    assert_eq!(read_answer(&mut busy[0]).status, 200);
    let mut c = server.connect();
    assert_eq!(post_event(&mut c, "after-room").status, 200);
    assert!(closed(&mut busy[0], BOUND), "the idle connection was not closed to make room");
}

#[test]
fn past_the_overflow_slots_a_connection_is_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-connections", "1", "--header-read-timeout-ms", "60000", "--body-read-timeout-ms", "60000"]);
    let _busy = ingest_in_progress(&server, 1000, "{");
    // Connections past the cap wait at most 2 s for their one request: a try whose connections
    // took longer than that to open proves nothing, and is made again.
    for _ in 0..3 {
        let started = Instant::now();
        let overflow: Vec<TcpStream> = (0..64).map(|_| server.connect()).collect();
        let mut refused = server.connect();
        assert!(closed(&mut refused, BOUND), "the 65th connection past the cap was kept");
        if started.elapsed() < Duration::from_millis(1500) {
            assert!(overflow.iter().all(open), "a connection past the cap was closed before its time");
            return;
        }
        for mut c in overflow {
            assert!(closed(&mut c, BOUND));
        }
    }
    panic!("could not open 65 connections within 1.5 s in three tries");
}

#[test]
fn ingest_past_its_buffer_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-request-bytes", "2000", "--ingest-buffer-bytes", "2000", "--ingest-wait-ms", "200"]);
    // A request of the largest size holds the whole buffer while its body arrives.
    let body = format!("{}{}", event("big"), " ".repeat(2000 - event("big").len()));
    let mut big = ingest_in_progress(&server, 2000, &body[..10]);
    let mut c = server.connect();
    let answer = post_event(&mut c, "small");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("overloaded"), "{}", answer.body);
    assert!(answer.body.contains("--ingest-buffer-bytes"), "{}", answer.body);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(answer.header("connection"), Some("close"));
    // Nothing of the refused request was stored.
    assert_eq!(server.get("/v1/events/small").status, 404);
    // The big one finishes; then there is room again.
    send(&mut big, &body[10..]);
    assert_eq!(read_answer(&mut big).status, 200);
    let mut c = server.connect();
    assert_eq!(post_event(&mut c, "small").status, 200);
}

#[test]
fn a_body_slower_than_its_time_limit_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--body-read-timeout-ms", "300", "--idle-timeout-ms", "60000"]);
    let mut c = ingest_in_progress(&server, 1000, "{\"specversion\"");
    let answer = read_answer(&mut c);
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.body.contains("body_timeout"), "{}", answer.body);
    assert!(closed(&mut c, BOUND));
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn the_server_raises_its_open_file_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    use std::os::unix::process::CommandExt as _;
    // SAFETY: getrlimit/setrlimit only, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = limit.rlim_max.min(256);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
    let server = Server::start_with(command, dir.path(), &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit not raised: {line}");
    assert_eq!(server.get("/healthz").status, 200);
}
