//! The one API error type: every failure a handler can return, mapped to a status and JSON body here.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::EngineError;
use crate::store::StoreError;

/// What a client sees of an error: a human message, a stable machine code, and field details.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A human-readable message, e.g. `Invalid data`.
    #[schema(example = "Invalid data")]
    pub error: String,
    /// A stable machine code, e.g. `invalid_data`.
    #[schema(example = "invalid_data")]
    pub code: &'static str,
    /// For invalid input: each bad field and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!({"amount": "must be greater than zero"}))]
    pub details: Option<BTreeMap<String, String>>,
}

/// An error a handler returns. Each variant documents its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the input is invalid; `details` names each bad field.
    #[error("invalid data")]
    InvalidData(BTreeMap<String, String>),
    /// 404: the resource does not exist.
    #[error("{0}")]
    NotFound(&'static str),
    /// 409: the request conflicts with what is stored.
    #[error("{message}")]
    Conflict {
        /// Machine code.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// 413: the body is larger than the route accepts.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415: the body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: well-formed, but the ledger refused it.
    #[error("{0}")]
    Unprocessable(String),
    /// 503: the ledger could not apply the request; nothing was applied and a retry may succeed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// 503: the database failed; the detail goes to the log only.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    /// A 400 for one field.
    pub fn field(field: &str, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidData(BTreeMap::from([(field.to_owned(), reason.into())]))
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::InvalidData(_) => (StatusCode::BAD_REQUEST, "invalid_data", "Invalid data".into()),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", (*what).into()),
            ApiError::Conflict { code, message } => (StatusCode::CONFLICT, code, message.clone()),
            ApiError::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large".into())
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json".into(),
            ),
            ApiError::Unprocessable(message) => (StatusCode::UNPROCESSABLE_ENTITY, "ledger_refused", message.clone()),
            ApiError::Engine(EngineError::Overloaded) => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded", "Service overloaded, retry later".into())
            }
            ApiError::Engine(_) | ApiError::Store(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service temporarily unavailable, retry later".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, error) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let details = match self {
            ApiError::InvalidData(details) => Some(details),
            _ => None,
        };
        let mut response = (status, axum::Json(ErrorBody { error, code, details })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The answer when a handler panicked: an opaque 500; the panic itself is in the log.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body = ErrorBody { error: "Internal error".into(), code: "internal", details: None };
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}
