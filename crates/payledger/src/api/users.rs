//! Admin-only: the users of the API and the console, and the audit log.
//!
//! The same operations as `payledger user …`, through the same functions in [`crate::auth::principals`], each
//! writing its audit row in its own transaction with the admin's name as the actor.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::access::Caller;
use crate::api::extract::{ApiQuery, json_body, query_integer};
use crate::auth::principals::{self, PrincipalError};
use crate::auth::tokens::Role;
use crate::error::{ApiError, ErrorBody};
use crate::fields::{JsonObject, json_string};
use crate::store::{AuditFilter, PrincipalRow};

/// The largest user request accepted, in bytes.
const MAX_USER_BODY_BYTES: usize = 4 * 1024;

/// The most audit rows one page holds.
const MAX_AUDIT_PAGE: i64 = 500;

/// A user as admins see it: never the password or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserAnswer {
    /// The login name.
    #[schema(example = "alice")]
    pub username: String,
    /// `viewer`, `operator` or `admin`.
    #[schema(example = "operator")]
    pub role: String,
    /// Whether the user may log in.
    pub active: bool,
    /// Whether the password is one payledger generated (the production profile refuses to start with one).
    pub password_generated: bool,
    /// When the user was created (RFC 3339, UTC).
    #[schema(example = "2026-11-30T10:00:00Z")]
    pub created_at: String,
}

impl From<&PrincipalRow> for UserAnswer {
    fn from(row: &PrincipalRow) -> UserAnswer {
        UserAnswer {
            username: row.username.clone(),
            role: row.role.clone(),
            active: row.active,
            password_generated: row.password_generated,
            created_at: crate::timefmt::rfc3339(row.created_at),
        }
    }
}

fn role_field(raw: &RawValue) -> Result<String, String> {
    let text = json_string(raw)?;
    Role::parse(&text).map(|role| role.as_str().to_owned()).ok_or_else(|| "must be viewer, operator or admin".into())
}

fn bool_field(raw: &RawValue) -> Result<bool, String> {
    serde_json::from_str::<bool>(raw.get()).map_err(|_| "must be true or false".into())
}

async fn answer(state: &AppState, username: &str) -> Result<Json<UserAnswer>, ApiError> {
    let row = state.store.principal(username).await?.ok_or(ApiError::NotFound("User not found"))?;
    Ok(Json(UserAnswer::from(&row)))
}

/// A new user, as documented for clients.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct NewUserBody {
    /// 1 to 150 letters, digits or `.-_@`.
    #[schema(pattern = r"^[\p{L}\p{N}._@-]{1,150}$", example = "alice")]
    username: String,
    /// At least 12 characters.
    #[schema(min_length = 12, example = "a long passphrase")]
    password: String,
    /// `viewer` (default), `operator` or `admin`.
    #[schema(value_type = Option<RoleName>)]
    role: Option<String>,
}

/// A role.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RoleName {
    /// Reads.
    Viewer,
    /// Reads and moves money.
    Operator,
    /// Everything, users included.
    Admin,
}

/// The fields a user change may give; null means absent.
#[derive(Debug, ToSchema)]
#[schema(as = UserChangeFields)]
#[allow(dead_code)]
pub struct UserChangeBody {
    /// A new role.
    #[schema(value_type = Option<RoleName>)]
    role: Option<String>,
    /// Whether the user may log in.
    active: Option<bool>,
    /// A new password: at least 12 characters.
    #[schema(min_length = 12)]
    password: Option<String>,
}

/// The user change body: at least one of its fields given.
pub struct UserChangeSchema;

impl utoipa::PartialSchema for UserChangeSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, Ref};
        AllOfBuilder::new()
            .item(Ref::from_schema_name("UserChangeFields"))
            .item(crate::api::schema::at_least_one_of(&["role", "active", "password"], &[]))
            .description(Some("A change of a user: `role`, `active`, `password`, or several"))
            .into()
    }
}

impl ToSchema for UserChangeSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("UserChange")
    }

    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        schemas.push((UserChangeBody::name().into_owned(), <UserChangeBody as utoipa::PartialSchema>::schema()));
        <UserChangeBody as ToSchema>::schemas(schemas);
    }
}

/// List the users.
#[utoipa::path(
    get,
    path = "/v1/users/",
    tag = "users",
    responses(
        (status = 200, body = Vec<UserAnswer>),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<UserAnswer>>, ApiError> {
    Ok(Json(state.store.principals().await?.iter().map(UserAnswer::from).collect()))
}

/// Create a user.
#[utoipa::path(
    post,
    path = "/v1/users/",
    tag = "users",
    request_body(content = NewUserBody, content_type = "application/json",
        example = json!({"username": "alice", "password": "a long passphrase", "role": "operator"})),
    responses(
        (status = 201, body = UserAnswer),
        (status = 400, description = "Invalid data; `details` names each bad field", body = ErrorBody),
        (status = 409, description = "`user_exists`", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UserAnswer>), ApiError> {
    let bytes = json_body(&headers, body, MAX_USER_BODY_BYTES).await?;
    let mut fields = JsonObject::parse(&bytes).map_err(ApiError::InvalidData)?;
    let username = fields.field("username", json_string);
    let password = fields.field("password", json_string);
    let role = fields.optional_field("role", role_field).unwrap_or_else(|| Role::Viewer.as_str().to_owned());
    fields.finish().map_err(ApiError::InvalidData)?;
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ApiError::field("username", "this field is required"));
    };
    principals::create(&state.store, caller.name(), &username, &password, &role, false).await?;
    Ok((StatusCode::CREATED, answer(&state, &username).await?))
}

/// Change a user: role, active, password (any of them).
///
/// All the changes apply in one transaction or none does. The last active admin can be neither demoted nor
/// disabled, so the API never locks its admins out. A new password or disabling ends every login of the user.
#[utoipa::path(
    patch,
    path = "/v1/users/{username}/",
    tag = "users",
    params(("username" = String, Path, description = "The login name")),
    request_body(content = UserChangeSchema, content_type = "application/json",
        example = json!({"role": "viewer", "active": false, "password": "a new long passphrase"})),
    responses(
        (status = 200, body = UserAnswer),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "`last_admin`: it would leave no active admin", body = ErrorBody),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UserAnswer>, ApiError> {
    let bytes = json_body(&headers, body, MAX_USER_BODY_BYTES).await?;
    let mut fields = JsonObject::parse(&bytes).map_err(ApiError::InvalidData)?;
    let role = fields.optional_field("role", role_field);
    let active = fields.optional_field("active", bool_field);
    let password = fields.optional_field("password", json_string);
    if let Some(password) = &password
        && password.chars().count() < principals::MIN_PASSWORD_CHARS
    {
        fields.error("password", &PrincipalError::WeakPassword.to_string());
    }
    fields.finish().map_err(ApiError::InvalidData)?;
    if role.is_none() && active.is_none() && password.is_none() {
        return Err(ApiError::field("body", "give role, active or password"));
    }
    let change = principals::UserChange { password, role, active };
    principals::update(&state.store, caller.name(), &username, &change).await?;
    answer(&state, &username).await
}

/// Audit log filters and page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this actor (a username, `cli`, `bootstrap` or `gateway`).
    actor: Option<String>,
    /// Only this action, e.g. `payout.delete`.
    action: Option<String>,
    /// Only this target, e.g. `payout:0193…` or `user:alice`.
    target: Option<String>,
    /// Only entries older than this id (the previous page's `next_before`): a positive id.
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
    /// Entries per page, 1 to 500 (default 100); outside that, 400 naming `limit`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// The default number of audit rows per page.
const DEFAULT_AUDIT_PAGE: i64 = 100;

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditAnswer {
    /// Its id; newer entries have larger ids.
    pub id: i64,
    /// Who: a username, `cli`, `bootstrap` or `gateway`.
    pub actor: String,
    /// What, e.g. `user.create`, `payout.delete`, `balance.deposit`, `job.retry`.
    pub action: String,
    /// On what, e.g. `user:alice`, `payout:<id>`, `balance-user:5`, `order:5:1:42`.
    pub target: String,
    /// The state before (JSON), if the action has one.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Box<RawValue>>,
    /// The state after (JSON), if the action has one.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Box<RawValue>>,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The id of the request that asked for it (its `X-Request-Id`, also in the request's log lines); null for
    /// the CLI, the workers and rows written before this was recorded.
    pub request_id: Option<String>,
    /// The address of the client that asked for it (behind `PAYLEDGER_TRUSTED_PROXIES`, the client's, not the
    /// proxy's); null where `request_id` is.
    pub client_address: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// This page.
    pub results: Vec<AuditAnswer>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<i64>,
}

fn raw_json(text: Option<String>) -> Option<Box<RawValue>> {
    text.and_then(|text| RawValue::from_string(text).ok())
}

/// Read the audit log: every privileged action, who did it, on what, before and after, newest first.
#[utoipa::path(
    get,
    path = "/v1/audit/",
    tag = "users",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
pub async fn audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = query_integer("limit", query.limit.as_deref(), DEFAULT_AUDIT_PAGE, 1..=MAX_AUDIT_PAGE)?;
    let before = match query.before.as_deref() {
        None => None,
        Some(text) => Some(query_integer("before", Some(text), 1, 1..=i64::MAX)?),
    };
    let filter = AuditFilter {
        actor: query.actor,
        action: query.action,
        target: query.target,
        before_id: before,
        limit: limit + 1,
    };
    let mut rows = state.store.audit_rows(&filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_before = if more { rows.last().map(|row| row.id) } else { None };
    let results = rows
        .into_iter()
        .map(|row| AuditAnswer {
            request_id: row.entry.request_id().map(str::to_owned),
            client_address: row.entry.client_address(),
            id: row.id,
            actor: row.entry.actor,
            action: row.entry.action,
            target: row.entry.target,
            before: raw_json(row.entry.before),
            after: raw_json(row.entry.after),
            at: crate::timefmt::rfc3339(row.at),
        })
        .collect();
    Ok(Json(AuditPage { results, next_before }))
}
