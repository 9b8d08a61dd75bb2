//! Organization balances and their balance log.

use axum::Json;
use axum::extract::{Path, State};
use payledger_core::Inn;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::JsonRubles;
use crate::api::extract::{ApiQuery, query_integer};
use crate::api::schema::InnText;
use crate::error::{ApiError, ErrorBody};
use crate::timefmt::serde_rfc3339;

/// The default number of balance-log rows per page.
pub const DEFAULT_LOG_PAGE: i64 = 50;
/// The most balance-log rows per page.
pub const MAX_LOG_PAGE: i64 = 500;

const NOT_FOUND: &str = "Organization not found";

/// An organization's balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceAnswer {
    /// The organization's INN.
    #[schema(example = "1234567890")]
    pub inn: String,
    /// The balance in roubles, two decimals.
    pub balance: JsonRubles,
}

fn parse_inn(text: &str) -> Result<Inn, ApiError> {
    Inn::parse(text).map_err(|error| ApiError::field("inn", error.to_string()))
}

/// Read an organization's balance.
#[utoipa::path(
    get,
    path = "/organizations/{inn}/balance/",
    tag = "organizations",
    params(("inn" = InnText, Path, description = "10 or 12 digits")),
    responses(
        (status = 200, body = BalanceAnswer),
        (status = 400, description = "Not an INN", body = ErrorBody),
        (status = 404, description = "Organization not found", body = ErrorBody),
    )
)]
pub async fn balance(State(state): State<AppState>, Path(inn): Path<String>) -> Result<Json<BalanceAnswer>, ApiError> {
    let inn = parse_inn(&inn)?;
    let balance = state.store.organization_balance(&inn).await?.ok_or(ApiError::NotFound(NOT_FOUND))?;
    Ok(Json(BalanceAnswer { inn: inn.to_string(), balance: JsonRubles(balance) }))
}

/// Which page of the balance log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Rows per page, 1 to 500 (default 50); outside that, 400 naming `limit`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// Return rows older than this cursor (the `next_cursor` of the previous page): a positive id.
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
}

/// One change of an organization's balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceChange {
    /// The entry id (the cursor of this row).
    pub id: i64,
    /// The change in roubles.
    pub amount: JsonRubles,
    /// The balance before the change.
    pub previous_balance: JsonRubles,
    /// The balance after the change.
    pub new_balance: JsonRubles,
    /// The bank operation that caused it.
    pub operation_id: Option<String>,
    /// The payment document's number.
    pub document_number: Option<String>,
    /// The payment document's date.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub document_date: Option<OffsetDateTime>,
    /// When the change was recorded.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// A page of the balance log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceLogPage {
    /// The organization's INN.
    pub inn: String,
    /// The changes on this page.
    pub results: Vec<BalanceChange>,
    /// The cursor for the next (older) page, or null on the last page.
    pub next_cursor: Option<i64>,
    /// The URL of the next page, or null.
    pub next: Option<String>,
}

/// Read an organization's balance log: every change, newest first, with keyset pagination.
#[utoipa::path(
    get,
    path = "/organizations/{inn}/balance-log/",
    tag = "organizations",
    params(("inn" = InnText, Path, description = "10 or 12 digits"), LogQuery),
    responses(
        (status = 200, body = BalanceLogPage),
        (status = 400, description = "Not an INN, or a bad `limit` or `before`; `details` names it", body = ErrorBody),
        (status = 404, description = "Organization not found", body = ErrorBody),
    )
)]
pub async fn balance_log(
    State(state): State<AppState>,
    Path(inn): Path<String>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<BalanceLogPage>, ApiError> {
    let inn = parse_inn(&inn)?;
    let limit = query_integer("limit", query.limit.as_deref(), DEFAULT_LOG_PAGE, 1..=MAX_LOG_PAGE)?;
    let before = match query.before.as_deref() {
        None => None,
        Some(text) => Some(query_integer("before", Some(text), 1, 1..=i64::MAX)?),
    };
    let rows = state.store.balance_log(&inn, before, limit).await?.ok_or(ApiError::NotFound(NOT_FOUND))?;
    let next_cursor = if rows.len() as i64 == limit { rows.last().map(|row| row.entry_id) } else { None };
    let results = rows
        .into_iter()
        .map(|row| BalanceChange {
            id: row.entry_id,
            amount: JsonRubles(row.amount),
            previous_balance: JsonRubles(row.balance_before),
            new_balance: JsonRubles(row.balance_after),
            operation_id: row.operation_id.map(|id| id.to_string()),
            document_number: row.document_number,
            document_date: row.document_date,
            created_at: row.created_at,
        })
        .collect();
    let next = next_cursor.map(|cursor| format!("/api/organizations/{inn}/balance-log/?limit={limit}&before={cursor}"));
    Ok(Json(BalanceLogPage { inn: inn.to_string(), results, next_cursor, next }))
}
