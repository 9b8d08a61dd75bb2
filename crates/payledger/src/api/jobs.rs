//! `/api/v1/jobs/`: the durable job queue's operator endpoints, to list jobs and retry a dead payout job.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::api::access::Caller;
use crate::api::extract::{ApiQuery, query_integer};
use crate::api::payouts::{PayoutAnswer, answer_with, audit_actor, changed_payout};
use crate::error::{ApiError, ErrorBody};
use crate::store::payouts::JobRow;
use crate::timefmt::serde_rfc3339;

/// Which jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// `dead` (default), `queued` or `done`.
    #[param(value_type = Option<JobStatusName>)]
    status: Option<String>,
    /// At most this many, newest first: 1 to 500 (default 50); outside that, 400 naming `limit`.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// The default number of jobs listed.
const DEFAULT_JOB_PAGE: i64 = 50;
/// The most jobs one list holds.
const MAX_JOB_PAGE: i64 = 500;

/// A job's status.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum JobStatusName {
    /// Failed for good; may be retried.
    Dead,
    /// Waiting to run.
    Queued,
    /// Finished.
    Done,
}

/// A job of the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAnswer {
    /// The job.
    pub id: i64,
    /// Its kind, e.g. `process_payout`.
    pub kind: String,
    /// What it works on (a payout id).
    pub payload: String,
    /// `queued`, `done` or `dead`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The last error.
    pub last_error: Option<String>,
    /// When it is (or was) due.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub run_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<JobRow> for JobAnswer {
    fn from(row: JobRow) -> JobAnswer {
        JobAnswer {
            id: row.id,
            kind: row.kind,
            payload: row.payload,
            status: row.status,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            last_error: row.last_error,
            run_at: row.run_at,
            updated_at: row.updated_at,
        }
    }
}

/// List jobs of the queue, e.g. the dead ones (`?status=dead`).
#[utoipa::path(
    get,
    path = "/v1/jobs/",
    tag = "jobs",
    params(JobQuery),
    responses((status = 200, body = [JobAnswer]), (status = 400, body = ErrorBody))
)]
pub async fn jobs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<JobQuery>,
) -> Result<Json<Vec<JobAnswer>>, ApiError> {
    let status = query.status.as_deref().unwrap_or("dead");
    if !["dead", "queued", "done"].contains(&status) {
        return Err(ApiError::field("status", "must be dead, queued or done"));
    }
    let limit = query_integer("limit", query.limit.as_deref(), DEFAULT_JOB_PAGE, 1..=MAX_JOB_PAGE)?;
    Ok(Json(state.store.list_jobs(status, limit).await?.into_iter().map(JobAnswer::from).collect()))
}

/// Retry a dead payout job: its failed payout goes back to pending (its source's money held again) with a
/// fresh job, and the dead job is closed.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/retry/",
    tag = "jobs",
    params(("id" = i64, Path, description = "The dead job")),
    responses(
        (status = 200, description = "The payout, pending again", body = PayoutAnswer),
        (status = 400, description = "The id is not a whole number", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not dead, or its payout is not failed (or its source is short)", body = ErrorBody),
    )
)]
pub async fn retry_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Parsed here so a malformed id is a JSON 400 naming `id`, not axum's plain-text rejection.
    let id: i64 = id.parse().map_err(|_| ApiError::field("id", "must be a whole number"))?;
    let job = state.store.job(id).await?.ok_or(ApiError::NotFound("Job not found"))?;
    if job.status != "dead" {
        return Err(ApiError::Conflict { code: "job_not_dead", message: format!("job {id} is {}", job.status) });
    }
    let payout = Uuid::parse_str(&job.payload).map_err(|_| ApiError::Conflict {
        code: "job_not_retryable",
        message: format!("job {id} is not a payout job"),
    })?;
    changed_payout(state.payouts.retry(payout, id, audit_actor(&caller)).await?)?;
    answer_with(&state, payout, StatusCode::OK).await
}
