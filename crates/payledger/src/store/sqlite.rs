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

use super::{
    BalanceLogRow, BatchTx, MAX_KEPT_NOTICES, MAX_PROBLEMS_LISTED, StoreError, VERIFY_CHECKS, VERIFY_COUNTS,
    VerifyReport, notice_from_row,
};
use crate::engine::batch::{NoticeClaim, Plan};
use crate::timefmt::rfc3339;

/// How many read connections serve API reads while the writer works.
const READER_CONNECTIONS: u32 = 4;
/// How long a connection waits for SQLite's file lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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
            .busy_timeout(BUSY_TIMEOUT);
        let writer =
            SqlitePoolOptions::new().max_connections(1).min_connections(1).connect_with(options.clone()).await?;
        let reader = SqlitePoolOptions::new().max_connections(READER_CONNECTIONS).connect_with(options).await?;
        Ok(SqliteStore { writer, reader })
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
        for (name, sql) in VERIFY_CHECKS {
            let found: Vec<String> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{sql} LIMIT {MAX_PROBLEMS_LISTED}")))
                    .fetch_all(&mut *tx)
                    .await?;
            report.problems.extend(found.into_iter().map(|problem| format!("{name}: {problem}")));
        }
        tx.rollback().await?;
        Ok(report)
    }
}

fn notice_from_sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Result<BankNotice, StoreError> {
    let operation_id: String = row.try_get(0)?;
    let currency: String = row.try_get(2)?;
    let payer_inn: String = row.try_get(3)?;
    notice_from_row(&operation_id, row.try_get(1)?, &currency, &payer_inn, row.try_get(4)?, row.try_get(5)?)
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

fn id_list(ids: &[OperationId]) -> String {
    json!(ids.iter().map(|id| id.to_string()).collect::<Vec<_>>()).to_string()
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
        let now = rfc3339(now);
        let rows = json!(
            claims
                .iter()
                .map(|claim| {
                    let notice = &claim.notice;
                    json!([
                        notice.operation_id.to_string(),
                        notice.amount.minor(),
                        notice.amount.currency().code(),
                        notice.payer_inn.as_str(),
                        notice.document_number,
                        rfc3339(notice.document_date),
                        claim.status.as_str(),
                        claim.transaction_id.map(|_| &now),
                        claim.transaction_id.map(|id| id.to_string()),
                    ])
                })
                .collect::<Vec<_>>()
        )
        .to_string();
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO bank_payments (operation_id, amount, currency, payer_inn, document_number, document_date,
                                        status, applied_at, transaction_id, received_at)
             SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7,
                    value->>8, $2
             FROM json_each($1) WHERE true
             ON CONFLICT (operation_id) DO NOTHING RETURNING operation_id",
        )
        .bind(rows)
        .bind(now.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        inserted
            .iter()
            .map(|id| {
                uuid::Uuid::parse_str(id)
                    .map(OperationId)
                    .map_err(|_| StoreError::Corrupt(format!("operation id {id}")))
            })
            .collect()
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
             FROM bank_payments WHERE operation_id IN (SELECT value FROM json_each($1))",
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
        let waiting: Vec<String> = sqlx::query_scalar(
            "SELECT operation_id FROM bank_payments
             WHERE status = 'received' AND operation_id IN (SELECT value FROM json_each($1))",
        )
        .bind(id_list(ids))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(waiting.iter().filter_map(|id| uuid::Uuid::parse_str(id).ok().map(OperationId)).collect())
    }

    async fn lock_accounts(&mut self, ids: &[AccountId]) -> Result<BalanceSheet, StoreError> {
        let mut sheet = BalanceSheet::new();
        if ids.is_empty() {
            return Ok(sheet);
        }
        let list = json!(ids.iter().map(|id| id.0).collect::<Vec<_>>()).to_string();
        let rows = sqlx::query(
            "SELECT id, balance, held, allow_negative FROM accounts
             WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id",
        )
        .bind(list)
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
        let now = rfc3339(now);
        if !plan.transactions.is_empty() {
            let rows = json!(
                plan.transactions
                    .iter()
                    .map(|t| json!([t.id.to_string(), t.kind, t.idempotency_key]))
                    .collect::<Vec<_>>()
            );
            sqlx::query(
                "INSERT INTO ledger_transactions (id, kind, idempotency_key, created_at)
                 SELECT value->>0, value->>1, value->>2, $2 FROM json_each($1)",
            )
            .bind(rows.to_string())
            .bind(&now)
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.entries.is_empty() {
            let rows = json!(
                plan.entries
                    .iter()
                    .map(|(tx, e)| json!([tx.to_string(), e.account.0, e.amount, e.balance_before, e.balance_after]))
                    .collect::<Vec<_>>()
            );
            sqlx::query(
                "INSERT INTO entries (transaction_id, account_id, amount, balance_before, balance_after, created_at)
                 SELECT value->>0, value->>1, value->>2, value->>3, value->>4, $2 FROM json_each($1) ORDER BY key",
            )
            .bind(rows.to_string())
            .bind(&now)
            .execute(&mut *self.tx)
            .await?;
        }
        let balances: Vec<_> = touched
            .iter()
            .filter_map(|id| sheet.get(*id).map(|account| json!([id.0, account.balance, account.held])))
            .collect();
        if !balances.is_empty() {
            sqlx::query(
                "UPDATE accounts SET balance = v.value->>1, held = v.value->>2, version = version + 1
                 FROM json_each($1) AS v WHERE accounts.id = v.value->>0",
            )
            .bind(json!(balances).to_string())
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.notice_updates.is_empty() {
            let rows = json!(
                plan.notice_updates
                    .iter()
                    .map(|u| json!([
                        u.operation_id.to_string(),
                        u.status.as_str(),
                        u.transaction_id.map(|id| id.to_string()),
                        u.failure_reason
                    ]))
                    .collect::<Vec<_>>()
            );
            sqlx::query(
                "UPDATE bank_payments SET status = v.value->>1, transaction_id = v.value->>2,
                        failure_reason = v.value->>3, applied_at = $2
                 FROM json_each($1) AS v WHERE bank_payments.operation_id = v.value->>0",
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
                    .map(|c| json!([c.operation_id.to_string(), c.differing_fields, c.notice]))
                    .collect::<Vec<_>>()
            );
            sqlx::query(
                "INSERT INTO notice_conflicts (operation_id, differing_fields, notice, received_at)
                 SELECT value->>0, value->>1, value->>2, $2 FROM json_each($1)",
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
