//! The bank payments pages: the inbox of received notices (filtered by status, payer INN and dates; paged by
//! keyset), one notice with the conflicting notices that reused its operation id, and the notices the intake
//! rejected or found conflicting.
//!
//! Bad filter values are shown next to their field (400) rather than ignored.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use payledger_core::Inn;
use time::macros::format_description;
use time::{Date, Duration};

use super::calendar::start_of_day;
use super::lists::{Choice, Pager, Params, choices, page_size_choices};
use super::organizations::organization_href;
use super::{ConsoleError, ConsoleUser, Layout, Path, format, render};
use crate::AppState;
use crate::store::console::payments::{ConflictRow, PaymentQuery, PaymentRow, RejectedRow};

/// How much of a kept notice body a page shows, in bytes.
const SHOWN_BODY_BYTES: usize = 2048;
/// The bank payments' statuses with their labels.
const PAYMENT_STATUSES: [(&str, &str); 3] = [("received", "Waiting"), ("applied", "Credited"), ("failed", "Failed")];

/// The bank payments' routes (each behind the console guard, which `console::router` adds).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/payments", get(payments))
        .route("/admin/payments/rejected", get(rejected_notices))
        .route("/admin/payments/conflicts", get(notice_conflicts))
        .route("/admin/payments/{operation_id}", get(payment))
}

/// The first `SHOWN_BODY_BYTES` of a kept body (cut at a character boundary), and whether it was cut.
fn shown_body(body: &str) -> (String, bool) {
    if body.len() <= SHOWN_BODY_BYTES {
        return (body.to_owned(), false);
    }
    let mut end = SHOWN_BODY_BYTES;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}…", &body[..end]), true)
}

/// A bank payment's page.
pub(super) fn payment_href(id: uuid::Uuid) -> String {
    format!("/admin/payments/{}", format::uuid_text(id))
}

/// A received notice as a row or a detail.
#[derive(Debug, Clone)]
struct PaymentView {
    operation_id: String,
    href: String,
    amount: String,
    inn: String,
    inn_href: String,
    organization: String,
    document_number: String,
    document_date: String,
    status: String,
    status_label: &'static str,
    received: String,
    applied: String,
    transaction_id: String,
    failure_reason: String,
}

impl PaymentView {
    /// The row as the inbox and the payment's page show it.
    fn new(row: &PaymentRow) -> PaymentView {
        PaymentView {
            operation_id: format::uuid_text(row.operation_id),
            href: payment_href(row.operation_id),
            amount: format::money(row.amount, &row.currency),
            inn: row.payer_inn.clone(),
            inn_href: organization_href(&row.payer_inn),
            organization: row.organization_name.clone().unwrap_or_default(),
            document_number: row.document_number.clone(),
            document_date: format::date(row.document_date),
            status: row.status.clone(),
            status_label: PAYMENT_STATUSES
                .iter()
                .find(|(status, _)| *status == row.status)
                .map_or("Unknown", |(_, label)| *label),
            received: format::time(row.received_at),
            applied: row.applied_at.map(format::time).unwrap_or_default(),
            transaction_id: row.transaction_id.map(format::uuid_text).unwrap_or_default(),
            failure_reason: row.failure_reason.clone().unwrap_or_default(),
        }
    }
}

/// The inbox's filters as typed, with an error per field.
#[derive(Debug, Clone, Default)]
struct PaymentFilters {
    status: String,
    inn: String,
    from: String,
    to: String,
    status_error: Option<String>,
    inn_error: Option<String>,
    from_error: Option<String>,
    to_error: Option<String>,
}

impl PaymentFilters {
    /// The filters as typed, each checked, and the dates they give (none if either date is bad).
    fn read(params: &Params) -> (PaymentFilters, Option<Date>, Option<Date>) {
        let text = |name: &str| params.get(name).unwrap_or("").to_owned();
        let mut filters = PaymentFilters {
            status: text("status"),
            inn: text("inn"),
            from: text("from"),
            to: text("to"),
            ..Default::default()
        };
        if !filters.status.is_empty() && !PAYMENT_STATUSES.iter().any(|(status, _)| *status == filters.status) {
            filters.status_error = Some("Choose one of the listed statuses.".into());
        }
        if !filters.inn.is_empty() && Inn::parse(&filters.inn).is_err() {
            filters.inn_error = Some("An INN is 10 or 12 digits.".into());
        }
        let from = (!filters.from.is_empty()).then(|| parse_date(&filters.from)).transpose();
        let to = (!filters.to.is_empty()).then(|| parse_date(&filters.to)).transpose();
        let (from, to) = match (from, to) {
            (Ok(from), Ok(to)) => (from, to),
            (from, to) => {
                filters.from_error = from.err();
                filters.to_error = to.err();
                (None, None)
            }
        };
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            filters.to_error = Some("The end is before the start.".into());
        }
        (filters, from, to)
    }

    /// Whether any filter is refused.
    fn has_errors(&self) -> bool {
        self.status_error.is_some() || self.inn_error.is_some() || self.from_error.is_some() || self.to_error.is_some()
    }
}

/// The inbox.
#[derive(askama::Template)]
#[template(path = "console/overview_payments.html")]
struct PaymentsPage {
    layout: Layout,
    /// Which of the payments pages' tabs is current.
    tab: &'static str,
    filters: PaymentFilters,
    statuses: Vec<Choice>,
    sizes: Vec<Choice>,
    rows: Vec<PaymentView>,
    pager: Pager,
}

/// A date filter: `YYYY-MM-DD`.
fn parse_date(text: &str) -> Result<Date, String> {
    Date::parse(text, format_description!("[year]-[month]-[day]")).map_err(|_| "Use the form YYYY-MM-DD.".to_owned())
}

/// `GET /admin/payments?status=&inn=&from=&to=&page_size=&before=&page=`, newest first.
async fn payments(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let params = Params::parse(query);
    let paging = params.paging()?;
    // The page is a keyset cursor (`before` = the previous page's last id); `page` only numbers it.
    let before = params.number("before", 0, i64::MAX)?;
    let (filters, from, to) = PaymentFilters::read(&params);
    let mut page = PaymentsPage {
        layout: user.layout("Bank payments", "payments"),
        tab: "inbox",
        filters: filters.clone(),
        statuses: choices(&PAYMENT_STATUSES, &filters.status),
        sizes: page_size_choices(paging.size),
        rows: Vec::new(),
        pager: Pager::default(),
    };
    if filters.has_errors() {
        return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
    }
    let query = PaymentQuery {
        status: (!filters.status.is_empty()).then(|| filters.status.clone()),
        inn: (!filters.inn.is_empty()).then(|| filters.inn.clone()),
        from: from.map(start_of_day),
        // The end date is included: received before the next day starts.
        until: to.map(|to| start_of_day(to) + Duration::days(1)),
        limit: paging.size + 1,
        before: (before > 0).then_some(before),
    };
    let mut rows = state.store.console_payments(&query).await?;
    let more = rows.len() as i64 > paging.size;
    rows.truncate(usize::try_from(paging.size).unwrap_or(0));
    let params = [("status", filters.status), ("inn", filters.inn), ("from", filters.from), ("to", filters.to)];
    page.pager =
        Pager::keyset("/admin/payments", &params, paging, rows.len(), rows.last().filter(|_| more).map(|row| row.id));
    page.rows = rows.iter().map(PaymentView::new).collect();
    Ok(render(&page))
}

/// A conflicting notice as a row.
#[derive(Debug, Clone)]
struct ConflictView {
    received: String,
    operation_id: String,
    href: String,
    fields: Vec<String>,
    body: String,
    cut: bool,
}

impl ConflictView {
    /// The row as the lists show it, its body cut to [`SHOWN_BODY_BYTES`].
    fn new(row: &ConflictRow) -> ConflictView {
        let (body, cut) = shown_body(&row.notice);
        ConflictView {
            received: format::time(row.received_at),
            operation_id: format::uuid_text(row.operation_id),
            href: payment_href(row.operation_id),
            fields: row.differing_fields.split(',').filter(|field| !field.is_empty()).map(str::to_owned).collect(),
            body,
            cut,
        }
    }
}

/// One bank payment's page.
#[derive(askama::Template)]
#[template(path = "console/overview_payment.html")]
struct PaymentPage {
    layout: Layout,
    tab: &'static str,
    payment: PaymentView,
    conflicts: Vec<ConflictView>,
    more_conflicts: bool,
}

/// `GET /admin/payments/{operation_id}`, with the first conflicting notices that reused its operation id.
async fn payment(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(operation_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = uuid::Uuid::parse_str(&operation_id)
        .map_err(|_| ConsoleError::BadRequest("An operation id is a UUID.".into()))?;
    let found = state
        .store
        .console_payment(id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("No bank payment has the operation id {id}.")))?;
    let (total, conflicts) = state.store.console_notice_conflicts(Some(id), 20, 0).await?;
    let page = PaymentPage {
        layout: user.layout(format!("Bank payment {}", found.document_number), "payments"),
        tab: "inbox",
        payment: PaymentView::new(&found),
        more_conflicts: total > conflicts.len() as i64,
        conflicts: conflicts.iter().map(ConflictView::new).collect(),
    };
    Ok(render(&page))
}

/// A rejected notice as a row.
#[derive(Debug, Clone)]
struct RejectedView {
    received: String,
    reason: String,
    details: Vec<(String, String)>,
    raw_details: String,
    body: String,
    cut: bool,
}

impl RejectedView {
    /// The row as the list shows it, its body cut to [`SHOWN_BODY_BYTES`].
    fn new(row: &RejectedRow) -> RejectedView {
        let (body, cut) = shown_body(&row.body);
        // The details are the intake's field errors as a JSON object; shown as stored if they are anything else.
        let details: Option<BTreeMap<String, serde_json::Value>> = serde_json::from_str(&row.details).ok();
        let details: Vec<(String, String)> = details
            .unwrap_or_default()
            .into_iter()
            .map(|(field, message)| match message {
                serde_json::Value::String(text) => (field, text),
                other => (field, other.to_string()),
            })
            .collect();
        RejectedView {
            received: format::time(row.received_at),
            reason: row.reason.clone(),
            raw_details: if details.is_empty() { row.details.clone() } else { String::new() },
            details,
            body,
            cut,
        }
    }
}

/// The rejected notices.
#[derive(askama::Template)]
#[template(path = "console/overview_rejected.html")]
struct RejectedPage {
    layout: Layout,
    tab: &'static str,
    rows: Vec<RejectedView>,
    sizes: Vec<Choice>,
    pager: Pager,
    shown_bytes: usize,
}

/// `GET /admin/payments/rejected?page=&page_size=`, newest first.
async fn rejected_notices(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let paging = Params::parse(query).paging()?;
    let (total, rows) = state.store.console_rejected_notices(paging.size, paging.offset()).await?;
    let page = RejectedPage {
        layout: user.layout("Rejected bank notices", "payments"),
        tab: "rejected",
        rows: rows.iter().map(RejectedView::new).collect(),
        sizes: page_size_choices(paging.size),
        pager: Pager::counted("/admin/payments/rejected", &[], paging, total),
        shown_bytes: SHOWN_BODY_BYTES,
    };
    Ok(render(&page))
}

/// The conflicting notices.
#[derive(askama::Template)]
#[template(path = "console/overview_conflicts.html")]
struct ConflictsPage {
    layout: Layout,
    tab: &'static str,
    rows: Vec<ConflictView>,
    sizes: Vec<Choice>,
    pager: Pager,
    shown_bytes: usize,
}

/// `GET /admin/payments/conflicts?page=&page_size=`, newest first.
async fn notice_conflicts(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let paging = Params::parse(query).paging()?;
    let (total, rows) = state.store.console_notice_conflicts(None, paging.size, paging.offset()).await?;
    let page = ConflictsPage {
        layout: user.layout("Conflicting bank notices", "payments"),
        tab: "conflicts",
        rows: rows.iter().map(ConflictView::new).collect(),
        sizes: page_size_choices(paging.size),
        pager: Pager::counted("/admin/payments/conflicts", &[], paging, total),
        shown_bytes: SHOWN_BODY_BYTES,
    };
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_cut_at_a_character() {
        let long = "ж".repeat(SHOWN_BODY_BYTES);
        let (shown, cut) = shown_body(&long);
        assert!(cut && shown.ends_with('…') && shown.len() <= SHOWN_BODY_BYTES + '…'.len_utf8());
        assert_eq!(shown_body("short"), ("short".to_owned(), false));
    }
}
