//! Users' balances: the money and holds of one user, their history a page at a time, and revenue by service.

use time::OffsetDateTime;

use crate::store::{ActivityRow, HistoryPage, Store, StoreError, UserBalance};

/// The balance queries, implemented once for each store: `$reader` names its read pool and `$bind_time` turns
/// a time into what the backend binds. A user's balance and history are hot reads (`hot_reads.rs`).
macro_rules! balance_queries {
    ($store:ty, reader: $reader:ident, bind_time: $bind_time:path) => {
        impl $store {
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
