//! `decide()` over batches that mix notices, statement lines, applies and accepts: each sees what the others of
//! its batch claimed, whatever their order.

use std::collections::{HashMap, HashSet};

use payledger_core::statement::{AccountNumber, Direction, LineNature, StatementLine};
use payledger_core::{AccountBalance, AccountId, BalanceSheet, BankNotice, Currency, Inn, Money, OperationId};
use time::macros::{date, datetime};
use uuid::Uuid;

use super::tests::no_balances;
use super::{AccountMap, Claims, Submitted, WriteCommand, WriteOutcome, decide, notice_claims};
use crate::engine::reconcile::ApplyCommand;
use crate::engine::statements::{AcceptCommand, LineToStore, LinesCommand, StatementOutcome};
use crate::store::batch::{ApplyTarget, LockedDiscrepancy, NoticeCounterpart, PaymentCandidate, Plan};

const INN: &str = "7707083893";
const ACCOUNT: &str = "40702810900000000001";
const ORGANIZATION: AccountId = AccountId(2);

fn inn() -> Inn {
    Inn::parse(INN).unwrap_or_else(|_| panic!("test inn"))
}

/// The notice with the twins' key (payer, "P-1", 28 April in Moscow, 100 kopecks).
fn notice(id: u128) -> BankNotice {
    BankNotice {
        operation_id: OperationId(Uuid::from_u128(id)),
        amount: Money::from_minor(100, Currency::RUB),
        payer_inn: inn(),
        document_number: "P-1".into(),
        document_date: datetime!(2024-04-27 21:00 UTC),
    }
}

fn intake(id: u128) -> WriteCommand {
    WriteCommand::IntakeNotice { notice: notice(id), apply: true, raw: bytes::Bytes::new(), tolerance_days: 3 }
}

fn apply(line_id: i64) -> WriteCommand {
    WriteCommand::StatementApply(ApplyCommand { line_id, by: "operator".into(), tolerance_days: 3 })
}

/// The bank payment row a notice has (inserted by its batch, or stored before), as a candidate.
fn candidate(id: i64, operation: u128) -> PaymentCandidate {
    PaymentCandidate {
        id,
        operation_id: Uuid::from_u128(operation),
        amount: 100,
        currency: "RUB".into(),
        payer_inn: INN.into(),
        document_number: "P-1".into(),
        document_date: datetime!(2024-04-27 21:00 UTC),
    }
}

/// An unmatched twin line with an open missing_notice discrepancy (id 10 × line).
fn target(line_id: i64) -> ApplyTarget {
    ApplyTarget {
        account: ACCOUNT.into(),
        fingerprint: [line_id as u8; 32],
        occurrence: 1,
        credit: true,
        amount: 100,
        currency: "RUB".into(),
        payer_inn: Some(INN.into()),
        document_number: "P-1".into(),
        document_date: date!(2024 - 04 - 28),
        matched: false,
        discrepancy: Some((10 * line_id, "missing_notice".into(), "open".into())),
        bank_ids: Vec::new(),
    }
}

fn open_line(line_id: i64) -> NoticeCounterpart {
    NoticeCounterpart::OpenLine {
        id: line_id,
        amount: 100,
        currency: "RUB".into(),
        payer_inn: INN.into(),
        document_number: "P-1".into(),
        document_date: date!(2024 - 04 - 28),
        open_discrepancy: Some(10 * line_id),
    }
}

/// S1: the payment line 1 was applied as (id 500), with no late notice yet.
fn applied_line_one() -> NoticeCounterpart {
    NoticeCounterpart::StatementPayment {
        id: 500,
        operation_id: Uuid::from_u128(500),
        amount: 100,
        currency: "RUB".into(),
        payer_inn: INN.into(),
        document_number: "P-1".into(),
        document_date: datetime!(2024-04-27 21:00 UTC),
        named_by_key: false,
        named: false,
    }
}

/// A statement line with the twins' key, booked on a closed day.
fn statement_line() -> StatementLine {
    StatementLine {
        account: AccountNumber::parse(ACCOUNT).unwrap_or_else(|_| panic!("test account")),
        direction: Direction::Credit,
        amount: Money::from_minor(100, Currency::RUB),
        booking_date: date!(2024 - 04 - 28),
        document_number: "P-1".into(),
        document_date: date!(2024 - 04 - 28),
        counterparty_inn: Some(inn()),
        counterparty_name: None,
        counterparty_account: None,
        counterparty_bik: None,
        bank_ref: None,
        end_to_end_id: None,
        purpose: None,
        nature: LineNature::Payment,
        source_line: 1,
        raw: Default::default(),
    }
}

/// Decides `commands`; the notice ids the batch inserts are the new ones. The organization starts at `balance`.
fn run(commands: &[WriteCommand], claims: Claims, balance: i64) -> (Plan, Vec<WriteOutcome>) {
    let claim_rows = notice_claims(commands);
    let claims = Claims { inserted: claim_rows.iter().map(|c| c.notice.operation_id).collect(), ..claims };
    let organizations = HashMap::from([(inn(), ORGANIZATION)]);
    let mut sheet = BalanceSheet::new();
    sheet.insert(AccountId(1), AccountBalance { balance: 0, held: 0, allow_negative: true });
    sheet.insert(ORGANIZATION, AccountBalance { balance, held: 0, allow_negative: false });
    let accounts = AccountMap { organizations: &organizations, bank_inflow: AccountId(1) };
    let (users, services) = (HashMap::new(), HashMap::new());
    let mut balances = no_balances(&users, &services);
    decide(
        Submitted::without_origins(commands),
        &claims,
        &claim_rows,
        &accounts,
        &mut balances,
        &mut Default::default(),
        &mut sheet,
    )
}

fn applies_to(lines: &[i64]) -> HashMap<i64, ApplyTarget> {
    lines.iter().map(|id| (*id, target(*id))).collect()
}

#[test]
fn a_late_notice_and_an_apply_of_the_twin_line_in_one_batch_credit_the_twin_in_either_order() {
    // L1 was applied as S1; L2 is open. The notice N (id 7, payment row 700) repeats S1.
    for commands in [vec![intake(7), apply(2)], vec![apply(2), intake(7)]] {
        let claims = Claims {
            counterparts: vec![applied_line_one(), open_line(2)],
            apply_targets: applies_to(&[2]),
            apply_candidates: vec![candidate(700, 7)],
            ..Claims::default()
        };
        let (plan, outcomes) = run(&commands, claims, 0);
        let notice_at = usize::from(matches!(commands[0], WriteCommand::StatementApply(_)));
        assert_eq!(outcomes[notice_at], WriteOutcome::NoticeDuplicate, "{commands:?}");
        assert!(
            matches!(outcomes[1 - notice_at], WriteOutcome::Statement(StatementOutcome::Applied { .. })),
            "L2 is credited from the statement as S2, not matched to the late notice: {outcomes:?}"
        );
        assert_eq!(plan.late_notices.len(), 1);
        assert_eq!(plan.late_notices[0].duplicate_of, Uuid::from_u128(500));
        assert!(plan.statement_matches.is_empty(), "nothing matches the late notice's payment");
        assert_eq!(plan.statement_payments.len(), 1);
        assert_eq!(plan.transactions.len(), 1, "only S2 moves money");
    }
}

#[test]
fn a_notice_takes_the_first_open_twin_and_an_apply_of_the_second_credits_it() {
    let claims = Claims {
        counterparts: vec![open_line(1), open_line(2)],
        apply_targets: applies_to(&[2]),
        apply_candidates: vec![candidate(700, 7)],
        ..Claims::default()
    };
    let (plan, outcomes) = run(&[intake(7), apply(2)], claims, 0);
    assert_eq!(outcomes[0], WriteOutcome::NoticeApplied);
    assert!(matches!(outcomes[1], WriteOutcome::Statement(StatementOutcome::Applied { .. })), "{outcomes:?}");
    let taken: Vec<i64> = plan.matches_by_operation.iter().map(|m| m.line_id).collect();
    assert_eq!(taken, vec![1, 2], "N takes L1, L2 is applied");
    assert!(plan.statement_matches.is_empty());
    assert_eq!(plan.transactions.len(), 2);
}

#[test]
fn a_notice_whose_credit_fails_is_matched_by_no_line_or_apply_of_its_batch() {
    // The organization is full: the notice's credit overflows.
    let claims = Claims {
        apply_targets: applies_to(&[2]),
        apply_candidates: vec![candidate(700, 7)],
        payment_candidates: vec![candidate(700, 7)],
        line_payers: HashSet::from([INN.to_owned()]),
        stored_lines: HashMap::from([(2, vec![Some(3)])]),
        ..Claims::default()
    };
    let fingerprint = [3u8; 32];
    let lines = WriteCommand::StatementLines(LinesCommand {
        import_id: 1,
        lines: vec![LineToStore::new(statement_line(), fingerprint, 1)],
        today: date!(2024 - 05 - 01),
        tolerance_days: 3,
    });
    let (plan, outcomes) = run(&[apply(2), intake(7), lines], claims, i64::MAX);
    assert!(matches!(outcomes[1], WriteOutcome::NoticeFailed { .. }), "{outcomes:?}");
    assert!(!matches!(outcomes[0], WriteOutcome::Statement(StatementOutcome::MatchedNotice { .. })), "{outcomes:?}");
    assert!(plan.statement_matches.is_empty(), "no line takes the failed notice's payment");
    assert_eq!(plan.new_discrepancies.len(), 1, "the new line is judged missing");
}

#[test]
fn two_applies_of_twin_lines_with_one_open_payment_match_it_once_and_credit_the_other() {
    let claims =
        Claims { apply_targets: applies_to(&[1, 2]), apply_candidates: vec![candidate(700, 7)], ..Claims::default() };
    let applies = [apply(1), apply(2)];
    let payers = super::super::reconcile::credited_payers(
        applies.iter().filter_map(|c| match c {
            WriteCommand::StatementApply(apply) => Some(apply),
            _ => None,
        }),
        &claims,
    );
    assert!(payers.contains(&inn()), "the batch locks the payer a twin's apply may credit");
    let (plan, outcomes) = run(&applies, claims, 0);
    assert!(
        matches!(outcomes[0], WriteOutcome::Statement(StatementOutcome::MatchedNotice { payment_id: 700, .. })),
        "{outcomes:?}"
    );
    assert!(matches!(outcomes[1], WriteOutcome::Statement(StatementOutcome::Applied { .. })), "{outcomes:?}");
    assert_eq!(plan.transactions.len(), 1);
    // The audit rows name the payment each apply matched or created.
    assert!(plan.audit[0].after.as_deref().is_some_and(|after| after.contains(&Uuid::from_u128(7).to_string())));
}

#[test]
fn an_accept_and_an_apply_of_one_discrepancy_in_one_batch_do_only_the_first() {
    let accept =
        || WriteCommand::StatementAccept(AcceptCommand { discrepancy_id: 10, note: "ok".into(), by: "op".into() });
    let locked = || HashMap::from([(10, LockedDiscrepancy { kind: "missing_notice".into(), state: "open".into() })]);
    let claims = || Claims { apply_targets: applies_to(&[1]), discrepancies: locked(), ..Claims::default() };
    let (plan, outcomes) = run(&[accept(), apply(1)], claims(), 0);
    assert_eq!(outcomes[0], WriteOutcome::Statement(StatementOutcome::Accepted));
    assert!(matches!(outcomes[1], WriteOutcome::Statement(StatementOutcome::NotApplicable(_))), "{outcomes:?}");
    assert!(plan.transactions.is_empty(), "an accepted discrepancy is not applied");
    assert_eq!(plan.discrepancy_updates.len(), 1);

    let (plan, outcomes) = run(&[apply(1), accept()], claims(), 0);
    assert!(matches!(outcomes[0], WriteOutcome::Statement(StatementOutcome::Applied { .. })), "{outcomes:?}");
    assert!(matches!(outcomes[1], WriteOutcome::Statement(StatementOutcome::NotApplicable(_))), "{outcomes:?}");
    assert_eq!(plan.discrepancy_updates.len(), 1, "an applied discrepancy is not accepted");
    assert_eq!(plan.discrepancy_updates[0].resolution, "applied");
}

#[test]
fn a_finish_leaves_the_pending_line_a_notice_of_its_batch_took() {
    use crate::engine::judging::FinishImport;
    use crate::store::batch::{ClaimedImport, ImportClaim, PendingLine};
    let claim = ImportClaim { sha256: [9; 32], format: "1c", file_name: None, line_count: 1, by: None };
    let finish = WriteCommand::StatementFinish(FinishImport {
        claim: claim.clone(),
        import_id: 4,
        today: date!(2024 - 05 - 01),
        tolerance_days: 3,
    });
    let pending = PendingLine {
        id: 1,
        account: ACCOUNT.into(),
        amount: 100,
        currency: "RUB".into(),
        booking_date: date!(2024 - 04 - 28),
        document_number: "P-1".into(),
        document_date: date!(2024 - 04 - 28),
        payer_inn: Some(INN.into()),
        bank_ids: Vec::new(),
    };
    let claims = || Claims {
        counterparts: vec![open_line(1)],
        pending_lines: vec![pending.clone()],
        payment_candidates: vec![candidate(700, 7)],
        line_payers: HashSet::from([INN.to_owned()]),
        imports: HashMap::from([([9; 32], ClaimedImport { id: 4, inserted: false, state: "loading".into() })]),
        ..Claims::default()
    };
    for commands in [vec![finish.clone(), intake(7)], vec![intake(7), finish.clone()]] {
        let (plan, outcomes) = run(&commands, claims(), 0);
        assert!(outcomes.contains(&WriteOutcome::NoticeApplied), "{outcomes:?}");
        assert_eq!(plan.matches_by_operation.len(), 1, "the notice takes the line");
        assert!(plan.statement_matches.is_empty(), "the finish matches the line to nothing else: {commands:?}");
        assert!(plan.new_discrepancies.is_empty(), "and does not judge it");
    }
    // Without the notice, the finish matches the pending line to the open payment.
    let (plan, _) = run(&[finish], claims(), 0);
    assert_eq!(plan.statement_matches.len(), 1);
}
