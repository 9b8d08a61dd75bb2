//! How the console writes amounts, times, ids and messages: thousands separators and the currency, UTC with its
//! offset.

use payledger_core::money::{Currency, format_minor};
use time::OffsetDateTime;
use time::macros::format_description;

/// `1234567` kopecks in RUB → `12,345.67 RUB`; the sign leads (`-5.00 RUB`). Exact: integer digits only.
pub fn money(minor: i64, currency: &str) -> String {
    let digits = Currency::from_code(currency).map_or(2, |currency| currency.minor_digits());
    let plain = format_minor(minor, digits);
    let (sign, unsigned) = match plain.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", plain.as_str()),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(fraction) => format!("{sign}{grouped}.{fraction} {currency}"),
        None => format!("{sign}{grouped} {currency}"),
    }
}

/// Roubles, the ledger's own currency.
pub fn rub(minor: i64) -> String {
    money(minor, "RUB")
}

/// `2026-11-30 19:55:12 +00:00`: UTC, with the offset written out so nobody reads it as local time.
pub fn time(moment: OffsetDateTime) -> String {
    let utc = moment.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
    ))
    .unwrap_or_else(|_| utc.to_string())
}

/// A UUID as pages show and link it: hyphenated, lower case.
pub fn uuid_text(id: uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

/// A refusal's message as a sentence of its own: the first letter capitalized and a full stop added.
pub fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// Just the date: `2026-11-30`.
pub fn date(moment: OffsetDateTime) -> String {
    let utc = moment.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!("[year]-[month]-[day]")).unwrap_or_else(|_| utc.date().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_group_thousands_and_name_the_currency() {
        assert_eq!(money(0, "RUB"), "0.00 RUB");
        assert_eq!(money(5, "RUB"), "0.05 RUB");
        assert_eq!(money(-500, "RUB"), "-5.00 RUB");
        assert_eq!(money(14_500_000, "RUB"), "145,000.00 RUB");
        assert_eq!(money(123_456_789, "RUB"), "1,234,567.89 RUB");
        assert_eq!(money(-123_456_789, "RUB"), "-1,234,567.89 RUB");
        assert_eq!(money(1_000_000, "JPY"), "1,000,000 JPY");
        assert_eq!(money(1_234_567, "KWD"), "1,234.567 KWD");
        assert_eq!(money(i64::MIN, "RUB"), "-92,233,720,368,547,758.08 RUB");
    }

    #[test]
    fn times_are_utc_with_the_offset() {
        let moment = time::macros::datetime!(2026-11-30 22:55:12 +03:00);
        assert_eq!(time(moment), "2026-11-30 19:55:12 +00:00");
        assert_eq!(date(moment), "2026-11-30");
    }

    #[test]
    fn messages_become_sentences() {
        assert_eq!(sentence("no such hold"), "No such hold.");
        assert_eq!(sentence(""), "");
    }
}
