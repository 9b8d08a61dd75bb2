//! The balance endpoints' bodies (`api/balances.rs` `parse_*`), each fed the same bytes: an accepted operation
//! has positive ids and an amount within bounds, writes back to a body that parses to the same operation, and
//! the endpoints that take the same fields agree with each other.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use payledger::fuzzing::BalanceBody;
use payledger_core::balances::OrderId;
use payledger_core::{BalanceOperation, Currency, MAX_AMOUNT_MINOR, Money, OrderKey, ServiceId, UserId};
use payledger_fuzz::{rouble_minor, rouble_text};

/// The amount as a client writes it, by `rouble_text` rather than the server's own formatter, so that a bug
/// shared by the formatter and the parser cannot hide.
fn amount(money: &Money) -> String {
    assert!(money.minor() > 0 && money.minor() <= MAX_AMOUNT_MINOR, "{money}");
    assert_eq!(money.currency(), Currency::RUB, "balance operations are in roubles");
    format!("\"{}\"", rouble_text(money.minor()))
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

/// A valid operation built from the fuzz input, with the endpoint that takes it.
fn generate(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<(BalanceBody, BalanceOperation)> {
    fn id(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<i64> {
        u.int_in_range(1..=i64::MAX)
    }
    let ids = |u: &mut arbitrary::Unstructured<'_>| -> arbitrary::Result<OrderKey> {
        let invalid = |_| arbitrary::Error::IncorrectFormat;
        Ok(OrderKey {
            user: UserId::new(id(u)?).map_err(invalid)?,
            service: ServiceId::new(id(u)?).map_err(invalid)?,
            order: OrderId::new(id(u)?).map_err(invalid)?,
        })
    };
    let money = Money::from_minor(rouble_minor(u)?, Currency::RUB);
    let user = UserId::new(id(u)?).map_err(|_| arbitrary::Error::IncorrectFormat)?;
    let kind = *u.choose(&BalanceBody::ALL)?;
    let operation = match kind {
        BalanceBody::Deposit => BalanceOperation::Deposit { user, amount: money },
        BalanceBody::Withdraw => BalanceOperation::Withdraw { user, amount: money },
        BalanceBody::Reserve => BalanceOperation::Reserve { key: ids(u)?, amount: money },
        BalanceBody::Deduct => BalanceOperation::Deduct { key: ids(u)?, amount: money },
        BalanceBody::Release => {
            BalanceOperation::Release { key: ids(u)?, amount: if bool::arbitrary(u)? { Some(money) } else { None } }
        }
        BalanceBody::Transfer => {
            let recipient = UserId::new(id(u)?).map_err(|_| arbitrary::Error::IncorrectFormat)?;
            if recipient == user {
                return Err(arbitrary::Error::IncorrectFormat);
            }
            BalanceOperation::Transfer { sender: user, recipient, amount: money }
        }
    };
    Ok((kind, operation))
}

fuzz_target!(|data: &[u8]| {
    // A valid operation made from the input, written as its endpoint documents, is accepted as exactly that
    // operation (a parser refusing everything fails here).
    if let Ok((kind, operation)) = generate(&mut arbitrary::Unstructured::new(data)) {
        let text = body(&operation);
        assert_eq!(kind.parse(text.as_bytes()).as_ref(), Ok(&operation), "{kind:?}: {text}");
    }
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
