//! The parsers that read bytes from outside, reachable by the cargo-fuzz targets in `fuzz/` (a crate of its own,
//! outside the workspace, built on nightly).
//!
//! Every function here forwards to the parser the server itself calls on a request body, unchanged, so what is
//! fuzzed is exactly what runs. The server never calls this module; it is `#[doc(hidden)]` and not an API.
//! Money and INN parsing live in `payledger-core` and are public already (`Money::parse_positive`, `Inn::parse`).

use payledger_core::{BalanceOperation, BankNotice, Money};
use serde_json::value::RawValue;

pub use crate::fields::FieldErrors;
pub use crate::payouts::PayoutRequest;
pub use crate::store::batch::PayoutSource;

/// The bodies of the balance endpoints, one per operation (`POST /api/<operation>/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceBody {
    /// `add_funds`: `{"user_id", "amount"}`.
    Deposit,
    /// `withdraw_funds`: `{"user_id", "amount"}`.
    Withdraw,
    /// `reserve_funds`: `{"user_id", "service_id", "order_id", "amount"}`.
    Reserve,
    /// `deduct_funds`: `{"user_id", "service_id", "order_id", "amount"}`.
    Deduct,
    /// `unreserve_funds`: `{"user_id", "service_id", "order_id"}` and an optional `amount`.
    Release,
    /// `transfer_funds`: `{"sender_id", "recipient_id", "amount"}`.
    Transfer,
}

impl BalanceBody {
    /// Every balance body.
    pub const ALL: [BalanceBody; 6] = [
        BalanceBody::Deposit,
        BalanceBody::Withdraw,
        BalanceBody::Reserve,
        BalanceBody::Deduct,
        BalanceBody::Release,
        BalanceBody::Transfer,
    ];

    /// Parses `bytes` as the body of this operation, as its handler does.
    pub fn parse(self, bytes: &[u8]) -> Result<BalanceOperation, FieldErrors> {
        use crate::api::balances as api;
        match self {
            BalanceBody::Deposit => api::parse_deposit(bytes),
            BalanceBody::Withdraw => api::parse_withdraw(bytes),
            BalanceBody::Reserve => api::parse_reserve(bytes),
            BalanceBody::Deduct => api::parse_deduct(bytes),
            BalanceBody::Release => api::parse_release(bytes),
            BalanceBody::Transfer => api::parse_transfer(bytes),
        }
    }
}

/// Parses a payout creation body (`POST /api/v1/payouts/`), as its handler does.
pub fn parse_payout(bytes: &[u8]) -> Result<PayoutRequest, FieldErrors> {
    crate::api::payouts::parse_payout(bytes)
}

/// Parses a bank notice from the webhook's raw body, as `POST /api/webhook/bank/` does.
pub fn parse_notice(bytes: &[u8]) -> Result<BankNotice, FieldErrors> {
    crate::webhook::intake::parse_notice(bytes)
}

/// Parses one JSON value's text as a rouble amount, as every balance body's `amount` field is read; `None` when
/// `text` is not one JSON value at all (the body parser would have refused it before the field).
pub fn parse_amount_json(text: &str) -> Option<Result<Money, String>> {
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    Some(crate::fields::parse_amount(raw))
}
