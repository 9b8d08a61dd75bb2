//! `POST /api/v1/gateway/events/`: the payment gateway's signed callbacks about payouts it handled.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use payledger_core::payout::{Actor, PayoutStatus, validate_description};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::api::extract::json_body;
use crate::api::payouts::{MAX_PAYOUT_BODY_BYTES, PayoutAnswer, answer_with, changed_payout};
use crate::engine::payouts::PayoutChange;
use crate::error::{ApiError, ErrorBody};
use crate::fields::{JsonObject, json_string};

/// A callback from the payment gateway, as documented for the gateway.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct GatewayEventBody {
    /// The payout (the idempotency key the gateway was given).
    payout_id: Uuid,
    /// `returned`: the money came back after the payout completed.
    #[schema(value_type = GatewayEventName, example = "returned")]
    event: String,
    /// Why, for the payout's history: at most 500 characters, no control characters but newline and tab.
    #[schema(example = "account closed", max_length = 500, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    reason: Option<String>,
}

/// What the gateway reports.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum GatewayEventName {
    /// The money came back after the payout completed.
    Returned,
}

/// The payment gateway reports a completed payout returned.
///
/// Signed like payledger's requests to the gateway: `X-Payledger-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
/// "<t>.<raw body>" with PAYLEDGER_GATEWAY_SECRET>`, within 300 s of now. The payout becomes `returned` and
/// the money goes back to its source account.
#[utoipa::path(
    post,
    path = "/v1/gateway/events/",
    tag = "payouts",
    request_body(content = GatewayEventBody, content_type = "application/json",
                 example = json!({"payout_id": "01a22d99-a8b9-7724-80e7-434be47b8c17", "event": "returned", "reason": "account closed"})),
    responses(
        (status = 200, description = "The payout, returned", body = PayoutAnswer),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 401, description = "Missing, expired or wrong signature (or no gateway secret configured)", body = ErrorBody),
        (status = 404, description = "No such payout", body = ErrorBody),
        (status = 409, description = "The payout is not completed", body = ErrorBody),
    )
)]
pub async fn gateway_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = json_body(&headers, body, MAX_PAYOUT_BODY_BYTES).await?;
    let Some(secret) = state.gateway_secret.as_deref() else {
        return Err(ApiError::unauthorized("gateway callbacks need PAYLEDGER_GATEWAY_SECRET"));
    };
    let header = headers.get(crate::webhook::signature::SIGNATURE_HEADER).and_then(|value| value.to_str().ok());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    crate::webhook::signature::verify(
        &[secret],
        header,
        &bytes,
        now,
        crate::webhook::signature::DEFAULT_TOLERANCE_SECONDS,
    )
    .map_err(|error| ApiError::unauthorized(error.to_string()))?;
    let mut fields = JsonObject::parse(&bytes).map_err(ApiError::InvalidData)?;
    let id = fields.field("payout_id", |raw| Uuid::parse_str(&json_string(raw)?).map_err(|_| "must be a UUID".into()));
    let event = fields.field("event", json_string);
    if event.as_deref().is_some_and(|event| event != "returned") {
        fields.error("event", "must be returned");
    }
    let reason = fields.optional_field("reason", |raw| {
        let text = json_string(raw)?;
        validate_description(&text).map(|()| text)
    });
    fields.finish().map_err(ApiError::InvalidData)?;
    let id = id.ok_or_else(|| ApiError::field("payout_id", "this field is required"))?;
    let change = PayoutChange::Status {
        to: PayoutStatus::Returned,
        reason: Some(format!("returned by the gateway: {}", reason.unwrap_or_default())),
        reference: None,
    };
    changed_payout(state.payouts.change(id, change, Actor::Operator, None, Some("gateway".to_owned())).await?)?;
    answer_with(&state, id, StatusCode::OK).await
}
