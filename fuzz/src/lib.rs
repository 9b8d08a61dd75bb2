//! Independent oracles for the fuzz targets: small re-statements of the documented rules (the amount grammar,
//! the INN and card check digits) written without the production code, so a target can check that the parser
//! accepts exactly what the documentation says, not only that it does not panic.

use payledger_core::MAX_AMOUNT_MINOR;

/// The longest amount literal the parsers look at (`payledger_core::money`'s bound).
pub const MAX_LITERAL_LEN: usize = 64;

/// A decimal literal's exact value: sign, significant digits (no leading or trailing zeros; empty for zero) and
/// the power of ten of the last digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    /// Whether a `-` stood before it.
    pub negative: bool,
    /// The significant digits.
    pub digits: String,
    /// The power of ten that the last significant digit stands for.
    pub exponent: i64,
}

/// Reads `-?D+(.D+)?` and, when `allow_exponent`, an optional `[eE][+-]?D{1,4}`, as `Money::parse_positive`
/// documents; `None` for anything else.
pub fn decimal(text: &str, allow_exponent: bool) -> Option<Decimal> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        None => (rest, 0i64),
        Some(_) if !allow_exponent => return None,
        Some(at) => {
            let tail = &rest[at + 1..];
            let (sign, digits) = match tail.as_bytes().first() {
                Some(b'-') => (-1, &tail[1..]),
                Some(b'+') => (1, &tail[1..]),
                _ => (1, tail),
            };
            if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (&rest[..at], sign * digits.parse::<i64>().ok()?)
        }
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((int_part, frac_part)) if !frac_part.is_empty() => (int_part, frac_part),
        Some(_) => return None,
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() || !all_digits(int_part) || !all_digits(frac_part) {
        return None;
    }
    let joined = format!("{int_part}{frac_part}");
    let significant = joined.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    let trailing_zeros = (significant.len() - trimmed.len()) as i64;
    Some(Decimal {
        negative,
        digits: trimmed.to_owned(),
        exponent: if trimmed.is_empty() { 0 } else { exponent - frac_part.len() as i64 + trailing_zeros },
    })
}

/// What `Money::parse_positive` must answer for `text`: the minor units of an acceptable amount, or `None`.
///
/// Acceptable means: at most [`MAX_LITERAL_LEN`] bytes, the grammar above, greater than zero, a whole number of
/// minor units (no non-zero digit past the currency's `minor_digits`), and at most `MAX_AMOUNT_MINOR`.
pub fn expected_minor(text: &str, minor_digits: u8, allow_exponent: bool) -> Option<i64> {
    if text.len() > MAX_LITERAL_LEN {
        return None;
    }
    let value = decimal(text, allow_exponent)?;
    if value.negative || value.digits.is_empty() {
        return None;
    }
    let shift = value.exponent + i64::from(minor_digits);
    // Past 17 digits the value is above MAX_AMOUNT_MINOR (15 digits) whatever they are.
    if shift < 0 || value.digits.len() as i64 + shift > 17 {
        return None;
    }
    let minor = value.digits.parse::<i64>().ok()?.checked_mul(10i64.checked_pow(u32::try_from(shift).ok()?)?)?;
    (minor <= MAX_AMOUNT_MINOR).then_some(minor)
}

/// The INN check digits per the Federal Tax Service, restated: `None` for anything but 10 or 12 ASCII digits.
pub fn inn_checksum_valid(text: &str) -> Option<bool> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d: Vec<u32> = text.bytes().map(|b| u32::from(b - b'0')).collect();
    let check = |digits: &[u32], weights: &[u32]| digits.iter().zip(weights).map(|(d, w)| d * w).sum::<u32>() % 11 % 10;
    match d.len() {
        10 => Some(check(&d[..9], &[2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[9]),
        12 => Some(
            check(&d[..10], &[7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[10]
                && check(&d[..11], &[3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[11],
        ),
        _ => None,
    }
}

/// Whether a string of ASCII digits passes the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum % 10 == 0
}

/// A JSON string literal for `text`.
pub fn json_text(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}
