//! The payout API: `/api/v1/payouts/` (also at `/api/payouts/`), payout requests that workers send through
//! the payment gateway.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use payledger_core::money::format_minor;
use payledger_core::payout::{
    Actor, MASK_PREFIX, PayoutStatus, RecipientDetails, RecipientInput, validate_description,
};
use payledger_core::{Currency, Inn, Money, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::api::access::Caller;
use crate::api::balances::{idempotency_key, json_response, stored};
use crate::api::extract::{ApiQuery, json_body, query_integer};
use crate::api::schema::{IdempotencyKeyText, InnText, PositiveId};
use crate::engine::payouts::{PayoutChange, PayoutError, PayoutOutcome};
use crate::error::{ApiError, ErrorBody};
use crate::fields::{FieldErrors, JsonObject, json_string, parse_integer};
use crate::payouts::PayoutRequest;
use crate::store::batch::StoredResponse;
use crate::store::batch::{PayoutSource, PayoutState};
use crate::store::payouts::{PayoutFilter, PayoutOrdering, PayoutView};
use crate::timefmt::serde_rfc3339;

/// The largest payout request body accepted, in bytes.
pub const MAX_PAYOUT_BODY_BYTES: usize = 16 * 1024;
/// The default page size of payout lists.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// The largest page size of payout lists.
pub const MAX_PAGE_SIZE: i64 = 100;

/// A payout's recipient as shown: numbers masked to their last four digits.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientAnswer {
    /// `card` or `bank_account`.
    #[serde(rename = "type")]
    #[schema(example = "card")]
    pub kind: String,
    /// A card's masked number.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "•••• 1111")]
    pub number: Option<String>,
    /// A bank account's masked number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_number: Option<String>,
    /// A bank account's BIK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bik: Option<String>,
    /// The holder.
    #[schema(example = "Иван Иванов")]
    pub holder: String,
}

/// Where a payout's money comes from: `{"organization_inn": …}` or `{"user_id": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceAnswer {
    /// The organization's INN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_inn: Option<String>,
    /// The user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
}

/// One status change of a payout.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChange {
    /// The status before (null at creation).
    pub from: Option<String>,
    /// The status after (`archived` when a cancelled payout was deleted).
    pub to: String,
    /// `client`, `operator` or `worker`.
    pub actor: String,
    /// Why, for a failure.
    pub reason: Option<String>,
    /// When.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// A payout request.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutAnswer {
    /// Its id; also the gateway's idempotency key.
    pub id: Uuid,
    /// The amount, a decimal string with the currency's minor digits.
    #[schema(example = "1500.00")]
    pub amount: String,
    /// ISO 4217.
    #[schema(example = "RUB")]
    pub currency: &'static str,
    /// The recipient, masked.
    pub recipient_details: RecipientAnswer,
    /// Free text.
    #[schema(example = "Тестовая выплата")]
    pub description: String,
    /// `pending`, `processing`, `completed`, `failed`, `cancelled` or `returned`.
    #[schema(example = "pending")]
    pub status: &'static str,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Gateway attempts so far.
    pub attempts: i32,
    /// The gateway's reference once completed.
    pub gateway_reference: Option<String>,
    /// The account it is drawn from, or null.
    pub source: Option<SourceAnswer>,
    /// When it was created.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// Every status change (detail view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_history: Option<Vec<StatusChange>>,
}

/// The amount as a decimal string with the currency's minor digits (2 for an unknown code).
fn amount_text(amount: i64, currency: &str) -> String {
    let digits = Currency::from_code(currency).map_or(2, |c| c.minor_digits());
    format_minor(amount, digits)
}

/// The account the payout is drawn from, as shown.
fn source_answer(state: &PayoutState) -> Option<SourceAnswer> {
    state.source.as_ref().map(|(source, _)| match source {
        PayoutSource::Organization(inn) => SourceAnswer { organization_inn: Some(inn.to_string()), user_id: None },
        PayoutSource::User(user) => SourceAnswer { organization_inn: None, user_id: Some(user.get()) },
    })
}

/// A number shown by its last four digits only.
fn masked(last4: &str) -> String {
    format!("{MASK_PREFIX}{last4}")
}

impl PayoutAnswer {
    fn from_view(view: &PayoutView, history: Option<Vec<StatusChange>>) -> PayoutAnswer {
        let state = &view.state;
        let is_card = view.recipient_type == RecipientDetails::CARD;
        PayoutAnswer {
            id: state.id,
            amount: amount_text(state.amount, state.currency),
            currency: state.currency,
            recipient_details: RecipientAnswer {
                kind: view.recipient_type.clone(),
                number: is_card.then(|| masked(&view.recipient_last4)),
                account_number: (!is_card).then(|| masked(&view.recipient_last4)),
                bik: view.recipient_bik.clone(),
                holder: view.recipient_holder.clone(),
            },
            description: state.description.clone(),
            status: state.status.as_str(),
            failure_reason: state.failure_reason.clone(),
            attempts: state.attempts,
            gateway_reference: state.gateway_reference.clone(),
            source: source_answer(state),
            created_at: state.created_at,
            updated_at: state.updated_at,
            status_history: history,
        }
    }
}

/// Reads the payout as it now is and answers with it.
pub(super) async fn answer_with(state: &AppState, id: Uuid, status: StatusCode) -> Result<Response, ApiError> {
    let view = state.store.payout(id).await?.ok_or(ApiError::NotFound("Payout not found"))?;
    Ok((status, Json(PayoutAnswer::from_view(&view, None))).into_response())
}

/// The payout a command changed, or the error that answers its refusal (or the engine's defect).
pub(super) fn changed_payout(outcome: PayoutOutcome) -> Result<Box<PayoutState>, ApiError> {
    match outcome {
        PayoutOutcome::Done(state) => Ok(state),
        PayoutOutcome::Refused(error) => Err(ApiError::from(error)),
        PayoutOutcome::Broken(defect) => {
            tracing::error!(%defect, "the ledger engine could not decide a payout command");
            Err(ApiError::Engine(crate::engine::EngineError::Unavailable))
        }
        other => {
            tracing::error!(?other, "a keyed outcome for a command without a key");
            Err(ApiError::Engine(crate::engine::EngineError::Unavailable))
        }
    }
}

/// A keyed creation's answer, stored with its key: the created payout (201) or the refusal.
fn render_created(result: &Result<PayoutView, PayoutError>) -> StoredResponse {
    match result {
        Ok(view) => json_response(StatusCode::CREATED, &PayoutAnswer::from_view(view, None)),
        Err(error) => {
            let (status, body) = ApiError::from(error.clone()).status_and_body();
            json_response(status, &body)
        }
    }
}

/// The request body, as documented for clients: one alternative per count of decimals of the currency, since
/// `currency` decides how many decimals `amount` may have (2 for RUB, 0 for JPY, 3 for KWD).
#[derive(Debug)]
pub struct PayoutBody;

impl utoipa::PartialSchema for PayoutBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use crate::api::schema::{amount_schema, currencies_by_decimals, currency_schema, free_text_pattern};
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Ref, Type};
        let mut one_of = OneOfBuilder::new().description(Some(
            "A payout request. `amount` (> 0, a decimal string or a JSON number) has at most the decimals of \
             `currency`; `description` is at most 500 characters without control characters but newline and tab; \
             `source`, when given, draws the payout from `{\"organization_inn\": …}` or `{\"user_id\": …}`.",
        ));
        for (count, group) in currencies_by_decimals() {
            let description = ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
                .max_length(Some(payledger_core::payout::MAX_DESCRIPTION_CHARS))
                .pattern(Some(free_text_pattern()));
            let source = OneOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .item(Ref::from_schema_name("SourceBody"));
            one_of = one_of.item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property("amount", amount_schema(count))
                    .property("currency", currency_schema(count, &group))
                    .property("recipient_details", Ref::from_schema_name("RecipientBody"))
                    .property("description", description)
                    .property("source", source)
                    .required("amount")
                    .required("currency")
                    .required("recipient_details"),
            );
        }
        one_of.into()
    }
}

impl ToSchema for PayoutBody {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        schemas.push((RecipientBody::name().into_owned(), <RecipientBody as utoipa::PartialSchema>::schema()));
        schemas.push((SourceBody::name().into_owned(), <SourceBody as utoipa::PartialSchema>::schema()));
        <RecipientBody as ToSchema>::schemas(schemas);
        <SourceBody as ToSchema>::schemas(schemas);
    }
}

/// Where a payout is sent. Numbers are checked further than a pattern can say: a card number must pass the
/// Luhn check, and a bank account's control key must match its BIK (400 otherwise).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RecipientBody {
    /// A payment card.
    Card {
        /// 13 to 19 digits (spaces are dropped) passing the Luhn check.
        #[schema(pattern = "^ *([0-9] *){13,19}$", example = "4111111111111111")]
        number: String,
        /// The cardholder: 1 to 100 characters once trimmed, no control characters.
        #[schema(schema_with = holder_schema)]
        holder: String,
    },
    /// A Russian bank account.
    BankAccount {
        /// 20 digits whose control key matches `bik`.
        #[schema(pattern = "^[0-9]{20}$", example = "40702810200000000001")]
        account_number: String,
        /// The bank's 9-digit identification code.
        #[schema(pattern = "^[0-9]{9}$", example = "044525225")]
        bik: String,
        /// The account holder: 1 to 100 characters once trimmed, no control characters.
        #[schema(schema_with = holder_schema)]
        holder: String,
    },
}

fn holder_schema() -> utoipa::openapi::Schema {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(crate::api::schema::trimmed_name_pattern(payledger_core::payout::MAX_HOLDER_CHARS)))
        .examples([serde_json::json!("Иван Иванов")])
        .into()
}

/// The account a payout is drawn from: exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SourceBody {
    /// An organization's account.
    Organization {
        /// Its INN.
        #[schema(value_type = InnText)]
        organization_inn: String,
    },
    /// A user's account.
    User {
        /// The user.
        #[schema(value_type = PositiveId)]
        user_id: i64,
    },
}

/// Parses a payout request, reporting every bad field at once.
pub(crate) fn parse_payout(bytes: &[u8]) -> Result<PayoutRequest, FieldErrors> {
    let mut body = JsonObject::parse(bytes)?;
    let currency = body.field("currency", |raw| {
        let code = json_string(raw)?;
        Currency::from_code_ignore_case(&code).ok_or_else(|| "must be an active ISO 4217 currency code".to_owned())
    });
    let amount = body.required("amount").map(|raw| raw.get().to_owned());
    let amount = match (amount, currency) {
        (Some(text), Some(currency)) => {
            let (literal, exponent) = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Some(inner) => (inner.to_owned(), false),
                None => (text.clone(), true),
            };
            body.check("amount", Money::parse_positive(&literal, currency, exponent).map_err(|e| e.to_string()))
        }
        _ => None,
    };
    let description = body.optional_field("description", json_string).unwrap_or_default();
    if let Err(reason) = validate_description(&description) {
        body.error("description", &reason);
    }
    let recipient = match body.required("recipient_details") {
        None => None,
        Some(raw) => match JsonObject::parse(raw.get().as_bytes()) {
            Err(_) => {
                body.error("recipient_details", "must be an object");
                None
            }
            Ok(details) => {
                let text = |name: &str| details.optional(name).and_then(|raw| json_string(raw).ok());
                let input = RecipientInput {
                    kind: text("type"),
                    number: text("number"),
                    holder: text("holder"),
                    account_number: text("account_number"),
                    bik: text("bik"),
                };
                match RecipientDetails::validate(&input) {
                    Ok(details) => Some(details),
                    Err(errors) => {
                        for (field, reason) in errors {
                            body.error(&field, &reason);
                        }
                        None
                    }
                }
            }
        },
    };
    let source = match body.optional("source") {
        None => Some(None),
        Some(raw) => match JsonObject::parse(raw.get().as_bytes()) {
            Err(_) => {
                body.error("source", "must be an object");
                None
            }
            Ok(source) => match (source.optional("organization_inn"), source.optional("user_id")) {
                (Some(inn), None) => match json_string(inn).ok().and_then(|text| Inn::parse(&text).ok()) {
                    Some(inn) => Some(Some(PayoutSource::Organization(inn))),
                    None => {
                        body.error("source.organization_inn", "must be an INN of 10 or 12 digits");
                        None
                    }
                },
                (None, Some(user)) => match parse_integer(user).ok().and_then(|id| UserId::new(id).ok()) {
                    Some(user) => Some(Some(PayoutSource::User(user))),
                    None => {
                        body.error("source.user_id", "must be a positive integer");
                        None
                    }
                },
                _ => {
                    body.error("source", "must have exactly one of organization_inn or user_id");
                    None
                }
            },
        },
    };
    body.finish()?;
    match (amount, recipient, source) {
        (Some(amount), Some(recipient), Some(source)) => Ok(PayoutRequest { amount, recipient, description, source }),
        _ => Err(crate::fields::invalid("body", "is incomplete")),
    }
}

/// Create a payout request.
///
/// Answers 201 at once with the payout `pending`; a worker processes it through the payment gateway. With a
/// `source`, the amount is held on that account now (409 `insufficient_funds` if it does not fit), captured on
/// completion and released on failure or cancellation. Also served at `/api/payouts/`.
#[utoipa::path(
    post,
    path = "/v1/payouts/",
    tag = "payouts",
    params(("Idempotency-Key" = Option<IdempotencyKeyText>, Header, description = "Up to 255 characters; a retry with the same key and request replays the first answer (the request is fingerprinted with a keyed HMAC, as it holds a card number)")),
    request_body(content = PayoutBody, content_type = "application/json", example = json!({
        "amount": "1500.00", "currency": "RUB",
        "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "Иван Иванов"},
        "description": "Тестовая выплата"
    })),
    responses(
        (status = 201, description = "Created, pending", body = PayoutAnswer),
        (status = 400, description = "Invalid data; `details` names each bad field", body = ErrorBody),
        (status = 404, description = "The source has no account", body = ErrorBody),
        (status = 409, description = "`insufficient_funds` on the source, or `currency_mismatch`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not created; retry", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &caller)?;
    let bytes = json_body(&headers, body, MAX_PAYOUT_BODY_BYTES).await?;
    let request = parse_payout(&bytes).map_err(ApiError::InvalidData)?;
    let keyed = key.is_some();
    match state
        .payouts
        .create(request, key.map(|key| (key, render_created as _)), Some(caller.name().to_owned()))
        .await?
    {
        PayoutOutcome::Answered(response) => Ok(stored(response, false)),
        PayoutOutcome::Replayed(response) => Ok(stored(response, true)),
        PayoutOutcome::KeyReused => Err(ApiError::idempotency_key_reused()),
        PayoutOutcome::KeyInFlight => Err(ApiError::idempotency_key_in_flight()),
        // Answered from what was committed, not read back: a failed read must not turn a created payout
        // into a "not created" 503.
        unkeyed if !keyed => {
            let created = changed_payout(unkeyed)?;
            match &created.recipient {
                Some(recipient) => {
                    let view = crate::engine::payouts::view_of(&created, recipient);
                    Ok((StatusCode::CREATED, Json(PayoutAnswer::from_view(&view, None))).into_response())
                }
                None => answer_with(&state, created.id, StatusCode::CREATED).await,
            }
        }
        // A refusal or a defect of the engine is answered as for an unkeyed request; a payout without its
        // stored answer cannot be told to a keyed client, as a retry must get the same answer.
        other => {
            let created = changed_payout(other)?;
            Err(ApiError::Internal(format!(
                "keyed creation of payout {} came back without its stored answer",
                created.id
            )))
        }
    }
}

/// The audit log's name for the caller.
pub(super) fn audit_actor(caller: &Caller) -> Option<String> {
    Some(caller.name().to_owned())
}

/// List filters, ordering and page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this status.
    #[param(value_type = Option<PayoutStatusName>)]
    status: Option<String>,
    /// Only this currency: an active ISO 4217 code, in any letter case.
    #[param(schema_with = currency_param)]
    currency: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_after: Option<String>,
    /// Created before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_before: Option<String>,
    /// `created_at`, `-created_at` (default), `amount` or `-amount`.
    #[param(value_type = Option<PayoutOrderingName>)]
    ordering: Option<String>,
    /// The page, from 1 (at most 10,000,000); outside that, 400 naming `page`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10000000)]
    page: Option<String>,
    /// Payouts per page, 1 to 100 (default 20); outside that, 400 naming `page_size`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    page_size: Option<String>,
}

/// The most pages a payout list is read to.
pub const MAX_PAGE: i64 = 10_000_000;

fn currency_param() -> utoipa::openapi::Schema {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(crate::api::schema::currency_pattern(&crate::api::schema::active_currencies())))
        .examples([serde_json::json!("RUB")])
        .into()
}

/// A payout's status.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum PayoutStatusName {
    /// Waiting for a worker.
    Pending,
    /// Sent to the gateway.
    Processing,
    /// Paid.
    Completed,
    /// Not paid.
    Failed,
    /// Cancelled before it was sent.
    Cancelled,
    /// Paid, then returned.
    Returned,
}

/// How a payout list is ordered.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub enum PayoutOrderingName {
    /// Oldest first.
    #[schema(rename = "created_at")]
    CreatedAt,
    /// Newest first.
    #[schema(rename = "-created_at")]
    CreatedAtDesc,
    /// Smallest first.
    #[schema(rename = "amount")]
    Amount,
    /// Largest first.
    #[schema(rename = "-amount")]
    AmountDesc,
}

/// A page of payouts.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutPage {
    /// How many payouts the filters select.
    pub count: i64,
    /// The next page's URL, or null.
    pub next: Option<String>,
    /// The previous page's URL, or null.
    pub previous: Option<String>,
    /// This page.
    pub results: Vec<PayoutAnswer>,
}

fn parse_time(field: &str, text: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    text.map(|text| {
        OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| ApiError::field(field, "must be an RFC 3339 date-time, e.g. 2024-07-01T00:00:00Z"))
    })
    .transpose()
}

/// List payouts, filtered and ordered, a page at a time. Also served at `/api/payouts/`.
#[utoipa::path(
    get,
    path = "/v1/payouts/",
    tag = "payouts",
    params(ListQuery),
    responses(
        (status = 200, body = PayoutPage),
        (status = 400, description = "Invalid filter, ordering or page", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<PayoutPage>, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(PayoutStatus::parse(text).ok_or_else(|| {
            ApiError::field("status", "must be pending, processing, completed, failed, cancelled or returned")
        })?),
    };
    let currency = match query.currency.as_deref() {
        None => None,
        Some(code) => Some(
            Currency::from_code_ignore_case(code)
                .ok_or_else(|| ApiError::field("currency", "must be an active ISO 4217 currency code"))?
                .code()
                .to_owned(),
        ),
    };
    let ordering = match query.ordering.as_deref() {
        Some("created_at") => PayoutOrdering::CreatedAsc,
        None | Some("-created_at") => PayoutOrdering::CreatedDesc,
        Some("amount") => PayoutOrdering::AmountAsc,
        Some("-amount") => PayoutOrdering::AmountDesc,
        Some(_) => return Err(ApiError::field("ordering", "must be created_at, -created_at, amount or -amount")),
    };
    let page = query_integer("page", query.page.as_deref(), 1, 1..=MAX_PAGE)?;
    let page_size = query_integer("page_size", query.page_size.as_deref(), DEFAULT_PAGE_SIZE, 1..=MAX_PAGE_SIZE)?;
    let filter = PayoutFilter {
        status,
        currency,
        created_after: parse_time("created_after", query.created_after.as_deref())?,
        created_before: parse_time("created_before", query.created_before.as_deref())?,
    };
    let offset = (page - 1)
        .checked_mul(page_size)
        .filter(|offset| offset.checked_add(page_size).is_some())
        .ok_or_else(|| ApiError::field("page", "is too large"))?;
    let (count, views) = state.store.list_payouts(&filter, ordering, page_size, offset).await?;
    let link = |page: i64| {
        let mut url = format!("/api/v1/payouts/?page={page}&page_size={page_size}");
        for (name, value) in [
            ("status", query.status.as_deref()),
            ("currency", query.currency.as_deref()),
            ("created_after", query.created_after.as_deref()),
            ("created_before", query.created_before.as_deref()),
            ("ordering", query.ordering.as_deref()),
        ] {
            if let Some(value) = value {
                url.push_str(&format!("&{name}={}", encode_query(value)));
            }
        }
        url
    };
    Ok(Json(PayoutPage {
        count,
        next: (offset.saturating_add(page_size) < count).then(|| link(page.saturating_add(1))),
        previous: (page > 1).then(|| link(page - 1)),
        results: views.iter().map(|view| PayoutAnswer::from_view(view, None)).collect(),
    }))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The payout id of a path, parsed here so a malformed one is a 400 naming `id`, not axum's own rejection.
fn payout_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::field("id", "must be a UUID"))
}

/// Read one payout, with its status history. Also served at `/api/payouts/{id}/`.
#[utoipa::path(
    get,
    path = "/v1/payouts/{id}/",
    tag = "payouts",
    params(("id" = Uuid, Path, description = "The payout")),
    responses(
        (status = 200, body = PayoutAnswer),
        (status = 404, description = "No such payout (or it was deleted)", body = ErrorBody),
    )
)]
pub async fn detail(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<PayoutAnswer>, ApiError> {
    let id = payout_id(&id)?;
    let view = state.store.payout(id).await?.ok_or(ApiError::NotFound("Payout not found"))?;
    let history = state
        .store
        .payout_events(id)
        .await?
        .into_iter()
        .map(|event| StatusChange {
            from: event.from,
            to: event.to,
            actor: event.actor,
            reason: event.reason,
            at: event.at,
        })
        .collect();
    Ok(Json(PayoutAnswer::from_view(&view, Some(history))))
}

/// The fields a PATCH may change, as documented for clients; null means absent.
#[derive(Debug, ToSchema)]
#[schema(as = PatchBodyFields)]
#[allow(dead_code)]
pub struct PatchBody {
    /// `cancelled` (from pending) or `returned` (from completed); any other change is 409.
    #[schema(value_type = Option<PayoutStatusName>, example = "cancelled")]
    status: Option<String>,
    /// A new description (pending only): at most 500 characters, no control characters but newline and tab.
    #[schema(max_length = 500, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    description: Option<String>,
}

/// The PATCH body: its fields, at least one of them given (not null).
pub struct PatchBodySchema;

impl utoipa::PartialSchema for PatchBodySchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, Ref};
        AllOfBuilder::new()
            .item(Ref::from_schema_name("PatchBodyFields"))
            .item(crate::api::schema::at_least_one_of(&["status", "description"], &[]))
            .description(Some("A change of a payout: `status`, `description` or both"))
            .into()
    }
}

impl ToSchema for PatchBodySchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("PatchBody")
    }

    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        schemas.push((PatchBody::name().into_owned(), <PatchBody as utoipa::PartialSchema>::schema()));
        <PatchBody as ToSchema>::schemas(schemas);
    }
}

/// Change a payout's status or description. Also served at `/api/payouts/{id}/`.
///
/// `status` may become `cancelled` (from pending: the hold is released) or `returned` (from completed: the
/// money goes back to the source). Only workers move payouts to processing, completed or failed.
#[utoipa::path(
    patch,
    path = "/v1/payouts/{id}/",
    tag = "payouts",
    params(("id" = Uuid, Path, description = "The payout")),
    request_body(content = PatchBodySchema, content_type = "application/json", example = json!({"status": "cancelled"})),
    responses(
        (status = 200, body = PayoutAnswer),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 404, description = "No such payout", body = ErrorBody),
        (status = 409, description = "`invalid_transition`: the change is not allowed from the payout's status", body = ErrorBody),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = payout_id(&id)?;
    let bytes = json_body(&headers, body, MAX_PAYOUT_BODY_BYTES).await?;
    let mut fields = JsonObject::parse(&bytes).map_err(ApiError::InvalidData)?;
    let status = fields.optional_field("status", |raw| {
        let text = json_string(raw)?;
        PayoutStatus::parse(&text)
            .ok_or_else(|| "must be pending, processing, completed, failed, cancelled or returned".to_owned())
    });
    let description = fields.optional_field("description", |raw| {
        let text = json_string(raw)?;
        validate_description(&text).map(|()| text)
    });
    fields.finish().map_err(ApiError::InvalidData)?;
    if status.is_none() && description.is_none() {
        return Err(ApiError::field("body", "give status or description"));
    }
    // One command: the description and the status change together or not at all.
    changed_payout(
        state
            .payouts
            .change(id, PayoutChange::Edit { description, status }, Actor::Operator, None, audit_actor(&caller))
            .await?,
    )?;
    answer_with(&state, id, StatusCode::OK).await
}

/// Delete a payout: a pending one is cancelled (its hold released), a cancelled one is archived (it leaves
/// reads and lists; its history stays). Anything else is 409. Also served at `/api/payouts/{id}/`.
#[utoipa::path(
    delete,
    path = "/v1/payouts/{id}/",
    tag = "payouts",
    params(("id" = Uuid, Path, description = "The payout")),
    responses(
        (status = 204, description = "Cancelled or archived"),
        (status = 404, description = "No such payout", body = ErrorBody),
        (status = 409, description = "Not pending or cancelled", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = payout_id(&id)?;
    changed_payout(state.payouts.change(id, PayoutChange::Delete, Actor::Operator, None, audit_actor(&caller)).await?)?;
    Ok(StatusCode::NO_CONTENT)
}
