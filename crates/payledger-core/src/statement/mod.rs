//! Bank statements: what the bank says it booked on the company's accounts, and the rules that pair a
//! statement line with a bank notice.
//!
//! The parsers of each file format turn bytes into [`StatementEvent`]s; nothing here touches a database.
//! Matching compares a line and a notice through one [`MatchKey`]: payer INN, document number, the document's
//! Moscow calendar date and the exact amount. A line's identity across files is its [`fingerprint`] plus its
//! occurrence among identical lines of the same file ([`OccurrenceCounter`]), so an overlapping statement adds
//! nothing and two identical real payments stay two.

use std::collections::HashMap;
use std::fmt;

pub mod amount;
pub mod camt;
pub mod csv;
pub mod encoding;
pub mod onec;
pub mod raw;
pub mod read;

pub use raw::RawFields;
pub use read::{CsvMapping, Limits, Validated, ValidatedAccount, detect_format, events, validate};

use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::bank::BankNotice;
use crate::inn::Inn;
use crate::money::{Currency, Money};

/// Moscow's offset from UTC. Russia has kept Moscow at UTC+3 all year since October 2014; statements and the
/// bank's document dates are Moscow calendar dates.
pub const MOSCOW: UtcOffset = time::macros::offset!(+3);

/// The Moscow calendar date of an instant: `2024-04-27T21:00:00Z` is 28 April 2024.
pub fn moscow_date(at: OffsetDateTime) -> Date {
    at.to_offset(MOSCOW).date()
}

/// Which way money moved on our account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Money came in (поступление).
    Credit,
    /// Money went out (списание).
    Debit,
}

impl Direction {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Credit => "credit",
            Direction::Debit => "debit",
        }
    }

    /// The direction with this stored name.
    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "credit" => Some(Direction::Credit),
            "debit" => Some(Direction::Debit),
            _ => None,
        }
    }
}

/// What kind of booking a line is. Only a [`LineNature::Payment`] credit can be a customer's payment: every
/// other kind is money that must never be matched to a notice or applied to an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineNature {
    /// An ordinary payment between us and a counterparty.
    Payment,
    /// The bank reverses an earlier booking (camt `RvslInd=true`).
    Reversal,
    /// A transfer between two accounts of the statement's owner: the counterparty account has a section in the
    /// file, or the counterparty's INN is the owner's.
    OwnTransfer,
    /// The bank's own order (1C `ВидОплаты=17`, or a counterparty account that is a bank's transit account
    /// 30232/30233/47422): a bank-side settlement, not a customer's payment.
    BankOrder,
}

impl LineNature {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LineNature::Payment => "payment",
            LineNature::Reversal => "reversal",
            LineNature::OwnTransfer => "own_transfer",
            LineNature::BankOrder => "bank_order",
        }
    }

    /// The nature with this stored name.
    pub fn parse(text: &str) -> Option<LineNature> {
        match text {
            "payment" => Some(LineNature::Payment),
            "reversal" => Some(LineNature::Reversal),
            "own_transfer" => Some(LineNature::OwnTransfer),
            "bank_order" => Some(LineNature::BankOrder),
            _ => None,
        }
    }

    /// Whether a counterparty account is a bank's transit account (balance-sheet accounts 30232 and 30233,
    /// settlements with clients; 47422, the bank's other settlements): money from it is the bank's order.
    pub fn is_transit_account(account: &str) -> bool {
        ["30232", "30233", "47422"].iter().any(|prefix| account.starts_with(prefix))
    }
}

/// A statement file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementFormat {
    /// 1C `ClientBankExchange` 1.02/1.03.
    OneC,
    /// ISO 20022 `camt.053` (001.02 to 001.08).
    Camt053,
    /// CSV with a column mapping.
    Csv,
}

impl StatementFormat {
    /// The stored name, as the CLI and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementFormat::OneC => "1c",
            StatementFormat::Camt053 => "camt053",
            StatementFormat::Csv => "csv",
        }
    }

    /// The format with this name.
    pub fn parse(text: &str) -> Option<StatementFormat> {
        match text {
            "1c" => Some(StatementFormat::OneC),
            "camt053" => Some(StatementFormat::Camt053),
            "csv" => Some(StatementFormat::Csv),
            _ => None,
        }
    }
}

/// A Russian bank account number (расчётный счёт): exactly 20 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountNumber(String);

/// Why a text is not an account number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 20 digits")]
pub struct AccountNumberError;

impl AccountNumber {
    /// Parses an account number from its exact text.
    pub fn parse(text: &str) -> Result<AccountNumber, AccountNumberError> {
        if text.len() == 20 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountNumber(text.to_owned()))
        } else {
            Err(AccountNumberError)
        }
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One account's section of a statement: its period and the totals the bank states for it.
///
/// Every total is optional because not every format states every one (camt.053 may give balances and no sums);
/// what is stated must agree with the lines ([`AccountSummary::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// Our account.
    pub account: AccountNumber,
    /// The account's currency.
    pub currency: Currency,
    /// The first day the statement covers.
    pub period_start: Date,
    /// The last day the statement covers.
    pub period_end: Date,
    /// The balance at the start of `period_start` (НачальныйОстаток, camt `OPBD`), in minor units; may be negative.
    pub opening_balance: Option<i64>,
    /// The sum of credits the bank states (ВсегоПоступило).
    pub total_credits: Option<i64>,
    /// The sum of debits the bank states (ВсегоСписано).
    pub total_debits: Option<i64>,
    /// The balance at the end of `period_end` (КонечныйОстаток, camt `CLBD`).
    pub closing_balance: Option<i64>,
    /// The file line (1-based) where the section starts, for error messages.
    pub source_line: u64,
}

/// A statement's own arithmetic does not add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account {account}: {reason}")]
pub struct TotalsError {
    /// The account whose section is wrong.
    pub account: AccountNumber,
    /// What does not add up, with both numbers.
    pub reason: String,
}

impl AccountSummary {
    /// Checks the section's stated totals against the sums of its lines, and opening + credits − debits =
    /// closing. `credits` and `debits` are the sums of the section's lines, in minor units.
    pub fn check(&self, credits: i64, debits: i64) -> Result<(), TotalsError> {
        let fail = |reason: String| Err(TotalsError { account: self.account.clone(), reason });
        let digits = self.currency.minor_digits();
        let show = |minor: i64| crate::money::format_minor(minor, digits);
        if let Some(stated) = self.total_credits
            && stated != credits
        {
            return fail(format!("the credits add up to {}, the statement says {}", show(credits), show(stated)));
        }
        if let Some(stated) = self.total_debits
            && stated != debits
        {
            return fail(format!("the debits add up to {}, the statement says {}", show(debits), show(stated)));
        }
        if let (Some(opening), Some(closing)) = (self.opening_balance, self.closing_balance) {
            let expected = i128::from(opening) + i128::from(credits) - i128::from(debits);
            if expected != i128::from(closing) {
                return fail(format!(
                    "opening {} + credits {} - debits {} is {}, the statement says the closing balance is {}",
                    show(opening),
                    show(credits),
                    show(debits),
                    i64::try_from(expected).map(show).unwrap_or_else(|_| expected.to_string()),
                    show(closing)
                ));
            }
        }
        Ok(())
    }
}

/// One booked operation on one of our accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// Our account it was booked on.
    pub account: AccountNumber,
    /// Into or out of that account.
    pub direction: Direction,
    /// Always positive; the direction says which way.
    pub amount: Money,
    /// The day the bank booked it (ДатаПоступило for a credit, ДатаСписано for a debit, camt `BookgDt`).
    pub booking_date: Date,
    /// The payment document's number (Номер; camt `EndToEndId` when no number is given).
    pub document_number: String,
    /// The payment document's date (Дата), a Moscow calendar date.
    pub document_date: Date,
    /// The other side's INN: the payer of a credit, the payee of a debit. `None` when absent or not an INN.
    pub counterparty_inn: Option<Inn>,
    /// The other side's name (Плательщик1 / Получатель1, camt `Dbtr/Nm`).
    pub counterparty_name: Option<String>,
    /// The other side's account.
    pub counterparty_account: Option<String>,
    /// The other side's bank BIK.
    pub counterparty_bik: Option<String>,
    /// The bank's own reference for the entry (camt `AcctSvcrRef`), where the format carries one.
    pub bank_ref: Option<String>,
    /// The end-to-end id (camt `Refs/EndToEndId`), where the format carries one.
    pub end_to_end_id: Option<String>,
    /// The payment's purpose (НазначениеПлатежа, camt `RmtInf/Ustrd`).
    pub purpose: Option<String>,
    /// What kind of booking it is; only a `Payment` credit matches a notice. Not part of the fingerprint: the
    /// same booking read by an older or newer parser must keep its identity.
    pub nature: LineNature,
    /// The file line (1-based) where the document starts.
    pub source_line: u64,
    /// The document as the file gives it, key by key in file order (camt: the element paths read).
    pub raw: RawFields,
}

/// The SHA-256 identity of a line across files: the same booked operation in two statements has the same
/// fingerprint, whatever else the files carry (names, purposes and raw keys are left out on purpose).
pub type Fingerprint = [u8; 32];

/// The identity of `line`: account, direction, currency, amount, booking date, document date, document number
/// and counterparty INN, each length-prefixed so that no two different lines can share an encoding.
pub fn fingerprint(line: &StatementLine) -> Fingerprint {
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    part(line.account.as_str().as_bytes());
    part(line.direction.as_str().as_bytes());
    part(line.amount.currency().code().as_bytes());
    part(&line.amount.minor().to_be_bytes());
    part(line.booking_date.to_string().as_bytes());
    part(line.document_date.to_string().as_bytes());
    part(line.document_number.as_bytes());
    part(line.counterparty_inn.as_ref().map_or("", Inn::as_str).as_bytes());
    hash.finalize().into()
}

/// Numbers identical lines within one file: the first line with a fingerprint is occurrence 1, the next
/// identical one 2, and so on. Two identical payments on one day are both real; this keeps them apart.
///
/// By default it remembers every fingerprint of the file (about 80 bytes per distinct line), because a file
/// need not list a day's lines together and restarting the count would merge two real payments into one. A
/// file whose first pass found every account's booking days in order ([`read::Validated::days_in_order`]) may
/// be counted [`OccurrenceCounter::forgetting`] earlier days: identical lines share their account and booking
/// day, so once an account's day has passed no line can continue its counts.
#[derive(Debug, Default)]
pub struct OccurrenceCounter {
    seen: HashMap<Fingerprint, u32>,
    /// `Some` when counting forgets: each account's current day and the fingerprints seen on it.
    days: Option<HashMap<AccountNumber, CurrentDay>>,
}

/// An account's current booking day and the counts of its fingerprints.
#[derive(Debug)]
struct CurrentDay {
    day: Date,
    seen: HashMap<Fingerprint, u32>,
}

/// A line booked before a day the counter has already forgotten: the file is not the one whose days were
/// found in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: booked on {day}, after a later day of its account (pass one found the days in order)")]
pub struct DaysOutOfOrder {
    /// The line's 1-based file line.
    pub line: u64,
    /// Its booking day.
    pub day: Date,
}

impl OccurrenceCounter {
    /// A counter that forgets an account's counts when its lines move on to a later day; only for a file whose
    /// booking days are in order per account.
    pub fn forgetting() -> OccurrenceCounter {
        OccurrenceCounter { seen: HashMap::new(), days: Some(HashMap::new()) }
    }

    /// The occurrence number of `line`, whose fingerprint is `fingerprint`. A forgetting counter refuses a line
    /// booked before its account's current day (its count would restart and merge two payments).
    pub fn next(&mut self, line: &StatementLine, fingerprint: &Fingerprint) -> Result<u32, DaysOutOfOrder> {
        let seen = match &mut self.days {
            None => &mut self.seen,
            Some(days) => {
                let current = days
                    .entry(line.account.clone())
                    .or_insert_with(|| CurrentDay { day: line.booking_date, seen: HashMap::new() });
                if line.booking_date < current.day {
                    return Err(DaysOutOfOrder { line: line.source_line, day: line.booking_date });
                }
                if line.booking_date > current.day {
                    current.day = line.booking_date;
                    current.seen.clear();
                    // A day's lines are few next to a file's: do not keep the largest day's table for good.
                    current.seen.shrink_to(1024);
                }
                &mut current.seen
            }
        };
        let count = seen.entry(*fingerprint).or_insert(0);
        *count += 1;
        Ok(*count)
    }
}

/// What a notice and a credit line must agree on to be the same payment (matching rule 2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatchKey {
    /// Who paid.
    pub payer_inn: Inn,
    /// The payment document's number, as given (compared exactly).
    pub document_number: String,
    /// The document's Moscow calendar date.
    pub document_date: Date,
    /// The exact amount in minor units.
    pub amount: i64,
    /// The amount's currency.
    pub currency: Currency,
}

impl MatchKey {
    /// The key of a notice: its document date read as a Moscow date.
    pub fn of_notice(notice: &BankNotice) -> MatchKey {
        MatchKey {
            payer_inn: notice.payer_inn.clone(),
            document_number: notice.document_number.clone(),
            document_date: moscow_date(notice.document_date),
            amount: notice.amount.minor(),
            currency: notice.amount.currency(),
        }
    }

    /// The key of a payment credit line with a payer INN; debits, reversals, own transfers, bank orders and
    /// lines without an INN match no notice by key.
    pub fn of_line(line: &StatementLine) -> Option<MatchKey> {
        match (&line.direction, &line.counterparty_inn, line.nature) {
            (Direction::Credit, Some(inn), LineNature::Payment) => Some(MatchKey {
                payer_inn: inn.clone(),
                document_number: line.document_number.clone(),
                document_date: line.document_date,
                amount: line.amount.minor(),
                currency: line.amount.currency(),
            }),
            _ => None,
        }
    }
}

/// A fixed namespace for the payment ids derived from statement lines (UUIDv5): every instance, every
/// version and both backends derive the same id for the same line.
const STATEMENT_PAYMENT_NAMESPACE: Uuid = Uuid::from_u128(0x5b0c_6a7e_2f1d_4c8a_9e37_1d2b_7f60_a413);

/// The operation id a line is credited under when it is applied from the statement: derived from the
/// line's identity (account, fingerprint, occurrence), so applying it twice, from anywhere, names one payment.
pub fn statement_operation_id(account: &AccountNumber, fingerprint: &Fingerprint, occurrence: u32) -> Uuid {
    let mut name = Vec::with_capacity(20 + 32 + 4);
    name.extend_from_slice(account.as_str().as_bytes());
    name.extend_from_slice(fingerprint);
    name.extend_from_slice(&occurrence.to_be_bytes());
    Uuid::new_v5(&STATEMENT_PAYMENT_NAMESPACE, &name)
}

/// What a parser yields, in file order: each account's section before the lines booked on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementEvent {
    /// An account section's header (1C `СекцияРасчСчет`, camt `Stmt` with its balances).
    Account(AccountSummary),
    /// One booked operation.
    Line(StatementLine),
}

/// A file that cannot be read as a statement: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if *line == 0 { String::new() } else { format!("line {line}: ") })]
pub struct StatementError {
    /// The 1-based line of the file (for camt.053, the line the offending element starts on); 0 for the file as
    /// a whole (its size, say).
    pub line: u64,
    /// What is wrong, in words an accountant can act on.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn line(amount: i64, number: &str) -> StatementLine {
        StatementLine {
            account: AccountNumber::parse("40702810900000000001").unwrap_or_else(|_| panic!("account")),
            direction: Direction::Credit,
            amount: Money::from_minor(amount, Currency::RUB),
            booking_date: date!(2024 - 04 - 28),
            document_number: number.into(),
            document_date: date!(2024 - 04 - 28),
            counterparty_inn: Inn::parse("7701234567").ok(),
            counterparty_name: Some("ООО Ромашка".into()),
            counterparty_account: None,
            counterparty_bik: None,
            bank_ref: None,
            end_to_end_id: None,
            purpose: None,
            nature: LineNature::Payment,
            source_line: 1,
            raw: RawFields::default(),
        }
    }

    #[test]
    fn a_document_date_late_in_the_utc_evening_is_the_next_moscow_day() {
        assert_eq!(moscow_date(datetime!(2024-04-27 21:00:00 UTC)), date!(2024 - 04 - 28));
        assert_eq!(moscow_date(datetime!(2024-04-27 20:59:59 UTC)), date!(2024 - 04 - 27));
    }

    #[test]
    fn the_fingerprint_ignores_names_and_purposes_but_not_the_amount_or_number() {
        let first = line(150_000, "17");
        let mut renamed = first.clone();
        renamed.counterparty_name = Some("Romashka LLC".into());
        renamed.purpose = Some("invoice 5".into());
        renamed.source_line = 99;
        assert_eq!(fingerprint(&first), fingerprint(&renamed));
        assert_ne!(fingerprint(&first), fingerprint(&line(150_001, "17")));
        assert_ne!(fingerprint(&first), fingerprint(&line(150_000, "18")));
    }

    #[test]
    fn identical_lines_get_consecutive_occurrences_and_others_start_at_one() {
        let mut counter = OccurrenceCounter::default();
        let (twin, other) = (line(100, "1"), line(100, "2"));
        let mut next = |line: &StatementLine| counter.next(line, &fingerprint(line)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(next(&twin), 1);
        assert_eq!(next(&other), 1);
        assert_eq!(next(&twin), 2);
    }

    /// Lines of two accounts interleaved, days in order per account, with twins on several days.
    fn ordered_lines() -> Vec<StatementLine> {
        let other = AccountNumber::parse("40702810900000000002").unwrap_or_else(|_| panic!("account"));
        let mut lines = Vec::new();
        for (day, amounts) in [(date!(2024 - 04 - 28), [100, 100, 200]), (date!(2024 - 04 - 29), [100, 200, 100])] {
            for amount in amounts {
                let mine = StatementLine { booking_date: day, ..line(amount, "1") };
                let theirs = StatementLine { account: other.clone(), ..mine.clone() };
                lines.extend([mine.clone(), theirs, mine]);
            }
        }
        lines
    }

    #[test]
    fn a_forgetting_counter_numbers_lines_in_day_order_as_the_full_one_does() {
        let lines = ordered_lines();
        let count = |mut counter: OccurrenceCounter| -> Vec<u32> {
            lines.iter().map(|l| counter.next(l, &fingerprint(l)).unwrap_or_else(|e| panic!("{e}"))).collect()
        };
        let full = count(OccurrenceCounter::default());
        assert_eq!(full, count(OccurrenceCounter::forgetting()));
        // Twins of one day count up; the next day (another fingerprint) starts again at 1.
        assert_eq!(&full[..9], &[1, 1, 2, 3, 2, 4, 1, 1, 2]);
        assert_eq!(full[9], 1);
    }

    #[test]
    fn a_forgetting_counter_refuses_a_day_it_has_forgotten() {
        let mut lines = ordered_lines();
        lines.push(lines[0].clone());
        let mut counter = OccurrenceCounter::forgetting();
        let last = lines.iter().map(|l| counter.next(l, &fingerprint(l))).last();
        assert_eq!(last, Some(Err(DaysOutOfOrder { line: 1, day: date!(2024 - 04 - 28) })));
        // The full counter counts the late twin on.
        let mut full = OccurrenceCounter::default();
        let last = lines.iter().map(|l| full.next(l, &fingerprint(l))).last();
        assert_eq!(last, Some(Ok(5)));
    }

    #[test]
    fn a_line_and_its_notice_share_the_match_key() {
        let notice = BankNotice {
            operation_id: crate::bank::OperationId(Uuid::nil()),
            amount: Money::from_minor(150_000, Currency::RUB),
            payer_inn: Inn::parse("7701234567").unwrap_or_else(|_| panic!("inn")),
            document_number: "17".into(),
            document_date: datetime!(2024-04-27 21:00:00 UTC),
        };
        assert_eq!(MatchKey::of_line(&line(150_000, "17")), Some(MatchKey::of_notice(&notice)));
    }

    #[test]
    fn only_a_payment_credit_has_a_match_key_and_the_nature_is_not_in_the_fingerprint() {
        let payment = line(150_000, "17");
        for nature in [LineNature::Reversal, LineNature::OwnTransfer, LineNature::BankOrder] {
            let other = StatementLine { nature, ..payment.clone() };
            assert_eq!(MatchKey::of_line(&other), None, "{nature:?}");
            assert_eq!(fingerprint(&other), fingerprint(&payment));
            assert_eq!(LineNature::parse(nature.as_str()), Some(nature));
        }
        assert!(MatchKey::of_line(&payment).is_some());
        assert_eq!(LineNature::parse("payment"), Some(LineNature::Payment));
        assert_eq!(LineNature::parse("refund"), None);
    }

    #[test]
    fn the_derived_payment_id_depends_on_the_occurrence() {
        let account = AccountNumber::parse("40702810900000000001").unwrap_or_else(|_| panic!("account"));
        let print = fingerprint(&line(100, "1"));
        assert_eq!(statement_operation_id(&account, &print, 1), statement_operation_id(&account, &print, 1));
        assert_ne!(statement_operation_id(&account, &print, 1), statement_operation_id(&account, &print, 2));
    }

    #[test]
    fn totals_that_do_not_add_up_name_both_numbers() {
        let summary = AccountSummary {
            account: AccountNumber::parse("40702810900000000001").unwrap_or_else(|_| panic!("account")),
            currency: Currency::RUB,
            period_start: date!(2024 - 04 - 28),
            period_end: date!(2024 - 04 - 28),
            opening_balance: Some(10_000),
            total_credits: Some(5_000),
            total_debits: Some(0),
            closing_balance: Some(15_001),
            source_line: 1,
        };
        assert!(summary.check(5_000, 0).is_err_and(|e| e.reason.contains("150.01")));
        assert!(summary.check(4_000, 0).is_err_and(|e| e.reason.contains("40.00")));
        let fixed = AccountSummary { closing_balance: Some(15_000), ..summary };
        assert_eq!(fixed.check(5_000, 0), Ok(()));
    }
}
