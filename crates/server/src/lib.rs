//! The HTTP API of PRODUCT §6. `app(state)` builds the router, so handlers are tested without a
//! socket; `serve` runs it with graceful shutdown.
//!
//! **Invariant:** a `2xx` to `POST /v1/events` means every accepted event is durable, and every
//! refused input — a bad event or a whole bad body — was stored as a DLQ record before the answer.
//!
//! Modules: the core (`error`, `state`, `engine`, `model`, `replay`, `metrics`, `overload`,
//! `connections`, `sql_workers`) knows nothing of the handlers in `api`, which depend on it. No
//! module imports from this root, which only declares and re-exports (`tests/modules.rs`).

mod api;
pub mod auth;
mod connections;
mod engine;
mod error;
mod evidence;
mod ingest;
pub mod kafka;
pub mod lag;
mod metrics;
mod model;
pub mod nats;
pub mod notify;
mod overload;
mod replay;
pub mod slo;
pub mod source;
mod sql_workers;
mod state;

use std::future::Future;
use std::sync::Arc;

pub use api::findings::finding_json;
pub use api::{app, catch_panics};
pub use connections::{
    ConnectionLimits, ConnectionStats, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, MAX_DEFAULT_CONNECTIONS, OVERFLOW_CONNECTIONS,
    OVERFLOW_TIMEOUT, default_max_connections, raise_file_limit,
};
pub use connections::{ServerTls, TlsError};
pub use engine::{Clock, ClockView, Health, JOURNEY_THREAD_NAME, JourneyEngine, Summary};
pub use error::{ApiError, remedy};
pub use metrics::Metrics;
pub use model::{LoadedModel, ModelSlot};
pub use overload::{Admission, IngestLimits};
pub use replay::{Consumer, Replayer};
pub use sql_workers::{SQL_THREAD_NAME, SqlWorkers};
pub use state::AppState;

/// Serves until `shutdown` resolves, then finishes in-flight requests; the connection limits are
/// the defaults for the process's file limit.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let limits = ConnectionLimits::for_file_limit(raise_file_limit()?);
    let stats = state.connections.clone();
    serve_with(listener, None, state, limits, stats, shutdown).await
}

/// [`serve`] within the given connection limits, counting what the connection layer does in
/// `stats` (pass `state.connections` for `/metrics` to show it); with `tls`, over TLS only.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    tls: Option<ServerTls>,
    state: AppState,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    connections::serve_connections(listener, tls, app(state), limits, stats, shutdown).await
}
