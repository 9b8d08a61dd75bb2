//! The API's reads of payouts: one payout, its status history, and a filtered page of them.

use crate::store::{Store, StoreError, payouts};

/// The payout reads, implemented once for each store: `$reader` names its read pool and `$bind_time` turns a
/// time into what the backend binds.
macro_rules! payout_queries {
    ($store:ty, reader: $reader:ident, bind_time: $bind_time:path) => {
        impl $store {
        pub(in crate::store) async fn payout(
            &self,
            id: uuid::Uuid,
        ) -> Result<Option<$crate::store::payouts::PayoutView>, $crate::store::StoreError> {
            let row = sqlx::query($crate::store::payouts::GET_SQL).bind(id).fetch_optional(&self.$reader).await?;
            Ok(match row {
                Some(row) => Some($crate::store::payouts::payout_view_from_row!(&row)),
                None => None,
            })
        }

        pub(in crate::store) async fn payout_events(
            &self,
            id: uuid::Uuid,
        ) -> Result<Vec<$crate::store::payouts::PayoutEventRow>, $crate::store::StoreError> {
            let rows = sqlx::query(
                "SELECT from_status, to_status, actor, reason, created_at FROM payout_events WHERE payout_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.$reader)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok($crate::store::payouts::PayoutEventRow {
                        from: row.try_get(0)?,
                        to: row.try_get(1)?,
                        actor: row.try_get(2)?,
                        reason: row.try_get(3)?,
                        at: row.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        }

        pub(in crate::store) async fn list_payouts(
            &self,
            filter: &$crate::store::payouts::PayoutFilter,
            ordering: $crate::store::payouts::PayoutOrdering,
            limit: i64,
            offset: i64,
        ) -> Result<(i64, Vec<$crate::store::payouts::PayoutView>), $crate::store::StoreError> {
            let status = filter.status.map(|s| s.as_str());
            let after = filter.created_after.map($bind_time);
            let before = filter.created_before.map($bind_time);
            let count: i64 = sqlx::query_scalar($crate::store::payouts::COUNT_SQL)
                .bind(status)
                .bind(filter.currency.as_deref())
                .bind(after.clone())
                .bind(before.clone())
                .fetch_one(&self.$reader)
                .await?;
            let rows = sqlx::query($crate::store::payouts::list_sql(ordering))
                .bind(status)
                .bind(filter.currency.as_deref())
                .bind(after)
                .bind(before)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.$reader)
                .await?;
            let mut views = Vec::with_capacity(rows.len());
            for row in &rows {
                views.push($crate::store::payouts::payout_view_from_row!(row));
            }
            Ok((count, views))
        }
        }
    };
}
pub(crate) use payout_queries;

impl Store {
    /// A payout that is not archived.
    pub async fn payout(&self, id: uuid::Uuid) -> Result<Option<payouts::PayoutView>, StoreError> {
        on_backend!(self, store => store.payout(id).await)
    }

    /// A payout's status history, oldest first.
    pub async fn payout_events(&self, id: uuid::Uuid) -> Result<Vec<payouts::PayoutEventRow>, StoreError> {
        on_backend!(self, store => store.payout_events(id).await)
    }

    /// A page of payouts and how many the filter selects in all.
    pub async fn list_payouts(
        &self,
        filter: &payouts::PayoutFilter,
        ordering: payouts::PayoutOrdering,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<payouts::PayoutView>), StoreError> {
        on_backend!(self, store => store.list_payouts(filter, ordering, limit, offset).await)
    }
}
