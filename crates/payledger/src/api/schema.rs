//! The spec's words for request values: what each parser accepts, said exactly in JSON Schema, so a client
//! (or a schema-driven tester) that follows the spec is never refused for a value it could not have known was
//! wrong, and a value the spec calls invalid is never accepted.
//!
//! Each type here documents a parser elsewhere: [`crate::fields::parse_amount`] and
//! `payledger_core::money::parse_decimal_minor` for amounts, [`crate::fields::parse_integer`] for ids,
//! `payledger_core::Inn::parse` for INNs, `payledger_core::Currency::from_code_ignore_case` for currencies.
//! They are spec-only: no request is deserialized through them.

use std::borrow::Cow;

use payledger_core::Currency;
use payledger_core::money::MAX_AMOUNT_MINOR;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema::SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

/// The longest amount literal the parser looks at (`payledger_core::money`'s limit).
const MAX_AMOUNT_TEXT: usize = 64;

/// A regular expression (unanchored) for the decimal text of the whole numbers 1 to `max`, leading zeros
/// allowed: `0*(` shorter numbers `|` same-length numbers up to `max` digit by digit `)`.
pub fn positive_decimal_at_most(max: u64) -> String {
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let length = digits.len();
    let mut alternatives = Vec::new();
    if length > 1 {
        alternatives.push(format!("[1-9][0-9]{{0,{}}}", length - 2));
    }
    for (position, &digit) in digits.iter().enumerate() {
        let lowest = if position == 0 { 1 } else { 0 };
        if digit > lowest {
            let prefix: String = digits[..position].iter().map(|d| char::from(b'0' + d)).collect();
            let below = if digit - 1 == lowest { format!("{lowest}") } else { format!("[{lowest}-{}]", digit - 1) };
            let rest = length - position - 1;
            let tail = if rest == 0 { String::new() } else { format!("[0-9]{{{rest}}}") };
            alternatives.push(format!("{prefix}{below}{tail}"));
        }
    }
    alternatives.push(max.to_string());
    format!("0*({})", alternatives.join("|"))
}

/// The decimal text of a positive amount with at most `minor_digits` significant decimals (trailing zeros
/// past them are fine) and at most [`MAX_AMOUNT_MINOR`] minor units, leading zeros allowed; anchored.
pub fn amount_pattern(minor_digits: u8) -> String {
    let digits = usize::from(minor_digits);
    // MAX_AMOUNT_MINOR is a power of ten: the largest amount is 1 followed by `zeros` zeros.
    let zeros = MAX_AMOUNT_MINOR.to_string().len() - 1 - digits;
    let fraction = if digits == 0 { r"(\.0+)?".to_owned() } else { format!(r"(\.[0-9]{{1,{digits}}}0*)?") };
    let mut alternatives =
        vec![format!("0*[1-9][0-9]{{0,{}}}{fraction}", zeros - 1), format!(r"0*1{}(\.0+)?", "0".repeat(zeros))];
    // Below one: the first non-zero digit within the currency's decimals.
    let below_one: Vec<String> = (0..digits)
        .map(|zeros_before| {
            let rest = digits - zeros_before - 1;
            let tail = if rest == 0 { String::new() } else { format!("[0-9]{{0,{rest}}}") };
            format!("{}[1-9]{tail}", "0".repeat(zeros_before))
        })
        .collect();
    if !below_one.is_empty() {
        alternatives.push(format!(r"0+\.({})0*", below_one.join("|")));
    }
    format!("^({})$", alternatives.join("|"))
}

/// An amount of a currency with `minor_digits` decimals: a decimal string or a JSON number, both read from
/// their exact text (never through a float).
pub fn amount_schema(minor_digits: u8) -> Schema {
    let scale = 10u64.pow(u32::from(minor_digits));
    let largest = MAX_AMOUNT_MINOR.unsigned_abs() / scale;
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(amount_pattern(minor_digits)))
        .max_length(Some(MAX_AMOUNT_TEXT))
        .description(Some(format!(
            "A decimal string: digits, optionally `.` and digits; > 0, at most {minor_digits} significant \
             decimals, at most {largest}"
        )))
        .examples([serde_json::json!(example_amount(minor_digits))]);
    let number = ObjectBuilder::new()
        .schema_type(if minor_digits == 0 { Type::Integer } else { Type::Number })
        .exclusive_minimum(Some(0))
        .maximum(Some(largest as usize))
        .description(Some(format!("A JSON number, read from its literal text; at most {minor_digits} decimals")))
        .examples([serde_json::json!(100)]);
    // Not a money path: JSON Schema writes `multipleOf` as a JSON number, so the spec's text needs an f64 here.
    // 1/10^d for the 1 to 4 minor digits of ISO 4217 is the f64 nearest 0.1 … 0.0001, which serializes as
    // exactly that literal; the server never reads amounts through it (fields.rs parses their text).
    let number = if minor_digits == 0 { number } else { number.multiple_of(Some(1.0 / scale as f64)) };
    OneOfBuilder::new()
        .item(text)
        .item(number)
        .description(Some(format!(
            "An amount: a decimal string or a JSON number, > 0, at most {minor_digits} decimals, at most {largest}"
        )))
        .into()
}

fn example_amount(minor_digits: u8) -> String {
    match minor_digits {
        0 => "1500".to_owned(),
        digits => format!("1500.{}", "0".repeat(usize::from(digits))),
    }
}

/// Roubles: what the balance endpoints and the bank webhook accept as `amount`.
#[derive(Debug)]
pub struct RubAmount;

impl PartialSchema for RubAmount {
    fn schema() -> RefOr<Schema> {
        amount_schema(Currency::RUB.minor_digits()).into()
    }
}

impl ToSchema for RubAmount {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RubAmount")
    }
}

/// A positive 64-bit id (a user, a service, an order): a JSON integer or a string of decimal digits, as the
/// original service's forms accepted (`fields::parse_integer`).
#[derive(Debug)]
pub struct PositiveId;

/// The digits of a positive 64-bit integer, leading zeros allowed; anchored.
pub fn positive_id_pattern() -> String {
    format!("^{}$", positive_decimal_at_most(i64::MAX.unsigned_abs()))
}

impl PartialSchema for PositiveId {
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(i64::MAX as u64 as usize));
        let text = ObjectBuilder::new().schema_type(Type::String).pattern(Some(positive_id_pattern()));
        Schema::from(
            OneOfBuilder::new()
                .item(number)
                .item(text)
                .description(Some("A positive 64-bit integer, or a string of its decimal digits")),
        )
        .into()
    }
}

impl ToSchema for PositiveId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PositiveId")
    }
}

/// A positive id in a path or a query: a string of decimal digits (leading zeros allowed) up to the largest
/// 64-bit integer.
#[derive(Debug)]
pub struct IdText;

impl PartialSchema for IdText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(positive_id_pattern()))
            .description(Some("A positive 64-bit integer in decimal digits"))
            .examples([serde_json::json!("1")])
            .into()
    }
}

impl ToSchema for IdText {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("IdText")
    }
}

/// Characters Rust's `char::is_control` calls control characters (Unicode `Cc`), as a class body.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
/// Characters Rust's `str::trim` removes (Unicode `White_Space`), as a class body.
pub const WHITE_SPACE: &str = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Neither white space nor a control character, as a class body.
const VISIBLE: &str = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Text with no control character at all, blank allowed (a file name).
pub fn no_control_pattern() -> String {
    format!("^[^{CONTROL}]*$")
}

/// Text that is not blank and has no control character at all (a bank document number).
pub fn visible_text_pattern() -> String {
    format!("^[^{CONTROL}]*[^{VISIBLE}][^{CONTROL}]*$")
}

/// A name that is `1..=max` characters once trimmed, with no control character inside (a recipient holder:
/// the ends are trimmed before the checks).
pub fn trimmed_name_pattern(max: usize) -> String {
    format!("^[{WHITE_SPACE}]*[^{VISIBLE}]([^{CONTROL}]{{0,{}}}[^{VISIBLE}])?[{WHITE_SPACE}]*$", max.saturating_sub(2))
}

/// Free text without control characters other than newline and tab (a payout description).
pub fn free_text_pattern() -> String {
    r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$".to_owned()
}

/// The history cursor: the hex (lower case) of `date|amount` `:` `asc|desc` `:` a signed amount `:` a line id,
/// as `next_cursor` gives it. Clients pass it back unchanged; the spec spells it out so a generated one is
/// one the server can read.
pub const HISTORY_CURSOR_PATTERN: &str =
    "^(64617465|616d6f756e74)3a(617363|64657363)3a(2d)?(3[0-9]){1,18}3a(3[0-9]){1,18}$";

/// An object in which at least one of `names` is present and not null: the parsers read a null field as an
/// absent one, so "required" alone would let `{"status": null}` through. A field in `clearable` counts when it
/// is null too: there null is a change of its own (it removes what the field set).
pub fn at_least_one_of(names: &[&str], clearable: &[&str]) -> Schema {
    let mut any_of = utoipa::openapi::schema::AnyOfBuilder::new();
    for name in names {
        let mut types = vec![Type::String, Type::Number, Type::Integer, Type::Boolean, Type::Object, Type::Array];
        if clearable.contains(name) {
            types.push(Type::Null);
        }
        let given = ObjectBuilder::new().schema_type(SchemaType::from_iter(types));
        any_of = any_of.item(ObjectBuilder::new().required(*name).property(*name, given));
    }
    any_of.into()
}

/// An `Idempotency-Key` header (`crate::idempotency::IdempotencyKey::parse`): 1 to 255 visible ASCII characters
/// or spaces, starting and ending with a visible one (HTTP drops the spaces around a header value).
#[derive(Debug)]
pub struct IdempotencyKeyText;

impl PartialSchema for IdempotencyKeyText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[!-~]([ -~]{0,253}[!-~])?$"))
            .examples([serde_json::json!("order-1001-deposit")])
            .into()
    }
}

impl ToSchema for IdempotencyKeyText {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("IdempotencyKey")
    }
}

/// The pattern of an INN: 10 or 12 ASCII digits.
pub const INN_PATTERN: &str = "^([0-9]{10}|[0-9]{12})$";

/// An organization's INN as a request gives it.
#[derive(Debug)]
pub struct InnText;

impl PartialSchema for InnText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(INN_PATTERN))
            .description(Some("10 or 12 digits"))
            .examples([serde_json::json!("7707083893")])
            .into()
    }
}

impl ToSchema for InnText {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Inn")
    }
}

/// Every active ISO 4217 currency, by code: the ones `Currency::from_code` accepts, found by asking it about
/// every three-letter code once (17,576 look-ups when the spec is built).
pub fn active_currencies() -> Vec<Currency> {
    let letters = b'A'..=b'Z';
    let mut found = Vec::new();
    for first in letters.clone() {
        for second in letters.clone() {
            for third in letters.clone() {
                let code = [first, second, third];
                if let Some(currency) = std::str::from_utf8(&code).ok().and_then(Currency::from_code) {
                    found.push(currency);
                }
            }
        }
    }
    found
}

/// A pattern matching the given codes in any letter case (`[Rr][Uu][Bb]`), as the API reads them.
pub fn currency_pattern(currencies: &[Currency]) -> String {
    let codes: Vec<String> = currencies
        .iter()
        .map(|currency| {
            currency.code().chars().map(|c| format!("[{}{}]", c, c.to_ascii_lowercase())).collect::<String>()
        })
        .collect();
    format!("^({})$", codes.join("|"))
}

/// The active currencies grouped by their count of decimals (0, 2, 3, …), each group with its pattern.
pub fn currencies_by_decimals() -> Vec<(u8, Vec<Currency>)> {
    let currencies = active_currencies();
    let mut digits: Vec<u8> = currencies.iter().map(Currency::minor_digits).collect();
    digits.sort_unstable();
    digits.dedup();
    digits
        .into_iter()
        .map(|count| (count, currencies.iter().copied().filter(|c| c.minor_digits() == count).collect()))
        .collect()
}

/// A `currency` of one group: its codes in any letter case.
pub fn currency_schema(count: u8, group: &[Currency]) -> Schema {
    let codes: Vec<&str> = group.iter().map(Currency::code).collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(currency_pattern(group)))
        .description(Some(format!(
            "An active ISO 4217 code with {count} decimals, in any letter case: {}",
            codes.join(", ")
        )))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny matcher for the patterns above is overkill; their shape is checked on known strings instead
    /// by the HTTP tests and schemathesis. Here: the generated alternations are the expected text.
    #[test]
    fn decimal_bounds_are_spelled_digit_by_digit() {
        assert_eq!(positive_decimal_at_most(9), "0*([1-8]|9)");
        assert_eq!(positive_decimal_at_most(500), "0*([1-9][0-9]{0,1}|[1-4][0-9]{2}|500)");
        assert_eq!(positive_decimal_at_most(1_000), "0*([1-9][0-9]{0,2}|1000)");
        assert_eq!(positive_decimal_at_most(92), "0*([1-9][0-9]{0,0}|[1-8][0-9]{1}|9[0-1]|92)");
    }

    #[test]
    fn amount_patterns_follow_the_currency_decimals() {
        assert_eq!(
            amount_pattern(2),
            r"^(0*[1-9][0-9]{0,11}(\.[0-9]{1,2}0*)?|0*1000000000000(\.0+)?|0+\.([1-9][0-9]{0,1}|0[1-9])0*)$"
        );
        assert_eq!(amount_pattern(0), r"^(0*[1-9][0-9]{0,13}(\.0+)?|0*100000000000000(\.0+)?)$");
    }

    #[test]
    fn the_rouble_and_the_yen_are_active_and_gold_is_not() {
        let codes: Vec<&str> = active_currencies().iter().map(Currency::code).collect();
        assert!(codes.contains(&"RUB") && codes.contains(&"JPY") && codes.contains(&"KWD"));
        assert!(!codes.contains(&"XAU"));
    }
}
