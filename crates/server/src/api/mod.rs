//! The HTTP API of PRODUCT §6: [`app`] routes every endpoint to its handler, answers what no
//! route takes, and turns a handler's panic into a 500 ([`catch_panics`]).
//!
//! **Invariants:**
//! - Handlers here depend on the core modules (`engine`, `state`, `model`, `replay`, …), never the
//!   reverse; a handler module uses another only one way (`dlq` → `journeys` → `aggregates`,
//!   `dlq` → `query` → `params`), and none uses this one. `tests/modules.rs` checks both.
//! - A panic while answering a request is answered `500 internal` in the usual error JSON and the
//!   server goes on serving.

mod access;
mod aggregates;
mod alerts;
mod dlq;
mod events;
pub(crate) mod findings;
mod journeys;
mod lag;
mod metrics;
mod model;
mod pages;
mod params;
mod query;
mod slo;
mod store;

use std::any::Any;

use axum::Router;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// The whole API.
pub fn app(state: AppState) -> Router {
    let router = Router::new()
        .route("/", get(pages::overview))
        .route("/on-call", get(pages::on_call))
        .route("/journeys", get(pages::journey_list))
        .route("/journeys/{journey}/{key}", get(pages::journey))
        .route("/correlations/{id}", get(pages::correlation))
        .route("/events/{id}", get(pages::event))
        .route("/dlq", get(pages::dlq_list))
        .route("/dlq/{id}", get(pages::dlq_record))
        .route("/canvas", get(pages::canvas_page))
        .route("/canvas/notes/{id}", get(pages::canvas_note))
        .route("/runbooks", get(pages::runbooks))
        .route("/runbooks/{section}/{name}", get(pages::runbook))
        .route("/search", get(pages::search))
        .route("/ui/causeway.css", get(pages::style))
        .route("/ui/causeway.js", get(pages::script))
        .route("/ui/icon.svg", get(pages::icon))
        .route("/favicon.ico", get(pages::icon))
        .route("/v1/events", post(events::post_events))
        .route("/v1/events/{id}", get(query::get_event))
        .route("/v1/events/{id}/descendants", get(query::get_descendants))
        .route("/v1/events/{id}/root", get(query::get_root))
        .route("/v1/correlations/{id}", get(query::get_correlation))
        .route("/v1/journeys", get(journeys::list_journeys))
        .route("/v1/journeys/summary", get(journeys::journey_summary))
        .route("/v1/clock", get(journeys::get_clock))
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
        .route("/v1/lag", get(lag::get_lag))
        .route("/v1/slo", get(slo::get_slo))
        .route("/v1/alerts", get(alerts::list_alerts))
        .route("/v1/silences", get(alerts::list_silences).post(alerts::create_silence))
        .route("/v1/silences/{id}", delete(alerts::delete_silence))
        .route("/v1/store", get(store::get_store))
        .route("/v1/sql", post(query::post_sql))
        .route("/v1/model", get(model::get_model))
        .route("/v1/model/reload", post(model::reload))
        .route("/v1/model/canvas.svg", get(model::canvas))
        .route("/openapi.yaml", get(query::openapi))
        .route("/healthz", get(query::healthz))
        .route("/readyz", get(query::readyz))
        .route("/metrics", get(metrics::exposition))
        .route("/sign-in", get(access::sign_in_page).post(access::sign_in))
        .route("/sign-out", post(access::sign_out))
        .route("/v1/tokens", get(access::list_tokens).post(access::create_token))
        .route("/v1/tokens/{id}", delete(access::revoke_token))
        .route("/v1/audit", get(access::audit))
        // Every route's access is checked, and its audit entry written, here (`auth.rs`).
        .route_layer(axum::middleware::from_fn_with_state(state.auth.clone(), crate::auth::authorize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    catch_panics(router)
}

/// `router`, answering a panic in any of its handlers with `500 internal` in the usual error JSON
/// instead of dropping the connection. The panic is logged; the service stays usable.
pub fn catch_panics(router: Router) -> Router {
    router.layer(CatchPanicLayer::custom(panic_response))
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("(no message)");
    tracing::error!(message = "a handler panicked; answered 500", panic = what);
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server hit a bug answering this request (see its log); it stays up and serves other requests",
    )
    .into_response()
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}: the API is listed at /openapi.yaml", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}: the API is listed at /openapi.yaml", uri.path()),
    )
}
