//! `/api/v1/statements/`: upload a bank statement (the file's bytes as the body), list the imports, read one,
//! and apply every open discrepancy of one that an operator can apply. The work is the reconciliation
//! service's (`crate::statement`); these handlers read the request and answer.

use axum::Json;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use payledger_core::statement::{AccountNumber, StatementFormat};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::access::Caller;
use crate::api::extract::{ApiQuery, is_length_limit, query_integer};
use crate::error::{ApiError, ErrorBody};
use crate::statement::{ApplyAllSummary, FormatChoice, ImportOptions, ImportSummary, ImportsPage, ReconcileError};

/// The content types a statement upload may be sent as: a statement is text or XML, and any file a browser
/// or `curl --data-binary` sends without knowing its type is `application/octet-stream`.
pub const STATEMENT_CONTENT_TYPES: &[&str] =
    &["text/plain", "application/xml", "text/xml", "text/csv", "application/octet-stream"];

/// The longest file name kept with an import.
pub const MAX_FILE_NAME_CHARS: usize = 255;

/// Imports per page of the list, by default and at most.
const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 500;

/// Where to upload and how to read the file.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `auto` (the default: detected from the first bytes), `1c`, `camt053` or `csv` (CSV needs `account`,
    /// whose column mapping was saved with `payledger statement import --save-mapping`).
    #[param(value_type = Option<String>, pattern = "^(auto|1c|camt053|csv)$", example = "auto")]
    format: Option<String>,
    /// Import only this 20-digit account's section of the file (400 if the file has none).
    #[param(value_type = Option<String>, pattern = "^[0-9]{20}$", example = "40702810900000012345")]
    account: Option<String>,
    /// The file's name, kept with the import for people (no control characters).
    #[param(value_type = Option<String>, max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", example = "statement-2026-12-01.txt")]
    file_name: Option<String>,
}

/// Which page of imports.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportsQuery {
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<i64>, minimum = 1)]
    cursor: Option<String>,
    /// Imports per page (1 to 500, default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// A page of imports, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportList {
    /// The imports of this page.
    pub results: Vec<ImportSummary>,
    /// The cursor of the next page, if there may be one.
    pub next_cursor: Option<i64>,
}

/// Whether the body's declared type is one a statement may have (415 otherwise; a missing type too, since
/// a client that names none may be sending anything).
fn is_statement_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| STATEMENT_CONTENT_TYPES.iter().any(|known| mime.trim().eq_ignore_ascii_case(known)))
}

/// The statement's bytes: 415 for another content type, 413 past `limit` bytes.
pub async fn statement_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, ApiError> {
    if !is_statement_type(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(error) if is_length_limit(&error) => Err(ApiError::PayloadTooLarge),
        Err(_) => Err(ApiError::field("body", "could not be read")),
    }
}

/// The format a request names: `auto` or absent detects it.
pub fn format_choice(text: Option<&str>) -> Result<FormatChoice, ApiError> {
    match text {
        None | Some("auto") => Ok(FormatChoice::Auto),
        Some(name) => StatementFormat::parse(name)
            .map(FormatChoice::Fixed)
            .ok_or_else(|| ApiError::field("format", "must be auto, 1c, camt053 or csv")),
    }
}

/// A 20-digit account named by the request field `field`.
pub fn account_number(field: &str, text: Option<&str>) -> Result<Option<AccountNumber>, ApiError> {
    text.map(|text| AccountNumber::parse(text).map_err(|_| ApiError::field(field, "must be 20 digits"))).transpose()
}

/// Why a file name cannot be kept, if it cannot: the one check of the API's `file_name` and the console's
/// upload (a NUL would not even store on PostgreSQL; other control characters would garble the pages).
pub fn check_file_name(name: Option<&str>) -> Result<(), String> {
    let Some(name) = name else { return Ok(()) };
    if name.chars().any(char::is_control) {
        return Err("must not hold control characters".to_owned());
    }
    if name.chars().count() > MAX_FILE_NAME_CHARS {
        return Err(format!("must be at most {MAX_FILE_NAME_CHARS} characters"));
    }
    Ok(())
}

/// The import options of an upload: a CSV upload uses the column mapping saved for its account.
async fn import_options(state: &AppState, query: &UploadQuery, by: &str) -> Result<ImportOptions, ApiError> {
    let format = format_choice(query.format.as_deref())?;
    let account = account_number("account", query.account.as_deref())?;
    let file_name = query.file_name.clone();
    check_file_name(file_name.as_deref()).map_err(|reason| ApiError::field("file_name", reason))?;
    let csv = match (format, &account) {
        (FormatChoice::Fixed(StatementFormat::Csv), None) => {
            return Err(ApiError::field("account", "a CSV statement needs the account whose saved mapping reads it"));
        }
        (FormatChoice::Fixed(StatementFormat::Csv), Some(account)) => Some(saved_mapping(state, account).await?),
        _ => None,
    };
    Ok(ImportOptions { format, csv, account, file_name, by: Some(by.to_owned()) })
}

/// The CSV mapping saved for `account`; 400 naming `account` when there is none.
async fn saved_mapping(state: &AppState, account: &AccountNumber) -> Result<String, ApiError> {
    state.store.csv_mapping(account.as_str()).await?.ok_or_else(|| {
        ApiError::field(
            "account",
            "has no saved CSV column mapping; save one with `payledger statement import --save-mapping`",
        )
    })
}

/// Import a bank statement.
///
/// The body is the file's bytes: 1C ClientBankExchange (any of its encodings), camt.053 (001.02 to 001.08) or
/// CSV. The whole file is checked before anything is stored; a bad file is 400 `statement_invalid` with the
/// line and the reason, and nothing is stored. The same file again is 200 with `already_imported` and
/// changes nothing. Credit lines are matched with the bank payments; what does not match is listed as
/// discrepancies (see `GET /api/v1/reconciliation/`). At most `PAYLEDGER_STATEMENT_MAX_BYTES` bytes.
#[utoipa::path(
    post,
    path = "/v1/statements/",
    tag = "reconciliation",
    params(UploadQuery),
    request_body(
        description = "The statement file's bytes",
        content(
            (String = "text/plain"),
            (String = "application/xml"),
            (String = "text/xml"),
            (String = "text/csv"),
            (String = "application/octet-stream"),
        )
    ),
    responses(
        (status = 201, description = "Imported", body = ImportSummary),
        (status = 200, description = "This file was imported before; nothing changed", body = ImportSummary),
        (status = 400, description = "A bad file (`statement_invalid`: `details.body` gives the line and the reason; nothing is stored) or a bad parameter, `account` for a CSV upload whose account has no valid saved mapping", body = ErrorBody),
        (status = 409, description = "`not_applicable`: the file cannot be imported with what is stored now (the message says why); nothing changed", body = ErrorBody),
        (status = 413, description = "Larger than PAYLEDGER_STATEMENT_MAX_BYTES", body = ErrorBody),
        (status = 415, description = "Not one of the listed content types", body = ErrorBody),
        (status = 503, description = "Not imported, or imported only in part (the same file again resumes it); retry", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<UploadQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let options = import_options(&state, &query, caller.name()).await?;
    let bytes = statement_body(&headers, body, state.statement_max_bytes).await?;
    let summary = state.reconciliation.import(bytes, options, None).await.map_err(|error| match error {
        // The API's only mapping is the one saved for `account`: that is the parameter to name.
        ReconcileError::CsvMapping(reason) => {
            ApiError::field("account", format!("its saved CSV column mapping is invalid: {reason}"))
        }
        other => ApiError::from(other),
    })?;
    let status = if summary.already_imported { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(summary)).into_response())
}

/// List the statement imports, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/statements/",
    tag = "reconciliation",
    params(ImportsQuery),
    responses(
        (status = 200, body = ImportList),
        (status = 400, description = "Invalid cursor or limit", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ImportsQuery>,
) -> Result<Json<ImportList>, ApiError> {
    let cursor =
        query.cursor.as_deref().map(|text| query_integer("cursor", Some(text), 1, 1..=i64::MAX)).transpose()?;
    let limit = query_integer("limit", query.limit.as_deref(), DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    // Within 1..=500 by the check above.
    let limit = u32::try_from(limit).unwrap_or(1);
    let results = state.reconciliation.imports(ImportsPage { cursor, limit }).await?;
    let full = results.len() == limit as usize;
    let next_cursor = results.last().filter(|_| full).map(|last| last.id);
    Ok(Json(ImportList { results, next_cursor }))
}

/// The id of a path, parsed here so a malformed one is a 400 naming `id`, not axum's own rejection.
pub fn path_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::field("id", "must be a positive whole number"))
}

/// Read one import: its accounts with their totals, what was matched and the discrepancies found.
#[utoipa::path(
    get,
    path = "/v1/statements/{id}/",
    tag = "reconciliation",
    params(("id" = i64, Path, description = "The import", minimum = 1)),
    responses(
        (status = 200, body = ImportSummary),
        (status = 400, description = "The id is not a positive whole number", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
    )
)]
pub async fn detail(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ImportSummary>, ApiError> {
    Ok(Json(state.reconciliation.import_summary(path_id(&id)?).await?))
}

/// Apply every open `missing_notice` and `unknown_payer` discrepancy of one import.
///
/// Each line is credited to its payer's organization (created if new) exactly as its webhook notice would
/// have been, or matched to a payment that has arrived since; a line without a payer INN is left open. A late
/// notice for an applied line is later answered "already processed" and credits nothing.
#[utoipa::path(
    post,
    path = "/v1/statements/{id}/apply/",
    tag = "reconciliation",
    params(("id" = i64, Path, description = "The import", minimum = 1)),
    responses(
        (status = 200, description = "Applied what could be applied", body = ApplyAllSummary),
        (status = 400, description = "The id is not a positive whole number", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 503, description = "Not applied, or applied in part (applying again finishes it); retry", body = ErrorBody),
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApplyAllSummary>, ApiError> {
    Ok(Json(state.reconciliation.apply_all(path_id(&id)?, caller.name()).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_may_come_as_text_xml_csv_or_bytes_but_not_json() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap_or_else(|_| panic!("header")));
            is_statement_type(&headers)
        };
        assert!(
            with("text/plain; charset=windows-1251") && with("Application/XML") && with("application/octet-stream")
        );
        assert!(!with("application/json") && !with("multipart/form-data; boundary=x"));
        assert!(!is_statement_type(&HeaderMap::new()));
    }

    #[test]
    fn formats_and_accounts_are_named_exactly() {
        assert!(matches!(format_choice(None), Ok(FormatChoice::Auto)));
        assert!(matches!(format_choice(Some("camt053")), Ok(FormatChoice::Fixed(StatementFormat::Camt053))));
        assert!(format_choice(Some("1C")).is_err());
        assert!(account_number("account", Some("4070281090000001234")).is_err());
        assert!(matches!(account_number("account", Some("40702810900000012345")), Ok(Some(_))));
        assert!(path_id("0").is_err() && path_id("x").is_err() && path_id("7").is_ok_and(|id| id == 7));
    }

    #[test]
    fn a_file_name_has_no_control_character_as_its_pattern_says() {
        assert!(check_file_name(Some("выписка 2024-04-28.txt")).is_ok() && check_file_name(None).is_ok());
        for bad in ["a\u{0}.txt", "a\nb", "a\u{85}"] {
            assert!(check_file_name(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(check_file_name(Some(&"я".repeat(MAX_FILE_NAME_CHARS + 1))).is_err());
        assert_eq!(r"^[^\x00-\x1f\x7f-\x9f]*$", crate::api::schema::no_control_pattern(), "the parameter's pattern");
    }
}
