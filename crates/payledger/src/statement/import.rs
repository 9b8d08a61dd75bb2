//! Importing a statement file: the source it is read from, the options, the progress it reports and the
//! summary it answers.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use payledger_core::money::{Currency, format_minor};
use payledger_core::statement::AccountNumber;
use serde::Serialize;
use utoipa::ToSchema;

use super::report::{AccountTotals, DiscrepancyCounts};
use super::{FormatChoice, ReconcileError, Reconciliation};
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
    /// The file's SHA-256, hex.
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

pub(super) async fn run(
    _service: &Reconciliation,
    _source: impl StatementSource,
    _options: ImportOptions,
    _progress: Option<ProgressFn>,
) -> Result<ImportSummary, ReconcileError> {
    Err(ReconcileError::NotApplicable { reason: "statement import is not implemented yet".into() })
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
