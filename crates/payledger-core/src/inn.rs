//! The taxpayer identification number (ИНН) of an organization or an individual.

use std::fmt;

const WEIGHTS_10: [u32; 9] = [2, 4, 10, 3, 5, 9, 4, 6, 8];
const WEIGHTS_12_FIRST: [u32; 10] = [7, 2, 4, 10, 3, 5, 9, 4, 6, 8];
const WEIGHTS_12_SECOND: [u32; 11] = [3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8];

/// A syntactically valid INN: exactly 10 digits (a company) or 12 digits (an individual).
///
/// The check digits are not enforced on input: the bank's own examples use INNs such as `1234567890`, and
/// the bank, not us, is the authority on who paid. [`Inn::has_valid_checksum`] reports them for operators.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inn(String);

/// Why a text is not an INN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 10 or 12 digits")]
pub struct InnError;

impl Inn {
    /// Parses an INN from its exact text; no spaces or separators are accepted.
    pub fn parse(text: &str) -> Result<Inn, InnError> {
        let digits_only = text.bytes().all(|b| b.is_ascii_digit());
        if digits_only && (text.len() == 10 || text.len() == 12) { Ok(Inn(text.to_owned())) } else { Err(InnError) }
    }

    /// The INN's digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the control digits match, per the Federal Tax Service's algorithm.
    pub fn has_valid_checksum(&self) -> bool {
        let digits: Vec<u32> = self.0.bytes().map(|b| u32::from(b - b'0')).collect();
        match digits.len() {
            10 => check_digit(&digits[..9], &WEIGHTS_10) == digits[9],
            12 => {
                check_digit(&digits[..10], &WEIGHTS_12_FIRST) == digits[10]
                    && check_digit(&digits[..11], &WEIGHTS_12_SECOND) == digits[11]
            }
            _ => false,
        }
    }

    /// Builds a company INN with a correct check digit from a 9-digit body (`0..1_000_000_000`).
    ///
    /// Used by the seeder; the body is reduced modulo 10⁹ so any number gives a valid INN.
    pub fn company_from_body(body: u64) -> Inn {
        let mut text = format!("{:09}", body % 1_000_000_000);
        // A leading zero is valid but looks odd in demo data; the first two digits are a region code.
        if text.starts_with('0') {
            text.replace_range(0..1, "7");
        }
        let digits: Vec<u32> = text.bytes().map(|b| u32::from(b - b'0')).collect();
        let check = check_digit(&digits, &WEIGHTS_10);
        text.push(char::from(b'0' + check as u8));
        Inn(text)
    }
}

fn check_digit(digits: &[u32], weights: &[u32]) -> u32 {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    sum % 11 % 10
}

impl fmt::Display for Inn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ten_and_twelve_digits_only() {
        assert!(Inn::parse("1234567890").is_ok());
        assert!(Inn::parse("123456789012").is_ok());
        for bad in
            ["", "123456789", "12345678901", "1234567890123", "12345678x0", " 1234567890", "１２３４５６７８９０"]
        {
            assert_eq!(Inn::parse(bad), Err(InnError), "{bad:?}");
        }
    }

    #[test]
    fn knows_real_check_digits() {
        // Published INNs of large companies (Sberbank, Yandex) and a known individual-format example.
        assert!(Inn::parse("7707083893").map(|i| i.has_valid_checksum()).unwrap_or(false));
        assert!(Inn::parse("7736207543").map(|i| i.has_valid_checksum()).unwrap_or(false));
        assert!(Inn::parse("500100732259").map(|i| i.has_valid_checksum()).unwrap_or(false));
        assert!(!Inn::parse("1234567890").map(|i| i.has_valid_checksum()).unwrap_or(true));
    }

    proptest! {
        #[test]
        fn generated_company_inns_are_valid(body in any::<u64>()) {
            let inn = Inn::company_from_body(body);
            prop_assert_eq!(inn.as_str().len(), 10);
            prop_assert!(inn.has_valid_checksum());
            prop_assert!(Inn::parse(inn.as_str()).is_ok());
        }
    }
}
