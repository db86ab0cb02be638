//! `GET /v1/lag`: the lag monitor's latest evaluation of the estate's consumer groups.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use causeway_lag::Status;

use crate::api::params::{check_known, param, params};
use crate::error::ApiError;
use crate::state::AppState;

/// Every watched group, worst first; `group=NAME` for one, `status=OK|WARN|ERR|NOTFOUND` for
/// those in that state.
pub async fn get_lag(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let pairs = params(&query);
    check_known(&pairs, &["group", "status"])?;
    let Some(report) = &state.lag else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "lag_not_configured",
            "the lag monitor runs with the Kafka source: configure [kafka] brokers (and [consumers.NAME] group for the groups to watch)",
        ));
    };
    let status = match param(&pairs, "status") {
        None => None,
        Some(text) => Some(Status::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| {
            ApiError::bad_request("invalid_parameter", format!("status must be one of OK, WARN, ERR, NOTFOUND, STOP, STALL, REWIND, not '{text}'"))
        })?),
    };
    let mut report = report.read().expect("lag report").clone();
    if let Some(group) = param(&pairs, "group") {
        report.groups.retain(|g| g.group == group);
        if report.groups.is_empty() {
            return Err(ApiError::not_found(format!("the lag monitor has seen no commit of group '{group}'")));
        }
    }
    if let Some(status) = status {
        report.groups.retain(|g| g.status == status || g.partitions.iter().any(|p| p.status == status));
    }
    Ok(Json(report).into_response())
}
