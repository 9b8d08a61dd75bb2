//! Organizations and system accounts: creating them, and an organization's balance and balance log.

use payledger_core::{AccountId, Inn};

use crate::store::{BalanceLogRow, Store, StoreError};

/// The account queries, implemented once for each store: `$reader` and `$writer` name its pools.
macro_rules! account_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident) => {
        impl $store {
        pub(in crate::store) async fn system_account(
            &self,
            key: &str,
        ) -> Result<payledger_core::AccountId, $crate::store::StoreError> {
            sqlx::query(
                "INSERT INTO accounts (kind, external_key, currency, allow_negative) VALUES ('system', $1, 'RUB', TRUE)
                 ON CONFLICT (kind, external_key, currency) DO NOTHING",
            )
            .bind(key)
            .execute(&self.$writer)
            .await?;
            let id = sqlx::query_scalar(
                "SELECT id FROM accounts WHERE kind = 'system' AND external_key = $1 AND currency = 'RUB'",
            )
            .bind(key)
            .fetch_one(&self.$writer)
            .await?;
            Ok(payledger_core::AccountId(id))
        }

        pub(in crate::store) async fn organization_count(&self) -> Result<i64, $crate::store::StoreError> {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM organizations").fetch_one(&self.$reader).await?)
        }

        pub(in crate::store) async fn balance_log(
            &self,
            inn: &payledger_core::Inn,
            before: i64,
            limit: i64,
        ) -> Result<Option<Vec<$crate::store::BalanceLogRow>>, $crate::store::StoreError> {
            let account: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT a.id FROM organizations o
                 LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
                 WHERE o.inn = $1",
            )
            .bind(inn.as_str())
            .fetch_optional(&self.$reader)
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
            .fetch_all(&self.$reader)
            .await?;
            let log = rows
                .into_iter()
                .map(|row| {
                    Ok($crate::store::BalanceLogRow {
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
        }
    };
}
pub(crate) use account_queries;

impl Store {
    /// Creates the organizations (and their accounts) that do not exist yet, returning every account id.
    /// Used by seeding; the ledger engine creates organizations inside its batch transaction.
    pub async fn ensure_organizations(&self, orgs: &[(Inn, String)]) -> Result<Vec<(Inn, AccountId)>, StoreError> {
        if orgs.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self, store => store.ensure_organizations(orgs).await)
    }

    /// Creates a system account (one that may go negative) if needed and returns its id.
    pub async fn system_account(&self, key: &str) -> Result<AccountId, StoreError> {
        on_backend!(self, store => store.system_account(key).await)
    }

    /// How many organizations exist.
    pub async fn organization_count(&self) -> Result<i64, StoreError> {
        on_backend!(self, store => store.organization_count().await)
    }

    /// An organization's balance in minor units, or `None` if the organization is unknown.
    pub async fn organization_balance(&self, inn: &Inn) -> Result<Option<i64>, StoreError> {
        on_backend!(self, store => store.organization_balance(inn).await)
    }

    /// Up to `limit` balance-log rows of an organization, newest first, older than entry `before`.
    /// `None` if the organization is unknown.
    pub async fn balance_log(
        &self,
        inn: &Inn,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Option<Vec<BalanceLogRow>>, StoreError> {
        on_backend!(self, store => store.balance_log(inn, before.unwrap_or(i64::MAX), limit).await)
    }
}
