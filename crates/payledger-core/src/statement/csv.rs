//! CSV statements (RFC 4180 quoting) read through a column mapping.
//!
//! A CSV file states no account section, so one is made for each account from the mapping (its account or
//! account column, its currency) and the lines' booking dates: the section is announced before the account's
//! first line with that line's date, and `read::validate` widens the period over every line. Balances are
//! `None` unless the mapping states them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::BufRead;

use time::Date;

use super::amount::{AmountUse, parse_amount, parse_dotted_date, parse_iso_date};
use super::encoding::TextLines;
use super::{AccountNumber, AccountSummary, Direction, LineNature, StatementError, StatementEvent, StatementLine};
use crate::inn::Inn;
use crate::money::{Currency, Money};

/// The most columns a row may have, and the most text lines one quoted record may span.
const MAX_COLUMNS: usize = 1_000;
const MAX_RECORD_LINES: usize = 100;

/// Where a value comes from: a column by 1-based position or by its header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// The n-th column, from 1.
    Index(usize),
    /// The column with this header.
    Name(String),
}

/// How a row says which way the money went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountColumns {
    /// An amount column and a direction column (`credit`/`debit`, `C`/`D`, `CRDT`/`DBIT`, `+`/`-`,
    /// `приход`/`расход`).
    Directed { amount: Column, direction: Column },
    /// One signed amount: positive is a credit, negative a debit.
    Signed(Column),
    /// A credit column and a debit column; exactly one is filled.
    Split { credit: Column, debit: Column },
}

/// The date format of the date columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFormat {
    /// `dd.mm.yyyy`.
    Dotted,
    /// `yyyy-mm-dd`.
    Iso,
}

/// Which column holds what, and how the file is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvMapping {
    /// The account column, if the file has several accounts.
    pub account: Option<Column>,
    /// The account when there is no account column.
    pub default_account: Option<AccountNumber>,
    /// The amounts and their direction.
    pub amounts: AmountColumns,
    /// The currency column, if any.
    pub currency: Option<Column>,
    /// The currency when there is no column (RUB unless stated).
    pub default_currency: Currency,
    /// The booking date.
    pub booking_date: Column,
    /// The document number.
    pub document_number: Column,
    /// The document date; the booking date when absent.
    pub document_date: Option<Column>,
    /// The payer's (counterparty's) INN.
    pub payer_inn: Option<Column>,
    /// The payer's name.
    pub payer_name: Option<Column>,
    /// The payer's account.
    pub payer_account: Option<Column>,
    /// The payer's bank BIK.
    pub payer_bik: Option<Column>,
    /// The purpose.
    pub purpose: Option<Column>,
    /// The bank's reference.
    pub bank_ref: Option<Column>,
    /// The field separator.
    pub delimiter: char,
    /// The date format.
    pub date_format: DateFormat,
    /// Whether the first record is a header row (required when columns are named).
    pub header: bool,
    /// The opening balance, when the mapping states it (single-account files only).
    pub opening_balance: Option<String>,
    /// The closing balance, when the mapping states it (single-account files only).
    pub closing_balance: Option<String>,
    /// The INN of the accounts' owner (us): a credit from it is an own transfer, never a customer's payment.
    pub owner_inn: Option<Inn>,
}

impl CsvMapping {
    /// Parses a mapping such as `booking_date=Дата,amount=Сумма,direction=Тип,document_number=Номер,
    /// payer_inn=ИНН,default_account=40702810900000000001`. A value of digits only is a 1-based column index.
    /// Other keys: `account`, `signed_amount`, `credit`, `debit`, `currency`, `default_currency`,
    /// `document_date`, `payer_name`, `payer_account`, `payer_bik`, `purpose`, `bank_ref`,
    /// `delimiter` (`;`, `|`, `tab`, `comma`), `date_format` (`dd.mm.yyyy` or `yyyy-mm-dd`), `header`
    /// (`yes`/`no`, default yes), `opening`, `closing`, `owner_inn` (our INN: lines with it are own transfers).
    pub fn parse(spec: &str) -> Result<CsvMapping, String> {
        let mut values: HashMap<&str, &str> = HashMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("'{part}' is not key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            if value.is_empty() {
                return Err(format!("{key} has no value"));
            }
            if values.insert(key, value).is_some() {
                return Err(format!("{key} is given twice"));
            }
        }
        const KNOWN: [&str; 24] = [
            "account",
            "default_account",
            "amount",
            "direction",
            "signed_amount",
            "credit",
            "debit",
            "currency",
            "default_currency",
            "booking_date",
            "document_number",
            "document_date",
            "payer_inn",
            "payer_name",
            "payer_account",
            "payer_bik",
            "purpose",
            "bank_ref",
            "delimiter",
            "date_format",
            "header",
            "opening",
            "closing",
            "owner_inn",
        ];
        if let Some(unknown) = values.keys().find(|k| !KNOWN.contains(k)) {
            return Err(format!("unknown key '{unknown}'"));
        }
        let column = |key: &str| values.get(key).map(|v| parse_column(v));
        let required = |key: &str| column(key).ok_or_else(|| format!("{key} is required"));
        let amounts =
            match (column("amount"), column("direction"), column("signed_amount"), column("credit"), column("debit")) {
                (Some(amount), Some(direction), None, None, None) => AmountColumns::Directed { amount, direction },
                (None, None, Some(signed), None, None) => AmountColumns::Signed(signed),
                (None, None, None, Some(credit), Some(debit)) => AmountColumns::Split { credit, debit },
                _ => return Err("give amount with direction, or signed_amount, or credit with debit".into()),
            };
        let default_account = values
            .get("default_account")
            .map(|text| AccountNumber::parse(text).map_err(|_| format!("default_account '{text}' must be 20 digits")))
            .transpose()?;
        let account = column("account");
        if account.is_none() && default_account.is_none() {
            return Err("give account (a column) or default_account".into());
        }
        let default_currency = match values.get("default_currency") {
            Some(code) => {
                Currency::from_code(code).ok_or_else(|| format!("default_currency '{code}' is not a currency"))?
            }
            None => Currency::RUB,
        };
        let (delimiter, date_format, header) = file_options(&values)?;
        let mapping = CsvMapping {
            account,
            default_account,
            amounts,
            currency: column("currency"),
            default_currency,
            booking_date: required("booking_date")?,
            document_number: required("document_number")?,
            document_date: column("document_date"),
            payer_inn: column("payer_inn"),
            payer_name: column("payer_name"),
            payer_account: column("payer_account"),
            payer_bik: column("payer_bik"),
            purpose: column("purpose"),
            bank_ref: column("bank_ref"),
            delimiter,
            date_format,
            header,
            opening_balance: values.get("opening").map(|v| (*v).to_owned()),
            closing_balance: values.get("closing").map(|v| (*v).to_owned()),
            owner_inn: values
                .get("owner_inn")
                .map(|text| Inn::parse(text).map_err(|_| format!("owner_inn '{text}' is not an INN")))
                .transpose()?,
        };
        if !header && mapping.columns().iter().any(|c| matches!(c, Column::Name(_))) {
            return Err("columns can be named only when the file has a header row; use numbers".into());
        }
        if mapping.account.is_some() && (mapping.opening_balance.is_some() || mapping.closing_balance.is_some()) {
            return Err("opening and closing can be stated only for a single default_account".into());
        }
        for (key, value) in [("opening", &mapping.opening_balance), ("closing", &mapping.closing_balance)] {
            if let Some(text) = value {
                parse_amount(key, text, default_currency, AmountUse::Balance)?;
            }
        }
        Ok(mapping)
    }

    fn columns(&self) -> Vec<&Column> {
        let mut all: Vec<&Column> = match &self.amounts {
            AmountColumns::Directed { amount, direction } => vec![amount, direction],
            AmountColumns::Signed(signed) => vec![signed],
            AmountColumns::Split { credit, debit } => vec![credit, debit],
        };
        all.extend([&self.booking_date, &self.document_number]);
        all.extend(
            [&self.account, &self.currency, &self.document_date, &self.payer_inn, &self.payer_name]
                .into_iter()
                .chain([&self.payer_account, &self.payer_bik, &self.purpose, &self.bank_ref])
                .flatten(),
        );
        all
    }
}

/// The mapping's keys that say how the file is written: delimiter, date format, header row.
fn file_options(values: &HashMap<&str, &str>) -> Result<(char, DateFormat, bool), String> {
    let delimiter = match values.get("delimiter").copied() {
        None | Some("comma") => ',',
        Some("tab") => '\t',
        Some("semicolon" | ";") => ';',
        Some("pipe" | "|") => '|',
        Some(other) => return Err(format!("delimiter '{other}' must be comma, semicolon, tab or pipe")),
    };
    let date_format = match values.get("date_format").copied() {
        None | Some("dd.mm.yyyy") => DateFormat::Dotted,
        Some("yyyy-mm-dd") => DateFormat::Iso,
        Some(other) => return Err(format!("date_format '{other}' must be dd.mm.yyyy or yyyy-mm-dd")),
    };
    let header = match values.get("header").copied() {
        None | Some("yes") => true,
        Some("no") => false,
        Some(other) => return Err(format!("header '{other}' must be yes or no")),
    };
    Ok((delimiter, date_format, header))
}

fn parse_column(value: &str) -> Column {
    match value.parse::<usize>() {
        Ok(index) if index > 0 => Column::Index(index),
        _ => Column::Name(value.to_owned()),
    }
}

/// Streams the events of a CSV file.
pub struct CsvReader<R> {
    lines: TextLines<R>,
    mapping: CsvMapping,
    headers: Option<Vec<String>>,
    accounts: HashSet<AccountNumber>,
    pending: VecDeque<StatementEvent>,
    done: bool,
}

impl<R: BufRead> CsvReader<R> {
    /// Starts reading with `mapping`.
    pub fn new(lines: TextLines<R>, mapping: CsvMapping) -> CsvReader<R> {
        CsvReader { lines, mapping, headers: None, accounts: HashSet::new(), pending: VecDeque::new(), done: false }
    }

    /// Bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.lines.bytes()
    }

    /// One record (its fields and first line), or `None` at the end.
    fn record(&mut self) -> Result<Option<(u64, Vec<String>)>, StatementError> {
        let delimiter = self.mapping.delimiter;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut first_line = None;
        for _ in 0..MAX_RECORD_LINES {
            let Some((number, text)) = self.lines.next_line()? else {
                return match first_line {
                    Some(line) => Err(StatementError { line, reason: "a quoted field is not closed".into() }),
                    None => Ok(None),
                };
            };
            if first_line.is_none() && text.trim().is_empty() {
                continue;
            }
            let start = *first_line.get_or_insert(number);
            let mut chars = text.chars().peekable();
            let mut at_field_start = !quoted && field.is_empty();
            while let Some(c) = chars.next() {
                if quoted {
                    if c == '"' {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            field.push('"');
                        } else {
                            quoted = false;
                        }
                    } else {
                        field.push(c);
                    }
                } else if c == '"' && at_field_start {
                    quoted = true;
                    at_field_start = false;
                } else if c == delimiter {
                    fields.push(std::mem::take(&mut field));
                    at_field_start = true;
                    if fields.len() > MAX_COLUMNS {
                        return Err(StatementError { line: start, reason: format!("more than {MAX_COLUMNS} columns") });
                    }
                } else if c == '"' {
                    return Err(StatementError { line: number, reason: "a quote inside an unquoted field".into() });
                } else {
                    field.push(c);
                    at_field_start = false;
                }
            }
            if quoted {
                field.push('\n');
                continue;
            }
            fields.push(field);
            return Ok(Some((start, fields)));
        }
        Err(StatementError {
            line: first_line.unwrap_or(0),
            reason: format!("a quoted field spans more than {MAX_RECORD_LINES} lines"),
        })
    }

    fn value<'f>(&self, fields: &'f [String], column: &Column, line: u64) -> Result<&'f str, StatementError> {
        let index = match column {
            Column::Index(index) => index - 1,
            Column::Name(name) => self
                .headers
                .as_ref()
                .and_then(|headers| headers.iter().position(|h| h == name))
                .ok_or_else(|| StatementError { line, reason: format!("the header has no column '{name}'") })?,
        };
        fields.get(index).map(|f| f.trim()).ok_or_else(|| StatementError {
            line,
            reason: format!("the row has {} columns; column {} is missing", fields.len(), index + 1),
        })
    }

    fn optional(
        &self,
        fields: &[String],
        column: &Option<Column>,
        line: u64,
    ) -> Result<Option<String>, StatementError> {
        match column {
            Some(column) => Ok(Some(self.value(fields, column, line)?.to_owned()).filter(|v| !v.is_empty())),
            None => Ok(None),
        }
    }

    fn date(&self, field: &str, text: &str, line: u64) -> Result<Date, StatementError> {
        match self.mapping.date_format {
            DateFormat::Dotted => parse_dotted_date(field, text),
            DateFormat::Iso => parse_iso_date(field, text),
        }
        .map_err(|reason| StatementError { line, reason })
    }

    fn step(&mut self) -> Result<Option<StatementEvent>, StatementError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let Some((line, fields)) = self.record()? else { return Ok(None) };
            if self.mapping.header && self.headers.is_none() {
                let headers: Vec<String> = fields.iter().map(|h| h.trim().to_owned()).collect();
                self.headers = Some(headers);
                for column in self.mapping.columns() {
                    self.value(&vec![String::new(); MAX_COLUMNS], column, line)?;
                }
                continue;
            }
            let row = self.row(line, &fields)?;
            if self.accounts.insert(row.account.clone()) {
                self.pending.push_back(StatementEvent::Account(self.section(&row)?));
            }
            self.pending.push_back(StatementEvent::Line(row));
        }
    }

    fn section(&self, row: &StatementLine) -> Result<AccountSummary, StatementError> {
        let currency = row.amount.currency();
        let balance = |key: &str, text: &Option<String>| {
            text.as_ref()
                .map(|t| {
                    parse_amount(key, t, currency, AmountUse::Balance)
                        .map_err(|reason| StatementError { line: 0, reason })
                })
                .transpose()
        };
        Ok(AccountSummary {
            account: row.account.clone(),
            currency,
            period_start: row.booking_date,
            period_end: row.booking_date,
            opening_balance: balance("opening", &self.mapping.opening_balance)?,
            total_credits: None,
            total_debits: None,
            closing_balance: balance("closing", &self.mapping.closing_balance)?,
            source_line: row.source_line,
        })
    }

    fn row(&self, line: u64, fields: &[String]) -> Result<StatementLine, StatementError> {
        let mapping = &self.mapping;
        let fail = |reason: String| StatementError { line, reason };
        let account = match &mapping.account {
            Some(column) => {
                let text = self.value(fields, column, line)?;
                AccountNumber::parse(text).map_err(|_| fail(format!("account '{text}' must be 20 digits")))?
            }
            None => mapping.default_account.clone().ok_or_else(|| fail("no account".into()))?,
        };
        let currency = match &mapping.currency {
            Some(column) => {
                let code = self.value(fields, column, line)?;
                Currency::from_code_ignore_case(code)
                    .ok_or_else(|| fail(format!("currency '{code}' is not a currency")))?
            }
            None => mapping.default_currency,
        };
        let parse = |field: &str, text: &str| parse_amount(field, text, currency, AmountUse::Line).map_err(fail);
        let (direction, minor) = match &mapping.amounts {
            AmountColumns::Directed { amount, direction } => {
                let text = self.value(fields, direction, line)?;
                let direction = match text.to_lowercase().as_str() {
                    "credit" | "c" | "crdt" | "+" | "приход" | "поступление" => Direction::Credit,
                    "debit" | "d" | "dbit" | "-" | "расход" | "списание" => Direction::Debit,
                    _ => return Err(fail(format!("direction '{text}' must be credit or debit"))),
                };
                (direction, parse("amount", self.value(fields, amount, line)?)?)
            }
            AmountColumns::Signed(column) => {
                let text = self.value(fields, column, line)?;
                match text.strip_prefix('-') {
                    Some(magnitude) => (
                        Direction::Debit,
                        parse("signed_amount", magnitude)
                            .map_err(|_| fail(format!("signed_amount '{text}' is not an amount")))?,
                    ),
                    None => (Direction::Credit, parse("signed_amount", text)?),
                }
            }
            AmountColumns::Split { credit, debit } => {
                // Bank exports often fill the other column with a zero rather than leaving it blank.
                match (
                    blank_if_zero(self.value(fields, credit, line)?),
                    blank_if_zero(self.value(fields, debit, line)?),
                ) {
                    (credit, "") if !credit.is_empty() => (Direction::Credit, parse("credit", credit)?),
                    ("", debit) if !debit.is_empty() => (Direction::Debit, parse("debit", debit)?),
                    _ => return Err(fail("exactly one of the credit and debit columns must be filled".into())),
                }
            }
        };
        let booking_date = self.date("booking_date", self.value(fields, &mapping.booking_date, line)?, line)?;
        let document_date = match &mapping.document_date {
            Some(column) => self.date("document_date", self.value(fields, column, line)?, line)?,
            None => booking_date,
        };
        let document_number = self.value(fields, &mapping.document_number, line)?;
        if document_number.is_empty() {
            return Err(fail("document_number is empty".into()));
        }
        let raw = match &self.headers {
            Some(headers) => headers.iter().zip(fields).collect(),
            None => fields.iter().enumerate().map(|(i, v)| ((i + 1).to_string(), v)).collect(),
        };
        let counterparty_account = self.optional(fields, &mapping.payer_account, line)?;
        let counterparty_inn = self.optional(fields, &mapping.payer_inn, line)?.and_then(|t| Inn::parse(&t).ok());
        let ours = |other: &str| {
            AccountNumber::parse(other)
                .is_ok_and(|other| self.accounts.contains(&other) || mapping.default_account.as_ref() == Some(&other))
        };
        let nature = match &counterparty_account {
            _ if counterparty_inn.is_some() && counterparty_inn == mapping.owner_inn => LineNature::OwnTransfer,
            Some(other) if ours(other) => LineNature::OwnTransfer,
            Some(other) if LineNature::is_transit_account(other) => LineNature::BankOrder,
            _ => LineNature::Payment,
        };
        Ok(StatementLine {
            account,
            direction,
            amount: Money::from_minor(minor, currency),
            booking_date,
            document_number: document_number.to_owned(),
            document_date,
            counterparty_inn,
            counterparty_name: self.optional(fields, &mapping.payer_name, line)?,
            counterparty_account,
            counterparty_bik: self.optional(fields, &mapping.payer_bik, line)?,
            bank_ref: self.optional(fields, &mapping.bank_ref, line)?,
            end_to_end_id: None,
            purpose: self.optional(fields, &mapping.purpose, line)?,
            nature,
            source_line: line,
            raw,
        })
    }
}

/// A split column's text, or empty when it is a zero amount (`0`, `0.00`, `0,0`).
fn blank_if_zero(text: &str) -> &str {
    let zero = text.bytes().all(|b| matches!(b, b'0' | b'.' | b',')) && text.bytes().any(|b| b == b'0');
    if zero { "" } else { text }
}

impl<R: BufRead> Iterator for CsvReader<R> {
    type Item = Result<StatementEvent, StatementError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.step();
        if !matches!(step, Ok(Some(_))) {
            self.done = true;
        }
        step.transpose()
    }
}

#[cfg(test)]
#[path = "csv_tests.rs"]
mod tests;
