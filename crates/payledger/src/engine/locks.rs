//! The first phases of a batch: which of its commands are balance and payout commands, and the claims and
//! row locks it takes before its accounts, in the one lock order every writer follows.

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::batch::{Claims, WriteCommand, notice_claims, recorded_to_apply};
use super::{balances, payouts, reconcile, statement_claims, statements};
use crate::store::BatchTx;
use crate::store::StoreError;
use crate::store::batch::{HoldState, KeyClaims, NoticeClaim, PayoutState, hold_reference};

/// A batch's balance and payout commands, in command order.
pub(super) struct CommandKinds<'a> {
    pub(super) balances: Vec<&'a balances::BalanceCommand>,
    pub(super) payouts: Vec<&'a payouts::PayoutCommand>,
}

impl<'a> CommandKinds<'a> {
    pub(super) fn of(commands: &'a [WriteCommand]) -> CommandKinds<'a> {
        let mut kinds = CommandKinds { balances: Vec::new(), payouts: Vec::new() };
        for command in commands {
            match command {
                WriteCommand::Balance(command) => kinds.balances.push(command),
                WriteCommand::Payout(command) => kinds.payouts.push(command),
                WriteCommand::IntakeNotice { .. }
                | WriteCommand::ApplyRecorded { .. }
                | WriteCommand::RecordRejected(_)
                | WriteCommand::KeepRefusal(_)
                | WriteCommand::ClaimJobs(_)
                | WriteCommand::Deliveries(_)
                | WriteCommand::StatementAccept(_)
                | WriteCommand::StatementBegin(_)
                | WriteCommand::StatementLines(_)
                | WriteCommand::StatementApply(_)
                | WriteCommand::StatementFinish(_) => {}
            }
        }
        kinds
    }
}

/// What a batch claimed and locked before its accounts.
pub(super) struct Locked {
    /// The notice rows it tried to insert.
    pub(super) claim_rows: Vec<NoticeClaim>,
    /// What it learned about notices: inserted, stored before, waiting to be applied.
    pub(super) claims: Claims,
    /// Its idempotency keys: stored, or in use elsewhere.
    pub(super) keys: KeyClaims,
    /// The payouts its changes name.
    pub(super) payouts: HashMap<Uuid, PayoutState>,
    /// The jobs its payout changes end: their status and lease owner.
    pub(super) jobs: HashMap<i64, (String, Option<String>)>,
    /// The reservations it reads or settles, by reference.
    pub(super) holds: HashMap<String, HoldState>,
}

/// Claims a batch's new notices and keys and locks the rows it reads, in the lock order (each phase
/// ascending): new notice ids, idempotency keys, recorded notices waiting to be applied, payouts, their jobs,
/// reservations, statement imports (by SHA-256), reconciliation discrepancies.
pub(super) async fn lock_rows<T: BatchTx>(
    tx: &mut T,
    commands: &[WriteCommand],
    kinds: &CommandKinds<'_>,
    now: OffsetDateTime,
) -> Result<Locked, StoreError> {
    // Phase 0: every reconciliation decision (a notice's, an apply's, a statement command's) is taken under
    // one lock, so instances sharing a PostgreSQL database decide them one at a time.
    if commands.iter().any(reconcile::decides_reconciliation) {
        tx.lock_reconciliation().await?;
    }
    let claim_rows = notice_claims(commands);
    let inserted = tx.claim_notices(&claim_rows, now).await?;
    let known: Vec<_> = claim_rows.iter().map(|c| c.notice.operation_id).filter(|id| !inserted.contains(id)).collect();
    let stored = tx.stored_notices(&known).await?;
    let keys = sorted_unique(
        kinds.balances.iter().filter_map(|c| c.idempotency.as_ref().map(|i| i.key.as_str().to_owned())).chain(
            commands.iter().filter_map(|c| match c {
                WriteCommand::KeepRefusal(refusal) => Some(refusal.key.as_str().to_owned()),
                WriteCommand::Payout(payouts::PayoutCommand::Create(new)) => {
                    new.idempotency.as_ref().map(|key| key.key.as_str().to_owned())
                }
                _ => None,
            }),
        ),
    );
    let keys = tx.claim_keys(&keys).await?;
    let waiting = tx.lock_waiting(&recorded_to_apply(commands)).await?;
    let changed_payouts = sorted_unique(kinds.payouts.iter().filter_map(|c| match c {
        payouts::PayoutCommand::Change { id, .. } => Some(*id),
        payouts::PayoutCommand::Create(_) => None,
    }));
    let payouts = tx.lock_payouts(&changed_payouts).await?;
    let ended_jobs = sorted_unique(kinds.payouts.iter().filter_map(|c| match c {
        payouts::PayoutCommand::Change { job: Some(job), .. } => Some(job.job_id),
        _ => None,
    }));
    let jobs = tx.lock_jobs(&ended_jobs).await?;
    let references = sorted_unique(
        kinds
            .balances
            .iter()
            .filter_map(|c| c.operation.order().map(|k| k.reference()))
            .chain(kinds.payouts.iter().map(|c| hold_reference(c.payout_id()))),
    );
    let holds = tx.lock_holds(&references).await?;
    let accepted = sorted_unique(commands.iter().filter_map(|c| match c {
        WriteCommand::StatementAccept(accept) => Some(accept.discrepancy_id),
        _ => None,
    }));
    let mut imports: Vec<_> = commands
        .iter()
        .filter_map(|c| match c {
            WriteCommand::StatementBegin(begin) => Some(statements::import_claim(begin)),
            WriteCommand::StatementFinish(finish) => Some(finish.claim.clone()),
            _ => None,
        })
        .collect();
    imports.sort_by_key(|claim| claim.sha256);
    imports.dedup_by_key(|claim| claim.sha256);
    let imports = tx.claim_imports(&imports, now).await?;
    let discrepancies = tx.lock_discrepancies(&accepted).await?;
    let mut claims = Claims { inserted, stored, waiting, discrepancies, imports, ..Claims::default() };
    reconcile::load_claims(tx, commands, &mut claims).await?;
    statement_claims::statements_claims(tx, commands, &mut claims).await?;
    Ok(Locked { claim_rows, claims, keys, payouts, jobs, holds })
}

/// The values sorted ascending without repeats: the order in which a batch locks keys.
pub(super) fn sorted_unique<T: Ord>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut values: Vec<T> = values.collect();
    values.sort();
    values.dedup();
    values
}
