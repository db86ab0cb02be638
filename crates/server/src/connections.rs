//! Serving connections: the accept loop, the connection cap and the timeouts.
//!
//! **Invariants:**
//! - No connection is kept by a client that sends nothing: a request head must arrive within
//!   `header_read_timeout` of the connection opening (or of its first byte after an idle spell), a
//!   kept-alive connection with no request is closed after `idle_timeout`, and so is one on which
//!   the server waits for a request body's next bytes, or for room to write its answer, for that
//!   long.
//! - At most `max_connections` connections are served as usual. At the cap, a new connection
//!   closes the longest-idle ones (no request in progress) to make room; when every connection is
//!   busy it is served one request with a short timeout and `Connection: close` — health, readiness
//!   and metrics as usual, everything else `503 too_many_connections` with `Retry-After` — and past
//!   [`OVERFLOW_CONNECTIONS`] of those it is closed at once. So idle connections, however many,
//!   cannot keep `/healthz` or ingest from being answered.
//! - An accept that fails for want of file descriptors is retried after a short pause, never in a
//!   busy loop.
//! - With TLS (`--tls-cert`, `--tls-key`), the handshake counts against the same head deadline: a
//!   client that opens a connection and sends nothing, or stalls mid-handshake, is closed when a
//!   plain one would be; a connection in its handshake is idle for the cap (it can be closed to
//!   make room). Plain HTTP on a TLS port is answered `400` with a sentence, then closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject as _};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt as _;

use crate::error::ApiError;

/// Default of [`ConnectionLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ConnectionLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served past the cap at once (one request each); beyond them a connection is closed
/// as soon as it is accepted.
pub const OVERFLOW_CONNECTIONS: usize = 64;
/// The head and idle timeout of a connection past the cap (or `header_read_timeout` if shorter).
pub const OVERFLOW_TIMEOUT: Duration = Duration::from_secs(2);
/// The derived default cap never exceeds this (an idle connection costs memory as well as a file).
pub const MAX_DEFAULT_CONNECTIONS: usize = 65_536;
/// Paths answered as usual on a connection past the cap.
const OVERFLOW_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
/// Pause after an accept failed for want of resources (file descriptors, memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// Least time between two warnings about the cap or failed accepts.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The connection cap and timeouts (`--max-connections`, `--header-read-timeout-ms`,
/// `--idle-timeout-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served as usual at once.
    pub max_connections: usize,
    /// The most time a request head may take to arrive, from the connection's opening or from its
    /// first byte after an idle spell.
    pub header_read_timeout: Duration,
    /// The most time a connection stays open with no request in progress, or with the server
    /// waiting on the client (body bytes to read, room to write).
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// The defaults for a process allowed `nofile` open files.
    pub fn for_file_limit(nofile: u64) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: default_max_connections(nofile),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The default cap for a process allowed `nofile` open files: the limit less a sixteenth of it (at
/// least 384) kept for the store's files, logs, outgoing replays and connections past the cap;
/// at least 16 and at most [`MAX_DEFAULT_CONNECTIONS`].
pub fn default_max_connections(nofile: u64) -> usize {
    let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
    let reserve = (nofile / 16).max(384);
    nofile.saturating_sub(reserve).clamp(16, MAX_DEFAULT_CONNECTIONS)
}

/// Raises the soft limit on open files to the hard limit, and returns the limit in force.
pub fn raise_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// What the connection layer did, since the server started.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now, served as usual.
    pub open: AtomicUsize,
    /// Connections open now past the cap (one request each).
    pub overflow: AtomicUsize,
    /// Idle connections closed to make room at the cap.
    pub evicted: AtomicU64,
    /// Connections closed at once: past the cap and past the overflow slots.
    pub refused: AtomicU64,
    /// Connections closed by a timeout.
    pub timed_out: AtomicU64,
}

/// TLS on the listener: a certificate chain and its private key, read once at start-up.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// Why the certificate or key could not be used; each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} file {}: {error}", path.display())]
    Read { what: &'static str, path: PathBuf, error: io::Error },
    #[error("the TLS certificate file {} is not valid PEM: {error}", path.display())]
    CertPem { path: PathBuf, error: pem::Error },
    #[error("the TLS certificate file {} holds no certificate: give the server's certificate (and the intermediates after it) as PEM, \
             each between -----BEGIN CERTIFICATE----- and -----END CERTIFICATE-----", path.display())]
    NoCert { path: PathBuf },
    #[error("the TLS key file {} is not valid PEM: {error}", path.display())]
    KeyPem { path: PathBuf, error: pem::Error },
    #[error("the TLS key file {} holds no private key: give it as PEM (PKCS#8 \"BEGIN PRIVATE KEY\", RSA \"BEGIN RSA PRIVATE KEY\" \
             or SEC1 \"BEGIN EC PRIVATE KEY\"), unencrypted", path.display())]
    NoKey { path: PathBuf },
    #[error("the TLS key file {} and certificate file {} do not make a usable pair: {error}", key.display(), cert.display())]
    Pair { cert: PathBuf, key: PathBuf, error: rustls::Error },
}

impl ServerTls {
    /// Reads a PEM certificate chain (the server's certificate first) and a PEM private key
    /// (PKCS#8, RSA or SEC1), and checks that they go together. Serves TLS 1.3 and 1.2 with
    /// rustls' safe defaults, HTTP/1.1 by ALPN.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let read = |what, path: &Path| std::fs::read(path).map_err(|error| TlsError::Read { what, path: path.to_path_buf(), error });
        let cert_pem = read("certificate", cert)?;
        let key_pem = read("key", key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::CertPem { path: cert.to_path_buf(), error })?;
        if chain.is_empty() {
            return Err(TlsError::NoCert { path: cert.to_path_buf() });
        }
        let private = match PrivateKeyDer::from_pem_slice(&key_pem) {
            Ok(k) => k,
            Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey { path: key.to_path_buf() }),
            Err(error) => return Err(TlsError::KeyPem { path: key.to_path_buf(), error }),
        };
        let pair = |error| TlsError::Pair { cert: cert.to_path_buf(), key: key.to_path_buf(), error };
        // ring, the provider async-nats already builds (aws-lc-rs, which rustls now prefers for its
        // post-quantum key exchange, would build a second cryptography library); named here rather
        // than left to the process default, so that no other crate's choice changes it.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(pair)?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(pair)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls { acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets requests in
/// progress finish (idle connections close at once) and returns when every connection is closed.
/// With `tls`, every connection is a TLS one.
pub async fn serve_connections(
    listener: TcpListener,
    tls: Option<ServerTls>,
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        limits,
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        evicting: AtomicUsize::new(0),
        stats,
        last_warning: Mutex::new(None),
    });
    // Every connection holds a receiver: a change asks it to finish; the sender's `closed()`
    // resolves once the last one has ended.
    let (close_tx, close_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                registry.warn(|| tracing::warn!(message = "accept failed; retrying shortly", error = %e));
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        match registry.admit() {
            Admission::Normal(id, activity) => {
                let conn = Conn { registry: registry.clone(), id, activity, overflow: false };
                tokio::spawn(conn.run(stream, tls.clone(), router.clone(), close_rx.clone()));
            }
            Admission::Overflow(id, activity) => {
                let conn = Conn { registry: registry.clone(), id, activity, overflow: true };
                tokio::spawn(conn.run(stream, tls.clone(), router.clone(), close_rx.clone()));
            }
            Admission::Refuse => drop(stream),
        }
    }
    drop(listener);
    let _ = close_tx.send(());
    drop(close_rx);
    close_tx.closed().await;
    Ok(())
}

/// Accept errors that concern one connection only (it was reset before it was accepted).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
}

/// The phase a connection is in, for its timeouts.
const HEAD: u8 = 0;
const IDLE: u8 = 1;
const BUSY: u8 = 2;

/// What a connection is doing, shared between its IO, its requests, its task and the registry.
/// Times are milliseconds since the registry's epoch; a stored 0 means "none" where noted.
struct Activity {
    phase: AtomicU8,
    /// When the phase began.
    since: AtomicU64,
    /// 1 + when the handler began waiting for request body bytes; 0 when it is not waiting.
    body_wait: AtomicU64,
    /// 1 + when a write found no room in the socket; 0 when the last write went through.
    write_wait: AtomicU64,
    /// Asked to close by the registry, to make room at the cap.
    evict: AtomicBool,
    /// Woken on a change that may bring a deadline forward.
    wake: Notify,
}

impl Activity {
    fn new(now: u64) -> Activity {
        Activity {
            phase: AtomicU8::new(HEAD),
            since: AtomicU64::new(now),
            body_wait: AtomicU64::new(0),
            write_wait: AtomicU64::new(0),
            evict: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// When the connection is to be closed, if nothing happens before.
    fn deadline(&self, head: u64, idle: u64) -> Option<u64> {
        let since = self.since.load(Ordering::Acquire);
        let own = match self.phase.load(Ordering::Acquire) {
            HEAD => Some(since + head),
            IDLE => Some(since + idle),
            _ => match self.body_wait.load(Ordering::Acquire) {
                0 => None,
                at => Some(at - 1 + idle),
            },
        };
        let write = match self.write_wait.load(Ordering::Acquire) {
            0 => None,
            at => Some(at - 1 + idle),
        };
        match (own, write) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bytes arrived: after an idle spell they start the next request's head.
    fn read_some(&self, now: u64) {
        if self.phase.compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.since.store(now, Ordering::Release);
            self.wake.notify_one();
        }
    }

    fn write_blocked(&self, now: u64) {
        if self.write_wait.compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.wake.notify_one();
        }
    }

    fn wrote(&self) {
        self.write_wait.store(0, Ordering::Release);
    }

    fn body_pending(&self, now: u64) {
        if self.body_wait.compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.wake.notify_one();
        }
    }

    fn body_ready(&self) {
        self.body_wait.store(0, Ordering::Release);
    }
}

enum Admission {
    Normal(u64, Arc<Activity>),
    Overflow(u64, Arc<Activity>),
    Refuse,
}

struct Registry {
    epoch: Instant,
    limits: ConnectionLimits,
    /// Every connection served as usual, by id.
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    /// Connections asked to close that have not closed yet.
    evicting: AtomicUsize,
    stats: Arc<ConnectionStats>,
    last_warning: Mutex<Option<Instant>>,
}

impl Registry {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX / 2)
    }

    /// Logs at most once every [`WARN_EVERY`].
    fn warn(&self, log: impl FnOnce()) {
        let mut last = self.last_warning.lock().expect("warning lock");
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            log();
        }
    }

    /// Decides how a new connection is served; at the cap, asks the longest-idle connections to
    /// close.
    fn admit(&self) -> Admission {
        let now = self.now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(now));
        let mut conns = self.conns.lock().expect("connection registry");
        let live = conns.len().saturating_sub(self.evicting.load(Ordering::Acquire));
        if live < self.limits.max_connections || self.evict_idle(&conns) > 0 {
            conns.insert(id, activity.clone());
            self.stats.open.store(conns.len(), Ordering::Relaxed);
            return Admission::Normal(id, activity);
        }
        drop(conns);
        let overflow = &self.stats.overflow;
        if overflow.fetch_add(1, Ordering::AcqRel) < OVERFLOW_CONNECTIONS {
            self.warn(|| {
                tracing::warn!(
                    message = "connection cap reached with every connection busy; serving new ones one request each",
                    max_connections = self.limits.max_connections
                )
            });
            return Admission::Overflow(id, activity);
        }
        overflow.fetch_sub(1, Ordering::AcqRel);
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        Admission::Refuse
    }

    /// Asks the longest-idle connections (no request in progress) to close: a 256th of the cap at
    /// once, so that a stream of new connections scans the registry rarely. Returns how many.
    fn evict_idle(&self, conns: &HashMap<u64, Arc<Activity>>) -> usize {
        let batch = (self.limits.max_connections / 256).max(1);
        // Idle since the earliest first; of those idle since the same millisecond, the older.
        let mut idle: Vec<((u64, u64), &Arc<Activity>)> = conns
            .iter()
            .filter(|(_, a)| a.phase.load(Ordering::Acquire) != BUSY && !a.evict.load(Ordering::Acquire))
            .map(|(id, a)| ((a.since.load(Ordering::Acquire), *id), a))
            .collect();
        if idle.len() > batch {
            idle.select_nth_unstable_by_key(batch, |(key, _)| *key);
            idle.truncate(batch);
        }
        let mut asked = 0;
        for (_, a) in idle {
            if !a.evict.swap(true, Ordering::AcqRel) {
                self.evicting.fetch_add(1, Ordering::AcqRel);
                a.wake.notify_one();
                asked += 1;
            }
        }
        if asked > 0 {
            self.stats.evicted.fetch_add(asked as u64, Ordering::Relaxed);
            self.warn(|| {
                tracing::warn!(
                    message = "connection cap reached; closing the longest-idle connections",
                    max_connections = self.limits.max_connections
                )
            });
        }
        asked
    }

    /// A connection ended.
    fn remove(&self, id: u64, activity: &Activity, overflow: bool) {
        if overflow {
            self.stats.overflow.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let mut conns = self.conns.lock().expect("connection registry");
        conns.remove(&id);
        if activity.evict.swap(false, Ordering::AcqRel) {
            self.evicting.fetch_sub(1, Ordering::AcqRel);
        }
        self.stats.open.store(conns.len(), Ordering::Relaxed);
    }
}

/// One accepted connection.
struct Conn {
    registry: Arc<Registry>,
    id: u64,
    activity: Arc<Activity>,
    /// Past the cap: one request, short timeouts, health paths only.
    overflow: bool,
}

impl Conn {
    async fn run(self, stream: TcpStream, tls: Option<ServerTls>, router: Router, mut close_rx: watch::Receiver<()>) {
        // Handlers that care (the web UI's actions) read the peer from the request's extensions.
        let peer = stream.peer_addr().ok();
        let tracked = Tracked { stream, activity: self.activity.clone(), registry: self.registry.clone() };
        match tls {
            None => self.serve(tracked, peer, router, &mut close_rx).await,
            Some(tls) => {
                if let Some(stream) = self.handshake(tracked, &tls.acceptor, &mut close_rx).await {
                    self.serve(stream, peer, router, &mut close_rx).await;
                }
            }
        }
        // Dropping the connection closed the socket.
        self.registry.remove(self.id, &self.activity, self.overflow);
    }

    /// The head and idle timeouts of this connection, in milliseconds.
    fn timeouts(&self) -> (u64, u64) {
        let limits = &self.registry.limits;
        let (head, idle) = if self.overflow {
            let t = limits.header_read_timeout.min(OVERFLOW_TIMEOUT);
            (t, t)
        } else {
            (limits.header_read_timeout, limits.idle_timeout)
        };
        (millis(head), millis(idle))
    }

    /// The TLS handshake, before the head's deadline (it counts from the connection's opening);
    /// `None` when it failed or timed out, when the connection was asked to close to make room,
    /// or when the server is shutting down. Plain HTTP is answered with a sentence instead.
    async fn handshake(
        &self,
        tracked: Tracked,
        acceptor: &TlsAcceptor,
        close_rx: &mut watch::Receiver<()>,
    ) -> Option<tokio_rustls::server::TlsStream<Tracked>> {
        let reg = &self.registry;
        let (head, idle) = self.timeouts();
        let attempt = async move {
            // A TLS connection starts with a handshake record (22); a plain request with a letter.
            let mut first = [0u8; 1];
            let n = tracked.stream.peek(&mut first).await.ok()?;
            if n == 1 && first[0].is_ascii_alphabetic() {
                plain_http_on_tls(tracked).await;
                return None;
            }
            match acceptor.accept(tracked).await {
                Ok(stream) => Some(stream),
                Err(e) => {
                    tracing::debug!(message = "a TLS handshake failed", error = %e);
                    None
                }
            }
        };
        tokio::pin!(attempt);
        loop {
            let now = reg.now();
            let wait = match self.activity.deadline(head, idle) {
                Some(at) if at <= now => {
                    reg.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Some(at) => Duration::from_millis(at - now),
                None => Duration::from_millis(head.max(1)),
            };
            tokio::select! {
                done = &mut attempt => return done,
                _ = close_rx.changed() => return None,
                () = self.activity.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            if self.activity.evict.load(Ordering::Acquire) {
                return None;
            }
        }
    }

    /// Serves HTTP/1.1 on `io` until the client closes, a timeout, an eviction or shutdown.
    async fn serve<IO>(&self, io: IO, peer: Option<SocketAddr>, router: Router, close_rx: &mut watch::Receiver<()>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let reg = self.registry.clone();
        let (head, idle) = self.timeouts();
        let io = TokioIo::new(io);
        let (activity, registry, overflow) = (self.activity.clone(), reg.clone(), self.overflow);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = InFlight::begin(activity.clone(), &registry);
            let (mut parts, body) = request.into_parts();
            if let Some(peer) = peer {
                parts.extensions.insert(axum::extract::ConnectInfo(peer));
            }
            let body = Body::new(Watched { inner: body, activity: activity.clone(), registry: registry.clone() });
            let request = Request::from_parts(parts, body);
            let router = router.clone();
            async move {
                let response = if overflow && !OVERFLOW_PATHS.contains(&request.uri().path()) {
                    too_many_connections()
                } else {
                    match router.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                };
                Ok::<_, Infallible>(response.map(|body| Body::new(Finishing { inner: body, _guard: guard })))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.keep_alive(!self.overflow);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            let now = reg.now();
            let wait = match self.activity.deadline(head, idle) {
                Some(at) if at <= now => {
                    reg.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(at) => Duration::from_millis(at - now),
                // A request in progress: no deadline until it waits on the client.
                None => Duration::from_millis(idle.max(1)),
            };
            tokio::select! {
                _ = conn.as_mut() => break,
                changed = close_rx.changed(), if !closing => {
                    let _ = changed;
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = self.activity.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            if self.activity.evict.load(Ordering::Acquire) {
                if self.activity.phase.load(Ordering::Acquire) != BUSY {
                    break;
                }
                // A request began since it was picked: it stays.
                if self.activity.evict.swap(false, Ordering::AcqRel) {
                    reg.evicting.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

/// What a plain HTTP client is told on a TLS port.
const PLAIN_HTTP_ON_TLS: &str = "this port speaks HTTPS (the server was started with --tls-cert and --tls-key): use https://\n";

/// Answers a plain HTTP request on a TLS port with `400` and a sentence, then closes. The request
/// bytes already here are read first, so that closing does not reset the connection before the
/// client has read the answer.
async fn plain_http_on_tls(mut tracked: Tracked) {
    let mut buf = [0u8; 4096];
    while matches!(tracked.stream.try_read(&mut buf), Ok(n) if n > 0) {}
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PLAIN_HTTP_ON_TLS}",
        PLAIN_HTTP_ON_TLS.len()
    );
    if tracked.write_all(answer.as_bytes()).await.is_ok() {
        let _ = tracked.shutdown().await;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

/// `503 too_many_connections`, on a connection past the cap.
fn too_many_connections() -> Response<Body> {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        "the server holds as many connections as it serves at once (--max-connections), every one of them busy: try again in 1 s",
    )
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request in progress, from its head to the end of its answer's body.
struct InFlight {
    activity: Arc<Activity>,
    registry: Arc<Registry>,
}

impl InFlight {
    fn begin(activity: Arc<Activity>, registry: &Arc<Registry>) -> InFlight {
        activity.body_wait.store(0, Ordering::Release);
        activity.phase.store(BUSY, Ordering::Release);
        InFlight { activity, registry: registry.clone() }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.activity;
        a.body_wait.store(0, Ordering::Release);
        a.since.store(self.registry.now(), Ordering::Release);
        a.phase.store(IDLE, Ordering::Release);
        a.wake.notify_one();
    }
}

/// The answer's body; the request ends when it is dropped (written out, or the connection gone).
struct Finishing {
    inner: Body,
    _guard: InFlight,
}

impl HttpBody for Finishing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request's body: notes when the handler waits for bytes the client has not sent.
struct Watched {
    inner: Incoming,
    activity: Arc<Activity>,
    registry: Arc<Registry>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Pending => self.activity.body_pending(self.registry.now()),
            Poll::Ready(_) => self.activity.body_ready(),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when bytes arrive and when writes find no room.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    registry: Arc<Registry>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some(self.registry.now());
        }
        polled
    }
}

impl Tracked {
    fn note<T>(&self, polled: &Poll<io::Result<T>>) {
        match polled {
            Poll::Pending => self.activity.write_blocked(self.registry.now()),
            Poll::Ready(_) => self.activity.wrote(),
        }
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note(&polled);
        polled
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.note(&polled);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_keeps_a_reserve_of_files() {
        assert_eq!(default_max_connections(20_000), 20_000 - 1_250);
        assert_eq!(default_max_connections(1_024), 1_024 - 384);
        assert_eq!(default_max_connections(256), 16);
        assert_eq!(default_max_connections(1 << 20), MAX_DEFAULT_CONNECTIONS);
    }
}
