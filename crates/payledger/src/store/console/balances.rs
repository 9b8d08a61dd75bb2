//! Console queries of the users' balances pages: a user's open reservations a page at a time, and the state of
//! one reservation (for the confirmation of a capture or release).

use time::OffsetDateTime;

use crate::store::{Store, StoreError};

/// One open (held) reservation of a user's money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenHold {
    /// The hold's id; also the page cursor.
    pub id: i64,
    /// Its unique reference: `order:<user>:<service>:<order>` or `payout:<id>`.
    pub reference: String,
    /// The held amount in minor units.
    pub amount: i64,
    /// When it was placed.
    pub created_at: OffsetDateTime,
}

/// The balances pages' queries, for one backend's store.
macro_rules! console_balance_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {
            pub(in crate::store) async fn console_open_holds(
                &self,
                user: i64,
                after_id: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::console::balances::OpenHold>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT h.id, h.reference, h.amount, h.created_at
                     FROM holds h JOIN accounts a ON a.id = h.account_id
                     WHERE a.kind = 'user' AND a.external_key = $1 AND a.currency = 'RUB'
                       AND h.status = 'held' AND h.id > $2
                     ORDER BY h.id LIMIT $3",
                )
                .bind(user.to_string())
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::console::balances::OpenHold {
                            id: row.try_get(0)?,
                            reference: row.try_get(1)?,
                            amount: row.try_get(2)?,
                            created_at: row.try_get(3)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn console_hold(
                &self,
                reference: &str,
            ) -> Result<Option<(i64, String)>, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query("SELECT amount, status FROM holds WHERE reference = $1")
                    .bind(reference)
                    .fetch_optional(&self.$reader)
                    .await?;
                Ok(match row {
                    Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
                    None => None,
                })
            }
        }
    };
}
pub(crate) use console_balance_queries;

impl Store {
    /// Up to `limit` of a user's open reservations with ids above `after_id`, oldest first.
    pub async fn console_open_holds(&self, user: i64, after_id: i64, limit: i64) -> Result<Vec<OpenHold>, StoreError> {
        on_backend!(self, store => store.console_open_holds(user, after_id, limit).await)
    }

    /// The amount and status (`held`, `captured`, `released`) of the reservation with this reference.
    pub async fn console_hold(&self, reference: &str) -> Result<Option<(i64, String)>, StoreError> {
        on_backend!(self, store => store.console_hold(reference).await)
    }
}
