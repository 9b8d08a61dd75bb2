//! Exact money: integer minor units plus a currency that fixes the scale.
//!
//! Amounts are parsed from their literal decimal text and printed from integers; a float never takes part.

use std::fmt;

/// The largest amount one operation may carry, in minor units (one trillion roubles; the same count of minor
/// units in any other currency, e.g. one hundred billion Kuwaiti dinars).
///
/// Anything larger is an input error rather than a payment: it protects the running balances, which are
/// `i64`, from being pushed towards overflow by a single notice.
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000_000;

/// The longest literal we look at before refusing it, so absurd inputs cost nothing to reject.
const MAX_LITERAL_LEN: usize = 64;

/// An ISO 4217 currency: its alphabetic code and the number of minor digits it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_digits: u8,
}

impl Currency {
    /// The Russian rouble, the currency of the bank webhook.
    pub const RUB: Currency = Currency { code: "RUB", minor_digits: 2 };

    /// Looks up an active ISO 4217 currency by its exact upper-case alphabetic code, e.g. `RUB`, `JPY`, `KWD`.
    ///
    /// The list and the minor digits come from the `iso_currency` crate. "Active" means what that crate does not
    /// flag: funds (`BOV`, `CLF`, `USN`…), special codes (precious metals `XAU`/`XAG`/`XPT`/`XPD`, `XDR`, the
    /// bond-market units, `XTS`, `XXX`…) and superseded currencies (`HRK`, `SLL`…) are refused, as is any code
    /// without defined minor units. Lower-case codes are refused; see [`Currency::from_code_ignore_case`].
    pub fn from_code(code: &str) -> Option<Currency> {
        let iso = iso_currency::Currency::from_code(code)?;
        if iso.is_fund() || iso.is_special() || iso.is_superseded().is_some() {
            return None;
        }
        let minor_digits = u8::try_from(iso.exponent()?).ok()?;
        Some(Currency { code: iso.code(), minor_digits })
    }

    /// Like [`Currency::from_code`], but `rub` and `Rub` also name the rouble: the API accepts codes in any case.
    pub fn from_code_ignore_case(code: &str) -> Option<Currency> {
        // Anything but three ASCII letters cannot be a code, so it is refused before allocating.
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        Currency::from_code(&code.to_ascii_uppercase())
    }

    /// The three-letter code, e.g. `RUB`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// How many digits follow the decimal point (2 for RUB, 0 for JPY, 3 for KWD).
    pub fn minor_digits(&self) -> u8 {
        self.minor_digits
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a decimal literal is not an acceptable amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a decimal number at all.
    #[error("must be a decimal number")]
    NotANumber,
    /// More fractional digits than the currency has minor units.
    #[error("must have at most {0} decimal places")]
    TooPrecise(u8),
    /// Zero or negative where a positive amount is required.
    #[error("must be greater than zero")]
    NotPositive,
    /// Larger than [`MAX_AMOUNT_MINOR`].
    #[error("is too large")]
    TooLarge,
}

/// An exact amount of one currency, in minor units (kopecks for RUB, yen for JPY, fils for KWD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// An amount from minor units.
    pub fn from_minor(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// The amount in minor units.
    pub fn minor(&self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Parses a positive amount from decimal text such as `145000`, `1500.5` or `1.45e5`.
    ///
    /// `allow_exponent` admits JSON number syntax (`1e3`); decimal strings from clients do not use it.
    /// The value must be > 0, have at most the currency's minor digits, and be at most [`MAX_AMOUNT_MINOR`].
    pub fn parse_positive(text: &str, currency: Currency, allow_exponent: bool) -> Result<Money, AmountError> {
        let minor = parse_decimal_minor(text, currency.minor_digits, allow_exponent)?;
        if minor <= 0 {
            return Err(AmountError::NotPositive);
        }
        Ok(Money { minor, currency })
    }

    /// The decimal text with exactly the currency's minor digits, e.g. `145000.00` or `-0.50`.
    pub fn to_decimal_string(&self) -> String {
        format_minor(self.minor, self.currency.minor_digits)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

/// Formats minor units as a decimal with exactly `minor_digits` fractional digits.
pub fn format_minor(minor: i64, minor_digits: u8) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    if minor_digits == 0 {
        return format!("{sign}{magnitude}");
    }
    let scale = 10u64.pow(u32::from(minor_digits));
    let whole = magnitude / scale;
    let fraction = magnitude % scale;
    format!("{sign}{whole}.{fraction:0width$}", width = usize::from(minor_digits))
}

/// Parses a decimal literal into minor units with at most `minor_digits` fractional digits.
///
/// Accepts an optional leading `-`, digits, an optional `.` with digits, and (when allowed) an exponent.
/// Trailing zeros past the currency's precision are fine (`1.500` is 1.50); non-zero ones are not.
pub fn parse_decimal_minor(text: &str, minor_digits: u8, allow_exponent: bool) -> Result<i64, AmountError> {
    if text.is_empty() || text.len() > MAX_LITERAL_LEN {
        return Err(if text.is_empty() { AmountError::NotANumber } else { AmountError::TooLarge });
    }
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) if allow_exponent => {
            let exp_text = &rest[at + 1..];
            let exp_digits = exp_text.strip_prefix(['+', '-']).unwrap_or(exp_text);
            if exp_digits.is_empty() || exp_digits.len() > 4 || !exp_digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AmountError::NotANumber);
            }
            let exp: i32 = exp_text.parse().map_err(|_| AmountError::NotANumber)?;
            (&rest[..at], exp)
        }
        Some(_) => return Err(AmountError::NotANumber),
        None => (rest, 0),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((int_part, frac_part)) => (int_part, frac_part),
        None => (mantissa, ""),
    };
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty()
        || !digits_ok(int_part)
        || !digits_ok(frac_part)
        || (mantissa.contains('.') && frac_part.is_empty())
    {
        return Err(AmountError::NotANumber);
    }
    // All significant digits as one string, and the power of ten that scales them to minor units.
    let digits: String = int_part.chars().chain(frac_part.chars()).collect();
    let digits = digits.trim_start_matches('0');
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| AmountError::TooLarge)?;
    let shift = exponent + i32::from(minor_digits) - frac_len;
    let minor = if digits.is_empty() {
        0
    } else if shift >= 0 {
        // Every digit is significant; multiply up.
        let base: i64 = digits.parse().map_err(|_| AmountError::TooLarge)?;
        let factor = u32::try_from(shift).ok().and_then(|s| 10i64.checked_pow(s)).ok_or(AmountError::TooLarge)?;
        base.checked_mul(factor).ok_or(AmountError::TooLarge)?
    } else {
        // Digits beyond the currency's precision must all be zero.
        let cut = usize::try_from(-shift).map_err(|_| AmountError::TooPrecise(minor_digits))?;
        if cut >= digits.len() {
            return Err(AmountError::TooPrecise(minor_digits));
        }
        let (kept, dropped) = digits.split_at(digits.len() - cut);
        if dropped.bytes().any(|b| b != b'0') {
            return Err(AmountError::TooPrecise(minor_digits));
        }
        kept.parse().map_err(|_| AmountError::TooLarge)?
    };
    if minor > MAX_AMOUNT_MINOR {
        return Err(AmountError::TooLarge);
    }
    Ok(if negative { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rub(text: &str) -> Result<i64, AmountError> {
        Money::parse_positive(text, Currency::RUB, true).map(|m| m.minor())
    }

    #[test]
    fn parses_whole_and_fractional_roubles_exactly() {
        assert_eq!(rub("145000"), Ok(14_500_000));
        assert_eq!(rub("1500.5"), Ok(150_050));
        assert_eq!(rub("0.01"), Ok(1));
        assert_eq!(rub("1.500"), Ok(150));
        assert_eq!(rub("1.45e5"), Ok(14_500_000));
        assert_eq!(rub("1E2"), Ok(10_000));
        assert_eq!(rub("12345e-2"), Ok(12_345));
        assert_eq!(rub("0.1"), Ok(10));
    }

    #[test]
    fn refuses_what_is_not_an_exact_positive_amount() {
        assert_eq!(rub("0"), Err(AmountError::NotPositive));
        assert_eq!(rub("-5"), Err(AmountError::NotPositive));
        assert_eq!(rub("0.00"), Err(AmountError::NotPositive));
        assert_eq!(rub("1.001"), Err(AmountError::TooPrecise(2)));
        assert_eq!(rub("1e-3"), Err(AmountError::TooPrecise(2)));
        assert_eq!(rub("abc"), Err(AmountError::NotANumber));
        assert_eq!(rub("1."), Err(AmountError::NotANumber));
        assert_eq!(rub(".5"), Err(AmountError::NotANumber));
        assert_eq!(rub(""), Err(AmountError::NotANumber));
        assert_eq!(rub(" 1"), Err(AmountError::NotANumber));
        assert_eq!(rub("1e400"), Err(AmountError::TooLarge));
        assert_eq!(rub("1e99999"), Err(AmountError::NotANumber));
        assert_eq!(rub("99999999999999999999999"), Err(AmountError::TooLarge));
        assert_eq!(rub("1000000000000.01"), Err(AmountError::TooLarge));
        assert_eq!(Money::parse_positive("1e2", Currency::RUB, false), Err(AmountError::NotANumber));
    }

    #[test]
    fn formats_with_exactly_the_minor_digits() {
        assert_eq!(format_minor(14_500_000, 2), "145000.00");
        assert_eq!(format_minor(5, 2), "0.05");
        assert_eq!(format_minor(-150, 2), "-1.50");
        assert_eq!(format_minor(0, 2), "0.00");
        assert_eq!(format_minor(i64::MIN, 2), "-92233720368547758.08");
        assert_eq!(format_minor(7, 0), "7");
    }

    fn currency(code: &str) -> Currency {
        Currency::from_code(code).unwrap_or_else(|| panic!("{code} should be a known currency"))
    }

    #[test]
    fn knows_active_iso_currencies_with_their_own_minor_digits() {
        assert_eq!(Currency::from_code("RUB"), Some(Currency::RUB));
        for (code, digits) in [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("TND", 3)] {
            let found = currency(code);
            assert_eq!((found.code(), found.minor_digits()), (code, digits), "{code}");
        }
    }

    #[test]
    fn refuses_unknown_lower_case_and_inactive_codes() {
        for code in ["", "R", "RUBB", "ABC", "ZZZ", "rub", "Rub", "usd", " RUB", "RUB ", "РУБ"] {
            assert_eq!(Currency::from_code(code), None, "{code:?}");
        }
        // Precious metals, SDR, testing and "no currency"; funds; superseded currencies.
        for code in ["XAU", "XAG", "XPT", "XPD", "XDR", "XTS", "XXX", "XSU", "XUA", "BOV", "CLF", "USN", "HRK", "SLL"] {
            assert_eq!(Currency::from_code(code), None, "{code}");
        }
    }

    #[test]
    fn the_case_insensitive_look_up_takes_any_case_of_the_same_codes() {
        assert_eq!(Currency::from_code_ignore_case("rub"), Some(Currency::RUB));
        assert_eq!(Currency::from_code_ignore_case("Jpy"), Some(currency("JPY")));
        assert_eq!(Currency::from_code_ignore_case("KWD"), Some(currency("KWD")));
        for code in ["xau", "abc", "ru", "rubb", "r b", "руб", "r\u{0}b"] {
            assert_eq!(Currency::from_code_ignore_case(code), None, "{code:?}");
        }
    }

    #[test]
    fn a_currency_without_minor_units_takes_whole_numbers_only() {
        let jpy = currency("JPY");
        assert_eq!(Money::parse_positive("1500", jpy, false).map(|m| m.minor()), Ok(1500));
        assert_eq!(Money::parse_positive("1500.0", jpy, false).map(|m| m.minor()), Ok(1500));
        assert_eq!(Money::parse_positive("1.5e3", jpy, true).map(|m| m.minor()), Ok(1500));
        assert_eq!(Money::parse_positive("1.5", jpy, false), Err(AmountError::TooPrecise(0)));
        assert_eq!(Money::parse_positive("0.1", jpy, false), Err(AmountError::TooPrecise(0)));
        assert_eq!(Money::from_minor(1500, jpy).to_decimal_string(), "1500");
        assert_eq!(Money::from_minor(1500, jpy).to_string(), "1500 JPY");
    }

    #[test]
    fn a_currency_with_three_minor_digits_takes_thousandths() {
        let kwd = currency("KWD");
        assert_eq!(Money::parse_positive("1.234", kwd, false).map(|m| m.minor()), Ok(1234));
        assert_eq!(Money::parse_positive("0.001", kwd, false).map(|m| m.minor()), Ok(1));
        assert_eq!(Money::parse_positive("1.2345", kwd, false), Err(AmountError::TooPrecise(3)));
        assert_eq!(Money::from_minor(1234, kwd).to_decimal_string(), "1.234");
        assert_eq!(Money::from_minor(5, currency("BHD")).to_decimal_string(), "0.005");
    }

    proptest! {
        #[test]
        fn every_minor_digit_count_round_trips(minor in 1i64..=MAX_AMOUNT_MINOR, code in "(JPY|RUB|KWD)") {
            let currency = currency(&code);
            let text = Money::from_minor(minor, currency).to_decimal_string();
            prop_assert_eq!(Money::parse_positive(&text, currency, false).map(|m| m.minor()), Ok(minor));
        }

        #[test]
        fn formatting_then_parsing_gives_back_the_same_minor_units(minor in 1i64..=MAX_AMOUNT_MINOR) {
            let text = format_minor(minor, 2);
            prop_assert_eq!(rub(&text), Ok(minor));
        }
    }
}
