//! The one API error type: every failure a handler can return, and every mapping from a domain error to it,
//! with the status and JSON body each one answers.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use payledger_core::BalanceError;
use payledger_core::money::format_minor;

use crate::auth::principals::PrincipalError;
use crate::auth::tokens::TokenError;
use crate::engine::EngineError;
use crate::engine::payouts::PayoutError;
use crate::events::endpoints::EndpointError;
use crate::payouts::PayoutServiceError;
use crate::statement::ReconcileError;
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
    /// For `statement_invalid`: the 1-based line of the file that is wrong; absent when the error is about the
    /// file as a whole (its size, its format, a CSV without a mapping).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 42)]
    pub line: Option<u64>,
}

/// An error a handler returns. Each variant documents its status and code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_data`: the input is invalid; `details` names each bad field.
    #[error("invalid data")]
    InvalidData(BTreeMap<String, String>),
    /// 401 `unauthorized`: the credentials or the signature are missing or wrong.
    #[error("{message}")]
    Unauthorized {
        /// Human message.
        message: String,
        /// Whether the answer names the schemes the API takes in `WWW-Authenticate` (Bearer and Basic): set
        /// by the authentication layer, not by a refused signature or login, where those schemes do not help.
        challenge: bool,
    },
    /// 429 `rate_limited`: too many requests from this address; `Retry-After` gives the seconds.
    #[error("too many requests")]
    TooManyRequests(u64),
    /// 403 `forbidden`: the caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`: the resource does not exist.
    #[error("{0}")]
    NotFound(&'static str),
    /// 404 `not_found`: what a request field names does not exist; `details` names the field.
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
    /// 409 with the given code: the request conflicts with what is stored.
    #[error("{message}")]
    Conflict {
        /// Machine code.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// 400 `statement_invalid`: the uploaded statement is not valid; `line` and `details.body` say where and
    /// why. Nothing was stored.
    #[error("line {line}: {reason}")]
    StatementInvalid {
        /// The 1-based line of the file (0: the file as a whole; the body then has no `line`).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// 409 `not_applicable`: the reconciliation request does not apply in the current state.
    #[error("{0}")]
    NotApplicable(String),
    /// 413 `payload_too_large`: the body is larger than the route accepts; the connection is closed.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415 `unsupported_media_type`: the body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422 `ledger_refused`: well-formed, but the ledger refused it.
    #[error("{0}")]
    Unprocessable(String),
    /// 500 `internal`: a defect in payledger. The client gets an opaque body; the detail goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
    /// 503 `overloaded`, `unavailable` (nothing was applied) or `unconfirmed` (the commit failed, so the
    /// request may or may not have been applied: retry with the same key); `Retry-After: 1`.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// 503 `unavailable`: the database failed; the detail goes to the log only (`Retry-After: 1`).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 503 `unconfirmed`: the request took longer than the request timeout (the database is slow or away).
    /// A write may still be applied after this answer, so its outcome is unknown: resend with the same key.
    #[error("the request timed out")]
    TimedOut,
}

impl ApiError {
    /// A 400 for one field.
    pub fn field(field: &str, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidData(BTreeMap::from([(field.to_owned(), reason.into())]))
    }

    /// A 401 without a challenge: a signature or a login that failed, where Bearer or Basic would not help.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::Unauthorized { message: message.into(), challenge: false }
    }

    /// A 401 from the authentication layer, naming the schemes the API takes in `WWW-Authenticate`.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::Unauthorized { message: message.into(), challenge: true }
    }

    /// 409 `idempotency_key_reused`: the key was used before for a different request.
    pub fn idempotency_key_reused() -> ApiError {
        ApiError::Conflict {
            code: "idempotency_key_reused",
            message: "This Idempotency-Key was used for a different request".into(),
        }
    }

    /// 409 `idempotency_key_in_flight`: another request with the key is being applied right now.
    pub fn idempotency_key_in_flight() -> ApiError {
        ApiError::Conflict {
            code: "idempotency_key_in_flight",
            message: "A request with this Idempotency-Key is being processed; retry shortly".into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::InvalidData(_) => (StatusCode::BAD_REQUEST, "invalid_data", "Invalid data".into()),
            ApiError::Unauthorized { message, .. } => (StatusCode::UNAUTHORIZED, "unauthorized", message.clone()),
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
            ApiError::StatementInvalid { .. } => {
                (StatusCode::BAD_REQUEST, "statement_invalid", "The statement is not valid".into())
            }
            ApiError::NotApplicable(message) => (StatusCode::CONFLICT, "not_applicable", message.clone()),
            ApiError::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large".into())
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json".into(),
            ),
            ApiError::Unprocessable(message) => (StatusCode::UNPROCESSABLE_ENTITY, "ledger_refused", message.clone()),
            // Opaque on purpose: a defect's detail (a query, a key id, a stack of causes) is for the log.
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error".into()),
            ApiError::Engine(EngineError::Overloaded) => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded", "Service overloaded, retry later".into())
            }
            ApiError::Engine(EngineError::Unconfirmed) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unconfirmed",
                "The outcome is not confirmed; retry with the same Idempotency-Key".into(),
            ),
            // Any request times out, reads too: the message fits both.
            ApiError::TimedOut => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unconfirmed",
                "The request timed out; retry it (a write with the same Idempotency-Key, since it may have been \
                 applied)"
                    .into(),
            ),
            ApiError::Engine(_) | ApiError::Store(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service temporarily unavailable, retry later".into())
            }
        }
    }

    /// The status and body a client gets for this error. A server error's detail is logged here, since the
    /// body never carries it.
    pub fn status_and_body(self) -> (StatusCode, ErrorBody) {
        // A timeout is logged (at warn) by the middleware that answers it.
        if self.parts().0.is_server_error() && !matches!(self, ApiError::TimedOut) {
            tracing::error!(error = %self, "request failed");
        }
        self.unlogged_status_and_body()
    }

    /// The same, without the log line: for an error already logged once where it happened (the ledger engine
    /// logs a failed batch once, however many operations of one batch request it failed).
    pub fn unlogged_status_and_body(self) -> (StatusCode, ErrorBody) {
        let (status, code, error) = self.parts();
        let mut body = ErrorBody { error, code, details: None, available: None, reserved: None, line: None };
        match self {
            ApiError::InvalidData(details) => body.details = Some(details),
            ApiError::FieldNotFound { field, message } => {
                body.details = Some(BTreeMap::from([(field.into(), message)]))
            }
            ApiError::InsufficientFunds { available } => body.available = Some(format_minor(available, 2)),
            ApiError::AmountMismatch { reserved } => body.reserved = Some(format_minor(reserved, 2)),
            ApiError::StatementInvalid { line, reason } => {
                // A file-level error (line 0) is not "line 0": the text is the statement error's own, and the
                // body has no line.
                let text = payledger_core::statement::StatementError { line, reason }.to_string();
                body.details = Some(BTreeMap::from([("body".into(), text)]));
                body.line = (line != 0).then_some(line);
            }
            _ => {}
        }
        (status, body)
    }
}

impl From<BalanceError> for ApiError {
    /// A refused balance operation: 404 for an unknown user or hold, 409 for the conflicts, 422 for overflow.
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

impl From<PayoutError> for ApiError {
    /// A refused payout command: 404 for an unknown payout or source, 409 for a change its status does not
    /// allow, 422 for overflow.
    fn from(error: PayoutError) -> ApiError {
        let message = error.to_string();
        match error {
            PayoutError::NotFound => ApiError::NotFound("Payout not found"),
            PayoutError::LeaseLost(_) => ApiError::Conflict { code: "job_changed", message },
            PayoutError::Transition(_) | PayoutError::NotDeletable(_) | PayoutError::NotEditable(_) => {
                ApiError::Conflict { code: "invalid_transition", message }
            }
            PayoutError::UnknownSource { kind, .. } => ApiError::FieldNotFound {
                field: if kind == "organization" { "source.organization_inn" } else { "source.user_id" },
                message,
            },
            PayoutError::CurrencyMismatch(_) => ApiError::Conflict { code: "currency_mismatch", message },
            PayoutError::InsufficientFunds { available } => ApiError::InsufficientFunds { available },
            PayoutError::Overflow => ApiError::Unprocessable(message),
        }
    }
}

impl From<PayoutServiceError> for ApiError {
    /// A payout command that got no outcome: 503, as nothing was stored and a retry may succeed.
    fn from(error: PayoutServiceError) -> ApiError {
        match error {
            PayoutServiceError::Engine(error) => ApiError::Engine(error),
            PayoutServiceError::Vault(error) => {
                tracing::error!(%error, "card vault failed");
                ApiError::Engine(EngineError::Unavailable)
            }
        }
    }
}

impl From<EndpointError> for ApiError {
    /// A refused endpoint request: 400 naming the field, 404, 409 `delivery_pending` or `endpoint_disabled`; 503 when the database or
    /// the card vault failed, 500 when no secret could be made.
    fn from(error: EndpointError) -> ApiError {
        match error {
            EndpointError::Invalid { field, reason } => ApiError::field(field, reason),
            EndpointError::NotFound => ApiError::NotFound("Webhook endpoint not found"),
            EndpointError::DeliveryNotFound => ApiError::NotFound("Delivery not found"),
            EndpointError::DeliveryPending => {
                ApiError::Conflict { code: "delivery_pending", message: error.to_string() }
            }
            EndpointError::Disabled => ApiError::Conflict { code: "endpoint_disabled", message: error.to_string() },
            EndpointError::Store(error) => ApiError::Store(error),
            EndpointError::Vault(error) => {
                tracing::error!(%error, "card vault failed");
                ApiError::Engine(EngineError::Unavailable)
            }
            EndpointError::Randomness => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<ReconcileError> for ApiError {
    /// A refused reconciliation request: 400 for a bad file (with its line) or option, 404, 409 for a state
    /// the request does not apply to, 413 for a file over the limit, 503 when the ledger or database failed.
    fn from(error: ReconcileError) -> ApiError {
        match error {
            ReconcileError::Invalid(error) => ApiError::StatementInvalid { line: error.line, reason: error.reason },
            ReconcileError::CsvMapping(reason) => ApiError::field("csv", reason),
            ReconcileError::AccountNotInFile(_) => ApiError::field("account", error.to_string()),
            ReconcileError::TooLarge { .. } => ApiError::PayloadTooLarge,
            ReconcileError::NotFound(what) => ApiError::NotFound(match what {
                "import" => "Statement import not found",
                "line" => "Statement line not found",
                "discrepancy" => "Discrepancy not found",
                _ => "Not found",
            }),
            ReconcileError::NotApplicable { reason } => ApiError::NotApplicable(reason),
            ReconcileError::Engine(error) => ApiError::Engine(error),
            ReconcileError::Store(error) => ApiError::Store(error),
            // The API reads from memory; an I/O error here is a defect, not the client's.
            ReconcileError::Io(error) => ApiError::Internal(format!("reading a statement: {error}")),
        }
    }
}

impl From<PrincipalError> for ApiError {
    /// A refused user change: 400 naming the bad field, 404 for an unknown user, 409 for a taken name or the
    /// last admin.
    fn from(error: PrincipalError) -> ApiError {
        match error {
            PrincipalError::BadUsername => ApiError::field("username", error.to_string()),
            PrincipalError::WeakPassword => ApiError::field("password", error.to_string()),
            PrincipalError::BadRole => ApiError::field("role", error.to_string()),
            PrincipalError::Exists => ApiError::Conflict { code: "user_exists", message: error.to_string() },
            PrincipalError::NotFound => ApiError::NotFound("User not found"),
            PrincipalError::LastAdmin => ApiError::Conflict { code: "last_admin", message: error.to_string() },
            PrincipalError::Hashing(_) => ApiError::Unprocessable("the password could not be hashed".into()),
            PrincipalError::Store(error) => ApiError::Store(error),
        }
    }
}

impl From<TokenError> for ApiError {
    /// A refused access token: 401 with the challenge. Only an expiry is told apart, so an answer never tells
    /// an attacker which other check failed.
    fn from(error: TokenError) -> ApiError {
        match error {
            TokenError::Expired => ApiError::unauthenticated("The access token has expired"),
            _ => ApiError::unauthenticated("The access token is invalid"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::TooManyRequests(seconds) => Some(*seconds),
            _ => None,
        };
        let challenge = matches!(self, ApiError::Unauthorized { challenge: true, .. });
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

/// The answer when a handler panicked: [`ApiError::Internal`], with the panic's message in the log.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    ApiError::Internal(format!("a request handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn an_internal_error_is_opaque() {
        let response = ApiError::Internal("secret detail".into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(body_text(response).await, r#"{"error":"Internal error","code":"internal"}"#);
        let response = panic_response(Box::new("boom"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_text(response).await, r#"{"error":"Internal error","code":"internal"}"#);
    }

    #[tokio::test]
    async fn a_statement_error_names_its_line_and_an_error_of_the_whole_file_names_none() {
        let response = ApiError::StatementInvalid { line: 7, reason: "bad amount".into() }.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap_or_default();
        assert_eq!((&body["line"], &body["details"]["body"]), (&serde_json::json!(7), &"line 7: bad amount".into()));
        let whole = ApiError::StatementInvalid { line: 0, reason: "the file is empty".into() }.into_response();
        let body: serde_json::Value = serde_json::from_str(&body_text(whole).await).unwrap_or_default();
        assert_eq!(body["code"], "statement_invalid", "{body}");
        assert!(body.get("line").is_none(), "a whole-file error has no line: {body}");
        assert_eq!(body["details"]["body"], "the file is empty", "{body}");
    }

    #[tokio::test]
    async fn a_timed_out_request_is_unconfirmed_with_retry_after() {
        let response = ApiError::TimedOut.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
        let body = body_text(response).await;
        assert!(body.contains(r#""code":"unconfirmed""#));
        // A read times out too: the message must not assume a write.
        assert!(body.contains("The request timed out"), "{body}");
    }

    #[tokio::test]
    async fn only_the_authentication_layer_challenges() {
        let challenged = ApiError::unauthenticated("Malformed Authorization header").into_response();
        assert_eq!(challenged.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenged.headers().get_all(header::WWW_AUTHENTICATE).iter().count(), 2);
        let plain = ApiError::unauthorized("Invalid username or password").into_response();
        assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
        assert!(plain.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(body_text(plain).await, r#"{"error":"Invalid username or password","code":"unauthorized"}"#);
    }
}
