//! Admin-only: the receivers of outbound events (`/api/v1/webhook-endpoints/`), their secrets, a test event and
//! their delivery log. The rules and the audit rows are the endpoint service's (`events/endpoints.rs`); this
//! file reads the requests and writes the answers.

use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, SchemaFormat};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::AppState;
use crate::api::access::Caller;
use crate::api::extract::{ApiQuery, json_body, query_integer};
use crate::error::{ApiError, ErrorBody};
use crate::events::endpoints::{
    DELIVERY_STATUSES, EndpointUpdate, EndpointView, MAX_DESCRIPTION_CHARS, MAX_OVERLAP_SECONDS, MAX_URL_BYTES,
    NewEndpoint, RATE_LIMIT_PER_SECOND, is_endpoint_id,
};
use crate::events::{ALL_TYPES, EventType};
use crate::fields::{JsonObject, json_string, parse_integer};
use crate::store::event_rows::{AttemptRow, DeliveryRow};
use crate::timefmt::serde_rfc3339;

/// The largest endpoint body accepted, in bytes: room for the longest URL and description the schema allows,
/// each character written as a JSON escape (up to 12 bytes), so no schema-valid body is refused for its size.
const MAX_ENDPOINT_BODY_BYTES: usize = 64 * 1024;
/// The default number of deliveries a page holds.
const DEFAULT_DELIVERY_PAGE: i64 = 50;
/// The most deliveries a page holds.
const MAX_DELIVERY_PAGE: i64 = 500;

/// A receiver of outbound events, as admins see it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointAnswer {
    /// `ep_` and 32 hex digits.
    #[schema(example = "ep_0193a2b4c0de7000800000000000abcd")]
    pub id: String,
    /// Where deliveries are posted.
    #[schema(example = "https://hooks.example.com/payledger")]
    pub url: String,
    /// Free text.
    pub description: String,
    /// The event types it gets, ascending; `*` stands for every type but `bank_payment.rejected`.
    #[schema(example = json!(["*"]))]
    pub event_types: Vec<String>,
    /// Whether events are delivered to it.
    pub enabled: bool,
    /// Why it is disabled (an admin, a 410 Gone answer, the failure window), or null.
    pub disabled_reason: Option<String>,
    /// Since when every attempt to it failed, or null.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<OffsetDateTime>,
    /// The most deliveries a second, or null for no limit.
    pub rate_limit_per_second: Option<i32>,
    /// While a rotated-out secret still signs (beside the new one): until when; null otherwise.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub secret_rotating_until: Option<OffsetDateTime>,
    /// When it was registered.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<EndpointView> for EndpointAnswer {
    fn from(view: EndpointView) -> EndpointAnswer {
        EndpointAnswer {
            id: view.id,
            url: view.url,
            description: view.description,
            event_types: view.event_types,
            enabled: view.enabled,
            disabled_reason: view.disabled_reason,
            failing_since: view.failing_since,
            rate_limit_per_second: view.rate_limit_per_second,
            secret_rotating_until: view.secret_rotating_until,
            created_at: view.created_at,
            updated_at: view.updated_at,
        }
    }
}

/// An endpoint with its signing secret: only the answer of its creation and of a rotation carry it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointAnswer,
    /// The Standard Webhooks secret, `whsec_` and the base64 of 32 bytes: shown now and never again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

/// The event types an endpoint gets: names of subscribable types, each once; or `["*"]` (every type but
/// `bank_payment.rejected`), alone or with `bank_payment.rejected`.
pub struct EventTypesSchema;

impl PartialSchema for EventTypesSchema {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = EventType::SUBSCRIBABLE.iter().map(|kind| kind.as_str()).collect();
        let by_name = ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)))
            .min_items(Some(1))
            .unique_items(true);
        let rejected = EventType::BankPaymentRejected.as_str();
        let all = ObjectBuilder::new().schema_type(Type::Array).enum_values(Some([
            serde_json::json!([ALL_TYPES]),
            serde_json::json!([ALL_TYPES, rejected]),
            serde_json::json!([rejected, ALL_TYPES]),
        ]));
        AnyOfBuilder::new()
            .item(by_name)
            .item(all)
            .description(Some(
                "Names of event types, each once; or `[\"*\"]` for every type but `bank_payment.rejected`, which \
                 may be added to it. Absent: `[\"*\"]`.",
            ))
            .into()
    }
}

impl ToSchema for EventTypesSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventTypes")
    }
}

/// An endpoint's URL: `https` (or `http` outside the production profile), with a host and no credentials.
pub struct EndpointUrl;

impl PartialSchema for EndpointUrl {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uri".to_owned())))
            .max_length(Some(MAX_URL_BYTES))
            .pattern(Some("^https?://[^\\s#@/?]+([/?][^\\s#]*)?$"))
            .description(Some(
                "An absolute https URL (http too outside the production profile), at most 2048 bytes, with a host, \
                 without a user name, password or fragment. A host given as an address must be a public one or \
                 in PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS (400 naming `url` otherwise); a name is checked when it \
                 is resolved, at every delivery.",
            ))
            .examples([serde_json::json!("https://hooks.example.com/payledger")])
            .into()
    }
}

impl ToSchema for EndpointUrl {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EndpointUrl")
    }
}

/// A new endpoint, as documented for clients.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct NewEndpointBody {
    /// Where deliveries are posted.
    #[schema(value_type = EndpointUrl)]
    url: String,
    /// Free text, at most 500 characters, without control characters but newline and tab.
    #[schema(max_length = 500, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    description: Option<String>,
    /// The event types it gets (absent: `["*"]`).
    #[schema(value_type = Option<EventTypesSchema>)]
    event_types: Option<Vec<String>>,
    /// Whether deliveries start at once (default true).
    enabled: Option<bool>,
    /// The most deliveries a second, 1 to 10000 (absent: no limit).
    #[schema(minimum = 1, maximum = 10000)]
    rate_limit_per_second: Option<i64>,
}

/// The fields a change of an endpoint may give; null means absent, but for `rate_limit_per_second`, where it
/// removes the limit.
#[derive(Debug, ToSchema)]
#[schema(as = EndpointChangeFields)]
#[allow(dead_code)]
pub struct EndpointChangeBody {
    /// A new URL.
    #[schema(value_type = Option<EndpointUrl>)]
    url: Option<String>,
    /// A new description.
    #[schema(max_length = 500, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    description: Option<String>,
    /// New event types.
    #[schema(value_type = Option<EventTypesSchema>)]
    event_types: Option<Vec<String>>,
    /// `true` enables it again (and clears its failure window), `false` disables it.
    enabled: Option<bool>,
    /// A new rate limit, 1 to 10000; `null` removes the limit.
    #[schema(minimum = 1, maximum = 10000)]
    rate_limit_per_second: Option<i64>,
}

/// The endpoint change body: at least one of its fields given.
pub struct EndpointChangeSchema;

/// The fields of an endpoint a change may give.
const CHANGE_FIELDS: [&str; 5] = ["url", "description", "event_types", "enabled", "rate_limit_per_second"];

impl PartialSchema for EndpointChangeSchema {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, Ref};
        AllOfBuilder::new()
            .item(Ref::from_schema_name("EndpointChangeFields"))
            .item(crate::api::schema::at_least_one_of(&CHANGE_FIELDS, &["rate_limit_per_second"]))
            .description(Some("A change of an endpoint: any of its fields, at least one"))
            .into()
    }
}

impl ToSchema for EndpointChangeSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EndpointChange")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((EndpointChangeBody::name().into_owned(), <EndpointChangeBody as PartialSchema>::schema()));
        <EndpointChangeBody as ToSchema>::schemas(schemas);
    }
}

/// A rotation of the secret.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RotateBody {
    /// How long the old secret keeps signing beside the new one, in seconds, 0 to 2592000 (30 days); absent:
    /// the configured overlap (`PAYLEDGER_EVENT_SECRET_OVERLAP_HOURS`).
    #[schema(minimum = 0, maximum = 2592000)]
    overlap_seconds: Option<i64>,
}

/// A recovery: every failed delivery of events since a time is sent again.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RecoverBody {
    /// Events at or after this time (RFC 3339).
    #[schema(format = DateTime, example = "2026-12-01T00:00:00Z")]
    since: String,
}

/// The test event's delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestAnswer {
    /// The `ping` delivery, pending: follow it in the endpoint's deliveries.
    pub delivery_id: i64,
}

/// How many deliveries were sent again.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayAnswer {
    /// Deliveries made pending again, their retry schedule starting over.
    pub replayed: u64,
}

/// One delivery of an event to an endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAnswer {
    /// Its id.
    pub id: i64,
    /// The event's id (`webhook-id`), `evt_…`.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    #[schema(example = "pending")]
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// When it is next tried (while pending).
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: OffsetDateTime,
    /// The receiver's last HTTP status.
    pub last_status_code: Option<i32>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When the event happened.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When the delivery last changed.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<DeliveryRow> for DeliveryAnswer {
    fn from(row: DeliveryRow) -> DeliveryAnswer {
        DeliveryAnswer {
            id: row.id,
            event_id: row.event_id,
            event_type: row.event_type,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A page of an endpoint's deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// This page.
    pub results: Vec<DeliveryAnswer>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<i64>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptAnswer {
    /// When it was made.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub attempted_at: OffsetDateTime,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<i32>,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// The first 4 KiB of the receiver's answer.
    pub response: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl From<AttemptRow> for AttemptAnswer {
    fn from(row: AttemptRow) -> AttemptAnswer {
        AttemptAnswer {
            attempted_at: row.attempted_at,
            status_code: row.status_code,
            duration_ms: row.duration_ms,
            response: row.response,
            error: row.error,
        }
    }
}

/// A delivery's status, as the log filters it.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum DeliveryStatusName {
    /// Not yet received: being tried on its schedule.
    Pending,
    /// Received (2xx).
    Succeeded,
    /// Every attempt failed, or its endpoint was deleted.
    Failed,
}

/// The delivery log's filter and page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this status; any other value is a 400 naming `status`.
    #[param(value_type = Option<DeliveryStatusName>)]
    status: Option<String>,
    /// Deliveries per page, 1 to 500 (default 50); outside that, 400 naming `limit`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// Only deliveries older than this id (the previous page's `next_before`): a positive id.
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
}

/// The endpoint id of a path: 400 naming `id` unless it has the shape of one.
fn endpoint_id(text: String) -> Result<String, ApiError> {
    if is_endpoint_id(&text) {
        Ok(text)
    } else {
        Err(ApiError::field("id", "must be ep_ and 32 lower-case hex digits"))
    }
}

/// The delivery id of a path: 400 naming `delivery_id` unless it is a positive whole number.
fn delivery_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::field("delivery_id", "must be a positive whole number"))
}

fn bool_field(raw: &RawValue) -> Result<bool, String> {
    serde_json::from_str::<bool>(raw.get()).map_err(|_| "must be true or false".into())
}

fn string_list(raw: &RawValue) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(raw.get()).map_err(|_| "must be a list of event type names".into())
}

/// A JSON integer (`42`, `42.0`): never a string of digits, which the schema does not allow here.
fn json_integer(raw: &RawValue) -> Result<i64, String> {
    if raw.get().starts_with('"') {
        return Err("must be an integer".into());
    }
    parse_integer(raw)
}

fn rate_limit(raw: &RawValue) -> Result<i64, String> {
    let limit = json_integer(raw)?;
    let (low, high) = (RATE_LIMIT_PER_SECOND.start(), RATE_LIMIT_PER_SECOND.end());
    if RATE_LIMIT_PER_SECOND.contains(&limit) { Ok(limit) } else { Err(format!("must be between {low} and {high}")) }
}

fn description(raw: &RawValue) -> Result<String, String> {
    let text = json_string(raw)?;
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!("must be at most {MAX_DESCRIPTION_CHARS} characters"));
    }
    Ok(text)
}

/// List the webhook endpoints, oldest first.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/",
    tag = "webhook endpoints",
    responses((status = 200, body = Vec<EndpointAnswer>))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<EndpointAnswer>>, ApiError> {
    Ok(Json(state.endpoints.list().await?.into_iter().map(EndpointAnswer::from).collect()))
}

/// Register a webhook endpoint. The answer carries its signing secret, which is never shown again.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/",
    tag = "webhook endpoints",
    request_body(content = NewEndpointBody, content_type = "application/json",
        example = json!({"url": "https://hooks.example.com/payledger", "description": "ERP", "event_types": ["payout.status_changed"]})),
    responses(
        (status = 201, body = EndpointWithSecret),
        (status = 400, description = "Invalid data; `details` names each bad field (a refused URL: `url`)", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let bytes = json_body(&headers, body, MAX_ENDPOINT_BODY_BYTES).await?;
    let mut fields = JsonObject::parse(&bytes).map_err(ApiError::InvalidData)?;
    let url = fields.field("url", json_string);
    let description = fields.optional_field("description", description).unwrap_or_default();
    let event_types = fields.optional_field("event_types", string_list);
    let enabled = fields.optional_field("enabled", bool_field).unwrap_or(true);
    let rate_limit_per_second = fields.optional_field("rate_limit_per_second", rate_limit);
    fields.finish().map_err(ApiError::InvalidData)?;
    let Some(url) = url else { return Err(ApiError::field("url", "this field is required")) };
    let new = NewEndpoint { url, description, event_types, enabled, rate_limit_per_second };
    let (view, secret) = state.endpoints.create(caller.name(), new).await?;
    Ok((StatusCode::CREATED, Json(EndpointWithSecret { endpoint: view.into(), secret })))
}

/// Read a webhook endpoint (never its secret).
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}/",
    tag = "webhook endpoints",
    params(("id" = String, Path, description = "The endpoint", pattern = "^ep_[0-9a-f]{32}$")),
    responses(
        (status = 200, body = EndpointAnswer),
        (status = 400, description = "The id is not `ep_` and 32 hex digits", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn detail(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<EndpointAnswer>, ApiError> {
    let id = endpoint_id(id)?;
    Ok(Json(state.endpoints.get(&id).await?.into()))
}

/// Change a webhook endpoint: any of its fields. `enabled: true` enables a disabled endpoint again and clears
/// its failure window; `enabled: false` disables it (its pending deliveries wait).
#[utoipa::path(
    patch,
    path = "/v1/webhook-endpoints/{id}/",
    tag = "webhook endpoints",
    params(("id" = String, Path, description = "The endpoint", pattern = "^ep_[0-9a-f]{32}$")),
    request_body(content = EndpointChangeSchema, content_type = "application/json",
        example = json!({"enabled": true})),
    responses(
        (status = 200, body = EndpointAnswer),
        (status = 400, description = "Invalid data; `details` names each bad field", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EndpointAnswer>, ApiError> {
    let id = endpoint_id(id)?;
    let bytes = json_body(&headers, body, MAX_ENDPOINT_BODY_BYTES).await?;
    let mut fields = JsonObject::parse(&bytes).map_err(ApiError::InvalidData)?;
    let update = EndpointUpdate {
        url: fields.optional_field("url", json_string),
        description: fields.optional_field("description", description),
        event_types: fields.optional_field("event_types", string_list),
        enabled: fields.optional_field("enabled", bool_field),
        rate_limit_per_second: if fields.is_null("rate_limit_per_second") {
            Some(None)
        } else {
            fields.optional_field("rate_limit_per_second", rate_limit).map(Some)
        },
    };
    fields.finish().map_err(ApiError::InvalidData)?;
    let given = [
        update.url.is_some(),
        update.description.is_some(),
        update.event_types.is_some(),
        update.enabled.is_some(),
        update.rate_limit_per_second.is_some(),
    ];
    if !given.contains(&true) {
        return Err(ApiError::field("body", format!("give any of {}", CHANGE_FIELDS.join(", "))));
    }
    Ok(Json(state.endpoints.update(caller.name(), &id, update).await?.into()))
}

/// Delete a webhook endpoint: its pending deliveries fail; its delivery log stays in the audit trail.
#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{id}/",
    tag = "webhook endpoints",
    params(("id" = String, Path, description = "The endpoint", pattern = "^ep_[0-9a-f]{32}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not `ep_` and 32 hex digits", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(id)?;
    state.endpoints.delete(caller.name(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give an endpoint a new signing secret. The old one keeps signing beside it for `overlap_seconds` (both
/// signatures are sent meanwhile), so a receiver can switch without losing events. The answer carries the new
/// secret, which is never shown again.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/rotate-secret/",
    tag = "webhook endpoints",
    params(("id" = String, Path, description = "The endpoint", pattern = "^ep_[0-9a-f]{32}$")),
    request_body(content = RotateBody, content_type = "application/json", example = json!({"overlap_seconds": 86400})),
    responses(
        (status = 200, body = EndpointWithSecret),
        (status = 400, description = "Invalid data; `details` names each bad field", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let id = endpoint_id(id)?;
    let bytes = json_body(&headers, body, MAX_ENDPOINT_BODY_BYTES).await?;
    let mut fields = JsonObject::parse(&bytes).map_err(ApiError::InvalidData)?;
    let overlap = fields.optional_field("overlap_seconds", |raw| {
        let seconds = json_integer(raw)?;
        if (0..=MAX_OVERLAP_SECONDS).contains(&seconds) {
            Ok(Duration::from_secs(seconds.unsigned_abs()))
        } else {
            Err(format!("must be between 0 and {MAX_OVERLAP_SECONDS}"))
        }
    });
    fields.finish().map_err(ApiError::InvalidData)?;
    let (view, secret) = state.endpoints.rotate(caller.name(), &id, overlap).await?;
    Ok(Json(EndpointWithSecret { endpoint: view.into(), secret }))
}

/// Send a `ping` event to an endpoint (whatever types it gets). The delivery is queued like any other: follow
/// it in the endpoint's deliveries.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/test/",
    tag = "webhook endpoints",
    params(("id" = String, Path, description = "The endpoint", pattern = "^ep_[0-9a-f]{32}$")),
    responses(
        (status = 202, body = TestAnswer),
        (status = 400, description = "The id is not `ep_` and 32 hex digits", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 409, description = "`endpoint_disabled`: enable the endpoint first", body = ErrorBody),
    )
)]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<TestAnswer>), ApiError> {
    let id = endpoint_id(id)?;
    let delivery_id = state.endpoints.test(caller.name(), &id).await?;
    Ok((StatusCode::ACCEPTED, Json(TestAnswer { delivery_id })))
}

/// An endpoint's deliveries, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}/deliveries/",
    tag = "webhook endpoints",
    params(("id" = String, Path, description = "The endpoint", pattern = "^ep_[0-9a-f]{32}$"), DeliveriesQuery),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 400, description = "A malformed id or query; `details` names it", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let id = endpoint_id(id)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(status) if DELIVERY_STATUSES.contains(&status) => Some(status),
        Some(_) => return Err(ApiError::field("status", "must be pending, succeeded or failed")),
    };
    let limit = query_integer("limit", query.limit.as_deref(), DEFAULT_DELIVERY_PAGE, 1..=MAX_DELIVERY_PAGE)?;
    let before = match query.before.as_deref() {
        None => None,
        Some(text) => Some(query_integer("before", Some(text), 1, 1..=i64::MAX)?),
    };
    let (rows, next_before) = state.endpoints.deliveries(&id, status, before, limit).await?;
    Ok(Json(DeliveryPage { results: rows.into_iter().map(DeliveryAnswer::from).collect(), next_before }))
}

/// A delivery's attempts, newest first, each with the first 4 KiB of the receiver's answer.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/attempts/",
    tag = "webhook endpoints",
    params(
        ("id" = String, Path, description = "The endpoint", pattern = "^ep_[0-9a-f]{32}$"),
        ("delivery_id" = i64, Path, description = "The delivery", minimum = 1),
    ),
    responses(
        (status = 200, body = Vec<AttemptAnswer>),
        (status = 400, description = "A malformed id; `details` names it", body = ErrorBody),
        (status = 404, description = "No such endpoint, or no such delivery of it", body = ErrorBody),
    )
)]
pub async fn attempts(
    State(state): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Json<Vec<AttemptAnswer>>, ApiError> {
    let id = endpoint_id(id)?;
    let delivery = delivery_id(&delivery)?;
    Ok(Json(state.endpoints.attempts(&id, delivery).await?.into_iter().map(AttemptAnswer::from).collect()))
}

/// Send a finished (succeeded or failed) delivery again; its retry schedule starts over.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/replay/",
    tag = "webhook endpoints",
    params(
        ("id" = String, Path, description = "The endpoint", pattern = "^ep_[0-9a-f]{32}$"),
        ("delivery_id" = i64, Path, description = "The delivery", minimum = 1),
    ),
    responses(
        (status = 202, body = ReplayAnswer),
        (status = 400, description = "A malformed id; `details` names it", body = ErrorBody),
        (status = 404, description = "No such endpoint, or no such delivery of it", body = ErrorBody),
        (status = 409, description = "`delivery_pending`: it is still being tried on its schedule; `endpoint_disabled`: enable the endpoint first", body = ErrorBody),
    )
)]
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ReplayAnswer>), ApiError> {
    let id = endpoint_id(id)?;
    let delivery = delivery_id(&delivery)?;
    let replayed = state.endpoints.replay(caller.name(), &id, delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayAnswer { replayed })))
}

/// Send again every failed delivery to an endpoint of the events since a time (after an outage of the
/// receiver, say); their retry schedules start over.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/recover/",
    tag = "webhook endpoints",
    params(("id" = String, Path, description = "The endpoint", pattern = "^ep_[0-9a-f]{32}$")),
    request_body(content = RecoverBody, content_type = "application/json",
        example = json!({"since": "2026-12-01T00:00:00Z"})),
    responses(
        (status = 202, body = ReplayAnswer),
        (status = 400, description = "Invalid data; `details` names each bad field", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 409, description = "`endpoint_disabled`: enable the endpoint first", body = ErrorBody),
    )
)]
pub async fn recover(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ReplayAnswer>), ApiError> {
    let id = endpoint_id(id)?;
    let bytes = json_body(&headers, body, MAX_ENDPOINT_BODY_BYTES).await?;
    let mut fields = JsonObject::parse(&bytes).map_err(ApiError::InvalidData)?;
    let since = fields.field("since", |raw| {
        let text = json_string(raw)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| "must be an RFC 3339 time".to_owned())
    });
    fields.finish().map_err(ApiError::InvalidData)?;
    let Some(since) = since else { return Err(ApiError::field("since", "this field is required")) };
    let replayed = state.endpoints.recover(caller.name(), &id, since).await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayAnswer { replayed })))
}
