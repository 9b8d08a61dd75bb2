//! The PostgreSQL store, for production and for several server instances sharing one database.
//!
//! Batch writes pass each column as an array and expand the rows with `UNNEST`, so a batch of any size is
//! one statement per table. Concurrent batches from other instances coordinate only through the unique
//! operation id (claimed in ascending order) and account row locks (taken in ascending id order).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use payledger_core::{AccountBalance, AccountId, BalanceSheet, BankNotice, Inn, OperationId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccountKind, BatchTx, MAX_KEPT_NOTICES, StoreError, hold_from_row, notice_from_row, organization_account};
use crate::engine::balances::{HoldState, KeyClaims, StoredKey, StoredResponse};
use crate::engine::batch::{NoticeClaim, Plan};
use crate::engine::payouts::PayoutState;

/// Connections per instance: the writer's transaction, the async applier and API reads.
const MAX_CONNECTIONS: u32 = 12;
/// How long a request waits for a free connection before the pool reports an error.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects a pool.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("payledger");
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(PgStore { pool })
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    /// Starts a batch transaction (READ COMMITTED: row locks and unique indexes do the serializing).
    pub async fn begin_batch(&self) -> Result<PgBatch, StoreError> {
        Ok(PgBatch { tx: self.pool.begin().await? })
    }

    pub(super) async fn clock(&self) -> Result<OffsetDateTime, StoreError> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&self.pool).await?)
    }

    pub(super) async fn ensure_organizations(
        &self,
        orgs: &[(Inn, String)],
    ) -> Result<Vec<(Inn, AccountId)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_organizations(&mut conn, orgs).await
    }
}

super::console::balances::console_balance_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::dashboard::console_dashboard_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::jobs::console_job_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::organizations::console_organization_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::payments::console_payment_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::sessions::console_session_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::users::console_user_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::shared_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    begin_snapshot: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    begin_write: "BEGIN",
    for_update: " FOR UPDATE",
    uuid_text: "uuid_hex(",
    bind_time: std::convert::identity,
    claim_jobs_sql: super::claim_jobs_sql!("FOR UPDATE SKIP LOCKED")
);

fn notice_from_pg_row(row: &sqlx::postgres::PgRow) -> Result<BankNotice, StoreError> {
    let currency: String = row.try_get(2)?;
    let payer_inn: String = row.try_get(3)?;
    notice_from_row(row.try_get(0)?, row.try_get(1)?, &currency, &payer_inn, row.try_get(4)?, row.try_get(5)?)
}

/// Creates the organizations and accounts that do not exist yet and returns every account id.
///
/// Keys are inserted in ascending INN order, so two writers creating overlapping sets never wait on each
/// other in a cycle.
async fn insert_organizations(
    conn: &mut sqlx::PgConnection,
    orgs: &[(Inn, String)],
) -> Result<Vec<(Inn, AccountId)>, StoreError> {
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&(Inn, String)> = orgs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.dedup_by(|a, b| a.0 == b.0);
    let inns: Vec<&str> = sorted.iter().map(|(inn, _)| inn.as_str()).collect();
    let names: Vec<&str> = sorted.iter().map(|(_, name)| name.as_str()).collect();
    let folded: Vec<String> = sorted.iter().map(|(_, name)| super::fold_name(name)).collect();
    sqlx::query(
        "INSERT INTO organizations (inn, name, name_folded)
         SELECT inn, name, folded FROM UNNEST($1::text[], $2::text[], $3::text[])
              WITH ORDINALITY AS o(inn, name, folded, n) ORDER BY n
         ON CONFLICT (inn) DO NOTHING",
    )
    .bind(&inns)
    .bind(&names)
    .bind(&folded)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO accounts (kind, external_key, currency)
         SELECT 'organization', inn, 'RUB' FROM UNNEST($1::text[]) WITH ORDINALITY AS o(inn, n) ORDER BY n
         ON CONFLICT (kind, external_key, currency) DO NOTHING",
    )
    .bind(&inns)
    .execute(&mut *conn)
    .await?;
    let found = sqlx::query(
        "SELECT external_key, id FROM accounts WHERE kind = 'organization' AND currency = 'RUB'
         AND external_key = ANY($1)",
    )
    .bind(&inns)
    .fetch_all(&mut *conn)
    .await?;
    found.into_iter().map(|row| organization_account(row.try_get(0)?, row.try_get(1)?)).collect()
}

fn uuids(ids: &[OperationId]) -> Vec<Uuid> {
    ids.iter().map(|id| id.0).collect()
}

/// One batch transaction on a pooled connection.
pub struct PgBatch {
    tx: Transaction<'static, Postgres>,
}

impl PgBatch {
    /// Writes the plan's payouts, their history and their jobs: each kind of row is one statement over arrays,
    /// so a batch of a thousand creations costs a handful of round trips, not thousands.
    async fn write_payouts(&mut self, plan: &Plan, now: OffsetDateTime) -> Result<(), StoreError> {
        let (new, changed): (Vec<_>, Vec<_>) = plan.payouts.iter().partition(|p| p.is_new);
        if !new.is_empty() {
            let mut recipients = Vec::with_capacity(new.len());
            for p in &new {
                recipients.push(
                    p.recipient.as_ref().ok_or_else(|| StoreError::Corrupt("a new payout without recipient".into()))?,
                );
            }
            sqlx::query(
                "INSERT INTO payouts (id, amount, currency, recipient_type, recipient_last4, recipient_holder,
                                      recipient_bik, recipient_secret, description, status, attempts, source_kind,
                                      source_key, source_account_id, hold_reference, created_at, updated_at)
                 SELECT id, amount, currency, kind, last4, holder, bik, secret, description, status, 0, source_kind,
                        source_key, source_account, hold, $14, $14
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[],
                             $15::text[])
                      AS p(id, amount, currency, kind, last4, holder, bik, secret, description, status, source_kind,
                           source_key, source_account, hold)",
            )
            .bind(new.iter().map(|p| p.id).collect::<Vec<_>>())
            .bind(new.iter().map(|p| p.amount).collect::<Vec<_>>())
            .bind(new.iter().map(|p| p.currency).collect::<Vec<_>>())
            .bind(recipients.iter().map(|r| r.kind).collect::<Vec<_>>())
            .bind(recipients.iter().map(|r| r.last4.as_str()).collect::<Vec<_>>())
            .bind(recipients.iter().map(|r| r.holder.as_str()).collect::<Vec<_>>())
            .bind(recipients.iter().map(|r| r.bik.as_deref()).collect::<Vec<_>>())
            .bind(recipients.iter().map(|r| r.secret.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|p| p.description.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|p| p.status.as_str()).collect::<Vec<_>>())
            .bind(new.iter().map(|p| p.source.as_ref().map(|(s, _)| s.kind())).collect::<Vec<_>>())
            .bind(new.iter().map(|p| p.source.as_ref().map(|(s, _)| s.key())).collect::<Vec<_>>())
            .bind(new.iter().map(|p| p.source.as_ref().map(|(_, a)| a.0)).collect::<Vec<_>>())
            .bind(now)
            .bind(
                new.iter()
                    .map(|p| p.source.as_ref().map(|_| crate::engine::payouts::hold_reference(p.id)))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *self.tx)
            .await?;
        }
        if !changed.is_empty() {
            sqlx::query(
                "UPDATE payouts SET description = v.description, status = v.status, failure_reason = v.reason,
                        attempts = v.attempts, gateway_reference = v.reference, updated_at = $7,
                        archived_at = CASE WHEN v.archived THEN COALESCE(payouts.archived_at, $7) ELSE NULL END
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $8::bool[])
                      AS v(id, description, status, reason, attempts, reference, archived)
                 WHERE payouts.id = v.id",
            )
            .bind(changed.iter().map(|p| p.id).collect::<Vec<_>>())
            .bind(changed.iter().map(|p| p.description.as_str()).collect::<Vec<_>>())
            .bind(changed.iter().map(|p| p.status.as_str()).collect::<Vec<_>>())
            .bind(changed.iter().map(|p| p.failure_reason.as_deref()).collect::<Vec<_>>())
            .bind(changed.iter().map(|p| p.attempts).collect::<Vec<_>>())
            .bind(changed.iter().map(|p| p.gateway_reference.as_deref()).collect::<Vec<_>>())
            .bind(now)
            .bind(changed.iter().map(|p| p.archived).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.payout_events.is_empty() {
            let events = &plan.payout_events;
            sqlx::query(
                "INSERT INTO payout_events (payout_id, from_status, to_status, actor, reason, created_at)
                 SELECT p, f, t, a, r, $6 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                      WITH ORDINALITY AS e(p, f, t, a, r, n)
                 ORDER BY n",
            )
            .bind(events.iter().map(|e| e.payout_id).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.from.map(|s| s.as_str())).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.to).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.reason.as_deref()).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.audit.is_empty() {
            let audit = &plan.audit;
            sqlx::query(
                "INSERT INTO audit_log (actor, action, target, before, after, at)
                 SELECT a, c, t, b, f, $6 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                      WITH ORDINALITY AS e(a, c, t, b, f, n)
                 ORDER BY n",
            )
            .bind(audit.iter().map(|a| a.actor.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|a| a.target.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|a| a.before.as_deref()).collect::<Vec<_>>())
            .bind(audit.iter().map(|a| a.after.as_deref()).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.new_jobs.is_empty() {
            let jobs = &plan.new_jobs;
            sqlx::query(
                "INSERT INTO jobs (kind, payload, status, run_at, max_attempts, created_at, updated_at)
                 SELECT k, p, 'queued', $4, m, $4, $4 FROM UNNEST($1::text[], $2::text[], $3::int[])
                      WITH ORDINALITY AS j(k, p, m, n)
                 ORDER BY n",
            )
            .bind(jobs.iter().map(|j| j.kind).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.payload.as_str()).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.job_ends.is_empty() {
            let ends = &plan.job_ends;
            sqlx::query(
                "UPDATE jobs SET status = CASE WHEN v.dead THEN 'dead' ELSE 'done' END,
                        last_error = COALESCE(v.error, jobs.last_error), lease_owner = NULL, lease_expires_at = NULL,
                        updated_at = $4
                 FROM UNNEST($1::bigint[], $2::bool[], $3::text[]) AS v(id, dead, error)
                 WHERE jobs.id = v.id AND jobs.status IN ('queued', 'dead')",
            )
            .bind(ends.iter().map(|j| j.job_id).collect::<Vec<_>>())
            .bind(ends.iter().map(|j| j.dead).collect::<Vec<_>>())
            .bind(ends.iter().map(|j| j.error.as_deref()).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}

impl BatchTx for PgBatch {
    async fn claim_notices(
        &mut self,
        claims: &[NoticeClaim],
        now: OffsetDateTime,
    ) -> Result<HashSet<OperationId>, StoreError> {
        if claims.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<Uuid> = claims.iter().map(|c| c.notice.operation_id.0).collect();
        let amounts: Vec<i64> = claims.iter().map(|c| c.notice.amount.minor()).collect();
        let currencies: Vec<&str> = claims.iter().map(|c| c.notice.amount.currency().code()).collect();
        let inns: Vec<&str> = claims.iter().map(|c| c.notice.payer_inn.as_str()).collect();
        let documents: Vec<&str> = claims.iter().map(|c| c.notice.document_number.as_str()).collect();
        let dates: Vec<OffsetDateTime> = claims.iter().map(|c| c.notice.document_date).collect();
        let statuses: Vec<&str> = claims.iter().map(|c| c.status.as_str()).collect();
        let applied_at: Vec<Option<OffsetDateTime>> = claims.iter().map(|c| c.transaction_id.map(|_| now)).collect();
        let transactions: Vec<Option<Uuid>> = claims.iter().map(|c| c.transaction_id).collect();
        // The claims arrive sorted by operation id; WITH ORDINALITY keeps that order for the inserts, which is
        // the order in which this transaction waits on other instances' uncommitted rows with the same ids.
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO bank_payments (operation_id, amount, currency, payer_inn, document_number, document_date,
                                        status, applied_at, transaction_id, received_at)
             SELECT operation_id, amount, currency, payer_inn, document_number, document_date, status, applied_at,
                    transaction_id, $10
             FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                         $7::text[], $8::timestamptz[], $9::uuid[])
                  WITH ORDINALITY AS c(operation_id, amount, currency, payer_inn, document_number, document_date,
                                       status, applied_at, transaction_id, n)
             ORDER BY n
             ON CONFLICT (operation_id) DO NOTHING RETURNING operation_id",
        )
        .bind(&ids)
        .bind(&amounts)
        .bind(&currencies)
        .bind(&inns)
        .bind(&documents)
        .bind(&dates)
        .bind(&statuses)
        .bind(&applied_at)
        .bind(&transactions)
        .bind(now)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(inserted.into_iter().map(OperationId).collect())
    }

    async fn ensure_organizations(&mut self, orgs: &[(Inn, String)]) -> Result<Vec<(Inn, AccountId)>, StoreError> {
        insert_organizations(&mut self.tx, orgs).await
    }

    async fn stored_notices(&mut self, ids: &[OperationId]) -> Result<HashMap<OperationId, BankNotice>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT operation_id, amount, currency, payer_inn, document_number, document_date
             FROM bank_payments WHERE operation_id = ANY($1)",
        )
        .bind(uuids(ids))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(|row| notice_from_pg_row(row).map(|notice| (notice.operation_id, notice))).collect()
    }

    async fn lock_waiting(&mut self, ids: &[OperationId]) -> Result<HashSet<OperationId>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        // Another instance applying the same notice holds its row; once it commits, the row no longer
        // matches `status = 'received'` and is skipped here, so the notice is credited once.
        let waiting: Vec<Uuid> = sqlx::query_scalar(
            "SELECT operation_id FROM bank_payments WHERE status = 'received' AND operation_id = ANY($1)
             ORDER BY operation_id FOR UPDATE",
        )
        .bind(uuids(ids))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(waiting.into_iter().map(OperationId).collect())
    }

    async fn claim_keys(&mut self, keys: &[String]) -> Result<KeyClaims, StoreError> {
        let mut claims = KeyClaims::default();
        if keys.is_empty() {
            return Ok(claims);
        }
        // A transaction-scoped advisory lock marks each key as being applied. It is only tried, never
        // waited for, so it cannot deadlock; a key another instance holds is answered "in flight". The
        // primary key of idempotency_keys stays the guard that makes a key take effect once.
        let in_flight: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM UNNEST($1::text[]) WITH ORDINALITY AS k(key, n)
             WHERE NOT pg_try_advisory_xact_lock(hashtextextended('idempotency:' || key, 0)) ORDER BY n",
        )
        .bind(keys)
        .fetch_all(&mut *self.tx)
        .await?;
        claims.in_flight.extend(in_flight);
        // Read after taking the locks: a key whose holder committed in between is seen as stored.
        let rows = sqlx::query("SELECT key, fingerprint, status, response FROM idempotency_keys WHERE key = ANY($1)")
            .bind(keys)
            .fetch_all(&mut *self.tx)
            .await?;
        for row in rows {
            let status: i32 = row.try_get(2)?;
            let status = u16::try_from(status).map_err(|_| StoreError::Corrupt(format!("response status {status}")))?;
            claims.stored.insert(
                row.try_get(0)?,
                StoredKey { fingerprint: row.try_get(1)?, response: StoredResponse { status, body: row.try_get(3)? } },
            );
        }
        Ok(claims)
    }

    async fn lock_holds(&mut self, references: &[String]) -> Result<HashMap<String, HoldState>, StoreError> {
        if references.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT reference, account_id, amount, status, transaction_id FROM holds WHERE reference = ANY($1)
             ORDER BY reference FOR UPDATE",
        )
        .bind(references)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                let reference: String = row.try_get(0)?;
                let status: String = row.try_get(3)?;
                let hold = hold_from_row(&reference, row.try_get(1)?, row.try_get(2)?, &status, row.try_get(4)?)?;
                Ok((reference, hold))
            })
            .collect()
    }

    async fn find_accounts(
        &mut self,
        kind: AccountKind,
        keys: &[String],
    ) -> Result<Vec<(String, AccountId)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT external_key, id FROM accounts WHERE kind = $1 AND currency = 'RUB' AND external_key = ANY($2)",
        )
        .bind(kind.as_str())
        .bind(keys)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, AccountId(row.try_get(1)?)))).collect()
    }

    async fn create_accounts(
        &mut self,
        kind: AccountKind,
        keys: &[String],
    ) -> Result<Vec<(String, AccountId)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        sqlx::query(
            "INSERT INTO accounts (kind, external_key, currency)
             SELECT $1, key, 'RUB' FROM UNNEST($2::text[]) WITH ORDINALITY AS k(key, n) ORDER BY n
             ON CONFLICT (kind, external_key, currency) DO NOTHING",
        )
        .bind(kind.as_str())
        .bind(&sorted)
        .execute(&mut *self.tx)
        .await?;
        self.find_accounts(kind, &sorted).await
    }

    async fn claim_jobs(
        &mut self,
        owner: &str,
        now: OffsetDateTime,
        lease: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<crate::store::payouts::ClaimedJob>, StoreError> {
        let rows = sqlx::query(super::claim_jobs_sql!("FOR UPDATE SKIP LOCKED"))
            .bind(owner)
            .bind(lease)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(crate::store::payouts::ClaimedJob {
                    id: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    payload: row.try_get(2)?,
                    attempts: row.try_get(3)?,
                    max_attempts: row.try_get(4)?,
                })
            })
            .collect()
    }

    async fn lock_jobs(&mut self, ids: &[i64]) -> Result<HashMap<i64, (String, Option<String>)>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query("SELECT id, status, lease_owner FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(ids)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?)))).collect()
    }

    async fn lock_payouts(&mut self, ids: &[Uuid]) -> Result<HashMap<Uuid, PayoutState>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT id, amount, currency, status, failure_reason, attempts, gateway_reference, description,
                    source_kind, source_key, source_account_id, archived_at, created_at, updated_at
             FROM payouts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            let state = super::payouts::payout_state_from_row!(&row);
            found.insert(state.id, state);
        }
        Ok(found)
    }

    async fn clock(&mut self) -> Result<OffsetDateTime, StoreError> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&mut *self.tx).await?)
    }

    async fn allocate_line_ids(&mut self, count: usize) -> Result<Vec<i64>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let count = i64::try_from(count).map_err(|_| StoreError::Corrupt("too many history lines".into()))?;
        Ok(sqlx::query_scalar("SELECT nextval('account_activity_id_seq') FROM generate_series(1, $1) ORDER BY 1")
            .bind(count)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    async fn lock_accounts(&mut self, ids: &[AccountId]) -> Result<BalanceSheet, StoreError> {
        let mut sheet = BalanceSheet::new();
        if ids.is_empty() {
            return Ok(sheet);
        }
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let rows = sqlx::query(
            "SELECT id, balance, held, allow_negative FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *self.tx)
        .await?;
        for row in rows {
            sheet.insert(
                AccountId(row.try_get(0)?),
                AccountBalance { balance: row.try_get(1)?, held: row.try_get(2)?, allow_negative: row.try_get(3)? },
            );
        }
        Ok(sheet)
    }

    async fn write_plan(
        &mut self,
        plan: &Plan,
        sheet: &BalanceSheet,
        touched: &[AccountId],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let transaction_ids: Vec<Uuid> = plan.transactions.iter().map(|t| t.id).collect();
        let kinds: Vec<&str> = plan.transactions.iter().map(|t| t.kind).collect();
        let keys: Vec<Option<&str>> = plan.transactions.iter().map(|t| t.idempotency_key.as_deref()).collect();
        let entry_transactions: Vec<Uuid> = plan.entries.iter().map(|(tx, _)| *tx).collect();
        let entry_accounts: Vec<i64> = plan.entries.iter().map(|(_, e)| e.account.0).collect();
        let amounts: Vec<i64> = plan.entries.iter().map(|(_, e)| e.amount).collect();
        let before: Vec<i64> = plan.entries.iter().map(|(_, e)| e.balance_before).collect();
        let after: Vec<i64> = plan.entries.iter().map(|(_, e)| e.balance_after).collect();
        let notice_ids: Vec<Uuid> = plan.notice_updates.iter().map(|u| u.operation_id.0).collect();
        let statuses: Vec<&str> = plan.notice_updates.iter().map(|u| u.status.as_str()).collect();
        let notice_transactions: Vec<Option<Uuid>> = plan.notice_updates.iter().map(|u| u.transaction_id).collect();
        let reasons: Vec<Option<&str>> = plan.notice_updates.iter().map(|u| u.failure_reason.as_deref()).collect();
        let updated: Vec<(i64, i64, i64)> = touched
            .iter()
            .filter_map(|id| sheet.get(*id).map(|account| (id.0, account.balance, account.held)))
            .collect();
        let lines = &plan.activity;
        let line_ids: Vec<i64> = lines.iter().map(|l| l.id).collect();
        let line_accounts: Vec<i64> = lines.iter().map(|l| l.account.0).collect();
        let line_kinds: Vec<&str> = lines.iter().map(|l| l.kind.as_str()).collect();
        let line_amounts: Vec<i64> = lines.iter().map(|l| l.amount).collect();
        let line_held: Vec<i64> = lines.iter().map(|l| l.held_change).collect();
        let line_counterparties: Vec<Option<i64>> = lines.iter().map(|l| l.counterparty.map(|u| u.get())).collect();
        let line_services: Vec<Option<i64>> = lines.iter().map(|l| l.order.map(|(s, _)| s.get())).collect();
        let line_orders: Vec<Option<i64>> = lines.iter().map(|l| l.order.map(|(_, o)| o.get())).collect();
        let line_transactions: Vec<Option<Uuid>> = lines.iter().map(|l| l.transaction_id).collect();
        let line_payouts: Vec<Option<Uuid>> = lines.iter().map(|l| l.payout).collect();
        let holds = &plan.holds;
        let hold_new: Vec<bool> = holds.iter().map(|h| h.state.is_new).collect();
        let hold_refs: Vec<&str> = holds.iter().map(|h| h.reference.as_str()).collect();
        let hold_accounts: Vec<i64> = holds.iter().map(|h| h.state.account.0).collect();
        let hold_amounts: Vec<i64> = holds.iter().map(|h| h.state.amount).collect();
        let hold_statuses: Vec<&str> = holds.iter().map(|h| h.state.status.as_str()).collect();
        let hold_transactions: Vec<Option<Uuid>> = holds.iter().map(|h| h.state.transaction_id).collect();
        let key_names: Vec<&str> = plan.keys.iter().map(|k| k.key.as_str()).collect();
        let key_fingerprints: Vec<&str> = plan.keys.iter().map(|k| k.fingerprint.as_str()).collect();
        let key_statuses: Vec<i32> = plan.keys.iter().map(|k| i32::from(k.response.status)).collect();
        let key_responses: Vec<&str> = plan.keys.iter().map(|k| k.response.body.as_str()).collect();
        let account_ids: Vec<i64> = updated.iter().map(|u| u.0).collect();
        let balances: Vec<i64> = updated.iter().map(|u| u.1).collect();
        let held: Vec<i64> = updated.iter().map(|u| u.2).collect();
        // Every row of the batch in ONE statement: each round trip to the server costs more than the rows.
        sqlx::query(
            "WITH new_transactions AS (
                 INSERT INTO ledger_transactions (id, kind, idempotency_key, created_at)
                 SELECT id, kind, key, $1 FROM UNNEST($2::uuid[], $3::text[], $4::text[]) AS t(id, kind, key)
             ), new_entries AS (
                 INSERT INTO entries (transaction_id, account_id, amount, balance_before, balance_after, created_at)
                 SELECT t, a, m, b, f, $1
                 FROM UNNEST($5::uuid[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
                      WITH ORDINALITY AS e(t, a, m, b, f, n)
                 ORDER BY n
             ), notice_updates AS (
                 UPDATE bank_payments SET status = v.status, transaction_id = v.tx, failure_reason = v.reason,
                        applied_at = $1
                 FROM UNNEST($10::uuid[], $11::text[], $12::uuid[], $13::text[]) AS v(id, status, tx, reason)
                 WHERE bank_payments.operation_id = v.id
             ), new_lines AS (
                 INSERT INTO account_activity (id, account_id, kind, amount, held_change, counterparty, service_id,
                                               order_id, transaction_id, payout_id, created_at)
                 SELECT id, a, k, m, h, c, s, o, t, p, $1
                 FROM UNNEST($17::bigint[], $18::bigint[], $19::text[], $20::bigint[], $21::bigint[], $22::bigint[],
                             $23::bigint[], $24::bigint[], $25::uuid[], $36::uuid[]) AS l(id, a, k, m, h, c, s, o, t, p)
             ), new_holds AS (
                 INSERT INTO holds (reference, account_id, amount, status, transaction_id, created_at, settled_at)
                 SELECT r, a, m, st, t, $1, CASE WHEN st = 'held' THEN NULL ELSE $1 END
                 FROM UNNEST($26::bool[], $27::text[], $28::bigint[], $29::bigint[], $30::text[], $31::uuid[])
                      AS h(new, r, a, m, st, t)
                 WHERE new
             ), settled_holds AS (
                 UPDATE holds SET status = h.st, transaction_id = h.t, settled_at = $1
                 FROM UNNEST($26::bool[], $27::text[], $30::text[], $31::uuid[]) AS h(new, r, st, t)
                 WHERE NOT h.new AND holds.reference = h.r
             ), new_keys AS (
                 INSERT INTO idempotency_keys (key, fingerprint, status, response, created_at)
                 SELECT k, f, s, r, $1 FROM UNNEST($32::text[], $33::text[], $34::int[], $35::text[]) AS k(k, f, s, r)
             )
             UPDATE accounts SET balance = v.balance, held = v.held, version = accounts.version + 1
             FROM UNNEST($14::bigint[], $15::bigint[], $16::bigint[]) AS v(id, balance, held)
             WHERE accounts.id = v.id",
        )
        .bind(now)
        .bind(&transaction_ids)
        .bind(&kinds)
        .bind(&keys)
        .bind(&entry_transactions)
        .bind(&entry_accounts)
        .bind(&amounts)
        .bind(&before)
        .bind(&after)
        .bind(&notice_ids)
        .bind(&statuses)
        .bind(&notice_transactions)
        .bind(&reasons)
        .bind(&account_ids)
        .bind(&balances)
        .bind(&held)
        .bind(&line_ids)
        .bind(&line_accounts)
        .bind(&line_kinds)
        .bind(&line_amounts)
        .bind(&line_held)
        .bind(&line_counterparties)
        .bind(&line_services)
        .bind(&line_orders)
        .bind(&line_transactions)
        .bind(&hold_new)
        .bind(&hold_refs)
        .bind(&hold_accounts)
        .bind(&hold_amounts)
        .bind(&hold_statuses)
        .bind(&hold_transactions)
        .bind(&key_names)
        .bind(&key_fingerprints)
        .bind(&key_statuses)
        .bind(&key_responses)
        .bind(&line_payouts)
        .execute(&mut *self.tx)
        .await?;
        self.write_payouts(plan, now).await?;
        if !plan.unused_accounts.is_empty() {
            let ids: Vec<i64> = plan.unused_accounts.iter().map(|id| id.0).collect();
            sqlx::query("DELETE FROM accounts WHERE id = ANY($1) AND balance = 0 AND held = 0")
                .bind(&ids)
                .execute(&mut *self.tx)
                .await?;
        }
        if !plan.conflicts.is_empty() {
            let ids: Vec<Uuid> = plan.conflicts.iter().map(|c| c.operation_id.0).collect();
            let fields: Vec<&str> = plan.conflicts.iter().map(|c| c.differing_fields.as_str()).collect();
            let notices: Vec<&str> = plan.conflicts.iter().map(|c| c.notice.as_str()).collect();
            sqlx::query(
                "INSERT INTO notice_conflicts (operation_id, differing_fields, notice, received_at)
                 SELECT i, f, n, $4 FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS c(i, f, n)",
            )
            .bind(&ids)
            .bind(&fields)
            .bind(&notices)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("DELETE FROM notice_conflicts WHERE id <= (SELECT MAX(id) FROM notice_conflicts) - $1")
                .bind(MAX_KEPT_NOTICES)
                .execute(&mut *self.tx)
                .await?;
        }
        if !plan.rejected.is_empty() {
            let reasons: Vec<&str> = plan.rejected.iter().map(|r| r.reason.as_str()).collect();
            let details: Vec<&str> = plan.rejected.iter().map(|r| r.details.as_str()).collect();
            let bodies: Vec<&str> = plan.rejected.iter().map(|r| r.body.as_str()).collect();
            let received: Vec<OffsetDateTime> = plan.rejected.iter().map(|r| r.received_at).collect();
            sqlx::query(
                "INSERT INTO rejected_notices (reason, details, body, received_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[])",
            )
            .bind(&reasons)
            .bind(&details)
            .bind(&bodies)
            .bind(&received)
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("DELETE FROM rejected_notices WHERE id <= (SELECT MAX(id) FROM rejected_notices) - $1")
                .bind(MAX_KEPT_NOTICES)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}
