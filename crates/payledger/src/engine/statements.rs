//! The reconciliation decisions, without I/O: which payment a statement line is, what an unmatched line of a
//! closed day is judged, whether a late notice repeats an applied line, what applying a line does, and which
//! days the statements cover. The writers load the candidates inside the batch transaction (after lock phase
//! 0 on PostgreSQL) and write what these functions decide.

use std::collections::{HashMap, HashSet};

use payledger_core::statement::MatchKey;
use time::Date;
use uuid::Uuid;

use crate::store::AuditEntry;
use payledger_core::Inn;
use payledger_core::statement::{AccountSummary, StatementFormat, StatementLine, moscow_date};

pub use super::statement_lines::{LineToStore, LinesCommand, MAX_LINES_PER_COMMAND, line_rows};

use crate::store::batch::{
    ClaimedImport, DiscrepancyUpdate, ImportClaim, ImportSection, LockedDiscrepancy, NewDiscrepancy, NewMatch,
    PaymentCandidate, PendingLine, Plan,
};

pub use super::statement_apply::{ApplyDecision, LineState, RivalPayment, decide_apply};
use serde::Serialize;
use utoipa::ToSchema;

/// The kinds of discrepancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// A booked credit with no notice.
    MissingNotice,
    /// A credited notice the covered statements do not have.
    NoticeWithoutLine,
    /// A line with one candidate notice that it may be but that differs in amount or payer: the same payer,
    /// number and date with another amount, or the one its bank id names with another amount or payer.
    AmountMismatch,
    /// A line with several candidate notices, or one that differs from it only by its document date.
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

/// How a line was paired with a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchRule {
    /// The line's bank reference or end-to-end id is the payment's operation id.
    BankRef,
    /// Same payer INN, document number, Moscow document date and amount.
    Document,
    /// The payment was created by applying the line.
    Applied,
}

impl MatchRule {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchRule::BankRef => "bank_ref",
            MatchRule::Document => "document",
            MatchRule::Applied => "applied",
        }
    }
}

/// A payment a line may match: credited (`applied`) or recorded and waiting for the applier (`received`),
/// and not yet matched to any line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPayment {
    /// bank_payments.id.
    pub id: i64,
    /// Its operation id.
    pub operation_id: Uuid,
    /// Its match key (document date read as a Moscow date).
    pub key: MatchKey,
}

/// A credit line to match, in stored (id) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineToMatch {
    /// statement_lines.id.
    pub id: i64,
    /// The line's key; `None` without a payer INN.
    pub key: Option<MatchKey>,
    /// The line's amount in minor units (also on a line without a key: rule 1 compares it).
    pub amount: i64,
    /// Its currency code.
    pub currency: String,
    /// The bank's reference and the end-to-end id, either of which may be a payment's operation id.
    pub bank_ids: Vec<String>,
    /// The day the bank booked it.
    pub booking_date: Date,
    /// Whether an organization with the line's payer INN exists.
    pub payer_known: bool,
}

/// What becomes of a credit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineDecision {
    /// It is this payment.
    Matched {
        /// bank_payments.id.
        payment_id: i64,
        /// By which rule.
        rule: MatchRule,
    },
    /// Its day is still open: judged by a later import.
    Pending,
    /// Its day is closed and no payment is it.
    Discrepancy {
        /// The kind.
        kind: DiscrepancyKind,
        /// The candidate payments (amount_mismatch, ambiguous), ascending.
        candidates: Vec<i64>,
    },
}

/// Matches `lines` (ascending id) against the open `payments` (any order): rule 1 (bank id) first for every
/// line, then rule 2 as a multiset — the k-th identical line takes the k-th open payment with its key, in
/// ascending payment id — so two identical real payments stay two. A payment is taken at most once.
/// Unmatched lines whose booking day is before `today` are judged (see [`judge`], with `tolerance_days`); the
/// others stay pending.
pub fn match_lines(
    lines: &[LineToMatch],
    payments: &[OpenPayment],
    today: Date,
    tolerance_days: u32,
) -> Vec<LineDecision> {
    let mut sorted: Vec<&OpenPayment> = payments.iter().collect();
    sorted.sort_by_key(|payment| payment.id);
    let by_operation: HashMap<String, &OpenPayment> =
        sorted.iter().map(|payment| (payment.operation_id.to_string(), *payment)).collect();
    let mut taken: HashSet<i64> = HashSet::new();
    let mut decisions: Vec<Option<LineDecision>> = vec![None; lines.len()];
    for (index, line) in lines.iter().enumerate() {
        // A bank id naming a payment of another amount, currency or payer is not that payment's line: the next
        // bank id is tried, and a line none of whose ids agrees falls through to rule 2 and, unmatched, is judged
        // with the payments they name as candidates.
        let found = line
            .bank_ids
            .iter()
            .filter_map(|id| by_operation.get(&id.to_ascii_lowercase()).copied())
            .find(|payment| !taken.contains(&payment.id) && bank_id_agrees(line, payment));
        if let Some(payment) = found {
            taken.insert(payment.id);
            decisions[index] = Some(LineDecision::Matched { payment_id: payment.id, rule: MatchRule::BankRef });
        }
    }
    let mut by_key: HashMap<&MatchKey, Vec<i64>> = HashMap::new();
    for payment in &sorted {
        if !taken.contains(&payment.id) {
            by_key.entry(&payment.key).or_default().push(payment.id);
        }
    }
    // Each key's queue is consumed front to back: the k-th line with a key meets the k-th payment.
    let mut next: HashMap<&MatchKey, usize> = HashMap::new();
    for (index, line) in lines.iter().enumerate() {
        if decisions[index].is_some() {
            continue;
        }
        let Some(key) = &line.key else { continue };
        let Some(queue) = by_key.get(key) else { continue };
        let position = next.entry(key).or_insert(0);
        if let Some(&payment_id) = queue.get(*position) {
            *position += 1;
            taken.insert(payment_id);
            decisions[index] = Some(LineDecision::Matched { payment_id, rule: MatchRule::Document });
        }
    }
    let left: Vec<&OpenPayment> = sorted.into_iter().filter(|payment| !taken.contains(&payment.id)).collect();
    lines
        .iter()
        .zip(decisions)
        .map(|(line, decision)| {
            decision.unwrap_or_else(|| {
                if line.booking_date < today { judge(line, &left, tolerance_days) } else { LineDecision::Pending }
            })
        })
        .collect()
}

/// Whether a payment a line's bank id names may be matched by rule 1: the same amount and currency, and the
/// same payer INN when the line has one (a payment always has one).
fn bank_id_agrees(line: &LineToMatch, payment: &OpenPayment) -> bool {
    payment.key.amount == line.amount
        && payment.key.currency.code() == line.currency
        && line.key.as_ref().is_none_or(|key| key.payer_inn == payment.key.payer_inn)
}

/// The operation ids a line's bank ids name, read as rule 1 reads them: a hyphenated UUID in either case.
pub fn named_operation_ids(bank_ids: &[String]) -> Vec<Uuid> {
    bank_ids
        .iter()
        .filter_map(|id| id.parse::<Uuid>().ok().filter(|uuid| uuid.to_string() == id.to_ascii_lowercase()))
        .collect()
}

/// How an open payment that is not a line's exact key may still be that line's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rival {
    /// The same payer, number and date with another amount or currency, or named by the line's bank id.
    OtherAmount,
    /// The same payer, number, amount and currency, its document date within the tolerance of the line's.
    NearDate,
}

/// How `payment` may be the payment of a line with `key` although the keys differ, if it may: a notice's
/// document date is the bank's acceptance date for some banks, so a date a few days off is the same money.
pub fn rival(key: &MatchKey, payment: &MatchKey, tolerance_days: u32) -> Option<Rival> {
    if payment == key || payment.payer_inn != key.payer_inn || payment.document_number != key.document_number {
        return None;
    }
    let same_money = (payment.amount, payment.currency) == (key.amount, key.currency);
    if payment.document_date == key.document_date {
        return (!same_money).then_some(Rival::OtherAmount);
    }
    let apart = (payment.document_date - key.document_date).whole_days().unsigned_abs();
    (same_money && apart <= u64::from(tolerance_days)).then_some(Rival::NearDate)
}

/// The discrepancy of an unmatched credit line of a closed day, given the payments still open. Its candidates
/// are the open payments it may be: those its bank id names, and those with its payer and number that differ
/// only by amount (the same date) or only by a date within `tolerance_days`. `amount_mismatch` when the one
/// candidate differs by amount, `ambiguous` when several do or one differs by date (the notice, or an operator,
/// says which), `unknown_payer` without an INN or an organization with it, else `missing_notice`. A payment its
/// bank id names may differ in payer rather than amount: still `amount_mismatch`, the one notice it may be.
pub fn judge(line: &LineToMatch, open: &[&OpenPayment], tolerance_days: u32) -> LineDecision {
    let named_ids = named_operation_ids(&line.bank_ids);
    let mut near = false;
    let mut candidates: Vec<i64> = open
        .iter()
        .filter(|payment| {
            let named = named_ids.contains(&payment.operation_id);
            match line.key.as_ref().and_then(|key| rival(key, &payment.key, tolerance_days)) {
                Some(Rival::NearDate) => {
                    near = true;
                    true
                }
                Some(Rival::OtherAmount) => true,
                None => named,
            }
        })
        .map(|payment| payment.id)
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    let kind = match candidates.len() {
        0 if line.key.is_none() || !line.payer_known => DiscrepancyKind::UnknownPayer,
        0 => DiscrepancyKind::MissingNotice,
        1 if !near => DiscrepancyKind::AmountMismatch,
        _ => DiscrepancyKind::Ambiguous,
    };
    LineDecision::Discrepancy { kind, candidates }
}

/// A statement-sourced applied payment a late notice may repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedFromStatement {
    /// Its key.
    pub key: MatchKey,
    /// A late notice with its key names it: its own notice has come.
    pub named_by_key: bool,
    /// A late notice names it, with its key or one that may be it.
    pub named: bool,
}

/// How a late notice repeats the statement payment it names (`bank_payments.late_match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateMatch {
    /// The notice has the payment's match key.
    Key,
    /// The keys differ, but the notice may be the payment ([`rival`]).
    Rival,
}

impl LateMatch {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LateMatch::Key => "key",
            LateMatch::Rival => "rival",
        }
    }
}

/// The statement payment a new notice with `key` repeats, if any, as a position in `applied` (ascending id,
/// the batch's own payments last), and how. The statement paid the line already, so a notice that may be its
/// payment is held (recorded `duplicate`, never credited) rather than credited a second time; a notice held
/// wrongly is not lost, since its own line, when a statement brings it, finds no open payment and is applied.
/// - The first one with its key whose own notice has not come (none with `named_by_key`), even when a notice
///   that only may be it named it first: that one may have been another payment, this one is certainly it.
/// - Else, unless an unmatched line has its key (`own_line_open`: that line is its payment), the one with the
///   nearest document date, then the first, that it may be (see [`rival`]) and that no late notice names.
pub fn late_notice_of<'a>(
    key: &MatchKey,
    applied: impl Iterator<Item = &'a AppliedFromStatement> + Clone,
    own_line_open: bool,
    tolerance_days: u32,
) -> Option<(usize, LateMatch)> {
    if let Some(position) = applied.clone().position(|payment| &payment.key == key && !payment.named_by_key) {
        return Some((position, LateMatch::Key));
    }
    if own_line_open {
        return None;
    }
    applied
        .enumerate()
        .filter(|(_, payment)| !payment.named && rival(&payment.key, key, tolerance_days).is_some())
        .min_by_key(|(position, payment)| ((payment.key.document_date - key.document_date).abs(), *position))
        .map(|(position, _)| (position, LateMatch::Rival))
}

/// Whether every day of `first..=last` is closed (before `today`) and covered, for every account ever
/// imported, by the period of a complete import of that account. `coverage` maps each account to its
/// complete imports' periods.
pub fn days_covered(first: Date, last: Date, today: Date, coverage: &HashMap<String, Vec<(Date, Date)>>) -> bool {
    if last >= today || coverage.is_empty() {
        return false;
    }
    coverage.values().all(|periods| {
        let mut day = first;
        loop {
            if !periods.iter().any(|(start, end)| *start <= day && day <= *end) {
                return false;
            }
            if day >= last {
                return true;
            }
            match day.next_day() {
                Some(next) => day = next,
                None => return false,
            }
        }
    })
}

/// An operator's acceptance of an open discrepancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptCommand {
    /// The discrepancy.
    pub discrepancy_id: i64,
    /// Why it is accepted (the faces require it non-blank).
    pub note: String,
    /// Who accepts it.
    pub by: String,
}

/// The start of a statement import, after the whole file validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginImport {
    /// The import's identity: the file's SHA-256, or for an import of one account's section of a file with other
    /// accounts the SHA-256 of (the file's SHA-256 ‖ the account number), so that each account of such a file is
    /// an import of its own.
    pub sha256: [u8; 32],
    /// The file's SHA-256 (the audit names it).
    pub file_sha256: [u8; 32],
    /// Its format.
    pub format: StatementFormat,
    /// Its name.
    pub file_name: Option<String>,
    /// Each account section with its line counts.
    pub sections: Vec<SectionCounts>,
    /// Statement lines in the file.
    pub line_count: u64,
    /// Who imports it.
    pub by: Option<String>,
}

/// An account section and how many lines of each direction the file has for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionCounts {
    /// The section as the file states it.
    pub summary: AccountSummary,
    /// Credit lines.
    pub credit_lines: u64,
    /// Debit lines.
    pub debit_lines: u64,
}

/// The import row a begin command claims.
pub fn import_claim(begin: &BeginImport) -> ImportClaim {
    ImportClaim {
        sha256: begin.sha256,
        format: begin.format.as_str(),
        file_name: begin.file_name.clone(),
        line_count: i64::try_from(begin.line_count).unwrap_or(i64::MAX),
        by: begin.by.clone(),
    }
}

/// Starts an import this batch inserted (its sections and audit row), resumes one left `loading` by an
/// interrupted import, and finds a complete one already imported. A resume must bring the sections the import
/// was started with (`stored_accounts`, by import id): finishing it with fewer would mark an account's days
/// covered whose lines were never stored.
pub fn decide_begin(
    begin: &BeginImport,
    claimed: Option<&ClaimedImport>,
    stored_accounts: &HashMap<i64, Vec<String>>,
    started: &mut HashSet<i64>,
    plan: &mut Plan,
) -> StatementOutcome {
    let Some(claimed) = claimed else {
        // The store neither inserted nor found the row: a store defect, answered as "retry".
        return StatementOutcome::NotApplicable("the import could not be recorded; retry".into());
    };
    if claimed.state == "complete" {
        return StatementOutcome::AlreadyImported { id: claimed.id };
    }
    if !claimed.inserted {
        let mut accounts: Vec<&str> = begin.sections.iter().map(|section| section.summary.account.as_str()).collect();
        accounts.sort_unstable();
        let stored: Vec<&str> = stored_accounts
            .get(&claimed.id)
            .map(|stored| stored.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if accounts != stored {
            return StatementOutcome::NotApplicable(format!(
                "import {} was started with the sections of accounts [{}], this file has [{}]; it cannot be resumed \
                 with other sections",
                claimed.id,
                stored.join(", "),
                accounts.join(", ")
            ));
        }
        return StatementOutcome::ImportResumed { id: claimed.id };
    }
    if !started.insert(claimed.id) {
        return StatementOutcome::ImportResumed { id: claimed.id };
    }
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    plan.import_sections.extend(begin.sections.iter().map(|section| ImportSection {
        import_id: claimed.id,
        account: section.summary.account.as_str().to_owned(),
        currency: section.summary.currency.code(),
        period_start: section.summary.period_start,
        period_end: section.summary.period_end,
        opening: section.summary.opening_balance,
        credits: section.summary.total_credits,
        debits: section.summary.total_debits,
        closing: section.summary.closing_balance,
        credit_lines: count(section.credit_lines),
        debit_lines: count(section.debit_lines),
    }));
    plan.audit.push(AuditEntry {
        actor: begin.by.clone().unwrap_or_else(|| "cli".into()),
        action: "statement.import".into(),
        target: format!("statement_import:{}", claimed.id),
        before: None,
        after: Some(
            serde_json::json!({
                "sha256": crate::hex::encode(&begin.file_sha256),
                "identity": crate::hex::encode(&begin.sha256),
                "format": begin.format.as_str(),
                "file_name": begin.file_name,
                "lines": begin.line_count,
                "accounts": begin.sections.iter().map(|s| s.summary.account.as_str()).collect::<Vec<_>>(),
            })
            .to_string(),
        ),
        // `decide` names the request the command came with.
        origin: None,
    });
    StatementOutcome::ImportStarted { id: claimed.id }
}

/// Whether a line is reconciled against notices: a customer's payment into our account. Debits, reversals,
/// transfers between our own accounts and the bank's own orders are stored for the totals only, never matched,
/// judged or applied (an apply would credit an organization with money that is not its payment).
pub fn is_reconciled(line: &StatementLine) -> bool {
    line.direction == payledger_core::statement::Direction::Credit
        && line.nature == payledger_core::statement::LineNature::Payment
}

/// The (payer INN, document number) pairs and bank ids (as operation ids) a lines command looks payments up by.
pub fn candidate_keys(command: &LinesCommand) -> (Vec<(String, String)>, Vec<Uuid>) {
    let mut documents = Vec::new();
    let mut ids = Vec::new();
    for LineToStore { line, .. } in &command.lines {
        if !is_reconciled(line) {
            continue;
        }
        if let Some(inn) = &line.counterparty_inn {
            documents.push((inn.as_str().to_owned(), line.document_number.clone()));
        }
        ids.extend(
            [&line.bank_ref, &line.end_to_end_id].into_iter().flatten().filter_map(|id| id.parse::<Uuid>().ok()),
        );
    }
    documents.sort();
    documents.dedup();
    ids.sort();
    ids.dedup();
    (documents, ids)
}

/// Matches a lines command's new credit lines against the candidates no earlier command of the batch took,
/// and records the matches, the discrepancies of closed days and the import's counters.
pub fn decide_lines(
    command: &LinesCommand,
    stored: &[Option<i64>],
    candidates: &[PaymentCandidate],
    payers: &HashSet<String>,
    taken: &mut HashSet<i64>,
    plan: &mut Plan,
) -> StatementOutcome {
    let open = open_payments(candidates, taken);
    let mut lines = Vec::new();
    let mut known = 0u64;
    for (LineToStore { line, .. }, id) in command.lines.iter().zip(stored) {
        let Some(id) = id else {
            known += 1;
            continue;
        };
        if is_reconciled(line) {
            lines.push((
                line,
                LineToMatch {
                    id: *id,
                    key: MatchKey::of_line(line),
                    amount: line.amount.minor(),
                    currency: line.amount.currency().code().to_owned(),
                    bank_ids: [&line.bank_ref, &line.end_to_end_id].into_iter().flatten().cloned().collect(),
                    booking_date: line.booking_date,
                    payer_known: line.counterparty_inn.as_ref().is_some_and(|inn| payers.contains(inn.as_str())),
                },
            ));
        }
    }
    let to_match: Vec<LineToMatch> = lines.iter().map(|(_, line)| line.clone()).collect();
    let decisions = match_lines(&to_match, &open, command.today, command.tolerance_days);
    let (mut matched, mut pending, mut judged) = (0u64, 0u64, 0u64);
    for ((line, candidate), decision) in lines.iter().zip(decisions) {
        match decision {
            LineDecision::Matched { payment_id, rule } => {
                taken.insert(payment_id);
                plan.matched_payments.push(payment_id);
                matched += 1;
                plan.statement_matches.push(NewMatch {
                    line_id: candidate.id,
                    payment_id,
                    rule: rule.as_str(),
                    by: None,
                });
            }
            LineDecision::Pending => pending += 1,
            // An open payment with the line's payer, number and date but another amount may have its own line
            // in a later chunk of the file (or later in this batch): judged now, the report would name as the
            // line's candidate a payment another line of the same file takes. The import's finish judges it,
            // once every line of the file is stored and matched.
            LineDecision::Discrepancy {
                kind: DiscrepancyKind::AmountMismatch | DiscrepancyKind::Ambiguous, ..
            } => {}
            LineDecision::Discrepancy { kind, candidates } => {
                judged += 1;
                plan.new_discrepancies.push(NewDiscrepancy {
                    kind: kind.as_str(),
                    line_id: Some(candidate.id),
                    payment_id: None,
                    account: Some(line.account.as_str().to_owned()),
                    day: line.booking_date,
                    amount: line.amount.minor(),
                    currency: line.amount.currency().code().to_owned(),
                    details: serde_json::json!({ "candidates": candidates }).to_string(),
                });
            }
        }
    }
    let new = stored.iter().flatten().count() as u64;
    StatementOutcome::LinesStored { new, already_known: known, matched, pending, discrepancies: judged }
}

/// The candidates no earlier command of the batch took, as open payments with their keys.
pub fn open_payments(candidates: &[PaymentCandidate], taken: &HashSet<i64>) -> Vec<OpenPayment> {
    candidates
        .iter()
        .filter(|payment| !taken.contains(&payment.id))
        .filter_map(|payment| {
            let currency = payledger_core::money::Currency::from_code(&payment.currency)?;
            Some(OpenPayment {
                id: payment.id,
                operation_id: payment.operation_id,
                key: MatchKey {
                    payer_inn: Inn::parse(&payment.payer_inn).ok()?,
                    document_number: payment.document_number.clone(),
                    document_date: moscow_date(payment.document_date),
                    amount: payment.amount,
                    currency,
                },
            })
        })
        .collect()
}

/// A stored pending credit line's key, as [`MatchKey::of_line`] gives it for the line it was read from: the
/// one place a stored credit line without a key (no payer INN) is told apart.
pub fn pending_key(line: &PendingLine) -> Option<MatchKey> {
    Some(MatchKey {
        payer_inn: Inn::parse(line.payer_inn.as_deref()?).ok()?,
        document_number: line.document_number.clone(),
        document_date: line.document_date,
        amount: line.amount,
        currency: payledger_core::money::Currency::from_code(&line.currency)?,
    })
}

/// What became of a reconciliation command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementOutcome {
    /// A lines command stored and matched its lines.
    LinesStored {
        /// Lines stored.
        new: u64,
        /// Lines an earlier import had stored.
        already_known: u64,
        /// Lines matched with a payment.
        matched: u64,
        /// Credit lines of open days.
        pending: u64,
        /// Discrepancies opened.
        discrepancies: u64,
    },
    /// A new import is started (`loading`).
    ImportStarted {
        /// Its id.
        id: i64,
    },
    /// An import left `loading` by an interrupted run is resumed: every later step is idempotent.
    ImportResumed {
        /// Its id.
        id: i64,
    },
    /// The same file was imported completely before; nothing changed.
    AlreadyImported {
        /// Its id.
        id: i64,
    },
    /// The line is credited from the statement and matched to the new payment (rule `applied`).
    Applied {
        /// The payment's derived operation id.
        operation_id: Uuid,
        /// The line's discrepancy, now resolved `applied`.
        discrepancy_id: Option<i64>,
    },
    /// A payment with the line's key arrived since: the line is matched to it, nothing credited.
    MatchedNotice {
        /// bank_payments.id.
        payment_id: i64,
        /// Its operation id.
        operation_id: Uuid,
        /// The line's discrepancy, now resolved `notice`.
        discrepancy_id: Option<i64>,
    },
    /// The line was matched already; nothing changed.
    AlreadyMatched,
    /// An import is complete: its pending lines of closed days and the notices without a line are judged.
    ImportFinished {
        /// Its id.
        id: i64,
        /// Pending lines matched now.
        matched: u64,
        /// Discrepancies opened now (pending lines judged and notices without a line).
        discrepancies: u64,
    },
    /// The discrepancy is accepted.
    Accepted,
    /// No such discrepancy.
    NotFound,
    /// It does not apply in the current state, and why.
    NotApplicable(String),
}

/// Accepts an open discrepancy of any kind; any other state is refused. `locked` holds the batch's view of the
/// discrepancies, updated here so that a second accept in the same batch sees the first.
pub fn decide_accept(
    command: &AcceptCommand,
    locked: &mut HashMap<i64, LockedDiscrepancy>,
    plan: &mut Plan,
) -> StatementOutcome {
    let Some(discrepancy) = locked.get_mut(&command.discrepancy_id) else { return StatementOutcome::NotFound };
    if discrepancy.state != "open" {
        return StatementOutcome::NotApplicable(format!("the discrepancy is already {}", discrepancy.state));
    }
    discrepancy.state = "accepted".into();
    plan.discrepancy_updates.push(DiscrepancyUpdate {
        id: command.discrepancy_id,
        state: "accepted",
        resolution: "accepted",
        note: Some(command.note.clone()),
        by: Some(command.by.clone()),
    });
    plan.audit.push(AuditEntry {
        actor: command.by.clone(),
        action: "statement.accept".into(),
        target: format!("discrepancy:{}", command.discrepancy_id),
        before: Some(serde_json::json!({"kind": discrepancy.kind, "state": "open"}).to_string()),
        after: Some(
            serde_json::json!({"kind": discrepancy.kind, "state": "accepted", "note": command.note}).to_string(),
        ),
        // `decide` names the request the command came with.
        origin: None,
    });
    StatementOutcome::Accepted
}

#[cfg(test)]
#[path = "statements_tests.rs"]
mod tests;
