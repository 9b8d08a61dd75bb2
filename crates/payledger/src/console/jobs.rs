//! The jobs pages (admins): the dead and retrying jobs, a page at a time; and, for a dead job, the confirmation
//! and the action of retrying it (its payout goes back to pending with a fresh job, as through the API) or
//! discarding it (it is closed for good, audited as `job.discard`). A refused action is shown on its
//! confirmation page (409).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use payledger_core::payout::{Actor, PayoutStatus, transition};
use serde::Deserialize;
use uuid::Uuid;

use super::lists::{Choice, choices};
use super::payout_lists::{DEFAULT_PAGE_SIZE, Pager, decode_query, given, paging};
use super::payouts::{ConfirmPage, PayoutAction, payout_facts, refusal_message, short_id};
use super::{ConsoleError, ConsoleUser, Layout, Path, format, percent_encode, render};
use crate::AppState;
use crate::engine::payouts::PayoutOutcome;
use crate::store::console::jobs::{ConsoleJob, DiscardOutcome, JobList};
use crate::store::payouts::PayoutView;

/// The jobs pages' routes (each behind the console guard, which `console::router` adds, and which lets only
/// admins in).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/jobs", get(jobs))
        .route("/admin/jobs/{id}/retry", get(confirm_job_retry).post(job_retry))
        .route("/admin/jobs/{id}/discard", get(confirm_discard).post(discard))
}

/// The lists the jobs page offers.
const JOB_LIST_CHOICES: &[(&str, &str)] =
    &[("", "Dead and retrying"), ("dead", "Dead only"), ("retrying", "Retrying only")];

/// `/admin/jobs?status=&page=&page_size=&done=&job=`: `done` and `job` describe the discard just done.
#[derive(Debug, Default, Deserialize)]
struct JobsQuery {
    status: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
    done: Option<String>,
    job: Option<String>,
}

/// The jobs list.
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
    page_view.pager = Pager::new(page, page_size, count, |page| jobs_link(&query, page));
    page_view.rows = found.iter().map(JobLine::from).collect();
    Ok(render(&page_view))
}

/// Page `page` of the jobs list with the query's list and page size, as given.
fn jobs_link(query: &JobsQuery, page: i64) -> String {
    let mut url = format!("/admin/jobs?page={page}");
    for (name, value) in [("status", given(&query.status)), ("page_size", given(&query.page_size))] {
        if let Some(value) = value {
            url.push_str(&format!("&{name}={}", percent_encode(value)));
        }
    }
    url
}

/// One job, as the jobs list and a payout's page show it.
#[derive(Debug)]
pub(super) struct JobLine {
    /// The job's id.
    pub(super) id: i64,
    /// Its kind.
    pub(super) kind: String,
    /// The payout it works on, if the payload is one.
    pub(super) payout: Option<String>,
    /// That payout's id, shortened.
    pub(super) payout_short: String,
    /// What it works on, as stored.
    pub(super) payload: String,
    /// Its status as operators read it.
    pub(super) status: &'static str,
    /// Whether it is dead (and so may be retried or discarded).
    pub(super) dead: bool,
    /// `attempts / max_attempts`.
    pub(super) attempts: String,
    /// The last error, if any.
    pub(super) last_error: String,
    /// When it runs next, if it is waiting.
    pub(super) next_run: String,
    /// When it last changed.
    pub(super) updated: String,
    /// Who discarded it and when, if it was.
    pub(super) discarded: Option<String>,
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

/// The job of a path; an id that is not a number names no job (404).
fn job_id(text: &str) -> Result<i64, ConsoleError> {
    text.parse::<i64>().map_err(|_| ConsoleError::NotFound("No such job.".into()))
}

/// The actions of the jobs page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobAction {
    /// Send its payout again.
    Retry,
    /// Close it for good.
    Discard,
}

/// The job and the payout it works on, if any; 404 without the job.
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

/// The confirmation page of `action` on a job, or its refusal: `error`, or why the job's state does not allow
/// it.
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
