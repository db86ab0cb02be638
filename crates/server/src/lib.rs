//! The HTTP API of PRODUCT §6. `app(state)` builds the router, so handlers are tested without a
//! socket; `serve` runs it with graceful shutdown.
//!
//! **Invariant:** a `2xx` to `POST /v1/events` means every accepted event is durable, and every
//! refused input — a bad event or a whole bad body — was stored as a DLQ record before the answer.

mod aggregates;
mod connections;
mod dlq;
mod error;
mod ingest;
mod journeys;
mod metrics;
mod model;
mod overload;
mod query;
mod sql_workers;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use causeway_envelope::ParseOptions;
use causeway_store::{SqlLimits, Store};

pub use connections::{
    ConnectionLimits, ConnectionStats, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, MAX_DEFAULT_CONNECTIONS, OVERFLOW_CONNECTIONS,
    OVERFLOW_TIMEOUT, default_max_connections, raise_file_limit,
};
pub use dlq::{Consumer, Replayer};
pub use error::{ApiError, remedy};
pub use journeys::{Clock, JOURNEY_THREAD_NAME, JourneyEngine, Summary};
pub use metrics::Metrics;
pub use model::{LoadedModel, ModelSlot};
pub use overload::{Admission, IngestLimits};
pub use sql_workers::{SQL_THREAD_NAME, SqlWorkers};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub parse: ParseOptions,
    pub sql: SqlLimits,
    /// One permit for each SQL query allowed to run at once (`sql.max_concurrent`).
    pub sql_slots: Arc<tokio::sync::Semaphore>,
    /// The threads SQL queries run on, one per slot (under `SCHED_IDLE` with `sql.idle_priority`).
    pub sql_workers: SqlWorkers,
    pub metrics: Arc<Metrics>,
    /// The model whose contracts apply at ingest, if one is loaded.
    pub model: ModelSlot,
    /// The journey engine, when it runs.
    pub journeys: Option<JourneyEngine>,
    /// Replays dead letters to the consumers' targets.
    pub dlq: Arc<Replayer>,
    /// Admission of ingest requests: the body buffer, the writer's queue, the engine's lag.
    pub admission: Arc<Admission>,
}

impl AppState {
    pub fn new(store: Store, parse: ParseOptions, sql: SqlLimits) -> Self {
        AppState {
            store,
            parse,
            sql,
            sql_slots: Arc::new(tokio::sync::Semaphore::new(sql.max_concurrent.max(1))),
            sql_workers: SqlWorkers::start(sql.max_concurrent, sql.idle_priority),
            metrics: Arc::new(Metrics::default()),
            model: ModelSlot::empty(),
            journeys: None,
            dlq: Arc::new(Replayer::default()),
            admission: Arc::new(Admission::new(IngestLimits::default(), parse.limits.max_request_bytes)),
        }
    }

    /// Bounds of ingest under load.
    pub fn with_ingest_limits(mut self, limits: IngestLimits) -> Self {
        self.admission = Arc::new(Admission::new(limits, self.parse.limits.max_request_bytes));
        self
    }

    pub fn with_model(mut self, model: ModelSlot) -> Self {
        self.model = model;
        self
    }

    /// The estate's consumers (`[consumers.NAME]`), for DLQ replay.
    pub fn with_consumers(mut self, consumers: std::collections::BTreeMap<String, Consumer>) -> Self {
        self.dlq = Arc::new(Replayer::new(consumers));
        self
    }

    /// Starts the journey engine on this state's store and model slot.
    pub fn with_journeys(mut self, clock: Clock) -> Self {
        self.journeys = Some(JourneyEngine::start(self.store.clone(), self.model.clone(), clock));
        self
    }
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(query::index))
        .route("/v1/events", post(ingest::post_events))
        .route("/v1/events/{id}", get(query::get_event))
        .route("/v1/events/{id}/descendants", get(query::get_descendants))
        .route("/v1/events/{id}/root", get(query::get_root))
        .route("/v1/correlations/{id}", get(query::get_correlation))
        .route("/v1/journeys", get(journeys::list_journeys))
        .route("/v1/journeys/summary", get(journeys::journey_summary))
        .route("/v1/journeys/{journey}/{key}", get(journeys::get_journey))
        .route("/v1/findings", get(journeys::list_findings))
        .route("/v1/dlq", get(dlq::list).post(dlq::report))
        .route("/v1/dlq/summary", get(dlq::summary))
        .route("/v1/dlq/replay", post(dlq::replay_bulk))
        .route("/v1/dlq/{id}", get(dlq::get))
        .route("/v1/dlq/{id}/original", get(dlq::original))
        .route("/v1/dlq/{id}/replay", post(dlq::replay))
        .route("/v1/dlq/{id}/discard", post(dlq::discard))
        .route("/v1/dlq/{id}/resolve", post(dlq::resolve))
        .route("/v1/aggregates/{kind}/{id}", get(aggregates::get_state))
        .route("/v1/sql", post(query::post_sql))
        .route("/v1/model", get(model::get_model))
        .route("/v1/model/reload", post(model::reload))
        .route("/v1/model/canvas.svg", get(model::canvas))
        .route("/openapi.yaml", get(query::openapi))
        .route("/healthz", get(query::healthz))
        .route("/readyz", get(query::readyz))
        .route("/metrics", get(metrics::exposition))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}: the API is listed at /openapi.yaml", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}: the API is listed at /openapi.yaml", uri.path()),
    )
}

/// Serves until `shutdown` resolves, then finishes in-flight requests; the connection limits are
/// the defaults for the process's file limit.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let limits = ConnectionLimits::for_file_limit(raise_file_limit()?);
    serve_with(listener, state, limits, Arc::default(), shutdown).await
}

/// [`serve`] within the given connection limits, counting what the connection layer does in
/// `stats`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    connections::serve_connections(listener, app(state), limits, stats, shutdown).await
}
