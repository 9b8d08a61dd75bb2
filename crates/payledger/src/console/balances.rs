//! The users' balances, users and audit log pages.
//!
//! - `/admin/balances`: look a user up by id; their balance, open reservations and history; and (operators)
//!   deposit, reserve, recognize revenue, release and transfer, each confirmed on a second page before it is
//!   applied through the same balance service as the API, audited under the console user's name.
//! - `/admin/users` (admins): the users of the API and the console; create one; per user, enable or disable,
//!   change the role, set a new password, all through [`crate::principals`], which audits.
//! - `/admin/audit` (admins): the audit log, newest first, filtered by actor, action and target.
//!
//! Every form re-renders with the input and an inline message when it is refused (400 for invalid input,
//! 404 or 409 when the ledger or the users table refuses it); a change that went through redirects (303) to
//! a page that shows its result.

use std::collections::BTreeMap;

use super::{Form, Query};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use payledger_core::balances::{ActivityKind, OrderId, UserRole};
use payledger_core::money::{Currency, Money};
use payledger_core::{BalanceError, BalanceOperation, OrderKey, ServiceId, UserId};
use serde::Deserialize;

use super::{ConsoleError, ConsoleUser, Layout, format, percent_encode, render};
use crate::AppState;
use crate::balances::Idempotency;
use crate::engine::EngineError;
use crate::engine::balances::{BalanceOutcome, OperationResult, StoredResponse};
use crate::principals::{self, PrincipalError, UserChange};
use crate::store::console::balances::{OpenHold, UserListRow};
use crate::store::{ActivityRow, AuditFilter, AuditRow, HistoryCursor, HistoryPage, HistorySort};

/// History lines per page.
const HISTORY_PAGE: i64 = 25;
/// Open reservations per page.
const HOLDS_PAGE: i64 = 25;
/// Users per page.
const USERS_PAGE: i64 = 50;
/// Audit entries per page.
const AUDIT_PAGE: i64 = 50;
/// The longest confirmation nonce accepted back from a form.
const MAX_NONCE_CHARS: usize = 64;

/// Field errors of a form, by field name; `form` is about the form as a whole.
type FieldErrors = BTreeMap<String, String>;

/// This area's routes (each behind the console guard, which `console::router` adds).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/balances", get(balances))
        .route("/admin/balances/deposit", post(deposit))
        .route("/admin/balances/reserve", post(reserve))
        .route("/admin/balances/deduct", post(deduct))
        .route("/admin/balances/release", post(release))
        .route("/admin/balances/transfer", post(transfer))
        .route("/admin/users", get(users).post(create_user))
        .route("/admin/users/user", get(user_page))
        .route("/admin/users/active", post(set_active))
        .route("/admin/users/role", post(set_role))
        .route("/admin/users/password", post(set_password))
        .route("/admin/audit", get(audit))
}

// ---------------------------------------------------------------------------------------------------------
// Users' balances
// ---------------------------------------------------------------------------------------------------------

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

/// The five operations the page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Deposit,
    Reserve,
    Deduct,
    Release,
    Transfer,
}

impl Op {
    fn path(self) -> &'static str {
        match self {
            Op::Deposit => "/admin/balances/deposit",
            Op::Reserve => "/admin/balances/reserve",
            Op::Deduct => "/admin/balances/deduct",
            Op::Release => "/admin/balances/release",
            Op::Transfer => "/admin/balances/transfer",
        }
    }

    /// The endpoint name the confirmation's idempotency key is scoped to.
    fn endpoint(self) -> &'static str {
        match self {
            Op::Deposit => "console_deposit",
            Op::Reserve => "console_reserve",
            Op::Deduct => "console_deduct",
            Op::Release => "console_release",
            Op::Transfer => "console_transfer",
        }
    }

    /// The id of the operation's form on the user's page, so a refused form is scrolled to.
    fn anchor(self) -> &'static str {
        match self {
            Op::Deposit => "op-deposit",
            Op::Reserve => "op-reserve",
            Op::Deduct => "op-deduct",
            Op::Release => "op-release",
            Op::Transfer => "op-transfer",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Op::Deposit => "Confirm the deposit",
            Op::Reserve => "Confirm the reservation",
            Op::Deduct => "Confirm the revenue recognition",
            Op::Release => "Confirm the release",
            Op::Transfer => "Confirm the transfer",
        }
    }
}

/// One operation form's input and its errors.
#[derive(Debug, Default, Clone)]
struct OpForm {
    amount: String,
    service_id: String,
    order_id: String,
    to_user_id: String,
    errors: FieldErrors,
}

impl OpForm {
    fn from_input(input: &OpInput) -> OpForm {
        let text = |value: &Option<String>| value.as_deref().unwrap_or_default().trim().to_owned();
        OpForm {
            amount: text(&input.amount),
            service_id: text(&input.service_id),
            order_id: text(&input.order_id),
            to_user_id: text(&input.to_user_id),
            errors: FieldErrors::new(),
        }
    }

    /// The message for a field, if it has one.
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    /// Whether the form was refused (so it is shown open, with its messages).
    fn failed(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// The page's operation forms: blank, except the one that was just refused.
#[derive(Debug, Default)]
struct OpForms {
    deposit: OpForm,
    reserve: OpForm,
    deduct: OpForm,
    release: OpForm,
    transfer: OpForm,
}

impl OpForms {
    fn with(op: Op, form: OpForm) -> OpForms {
        let mut forms = OpForms::default();
        *match op {
            Op::Deposit => &mut forms.deposit,
            Op::Reserve => &mut forms.reserve,
            Op::Deduct => &mut forms.deduct,
            Op::Release => &mut forms.release,
            Op::Transfer => &mut forms.transfer,
        } = form;
        forms
    }
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

async fn balances(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<BalancesQuery>,
) -> Result<Response, ConsoleError> {
    let lookup = query.user_id.as_deref().unwrap_or_default().trim().to_owned();
    if lookup.is_empty() {
        return Ok(render(&BalancesPage {
            layout: user.layout("Users' balances", "balances"),
            lookup,
            lookup_error: None,
            notice: None,
            missing: None,
            user_id: None,
            account: None,
            forms: OpForms::default(),
        }));
    }
    let subject = match positive_id(&lookup).and_then(|id| UserId::new(id).map_err(|error| error.to_string())) {
        Ok(subject) => subject,
        Err(message) => {
            let page = BalancesPage {
                layout: user.layout("Users' balances", "balances"),
                lookup,
                lookup_error: Some(format!("The user id {message}.")),
                notice: None,
                missing: None,
                user_id: None,
                account: None,
                forms: OpForms::default(),
            };
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
struct Cursors {
    before: Option<i64>,
    holds_after: Option<i64>,
    line: Option<i64>,
}

/// The page for one user, with `forms` (one of them possibly refused) and `status`.
async fn balances_page(
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

fn hold_view(hold: &OpenHold) -> HoldView {
    let parts: Vec<&str> = hold.reference.split(':').collect();
    let (order, other) = match parts.as_slice() {
        ["order", _user, service, order] => (Some(((*service).to_owned(), (*order).to_owned())), String::new()),
        ["payout", payout] => (None, format!("payout {payout}")),
        _ => (None, hold.reference.clone()),
    };
    HoldView { order, other, amount: format::rub(hold.amount), since: format::time(hold.created_at) }
}

/// An operation form's fields (all text, so nothing is refused before it can be shown again).
#[derive(Debug, Default, Deserialize)]
struct OpInput {
    /// The user of the page (the sender of a transfer).
    user_id: Option<String>,
    amount: Option<String>,
    service_id: Option<String>,
    order_id: Option<String>,
    /// The recipient of a transfer.
    to_user_id: Option<String>,
    /// `yes` on the confirmation page's form.
    confirm: Option<String>,
    /// The confirmation's nonce: applying the same confirmation twice applies it once.
    key: Option<String>,
}

async fn deposit(state: State<AppState>, user: ConsoleUser, Form(input): Form<OpInput>) -> Response {
    operate(state, user, Op::Deposit, input).await
}

async fn reserve(state: State<AppState>, user: ConsoleUser, Form(input): Form<OpInput>) -> Response {
    operate(state, user, Op::Reserve, input).await
}

async fn deduct(state: State<AppState>, user: ConsoleUser, Form(input): Form<OpInput>) -> Response {
    operate(state, user, Op::Deduct, input).await
}

async fn release(state: State<AppState>, user: ConsoleUser, Form(input): Form<OpInput>) -> Response {
    operate(state, user, Op::Release, input).await
}

async fn transfer(state: State<AppState>, user: ConsoleUser, Form(input): Form<OpInput>) -> Response {
    operate(state, user, Op::Transfer, input).await
}

async fn operate(State(state): State<AppState>, user: ConsoleUser, op: Op, input: OpInput) -> Response {
    match try_operate(&state, &user, op, input).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Validates; shows the confirmation; once confirmed, applies and redirects to the result, or shows the
/// refusal inline.
async fn try_operate(state: &AppState, user: &ConsoleUser, op: Op, input: OpInput) -> Result<Response, ConsoleError> {
    let subject = input
        .user_id
        .as_deref()
        .map(str::trim)
        .ok_or_else(|| "is required".to_owned())
        .and_then(positive_id)
        .and_then(|id| UserId::new(id).map_err(|error| error.to_string()))
        .map_err(|message| {
            ConsoleError::BadRequest(format!("The form's user id {message}; look the user up again."))
        })?;
    let mut form = OpForm::from_input(&input);
    let operation = match parse_operation(op, subject, &form) {
        Ok(operation) => operation,
        Err(errors) => {
            form.errors = errors;
            return refused(state, user, subject, op, form, StatusCode::BAD_REQUEST).await;
        }
    };
    let nonce = match input.key.as_deref() {
        None | Some("") => None,
        Some(nonce) if nonce.len() <= MAX_NONCE_CHARS && nonce.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Some(nonce.to_owned())
        }
        Some(_) => return Err(ConsoleError::BadRequest("The confirmation form is damaged; start again.".into())),
    };
    if input.confirm.as_deref() != Some("yes") {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        return confirmation(state, user, op, &operation, &nonce, None, StatusCode::OK).await;
    }
    let idempotency = nonce.as_ref().map(|nonce| Idempotency {
        key: format!("console:{}/{nonce}", user.id),
        endpoint: op.endpoint(),
        render: stored_result,
    });
    let outcome = match state.balances.apply(operation.clone(), idempotency, Some(user.username.clone())).await {
        Ok(outcome) => outcome,
        Err(EngineError::Unconfirmed) => {
            let message = if nonce.is_some() {
                "The database failed while committing: the operation may or may not have been applied. \
                 Confirming again is safe: this confirmation is applied at most once."
            } else {
                "The database failed while committing: the operation may or may not have been applied. Check \
                 the user's history before trying again."
            };
            let nonce = nonce.unwrap_or_default();
            return confirmation(state, user, op, &operation, &nonce, Some(message), StatusCode::SERVICE_UNAVAILABLE)
                .await;
        }
        Err(error) => return Err(ConsoleError::Engine(error)),
    };
    match outcome {
        BalanceOutcome::Executed { result: Ok(lines), .. } => Ok(applied(subject, lines.first().map(|line| line.id))),
        BalanceOutcome::Executed { result: Err(refusal), .. } => {
            let (status, errors) = refusal_errors(&refusal);
            form.errors = errors;
            refused(state, user, subject, op, form, status).await
        }
        // The same confirmation was submitted again (a double click, a reload): its first answer.
        BalanceOutcome::Replayed(stored) => match replayed(&stored) {
            Replay::Applied(line) => Ok(applied(subject, line)),
            Replay::Refused(status, errors) => {
                form.errors = errors;
                refused(state, user, subject, op, form, status).await
            }
        },
        BalanceOutcome::KeyInFlight => {
            form.errors = single("form", "This confirmation is being applied right now; reload the page shortly.");
            refused(state, user, subject, op, form, StatusCode::CONFLICT).await
        }
        BalanceOutcome::KeyReused => {
            form.errors = single("form", "This confirmation was used for another operation; start again.");
            refused(state, user, subject, op, form, StatusCode::CONFLICT).await
        }
        BalanceOutcome::Broken(defect) => {
            tracing::error!(%defect, "the ledger engine could not decide a console balance operation");
            Err(ConsoleError::Defect)
        }
        BalanceOutcome::Kept(_) => Err(ConsoleError::Defect),
    }
}

/// After an operation went through: to the user's page, which describes the line it wrote.
fn applied(subject: UserId, line: Option<i64>) -> Response {
    let mut target = format!("/admin/balances?user_id={subject}");
    if let Some(line) = line {
        target.push_str(&format!("&line={line}#result"));
    }
    Redirect::to(&target).into_response()
}

/// The user's page again, with the refused form open and its messages.
async fn refused(
    state: &AppState,
    user: &ConsoleUser,
    subject: UserId,
    op: Op,
    form: OpForm,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    balances_page(state, user, subject, Cursors::default(), OpForms::with(op, form), status).await
}

/// What a confirmation's idempotency key keeps: the line written, or the refusal's messages.
fn stored_result(result: &OperationResult) -> StoredResponse {
    match result {
        Ok(lines) => StoredResponse {
            status: StatusCode::CREATED.as_u16(),
            body: serde_json::json!({ "line": lines.first().map(|line| line.id) }).to_string(),
        },
        Err(refusal) => {
            let (status, errors) = refusal_errors(refusal);
            StoredResponse { status: status.as_u16(), body: serde_json::json!({ "errors": errors }).to_string() }
        }
    }
}

enum Replay {
    Applied(Option<i64>),
    Refused(StatusCode, FieldErrors),
}

fn replayed(stored: &StoredResponse) -> Replay {
    let body: serde_json::Value = serde_json::from_str(&stored.body).unwrap_or_default();
    if (200..300).contains(&stored.status) {
        return Replay::Applied(body.get("line").and_then(serde_json::Value::as_i64));
    }
    let errors: FieldErrors = body
        .get("errors")
        .and_then(|errors| serde_json::from_value(errors.clone()).ok())
        .unwrap_or_else(|| single("form", "This confirmation was already refused; start again."));
    Replay::Refused(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CONFLICT), errors)
}

/// The ledger's refusal as the form's messages, with the status the API answers it with.
fn refusal_errors(refusal: &BalanceError) -> (StatusCode, FieldErrors) {
    let message = refusal.to_string();
    match refusal {
        BalanceError::UnknownUser { user, role: UserRole::Recipient } => (
            StatusCode::NOT_FOUND,
            single("to_user_id", &format!("User {user} has no account: nothing was ever deposited for them.")),
        ),
        BalanceError::UnknownUser { user, .. } => (
            StatusCode::NOT_FOUND,
            single("form", &format!("User {user} has no account: nothing was ever deposited for them.")),
        ),
        BalanceError::InsufficientFunds { available } => (
            StatusCode::CONFLICT,
            single("amount", &format!("Insufficient funds: {} available.", format::rub(*available))),
        ),
        BalanceError::HoldExists(_) | BalanceError::HoldSettled { .. } => {
            (StatusCode::CONFLICT, single("order_id", &capitalized(&message)))
        }
        BalanceError::HoldNotFound(_) => (StatusCode::NOT_FOUND, single("order_id", &capitalized(&message))),
        BalanceError::AmountMismatch { held } => (
            StatusCode::CONFLICT,
            single("amount", &format!("Must equal the reserved amount, {}.", format::rub(*held))),
        ),
        BalanceError::Overflow => (StatusCode::UNPROCESSABLE_ENTITY, single("amount", &capitalized(&message))),
    }
}

fn single(field: &str, message: &str) -> FieldErrors {
    FieldErrors::from([(field.to_owned(), message.to_owned())])
}

fn capitalized(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// A positive whole number written in decimal digits.
fn positive_id(text: &str) -> Result<i64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a positive integer".into());
    }
    let value: i64 = text.parse().map_err(|_| "is out of range".to_owned())?;
    if value > 0 { Ok(value) } else { Err("must be a positive integer".into()) }
}

/// An optional positive id in the query string; anything else is a bad link.
fn optional_id(text: Option<&str>, name: &str) -> Result<Option<i64>, ConsoleError> {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => {
            positive_id(text).map(Some).map_err(|message| ConsoleError::BadRequest(format!("{name} {message}")))
        }
    }
}

/// Reads the form into an operation, with the same rules as the API's bodies; every bad field at once.
fn parse_operation(op: Op, user: UserId, form: &OpForm) -> Result<BalanceOperation, FieldErrors> {
    let mut errors = FieldErrors::new();
    let mut check = |field: &str, text: &str, required: bool| -> Option<String> {
        if text.is_empty() {
            if required {
                errors.insert(field.to_owned(), "This field is required.".into());
            }
            return None;
        }
        Some(text.to_owned())
    };
    let amount_text = check("amount", &form.amount, op != Op::Release);
    let needs_order = matches!(op, Op::Reserve | Op::Deduct | Op::Release);
    let service_text = if needs_order { check("service_id", &form.service_id, true) } else { None };
    let order_text = if needs_order { check("order_id", &form.order_id, true) } else { None };
    let recipient_text = if op == Op::Transfer { check("to_user_id", &form.to_user_id, true) } else { None };

    let amount = amount_text.and_then(|text| match Money::parse_positive(&text, Currency::RUB, false) {
        Ok(amount) => Some(amount),
        Err(error) => {
            errors.insert("amount".into(), format!("The amount {error}."));
            None
        }
    });
    let mut id = |field: &str, text: Option<String>| -> Option<i64> {
        let text = text?;
        match positive_id(&text) {
            Ok(id) => Some(id),
            Err(message) => {
                errors.insert(field.to_owned(), format!("The id {message}."));
                None
            }
        }
    };
    let service = id("service_id", service_text).and_then(|id| ServiceId::new(id).ok());
    let order = id("order_id", order_text).and_then(|id| OrderId::new(id).ok());
    let recipient = id("to_user_id", recipient_text).and_then(|id| UserId::new(id).ok());
    if recipient == Some(user) {
        errors.insert("to_user_id".into(), "Must be another user than the sender.".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let key = service.zip(order).map(|(service, order)| OrderKey { user, service, order });
    let operation = match op {
        Op::Deposit => amount.map(|amount| BalanceOperation::Deposit { user, amount }),
        Op::Reserve => key.zip(amount).map(|(key, amount)| BalanceOperation::Reserve { key, amount }),
        Op::Deduct => key.zip(amount).map(|(key, amount)| BalanceOperation::Deduct { key, amount }),
        Op::Release => key.map(|key| BalanceOperation::Release { key, amount }),
        Op::Transfer => recipient.zip(amount).map(|(recipient, amount)| BalanceOperation::Transfer {
            sender: user,
            recipient,
            amount,
        }),
    };
    operation.ok_or_else(|| single("form", "The form is incomplete."))
}

/// The confirmation page: what will happen, the fields carried in hidden inputs, and a Confirm button.
#[derive(askama::Template)]
#[template(path = "console/people_confirm.html")]
struct ConfirmPage {
    layout: Layout,
    question: String,
    action: &'static str,
    anchor: &'static str,
    fields: Vec<(&'static str, String)>,
    nonce: String,
    back: String,
    /// The user's balance now, if they have an account.
    available: Option<String>,
    reserved: Option<String>,
    /// For a capture or release: what the order's reservation holds now.
    hold: Option<String>,
    user_id: i64,
    error: Option<&'static str>,
}

async fn confirmation(
    state: &AppState,
    user: &ConsoleUser,
    op: Op,
    operation: &BalanceOperation,
    nonce: &str,
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let (subject, question, mut fields) = match operation {
        BalanceOperation::Deposit { user, amount } => (
            *user,
            format!("Deposit {} to user {user}?", format::money(amount.minor(), amount.currency().code())),
            vec![("amount", amount.to_decimal_string())],
        ),
        BalanceOperation::Reserve { key, amount } => (
            key.user,
            format!(
                "Reserve {} of user {} for order {} of service {}?",
                format::money(amount.minor(), amount.currency().code()),
                key.user,
                key.order,
                key.service
            ),
            vec![("amount", amount.to_decimal_string())],
        ),
        BalanceOperation::Deduct { key, amount } => (
            key.user,
            format!(
                "Recognize revenue: capture {} reserved by user {} for order {} of service {}?",
                format::money(amount.minor(), amount.currency().code()),
                key.user,
                key.order,
                key.service
            ),
            vec![("amount", amount.to_decimal_string())],
        ),
        BalanceOperation::Release { key, amount } => (
            key.user,
            match amount {
                Some(amount) => format!(
                    "Release the {} reserved by user {} for order {} of service {} back to their available balance?",
                    format::money(amount.minor(), amount.currency().code()),
                    key.user,
                    key.order,
                    key.service
                ),
                None => format!(
                    "Release the whole reservation of user {} for order {} of service {} back to their available \
                     balance?",
                    key.user, key.order, key.service
                ),
            },
            amount.map(|amount| ("amount", amount.to_decimal_string())).into_iter().collect(),
        ),
        BalanceOperation::Transfer { sender, recipient, amount } => (
            *sender,
            format!(
                "Transfer {} from user {sender} to user {recipient}?",
                format::money(amount.minor(), amount.currency().code())
            ),
            vec![("amount", amount.to_decimal_string()), ("to_user_id", recipient.to_string())],
        ),
        BalanceOperation::Withdraw { user, .. } => (*user, String::new(), Vec::new()),
    };
    if let Some(key) = operation.order() {
        fields.push(("service_id", key.service.to_string()));
        fields.push(("order_id", key.order.to_string()));
    }
    let balance = state.store.user_balance(subject.get()).await?;
    let hold = match operation {
        BalanceOperation::Deduct { key, .. } | BalanceOperation::Release { key, .. } => {
            Some(match state.store.console_hold(&key.reference()).await? {
                Some((amount, status)) if status == "held" => {
                    format!("The reservation for this order holds {}.", format::rub(amount))
                }
                Some((amount, status)) => {
                    format!("The reservation for this order ({}) is already {status}.", format::rub(amount))
                }
                None => "There is no reservation for this order.".to_owned(),
            })
        }
        _ => None,
    };
    let page = ConfirmPage {
        layout: user.layout(op.title(), "balances"),
        question,
        action: op.path(),
        anchor: op.anchor(),
        fields,
        nonce: nonce.to_owned(),
        back: format!("/admin/balances?user_id={subject}"),
        available: balance.map(|balance| format::rub(balance.balance - balance.held)),
        reserved: balance.map(|balance| format::rub(balance.held)),
        hold,
        user_id: subject.get(),
        error,
    };
    Ok((status, render(&page)).into_response())
}

// ---------------------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------------------

/// `/admin/users?after=&done=`.
#[derive(Debug, Default, Deserialize)]
struct UsersQuery {
    /// Users whose names sort after this one.
    after: Option<String>,
}

/// One user in the list.
struct UserView {
    username: String,
    href: String,
    role: String,
    active: bool,
    generated: bool,
    created: String,
}

impl UserView {
    fn new(username: &str, role: &str, active: bool, generated: bool, created: time::OffsetDateTime) -> UserView {
        UserView {
            username: username.to_owned(),
            href: user_href(username),
            role: role.to_owned(),
            active,
            generated,
            created: format::time(created),
        }
    }
}

/// A user's page. The name goes in the query, not the path: `.` and `..` are valid names, and a browser
/// would resolve them as path segments.
fn user_href(username: &str) -> String {
    format!("/admin/users/user?username={}", percent_encode(username))
}

/// A `<select>` option of a role.
struct RoleOption {
    value: &'static str,
    selected: bool,
}

fn role_options(selected: &str) -> Vec<RoleOption> {
    principals::ROLES.iter().copied().map(|role| RoleOption { value: role, selected: role == selected }).collect()
}

/// The create form's input and errors (never the password).
#[derive(Default)]
struct CreateForm {
    username: String,
    roles: Vec<RoleOption>,
    errors: FieldErrors,
}

impl CreateForm {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }
}

/// The users page.
#[derive(askama::Template)]
#[template(path = "console/people_users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserView>,
    next: Option<String>,
    first: Option<String>,
    create: CreateForm,
    min_password: usize,
}

async fn users(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<UsersQuery>,
) -> Result<Response, ConsoleError> {
    let create = CreateForm { username: String::new(), roles: role_options("viewer"), errors: FieldErrors::new() };
    users_page(&state, &user, query.after.as_deref().unwrap_or_default(), create, StatusCode::OK).await
}

async fn users_page(
    state: &AppState,
    user: &ConsoleUser,
    after: &str,
    create: CreateForm,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let mut rows: Vec<UserListRow> = state.store.console_users_page(after, USERS_PAGE + 1).await?;
    let more = rows.len() as i64 > USERS_PAGE;
    rows.truncate(usize::try_from(USERS_PAGE).unwrap_or(0));
    let next = rows.last().filter(|_| more).map(|row| format!("/admin/users?after={}", percent_encode(&row.username)));
    let page = UsersPage {
        layout: user.layout("Users", "users"),
        users: rows
            .iter()
            .map(|row| UserView::new(&row.username, &row.role, row.active, row.password_generated, row.created_at))
            .collect(),
        next,
        first: (!after.is_empty()).then(|| "/admin/users".to_owned()),
        create,
        min_password: principals::MIN_PASSWORD_CHARS,
    };
    Ok((status, render(&page)).into_response())
}

/// The create form's fields.
#[derive(Debug, Default, Deserialize)]
struct CreateInput {
    username: Option<String>,
    password: Option<String>,
    role: Option<String>,
}

async fn create_user(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(input): Form<CreateInput>,
) -> Result<Response, ConsoleError> {
    let username = input.username.as_deref().unwrap_or_default().trim().to_owned();
    let role = input.role.as_deref().unwrap_or_default().trim().to_owned();
    let password = input.password.unwrap_or_default();
    let refusal = match principals::create(&state.store, &user.username, &username, &password, &role, false).await {
        Ok(()) => return Ok(Redirect::to(&format!("{}&done=created", user_href(&username))).into_response()),
        Err(error) => principal_refusal(error)?,
    };
    let (status, errors) = refusal;
    let create = CreateForm { username, roles: role_options(&role), errors };
    users_page(&state, &user, "", create, status).await
}

/// A refused change to a user as a field message and its status; failures as the error page.
fn principal_refusal(error: PrincipalError) -> Result<(StatusCode, FieldErrors), ConsoleError> {
    let message = capitalized(&error.to_string());
    Ok(match error {
        PrincipalError::BadUsername => (StatusCode::BAD_REQUEST, single("username", &message)),
        PrincipalError::WeakPassword => (StatusCode::BAD_REQUEST, single("password", &message)),
        PrincipalError::BadRole => (StatusCode::BAD_REQUEST, single("role", &message)),
        PrincipalError::Exists => (StatusCode::CONFLICT, single("username", "A user with that name exists.")),
        PrincipalError::LastAdmin => (
            StatusCode::CONFLICT,
            single("form", "Refused: this would leave no active admin. Make another user an admin first."),
        ),
        PrincipalError::NotFound => return Err(ConsoleError::NotFound("No such user.".into())),
        PrincipalError::Hashing(error) => {
            tracing::error!(%error, "console: a password could not be hashed");
            return Err(ConsoleError::Unavailable);
        }
        PrincipalError::Store(error) => return Err(ConsoleError::Store(error)),
    })
}

/// `/admin/users/user?username=&done=`: whose page, and the change just made.
#[derive(Debug, Default, Deserialize)]
struct UserQuery {
    username: Option<String>,
    done: Option<String>,
}

/// Which of the user page's forms a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserAction {
    Active,
    Role,
    Password,
}

/// One user's page: details and the admin's actions.
#[derive(askama::Template)]
#[template(path = "console/people_user.html")]
struct UserPage {
    layout: Layout,
    user: UserView,
    is_self: bool,
    notice: Option<&'static str>,
    roles: Vec<RoleOption>,
    active_error: Option<String>,
    role_error: Option<String>,
    password_error: Option<String>,
    audit_href: String,
    min_password: usize,
}

async fn user_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<UserQuery>,
) -> Result<Response, ConsoleError> {
    let username = query.username.unwrap_or_default();
    let notice = match query.done.as_deref() {
        Some("created") => Some("User created."),
        Some("enabled") => Some("User enabled: they can log in again."),
        Some("disabled") => Some("User disabled: their sessions and tokens stop working at once."),
        Some("role") => Some("Role changed; it applies to their next request."),
        Some("password") => Some("Password set; their refresh tokens no longer work."),
        _ => None,
    };
    single_user_page(&state, &user, &username, notice, None, StatusCode::OK).await
}

async fn single_user_page(
    state: &AppState,
    user: &ConsoleUser,
    username: &str,
    notice: Option<&'static str>,
    refusal: Option<(UserAction, String, Option<String>)>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let row = state.store.principal(username).await?.ok_or_else(|| ConsoleError::NotFound("No such user.".into()))?;
    let (mut active_error, mut role_error, mut password_error) = (None, None, None);
    let mut selected_role = row.role.clone();
    if let Some((action, message, role)) = refusal {
        match action {
            UserAction::Active => active_error = Some(message),
            UserAction::Role => {
                role_error = Some(message);
                selected_role = role.unwrap_or(selected_role);
            }
            UserAction::Password => password_error = Some(message),
        }
    }
    let page = UserPage {
        layout: user.layout(format!("User {}", row.username), "users"),
        is_self: row.id == user.id,
        user: UserView::new(&row.username, &row.role, row.active, row.password_generated, row.created_at),
        notice,
        roles: role_options(&selected_role),
        active_error,
        role_error,
        password_error,
        audit_href: format!("/admin/audit?target={}", percent_encode(&format!("user:{}", row.username))),
        min_password: principals::MIN_PASSWORD_CHARS,
    };
    Ok((status, render(&page)).into_response())
}

/// The user page's forms' fields.
#[derive(Debug, Default, Deserialize)]
struct UserInput {
    /// Whose.
    username: Option<String>,
    active: Option<String>,
    role: Option<String>,
    password: Option<String>,
    password_again: Option<String>,
}

async fn set_active(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(input): Form<UserInput>,
) -> Result<Response, ConsoleError> {
    let username = input.username.clone().unwrap_or_default();
    let active = match input.active.as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => {
            let refusal = (UserAction::Active, "Choose enable or disable.".to_owned(), None);
            return single_user_page(&state, &user, &username, None, Some(refusal), StatusCode::BAD_REQUEST).await;
        }
    };
    let change = UserChange { active: Some(active), ..UserChange::default() };
    let done = if active { "enabled" } else { "disabled" };
    change_user(&state, &user, &username, change, UserAction::Active, done, None).await
}

async fn set_role(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(input): Form<UserInput>,
) -> Result<Response, ConsoleError> {
    let username = input.username.clone().unwrap_or_default();
    let role = input.role.unwrap_or_default().trim().to_owned();
    let change = UserChange { role: Some(role.clone()), ..UserChange::default() };
    change_user(&state, &user, &username, change, UserAction::Role, "role", Some(role)).await
}

async fn set_password(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(input): Form<UserInput>,
) -> Result<Response, ConsoleError> {
    let username = input.username.clone().unwrap_or_default();
    let password = input.password.unwrap_or_default();
    if input.password_again.as_deref() != Some(password.as_str()) {
        let refusal = (UserAction::Password, "The two passwords differ; type the same one twice.".to_owned(), None);
        return single_user_page(&state, &user, &username, None, Some(refusal), StatusCode::BAD_REQUEST).await;
    }
    let change = UserChange { password: Some(password), ..UserChange::default() };
    change_user(&state, &user, &username, change, UserAction::Password, "password", None).await
}

/// Applies a change through [`principals::update`] (which audits); redirects to the user's page with a
/// notice, or shows the refusal next to the form.
async fn change_user(
    state: &AppState,
    user: &ConsoleUser,
    username: &str,
    change: UserChange,
    action: UserAction,
    done: &str,
    role: Option<String>,
) -> Result<Response, ConsoleError> {
    match principals::update(&state.store, &user.username, username, &change).await {
        Ok(()) => Ok(Redirect::to(&format!("{}&done={done}", user_href(username))).into_response()),
        Err(error) => {
            let (status, errors) = principal_refusal(error)?;
            let message = errors.into_values().next().unwrap_or_default();
            single_user_page(state, user, username, None, Some((action, message, role)), status).await
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------------------------------------

/// `/admin/audit?actor=&action=&target=&before=`.
#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    /// Entries older than this id.
    before: Option<String>,
}

/// The actions the audit log records, offered as suggestions in the filter.
const ACTIONS: [&str; 21] = [
    "balance.deposit",
    "balance.withdraw",
    "balance.reserve",
    "balance.deduct",
    "balance.release",
    "balance.transfer",
    "payout.create",
    "payout.edit",
    "payout.delete",
    "payout.retry",
    "payout.status",
    "payout.attempt",
    "job.retry",
    "job.discard",
    "organization.create",
    "user.create",
    "user.role",
    "user.enable",
    "user.disable",
    "user.password",
    "token.reuse",
];

/// One audit entry.
struct AuditView {
    id: i64,
    at: String,
    actor: String,
    actor_filter: String,
    action: String,
    action_filter: String,
    target: String,
    target_filter: String,
    /// The console page of what was changed, if it has one.
    target_page: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

/// The audit log page.
#[derive(askama::Template)]
#[template(path = "console/people_audit.html")]
struct AuditPage {
    layout: Layout,
    actor: String,
    action: String,
    target: String,
    error: Option<String>,
    rows: Vec<AuditView>,
    next: Option<String>,
    newest: Option<String>,
    filtered: bool,
    actions: &'static [&'static str],
}

async fn audit(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    let text = |value: &Option<String>| value.as_deref().unwrap_or_default().trim().to_owned();
    let (actor, action, target) = (text(&query.actor), text(&query.action), text(&query.target));
    let filtered = !(actor.is_empty() && action.is_empty() && target.is_empty());
    let mut page = AuditPage {
        layout: user.layout("Audit log", "audit"),
        actor,
        action,
        target,
        error: None,
        rows: Vec::new(),
        next: None,
        newest: None,
        filtered,
        actions: &ACTIONS,
    };
    let before = match query.before.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        None => None,
        Some(text) => match positive_id(text) {
            Ok(before) => Some(before),
            Err(message) => {
                page.error = Some(format!("The page link is broken: before {message}."));
                page.newest = Some(audit_href(&page.actor, &page.action, &page.target, None));
                return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
            }
        },
    };
    let nonempty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    let filter = AuditFilter {
        actor: nonempty(&page.actor),
        action: nonempty(&page.action),
        target: nonempty(&page.target),
        before_id: before,
        limit: AUDIT_PAGE + 1,
    };
    let mut rows = state.store.audit_rows(&filter).await?;
    let more = rows.len() as i64 > AUDIT_PAGE;
    rows.truncate(usize::try_from(AUDIT_PAGE).unwrap_or(0));
    page.next =
        rows.last().filter(|_| more).map(|row| audit_href(&page.actor, &page.action, &page.target, Some(row.id)));
    page.newest = before.map(|_| audit_href(&page.actor, &page.action, &page.target, None));
    page.rows = rows.into_iter().map(audit_view).collect();
    Ok(render(&page))
}

fn audit_href(actor: &str, action: &str, target: &str, before: Option<i64>) -> String {
    let mut parts = Vec::new();
    for (name, value) in [("actor", actor), ("action", action), ("target", target)] {
        if !value.is_empty() {
            parts.push(format!("{name}={}", percent_encode(value)));
        }
    }
    if let Some(before) = before {
        parts.push(format!("before={before}"));
    }
    if parts.is_empty() { "/admin/audit".to_owned() } else { format!("/admin/audit?{}", parts.join("&")) }
}

fn audit_view(row: AuditRow) -> AuditView {
    let entry = row.entry;
    AuditView {
        id: row.id,
        at: format::time(row.at),
        actor_filter: audit_href(&entry.actor, "", "", None),
        action_filter: audit_href("", &entry.action, "", None),
        target_filter: audit_href("", "", &entry.target, None),
        target_page: target_page(&entry.target),
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        before: entry.before.as_deref().map(pretty_json),
        after: entry.after.as_deref().map(pretty_json),
    }
}

/// The console page of an audit target: a user's page, a balance user's page.
fn target_page(target: &str) -> Option<String> {
    let (kind, rest) = target.split_once(':')?;
    match kind {
        "user" => Some(user_href(rest)),
        "balance-user" => positive_id(rest).ok().map(|id| format!("/admin/balances?user_id={id}")),
        "order" => {
            let user = rest.split(':').next()?;
            positive_id(user).ok().map(|id| format!("/admin/balances?user_id={id}"))
        }
        _ => None,
    }
}

/// Stored JSON, indented for reading (as text: the template escapes it); anything else as it is.
fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(amount: &str, service: &str, order: &str, to: &str) -> OpForm {
        OpForm {
            amount: amount.into(),
            service_id: service.into(),
            order_id: order.into(),
            to_user_id: to.into(),
            errors: FieldErrors::new(),
        }
    }

    fn user(id: i64) -> UserId {
        UserId::new(id).unwrap_or_else(|_| panic!("id"))
    }

    #[test]
    fn amounts_are_read_exactly_and_every_bad_field_is_named() {
        let deposit = parse_operation(Op::Deposit, user(5), &form("100.5", "", "", ""));
        assert!(matches!(deposit, Ok(BalanceOperation::Deposit { amount, .. }) if amount.minor() == 10_050));
        let errors = parse_operation(Op::Reserve, user(5), &form("1.234", "x", "", "")).err().unwrap_or_default();
        assert_eq!(errors.keys().map(String::as_str).collect::<Vec<_>>(), ["amount", "order_id", "service_id"]);
        let errors = parse_operation(Op::Transfer, user(5), &form("0", "", "", "5")).err().unwrap_or_default();
        assert_eq!(errors.keys().map(String::as_str).collect::<Vec<_>>(), ["amount", "to_user_id"]);
        let release = parse_operation(Op::Release, user(5), &form("", "1", "2", ""));
        assert!(matches!(release, Ok(BalanceOperation::Release { amount: None, .. })));
    }

    #[test]
    fn ids_are_positive_decimal_integers() {
        assert_eq!(positive_id("42"), Ok(42));
        assert!(positive_id("0").is_err());
        assert!(positive_id("-1").is_err());
        assert!(positive_id("1e3").is_err());
        assert!(positive_id("99999999999999999999").is_err());
    }

    #[test]
    fn audit_links_keep_the_filters() {
        assert_eq!(audit_href("", "", "", None), "/admin/audit");
        assert_eq!(audit_href("ann", "", "user:bob", Some(7)), "/admin/audit?actor=ann&target=user%3Abob&before=7");
        assert_eq!(target_page("order:5:1:42").as_deref(), Some("/admin/balances?user_id=5"));
        assert_eq!(target_page("user:a b").as_deref(), Some("/admin/users/user?username=a%20b"));
        assert_eq!(target_page("payout:x"), None);
    }

    #[test]
    fn a_replayed_confirmation_answers_as_the_first_time() {
        let applied = stored_result(&Ok(Vec::new()));
        assert!(matches!(replayed(&applied), Replay::Applied(None)));
        let refused = stored_result(&Err(BalanceError::InsufficientFunds { available: 500 }));
        match replayed(&refused) {
            Replay::Refused(status, errors) => {
                assert_eq!(status, StatusCode::CONFLICT);
                assert_eq!(errors.get("amount").map(String::as_str), Some("Insufficient funds: 5.00 RUB available."));
            }
            Replay::Applied(_) => panic!("a refusal replays as a refusal"),
        }
    }
}
