//! Reading a statement file of any format: telling the format, streaming its events, and the first pass that
//! checks the whole file before anything is stored.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use time::Date;

use super::camt::CamtReader;
pub use super::csv::CsvMapping;
use super::csv::CsvReader;
use super::encoding::{HEAD_BYTES, Rewound, TextEncoding, TextLines, detect_encoding};
use super::onec::{HEADER, OneCReader};
use super::{AccountNumber, AccountSummary, Direction, StatementError, StatementEvent, StatementFormat};

/// How often (in statement lines) `validate` reports its progress.
const PROGRESS_EVERY_LINES: u64 = 10_000;

/// The bounds a caller sets on one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most statement lines (booked operations) a file may hold.
    pub max_lines: u64,
}

/// What the first pass found: the file's format, each account section with the sums of its lines, and the
/// number of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The format read.
    pub format: StatementFormat,
    /// The account sections in file order, with the period widened over the booking dates where the file
    /// states none (CSV, camt.053 without `FrToDt` or balance dates).
    pub accounts: Vec<ValidatedAccount>,
    /// The number of statement lines.
    pub lines: u64,
}

/// One account section and what its lines add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedAccount {
    /// The section as stated (period widened where unstated).
    pub summary: AccountSummary,
    /// The sum of the credit lines, in minor units.
    pub credits: i64,
    /// The sum of the debit lines, in minor units.
    pub debits: i64,
    /// The number of credit lines.
    pub credit_lines: u64,
    /// The number of debit lines.
    pub debit_lines: u64,
}

/// Tells the format from the file's first bytes (any encoding, BOM or not); CSV is never guessed: it needs a
/// mapping, so the caller names it.
pub fn detect_format(head: &[u8]) -> Option<StatementFormat> {
    let head = &head[..head.len().min(HEAD_BYTES)];
    let text = match detect_encoding(head) {
        TextEncoding::Utf8 => String::from_utf8_lossy(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head)).into_owned(),
        other => other.decode_line(head).unwrap_or_default(),
    };
    let text = text.trim_start();
    if text.starts_with(HEADER) {
        return Some(StatementFormat::OneC);
    }
    if text.starts_with('<') && (text.contains("camt.053") || text.contains("BkToCstmrStmt")) {
        return Some(StatementFormat::Camt053);
    }
    None
}

/// One of the format readers.
enum Parser<R: BufRead> {
    OneC(OneCReader<Rewound<R>>),
    Camt(CamtReader<R>),
    Csv(CsvReader<Rewound<R>>),
}

impl<R: BufRead> Parser<R> {
    fn new(reader: R, format: StatementFormat, csv: Option<&CsvMapping>) -> Result<Parser<R>, StatementError> {
        Ok(match format {
            StatementFormat::OneC => Parser::OneC(OneCReader::new(TextLines::new(reader)?)),
            StatementFormat::Camt053 => Parser::Camt(CamtReader::new(reader)),
            StatementFormat::Csv => {
                let mapping = csv.ok_or_else(|| StatementError {
                    line: 0,
                    reason: "a CSV statement needs a column mapping".into(),
                })?;
                Parser::Csv(CsvReader::new(TextLines::new(reader)?, mapping.clone()))
            }
        })
    }

    fn bytes(&self) -> u64 {
        match self {
            Parser::OneC(reader) => reader.bytes(),
            Parser::Camt(reader) => reader.bytes(),
            Parser::Csv(reader) => reader.bytes(),
        }
    }

    /// Whether the file states `account`'s period, or the booking dates must give it.
    fn period_unstated(&self, account: &AccountNumber) -> bool {
        match self {
            Parser::OneC(_) => false,
            Parser::Camt(reader) => reader.unstated_periods().contains(account),
            Parser::Csv(_) => true,
        }
    }
}

impl<R: BufRead> Iterator for Parser<R> {
    type Item = Result<StatementEvent, StatementError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Parser::OneC(reader) => reader.next(),
            Parser::Camt(reader) => reader.next(),
            Parser::Csv(reader) => reader.next(),
        }
    }
}

/// Streams the events of a file in `format`: each account section before its lines, then the lines in file
/// order. After a successful [`validate`] of the same bytes it yields no error. A CSV section's period is its
/// first line's date here; [`validate`] gives the whole range.
pub fn events<'a, R: BufRead + 'a>(
    reader: R,
    format: StatementFormat,
    csv: Option<&CsvMapping>,
) -> Result<Box<dyn Iterator<Item = Result<StatementEvent, StatementError>> + 'a>, StatementError> {
    Ok(Box::new(Parser::new(reader, format, csv)?))
}

/// Pass 1: reads the whole stream, checks every line and every section's totals ([`AccountSummary::check`]),
/// requires the end marker, enforces `limits`, and returns the first error with its line. `on_progress` gets
/// the bytes and statement lines read so far, every few thousand lines and at the end.
pub fn validate<R: BufRead>(
    reader: R,
    format: StatementFormat,
    csv: Option<&CsvMapping>,
    limits: &Limits,
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<Validated, StatementError> {
    let mut parser = Parser::new(reader, format, csv)?;
    let mut accounts: Vec<ValidatedAccount> = Vec::new();
    let mut index: HashMap<AccountNumber, usize> = HashMap::new();
    let mut ranges: HashMap<AccountNumber, (Date, Date)> = HashMap::new();
    let mut lines: u64 = 0;
    while let Some(event) = parser.next() {
        match event? {
            StatementEvent::Account(summary) => {
                index.insert(summary.account.clone(), accounts.len());
                accounts.push(ValidatedAccount { summary, credits: 0, debits: 0, credit_lines: 0, debit_lines: 0 });
            }
            StatementEvent::Line(line) => {
                lines += 1;
                if lines > limits.max_lines {
                    return Err(StatementError {
                        line: line.source_line,
                        reason: format!("the file has more than {} statement lines, the limit", limits.max_lines),
                    });
                }
                let Some(&at) = index.get(&line.account) else {
                    return Err(StatementError {
                        line: line.source_line,
                        reason: format!("account {} has no section in the file", line.account),
                    });
                };
                let account = &mut accounts[at];
                if line.amount.currency() != account.summary.currency {
                    return Err(StatementError {
                        line: line.source_line,
                        reason: format!(
                            "the line is in {}, account {} is in {}",
                            line.amount.currency(),
                            line.account,
                            account.summary.currency
                        ),
                    });
                }
                let overflow = || StatementError { line: line.source_line, reason: "the sums overflow".into() };
                match line.direction {
                    Direction::Credit => {
                        account.credits = account.credits.checked_add(line.amount.minor()).ok_or_else(overflow)?;
                        account.credit_lines += 1;
                    }
                    Direction::Debit => {
                        account.debits = account.debits.checked_add(line.amount.minor()).ok_or_else(overflow)?;
                        account.debit_lines += 1;
                    }
                }
                let range = ranges.entry(line.account.clone()).or_insert((line.booking_date, line.booking_date));
                range.0 = range.0.min(line.booking_date);
                range.1 = range.1.max(line.booking_date);
                if lines.is_multiple_of(PROGRESS_EVERY_LINES) {
                    on_progress(parser.bytes(), lines);
                }
            }
        }
    }
    on_progress(parser.bytes(), lines);
    let unstated: HashSet<AccountNumber> =
        accounts.iter().map(|a| a.summary.account.clone()).filter(|a| parser.period_unstated(a)).collect();
    for account in &mut accounts {
        if let Some(&(first, last)) = ranges.get(&account.summary.account)
            && unstated.contains(&account.summary.account)
        {
            account.summary.period_start = first;
            account.summary.period_end = last;
        }
        account
            .summary
            .check(account.credits, account.debits)
            .map_err(|error| StatementError { line: account.summary.source_line, reason: error.to_string() })?;
    }
    Ok(Validated { format, accounts, lines })
}
