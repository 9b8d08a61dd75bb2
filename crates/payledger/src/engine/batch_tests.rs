//! Unit tests of `decide`: one batch's commands against running balances, without a database.

use super::*;
use payledger_core::{AccountBalance, Currency, Money};
use time::OffsetDateTime;

fn notice(id: u128, amount: i64) -> BankNotice {
    BankNotice {
        operation_id: OperationId(Uuid::from_u128(id)),
        amount: Money::from_minor(amount, Currency::RUB),
        payer_inn: Inn::parse("1234567890").unwrap_or_else(|_| panic!("test inn")),
        document_number: "PAY-1".into(),
        document_date: OffsetDateTime::UNIX_EPOCH,
    }
}

fn intake(id: u128, amount: i64) -> WriteCommand {
    WriteCommand::IntakeNotice { notice: notice(id, amount), apply: true, raw: bytes::Bytes::new(), tolerance_days: 3 }
}

/// A batch without balance commands.
pub(crate) fn no_balances<'a>(
    users: &'a HashMap<payledger_core::UserId, AccountId>,
    services: &'a HashMap<payledger_core::ServiceId, AccountId>,
) -> BatchLedger<'a> {
    let accounts = super::super::balances::BalanceAccounts {
        users,
        services,
        deposits: AccountId(90),
        withdrawals: AccountId(91),
        payout_clearing: AccountId(92),
    };
    BatchLedger::new(accounts, Default::default(), HashMap::new(), Vec::new(), OffsetDateTime::UNIX_EPOCH)
}

struct Fixture {
    organizations: HashMap<Inn, AccountId>,
    sheet: BalanceSheet,
}

fn fixture() -> Fixture {
    let mut organizations = HashMap::new();
    organizations.insert(notice(0, 1).payer_inn, AccountId(2));
    let mut sheet = BalanceSheet::new();
    sheet.insert(AccountId(1), AccountBalance { balance: 0, held: 0, allow_negative: true });
    sheet.insert(AccountId(2), AccountBalance { balance: 0, held: 0, allow_negative: false });
    Fixture { organizations, sheet }
}

fn run(commands: &[WriteCommand], stored: &[BankNotice]) -> (Plan, Vec<WriteOutcome>, BalanceSheet) {
    run_wanting(commands, stored, &WantedEvents::NONE)
}

fn run_wanting(
    commands: &[WriteCommand],
    stored: &[BankNotice],
    wanted_events: &WantedEvents,
) -> (Plan, Vec<WriteOutcome>, BalanceSheet) {
    let mut fixture = fixture();
    let claim_rows = notice_claims(commands);
    let stored_ids: HashSet<_> = stored.iter().map(|n| n.operation_id).collect();
    let claims = Claims {
        inserted: claim_rows.iter().map(|c| c.notice.operation_id).filter(|id| !stored_ids.contains(id)).collect(),
        stored: stored.iter().map(|n| (n.operation_id, StoredNotice::new(n.clone(), "applied", None))).collect(),
        waiting: HashSet::new(),
        ..Claims::default()
    };
    let accounts = AccountMap { organizations: &fixture.organizations, bank_inflow: AccountId(1) };
    let (users, services) = (HashMap::new(), HashMap::new());
    let mut balances = no_balances(&users, &services);
    let (plan, outcomes) = decide(
        Submitted { wanted_events, ..Submitted::without_origins(commands) },
        &claims,
        &claim_rows,
        &accounts,
        &mut balances,
        &mut Default::default(),
        &mut fixture.sheet,
    );
    (plan, outcomes, fixture.sheet)
}

#[test]
fn only_the_events_some_subscription_wants_are_built() {
    // A credit, a conflicting resend of it, and a second credit.
    let commands = [intake(7, 100), intake(7, 999), intake(8, 50)];
    let kinds = |subscriptions: &[&str]| -> Vec<&'static str> {
        let wanted = WantedEvents::new(subscriptions.iter().map(|s| (*s).to_owned()).collect());
        let (plan, _, _) = run_wanting(&commands, &[], &wanted);
        plan.events.iter().map(|event| event.kind).collect()
    };
    let (credited, conflict) = ("bank_payment.credited", "bank_payment.conflict");
    assert_eq!(kinds(&[]), Vec::<&str>::new(), "no endpoint: no event is built");
    assert_eq!(kinds(&[credited]), vec![credited, credited]);
    assert_eq!(kinds(&[conflict]), vec![conflict]);
    assert_eq!(kinds(&["*"]), vec![credited, conflict, credited], "every type, in the order decided");
    assert_eq!(kinds(&["*", credited]), kinds(&["*"]), "a type named beside `*` is not built twice");
    // `*` is every type but the ones that must be named.
    let all = WantedEvents::new(vec!["*".to_owned()]);
    assert!(all.wants(credited) && !all.wants("bank_payment.rejected"));
    assert!(WantedEvents::new(vec!["bank_payment.rejected".to_owned()]).wants("bank_payment.rejected"));
    assert!(!WantedEvents::NONE.any());
}

#[test]
fn duplicates_inside_one_batch_credit_once() {
    let (plan, outcomes, sheet) = run(&[intake(7, 100), intake(7, 100), intake(8, 50), intake(7, 999)], &[]);
    assert_eq!(
        outcomes,
        vec![
            WriteOutcome::NoticeApplied,
            WriteOutcome::NoticeDuplicate,
            WriteOutcome::NoticeApplied,
            WriteOutcome::NoticeConflict { fields: vec![NoticeField::Amount], original_failed: false },
        ]
    );
    assert_eq!(sheet.get(AccountId(2)).map(|a| a.balance), Some(150));
    assert_eq!(plan.transactions.len(), 2);
    assert_eq!(plan.entries.len(), 4);
    assert_eq!(plan.conflicts.len(), 1);
}

#[test]
fn a_failed_credit_is_failed_again_for_every_exact_replay_and_a_conflict_for_other_data() {
    // The first notice takes the organization to i64::MAX, so the second one's credit overflows.
    let commands = [intake(7, i64::MAX), intake(8, 1), intake(8, 1), intake(8, 2)];
    let (plan, outcomes, _) = run(&commands, &[]);
    let overflow = LedgerError::Overflow.to_string();
    assert_eq!(
        outcomes,
        vec![
            WriteOutcome::NoticeApplied,
            WriteOutcome::NoticeFailed { reason: overflow.clone(), replay: false },
            WriteOutcome::NoticeFailed { reason: overflow.clone(), replay: true },
            WriteOutcome::NoticeConflict { fields: vec![NoticeField::Amount], original_failed: true },
        ]
    );
    assert_eq!(plan.notice_updates.len(), 1, "the failure is recorded once");
    assert_eq!(plan.notice_updates[0].failure_reason.as_deref(), Some(overflow.as_str()));

    // A later batch answers a replay from the stored failure, and records nothing new.
    let mut fixture = fixture();
    let commands = [intake(8, 1), intake(8, 3)];
    let claim_rows = notice_claims(&commands);
    let claims = Claims {
        inserted: HashSet::new(),
        stored: HashMap::from([(
            OperationId(Uuid::from_u128(8)),
            StoredNotice::new(notice(8, 1), "failed", Some(overflow.clone())),
        )]),
        waiting: HashSet::new(),
        ..Claims::default()
    };
    let accounts = AccountMap { organizations: &fixture.organizations, bank_inflow: AccountId(1) };
    let (users, services) = (HashMap::new(), HashMap::new());
    let mut balances = no_balances(&users, &services);
    let mut payouts = Default::default();
    let (plan, outcomes) = decide(
        Submitted::without_origins(&commands),
        &claims,
        &claim_rows,
        &accounts,
        &mut balances,
        &mut payouts,
        &mut fixture.sheet,
    );
    assert_eq!(
        outcomes,
        vec![
            WriteOutcome::NoticeFailed { reason: overflow, replay: true },
            WriteOutcome::NoticeConflict { fields: vec![NoticeField::Amount], original_failed: true },
        ]
    );
    assert!(plan.notice_updates.is_empty() && plan.transactions.is_empty());
}

#[test]
fn a_notice_stored_by_an_earlier_batch_is_a_duplicate_or_a_conflict() {
    let (plan, outcomes, sheet) = run(&[intake(7, 100), intake(7, 200)], &[notice(7, 100)]);
    assert_eq!(
        outcomes,
        vec![
            WriteOutcome::NoticeDuplicate,
            WriteOutcome::NoticeConflict { fields: vec![NoticeField::Amount], original_failed: false },
        ]
    );
    assert_eq!(sheet.get(AccountId(2)).map(|a| a.balance), Some(0));
    assert!(plan.transactions.is_empty());
}

#[test]
fn claims_are_sorted_and_unique() {
    let claims = notice_claims(&[intake(9, 1), intake(3, 1), intake(9, 2)]);
    let ids: Vec<u128> = claims.iter().map(|c| c.notice.operation_id.0.as_u128()).collect();
    assert_eq!(ids, vec![3, 9]);
    assert!(claims.iter().all(|c| c.transaction_id.is_some()));
}

mod model {
    use super::*;
    use proptest::prelude::*;

    const INNS: [&str; 3] = ["1234567890", "7707083893", "500100732259"];

    /// One notice of a random workload: which operation id (from a small pool, so repeats happen),
    /// its amount and its payer.
    fn notice_of(op: u8, amount: i64, inn: usize) -> BankNotice {
        BankNotice {
            operation_id: OperationId(Uuid::from_u128(u128::from(op) + 1)),
            amount: Money::from_minor(amount, Currency::RUB),
            payer_inn: Inn::parse(INNS[inn]).unwrap_or_else(|_| panic!("test inn")),
            document_number: "PAY".into(),
            document_date: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn batches() -> impl Strategy<Value = Vec<Vec<(u8, i64, usize)>>> {
        prop::collection::vec(prop::collection::vec((0u8..12, 1i64..3, 0usize..3), 1..20), 1..12)
    }

    proptest! {
        /// Over any sequence of batches, each operation id is credited exactly once, with the data of
        /// the first notice that carried it; later ones are duplicates or conflicts naming what differs;
        /// every transaction balances.
        #[test]
        fn each_operation_is_credited_once_across_batches(batches in batches()) {
            let mut organizations = HashMap::new();
            let mut sheet = BalanceSheet::new();
            sheet.insert(AccountId(1), AccountBalance { balance: 0, held: 0, allow_negative: true });
            for (i, inn) in INNS.iter().enumerate() {
                let id = AccountId(i as i64 + 2);
                organizations.insert(Inn::parse(inn).unwrap_or_else(|_| panic!("test inn")), id);
                sheet.insert(id, AccountBalance { balance: 0, held: 0, allow_negative: false });
            }
            // What the store holds between batches, and the model's view of the first notice per id.
            let mut stored: HashMap<OperationId, BankNotice> = HashMap::new();
            let mut first: HashMap<OperationId, BankNotice> = HashMap::new();
            for batch in batches {
                let commands: Vec<WriteCommand> = batch
                    .iter()
                    .map(|(op, amount, inn)| WriteCommand::IntakeNotice {
                        notice: notice_of(*op, *amount, *inn),
                        apply: true,
                        raw: bytes::Bytes::new(),
                        tolerance_days: 3,
                    })
                    .collect();
                let claim_rows = notice_claims(&commands);
                let inserted: HashSet<OperationId> = claim_rows
                    .iter()
                    .map(|c| c.notice.operation_id)
                    .filter(|id| !stored.contains_key(id))
                    .collect();
                let claims = Claims {
                    inserted: inserted.clone(),
                    stored: claim_rows
                        .iter()
                        .filter_map(|c| {
                            let n = stored.get(&c.notice.operation_id)?;
                            Some((n.operation_id, StoredNotice::new(n.clone(), "applied", None)))
                        })
                        .collect(),
                    waiting: HashSet::new(),
                    ..Claims::default()
                };
                let accounts = AccountMap { organizations: &organizations, bank_inflow: AccountId(1) };
                let (users, services) = (HashMap::new(), HashMap::new());
                let mut balances = no_balances(&users, &services);
                let (plan, outcomes) = decide(Submitted::without_origins(&commands), &claims, &claim_rows, &accounts, &mut balances, &mut Default::default(), &mut sheet);
                prop_assert_eq!(outcomes.len(), commands.len());
                for (command, outcome) in commands.iter().zip(&outcomes) {
                    let WriteCommand::IntakeNotice { notice, .. } = command else { continue };
                    match first.get(&notice.operation_id) {
                        None => {
                            prop_assert_eq!(outcome, &WriteOutcome::NoticeApplied);
                            first.insert(notice.operation_id, notice.clone());
                        }
                        Some(original) if original == notice => {
                            prop_assert_eq!(outcome, &WriteOutcome::NoticeDuplicate);
                        }
                        Some(original) => {
                            prop_assert_eq!(
                                outcome,
                                &WriteOutcome::NoticeConflict {
                                    fields: original.differences(notice),
                                    original_failed: false,
                                }
                            );
                        }
                    }
                }
                let mut per_transaction: HashMap<Uuid, i64> = HashMap::new();
                for (transaction, entry) in &plan.entries {
                    *per_transaction.entry(*transaction).or_default() += entry.amount;
                }
                prop_assert!(per_transaction.values().all(|sum| *sum == 0));
                prop_assert_eq!(per_transaction.len(), plan.transactions.len());
                // The claimed rows are what the store keeps for the next batch.
                for claim in claim_rows.iter().filter(|c| inserted.contains(&c.notice.operation_id)) {
                    stored.insert(claim.notice.operation_id, claim.notice.clone());
                }
            }
            for (inn, id) in &organizations {
                let expected: i64 = first.values().filter(|n| &n.payer_inn == inn).map(|n| n.amount.minor()).sum();
                prop_assert_eq!(sheet.get(*id).map(|a| a.balance), Some(expected));
            }
            let total: i64 = sheet.iter().map(|(_, a)| a.balance).sum();
            prop_assert_eq!(total, 0);
        }
    }
}
