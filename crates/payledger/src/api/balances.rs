//! The user-balance API: deposit, reserve, recognize revenue, release, transfer, withdraw, balances and
//! history. Paths and bodies are the original service's.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use payledger_core::balances::{ActivityKind, OrderId};
use payledger_core::{BalanceOperation, OrderKey, ServiceId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::JsonRubles;
use crate::api::access::Caller;
use crate::api::extract::{ApiQuery, json_body, query_integer};
use crate::api::schema::{IdText, IdempotencyKeyText, PositiveId, RubAmount};
use crate::balances::Idempotency;
use crate::engine::balances::{BalanceOutcome, OperationResult, Renderer};
use crate::error::{ApiError, ErrorBody};
use crate::fields::{FieldErrors, JsonObject, parse_amount, parse_integer};
use crate::idempotency::IdempotencyKey;
use crate::store::batch::StoredResponse;
use crate::store::{ActivityRow, HistoryCursor, HistoryPage, HistorySort};
use crate::views::{LineFacts, TransactionObject};

/// The largest balance-operation body accepted, in bytes.
pub const MAX_OPERATION_BODY_BYTES: usize = 16 * 1024;
/// The default number of history lines per page.
pub const DEFAULT_HISTORY_PAGE: i64 = 50;
/// The most history lines per page.
pub const MAX_HISTORY_PAGE: i64 = 500;

/// The request header carrying an idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header set on a replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A stored history line as the API shows it.
fn transaction_from_row(user: i64, row: ActivityRow) -> Result<TransactionObject, ApiError> {
    let kind = ActivityKind::parse(&row.kind)
        .ok_or_else(|| crate::store::StoreError::Corrupt(format!("history line {}: kind {}", row.id, row.kind)))?;
    Ok(TransactionObject::new(LineFacts {
        id: row.id,
        user,
        kind,
        amount: row.amount,
        held_change: row.held_change,
        counterparty: row.counterparty,
        order: row.service_id.zip(row.order_id),
        payout: row.payout_id,
        created_at: row.created_at,
    }))
}

/// Both sides of a transfer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferAnswer {
    /// The sender's line (negative amount).
    pub sender_transaction: TransactionObject,
    /// The recipient's line.
    pub recipient_transaction: TransactionObject,
}

/// An answer as stored under an idempotency key: the status and the JSON text of `body`.
pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> StoredResponse {
    // Serializing these plain structs cannot fail; an empty object would still be valid JSON.
    StoredResponse { status: status.as_u16(), body: serde_json::to_string(body).unwrap_or_else(|_| "{}".into()) }
}

fn refusal(error: &payledger_core::BalanceError) -> StoredResponse {
    let (status, body) = ApiError::from(error.clone()).status_and_body();
    json_response(status, &body)
}

/// The response of an operation that writes one history line.
fn render_single(result: &OperationResult) -> StoredResponse {
    match result {
        Ok(lines) => match lines.first() {
            Some(line) => json_response(StatusCode::CREATED, &TransactionObject::from_line(line)),
            None => json_response(StatusCode::CREATED, &serde_json::json!({})),
        },
        Err(error) => refusal(error),
    }
}

/// The response of a transfer: both sides.
fn render_transfer(result: &OperationResult) -> StoredResponse {
    match result {
        Ok(lines) => match lines.as_slice() {
            [sender, recipient] => json_response(
                StatusCode::CREATED,
                &TransferAnswer {
                    sender_transaction: TransactionObject::from_line(sender),
                    recipient_transaction: TransactionObject::from_line(recipient),
                },
            ),
            _ => json_response(StatusCode::CREATED, &serde_json::json!({})),
        },
        Err(error) => refusal(error),
    }
}

/// The HTTP answer for a stored response; a replayed one is marked with `Idempotent-Replayed: true`.
pub(crate) fn stored(response: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], response.body).into_response();
    if replayed {
        answer.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    answer
}

/// The `Idempotency-Key` header, if sent, scoped to the caller (see [`IdempotencyKey::parse`]).
pub(crate) fn idempotency_key(headers: &HeaderMap, caller: &Caller) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    IdempotencyKey::parse(value.as_bytes(), &caller.scope())
        .map(Some)
        .map_err(|error| ApiError::field("Idempotency-Key", error.to_string()))
}

/// One balance operation endpoint: parse, apply at most once per key, answer.
async fn operation(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
    endpoint: &'static str,
    parse: fn(&[u8]) -> Result<BalanceOperation, FieldErrors>,
    render: Renderer,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers, caller)?;
    let bytes = json_body(headers, body, MAX_OPERATION_BODY_BYTES).await?;
    let by = Some(caller.name().to_owned());
    let outcome = match (parse(&bytes), key) {
        (Ok(operation), key) => {
            state.balances.apply(operation, key.map(|key| Idempotency { key, endpoint, render }), by).await?
        }
        (Err(details), None) => return Err(ApiError::InvalidData(details)),
        // A 4xx is kept under the key like any other answer: the same request gets it again, another
        // request cannot use the key.
        (Err(details), Some(key)) => {
            let (status, body) = ApiError::InvalidData(details).status_and_body();
            state.balances.refuse(key, endpoint, &bytes, json_response(status, &body)).await?
        }
    };
    if outcome == BalanceOutcome::KeyInFlight {
        let mut response = ApiError::idempotency_key_in_flight().into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(response);
    }
    let (response, replayed) = balance_answer(outcome, render, endpoint)?;
    Ok(stored(response, replayed))
}

/// What a balance operation's outcome answers: the response (stored with its key, or rendered now) and
/// whether it is a replay, or the error it is.
pub(crate) fn balance_answer(
    outcome: BalanceOutcome,
    render: Renderer,
    endpoint: &str,
) -> Result<(StoredResponse, bool), ApiError> {
    match outcome {
        BalanceOutcome::Executed { response: Some(response), .. } | BalanceOutcome::Kept(response) => {
            Ok((response, false))
        }
        BalanceOutcome::Executed { result, response: None } => Ok((render(&result), false)),
        BalanceOutcome::Replayed(response) => Ok((response, true)),
        BalanceOutcome::KeyReused => Err(ApiError::idempotency_key_reused()),
        BalanceOutcome::KeyInFlight => Err(ApiError::idempotency_key_in_flight()),
        BalanceOutcome::Broken(defect) => {
            Err(ApiError::Internal(format!("the ledger engine could not decide a {endpoint} operation: {defect}")))
        }
    }
}

/// A balance operation as an endpoint takes it: its stable name (part of every key's fingerprint), its
/// parser and how its answer is rendered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OperationKind {
    /// The endpoint's name.
    pub endpoint: &'static str,
    /// Reads the body.
    pub parse: fn(&[u8]) -> Result<BalanceOperation, FieldErrors>,
    /// Renders the answer.
    pub render: Renderer,
}

/// Each balance operation by the name the batch API gives it, with its single endpoint's rules.
pub(crate) const OPERATION_KINDS: [(&str, OperationKind); 6] = [
    ("deposit", OperationKind { endpoint: "add_funds", parse: parse_deposit, render: render_single }),
    ("withdraw", OperationKind { endpoint: "withdraw_funds", parse: parse_withdraw, render: render_single }),
    ("reserve", OperationKind { endpoint: "reserve_funds", parse: parse_reserve, render: render_single }),
    ("capture", OperationKind { endpoint: "deduct_funds", parse: parse_deduct, render: render_single }),
    ("release", OperationKind { endpoint: "unreserve_funds", parse: parse_release, render: render_single }),
    ("transfer", OperationKind { endpoint: "transfer_funds", parse: parse_transfer, render: render_transfer }),
];

fn user_id(raw: &RawValue) -> Result<UserId, String> {
    UserId::new(parse_integer(raw)?).map_err(|error| error.to_string())
}

fn order_key(body: &mut JsonObject<'_>) -> Option<OrderKey> {
    let user = body.field("user_id", user_id);
    let service = body.field("service_id", |raw| ServiceId::new(parse_integer(raw)?).map_err(|e| e.to_string()));
    let order = body.field("order_id", |raw| OrderId::new(parse_integer(raw)?).map_err(|e| e.to_string()));
    Some(OrderKey { user: user?, service: service?, order: order? })
}

/// Finishes parsing: every field's error, or the operation.
fn finish(body: JsonObject<'_>, operation: Option<BalanceOperation>) -> Result<BalanceOperation, FieldErrors> {
    body.finish()?;
    operation.ok_or_else(|| crate::fields::invalid("body", "is incomplete"))
}

pub(crate) fn parse_deposit(bytes: &[u8]) -> Result<BalanceOperation, FieldErrors> {
    let mut body = JsonObject::parse(bytes)?;
    let user = body.field("user_id", user_id);
    let amount = body.field("amount", parse_amount);
    let operation = user.zip(amount).map(|(user, amount)| BalanceOperation::Deposit { user, amount });
    finish(body, operation)
}

pub(crate) fn parse_withdraw(bytes: &[u8]) -> Result<BalanceOperation, FieldErrors> {
    let mut body = JsonObject::parse(bytes)?;
    let user = body.field("user_id", user_id);
    let amount = body.field("amount", parse_amount);
    let operation = user.zip(amount).map(|(user, amount)| BalanceOperation::Withdraw { user, amount });
    finish(body, operation)
}

pub(crate) fn parse_reserve(bytes: &[u8]) -> Result<BalanceOperation, FieldErrors> {
    let mut body = JsonObject::parse(bytes)?;
    let key = order_key(&mut body);
    let amount = body.field("amount", parse_amount);
    let operation = key.zip(amount).map(|(key, amount)| BalanceOperation::Reserve { key, amount });
    finish(body, operation)
}

pub(crate) fn parse_deduct(bytes: &[u8]) -> Result<BalanceOperation, FieldErrors> {
    let mut body = JsonObject::parse(bytes)?;
    let key = order_key(&mut body);
    let amount = body.field("amount", parse_amount);
    let operation = key.zip(amount).map(|(key, amount)| BalanceOperation::Deduct { key, amount });
    finish(body, operation)
}

pub(crate) fn parse_release(bytes: &[u8]) -> Result<BalanceOperation, FieldErrors> {
    let mut body = JsonObject::parse(bytes)?;
    let key = order_key(&mut body);
    let has_amount = body.optional("amount").is_some();
    let amount = body.optional_field("amount", parse_amount);
    // An amount that was given but is invalid is already recorded; only a valid one (or none) goes on.
    let operation =
        key.filter(|_| amount.is_some() || !has_amount).map(|key| BalanceOperation::Release { key, amount });
    finish(body, operation)
}

pub(crate) fn parse_transfer(bytes: &[u8]) -> Result<BalanceOperation, FieldErrors> {
    let mut body = JsonObject::parse(bytes)?;
    let sender = body.field("sender_id", user_id);
    let recipient = body.field("recipient_id", user_id);
    let amount = body.field("amount", parse_amount);
    if sender.is_some() && sender == recipient {
        body.error("recipient_id", "must differ from sender_id");
    }
    let operation = match (sender, recipient, amount) {
        (Some(sender), Some(recipient), Some(amount)) => Some(BalanceOperation::Transfer { sender, recipient, amount }),
        _ => None,
    };
    finish(body, operation)
}

/// `{"user_id", "amount"}`, as documented for clients. Other fields are ignored, as the original service did.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UserAmountBody {
    /// The user: a positive integer (or a string of its digits).
    #[schema(value_type = PositiveId, example = 1)]
    user_id: i64,
    /// Roubles, > 0, at most two decimals: a JSON number or a decimal string, read from its exact text.
    #[schema(value_type = RubAmount, example = "100.00")]
    amount: String,
}

/// `{"user_id", "service_id", "order_id", "amount"}`, as documented for clients.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct OrderAmountBody {
    /// The user paying for the order.
    #[schema(value_type = PositiveId, example = 1)]
    user_id: i64,
    /// The service selling it.
    #[schema(value_type = PositiveId, example = 101)]
    service_id: i64,
    /// The order.
    #[schema(value_type = PositiveId, example = 1001)]
    order_id: i64,
    /// Roubles, > 0, at most two decimals.
    #[schema(value_type = RubAmount, example = "50.00")]
    amount: String,
}

/// `{"user_id", "service_id", "order_id"}` with an optional `amount` that must match the reservation.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ReleaseBody {
    /// The user who reserved.
    #[schema(value_type = PositiveId, example = 1)]
    user_id: i64,
    /// The service.
    #[schema(value_type = PositiveId, example = 101)]
    service_id: i64,
    /// The order.
    #[schema(value_type = PositiveId, example = 1001)]
    order_id: i64,
    /// If given (not null), must equal the reserved amount.
    #[schema(value_type = Option<RubAmount>, example = "50.00")]
    amount: Option<String>,
}

/// `{"sender_id", "recipient_id", "amount"}`, as documented for clients.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct TransferBody {
    /// Who pays.
    #[schema(value_type = PositiveId, example = 1)]
    sender_id: i64,
    /// Who is paid; must differ from the sender (400 otherwise) and already have an account.
    #[schema(value_type = PositiveId, example = 2)]
    recipient_id: i64,
    /// Roubles, > 0, at most two decimals.
    #[schema(value_type = RubAmount, example = "25.00")]
    amount: String,
}

/// Deposit money to a user; the user's account is created on the first deposit.
#[utoipa::path(
    post,
    path = "/add_funds/",
    tag = "user balances",
    params(("Idempotency-Key" = Option<IdempotencyKeyText>, Header, description = "Up to 255 characters; a retry with the same key and body replays the first answer")),
    request_body(content = UserAmountBody, content_type = "application/json", example = json!({"user_id": 1, "amount": 100})),
    responses(
        (status = 201, description = "Deposited", body = TransactionObject),
        (status = 400, description = "Invalid data; `details` names each bad field", body = ErrorBody),
        (status = 409, description = "`idempotency_key_reused` or `idempotency_key_in_flight`", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not applied (`unavailable`, `overloaded`) or not confirmed (`unconfirmed`): retry with the same Idempotency-Key", body = ErrorBody),
    )
)]
pub async fn add_funds(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operation(&state, &caller, &headers, body, "add_funds", parse_deposit, render_single).await
}

/// Withdraw a user's available money.
#[utoipa::path(
    post,
    path = "/withdraw_funds/",
    tag = "user balances",
    params(("Idempotency-Key" = Option<IdempotencyKeyText>, Header, description = "Up to 255 characters")),
    request_body(content = UserAmountBody, content_type = "application/json", example = json!({"user_id": 1, "amount": "10.00"})),
    responses(
        (status = 201, description = "Withdrawn", body = TransactionObject),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 404, description = "The user has no account", body = ErrorBody),
        (status = 409, description = "`insufficient_funds` (with `available`), or an idempotency conflict", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not applied (`unavailable`, `overloaded`) or not confirmed (`unconfirmed`): retry with the same Idempotency-Key", body = ErrorBody),
    )
)]
pub async fn withdraw_funds(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operation(&state, &caller, &headers, body, "withdraw_funds", parse_withdraw, render_single).await
}

/// Reserve a user's available money for an order. Each (user, service, order) can be reserved once, ever.
#[utoipa::path(
    post,
    path = "/reserve_funds/",
    tag = "user balances",
    params(("Idempotency-Key" = Option<IdempotencyKeyText>, Header, description = "Up to 255 characters")),
    request_body(content = OrderAmountBody, content_type = "application/json", example = json!({"user_id": 1, "service_id": 101, "order_id": 1001, "amount": "50.00"})),
    responses(
        (status = 201, description = "Reserved", body = TransactionObject),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 404, description = "The user has no account", body = ErrorBody),
        (status = 409, description = "`insufficient_funds`, `hold_exists`, or an idempotency conflict", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not applied (`unavailable`, `overloaded`) or not confirmed (`unconfirmed`): retry with the same Idempotency-Key", body = ErrorBody),
    )
)]
pub async fn reserve_funds(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operation(&state, &caller, &headers, body, "reserve_funds", parse_reserve, render_single).await
}

/// Recognize revenue: capture an order's reservation into its service's revenue account.
#[utoipa::path(
    post,
    path = "/deduct_funds/",
    tag = "user balances",
    params(("Idempotency-Key" = Option<IdempotencyKeyText>, Header, description = "Up to 255 characters")),
    request_body(content = OrderAmountBody, content_type = "application/json", example = json!({"user_id": 1, "service_id": 101, "order_id": 1001, "amount": "50.00"})),
    responses(
        (status = 201, description = "Captured; counts toward the revenue report", body = TransactionObject),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 404, description = "No reservation for this order", body = ErrorBody),
        (status = 409, description = "`amount_mismatch` (with `reserved`), `hold_settled`, or an idempotency conflict", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not applied (`unavailable`, `overloaded`) or not confirmed (`unconfirmed`): retry with the same Idempotency-Key", body = ErrorBody),
    )
)]
pub async fn deduct_funds(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operation(&state, &caller, &headers, body, "deduct_funds", parse_deduct, render_single).await
}

/// Release an order's reservation back to the user's available balance.
#[utoipa::path(
    post,
    path = "/unreserve_funds/",
    tag = "user balances",
    params(("Idempotency-Key" = Option<IdempotencyKeyText>, Header, description = "Up to 255 characters")),
    request_body(content = ReleaseBody, content_type = "application/json", example = json!({"user_id": 1, "service_id": 101, "order_id": 1001})),
    responses(
        (status = 201, description = "Released", body = TransactionObject),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 404, description = "No reservation for this order", body = ErrorBody),
        (status = 409, description = "`amount_mismatch`, `hold_settled`, or an idempotency conflict", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not applied (`unavailable`, `overloaded`) or not confirmed (`unconfirmed`): retry with the same Idempotency-Key", body = ErrorBody),
    )
)]
pub async fn unreserve_funds(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operation(&state, &caller, &headers, body, "unreserve_funds", parse_release, render_single).await
}

/// Transfer available money between two users who both have accounts.
#[utoipa::path(
    post,
    path = "/transfer_funds/",
    tag = "user balances",
    params(("Idempotency-Key" = Option<IdempotencyKeyText>, Header, description = "Up to 255 characters")),
    request_body(content = TransferBody, content_type = "application/json", example = json!({"sender_id": 1, "recipient_id": 2, "amount": "25.00"})),
    responses(
        (status = 201, description = "Transferred; both sides' lines", body = TransferAnswer),
        (status = 400, description = "Invalid data, or a transfer to oneself", body = ErrorBody),
        (status = 404, description = "The sender or the recipient has no account (`details` names which)", body = ErrorBody),
        (status = 409, description = "`insufficient_funds`, or an idempotency conflict", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not applied (`unavailable`, `overloaded`) or not confirmed (`unconfirmed`): retry with the same Idempotency-Key", body = ErrorBody),
    )
)]
pub async fn transfer_funds(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operation(&state, &caller, &headers, body, "transfer_funds", parse_transfer, render_transfer).await
}

/// Whose balance.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BalanceQuery {
    /// The user.
    #[param(required = true, value_type = IdText)]
    user_id: Option<String>,
}

/// A user's balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserBalanceAnswer {
    /// The user.
    #[schema(example = 2)]
    pub user_id: i64,
    /// The available balance in roubles (held money excluded).
    pub amount: JsonRubles,
    /// Everything held (order reservations and payout holds), in roubles.
    pub reserved: JsonRubles,
}

fn query_user(text: Option<&str>, field: &str) -> Result<UserId, ApiError> {
    let text = text.ok_or_else(|| ApiError::field(field, "this field is required"))?;
    let invalid = || ApiError::field(field, "must be a positive integer");
    let value: i64 = text.parse().map_err(|_| invalid())?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    UserId::new(value).map_err(|_| invalid())
}

/// Read a user's balance.
#[utoipa::path(
    get,
    path = "/balances/",
    tag = "user balances",
    params(BalanceQuery),
    responses(
        (status = 200, body = UserBalanceAnswer, example = json!({"user_id": 2, "amount": 100.00, "reserved": 0.00})),
        (status = 400, description = "Missing or invalid user_id", body = ErrorBody),
        (status = 404, description = "The user has no account", body = ErrorBody),
    )
)]
pub async fn balance(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<BalanceQuery>,
) -> Result<Json<UserBalanceAnswer>, ApiError> {
    let user = query_user(query.user_id.as_deref(), "user_id")?;
    let balance = state.store.user_balance(user.get()).await?.ok_or_else(|| user_not_found(user))?;
    Ok(Json(UserBalanceAnswer {
        user_id: user.get(),
        amount: JsonRubles(balance.balance - balance.held),
        reserved: JsonRubles(balance.held),
    }))
}

fn user_not_found(user: UserId) -> ApiError {
    ApiError::FieldNotFound { field: "user_id", message: format!("user {user} not found") }
}

/// Which page of a user's history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// `date` (default: the order operations were applied) or `amount`: by the line's signed effect on the
    /// available balance (`available_change`), so a withdrawal sorts below a deposit.
    #[param(value_type = Option<HistorySortName>)]
    sort: Option<String>,
    /// `desc` (default) or `asc`.
    #[param(value_type = Option<SortOrder>)]
    order: Option<String>,
    /// Lines per page, 1 to 500 (default 50); outside that, 400 naming `limit`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page, with the same `sort` and `order`.
    #[param(pattern = "^(64617465|616d6f756e74)3a(617363|64657363)3a(2d)?(3[0-9]){1,18}3a(3[0-9]){1,18}$")]
    cursor: Option<String>,
}

/// How a history is sorted.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum HistorySortName {
    /// The order the operations were applied.
    Date,
    /// The signed change of the available balance.
    Amount,
}

/// Newest (or largest) first, or the reverse.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum SortOrder {
    /// Descending.
    Desc,
    /// Ascending.
    Asc,
}

/// A page of a user's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryAnswer {
    /// The lines of this page.
    pub results: Vec<TransactionObject>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The cursor's text: which order it belongs to and where the last line was; hex so clients treat it as
/// opaque.
fn encode_cursor(sort: HistorySort, descending: bool, at: HistoryCursor) -> String {
    let text = format!("{}:{}:{}:{}", sort_name(sort), if descending { "desc" } else { "asc" }, at.amount, at.id);
    crate::hex::encode(text.as_bytes())
}

fn decode_cursor(cursor: &str, sort: HistorySort, descending: bool) -> Result<HistoryCursor, ApiError> {
    let invalid = || ApiError::field("cursor", "is not a cursor of this list");
    if cursor.len() > 200 {
        return Err(invalid());
    }
    let bytes = crate::hex::decode(cursor).ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let parts: Vec<&str> = text.split(':').collect();
    let [name, direction, amount, id] = parts.as_slice() else { return Err(invalid()) };
    if *name != sort_name(sort) || *direction != if descending { "desc" } else { "asc" } {
        return Err(ApiError::field("cursor", "belongs to another sort or order"));
    }
    Ok(HistoryCursor { amount: amount.parse().map_err(|_| invalid())?, id: id.parse().map_err(|_| invalid())? })
}

fn sort_name(sort: HistorySort) -> &'static str {
    match sort {
        HistorySort::Date => "date",
        HistorySort::Amount => "amount",
    }
}

/// Read a user's history, with stable keyset pagination.
#[utoipa::path(
    get,
    path = "/users/{user_id}/transactions/",
    tag = "user balances",
    params(("user_id" = IdText, Path, description = "The user"), HistoryQuery),
    responses(
        (status = 200, body = HistoryAnswer),
        (status = 400, description = "Invalid user_id, sort, order, limit or cursor; `details` names it", body = ErrorBody),
        (status = 404, description = "The user has no account", body = ErrorBody),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    Path(user): Path<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    let user = query_user(Some(&user), "user_id")?;
    let sort = match query.sort.as_deref() {
        None | Some("date") => HistorySort::Date,
        Some("amount") => HistorySort::Amount,
        Some(_) => return Err(ApiError::field("sort", "must be date or amount")),
    };
    let descending = match query.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::field("order", "must be asc or desc")),
    };
    let limit = query_integer("limit", query.limit.as_deref(), DEFAULT_HISTORY_PAGE, 1..=MAX_HISTORY_PAGE)?;
    let after = query.cursor.as_deref().map(|cursor| decode_cursor(cursor, sort, descending)).transpose()?;
    // One line more than asked tells whether another page exists, so the last page has no next cursor.
    let page = HistoryPage { sort, descending, after, limit: limit + 1 };
    let mut rows = state.store.user_history(user.get(), page).await?.ok_or_else(|| user_not_found(user))?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|row| encode_cursor(sort, descending, HistoryCursor { amount: row.amount, id: row.id }));
    let results = rows.into_iter().map(|row| transaction_from_row(user.get(), row)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(HistoryAnswer { results, next_cursor }))
}
