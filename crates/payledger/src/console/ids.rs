//! Ids typed into the console's forms or carried in its links: positive whole numbers in decimal digits, so
//! `1e3`, `+5` or `0x10` are refused rather than read as something else.

use super::ConsoleError;

/// A positive whole number written in decimal digits, or what is wrong with it as the end of a sentence
/// (`must be a positive integer`) that the caller begins with what the id is.
pub(super) fn positive_id(text: &str) -> Result<i64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a positive integer".into());
    }
    let value: i64 = text.parse().map_err(|_| "is out of range".to_owned())?;
    if value > 0 { Ok(value) } else { Err("must be a positive integer".into()) }
}

/// An optional positive id in the query string; anything else is a bad link (the error page, 400).
pub(super) fn optional_id(text: Option<&str>, name: &str) -> Result<Option<i64>, ConsoleError> {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => {
            positive_id(text).map(Some).map_err(|message| ConsoleError::BadRequest(format!("{name} {message}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_decimal_integers() {
        assert_eq!(positive_id("42"), Ok(42));
        assert!(positive_id("0").is_err());
        assert!(positive_id("-1").is_err());
        assert!(positive_id("1e3").is_err());
        assert!(positive_id("99999999999999999999").is_err());
    }
}
