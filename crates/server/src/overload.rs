//! Admission of ingest requests: what a burst may hold in memory is bounded, and when the store's
//! writer or the journey engine falls behind, ingest answers `503 overloaded` with `Retry-After`
//! instead of queueing.
//!
//! **Invariants:**
//! - Request bodies held by ingest at once (read, parsed, queued for the writer, until the answer)
//!   add up to at most `buffer_bytes`: each request reserves its `Content-Length` (the request
//!   limit when it has none) before its body is read, and keeps it until it is answered. A request
//!   that finds no room within `wait` is answered 503, and nothing of it is stored.
//! - Ingest answers 503 while the writer has more than `max_write_queue` rows queued, or while the
//!   journey engine is more than `max_journey_lag` log entries behind the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_store::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::engine::JourneyEngine;
use crate::error::ApiError;

/// Bounds of ingest under load (`--ingest-buffer-bytes`, `--ingest-wait-ms`, `--max-write-queue`,
/// `--max-journey-lag`, `--body-read-timeout-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// The most bytes of request bodies ingest holds at once; never less than one request's limit.
    pub buffer_bytes: usize,
    /// How long a request waits for room in the buffer before it is answered 503.
    pub wait: Duration,
    /// Rows queued for the store's writer past which ingest answers 503.
    pub max_write_queue: usize,
    /// Log entries the journey engine may be behind the store before ingest answers 503; 0: no
    /// limit.
    pub max_journey_lag: u64,
    /// The most time a request body may take to arrive (then `408 body_timeout`).
    pub body_read_timeout: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            buffer_bytes: 64 * 1024 * 1024,
            wait: Duration::from_secs(1),
            max_write_queue: 100_000,
            max_journey_lag: 100_000,
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// The seconds a client is asked to wait.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The buffer's room is counted in KiB (a semaphore takes at most `u32::MAX` permits at once).
const UNIT: usize = 1024;

pub struct Admission {
    limits: IngestLimits,
    room: Arc<Semaphore>,
    /// The engine's log position when last seen (the engine is not read while it works); -1 before.
    engine_seen: AtomicI64,
}

impl Admission {
    /// `limits.buffer_bytes` is raised to `max_request_bytes` if below, so any request can be taken.
    pub fn new(limits: IngestLimits, max_request_bytes: usize) -> Admission {
        let limits = IngestLimits { buffer_bytes: limits.buffer_bytes.max(max_request_bytes), ..limits };
        Admission { room: Arc::new(Semaphore::new(units(limits.buffer_bytes).min(Semaphore::MAX_PERMITS))), limits, engine_seen: AtomicI64::new(-1) }
    }

    pub fn limits(&self) -> IngestLimits {
        self.limits
    }

    /// Room for a request of `length` bytes (`max_request_bytes` when unknown), or the 503 to
    /// answer; `store` and `engine` are those ingest writes to and feeds. (Not the `AppState`:
    /// it holds this admission, and the two modules would depend on each other.)
    pub(crate) async fn admit(
        &self,
        store: &Store,
        engine: Option<&JourneyEngine>,
        max_request_bytes: usize,
        length: Option<usize>,
    ) -> Result<OwnedSemaphorePermit, Response> {
        let backlog = store.backlog();
        if backlog.queued_rows > self.limits.max_write_queue {
            return Err(overloaded(format!(
                "the store's writer has {} rows queued, more than --max-write-queue ({}): try again in {RETRY_AFTER_SECONDS} s",
                backlog.queued_rows, self.limits.max_write_queue
            )));
        }
        if self.limits.max_journey_lag > 0
            && let Some(engine) = engine
        {
            let position = match engine.position() {
                Some(position) => {
                    self.engine_seen.store(position, Ordering::Release);
                    position
                }
                None => self.engine_seen.load(Ordering::Acquire),
            };
            let lag = backlog.log_end.saturating_sub(position);
            if position >= 0 && lag > 0 && lag as u64 > self.limits.max_journey_lag {
                return Err(overloaded(format!(
                    "the journey engine is {lag} log entries behind the store, more than --max-journey-lag ({}): try again in {RETRY_AFTER_SECONDS} s",
                    self.limits.max_journey_lag
                )));
            }
        }
        let max = max_request_bytes;
        let wanted = units(length.map_or(max, |l| l.min(max))).max(1).min(u32::MAX as usize) as u32;
        let wait = tokio::time::timeout(self.limits.wait, self.room.clone().acquire_many_owned(wanted));
        match wait.await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(overloaded(format!(
                "ingest holds as many request bodies as it may at once (--ingest-buffer-bytes, {} bytes) and none was answered within {} ms: try again in {RETRY_AFTER_SECONDS} s",
                self.limits.buffer_bytes,
                self.limits.wait.as_millis()
            ))),
        }
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

/// `503 overloaded` with `Retry-After`; the connection closes, as the body was not read.
fn overloaded(message: String) -> Response {
    let mut response = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use causeway_envelope::ParseOptions;
    use causeway_store::{SqlLimits, Store};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::IngestLimits;
    use crate::api::app;
    use crate::engine::Clock;
    use crate::model::ModelSlot;
    use crate::state::AppState;

    /// The most any wait below may take.
    const BOUND: Duration = Duration::from_secs(20);

    fn events(prefix: &str, n: usize) -> Request<Body> {
        let lines: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"specversion":"1.0","id":"{prefix}-{i}","source":"test","type":"T","time":"2026-01-01T00:00:00Z","correlationid":"c-{prefix}-{i}"}}"#
                )
            })
            .collect();
        Request::post("/v1/events").header(header::CONTENT_TYPE, "application/x-ndjson").body(Body::from(lines.join("\n"))).unwrap()
    }

    async fn post(router: &axum::Router, request: Request<Body>) -> (StatusCode, Option<String>, String) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, retry, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Waits, at most `BOUND`, for `ready`.
    async fn until(what: &str, mut ready: impl FnMut() -> bool) {
        let started = Instant::now();
        while !ready() {
            assert!(started.elapsed() < BOUND, "still not so after {BOUND:?}: {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// [`until`] for a condition found out asynchronously.
    async fn until_async<F: Future<Output = bool>>(what: &str, mut ready: impl FnMut() -> F) {
        let started = Instant::now();
        while !ready().await {
            assert!(started.elapsed() < BOUND, "still not so after {BOUND:?}: {what}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ingest_answers_503_while_the_writer_has_too_many_rows_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data")).unwrap();
        let limits = IngestLimits { max_write_queue: 5, ..IngestLimits::default() };
        let state = AppState::new(store.clone(), ParseOptions::default(), SqlLimits::default()).with_ingest_limits(limits);
        let router = app(state);
        // Another connection holds the database's write lock: the writer's next commit waits.
        let blocker = rusqlite::Connection::open(store.path()).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let first = tokio::spawn({
            let router = router.clone();
            async move { post(&router, events("first", 10)).await }
        });
        until("the writer has the first batch queued", || store.backlog().queued_rows >= 10).await;
        let (status, retry, body) = post(&router, events("second", 1)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"overloaded\"") && body.contains("--max-write-queue"), "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        blocker.execute_batch("COMMIT").unwrap();
        assert_eq!(first.await.unwrap().0, StatusCode::OK);
        assert_eq!(store.backlog().queued_rows, 0);
        assert_eq!(post(&router, events("second", 1)).await.0, StatusCode::OK);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ingest_answers_503_while_the_journey_engine_is_too_far_behind() {
        let dir = tempfile::tempdir().unwrap();
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-fulfillment");
        for f in ["model.yaml", "notification.yaml"] {
            std::fs::copy(example.join(f), dir.path().join(f)).unwrap();
        }
        let store = Store::open(&dir.path().join("data")).unwrap();
        let slot = ModelSlot::load(&dir.path().join("model.yaml"), b"test-key".to_vec()).unwrap();
        let limits = IngestLimits { max_journey_lag: 5, ..IngestLimits::default() };
        let state = AppState::new(store.clone(), ParseOptions::default(), SqlLimits::default())
            .with_model(slot)
            .with_journeys(Clock::Event)
            .with_ingest_limits(limits);
        let engine = state.journeys.clone().unwrap();
        let admission = state.admission.clone();
        let router = app(state);
        // Ingest sees where the engine is whenever the engine is not busy.
        let mut i = 0;
        until_async("ingest saw the engine's position", || {
            i += 1;
            let (router, admission) = (router.clone(), admission.clone());
            async move {
                assert_eq!(post(&router, events(&format!("a{i}"), 1)).await.0, StatusCode::OK);
                admission.engine_seen.load(std::sync::atomic::Ordering::Acquire) >= 0
            }
        })
        .await;
        let before = store.backlog().log_end;
        // The engine is held up (a reader keeps it locked): it falls behind as ingest goes on.
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            engine.read(|_, _| {
                locked_tx.send(()).unwrap();
                let _ = released.recv();
            })
        });
        locked.recv_timeout(BOUND).unwrap();
        assert_eq!(post(&router, events("b", 10)).await.0, StatusCode::OK);
        let (status, retry, body) = post(&router, events("c", 1)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"overloaded\"") && body.contains("--max-journey-lag"), "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        // Released, it catches up, and ingest is taken again.
        release.send(()).unwrap();
        holder.join().unwrap().unwrap();
        let started = Instant::now();
        loop {
            let (status, _, body) = post(&router, events("c", 1)).await;
            if status == StatusCode::OK {
                break;
            }
            assert!(body.contains("--max-journey-lag"), "{body}");
            assert!(started.elapsed() < BOUND, "the engine never caught up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.backlog().log_end, before + 11);
    }
}
