//! Console queries of jobs: a payout's processing jobs, the dead and retrying jobs, and discarding a dead job.
//!
//! A discarded job is closed (`status = 'done'`, as an operator's retry closes a dead job) and marked by
//! `discarded_at` / `discarded_by` (migration 0007): the `jobs.status` CHECK constraint has no other status and
//! SQLite cannot alter a CHECK constraint. Being no longer `dead`, it leaves every dead list and the engine
//! refuses to retry it.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// A job as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleJob {
    /// The job's id.
    pub id: i64,
    /// Its kind (`process_payout`).
    pub kind: String,
    /// What it works on (a payout id).
    pub payload: String,
    /// The stored status: `queued`, `done` or `dead`.
    pub status: String,
    /// Claims so far.
    pub attempts: i32,
    /// Claims allowed.
    pub max_attempts: i32,
    /// The last error.
    pub last_error: Option<String>,
    /// When it is (or was) due.
    pub run_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
    /// Whether a worker holds its lease now.
    pub leased: bool,
    /// When an admin discarded it.
    pub discarded_at: Option<OffsetDateTime>,
    /// Who discarded it.
    pub discarded_by: Option<String>,
}

impl ConsoleJob {
    /// The status as operators read it: `discarded`, `dead`, `done`, `retrying` (queued again after a failed
    /// attempt) or `queued`.
    pub fn shown_status(&self) -> &'static str {
        match self.status.as_str() {
            _ if self.discarded_at.is_some() => "discarded",
            "dead" => "dead",
            "done" => "done",
            _ if self.last_error.is_some() => "retrying",
            _ => "queued",
        }
    }

    /// Whether it is dead (and so may be retried or discarded).
    pub fn is_dead(&self) -> bool {
        self.status == "dead"
    }
}

/// Which jobs the jobs page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobList {
    /// Dead jobs and jobs waiting to retry after a failed attempt.
    Troubled,
    /// Dead jobs only.
    Dead,
    /// Queued jobs that failed an attempt and wait to run again.
    Retrying,
}

/// What became of a discard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscardOutcome {
    /// Discarded (audited in the same transaction); the job as it now is.
    Discarded(Box<ConsoleJob>),
    /// No such job.
    NotFound,
    /// The job is not dead: its status as operators read it.
    NotDead(&'static str),
}

/// The columns of [`ConsoleJob`], in its field order.
macro_rules! console_job_columns {
    () => {
        "id, kind, payload, status, attempts, max_attempts, last_error, run_at, updated_at,
         lease_owner IS NOT NULL AS leased, discarded_at, discarded_by"
    };
}
pub(crate) use console_job_columns;

/// The jobs of one list, by id, newest first; `$1` limit, `$2` offset.
pub(crate) fn jobs_sql(list: JobList) -> &'static str {
    match list {
        JobList::Dead => concat!(
            "SELECT ",
            console_job_columns!(),
            " FROM jobs WHERE status = 'dead' ORDER BY id DESC LIMIT $1 OFFSET $2"
        ),
        JobList::Retrying => concat!(
            "SELECT ",
            console_job_columns!(),
            " FROM jobs WHERE status = 'queued' AND last_error IS NOT NULL ORDER BY id DESC LIMIT $1 OFFSET $2"
        ),
        // Each half can use its own partial index (jobs_dead, jobs_due).
        JobList::Troubled => concat!(
            "SELECT * FROM (SELECT ",
            console_job_columns!(),
            " FROM jobs WHERE status = 'dead' UNION ALL SELECT ",
            console_job_columns!(),
            " FROM jobs WHERE status = 'queued' AND last_error IS NOT NULL) troubled
             ORDER BY id DESC LIMIT $1 OFFSET $2"
        ),
    }
}

/// How many jobs one list has.
pub(crate) fn jobs_count_sql(list: JobList) -> &'static str {
    match list {
        JobList::Dead => "SELECT COUNT(*) FROM jobs WHERE status = 'dead'",
        JobList::Retrying => "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND last_error IS NOT NULL",
        JobList::Troubled => {
            "SELECT (SELECT COUNT(*) FROM jobs WHERE status = 'dead')
                  + (SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND last_error IS NOT NULL)"
        }
    }
}

/// A [`ConsoleJob`] from the columns of [`console_job_columns`].
macro_rules! console_job_from_row {
    ($row:expr) => {{
        let row = $row;
        $crate::store::console::jobs::ConsoleJob {
            id: row.try_get(0)?,
            kind: row.try_get(1)?,
            payload: row.try_get(2)?,
            status: row.try_get(3)?,
            attempts: row.try_get(4)?,
            max_attempts: row.try_get(5)?,
            last_error: row.try_get(6)?,
            run_at: row.try_get(7)?,
            updated_at: row.try_get(8)?,
            leased: row.try_get(9)?,
            discarded_at: row.try_get(10)?,
            discarded_by: row.try_get(11)?,
        }
    }};
}
pub(crate) use console_job_from_row;

/// The jobs queries, for one backend's store.
macro_rules! console_job_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {
            pub(in crate::store) async fn console_payout_jobs(
                &self,
                payout: uuid::Uuid,
            ) -> Result<Vec<$crate::store::console::jobs::ConsoleJob>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    $crate::store::console::jobs::console_job_columns!(),
                    " FROM jobs WHERE payload = $1 AND kind = $2 ORDER BY id"
                ))
                .bind(payout.to_string())
                .bind($crate::store::batch::PROCESS_PAYOUT_JOB)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| Ok($crate::store::console::jobs::console_job_from_row!(row)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn console_job(
                &self,
                id: i64,
            ) -> Result<Option<$crate::store::console::jobs::ConsoleJob>, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::store::console::jobs::console_job_columns!(),
                    " FROM jobs WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.$reader)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some($crate::store::console::jobs::console_job_from_row!(&row)))
            }

            pub(in crate::store) async fn console_jobs(
                &self,
                list: $crate::store::console::jobs::JobList,
                limit: i64,
                offset: i64,
            ) -> Result<(i64, Vec<$crate::store::console::jobs::ConsoleJob>), $crate::store::StoreError> {
                use sqlx::Row;
                let count: i64 = sqlx::query_scalar($crate::store::console::jobs::jobs_count_sql(list))
                    .fetch_one(&self.$reader)
                    .await?;
                let rows = sqlx::query($crate::store::console::jobs::jobs_sql(list))
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&self.$reader)
                    .await?;
                let jobs = rows
                    .iter()
                    .map(|row| Ok($crate::store::console::jobs::console_job_from_row!(row)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok((count, jobs))
            }

            pub(in crate::store) async fn discard_job(
                &self,
                id: i64,
                by: &str,
                now: time::OffsetDateTime,
            ) -> Result<$crate::store::console::jobs::DiscardOutcome, $crate::store::StoreError> {
                use sqlx::Row;
                use $crate::store::console::jobs::DiscardOutcome;
                // The update is the transaction's first statement: it takes SQLite's write lock (or PostgreSQL's
                // row lock) and only a job still dead matches, so a concurrent retry or discard of the same job
                // makes this one find nothing rather than close it twice.
                let mut tx = self.$writer.begin().await?;
                let row = sqlx::query(concat!(
                    "UPDATE jobs SET status = 'done', discarded_at = $2, discarded_by = $3, updated_at = $2,
                            lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = $1 AND status = 'dead' RETURNING ",
                    $crate::store::console::jobs::console_job_columns!()
                ))
                .bind(id)
                .bind($bind_time(now))
                .bind(by)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    let found = sqlx::query(concat!(
                        "SELECT ",
                        $crate::store::console::jobs::console_job_columns!(),
                        " FROM jobs WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                    return Ok(match found {
                        None => DiscardOutcome::NotFound,
                        Some(row) => {
                            let job = $crate::store::console::jobs::console_job_from_row!(&row);
                            DiscardOutcome::NotDead(job.shown_status())
                        }
                    });
                };
                let job = $crate::store::console::jobs::console_job_from_row!(&row);
                let audit = $crate::store::console::jobs::discard_audit(&job, by);
                Self::write_audit(&mut *tx, &audit, now).await?;
                tx.commit().await?;
                Ok(DiscardOutcome::Discarded(Box::new(job)))
            }
        }
    };
}
pub(crate) use console_job_queries;

/// The audit row of a discard: the job as it was (dead) and as it is.
pub(crate) fn discard_audit(job: &ConsoleJob, by: &str) -> crate::store::AuditEntry {
    let before = serde_json::json!({
        "status": "dead",
        "kind": job.kind,
        "payload": job.payload,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
    });
    let after = serde_json::json!({"status": "discarded", "kind": job.kind, "payload": job.payload});
    crate::store::AuditEntry {
        actor: by.to_owned(),
        action: "job.discard".to_owned(),
        target: format!("job:{}", job.id),
        before: Some(before.to_string()),
        after: Some(after.to_string()),
        origin: crate::origin::RequestOrigin::current(),
    }
}

impl Store {
    /// A payout's processing jobs, oldest first (discarded ones included).
    pub async fn console_payout_jobs(&self, payout: Uuid) -> Result<Vec<ConsoleJob>, StoreError> {
        on_backend!(self, store => store.console_payout_jobs(payout).await)
    }

    /// One job, as the console shows it.
    pub async fn console_job(&self, id: i64) -> Result<Option<ConsoleJob>, StoreError> {
        on_backend!(self, store => store.console_job(id).await)
    }

    /// A page of a job list (newest first) and how many jobs the list has in all.
    pub async fn console_jobs(
        &self,
        list: JobList,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<ConsoleJob>), StoreError> {
        on_backend!(self, store => store.console_jobs(list, limit, offset).await)
    }

    /// Discards a dead job as `by`, with its audit row `job.discard` in the same transaction. Moves no money: a
    /// job only dies in the transaction that fails its payout (releasing the payout's hold), and a failed payout
    /// changes again only through a retry, which needs a dead job.
    pub async fn discard_job(&self, id: i64, by: &str, now: OffsetDateTime) -> Result<DiscardOutcome, StoreError> {
        on_backend!(self, store => store.discard_job(id, by, now).await)
    }
}
