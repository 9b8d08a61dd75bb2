//! The batch API's service: many operations in one submission. Each is applied exactly as its single
//! endpoint applies it (the same idempotency key, fingerprint, stored answer, audit row and in-flight claim,
//! so a batch and single requests with the same key meet as two single requests do), either each on its own
//! or all in one ledger transaction. Knows nothing of HTTP; the caller renders every answer.

use bytes::Bytes;
use payledger_core::{BalanceOperation, BankNotice};

use crate::balances::{Balances, Idempotency, count_balance};
use crate::engine::balances::BalanceOutcome;
use crate::engine::batch::{WriteCommand, WriteOutcome};
use crate::engine::{Accept, AtomicOutcome, EngineError};
use crate::fields::FieldErrors;
use crate::idempotency::{IdempotencyKey, InFlight};
use crate::store::batch::StoredResponse;
use crate::webhook::intake::Intake;

/// One operation of a batch, parsed.
#[derive(Debug)]
pub enum BulkOperation {
    /// A bank notice, exactly once by its operation id.
    Notice {
        /// The notice.
        notice: BankNotice,
        /// Its JSON as received, kept if it conflicts with the stored one.
        raw: Bytes,
    },
    /// A user-balance operation under its idempotency key.
    Balance {
        /// What to do.
        operation: BalanceOperation,
        /// Its key, endpoint and renderer.
        idempotency: Idempotency,
    },
    /// An invalid balance operation: its 4xx answer is kept under its key, as the single endpoint keeps it.
    Refused {
        /// The key.
        key: IdempotencyKey,
        /// The endpoint its type names.
        endpoint: &'static str,
        /// The operation's JSON as received.
        raw: Bytes,
        /// The 4xx answer.
        response: StoredResponse,
    },
    /// An invalid bank notice, kept for operators as the webhook keeps one.
    RejectedNotice {
        /// Why each field is invalid.
        details: FieldErrors,
        /// The operation's JSON as received.
        raw: Bytes,
    },
}

impl BulkOperation {
    fn key(&self) -> Option<&IdempotencyKey> {
        match self {
            BulkOperation::Balance { idempotency, .. } => Some(&idempotency.key),
            BulkOperation::Refused { key, .. } => Some(key),
            BulkOperation::Notice { .. } | BulkOperation::RejectedNotice { .. } => None,
        }
    }
}

/// What became of an atomic batch.
#[derive(Debug)]
pub struct AtomicResult {
    /// Whether every operation took effect (committed together); otherwise none did.
    pub committed: bool,
    /// Each operation's outcome: what it did, or (not committed) what it would have done; `None` for one that
    /// was not decided because another was refused before the batch reached the ledger.
    pub outcomes: Vec<Option<WriteOutcome>>,
}

/// The batch service, over the services whose rules it shares.
#[derive(Debug, Clone, Copy)]
pub struct Bulk<'a> {
    /// User-balance operations: keys in flight, commands.
    pub balances: &'a Balances,
    /// Bank notices.
    pub intake: &'a Intake,
}

impl Bulk<'_> {
    /// Applies each operation on its own, as its single endpoint would: a refusal or a failure of one leaves
    /// the others. One outcome per operation, in order. `Err` means nothing was applied (the ledger had no
    /// room for the whole batch).
    pub async fn apply_each(
        &self,
        operations: Vec<BulkOperation>,
        by: Option<String>,
    ) -> Result<Vec<Result<WriteOutcome, EngineError>>, EngineError> {
        let claims = self.claim(&operations);
        let mut outcomes: Vec<Option<Result<WriteOutcome, EngineError>>> = Vec::with_capacity(operations.len());
        let mut commands = Vec::with_capacity(operations.len());
        for (operation, claimed) in operations.into_iter().zip(claims.iter()) {
            if claimed {
                commands.push(self.command(operation, by.clone()));
                outcomes.push(None);
            } else {
                outcomes.push(Some(Ok(WriteOutcome::Balance(BalanceOutcome::KeyInFlight))));
            }
        }
        let applied = self.balances.engine().submit_many(commands).await?;
        // Counted as the single endpoints count them: what the engine answered, not the keys refused here.
        applied.iter().flatten().for_each(|outcome| self.count(outcome));
        let mut applied = applied.into_iter();
        let outcomes = outcomes
            .into_iter()
            .map(|outcome| outcome.or_else(|| applied.next()).unwrap_or(Err(EngineError::Stopped)))
            .collect::<Vec<_>>();
        drop(claims);
        Ok(outcomes)
    }

    /// Applies every operation in one ledger transaction, or none: committed only if `accept` holds for every
    /// outcome. `Err` means nothing was applied.
    pub async fn apply_atomic(
        &self,
        operations: Vec<BulkOperation>,
        by: Option<String>,
        accept: Accept,
    ) -> Result<AtomicResult, EngineError> {
        let claims = self.claim(&operations);
        if claims.iter().any(|claimed| !claimed) {
            // A key another request of this process is applying: nothing is submitted.
            let outcomes = claims
                .iter()
                .map(|claimed| (!claimed).then_some(WriteOutcome::Balance(BalanceOutcome::KeyInFlight)))
                .collect();
            return Ok(AtomicResult { committed: false, outcomes });
        }
        let commands = operations.into_iter().map(|operation| self.command(operation, by.clone())).collect();
        let AtomicOutcome { committed, outcomes } = self.balances.engine().submit_atomic(commands, accept).await?;
        if committed {
            outcomes.iter().for_each(|outcome| self.count(outcome));
        }
        drop(claims);
        Ok(AtomicResult { committed, outcomes: outcomes.into_iter().map(Some).collect() })
    }

    /// Claims each operation's key in this process; `false` for one that is in flight already (or repeats an
    /// earlier operation's key). The claims last as long as the returned guards.
    fn claim<'k>(&'k self, operations: &[BulkOperation]) -> ClaimSet<'k> {
        ClaimSet(operations.iter().map(|operation| operation.key().map(|key| self.balances.claim(key))).collect())
    }

    fn command(&self, operation: BulkOperation, by: Option<String>) -> WriteCommand {
        match operation {
            BulkOperation::Notice { notice, raw } => self.intake.command(notice, raw),
            BulkOperation::Balance { operation, idempotency } => Balances::command(operation, idempotency, by),
            BulkOperation::Refused { key, endpoint, raw, response } => Balances::refusal(key, endpoint, &raw, response),
            BulkOperation::RejectedNotice { details, raw } => Intake::rejection("invalid_data", &details, &raw),
        }
    }

    /// Counts an outcome in the metrics its single endpoint counts it in.
    fn count(&self, outcome: &WriteOutcome) {
        match outcome {
            WriteOutcome::Balance(balance) => count_balance(balance),
            // A rejected notice was counted when its command was made.
            WriteOutcome::Stored => {}
            other => self.intake.received(other),
        }
    }
}

/// The keys a batch holds in flight: one entry per operation, `None` for one without a key.
struct ClaimSet<'a>(Vec<Option<Option<InFlight<'a>>>>);

impl ClaimSet<'_> {
    /// Whether each operation may go on: it has no key, or its key is now claimed.
    fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        self.0.iter().map(|claim| !matches!(claim, Some(None)))
    }
}
