//! `POST /api/webhook/bank/`: the bank's payment notices.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::{Json, response::IntoResponse, response::Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::access_log::Client;
use crate::api::extract::{is_json, is_length_limit};
use crate::api::schema::{InnText, RubAmount};
use crate::config::ConflictPolicy;
use crate::engine::batch::WriteOutcome;
use crate::error::{ApiError, ErrorBody};
use crate::webhook::intake::{FieldErrors, MAX_WEBHOOK_BODY_BYTES, parse_notice};
use payledger_core::OperationId;

/// The answer to an accepted notice (new, duplicate or conflicting).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// A human message; `Payment processed successfully` for a new payment.
    #[schema(example = "Payment processed successfully")]
    pub message: &'static str,
    /// `processed`, `accepted` (async mode), `duplicate` or `conflict`.
    #[schema(example = "processed")]
    pub status: &'static str,
    /// For a conflict: the fields that differ from the notice first received.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicting_fields: Vec<&'static str>,
}

/// The notice the bank sends, as documented for the bank (the handler parses the raw bytes itself).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BankNoticeBody {
    /// The bank's unique id of the operation.
    #[schema(example = "ccf0a86d-041b-4991-bcf7-e2352f7b8a4a", format = Uuid)]
    operation_id: String,
    /// Roubles, > 0, at most two decimals: a JSON number or a decimal string, read from its exact text.
    #[schema(value_type = RubAmount, example = 145000)]
    amount: String,
    /// The payer's INN: 10 or 12 digits.
    #[schema(value_type = InnText, example = "1234567890")]
    payer_inn: String,
    /// The payment document's number: not blank, no control characters, at most 128 characters.
    #[schema(example = "PAY-328", max_length = 128, schema_with = document_number_schema)]
    document_number: String,
    /// The payment document's date, RFC 3339, in the years 1900 to 9999 once converted to UTC. The pattern
    /// allows 1901 to 9998, the years that stay in that range in any offset.
    #[schema(example = "2024-04-27T21:00:00Z", schema_with = document_date_schema)]
    document_date: String,
}

pub(crate) fn document_number_schema() -> utoipa::openapi::Schema {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(crate::api::schema::visible_text_pattern()))
        .max_length(Some(payledger_core::bank::MAX_DOCUMENT_NUMBER_LEN))
        .examples([serde_json::json!("PAY-328")])
        .into()
}

pub(crate) fn document_date_schema() -> utoipa::openapi::Schema {
    use utoipa::openapi::{KnownFormat, SchemaFormat};
    // The years 1901 to 9998 in any offset; 1900 and 9999 may leave the range once converted to UTC, so the
    // spec keeps to the years that never do.
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some("^(190[1-9]|19[1-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"))
        .examples([serde_json::json!("2024-04-27T21:00:00Z")])
        .into()
}

/// Receive a bank payment notice.
///
/// Applies the payment exactly once by `operation_id`, even when duplicates arrive at the same moment.
/// A repeated notice answers 200 and changes nothing; one with the same id but different data also answers
/// 200 (or 409 with `PAYLEDGER_WEBHOOK_CONFLICT=reject`) and is recorded for operators.
#[utoipa::path(
    post,
    path = "/webhook/bank/",
    tag = "bank webhook",
    request_body(content = BankNoticeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Processed, accepted, or already processed", body = WebhookAnswer),
        (status = 400, description = "Invalid data; `details` names each bad field", body = ErrorBody),
        (status = 401, description = "Missing, expired or wrong `X-Payledger-Signature` (when PAYLEDGER_WEBHOOK_SECRET is set)", body = ErrorBody),
        (status = 403, description = "The source network is not allowed (PAYLEDGER_WEBHOOK_ALLOWED_NETWORKS)", body = ErrorBody),
        (status = 409, description = "Known operation_id with different data (reject policy only)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "`ledger_refused`: the ledger refused the credit (an overflowing balance); the notice is recorded as failed, is never credited later, and every exact replay gets this same answer", body = ErrorBody),
        (status = 503, description = "Nothing was applied; retry", body = ErrorBody),
    )
)]
pub async fn receive_bank_notice(State(state): State<AppState>, client: Client, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(error) = check_network(&state, &client).await {
        return error.into_response();
    }
    match handle(&state, &parts.headers, body).await {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Refuses a sender outside the allowed networks (and keeps the refusal for operators).
pub(crate) async fn check_network(state: &AppState, client: &Client) -> Result<(), ApiError> {
    let guard = &state.webhook_guard;
    // The client behind trusted proxies: the proxy's own address would let every sender in, or none.
    if let Some(address) = client.address()
        && !crate::networks::allows(&guard.allowed_networks, address)
    {
        tracing::warn!(client = %address, "bank notice from a network outside the allow-list");
        state.intake.reject("forbidden_network", &FieldErrors::from([("peer".into(), address.to_string())]), b"").await;
        return Err(ApiError::Forbidden("This network may not post bank notices".into()));
    }
    Ok(())
}

/// Refuses a body without a valid signature when a secret is configured (and keeps the refusal). The
/// signature covers the raw bytes, checked before anything parses them.
pub(crate) async fn check_signature(state: &AppState, headers: &HeaderMap, bytes: &[u8]) -> Result<(), ApiError> {
    if state.webhook_guard.secrets.is_empty() {
        return Ok(());
    }
    let secrets: Vec<&str> = state.webhook_guard.secrets.iter().map(String::as_str).collect();
    let header = headers.get(crate::webhook::signature::SIGNATURE_HEADER).and_then(|value| value.to_str().ok());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if let Err(error) =
        crate::webhook::signature::verify(&secrets, header, bytes, now, state.webhook_guard.tolerance_seconds)
    {
        state
            .intake
            .reject("bad_signature", &FieldErrors::from([("signature".into(), error.to_string())]), bytes)
            .await;
        return Err(ApiError::unauthorized(format!("Invalid webhook signature: {error}")));
    }
    Ok(())
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Result<WebhookAnswer, ApiError> {
    if !is_json(headers) {
        state.intake.reject("unsupported_media_type", &FieldErrors::new(), b"").await;
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = match to_bytes(body, MAX_WEBHOOK_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) if is_length_limit(&error) => {
            state.intake.reject("payload_too_large", &FieldErrors::new(), b"").await;
            return Err(ApiError::PayloadTooLarge);
        }
        // The client went away or sent a broken body; there is nothing to keep.
        Err(_) => return Err(ApiError::field("body", "could not be read")),
    };
    check_signature(state, headers, &bytes).await?;
    let notice = match parse_notice(&bytes) {
        Ok(notice) => notice,
        Err(details) => {
            state.intake.reject("invalid_data", &details, &bytes).await;
            return Err(ApiError::InvalidData(details));
        }
    };
    let operation_id = notice.operation_id;
    notice_answer(state.intake.receive(notice, bytes).await?, operation_id, state.webhook_conflict)
}

/// What a notice's outcome answers the bank.
pub(crate) fn notice_answer(
    outcome: WriteOutcome,
    operation_id: OperationId,
    policy: ConflictPolicy,
) -> Result<WebhookAnswer, ApiError> {
    match outcome {
        WriteOutcome::NoticeApplied => Ok(WebhookAnswer {
            message: "Payment processed successfully",
            status: "processed",
            conflicting_fields: vec![],
        }),
        WriteOutcome::NoticeAccepted => Ok(WebhookAnswer {
            message: "Payment accepted for processing",
            status: "accepted",
            conflicting_fields: vec![],
        }),
        WriteOutcome::NoticeDuplicate | WriteOutcome::AlreadyHandled | WriteOutcome::Stored => {
            Ok(WebhookAnswer { message: "Payment already processed", status: "duplicate", conflicting_fields: vec![] })
        }
        WriteOutcome::NoticeConflict { fields, original_failed } => {
            let names: Vec<&'static str> = fields.iter().map(|f| f.name()).collect();
            tracing::warn!(%operation_id, fields = ?names, "known operation_id arrived with different data");
            match policy {
                // 200 either way (the contract of the record policy), but never "processed" for a notice whose
                // credit failed: nothing was processed.
                ConflictPolicy::Record if original_failed => Ok(WebhookAnswer {
                    message: "Payment already received and refused (the original was not applied); this notice \
                              differs from the original and was recorded",
                    status: "conflict",
                    conflicting_fields: names,
                }),
                ConflictPolicy::Record => Ok(WebhookAnswer {
                    message: "Payment already processed; this notice differs from the original and was recorded",
                    status: "conflict",
                    conflicting_fields: names,
                }),
                ConflictPolicy::Reject => Err(ApiError::Conflict {
                    code: "operation_id_conflict",
                    message: format!("operation_id was already used with different {}", names.join(", ")),
                }),
            }
        }
        // The same answer for the notice whose credit failed and for every exact replay of it: the reason is the
        // one recorded with the notice.
        WriteOutcome::NoticeFailed { reason, .. } => {
            Err(ApiError::Unprocessable(format!("Payment could not be applied: {reason}")))
        }
        WriteOutcome::NotRecorded
        | WriteOutcome::Balance(_)
        | WriteOutcome::Payout(_)
        | WriteOutcome::Jobs(_)
        | WriteOutcome::Deliveries(_)
        | WriteOutcome::Statement(_) => Err(ApiError::Engine(crate::engine::EngineError::Unavailable)),
    }
}
