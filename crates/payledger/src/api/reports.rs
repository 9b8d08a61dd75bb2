//! `GET /api/reports/revenue/`: the revenue recognized per service in one month, for accounting.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use payledger_core::money::format_minor;
use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::extract::ApiQuery;
use crate::error::{ApiError, ErrorBody};

/// Which month.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// The month in UTC, `YYYY-MM` (up to 9999-11: a report needs the month after it).
    #[param(required = true, value_type = String, pattern = "^(9999-(0[1-9]|1[01])|([0-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2]))$", example = "2024-07")]
    month: Option<String>,
}

/// One service's revenue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceRevenue {
    /// The service.
    #[schema(example = 101)]
    pub service_id: i64,
    /// The revenue recognized in the month, in roubles.
    #[schema(example = "1500.00")]
    pub revenue: String,
}

/// The revenue report of one month.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevenueReport {
    /// The month, `YYYY-MM` (UTC).
    #[schema(example = "2024-07")]
    pub month: String,
    /// The currency of every amount.
    #[schema(example = "RUB")]
    pub currency: &'static str,
    /// Each service with revenue in the month, by ascending id.
    pub services: Vec<ServiceRevenue>,
}

/// The first instant of a `YYYY-MM` month in UTC, and of the month after it.
fn month_bounds(text: &str) -> Result<(OffsetDateTime, OffsetDateTime), ApiError> {
    let invalid = || ApiError::field("month", "must be a month as YYYY-MM, e.g. 2024-07");
    let (year, month) = text.split_once('-').ok_or_else(invalid)?;
    if year.len() != 4 || month.len() != 2 || !year.bytes().chain(month.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let year: i32 = year.parse().map_err(|_| invalid())?;
    let month = month.parse::<u8>().ok().and_then(|m| Month::try_from(m).ok()).ok_or_else(invalid)?;
    let start = Date::from_calendar_date(year, month, 1).map_err(|_| invalid())?;
    let end = match month {
        Month::December => Date::from_calendar_date(year + 1, Month::January, 1),
        _ => Date::from_calendar_date(year, month.next(), 1),
    }
    .map_err(|_| invalid())?;
    Ok((start.with_time(Time::MIDNIGHT).assume_utc(), end.with_time(Time::MIDNIGHT).assume_utc()))
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| media.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")))
}

/// The report as CSV: a `service_id;revenue` header, then one line per service, CRLF line ends (RFC 4180).
fn csv(report: &RevenueReport) -> String {
    let mut text = String::from("service_id;revenue\r\n");
    for service in &report.services {
        text.push_str(&format!("{};{}\r\n", service.service_id, service.revenue));
    }
    text
}

/// The revenue recognized per service in one month (UTC).
///
/// CSV (`service_id;revenue`) unless `Accept: application/json` is sent. Revenue counts when a reservation
/// is captured (`deduct_funds`). A month that has ended is final: its report is the same, byte for byte,
/// whenever it is read.
#[utoipa::path(
    get,
    path = "/reports/revenue/",
    tag = "reports",
    params(ReportQuery),
    responses(
        (status = 200, description = "The report", content(
            (String = "text/csv", example = "service_id;revenue\r\n101;1500.00\r\n"),
            (RevenueReport = "application/json"),
        )),
        (status = 400, description = "Missing or invalid month", body = ErrorBody),
    )
)]
pub async fn revenue(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let month = query.month.ok_or_else(|| ApiError::field("month", "this field is required"))?;
    let (start, end) = month_bounds(&month)?;
    let rows = state.store.revenue_by_service(start, end).await?;
    let report = RevenueReport {
        month,
        currency: "RUB",
        services: rows
            .into_iter()
            .map(|(service_id, minor)| ServiceRevenue { service_id, revenue: format_minor(minor, 2) })
            .collect(),
    };
    if wants_json(&headers) {
        return Ok(axum::Json(report).into_response());
    }
    let disposition = format!("attachment; filename=\"revenue-{}.csv\"", report.month);
    let mut response =
        ([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], csv(&report)).into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_its_first_instant_to_the_next_months() {
        let (start, end) = month_bounds("2024-12").unwrap_or_else(|_| panic!("month"));
        assert_eq!(start, time::macros::datetime!(2024-12-01 00:00 UTC));
        assert_eq!(end, time::macros::datetime!(2025-01-01 00:00 UTC));
        for bad in ["2024-13", "2024-7", "24-07", "2024-07-01", "abcd-ef", "+202-07", ""] {
            assert!(month_bounds(bad).is_err(), "{bad}");
        }
    }
}
