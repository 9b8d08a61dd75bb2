//! Recipient details: plain strings in ([`RecipientInput`]), validated details out ([`RecipientDetails`]),
//! and what the API shows of them ([`MaskedRecipient`]: never more than the last four digits of a number).

use std::fmt;

use serde::Serialize;

use super::{FieldErrors, MASK_PREFIX, MAX_HOLDER_CHARS};

/// Recipient details as the HTTP layer extracted them from the `recipient_details` object: each field's string
/// value, or `None` when absent. Fields the chosen `type` does not use are ignored.
///
/// `Debug` shows neither the card number nor the account number: a raw input may be logged on the way to a 400.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RecipientInput {
    /// `type`: `card` or `bank_account`.
    pub kind: Option<String>,
    /// `number`, for a card; spaces are allowed and dropped.
    pub number: Option<String>,
    /// `holder`, for both kinds.
    pub holder: Option<String>,
    /// `account_number`, for a bank account.
    pub account_number: Option<String>,
    /// `bik`, for a bank account.
    pub bik: Option<String>,
}

impl fmt::Debug for RecipientInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientInput")
            .field("kind", &self.kind)
            .field("number", &Redacted(&self.number))
            .field("holder", &self.holder)
            .field("account_number", &Redacted(&self.account_number))
            .field("bik", &self.bik)
            .finish()
    }
}

/// Debug-prints whether an optional secret is there, and its length, but none of its characters.
struct Redacted<'a>(&'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(text) => write!(f, "Some(<{} chars redacted>)", text.chars().count()),
            None => f.write_str("None"),
        }
    }
}

/// Where a payout is sent: valid recipient details, built by [`RecipientDetails::validate`].
///
/// Numbers hold digits only. `Debug` masks the card and account numbers to their last four digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum RecipientDetails {
    /// A payment card.
    Card {
        /// 13 to 19 digits passing the Luhn check. Secret: never shown or logged in full.
        number: String,
        /// The cardholder's name, trimmed.
        holder: String,
    },
    /// A Russian bank account.
    BankAccount {
        /// 20 digits whose control key matches `bik`.
        account_number: String,
        /// The bank's 9-digit identification code.
        bik: String,
        /// The account holder's name, trimmed.
        holder: String,
    },
}

/// The wire name of each field inside `recipient_details`, prefixed for error keys.
const TYPE_FIELD: &str = "recipient_details.type";
const NUMBER_FIELD: &str = "recipient_details.number";
const HOLDER_FIELD: &str = "recipient_details.holder";
const ACCOUNT_FIELD: &str = "recipient_details.account_number";
const BIK_FIELD: &str = "recipient_details.bik";

impl RecipientDetails {
    /// The `type` value for cards.
    pub const CARD: &'static str = "card";
    /// The `type` value for bank accounts.
    pub const BANK_ACCOUNT: &'static str = "bank_account";

    /// Validates extracted input, reporting every bad field at once under its `recipient_details.…` key.
    ///
    /// A card needs `number` (13–19 digits after dropping spaces, passing Luhn) and `holder`; a bank account needs
    /// `account_number` (20 digits), `bik` (9 digits) and `holder`, and the account's control key must match the
    /// BIK (reported on `account_number`, and only when both are well-formed). A holder is non-blank after trimming,
    /// at most [`MAX_HOLDER_CHARS`] characters and free of control characters. A missing or unknown `type` is the
    /// only error reported, since it decides which other fields apply. No message repeats the input.
    pub fn validate(input: &RecipientInput) -> Result<RecipientDetails, FieldErrors> {
        let mut errors = FieldErrors::new();
        let details = match input.kind.as_deref() {
            Some(RecipientDetails::CARD) => {
                let number = field(&mut errors, NUMBER_FIELD, check_card_number(input.number.as_deref()));
                let holder = field(&mut errors, HOLDER_FIELD, check_holder(input.holder.as_deref()));
                number.zip(holder).map(|(number, holder)| RecipientDetails::Card { number, holder })
            }
            Some(RecipientDetails::BANK_ACCOUNT) => {
                let account = field(&mut errors, ACCOUNT_FIELD, check_digits(input.account_number.as_deref(), 20));
                let bik = field(&mut errors, BIK_FIELD, check_digits(input.bik.as_deref(), 9));
                let holder = field(&mut errors, HOLDER_FIELD, check_holder(input.holder.as_deref()));
                if let (Some(account), Some(bik)) = (&account, &bik)
                    && !account_key_matches(account, bik)
                {
                    errors.insert(ACCOUNT_FIELD.into(), "does not match the BIK (wrong control key)".into());
                }
                match (account, bik, holder) {
                    (Some(account_number), Some(bik), Some(holder)) if errors.is_empty() => {
                        Some(RecipientDetails::BankAccount { account_number, bik, holder })
                    }
                    _ => None,
                }
            }
            // The type decides which fields apply, so nothing else is judged without a known one.
            None => {
                errors.insert(TYPE_FIELD.into(), "is required".into());
                None
            }
            Some(_) => {
                errors.insert(TYPE_FIELD.into(), "must be one of: card, bank_account".into());
                None
            }
        };
        details.ok_or(errors)
    }

    /// The wire `type`: `card` or `bank_account`.
    pub fn kind(&self) -> &'static str {
        match self {
            RecipientDetails::Card { .. } => RecipientDetails::CARD,
            RecipientDetails::BankAccount { .. } => RecipientDetails::BANK_ACCOUNT,
        }
    }

    /// The recipient's name.
    pub fn holder(&self) -> &str {
        match self {
            RecipientDetails::Card { holder, .. } | RecipientDetails::BankAccount { holder, .. } => holder,
        }
    }

    /// The last four digits of the card or account number: the only part of it that may be shown.
    pub fn last4(&self) -> &str {
        match self {
            RecipientDetails::Card { number, .. } => last4(number),
            RecipientDetails::BankAccount { account_number, .. } => last4(account_number),
        }
    }

    /// The details as the API shows them: the number masked to `•••• 1111`, the BIK and holder as they are.
    pub fn masked(&self) -> MaskedRecipient {
        match self {
            RecipientDetails::Card { holder, .. } => {
                MaskedRecipient::Card { number: self.masked_number(), holder: holder.clone() }
            }
            RecipientDetails::BankAccount { bik, holder, .. } => MaskedRecipient::BankAccount {
                account_number: self.masked_number(),
                bik: bik.clone(),
                holder: holder.clone(),
            },
        }
    }

    /// The card or account number as shown: [`MASK_PREFIX`] and the last four digits.
    pub fn masked_number(&self) -> String {
        format!("{MASK_PREFIX}{}", self.last4())
    }
}

impl fmt::Debug for RecipientDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Logs must never show a full number, so Debug prints the masked form only.
        match self {
            RecipientDetails::Card { holder, .. } => {
                f.debug_struct("Card").field("number", &self.masked_number()).field("holder", holder).finish()
            }
            RecipientDetails::BankAccount { bik, holder, .. } => f
                .debug_struct("BankAccount")
                .field("account_number", &self.masked_number())
                .field("bik", bik)
                .field("holder", holder)
                .finish(),
        }
    }
}

/// Recipient details as API output: serializes to `{"type": "card", "number": "•••• 1111", "holder": "…"}` or
/// `{"type": "bank_account", "account_number": "•••• 1234", "bik": "…", "holder": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MaskedRecipient {
    /// A payment card.
    Card {
        /// The masked number, e.g. `•••• 1111`.
        number: String,
        /// The cardholder's name.
        holder: String,
    },
    /// A Russian bank account.
    BankAccount {
        /// The masked account number, e.g. `•••• 1234`.
        account_number: String,
        /// The bank's identification code, in full.
        bik: String,
        /// The account holder's name.
        holder: String,
    },
}

/// A field's checked value, or `None` after recording its message under `name`.
fn field(errors: &mut FieldErrors, name: &str, checked: Result<String, String>) -> Option<String> {
    checked.map_err(|message| errors.insert(name.to_owned(), message)).ok()
}

/// The last four characters of a digit string (all of it if shorter).
fn last4(digits: &str) -> &str {
    let start = digits.char_indices().rev().nth(3).map_or(0, |(at, _)| at);
    &digits[start..]
}

/// A holder name, trimmed, or the message for `holder`.
fn check_holder(holder: Option<&str>) -> Result<String, String> {
    let holder = holder.ok_or("is required")?.trim();
    if holder.is_empty() {
        return Err("must not be blank".into());
    }
    if holder.chars().count() > MAX_HOLDER_CHARS {
        return Err(format!("must be at most {MAX_HOLDER_CHARS} characters"));
    }
    if holder.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(holder.to_owned())
}

/// A card number with its spaces dropped, or the message for `number`; never echoes the number.
fn check_card_number(number: Option<&str>) -> Result<String, String> {
    let digits: String = number.ok_or("is required")?.chars().filter(|&c| c != ' ').collect();
    if !(13..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be 13 to 19 digits".into());
    }
    if !luhn_valid(&digits) {
        return Err("is not a valid card number (check digit)".into());
    }
    Ok(digits)
}

/// Exactly `len` ASCII digits, or the message for the field.
fn check_digits(text: Option<&str>, len: usize) -> Result<String, String> {
    let text = text.ok_or("is required")?;
    if text.len() == len && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(format!("must be {len} digits"))
    }
}

/// The value of an ASCII digit.
fn digit(byte: u8) -> u32 {
    u32::from(byte - b'0')
}

/// Whether a string of ASCII digits passes the Luhn check: from the right, every second digit is doubled (less 9
/// if over 9), and the sum must be a multiple of 10.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let value = digit(byte);
            if index % 2 == 1 {
                let doubled = value * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                value
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether a 20-digit account's control key (its 9th digit) matches the 9-digit BIK of the bank it is opened in,
/// per the Bank of Russia's "Порядок расчета контрольного ключа в номере лицевого счета" (08.09.1997 N 515).
///
/// The account is prefixed with the bank's conditional number: for an account opened in a Bank of Russia
/// division (a BIK ending in `000` for an RKC, `001` or `002` for other divisions), `0` followed by BIK digits
/// 5–6; for a credit institution (endings `050`–`999`), BIK digits 7–9. The 23 digits are weighted 7, 1, 3
/// repeating, and the sum of the products must end in 0. Anything not 9 + 20 ASCII digits is refused.
pub fn account_key_matches(account_number: &str, bik: &str) -> bool {
    let all_digits = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(account_number, 20) || !all_digits(bik, 9) {
        return false;
    }
    let (region_division, institution) = bik.split_at(6);
    let prefix: [u8; 3] = match institution {
        "000" | "001" | "002" => {
            let division = region_division.as_bytes();
            [b'0', division[4], division[5]]
        }
        _ => {
            let institution = institution.as_bytes();
            [institution[0], institution[1], institution[2]]
        }
    };
    const WEIGHTS: [u32; 3] = [7, 1, 3];
    let sum: u32 = prefix
        .iter()
        .chain(account_number.as_bytes())
        .enumerate()
        .map(|(index, &byte)| digit(byte) * WEIGHTS[index % 3])
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str, holder: &str) -> RecipientInput {
        RecipientInput {
            kind: Some("card".into()),
            number: Some(number.into()),
            holder: Some(holder.into()),
            ..RecipientInput::default()
        }
    }

    fn bank(account: &str, bik: &str, holder: &str) -> RecipientInput {
        RecipientInput {
            kind: Some("bank_account".into()),
            account_number: Some(account.into()),
            bik: Some(bik.into()),
            holder: Some(holder.into()),
            ..RecipientInput::default()
        }
    }

    fn errors(input: &RecipientInput) -> Vec<(String, String)> {
        match RecipientDetails::validate(input) {
            Ok(details) => panic!("{input:?} should be refused, got {details:?}"),
            Err(errors) => errors.into_iter().collect(),
        }
    }

    fn error(field: &str, message: &str) -> (String, String) {
        (format!("recipient_details.{field}"), message.to_owned())
    }

    #[test]
    fn luhn_accepts_known_test_cards_and_refuses_a_changed_digit() {
        for number in [
            "4111111111111111",
            "4000000000000002",
            "4000000000000119",
            "5555555555554444",
            "378282246310005",
            "4222222222222",
            "6011000990139424",
            "79927398713",
        ] {
            assert!(luhn_valid(number), "{number}");
        }
        for number in ["4111111111111112", "4000000000000003", "79927398710", "", "41111a1111111111"] {
            assert!(!luhn_valid(number), "{number}");
        }
    }

    #[test]
    fn a_valid_card_is_kept_with_spaces_dropped_and_the_holder_trimmed() {
        let details = RecipientDetails::validate(&card("4111 1111 1111 1111", "  Иван Иванов ")).ok();
        assert_eq!(
            details,
            Some(RecipientDetails::Card { number: "4111111111111111".into(), holder: "Иван Иванов".into() })
        );
        // 13 and 19 digits are the bounds.
        assert!(RecipientDetails::validate(&card("4222222222222", "A")).is_ok());
        let nineteen = with_luhn_digit("400000000000000000");
        assert_eq!(nineteen.len(), 19);
        assert!(RecipientDetails::validate(&card(&nineteen, "A")).is_ok());
        // A holder of exactly 100 characters, each two bytes.
        assert!(RecipientDetails::validate(&card("4111111111111111", &"Ж".repeat(100))).is_ok());
    }

    /// Appends the digit that makes `body` pass Luhn.
    fn with_luhn_digit(body: &str) -> String {
        (0..10).map(|d| format!("{body}{d}")).find(|n| luhn_valid(n)).unwrap_or_else(|| panic!("no Luhn digit"))
    }

    #[test]
    fn card_errors_name_each_bad_field_and_never_echo_the_number() {
        let twelve = with_luhn_digit("41111111111");
        let twenty = with_luhn_digit("4111111111111111111");
        let cases: [(RecipientInput, Vec<(String, String)>); 9] = [
            (card("4111111111111112", "Ivan"), vec![error("number", "is not a valid card number (check digit)")]),
            (card(&twelve, "Ivan"), vec![error("number", "must be 13 to 19 digits")]),
            (card(&twenty, "Ivan"), vec![error("number", "must be 13 to 19 digits")]),
            (card("4111-1111-1111-1111", "Ivan"), vec![error("number", "must be 13 to 19 digits")]),
            (card("４１１１１１１１１１１１１１１１", "Ivan"), vec![error("number", "must be 13 to 19 digits")]),
            (card("4111111111111111", "   "), vec![error("holder", "must not be blank")]),
            (card("4111111111111111", &"Ж".repeat(101)), vec![error("holder", "must be at most 100 characters")]),
            (card("4111111111111111", "Iv\u{0}an"), vec![error("holder", "must not contain control characters")]),
            (
                RecipientInput { kind: Some("card".into()), ..RecipientInput::default() },
                vec![error("holder", "is required"), error("number", "is required")],
            ),
        ];
        for (input, expected) in cases {
            let found = errors(&input);
            assert_eq!(found, expected, "{input:?}");
            for (_, message) in &found {
                assert!(!message.contains("4111"), "{message}");
            }
        }
        // Both bad at once are both reported.
        assert_eq!(
            errors(&card("1234", "")),
            vec![error("holder", "must not be blank"), error("number", "must be 13 to 19 digits")]
        );
    }

    #[test]
    fn a_missing_or_unknown_type_is_the_only_error() {
        let mut input = card("1", "");
        input.kind = None;
        assert_eq!(errors(&input), vec![error("type", "is required")]);
        for kind in ["", "Card", "paypal", "bank account"] {
            input.kind = Some(kind.into());
            assert_eq!(errors(&input), vec![error("type", "must be one of: card, bank_account")], "{kind:?}");
        }
    }

    /// The account with its 9th digit (the control key) set so that it matches `bik`, computed as the Bank of
    /// Russia's procedure does: weights 7-1-3 over the 23 digits with the key at 0, the last digit of the sum of the
    /// products' last digits, times 3, last digit.
    fn with_key(account: &str, bik: &str) -> String {
        let prefix =
            if ["000", "001", "002"].contains(&&bik[6..]) { format!("0{}", &bik[4..6]) } else { bik[6..].into() };
        let zeroed = format!("{}0{}", &account[..8], &account[9..]);
        let sum: u32 = format!("{prefix}{zeroed}")
            .bytes()
            .zip([7, 1, 3].into_iter().cycle())
            .map(|(b, w)| (u32::from(b - b'0') * w) % 10)
            .sum();
        let key = (sum % 10) * 3 % 10;
        format!("{}{key}{}", &account[..8], &account[9..])
    }

    #[test]
    fn the_account_key_follows_the_bank_of_russia_examples() {
        // Examples from the procedure itself: a client account at a credit institution (BIK 049805746, key 7) and
        // a correspondent account opened at an RKC (BIK 049805000, key 8).
        assert!(account_key_matches("40602810700000000025", "049805746"));
        assert!(account_key_matches("30101810800000000746", "049805000"));
        assert_eq!(with_key("40602810000000000025", "049805746"), "40602810700000000025");
        assert_eq!(with_key("30101810000000000746", "049805000"), "30101810800000000746");
        // Widely published real pairs: an account at Sberbank (BIK 044525225), and Sberbank's correspondent account,
        // opened at the Bank of Russia division whose digits 5-6 are 25.
        assert!(account_key_matches("40702810938000000001", "044525225"));
        assert!(account_key_matches("30101810400000000225", "044525000"));
        // Every other key digit is wrong.
        for key in (0..10).filter(|&k| k != 7) {
            assert!(!account_key_matches(&format!("40602810{key}00000000025"), "049805746"), "{key}");
        }
        // The same account is checked against the institution's number, not the RKC's, and vice versa.
        assert!(!account_key_matches("40602810700000000025", "049805000"));
        assert!(!account_key_matches("30101810800000000746", "049805746"));
        // Any Bank of Russia division (000, 001, 002) prefixes "0" and BIK digits 5-6 ("025" here): it checks
        // exactly like a credit institution whose own number were 025.
        let keyed_for_025 = with_key("40101810000000010041", "044525025");
        for bik in ["044525000", "044525001", "044525002"] {
            assert!(account_key_matches(&keyed_for_025, bik), "{bik}");
            for key in 0..10 {
                let account = format!("{}{key}{}", &keyed_for_025[..8], &keyed_for_025[9..]);
                assert_eq!(account_key_matches(&account, bik), account_key_matches(&account, "044525025"), "{bik}");
            }
        }
        // Accounts at a large bank, keys fixed by hand through the procedure.
        for account in ["40817810099910004312", "40702810138000000001", "40817810500000000001"] {
            let fixed = with_key(account, "044525225");
            assert!(account_key_matches(&fixed, "044525225"), "{fixed}");
            let wrong = format!("{}{}{}", &fixed[..8], (fixed.as_bytes()[8] - b'0' + 1) % 10, &fixed[9..]);
            assert!(!account_key_matches(&wrong, "044525225"), "{wrong}");
        }
        for (account, bik) in [("4060281070000000002", "049805746"), ("40602810700000000025", "04980574"), ("", "")] {
            assert!(!account_key_matches(account, bik), "{account} {bik}");
        }
    }

    #[test]
    fn a_valid_bank_account_is_kept() {
        let details = RecipientDetails::validate(&bank("40602810700000000025", "049805746", " ООО Ромашка "));
        assert_eq!(
            details,
            Ok(RecipientDetails::BankAccount {
                account_number: "40602810700000000025".into(),
                bik: "049805746".into(),
                holder: "ООО Ромашка".into(),
            })
        );
    }

    #[test]
    fn bank_account_errors_name_each_bad_field() {
        let cases: [(RecipientInput, Vec<(String, String)>); 6] = [
            (
                bank("40602810000000000025", "049805746", "Ivan"),
                vec![error("account_number", "does not match the BIK (wrong control key)")],
            ),
            (bank("4060281070000000002", "049805746", "Ivan"), vec![error("account_number", "must be 20 digits")]),
            (bank("40602810700000000025", "04980574", "Ivan"), vec![error("bik", "must be 9 digits")]),
            (bank("40602810700000000025", "04980574a", "Ivan"), vec![error("bik", "must be 9 digits")]),
            (
                bank("40602810000000000025", "049805746", ""),
                vec![
                    error("account_number", "does not match the BIK (wrong control key)"),
                    error("holder", "must not be blank"),
                ],
            ),
            (
                RecipientInput { kind: Some("bank_account".into()), ..RecipientInput::default() },
                vec![
                    error("account_number", "is required"),
                    error("bik", "is required"),
                    error("holder", "is required"),
                ],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(errors(&input), expected, "{input:?}");
        }
    }

    #[test]
    fn masking_shows_only_the_last_four_digits() {
        let paid_card =
            RecipientDetails::Card { number: "4111111111111111".into(), holder: "Иван Иванов".into() };
        assert_eq!(paid_card.last4(), "1111");
        assert_eq!(paid_card.kind(), "card");
        assert_eq!(paid_card.holder(), "Иван Иванов");
        assert_eq!(
            paid_card.masked(),
            MaskedRecipient::Card { number: "•••• 1111".into(), holder: "Иван Иванов".into() }
        );
        let account = RecipientDetails::BankAccount {
            account_number: "40602810700000000025".into(),
            bik: "049805746".into(),
            holder: "ООО Ромашка".into(),
        };
        assert_eq!(account.last4(), "0025");
        assert_eq!(account.kind(), "bank_account");
        assert_eq!(
            account.masked(),
            MaskedRecipient::BankAccount {
                account_number: "•••• 0025".into(),
                bik: "049805746".into(),
                holder: "ООО Ромашка".into(),
            }
        );
        assert_eq!(last4("12"), "12");
        assert_eq!(last4(""), "");
    }

    #[test]
    fn debug_output_never_shows_a_full_number() {
        let paid_card = RecipientDetails::Card { number: "4111111111111111".into(), holder: "Ivan".into() };
        assert_eq!(format!("{paid_card:?}"), r#"Card { number: "•••• 1111", holder: "Ivan" }"#);
        let account = RecipientDetails::BankAccount {
            account_number: "40602810700000000025".into(),
            bik: "049805746".into(),
            holder: "Ivan".into(),
        };
        let printed = format!("{account:#?}");
        assert!(!printed.contains("40602810700000000025") && printed.contains("•••• 0025"), "{printed}");
        let input = bank("40602810700000000025", "049805746", "Ivan");
        let printed = format!("{:?} {:?}", card("4111 1111 1111 1111", "Ivan"), input);
        assert!(!printed.contains("4111") && !printed.contains("4060281"), "{printed}");
        assert!(printed.contains("Some(<19 chars redacted>)"), "{printed}");
        let printed = format!("{:?}", RecipientDetails::validate(&card("4111111111111111", "Ivan")));
        assert!(!printed.contains("4111111111111111"), "{printed}");
    }
}
