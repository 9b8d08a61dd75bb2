//! Amounts: `Money::parse_positive` (payledger-core) on any text, and `parse_amount` (fields.rs) on any JSON
//! value, checked against the documented grammar and bounds (`payledger_fuzz::expected_minor`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use payledger::fuzzing::parse_amount_json;
use payledger_core::{Currency, MAX_AMOUNT_MINOR, Money};
use payledger_fuzz::{expected_minor, json_text};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let currencies = [
        Currency::RUB,
        Currency::from_code("JPY").expect("JPY is a known currency"),
        Currency::from_code("KWD").expect("KWD is a known currency"),
    ];
    for currency in currencies {
        for allow_exponent in [false, true] {
            let parsed = Money::parse_positive(text, currency, allow_exponent).map(|money| money.minor()).ok();
            let expected = expected_minor(text, currency.minor_digits(), allow_exponent);
            assert_eq!(parsed, expected, "{text:?} in {currency} (exponent allowed: {allow_exponent})");
            if let Some(minor) = parsed {
                assert!(minor > 0 && minor <= MAX_AMOUNT_MINOR);
                // What is printed reads back as the same amount, with exactly the currency's digits.
                let printed = Money::from_minor(minor, currency).to_decimal_string();
                let fraction = printed.split_once('.').map_or(0, |(_, fraction)| fraction.len());
                assert_eq!(fraction, usize::from(currency.minor_digits()), "{printed}");
                assert_eq!(Money::parse_positive(&printed, currency, false).map(|m| m.minor()), Ok(minor));
            }
        }
    }
    // The JSON field: a string is read without an exponent, a number literal with one, anything else refused.
    if let Some(result) = parse_amount_json(text) {
        let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let expected = match serde_json::from_str::<serde_json::Value>(trimmed) {
            Ok(serde_json::Value::String(inner)) => expected_minor(&inner, 2, false),
            Ok(serde_json::Value::Number(_)) => expected_minor(trimmed, 2, true),
            _ => None,
        };
        let parsed = result.as_ref().ok().map(Money::minor);
        assert_eq!(parsed, expected, "JSON amount {text:?}: {result:?}");
        if let Ok(money) = result {
            let printed = money.to_decimal_string();
            for again in [json_text(&printed), printed.clone()] {
                let reparsed = parse_amount_json(&again).and_then(Result::ok).map(|m| m.minor());
                assert_eq!(reparsed, Some(money.minor()), "{again}");
            }
        }
    }
});
