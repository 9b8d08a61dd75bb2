//! The user-balance service's vocabulary: who and what an operation names, the operations themselves, and
//! why one is refused. The ledger engine turns each operation into holds and postings on a
//! [`crate::BalanceSheet`]; nothing here does I/O.

use std::fmt;

use crate::Money;

/// A positive integer id, as the user-balance API takes them (`user_id`, `service_id`, `order_id`).
fn positive(value: i64) -> Result<i64, IdError> {
    if value > 0 { Ok(value) } else { Err(IdError::NotPositive) }
}

/// Why an id is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Ids start at 1.
    #[error("must be a positive integer")]
    NotPositive,
}

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(i64);

        impl $name {
            /// The id, if it is positive.
            pub fn new(value: i64) -> Result<$name, IdError> {
                positive(value).map($name)
            }

            /// The id as a number.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

positive_id!(
    /// A user of the client's platform, whose money the ledger holds in one account.
    UserId
);
positive_id!(
    /// A service of the client's platform, whose revenue account receives captured reservations.
    ServiceId
);
positive_id!(
    /// An order within a service.
    OrderId
);

/// What a reservation is for: one order of one service, paid by one user. A key is used once, forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderKey {
    /// Whose money is reserved.
    pub user: UserId,
    /// The service the order belongs to.
    pub service: ServiceId,
    /// The order.
    pub order: OrderId,
}

impl OrderKey {
    /// The hold's unique reference in the ledger.
    pub fn reference(&self) -> String {
        format!("order:{}:{}:{}", self.user, self.service, self.order)
    }
}

/// One operation of the user-balance service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalanceOperation {
    /// Credit a user from outside the ledger; the user's account is created on the first deposit.
    Deposit {
        /// Who is credited.
        user: UserId,
        /// How much.
        amount: Money,
    },
    /// Pay a user's available money out of the ledger.
    Withdraw {
        /// Who pays.
        user: UserId,
        /// How much.
        amount: Money,
    },
    /// Hold a user's available money for an order.
    Reserve {
        /// The order.
        key: OrderKey,
        /// How much.
        amount: Money,
    },
    /// Capture an order's hold into its service's revenue account.
    Deduct {
        /// The order.
        key: OrderKey,
        /// Must equal the held amount.
        amount: Money,
    },
    /// Give an order's held money back to the user's available balance.
    Release {
        /// The order.
        key: OrderKey,
        /// If given, must equal the held amount.
        amount: Option<Money>,
    },
    /// Move available money from one user to another who already has an account.
    Transfer {
        /// Who pays.
        sender: UserId,
        /// Who is paid.
        recipient: UserId,
        /// How much.
        amount: Money,
    },
}

impl BalanceOperation {
    /// The users whose accounts this operation touches.
    pub fn users(&self) -> impl Iterator<Item = UserId> {
        let (first, second) = match self {
            BalanceOperation::Deposit { user, .. } | BalanceOperation::Withdraw { user, .. } => (*user, None),
            BalanceOperation::Reserve { key, .. }
            | BalanceOperation::Deduct { key, .. }
            | BalanceOperation::Release { key, .. } => (key.user, None),
            BalanceOperation::Transfer { sender, recipient, .. } => (*sender, Some(*recipient)),
        };
        std::iter::once(first).chain(second)
    }

    /// The order this operation reserves, captures or releases.
    pub fn order(&self) -> Option<&OrderKey> {
        match self {
            BalanceOperation::Reserve { key, .. }
            | BalanceOperation::Deduct { key, .. }
            | BalanceOperation::Release { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// What a line of a user's history records; the wire names are the original service's transaction types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityKind {
    /// Money came in from outside.
    Deposit,
    /// Available money was held for an order.
    Reservation,
    /// An order's hold was captured as its service's revenue.
    RevenueRecognition,
    /// An order's hold went back to the available balance.
    Release,
    /// Money moved to or from another user.
    Transfer,
    /// Money was paid out.
    Withdrawal,
    /// Available money was held for a payout.
    PayoutHold,
    /// A payout's hold went back to the available balance (it failed or was cancelled).
    PayoutRelease,
    /// A payout's hold was paid out.
    Payout,
    /// A paid-out payout came back.
    PayoutReturn,
}

impl ActivityKind {
    /// Every kind, for parsing and documentation.
    pub const ALL: [ActivityKind; 10] = [
        ActivityKind::Deposit,
        ActivityKind::Reservation,
        ActivityKind::RevenueRecognition,
        ActivityKind::Release,
        ActivityKind::Transfer,
        ActivityKind::Withdrawal,
        ActivityKind::PayoutHold,
        ActivityKind::PayoutRelease,
        ActivityKind::Payout,
        ActivityKind::PayoutReturn,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Deposit => "deposit",
            ActivityKind::Reservation => "reservation",
            ActivityKind::RevenueRecognition => "revenue_recognition",
            ActivityKind::Release => "release",
            ActivityKind::Transfer => "transfer",
            ActivityKind::Withdrawal => "withdrawal",
            ActivityKind::PayoutHold => "payout_hold",
            ActivityKind::PayoutRelease => "payout_release",
            ActivityKind::Payout => "payout",
            ActivityKind::PayoutReturn => "payout_return",
        }
    }

    /// The kind with this name.
    pub fn parse(name: &str) -> Option<ActivityKind> {
        ActivityKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The operation's amount as the original service showed it, from a line's signed effects on the
    /// available and the reserved balance: positive for money coming in, a hold placed, a hold captured
    /// and a hold released; negative only where money leaves the available balance for somewhere else
    /// (the sender's side of a transfer, a withdrawal).
    pub fn operation_amount(self, available_change: i64, held_change: i64) -> i64 {
        match self {
            // Money moves into or out of the available balance: its change is the amount, signed.
            ActivityKind::Deposit
            | ActivityKind::Release
            | ActivityKind::Transfer
            | ActivityKind::Withdrawal
            | ActivityKind::PayoutRelease
            | ActivityKind::PayoutReturn => available_change,
            // A hold is placed: what was held.
            ActivityKind::Reservation | ActivityKind::PayoutHold => held_change,
            // A hold is captured: what left the reserved balance.
            ActivityKind::RevenueRecognition | ActivityKind::Payout => held_change.saturating_neg(),
        }
    }
}

/// Where a hold is in its life: placed once, then captured or released once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldStatus {
    /// The money is held.
    Held,
    /// The money was captured (taken).
    Captured,
    /// The money went back to the available balance.
    Released,
}

impl HoldStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Held => "held",
            HoldStatus::Captured => "captured",
            HoldStatus::Released => "released",
        }
    }

    /// The status with this stored name.
    pub fn parse(name: &str) -> Option<HoldStatus> {
        [HoldStatus::Held, HoldStatus::Captured, HoldStatus::Released].into_iter().find(|s| s.as_str() == name)
    }
}

/// Which of an operation's users a refusal is about, named as the request's field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRole {
    /// `user_id`.
    User,
    /// `sender_id`.
    Sender,
    /// `recipient_id`.
    Recipient,
}

impl UserRole {
    /// The request field that names this user.
    pub fn field(self) -> &'static str {
        match self {
            UserRole::User => "user_id",
            UserRole::Sender => "sender_id",
            UserRole::Recipient => "recipient_id",
        }
    }
}

/// Why the ledger refused a balance operation. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    /// The user has no account (no deposit was ever made).
    #[error("user {user} not found")]
    UnknownUser {
        /// The user.
        user: UserId,
        /// Which field named them.
        role: UserRole,
    },
    /// The available balance is too small.
    #[error("insufficient funds")]
    InsufficientFunds {
        /// What was available, in minor units.
        available: i64,
    },
    /// The order already had a reservation (held, captured or released).
    #[error("order {} of service {} already has a reservation", .0.order, .0.service)]
    HoldExists(OrderKey),
    /// The order has no reservation.
    #[error("no reservation for order {} of service {}", .0.order, .0.service)]
    HoldNotFound(OrderKey),
    /// The order's reservation was already captured or released.
    #[error("the reservation for order {} of service {} is already {}", .key.order, .key.service, .status.as_str())]
    HoldSettled {
        /// The order.
        key: OrderKey,
        /// What became of it.
        status: HoldStatus,
    },
    /// The amount given differs from the held amount.
    #[error("the amount does not match the reserved amount")]
    AmountMismatch {
        /// The held amount, in minor units.
        held: i64,
    },
    /// A balance would leave the range the ledger can hold.
    #[error("the balance would exceed the ledger's limit")]
    Overflow,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_amounts_are_the_original_services() {
        let cases = [
            (ActivityKind::Deposit, 100, 0, 100),
            (ActivityKind::Reservation, -30, 30, 30),
            (ActivityKind::RevenueRecognition, 0, -30, 30),
            (ActivityKind::Release, 20, -20, 20),
            (ActivityKind::Transfer, -40, 0, -40),
            (ActivityKind::Transfer, 40, 0, 40),
            (ActivityKind::Withdrawal, -5, 0, -5),
            (ActivityKind::PayoutHold, -70, 70, 70),
            (ActivityKind::Payout, 0, -70, 70),
            (ActivityKind::PayoutRelease, 70, -70, 70),
            (ActivityKind::PayoutReturn, 70, 0, 70),
        ];
        for (kind, available, held, expected) in cases {
            assert_eq!(kind.operation_amount(available, held), expected, "{kind:?}");
        }
    }

    #[test]
    fn ids_are_positive() {
        assert_eq!(UserId::new(0), Err(IdError::NotPositive));
        assert_eq!(UserId::new(-3), Err(IdError::NotPositive));
        assert_eq!(UserId::new(7).map(UserId::get), Ok(7));
    }

    #[test]
    fn an_order_key_names_its_user_service_and_order() {
        let key = OrderKey {
            user: UserId::new(1).unwrap_or_else(|_| panic!("id")),
            service: ServiceId::new(101).unwrap_or_else(|_| panic!("id")),
            order: OrderId::new(1001).unwrap_or_else(|_| panic!("id")),
        };
        assert_eq!(key.reference(), "order:1:101:1001");
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in ActivityKind::ALL {
            assert_eq!(ActivityKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ActivityKind::parse("refund"), None);
    }
}
