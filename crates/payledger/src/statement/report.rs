//! The reconciliation report and the operator's decisions on discrepancies (apply, accept).

use payledger_core::statement::AccountNumber;
use serde::Serialize;
use time::Date;
use utoipa::ToSchema;

use super::{ReconcileError, Reconciliation};

/// One account section of an import, with the bank's stated totals as decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccountTotals {
    /// The account number.
    pub account: String,
    /// The currency code.
    pub currency: String,
    /// The first day covered (`YYYY-MM-DD`).
    pub period_start: String,
    /// The last day covered.
    pub period_end: String,
    /// The stated opening balance, if any.
    pub opening_balance: Option<String>,
    /// The stated sum of credits, if any.
    pub total_credits: Option<String>,
    /// The stated sum of debits, if any.
    pub total_debits: Option<String>,
    /// The stated closing balance, if any.
    pub closing_balance: Option<String>,
    /// Lines of this account in the file.
    pub lines: u64,
    /// Of which credits.
    pub credit_lines: u64,
    /// Of which debits.
    pub debit_lines: u64,
}

/// Discrepancy counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DiscrepancyCounts {
    /// A booked credit with no notice.
    pub missing_notice: u64,
    /// A credited notice the covered statements do not have.
    pub notice_without_line: u64,
    /// A line whose notice has another amount.
    pub amount_mismatch: u64,
    /// A line with several candidate notices.
    pub ambiguous: u64,
    /// A line whose payer has no INN or no organization.
    pub unknown_payer: u64,
}

/// The kinds of discrepancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// A booked credit with no notice.
    MissingNotice,
    /// A credited notice the covered statements do not have.
    NoticeWithoutLine,
    /// A line whose only candidate notice has another amount.
    AmountMismatch,
    /// A line with several candidate notices.
    Ambiguous,
    /// A line whose payer has no INN or no organization.
    UnknownPayer,
}

impl DiscrepancyKind {
    /// Every kind, in report order.
    pub const ALL: [DiscrepancyKind; 5] = [
        DiscrepancyKind::MissingNotice,
        DiscrepancyKind::NoticeWithoutLine,
        DiscrepancyKind::AmountMismatch,
        DiscrepancyKind::Ambiguous,
        DiscrepancyKind::UnknownPayer,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscrepancyKind::MissingNotice => "missing_notice",
            DiscrepancyKind::NoticeWithoutLine => "notice_without_line",
            DiscrepancyKind::AmountMismatch => "amount_mismatch",
            DiscrepancyKind::Ambiguous => "ambiguous",
            DiscrepancyKind::UnknownPayer => "unknown_payer",
        }
    }

    /// The kind with this name.
    pub fn parse(text: &str) -> Option<DiscrepancyKind> {
        DiscrepancyKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// Where a discrepancy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyState {
    /// Waiting for an operator (or a notice).
    Open,
    /// Resolved by an apply, a notice or a later match.
    Resolved,
    /// Accepted by an operator with a note.
    Accepted,
}

impl DiscrepancyState {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscrepancyState::Open => "open",
            DiscrepancyState::Resolved => "resolved",
            DiscrepancyState::Accepted => "accepted",
        }
    }

    /// The state with this name.
    pub fn parse(text: &str) -> Option<DiscrepancyState> {
        [DiscrepancyState::Open, DiscrepancyState::Resolved, DiscrepancyState::Accepted]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// One discrepancy, with what it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DiscrepancyView {
    /// Its id.
    pub id: i64,
    /// Its kind.
    pub kind: DiscrepancyKind,
    /// Its state.
    pub state: DiscrepancyState,
    /// The business day judged (`YYYY-MM-DD`).
    pub day: String,
    /// The account, if known.
    pub account: Option<String>,
    /// The amount, as a decimal string.
    pub amount: String,
    /// The currency code.
    pub currency: String,
    /// The statement line, if the discrepancy is about one.
    pub line_id: Option<i64>,
    /// The line's payer INN.
    pub payer_inn: Option<String>,
    /// The line's payer name.
    pub payer_name: Option<String>,
    /// The line's (or notice's) document number.
    pub document_number: Option<String>,
    /// The line's (or notice's) document date.
    pub document_date: Option<String>,
    /// The line's purpose.
    pub purpose: Option<String>,
    /// The notice's operation id, if the discrepancy is about one.
    pub operation_id: Option<String>,
    /// The candidate notices (amount_mismatch, ambiguous): operation ids and amounts.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The operator's note (accepted).
    pub note: Option<String>,
    /// How it was resolved: `applied`, `notice`, `matched` or `accepted`.
    pub resolution: Option<String>,
    /// Who resolved or accepted it.
    pub resolved_by: Option<String>,
    /// When (RFC 3339).
    pub resolved_at: Option<String>,
}

/// What applying a line did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// The payer was credited from the statement.
    Applied,
    /// A notice that arrived since matched the line; nothing was credited.
    Matched,
    /// The line was already matched; nothing changed.
    AlreadyMatched,
}

/// The result of applying one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApplyResult {
    /// The line.
    pub line_id: i64,
    /// What happened.
    pub outcome: ApplyOutcome,
    /// The operation id of the payment the line is matched to.
    pub operation_id: Option<String>,
    /// The discrepancy, after the change.
    pub discrepancy: Option<DiscrepancyView>,
}

/// The result of applying every open line of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApplyAllSummary {
    /// The import.
    pub import_id: i64,
    /// Lines credited from the statement.
    pub applied: u64,
    /// Lines matched to a notice that arrived since.
    pub matched: u64,
    /// Lines someone else matched meanwhile.
    pub already_matched: u64,
    /// Lines that could not be applied (an unknown payer without an INN, say).
    pub not_applicable: u64,
}

/// What a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// One account, or all.
    pub account: Option<AccountNumber>,
    /// The first day (Moscow).
    pub from: Date,
    /// The last day (Moscow), inclusive.
    pub to: Date,
    /// Only discrepancies of this kind.
    pub kind: Option<DiscrepancyKind>,
    /// Only discrepancies in this state.
    pub state: Option<DiscrepancyState>,
    /// Only discrepancies with a larger id (the last id of the previous page).
    pub cursor: Option<i64>,
    /// At most this many discrepancies (1..=500).
    pub limit: u32,
}

/// Counts of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReportCounts {
    /// Statement lines booked in the range.
    pub statement_lines: u64,
    /// Of which credits.
    pub credit_lines: u64,
    /// Notices with a document date in the range.
    pub notices: u64,
    /// Credit lines matched with a payment.
    pub matched: u64,
    /// Credit lines of open days.
    pub pending_lines: u64,
    /// Credited notices not yet matched and not yet judged.
    pub pending_notices: u64,
    /// Open discrepancies by kind.
    pub open: DiscrepancyCounts,
    /// Resolved discrepancies by kind.
    pub resolved: DiscrepancyCounts,
    /// Accepted discrepancies by kind.
    pub accepted: DiscrepancyCounts,
}

/// Money totals of a report, as decimal strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReportTotals {
    /// The currency code.
    pub currency: String,
    /// The sum of the statement's credit lines.
    pub statement_credits: String,
    /// The sum of matched credit lines.
    pub credits_matched: String,
    /// What the ledger credited for the matched lines' payments (equals `credits_matched`).
    pub ledger_credited: String,
}

/// Which days of an account the complete imports cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccountCoverage {
    /// The account.
    pub account: String,
    /// Covered periods, `[start, end]` pairs of `YYYY-MM-DD`, merged and ascending.
    pub covered: Vec<[String; 2]>,
}

/// The reconciliation of an account (or all) over a range of days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReconciliationReport {
    /// The account, or none for all.
    pub account: Option<String>,
    /// The first day.
    pub from: String,
    /// The last day.
    pub to: String,
    /// The counts.
    pub counts: ReportCounts,
    /// The totals, per currency.
    pub totals: Vec<ReportTotals>,
    /// Coverage per account.
    pub coverage: Vec<AccountCoverage>,
    /// The discrepancies of this page.
    pub discrepancies: Vec<DiscrepancyView>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<i64>,
}

fn not_yet() -> ReconcileError {
    ReconcileError::NotApplicable { reason: "reconciliation is not implemented yet".into() }
}

pub(super) async fn apply_line(
    _service: &Reconciliation,
    _line: i64,
    _by: &str,
) -> Result<ApplyResult, ReconcileError> {
    Err(not_yet())
}

pub(super) async fn apply_all(
    _service: &Reconciliation,
    _import: i64,
    _by: &str,
) -> Result<ApplyAllSummary, ReconcileError> {
    Err(not_yet())
}

pub(super) async fn apply_discrepancy(
    _service: &Reconciliation,
    _discrepancy: i64,
    _by: &str,
) -> Result<ApplyResult, ReconcileError> {
    Err(not_yet())
}

pub(super) async fn accept(
    _service: &Reconciliation,
    _discrepancy: i64,
    _note: &str,
    _by: &str,
) -> Result<DiscrepancyView, ReconcileError> {
    Err(not_yet())
}

pub(super) async fn report(
    _service: &Reconciliation,
    _query: &ReportQuery,
) -> Result<ReconciliationReport, ReconcileError> {
    Err(not_yet())
}
