//! Outbound events (issue 15): what payledger tells the company's own systems, signed to the Standard Webhooks
//! specification so that receivers can verify them with its published libraries.
//!
//! The ledger engine writes each event in the batch of the change it reports (`engine/events.rs` derives them;
//! the `events` table is the outbox), and the same batch makes one delivery per enabled endpoint that wants the
//! event's type. Delivery workers (`workers/deliveries.rs`) claim due deliveries with a lease, sign them
//! (`signature.rs`), send them through the SSRF guard (`guard.rs`, `sender.rs`) and retry on a schedule
//! (`schedule.rs`).

pub mod endpoints;
pub mod guard;
pub mod payloads;
pub mod schedule;
pub mod sender;
pub mod settings;
pub mod signature;
pub mod throttle;

/// Every event type payledger sends. The names are part of the API: receivers switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A bank payment was credited to its organization (by the webhook, the async applier or a statement).
    BankPaymentCredited,
    /// A notice repeated an operation id with different data; nothing changed.
    BankPaymentConflict,
    /// An invalid notice was refused. Only sent to endpoints that name it (never through `*`).
    BankPaymentRejected,
    /// A user was credited from outside the ledger.
    BalanceDeposited,
    /// A user's money was reserved for an order.
    BalanceReserved,
    /// An order's reserved money became its service's revenue.
    BalanceRevenueRecognized,
    /// An order's reservation was released back to its user.
    BalanceReleased,
    /// Money moved between two users (one event for each side).
    BalanceTransferred,
    /// A user's money was paid out of the ledger.
    BalanceWithdrawn,
    /// A payout was created.
    PayoutCreated,
    /// A payout's status changed.
    PayoutStatusChanged,
    /// Reconciliation found a discrepancy between the bank's statement and the ledger.
    StatementDiscrepancyOpened,
    /// A test event an operator sent to one endpoint.
    Ping,
}

impl EventType {
    /// Every type an endpoint may subscribe to (`ping` goes only where an operator sends it).
    pub const SUBSCRIBABLE: [EventType; 12] = [
        EventType::BankPaymentCredited,
        EventType::BankPaymentConflict,
        EventType::BankPaymentRejected,
        EventType::BalanceDeposited,
        EventType::BalanceReserved,
        EventType::BalanceRevenueRecognized,
        EventType::BalanceReleased,
        EventType::BalanceTransferred,
        EventType::BalanceWithdrawn,
        EventType::PayoutCreated,
        EventType::PayoutStatusChanged,
        EventType::StatementDiscrepancyOpened,
    ];

    /// The name receivers see in `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::BankPaymentCredited => "bank_payment.credited",
            EventType::BankPaymentConflict => "bank_payment.conflict",
            EventType::BankPaymentRejected => "bank_payment.rejected",
            EventType::BalanceDeposited => "balance.deposited",
            EventType::BalanceReserved => "balance.reserved",
            EventType::BalanceRevenueRecognized => "balance.revenue_recognized",
            EventType::BalanceReleased => "balance.released",
            EventType::BalanceTransferred => "balance.transferred",
            EventType::BalanceWithdrawn => "balance.withdrawn",
            EventType::PayoutCreated => "payout.created",
            EventType::PayoutStatusChanged => "payout.status_changed",
            EventType::StatementDiscrepancyOpened => "statement.discrepancy_opened",
            EventType::Ping => "ping",
        }
    }

    /// The subscribable type with this name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::SUBSCRIBABLE.into_iter().find(|kind| kind.as_str() == name)
    }
}

// Which subscription wants which type is the batch's fan-out rule, so it lives beside the batch's rows.
pub use crate::store::batch::{ALL_TYPES, NAMED_ONLY, wants};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscribable_type_parses_back_from_its_name() {
        for kind in EventType::SUBSCRIBABLE {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventType::parse("ping"), None);
        assert_eq!(EventType::parse("*"), None);
    }

    #[test]
    fn only_rejected_notices_must_be_named() {
        assert_eq!(NAMED_ONLY, [EventType::BankPaymentRejected.as_str()]);
        assert!(wants(ALL_TYPES, EventType::PayoutCreated.as_str()));
        assert!(!wants(ALL_TYPES, EventType::BankPaymentRejected.as_str()));
        assert!(wants("bank_payment.rejected", EventType::BankPaymentRejected.as_str()));
        assert!(!wants("payout.created", EventType::PayoutStatusChanged.as_str()));
    }
}
