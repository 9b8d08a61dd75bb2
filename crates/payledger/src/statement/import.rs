//! Importing a statement file: the source it is read from, the options, the progress it reports and the
//! summary it answers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use payledger_core::money::{Currency, format_minor};
use payledger_core::statement::read::{CsvMapping, Limits, detect_format, events, refuse_control_characters, validate};
use payledger_core::statement::{
    AccountNumber, AccountSummary, OccurrenceCounter, StatementError, StatementEvent, StatementFormat, StatementLine,
    fingerprint, moscow_date,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::report::{AccountTotals, DiscrepancyCounts};
use super::{FormatChoice, ReconcileError, Reconciliation};
use crate::engine::EngineError;
use crate::engine::batch::{WriteCommand, WriteOutcome};
use crate::engine::judging::FinishImport;
use crate::engine::statements::{
    self, BeginImport, LineToStore, LinesCommand, MAX_LINES_PER_COMMAND, SectionCounts, StatementOutcome,
};
use crate::store::{ImportAccountRow, ImportRow};

/// Called with the import's progress, from the import's own tasks.
pub type ProgressFn = Arc<dyn Fn(&ImportProgress) + Send + Sync>;

/// Where a statement's bytes come from. The import reads them twice (validate, then store), so a source opens
/// a fresh reader each time.
#[allow(clippy::len_without_is_empty)] // `len` is a size hint for progress, not a collection's length
pub trait StatementSource: Send + Sync + 'static {
    /// A new reader from the first byte.
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send>>;
    /// The size in bytes, if known (for progress and the size limit).
    fn len(&self) -> Option<u64>;
}

impl StatementSource for bytes::Bytes {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send>> {
        Ok(Box::new(std::io::Cursor::new(self.clone())))
    }

    fn len(&self) -> Option<u64> {
        u64::try_from(bytes::Bytes::len(self)).ok()
    }
}

impl StatementSource for PathBuf {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send>> {
        Ok(Box::new(std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(self)?)))
    }

    fn len(&self) -> Option<u64> {
        std::fs::metadata(self).ok().map(|meta| meta.len())
    }
}

/// How to read a file.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The format, or detect it.
    pub format: FormatChoice,
    /// The CSV column mapping spec (`booking_date=Дата,amount=Сумма,…`, see `CsvMapping::parse`); required
    /// for CSV. Text rather than the parsed mapping so that a bad spec is reported the same way by every face.
    pub csv: Option<String>,
    /// Import only this account's section; an error if the file has none.
    pub account: Option<AccountNumber>,
    /// The file's name, as shown in summaries.
    pub file_name: Option<String>,
    /// Who imports it (audit).
    pub by: Option<String>,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions { format: FormatChoice::Auto, csv: None, account: None, file_name: None, by: None }
    }
}

/// Which pass an import is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportPhase {
    /// Pass 1: reading and checking the whole file; nothing is stored yet.
    Validating,
    /// Pass 2: storing and matching lines.
    Importing,
    /// Judging closed days and notices without a line.
    Judging,
}

/// Where an import is, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProgress {
    /// Bytes read in the current pass.
    pub bytes_read: u64,
    /// The file's size, if known.
    pub total_bytes: Option<u64>,
    /// Statement lines read in the current pass.
    pub lines_read: u64,
    /// Lines stored so far (pass 2).
    pub lines_stored: u64,
    /// Lines matched with a notice so far (pass 2).
    pub matched: u64,
    /// The pass.
    pub phase: ImportPhase,
}

/// A page of imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportsPage {
    /// Only imports with a smaller id (the last id of the previous page).
    pub cursor: Option<i64>,
    /// At most this many (1..=500).
    pub limit: u32,
}

/// What an import did: the CLI's `--json` and the API's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ImportSummary {
    /// The import's id.
    pub id: i64,
    /// The import's identity, hex: the file's SHA-256, unless the import is limited to one account (`account`
    /// option, CLI `--account`) of a file that has other accounts too: then the SHA-256 of the file's 32-byte
    /// SHA-256 followed by the account number, so that each account of such a file is an import of its own
    /// (the audit entry names the file's SHA-256 as well). A file of one account is one import however it is
    /// named.
    pub sha256: String,
    /// `1c`, `camt053` or `csv`.
    pub format: String,
    /// The file's name, if given.
    pub file_name: Option<String>,
    /// `loading` (interrupted; importing the same file again resumes it) or `complete`.
    pub state: String,
    /// The same file was imported before; nothing changed.
    pub already_imported: bool,
    /// Each account section with the totals the bank states.
    pub accounts: Vec<AccountTotals>,
    /// Statement lines in the file.
    pub lines_read: u64,
    /// Lines stored by this import.
    pub lines_new: u64,
    /// Lines an earlier (overlapping) import already stored.
    pub lines_already_known: u64,
    /// Lines matched with a notice by this import.
    pub matched: u64,
    /// Discrepancies this import opened, by kind.
    pub discrepancies: DiscrepancyCounts,
    /// Credit lines of days not yet closed: judged by a later import.
    pub pending: u64,
    /// How long the import took, in milliseconds.
    pub duration_ms: u64,
}

/// The lines commands of one import the engine may hold at once: enough to fill a batch while the next chunk
/// is read, few enough not to crowd out webhooks in the engine's queue.
const LINES_IN_FLIGHT: usize = 4;

/// Pass 1 (validate, on a blocking thread), then begin, pass 2 (stream chunks of lines, several in flight),
/// then finish. Pass 1 refuses a bad file before anything is stored; a failure after begin leaves a `loading`
/// import that the same file resumes.
pub(super) async fn run(
    service: &Reconciliation,
    source: impl StatementSource,
    options: ImportOptions,
    progress: Option<ProgressFn>,
) -> Result<ImportSummary, ReconcileError> {
    let started = std::time::Instant::now();
    let settings = service.settings().clone();
    if let Some(len) = source.len().filter(|len| *len > settings.max_file_bytes) {
        tracing::debug!(len, "statement file over the limit");
        return Err(ReconcileError::TooLarge { limit: settings.max_file_bytes });
    }
    let csv = options.csv.as_deref().map(CsvMapping::parse).transpose().map_err(ReconcileError::CsvMapping)?;
    let source: Arc<dyn StatementSource> = Arc::new(source);
    let first = {
        let (source, csv, options, progress) = (source.clone(), csv.clone(), options.clone(), progress.clone());
        let limits = (Limits { max_lines: settings.max_lines }, settings.max_file_bytes);
        tokio::task::spawn_blocking(move || pass_one(&*source, &options, csv.as_ref(), limits, progress.as_ref()))
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))??
    };
    let today = moscow_date(OffsetDateTime::now_utc());
    let claim = BeginImport {
        sha256: first.identity,
        file_sha256: first.sha256,
        format: first.format,
        file_name: options.file_name.clone(),
        sections: first.sections.clone(),
        line_count: first.lines,
        by: options.by.clone(),
    };
    let id = match service.engine().submit(WriteCommand::StatementBegin(claim.clone())).await? {
        WriteOutcome::Statement(StatementOutcome::AlreadyImported { id }) => {
            let mut summary = summary(service, id).await?;
            summary.already_imported = true;
            summary.duration_ms = elapsed_ms(started);
            return Ok(summary);
        }
        WriteOutcome::Statement(StatementOutcome::ImportStarted { id } | StatementOutcome::ImportResumed { id }) => id,
        other => return Err(unexpected(&other)),
    };
    let mut report =
        Reporter { progress, total_bytes: source.len(), max_bytes: settings.max_file_bytes, ..Reporter::default() };
    pass_two(service, source, &options, csv, &first, id, today, &mut report).await?;
    report.report(ImportPhase::Judging);
    let finish = FinishImport {
        claim: statements::import_claim(&claim),
        import_id: id,
        today,
        tolerance_days: settings.date_tolerance_days,
    };
    match service.engine().submit(WriteCommand::StatementFinish(finish)).await? {
        WriteOutcome::Statement(StatementOutcome::ImportFinished { .. } | StatementOutcome::AlreadyImported { .. }) => {
        }
        other => return Err(unexpected(&other)),
    }
    let mut summary = summary(service, id).await?;
    summary.duration_ms = elapsed_ms(started);
    Ok(summary)
}

/// The identity of an import of `file_sha256` (limited to `account`, named only when the limit leaves out
/// another account's section): each account's import of a many-account file is an import of its own, and none
/// is the whole file's, so importing one account and then the file (or another account) stores what the first
/// left out instead of answering "already imported". A limit that leaves nothing out is the whole file.
fn identity(file_sha256: &[u8; 32], account: Option<&AccountNumber>) -> [u8; 32] {
    match account {
        None => *file_sha256,
        Some(account) => {
            let mut hash = Sha256::new();
            hash.update(file_sha256);
            hash.update(account.as_str().as_bytes());
            hash.finalize().into()
        }
    }
}

fn elapsed_ms(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// An engine answer the import does not expect: a defect, reported as the engine's refusal would be.
fn unexpected(outcome: &WriteOutcome) -> ReconcileError {
    match outcome {
        WriteOutcome::Statement(StatementOutcome::NotApplicable(reason)) => {
            ReconcileError::NotApplicable { reason: reason.clone() }
        }
        other => ReconcileError::NotApplicable { reason: format!("unexpected engine outcome {other:?}; retry") },
    }
}

/// What pass 1 learned about a valid file.
struct FirstPass {
    /// The file's SHA-256.
    sha256: [u8; 32],
    /// The import's identity (see [`identity`]).
    identity: [u8; 32],
    /// Each account's booking days are in order (pass 2 may forget past days' occurrence counts).
    days_in_order: bool,
    format: StatementFormat,
    sections: Vec<SectionCounts>,
    lines: u64,
}

/// Reads the whole file once: its SHA-256, its format, every line and total checked.
fn pass_one(
    source: &dyn StatementSource,
    options: &ImportOptions,
    csv: Option<&CsvMapping>,
    (limits, max_bytes): (Limits, u64),
    progress: Option<&ProgressFn>,
) -> Result<FirstPass, ReconcileError> {
    let format = match options.format {
        FormatChoice::Fixed(format) => format,
        FormatChoice::Auto if csv.is_some() => StatementFormat::Csv,
        FormatChoice::Auto => {
            let mut head = Vec::with_capacity(4096);
            source.open()?.take(4096).read_to_end(&mut head)?;
            detect_format(&head).ok_or_else(|| {
                ReconcileError::Invalid(StatementError {
                    line: 1,
                    reason: "the format is neither 1C (1CClientBankExchange) nor camt.053; name it (csv needs a \
                             column mapping)"
                        .into(),
                })
            })?
        }
    };
    let counted = Arc::new(AtomicU64::new(0));
    let mut hasher = Hashing { inner: source.open()?, hash: Sha256::new(), read: counted.clone(), max: max_bytes };
    let total_bytes = source.len();
    let mut on_progress = |bytes_read: u64, lines_read: u64| {
        if let Some(report) = progress {
            report(&ImportProgress {
                bytes_read,
                total_bytes,
                lines_read,
                lines_stored: 0,
                matched: 0,
                phase: ImportPhase::Validating,
            });
        }
    };
    let validated = match validate(BufReader::new(&mut hasher), format, csv, &limits, &mut on_progress) {
        Ok(validated) => validated,
        Err(_) if counted.load(Ordering::Relaxed) > max_bytes => {
            return Err(ReconcileError::TooLarge { limit: max_bytes });
        }
        Err(error) => return Err(ReconcileError::Invalid(error)),
    };
    // The validator may stop at the end marker: the identity is every byte of the file.
    std::io::copy(&mut hasher, &mut std::io::sink())?;
    let sha256: [u8; 32] = hasher.hash.finalize().into();
    let in_file = validated.accounts.len();
    let sections: Vec<SectionCounts> = validated
        .accounts
        .into_iter()
        .filter(|account| options.account.as_ref().is_none_or(|wanted| *wanted == account.summary.account))
        .map(|account| SectionCounts {
            summary: account.summary,
            credit_lines: account.credit_lines,
            debit_lines: account.debit_lines,
        })
        .collect();
    if let Some(wanted) = &options.account
        && sections.is_empty()
    {
        return Err(ReconcileError::AccountNotInFile(wanted.clone()));
    }
    let lines = sections.iter().map(|section| section.credit_lines + section.debit_lines).sum();
    // `--account` on a file of that account alone is the whole file: the same import as without it (and as
    // the API's CSV upload, which always names the account).
    let limited_to = options.account.as_ref().filter(|_| sections.len() < in_file);
    Ok(FirstPass {
        sha256,
        identity: identity(&sha256, limited_to),
        format: validated.format,
        sections,
        lines,
        days_in_order: validated.days_in_order,
    })
}

/// A reader that hashes and counts the bytes it passes on, and refuses to read past the size limit (both
/// passes: the second compares the hash with the first's).
struct Hashing {
    inner: Box<dyn BufRead + Send>,
    hash: Sha256,
    read: Arc<AtomicU64>,
    max: u64,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        let total = self.read.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.max {
            return Err(std::io::Error::other(format!("the file is larger than {} bytes", self.max)));
        }
        Ok(n)
    }
}

/// Reports pass 2's progress.
#[derive(Default)]
struct Reporter {
    progress: Option<ProgressFn>,
    total_bytes: Option<u64>,
    max_bytes: u64,
    bytes: Arc<AtomicU64>,
    lines_read: u64,
    stored: u64,
    matched: u64,
}

impl Reporter {
    fn report(&self, phase: ImportPhase) {
        if let Some(report) = &self.progress {
            report(&ImportProgress {
                bytes_read: self.bytes.load(Ordering::Relaxed),
                total_bytes: self.total_bytes,
                lines_read: self.lines_read,
                lines_stored: self.stored,
                matched: self.matched,
                phase,
            });
        }
    }
}

/// Pass 2: a blocking thread reads the lines (numbering identical ones) into chunks through a bounded channel;
/// this task submits each chunk as a lines command, up to [`LINES_IN_FLIGHT`] at once. Every command is
/// idempotent (lines are keyed), so a resumed import sends them all again.
#[allow(clippy::too_many_arguments)] // one call site; the pieces are the pipeline's own state
async fn pass_two(
    service: &Reconciliation,
    source: Arc<dyn StatementSource>,
    options: &ImportOptions,
    csv: Option<CsvMapping>,
    first: &FirstPass,
    import_id: i64,
    today: time::Date,
    report: &mut Reporter,
) -> Result<(), ReconcileError> {
    let (chunks, mut receive) = tokio::sync::mpsc::channel::<Chunk>(LINES_IN_FLIGHT);
    let reading = Reading {
        format: first.format,
        account: options.account.clone(),
        sections: first
            .sections
            .iter()
            .map(|section| (section.summary.account.clone(), section.summary.clone()))
            .collect(),
        days_in_order: first.days_in_order,
        bytes: report.bytes.clone(),
        max_bytes: report.max_bytes,
    };
    let reader = tokio::task::spawn_blocking(move || read_chunks(&*source, reading, csv.as_ref(), &chunks));
    let mut in_flight = tokio::task::JoinSet::new();
    let mut failed = None;
    while let Some(chunk) = receive.recv().await {
        report.lines_read += chunk.len() as u64;
        while in_flight.len() >= LINES_IN_FLIGHT {
            collect(in_flight.join_next().await, report, &mut failed);
        }
        if failed.is_some() {
            break;
        }
        let engine = service.engine().clone();
        let tolerance_days = service.settings().date_tolerance_days;
        in_flight.spawn(async move {
            let command = LinesCommand { import_id, lines: chunk, today, tolerance_days };
            engine.submit(WriteCommand::StatementLines(command)).await
        });
    }
    drop(receive);
    while let Some(done) = in_flight.join_next().await {
        collect(Some(done), report, &mut failed);
    }
    let read = reader.await.map_err(|error| std::io::Error::other(error.to_string()))?;
    if let Some(error) = failed {
        return Err(error);
    }
    let (read, sha256) = read?;
    // The file changed between the passes: what was stored is kept (each line passed pass one's per-line checks
    // in `read_chunks` before it was sent), and the import stays `loading` for the real file to finish. Only the
    // same bytes may finish it: another file of as many lines would otherwise complete the import with lines
    // whose sections and totals the first pass never checked.
    if read != first.lines {
        return Err(changed(&format!("{} lines validated, {read} read", first.lines)));
    }
    if sha256 != first.sha256 {
        return Err(changed("its SHA-256 is not the one validated"));
    }
    Ok(())
}

/// The file read in pass 2 is not the one pass 1 validated.
fn changed(how: &str) -> ReconcileError {
    ReconcileError::Io(std::io::Error::other(format!("the file changed while it was imported ({how})")))
}

type Chunk = Vec<LineToStore>;

/// Adds one finished lines command to the progress, or keeps its error.
fn collect(
    done: Option<Result<Result<WriteOutcome, EngineError>, tokio::task::JoinError>>,
    report: &mut Reporter,
    failed: &mut Option<ReconcileError>,
) {
    let outcome = match done {
        None => return,
        Some(Ok(Ok(outcome))) => outcome,
        Some(Ok(Err(error))) => {
            failed.get_or_insert(ReconcileError::Engine(error));
            return;
        }
        Some(Err(error)) => {
            failed.get_or_insert(ReconcileError::Io(std::io::Error::other(error.to_string())));
            return;
        }
    };
    match outcome {
        WriteOutcome::Statement(StatementOutcome::LinesStored { new, matched, .. }) => {
            report.stored += new;
            report.matched += matched;
            report.report(ImportPhase::Importing);
        }
        other => {
            failed.get_or_insert(unexpected(&other));
        }
    }
}

/// What pass 2 reads and how.
struct Reading {
    format: StatementFormat,
    /// Only this account's lines.
    account: Option<AccountNumber>,
    /// The sections pass 1 validated (only `account`'s, if named), by account.
    sections: HashMap<AccountNumber, AccountSummary>,
    /// Pass 1 found each account's booking days in order: occurrence counts of past days may be forgotten.
    days_in_order: bool,
    /// Bytes read so far, for the progress.
    bytes: Arc<AtomicU64>,
    max_bytes: u64,
}

/// Streams the file's lines (only `reading.account`'s, if named) in chunks of [`MAX_LINES_PER_COMMAND`];
/// returns how many lines it read and the SHA-256 of every byte. Stops early when the receiver is gone (a
/// failed command). These are new reads of the file, which may have changed since pass 1: a line that fails a
/// check pass 1 makes line by line (a parse error, a control character, an account or a booking date outside
/// the validated sections) stops the import as a changed file before it joins a chunk, so it is never stored.
fn read_chunks(
    source: &dyn StatementSource,
    reading: Reading,
    csv: Option<&CsvMapping>,
    chunks: &tokio::sync::mpsc::Sender<Chunk>,
) -> Result<(u64, [u8; 32]), ReconcileError> {
    let mut hashing =
        Hashing { inner: source.open()?, hash: Sha256::new(), read: reading.bytes.clone(), max: reading.max_bytes };
    // Bounded memory for a file in day order (~80 bytes a distinct line otherwise); the same numbers either way.
    let mut occurrences =
        if reading.days_in_order { OccurrenceCounter::forgetting() } else { OccurrenceCounter::default() };
    let mut chunk = Vec::with_capacity(MAX_LINES_PER_COMMAND);
    let mut read = 0u64;
    let reread = |error: StatementError| changed(&error.to_string());
    for event in events(BufReader::new(&mut hashing), reading.format, csv).map_err(reread)? {
        let StatementEvent::Line(line) = event.map_err(reread)? else { continue };
        if reading.account.as_ref().is_some_and(|wanted| *wanted != line.account) {
            continue;
        }
        check_again(&line, &reading.sections)?;
        read += 1;
        let print = fingerprint(&line);
        let occurrence = occurrences.next(&line, &print).map_err(|error| changed(&error.to_string()))?;
        chunk.push(LineToStore::new(line, print, occurrence));
        if chunk.len() == MAX_LINES_PER_COMMAND {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(MAX_LINES_PER_COMMAND));
            if chunks.blocking_send(full).is_err() {
                return Ok((read, [0; 32]));
            }
        }
    }
    if !chunk.is_empty() {
        let _ = chunks.blocking_send(chunk);
    }
    // As in pass 1: the parser may stop at the end marker, and the identity is every byte of the file.
    std::io::copy(&mut hashing, &mut std::io::sink())?;
    Ok((read, hashing.hash.finalize().into()))
}

/// Pass 1's per-line checks, for a line read again in pass 2: no control character, an account with a validated
/// section, a booking date inside that section's period and its currency. A failure is a changed file.
fn check_again(line: &StatementLine, sections: &HashMap<AccountNumber, AccountSummary>) -> Result<(), ReconcileError> {
    let fail = |reason: String| changed(&format!("line {}: {reason}", line.source_line));
    refuse_control_characters(line).map_err(|error| fail(error.reason))?;
    let Some(section) = sections.get(&line.account) else {
        return Err(fail(format!("account {} has no validated section", line.account)));
    };
    if !(section.period_start..=section.period_end).contains(&line.booking_date) {
        return Err(fail(format!(
            "the line is booked on {}, outside the validated period {}..{} of account {}",
            line.booking_date, section.period_start, section.period_end, line.account
        )));
    }
    if line.amount.currency() != section.currency {
        return Err(fail(format!(
            "the line is in {}, account {} is in {}",
            line.amount.currency(),
            line.account,
            section.currency
        )));
    }
    Ok(())
}

pub(super) async fn list(service: &Reconciliation, page: ImportsPage) -> Result<Vec<ImportSummary>, ReconcileError> {
    let limit = i64::from(page.limit.clamp(1, 500));
    let rows = service.store().statement_imports(page.cursor, limit).await?;
    let (Some(first), Some(last)) = (rows.last(), rows.first()) else { return Ok(Vec::new()) };
    let accounts = service.store().statement_import_accounts(first.id, last.id).await?;
    let mut summaries = Vec::with_capacity(rows.len());
    for row in rows {
        let counts = service.store().import_discrepancy_counts(row.id).await?;
        let sections = accounts.iter().filter(|account| account.import_id == row.id).map(account_totals).collect();
        summaries.push(summary_of(row, sections, &counts));
    }
    Ok(summaries)
}

pub(super) async fn summary(service: &Reconciliation, id: i64) -> Result<ImportSummary, ReconcileError> {
    let row = service.store().statement_import(id).await?.ok_or(ReconcileError::NotFound("import"))?;
    let accounts = service.store().statement_import_accounts(id, id).await?;
    let counts = service.store().import_discrepancy_counts(id).await?;
    Ok(summary_of(row, accounts.iter().map(account_totals).collect(), &counts))
}

/// A stored import as its summary. `duration_ms` is the import's own measure, so a stored one reports 0.
fn summary_of(row: ImportRow, accounts: Vec<AccountTotals>, counts: &[(String, i64)]) -> ImportSummary {
    let count = |value: i64| u64::try_from(value).unwrap_or(0);
    ImportSummary {
        id: row.id,
        sha256: crate::hex::encode(&row.sha256),
        format: row.format,
        file_name: row.file_name,
        state: row.state,
        already_imported: false,
        accounts,
        lines_read: count(row.line_count),
        lines_new: count(row.lines_new),
        // Every line of the file is stored by this import or was by an earlier one.
        lines_already_known: count(row.line_count.saturating_sub(row.lines_new)),
        matched: count(row.matched),
        discrepancies: DiscrepancyCounts::from_rows(counts.iter().map(|(kind, n)| (kind.as_str(), *n))),
        pending: count(row.pending),
        duration_ms: 0,
    }
}

/// A stored account section with its totals as decimal strings.
fn account_totals(row: &ImportAccountRow) -> AccountTotals {
    let digits = Currency::from_code(&row.currency).map_or(2, |currency| currency.minor_digits());
    let money = |minor: Option<i64>| minor.map(|minor| format_minor(minor, digits));
    AccountTotals {
        account: row.account.clone(),
        currency: row.currency.clone(),
        period_start: row.period_start.clone(),
        period_end: row.period_end.clone(),
        opening_balance: money(row.opening),
        total_credits: money(row.credits),
        total_debits: money(row.debits),
        closing_balance: money(row.closing),
        lines: u64::try_from(row.credit_lines + row.debit_lines).unwrap_or(0),
        credit_lines: u64::try_from(row.credit_lines).unwrap_or(0),
        debit_lines: u64::try_from(row.debit_lines).unwrap_or(0),
    }
}
