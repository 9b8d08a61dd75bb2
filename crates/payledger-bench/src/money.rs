//! Roubles as integer kopecks: parsing the server's decimal literals and printing the amounts we send.
//!
//! The bench's whole point is to check balances to the kopeck, so no amount ever passes through a float:
//! balances are read from the literal JSON text and amounts are printed from integers.

use anyhow::{Context, bail};

/// Kopecks per rouble.
const KOPECKS: i64 = 100;

/// Parses a decimal literal such as `145000.00`, `0.5` or `-12` into kopecks.
///
/// Accepts JSON number syntax without an exponent (the server promises plain decimals; an exponent would
/// be a contract change worth hearing about). Fractional digits beyond the second must be zeros, since
/// they cannot be represented in kopecks.
pub fn parse_kopecks(literal: &str) -> anyhow::Result<i64> {
    let (negative, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        bail!("not a decimal amount: {literal:?}");
    }
    let fraction = fraction.unwrap_or("");
    if literal.contains('.') && fraction.is_empty() {
        bail!("not a decimal amount: {literal:?}");
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        bail!("not a decimal amount: {literal:?}");
    }
    let (cents, excess) = fraction.split_at(fraction.len().min(2));
    if excess.bytes().any(|b| b != b'0') {
        bail!("amount has more precision than kopecks: {literal:?}");
    }
    let roubles: i64 = whole.parse().with_context(|| format!("amount out of range: {literal:?}"))?;
    // "5" after the point is fifty kopecks, not five.
    let kopecks: i64 = match cents.len() {
        0 => 0,
        1 => i64::from(cents.as_bytes()[0] - b'0') * 10,
        _ => cents.parse()?,
    };
    let magnitude = roubles
        .checked_mul(KOPECKS)
        .and_then(|k| k.checked_add(kopecks))
        .with_context(|| format!("amount out of range: {literal:?}"))?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// Formats kopecks as roubles with exactly two decimals, e.g. `1500.25` or `-0.05`.
pub fn format_kopecks(kopecks: i64) -> String {
    let sign = if kopecks < 0 { "-" } else { "" };
    let magnitude = kopecks.unsigned_abs();
    let per = KOPECKS.unsigned_abs();
    format!("{sign}{}.{:02}", magnitude / per, magnitude % per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_balance_literals() {
        assert_eq!(parse_kopecks("145000.00").unwrap(), 14_500_000);
        assert_eq!(parse_kopecks("0.5").unwrap(), 50);
        assert_eq!(parse_kopecks("12").unwrap(), 1_200);
        assert_eq!(parse_kopecks("0").unwrap(), 0);
        assert_eq!(parse_kopecks("0.00").unwrap(), 0);
        assert_eq!(parse_kopecks("0.01").unwrap(), 1);
        assert_eq!(parse_kopecks("1500.25").unwrap(), 150_025);
        assert_eq!(parse_kopecks("-3.10").unwrap(), -310);
        assert_eq!(parse_kopecks("7.500").unwrap(), 750);
        // Values far beyond what an f64 holds exactly still come out to the kopeck.
        assert_eq!(parse_kopecks("90071992547409.93").unwrap(), 9_007_199_254_740_993);
    }

    #[test]
    fn rejects_what_is_not_exact_kopecks() {
        for bad in [
            "",
            "-",
            ".",
            "1.",
            ".5",
            "1.234",
            "1.001",
            "1e3",
            "1.5E2",
            "+1",
            " 1",
            "1 ",
            "1,5",
            "abc",
            "\"1.00\"",
            "NaN",
            "1.2.3",
            "--1",
            "92233720368547758.08",
        ] {
            assert!(parse_kopecks(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn formats_with_two_decimals() {
        assert_eq!(format_kopecks(0), "0.00");
        assert_eq!(format_kopecks(5), "0.05");
        assert_eq!(format_kopecks(50), "0.50");
        assert_eq!(format_kopecks(150_025), "1500.25");
        assert_eq!(format_kopecks(100_000), "1000.00");
        assert_eq!(format_kopecks(-5), "-0.05");
        assert_eq!(format_kopecks(i64::MIN), "-92233720368547758.08");
    }

    #[test]
    fn format_and_parse_round_trip() {
        for k in [0, 1, 9, 10, 99, 100, 101, 123_456_789, -1, -100, i64::MAX] {
            assert_eq!(parse_kopecks(&format_kopecks(k)).unwrap(), k, "{k}");
        }
    }
}
