//! The user-balance service: submits balance operations to the ledger engine and keeps the idempotency
//! rules. Knows nothing of HTTP; the caller supplies how a result is rendered for storage with its key.

use payledger_core::BalanceOperation;

use crate::engine::balances::{BalanceCommand, BalanceOutcome, IdempotencyRequest, KeptRefusal, Renderer};
use crate::engine::batch::{WriteCommand, WriteOutcome};
use crate::engine::{EngineError, LedgerEngine};
use crate::idempotency::{IdempotencyKey, InFlight, InFlightKeys, fingerprint, refusal_fingerprint};
use crate::store::batch::StoredResponse;

/// An operation's `Idempotency-Key` and what identifies its endpoint.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The client's key, scoped to its caller.
    pub key: IdempotencyKey,
    /// The endpoint's stable name; the same key on another endpoint is a different request.
    pub endpoint: &'static str,
    /// How the result is rendered for storage.
    pub render: Renderer,
}

/// The user-balance service.
#[derive(Debug, Clone)]
pub struct Balances {
    engine: LedgerEngine,
    /// Keys of requests this process is applying right now.
    in_flight: InFlightKeys,
}

impl Balances {
    /// A service submitting to `engine`.
    pub fn new(engine: LedgerEngine) -> Balances {
        Balances { engine, in_flight: InFlightKeys::default() }
    }

    /// The engine this service submits to.
    pub fn engine(&self) -> &LedgerEngine {
        &self.engine
    }

    /// Applies an operation, at most once per idempotency key, audited under `by`. An error means nothing was
    /// applied.
    ///
    /// A key this process is applying is answered "in flight" at once; one another instance is applying is
    /// answered the same way by the batch transaction. A stored key is answered by the batch transaction
    /// with its stored response (one lookup there costs less than a separate read before it). Otherwise the
    /// key, the request's fingerprint and the rendered response are stored in the transaction that applies
    /// the operation.
    pub async fn apply(
        &self,
        operation: BalanceOperation,
        idempotency: Option<Idempotency>,
        by: Option<String>,
    ) -> Result<BalanceOutcome, EngineError> {
        let Some(idempotency) = idempotency else {
            return self.submit(BalanceCommand { operation, idempotency: None, by }).await;
        };
        let Some(_claim) = self.in_flight.claim(&idempotency.key) else {
            return Ok(BalanceOutcome::KeyInFlight);
        };
        self.record(Balances::command(operation, idempotency, by)).await
    }

    /// Marks `key` in flight in this process until the guard drops, or `None` if a request with it is being
    /// applied here already. The batch API holds one for each of its operations, so a batch and single
    /// requests with the same key meet here as two single requests do.
    pub fn claim(&self, key: &IdempotencyKey) -> Option<InFlight<'_>> {
        self.in_flight.claim(key)
    }

    /// The engine command that applies `operation` under its key, as [`Balances::apply`] submits it; the
    /// caller holds the key's claim ([`Balances::claim`]) until the outcome is known.
    pub fn command(operation: BalanceOperation, idempotency: Idempotency, by: Option<String>) -> WriteCommand {
        let fingerprint = fingerprint(idempotency.endpoint, &operation);
        let request = IdempotencyRequest { key: idempotency.key, fingerprint, render: idempotency.render };
        WriteCommand::Balance(BalanceCommand { operation, idempotency: Some(request), by })
    }

    /// The engine command that keeps an invalid request's refusal under its key, as [`Balances::refuse`]
    /// submits it.
    pub fn refusal(key: IdempotencyKey, endpoint: &'static str, body: &[u8], response: StoredResponse) -> WriteCommand {
        let fingerprint = refusal_fingerprint(endpoint, body);
        WriteCommand::KeepRefusal(KeptRefusal { key, fingerprint, response })
    }

    /// Keeps an invalid request's 4xx answer under its idempotency key (unless the key is already used), so
    /// the key answers the same whenever that request is retried, and cannot be used for another one.
    pub async fn refuse(
        &self,
        key: IdempotencyKey,
        endpoint: &'static str,
        body: &[u8],
        response: StoredResponse,
    ) -> Result<BalanceOutcome, EngineError> {
        let Some(_claim) = self.in_flight.claim(&key) else {
            return Ok(BalanceOutcome::KeyInFlight);
        };
        self.record(Balances::refusal(key, endpoint, body, response)).await
    }

    async fn submit(&self, command: BalanceCommand) -> Result<BalanceOutcome, EngineError> {
        self.record(WriteCommand::Balance(command)).await
    }

    async fn record(&self, command: WriteCommand) -> Result<BalanceOutcome, EngineError> {
        Ok(balance_outcome(self.engine.submit(command).await?))
    }
}

/// A balance command's outcome, counted in the metrics.
fn balance_outcome(outcome: WriteOutcome) -> BalanceOutcome {
    match outcome {
        WriteOutcome::Balance(outcome) => {
            count_balance(&outcome);
            outcome
        }
        // The engine answers a balance command with a balance outcome; anything else is a defect.
        _ => BalanceOutcome::Broken("the engine answered a balance command with another outcome".into()),
    }
}

/// Counts a balance operation's outcome in the metrics.
pub fn count_balance(outcome: &BalanceOutcome) {
    metrics::counter!("payledger_balance_operations_total", "outcome" => outcome_label(outcome)).increment(1);
}

fn outcome_label(outcome: &BalanceOutcome) -> &'static str {
    match outcome {
        BalanceOutcome::Executed { result: Ok(_), .. } => "applied",
        BalanceOutcome::Executed { result: Err(_), .. } => "refused",
        BalanceOutcome::Replayed(_) => "replayed",
        BalanceOutcome::KeyReused => "key_reused",
        BalanceOutcome::KeyInFlight => "key_in_flight",
        BalanceOutcome::Broken(_) => "broken",
        BalanceOutcome::Kept(_) => "refused_invalid",
    }
}
