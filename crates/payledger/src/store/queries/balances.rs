//! Users' balances: the money and holds of one user, their history a page at a time, and revenue by service.

use time::OffsetDateTime;

use crate::store::{ActivityRow, HistoryPage, HistorySort, Store, StoreError, UserBalance};

/// The balance queries, implemented once for each store: `$reader` names its read pool and `$bind_time` turns
/// a time into what the backend binds.
macro_rules! balance_queries {
    ($store:ty, reader: $reader:ident, bind_time: $bind_time:path) => {
        impl $store {
            pub(in crate::store) async fn user_balance(
                &self,
                user: i64,
            ) -> Result<Option<$crate::store::UserBalance>, $crate::store::StoreError> {
                let row = sqlx::query(
                    "SELECT balance, held FROM accounts WHERE kind = 'user' AND external_key = $1 AND currency = 'RUB'",
                )
                .bind(user.to_string())
                .fetch_optional(&self.$reader)
                .await?;
                Ok(match row {
                    Some(row) => Some($crate::store::UserBalance { balance: row.try_get(0)?, held: row.try_get(1)? }),
                    None => None,
                })
            }

            pub(in crate::store) async fn user_history(
                &self,
                user: i64,
                page: $crate::store::HistoryPage,
            ) -> Result<Option<Vec<$crate::store::ActivityRow>>, $crate::store::StoreError> {
                let account: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM accounts WHERE kind = 'user' AND external_key = $1 AND currency = 'RUB'",
                )
                .bind(user.to_string())
                .fetch_optional(&self.$reader)
                .await?;
                let Some(account) = account else { return Ok(None) };
                let (amount, id) = match page.after {
                    Some(cursor) => (cursor.amount, cursor.id),
                    None if page.descending => (i64::MAX, i64::MAX),
                    None => (i64::MIN, i64::MIN),
                };
                let rows = sqlx::query($crate::store::queries::balances::history_sql(page.sort, page.descending))
                    .bind(account)
                    .bind(amount)
                    .bind(id)
                    .bind(page.limit)
                    .fetch_all(&self.$reader)
                    .await?;
                let lines = rows
                    .into_iter()
                    .map(|row| {
                        Ok($crate::store::ActivityRow {
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

            pub(in crate::store) async fn revenue_by_service(
                &self,
                start: time::OffsetDateTime,
                end: time::OffsetDateTime,
            ) -> Result<Vec<(i64, i64)>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT service_id, CAST(SUM(-held_change) AS BIGINT) FROM account_activity
                 WHERE kind = 'revenue_recognition' AND created_at >= $1 AND created_at < $2
                 GROUP BY service_id ORDER BY service_id",
                )
                .bind($bind_time(start))
                .bind($bind_time(end))
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }
        }
    };
}
pub(crate) use balance_queries;

impl Store {
    /// A user's balance, or `None` if the user has no account.
    pub async fn user_balance(&self, user: i64) -> Result<Option<UserBalance>, StoreError> {
        on_backend!(self, store => store.user_balance(user).await)
    }

    /// One page of a user's history, or `None` if the user has no account.
    pub async fn user_history(&self, user: i64, page: HistoryPage) -> Result<Option<Vec<ActivityRow>>, StoreError> {
        on_backend!(self, store => store.user_history(user, page).await)
    }

    /// The revenue recognized per service (ascending service id) in `[start, end)`, in minor units.
    pub async fn revenue_by_service(
        &self,
        start: OffsetDateTime,
        end: OffsetDateTime,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        on_backend!(self, store => store.revenue_by_service(start, end).await)
    }
}

/// The history query for a sort and direction. The cursor is a row value, so each page continues exactly
/// after the last line of the previous one: no line is skipped or repeated while new lines arrive.
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
