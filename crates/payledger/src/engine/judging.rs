//! Finishing an import: the pending lines of days that have closed since they were stored are matched or
//! judged, and the credited notices that the complete statements should show but do not become
//! `notice_without_line`. Pure: the writer loads the pending lines, the payments and the covered periods
//! inside the batch transaction.

use std::collections::{HashMap, HashSet};

use payledger_core::statement::moscow_date;
use time::{Date, Duration};

use super::statements::{
    DiscrepancyKind, LineDecision, LineToMatch, StatementOutcome, days_covered, match_lines, open_payments, pending_key,
};
use crate::store::batch::{
    ClaimedImport, ImportClaim, NewDiscrepancy, NewMatch, PaymentCandidate, PendingLine, Plan, SectionPeriod,
    UnlinedPayment,
};

/// The end of an import, after all its lines are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishImport {
    /// The import's claim (the same as its begin's): the import row is locked by SHA-256 in the import phase.
    pub claim: ImportClaim,
    /// The import (its begin's outcome).
    pub import_id: i64,
    /// Today in Moscow: days before it are closed.
    pub today: Date,
    /// How many days after its document date a payment's line may be booked.
    pub tolerance_days: u32,
}

/// What a finishing batch read: the pending lines of closed days with the payments and payers they may be,
/// the credited payments without a line, and every import's account sections.
#[derive(Debug, Clone, Copy)]
pub struct FinishView<'a> {
    /// Credit lines of closed days, neither matched nor judged.
    pub pending: &'a [PendingLine],
    /// The open payments those lines may be (with the batch's other lines' candidates).
    pub candidates: &'a [PaymentCandidate],
    /// The payer INNs that have an organization.
    pub payers: &'a HashSet<String>,
    /// Applied webhook payments with no line and no `notice_without_line`.
    pub unlined: &'a [UnlinedPayment],
    /// Every import's sections.
    pub periods: &'a [SectionPeriod],
}

/// What the batch's finishes already did: the closed days are judged once per batch, whatever the import.
#[derive(Debug, Default)]
pub struct FinishState {
    judged: bool,
    finished: HashSet<i64>,
}

/// Finishes an import: marks it complete and, once per batch, judges the pending lines of closed days and
/// the notices without a line. A complete import is already imported; nothing changes.
pub fn decide_finish(
    command: &FinishImport,
    claimed: Option<&ClaimedImport>,
    view: &FinishView<'_>,
    state: &mut FinishState,
    taken: &mut HashSet<i64>,
    plan: &mut Plan,
) -> StatementOutcome {
    let Some(claimed) = claimed.filter(|claimed| claimed.id == command.import_id) else {
        return StatementOutcome::NotApplicable("the import was not found by its file; retry".into());
    };
    if claimed.state == "complete" {
        return StatementOutcome::AlreadyImported { id: claimed.id };
    }
    if !state.finished.insert(claimed.id) {
        return StatementOutcome::ImportFinished { id: claimed.id, matched: 0, discrepancies: 0 };
    }
    plan.completed_imports.push(claimed.id);
    if state.judged {
        return StatementOutcome::ImportFinished { id: claimed.id, matched: 0, discrepancies: 0 };
    }
    state.judged = true;
    let (matched, judged) = judge_pending(view, command, taken, plan);
    let without_line = notices_without_line(view, command, taken, plan);
    StatementOutcome::ImportFinished { id: claimed.id, matched, discrepancies: judged + without_line }
}

/// Matches the pending lines of closed days against the payments still open, judging the rest.
fn judge_pending(
    view: &FinishView<'_>,
    command: &FinishImport,
    taken: &mut HashSet<i64>,
    plan: &mut Plan,
) -> (u64, u64) {
    let open = open_payments(view.candidates, taken);
    let lines: Vec<LineToMatch> = view
        .pending
        .iter()
        .map(|line| LineToMatch {
            id: line.id,
            key: pending_key(line),
            amount: line.amount,
            currency: line.currency.clone(),
            bank_ids: line.bank_ids.clone(),
            booking_date: line.booking_date,
            payer_known: line.payer_inn.as_ref().is_some_and(|inn| view.payers.contains(inn)),
        })
        .collect();
    let (mut matched, mut judged) = (0, 0);
    for (line, decision) in view.pending.iter().zip(match_lines(&lines, &open, command.today, command.tolerance_days)) {
        match decision {
            LineDecision::Matched { payment_id, rule } => {
                matched += 1;
                taken.insert(payment_id);
                plan.matched_payments.push(payment_id);
                plan.statement_matches.push(NewMatch { line_id: line.id, payment_id, rule: rule.as_str(), by: None });
            }
            // The query reads only lines of closed days; a pending answer would mean a clock going back.
            LineDecision::Pending => {}
            LineDecision::Discrepancy { kind, candidates } => {
                judged += 1;
                plan.new_discrepancies.push(NewDiscrepancy {
                    kind: kind.as_str(),
                    line_id: Some(line.id),
                    payment_id: None,
                    account: Some(line.account.clone()),
                    day: line.booking_date,
                    amount: line.amount,
                    currency: line.currency.clone(),
                    details: serde_json::json!({ "candidates": candidates }).to_string(),
                });
            }
        }
    }
    (matched, judged)
}

/// A credited webhook payment whose every possible booking day (its Moscow document date up to the tolerance)
/// is closed and covered by a complete import of every account ever imported, and which no line is, was
/// never booked by the bank as far as the statements tell.
fn notices_without_line(view: &FinishView<'_>, command: &FinishImport, taken: &HashSet<i64>, plan: &mut Plan) -> u64 {
    let coverage = coverage(view.periods);
    let mut found = 0;
    for payment in view.unlined.iter().filter(|payment| !taken.contains(&payment.id)) {
        let first = moscow_date(payment.document_date);
        let Some(last) = first.checked_add(Duration::days(i64::from(command.tolerance_days))) else { continue };
        if !days_covered(first, last, command.today, &coverage) {
            continue;
        }
        found += 1;
        plan.new_discrepancies.push(NewDiscrepancy {
            kind: DiscrepancyKind::NoticeWithoutLine.as_str(),
            line_id: None,
            payment_id: Some(payment.id),
            account: None,
            day: first,
            amount: payment.amount,
            currency: payment.currency.clone(),
            details: serde_json::json!({ "covered": [first.to_string(), last.to_string()] }).to_string(),
        });
    }
    found
}

/// Each account ever imported with the periods of its complete imports (none: the account is not covered).
pub fn coverage(periods: &[SectionPeriod]) -> HashMap<String, Vec<(Date, Date)>> {
    let mut coverage: HashMap<String, Vec<(Date, Date)>> = HashMap::new();
    for period in periods {
        let entry = coverage.entry(period.account.clone()).or_default();
        if period.complete {
            entry.push((period.start, period.end));
        }
    }
    coverage
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn finish(import_id: i64, today: Date) -> FinishImport {
        FinishImport {
            claim: ImportClaim { sha256: [1; 32], format: "1c", file_name: None, line_count: 0, by: None },
            import_id,
            today,
            tolerance_days: 3,
        }
    }

    fn claimed(id: i64, state: &str) -> ClaimedImport {
        ClaimedImport { id, inserted: false, state: state.into() }
    }

    fn period(account: &str, start: Date, end: Date, complete: bool) -> SectionPeriod {
        SectionPeriod { account: account.into(), start, end, complete }
    }

    fn payment(id: i64, at: time::OffsetDateTime) -> UnlinedPayment {
        UnlinedPayment { id, amount: 100, currency: "RUB".into(), document_date: at }
    }

    #[test]
    fn a_payment_is_without_a_line_only_when_every_day_of_its_tolerance_is_closed_and_covered_for_every_account() {
        let periods = [
            period("A", date!(2024 - 04 - 01), date!(2024 - 04 - 30), true),
            period("B", date!(2024 - 04 - 01), date!(2024 - 04 - 25), true),
            period("C", date!(2024 - 04 - 01), date!(2024 - 04 - 30), false),
        ];
        // 20 April (Moscow; 19 April 21:00 UTC): 20..=23 covered by A and B; C is only loading, so not covered.
        let unlined = [payment(1, datetime!(2024-04-19 21:00 UTC))];
        let payers = HashSet::new();
        let view = FinishView { pending: &[], candidates: &[], payers: &payers, unlined: &unlined, periods: &periods };
        let mut plan = Plan::default();
        let outcome = decide_finish(
            &finish(5, date!(2024 - 05 - 10)),
            Some(&claimed(5, "loading")),
            &view,
            &mut FinishState::default(),
            &mut HashSet::new(),
            &mut plan,
        );
        assert_eq!(outcome, StatementOutcome::ImportFinished { id: 5, matched: 0, discrepancies: 0 });
        assert_eq!(plan.completed_imports, vec![5]);

        let covered =
            [periods[0].clone(), periods[1].clone(), period("C", date!(2024 - 04 - 20), date!(2024 - 04 - 23), true)];
        let view = FinishView { periods: &covered, ..view };
        let mut plan = Plan::default();
        let mut state = FinishState::default();
        let outcome = decide_finish(
            &finish(5, date!(2024 - 05 - 10)),
            Some(&claimed(5, "loading")),
            &view,
            &mut state,
            &mut HashSet::new(),
            &mut plan,
        );
        assert_eq!(outcome, StatementOutcome::ImportFinished { id: 5, matched: 0, discrepancies: 1 });
        let [found] = plan.new_discrepancies.as_slice() else { panic!("{plan:?}") };
        assert_eq!((found.kind, found.payment_id, found.day), ("notice_without_line", Some(1), date!(2024 - 04 - 20)));
        // A second finish in the same batch completes its import but judges nothing twice.
        let outcome = decide_finish(
            &finish(6, date!(2024 - 05 - 10)),
            Some(&claimed(6, "loading")),
            &view,
            &mut state,
            &mut HashSet::new(),
            &mut plan,
        );
        assert_eq!(outcome, StatementOutcome::ImportFinished { id: 6, matched: 0, discrepancies: 0 });
        assert_eq!((plan.new_discrepancies.len(), plan.completed_imports.clone()), (1, vec![5, 6]));

        // Today inside the tolerance: not yet judged. A payment a line took in this batch: never.
        let mut plan = Plan::default();
        decide_finish(
            &finish(5, date!(2024 - 04 - 23)),
            Some(&claimed(5, "loading")),
            &view,
            &mut FinishState::default(),
            &mut HashSet::new(),
            &mut plan,
        );
        assert!(plan.new_discrepancies.is_empty());
        let mut plan = Plan::default();
        decide_finish(
            &finish(5, date!(2024 - 05 - 10)),
            Some(&claimed(5, "loading")),
            &view,
            &mut FinishState::default(),
            &mut HashSet::from([1]),
            &mut plan,
        );
        assert!(plan.new_discrepancies.is_empty());
    }

    #[test]
    fn a_complete_import_is_already_imported_and_a_pending_line_of_a_closed_day_is_judged() {
        let pending = [PendingLine {
            id: 9,
            account: "A".into(),
            amount: 500,
            currency: "RUB".into(),
            booking_date: date!(2024 - 04 - 29),
            document_number: "7".into(),
            document_date: date!(2024 - 04 - 29),
            payer_inn: Some("7707083893".into()),
            bank_ids: Vec::new(),
        }];
        let payers = HashSet::from(["7707083893".to_owned()]);
        let view = FinishView { pending: &pending, candidates: &[], payers: &payers, unlined: &[], periods: &[] };
        let mut plan = Plan::default();
        let today = date!(2024 - 04 - 30);
        let done = decide_finish(
            &finish(5, today),
            Some(&claimed(5, "complete")),
            &view,
            &mut FinishState::default(),
            &mut HashSet::new(),
            &mut plan,
        );
        assert_eq!(done, StatementOutcome::AlreadyImported { id: 5 });
        assert!(plan.completed_imports.is_empty() && plan.new_discrepancies.is_empty());
        let wrong = decide_finish(
            &finish(5, today),
            Some(&claimed(4, "loading")),
            &view,
            &mut FinishState::default(),
            &mut HashSet::new(),
            &mut plan,
        );
        assert!(matches!(wrong, StatementOutcome::NotApplicable(_)), "{wrong:?}");
        let outcome = decide_finish(
            &finish(5, today),
            Some(&claimed(5, "loading")),
            &view,
            &mut FinishState::default(),
            &mut HashSet::new(),
            &mut plan,
        );
        assert_eq!(outcome, StatementOutcome::ImportFinished { id: 5, matched: 0, discrepancies: 1 });
        assert_eq!((plan.new_discrepancies[0].kind, plan.new_discrepancies[0].line_id), ("missing_notice", Some(9)));
    }
}
