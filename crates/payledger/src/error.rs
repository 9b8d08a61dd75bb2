//! The one API error type: every failure a handler can return, mapped to a status and JSON body here.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use payledger_core::BalanceError;
use payledger_core::money::format_minor;

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
    /// For invalid input: each bad field and why. For a missing user: the field that named them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!({"amount": "must be greater than zero"}))]
    pub details: Option<BTreeMap<String, String>>,
    /// For `insufficient_funds`: the available balance, in roubles.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "50.00")]
    pub available: Option<String>,
    /// For `amount_mismatch`: the reserved amount, in roubles.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "50.00")]
    pub reserved: Option<String>,
}

/// An error a handler returns. Each variant documents its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the input is invalid; `details` names each bad field.
    #[error("invalid data")]
    InvalidData(BTreeMap<String, String>),
    /// 401: the request's signature or credentials are missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 401 from the authentication layer: no, malformed or wrong credentials; answered with the schemes the
    /// API takes in `WWW-Authenticate`.
    #[error("{0}")]
    Unauthenticated(String),
    /// 429: too many requests from this address; retry after the given seconds.
    #[error("too many requests")]
    TooManyRequests(u64),
    /// 403: the caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the resource does not exist.
    #[error("{0}")]
    NotFound(&'static str),
    /// 404: what a request field names does not exist.
    #[error("{message}")]
    FieldNotFound {
        /// The request field.
        field: &'static str,
        /// Human message.
        message: String,
    },
    /// 409 `insufficient_funds`: the available balance is too small.
    #[error("insufficient funds")]
    InsufficientFunds {
        /// What was available, in kopecks.
        available: i64,
    },
    /// 409 `amount_mismatch`: the amount differs from the reserved one.
    #[error("amount mismatch")]
    AmountMismatch {
        /// What is reserved, in kopecks.
        reserved: i64,
    },
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
            ApiError::Unauthorized(message) | ApiError::Unauthenticated(message) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", message.clone())
            }
            ApiError::TooManyRequests(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests; retry later".into())
            }
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, "forbidden", message.clone()),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", (*what).into()),
            ApiError::FieldNotFound { message, .. } => (StatusCode::NOT_FOUND, "not_found", message.clone()),
            ApiError::InsufficientFunds { .. } => {
                (StatusCode::CONFLICT, "insufficient_funds", "Insufficient funds".into())
            }
            ApiError::AmountMismatch { .. } => {
                (StatusCode::CONFLICT, "amount_mismatch", "The amount does not match the reserved amount".into())
            }
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
            ApiError::Engine(EngineError::Unconfirmed) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unconfirmed",
                "The outcome is not confirmed; retry with the same Idempotency-Key".into(),
            ),
            ApiError::Engine(_) | ApiError::Store(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service temporarily unavailable, retry later".into())
            }
        }
    }

    /// The status and body a client gets for this error.
    pub fn status_and_body(self) -> (StatusCode, ErrorBody) {
        let (status, code, error) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut body = ErrorBody { error, code, details: None, available: None, reserved: None };
        match self {
            ApiError::InvalidData(details) => body.details = Some(details),
            ApiError::FieldNotFound { field, message } => {
                body.details = Some(BTreeMap::from([(field.into(), message)]))
            }
            ApiError::InsufficientFunds { available } => body.available = Some(format_minor(available, 2)),
            ApiError::AmountMismatch { reserved } => body.reserved = Some(format_minor(reserved, 2)),
            _ => {}
        }
        (status, body)
    }
}

impl From<BalanceError> for ApiError {
    fn from(error: BalanceError) -> ApiError {
        let message = error.to_string();
        match error {
            BalanceError::UnknownUser { role, .. } => ApiError::FieldNotFound { field: role.field(), message },
            BalanceError::InsufficientFunds { available } => ApiError::InsufficientFunds { available },
            BalanceError::HoldExists(_) => ApiError::Conflict { code: "hold_exists", message },
            BalanceError::HoldNotFound(_) => ApiError::FieldNotFound { field: "order_id", message },
            BalanceError::HoldSettled { .. } => ApiError::Conflict { code: "hold_settled", message },
            BalanceError::AmountMismatch { held } => ApiError::AmountMismatch { reserved: held },
            BalanceError::Overflow => ApiError::Unprocessable(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::TooManyRequests(seconds) => Some(*seconds),
            _ => None,
        };
        let challenge = matches!(self, ApiError::Unauthenticated(_));
        let (status, body) = self.status_and_body();
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read, so this connection cannot carry another request; saying
            // so keeps clients from reusing it and failing their next request.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if challenge {
            let headers = response.headers_mut();
            headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"payledger\""));
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"payledger\", charset=\"UTF-8\""),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The answer when a handler panicked: an opaque 500; the panic itself is in the log.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body =
        ErrorBody { error: "Internal error".into(), code: "internal", details: None, available: None, reserved: None };
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}
