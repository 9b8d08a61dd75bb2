//! The reads almost every API request makes: the caller's user (authentication), a balance, a page of a user's
//! history. Their SQL is here once for both backends; PostgreSQL runs it through sqlx below, SQLite through
//! rusqlite connections with cached statements (`store/sqlite_reads.rs`), since sqlx's SQLite driver hands
//! every query to a connection's own thread and back, which cost more than the query itself.

use sqlx::Row;

use crate::store::{ActivityRow, HistorySort, PgStore, PrincipalRow, StoreError, UserBalance};

/// The columns a [`PrincipalRow`] is read from, in its field order.
macro_rules! principal_columns {
    () => {
        "SELECT id, username, password_hash, role, active, password_generated, created_at, tokens_valid_after, \
         auth_version FROM users"
    };
}
pub(crate) use principal_columns;

/// A user by id.
pub(crate) const PRINCIPAL_BY_ID: &str = concat!(principal_columns!(), " WHERE id = $1");
/// A user by name.
pub(crate) const PRINCIPAL_BY_NAME: &str = concat!(principal_columns!(), " WHERE username = $1");
/// A user's balance and held money, by user id (as text: the account's key).
pub(crate) const USER_BALANCE: &str =
    "SELECT balance, held FROM accounts WHERE kind = 'user' AND external_key = $1 AND currency = 'RUB'";
/// A user's account id, by user id (as text).
pub(crate) const USER_ACCOUNT: &str =
    "SELECT id FROM accounts WHERE kind = 'user' AND external_key = $1 AND currency = 'RUB'";
/// An organization's balance (0 before its first payment), or no row for an unknown organization.
pub(crate) const ORGANIZATION_BALANCE: &str = "SELECT COALESCE(a.balance, 0) FROM organizations o
     LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
     WHERE o.inn = $1";

/// The history query for a sort and direction, with parameters account, cursor amount, cursor id, limit. The
/// cursor is a row value, so each page continues exactly after the last line of the previous one: no line is
/// skipped or repeated while new lines arrive.
pub(crate) fn history_sql(sort: HistorySort, descending: bool) -> &'static str {
    match (sort, descending) {
        (HistorySort::Date, false) => {
            "SELECT id, kind, amount, held_change, counterparty, service_id, order_id, transaction_id, created_at,
                    payout_id
             FROM account_activity WHERE account_id = $1 AND $2 = $2 AND id > $3 ORDER BY id LIMIT $4"
        }
        (HistorySort::Date, true) => {
            "SELECT id, kind, amount, held_change, counterparty, service_id, order_id, transaction_id, created_at,
                    payout_id
             FROM account_activity WHERE account_id = $1 AND $2 = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
        }
        (HistorySort::Amount, false) => {
            "SELECT id, kind, amount, held_change, counterparty, service_id, order_id, transaction_id, created_at,
                    payout_id
             FROM account_activity WHERE account_id = $1 AND (amount, id) > ($2, $3)
             ORDER BY amount, id LIMIT $4"
        }
        (HistorySort::Amount, true) => {
            "SELECT id, kind, amount, held_change, counterparty, service_id, order_id, transaction_id, created_at,
                    payout_id
             FROM account_activity WHERE account_id = $1 AND (amount, id) < ($2, $3)
             ORDER BY amount DESC, id DESC LIMIT $4"
        }
    }
}

/// The cursor bounds of a history page's first query: past every line in the page's direction.
pub(crate) fn history_bounds(page: &crate::store::HistoryPage) -> (i64, i64) {
    match page.after {
        Some(cursor) => (cursor.amount, cursor.id),
        None if page.descending => (i64::MAX, i64::MAX),
        None => (i64::MIN, i64::MIN),
    }
}

fn principal_of(row: Option<sqlx::postgres::PgRow>) -> Result<Option<PrincipalRow>, StoreError> {
    let Some(row) = row else { return Ok(None) };
    Ok(Some(crate::store::queries::principals::principal_from_row!(row)))
}

impl PgStore {
    pub(in crate::store) async fn principal(&self, username: &str) -> Result<Option<PrincipalRow>, StoreError> {
        principal_of(sqlx::query(PRINCIPAL_BY_NAME).bind(username).fetch_optional(&self.pool).await?)
    }

    pub(in crate::store) async fn principal_by_id(&self, id: i64) -> Result<Option<PrincipalRow>, StoreError> {
        principal_of(sqlx::query(PRINCIPAL_BY_ID).bind(id).fetch_optional(&self.pool).await?)
    }

    pub(in crate::store) async fn user_balance(&self, user: i64) -> Result<Option<UserBalance>, StoreError> {
        let row = sqlx::query(USER_BALANCE).bind(user.to_string()).fetch_optional(&self.pool).await?;
        Ok(match row {
            Some(row) => Some(UserBalance { balance: row.try_get(0)?, held: row.try_get(1)? }),
            None => None,
        })
    }

    pub(in crate::store) async fn user_history(
        &self,
        user: i64,
        page: crate::store::HistoryPage,
    ) -> Result<Option<Vec<ActivityRow>>, StoreError> {
        let account: Option<i64> =
            sqlx::query_scalar(USER_ACCOUNT).bind(user.to_string()).fetch_optional(&self.pool).await?;
        let Some(account) = account else { return Ok(None) };
        let (amount, id) = history_bounds(&page);
        let rows = sqlx::query(history_sql(page.sort, page.descending))
            .bind(account)
            .bind(amount)
            .bind(id)
            .bind(page.limit)
            .fetch_all(&self.pool)
            .await?;
        let lines = rows
            .into_iter()
            .map(|row| {
                Ok(ActivityRow {
                    id: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    amount: row.try_get(2)?,
                    held_change: row.try_get(3)?,
                    counterparty: row.try_get(4)?,
                    service_id: row.try_get(5)?,
                    order_id: row.try_get(6)?,
                    transaction_id: row.try_get(7)?,
                    created_at: row.try_get(8)?,
                    payout_id: row.try_get(9)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(lines))
    }

    pub(in crate::store) async fn organization_balance(
        &self,
        inn: &payledger_core::Inn,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(ORGANIZATION_BALANCE).bind(inn.as_str()).fetch_optional(&self.pool).await?)
    }
}
