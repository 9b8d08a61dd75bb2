//! Importing a statement file: the source it is read from, the options, the progress it reports and the
//! summary it answers.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use payledger_core::statement::AccountNumber;
use serde::Serialize;
use utoipa::ToSchema;

use super::report::{AccountTotals, DiscrepancyCounts};
use super::{FormatChoice, ReconcileError, Reconciliation};

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

pub(super) async fn list(_service: &Reconciliation, _page: ImportsPage) -> Result<Vec<ImportSummary>, ReconcileError> {
    Err(ReconcileError::NotApplicable { reason: "statement import is not implemented yet".into() })
}

pub(super) async fn summary(_service: &Reconciliation, _id: i64) -> Result<ImportSummary, ReconcileError> {
    Err(ReconcileError::NotFound("import"))
}
