//! The balance endpoints' bodies (`api/balances.rs` `parse_*`), each fed the same bytes: an accepted operation
//! has positive ids and an amount within bounds, writes back to a body that parses to the same operation, and
//! the endpoints that take the same fields agree with each other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payledger::fuzzing::BalanceBody;
use payledger_core::{BalanceOperation, MAX_AMOUNT_MINOR, Money, OrderKey};

fn amount(money: &Money) -> String {
    assert!(money.minor() > 0 && money.minor() <= MAX_AMOUNT_MINOR, "{money}");
    format!("\"{}\"", money.to_decimal_string())
}

fn order(key: &OrderKey) -> String {
    format!(r#""user_id": {}, "service_id": {}, "order_id": {}"#, key.user.get(), key.service.get(), key.order.get())
}

/// The operation written back as the body its endpoint documents.
fn body(operation: &BalanceOperation) -> String {
    match operation {
        BalanceOperation::Deposit { user, amount: money } | BalanceOperation::Withdraw { user, amount: money } => {
            format!(r#"{{"user_id": {}, "amount": {}}}"#, user.get(), amount(money))
        }
        BalanceOperation::Reserve { key, amount: money } | BalanceOperation::Deduct { key, amount: money } => {
            format!(r#"{{{}, "amount": {}}}"#, order(key), amount(money))
        }
        BalanceOperation::Release { key, amount: None } => format!("{{{}}}", order(key)),
        BalanceOperation::Release { key, amount: Some(money) } => {
            format!(r#"{{{}, "amount": {}}}"#, order(key), amount(money))
        }
        BalanceOperation::Transfer { sender, recipient, amount: money } => {
            assert_ne!(sender, recipient, "a transfer to oneself was accepted");
            format!(
                r#"{{"sender_id": {}, "recipient_id": {}, "amount": {}}}"#,
                sender.get(),
                recipient.get(),
                amount(money)
            )
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let results = BalanceBody::ALL.map(|kind| (kind, kind.parse(data)));
    for (kind, result) in &results {
        match result {
            Ok(operation) => {
                let again = body(operation);
                assert_eq!(kind.parse(again.as_bytes()).as_ref(), Ok(operation), "{kind:?}: {again}");
            }
            // Every refusal names at least one field, so the client learns what to fix.
            Err(errors) => assert!(!errors.is_empty(), "{kind:?}: a refusal without a reason"),
        }
    }
    let accepted = |kind: BalanceBody| results.iter().any(|(k, result)| *k == kind && result.is_ok());
    assert_eq!(accepted(BalanceBody::Deposit), accepted(BalanceBody::Withdraw));
    assert_eq!(accepted(BalanceBody::Reserve), accepted(BalanceBody::Deduct));
    // A reservation's body is also a valid release (whose amount is optional).
    if accepted(BalanceBody::Reserve) {
        assert!(accepted(BalanceBody::Release));
    }
});
