//! Console queries of the bank payments pages: the inbox of received notices (filtered, newest first, a page
//! at a time), one notice, and the notices the intake rejected or found conflicting.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{Store, StoreError};

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

/// The bank payments pages' queries, for one backend's store.
macro_rules! console_payment_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {
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
pub(crate) use console_payment_queries;

impl Store {
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
