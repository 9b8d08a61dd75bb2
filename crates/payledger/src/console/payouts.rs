//! The payouts pages.
//!
//! - `/admin/payouts`: the payouts, filtered (status, currency, creation dates), ordered and paginated by the
//!   query string, so every view is a link that can be shared.
//! - `/admin/payouts/{id}`: one payout with its status history and its jobs, and the actions its status allows.
//! - `/admin/payouts/{id}/cancel`, `/retry`, `/return`: each action's confirmation (GET) and the action (POST),
//!   through the same payout service as the API (the engine re-checks the state machine and writes the audit
//!   row in the change's transaction).
//!
//! Recipients are shown masked (`•••• 1234`): pages read only the stored last four digits, never the encrypted
//! full number. The jobs pages ([`super::jobs`]) confirm their actions on the same page as these.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get};
use payledger_core::Currency;
use payledger_core::payout::{Actor, MASK_PREFIX, PayoutStatus, transition};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::jobs::JobLine;
use super::lists::{Choice, choices};
use super::payout_lists::{DEFAULT_PAGE_SIZE, Pager, decode_query, given, paging};
use super::{ConsoleError, ConsoleUser, Layout, Path, format, percent_encode, render};
use crate::AppState;
use crate::auth::tokens::Role;
use crate::engine::payouts::{PayoutChange, PayoutError, PayoutOutcome};
use crate::store::batch::PayoutSource;
use crate::store::console::jobs::ConsoleJob;
use crate::store::payouts::{PayoutEventRow, PayoutFilter, PayoutOrdering, PayoutView};

/// The payouts pages' routes (each behind the console guard, which `console::router` adds).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/payouts", get(list))
        .route("/admin/payouts/{id}", get(detail))
        .route("/admin/payouts/{id}/cancel", payout_action(PayoutAction::Cancel))
        .route("/admin/payouts/{id}/retry", payout_action(PayoutAction::Retry))
        .route("/admin/payouts/{id}/return", payout_action(PayoutAction::Return))
}

/// The payout of a path; an id that is not a UUID names no payout (404).
fn payout_id(text: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(text).map_err(|_| ConsoleError::NotFound("No such payout.".into()))
}

/// The recipient as pages may show it: only its last four digits.
fn masked_recipient(view: &PayoutView) -> String {
    format!("{MASK_PREFIX}{}", view.recipient_last4)
}

/// What kind of account the recipient is.
fn recipient_kind(view: &PayoutView) -> &'static str {
    if view.recipient_type == "bank_account" { "Bank account" } else { "Card" }
}

/// Whose ledger account the payout's money comes from, if any.
fn source_text(view: &PayoutView) -> String {
    match &view.state.source {
        None => "none (no ledger account)".to_owned(),
        Some((PayoutSource::Organization(inn), _)) => format!("organization {inn}"),
        Some((PayoutSource::User(user), _)) => format!("user {user}"),
    }
}

/// `01a22e23…5765`: payout ids are UUIDv7, whose first digits are their creation time (shared by payouts made
/// within a minute), so the random last digits are kept too.
pub(super) fn short_id(id: &str) -> String {
    match (id.get(..8), id.len().checked_sub(4).and_then(|start| id.get(start..))) {
        (Some(head), Some(tail)) if id.len() > 12 => format!("{head}…{tail}"),
        _ => id.to_owned(),
    }
}

/// The actions' confirmation pages (GET) are shown only to those who may act: the guard lets viewers read
/// every page.
fn require_operator(user: &ConsoleUser, what: &str) -> Result<(), ConsoleError> {
    if user.can(Role::Operator) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(format!("{what} needs the operator role; you are {}.", user.role)))
    }
}

/// A confirmation step (GET), or the refusal of an action (409), for payouts and their jobs alike.
#[derive(askama::Template)]
#[template(path = "console/payouts_confirm.html")]
pub(super) struct ConfirmPage {
    /// The page frame.
    pub(super) layout: Layout,
    /// The question (when the action is possible).
    pub(super) question: String,
    /// What is acted on.
    pub(super) facts: Vec<(&'static str, String)>,
    /// What the action will do.
    pub(super) consequence: String,
    /// Where the form posts; `None` when the action is not possible now.
    pub(super) action: Option<String>,
    /// What the confirm button says.
    pub(super) button: &'static str,
    /// Whether the button is styled as destructive.
    pub(super) danger: bool,
    /// Where "back" goes.
    pub(super) back: String,
    /// What "back" says.
    pub(super) back_label: String,
    /// Why the action was refused or is not possible.
    pub(super) error: Option<String>,
}

impl ConfirmPage {
    /// The page, with 409 when it shows a refusal.
    pub(super) fn respond(self) -> Response {
        let status = if self.error.is_some() { StatusCode::CONFLICT } else { StatusCode::OK };
        (status, render(&self)).into_response()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The payouts list

/// The status filter's choices.
const STATUS_CHOICES: &[(&str, &str)] = &[
    ("", "Any status"),
    ("pending", "Pending"),
    ("processing", "Processing"),
    ("completed", "Completed"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
    ("returned", "Returned"),
];

/// The orders offered, `-` first for descending.
const ORDERING_CHOICES: &[(&str, &str)] = &[
    ("-created_at", "Newest first"),
    ("created_at", "Oldest first"),
    ("-amount", "Largest amount first"),
    ("amount", "Smallest amount first"),
];

/// The list's query string, as given.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    status: Option<String>,
    currency: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    ordering: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

/// What is wrong with each filter.
#[derive(Debug, Default)]
struct ListErrors {
    status: Option<String>,
    currency: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    ordering: Option<String>,
    page: Option<String>,
}

impl ListErrors {
    /// Whether any filter is refused.
    fn any(&self) -> bool {
        self.status.is_some()
            || self.currency.is_some()
            || self.created_after.is_some()
            || self.created_before.is_some()
            || self.ordering.is_some()
            || self.page.is_some()
    }
}

/// One row of the payouts list.
#[derive(Debug)]
struct PayoutLine {
    id: String,
    short_id: String,
    created: String,
    amount: String,
    status: &'static str,
    recipient: String,
    holder: String,
    source: String,
    attempts: i32,
}

impl PayoutLine {
    /// The payout as the list shows it.
    fn new(view: &PayoutView) -> PayoutLine {
        let id = view.state.id.to_string();
        PayoutLine {
            short_id: short_id(&id),
            id,
            created: format::time(view.state.created_at),
            amount: format::money(view.state.amount, view.state.currency),
            status: view.state.status.as_str(),
            recipient: masked_recipient(view),
            holder: view.recipient_holder.clone(),
            source: source_text(view),
            attempts: view.state.attempts,
        }
    }
}

/// The payouts list.
#[derive(askama::Template)]
#[template(path = "console/payouts_list.html")]
struct ListPage {
    layout: Layout,
    statuses: Vec<Choice>,
    orderings: Vec<Choice>,
    currency: String,
    created_after: String,
    created_before: String,
    page_size: Option<String>,
    errors: ListErrors,
    rows: Vec<PayoutLine>,
    pager: Pager,
}

/// A date filter: `YYYY-MM-DD`, midnight UTC.
fn parse_date(text: &str) -> Result<OffsetDateTime, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format)
        .map(|date| date.midnight().assume_utc())
        .map_err(|_| "Give a date as YYYY-MM-DD.".to_owned())
}

/// The list's query read for the store: what to list, in which order, which page; and what is wrong with it.
struct ListRequest {
    filter: PayoutFilter,
    ordering: PayoutOrdering,
    page: i64,
    page_size: i64,
    offset: i64,
    errors: ListErrors,
}

impl ListRequest {
    /// Reads every filter, noting each bad one instead of stopping at the first.
    fn read(query: &ListQuery) -> ListRequest {
        let mut errors = ListErrors::default();
        let status = list_status(given(&query.status).unwrap_or(""), &mut errors.status);
        let currency = list_currency(given(&query.currency), &mut errors.currency);
        let created_after = list_date(given(&query.created_after), &mut errors.created_after);
        let created_before = list_date(given(&query.created_before), &mut errors.created_before);
        let ordering = list_ordering(given(&query.ordering).unwrap_or("-created_at"), &mut errors.ordering);
        let (page, page_size, offset) = match paging(&query.page, &query.page_size) {
            Ok(paging) => paging,
            Err(message) => {
                errors.page = Some(message);
                (1, DEFAULT_PAGE_SIZE, 0)
            }
        };
        ListRequest {
            filter: PayoutFilter { status, currency, created_after, created_before },
            ordering,
            page,
            page_size,
            offset,
            errors,
        }
    }
}

/// The status filter (`""`: any), or `error`.
fn list_status(text: &str, error: &mut Option<String>) -> Option<PayoutStatus> {
    if text.is_empty() {
        return None;
    }
    let parsed = PayoutStatus::parse(text);
    if parsed.is_none() {
        *error = Some("Choose one of the listed statuses.".into());
    }
    parsed
}

/// The currency filter as its ISO code (any case typed), or `error`.
fn list_currency(code: Option<&str>, error: &mut Option<String>) -> Option<String> {
    match Currency::from_code_ignore_case(code?) {
        Some(currency) => Some(currency.code().to_owned()),
        None => {
            *error = Some("Give an ISO 4217 code, e.g. RUB.".into());
            None
        }
    }
}

/// A creation date filter, or `error`.
fn list_date(text: Option<&str>, error: &mut Option<String>) -> Option<OffsetDateTime> {
    match parse_date(text?) {
        Ok(moment) => Some(moment),
        Err(message) => {
            *error = Some(message);
            None
        }
    }
}

/// The order (newest first unless given), or `error` (and newest first).
fn list_ordering(text: &str, error: &mut Option<String>) -> PayoutOrdering {
    match text {
        "created_at" => PayoutOrdering::CreatedAsc,
        "-created_at" => PayoutOrdering::CreatedDesc,
        "amount" => PayoutOrdering::AmountAsc,
        "-amount" => PayoutOrdering::AmountDesc,
        _ => {
            *error = Some("Choose one of the listed orders.".into());
            PayoutOrdering::CreatedDesc
        }
    }
}

/// Page `page` of the list with the query's other parameters, as given.
fn list_link(query: &ListQuery, page: i64) -> String {
    let mut url = format!("/admin/payouts?page={page}");
    for (name, value) in [
        ("status", given(&query.status)),
        ("currency", given(&query.currency)),
        ("created_after", given(&query.created_after)),
        ("created_before", given(&query.created_before)),
        ("ordering", given(&query.ordering)),
        ("page_size", given(&query.page_size)),
    ] {
        if let Some(value) = value {
            url.push_str(&format!("&{name}={}", percent_encode(value)));
        }
    }
    url
}

/// `GET /admin/payouts?status=&currency=&created_after=&created_before=&ordering=&page=&page_size=`.
async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let query: ListQuery = decode_query(raw)?;
    let request = ListRequest::read(&query);
    // The form shows the filters as typed, so a bad one can be corrected where it is.
    let mut page_view = ListPage {
        layout: user.layout("Payouts", "payouts"),
        statuses: choices(STATUS_CHOICES, given(&query.status).unwrap_or("")),
        orderings: choices(ORDERING_CHOICES, given(&query.ordering).unwrap_or("-created_at")),
        currency: given(&query.currency).unwrap_or("").to_owned(),
        created_after: given(&query.created_after).unwrap_or("").to_owned(),
        created_before: given(&query.created_before).unwrap_or("").to_owned(),
        page_size: given(&query.page_size).map(str::to_owned),
        errors: request.errors,
        rows: Vec::new(),
        pager: Pager::default(),
    };
    if page_view.errors.any() {
        return Ok((StatusCode::BAD_REQUEST, render(&page_view)).into_response());
    }
    let (count, views) =
        state.store.list_payouts(&request.filter, request.ordering, request.page_size, request.offset).await?;
    page_view.pager = Pager::new(request.page, request.page_size, count, |page| list_link(&query, page));
    page_view.rows = views.iter().map(PayoutLine::new).collect();
    Ok(render(&page_view))
}

// ---------------------------------------------------------------------------------------------------------------
// One payout

/// One entry of the status history.
#[derive(Debug)]
struct HistoryLine {
    from: String,
    to: String,
    actor: String,
    reason: String,
    at: String,
}

impl From<&PayoutEventRow> for HistoryLine {
    fn from(event: &PayoutEventRow) -> HistoryLine {
        HistoryLine {
            from: event.from.clone().unwrap_or_else(|| "—".to_owned()),
            to: event.to.clone(),
            actor: event.actor.clone(),
            reason: event.reason.clone().unwrap_or_default(),
            at: format::time(event.at),
        }
    }
}

/// The actions of a payout page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PayoutAction {
    /// Cancel a pending payout.
    Cancel,
    /// Send a failed payout again, closing its dead job.
    Retry,
    /// Mark a completed payout returned by the recipient's bank.
    Return,
}

impl PayoutAction {
    /// The action's path segment.
    fn slug(self) -> &'static str {
        match self {
            PayoutAction::Cancel => "cancel",
            PayoutAction::Retry => "retry",
            PayoutAction::Return => "return",
        }
    }

    /// What the action is called where a role is missing.
    fn name(self) -> &'static str {
        match self {
            PayoutAction::Cancel => "Cancelling a payout",
            PayoutAction::Retry => "Retrying a payout",
            PayoutAction::Return => "Marking a payout returned",
        }
    }

    /// Whether the state machine allows it now: `Ok` with the dead job a retry closes, or why not.
    fn check(self, view: &PayoutView, jobs: &[ConsoleJob]) -> Result<Option<i64>, String> {
        let status = view.state.status;
        match self {
            PayoutAction::Cancel => match transition(status, PayoutStatus::Cancelled, Actor::Operator) {
                Ok(()) => Ok(None),
                Err(_) => Err(format!("This payout is {status}: only pending payouts can be cancelled.")),
            },
            PayoutAction::Return => match transition(status, PayoutStatus::Returned, Actor::Operator) {
                Ok(()) => Ok(None),
                Err(_) => Err(format!("This payout is {status}: only completed payouts can be marked returned.")),
            },
            PayoutAction::Retry => {
                if transition(status, PayoutStatus::Pending, Actor::Operator).is_err() {
                    return Err(format!("This payout is {status}: only failed payouts can be retried."));
                }
                if let Some(job) = jobs.iter().rev().find(|job| job.is_dead()) {
                    return Ok(Some(job.id));
                }
                Err(why_not_retryable(view, jobs))
            }
        }
    }

    /// What the confirmation page asks.
    fn question(self, view: &PayoutView) -> String {
        let what = format!(
            "payout {} of {} to {}",
            view.state.id,
            format::money(view.state.amount, view.state.currency),
            masked_recipient(view)
        );
        match self {
            PayoutAction::Cancel => format!("Cancel {what}?"),
            PayoutAction::Retry => format!("Retry {what}?"),
            PayoutAction::Return => format!("Mark {what} returned?"),
        }
    }

    /// What the action will do, in words; a retry names the dead job it closes.
    pub(super) fn consequence(self, dead_job: Option<i64>) -> String {
        match self {
            PayoutAction::Cancel => {
                "It will never be sent to the gateway. Money held on its source account, if it has one, is released."
                    .to_owned()
            }
            PayoutAction::Retry => format!(
                "It goes back to pending with a fresh job, and a worker sends it to the gateway again under the same \
                 idempotency key. Its dead job{} is closed. If it has a source account, its amount is held there \
                 again (refused if the money is no longer available).",
                dead_job.map(|id| format!(" {id}")).unwrap_or_default()
            ),
            PayoutAction::Return => "Use this when the recipient's bank sent the money back. The payout becomes \
                                     returned and, if it has a source account, its amount goes back to that account."
                .to_owned(),
        }
    }

    /// What the confirm button says.
    fn button(self) -> &'static str {
        match self {
            PayoutAction::Cancel => "Cancel payout",
            PayoutAction::Retry => "Retry payout",
            PayoutAction::Return => "Mark returned",
        }
    }

    /// What the payout page says after an action, from its `done` parameter.
    fn notice(done: &str) -> Option<&'static str> {
        match done {
            "cancelled" => Some("Payout cancelled. Money held on its source account, if any, was released."),
            "retried" => Some("Payout retried: it is pending again with a fresh job."),
            "returned" => Some("Payout marked returned. Its amount went back to its source account, if any."),
            _ => None,
        }
    }

    /// The `done` parameter an action redirects with.
    fn done(self) -> &'static str {
        match self {
            PayoutAction::Cancel => "cancelled",
            PayoutAction::Retry => "retried",
            PayoutAction::Return => "returned",
        }
    }
}

/// Why a failed payout has no dead job to retry.
fn why_not_retryable(view: &PayoutView, jobs: &[ConsoleJob]) -> String {
    if let Some(job) = jobs.iter().rev().find(|job| job.discarded_at.is_some()) {
        let by = job.discarded_by.as_deref().unwrap_or("an admin");
        let at = job.discarded_at.map(format::time).unwrap_or_default();
        return format!(
            "It cannot be retried: its dead job {} was discarded by {by} at {at}. To pay this recipient, create a \
             new payout.",
            job.id
        );
    }
    let reason = view.state.failure_reason.as_deref().unwrap_or("no reason recorded");
    format!(
        "It cannot be retried: it failed with a final answer ({reason}), so its job ended normally and there is no \
         dead job to retry. Only payouts whose processing gave up (the gateway stayed unavailable, or refused the \
         request) leave a dead job. To pay this recipient, create a new payout."
    )
}

/// One payout's page.
#[derive(askama::Template)]
#[template(path = "console/payouts_detail.html")]
struct DetailPage {
    layout: Layout,
    notice: Option<&'static str>,
    id: String,
    amount: String,
    currency: &'static str,
    status: &'static str,
    recipient_kind: &'static str,
    recipient: String,
    bik: Option<String>,
    holder: String,
    source: String,
    description: String,
    attempts: i32,
    gateway_reference: Option<String>,
    failure_reason: Option<String>,
    created: String,
    updated: String,
    history: Vec<HistoryLine>,
    jobs: Vec<JobLine>,
    can_cancel: bool,
    can_return: bool,
    retry_job: Option<i64>,
    /// Why a failed payout cannot be retried.
    retry_blocked: Option<String>,
}

/// `/admin/payouts/{id}?done=`: the action just done.
#[derive(Debug, Default, Deserialize)]
struct DetailQuery {
    done: Option<String>,
}

/// The payout and its jobs, or 404.
async fn load(state: &AppState, id: Uuid) -> Result<(PayoutView, Vec<ConsoleJob>), ConsoleError> {
    let view = state.store.payout(id).await?.ok_or_else(|| ConsoleError::NotFound("No such payout.".into()))?;
    let jobs = state.store.console_payout_jobs(id).await?;
    Ok((view, jobs))
}

/// `GET /admin/payouts/{id}`.
async fn detail(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let query: DetailQuery = decode_query(raw)?;
    let id = payout_id(&id)?;
    let (view, jobs) = load(&state, id).await?;
    let history = state.store.payout_events(id).await?;
    let payout = &view.state;
    let retry = PayoutAction::Retry.check(&view, &jobs);
    let page = DetailPage {
        layout: user.layout(format!("Payout {}", short_id(&payout.id.to_string())), "payouts"),
        notice: given(&query.done).and_then(PayoutAction::notice),
        id: payout.id.to_string(),
        amount: format::money(payout.amount, payout.currency),
        currency: payout.currency,
        status: payout.status.as_str(),
        recipient_kind: recipient_kind(&view),
        recipient: masked_recipient(&view),
        bik: view.recipient_bik.clone(),
        holder: view.recipient_holder.clone(),
        source: source_text(&view),
        description: payout.description.clone(),
        attempts: payout.attempts,
        gateway_reference: payout.gateway_reference.clone(),
        failure_reason: payout.failure_reason.clone(),
        created: format::time(payout.created_at),
        updated: format::time(payout.updated_at),
        history: history.iter().map(HistoryLine::from).collect(),
        jobs: jobs.iter().map(JobLine::from).collect(),
        can_cancel: PayoutAction::Cancel.check(&view, &jobs).is_ok(),
        can_return: PayoutAction::Return.check(&view, &jobs).is_ok(),
        retry_job: retry.as_ref().ok().copied().flatten(),
        retry_blocked: match (payout.status, retry) {
            (PayoutStatus::Failed, Err(why)) => Some(why),
            _ => None,
        },
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------------------------------------------------------
// Its actions: cancel, retry, mark returned

/// What a confirmation page says about the payout acted on.
pub(super) fn payout_facts(view: &PayoutView) -> Vec<(&'static str, String)> {
    vec![
        ("Payout", view.state.id.to_string()),
        ("Amount", format::money(view.state.amount, view.state.currency)),
        ("Payout status", view.state.status.as_str().to_owned()),
        ("Recipient", format!("{} {} ({})", recipient_kind(view), masked_recipient(view), view.recipient_holder)),
        ("Source", source_text(view)),
    ]
}

/// The confirmation page of `action`, or its refusal: `error`, or why the payout's state does not allow it.
fn payout_confirm(
    user: &ConsoleUser,
    action: PayoutAction,
    view: &PayoutView,
    jobs: &[ConsoleJob],
    error: Option<String>,
) -> ConfirmPage {
    let id = view.state.id;
    let checked = action.check(view, jobs);
    let error = error.or_else(|| checked.as_ref().err().cloned());
    let dead_job = checked.ok().flatten();
    let mut facts = payout_facts(view);
    if let Some(job) = dead_job {
        facts.push(("Dead job", job.to_string()));
    }
    ConfirmPage {
        layout: user.layout(action.button(), "payouts"),
        question: action.question(view),
        facts,
        consequence: action.consequence(dead_job),
        action: error.is_none().then(|| format!("/admin/payouts/{id}/{}", action.slug())),
        button: action.button(),
        danger: action == PayoutAction::Cancel,
        back: format!("/admin/payouts/{id}"),
        back_label: "Back to the payout".to_owned(),
        error,
    }
}

/// `GET /admin/payouts/{id}/{action}` (operators).
async fn confirm_payout_action(
    state: &AppState,
    user: &ConsoleUser,
    id: &str,
    action: PayoutAction,
) -> Result<Response, ConsoleError> {
    require_operator(user, action.name())?;
    let id = payout_id(id)?;
    let (view, jobs) = load(state, id).await?;
    Ok(payout_confirm(user, action, &view, &jobs, None).respond())
}

/// Why the engine refused a payout change, for people.
pub(super) fn refusal_message(error: &PayoutError, currency: &str) -> String {
    let text = match error {
        PayoutError::InsufficientFunds { available } => {
            format!("its source account no longer has enough money ({} available)", format::money(*available, currency))
        }
        PayoutError::LeaseLost(job) => {
            format!("job {job} changed meanwhile (it was retried or discarded by someone else); reload the page")
        }
        other => other.to_string(),
    };
    format!("Nothing was changed: {text}.")
}

/// `POST /admin/payouts/{id}/{action}` (operators): the action through the payout service, then the payout's
/// page; a refusal is shown on the confirmation page.
async fn do_payout_action(
    state: &AppState,
    user: &ConsoleUser,
    id: &str,
    action: PayoutAction,
) -> Result<Response, ConsoleError> {
    require_operator(user, action.name())?;
    let id = payout_id(id)?;
    let (view, jobs) = load(state, id).await?;
    let dead_job = match action.check(&view, &jobs) {
        Ok(job) => job,
        Err(why) => return Ok(payout_confirm(user, action, &view, &jobs, Some(why)).respond()),
    };
    let by = Some(user.username.clone());
    let outcome = match (action, dead_job) {
        (PayoutAction::Cancel, _) => {
            // Not PayoutChange::Delete: a second cancel must be refused, not archive the cancelled payout.
            let change = PayoutChange::Edit { description: None, status: Some(PayoutStatus::Cancelled) };
            state.payouts.change(id, change, Actor::Operator, None, by).await?
        }
        (PayoutAction::Return, _) => {
            let change = PayoutChange::Edit { description: None, status: Some(PayoutStatus::Returned) };
            state.payouts.change(id, change, Actor::Operator, None, by).await?
        }
        (PayoutAction::Retry, Some(job)) => state.payouts.retry(id, job, by).await?,
        (PayoutAction::Retry, None) => {
            let why = why_not_retryable(&view, &jobs);
            return Ok(payout_confirm(user, action, &view, &jobs, Some(why)).respond());
        }
    };
    match outcome {
        PayoutOutcome::Done(_) => {
            tracing::info!(user = %user.username, payout = %id, action = action.slug(), "console payout action");
            Ok(Redirect::to(&format!("/admin/payouts/{id}?done={}", action.done())).into_response())
        }
        PayoutOutcome::Refused(PayoutError::NotFound) => Err(ConsoleError::NotFound("No such payout.".into())),
        PayoutOutcome::Refused(refusal) => {
            let message = refusal_message(&refusal, view.state.currency);
            // Show the payout as it is now, with the refusal.
            let (view, jobs) = load(state, id).await?;
            Ok(payout_confirm(user, action, &view, &jobs, Some(message)).respond())
        }
        PayoutOutcome::Broken(defect) => {
            tracing::error!(%defect, payout = %id, "the ledger engine could not decide a console payout action");
            Err(ConsoleError::Unavailable)
        }
        other => {
            tracing::error!(?other, "a keyed outcome for a console payout action");
            Err(ConsoleError::Unavailable)
        }
    }
}

/// The confirmation page (GET) and the action itself (POST) of one payout action.
fn payout_action(action: PayoutAction) -> MethodRouter<AppState> {
    get(move |State(state): State<AppState>, user: ConsoleUser, Path(id): Path<String>| async move {
        confirm_payout_action(&state, &user, &id, action).await
    })
    .post(move |State(state): State<AppState>, user: ConsoleUser, Path(id): Path<String>| async move {
        do_payout_action(&state, &user, &id, action).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_midnight_utc() {
        assert_eq!(parse_date("2026-11-30"), Ok(time::macros::datetime!(2026-11-30 00:00 UTC)));
        assert!(parse_date("30.11.2026").is_err());
    }

    #[test]
    fn short_ids_keep_the_random_end() {
        assert_eq!(short_id("01a22e23-6798-76ea-92b5-891b84005765"), "01a22e23…5765");
        assert_eq!(short_id("job"), "job");
    }
}
