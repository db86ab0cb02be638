//! `GET /v1/store`: what the store holds and where — events hot and sealed, bytes raw and on
//! disk, the sealed segments, the oldest event.

use axum::Json;
use axum::extract::{RawQuery, State};
use causeway_store::StoreStats;

use crate::api::params::{check_known, params};
use crate::error::ApiError;
use crate::state::AppState;

/// The store's [`StoreStats`] as they are. Not one of `query::read`'s short reads: it measures
/// every unsealed event's JSON (the whole history when sealing is off), so it runs on the
/// blocking pool.
pub async fn get_store(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Json<StoreStats>, ApiError> {
    check_known(&params(&query), &[])?;
    let store = state.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.stats()).await.map_err(|e| ApiError::internal("the store's statistics", e))??;
    Ok(Json(stats))
}
