//! The payouts and jobs pages.
//!
//! - `/admin/payouts`: the payouts, filtered (status, currency, creation dates), ordered and paginated by the
//!   query string, so every view is a link that can be shared.
//! - `/admin/payouts/{id}`: one payout with its status history and its jobs, and the actions its status allows.
//! - `/admin/payouts/{id}/cancel`, `/retry`, `/return`: each action's confirmation (GET) and the action (POST),
//!   through the same payout service as the API (the engine re-checks the state machine and writes the audit
//!   row in the change's transaction).
//! - `/admin/jobs` (admins): the dead and retrying jobs; `/admin/jobs/{id}/retry` and `/admin/jobs/{id}/discard`.
//!
//! Recipients are shown masked (`•••• 1234`): pages read only the stored last four digits, never the encrypted
//! full number.

use super::Path;
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

use super::{ConsoleError, ConsoleUser, Layout, format, percent_encode, render};
use crate::AppState;
use crate::engine::payouts::{PayoutChange, PayoutError, PayoutOutcome, PayoutSource};
use crate::store::console::jobs::{ConsoleJob, DiscardOutcome, JobList};
use crate::store::payouts::{PayoutEventRow, PayoutFilter, PayoutOrdering, PayoutView};
use crate::tokens::Role;

/// Rows per page of the payouts and jobs lists, unless `page_size` says otherwise.
pub const DEFAULT_PAGE_SIZE: i64 = 25;
/// The largest `page_size`.
pub const MAX_PAGE_SIZE: i64 = 100;

/// This area's routes (each behind the console guard, which `console::router` adds).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/payouts", get(list))
        .route("/admin/payouts/{id}", get(detail))
        .route("/admin/payouts/{id}/cancel", payout_action(PayoutAction::Cancel))
        .route("/admin/payouts/{id}/retry", payout_action(PayoutAction::Retry))
        .route("/admin/payouts/{id}/return", payout_action(PayoutAction::Return))
        .route("/admin/jobs", get(jobs))
        .route("/admin/jobs/{id}/retry", get(confirm_job_retry).post(job_retry))
        .route("/admin/jobs/{id}/discard", get(confirm_discard).post(discard))
}

// ---------------------------------------------------------------------------------------------------------------
// Shared pieces

/// One option of a `<select>`.
#[derive(Debug, Clone)]
struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn choices(options: &[(&'static str, &'static str)], current: &str) -> Vec<Choice> {
    options.iter().map(|&(value, label)| Choice { value, label, selected: value == current }).collect()
}

/// Previous and next links of a list, and where it is.
#[derive(Debug, Clone, Default)]
struct Pager {
    page: i64,
    pages: i64,
    count: i64,
    previous: Option<String>,
    next: Option<String>,
    first: Option<String>,
}

impl Pager {
    fn new(page: i64, page_size: i64, count: i64, link: impl Fn(i64) -> String) -> Pager {
        let pages = if count == 0 { 1 } else { (count - 1) / page_size + 1 };
        Pager {
            page,
            pages,
            count,
            previous: (page > 1).then(|| link((page - 1).min(pages))),
            next: (page < pages).then(|| link(page + 1)),
            first: (page > pages).then(|| link(1)),
        }
    }
}

/// A query-string value that was given and is not blank.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

/// Decodes a query string into `T`; a malformed one is a 400.
fn decode_query<T: for<'de> Deserialize<'de> + Default>(raw: Option<String>) -> Result<T, ConsoleError> {
    match raw {
        None => Ok(T::default()),
        Some(raw) => serde_urlencoded::from_str(&raw)
            .map_err(|_| ConsoleError::BadRequest("The address has a malformed query string.".into())),
    }
}

/// `page` and `page_size` from the query, or what is wrong with them.
fn paging(page: &Option<String>, page_size: &Option<String>) -> Result<(i64, i64, i64), String> {
    let page = match given(page) {
        None => 1,
        Some(text) => text.parse::<i64>().ok().filter(|page| *page >= 1).ok_or("The page must be 1 or more.")?,
    };
    let page_size = match given(page_size) {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
            .ok_or_else(|| format!("The page size must be between 1 and {MAX_PAGE_SIZE}."))?,
    };
    let offset = (page - 1)
        .checked_mul(page_size)
        .filter(|offset| offset.checked_add(page_size).is_some())
        .ok_or("The page is too large.")?;
    Ok((page, page_size, offset))
}

fn payout_id(text: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(text).map_err(|_| ConsoleError::NotFound("No such payout.".into()))
}

fn job_id(text: &str) -> Result<i64, ConsoleError> {
    text.parse::<i64>().map_err(|_| ConsoleError::NotFound("No such job.".into()))
}

fn masked_recipient(view: &PayoutView) -> String {
    format!("{MASK_PREFIX}{}", view.recipient_last4)
}

fn recipient_kind(view: &PayoutView) -> &'static str {
    if view.recipient_type == "bank_account" { "Bank account" } else { "Card" }
}

fn source_text(view: &PayoutView) -> String {
    match &view.state.source {
        None => "none (no ledger account)".to_owned(),
        Some((PayoutSource::Organization(inn), _)) => format!("organization {inn}"),
        Some((PayoutSource::User(user), _)) => format!("user {user}"),
    }
}

/// `01a22e23…5765`: payout ids are UUIDv7, whose first digits are their creation time (shared by payouts made
/// within a minute), so the random last digits are kept too.
fn short_id(id: &str) -> String {
    match (id.get(..8), id.len().checked_sub(4).and_then(|start| id.get(start..))) {
        (Some(head), Some(tail)) if id.len() > 12 => format!("{head}…{tail}"),
        _ => id.to_owned(),
    }
}

fn require_operator(user: &ConsoleUser, what: &str) -> Result<(), ConsoleError> {
    if user.can(Role::Operator) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(format!("{what} needs the operator role; you are {}.", user.role)))
    }
}

/// A confirmation step (GET), or the refusal of an action (409), for payouts and jobs alike.
#[derive(askama::Template)]
#[template(path = "console/payouts_confirm.html")]
struct ConfirmPage {
    layout: Layout,
    /// The question (when the action is possible).
    question: String,
    /// What is acted on.
    facts: Vec<(&'static str, String)>,
    /// What the action will do.
    consequence: String,
    /// Where the form posts; `None` when the action is not possible now.
    action: Option<String>,
    button: &'static str,
    danger: bool,
    back: String,
    back_label: String,
    /// Why the action was refused or is not possible.
    error: Option<String>,
}

impl ConfirmPage {
    fn respond(self) -> Response {
        let status = if self.error.is_some() { StatusCode::CONFLICT } else { StatusCode::OK };
        (status, render(&self)).into_response()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The payouts list

const STATUS_CHOICES: &[(&str, &str)] = &[
    ("", "Any status"),
    ("pending", "Pending"),
    ("processing", "Processing"),
    ("completed", "Completed"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
    ("returned", "Returned"),
];

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

/// `GET /admin/payouts`.
async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let query: ListQuery = decode_query(raw)?;
    let mut errors = ListErrors::default();
    let status_text = given(&query.status).unwrap_or("");
    let status = match status_text {
        "" => None,
        text => {
            let parsed = PayoutStatus::parse(text);
            if parsed.is_none() {
                errors.status = Some("Choose one of the listed statuses.".into());
            }
            parsed
        }
    };
    let currency = match given(&query.currency) {
        None => None,
        Some(code) => match Currency::from_code_ignore_case(code) {
            Some(currency) => Some(currency.code().to_owned()),
            None => {
                errors.currency = Some("Give an ISO 4217 code, e.g. RUB.".into());
                None
            }
        },
    };
    let date = |text: Option<&str>, error: &mut Option<String>| match text.map(parse_date) {
        None => None,
        Some(Ok(moment)) => Some(moment),
        Some(Err(message)) => {
            *error = Some(message);
            None
        }
    };
    let created_after = date(given(&query.created_after), &mut errors.created_after);
    let created_before = date(given(&query.created_before), &mut errors.created_before);
    let ordering_text = given(&query.ordering).unwrap_or("-created_at");
    let ordering = match ordering_text {
        "created_at" => PayoutOrdering::CreatedAsc,
        "-created_at" => PayoutOrdering::CreatedDesc,
        "amount" => PayoutOrdering::AmountAsc,
        "-amount" => PayoutOrdering::AmountDesc,
        _ => {
            errors.ordering = Some("Choose one of the listed orders.".into());
            PayoutOrdering::CreatedDesc
        }
    };
    let (page, page_size, offset) = match paging(&query.page, &query.page_size) {
        Ok(paging) => paging,
        Err(message) => {
            errors.page = Some(message);
            (1, DEFAULT_PAGE_SIZE, 0)
        }
    };
    let mut page_view = ListPage {
        layout: user.layout("Payouts", "payouts"),
        statuses: choices(STATUS_CHOICES, status_text),
        orderings: choices(ORDERING_CHOICES, ordering_text),
        currency: given(&query.currency).unwrap_or("").to_owned(),
        created_after: given(&query.created_after).unwrap_or("").to_owned(),
        created_before: given(&query.created_before).unwrap_or("").to_owned(),
        page_size: given(&query.page_size).map(str::to_owned),
        errors,
        rows: Vec::new(),
        pager: Pager::default(),
    };
    if page_view.errors.any() {
        return Ok((StatusCode::BAD_REQUEST, render(&page_view)).into_response());
    }
    let filter = PayoutFilter { status, currency, created_after, created_before };
    let (count, views) = state.store.list_payouts(&filter, ordering, page_size, offset).await?;
    let link = |page: i64| {
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
    };
    page_view.pager = Pager::new(page, page_size, count, link);
    page_view.rows = views
        .iter()
        .map(|view| {
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
        })
        .collect();
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

/// One job, as the pages show it.
#[derive(Debug)]
struct JobLine {
    id: i64,
    kind: String,
    /// The payout it works on, if the payload is one.
    payout: Option<String>,
    payout_short: String,
    payload: String,
    status: &'static str,
    dead: bool,
    attempts: String,
    last_error: String,
    next_run: String,
    updated: String,
    discarded: Option<String>,
}

impl From<&ConsoleJob> for JobLine {
    fn from(job: &ConsoleJob) -> JobLine {
        let payout = Uuid::parse_str(&job.payload).ok().map(|id| id.to_string());
        let status = job.shown_status();
        let next_run = match status {
            "queued" | "retrying" if job.leased => "running now".to_owned(),
            "queued" | "retrying" => format::time(job.run_at),
            _ => "—".to_owned(),
        };
        JobLine {
            id: job.id,
            kind: job.kind.clone(),
            payout_short: payout.as_deref().map(short_id).unwrap_or_default(),
            payout,
            payload: job.payload.clone(),
            status,
            dead: job.is_dead(),
            attempts: format!("{} / {}", job.attempts, job.max_attempts),
            last_error: job.last_error.clone().unwrap_or_default(),
            next_run,
            updated: format::time(job.updated_at),
            discarded: job
                .discarded_at
                .map(|at| format!("by {} at {}", job.discarded_by.as_deref().unwrap_or("an admin"), format::time(at))),
        }
    }
}

/// The actions of a payout page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayoutAction {
    Cancel,
    Retry,
    Return,
}

impl PayoutAction {
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

    fn consequence(self, dead_job: Option<i64>) -> String {
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

    fn button(self) -> &'static str {
        match self {
            PayoutAction::Cancel => "Cancel payout",
            PayoutAction::Retry => "Retry payout",
            PayoutAction::Return => "Mark returned",
        }
    }

    fn notice(done: &str) -> Option<&'static str> {
        match done {
            "cancelled" => Some("Payout cancelled. Money held on its source account, if any, was released."),
            "retried" => Some("Payout retried: it is pending again with a fresh job."),
            "returned" => Some("Payout marked returned. Its amount went back to its source account, if any."),
            _ => None,
        }
    }

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

#[derive(Debug, Default, Deserialize)]
struct DetailQuery {
    done: Option<String>,
}

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

fn payout_facts(view: &PayoutView) -> Vec<(&'static str, String)> {
    vec![
        ("Payout", view.state.id.to_string()),
        ("Amount", format::money(view.state.amount, view.state.currency)),
        ("Payout status", view.state.status.as_str().to_owned()),
        ("Recipient", format!("{} {} ({})", recipient_kind(view), masked_recipient(view), view.recipient_holder)),
        ("Source", source_text(view)),
    ]
}

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
fn refusal_message(error: &PayoutError, currency: &str) -> String {
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

// ---------------------------------------------------------------------------------------------------------------
// Jobs

const JOB_LIST_CHOICES: &[(&str, &str)] =
    &[("", "Dead and retrying"), ("dead", "Dead only"), ("retrying", "Retrying only")];

#[derive(Debug, Default, Deserialize)]
struct JobsQuery {
    status: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
    done: Option<String>,
    job: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/jobs_list.html")]
struct JobsPage {
    layout: Layout,
    notice: Option<String>,
    lists: Vec<Choice>,
    page_size: Option<String>,
    errors: Vec<String>,
    rows: Vec<JobLine>,
    pager: Pager,
}

/// `GET /admin/jobs` (admins).
async fn jobs(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let query: JobsQuery = decode_query(raw)?;
    let list_text = given(&query.status).unwrap_or("");
    let mut errors = Vec::new();
    let list = match list_text {
        "" => JobList::Troubled,
        "dead" => JobList::Dead,
        "retrying" => JobList::Retrying,
        _ => {
            errors.push("Choose one of the listed job lists.".to_owned());
            JobList::Troubled
        }
    };
    let (page, page_size, offset) = paging(&query.page, &query.page_size).unwrap_or_else(|message| {
        errors.push(message);
        (1, DEFAULT_PAGE_SIZE, 0)
    });
    let notice = match (given(&query.done), given(&query.job).and_then(|job| job.parse::<i64>().ok())) {
        (Some("discarded"), Some(job)) => {
            Some(format!("Job {job} discarded. It left the dead list; its payout stays failed and no money moved."))
        }
        _ => None,
    };
    let mut page_view = JobsPage {
        layout: user.layout("Jobs", "jobs"),
        notice,
        lists: choices(JOB_LIST_CHOICES, list_text),
        page_size: given(&query.page_size).map(str::to_owned),
        errors,
        rows: Vec::new(),
        pager: Pager::default(),
    };
    if !page_view.errors.is_empty() {
        return Ok((StatusCode::BAD_REQUEST, render(&page_view)).into_response());
    }
    let (count, found) = state.store.console_jobs(list, page_size, offset).await?;
    let link = |page: i64| {
        let mut url = format!("/admin/jobs?page={page}");
        for (name, value) in [("status", given(&query.status)), ("page_size", given(&query.page_size))] {
            if let Some(value) = value {
                url.push_str(&format!("&{name}={}", percent_encode(value)));
            }
        }
        url
    };
    page_view.pager = Pager::new(page, page_size, count, link);
    page_view.rows = found.iter().map(JobLine::from).collect();
    Ok(render(&page_view))
}

/// The actions of the jobs page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobAction {
    Retry,
    Discard,
}

async fn job_and_payout(state: &AppState, id: i64) -> Result<(ConsoleJob, Option<PayoutView>), ConsoleError> {
    let job = state.store.console_job(id).await?.ok_or_else(|| ConsoleError::NotFound("No such job.".into()))?;
    let payout = match Uuid::parse_str(&job.payload) {
        Ok(payout) => state.store.payout(payout).await?,
        Err(_) => None,
    };
    Ok((job, payout))
}

/// Whether a dead-job action is possible now (the engine and the store check again), or why not.
fn job_check(action: JobAction, job: &ConsoleJob, payout: Option<&PayoutView>) -> Result<(), String> {
    match action {
        JobAction::Retry => retry_target(job, payout).map(|_| ()),
        JobAction::Discard if job.is_dead() => Ok(()),
        JobAction::Discard => {
            Err(format!("Job {} is {}: only dead jobs can be discarded.", job.id, job.shown_status()))
        }
    }
}

/// The payout a retry of this job puts back to pending, or why it cannot.
fn retry_target(job: &ConsoleJob, payout: Option<&PayoutView>) -> Result<Uuid, String> {
    if !job.is_dead() {
        return Err(format!("Job {} is {}: only dead jobs can be retried.", job.id, job.shown_status()));
    }
    let Some(payout) = payout else {
        return Err(format!("Job {} has no payout to retry (its payload is {:?}).", job.id, job.payload));
    };
    let status = payout.state.status;
    if transition(status, PayoutStatus::Pending, Actor::Operator).is_err() {
        return Err(format!("Its payout is {status}: only failed payouts can be retried."));
    }
    Ok(payout.state.id)
}

fn job_confirm(
    user: &ConsoleUser,
    action: JobAction,
    job: &ConsoleJob,
    payout: Option<&PayoutView>,
    error: Option<String>,
) -> ConfirmPage {
    let checked = job_check(action, job, payout);
    let error = error.or_else(|| checked.err());
    let mut facts = vec![
        ("Job", job.id.to_string()),
        ("Kind", job.kind.clone()),
        ("Status", job.shown_status().to_owned()),
        ("Attempts", format!("{} / {}", job.attempts, job.max_attempts)),
        ("Last error", job.last_error.clone().unwrap_or_else(|| "—".to_owned())),
        ("Last changed", format::time(job.updated_at)),
    ];
    match payout {
        Some(view) => facts.extend(payout_facts(view)),
        None => facts.push(("Payload", job.payload.clone())),
    }
    let (question, consequence, button, slug) = match action {
        JobAction::Retry => {
            (format!("Retry dead job {}?", job.id), PayoutAction::Retry.consequence(Some(job.id)), "Retry job", "retry")
        }
        JobAction::Discard => (
            format!("Discard dead job {}?", job.id),
            "The job is closed for good: it leaves the dead list and can no longer be retried. Its payout stays \
             failed. No money moves: the payout failed when its job died, which released any money it held."
                .to_owned(),
            "Discard job",
            "discard",
        ),
    };
    ConfirmPage {
        layout: user.layout(button, "jobs"),
        question,
        facts,
        consequence,
        action: error.is_none().then(|| format!("/admin/jobs/{}/{slug}", job.id)),
        button,
        danger: action == JobAction::Discard,
        back: "/admin/jobs".to_owned(),
        back_label: "Back to the jobs".to_owned(),
        error,
    }
}

/// `GET /admin/jobs/{id}/retry` (admins).
async fn confirm_job_retry(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let (job, payout) = job_and_payout(&state, job_id(&id)?).await?;
    Ok(job_confirm(&user, JobAction::Retry, &job, payout.as_ref(), None).respond())
}

/// `POST /admin/jobs/{id}/retry` (admins): what `POST /api/v1/jobs/{id}/retry/` does.
async fn job_retry(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = job_id(&id)?;
    let (job, payout) = job_and_payout(&state, id).await?;
    let payout_id = match retry_target(&job, payout.as_ref()) {
        Ok(payout_id) => payout_id,
        Err(why) => return Ok(job_confirm(&user, JobAction::Retry, &job, payout.as_ref(), Some(why)).respond()),
    };
    let currency = payout.as_ref().map_or("RUB", |view| view.state.currency);
    match state.payouts.retry(payout_id, id, Some(user.username.clone())).await? {
        PayoutOutcome::Done(_) => {
            tracing::info!(user = %user.username, job = id, payout = %payout_id, "console job retry");
            Ok(Redirect::to(&format!("/admin/payouts/{payout_id}?done=retried")).into_response())
        }
        PayoutOutcome::Refused(refusal) => {
            let message = refusal_message(&refusal, currency);
            let (job, payout) = job_and_payout(&state, id).await?;
            Ok(job_confirm(&user, JobAction::Retry, &job, payout.as_ref(), Some(message)).respond())
        }
        PayoutOutcome::Broken(defect) => {
            tracing::error!(%defect, job = id, "the ledger engine could not decide a console job retry");
            Err(ConsoleError::Unavailable)
        }
        other => {
            tracing::error!(?other, "a keyed outcome for a console job retry");
            Err(ConsoleError::Unavailable)
        }
    }
}

/// `GET /admin/jobs/{id}/discard` (admins).
async fn confirm_discard(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let (job, payout) = job_and_payout(&state, job_id(&id)?).await?;
    Ok(job_confirm(&user, JobAction::Discard, &job, payout.as_ref(), None).respond())
}

/// `POST /admin/jobs/{id}/discard` (admins): closes a dead job for good, audited as `job.discard`.
async fn discard(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = job_id(&id)?;
    let now = state.store.clock().await?;
    match state.store.discard_job(id, &user.username, now).await? {
        DiscardOutcome::Discarded(job) => {
            tracing::info!(user = %user.username, job = job.id, payload = %job.payload, "console job discard");
            Ok(Redirect::to(&format!("/admin/jobs?done=discarded&job={}", job.id)).into_response())
        }
        DiscardOutcome::NotFound => Err(ConsoleError::NotFound("No such job.".into())),
        DiscardOutcome::NotDead(status) => {
            let (job, payout) = job_and_payout(&state, id).await?;
            let why = format!("Job {id} is {status}: only dead jobs can be discarded.");
            Ok(job_confirm(&user, JobAction::Discard, &job, payout.as_ref(), Some(why)).respond())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_counted_and_linked() {
        let pager = Pager::new(2, 10, 25, |page| format!("?page={page}"));
        assert_eq!(
            (pager.pages, pager.previous.as_deref(), pager.next.as_deref()),
            (3, Some("?page=1"), Some("?page=3"))
        );
        let empty = Pager::new(1, 10, 0, |page| format!("?page={page}"));
        assert_eq!((empty.pages, empty.previous, empty.next), (1, None, None));
        let beyond = Pager::new(9, 10, 25, |page| format!("?page={page}"));
        assert_eq!(
            (beyond.previous.as_deref(), beyond.next, beyond.first.as_deref()),
            (Some("?page=3"), None, Some("?page=1"))
        );
    }

    #[test]
    fn paging_is_checked() {
        assert_eq!(paging(&None, &None), Ok((1, DEFAULT_PAGE_SIZE, 0)));
        assert_eq!(paging(&Some("3".into()), &Some("10".into())), Ok((3, 10, 20)));
        assert!(paging(&Some("0".into()), &None).is_err());
        assert!(paging(&Some("x".into()), &None).is_err());
        assert!(paging(&None, &Some("101".into())).is_err());
        assert!(paging(&Some(i64::MAX.to_string()), &None).is_err());
    }

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
