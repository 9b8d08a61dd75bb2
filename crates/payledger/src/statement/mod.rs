//! The reconciliation service: imports bank statements, pairs their lines with bank notices, applies what the
//! webhook missed and accepts what an accountant explains. Knows nothing of HTTP; every write goes through
//! the ledger engine.

mod apply;
pub mod generate;
pub mod import;
pub mod report;

use std::sync::Arc;

use payledger_core::statement::{AccountNumber, StatementError, StatementFormat};

use crate::engine::{EngineError, LedgerEngine};
use crate::store::{Store, StoreError};

pub use import::{ImportOptions, ImportPhase, ImportProgress, ImportSummary, ImportsPage, ProgressFn, StatementSource};
pub use report::{
    AccountCoverage, AccountTotals, ApplyAllSummary, ApplyOutcome, ApplyResult, DiscrepancyCounts, DiscrepancyKind,
    DiscrepancyState, DiscrepancyView, ReconciliationReport, ReportCounts, ReportQuery, ReportTotals,
};

/// The limits and rules of reconciliation.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// How many days after a payment's document date its line may be booked: a notice is judged
    /// `notice_without_line` only once every day of `date..=date + tolerance` is closed and covered.
    pub date_tolerance_days: u32,
    /// The largest file `import` reads (the API uses its own, smaller, body limit before this).
    pub max_file_bytes: u64,
    /// The most lines one file may have.
    pub max_lines: u64,
}

impl Default for ReconcileSettings {
    fn default() -> ReconcileSettings {
        ReconcileSettings { date_tolerance_days: 3, max_file_bytes: 512 * 1024 * 1024, max_lines: 5_000_000 }
    }
}

/// Which format a file is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChoice {
    /// Detected from the file's first bytes.
    Auto,
    /// This one, whatever the bytes look like.
    Fixed(StatementFormat),
}

/// Why a reconciliation request got no outcome.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The file is not a valid statement: the line and the reason. Nothing was stored.
    #[error("{0}")]
    Invalid(StatementError),
    /// The CSV column mapping is not valid.
    #[error("csv mapping: {0}")]
    CsvMapping(String),
    /// `--account` names an account the file has no section for.
    #[error("the file has no section for account {0}")]
    AccountNotInFile(AccountNumber),
    /// The file is larger than the limit (bytes).
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The import, line or discrepancy does not exist (which one is named).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request does not apply in the current state (a resolved discrepancy, a debit line, …).
    #[error("{reason}")]
    NotApplicable {
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// The ledger engine gave no outcome.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The database failed a read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file could not be read.
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
}

/// The reconciliation service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    engine: LedgerEngine,
    store: Store,
    settings: Arc<ReconcileSettings>,
}

impl Reconciliation {
    /// A service that writes through `engine` and reads `store`.
    pub fn new(engine: LedgerEngine, store: Store, settings: ReconcileSettings) -> Reconciliation {
        Reconciliation { engine, store, settings: Arc::new(settings) }
    }

    /// The ledger engine it writes through.
    pub fn engine(&self) -> &LedgerEngine {
        &self.engine
    }

    /// The database it reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &ReconcileSettings {
        &self.settings
    }

    /// Imports a statement: validates the whole file first (nothing is stored on error), then stores its
    /// lines, matches them with notices and judges the closed days. Importing the same bytes again changes
    /// nothing and answers `already_imported`; an import interrupted midway is resumed.
    pub async fn import(
        &self,
        source: impl StatementSource,
        options: ImportOptions,
        progress: Option<ProgressFn>,
    ) -> Result<ImportSummary, ReconcileError> {
        import::run(self, source, options, progress).await
    }

    /// Imports, newest first, after `page.cursor` (an import id).
    pub async fn imports(&self, page: ImportsPage) -> Result<Vec<ImportSummary>, ReconcileError> {
        import::list(self, page).await
    }

    /// One import's summary.
    pub async fn import_summary(&self, id: i64) -> Result<ImportSummary, ReconcileError> {
        import::summary(self, id).await
    }

    /// Applies one credit line with an open `missing_notice` or `unknown_payer` discrepancy: matches it to a
    /// notice that arrived since, or credits the payer as a webhook notice would.
    pub async fn apply_line(&self, line_id: i64, by: &str) -> Result<ApplyResult, ReconcileError> {
        apply::apply_line(self, line_id, by).await
    }

    /// Applies every open `missing_notice`/`unknown_payer` discrepancy of an import.
    pub async fn apply_all(&self, import_id: i64, by: &str) -> Result<ApplyAllSummary, ReconcileError> {
        apply::apply_all(self, import_id, by).await
    }

    /// Applies the line of a discrepancy (the API's `discrepancies/{id}/apply/`).
    pub async fn apply_discrepancy(&self, discrepancy_id: i64, by: &str) -> Result<ApplyResult, ReconcileError> {
        apply::apply_discrepancy(self, discrepancy_id, by).await
    }

    /// Accepts an open discrepancy of any kind with an explanation.
    pub async fn accept(&self, discrepancy_id: i64, note: &str, by: &str) -> Result<DiscrepancyView, ReconcileError> {
        report::accept(self, discrepancy_id, note, by).await
    }

    /// The reconciliation of an account (or all) over a range of days.
    pub async fn report(&self, query: &ReportQuery) -> Result<ReconciliationReport, ReconcileError> {
        report::report(self, query).await
    }
}
