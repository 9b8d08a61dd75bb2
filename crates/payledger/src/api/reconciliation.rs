//! `/api/v1/reconciliation/`: the report of the statements against the ledger for an account and dates, and
//! an operator's decision on one discrepancy (apply its line, or accept it with a note). The work is the
//! reconciliation service's (`crate::statement`); these handlers read the request and answer.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use time::{Date, Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::access::Caller;
use crate::api::extract::{ApiQuery, json_body, query_integer};
use crate::api::statements::{account_number, path_id};
use crate::error::{ApiError, ErrorBody};
use crate::statement::{
    ApplyResult, DiscrepancyKind, DiscrepancyState, DiscrepancyView, ReconciliationReport, ReportQuery,
};

/// The longest note an operator may give when accepting a discrepancy, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// The largest accept body read, in bytes (a note of 1000 four-byte characters, escaped, fits).
const MAX_ACCEPT_BODY_BYTES: usize = 16 * 1024;
/// Discrepancies per page, by default and at most.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
/// The report's days when `from` is not given: this many days before `to`.
const DEFAULT_DAYS: i64 = 30;
/// The longest report, in days: a bound on the work one request asks for.
pub const MAX_REPORT_DAYS: i64 = 366;

/// Which account, which days, which discrepancies.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// Only this 20-digit account (default: every account imported).
    #[param(value_type = Option<String>, pattern = "^[0-9]{20}$", example = "40702810900000012345")]
    account: Option<String>,
    /// The first business day, `YYYY-MM-DD` (default: 30 days before `to`, or before today when `to` is not
    /// given either).
    #[param(value_type = Option<String>, format = Date, example = "2026-12-01")]
    from: Option<String>,
    /// The last business day, inclusive, `YYYY-MM-DD` (default: 30 days after `from` but not after today in
    /// Moscow; today when `from` is not given either). At most 366 days after `from`.
    #[param(value_type = Option<String>, format = Date, example = "2026-12-03")]
    to: Option<String>,
    /// Only this kind of discrepancy.
    #[param(value_type = Option<String>, pattern = "^(missing_notice|notice_without_line|amount_mismatch|ambiguous|unknown_payer)$")]
    kind: Option<String>,
    /// Only discrepancies in this state.
    #[param(value_type = Option<String>, pattern = "^(open|resolved|accepted)$")]
    state: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<i64>, minimum = 1)]
    cursor: Option<String>,
    /// Discrepancies per page (1 to 500, default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// A day named by the request field `field`: `YYYY-MM-DD`, a real calendar date.
pub fn parse_day(field: &str, text: &str) -> Result<Date, ApiError> {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year padding:zero repr:full base:calendar]-[month]-[day]");
    let well_formed = text.len() == 10 && text.bytes().enumerate().all(|(at, b)| matches!(at, 4 | 7) == (b == b'-'));
    well_formed
        .then(|| Date::parse(text, FORMAT).ok())
        .flatten()
        .ok_or_else(|| ApiError::field(field, "must be a date as YYYY-MM-DD, e.g. 2026-12-01"))
}

/// The report's query from the request's parameters, `today` (Moscow) filling in the days not given.
pub fn report_query(params: &ReportParams, today: Date) -> Result<ReportQuery, ApiError> {
    let from = params.from.as_deref().map(|text| parse_day("from", text)).transpose()?;
    let to = params.to.as_deref().map(|text| parse_day("to", text)).transpose()?;
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (from, to),
        (Some(from), None) => {
            // Mirrors the `from` default: a month, but never past today. Only `from` was sent, so a `from`
            // in the future is `from`'s fault, said without naming the `to` the client never sent.
            if from > today {
                return Err(ApiError::field("from", "must not be after today when to is not given"));
            }
            (from, from.checked_add(Duration::days(DEFAULT_DAYS)).unwrap_or(Date::MAX).min(today))
        }
        (None, Some(to)) => (to.checked_sub(Duration::days(DEFAULT_DAYS)).unwrap_or(Date::MIN), to),
        (None, None) => (today.checked_sub(Duration::days(DEFAULT_DAYS)).unwrap_or(Date::MIN), today),
    };
    if from > to {
        return Err(ApiError::field("from", "must not be after to"));
    }
    if (to - from).whole_days() > MAX_REPORT_DAYS {
        return Err(ApiError::field("to", format!("must be at most {MAX_REPORT_DAYS} days after from")));
    }
    let kind = params
        .kind
        .as_deref()
        .map(|text| {
            DiscrepancyKind::parse(text).ok_or_else(|| {
                ApiError::field(
                    "kind",
                    "must be missing_notice, notice_without_line, amount_mismatch, ambiguous or unknown_payer",
                )
            })
        })
        .transpose()?;
    let state = params
        .state
        .as_deref()
        .map(|text| {
            DiscrepancyState::parse(text).ok_or_else(|| ApiError::field("state", "must be open, resolved or accepted"))
        })
        .transpose()?;
    let cursor =
        params.cursor.as_deref().map(|text| query_integer("cursor", Some(text), 0, 1..=i64::MAX)).transpose()?;
    let limit = query_integer("limit", params.limit.as_deref(), DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    // Within 1..=500 by the check above.
    let limit = u32::try_from(limit).unwrap_or(1);
    Ok(ReportQuery {
        account: account_number("account", params.account.as_deref())?,
        from,
        to,
        kind,
        state,
        cursor,
        limit,
    })
}

/// The day it is now in Moscow, the business day of the bank's statements.
pub fn moscow_today() -> Date {
    payledger_core::statement::moscow_date(OffsetDateTime::now_utc())
}

/// The reconciliation report: what the statements show against what the ledger credited, for an account and
/// a range of business days, and the discrepancies an operator has to decide, a page at a time.
///
/// The totals of the lines matched and of the ledger's credits for them are computed separately and are
/// equal. A line of a day that has not closed (Moscow) is pending, not a discrepancy.
#[utoipa::path(
    get,
    path = "/v1/reconciliation/",
    tag = "reconciliation",
    params(ReportParams),
    responses(
        (status = 200, body = ReconciliationReport),
        (status = 400, description = "An invalid parameter; `details` names it", body = ErrorBody),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Result<Json<ReconciliationReport>, ApiError> {
    let query = report_query(&params, moscow_today())?;
    Ok(Json(state.reconciliation.report(&query).await?))
}

/// Apply the statement line of one discrepancy (`missing_notice`, `unknown_payer`, or an `amount_mismatch` or
/// `ambiguous` whose candidates other lines have taken since).
///
/// The line is credited to its payer's organization (created if new) exactly as its webhook notice would
/// have been, or matched to a payment that has arrived since. It is refused while an unmatched payment may be
/// it (the same payer and number with another amount on its date, or its amount dated within the tolerance). A line already matched changes nothing
/// (`already_matched`); a later notice for it is answered "already processed" and credits nothing.
#[utoipa::path(
    post,
    path = "/v1/reconciliation/discrepancies/{id}/apply/",
    tag = "reconciliation",
    params(("id" = i64, Path, description = "The discrepancy", minimum = 1)),
    responses(
        (status = 200, description = "Applied, matched, or already matched", body = ApplyResult),
        (status = 400, description = "The id is not a positive whole number", body = ErrorBody),
        (status = 404, description = "No such discrepancy", body = ErrorBody),
        (status = 409, description = "`not_applicable`: its kind or state has nothing to apply (a notice without a line, a line without a payer INN, an open payment that may be it, an accepted one)", body = ErrorBody),
        (status = 503, description = "Not applied; retry (applying twice credits once)", body = ErrorBody),
    )
)]
pub async fn apply_discrepancy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApplyResult>, ApiError> {
    Ok(Json(state.reconciliation.apply_discrepancy(path_id(&id)?, caller.name()).await?))
}

/// An operator's decision to leave a discrepancy as it is.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AcceptBody {
    /// Why: what was found out and done (1 to 1000 characters, not blank, no control characters but line
    /// ends (LF, CR LF) and tabs).
    #[schema(schema_with = note_schema)]
    pub note: String,
}

/// Control characters a note may not hold (all of Unicode `Cc` but tab, LF and CR: a browser's textarea sends
/// its line ends as CR LF), as a class body.
const NOTE_CONTROL: &str = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f";

/// The note's schema: exactly what [`accept_note`] accepts.
fn note_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NOTE_CHARS))
        .pattern(Some(format!(
            "^[^{NOTE_CONTROL}]*[^{NOTE_CONTROL}{}][^{NOTE_CONTROL}]*$",
            crate::api::schema::WHITE_SPACE
        )))
        .examples([serde_json::json!("Refunded by the bank on 2026-12-04")])
        .build()
}

/// The note of an accept body, or 400 naming `note`.
fn accept_note(bytes: &[u8]) -> Result<String, ApiError> {
    let body: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| ApiError::field("body", "must be a JSON object"))?;
    let note = match body.get("note") {
        None | Some(serde_json::Value::Null) => return Err(ApiError::field("note", "this field is required")),
        Some(serde_json::Value::String(note)) => note,
        Some(_) => return Err(ApiError::field("note", "must be a string")),
    };
    check_note(note).map_err(|reason| ApiError::field("note", reason))?;
    Ok(note.clone())
}

/// Why a note cannot be kept, if it cannot: the one check of the API and the console (the schema's pattern
/// says the same).
pub fn check_note(note: &str) -> Result<(), String> {
    if note.trim().is_empty() {
        return Err("must not be blank".to_owned());
    }
    if note.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err("must not hold control characters other than line ends and tabs".to_owned());
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(format!("must be at most {MAX_NOTE_CHARS} characters"));
    }
    Ok(())
}

/// Accept one open discrepancy with a note: it stays as it is, and the note says why.
#[utoipa::path(
    post,
    path = "/v1/reconciliation/discrepancies/{id}/accept/",
    tag = "reconciliation",
    params(("id" = i64, Path, description = "The discrepancy", minimum = 1)),
    request_body(content = AcceptBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted", body = DiscrepancyView),
        (status = 400, description = "A missing, blank or too long note, or a bad id", body = ErrorBody),
        (status = 404, description = "No such discrepancy", body = ErrorBody),
        (status = 409, description = "`not_applicable`: it is not open", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not accepted; retry", body = ErrorBody),
    )
)]
pub async fn accept_discrepancy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DiscrepancyView>, ApiError> {
    let id = path_id(&id)?;
    let bytes = json_body(&headers, body, MAX_ACCEPT_BODY_BYTES).await?;
    let note = accept_note(&bytes)?;
    Ok(Json(state.reconciliation.accept(id, &note, caller.name()).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn days_are_calendar_dates_written_in_full() {
        assert_eq!(parse_day("from", "2026-12-01").ok(), Some(date!(2026 - 12 - 01)));
        for bad in ["2026-02-30", "2026-1-01", "26-12-01", "2026/12/01", "2026-12-01T00:00", "+2026-12-01", ""] {
            assert!(parse_day("from", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_report_is_at_most_a_year_and_never_backwards() {
        let params = |from: Option<&str>, to: Option<&str>| ReportParams {
            account: None,
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            kind: None,
            state: None,
            cursor: None,
            limit: None,
        };
        let today = date!(2026 - 12 - 05);
        let query = report_query(&params(None, None), today).unwrap_or_else(|_| panic!("defaults"));
        assert_eq!((query.from, query.to), (date!(2026 - 11 - 05), today));
        assert!(report_query(&params(Some("2026-12-02"), Some("2026-12-01")), today).is_err());
        assert!(report_query(&params(Some("2024-01-01"), Some("2026-12-01")), today).is_err());
        let from_only = report_query(&params(Some("2024-04-26"), None), today).unwrap_or_else(|_| panic!("from"));
        assert_eq!((from_only.from, from_only.to), (date!(2024 - 04 - 26), date!(2024 - 05 - 26)), "a month on");
        let recent = report_query(&params(Some("2026-12-01"), None), today).unwrap_or_else(|_| panic!("recent"));
        assert_eq!(recent.to, today, "never past today");
        let future = report_query(&params(Some("2026-12-06"), None), today);
        let named = match future {
            Err(ApiError::InvalidData(fields)) => fields.into_keys().collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        assert_eq!(named, ["from"], "a future from alone names only from");
    }

    #[test]
    fn a_note_may_have_crlf_line_ends_but_no_other_control_character() {
        assert!(check_note("line one\r\nline two\tend").is_ok());
        assert!(check_note("nul \u{0} inside").is_err() && check_note("bell \u{7}").is_err());
        let pattern = note_schema().pattern.unwrap_or_default();
        assert!(pattern.contains(r"\x0b\x0c\x0e"), "the schema allows CR too: {pattern}");
    }

    #[test]
    fn a_note_is_required_and_bounded() {
        assert_eq!(accept_note(br#"{"note":"refunded"}"#).ok().as_deref(), Some("refunded"));
        for bad in [&br#"{}"#[..], br#"{"note":"  "}"#, br#"{"note":5}"#, b"[", br#"{"note":null}"#] {
            assert!(accept_note(bad).is_err());
        }
        let long = format!(r#"{{"note":"{}"}}"#, "я".repeat(MAX_NOTE_CHARS + 1));
        assert!(accept_note(long.as_bytes()).is_err());
    }
}
