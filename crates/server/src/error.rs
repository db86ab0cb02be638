//! The one place where errors become HTTP responses: `{"error": {"code", "message", "remedy"?}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use causeway_store::StoreError;
use serde_json::{Map, Value, json};

/// An error answered to a client. Client mistakes carry a sentence the client can act on; server
/// faults are logged in full and answered with a short pointer to the log.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// What to do about it, in the API's terms, when that is one of [`remedy`]'s: it also ends
    /// `message`. A client with other terms (the CLI) replaces it by its own.
    pub remedy: Option<&'static str>,
    /// Fields added beside `error` in the body (e.g. per-event ingest results).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), remedy: None, extra: Map::new() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(message = "request failed", context, %error);
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("{context} failed on the server; see its log"))
    }

    /// Ends the message with `remedy` and names it in the answer.
    pub fn with_remedy(mut self, remedy: &'static str) -> Self {
        self.message = format!("{}; {remedy}", self.message);
        self.remedy = Some(remedy);
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotReadOnly(m) => ApiError::bad_request("read_only", m.clone()),
            StoreError::InvalidQuery(m) => ApiError::bad_request("invalid_query", m.clone()),
            StoreError::QueryTimeout(_) => ApiError::bad_request("query_timeout", e.to_string()),
            StoreError::TooLarge(m) => ApiError::bad_request("too_large", m.clone()),
            StoreError::Poisoned(_) | StoreError::WriterGone => {
                tracing::error!(message = "store unavailable", error = %e);
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
            }
            _ => ApiError::internal("the store", &e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(remedy) = self.remedy {
            error["remedy"] = json!(remedy);
        }
        body.insert("error".into(), error);
        (self.status, Json(Value::Object(body))).into_response()
    }
}

/// The remedies answers name, one sentence each in the API's terms. Clients match on these
/// constants rather than on message text.
pub mod remedy {
    pub const LIST_DLQ: &str = "list them with GET /v1/dlq";
    pub const FORCE_REPLAY: &str = "to send it again anyway, replay it with {\"force\": true}";
    pub const INGEST_AGAIN: &str = "correct it and POST it to /v1/events, then discard this record";
    pub const GIVE_REASON: &str = "say why: {\"reason\": \"…\"}";
    pub const SMALLER_BATCHES: &str = causeway_envelope::SMALLER_BATCHES;
}
