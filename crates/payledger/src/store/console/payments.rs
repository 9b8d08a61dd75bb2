//! Console queries of the overview pages: the dashboard's figures, organizations, and the bank payment inbox
//! with its rejected and conflicting notices.
//!
//! Inflow is summed over the payments' ledger transaction ids, which are UUIDv7 (time-ordered, stamped with
//! the millisecond the payment was credited): a time range is a range of ids, read through the unique index
//! on `bank_payments.transaction_id` on both backends, with no date function (they differ between SQLite
//! and PostgreSQL) and without scanning older payments.

use payledger_core::Inn;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{AuditEntry, Store, StoreError};

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

/// An organization with its balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationRow {
    /// The INN.
    pub inn: String,
    /// The name (empty for organizations created by a payment).
    pub name: String,
    /// The posted balance in kopecks (0 without an account).
    pub balance: i64,
    /// The part held by open payouts.
    pub held: i64,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// How the organization list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganizationSort {
    /// By name, A to Z.
    Name,
    /// By name, Z to A.
    NameDesc,
    /// Smallest balance first.
    Balance,
    /// Largest balance first.
    BalanceDesc,
}

/// One page of the organization list.
#[derive(Debug, Clone)]
pub struct OrganizationQuery {
    /// A substring of the INN or the name; empty for all.
    pub search: String,
    /// The order.
    pub sort: OrganizationSort,
    /// At most this many.
    pub limit: i64,
    /// After skipping this many.
    pub offset: i64,
}

/// A received bank notice as the inbox shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    /// The row id.
    pub id: i64,
    /// The bank's operation id.
    pub operation_id: Uuid,
    /// The amount in minor units.
    pub amount: i64,
    /// Its currency.
    pub currency: String,
    /// The payer's INN.
    pub payer_inn: String,
    /// The payer organization's name, if it exists.
    pub organization_name: Option<String>,
    /// The payment document's number.
    pub document_number: String,
    /// The payment document's date.
    pub document_date: OffsetDateTime,
    /// `received`, `applied` or `failed`.
    pub status: String,
    /// When it arrived.
    pub received_at: OffsetDateTime,
    /// When it was credited (or failed).
    pub applied_at: Option<OffsetDateTime>,
    /// The ledger transaction that credited it.
    pub transaction_id: Option<Uuid>,
    /// Why it failed.
    pub failure_reason: Option<String>,
}

/// Which received notices to list: every given filter must match; newest first.
#[derive(Debug, Clone, Default)]
pub struct PaymentQuery {
    /// Only this status.
    pub status: Option<String>,
    /// Only this payer.
    pub inn: Option<String>,
    /// Received at or after.
    pub from: Option<OffsetDateTime>,
    /// Received before.
    pub until: Option<OffsetDateTime>,
    /// At most this many.
    pub limit: i64,
    /// Only payments older than this id (the previous page's last): pages stay put while notices arrive.
    pub before: Option<i64>,
}

/// A notice the intake refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// The row id.
    pub id: i64,
    /// Why, in short.
    pub reason: String,
    /// The field errors, as JSON.
    pub details: String,
    /// The body as received (at most a few KiB kept).
    pub body: String,
    /// When.
    pub received_at: OffsetDateTime,
}

/// A notice that reused an operation id with different data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRow {
    /// The row id.
    pub id: i64,
    /// The operation id both notices carry.
    pub operation_id: Uuid,
    /// The fields that differ, comma-separated.
    pub differing_fields: String,
    /// The later notice as received.
    pub notice: String,
    /// When.
    pub received_at: OffsetDateTime,
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

/// The organization list's query with a fixed order.
macro_rules! organizations_sql {
    ($order:literal) => {
        concat!(
            "SELECT o.inn, o.name, COALESCE(a.balance, 0), COALESCE(a.held, 0), o.created_at
             FROM organizations o
             LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
             WHERE ($1 = '' OR o.inn LIKE $2 ESCAPE '\\' OR o.name_folded LIKE $3 ESCAPE '\\')
             ORDER BY ",
            $order,
            " LIMIT $4 OFFSET $5"
        )
    };
}

/// The organization list's query for an order; only these fixed texts are ever run.
pub(crate) fn organizations_sql(sort: OrganizationSort) -> &'static str {
    match sort {
        OrganizationSort::Name => organizations_sql!("o.name, o.inn"),
        OrganizationSort::NameDesc => organizations_sql!("o.name DESC, o.inn DESC"),
        OrganizationSort::Balance => organizations_sql!("COALESCE(a.balance, 0), o.inn"),
        OrganizationSort::BalanceDesc => organizations_sql!("COALESCE(a.balance, 0) DESC, o.inn"),
    }
}

/// Counts what [`organizations_sql`] lists.
pub(crate) const ORGANIZATIONS_COUNT_SQL: &str = "SELECT COUNT(*) FROM organizations o
     WHERE ($1 = '' OR o.inn LIKE $2 ESCAPE '\\' OR o.name_folded LIKE $3 ESCAPE '\\')";

/// The columns of a [`PaymentRow`], in `payment_from_row!`'s order.
macro_rules! payment_columns {
    () => {
        "SELECT p.id, p.operation_id, p.amount, p.currency, p.payer_inn, o.name, p.document_number, p.document_date,
                p.status, p.received_at, p.applied_at, p.transaction_id, p.failure_reason
         FROM bank_payments p LEFT JOIN organizations o ON o.inn = p.payer_inn "
    };
}

/// The inbox page query.
pub(crate) const PAYMENTS_SQL: &str = concat!(
    payment_columns!(),
    "WHERE ($1 IS NULL OR p.status = $1) AND ($2 IS NULL OR p.payer_inn = $2)
       AND ($3 IS NULL OR p.received_at >= $3) AND ($4 IS NULL OR p.received_at < $4)
       AND ($6 IS NULL OR p.id < $6)
     ORDER BY p.id DESC LIMIT $5"
);

/// One payment by operation id.
pub(crate) const PAYMENT_SQL: &str = concat!(payment_columns!(), "WHERE p.operation_id = $1");

/// A [`PaymentRow`] from the columns of `payment_columns!`.
macro_rules! payment_from_row {
    ($row:expr) => {
        $crate::store::console::payments::PaymentRow {
            id: $row.try_get(0)?,
            operation_id: $row.try_get(1)?,
            amount: $row.try_get(2)?,
            currency: $row.try_get(3)?,
            payer_inn: $row.try_get(4)?,
            organization_name: $row.try_get(5)?,
            document_number: $row.try_get(6)?,
            document_date: $row.try_get(7)?,
            status: $row.try_get(8)?,
            received_at: $row.try_get(9)?,
            applied_at: $row.try_get(10)?,
            transaction_id: $row.try_get(11)?,
            failure_reason: $row.try_get(12)?,
        }
    };
}
pub(crate) use payment_from_row;

/// A [`ConflictRow`] from columns `id, operation_id, differing_fields, notice, received_at`.
macro_rules! conflict_from_row {
    ($row:expr) => {
        $crate::store::console::payments::ConflictRow {
            id: $row.try_get(0)?,
            operation_id: $row.try_get(1)?,
            differing_fields: $row.try_get(2)?,
            notice: $row.try_get(3)?,
            received_at: $row.try_get(4)?,
        }
    };
}
pub(crate) use conflict_from_row;

macro_rules! console_overview_queries {
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
                let sql = $crate::store::console::payments::inflow_sql(ranges.len());
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
            ) -> Result<$crate::store::console::payments::DashboardCounts, $crate::store::StoreError> {
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
                Ok($crate::store::console::payments::DashboardCounts {
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

            pub(in crate::store) async fn console_organizations(
                &self,
                query: &$crate::store::console::payments::OrganizationQuery,
            ) -> Result<(i64, Vec<$crate::store::console::payments::OrganizationRow>), $crate::store::StoreError> {
                use sqlx::Row;
                let (pattern, lowered) = $crate::store::console::payments::like_patterns(&query.search);
                let total: i64 = sqlx::query_scalar($crate::store::console::payments::ORGANIZATIONS_COUNT_SQL)
                    .bind(&query.search)
                    .bind(&pattern)
                    .bind(&lowered)
                    .fetch_one(&self.$reader)
                    .await?;
                let rows = sqlx::query($crate::store::console::payments::organizations_sql(query.sort))
                    .bind(&query.search)
                    .bind(&pattern)
                    .bind(&lowered)
                    .bind(query.limit)
                    .bind(query.offset)
                    .fetch_all(&self.$reader)
                    .await?;
                let list = rows
                    .iter()
                    .map(|row| {
                        Ok($crate::store::console::payments::OrganizationRow {
                            inn: row.try_get(0)?,
                            name: row.try_get(1)?,
                            balance: row.try_get(2)?,
                            held: row.try_get(3)?,
                            created_at: row.try_get(4)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok((total, list))
            }

            pub(in crate::store) async fn console_organization(
                &self,
                inn: &str,
            ) -> Result<Option<$crate::store::console::payments::OrganizationRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query(
                    "SELECT o.inn, o.name, COALESCE(a.balance, 0), COALESCE(a.held, 0), o.created_at
                     FROM organizations o
                     LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
                     WHERE o.inn = $1",
                )
                .bind(inn)
                .fetch_optional(&self.$reader)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some($crate::store::console::payments::OrganizationRow {
                    inn: row.try_get(0)?,
                    name: row.try_get(1)?,
                    balance: row.try_get(2)?,
                    held: row.try_get(3)?,
                    created_at: row.try_get(4)?,
                }))
            }

            pub(in crate::store) async fn fold_missing_names(&self) -> Result<u64, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT inn, name FROM organizations WHERE name_folded = '' AND name <> ''")
                    .fetch_all(&self.$writer)
                    .await?;
                for row in &rows {
                    let (inn, name): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                    sqlx::query("UPDATE organizations SET name_folded = $2 WHERE inn = $1")
                        .bind(&inn)
                        .bind($crate::store::fold_name(&name))
                        .execute(&self.$writer)
                        .await?;
                }
                Ok(rows.len() as u64)
            }

            /// Creates the organization and its account, with the audit row, in one transaction; false if
            /// the INN exists (nothing is written then).
            pub(in crate::store) async fn console_create_organization(
                &self,
                inn: &str,
                name: &str,
                audit: &$crate::store::AuditEntry,
                now: time::OffsetDateTime,
            ) -> Result<bool, $crate::store::StoreError> {
                // The first statement writes, so SQLite takes its write lock at once (no read-to-write upgrade).
                let mut tx = self.$writer.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO organizations (inn, name, created_at, name_folded) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (inn) DO NOTHING",
                )
                .bind(inn)
                .bind(name)
                .bind($bind_time(now))
                .bind($crate::store::fold_name(name))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !inserted {
                    tx.rollback().await?;
                    return Ok(false);
                }
                // As `ensure_organizations` does: the account may already exist (it is never deleted with money).
                sqlx::query(
                    "INSERT INTO accounts (kind, external_key, currency) VALUES ('organization', $1, 'RUB')
                     ON CONFLICT (kind, external_key, currency) DO NOTHING",
                )
                .bind(inn)
                .execute(&mut *tx)
                .await?;
                Self::write_audit(&mut *tx, audit, now).await?;
                tx.commit().await?;
                Ok(true)
            }

            pub(in crate::store) async fn console_payments(
                &self,
                query: &$crate::store::console::payments::PaymentQuery,
            ) -> Result<Vec<$crate::store::console::payments::PaymentRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query($crate::store::console::payments::PAYMENTS_SQL)
                    .bind(query.status.as_deref())
                    .bind(query.inn.as_deref())
                    .bind(query.from.map($bind_time))
                    .bind(query.until.map($bind_time))
                    .bind(query.limit)
                    .bind(query.before)
                    .fetch_all(&self.$reader)
                    .await?;
                rows.iter()
                    .map(|row| Ok($crate::store::console::payments::payment_from_row!(row)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn console_payment(
                &self,
                operation_id: uuid::Uuid,
            ) -> Result<Option<$crate::store::console::payments::PaymentRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query($crate::store::console::payments::PAYMENT_SQL)
                    .bind(operation_id)
                    .fetch_optional(&self.$reader)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some($crate::store::console::payments::payment_from_row!(row)))
            }

            pub(in crate::store) async fn console_rejected_notices(
                &self,
                limit: i64,
                offset: i64,
            ) -> Result<(i64, Vec<$crate::store::console::payments::RejectedRow>), $crate::store::StoreError> {
                use sqlx::Row;
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM rejected_notices").fetch_one(&self.$reader).await?;
                let rows = sqlx::query(
                    "SELECT id, reason, details, body, received_at FROM rejected_notices
                     ORDER BY id DESC LIMIT $1 OFFSET $2",
                )
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.$reader)
                .await?;
                let list = rows
                    .iter()
                    .map(|row| {
                        Ok($crate::store::console::payments::RejectedRow {
                            id: row.try_get(0)?,
                            reason: row.try_get(1)?,
                            details: row.try_get(2)?,
                            body: row.try_get(3)?,
                            received_at: row.try_get(4)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok((total, list))
            }

            pub(in crate::store) async fn console_notice_conflicts(
                &self,
                operation_id: Option<uuid::Uuid>,
                limit: i64,
                offset: i64,
            ) -> Result<(i64, Vec<$crate::store::console::payments::ConflictRow>), $crate::store::StoreError> {
                use sqlx::Row;
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM notice_conflicts WHERE ($1 IS NULL OR operation_id = $1)")
                        .bind(operation_id)
                        .fetch_one(&self.$reader)
                        .await?;
                let rows = sqlx::query(
                    "SELECT id, operation_id, differing_fields, notice, received_at FROM notice_conflicts
                     WHERE ($1 IS NULL OR operation_id = $1) ORDER BY id DESC LIMIT $2 OFFSET $3",
                )
                .bind(operation_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.$reader)
                .await?;
                let list = rows
                    .iter()
                    .map(|row| Ok($crate::store::console::payments::conflict_from_row!(row)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok((total, list))
            }
        }
    };
}
pub(crate) use console_overview_queries;

/// `LIKE` patterns for a substring search: as typed (SQLite's `LIKE` ignores ASCII case by itself) and
/// lower-cased (PostgreSQL's `LOWER` also folds other scripts), with `%`, `_` and `\` escaped.
pub(crate) fn like_patterns(search: &str) -> (String, String) {
    let mut escaped = String::with_capacity(search.len() + 2);
    for character in search.chars() {
        if matches!(character, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    (format!("%{escaped}%"), format!("%{}%", crate::store::fold_name(&escaped)))
}

impl Store {
    /// Fills in the search name of organizations stored before it existed; how many there were.
    pub async fn fold_missing_names(&self) -> Result<u64, StoreError> {
        on_backend!(self, store => store.fold_missing_names().await)
    }

    /// The RUB inflow of bank payments credited in each `[start, end)` range, in kopecks.
    pub async fn console_inflow(&self, ranges: &[(OffsetDateTime, OffsetDateTime)]) -> Result<Vec<i64>, StoreError> {
        let ids: Vec<(Uuid, Uuid)> = ranges.iter().map(|(start, end)| (v7_floor(*start), v7_floor(*end))).collect();
        on_backend!(self, store => store.console_inflow(&ids).await)
    }

    /// The dashboard's counts; rejected and conflicting notices are counted from `since`.
    pub async fn console_dashboard_counts(&self, since: OffsetDateTime) -> Result<DashboardCounts, StoreError> {
        on_backend!(self, store => store.console_dashboard_counts(since).await)
    }

    /// A page of organizations and how many match in all.
    pub async fn console_organizations(
        &self,
        query: &OrganizationQuery,
    ) -> Result<(i64, Vec<OrganizationRow>), StoreError> {
        on_backend!(self, store => store.console_organizations(query).await)
    }

    /// One organization with its balance.
    pub async fn console_organization(&self, inn: &Inn) -> Result<Option<OrganizationRow>, StoreError> {
        on_backend!(self, store => store.console_organization(inn.as_str()).await)
    }

    /// Creates an organization and its account with the audit row, in one transaction; false if it exists.
    pub async fn console_create_organization(
        &self,
        inn: &Inn,
        name: &str,
        audit: &AuditEntry,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = crate::timefmt::to_micros(now);
        on_backend!(self, store => store.console_create_organization(inn.as_str(), name, audit, now).await)
    }

    /// A page of received notices, newest first.
    pub async fn console_payments(&self, query: &PaymentQuery) -> Result<Vec<PaymentRow>, StoreError> {
        on_backend!(self, store => store.console_payments(query).await)
    }

    /// One received notice.
    pub async fn console_payment(&self, operation_id: Uuid) -> Result<Option<PaymentRow>, StoreError> {
        on_backend!(self, store => store.console_payment(operation_id).await)
    }

    /// A page of rejected notices, newest first, and how many are kept.
    pub async fn console_rejected_notices(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<RejectedRow>), StoreError> {
        on_backend!(self, store => store.console_rejected_notices(limit, offset).await)
    }

    /// A page of conflicting notices (of one operation id, if given), newest first, and how many match.
    pub async fn console_notice_conflicts(
        &self,
        operation_id: Option<Uuid>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<ConflictRow>), StoreError> {
        on_backend!(self, store => store.console_notice_conflicts(operation_id, limit, offset).await)
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
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_patterns("50%_a\\Б"), ("%50\\%\\_a\\\\Б%".to_owned(), "%50\\%\\_a\\\\б%".to_owned()));
        assert!(inflow_sql(2).contains("$3 AND transaction_id < $4"));
    }
}
