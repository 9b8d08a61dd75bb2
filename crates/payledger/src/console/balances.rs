//! The users' balances page (`/admin/balances`): look a user up by id, then their available and reserved money,
//! their open reservations and their history, each paged by id, and the forms of the five balance operations
//! ([`super::balance_operations`]); after an operation, a notice says what it did.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use payledger_core::UserId;
use payledger_core::balances::ActivityKind;
use serde::Deserialize;

use super::balance_operations::OpForms;
use super::ids::{optional_id, positive_id};
use super::{ConsoleError, ConsoleUser, Layout, Query, format, render};
use crate::AppState;
use crate::store::console::balances::OpenHold;
use crate::store::{ActivityRow, HistoryCursor, HistoryPage, HistorySort};

/// History lines per page.
const HISTORY_PAGE: i64 = 25;
/// Open reservations per page.
const HOLDS_PAGE: i64 = 25;

/// The balances page's route (behind the console guard, which `console::router` adds); the operations have
/// their own ([`super::balance_operations::routes`]).
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/balances", get(balances))
}

/// `/admin/balances?user_id=&before=&holds_after=&line=`.
#[derive(Debug, Default, Deserialize)]
struct BalancesQuery {
    /// The user looked up.
    user_id: Option<String>,
    /// History: lines older than this line id.
    before: Option<String>,
    /// Open reservations: those with ids above this one.
    holds_after: Option<String>,
    /// The history line an operation just wrote, described in a notice.
    line: Option<String>,
}

/// A user's money as the page shows it.
struct AccountView {
    available: String,
    reserved: String,
    holds: Vec<HoldView>,
    holds_next: Option<String>,
    holds_first: Option<String>,
    history: Vec<LineView>,
    history_next: Option<String>,
    history_newest: Option<String>,
}

/// One open reservation.
struct HoldView {
    /// `Some((service, order))` for an order's reservation.
    order: Option<(String, String)>,
    /// What else it is held for (a payout).
    other: String,
    amount: String,
    since: String,
}

/// One history line.
struct LineView {
    id: i64,
    at: String,
    kind: String,
    amount: String,
    reserved: String,
    detail: String,
}

/// The balances page.
#[derive(askama::Template)]
#[template(path = "console/people_balances.html")]
struct BalancesPage {
    layout: Layout,
    /// The lookup field's text.
    lookup: String,
    lookup_error: Option<String>,
    notice: Option<String>,
    /// Why the user looked up has nothing to show.
    missing: Option<String>,
    /// The user looked up, if the id is valid.
    user_id: Option<i64>,
    /// Their account, if they have one.
    account: Option<AccountView>,
    forms: OpForms,
}

impl BalancesPage {
    /// The page before a user is found: the lookup form with `lookup` as typed and its error, if any.
    fn lookup_form(user: &ConsoleUser, lookup: String, lookup_error: Option<String>) -> BalancesPage {
        BalancesPage {
            layout: user.layout("Users' balances", "balances"),
            lookup,
            lookup_error,
            notice: None,
            missing: None,
            user_id: None,
            account: None,
            forms: OpForms::default(),
        }
    }
}

/// `GET /admin/balances?user_id=&before=&holds_after=&line=`.
async fn balances(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<BalancesQuery>,
) -> Result<Response, ConsoleError> {
    let lookup = query.user_id.as_deref().unwrap_or_default().trim().to_owned();
    if lookup.is_empty() {
        return Ok(render(&BalancesPage::lookup_form(&user, lookup, None)));
    }
    let subject = match positive_id(&lookup).and_then(|id| UserId::new(id).map_err(|error| error.to_string())) {
        Ok(subject) => subject,
        Err(message) => {
            let page = BalancesPage::lookup_form(&user, lookup, Some(format!("The user id {message}.")));
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    let before = optional_id(query.before.as_deref(), "before")?;
    let holds_after = optional_id(query.holds_after.as_deref(), "holds_after")?;
    let line = optional_id(query.line.as_deref(), "line")?;
    balances_page(&state, &user, subject, Cursors { before, holds_after, line }, OpForms::default(), StatusCode::OK)
        .await
}

/// Where the page's two tables start, and the line to describe in a notice.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Cursors {
    /// History: lines older than this line id.
    pub(super) before: Option<i64>,
    /// Open reservations: those with ids above this one.
    pub(super) holds_after: Option<i64>,
    /// The history line to describe.
    pub(super) line: Option<i64>,
}

/// The page for one user, with `forms` (one of them possibly refused) and `status`.
pub(super) async fn balances_page(
    state: &AppState,
    user: &ConsoleUser,
    subject: UserId,
    cursors: Cursors,
    forms: OpForms,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let id = subject.get();
    let layout = user.layout(format!("User {id}"), "balances");
    let Some(balance) = state.store.user_balance(id).await? else {
        let page = BalancesPage {
            layout,
            lookup: id.to_string(),
            lookup_error: None,
            notice: None,
            missing: Some(format!("User {id} has no account yet: nothing was ever deposited for them.")),
            user_id: Some(id),
            account: None,
            forms,
        };
        // A refused form keeps its own status; a plain lookup of an unknown user is a 404.
        let status = if status == StatusCode::OK { StatusCode::NOT_FOUND } else { status };
        return Ok((status, render(&page)).into_response());
    };
    let holds_after = cursors.holds_after.unwrap_or(0);
    let mut holds = state.store.console_open_holds(id, holds_after, HOLDS_PAGE + 1).await?;
    let more_holds = holds.len() as i64 > HOLDS_PAGE;
    holds.truncate(usize::try_from(HOLDS_PAGE).unwrap_or(0));
    let holds_next = holds.last().filter(|_| more_holds).map(|hold| balances_href(id, cursors.before, Some(hold.id)));
    let holds_first = cursors.holds_after.map(|_| balances_href(id, cursors.before, None));

    let page = HistoryPage {
        sort: HistorySort::Date,
        descending: true,
        after: cursors.before.map(|before| HistoryCursor { amount: 0, id: before }),
        limit: HISTORY_PAGE + 1,
    };
    let mut lines = state.store.user_history(id, page).await?.unwrap_or_default();
    let more_lines = lines.len() as i64 > HISTORY_PAGE;
    lines.truncate(usize::try_from(HISTORY_PAGE).unwrap_or(0));
    let history_next =
        lines.last().filter(|_| more_lines).map(|line| balances_href(id, Some(line.id), cursors.holds_after));
    let history_newest = cursors.before.map(|_| balances_href(id, None, cursors.holds_after));

    let notice = match cursors.line {
        Some(line) => applied_line(state, id, line).await?.map(|row| applied_notice(id, &row)),
        None => None,
    };
    let account = AccountView {
        available: format::rub(balance.balance - balance.held),
        reserved: format::rub(balance.held),
        holds: holds.iter().map(hold_view).collect(),
        holds_next,
        holds_first,
        history: lines.iter().map(line_view).collect(),
        history_next,
        history_newest,
    };
    let page = BalancesPage {
        layout,
        lookup: id.to_string(),
        lookup_error: None,
        notice,
        missing: None,
        user_id: Some(id),
        account: Some(account),
        forms,
    };
    Ok((status, render(&page)).into_response())
}

/// The user's page with its two tables starting where given.
fn balances_href(user: i64, before: Option<i64>, holds_after: Option<i64>) -> String {
    let mut href = format!("/admin/balances?user_id={user}");
    if let Some(before) = before {
        href.push_str(&format!("&before={before}"));
    }
    if let Some(after) = holds_after {
        href.push_str(&format!("&holds_after={after}"));
    }
    href
}

/// The user's history line `line`, if it is theirs.
async fn applied_line(state: &AppState, user: i64, line: i64) -> Result<Option<ActivityRow>, ConsoleError> {
    let Some(after) = line.checked_add(1) else { return Ok(None) };
    let page = HistoryPage {
        sort: HistorySort::Date,
        descending: true,
        after: Some(HistoryCursor { amount: 0, id: after }),
        limit: 1,
    };
    let rows = state.store.user_history(user, page).await?.unwrap_or_default();
    Ok(rows.into_iter().next().filter(|row| row.id == line))
}

/// What the operation that wrote `row` did, in a sentence.
fn applied_notice(user: i64, row: &ActivityRow) -> String {
    let order = match (row.service_id, row.order_id) {
        (Some(service), Some(order)) => format!("order {order} of service {service}"),
        _ => "the order".to_owned(),
    };
    let done = match ActivityKind::parse(&row.kind) {
        Some(ActivityKind::Deposit) => format!("Deposited {} to user {user}.", format::rub(row.amount)),
        Some(ActivityKind::Reservation) => {
            format!("Reserved {} of user {user} for {order}.", format::rub(row.held_change))
        }
        Some(ActivityKind::RevenueRecognition) => {
            format!("Recognized {} reserved for {order} as revenue.", format::rub(-row.held_change))
        }
        Some(ActivityKind::Release) => {
            format!("Released {} reserved for {order} back to user {user}.", format::rub(-row.held_change))
        }
        Some(ActivityKind::Transfer) => match row.counterparty {
            Some(other) if row.amount < 0 => {
                format!("Transferred {} from user {user} to user {other}.", format::rub(-row.amount))
            }
            _ => format!("Transfer applied: {}.", format::rub(row.amount)),
        },
        _ => format!("Applied: {}.", kind_label(&row.kind)),
    };
    format!("{done} The balance below is the new one (history line {}).", row.id)
}

/// What a history line's kind is called on the page.
fn kind_label(kind: &str) -> String {
    match ActivityKind::parse(kind) {
        Some(ActivityKind::Deposit) => "Deposit".into(),
        Some(ActivityKind::Reservation) => "Reservation".into(),
        Some(ActivityKind::RevenueRecognition) => "Revenue recognition".into(),
        Some(ActivityKind::Release) => "Release".into(),
        Some(ActivityKind::Transfer) => "Transfer".into(),
        Some(ActivityKind::Withdrawal) => "Withdrawal".into(),
        Some(ActivityKind::PayoutHold) => "Payout hold".into(),
        Some(ActivityKind::PayoutRelease) => "Payout hold released".into(),
        Some(ActivityKind::Payout) => "Payout".into(),
        Some(ActivityKind::PayoutReturn) => "Payout returned".into(),
        None => kind.to_owned(),
    }
}

/// A history line as the page shows it: what it moved, and with whom or for what.
fn line_view(row: &ActivityRow) -> LineView {
    let detail = match (row.counterparty, row.service_id.zip(row.order_id), row.payout_id) {
        (Some(other), _, _) if row.amount < 0 => format!("to user {other}"),
        (Some(other), _, _) => format!("from user {other}"),
        (None, Some((service, order)), _) => format!("order {order} of service {service}"),
        (None, None, Some(payout)) => format!("payout {payout}"),
        (None, None, None) => String::new(),
    };
    LineView {
        id: row.id,
        at: format::time(row.created_at),
        kind: kind_label(&row.kind),
        amount: format::rub(row.amount),
        reserved: format::rub(row.held_change),
        detail,
    }
}

/// An open reservation as the page shows it: the order (service and order ids) or what else it is for.
fn hold_view(hold: &OpenHold) -> HoldView {
    let parts: Vec<&str> = hold.reference.split(':').collect();
    let (order, other) = match parts.as_slice() {
        ["order", _user, service, order] => (Some(((*service).to_owned(), (*order).to_owned())), String::new()),
        ["payout", payout] => (None, format!("payout {payout}")),
        _ => (None, hold.reference.clone()),
    };
    HoldView { order, other, amount: format::rub(hold.amount), since: format::time(hold.created_at) }
}
