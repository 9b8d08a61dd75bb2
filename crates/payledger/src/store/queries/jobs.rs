//! The job queue outside batches: claims, reschedules and finishes (which change no ledger state, so they
//! are not ledger batches), and the console's reads of jobs.

use time::OffsetDateTime;

use crate::store::{Store, StoreError, payouts};

/// A job from columns `id, kind, payload, status, attempts, max_attempts, last_error, run_at, updated_at`.
macro_rules! job_from_row {
    ($row:expr) => {
        $crate::store::payouts::JobRow {
            id: $row.try_get(0)?,
            kind: $row.try_get(1)?,
            payload: $row.try_get(2)?,
            status: $row.try_get(3)?,
            attempts: $row.try_get(4)?,
            max_attempts: $row.try_get(5)?,
            last_error: $row.try_get(6)?,
            run_at: $row.try_get(7)?,
            updated_at: $row.try_get(8)?,
        }
    };
}
pub(crate) use job_from_row;

/// The job queries, implemented once for each store: `$reader` and `$writer` name its pools, `$bind_time` turns
/// a time into what the backend binds and `$claim_jobs_sql` is the backend's [`claim_jobs_sql!`].
macro_rules! job_queries {
    (
        $store:ty,
        reader: $reader:ident,
        writer: $writer:ident,
        bind_time: $bind_time:path,
        claim_jobs_sql: $claim_jobs_sql:expr
    ) => {
        impl $store {
            pub(in crate::store) async fn attention(
                &self,
            ) -> Result<$crate::store::Attention, $crate::store::StoreError> {
                // Each count reads an index that holds only the rows it counts (the endpoints are few).
                let (dead_jobs, open_discrepancies, disabled_endpoints, pending_deliveries): (i64, i64, i64, i64) =
                    sqlx::query_as(
                        "SELECT (SELECT COUNT(*) FROM jobs WHERE status = 'dead'),
                                (SELECT COUNT(*) FROM statement_discrepancies WHERE state = 'open'),
                                (SELECT COUNT(*) FROM webhook_endpoints WHERE NOT enabled),
                                (SELECT COUNT(*) FROM event_deliveries WHERE status = 'pending')",
                    )
                    .fetch_one(&self.$reader)
                    .await?;
                Ok($crate::store::Attention { dead_jobs, open_discrepancies, disabled_endpoints, pending_deliveries })
            }

            pub(in crate::store) async fn claim_jobs(
                &self,
                owner: &str,
                now: time::OffsetDateTime,
                lease: time::OffsetDateTime,
                limit: i64,
            ) -> Result<Vec<$crate::store::payouts::ClaimedJob>, $crate::store::StoreError> {
                let rows = sqlx::query($claim_jobs_sql)
                    .bind(owner)
                    .bind($bind_time(lease))
                    .bind($bind_time(now))
                    .bind(limit)
                    .fetch_all(&self.$writer)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::payouts::ClaimedJob {
                            id: row.try_get(0)?,
                            kind: row.try_get(1)?,
                            payload: row.try_get(2)?,
                            attempts: row.try_get(3)?,
                            max_attempts: row.try_get(4)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn reschedule_job(
                &self,
                id: i64,
                owner: &str,
                run_at: Option<time::OffsetDateTime>,
                error: Option<&str>,
                now: time::OffsetDateTime,
            ) -> Result<bool, $crate::store::StoreError> {
                // A job whose lease this worker lost (it expired and another worker claimed it) is left alone.
                let done = sqlx::query(
                    "UPDATE jobs SET run_at = COALESCE($3, run_at), last_error = COALESCE($4, last_error),
                        lease_owner = NULL, lease_expires_at = NULL, updated_at = $5,
                        attempts = CASE WHEN $3 IS NULL THEN attempts - 1 ELSE attempts END
                 WHERE id = $1 AND lease_owner = $2 AND status = 'queued'",
                )
                .bind(id)
                .bind(owner)
                .bind(run_at.map($bind_time))
                .bind(error)
                .bind($bind_time(now))
                .execute(&self.$writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(in crate::store) async fn finish_job(
                &self,
                id: i64,
                owner: &str,
                now: time::OffsetDateTime,
            ) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
                 WHERE id = $1 AND lease_owner = $2 AND status = 'queued'",
                )
                .bind(id)
                .bind(owner)
                .bind($bind_time(now))
                .execute(&self.$writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(in crate::store) async fn list_jobs(
                &self,
                status: &str,
                limit: i64,
            ) -> Result<Vec<$crate::store::payouts::JobRow>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT id, kind, payload, status, attempts, max_attempts, last_error, run_at, updated_at
                 FROM jobs WHERE status = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(status)
                .bind(limit)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| Ok($crate::store::queries::jobs::job_from_row!(row)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn job(
                &self,
                id: i64,
            ) -> Result<Option<$crate::store::payouts::JobRow>, $crate::store::StoreError> {
                let row = sqlx::query(
                    "SELECT id, kind, payload, status, attempts, max_attempts, last_error, run_at, updated_at
                 FROM jobs WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.$reader)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some($crate::store::queries::jobs::job_from_row!(row)))
            }
        }
    };
}
pub(crate) use job_queries;

impl Store {
    /// The time leases and due times are measured in: PostgreSQL's clock, which every process sharing the
    /// queue reads alike (hosts' clocks may drift apart); the local clock for the embedded store.
    pub async fn clock(&self) -> Result<OffsetDateTime, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(OffsetDateTime::now_utc()),
            Store::Postgres(store) => store.clock().await,
        }
    }

    /// Claims up to `limit` due jobs for `owner` until `lease` (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
    /// workers of several processes never claim the same job).
    pub async fn claim_jobs(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<payouts::ClaimedJob>, StoreError> {
        on_backend!(self, store => store.claim_jobs(owner, now, lease, limit).await)
    }

    /// Gives a claimed job back: due again at `run_at` after a failed attempt (with its error), or, with no
    /// `run_at`, released unattempted (shutdown). False if the worker no longer held it.
    pub async fn reschedule_job(
        &self,
        id: i64,
        owner: &str,
        run_at: Option<OffsetDateTime>,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        on_backend!(self, store => store.reschedule_job(id, owner, run_at, error, now).await)
    }

    /// Ends a claimed job that has nothing left to do (its payout already moved on). False if the worker no
    /// longer held it.
    pub async fn finish_job(&self, id: i64, owner: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        on_backend!(self, store => store.finish_job(id, owner, now).await)
    }

    /// Jobs in a status, newest first.
    pub async fn list_jobs(&self, status: &str, limit: i64) -> Result<Vec<payouts::JobRow>, StoreError> {
        on_backend!(self, store => store.list_jobs(status, limit).await)
    }

    /// One job.
    pub async fn job(&self, id: i64) -> Result<Option<payouts::JobRow>, StoreError> {
        on_backend!(self, store => store.job(id).await)
    }

    /// What waits for an operator: dead jobs, open statement discrepancies, disabled webhook endpoints and
    /// pending event deliveries.
    pub async fn attention(&self) -> Result<Attention, StoreError> {
        on_backend!(self, store => store.attention().await)
    }
}

/// What waits for an operator, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attention {
    /// Jobs that used up their attempts (`/api/v1/jobs/`: retry or discard each).
    pub dead_jobs: i64,
    /// Statement discrepancies nobody has decided yet.
    pub open_discrepancies: i64,
    /// Webhook endpoints that are disabled (by an operator, a 410, or the failure window).
    pub disabled_endpoints: i64,
    /// Event deliveries waiting to be sent or retried.
    pub pending_deliveries: i64,
}

/// Claims due jobs: sets the lease of up to `$4` queued jobs that are due at `$3` and not leased (or whose lease
/// expired), counting the attempt. `{lock}` is PostgreSQL's `FOR UPDATE SKIP LOCKED` (SQLite has one writer).
macro_rules! claim_jobs_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE jobs SET lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= $3
                            AND (lease_expires_at IS NULL OR lease_expires_at < $3)
                          ORDER BY run_at, id LIMIT $4 ",
            $lock,
            ")
             RETURNING id, kind, payload, attempts, max_attempts"
        )
    };
}
pub(crate) use claim_jobs_sql;
