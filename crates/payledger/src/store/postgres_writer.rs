//! The PostgreSQL batch transaction (the ledger's only writer of balances), on a pooled connection.
//!
//! Batch writes pass each column as an array and expand the rows with `UNNEST`, so a batch of any size is
//! one statement per table. Concurrent batches from other instances coordinate only through the unique
//! operation id (claimed in ascending order) and account row locks (taken in ascending id order).

use std::collections::{HashMap, HashSet};

use payledger_core::{AccountBalance, AccountId, BalanceSheet, BankNotice, EntryDraft, Inn, OperationId};
use sqlx::postgres::{PgArguments, PgPool};
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::batch::{
    ActivityLine, ApplyTarget, ClaimedImport, HoldState, HoldWrite, ImportClaim, JobEnd, KeyClaims, LockedDiscrepancy,
    NewJob, NewKey, NewStatementLine, NewTransaction, NoticeClaim, NoticeCounterpart, NoticeDocument, NoticeUpdate,
    PaymentCandidate, PayoutEvent, PayoutState, PendingLine, Plan, SectionPeriod, StoredKey, StoredNotice,
    StoredResponse, UnlinedPayment, hold_reference,
};
use super::postgres::insert_organizations;
use super::{AccountKind, AuditEntry, BatchTx, StoreError, hold_from_row, notice_from_row};

#[path = "postgres_notices.rs"]
mod notices;
#[path = "postgres_statements.rs"]
mod statements;

/// One batch transaction on a pooled connection.
pub struct PgBatch {
    pub(super) tx: Transaction<'static, Postgres>,
}

impl PgBatch {
    /// Starts a batch transaction (READ COMMITTED: row locks and unique indexes do the serializing).
    pub(super) async fn begin(pool: &PgPool, large: bool) -> Result<PgBatch, StoreError> {
        let mut tx = pool.begin().await?;
        // A large batch plans its statements for their arguments and the tables as they are now. A prepared
        // statement settles on a generic plan after five runs: one made while `idempotency_keys` was nearly
        // empty scanned it whole until an ANALYZE replaced it (with autovacuum off: 144 µs a command for the
        // claims of batches of 1,000 transfers, against 7 µs). Small batches keep cached plans (planning
        // each cost single transfers ~11 %); there autovacuum's ANALYZE keeps plans current.
        if large {
            sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut *tx).await?;
        }
        Ok(PgBatch { tx })
    }
}

fn uuids(ids: &[OperationId]) -> Vec<Uuid> {
    ids.iter().map(|id| id.0).collect()
}

fn notice_from_pg_row(row: &sqlx::postgres::PgRow) -> Result<BankNotice, StoreError> {
    let currency: String = row.try_get(2)?;
    let payer_inn: String = row.try_get(3)?;
    notice_from_row(row.try_get(0)?, row.try_get(1)?, &currency, &payer_inn, row.try_get(4)?, row.try_get(5)?)
}

/// A statement being built, with its parameters bound so far.
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// The rows the ledger statement writes, beside the touched accounts' balances.
struct LedgerRows<'p> {
    transactions: &'p [NewTransaction],
    entries: &'p [(Uuid, EntryDraft)],
    notice_updates: &'p [NoticeUpdate],
    activity: &'p [ActivityLine],
    holds: &'p [HoldWrite],
    keys: &'p [NewKey],
    sheet: &'p BalanceSheet,
    touched: &'p [AccountId],
}

/// Binds the new ledger transactions' columns ($2–$4).
fn bind_transactions<'q>(query: PgQuery<'q>, transactions: &[NewTransaction]) -> PgQuery<'q> {
    let ids: Vec<Uuid> = transactions.iter().map(|t| t.id).collect();
    let kinds: Vec<&str> = transactions.iter().map(|t| t.kind).collect();
    let keys: Vec<Option<&str>> = transactions.iter().map(|t| t.idempotency_key.as_deref()).collect();
    query.bind(&ids).bind(&kinds).bind(&keys)
}

/// Binds the entries' columns ($5–$9).
fn bind_entries<'q>(query: PgQuery<'q>, entries: &[(Uuid, EntryDraft)]) -> PgQuery<'q> {
    let transactions: Vec<Uuid> = entries.iter().map(|(tx, _)| *tx).collect();
    let accounts: Vec<i64> = entries.iter().map(|(_, e)| e.account.0).collect();
    let amounts: Vec<i64> = entries.iter().map(|(_, e)| e.amount).collect();
    let before: Vec<i64> = entries.iter().map(|(_, e)| e.balance_before).collect();
    let after: Vec<i64> = entries.iter().map(|(_, e)| e.balance_after).collect();
    query.bind(&transactions).bind(&accounts).bind(&amounts).bind(&before).bind(&after)
}

/// Binds the stored notices' status changes ($10–$13).
fn bind_notice_updates<'q>(query: PgQuery<'q>, updates: &[NoticeUpdate]) -> PgQuery<'q> {
    let ids: Vec<Uuid> = updates.iter().map(|u| u.operation_id.0).collect();
    let statuses: Vec<&str> = updates.iter().map(|u| u.status.as_str()).collect();
    let transactions: Vec<Option<Uuid>> = updates.iter().map(|u| u.transaction_id).collect();
    let reasons: Vec<Option<&str>> = updates.iter().map(|u| u.failure_reason.as_deref()).collect();
    query.bind(&ids).bind(&statuses).bind(&transactions).bind(&reasons)
}

/// Binds the touched accounts' final balances and held money ($14–$16).
fn bind_balances<'q>(query: PgQuery<'q>, sheet: &BalanceSheet, touched: &[AccountId]) -> PgQuery<'q> {
    let updated: Vec<(i64, i64, i64)> =
        touched.iter().filter_map(|id| sheet.get(*id).map(|account| (id.0, account.balance, account.held))).collect();
    let account_ids: Vec<i64> = updated.iter().map(|u| u.0).collect();
    let balances: Vec<i64> = updated.iter().map(|u| u.1).collect();
    let held: Vec<i64> = updated.iter().map(|u| u.2).collect();
    query.bind(&account_ids).bind(&balances).bind(&held)
}

/// Binds the history lines' columns but their payouts ($17–$25; the payouts are $36, see
/// [`bind_activity_payouts`]).
fn bind_activity<'q>(query: PgQuery<'q>, lines: &[ActivityLine]) -> PgQuery<'q> {
    let ids: Vec<i64> = lines.iter().map(|l| l.id).collect();
    let accounts: Vec<i64> = lines.iter().map(|l| l.account.0).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l.kind.as_str()).collect();
    let amounts: Vec<i64> = lines.iter().map(|l| l.amount).collect();
    let held: Vec<i64> = lines.iter().map(|l| l.held_change).collect();
    let counterparties: Vec<Option<i64>> = lines.iter().map(|l| l.counterparty.map(|u| u.get())).collect();
    let services: Vec<Option<i64>> = lines.iter().map(|l| l.order.map(|(s, _)| s.get())).collect();
    let orders: Vec<Option<i64>> = lines.iter().map(|l| l.order.map(|(_, o)| o.get())).collect();
    let transactions: Vec<Option<Uuid>> = lines.iter().map(|l| l.transaction_id).collect();
    query
        .bind(&ids)
        .bind(&accounts)
        .bind(&kinds)
        .bind(&amounts)
        .bind(&held)
        .bind(&counterparties)
        .bind(&services)
        .bind(&orders)
        .bind(&transactions)
}

/// Binds the history lines' payouts ($36: the column came after the others, and the statement keeps its
/// parameters' numbers).
fn bind_activity_payouts<'q>(query: PgQuery<'q>, lines: &[ActivityLine]) -> PgQuery<'q> {
    let payouts: Vec<Option<Uuid>> = lines.iter().map(|l| l.payout).collect();
    query.bind(&payouts)
}

/// Binds the reservations placed or settled ($26–$31).
fn bind_holds<'q>(query: PgQuery<'q>, holds: &[HoldWrite]) -> PgQuery<'q> {
    let new: Vec<bool> = holds.iter().map(|h| h.state.is_new).collect();
    let references: Vec<&str> = holds.iter().map(|h| h.reference.as_str()).collect();
    let accounts: Vec<i64> = holds.iter().map(|h| h.state.account.0).collect();
    let amounts: Vec<i64> = holds.iter().map(|h| h.state.amount).collect();
    let statuses: Vec<&str> = holds.iter().map(|h| h.state.status.as_str()).collect();
    let transactions: Vec<Option<Uuid>> = holds.iter().map(|h| h.state.transaction_id).collect();
    query.bind(&new).bind(&references).bind(&accounts).bind(&amounts).bind(&statuses).bind(&transactions)
}

/// Binds the idempotency keys with their stored responses ($32–$35).
fn bind_keys<'q>(query: PgQuery<'q>, keys: &[NewKey]) -> PgQuery<'q> {
    let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    let fingerprints: Vec<&str> = keys.iter().map(|k| k.fingerprint.as_str()).collect();
    let statuses: Vec<i32> = keys.iter().map(|k| i32::from(k.response.status)).collect();
    let responses: Vec<&str> = keys.iter().map(|k| k.response.body.as_str()).collect();
    query.bind(&names).bind(&fingerprints).bind(&statuses).bind(&responses)
}

impl PgBatch {
    /// Writes the ledger rows (transactions, entries, notice updates, history lines, holds, keys) and the
    /// touched accounts' balances in ONE statement: each round trip to the server costs more than the rows.
    /// Each kind of row binds its own columns, in the order of the statement's parameters.
    async fn write_ledger_rows(&mut self, rows: &LedgerRows<'_>, now: OffsetDateTime) -> Result<(), StoreError> {
        let query = sqlx::query(
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
        .bind(now);
        let query = bind_transactions(query, rows.transactions);
        let query = bind_entries(query, rows.entries);
        let query = bind_notice_updates(query, rows.notice_updates);
        let query = bind_balances(query, rows.sheet, rows.touched);
        let query = bind_activity(query, rows.activity);
        let query = bind_holds(query, rows.holds);
        let query = bind_keys(query, rows.keys);
        let query = bind_activity_payouts(query, rows.activity);
        query.execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Writes the payouts created or changed, in their final state: each kind of row is one statement over
    /// arrays, so a batch of a thousand creations costs a handful of round trips, not thousands.
    async fn write_payouts(&mut self, payouts: &[PayoutState], now: OffsetDateTime) -> Result<(), StoreError> {
        let (new, changed): (Vec<_>, Vec<_>) = payouts.iter().partition(|p| p.is_new);
        if !new.is_empty() {
            self.write_new_payouts(&new, now).await?;
        }
        if !changed.is_empty() {
            self.write_changed_payouts(&changed, now).await?;
        }
        Ok(())
    }

    /// Inserts new payouts.
    async fn write_new_payouts(&mut self, new: &[&PayoutState], now: OffsetDateTime) -> Result<(), StoreError> {
        let mut recipients = Vec::with_capacity(new.len());
        for p in new {
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
        .bind(new.iter().map(|p| p.source.as_ref().map(|_| hold_reference(p.id))).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Updates changed payouts to their final state.
    async fn write_changed_payouts(&mut self, changed: &[&PayoutState], now: OffsetDateTime) -> Result<(), StoreError> {
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
        Ok(())
    }

    /// Appends payout status changes to their history, in the plan's order.
    async fn write_payout_events(&mut self, events: &[PayoutEvent], now: OffsetDateTime) -> Result<(), StoreError> {
        if !events.is_empty() {
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
        Ok(())
    }

    /// Writes the audit rows of the changes users asked for, in the plan's order.
    pub(super) async fn write_audit(&mut self, audit: &[AuditEntry], now: OffsetDateTime) -> Result<(), StoreError> {
        if !audit.is_empty() {
            sqlx::query(
                "INSERT INTO audit_log (actor, action, target, before, after, at, request_id, client_address)
                 SELECT a, c, t, b, f, $6, r, i
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[], $8::text[])
                      WITH ORDINALITY AS e(a, c, t, b, f, r, i, n)
                 ORDER BY n",
            )
            .bind(audit.iter().map(|a| a.actor.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|a| a.target.as_str()).collect::<Vec<_>>())
            .bind(audit.iter().map(|a| a.before.as_deref()).collect::<Vec<_>>())
            .bind(audit.iter().map(|a| a.after.as_deref()).collect::<Vec<_>>())
            .bind(now)
            .bind(audit.iter().map(AuditEntry::request_id).collect::<Vec<_>>())
            .bind(audit.iter().map(AuditEntry::client_address).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    /// Enqueues jobs, due at once, in the plan's order.
    async fn write_new_jobs(&mut self, jobs: &[NewJob], now: OffsetDateTime) -> Result<(), StoreError> {
        if !jobs.is_empty() {
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
        Ok(())
    }

    /// Ends the jobs whose payouts this batch moved on (done, or dead with their error).
    async fn write_job_ends(&mut self, ends: &[JobEnd], now: OffsetDateTime) -> Result<(), StoreError> {
        if !ends.is_empty() {
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

    /// Deletes the accounts this batch opened but did not use, unless they hold money after all.
    async fn delete_unused_accounts(&mut self, accounts: &[AccountId]) -> Result<(), StoreError> {
        if !accounts.is_empty() {
            let ids: Vec<i64> = accounts.iter().map(|id| id.0).collect();
            sqlx::query("DELETE FROM accounts WHERE id = ANY($1) AND balance = 0 AND held = 0")
                .bind(&ids)
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

    async fn stored_notices(&mut self, ids: &[OperationId]) -> Result<HashMap<OperationId, StoredNotice>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT operation_id, amount, currency, payer_inn, document_number, document_date, status, failure_reason
             FROM bank_payments WHERE operation_id = ANY($1)",
        )
        .bind(uuids(ids))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                let notice = notice_from_pg_row(row)?;
                let stored = StoredNotice::new(notice, row.try_get::<&str, _>(6)?, row.try_get(7)?);
                Ok((stored.notice.operation_id, stored))
            })
            .collect()
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

    async fn claim_imports(
        &mut self,
        claims: &[ImportClaim],
        now: OffsetDateTime,
    ) -> Result<HashMap<[u8; 32], ClaimedImport>, StoreError> {
        self.claim_statement_imports(claims, now).await
    }

    async fn import_accounts(&mut self, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        self.accounts_of_imports(ids).await
    }

    async fn insert_statement_lines(&mut self, lines: &[NewStatementLine<'_>]) -> Result<Vec<Option<i64>>, StoreError> {
        self.insert_lines(lines).await
    }

    async fn pending_lines(&mut self, today: time::Date) -> Result<Vec<PendingLine>, StoreError> {
        self.pending_statement_lines(today).await
    }

    async fn unlined_payments(
        &mut self,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<UnlinedPayment>, StoreError> {
        self.unlined(from, before).await
    }

    async fn section_periods(&mut self, finishing: &[i64]) -> Result<Vec<SectionPeriod>, StoreError> {
        self.periods(finishing).await
    }

    async fn payment_candidates(
        &mut self,
        documents: &[(String, String)],
        operation_ids: &[Uuid],
    ) -> Result<Vec<PaymentCandidate>, StoreError> {
        self.candidates(documents, operation_ids).await
    }

    async fn lock_reconciliation(&mut self) -> Result<(), StoreError> {
        self.lock_reconciliation_decisions().await
    }

    async fn apply_targets(&mut self, line_ids: &[i64]) -> Result<HashMap<i64, ApplyTarget>, StoreError> {
        self.statement_apply_targets(line_ids).await
    }

    async fn notice_counterparts(
        &mut self,
        documents: &[NoticeDocument],
    ) -> Result<Vec<NoticeCounterpart>, StoreError> {
        self.statement_counterparts(documents).await
    }

    async fn lock_discrepancies(&mut self, ids: &[i64]) -> Result<HashMap<i64, LockedDiscrepancy>, StoreError> {
        self.lock_statement_discrepancies(ids).await
    }

    async fn find_accounts(
        &mut self,
        kind: AccountKind,
        keys: &[String],
    ) -> Result<Vec<(String, AccountId)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One index seek per key (LATERAL behind OFFSET 0, which the planner cannot flatten). With `external_key
        // = ANY($2)`, statistics taken while the table was small made PostgreSQL read every account of the kind
        // and compare each with the whole array: 220 ms per batch at 10,000 organizations and 1,000 keys
        // (measured in a statement import, where it took 126 of 208 seconds of database time).
        let rows = sqlx::query(
            "SELECT a.external_key, a.id FROM UNNEST($2::text[]) AS k(key)
             CROSS JOIN LATERAL (SELECT external_key, id FROM accounts
                                 WHERE kind = $1 AND external_key = k.key AND currency = 'RUB' OFFSET 0) a",
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
        let rows = sqlx::query(super::queries::jobs::claim_jobs_sql!("FOR UPDATE SKIP LOCKED"))
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
        // No `..`: a field added to `Plan` must not compile here until this backend writes it. Reading the
        // fields one by one compiled with a new field unread, and its rows were silently never written.
        let Plan {
            transactions,
            entries,
            notice_updates,
            conflicts,
            rejected,
            activity,
            holds,
            keys,
            payouts,
            payout_events,
            new_jobs,
            job_ends,
            audit,
            unused_accounts,
            discrepancy_updates,
            import_sections,
            statement_matches,
            new_discrepancies,
            statement_payments,
            late_notices,
            matches_by_operation,
            matched_payments,
            completed_imports,
            events,
            wanted_events: _,
        } = plan;
        // The statements run in the order they always have: the unused accounts are deleted only after the
        // balances are written, so an account the batch did put money in stays.
        let ledger = LedgerRows { transactions, entries, notice_updates, activity, holds, keys, sheet, touched };
        self.write_ledger_rows(&ledger, now).await?;
        self.write_payouts(payouts, now).await?;
        self.write_payout_events(payout_events, now).await?;
        self.write_audit(audit, now).await?;
        self.write_new_jobs(new_jobs, now).await?;
        self.write_job_ends(job_ends, now).await?;
        self.delete_unused_accounts(unused_accounts).await?;
        self.write_conflicts(conflicts, now).await?;
        self.write_rejected(rejected).await?;
        self.write_import_sections(import_sections).await?;
        self.write_statement_matches(statement_matches, now).await?;
        self.write_statement_payments(statement_payments, late_notices, matches_by_operation, now).await?;
        self.write_new_discrepancies(new_discrepancies, now).await?;
        self.write_discrepancy_updates(discrepancy_updates, now).await?;
        self.finish_writes(completed_imports, matched_payments, now).await?;
        self.write_events(events, now).await?;
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}
