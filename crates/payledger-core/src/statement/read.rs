//! Reading a statement file of any format: telling the format, streaming its events, and the first pass that
//! checks the whole file before anything is stored.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use time::Date;

use super::camt::CamtReader;
pub use super::csv::CsvMapping;
use super::csv::CsvReader;
use super::encoding::{HEAD_BYTES, Rewound, TextLines, detect_encoding};
use super::onec::{HEADER, OneCReader};
use super::{AccountNumber, AccountSummary, Direction, StatementError, StatementEvent, StatementFormat, StatementLine};

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
    /// One merged section per account in file order, with the period widened over the booking dates where the
    /// file states none (CSV, camt.053 without `FrToDt` or opening and closing balance dates).
    pub accounts: Vec<ValidatedAccount>,
    /// The number of statement lines.
    pub lines: u64,
    /// Every account's lines are booked on non-decreasing days in file order, so identical lines (which share
    /// their booking date) are never separated by another day of their account: a pass over the same bytes may
    /// forget an account's occurrence counts at each day change ([`super::OccurrenceCounter::forgetting`]).
    pub days_in_order: bool,
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
    // Lossy: the head may be cut inside a character, and CP1251 leaves 0x98 undefined; neither may hide the
    // header that follows.
    let text = detect_encoding(head).decode_lossy(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head));
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
    OneC(Box<OneCReader<Rewound<R>>>),
    Camt(Box<CamtReader<R>>),
    Csv(Box<CsvReader<Rewound<R>>>),
}

impl<R: BufRead> Parser<R> {
    fn new(reader: R, format: StatementFormat, csv: Option<&CsvMapping>) -> Result<Parser<R>, StatementError> {
        Ok(match format {
            StatementFormat::OneC => Parser::OneC(Box::new(OneCReader::new(TextLines::new(reader)?))),
            StatementFormat::Camt053 => Parser::Camt(Box::new(CamtReader::new(reader))),
            StatementFormat::Csv => {
                let mapping = csv.ok_or_else(|| StatementError {
                    line: 0,
                    reason: "a CSV statement needs a column mapping".into(),
                })?;
                Parser::Csv(Box::new(CsvReader::new(TextLines::new(reader)?, mapping.clone())))
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

    /// Whether the file states the section's period, or the booking dates must give it.
    fn period_unstated(&self, section: &AccountSummary) -> bool {
        match self {
            Parser::OneC(_) => false,
            Parser::Camt(reader) => reader.unstated_periods().contains(&section.source_line),
            Parser::Csv(_) => true,
        }
    }

    /// Whether each line belongs to the latest section of its account (camt.053 entries sit inside their
    /// `Stmt`); 1C lists every section before the documents, so a line's booking date picks its section.
    fn lines_follow_their_section(&self) -> bool {
        !matches!(self, Parser::OneC(_))
    }

    /// Whether the section is a 1C section without ДатаКонца.
    fn open_ended(&self, section: &AccountSummary) -> bool {
        match self {
            Parser::OneC(reader) => reader.sections_without_end().contains(&section.source_line),
            Parser::Camt(_) | Parser::Csv(_) => false,
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
/// order, each account's section once (the first time; [`validate`] gives the merged one). After a successful
/// [`validate`] of the same bytes it yields no error. A CSV section's period is its
/// first line's date here; [`validate`] gives the whole range.
pub fn events<'a, R: BufRead + 'a>(
    reader: R,
    format: StatementFormat,
    csv: Option<&CsvMapping>,
) -> Result<Box<dyn Iterator<Item = Result<StatementEvent, StatementError>> + 'a>, StatementError> {
    let mut announced: HashSet<AccountNumber> = HashSet::new();
    // A multi-day export repeats an account's section; the stream announces each account once.
    Ok(Box::new(Parser::new(reader, format, csv)?.filter(move |event| match event {
        Ok(StatementEvent::Account(summary)) => announced.insert(summary.account.clone()),
        _ => true,
    })))
}

/// One section as read, before sections of the same account are merged.
struct Section {
    totals: ValidatedAccount,
    /// The file states no period; the booking dates give it.
    unstated: bool,
    /// 1C without ДатаКонца: the period is ДатаНачала, and a line outside it is an error saying so.
    open_ended: bool,
    booked: Option<(Date, Date)>,
}

impl Section {
    fn covers(&self, day: Date) -> bool {
        self.totals.summary.period_start <= day && day <= self.totals.summary.period_end
    }
}

/// Pass 1: reads the whole stream, checks every line and every section's totals ([`AccountSummary::check`]),
/// requires the end marker, enforces `limits`, and returns the first error with its line. `on_progress` gets
/// the bytes and statement lines read so far, every few thousand lines and at the end.
///
/// A line must be booked inside its section's period. Several sections for one account (a multi-day export
/// with one section per day) are checked each on its own and then merged ([`merge_sections`]).
pub fn validate<R: BufRead>(
    reader: R,
    format: StatementFormat,
    csv: Option<&CsvMapping>,
    limits: &Limits,
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<Validated, StatementError> {
    let mut parser = Parser::new(reader, format, csv)?;
    let mut sections: Vec<Section> = Vec::new();
    let mut index: HashMap<AccountNumber, Vec<usize>> = HashMap::new();
    let mut lines: u64 = 0;
    let mut last_day: HashMap<AccountNumber, Date> = HashMap::new();
    let mut days_in_order = true;
    while let Some(event) = parser.next() {
        match event? {
            StatementEvent::Account(summary) => {
                let unstated = parser.period_unstated(&summary);
                let earlier = index.entry(summary.account.clone()).or_default();
                // Stated periods are known now: an overlap is refused before any line is put in the wrong one.
                for &at in earlier.iter().filter(|&&at| !unstated && !sections[at].unstated) {
                    let before = &sections[at].totals.summary;
                    if summary.period_start <= before.period_end && before.period_start <= summary.period_end {
                        return Err(overlap(&summary, before));
                    }
                }
                earlier.push(sections.len());
                sections.push(Section {
                    unstated,
                    open_ended: parser.open_ended(&summary),
                    totals: ValidatedAccount { summary, credits: 0, debits: 0, credit_lines: 0, debit_lines: 0 },
                    booked: None,
                });
            }
            StatementEvent::Line(line) => {
                lines += 1;
                if lines > limits.max_lines {
                    return Err(StatementError {
                        line: line.source_line,
                        reason: format!("the file has more than {} statement lines, the limit", limits.max_lines),
                    });
                }
                refuse_control_characters(&line)?;
                match last_day.get_mut(&line.account) {
                    Some(last) if line.booking_date < *last => days_in_order = false,
                    Some(last) => *last = line.booking_date,
                    None => {
                        last_day.insert(line.account.clone(), line.booking_date);
                    }
                }
                let candidates = index.get(&line.account).map_or(&[][..], Vec::as_slice);
                let candidates = match (parser.lines_follow_their_section(), candidates.split_last()) {
                    (true, Some((last, _))) => std::slice::from_ref(last),
                    _ => candidates,
                };
                let at = section_of(&sections, candidates, &line)?;
                let section = &mut sections[at];
                let account = &mut section.totals;
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
                let day = line.booking_date;
                section.booked =
                    Some(section.booked.map_or((day, day), |(first, last)| (first.min(day), last.max(day))));
                if lines.is_multiple_of(PROGRESS_EVERY_LINES) {
                    on_progress(parser.bytes(), lines);
                }
            }
        }
    }
    on_progress(parser.bytes(), lines);
    for section in &mut sections {
        if let (true, Some((first, last))) = (section.unstated, section.booked) {
            section.totals.summary.period_start = first;
            section.totals.summary.period_end = last;
        }
        let account = &section.totals;
        account
            .summary
            .check(account.credits, account.debits)
            .map_err(|error| StatementError { line: account.summary.source_line, reason: error.to_string() })?;
    }
    let accounts = merge_sections(sections.into_iter().map(|section| section.totals).collect())?;
    Ok(Validated { format, accounts, lines, days_in_order })
}

/// Refuses a C0 control character other than TAB, CR and LF in any text of `line`: it means nothing in a
/// statement, and PostgreSQL cannot store U+0000 at all, so it is a bad file here rather than a failed store
/// later. The field is named as the file names it (the raw key) where the line keeps one. Public for the second
/// pass of an import, which checks each line again: the file may have changed since this pass.
pub fn refuse_control_characters(line: &StatementLine) -> Result<(), StatementError> {
    let control = first_control_character;
    let fail = |found: char, field: &str| {
        Err(StatementError {
            line: line.source_line,
            reason: format!("a control character (U+{:04X}) in {field}", u32::from(found)),
        })
    };
    // One scan of every raw byte; the fields are only gone through to name the one that has it.
    let raw = if control(line.raw.all_text()).is_some() { Some(line.raw.iter()) } else { None };
    for (key, value) in raw.into_iter().flatten() {
        if let Some(found) = control(key) {
            return fail(found, "a field name");
        }
        if let Some(found) = control(value) {
            return fail(found, key);
        }
    }
    let typed = [
        ("the document number", Some(line.document_number.as_str())),
        ("the counterparty name", line.counterparty_name.as_deref()),
        ("the counterparty account", line.counterparty_account.as_deref()),
        ("the counterparty BIK", line.counterparty_bik.as_deref()),
        ("the bank reference", line.bank_ref.as_deref()),
        ("the end-to-end id", line.end_to_end_id.as_deref()),
        ("the purpose", line.purpose.as_deref()),
    ];
    for (field, text) in typed {
        if let Some(found) = text.and_then(control) {
            return fail(found, field);
        }
    }
    Ok(())
}

/// The first ASCII control character in `text` other than tab, CR and LF (and DEL, which some banks' names
/// carry). Such a character is one byte in UTF-8 and never part of another character's encoding, so the bytes
/// are scanned, eight at a time: a statement's text has almost none, and this runs over every byte of it twice.
pub(crate) fn first_control_character(text: &str) -> Option<char> {
    const ONES: u64 = u64::MAX / 255;
    let refused = |b: u8| b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n');
    let (words, tail) = text.as_bytes().as_chunks::<8>();
    for word in words {
        let x = u64::from_le_bytes(*word);
        // Non-zero exactly when some byte is below 0x20 (the "has less than" test holds for bounds up to 0x80).
        if x.wrapping_sub(ONES * 0x20) & !x & (ONES * 0x80) != 0
            && let Some(&b) = word.iter().find(|&&b| refused(b))
        {
            return Some(char::from(b));
        }
    }
    tail.iter().copied().find(|&b| refused(b)).map(char::from)
}

/// The section among `candidates` (of `line`'s account) whose period holds its booking date (or, where the
/// file states no period, the latest one); an error naming the line and both dates when there is none.
fn section_of(sections: &[Section], candidates: &[usize], line: &StatementLine) -> Result<usize, StatementError> {
    let day = line.booking_date;
    let found = candidates
        .iter()
        .copied()
        .find(|&at| !sections[at].unstated && sections[at].covers(day))
        .or_else(|| candidates.iter().copied().rev().find(|&at| sections[at].unstated));
    if let Some(at) = found {
        return Ok(at);
    }
    let fail = |reason: String| Err(StatementError { line: line.source_line, reason });
    let Some(&last) = candidates.last() else {
        return fail(format!("account {} has no section in the file", line.account));
    };
    let section = &sections[last];
    let summary = &section.totals.summary;
    if section.open_ended && candidates.len() == 1 {
        return fail(format!(
            "the line is booked on {day}, but the section of account {} on line {} has no ДатаКонца, so its period \
             is its ДатаНачала {} only",
            line.account, summary.source_line, summary.period_start
        ));
    }
    fail(format!(
        "the line is booked on {day}, outside the period {}..{} of account {}'s section on line {}",
        summary.period_start, summary.period_end, line.account, summary.source_line
    ))
}

fn overlap(section: &AccountSummary, before: &AccountSummary) -> StatementError {
    StatementError {
        line: section.source_line,
        reason: format!(
            "account {}'s section covers {}..{}, which overlaps {}..{} of its section on line {}",
            section.account,
            section.period_start,
            section.period_end,
            before.period_start,
            before.period_end,
            before.source_line
        ),
    }
}

/// Merges the sections of each account into one, in the order the accounts first appear. Each section's
/// totals have been checked on its own; the periods must not overlap and each section must open with the
/// balance the one before it closed with. The merged section has the first period's opening balance, the
/// last's closing balance, the summed credits and debits (stated totals summed when every section states
/// them) and the union of the periods.
pub fn merge_sections(sections: Vec<ValidatedAccount>) -> Result<Vec<ValidatedAccount>, StatementError> {
    let mut order: Vec<AccountNumber> = Vec::new();
    let mut grouped: HashMap<AccountNumber, Vec<ValidatedAccount>> = HashMap::new();
    for section in sections {
        let account = section.summary.account.clone();
        if !grouped.contains_key(&account) {
            order.push(account.clone());
        }
        grouped.entry(account).or_default().push(section);
    }
    let mut merged = Vec::with_capacity(order.len());
    for account in order {
        let mut parts = grouped.remove(&account).unwrap_or_default();
        parts.sort_by_key(|part| part.summary.period_start);
        let mut parts = parts.into_iter();
        let Some(mut whole) = parts.next() else { continue };
        for part in parts {
            let (before, next) = (&whole.summary, &part.summary);
            let fail = |reason: String| Err(StatementError { line: next.source_line, reason });
            if next.period_start <= before.period_end {
                return Err(overlap(next, before));
            }
            if let (Some(closed), Some(opens)) = (before.closing_balance, next.opening_balance)
                && closed != opens
            {
                let show = |minor| crate::money::format_minor(minor, next.currency.minor_digits());
                return fail(format!(
                    "account {account}'s section opens with {}, the section before it closed with {}",
                    show(opens),
                    show(closed)
                ));
            }
            let overflow = || StatementError { line: next.source_line, reason: "the sums overflow".into() };
            let add = |a: Option<i64>, b: Option<i64>| match (a, b) {
                (Some(a), Some(b)) => a.checked_add(b).map(Some).ok_or_else(overflow),
                _ => Ok(None),
            };
            whole.summary.total_credits = add(whole.summary.total_credits, part.summary.total_credits)?;
            whole.summary.total_debits = add(whole.summary.total_debits, part.summary.total_debits)?;
            whole.summary.closing_balance = part.summary.closing_balance;
            whole.summary.period_end = part.summary.period_end;
            whole.credits = whole.credits.checked_add(part.credits).ok_or_else(overflow)?;
            whole.debits = whole.debits.checked_add(part.debits).ok_or_else(overflow)?;
            whole.credit_lines += part.credit_lines;
            whole.debit_lines += part.debit_lines;
        }
        merged.push(whole);
    }
    Ok(merged)
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
