use std::collections::{HashMap, HashSet};

use payledger_core::Inn;
use payledger_core::money::Currency;
use payledger_core::statement::MatchKey;
use proptest::prelude::*;
use time::Date;
use time::macros::date;
use uuid::Uuid;

use super::*;
use crate::store::batch::ClaimedImport;

fn key(inn: &str, number: &str, amount: i64) -> MatchKey {
    MatchKey {
        payer_inn: Inn::parse(inn).unwrap_or_else(|_| panic!("inn {inn}")),
        document_number: number.into(),
        document_date: date!(2024 - 04 - 28),
        amount,
        currency: Currency::RUB,
    }
}

const PAYER: &str = "7701234567";
const TODAY: Date = date!(2024 - 05 - 01);
const TOLERANCE: u32 = 3;

fn payment(id: i64, key: MatchKey) -> OpenPayment {
    OpenPayment { id, operation_id: Uuid::from_u128(id as u128), key }
}

fn line(id: i64, key: Option<MatchKey>, booked: Date) -> LineToMatch {
    let amount = key.as_ref().map_or(100, |key| key.amount);
    LineToMatch {
        id,
        key,
        amount,
        currency: "RUB".into(),
        bank_ids: Vec::new(),
        booking_date: booked,
        payer_known: true,
    }
}

fn discrepancy(kind: DiscrepancyKind, candidates: Vec<i64>) -> LineDecision {
    LineDecision::Discrepancy { kind, candidates }
}

#[test]
fn a_line_matches_the_payment_with_its_key() {
    let decisions = match_lines(
        &[line(1, Some(key(PAYER, "17", 500)), date!(2024 - 04 - 28))],
        &[payment(9, key(PAYER, "17", 500))],
        TODAY,
        TOLERANCE,
    );
    assert_eq!(decisions, vec![LineDecision::Matched { payment_id: 9, rule: MatchRule::Document }]);
}

#[test]
fn twin_lines_take_twin_payments_in_id_order_and_a_third_twin_is_missing() {
    let twin = key(PAYER, "5", 100);
    let lines: Vec<LineToMatch> = (1..=3).map(|id| line(id, Some(twin.clone()), date!(2024 - 04 - 28))).collect();
    let decisions = match_lines(&lines, &[payment(20, twin.clone()), payment(10, twin)], TODAY, TOLERANCE);
    assert_eq!(
        decisions,
        vec![
            LineDecision::Matched { payment_id: 10, rule: MatchRule::Document },
            LineDecision::Matched { payment_id: 20, rule: MatchRule::Document },
            discrepancy(DiscrepancyKind::MissingNotice, vec![]),
        ]
    );
}

#[test]
fn a_bank_reference_naming_the_operation_id_wins_over_the_document_rule() {
    let mut by_ref = line(1, Some(key(PAYER, "1", 100)), date!(2024 - 04 - 28));
    by_ref.bank_ids = vec![Uuid::from_u128(7).to_string().to_uppercase()];
    let decisions = match_lines(
        &[by_ref, line(2, Some(key(PAYER, "1", 100)), date!(2024 - 04 - 28))],
        &[payment(5, key(PAYER, "1", 100)), payment(7, key(PAYER, "1", 100))],
        TODAY,
        TOLERANCE,
    );
    assert_eq!(
        decisions,
        vec![
            LineDecision::Matched { payment_id: 7, rule: MatchRule::BankRef },
            LineDecision::Matched { payment_id: 5, rule: MatchRule::Document },
        ]
    );
}

#[test]
fn an_unmatched_line_of_an_open_day_is_pending_and_of_a_closed_day_is_judged() {
    let lines =
        [line(1, Some(key(PAYER, "1", 100)), TODAY), line(2, Some(key(PAYER, "2", 100)), date!(2024 - 04 - 30))];
    assert_eq!(
        match_lines(&lines, &[], TODAY, TOLERANCE),
        vec![LineDecision::Pending, discrepancy(DiscrepancyKind::MissingNotice, vec![])]
    );
}

#[test]
fn one_payment_with_another_amount_is_a_mismatch_and_two_are_ambiguous() {
    let closed = date!(2024 - 04 - 29);
    let one = match_lines(
        &[line(1, Some(key(PAYER, "3", 100)), closed)],
        &[payment(4, key(PAYER, "3", 150))],
        TODAY,
        TOLERANCE,
    );
    assert_eq!(one, vec![discrepancy(DiscrepancyKind::AmountMismatch, vec![4])]);
    let two = match_lines(
        &[line(1, Some(key(PAYER, "3", 100)), closed)],
        &[payment(6, key(PAYER, "3", 150)), payment(4, key(PAYER, "3", 90))],
        TODAY,
        TOLERANCE,
    );
    assert_eq!(two, vec![discrepancy(DiscrepancyKind::Ambiguous, vec![4, 6])]);
}

#[test]
fn a_line_without_an_inn_or_an_organization_has_an_unknown_payer() {
    let closed = date!(2024 - 04 - 29);
    let mut stranger = line(2, Some(key(PAYER, "4", 100)), closed);
    stranger.payer_known = false;
    assert_eq!(
        match_lines(&[line(1, None, closed), stranger], &[], TODAY, TOLERANCE),
        vec![discrepancy(DiscrepancyKind::UnknownPayer, vec![]), discrepancy(DiscrepancyKind::UnknownPayer, vec![])]
    );
}

/// A statement payment named already by a late notice (`Some(how)`) or not.
fn statement_payment(key: &MatchKey, named_by: Option<LateMatch>) -> AppliedFromStatement {
    AppliedFromStatement { key: key.clone(), named_by_key: named_by == Some(LateMatch::Key), named: named_by.is_some() }
}

fn dated(mut key: MatchKey, date: Date) -> MatchKey {
    key.document_date = date;
    key
}

#[test]
fn a_late_notice_repeats_the_first_applied_payment_with_its_key_whose_own_notice_has_not_come() {
    let twin = key(PAYER, "8", 100);
    let applied = [
        statement_payment(&twin, Some(LateMatch::Key)),
        statement_payment(&twin, Some(LateMatch::Rival)),
        statement_payment(&twin, None),
    ];
    assert_eq!(late_notice_of(&twin, applied.iter(), false, TOLERANCE), Some((1, LateMatch::Key)));
    assert_eq!(late_notice_of(&twin, applied[2..].iter(), true, TOLERANCE), Some((0, LateMatch::Key)), "its key first");
    assert_eq!(
        late_notice_of(&twin, applied[..1].iter(), false, TOLERANCE),
        None,
        "its own notice came: another payment"
    );
    // Another amount on its date, or its amount within the tolerance: a rival, unless its own line is open.
    let other_amount = key(PAYER, "8", 101);
    assert_eq!(late_notice_of(&other_amount, applied[2..].iter(), false, TOLERANCE), Some((0, LateMatch::Rival)));
    assert_eq!(late_notice_of(&other_amount, applied[2..].iter(), true, TOLERANCE), None);
    assert_eq!(late_notice_of(&other_amount, applied[1..2].iter(), false, TOLERANCE), None, "a rival named it already");
    let near = dated(twin.clone(), date!(2024 - 05 - 01));
    assert_eq!(late_notice_of(&near, applied[2..].iter(), false, TOLERANCE), Some((0, LateMatch::Rival)));
    assert_eq!(late_notice_of(&near, applied[2..].iter(), false, 2), None, "beyond the tolerance");
    let far_and_other = dated(other_amount, date!(2024 - 04 - 29));
    assert_eq!(late_notice_of(&far_and_other, applied[2..].iter(), false, TOLERANCE), None);
    // Of several it may be, the nearest date, then the first.
    let spread = [
        statement_payment(&dated(twin.clone(), date!(2024 - 04 - 25)), None),
        statement_payment(&dated(twin.clone(), date!(2024 - 05 - 01)), None),
        statement_payment(&dated(twin.clone(), date!(2024 - 04 - 26)), None),
    ];
    assert_eq!(late_notice_of(&twin, spread.iter(), false, TOLERANCE), Some((2, LateMatch::Rival)));
    assert_eq!(
        late_notice_of(&dated(twin, date!(2024 - 04 - 27)), spread.iter(), false, 5),
        Some((2, LateMatch::Rival))
    );
}

#[test]
fn apply_credits_a_missing_notice_matches_a_notice_that_arrived_and_refuses_the_rest() {
    let open_missing = LineState {
        credit: true,
        matched: false,
        discrepancy: Some((DiscrepancyKind::MissingNotice, true)),
        has_inn: true,
    };
    assert_eq!(decide_apply(&open_missing, None, &[]), ApplyDecision::Credit);
    assert_eq!(decide_apply(&open_missing, Some(8), &[]), ApplyDecision::MatchTo(8));
    assert_eq!(
        decide_apply(&LineState { matched: true, ..open_missing.clone() }, None, &[]),
        ApplyDecision::AlreadyMatched
    );
    for refused in [
        LineState { credit: false, ..open_missing.clone() },
        LineState { discrepancy: Some((DiscrepancyKind::MissingNotice, false)), ..open_missing.clone() },
        LineState { discrepancy: Some((DiscrepancyKind::UnknownPayer, true)), has_inn: false, ..open_missing.clone() },
        LineState { discrepancy: Some((DiscrepancyKind::NoticeWithoutLine, true)), ..open_missing.clone() },
        LineState { discrepancy: None, ..open_missing.clone() },
    ] {
        assert!(matches!(decide_apply(&refused, None, &[]), ApplyDecision::NotApplicable(_)), "{refused:?}");
    }
}

fn rival_payment(id: i64, minor: i64, date: Date) -> RivalPayment {
    RivalPayment { id, amount: payledger_core::money::Money::from_minor(minor, Currency::RUB), document_date: date }
}

#[test]
fn apply_refuses_a_line_an_open_payment_may_be_and_credits_a_mismatch_whose_candidates_are_gone() {
    let open = |kind| LineState { credit: true, matched: false, discrepancy: Some((kind, true)), has_inn: true };
    // A notice one day off arrived since the line was judged missing_notice: crediting would pay twice.
    let near = [rival_payment(12, 70_000, date!(2024 - 04 - 28))];
    for kind in DiscrepancyKind::ALL.into_iter().filter(|kind| *kind != DiscrepancyKind::NoticeWithoutLine) {
        match decide_apply(&open(kind), None, &near) {
            ApplyDecision::NotApplicable(reason) => assert_eq!(
                reason,
                "a notice of 700.00 RUB dated 2024-04-28 (payment 12) may be this payment: accept the line with a \
                 note, or wait for a statement line that takes payment 12",
                "{kind:?}"
            ),
            other => panic!("{kind:?} with an open rival: {other:?}"),
        }
        // The exact payment, when it is there, is matched whatever the rivals.
        assert_eq!(decide_apply(&open(kind), Some(3), &near), ApplyDecision::MatchTo(3), "{kind:?}");
    }
    // Its only candidate taken by another line since, an amount_mismatch or ambiguous line is a missing notice.
    assert_eq!(decide_apply(&open(DiscrepancyKind::AmountMismatch), None, &[]), ApplyDecision::Credit);
    assert_eq!(decide_apply(&open(DiscrepancyKind::Ambiguous), None, &[]), ApplyDecision::Credit);
}

#[test]
fn a_bank_reference_naming_a_payment_of_another_amount_or_payer_does_not_match_it() {
    let closed = date!(2024 - 04 - 29);
    let mut by_ref = line(1, Some(key(PAYER, "15", 7_000)), closed);
    by_ref.bank_ids = vec![Uuid::from_u128(4).to_string()];
    // Another amount: rule 2 finds nothing, and the judgement names the payment the bank referred to.
    let decisions = match_lines(&[by_ref.clone()], &[payment(4, key(PAYER, "15", 70_000))], TODAY, TOLERANCE);
    assert_eq!(decisions, vec![discrepancy(DiscrepancyKind::AmountMismatch, vec![4])]);
    // Another payer, same amount: not matched either.
    let other = payment(4, key("7707083893", "15", 7_000));
    assert_eq!(
        match_lines(&[by_ref.clone()], std::slice::from_ref(&other), TODAY, TOLERANCE),
        vec![discrepancy(DiscrepancyKind::AmountMismatch, vec![4])]
    );
    // A line without an INN matches by its bank id on amount and currency alone.
    let mut anonymous = by_ref.clone();
    anonymous.key = None;
    assert_eq!(
        match_lines(&[anonymous], &[other], TODAY, TOLERANCE),
        vec![LineDecision::Matched { payment_id: 4, rule: MatchRule::BankRef }]
    );
    let mut rubles = by_ref;
    rubles.currency = "USD".into();
    rubles.key = None;
    assert_eq!(
        match_lines(&[rubles], &[payment(4, key(PAYER, "15", 7_000))], TODAY, TOLERANCE),
        vec![discrepancy(DiscrepancyKind::AmountMismatch, vec![4])]
    );
}

#[test]
fn rule_one_takes_the_first_payment_a_bank_id_names_that_agrees_with_the_line() {
    let closed = date!(2024 - 04 - 29);
    // Its bank reference names a 700.00 payment, its end-to-end id the 70.00 one (another document number, so
    // rule 2 cannot find it): the second id is the line's payment.
    let mut line_of_two_ids = line(1, Some(key(PAYER, "15", 7_000)), closed);
    line_of_two_ids.bank_ids = vec![Uuid::from_u128(4).to_string(), Uuid::from_u128(5).to_string()];
    let payments = [payment(4, key(PAYER, "15", 70_000)), payment(5, key(PAYER, "99", 7_000))];
    assert_eq!(
        match_lines(std::slice::from_ref(&line_of_two_ids), &payments, TODAY, TOLERANCE),
        vec![LineDecision::Matched { payment_id: 5, rule: MatchRule::BankRef }]
    );
    // The first id's payment taken by an earlier line of the batch: the second id's payment is still found.
    let mut earlier = line(1, Some(key(PAYER, "99", 7_000)), closed);
    earlier.bank_ids = vec![Uuid::from_u128(5).to_string()];
    let mut later = line(2, Some(key(PAYER, "15", 7_000)), closed);
    later.bank_ids = vec![Uuid::from_u128(5).to_string(), Uuid::from_u128(6).to_string()];
    let payments = [payment(5, key(PAYER, "99", 7_000)), payment(6, key(PAYER, "98", 7_000))];
    assert_eq!(
        match_lines(&[earlier, later], &payments, TODAY, TOLERANCE),
        vec![
            LineDecision::Matched { payment_id: 5, rule: MatchRule::BankRef },
            LineDecision::Matched { payment_id: 6, rule: MatchRule::BankRef },
        ]
    );
}

#[test]
fn a_payment_differing_only_by_a_date_within_the_tolerance_makes_the_line_ambiguous() {
    let closed = date!(2024 - 04 - 30);
    let on = |date: Date| MatchKey { document_date: date, ..key(PAYER, "15", 70_000) };
    let the_line = line(1, Some(on(date!(2024 - 04 - 27))), closed);
    for (notice_date, expected) in [
        (date!(2024 - 04 - 28), discrepancy(DiscrepancyKind::Ambiguous, vec![9])),
        (date!(2024 - 04 - 24), discrepancy(DiscrepancyKind::Ambiguous, vec![9])),
        (date!(2024 - 04 - 23), discrepancy(DiscrepancyKind::MissingNotice, vec![])),
        (date!(2024 - 05 - 01), discrepancy(DiscrepancyKind::MissingNotice, vec![])),
    ] {
        let decisions = match_lines(std::slice::from_ref(&the_line), &[payment(9, on(notice_date))], TODAY, TOLERANCE);
        assert_eq!(decisions, vec![expected], "notice dated {notice_date}");
    }
    // Another amount on another date is not the line's payment.
    let elsewhere = MatchKey { document_date: date!(2024 - 04 - 28), ..key(PAYER, "15", 7_000) };
    assert_eq!(
        match_lines(std::slice::from_ref(&the_line), &[payment(9, elsewhere)], TODAY, TOLERANCE),
        vec![discrepancy(DiscrepancyKind::MissingNotice, vec![])]
    );
    // With no tolerance a day off is another payment.
    assert_eq!(
        match_lines(&[the_line], &[payment(9, on(date!(2024 - 04 - 28)))], TODAY, 0),
        vec![discrepancy(DiscrepancyKind::MissingNotice, vec![])]
    );
}

#[test]
fn days_are_covered_only_when_closed_and_in_every_accounts_complete_imports() {
    let coverage = HashMap::from([
        (
            "a".to_owned(),
            vec![(date!(2024 - 04 - 01), date!(2024 - 04 - 15)), (date!(2024 - 04 - 16), date!(2024 - 04 - 30))],
        ),
        ("b".to_owned(), vec![(date!(2024 - 04 - 10), date!(2024 - 04 - 20))]),
    ]);
    assert!(days_covered(date!(2024 - 04 - 12), date!(2024 - 04 - 18), TODAY, &coverage));
    assert!(!days_covered(date!(2024 - 04 - 18), date!(2024 - 04 - 21), TODAY, &coverage), "b ends on the 20th");
    assert!(!days_covered(date!(2024 - 04 - 28), TODAY, TODAY, &coverage), "today is not closed");
    assert!(!days_covered(date!(2024 - 04 - 12), date!(2024 - 04 - 12), TODAY, &HashMap::new()), "nothing imported");
}

#[test]
fn an_open_discrepancy_is_accepted_once_with_an_audit_row_and_a_second_accept_is_refused() {
    let mut locked = HashMap::from([(7, LockedDiscrepancy { kind: "missing_notice".into(), state: "open".into() })]);
    let mut plan = Plan::default();
    let accept = AcceptCommand { discrepancy_id: 7, note: "cash".into(), by: "alice".into() };
    assert_eq!(decide_accept(&accept, &mut locked, &mut plan), StatementOutcome::Accepted);
    assert_eq!(
        decide_accept(&accept, &mut locked, &mut plan),
        StatementOutcome::NotApplicable("the discrepancy is already accepted".into())
    );
    let missing = AcceptCommand { discrepancy_id: 8, ..accept };
    assert_eq!(decide_accept(&missing, &mut locked, &mut plan), StatementOutcome::NotFound);
    assert_eq!(plan.discrepancy_updates.len(), 1);
    assert_eq!(
        (plan.discrepancy_updates[0].state, plan.discrepancy_updates[0].note.as_deref()),
        ("accepted", Some("cash"))
    );
    assert_eq!(plan.audit.len(), 1);
    assert_eq!((plan.audit[0].action.as_str(), plan.audit[0].target.as_str()), ("statement.accept", "discrepancy:7"));
}

#[test]
fn a_begin_starts_a_new_import_once_resumes_a_loading_one_with_its_sections_and_finds_a_complete_one() {
    let summary = payledger_core::statement::AccountSummary {
        account: payledger_core::statement::AccountNumber::parse("40702810900000000001").unwrap_or_else(|_| panic!()),
        currency: Currency::RUB,
        period_start: date!(2024 - 04 - 28),
        period_end: date!(2024 - 04 - 28),
        opening_balance: None,
        total_credits: Some(100),
        total_debits: None,
        closing_balance: None,
        source_line: 1,
    };
    let begin = BeginImport {
        sha256: [1; 32],
        file_sha256: [1; 32],
        format: payledger_core::statement::StatementFormat::Camt053,
        file_name: None,
        sections: vec![SectionCounts { summary, credit_lines: 1, debit_lines: 0 }],
        line_count: 1,
        by: None,
    };
    let mut plan = Plan::default();
    let mut started = HashSet::new();
    let stored = HashMap::from([(3, vec!["40702810900000000001".to_owned()])]);
    let new = ClaimedImport { id: 3, inserted: true, state: "loading".into() };
    assert_eq!(
        decide_begin(&begin, Some(&new), &stored, &mut started, &mut plan),
        StatementOutcome::ImportStarted { id: 3 }
    );
    assert_eq!(
        decide_begin(&begin, Some(&new), &stored, &mut started, &mut plan),
        StatementOutcome::ImportResumed { id: 3 }
    );
    assert_eq!((plan.import_sections.len(), plan.audit.len()), (1, 1), "the second begin writes nothing");
    let loading = ClaimedImport { inserted: false, ..new.clone() };
    assert_eq!(
        decide_begin(&begin, Some(&loading), &stored, &mut HashSet::new(), &mut plan),
        StatementOutcome::ImportResumed { id: 3 }
    );
    // A resume with other sections (another account, say) would complete the import without the stored ones.
    let two = HashMap::from([(3, vec!["40702810900000000001".to_owned(), "40702810900000000002".to_owned()])]);
    let refused = decide_begin(&begin, Some(&loading), &two, &mut HashSet::new(), &mut plan);
    assert!(
        matches!(&refused, StatementOutcome::NotApplicable(reason) if reason.contains("cannot be resumed")),
        "{refused:?}"
    );
    let complete = ClaimedImport { state: "complete".into(), ..loading };
    assert_eq!(
        decide_begin(&begin, Some(&complete), &stored, &mut HashSet::new(), &mut plan),
        StatementOutcome::AlreadyImported { id: 3 }
    );
    assert_eq!(plan.import_sections.len(), 1);
}

/// A model of the store: payments (notices and applied lines) and lines, driven only through the decisions.
#[derive(Default)]
struct Model {
    /// (id, key, from the statement, duplicate_of).
    payments: Vec<(i64, MatchKey, bool, Option<i64>)>,
    /// line id → (key, matched payment, open discrepancy).
    lines: Vec<(i64, MatchKey, Option<i64>, bool)>,
    next_id: i64,
    credits: HashMap<MatchKey, usize>,
}

impl Model {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn open_payments(&self) -> Vec<OpenPayment> {
        let matched: HashSet<i64> = self.lines.iter().filter_map(|line| line.2).collect();
        self.payments
            .iter()
            .filter(|(id, _, _, duplicate)| duplicate.is_none() && !matched.contains(id))
            .map(|(id, key, _, _)| payment(*id, key.clone()))
            .collect()
    }

    /// A webhook, decided as the engine decides it ([`late_notice_of`]): held as a late notice of a statement
    /// payment it may be, else credited, taking the first unmatched line with its key.
    fn webhook(&mut self, key: &MatchKey) {
        let mut named_by_key: HashSet<i64> = HashSet::new();
        let mut named: HashSet<i64> = HashSet::new();
        for (_, notice_key, _, late) in &self.payments {
            let Some(original) = late else { continue };
            named.insert(*original);
            if self.payments.iter().any(|p| p.0 == *original && &p.1 == notice_key) {
                named_by_key.insert(*original);
            }
        }
        let statement: Vec<&(i64, MatchKey, bool, Option<i64>)> = self.payments.iter().filter(|p| p.2).collect();
        let ids: Vec<i64> = statement.iter().map(|p| p.0).collect();
        let applied: Vec<AppliedFromStatement> = statement
            .iter()
            .map(|p| AppliedFromStatement {
                key: p.1.clone(),
                named_by_key: named_by_key.contains(&p.0),
                named: named.contains(&p.0),
            })
            .collect();
        let own_line_open = self.lines.iter().any(|l| &l.1 == key && l.2.is_none());
        let id = self.id();
        if let Some((position, _)) = late_notice_of(key, applied.iter(), own_line_open, TOLERANCE) {
            self.payments.push((id, key.clone(), false, Some(ids[position])));
            return;
        }
        self.payments.push((id, key.clone(), false, None));
        *self.credits.entry(key.clone()).or_default() += 1;
        if let Some(line) = self.lines.iter_mut().filter(|l| &l.1 == key && l.2.is_none()).min_by_key(|l| l.0) {
            line.2 = Some(id);
            line.3 = false;
        }
    }

    fn import(&mut self, key: &MatchKey) {
        let id = self.id();
        let new = line(id, Some(key.clone()), date!(2024 - 04 - 28));
        let decision = match_lines(&[new], &self.open_payments(), TODAY, TOLERANCE);
        match decision.first() {
            Some(LineDecision::Matched { payment_id, .. }) => {
                self.lines.push((id, key.clone(), Some(*payment_id), false))
            }
            _ => self.lines.push((id, key.clone(), None, true)),
        }
    }

    fn apply(&mut self, index: usize) {
        let Some(position) = (!self.lines.is_empty()).then(|| index % self.lines.len()) else { return };
        let (line_id, key, matched, open) = self.lines[position].clone();
        let state = LineState {
            credit: true,
            matched: matched.is_some(),
            discrepancy: Some((DiscrepancyKind::MissingNotice, open)),
            has_inn: true,
        };
        let waiting = self.open_payments().into_iter().filter(|p| p.key == key).map(|p| p.id).min();
        match decide_apply(&state, waiting, &[]) {
            ApplyDecision::MatchTo(payment_id) => self.lines[position] = (line_id, key, Some(payment_id), false),
            ApplyDecision::Credit => {
                let id = self.id();
                self.payments.push((id, key.clone(), true, None));
                *self.credits.entry(key.clone()).or_default() += 1;
                self.lines[position] = (line_id, key, Some(id), false);
            }
            ApplyDecision::AlreadyMatched | ApplyDecision::NotApplicable(_) => {}
        }
    }
}

#[derive(Debug, Clone)]
enum Event {
    Webhook(usize),
    Import(usize),
    Apply(usize),
}

proptest! {
    /// Whatever the order of webhooks, statement lines and applies, each real payment is credited at most
    /// once, and exactly once when its webhook came or its line was applied after every line was imported.
    #[test]
    fn any_interleaving_credits_each_real_payment_exactly_once(
        payments in proptest::collection::vec((0u8..3, 0i64..2, 0i64..3), 1..8),
        order in proptest::collection::vec((0u8..3, 0usize..16), 0..40),
        lost in proptest::collection::vec(any::<bool>(), 8),
    ) {
        // Few distinct numbers and amounts, so twins (identical real payments) are common.
        // Document dates a day or two apart, within the tolerance: notices that may be another's line are common.
        let keys: Vec<MatchKey> = payments
            .iter()
            .map(|(number, amount, days)| {
                let date = date!(2024 - 04 - 26) + time::Duration::days(*days);
                dated(key(PAYER, &number.to_string(), 100 + amount), date)
            })
            .collect();
        let mut events: Vec<Event> = order
            .iter()
            .map(|(kind, index)| match kind {
                0 => Event::Webhook(index % keys.len()),
                1 => Event::Import(index % keys.len()),
                _ => Event::Apply(*index),
            })
            .collect();
        // Each real payment has one webhook (unless lost) and one line; the random prefix may repeat neither.
        let mut webhooks: HashSet<usize> = HashSet::new();
        let mut imported: HashSet<usize> = HashSet::new();
        events.retain(|event| match event {
            Event::Webhook(i) => !lost[*i] && webhooks.insert(*i),
            Event::Import(i) => imported.insert(*i),
            Event::Apply(_) => true,
        });
        for (i, lost) in lost.iter().enumerate().take(keys.len()) {
            if !lost && !webhooks.contains(&i) { events.push(Event::Webhook(i)); }
            if !imported.contains(&i) { events.push(Event::Import(i)); }
        }
        let mut model = Model::default();
        for event in &events {
            match event {
                Event::Webhook(i) => model.webhook(&keys[*i]),
                Event::Import(i) => model.import(&keys[*i]),
                Event::Apply(index) => model.apply(*index),
            }
        }
        // The operator finally applies every line still open.
        for index in 0..model.lines.len() { model.apply(index); }
        let mut real: HashMap<MatchKey, usize> = HashMap::new();
        for key in &keys { *real.entry(key.clone()).or_default() += 1; }
        prop_assert_eq!(&model.credits, &real);
        let matched: Vec<i64> = model.lines.iter().filter_map(|line| line.2).collect();
        prop_assert_eq!(matched.len(), matched.iter().collect::<HashSet<_>>().len(), "a payment matched twice");
    }
}
