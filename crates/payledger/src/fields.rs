//! Reading a JSON request body field by field, from its exact text.
//!
//! Bodies are parsed into raw values first, so an amount is read from its literal digits (never through a
//! float), every bad field is reported at once, and an escaped key (`"user\u005fid"`) is still that key.

use std::collections::BTreeMap;

use payledger_core::{Currency, Money};
use serde_json::value::RawValue;

/// Field errors of an invalid request, by wire name.
pub type FieldErrors = BTreeMap<String, String>;

/// A single field error.
pub fn invalid(field: &str, reason: &str) -> FieldErrors {
    FieldErrors::from([(field.to_owned(), reason.to_owned())])
}

/// A JSON object body, read field by field while collecting every error.
pub struct JsonObject<'a> {
    fields: BTreeMap<String, &'a RawValue>,
    errors: FieldErrors,
}

impl<'a> JsonObject<'a> {
    /// Parses a body that must be one JSON object.
    pub fn parse(body: &'a [u8]) -> Result<JsonObject<'a>, FieldErrors> {
        let text = std::str::from_utf8(body).map_err(|_| invalid("body", "must be UTF-8 JSON"))?;
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|error| invalid("body", &format!("malformed JSON: {error}")))?;
        if !raw.get().starts_with('{') {
            return Err(invalid("body", "must be a JSON object"));
        }
        let fields =
            serde_json::from_str(raw.get()).map_err(|error| invalid("body", &format!("malformed JSON: {error}")))?;
        Ok(JsonObject { fields, errors: FieldErrors::new() })
    }

    /// A field that may be absent (or null).
    pub fn optional(&self, name: &str) -> Option<&'a RawValue> {
        self.fields.get(name).copied().filter(|value| value.get() != "null")
    }

    /// Whether a field is given as `null`, which [`optional`](Self::optional) reads as absent: for a change
    /// in which `null` clears what the field set.
    pub fn is_null(&self, name: &str) -> bool {
        self.fields.get(name).is_some_and(|value| value.get() == "null")
    }

    /// A field that must be present; its absence is recorded as an error.
    pub fn required(&mut self, name: &str) -> Option<&'a RawValue> {
        let value = self.optional(name);
        if value.is_none() {
            self.errors.insert(name.to_owned(), "this field is required".to_owned());
        }
        value
    }

    /// Keeps a field's parsed value, or records why it is invalid.
    pub fn check<T>(&mut self, name: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(reason) => {
                self.errors.insert(name.to_owned(), reason);
                None
            }
        }
    }

    /// Records an error that concerns a field as a whole (e.g. two fields that must differ).
    pub fn error(&mut self, name: &str, reason: &str) {
        self.errors.insert(name.to_owned(), reason.to_owned());
    }

    /// A required field parsed by `parse`.
    pub fn field<T>(&mut self, name: &str, parse: impl FnOnce(&RawValue) -> Result<T, String>) -> Option<T> {
        let raw = self.required(name)?;
        self.check(name, parse(raw))
    }

    /// An optional field parsed by `parse`: `Ok(None)` when absent.
    pub fn optional_field<T>(&mut self, name: &str, parse: impl FnOnce(&RawValue) -> Result<T, String>) -> Option<T> {
        let raw = self.optional(name)?;
        self.check(name, parse(raw))
    }

    /// The errors found so far; empty means every field read was valid.
    pub fn finish(self) -> Result<(), FieldErrors> {
        if self.errors.is_empty() { Ok(()) } else { Err(self.errors) }
    }
}

/// A JSON string's value.
pub fn json_string(raw: &RawValue) -> Result<String, String> {
    serde_json::from_str::<String>(raw.get()).map_err(|_| "must be a string".to_owned())
}

/// An amount in roubles: a JSON number parsed from its literal text, or a decimal string.
pub fn parse_amount(raw: &RawValue) -> Result<Money, String> {
    let text = raw.get();
    let result = if text.starts_with('"') {
        Money::parse_positive(&json_string(raw)?, Currency::RUB, false)
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Money::parse_positive(text, Currency::RUB, true)
    } else {
        return Err("must be a number or a decimal string".to_owned());
    };
    result.map_err(|error| error.to_string())
}

/// A whole number: a JSON number whose value is whole (`42`, and also `42.0` or `4.2e1`, which JSON and JSON
/// Schema call the same integer), or a string of decimal digits (as the original service's forms accepted).
/// Fractions and out-of-range values are refused rather than rounded.
pub fn parse_integer(raw: &RawValue) -> Result<i64, String> {
    let text = raw.get();
    let digits = if text.starts_with('"') { json_string(raw)? } else { whole_number_digits(text)? };
    let unsigned = digits.strip_prefix('-').unwrap_or(&digits);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be an integer".to_owned());
    }
    digits.parse::<i64>().map_err(|_| "is out of range".to_owned())
}

/// The longest number literal read as an integer; an i64 has 19 digits, so anything longer is noise.
const MAX_INTEGER_LITERAL: usize = 64;

/// The plain digits (with its sign) of a JSON number literal whose value is whole, exactly: `4.20e1` is `42`,
/// `42.5` is refused. Not a number at all, or too long to be an i64, is refused too.
fn whole_number_digits(text: &str) -> Result<String, String> {
    let not_integer = || "must be an integer".to_owned();
    if text.len() > MAX_INTEGER_LITERAL {
        return Err("is out of range".to_owned());
    }
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().map_err(|_| not_integer())?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || exponent.unsigned_abs() > 64 {
        return Err(not_integer());
    }
    // All digits, and where the decimal point falls in them once the exponent moved it.
    let all: String = [whole, fraction].concat();
    let point = i32::try_from(whole.len()).map_err(|_| not_integer())? + exponent;
    let point = usize::try_from(point.max(0)).map_err(|_| not_integer())?;
    let (integer, dropped) = if point >= all.len() {
        (format!("{all}{}", "0".repeat(point - all.len())), "")
    } else {
        (all[..point].to_owned(), &all[point..])
    };
    if dropped.bytes().any(|b| b != b'0') {
        return Err(not_integer());
    }
    let integer = integer.trim_start_matches('0');
    Ok(format!("{sign}{}", if integer.is_empty() { "0" } else { integer }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap_or_else(|_| panic!("test JSON"))
    }

    #[test]
    fn integers_are_exact_or_refused() {
        assert_eq!(parse_integer(&raw("42")), Ok(42));
        assert_eq!(parse_integer(&raw("\"42\"")), Ok(42));
        assert_eq!(parse_integer(&raw("-7")), Ok(-7));
        assert_eq!(parse_integer(&raw("1.0")), Ok(1));
        assert_eq!(parse_integer(&raw("1e3")), Ok(1000));
        assert_eq!(parse_integer(&raw("4.20e1")), Ok(42));
        assert_eq!(parse_integer(&raw("-7.000")), Ok(-7));
        assert_eq!(parse_integer(&raw("0.0")), Ok(0));
        assert!(parse_integer(&raw("1.5")).is_err());
        assert!(parse_integer(&raw("15e-1")).is_err());
        assert!(parse_integer(&raw("1e999999")).is_err());
        assert!(parse_integer(&raw("\"1.0\"")).is_err());
        assert!(parse_integer(&raw("true")).is_err());
        assert!(parse_integer(&raw("\"\"")).is_err());
        assert_eq!(parse_integer(&raw("99999999999999999999")), Err("is out of range".to_owned()));
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut body = match JsonObject::parse(br#"{"user_id": "x", "amount": -1}"#) {
            Ok(body) => body,
            Err(errors) => panic!("{errors:?}"),
        };
        let _ = body.field("user_id", parse_integer);
        let _ = body.field("amount", parse_amount);
        let _ = body.field("missing", parse_integer);
        let errors = body.finish().err().unwrap_or_default();
        assert_eq!(errors.keys().map(String::as_str).collect::<Vec<_>>(), ["amount", "missing", "user_id"]);
    }
}
