//! Console queries of the dashboard: the RUB inflow of time ranges, and the counts of organizations, user
//! accounts, jobs, recent rejected and conflicting notices, and payouts by status.
//!
//! Inflow is summed over the payments' ledger transaction ids, which are UUIDv7 (time-ordered, stamped with
//! the millisecond the payment was credited): a time range is a range of ids, read through the unique index
//! on `bank_payments.transaction_id` on both backends, with no date function (they differ between SQLite
//! and PostgreSQL) and without scanning older payments.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// The figures of the dashboard other than inflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardCounts {
    /// Organizations.
    pub organizations: i64,
    /// Users with a balance account.
    pub user_accounts: i64,
    /// Jobs waiting for their first attempt (or running it).
    pub jobs_queued: i64,
    /// Jobs that failed at least once and wait to be retried.
    pub jobs_retrying: i64,
    /// Jobs that gave up.
    pub jobs_dead: i64,
    /// Notices rejected since the given time.
    pub rejected_recent: i64,
    /// Conflicting notices since the given time.
    pub conflicts_recent: i64,
    /// Payouts (not archived) per status, by status name.
    pub payouts_by_status: Vec<(String, i64)>,
}

/// The smallest UUIDv7 stamped at `moment` or later: every id generated from that millisecond on sorts at or
/// after it (UUIDv7 ids begin with their big-endian Unix time in milliseconds).
pub fn v7_floor(moment: OffsetDateTime) -> Uuid {
    const MAX_MILLIS: i128 = (1 << 48) - 1;
    let millis = (moment.unix_timestamp_nanos() / 1_000_000).clamp(0, MAX_MILLIS);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[10..]);
    Uuid::from_bytes(bytes)
}

/// The inflow query for `ranges` ranges: one row, one column per range, each summing the RUB bank payments
/// whose transaction id is in `[$2i+1, $2i+2)`.
pub(crate) fn inflow_sql(ranges: usize) -> String {
    let columns: Vec<String> = (0..ranges)
        .map(|index| {
            format!(
                "(SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM bank_payments
                  WHERE transaction_id >= ${} AND transaction_id < ${} AND currency = 'RUB')",
                2 * index + 1,
                2 * index + 2
            )
        })
        .collect();
    format!("SELECT {}", columns.join(", "))
}

/// The dashboard's queries, for one backend's store.
macro_rules! console_dashboard_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {
            pub(in crate::store) async fn console_inflow(
                &self,
                ranges: &[(uuid::Uuid, uuid::Uuid)],
            ) -> Result<Vec<i64>, $crate::store::StoreError> {
                use sqlx::Row;
                if ranges.is_empty() {
                    return Ok(Vec::new());
                }
                // The text depends only on how many ranges there are; every value is bound.
                let sql = $crate::store::console::dashboard::inflow_sql(ranges.len());
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (start, end) in ranges {
                    query = query.bind(*start).bind(*end);
                }
                let row = query.fetch_one(&self.$reader).await?;
                (0..ranges.len()).map(|index| row.try_get::<i64, _>(index).map_err(Into::into)).collect()
            }

            pub(in crate::store) async fn console_dashboard_counts(
                &self,
                since: time::OffsetDateTime,
            ) -> Result<$crate::store::console::dashboard::DashboardCounts, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query(
                    "SELECT (SELECT COUNT(*) FROM organizations),
                            (SELECT COUNT(*) FROM accounts WHERE kind = 'user'),
                            (SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND last_error IS NULL),
                            (SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND last_error IS NOT NULL),
                            (SELECT COUNT(*) FROM jobs WHERE status = 'dead'),
                            (SELECT COUNT(*) FROM rejected_notices WHERE received_at >= $1),
                            (SELECT COUNT(*) FROM notice_conflicts WHERE received_at >= $1)",
                )
                .bind($bind_time(since))
                .fetch_one(&self.$reader)
                .await?;
                let statuses = sqlx::query(
                    "SELECT status, COUNT(*) FROM payouts WHERE archived_at IS NULL GROUP BY status ORDER BY status",
                )
                .fetch_all(&self.$reader)
                .await?;
                Ok($crate::store::console::dashboard::DashboardCounts {
                    organizations: row.try_get(0)?,
                    user_accounts: row.try_get(1)?,
                    jobs_queued: row.try_get(2)?,
                    jobs_retrying: row.try_get(3)?,
                    jobs_dead: row.try_get(4)?,
                    rejected_recent: row.try_get(5)?,
                    conflicts_recent: row.try_get(6)?,
                    payouts_by_status: statuses
                        .iter()
                        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                        .collect::<Result<Vec<_>, sqlx::Error>>()?,
                })
            }
        }
    };
}
pub(crate) use console_dashboard_queries;

impl Store {
    /// The RUB inflow of bank payments credited in each `[start, end)` range, in kopecks.
    pub async fn console_inflow(&self, ranges: &[(OffsetDateTime, OffsetDateTime)]) -> Result<Vec<i64>, StoreError> {
        let ids: Vec<(Uuid, Uuid)> = ranges.iter().map(|(start, end)| (v7_floor(*start), v7_floor(*end))).collect();
        on_backend!(self, store => store.console_inflow(&ids).await)
    }

    /// The dashboard's counts; rejected and conflicting notices are counted from `since`.
    pub async fn console_dashboard_counts(&self, since: OffsetDateTime) -> Result<DashboardCounts, StoreError> {
        on_backend!(self, store => store.console_dashboard_counts(since).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_floors_sort_like_the_ids_of_their_millisecond() {
        let moment = time::macros::datetime!(2026-03-01 00:00:00 UTC);
        let floor = v7_floor(moment);
        let millis = u64::try_from(moment.unix_timestamp() * 1000).unwrap_or_default();
        let inside = Uuid::new_v7(uuid::Timestamp::from_unix_time(millis / 1000, 0, 0, 0));
        let before = Uuid::new_v7(uuid::Timestamp::from_unix_time(millis / 1000 - 1, 999_000_000, 0, 0));
        assert!(floor <= inside && before < floor);
        assert!(floor.as_bytes() <= inside.as_bytes() && before.as_bytes() < floor.as_bytes());
        assert_eq!(v7_floor(time::macros::datetime!(1960-01-01 00:00:00 UTC)), Uuid::nil());
    }

    #[test]
    fn inflow_columns_bind_their_own_range() {
        assert!(inflow_sql(2).contains("$3 AND transaction_id < $4"));
    }
}
