//! The reconciliation report and the operator's decisions on discrepancies (apply, accept).

use payledger_core::money::{Currency, format_minor};
use payledger_core::statement::AccountNumber;
use serde::Serialize;
use time::Date;
use utoipa::ToSchema;

use super::{ReconcileError, Reconciliation};
use crate::engine::batch::{WriteCommand, WriteOutcome};
pub use crate::engine::statements::DiscrepancyKind;
use crate::engine::statements::{AcceptCommand, StatementOutcome};
use crate::store::{DiscrepancyFilter, DiscrepancyRow};

/// The longest note an accept takes, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

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

impl DiscrepancyCounts {
    /// The counts from (kind's stored name, count) pairs; unknown kinds are ignored.
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = (&'a str, i64)>) -> DiscrepancyCounts {
        let mut counts = DiscrepancyCounts::default();
        for (kind, count) in rows {
            let count = u64::try_from(count).unwrap_or(0);
            match DiscrepancyKind::parse(kind) {
                Some(DiscrepancyKind::MissingNotice) => counts.missing_notice += count,
                Some(DiscrepancyKind::NoticeWithoutLine) => counts.notice_without_line += count,
                Some(DiscrepancyKind::AmountMismatch) => counts.amount_mismatch += count,
                Some(DiscrepancyKind::Ambiguous) => counts.ambiguous += count,
                Some(DiscrepancyKind::UnknownPayer) => counts.unknown_payer += count,
                None => {}
            }
        }
        counts
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

pub(super) async fn accept(
    service: &Reconciliation,
    discrepancy: i64,
    note: &str,
    by: &str,
) -> Result<DiscrepancyView, ReconcileError> {
    let note = note.trim();
    if note.is_empty() || note.chars().count() > MAX_NOTE_CHARS {
        return Err(ReconcileError::NotApplicable {
            reason: format!("a note of 1 to {MAX_NOTE_CHARS} characters is required to accept a discrepancy"),
        });
    }
    let command = AcceptCommand { discrepancy_id: discrepancy, note: note.to_owned(), by: by.to_owned() };
    match service.engine().submit(WriteCommand::StatementAccept(command)).await? {
        WriteOutcome::Statement(StatementOutcome::Accepted) => {}
        WriteOutcome::Statement(StatementOutcome::NotFound) => return Err(ReconcileError::NotFound("discrepancy")),
        WriteOutcome::Statement(StatementOutcome::NotApplicable(reason)) => {
            return Err(ReconcileError::NotApplicable { reason });
        }
        other => {
            tracing::error!(?other, "the engine answered an accept with another command's outcome");
            return Err(ReconcileError::Engine(crate::engine::EngineError::Unavailable));
        }
    }
    let row = service.store().discrepancy(discrepancy).await?.ok_or(ReconcileError::NotFound("discrepancy"))?;
    Ok(discrepancy_view(row))
}

pub(super) async fn report(
    service: &Reconciliation,
    query: &ReportQuery,
) -> Result<ReconciliationReport, ReconcileError> {
    if query.from > query.to {
        return Err(ReconcileError::NotApplicable { reason: "`from` is after `to`".into() });
    }
    let store = service.store();
    let account = query.account.as_ref().map(|account| account.as_str().to_owned());
    let limit = i64::from(query.limit.clamp(1, 500));
    let filter = DiscrepancyFilter {
        account: account.clone(),
        from: query.from,
        to: query.to,
        kind: query.kind.map(|kind| kind.as_str().to_owned()),
        state: query.state.map(|state| state.as_str().to_owned()),
        after: query.cursor,
        // One more than the page, to know whether there is a next one.
        limit: limit + 1,
    };
    let mut rows = store.discrepancies(&filter).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last().map(|row| row.id)
    } else {
        None
    };
    let by_state = store.discrepancy_counts(account.as_deref(), query.from, query.to).await?;
    let lines = store.statement_line_totals(account.as_deref(), query.from, query.to).await?;
    let coverage = store.statement_coverage(account.as_deref()).await?;
    // Notices name no account: they count over the range's Moscow days whatever the account asked.
    let moscow = payledger_core::statement::MOSCOW;
    let after_last = query.to.next_day().unwrap_or(query.to);
    let (notices, pending_notices) = store
        .notice_counts(query.from.midnight().assume_offset(moscow), after_last.midnight().assume_offset(moscow))
        .await?;
    let count = |value: i64| u64::try_from(value).unwrap_or(0);
    let state_counts = |state: DiscrepancyState| {
        DiscrepancyCounts::from_rows(
            by_state.iter().filter(|(_, s, _)| s == state.as_str()).map(|(kind, _, n)| (kind.as_str(), *n)),
        )
    };
    let counts = ReportCounts {
        statement_lines: lines.iter().map(|t| count(t.lines)).sum(),
        credit_lines: lines.iter().map(|t| count(t.credit_lines)).sum(),
        notices: count(notices),
        matched: lines.iter().map(|t| count(t.matched)).sum(),
        pending_lines: lines.iter().map(|t| count(t.pending)).sum(),
        pending_notices: count(pending_notices),
        open: state_counts(DiscrepancyState::Open),
        resolved: state_counts(DiscrepancyState::Resolved),
        accepted: state_counts(DiscrepancyState::Accepted),
    };
    let totals = lines
        .iter()
        .map(|t| {
            let digits = Currency::from_code(&t.currency).map_or(2, |currency| currency.minor_digits());
            ReportTotals {
                currency: t.currency.clone(),
                statement_credits: format_minor(t.credits, digits),
                credits_matched: format_minor(t.credits_matched, digits),
                ledger_credited: format_minor(t.ledger_credited, digits),
            }
        })
        .collect();
    Ok(ReconciliationReport {
        account,
        from: query.from.to_string(),
        to: query.to.to_string(),
        counts,
        totals,
        coverage: merge_coverage(&coverage),
        discrepancies: rows.into_iter().map(discrepancy_view).collect(),
        next_cursor,
    })
}

/// Complete imports' periods per account, overlapping and adjacent ones merged.
fn merge_coverage(periods: &[(String, String, String)]) -> Vec<AccountCoverage> {
    let mut merged: Vec<AccountCoverage> = Vec::new();
    for (account, start, end) in periods {
        let (Ok(start), Ok(end)) = (parse_day(start), parse_day(end)) else { continue };
        if merged.last().is_none_or(|last| &last.account != account) {
            merged.push(AccountCoverage { account: account.clone(), covered: Vec::new() });
        }
        let Some(current) = merged.last_mut() else { continue };
        let extends = current
            .covered
            .last()
            .and_then(|[_, last_end]| parse_day(last_end).ok())
            .is_some_and(|last_end| last_end.next_day().is_some_and(|after| start <= after));
        match current.covered.last_mut() {
            Some(last) if extends => {
                if parse_day(&last[1]).is_ok_and(|last_end| end > last_end) {
                    last[1] = end.to_string();
                }
            }
            _ => current.covered.push([start.to_string(), end.to_string()]),
        }
    }
    merged
}

fn parse_day(text: &str) -> Result<Date, time::error::Parse> {
    Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
}

/// A stored discrepancy as the faces show it.
pub(super) fn discrepancy_view(row: DiscrepancyRow) -> DiscrepancyView {
    let digits = Currency::from_code(&row.currency).map_or(2, |currency| currency.minor_digits());
    DiscrepancyView {
        id: row.id,
        kind: DiscrepancyKind::parse(&row.kind).unwrap_or(DiscrepancyKind::MissingNotice),
        state: DiscrepancyState::parse(&row.state).unwrap_or(DiscrepancyState::Open),
        day: row.day,
        account: row.account,
        amount: format_minor(row.amount, digits),
        currency: row.currency,
        line_id: row.line_id,
        payer_inn: row.payer_inn,
        payer_name: row.payer_name,
        document_number: row.document_number,
        document_date: row.document_date,
        purpose: row.purpose,
        operation_id: row.operation_id.map(|id| id.to_string()),
        details: serde_json::from_str(&row.details).unwrap_or(serde_json::Value::Null),
        note: row.note,
        resolution: row.resolution,
        resolved_by: row.resolved_by,
        resolved_at: row.resolved_at.map(crate::timefmt::rfc3339),
    }
}
