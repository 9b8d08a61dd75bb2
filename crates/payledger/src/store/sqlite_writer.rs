//! The ledger engine's SQLite write connection: one rusqlite connection owned by the writer thread.
//!
//! SQLite runs in-process, so the cheapest way to write a batch is to run every statement synchronously
//! on the thread that owns the connection, with cached prepared statements and no per-statement hand-off
//! to another thread. The writer thread is dedicated to this, so blocking it is fine. Reads stay on the
//! async reader pool (WAL lets them run beside the writer).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use payledger_core::{AccountBalance, AccountId, BalanceSheet, EntryDraft, Inn, OperationId};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::batch::{
    ActivityLine, ApplyTarget, ClaimedImport, ConflictRecord, HoldState, HoldWrite, ImportClaim, JobEnd, KeyClaims,
    LockedDiscrepancy, NewJob, NewKey, NewStatementLine, NewTransaction, NoticeClaim, NoticeCounterpart,
    NoticeDocument, NoticeUpdate, PaymentCandidate, PayoutEvent, PayoutState, PendingLine, Plan, RejectedNotice,
    SectionPeriod, StoredKey, StoredNotice, StoredResponse, UnlinedPayment, hold_reference,
};
use super::payouts::{PAYOUT_STATE_SQL, PayoutRow};
use super::sqlite_wal::WalRestart;
use super::{AccountKind, AuditEntry, BatchTx, MAX_KEPT_NOTICES, StoreError, hold_from_row, notice_from_row};
use crate::timefmt::sqlite_text;

#[path = "sqlite_statements.rs"]
mod statements;

/// How many prepared statements the writer keeps.
const STATEMENT_CACHE: usize = 64;

/// The writer's connection.
#[derive(Debug)]
pub struct SqliteWriter {
    connection: Connection,
    wal: Arc<WalRestart>,
}

impl SqliteWriter {
    /// Opens the database file (already created and migrated by the store) for batch writes.
    pub(super) fn open(
        path: &Path,
        cache_kib: i64,
        wal: Arc<WalRestart>,
        busy_timeout: Duration,
    ) -> Result<SqliteWriter, StoreError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(busy_timeout)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL makes every commit durable before the writer answers its callers.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.pragma_update(None, "cache_size", -cache_kib)?;
        super::sqlite_wal::keep_short(&connection)?;
        // A cached statement with a `LIMIT ?4` (the delivery claim) is not compiled again on every batch.
        super::sqlite_reads::plan_once(&connection)?;
        Ok(SqliteWriter { connection, wal })
    }

    /// Starts a batch transaction, taking SQLite's write lock at once.
    pub fn begin_batch(&mut self) -> Result<SqliteBatch<'_>, StoreError> {
        self.wal.finish_checkpoint(&self.connection);
        Ok(SqliteBatch { tx: self.connection.transaction_with_behavior(TransactionBehavior::Immediate)? })
    }
}

/// One batch transaction on the writer connection.
pub struct SqliteBatch<'c> {
    pub(super) tx: Transaction<'c>,
}

pub(super) fn parse_time(text: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| StoreError::Corrupt(format!("time {text}")))
}

fn uuid_from(bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes).map_err(|_| StoreError::Corrupt("a stored id is not 16 bytes".into()))
}

impl SqliteBatch<'_> {
    /// Writes the payouts created or changed, in their final state.
    fn write_payouts(&self, payouts: &[PayoutState], now: &str) -> Result<(), StoreError> {
        for p in payouts {
            let (source_kind, source_key, source_account) = match &p.source {
                Some((source, account)) => (Some(source.kind()), Some(source.key()), Some(account.0)),
                None => (None, None, None),
            };
            if p.is_new {
                let recipient =
                    p.recipient.as_ref().ok_or_else(|| StoreError::Corrupt("a new payout without recipient".into()))?;
                self.tx
                    .prepare_cached(
                        "INSERT INTO payouts (id, amount, currency, recipient_type, recipient_last4, recipient_holder,
                                              recipient_bik, recipient_secret, description, status, failure_reason,
                                              attempts, gateway_reference, source_kind, source_key, source_account_id,
                                              hold_reference, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?18, ?17, ?17)",
                    )?
                    .execute(params![
                        p.id.as_bytes(),
                        p.amount,
                        p.currency,
                        recipient.kind,
                        recipient.last4,
                        recipient.holder,
                        recipient.bik,
                        recipient.secret,
                        p.description,
                        p.status.as_str(),
                        p.failure_reason,
                        p.attempts,
                        p.gateway_reference,
                        source_kind,
                        source_key,
                        source_account,
                        now,
                        source_account.map(|_| hold_reference(p.id))
                    ])?;
            } else {
                self.tx
                    .prepare_cached(
                        "UPDATE payouts SET description = ?2, status = ?3, failure_reason = ?4, attempts = ?5,
                                gateway_reference = ?6, updated_at = ?7,
                                archived_at = CASE WHEN ?8 THEN COALESCE(archived_at, ?7) ELSE NULL END
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        p.id.as_bytes(),
                        p.description,
                        p.status.as_str(),
                        p.failure_reason,
                        p.attempts,
                        p.gateway_reference,
                        now,
                        p.archived
                    ])?;
            }
        }
        Ok(())
    }

    /// Appends payout status changes to their history.
    fn write_payout_events(&self, events: &[PayoutEvent], now: &str) -> Result<(), StoreError> {
        for e in events {
            self.tx
                .prepare_cached(
                    "INSERT INTO payout_events (payout_id, from_status, to_status, actor, reason, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    e.payout_id.as_bytes(),
                    e.from.map(|s| s.as_str()),
                    e.to,
                    e.actor.as_str(),
                    e.reason,
                    now
                ])?;
        }
        Ok(())
    }

    /// Writes the audit rows of the changes users asked for.
    pub(super) fn write_audit(&self, audit: &[AuditEntry], now: &str) -> Result<(), StoreError> {
        for a in audit {
            self.tx
                .prepare_cached(
                    "INSERT INTO audit_log (actor, action, target, before, after, at, request_id, client_address)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    a.actor,
                    a.action,
                    a.target,
                    a.before,
                    a.after,
                    now,
                    a.request_id(),
                    a.client_address()
                ])?;
        }
        Ok(())
    }

    /// Enqueues jobs, due at once.
    fn write_new_jobs(&self, jobs: &[NewJob], now: &str) -> Result<(), StoreError> {
        for j in jobs {
            self.tx
                .prepare_cached(
                    "INSERT INTO jobs (kind, payload, status, run_at, max_attempts, created_at, updated_at)
                     VALUES (?1, ?2, 'queued', ?3, ?4, ?3, ?3)",
                )?
                .execute(params![j.kind, j.payload, now, j.max_attempts])?;
        }
        Ok(())
    }

    /// Ends the jobs whose payouts this batch moved on (done, or dead with their error).
    fn write_job_ends(&self, ends: &[JobEnd], now: &str) -> Result<(), StoreError> {
        for j in ends {
            self.tx
                .prepare_cached(
                    "UPDATE jobs SET status = CASE WHEN ?2 THEN 'dead' ELSE 'done' END, last_error = COALESCE(?3, last_error),
                            lease_owner = NULL, lease_expires_at = NULL, updated_at = ?4
                     WHERE id = ?1 AND status IN ('queued', 'dead')",
                )?
                .execute(params![j.job_id, j.dead, j.error, now])?;
        }
        Ok(())
    }

    /// Writes the new ledger transactions.
    fn write_transactions(&self, transactions: &[NewTransaction], now: &str) -> Result<(), StoreError> {
        let mut transaction = self.tx.prepare_cached(
            "INSERT INTO ledger_transactions (id, kind, idempotency_key, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for t in transactions {
            transaction.execute(params![t.id.as_bytes(), t.kind, t.idempotency_key, now])?;
        }
        Ok(())
    }

    /// Writes the transactions' entries.
    fn write_entries(&self, entries: &[(Uuid, EntryDraft)], now: &str) -> Result<(), StoreError> {
        let mut entry = self.tx.prepare_cached(
            "INSERT INTO entries (transaction_id, account_id, amount, balance_before, balance_after, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (transaction_id, e) in entries {
            entry.execute(params![
                transaction_id.as_bytes(),
                e.account.0,
                e.amount,
                e.balance_before,
                e.balance_after,
                now
            ])?;
        }
        Ok(())
    }

    /// Writes the final balance and held money of each touched account.
    fn write_balances(&self, sheet: &BalanceSheet, touched: &[AccountId]) -> Result<(), StoreError> {
        let mut account = self
            .tx
            .prepare_cached("UPDATE accounts SET balance = ?2, held = ?3, version = version + 1 WHERE id = ?1")?;
        for id in touched {
            if let Some(balance) = sheet.get(*id) {
                account.execute(params![id.0, balance.balance, balance.held])?;
            }
        }
        Ok(())
    }

    /// Writes the new lines of users' histories.
    fn write_activity(&self, activity: &[ActivityLine], now: &str) -> Result<(), StoreError> {
        if !activity.is_empty() {
            let mut line = self.tx.prepare_cached(
                "INSERT INTO account_activity (id, account_id, kind, amount, held_change, counterparty, service_id,
                                               order_id, payout_id, transaction_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for l in activity {
                line.execute(params![
                    l.id,
                    l.account.0,
                    l.kind.as_str(),
                    l.amount,
                    l.held_change,
                    l.counterparty.map(|user| user.get()),
                    l.order.map(|(service, _)| service.get()),
                    l.order.map(|(_, order)| order.get()),
                    l.payout.as_ref().map(|id| id.as_bytes().as_slice()),
                    l.transaction_id.as_ref().map(|id| id.as_bytes().as_slice()),
                    now
                ])?;
            }
        }
        Ok(())
    }

    /// Places new reservations and settles (captures or releases) stored ones.
    fn write_holds(&self, holds: &[HoldWrite], now: &str) -> Result<(), StoreError> {
        for hold in holds {
            let state = &hold.state;
            let transaction = state.transaction_id.as_ref().map(|id| id.as_bytes().as_slice());
            let settled_at = (state.status != payledger_core::balances::HoldStatus::Held).then_some(now);
            if state.is_new {
                self.tx
                    .prepare_cached(
                        "INSERT INTO holds (reference, account_id, amount, status, transaction_id, created_at, settled_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        hold.reference,
                        state.account.0,
                        state.amount,
                        state.status.as_str(),
                        transaction,
                        now,
                        settled_at
                    ])?;
            } else {
                self.tx
                    .prepare_cached(
                        "UPDATE holds SET status = ?2, transaction_id = ?3, settled_at = ?4 WHERE reference = ?1",
                    )?
                    .execute(params![hold.reference, state.status.as_str(), transaction, settled_at])?;
            }
        }
        Ok(())
    }

    /// Deletes the accounts this batch opened but did not use, unless they hold money after all.
    fn delete_unused_accounts(&self, accounts: &[AccountId]) -> Result<(), StoreError> {
        for account in accounts {
            self.tx
                .prepare_cached("DELETE FROM accounts WHERE id = ?1 AND balance = 0 AND held = 0")?
                .execute(params![account.0])?;
        }
        Ok(())
    }

    /// Stores idempotency keys with the responses a replay sends.
    fn write_keys(&self, keys: &[NewKey], now: &str) -> Result<(), StoreError> {
        if !keys.is_empty() {
            let mut key = self.tx.prepare_cached(
                "INSERT INTO idempotency_keys (key, fingerprint, status, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for k in keys {
                key.execute(params![k.key, k.fingerprint, k.response.status, k.response.body, now])?;
            }
        }
        Ok(())
    }

    /// Writes the status changes of stored notices (applied, or failed with a reason).
    fn write_notice_updates(&self, updates: &[NoticeUpdate], now: &str) -> Result<(), StoreError> {
        let mut notice = self.tx.prepare_cached(
            "UPDATE bank_payments SET status = ?2, transaction_id = ?3, failure_reason = ?4, applied_at = ?5
             WHERE operation_id = ?1",
        )?;
        for update in updates {
            notice.execute(params![
                update.operation_id.0.as_bytes(),
                update.status.as_str(),
                update.transaction_id.as_ref().map(|id| id.as_bytes().as_slice()),
                update.failure_reason,
                now
            ])?;
        }
        Ok(())
    }

    /// Keeps conflicting notices for operators, pruning all but the newest [`MAX_KEPT_NOTICES`].
    fn write_conflicts(&self, conflicts: &[ConflictRecord], now: &str) -> Result<(), StoreError> {
        if !conflicts.is_empty() {
            let mut conflict = self.tx.prepare_cached(
                "INSERT INTO notice_conflicts (operation_id, differing_fields, notice, received_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for c in conflicts {
                conflict.execute(params![c.operation_id.0.as_bytes(), c.differing_fields, c.notice, now])?;
            }
            self.tx
                .prepare_cached("DELETE FROM notice_conflicts WHERE id <= (SELECT MAX(id) FROM notice_conflicts) - ?1")?
                .execute(params![MAX_KEPT_NOTICES])?;
        }
        Ok(())
    }

    /// Keeps rejected notices for operators, pruning all but the newest [`MAX_KEPT_NOTICES`].
    fn write_rejected(&self, rejected: &[RejectedNotice]) -> Result<(), StoreError> {
        if !rejected.is_empty() {
            let mut statement = self.tx.prepare_cached(
                "INSERT INTO rejected_notices (reason, details, body, received_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in rejected {
                statement.execute(params![r.reason, r.details, r.body, sqlite_text(r.received_at)])?;
            }
            self.tx
                .prepare_cached("DELETE FROM rejected_notices WHERE id <= (SELECT MAX(id) FROM rejected_notices) - ?1")?
                .execute(params![MAX_KEPT_NOTICES])?;
        }
        Ok(())
    }

    fn stored_notice(&self, id: OperationId) -> Result<Option<StoredNotice>, StoreError> {
        let mut statement = self.tx.prepare_cached(
            "SELECT operation_id, amount, currency, payer_inn, document_number, document_date, status, failure_reason
             FROM bank_payments WHERE operation_id = ?1",
        )?;
        let row = statement
            .query_row(params![id.0.as_bytes()], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    (row.get::<_, String>(6)?, row.get::<_, Option<String>>(7)?),
                ))
            })
            .optional()?;
        row.map(|(id, amount, currency, inn, document, date, (status, reason))| {
            let notice = notice_from_row(uuid_from(&id)?, amount, &currency, &inn, document, parse_time(&date)?)?;
            Ok(StoredNotice::new(notice, &status, reason))
        })
        .transpose()
    }
}

impl BatchTx for SqliteBatch<'_> {
    async fn claim_notices(
        &mut self,
        claims: &[NoticeClaim],
        now: OffsetDateTime,
    ) -> Result<HashSet<OperationId>, StoreError> {
        let now = sqlite_text(now);
        let mut statement = self.tx.prepare_cached(
            "INSERT INTO bank_payments (operation_id, amount, currency, payer_inn, document_number, document_date,
                                        status, applied_at, transaction_id, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (operation_id) DO NOTHING",
        )?;
        let mut inserted = HashSet::with_capacity(claims.len());
        for claim in claims {
            let notice = &claim.notice;
            let changed = statement.execute(params![
                notice.operation_id.0.as_bytes(),
                notice.amount.minor(),
                notice.amount.currency().code(),
                notice.payer_inn.as_str(),
                notice.document_number,
                sqlite_text(notice.document_date),
                claim.status.as_str(),
                claim.transaction_id.map(|_| now.as_str()),
                claim.transaction_id.as_ref().map(|id| id.as_bytes().as_slice()),
                now,
            ])?;
            if changed == 1 {
                inserted.insert(notice.operation_id);
            }
        }
        Ok(inserted)
    }

    async fn ensure_organizations(&mut self, orgs: &[(Inn, String)]) -> Result<Vec<(Inn, AccountId)>, StoreError> {
        let mut organization = self.tx.prepare_cached(
            "INSERT INTO organizations (inn, name, name_folded) VALUES (?1, ?2, ?3) ON CONFLICT (inn) DO NOTHING",
        )?;
        let mut account = self.tx.prepare_cached(
            "INSERT INTO accounts (kind, external_key, currency) VALUES ('organization', ?1, 'RUB')
             ON CONFLICT (kind, external_key, currency) DO NOTHING",
        )?;
        let mut find = self.tx.prepare_cached(
            "SELECT id FROM accounts WHERE kind = 'organization' AND external_key = ?1 AND currency = 'RUB'",
        )?;
        let mut found = Vec::with_capacity(orgs.len());
        for (inn, name) in orgs {
            organization.execute(params![inn.as_str(), name, super::fold_name(name)])?;
            account.execute(params![inn.as_str()])?;
            found.push((inn.clone(), AccountId(find.query_row(params![inn.as_str()], |row| row.get(0))?)));
        }
        Ok(found)
    }

    async fn stored_notices(&mut self, ids: &[OperationId]) -> Result<HashMap<OperationId, StoredNotice>, StoreError> {
        let mut stored = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(notice) = self.stored_notice(*id)? {
                stored.insert(*id, notice);
            }
        }
        Ok(stored)
    }

    async fn lock_waiting(&mut self, ids: &[OperationId]) -> Result<HashSet<OperationId>, StoreError> {
        // The batch's IMMEDIATE transaction already holds the database's only write lock.
        let mut statement =
            self.tx.prepare_cached("SELECT 1 FROM bank_payments WHERE operation_id = ?1 AND status = 'received'")?;
        let mut waiting = HashSet::new();
        for id in ids {
            if statement.exists(params![id.0.as_bytes()])? {
                waiting.insert(*id);
            }
        }
        Ok(waiting)
    }

    async fn claim_keys(&mut self, keys: &[String]) -> Result<KeyClaims, StoreError> {
        // The batch's IMMEDIATE transaction holds the database's only write lock, so no other transaction
        // can be applying a key: each is either stored or free.
        let mut statement =
            self.tx.prepare_cached("SELECT fingerprint, status, response FROM idempotency_keys WHERE key = ?1")?;
        let mut claims = KeyClaims::default();
        for key in keys {
            let stored = statement
                .query_row(params![key], |row| {
                    Ok(StoredKey {
                        fingerprint: row.get(0)?,
                        response: StoredResponse { status: row.get(1)?, body: row.get(2)? },
                    })
                })
                .optional()?;
            if let Some(stored) = stored {
                claims.stored.insert(key.clone(), stored);
            }
        }
        Ok(claims)
    }

    async fn lock_holds(&mut self, references: &[String]) -> Result<HashMap<String, HoldState>, StoreError> {
        let mut statement = self
            .tx
            .prepare_cached("SELECT account_id, amount, status, transaction_id FROM holds WHERE reference = ?1")?;
        let mut holds = HashMap::with_capacity(references.len());
        for reference in references {
            let row = statement
                .query_row(params![reference], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<Vec<u8>>>(3)?,
                    ))
                })
                .optional()?;
            if let Some((account, amount, status, transaction)) = row {
                let transaction = transaction.map(|bytes| uuid_from(&bytes)).transpose()?;
                holds.insert(reference.clone(), hold_from_row(reference, account, amount, &status, transaction)?);
            }
        }
        Ok(holds)
    }

    async fn claim_imports(
        &mut self,
        claims: &[ImportClaim],
        now: OffsetDateTime,
    ) -> Result<HashMap<[u8; 32], ClaimedImport>, StoreError> {
        self.claim_statement_imports(claims, &sqlite_text(now))
    }

    async fn import_accounts(&mut self, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        self.accounts_of_imports(ids)
    }

    async fn insert_statement_lines(&mut self, lines: &[NewStatementLine<'_>]) -> Result<Vec<Option<i64>>, StoreError> {
        self.insert_lines(lines)
    }

    async fn pending_lines(&mut self, today: time::Date) -> Result<Vec<PendingLine>, StoreError> {
        self.pending_statement_lines(today)
    }

    async fn unlined_payments(
        &mut self,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<UnlinedPayment>, StoreError> {
        self.unlined(from, before)
    }

    async fn section_periods(&mut self, finishing: &[i64]) -> Result<Vec<SectionPeriod>, StoreError> {
        self.periods(finishing)
    }

    async fn payment_candidates(
        &mut self,
        documents: &[(String, String)],
        operation_ids: &[Uuid],
    ) -> Result<Vec<PaymentCandidate>, StoreError> {
        self.candidates(documents, operation_ids)
    }

    async fn lock_reconciliation(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn apply_targets(&mut self, line_ids: &[i64]) -> Result<HashMap<i64, ApplyTarget>, StoreError> {
        self.statement_apply_targets(line_ids)
    }

    async fn notice_counterparts(
        &mut self,
        documents: &[NoticeDocument],
    ) -> Result<Vec<NoticeCounterpart>, StoreError> {
        self.statement_counterparts(documents)
    }

    async fn lock_discrepancies(&mut self, ids: &[i64]) -> Result<HashMap<i64, LockedDiscrepancy>, StoreError> {
        self.lock_statement_discrepancies(ids)
    }

    async fn find_accounts(
        &mut self,
        kind: AccountKind,
        keys: &[String],
    ) -> Result<Vec<(String, AccountId)>, StoreError> {
        let mut find = self
            .tx
            .prepare_cached("SELECT id FROM accounts WHERE kind = ?1 AND external_key = ?2 AND currency = 'RUB'")?;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(id) = find.query_row(params![kind.as_str(), key], |row| row.get(0)).optional()? {
                found.push((key.clone(), AccountId(id)));
            }
        }
        Ok(found)
    }

    async fn create_accounts(
        &mut self,
        kind: AccountKind,
        keys: &[String],
    ) -> Result<Vec<(String, AccountId)>, StoreError> {
        let mut create = self.tx.prepare_cached(
            "INSERT INTO accounts (kind, external_key, currency) VALUES (?1, ?2, 'RUB')
             ON CONFLICT (kind, external_key, currency) DO NOTHING",
        )?;
        for key in keys {
            create.execute(params![kind.as_str(), key])?;
        }
        drop(create);
        self.find_accounts(kind, keys).await
    }

    async fn claim_jobs(
        &mut self,
        owner: &str,
        now: OffsetDateTime,
        lease: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<crate::store::payouts::ClaimedJob>, StoreError> {
        let mut statement = self.tx.prepare_cached(super::queries::jobs::claim_jobs_sql!(""))?;
        let rows = statement.query_map(params![owner, sqlite_text(lease), sqlite_text(now), limit], |row| {
            Ok(crate::store::payouts::ClaimedJob {
                id: row.get(0)?,
                kind: row.get(1)?,
                payload: row.get(2)?,
                attempts: row.get(3)?,
                max_attempts: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    async fn lock_jobs(&mut self, ids: &[i64]) -> Result<HashMap<i64, (String, Option<String>)>, StoreError> {
        let mut statement = self.tx.prepare_cached("SELECT status, lease_owner FROM jobs WHERE id = ?1")?;
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = statement.query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?))).optional()? {
                found.insert(*id, row);
            }
        }
        Ok(found)
    }

    async fn lock_payouts(&mut self, ids: &[Uuid]) -> Result<HashMap<Uuid, PayoutState>, StoreError> {
        let mut statement = self.tx.prepare_cached(PAYOUT_STATE_SQL)?;
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            let row = statement
                .query_row(params![id.as_bytes()], |row| {
                    Ok(PayoutRow::<String> {
                        id: *id,
                        amount: row.get(0)?,
                        currency: row.get(1)?,
                        status: row.get(2)?,
                        failure_reason: row.get(3)?,
                        attempts: row.get(4)?,
                        gateway_reference: row.get(5)?,
                        description: row.get(6)?,
                        source_kind: row.get(7)?,
                        source_key: row.get(8)?,
                        source_account_id: row.get(9)?,
                        archived: row.get::<_, Option<String>>(10)?.is_some(),
                        created_at: row.get(11)?,
                        updated_at: row.get(12)?,
                    })
                })
                .optional()?;
            if let Some(row) = row {
                let created_at = parse_time(&row.created_at)?;
                let updated_at = parse_time(&row.updated_at)?;
                found.insert(*id, row.into_state(created_at, updated_at)?);
            }
        }
        Ok(found)
    }

    async fn clock(&mut self) -> Result<OffsetDateTime, StoreError> {
        // One writer in one process: its clock is the only one that dates lines.
        Ok(OffsetDateTime::now_utc())
    }

    async fn allocate_line_ids(&mut self, count: usize) -> Result<Vec<i64>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        // The single writer holds the write lock, so the ids after the largest stored one are free.
        let last: i64 = self
            .tx
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM account_activity")?
            .query_row([], |row| row.get(0))?;
        let count = i64::try_from(count).map_err(|_| StoreError::Corrupt("too many history lines".into()))?;
        Ok((last + 1..=last + count).collect())
    }

    async fn lock_accounts(&mut self, ids: &[AccountId]) -> Result<BalanceSheet, StoreError> {
        let mut statement =
            self.tx.prepare_cached("SELECT balance, held, allow_negative FROM accounts WHERE id = ?1")?;
        let mut sheet = BalanceSheet::new();
        for id in ids {
            let balance = statement.query_row(params![id.0], |row| {
                Ok(AccountBalance { balance: row.get(0)?, held: row.get(1)?, allow_negative: row.get(2)? })
            })?;
            sheet.insert(*id, balance);
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
        let now = sqlite_text(now);
        // The statements run in the order they always have: the unused accounts are deleted only after the
        // balances are written, so an account the batch did put money in stays.
        self.write_payouts(payouts, &now)?;
        self.write_payout_events(payout_events, &now)?;
        self.write_audit(audit, &now)?;
        self.write_new_jobs(new_jobs, &now)?;
        self.write_job_ends(job_ends, &now)?;
        self.write_transactions(transactions, &now)?;
        self.write_entries(entries, &now)?;
        self.write_balances(sheet, touched)?;
        self.write_activity(activity, &now)?;
        self.write_holds(holds, &now)?;
        self.delete_unused_accounts(unused_accounts)?;
        self.write_keys(keys, &now)?;
        self.write_notice_updates(notice_updates, &now)?;
        self.write_conflicts(conflicts, &now)?;
        self.write_rejected(rejected)?;
        self.write_import_sections(import_sections)?;
        self.write_statement_matches(statement_matches, &now)?;
        self.write_statement_payments(statement_payments, late_notices, matches_by_operation, &now)?;
        self.write_new_discrepancies(new_discrepancies, &now)?;
        self.write_discrepancy_updates(discrepancy_updates, &now)?;
        self.finish_writes(completed_imports, matched_payments, &now)?;
        self.write_events(events, &now)
    }

    async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit()?)
    }

    async fn rollback(self) -> Result<(), StoreError> {
        Ok(self.tx.rollback()?)
    }
}
