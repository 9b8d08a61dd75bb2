//! The embedded SQLite store: one writer connection, a pool of readers, WAL with `synchronous=FULL`.
//!
//! Batch writes pass each table's rows as one JSON array parameter and expand it with `json_each`, so a
//! batch of any size costs one prepared statement per table instead of one per row.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use payledger_core::{AccountBalance, AccountId, BalanceSheet, BankNotice, Inn, OperationId};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    BalanceLogRow, BatchTx, MAX_KEPT_NOTICES, StoreError, VERIFY_COUNTS, VerifyReport, notice_from_row, verify_checks,
};
use crate::engine::batch::{NoticeClaim, Plan};
use crate::timefmt::rfc3339;

/// How many read connections serve API reads while the writer works.
const READER_CONNECTIONS: u32 = 4;
const PAGE_SIZE: u32 = 1024;
/// How long a connection waits for SQLite's file lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The writer's page cache, in KiB (SQLite's negative `cache_size`): the hot parts of the indexes stay in
/// memory, so a batch's inserts rarely read from disk.
const WRITER_CACHE_KIB: i64 = 16 * 1024;
/// How often the background checkpointer copies the WAL into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// The WAL size (in pages) at which a commit checkpoints by itself, a safety net for when the background
/// checkpointer falls behind. Kept well above what one interval writes, so commits normally never pay for it.
const AUTOCHECKPOINT_PAGES: i64 = 20_000;

/// The SQLite database: the writer connection and the reader pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its folder.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Database(sqlx::Error::Io(error)))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL makes every commit durable before the writer answers its callers.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .page_size(PAGE_SIZE);
        let writer_options = options
            .clone()
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
            .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES.to_string());
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .connect_with(writer_options)
            .await?;
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(READER_CONNECTIONS)
            .connect_with(options)
            .await?;
        let store = SqliteStore { writer, reader };
        tokio::spawn(checkpoint_in_background(store.reader.clone()));
        Ok(store)
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite").run(&self.writer).await?;
        Ok(())
    }

    /// Starts a batch transaction on the writer connection, taking SQLite's write lock at once.
    pub async fn begin_batch(&self) -> Result<SqliteBatch, StoreError> {
        Ok(SqliteBatch { tx: self.writer.begin_with("BEGIN IMMEDIATE").await? })
    }

    pub(super) async fn ensure_organizations(
        &self,
        orgs: &[(Inn, String)],
    ) -> Result<Vec<(Inn, AccountId)>, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let found = insert_organizations(&mut tx, orgs).await?;
        tx.commit().await?;
        Ok(found)
    }

    pub(super) async fn system_account(&self, key: &str) -> Result<AccountId, StoreError> {
        sqlx::query(
            "INSERT INTO accounts (kind, external_key, currency, allow_negative) VALUES ('system', $1, 'RUB', 1)
             ON CONFLICT (kind, external_key, currency) DO NOTHING",
        )
        .bind(key)
        .execute(&self.writer)
        .await?;
        let id = sqlx::query_scalar(
            "SELECT id FROM accounts WHERE kind = 'system' AND external_key = $1 AND currency = 'RUB'",
        )
        .bind(key)
        .fetch_one(&self.writer)
        .await?;
        Ok(AccountId(id))
    }

    pub(super) async fn organization_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM organizations").fetch_one(&self.reader).await?)
    }

    pub(super) async fn organization_balance(&self, inn: &Inn) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(a.balance, 0) FROM organizations o
             LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
             WHERE o.inn = $1",
        )
        .bind(inn.as_str())
        .fetch_optional(&self.reader)
        .await?)
    }

    pub(super) async fn balance_log(
        &self,
        inn: &Inn,
        before: i64,
        limit: i64,
    ) -> Result<Option<Vec<BalanceLogRow>>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let account: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT a.id FROM organizations o
             LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
             WHERE o.inn = $1",
        )
        .bind(inn.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(account) = account else { return Ok(None) };
        let Some(account) = account else { return Ok(Some(Vec::new())) };
        let rows = sqlx::query(
            "SELECT e.id, e.amount, e.balance_before, e.balance_after, p.operation_id, p.document_number,
                    p.document_date, e.created_at
             FROM entries e LEFT JOIN bank_payments p ON p.transaction_id = e.transaction_id
             WHERE e.account_id = $1 AND e.id < $2 ORDER BY e.id DESC LIMIT $3",
        )
        .bind(account)
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let log = rows
            .into_iter()
            .map(|row| {
                Ok(BalanceLogRow {
                    entry_id: row.try_get(0)?,
                    amount: row.try_get(1)?,
                    balance_before: row.try_get(2)?,
                    balance_after: row.try_get(3)?,
                    operation_id: row.try_get(4)?,
                    document_number: row.try_get(5)?,
                    document_date: row.try_get(6)?,
                    created_at: row.try_get(7)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(log))
    }

    pub(super) async fn waiting_notices(&self, limit: i64) -> Result<Vec<BankNotice>, StoreError> {
        let rows = sqlx::query(
            "SELECT operation_id, amount, currency, payer_inn, document_number, document_date
             FROM bank_payments WHERE status = 'received' ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(notice_from_sqlite_row).collect()
    }

    pub(super) async fn verify(&self) -> Result<VerifyReport, StoreError> {
        // One read transaction, so every check sees the same snapshot.
        let mut tx = self.reader.begin().await?;
        let counts = sqlx::query(VERIFY_COUNTS).fetch_one(&mut *tx).await?;
        let mut report = VerifyReport {
            accounts: counts.try_get(0)?,
            transactions: counts.try_get(1)?,
            entries: counts.try_get(2)?,
            bank_payments: counts.try_get(3)?,
            problems: Vec::new(),
        };
        for (name, sql) in verify_checks("hex(") {
            let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
            report.problems.extend(found.into_iter().map(|problem| format!("{name}: {problem}")));
        }
        tx.rollback().await?;
        Ok(report)
    }
}

/// Copies committed WAL frames into the database file off the writer's path.
///
/// A PASSIVE checkpoint never blocks the writer or readers. Without it, the commit that crosses the
/// auto-checkpoint threshold would do the copying (and its fsyncs) while every caller in its batch waits.
/// The task ends when the pool is closed.
async fn checkpoint_in_background(pool: SqlitePool) {
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if pool.is_closed() {
            break;
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            if pool.is_closed() {
                break;
            }
            tracing::warn!(%error, "background WAL checkpoint failed");
        }
    }
}

fn notice_from_sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Result<BankNotice, StoreError> {
    let currency: String = row.try_get(2)?;
    let payer_inn: String = row.try_get(3)?;
    notice_from_row(row.try_get(0)?, row.try_get(1)?, &currency, &payer_inn, row.try_get(4)?, row.try_get(5)?)
}

/// Creates the organizations and accounts that do not exist yet and returns every account id.
async fn insert_organizations(
    conn: &mut sqlx::SqliteConnection,
    orgs: &[(Inn, String)],
) -> Result<Vec<(Inn, AccountId)>, StoreError> {
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = json!(orgs.iter().map(|(inn, name)| json!([inn.as_str(), name])).collect::<Vec<_>>()).to_string();
    sqlx::query(
        "INSERT INTO organizations (inn, name) SELECT value->>0, value->>1 FROM json_each($1) WHERE true
         ON CONFLICT (inn) DO NOTHING",
    )
    .bind(&rows)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO accounts (kind, external_key, currency) SELECT 'organization', value->>0, 'RUB'
         FROM json_each($1) WHERE true ON CONFLICT (kind, external_key, currency) DO NOTHING",
    )
    .bind(&rows)
    .execute(&mut *conn)
    .await?;
    let found = sqlx::query(
        "SELECT external_key, id FROM accounts WHERE kind = 'organization' AND currency = 'RUB'
         AND external_key IN (SELECT value->>0 FROM json_each($1))",
    )
    .bind(&rows)
    .fetch_all(&mut *conn)
    .await?;
    found
        .into_iter()
        .map(|row| {
            let key: String = row.try_get(0)?;
            let inn = Inn::parse(&key).map_err(|_| StoreError::Corrupt(format!("account key {key}")))?;
            Ok((inn, AccountId(row.try_get(1)?)))
        })
        .collect()
}

/// Rows (tuples) as one JSON array of arrays, expanded in SQL with `json_each`.
fn json_rows<T: serde::Serialize>(rows: impl Iterator<Item = T>) -> Result<String, StoreError> {
    serde_json::to_string(&rows.collect::<Vec<T>>())
        .map_err(|error| StoreError::Corrupt(format!("batch rows: {error}")))
}

fn id_list(ids: &[OperationId]) -> String {
    json!(ids.iter().map(|id| hex(id.0)).collect::<Vec<_>>()).to_string()
}

/// A UUID as 32 hex digits, which SQL turns into its 16-byte blob with `unhex()`.
fn hex(id: Uuid) -> String {
    id.simple().to_string()
}

/// One batch transaction on the writer connection.
pub struct SqliteBatch {
    tx: Transaction<'static, Sqlite>,
}

impl BatchTx for SqliteBatch {
    async fn claim_notices(
        &mut self,
        claims: &[NoticeClaim],
        now: OffsetDateTime,
    ) -> Result<HashSet<OperationId>, StoreError> {
        if claims.is_empty() {
            return Ok(HashSet::new());
        }
        // BEGIN IMMEDIATE holds SQLite's only write lock, so the ids stored now are exactly the ones this
        // batch will not insert. One aggregated read replaces a returned row per notice, and the insert
        // then has no conflict to skip: an unexpected one fails the batch instead of going unnoticed.
        let ids: Vec<OperationId> = claims.iter().map(|claim| claim.notice.operation_id).collect();
        let stored: String = sqlx::query_scalar(
            "SELECT json_group_array(lower(hex(operation_id))) FROM bank_payments
             WHERE operation_id IN (SELECT unhex(value) FROM json_each($1))",
        )
        .bind(id_list(&ids))
        .fetch_one(&mut *self.tx)
        .await?;
        let stored: HashSet<Uuid> = serde_json::from_str::<Vec<Uuid>>(&stored)
            .map_err(|error| StoreError::Corrupt(format!("stored operation ids: {error}")))?
            .into_iter()
            .collect();
        let new_claims: Vec<&NoticeClaim> =
            claims.iter().filter(|claim| !stored.contains(&claim.notice.operation_id.0)).collect();
        if new_claims.is_empty() {
            return Ok(HashSet::new());
        }
        let now = rfc3339(now);
        let rows = json_rows(new_claims.iter().map(|claim| {
            let notice = &claim.notice;
            (
                hex(notice.operation_id.0),
                notice.amount.minor(),
                notice.amount.currency().code(),
                notice.payer_inn.as_str(),
                &notice.document_number,
                rfc3339(notice.document_date),
                claim.status.as_str(),
                claim.transaction_id.map(|_| &now),
                claim.transaction_id.map(hex),
            )
        }))?;
        sqlx::query(
            "INSERT INTO bank_payments (operation_id, amount, currency, payer_inn, document_number, document_date,
                                        status, applied_at, transaction_id, received_at)
             SELECT unhex(value->>0), value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7,
                    unhex(value->>8), $2
             FROM json_each($1)",
        )
        .bind(rows)
        .bind(now.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(new_claims.iter().map(|claim| claim.notice.operation_id).collect())
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
             FROM bank_payments WHERE operation_id IN (SELECT unhex(value) FROM json_each($1))",
        )
        .bind(id_list(ids))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(|row| notice_from_sqlite_row(row).map(|notice| (notice.operation_id, notice))).collect()
    }

    async fn lock_waiting(&mut self, ids: &[OperationId]) -> Result<HashSet<OperationId>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        // BEGIN IMMEDIATE already holds the database's only write lock, so reading is enough.
        let waiting: Vec<Uuid> = sqlx::query_scalar(
            "SELECT operation_id FROM bank_payments
             WHERE status = 'received' AND operation_id IN (SELECT unhex(value) FROM json_each($1))",
        )
        .bind(id_list(ids))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(waiting.into_iter().map(OperationId).collect())
    }

    async fn lock_accounts(&mut self, ids: &[AccountId]) -> Result<BalanceSheet, StoreError> {
        let mut sheet = BalanceSheet::new();
        if ids.is_empty() {
            return Ok(sheet);
        }
        let list = json!(ids.iter().map(|id| id.0).collect::<Vec<_>>()).to_string();
        // One JSON row instead of a row per account: each returned row is a round trip to SQLite's thread.
        let rows: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(id, balance, held, allow_negative)) FROM accounts
             WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(list)
        .fetch_one(&mut *self.tx)
        .await?;
        let rows: Vec<(i64, i64, i64, i64)> =
            serde_json::from_str(&rows).map_err(|error| StoreError::Corrupt(format!("account balances: {error}")))?;
        for (id, balance, held, allow_negative) in rows {
            sheet.insert(AccountId(id), AccountBalance { balance, held, allow_negative: allow_negative != 0 });
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
        let now = rfc3339(now);
        if !plan.transactions.is_empty() {
            let rows = json_rows(plan.transactions.iter().map(|t| (hex(t.id), t.kind, &t.idempotency_key)))?;
            sqlx::query(
                "INSERT INTO ledger_transactions (id, kind, idempotency_key, created_at)
                 SELECT unhex(value->>0), value->>1, value->>2, $2 FROM json_each($1)",
            )
            .bind(rows)
            .bind(&now)
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.entries.is_empty() {
            let rows = json_rows(
                plan.entries.iter().map(|(tx, e)| (hex(*tx), e.account.0, e.amount, e.balance_before, e.balance_after)),
            )?;
            sqlx::query(
                "INSERT INTO entries (transaction_id, account_id, amount, balance_before, balance_after, created_at)
                 SELECT unhex(value->>0), value->>1, value->>2, value->>3, value->>4, $2 FROM json_each($1) ORDER BY key",
            )
            .bind(rows)
            .bind(&now)
            .execute(&mut *self.tx)
            .await?;
        }
        let balances: Vec<_> = touched
            .iter()
            .filter_map(|id| sheet.get(*id).map(|account| (id.0, account.balance, account.held)))
            .collect();
        if !balances.is_empty() {
            sqlx::query(
                "UPDATE accounts SET balance = v.value->>1, held = v.value->>2, version = version + 1
                 FROM json_each($1) AS v WHERE accounts.id = v.value->>0",
            )
            .bind(json_rows(balances.into_iter())?)
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.notice_updates.is_empty() {
            let rows = json!(
                plan.notice_updates
                    .iter()
                    .map(|u| json!([
                        hex(u.operation_id.0),
                        u.status.as_str(),
                        u.transaction_id.map(hex),
                        u.failure_reason
                    ]))
                    .collect::<Vec<_>>()
            );
            sqlx::query(
                "UPDATE bank_payments SET status = v.value->>1, transaction_id = unhex(v.value->>2),
                        failure_reason = v.value->>3, applied_at = $2
                 FROM json_each($1) AS v WHERE bank_payments.operation_id = unhex(v.value->>0)",
            )
            .bind(rows.to_string())
            .bind(&now)
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.conflicts.is_empty() {
            let rows = json!(
                plan.conflicts
                    .iter()
                    .map(|c| json!([hex(c.operation_id.0), c.differing_fields, c.notice]))
                    .collect::<Vec<_>>()
            );
            sqlx::query(
                "INSERT INTO notice_conflicts (operation_id, differing_fields, notice, received_at)
                 SELECT unhex(value->>0), value->>1, value->>2, $2 FROM json_each($1)",
            )
            .bind(rows.to_string())
            .bind(&now)
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("DELETE FROM notice_conflicts WHERE id <= (SELECT MAX(id) FROM notice_conflicts) - $1")
                .bind(MAX_KEPT_NOTICES)
                .execute(&mut *self.tx)
                .await?;
        }
        if !plan.rejected.is_empty() {
            let rows = json!(
                plan.rejected
                    .iter()
                    .map(|r| json!([r.reason, r.details, r.body, rfc3339(r.received_at)]))
                    .collect::<Vec<_>>()
            );
            sqlx::query(
                "INSERT INTO rejected_notices (reason, details, body, received_at)
                 SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each($1)",
            )
            .bind(rows.to_string())
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
