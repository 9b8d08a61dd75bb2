//! Payout and job rows: how a stored payout becomes the engine's `PayoutState`, and the views and job rows
//! the API and the workers read. The queue's claims and reschedules are in `queries/jobs.rs`.

use payledger_core::payout::PayoutStatus;
use payledger_core::{AccountId, Inn, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use super::batch::{PayoutSource, PayoutState};

/// The columns of a payout the engine needs, by id (`$1`/`?1`).
pub(crate) const PAYOUT_STATE_SQL: &str =
    "SELECT amount, currency, status, failure_reason, attempts, gateway_reference, description, source_kind,
            source_key, source_account_id, archived_at, created_at, updated_at
     FROM payouts WHERE id = ?1";

/// A payout row as read, before it is checked.
pub(crate) struct PayoutRow<T> {
    pub id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub failure_reason: Option<String>,
    pub attempts: i32,
    pub gateway_reference: Option<String>,
    pub description: String,
    pub source_kind: Option<String>,
    pub source_key: Option<String>,
    pub source_account_id: Option<i64>,
    pub archived: bool,
    pub created_at: T,
    pub updated_at: T,
}

impl<T> PayoutRow<T> {
    /// The engine's view of the row, or why the row is corrupt.
    pub(crate) fn into_state(
        self,
        created_at: OffsetDateTime,
        updated_at: OffsetDateTime,
    ) -> Result<PayoutState, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("payout {}: bad {what}", self.id));
        let status = PayoutStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?;
        let currency = payledger_core::Currency::from_code(&self.currency).ok_or_else(|| corrupt("currency"))?;
        let source = match (self.source_kind.as_deref(), self.source_key.as_deref(), self.source_account_id) {
            (None, _, None) => None,
            (Some("organization"), Some(key), Some(account)) => {
                Some((PayoutSource::Organization(Inn::parse(key).map_err(|_| corrupt("source"))?), AccountId(account)))
            }
            (Some("user"), Some(key), Some(account)) => {
                let user = key.parse().ok().and_then(|id| UserId::new(id).ok()).ok_or_else(|| corrupt("source"))?;
                Some((PayoutSource::User(user), AccountId(account)))
            }
            _ => return Err(corrupt("source")),
        };
        Ok(PayoutState {
            is_new: false,
            id: self.id,
            amount: self.amount,
            currency: currency.code(),
            status,
            failure_reason: self.failure_reason,
            attempts: self.attempts,
            gateway_reference: self.gateway_reference,
            description: self.description,
            source,
            archived: self.archived,
            recipient: None,
            created_at,
            updated_at,
        })
    }
}

/// A payout as the API shows it.
#[derive(Debug, Clone)]
pub struct PayoutView {
    /// The engine's view.
    pub state: PayoutState,
    /// `card` or `bank_account`.
    pub recipient_type: String,
    /// The last four digits.
    pub recipient_last4: String,
    /// The holder.
    pub recipient_holder: String,
    /// The BIK of a bank account.
    pub recipient_bik: Option<String>,
    /// The encrypted full details (for workers only).
    pub recipient_secret: String,
}

/// One entry of a payout's status history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutEventRow {
    /// The status before (none at creation).
    pub from: Option<String>,
    /// The status after (or `archived`).
    pub to: String,
    /// Who changed it.
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub at: OffsetDateTime,
}

/// The order of a payout list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutOrdering {
    /// Oldest first.
    CreatedAsc,
    /// Newest first.
    CreatedDesc,
    /// Smallest first.
    AmountAsc,
    /// Largest first.
    AmountDesc,
}

/// Which payouts to list.
#[derive(Debug, Clone, Default)]
pub struct PayoutFilter {
    /// Only this status.
    pub status: Option<PayoutStatus>,
    /// Only this currency.
    pub currency: Option<String>,
    /// Created at or after.
    pub created_after: Option<OffsetDateTime>,
    /// Created before.
    pub created_before: Option<OffsetDateTime>,
}

/// A job as a worker holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The job's id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// What it works on.
    pub payload: String,
    /// Claims so far, this one included.
    pub attempts: i32,
    /// Claims allowed.
    pub max_attempts: i32,
}

/// A job as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// The job's id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// What it works on.
    pub payload: String,
    /// `queued`, `done` or `dead`.
    pub status: String,
    /// Claims so far.
    pub attempts: i32,
    /// Claims allowed.
    pub max_attempts: i32,
    /// The last error.
    pub last_error: Option<String>,
    /// When it is due.
    pub run_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// The filtered selection every payout list shares.
macro_rules! payout_select {
    () => {
        "SELECT id, amount, currency, status, failure_reason, attempts, gateway_reference, description, source_kind,
                source_key, source_account_id, archived_at, created_at, updated_at, recipient_type, recipient_last4,
                recipient_holder, recipient_bik, recipient_secret
         FROM payouts
         WHERE archived_at IS NULL AND ($1 IS NULL OR status = $1) AND ($2 IS NULL OR currency = $2)
           AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4)"
    };
}

/// The SQL of a payout list page in one order; filters are optional parameters `$1`–`$4`.
pub(crate) fn list_sql(ordering: PayoutOrdering) -> &'static str {
    match ordering {
        PayoutOrdering::CreatedAsc => concat!(payout_select!(), " ORDER BY created_at, id LIMIT $5 OFFSET $6"),
        PayoutOrdering::CreatedDesc => {
            concat!(payout_select!(), " ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6")
        }
        PayoutOrdering::AmountAsc => concat!(payout_select!(), " ORDER BY amount, id LIMIT $5 OFFSET $6"),
        PayoutOrdering::AmountDesc => concat!(payout_select!(), " ORDER BY amount DESC, id DESC LIMIT $5 OFFSET $6"),
    }
}

/// Counts the payouts a filter selects (same parameters as [`list_sql`]).
pub(crate) const COUNT_SQL: &str = "SELECT COUNT(*) FROM payouts
     WHERE archived_at IS NULL AND ($1 IS NULL OR status = $1) AND ($2 IS NULL OR currency = $2)
       AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4)";

/// One payout by id, archived ones excluded.
pub(crate) const GET_SQL: &str =
    "SELECT id, amount, currency, status, failure_reason, attempts, gateway_reference, description, source_kind,
            source_key, source_account_id, archived_at, created_at, updated_at, recipient_type, recipient_last4,
            recipient_holder, recipient_bik, recipient_secret
     FROM payouts WHERE id = $1 AND archived_at IS NULL";

/// Reads a payout's state from columns 0-13 in the order of [`GET_SQL`], the same on both backends (sqlx rows).
macro_rules! payout_state_from_row {
    ($row:expr) => {{
        let row = $row;
        let archived: Option<time::OffsetDateTime> = row.try_get(11)?;
        let payout = $crate::store::payouts::PayoutRow {
            id: row.try_get(0)?,
            amount: row.try_get(1)?,
            currency: row.try_get(2)?,
            status: row.try_get(3)?,
            failure_reason: row.try_get(4)?,
            attempts: row.try_get(5)?,
            gateway_reference: row.try_get(6)?,
            description: row.try_get(7)?,
            source_kind: row.try_get(8)?,
            source_key: row.try_get(9)?,
            source_account_id: row.try_get(10)?,
            archived: archived.is_some(),
            created_at: (),
            updated_at: (),
        };
        payout.into_state(row.try_get(12)?, row.try_get(13)?)?
    }};
}
pub(crate) use payout_state_from_row;

/// Reads the payout columns of [`GET_SQL`] and [`list_sql`], the same on both backends.
macro_rules! payout_view_from_row {
    ($row:expr) => {{
        let row = $row;
        $crate::store::payouts::PayoutView {
            state: $crate::store::payouts::payout_state_from_row!(row),
            recipient_type: row.try_get(14)?,
            recipient_last4: row.try_get(15)?,
            recipient_holder: row.try_get(16)?,
            recipient_bik: row.try_get(17)?,
            recipient_secret: row.try_get(18)?,
        }
    }};
}
pub(crate) use payout_view_from_row;
