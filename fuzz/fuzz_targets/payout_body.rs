//! The payout creation body (`api/payouts.rs` `parse_payout`): an accepted request has an amount within bounds
//! in an active currency, a recipient whose numbers pass their check digits, a valid source, and writes back to
//! a body that parses to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payledger::fuzzing::{PayoutSource, parse_payout};
use payledger_core::{MAX_AMOUNT_MINOR, MAX_DESCRIPTION_CHARS, RecipientDetails};
use payledger_fuzz::{inn_checksum_valid, json_text, luhn_valid};

fuzz_target!(|data: &[u8]| {
    let request = match parse_payout(data) {
        Ok(request) => request,
        Err(errors) => {
            assert!(!errors.is_empty(), "a refusal without a reason");
            return;
        }
    };
    let minor = request.amount.minor();
    assert!(minor > 0 && minor <= MAX_AMOUNT_MINOR, "{minor}");
    assert!(request.description.chars().count() <= MAX_DESCRIPTION_CHARS);
    let digits = |text: &str, lengths: std::ops::RangeInclusive<usize>| {
        lengths.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
    };
    let recipient = match &request.recipient {
        RecipientDetails::Card { number, holder } => {
            assert!(digits(number, 13..=19) && luhn_valid(number), "card number of {} digits", number.len());
            assert!(!holder.trim().is_empty() && holder.trim() == holder);
            format!(r#"{{"type": "card", "number": "{number}", "holder": {}}}"#, json_text(holder))
        }
        RecipientDetails::BankAccount { account_number, bik, holder } => {
            assert!(digits(account_number, 20..=20) && digits(bik, 9..=9));
            assert!(!holder.trim().is_empty() && holder.trim() == holder);
            format!(
                r#"{{"type": "bank_account", "account_number": "{account_number}", "bik": "{bik}", "holder": {}}}"#,
                json_text(holder)
            )
        }
    };
    let source = match &request.source {
        None => String::new(),
        Some(PayoutSource::Organization(inn)) => {
            assert!(inn_checksum_valid(inn.as_str()).is_some(), "{inn}");
            format!(r#", "source": {{"organization_inn": "{inn}"}}"#)
        }
        Some(PayoutSource::User(user)) => format!(r#", "source": {{"user_id": {}}}"#, user.get()),
    };
    let rewritten = format!(
        r#"{{"amount": "{}", "currency": "{}", "recipient_details": {recipient}, "description": {}{source}}}"#,
        request.amount.to_decimal_string(),
        request.amount.currency().code(),
        json_text(&request.description),
    );
    let again = parse_payout(rewritten.as_bytes()).unwrap_or_else(|errors| panic!("{rewritten}: {errors:?}"));
    assert_eq!(again.amount, request.amount);
    assert_eq!(again.recipient, request.recipient);
    assert_eq!(again.description, request.description);
    assert_eq!(again.source, request.source);
});
