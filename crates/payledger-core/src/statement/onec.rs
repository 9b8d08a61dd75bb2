//! 1C `ClientBankExchange` (formats 1.02 and 1.03), read line by line.
//!
//! The file is `Key=Value` lines: a header, one `СекцияРасчСчет … КонецРасчСчет` per account with its period
//! and totals, then `СекцияДокумент=<kind> … КонецДокумента` per payment document, then `КонецФайла`. A document
//! is a credit on a section's account when it names that account as ПолучательСчет and has ДатаПоступило, a
//! debit when it names it as ПлательщикСчет and has ДатаСписано (a transfer between two of our accounts is
//! both, and an own transfer).

use std::collections::{HashSet, VecDeque};
use std::io::BufRead;

use time::Date;

use super::amount::{AmountUse, parse_amount, parse_dotted_date};
use super::encoding::TextLines;
use super::{
    AccountNumber, AccountSummary, Direction, LineNature, RawFields, StatementError, StatementEvent, StatementLine,
};
use crate::inn::Inn;
use crate::money::{Currency, Money};

/// The first line of every 1C exchange file.
pub const HEADER: &str = "1CClientBankExchange";

/// The most keys one section or document may have; real documents have about forty.
const MAX_KEYS: usize = 500;

/// The keys of one section or document, in file order, with the line each was on.
#[derive(Debug, Default)]
struct Keys {
    fields: RawFields,
    lines: Vec<u64>,
    start: u64,
}

impl Keys {
    fn get(&self, key: &str) -> Option<(&str, u64)> {
        let (at, value) = self.fields.find(key)?;
        Some((value, self.lines[at]))
    }

    /// The value if present and not blank.
    fn value(&self, key: &str) -> Option<(&str, u64)> {
        self.get(key).filter(|(value, _)| !value.trim().is_empty())
    }

    fn required(&self, key: &str, what: &str) -> Result<(&str, u64), StatementError> {
        self.value(key).ok_or_else(|| StatementError { line: self.start, reason: format!("{what} has no {key}") })
    }
}

enum State {
    Header,
    Account(Keys),
    Document(Keys),
    Documents,
    Ended,
}

/// Streams the events of a 1C file.
pub struct OneCReader<R> {
    lines: TextLines<R>,
    state: State,
    accounts: HashSet<AccountNumber>,
    /// The start lines of sections without ДатаКонца (their period is ДатаНачала only if every line fits).
    open_ended: HashSet<u64>,
    pending: VecDeque<StatementEvent>,
    failed: bool,
}

impl<R: BufRead> OneCReader<R> {
    /// Starts reading; the encoding is detected from the bytes.
    pub fn new(lines: TextLines<R>) -> OneCReader<R> {
        OneCReader {
            lines,
            state: State::Header,
            accounts: HashSet::new(),
            open_ended: HashSet::new(),
            pending: VecDeque::new(),
            failed: false,
        }
    }

    /// Bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.lines.bytes()
    }

    /// The start lines of the sections read so far that have no ДатаКонца.
    pub fn sections_without_end(&self) -> &HashSet<u64> {
        &self.open_ended
    }

    fn step(&mut self) -> Result<Option<StatementEvent>, StatementError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let Some((number, text)) = self.lines.next_line()? else {
                return self.end_of_file();
            };
            let fail = |reason: String| Err(StatementError { line: number, reason });
            if number == 1 {
                if !text.trim_start().starts_with(HEADER) {
                    return fail(format!("the file does not start with {HEADER}; this is not a 1C statement"));
                }
                continue;
            }
            let trimmed = text.trim();
            if trimmed.is_empty() {
                continue;
            }
            if matches!(self.state, State::Ended) {
                return fail("text after КонецФайла: two files glued together?".into());
            }
            let (key, value) = match trimmed.split_once('=') {
                Some((key, value)) => (key.trim(), value.trim()),
                None => (trimmed, ""),
            };
            match key {
                "СекцияРасчСчет" => {
                    self.open_check(number, "СекцияРасчСчет")?;
                    self.state = State::Account(Keys { start: number, ..Keys::default() });
                }
                "КонецРасчСчет" => match std::mem::replace(&mut self.state, State::Documents) {
                    State::Account(keys) => return self.account(keys).map(Some),
                    other => {
                        self.state = other;
                        return fail("КонецРасчСчет without an open СекцияРасчСчет".into());
                    }
                },
                "СекцияДокумент" => {
                    self.open_check(number, "СекцияДокумент")?;
                    let mut keys = Keys { start: number, ..Keys::default() };
                    keys.fields.push(key, value);
                    keys.lines.push(number);
                    self.state = State::Document(keys);
                }
                "КонецДокумента" => match std::mem::replace(&mut self.state, State::Documents) {
                    State::Document(keys) => self.document(keys)?,
                    other => {
                        self.state = other;
                        return fail("КонецДокумента without an open СекцияДокумент".into());
                    }
                },
                "КонецФайла" => {
                    self.open_check(number, "КонецФайла")?;
                    self.state = State::Ended;
                }
                _ if key.starts_with("Секция") || key.starts_with("Конец") => {
                    return fail(format!("unknown section marker '{key}'"));
                }
                _ => match &mut self.state {
                    State::Account(keys) | State::Document(keys) => {
                        if !trimmed.contains('=') {
                            return fail(format!("'{trimmed}' is not a Key=Value line"));
                        }
                        if keys.fields.len() >= MAX_KEYS {
                            return fail(format!("the section has more than {MAX_KEYS} keys"));
                        }
                        keys.fields.push(key, value);
                        keys.lines.push(number);
                    }
                    // Header keys (ВерсияФормата, Кодировка, Отправитель, the request's dates…) carry nothing we
                    // rely on: the encoding is told from the bytes and the accounts come from their sections.
                    State::Header | State::Documents | State::Ended => {}
                },
            }
        }
    }

    /// A new section or the end marker may only come when no section is open.
    fn open_check(&self, number: u64, what: &str) -> Result<(), StatementError> {
        let open = match &self.state {
            State::Account(keys) => Some(("СекцияРасчСчет", keys.start, "КонецРасчСчет")),
            State::Document(keys) => Some(("СекцияДокумент", keys.start, "КонецДокумента")),
            State::Header | State::Documents | State::Ended => None,
        };
        match open {
            Some((section, start, end)) => Err(StatementError {
                line: number,
                reason: format!("{what} inside the {section} that starts on line {start}: {end} is missing"),
            }),
            None => Ok(()),
        }
    }

    fn end_of_file(&mut self) -> Result<Option<StatementEvent>, StatementError> {
        let line = self.lines_read();
        match &self.state {
            State::Ended => Ok(None),
            State::Account(keys) => Err(StatementError {
                line,
                reason: format!("the file ends inside the СекцияРасчСчет that starts on line {}", keys.start),
            }),
            State::Document(keys) => Err(StatementError {
                line,
                reason: format!("the file ends inside the СекцияДокумент that starts on line {}", keys.start),
            }),
            State::Header | State::Documents => {
                Err(StatementError { line, reason: "the file ends without КонецФайла".into() })
            }
        }
    }

    fn lines_read(&self) -> u64 {
        // next_line has counted the attempt that found the end of the file.
        self.lines.line_number().saturating_sub(1).max(1)
    }

    fn account(&mut self, keys: Keys) -> Result<StatementEvent, StatementError> {
        let (text, line) = keys.required("РасчСчет", "the СекцияРасчСчет")?;
        let account = AccountNumber::parse(text).map_err(|_| StatementError {
            line,
            reason: format!("РасчСчет '{text}' is not an account number: must be 20 digits"),
        })?;
        // A multi-day export has one section per day for the same account; `read::validate` merges them.
        self.accounts.insert(account.clone());
        let date = |key: &str| -> Result<Option<Date>, StatementError> {
            keys.value(key)
                .map(|(text, line)| parse_dotted_date(key, text).map_err(|reason| StatementError { line, reason }))
                .transpose()
        };
        let period_start = date("ДатаНачала")?.ok_or_else(|| StatementError {
            line: keys.start,
            reason: "the СекцияРасчСчет has no ДатаНачала".into(),
        })?;
        let period_end = match date("ДатаКонца")? {
            Some(end) => end,
            None => {
                self.open_ended.insert(keys.start);
                period_start
            }
        };
        if period_end < period_start {
            return Err(StatementError {
                line: keys.start,
                reason: format!("ДатаКонца {period_end} is before ДатаНачала {period_start}"),
            });
        }
        let amount = |key: &str| -> Result<Option<i64>, StatementError> {
            keys.value(key)
                .map(|(text, line)| {
                    parse_amount(key, text, Currency::RUB, AmountUse::Balance)
                        .map_err(|reason| StatementError { line, reason })
                })
                .transpose()
        };
        Ok(StatementEvent::Account(AccountSummary {
            account,
            currency: Currency::RUB,
            period_start,
            period_end,
            opening_balance: amount("НачальныйОстаток")?,
            total_credits: amount("ВсегоПоступило")?,
            total_debits: amount("ВсегоСписано")?,
            closing_balance: amount("КонечныйОстаток")?,
            source_line: keys.start,
        }))
    }

    fn document(&mut self, keys: Keys) -> Result<(), StatementError> {
        let what = "the СекцияДокумент";
        let (number, _) = keys.required("Номер", what)?;
        let document_date = {
            let (text, line) = keys.required("Дата", what)?;
            parse_dotted_date("Дата", text).map_err(|reason| StatementError { line, reason })?
        };
        let amount = {
            let (text, line) = keys.required("Сумма", what)?;
            parse_amount("Сумма", text, Currency::RUB, AmountUse::Line)
                .map_err(|reason| StatementError { line, reason })?
        };
        let ours = |key: &str| {
            keys.value(key).and_then(|(text, _)| AccountNumber::parse(text).ok()).filter(|a| self.accounts.contains(a))
        };
        let (payer, payee) = (keys.value("ПлательщикСчет"), keys.value("ПолучательСчет"));
        if payer.is_none() && payee.is_none() {
            return Err(StatementError {
                line: keys.start,
                reason: format!("{what} has no ПолучательСчет or ПлательщикСчет"),
            });
        }
        let sides = [
            (ours("ПолучательСчет"), Direction::Credit, "ДатаПоступило", "Плательщик"),
            (ours("ПлательщикСчет"), Direction::Debit, "ДатаСписано", "Получатель"),
        ];
        let inn = |key: &str| keys.value(key).map(|(text, _)| text).filter(|text| Inn::parse(text).is_ok());
        let same_owner = inn("ПлательщикИНН").is_some() && inn("ПлательщикИНН") == inn("ПолучательИНН");
        let bank_order = keys.value("ВидОплаты").is_some_and(|(text, _)| text == "17");
        let mut found = false;
        let mut missing = None;
        for (account, direction, date_key, other) in sides {
            let Some(account) = account else { continue };
            // A transfer between two of our accounts may be booked on one side only in this statement.
            let Some((text, line)) = keys.value(date_key) else {
                missing.get_or_insert((account, date_key));
                continue;
            };
            let booking_date = parse_dotted_date(date_key, text).map_err(|reason| StatementError { line, reason })?;
            found = true;
            let counterparty_account = keys.value(&format!("{other}Счет")).map(|(text, _)| text.to_owned());
            let nature = match counterparty_account.as_deref() {
                _ if same_owner => LineNature::OwnTransfer,
                Some(other) if AccountNumber::parse(other).is_ok_and(|a| self.accounts.contains(&a)) => {
                    LineNature::OwnTransfer
                }
                Some(other) if LineNature::is_transit_account(other) => LineNature::BankOrder,
                _ if bank_order => LineNature::BankOrder,
                _ => LineNature::Payment,
            };
            self.pending.push_back(StatementEvent::Line(StatementLine {
                account,
                direction,
                amount: Money::from_minor(amount, Currency::RUB),
                booking_date,
                document_number: number.to_owned(),
                document_date,
                counterparty_inn: keys.value(&format!("{other}ИНН")).and_then(|(text, _)| Inn::parse(text).ok()),
                counterparty_name: keys
                    .value(&format!("{other}1"))
                    .or_else(|| keys.value(other))
                    .map(|(text, _)| text.to_owned()),
                counterparty_account,
                counterparty_bik: keys.value(&format!("{other}БИК")).map(|(text, _)| text.to_owned()),
                bank_ref: None,
                end_to_end_id: None,
                purpose: keys.value("НазначениеПлатежа").map(|(text, _)| text.to_owned()),
                nature,
                source_line: keys.start,
                raw: keys.fields.clone(),
            }));
        }
        if found {
            return Ok(());
        }
        if let Some((account, date_key)) = missing {
            return Err(StatementError {
                line: keys.start,
                reason: format!("document {number} on our account {account} has no {date_key}"),
            });
        }
        let show = |side: Option<(&str, u64)>| side.map_or("(none)".to_owned(), |(text, _)| format!("'{text}'"));
        Err(StatementError {
            line: keys.start,
            reason: format!(
                "document {number}: neither ПлательщикСчет {} nor ПолучательСчет {} is an account with a СекцияРасчСчет",
                show(payer),
                show(payee)
            ),
        })
    }
}

impl<R: BufRead> Iterator for OneCReader<R> {
    type Item = Result<StatementEvent, StatementError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let step = self.step();
        if step.is_err() {
            self.failed = true;
        }
        step.transpose()
    }
}

#[cfg(test)]
#[path = "onec_tests.rs"]
mod tests;
