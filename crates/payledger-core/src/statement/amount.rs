//! Amounts and dates as statements write them: strict decimal text, exact to the minor unit.
//!
//! Stricter than the webhook's amounts on purpose: a statement is the bank's own arithmetic, so `1.500` (three
//! decimals, even zeros), a sign, an exponent, spaces or a decimal comma mean the file is not what we think it is.

use time::Date;

use crate::money::{Currency, MAX_AMOUNT_MINOR};

/// Whether an amount may be zero or negative: a line's amount is always positive, a balance may be anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountUse {
    /// A booked operation's amount: greater than zero.
    Line,
    /// A balance or a stated total: zero allowed, a leading `-` allowed.
    Balance,
}

/// Parses `text` (the value of `field`) into minor units of `currency`. The error names the field and the value.
pub fn parse_amount(field: &str, text: &str, currency: Currency, usage: AmountUse) -> Result<i64, String> {
    let digits = currency.minor_digits();
    let bad = |why: &str| Err(format!("{field} '{text}' {why}"));
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) if usage == AmountUse::Balance => (true, rest),
        _ => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || unsigned.ends_with('.') {
        return bad("is not an amount: only digits and one '.' are allowed");
    }
    if fraction.len() > usize::from(digits) {
        let count = match fraction.len() {
            1 => "one decimal".to_owned(),
            2 => "two decimals".to_owned(),
            3 => "three decimals".to_owned(),
            n => format!("{n} decimals"),
        };
        return bad(&format!("has {count}; amounts have at most {digits}"));
    }
    // At most 15 significant digits fit MAX_AMOUNT_MINOR; more is refused before any arithmetic can overflow.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 15 {
        return bad("is too large");
    }
    let mut minor: i64 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        minor = minor * 10 + i64::from(byte - b'0');
    }
    for _ in fraction.len()..usize::from(digits) {
        minor *= 10;
    }
    if minor > MAX_AMOUNT_MINOR {
        return bad("is too large");
    }
    if usage == AmountUse::Line && minor == 0 {
        return bad("must be greater than zero");
    }
    Ok(if negative { -minor } else { minor })
}

/// Parses a `dd.mm.yyyy` date (1C), naming the field and the value on error.
pub fn parse_dotted_date(field: &str, text: &str) -> Result<Date, String> {
    let bad = || format!("{field} '{text}' is not a date (dd.mm.yyyy)");
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[2] != b'.' || bytes[5] != b'.' {
        return Err(bad());
    }
    date_from_parts(&text[6..10], &text[3..5], &text[0..2]).ok_or_else(bad)
}

/// Parses a `yyyy-mm-dd` date (ISO 8601, camt and CSV), naming the field and the value on error.
pub fn parse_iso_date(field: &str, text: &str) -> Result<Date, String> {
    let bad = || format!("{field} '{text}' is not a date (yyyy-mm-dd)");
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(bad());
    }
    date_from_parts(&text[0..4], &text[5..7], &text[8..10]).ok_or_else(bad)
}

fn date_from_parts(year: &str, month: &str, day: &str) -> Option<Date> {
    let number = |s: &str| if s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<u16>().ok() } else { None };
    let month = time::Month::try_from(u8::try_from(number(month)?).ok()?).ok()?;
    Date::from_calendar_date(i32::from(number(year)?), month, u8::try_from(number(day)?).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn rub(text: &str) -> Result<i64, String> {
        parse_amount("Сумма", text, Currency::RUB, AmountUse::Line)
    }

    #[test]
    fn whole_and_fractional_roubles_parse_exactly_to_kopecks() {
        assert_eq!(rub("1500.00"), Ok(150_000));
        assert_eq!(rub("1000"), Ok(100_000));
        assert_eq!(rub("107728.7"), Ok(10_772_870));
        assert_eq!(rub("0.01"), Ok(1));
        assert_eq!(rub("007.10"), Ok(710));
    }

    #[test]
    fn three_decimals_are_refused_even_when_the_last_is_zero() {
        let expected = "Сумма '1.505' has three decimals; amounts have at most 2";
        assert_eq!(rub("1.505"), Err(expected.to_owned()));
        assert_eq!(rub("1.500"), Err("Сумма '1.500' has three decimals; amounts have at most 2".to_owned()));
    }

    #[test]
    fn signs_exponents_spaces_and_commas_are_not_amounts() {
        for text in ["-5", "+5", "1e3", "1 000", "1,50", "", ".5", "5.", "1.2.3", " 5"] {
            assert_eq!(rub(text), Err(format!("Сумма '{text}' is not an amount: only digits and one '.' are allowed")));
        }
        assert_eq!(rub("0.00"), Err("Сумма '0.00' must be greater than zero".to_owned()));
        assert_eq!(rub("99999999999999999"), Err("Сумма '99999999999999999' is too large".to_owned()));
    }

    #[test]
    fn balances_may_be_zero_or_negative() {
        assert_eq!(parse_amount("НачальныйОстаток", "-12.5", Currency::RUB, AmountUse::Balance), Ok(-1250));
        assert_eq!(parse_amount("НачальныйОстаток", "0", Currency::RUB, AmountUse::Balance), Ok(0));
    }

    #[test]
    fn a_currency_without_minor_units_takes_no_decimals() {
        let jpy = Currency::from_code("JPY").unwrap_or_else(|| panic!("JPY"));
        assert_eq!(parse_amount("Amt", "15", jpy, AmountUse::Line), Ok(15));
        assert_eq!(
            parse_amount("Amt", "15.0", jpy, AmountUse::Line),
            Err("Amt '15.0' has one decimal; amounts have at most 0".to_owned())
        );
    }

    #[test]
    fn dates_are_checked_against_the_calendar() {
        assert_eq!(parse_dotted_date("Дата", "28.04.2024"), Ok(date!(2024 - 04 - 28)));
        assert_eq!(parse_iso_date("BookgDt", "2024-04-28"), Ok(date!(2024 - 04 - 28)));
        assert_eq!(parse_dotted_date("Дата", "31.02.2024"), Err("Дата '31.02.2024' is not a date (dd.mm.yyyy)".into()));
        assert!(parse_dotted_date("Дата", "2024-04-28").is_err());
        assert!(parse_iso_date("BookgDt", "28.04.2024").is_err());
        assert!(parse_dotted_date("Дата", "+1.04.2024").is_err());
    }
}
