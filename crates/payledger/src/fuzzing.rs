//! The parsers that read bytes from outside, reachable by the cargo-fuzz targets in `fuzz/` (a crate of its own,
//! outside the workspace, built by scripts/fuzz.sh with the default toolchain).
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

/// The batch API's body (`POST /api/v1/batch/`, `api/bulk.rs`): whether it is atomic, how many operations it
/// carries and how many of those are invalid (each answered 400 in its place), or why it is not a batch.
pub fn batch_body(body: &[u8]) -> Result<(bool, usize, usize), FieldErrors> {
    crate::api::bulk::batch_summary(body)
}

#[cfg(test)]
mod tests {
    //! The fuzz targets of the three body parsers check their properties on what the parser accepts; a parser
    //! that refused everything would pass them. These tests pin down, on stable and in `cargo test`, that the
    //! checked-in seeds named `valid_*` are accepted and those named `invalid_*` refused.

    use std::path::{Path, PathBuf};

    /// The seed files of a fuzz target, each with whether its name says it is valid.
    fn seeds(target: &str) -> Vec<(PathBuf, bool)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target);
        let mut seeds: Vec<(PathBuf, bool)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| {
                let path = entry.expect("a seed directory entry").path();
                let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
                let valid = match name.split('_').next() {
                    Some("valid") => true,
                    Some("invalid") => false,
                    _ => panic!("{}: a seed's name starts with valid_ or invalid_", path.display()),
                };
                (path, valid)
            })
            .collect();
        seeds.sort();
        assert!(seeds.iter().any(|(_, valid)| *valid) && seeds.iter().any(|(_, valid)| !*valid), "{target}");
        seeds
    }

    fn check(target: &str, accepts: impl Fn(&[u8]) -> bool) {
        for (path, valid) in seeds(target) {
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            assert_eq!(accepts(&bytes), valid, "{}", path.display());
        }
    }

    #[test]
    fn payout_seeds_parse_as_named() {
        check("payout_body", |bytes| super::parse_payout(bytes).is_ok());
    }

    #[test]
    fn webhook_seeds_parse_as_named() {
        check("webhook_notice", |bytes| super::parse_notice(bytes).is_ok());
    }

    /// A batch seed is valid when it reads as a batch whose every operation is valid.
    #[test]
    fn batch_seeds_parse_as_named() {
        check("batch_body", |bytes| super::batch_body(bytes).is_ok_and(|(_, _, invalid)| invalid == 0));
    }

    /// A balance seed is valid when at least one of the balance endpoints accepts it.
    #[test]
    fn balance_seeds_parse_as_named() {
        check("balance_bodies", |bytes| super::BalanceBody::ALL.iter().any(|kind| kind.parse(bytes).is_ok()));
    }
}
