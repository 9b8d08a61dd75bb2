//! ISO 20022 `camt.053` (versions 001.02 to 001.08), read as a stream with quick-xml.
//!
//! Element names are compared by their local names, so any namespace (version) reads the same. Each `Stmt` is
//! one account section; each booked `Ntry` gives one line per `TxDtls`. Fields are collected per container
//! (statement, entry, transaction) as `path → text` pairs relative to it, so memory is bounded by one entry.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::BufRead;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::amount::{AmountUse, parse_amount, parse_iso_date};
use super::encoding::{CountingReader, MAX_TEXT_BYTES};
use super::{
    AccountNumber, AccountSummary, Direction, LineNature, RawFields, StatementError, StatementEvent, StatementLine,
    moscow_date,
};
use crate::inn::Inn;
use crate::money::{Currency, Money};

/// The deepest element nesting read; camt.053 needs about 12.
const MAX_DEPTH: usize = 64;
/// The most bytes one entry may make its lines hold: its own fields copied into each of its lines' raw
/// record, plus its `TxDtls`. A batch booking of a few thousand transactions is far below it.
const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;
/// The most bytes of fields one statement's header (outside its entries) may hold.
const MAX_STATEMENT_BYTES: usize = 4 * 1024 * 1024;
/// The longest text value.
const MAX_VALUE_BYTES: usize = MAX_TEXT_BYTES as usize;

/// Texts read inside one container, with the line each element started on, indexed by path (first wins).
#[derive(Debug, Default)]
struct Fields {
    items: Vec<(String, String, u64)>,
    index: HashMap<String, usize>,
    bytes: usize,
    start: u64,
}

impl Fields {
    fn get(&self, path: &str) -> Option<(&str, u64)> {
        let (_, value, line) = &self.items[*self.index.get(path)?];
        Some((value.as_str(), *line))
    }

    fn push(&mut self, path: String, value: String, line: u64) {
        // The path and value, plus what a `(String, String, u64)` and its index entry cost.
        self.bytes += path.len() * 2 + value.len() + 96;
        let at = self.items.len();
        self.index.entry(path.clone()).or_insert(at);
        self.items.push((path, value, line));
    }
}

#[derive(Debug, Default)]
struct Statement {
    fields: Fields,
    depth: usize,
    opening: Option<i64>,
    closing: Option<i64>,
    /// The day the period starts: the `OPBD` balance's date, or the day after the `PRCD` balance's.
    opening_date: Option<Date>,
    /// The day the period ends: the `CLBD` balance's date.
    closing_date: Option<Date>,
    balance_start: Option<usize>,
    summary: Option<AccountSummary>,
}

#[derive(Debug, Default)]
struct Entry {
    fields: Fields,
    depth: usize,
    details: Vec<Fields>,
    detail_bytes: usize,
    detail_depth: Option<usize>,
    current: Option<Fields>,
}

/// Streams the events of a camt.053 file.
pub struct CamtReader<R> {
    xml: Reader<CountingReader<R>>,
    buffer: Vec<u8>,
    path: Vec<String>,
    starts: Vec<u64>,
    text: String,
    statement: Option<Statement>,
    entry: Option<Entry>,
    pending: VecDeque<StatementEvent>,
    accounts: HashSet<AccountNumber>,
    unstated: HashSet<u64>,
    skipped: u64,
    seen_statement: bool,
    done: bool,
}

impl<R: BufRead> CamtReader<R> {
    /// Starts reading `reader` (UTF-8; a byte-order mark is skipped).
    pub fn new(reader: R) -> CamtReader<R> {
        CamtReader {
            xml: Reader::from_reader(CountingReader::new(reader)),
            buffer: Vec::new(),
            path: Vec::new(),
            starts: Vec::new(),
            text: String::new(),
            statement: None,
            entry: None,
            pending: VecDeque::new(),
            accounts: HashSet::new(),
            unstated: HashSet::new(),
            skipped: 0,
            seen_statement: false,
            done: false,
        }
    }

    /// Bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.xml.get_ref().consumed()
    }

    /// Entries skipped because their status is not BOOK (pending, information only).
    pub fn skipped_entries(&self) -> u64 {
        self.skipped
    }

    /// The start lines of the statements that state no period (no `FrToDt`, no `OPBD`/`PRCD` and `CLBD`
    /// balances); their period is the booking dates' (see `read::validate`).
    pub fn unstated_periods(&self) -> &HashSet<u64> {
        &self.unstated
    }

    fn step(&mut self) -> Result<Option<StatementEvent>, StatementError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            self.buffer.clear();
            let event = self.xml.read_event_into(&mut self.buffer);
            let line = self.xml.get_ref().line();
            let event = event.map_err(|e| StatementError { line, reason: format!("the XML is malformed: {e}") })?;
            match event {
                Event::Start(start) => {
                    let name = local_name(&start);
                    let ccy = currency_attribute(&start);
                    self.open(name, ccy, line)?;
                }
                Event::Empty(start) => {
                    let name = local_name(&start);
                    let ccy = currency_attribute(&start);
                    self.open(name, ccy, line)?;
                    self.close(line)?;
                }
                Event::Text(text) => push_text(&mut self.text, &text.xml10_content(), line)?,
                Event::CData(data) => push_text(&mut self.text, &data.into_inner(), line)?,
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(c)) => Some(c.to_string()),
                        _ => {
                            quick_xml::escape::resolve_predefined_entity(&reference.xml10_content()).map(str::to_owned)
                        }
                    };
                    match resolved {
                        Some(text) => push_text(&mut self.text, &text, line)?,
                        None => {
                            return Err(StatementError {
                                line,
                                reason: format!("unknown entity &{};", reference.xml10_content()),
                            });
                        }
                    }
                }
                Event::End(_) => self.close(line)?,
                Event::Eof => {
                    if !self.seen_statement {
                        return Err(StatementError {
                            line,
                            reason: "the file has no BkToCstmrStmt/Stmt; this is not a camt.053 statement".into(),
                        });
                    }
                    if !self.path.is_empty() {
                        return Err(StatementError { line, reason: "the XML ends inside an element".into() });
                    }
                    return Ok(None);
                }
                Event::Decl(declaration) => {
                    if let Some(Ok(encoding)) = declaration.encoding()
                        && !matches!(encoding.to_ascii_lowercase().as_str(), "utf-8" | "utf8")
                    {
                        return Err(StatementError {
                            line,
                            reason: format!("camt.053 files are read as UTF-8 only; this one declares {}", encoding),
                        });
                    }
                }
                Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    fn open(&mut self, name: String, ccy: Option<String>, line: u64) -> Result<(), StatementError> {
        if self.path.len() >= MAX_DEPTH {
            return Err(StatementError { line, reason: format!("elements nest deeper than {MAX_DEPTH}") });
        }
        self.text.clear();
        let parent = self.path.last().map(String::as_str);
        match name.as_str() {
            "Stmt" if parent == Some("BkToCstmrStmt") => {
                self.seen_statement = true;
                self.statement = Some(Statement {
                    fields: Fields { start: line, ..Fields::default() },
                    depth: self.path.len() + 1,
                    ..Statement::default()
                });
            }
            "Ntry" if self.statement.as_ref().is_some_and(|s| s.depth == self.path.len()) => {
                self.entry = Some(Entry {
                    fields: Fields { start: line, ..Fields::default() },
                    depth: self.path.len() + 1,
                    ..Entry::default()
                });
            }
            "TxDtls" if self.entry.as_ref().is_some_and(|e| e.current.is_none()) => {
                let depth = self.path.len() + 1;
                if let Some(entry) = &mut self.entry {
                    entry.detail_depth = Some(depth);
                    entry.current = Some(Fields { start: line, ..Fields::default() });
                }
            }
            "Bal" => {
                if let Some(statement) = self.statement.as_mut().filter(|s| s.depth == self.path.len()) {
                    statement.balance_start = Some(statement.fields.items.len());
                }
            }
            _ => {}
        }
        self.path.push(name);
        self.starts.push(line);
        if let Some(ccy) = ccy {
            let value = ccy;
            self.record(Some("@Ccy"), value, line)?;
        }
        Ok(())
    }

    /// Stores `value` under the current element's path relative to its innermost container.
    fn record(&mut self, suffix: Option<&str>, value: String, line: u64) -> Result<(), StatementError> {
        let relative = |depth: usize, path: &[String]| {
            let mut joined = path[depth.min(path.len())..]
                .iter()
                // camt.053.001.08 wraps parties in `Pty` (Party40Choice); older versions do not.
                .filter(|segment| segment.as_str() != "Pty")
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("/");
            if let Some(suffix) = suffix {
                joined.push_str(suffix);
            }
            joined
        };
        if let Some(entry) = &mut self.entry {
            if let (Some(current), Some(depth)) = (&mut entry.current, entry.detail_depth) {
                let before = current.bytes;
                current.push(relative(depth, &self.path), value, line);
                entry.detail_bytes += current.bytes - before;
            } else {
                entry.fields.push(relative(entry.depth, &self.path), value, line);
            }
            // Each line copies the entry's fields into its raw record: the budget counts every copy.
            let lines = entry.details.len() + usize::from(entry.current.is_some()).max(1);
            if entry.fields.bytes.saturating_mul(lines).saturating_add(entry.detail_bytes) > MAX_ENTRY_BYTES {
                return Err(StatementError {
                    line,
                    reason: format!(
                        "the Ntry that starts on line {} holds more than {} MiB",
                        entry.fields.start,
                        MAX_ENTRY_BYTES >> 20
                    ),
                });
            }
            return Ok(());
        }
        if let Some(statement) = &mut self.statement {
            statement.fields.push(relative(statement.depth, &self.path), value, line);
            if statement.fields.bytes > MAX_STATEMENT_BYTES {
                return Err(StatementError {
                    line,
                    reason: format!(
                        "the Stmt that starts on line {} holds more than {} MiB outside its entries",
                        statement.fields.start,
                        MAX_STATEMENT_BYTES >> 20
                    ),
                });
            }
        }
        Ok(())
    }

    fn close(&mut self, line: u64) -> Result<(), StatementError> {
        let text = std::mem::take(&mut self.text);
        let start = self.starts.last().copied().unwrap_or(line);
        let trimmed = text.trim();
        if !trimmed.is_empty() {
            self.record(None, trimmed.to_owned(), start)?;
        }
        let depth = self.path.len();
        let name = self.path.last().cloned().unwrap_or_default();
        if let Some(entry) = &mut self.entry {
            if entry.detail_depth == Some(depth) && name == "TxDtls" {
                if let Some(current) = entry.current.take() {
                    entry.details.push(current);
                }
                entry.detail_depth = None;
            } else if entry.depth == depth
                && name == "Ntry"
                && let Some(entry) = self.entry.take()
            {
                self.finish_entry(entry)?;
            }
        } else if let Some(statement) = &mut self.statement {
            if statement.depth == depth && name == "Stmt" {
                if let Some(mut statement) = self.statement.take()
                    && statement.summary.is_none()
                {
                    self.emit_account(&mut statement, None)?;
                }
            } else if statement.depth + 1 == depth && name == "Bal" {
                read_balance(statement)?;
            }
        }
        self.path.pop();
        self.starts.pop();
        Ok(())
    }

    fn emit_account(&mut self, statement: &mut Statement, first_booking: Option<Date>) -> Result<(), StatementError> {
        let fields = &statement.fields;
        let (text, line) = fields
            .get("Acct/Id/IBAN")
            .or_else(|| fields.get("Acct/Id/Othr/Id"))
            .ok_or_else(|| StatementError { line: fields.start, reason: "the Stmt has no Acct/Id".into() })?;
        let account = AccountNumber::parse(text).map_err(|_| StatementError {
            line,
            reason: format!("Acct/Id '{text}' is not an account number: must be 20 digits"),
        })?;
        // A multi-day export has one Stmt per day for the same account; `read::validate` merges them.
        self.accounts.insert(account.clone());
        let currency = currency_of(fields)?;
        let date_of = |key: &str| fields.get(key).map(|(text, line)| date_time_date(key, text, line)).transpose();
        let stated = match (date_of("FrToDt/FrDtTm")?, date_of("FrToDt/ToDtTm")?) {
            (Some(from), Some(to)) => Some((from, to)),
            // Only the opening and closing balances bound the period; interim and forward-available balances
            // (ITBD, FWAV…) are dated inside or after it and must not widen it.
            _ => statement.opening_date.zip(statement.closing_date),
        };
        let (period_start, period_end) = match (stated, first_booking) {
            (Some(period), _) => period,
            (None, Some(date)) => {
                self.unstated.insert(fields.start);
                (date, date)
            }
            (None, None) => {
                // No entries to date it: the day the bank created it is the only date left.
                let created = date_of("CreDtTm")?.ok_or_else(|| StatementError {
                    line: fields.start,
                    reason: "the Stmt states no period (FrToDt), no balance dates and no CreDtTm".into(),
                })?;
                (created, created)
            }
        };
        if period_end < period_start {
            return Err(StatementError {
                line: fields.start,
                reason: format!("the period ends ({period_end}) before it starts ({period_start})"),
            });
        }
        let sum = |key: &str| {
            fields
                .get(key)
                .map(|(text, line)| {
                    parse_amount(key, text, currency, AmountUse::Balance)
                        .map_err(|reason| StatementError { line, reason })
                })
                .transpose()
        };
        let summary = AccountSummary {
            account,
            currency,
            period_start,
            period_end,
            opening_balance: statement.opening,
            total_credits: sum("TxsSummry/TtlCdtNtries/Sum")?,
            total_debits: sum("TxsSummry/TtlDbtNtries/Sum")?,
            closing_balance: statement.closing,
            source_line: fields.start,
        };
        self.pending.push_back(StatementEvent::Account(summary.clone()));
        statement.summary = Some(summary);
        Ok(())
    }

    fn finish_entry(&mut self, entry: Entry) -> Result<(), StatementError> {
        let fields = &entry.fields;
        let status = fields.get("Sts/Cd").or_else(|| fields.get("Sts")).map(|(text, _)| text);
        if status != Some("BOOK") {
            self.skipped += 1;
            return Ok(());
        }
        let booking_date = match fields.get("BookgDt/Dt").or_else(|| fields.get("BookgDt/DtTm")) {
            Some((text, line)) => date_time_date("BookgDt", text, line)?,
            None => return Err(StatementError { line: fields.start, reason: "the Ntry has no BookgDt".into() }),
        };
        let Some(mut statement) = self.statement.take() else {
            return Err(StatementError { line: fields.start, reason: "an Ntry outside a Stmt".into() });
        };
        if statement.summary.is_none() {
            self.emit_account(&mut statement, Some(booking_date))?;
        }
        let summary = statement.summary.clone();
        let owner_inn = statement.fields.get("Acct/Ownr/Id/OrgId/Othr/Id").and_then(|(id, _)| Inn::parse(id).ok());
        self.statement = Some(statement);
        let Some(summary) = summary else { return Ok(()) };
        let context = Context {
            summary: &summary,
            booking_date,
            reversal: fields.get("RvslInd").is_some_and(|(value, _)| value == "true" || value == "1"),
            owner_inn,
            ours: &self.accounts,
        };
        let lines = entry_lines(&entry, &context)?;
        self.pending.extend(lines.into_iter().map(StatementEvent::Line));
        Ok(())
    }
}

/// What an entry's lines take from their statement and entry.
struct Context<'a> {
    summary: &'a AccountSummary,
    booking_date: Date,
    /// `RvslInd` is true: the entry reverses an earlier one.
    reversal: bool,
    /// The statement account owner's INN (`Acct/Ownr/Id/OrgId/Othr/Id`).
    owner_inn: Option<Inn>,
    /// Our accounts: those with a `Stmt` read so far.
    ours: &'a HashSet<AccountNumber>,
}

fn entry_lines(entry: &Entry, context: &Context<'_>) -> Result<Vec<StatementLine>, StatementError> {
    let summary = context.summary;
    let fields = &entry.fields;
    let fail = |line: u64, reason: String| StatementError { line, reason };
    let direction = match fields.get("CdtDbtInd") {
        Some(("CRDT", _)) => Direction::Credit,
        Some(("DBIT", _)) => Direction::Debit,
        Some((other, line)) => return Err(fail(line, format!("CdtDbtInd '{other}' must be CRDT or DBIT"))),
        None => return Err(fail(fields.start, "the Ntry has no CdtDbtInd".into())),
    };
    let amount_at = |fields: &Fields, key: &str| -> Result<Option<i64>, StatementError> {
        let Some((text, line)) = fields.get(key) else { return Ok(None) };
        if let Some((ccy, _)) = fields.get(&format!("{key}@Ccy"))
            && ccy != summary.currency.code()
        {
            return Err(fail(line, format!("{key} is in {ccy}, the account is in {}", summary.currency)));
        }
        parse_amount(key, text, summary.currency, AmountUse::Line).map(Some).map_err(|reason| fail(line, reason))
    };
    let entry_amount = amount_at(fields, "Amt")?.ok_or_else(|| fail(fields.start, "the Ntry has no Amt".into()))?;
    let empty = Fields { start: fields.start, ..Fields::default() };
    let details: Vec<&Fields> = if entry.details.is_empty() { vec![&empty] } else { entry.details.iter().collect() };
    let mut lines = Vec::with_capacity(details.len());
    let mut total: i64 = 0;
    for detail in &details {
        let amount = match amount_at(detail, "Amt")? {
            Some(amount) => amount,
            None => match amount_at(detail, "AmtDtls/TxAmt/Amt")? {
                Some(amount) => amount,
                None if details.len() == 1 => entry_amount,
                None => {
                    return Err(fail(
                        detail.start,
                        format!("a TxDtls without Amt in an Ntry with {} TxDtls", details.len()),
                    ));
                }
            },
        };
        total = total.saturating_add(amount);
        lines.push(detail_line(fields, detail, context, direction, amount)?);
    }
    if total != entry_amount {
        let show = |minor| Money::from_minor(minor, summary.currency).to_decimal_string();
        return Err(fail(
            fields.start,
            format!("the Ntry's Amt is {}, its TxDtls add up to {}", show(entry_amount), show(total)),
        ));
    }
    Ok(lines)
}

fn detail_line(
    entry: &Fields,
    detail: &Fields,
    context: &Context<'_>,
    direction: Direction,
    amount: i64,
) -> Result<StatementLine, StatementError> {
    let (summary, booking_date) = (context.summary, context.booking_date);
    let text = |key: &str| detail.get(key).map(|(text, _)| text.to_owned());
    let end_to_end_id = text("Refs/EndToEndId").filter(|id| id != "NOTPROVIDED");
    let bank_ref = text("Refs/AcctSvcrRef").or_else(|| entry.get("AcctSvcrRef").map(|(t, _)| t.to_owned()));
    let document_number = end_to_end_id.clone().or_else(|| text("Refs/InstrId")).or_else(|| bank_ref.clone());
    let Some(document_number) = document_number else {
        return Err(StatementError {
            line: detail.start,
            reason: "the entry has no document number (Refs/EndToEndId, InstrId or AcctSvcrRef)".into(),
        });
    };
    let document_date = match detail.get("RltdDts/AccptncDtTm") {
        Some((value, line)) => date_time_date("RltdDts/AccptncDtTm", value, line)?,
        None => booking_date,
    };
    let (party, account, agent) = match direction {
        Direction::Credit => ("RltdPties/Dbtr", "RltdPties/DbtrAcct", "RltdAgts/DbtrAgt"),
        Direction::Debit => ("RltdPties/Cdtr", "RltdPties/CdtrAcct", "RltdAgts/CdtrAgt"),
    };
    let mut raw: RawFields = entry.items.iter().map(|(p, v, _)| (p, v)).collect();
    for (path, value, _) in &detail.items {
        raw.push(&format!("NtryDtls/TxDtls/{path}"), value);
    }
    let counterparty_inn = party_inn(detail, party);
    let counterparty_account = text(&format!("{account}/Id/Othr/Id")).or_else(|| text(&format!("{account}/Id/IBAN")));
    let own_account = counterparty_account
        .as_deref()
        .is_some_and(|other| AccountNumber::parse(other).is_ok_and(|other| context.ours.contains(&other)));
    let nature = if context.reversal {
        LineNature::Reversal
    } else if own_account || (counterparty_inn.is_some() && counterparty_inn == context.owner_inn) {
        LineNature::OwnTransfer
    } else if counterparty_account.as_deref().is_some_and(LineNature::is_transit_account) {
        LineNature::BankOrder
    } else {
        LineNature::Payment
    };
    Ok(StatementLine {
        account: summary.account.clone(),
        direction,
        amount: Money::from_minor(amount, summary.currency),
        booking_date,
        document_number,
        document_date,
        counterparty_inn,
        counterparty_name: text(&format!("{party}/Nm")),
        counterparty_account,
        counterparty_bik: text(&format!("{agent}/FinInstnId/ClrSysMmbId/MmbId"))
            .or_else(|| text(&format!("{agent}/FinInstnId/Othr/Id"))),
        bank_ref,
        end_to_end_id,
        purpose: text("RmtInf/Ustrd"),
        nature,
        source_line: detail.start,
        raw,
    })
}

/// The party's INN: an `Othr/Id` under `OrgId` or `PrvtId` whose scheme (`Cd` or `Prtry`) is `TXID` or `INN`.
fn party_inn(detail: &Fields, party: &str) -> Option<Inn> {
    let mut last_id: Option<&str> = None;
    for (path, value, _) in &detail.items {
        let Some(rest) = path.strip_prefix(party).and_then(|r| r.strip_prefix("/Id/")) else { continue };
        let rest = rest.strip_prefix("OrgId/").or_else(|| rest.strip_prefix("PrvtId/"));
        match rest {
            Some("Othr/Id") => last_id = Some(value),
            Some("Othr/SchmeNm/Cd" | "Othr/SchmeNm/Prtry") if matches!(value.as_str(), "TXID" | "INN") => {
                if let Some(inn) = last_id.and_then(|id| Inn::parse(id).ok()) {
                    return Some(inn);
                }
            }
            _ => {}
        }
    }
    None
}

fn read_balance(statement: &mut Statement) -> Result<(), StatementError> {
    let Some(from) = statement.balance_start.take() else { return Ok(()) };
    let items = &statement.fields.items[from..];
    let get = |key: &str| items.iter().find(|(p, _, _)| p == key).map(|(_, v, line)| (v.as_str(), *line));
    let code = get("Bal/Tp/CdOrPrtry/Cd").map(|(code, _)| code);
    let currency = currency_of(&statement.fields)?;
    let Some((text, line)) = get("Bal/Amt") else { return Ok(()) };
    let magnitude = parse_amount("Bal/Amt", text, currency, AmountUse::Balance)
        .map_err(|reason| StatementError { line, reason })?;
    let amount = match get("Bal/CdtDbtInd") {
        Some(("DBIT", _)) => -magnitude,
        _ => magnitude,
    };
    let date = get("Bal/Dt/Dt").or_else(|| get("Bal/Dt/DtTm")).map(|(text, line)| date_time_date("Bal/Dt", text, line));
    let date = date.transpose()?;
    match code {
        Some("OPBD") if statement.opening.is_none() => {
            statement.opening = Some(amount);
            statement.opening_date = date;
        }
        // The previous day's closing balance: the period starts the day after it.
        Some("PRCD") if statement.opening.is_none() => {
            statement.opening = Some(amount);
            statement.opening_date = date.and_then(Date::next_day);
        }
        Some("CLBD") if statement.closing.is_none() => {
            statement.closing = Some(amount);
            statement.closing_date = date;
        }
        _ => {}
    }
    Ok(())
}

fn currency_of(fields: &Fields) -> Result<Currency, StatementError> {
    let (code, line) = fields
        .get("Acct/Ccy")
        .or_else(|| fields.get("Bal/Amt@Ccy"))
        .ok_or_else(|| StatementError { line: fields.start, reason: "the Stmt has no Acct/Ccy".into() })?;
    Currency::from_code(code).ok_or_else(|| StatementError { line, reason: format!("Ccy '{code}' is not a currency") })
}

/// The Moscow calendar date of an ISO date or date-time: `2024-04-27T21:00:00Z` is 28 April 2024; a date-time
/// without an offset is taken as written (the bank's local, Moscow, time).
fn date_time_date(field: &str, text: &str, line: u64) -> Result<Date, StatementError> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(moscow_date(at));
    }
    let day = match text.get(10..11) {
        Some("T") => &text[..10],
        _ => text,
    };
    parse_iso_date(field, day).map_err(|reason| StatementError { line, reason })
}

/// Appends to the element's text, refusing a value longer than [`MAX_VALUE_BYTES`].
fn push_text(into: &mut String, text: &str, line: u64) -> Result<(), StatementError> {
    if into.len() + text.len() > MAX_VALUE_BYTES {
        return Err(StatementError {
            line,
            reason: format!("a value is longer than {} KiB; this is not a statement", MAX_VALUE_BYTES / 1024),
        });
    }
    into.push_str(text);
    Ok(())
}

fn local_name(start: &BytesStart<'_>) -> String {
    start.local_name().as_ref().to_owned()
}

fn currency_attribute(start: &BytesStart<'_>) -> Option<String> {
    start
        .attributes()
        .flatten()
        .find(|attribute| attribute.key.local_name().as_ref() == "Ccy")
        .map(|attribute| attribute.value.to_string())
}

impl<R: BufRead> Iterator for CamtReader<R> {
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
#[path = "camt_tests.rs"]
mod tests;
