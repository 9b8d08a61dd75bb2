//! One batch of write commands, decided without I/O.
//!
//! The writer collects commands, the store claims their keys and locks their accounts, and then
//! [`decide`] turns everything it learned into a [`Plan`]: the rows to write and one outcome per command.
//! Keeping this step pure makes the heart of the ledger testable without a database.

use std::collections::{HashMap, HashSet};

use payledger_core::bank::NoticeField;
use payledger_core::{AccountId, BalanceSheet, BankNotice, Inn, LedgerError, OperationId};
use uuid::Uuid;

use super::balances::{BalanceCommand, BalanceOutcome, BatchLedger, KeptRefusal};
use super::payouts::{PayoutCommand, PayoutOutcome, PayoutStates};
use super::reconcile::BatchReconciliation;
use crate::origin::RequestOrigin;
use crate::store::batch::{
    ConflictRecord, NewEvent, NoticeClaim, NoticeStatus, NoticeUpdate, Plan, RejectedNotice, StoredNotice, WantedEvents,
};

/// The ledger transaction kind of a credited bank payment.
pub const BANK_PAYMENT_KIND: &str = "bank_payment";

/// A write that the engine performs for a caller.
#[derive(Debug, Clone)]
pub enum WriteCommand {
    /// Record a bank notice exactly once by its operation id; when `apply` is set (sync mode), credit the
    /// organization in the same transaction, otherwise leave it `received` for the background applier.
    IntakeNotice {
        /// The validated notice.
        notice: BankNotice,
        /// Apply it now, or only record it.
        apply: bool,
        /// The notice as received, kept (truncated) if it conflicts with the stored one.
        raw: bytes::Bytes,
        /// How many days its document date may differ from a statement line's and still be that line's payment
        /// (a late notice of a payment applied from the statement is never credited).
        tolerance_days: u32,
    },
    /// Credit a notice recorded earlier in async mode, unless someone already did.
    ApplyRecorded {
        /// The notice as stored.
        notice: BankNotice,
        /// As for [`WriteCommand::IntakeNotice`].
        tolerance_days: u32,
    },
    /// Keep an invalid notice for operators.
    RecordRejected(RejectedNotice),
    /// A user-balance operation.
    Balance(BalanceCommand),
    /// A payout's creation or change.
    Payout(PayoutCommand),
    /// Keep an invalid balance request's refusal under its idempotency key.
    KeepRefusal(KeptRefusal),
    /// Claim due jobs for a worker (on SQLite, where the one write lock is fairest shared through this queue).
    ClaimJobs(super::payouts::JobClaim),
    /// An event delivery worker's round: record its finished attempts, claim more (`engine/deliveries.rs`).
    Deliveries(crate::store::event_rows::DeliveryRound),
    /// Accept an open reconciliation discrepancy with an operator's note.
    StatementAccept(super::statements::AcceptCommand),
    /// Start a statement import (or find it started or complete).
    StatementBegin(super::statements::BeginImport),
    /// Store and match up to 1,000 lines of an import.
    StatementLines(super::statements::LinesCommand),
    /// Apply a statement line: credit its payer from the statement, or match a payment that arrived since.
    StatementApply(super::reconcile::ApplyCommand),
    /// Complete an import: judge the closed days and the notices without a line.
    StatementFinish(super::judging::FinishImport),
}

impl WriteCommand {
    /// The organization whose account this command may touch.
    pub fn organization(&self) -> Option<&Inn> {
        match self {
            WriteCommand::IntakeNotice { notice, apply: true, .. } | WriteCommand::ApplyRecorded { notice, .. } => {
                Some(&notice.payer_inn)
            }
            WriteCommand::IntakeNotice { apply: false, .. }
            | WriteCommand::RecordRejected(_)
            | WriteCommand::Balance(_)
            | WriteCommand::Payout(_)
            | WriteCommand::KeepRefusal(_)
            | WriteCommand::ClaimJobs(_)
            | WriteCommand::Deliveries(_)
            | WriteCommand::StatementAccept(_)
            | WriteCommand::StatementBegin(_)
            | WriteCommand::StatementLines(_)
            | WriteCommand::StatementApply(_)
            | WriteCommand::StatementFinish(_) => None,
        }
    }
}

/// What became of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The notice was new and the organization is credited.
    NoticeApplied,
    /// The notice was new and is recorded; the background applier will credit it.
    NoticeAccepted,
    /// The operation id was already known with the same data; nothing changed.
    NoticeDuplicate,
    /// The operation id was already known with different data; nothing changed and the conflict is recorded.
    NoticeConflict {
        /// The fields that differ from the original.
        fields: Vec<NoticeField>,
        /// The original's credit failed: it was never applied (the answer must not say it was).
        original_failed: bool,
    },
    /// The ledger refused the credit (an overflowing balance), now or when the notice was first received: the
    /// notice is recorded as failed, with this reason, and an exact replay is answered with the same refusal.
    NoticeFailed {
        /// Why the ledger refused it.
        reason: String,
        /// An exact replay of a notice whose credit failed before (counted apart in the metrics).
        replay: bool,
    },
    /// A recorded notice was already applied or failed by someone else.
    AlreadyHandled,
    /// The store neither inserted the notice nor found it: a store defect, answered as "retry".
    NotRecorded,
    /// A non-ledger row was stored.
    Stored,
    /// What became of a user-balance operation.
    Balance(BalanceOutcome),
    /// What became of a payout command.
    Payout(PayoutOutcome),
    /// The jobs a claim got.
    Jobs(Vec<crate::store::payouts::ClaimedJob>),
    /// What a delivery round did.
    Deliveries(crate::store::event_rows::RoundOutcome),
    /// What became of a reconciliation command.
    Statement(super::statements::StatementOutcome),
}

/// Everything the store learned inside the batch transaction, before any decision.
#[derive(Debug, Default)]
pub struct Claims {
    /// Operation ids whose notice rows this batch inserted.
    pub inserted: HashSet<OperationId>,
    /// Notices that were stored before this batch, for the operation ids it did not insert.
    pub stored: HashMap<OperationId, StoredNotice>,
    /// Recorded notices, locked by this batch, that are still waiting to be applied.
    pub waiting: HashSet<OperationId>,
    /// The reconciliation discrepancies the batch's commands name, locked.
    pub discrepancies: HashMap<i64, crate::store::batch::LockedDiscrepancy>,
    /// The statement imports the batch's commands start, by SHA-256.
    pub imports: HashMap<[u8; 32], crate::store::batch::ClaimedImport>,
    /// The stored section accounts (ascending) of each import a begin resumes, by import id.
    pub import_accounts: HashMap<i64, Vec<String>>,
    /// For each lines command (by command index), each line's new id, or `None` if it was stored before.
    pub stored_lines: HashMap<usize, Vec<Option<i64>>>,
    /// The payments the batch's new lines may be.
    pub payment_candidates: Vec<crate::store::batch::PaymentCandidate>,
    /// The payer INNs of the batch's lines that have an organization.
    pub line_payers: HashSet<String>,
    /// The lines the batch's applies name, by id.
    pub apply_targets: HashMap<i64, crate::store::batch::ApplyTarget>,
    /// The open payments with the documents of those lines.
    pub apply_candidates: Vec<crate::store::batch::PaymentCandidate>,
    /// The statement payments and unmatched lines the documents of the batch's crediting notices meet.
    pub counterparts: Vec<crate::store::batch::NoticeCounterpart>,
    /// Recorded notices to apply that a statement line is already matched to.
    pub recorded_matched: HashSet<OperationId>,
    /// For a finishing batch: the credit lines of closed days neither matched nor judged, read before the
    /// batch stored its own lines.
    pub pending_lines: Vec<crate::store::batch::PendingLine>,
    /// For a finishing batch: the applied webhook payments without a line or a `notice_without_line`.
    pub unlined_payments: Vec<crate::store::batch::UnlinedPayment>,
    /// For a finishing batch: every import's account sections.
    pub section_periods: Vec<crate::store::batch::SectionPeriod>,
}

/// The notice rows a batch should try to insert: the first occurrence of each new operation id, in
/// ascending operation id order so that concurrent batches on PostgreSQL take key locks in one order.
pub fn notice_claims(commands: &[WriteCommand]) -> Vec<NoticeClaim> {
    let mut seen = HashSet::new();
    let mut claims: Vec<NoticeClaim> = commands
        .iter()
        .filter_map(|command| match command {
            WriteCommand::IntakeNotice { notice, apply, .. } if seen.insert(notice.operation_id) => Some(NoticeClaim {
                notice: notice.clone(),
                status: if *apply { NoticeStatus::Applied } else { NoticeStatus::Received },
                transaction_id: apply.then(Uuid::now_v7),
            }),
            _ => None,
        })
        .collect();
    claims.sort_by_key(|claim| claim.notice.operation_id);
    claims
}

/// The operation ids of recorded notices this batch should lock and apply, ascending.
pub fn recorded_to_apply(commands: &[WriteCommand]) -> Vec<OperationId> {
    let mut ids: Vec<OperationId> = commands
        .iter()
        .filter_map(|command| match command {
            WriteCommand::ApplyRecorded { notice, .. } => Some(notice.operation_id),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Where the accounts of a batch live.
pub struct AccountMap<'a> {
    /// Each organization's account.
    pub organizations: &'a HashMap<Inn, AccountId>,
    /// The system account that mirrors money received from the bank.
    pub bank_inflow: AccountId,
}

/// A batch's commands, each with the request it was submitted for (`origins[i]` for `commands[i]`; missing or
/// `None` where no request asked: a worker, the CLI, a test).
#[derive(Debug, Clone, Copy)]
pub struct Submitted<'a> {
    /// The commands, in the order they were queued.
    pub commands: &'a [WriteCommand],
    /// Their requests, for the audit rows of their changes.
    pub origins: &'a [Option<RequestOrigin>],
    /// The event types to build events of (`OutboxTx::wanted_events`).
    pub wanted_events: &'a WantedEvents,
}

/// What [`Submitted::without_origins`] builds events of: nothing.
static NO_EVENTS: WantedEvents = WantedEvents::NONE;

impl<'a> Submitted<'a> {
    /// Commands no request asked for, building no event.
    pub fn without_origins(commands: &'a [WriteCommand]) -> Submitted<'a> {
        Submitted { commands, origins: &[], wanted_events: &NO_EVENTS }
    }
}

/// Decides every command of a batch in order against the running balances in `sheet`.
///
/// A refused command affects only itself. Returns the plan (every row to write) and one outcome per
/// command, in command order; `sheet` ends holding the final balance of each touched account.
pub fn decide(
    submitted: Submitted<'_>,
    claims: &Claims,
    claim_rows: &[NoticeClaim],
    accounts: &AccountMap<'_>,
    balances: &mut BatchLedger<'_>,
    payouts: &mut PayoutStates,
    sheet: &mut BalanceSheet,
) -> (Plan, Vec<WriteOutcome>) {
    let Submitted { commands, origins, wanted_events } = submitted;
    let claimed_transaction: HashMap<OperationId, Option<Uuid>> =
        claim_rows.iter().map(|claim| (claim.notice.operation_id, claim.transaction_id)).collect();
    // The first notice of each operation id in this batch; later ones in the batch compare against it.
    let mut first_in_batch: HashMap<OperationId, &BankNotice> = HashMap::new();
    // Why each notice's credit failed, before this batch or in it: an exact replay gets the same refusal.
    let mut failures: HashMap<OperationId, String> =
        claims.stored.iter().filter_map(|(id, stored)| Some((*id, stored.failure.clone()?))).collect();
    let mut applied_recorded: HashSet<OperationId> = HashSet::new();
    // Its discrepancies change as the batch's commands decide, so an accept and an apply see each other.
    let mut statements = StatementState::of_claims(claims);
    let mut plan = Plan { wanted_events: wanted_events.clone(), ..Plan::default() };
    let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; commands.len()];
    for index in reconciliation_order(commands) {
        let command = &commands[index];
        let (audited, marks) = (plan.audit.len(), super::events::EventMarks::of(&plan));
        let outcome = match command {
            WriteCommand::IntakeNotice { notice, apply, raw, tolerance_days } => {
                let id = notice.operation_id;
                let earlier = first_in_batch.get(&id).copied().or_else(|| claims.stored.get(&id).map(|s| &s.notice));
                let outcome = match earlier {
                    Some(original) => compare_with_original(original, notice, raw, failures.get(&id), &mut plan),
                    None if claims.inserted.contains(&id) => {
                        first_in_batch.insert(id, notice);
                        match (apply, claimed_transaction.get(&id).copied().flatten()) {
                            (true, Some(transaction_id)) => {
                                statements.reconcile.credit(notice, false, *tolerance_days, &mut plan, |plan| {
                                    credit(notice, transaction_id, accounts, sheet, plan, false)
                                })
                            }
                            _ => WriteOutcome::NoticeAccepted,
                        }
                    }
                    // Neither inserted nor found: the store lost track of the row, which is a bug in the
                    // store, so say nothing happened rather than pretend.
                    None => WriteOutcome::NotRecorded,
                };
                remember_failure(&mut failures, id, &outcome);
                outcome
            }
            WriteCommand::ApplyRecorded { notice, tolerance_days } => {
                if claims.waiting.contains(&notice.operation_id) && applied_recorded.insert(notice.operation_id) {
                    let matched = claims.recorded_matched.contains(&notice.operation_id);
                    let outcome = statements.reconcile.credit(notice, matched, *tolerance_days, &mut plan, |plan| {
                        credit(notice, Uuid::now_v7(), accounts, sheet, plan, true)
                    });
                    remember_failure(&mut failures, notice.operation_id, &outcome);
                    outcome
                } else {
                    WriteOutcome::AlreadyHandled
                }
            }
            WriteCommand::RecordRejected(rejected) => {
                plan.rejected.push(rejected.clone());
                WriteOutcome::Stored
            }
            WriteCommand::Balance(command) => {
                let outcome = balances.decide(command, sheet, &mut plan);
                plan.audit.extend(super::audit::balance_entry(command, &outcome));
                WriteOutcome::Balance(outcome)
            }
            WriteCommand::KeepRefusal(refusal) => WriteOutcome::Balance(balances.keep_refusal(refusal, &mut plan)),
            WriteCommand::ClaimJobs(_) => WriteOutcome::Jobs(payouts.claimed_jobs.remove(&index).unwrap_or_default()),
            // Run before the batch was decided (not the ledger's business); the engine puts in its outcome.
            WriteCommand::Deliveries(_) => WriteOutcome::Deliveries(Default::default()),
            WriteCommand::StatementAccept(_)
            | WriteCommand::StatementBegin(_)
            | WriteCommand::StatementLines(_)
            | WriteCommand::StatementFinish(_)
            | WriteCommand::StatementApply(_) => {
                let batch = BatchView { index, claims, accounts };
                WriteOutcome::Statement(decide_statement(command, &batch, &mut statements, sheet, &mut plan))
            }
            WriteCommand::Payout(command) => {
                WriteOutcome::Payout(audited_payout(command, balances, payouts, sheet, &mut plan))
            }
        };
        // An audit row names the request its command was submitted for.
        if let Some(Some(origin)) = origins.get(index) {
            plan.audit[audited..].iter_mut().for_each(|entry| entry.origin = Some(origin.clone()));
        }
        super::events::report(command, &outcome, marks, payouts, &mut plan);
        outcomes[index] = Some(outcome);
    }
    plan.holds = balances.hold_writes();
    plan.payouts = payouts.writes();
    (plan, outcomes.into_iter().map(|outcome| outcome.unwrap_or(WriteOutcome::NotRecorded)).collect())
}

/// Decides a payout command, with its audit row.
fn audited_payout(
    command: &PayoutCommand,
    balances: &mut BatchLedger<'_>,
    payouts: &mut PayoutStates,
    sheet: &mut BalanceSheet,
    plan: &mut Plan,
) -> PayoutOutcome {
    let id = command.payout_id();
    let before = if super::audit::is_audited(command) { payouts.payouts.get(&id).cloned() } else { None };
    let outcome = balances.decide_payout(command, payouts, sheet, plan);
    let after = payouts.payouts.get(&id);
    plan.audit.extend(super::audit::payout_entry(command, before.as_ref(), after, &outcome));
    outcome
}

/// The order a batch decides its commands in: every command in command order, except that the ones reading the
/// reconciliation a notice decides (lines, applies, accepts, finishes) come after all the others. So a notice's claim (a
/// late notice, a failed credit, a line it took) is seen by every line and apply of its batch, whatever their
/// order, and the notices keep their order relative to balances and payouts.
fn reconciliation_order(commands: &[WriteCommand]) -> Vec<usize> {
    let reads_reconciliation = |command: &WriteCommand| {
        matches!(
            command,
            WriteCommand::StatementLines(_)
                | WriteCommand::StatementApply(_)
                | WriteCommand::StatementAccept(_)
                | WriteCommand::StatementFinish(_)
        )
    };
    let (later, first): (Vec<usize>, Vec<usize>) =
        (0..commands.len()).partition(|&index| reads_reconciliation(&commands[index]));
    first.into_iter().chain(later).collect()
}

/// What a batch's reconciliation commands decided so far.
#[derive(Default)]
struct StatementState {
    /// The claims of the batch's notices, lines and applies, and its discrepancies as its commands leave them
    /// (so an accept and an apply of one discrepancy see each other).
    reconcile: BatchReconciliation,
    started_imports: HashSet<i64>,
    finishing: super::judging::FinishState,
}

impl StatementState {
    fn of_claims(claims: &Claims) -> StatementState {
        StatementState { reconcile: BatchReconciliation::of_claims(claims), ..StatementState::default() }
    }
}

/// What a reconciliation command reads of its batch: its index, the claims and the accounts.
struct BatchView<'a, 'b> {
    index: usize,
    claims: &'a Claims,
    accounts: &'a AccountMap<'b>,
}

/// Decides one reconciliation command of a batch.
fn decide_statement(
    command: &WriteCommand,
    batch: &BatchView<'_, '_>,
    state: &mut StatementState,
    sheet: &mut BalanceSheet,
    plan: &mut Plan,
) -> super::statements::StatementOutcome {
    let claims = batch.claims;
    match command {
        WriteCommand::StatementAccept(accept) => {
            super::statements::decide_accept(accept, &mut state.reconcile.discrepancies, plan)
        }
        WriteCommand::StatementBegin(begin) => super::statements::decide_begin(
            begin,
            claims.imports.get(&begin.sha256),
            &claims.import_accounts,
            &mut state.started_imports,
            plan,
        ),
        WriteCommand::StatementLines(lines) => super::statements::decide_lines(
            lines,
            claims.stored_lines.get(&batch.index).map_or(&[], Vec::as_slice),
            &claims.payment_candidates,
            &claims.line_payers,
            &mut state.reconcile.taken_payments,
            plan,
        ),
        WriteCommand::StatementApply(apply) => state.reconcile.apply(apply, claims, batch.accounts, sheet, plan),
        WriteCommand::StatementFinish(finish) => {
            // A pending line a notice of this batch took is matched already.
            let pending: Vec<_> =
                claims.pending_lines.iter().filter(|line| !state.reconcile.took_line(line.id)).cloned().collect();
            let view = super::judging::FinishView {
                pending: &pending,
                candidates: &claims.payment_candidates,
                payers: &claims.line_payers,
                unlined: &claims.unlined_payments,
                periods: &claims.section_periods,
            };
            let claimed = claims.imports.get(&finish.claim.sha256);
            let taken = &mut state.reconcile.taken_payments;
            super::judging::decide_finish(finish, claimed, &view, &mut state.finishing, taken, plan)
        }
        _ => super::statements::StatementOutcome::NotApplicable("not a reconciliation command".into()),
    }
}

/// Keeps the reason of a credit that just failed, for a replay later in the same batch.
fn remember_failure(failures: &mut HashMap<OperationId, String>, id: OperationId, outcome: &WriteOutcome) {
    if let WriteOutcome::NoticeFailed { reason, .. } = outcome {
        failures.insert(id, reason.clone());
    }
}

/// Judges a notice whose operation id is known: an exact replay answers what the original got (a duplicate, or
/// the original's failure), a notice with other data is a conflict.
fn compare_with_original(
    original: &BankNotice,
    notice: &BankNotice,
    raw: &[u8],
    failure: Option<&String>,
    plan: &mut Plan,
) -> WriteOutcome {
    let differences = original.differences(notice);
    if differences.is_empty() {
        return match failure {
            Some(reason) => WriteOutcome::NoticeFailed { reason: reason.clone(), replay: true },
            None => WriteOutcome::NoticeDuplicate,
        };
    }
    plan.conflicts.push(ConflictRecord {
        operation_id: notice.operation_id,
        differing_fields: differences.iter().map(|field| field.name()).collect::<Vec<_>>().join(","),
        notice: crate::store::kept_body(raw),
    });
    WriteOutcome::NoticeConflict { fields: differences, original_failed: failure.is_some() }
}

/// Credits a notice's organization from the bank inflow account, recording the notice's new status.
fn credit(
    notice: &BankNotice,
    transaction_id: Uuid,
    accounts: &AccountMap<'_>,
    sheet: &mut BalanceSheet,
    plan: &mut Plan,
    update_when_applied: bool,
) -> WriteOutcome {
    match super::reconcile::post_credit(notice, transaction_id, accounts, sheet, plan) {
        Ok(()) => {
            let kind = crate::events::EventType::BankPaymentCredited.as_str();
            if plan.wanted_events.wants(kind) {
                let data = crate::events::payloads::credited(notice, "webhook", transaction_id);
                plan.events.push(NewEvent::new(kind, data));
            }
            if update_when_applied {
                plan.notice_updates.push(NoticeUpdate {
                    operation_id: notice.operation_id,
                    status: NoticeStatus::Applied,
                    transaction_id: Some(transaction_id),
                    failure_reason: None,
                });
            }
            WriteOutcome::NoticeApplied
        }
        Err(error) => fail(notice, error, plan),
    }
}

fn fail(notice: &BankNotice, error: LedgerError, plan: &mut Plan) -> WriteOutcome {
    let reason = error.to_string();
    plan.notice_updates.push(NoticeUpdate {
        operation_id: notice.operation_id,
        status: NoticeStatus::Failed,
        transaction_id: None,
        failure_reason: Some(reason.clone()),
    });
    WriteOutcome::NoticeFailed { reason, replay: false }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "batch_reconcile_tests.rs"]
mod reconcile_tests;
