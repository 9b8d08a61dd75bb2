//! The JSON shapes a resource is shown in, shared by the API and the outbound events that report a change of
//! it (an event's `data` is the resource as the API shows it). No I/O.

use payledger_core::UserId;
use payledger_core::balances::ActivityKind;
use payledger_core::money::format_minor;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::store::batch::ActivityLine;
use crate::timefmt::serde_rfc3339;

/// One line of a user's history: the original service's transaction object, plus where the money came
/// from or went and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionObject {
    /// The line's id.
    #[schema(example = 17)]
    pub id: i64,
    /// The user (the original service's foreign key).
    #[schema(example = 1)]
    pub user: i64,
    /// The user.
    #[schema(example = 1)]
    pub user_id: i64,
    /// The operation's amount in roubles, as the original service shows it: positive for a deposit, a
    /// reservation, a revenue recognition, a release, a transfer received and every payout line; negative
    /// for the sender's side of a transfer and for a withdrawal. What the line did to the balances is in
    /// `available_change` and `reserved_change`.
    #[schema(example = "100.00")]
    pub amount: String,
    /// The line's signed effect on the user's available balance in roubles: negative when money left it
    /// (a reservation, a transfer sent, a withdrawal, a payout hold), zero for a revenue recognition (the
    /// money had already left it when it was reserved). The lines of a history add up to the balance.
    #[schema(example = "100.00")]
    pub available_change: String,
    /// The line's signed effect on the user's reserved money in roubles.
    #[schema(example = "0.00")]
    pub reserved_change: String,
    /// `deposit`, `reservation`, `revenue_recognition`, `release`, `transfer` or `withdrawal`.
    #[schema(example = "deposit")]
    pub transaction_type: &'static str,
    /// Where the money came from or went, and why.
    #[schema(example = "deposit")]
    pub comment: String,
    /// The other user of a transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterparty_id: Option<i64>,
    /// The service of a reservation, revenue recognition or release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<i64>,
    /// The order of a reservation, revenue recognition or release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<i64>,
    /// The payout of a payout hold, payment, release or return.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<uuid::Uuid>,
    /// When it was applied.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2024-07-01T12:00:00.123456Z")]
    pub created_at: OffsetDateTime,
}

/// The fields a history line is printed from, whether it was just applied or read back.
pub struct LineFacts {
    pub id: i64,
    pub user: i64,
    pub kind: ActivityKind,
    /// The signed effect on the available balance.
    pub amount: i64,
    pub held_change: i64,
    pub counterparty: Option<i64>,
    pub order: Option<(i64, i64)>,
    pub payout: Option<uuid::Uuid>,
    pub created_at: OffsetDateTime,
}

impl TransactionObject {
    pub fn new(line: LineFacts) -> TransactionObject {
        let payout_text = |id: Option<uuid::Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
        let order_text = |(service, order): (i64, i64)| format!("order {order} of service {service}");
        let comment = match (line.kind, line.counterparty, line.order) {
            (ActivityKind::Transfer, Some(other), _) if line.amount < 0 => format!("transfer to user {other}"),
            (ActivityKind::Transfer, Some(other), _) => format!("transfer from user {other}"),
            (ActivityKind::Reservation, _, Some(order)) => format!("reserved for {}", order_text(order)),
            (ActivityKind::RevenueRecognition, _, Some(order)) => {
                format!("paid {} for {} from reserved funds", format_minor(-line.held_change, 2), order_text(order))
            }
            (ActivityKind::Release, _, Some(order)) => format!("reservation for {} released", order_text(order)),
            (ActivityKind::PayoutHold, _, _) => format!("held for payout {}", payout_text(line.payout)),
            (ActivityKind::Payout, _, _) => format!("paid out by payout {}", payout_text(line.payout)),
            (ActivityKind::PayoutRelease, _, _) => {
                format!("payout {} did not go through; hold released", payout_text(line.payout))
            }
            (ActivityKind::PayoutReturn, _, _) => format!("payout {} returned", payout_text(line.payout)),
            (kind, _, _) => kind.as_str().to_owned(),
        };
        TransactionObject {
            id: line.id,
            user: line.user,
            user_id: line.user,
            amount: format_minor(line.kind.operation_amount(line.amount, line.held_change), 2),
            available_change: format_minor(line.amount, 2),
            reserved_change: format_minor(line.held_change, 2),
            transaction_type: line.kind.as_str(),
            comment,
            counterparty_id: line.counterparty,
            service_id: line.order.map(|(service, _)| service),
            order_id: line.order.map(|(_, order)| order),
            payout_id: line.payout,
            created_at: line.created_at,
        }
    }

    pub fn from_line(line: &ActivityLine) -> TransactionObject {
        TransactionObject::new(LineFacts {
            id: line.id,
            user: line.user.get(),
            kind: line.kind,
            amount: line.amount,
            held_change: line.held_change,
            counterparty: line.counterparty.map(UserId::get),
            order: line.order.map(|(service, order)| (service.get(), order.get())),
            payout: line.payout,
            created_at: line.created_at,
        })
    }
}
