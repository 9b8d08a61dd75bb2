//! The user-balance service: submits balance operations to the ledger engine and keeps the idempotency
//! rules. Knows nothing of HTTP; the caller supplies how a result is rendered for storage with its key.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use payledger_core::BalanceOperation;
use sha2::{Digest, Sha256};

use crate::engine::balances::{
    BalanceCommand, BalanceOutcome, IdempotencyRequest, KeptRefusal, Renderer, StoredResponse,
};
use crate::engine::batch::{WriteCommand, WriteOutcome};
use crate::engine::{EngineError, LedgerEngine};

/// An operation's `Idempotency-Key` and what identifies its endpoint.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The client's key.
    pub key: String,
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
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl Balances {
    /// A service submitting to `engine`.
    pub fn new(engine: LedgerEngine) -> Balances {
        Balances { engine, in_flight: Arc::default() }
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
        let fingerprint = fingerprint(idempotency.endpoint, &operation);
        let Some(_claim) = InFlight::claim(&self.in_flight, &idempotency.key) else {
            return Ok(BalanceOutcome::KeyInFlight);
        };
        let request = IdempotencyRequest { key: idempotency.key, fingerprint, render: idempotency.render };
        self.submit(BalanceCommand { operation, idempotency: Some(request), by }).await
    }

    /// Keeps an invalid request's 4xx answer under its idempotency key (unless the key is already used), so
    /// the key answers the same whenever that request is retried, and cannot be used for another one.
    pub async fn refuse(
        &self,
        key: String,
        endpoint: &'static str,
        body: &[u8],
        response: StoredResponse,
    ) -> Result<BalanceOutcome, EngineError> {
        let Some(_claim) = InFlight::claim(&self.in_flight, &key) else {
            return Ok(BalanceOutcome::KeyInFlight);
        };
        let mut digest = Sha256::new();
        digest.update(endpoint.as_bytes());
        digest.update(b"\ninvalid\n");
        digest.update(body);
        let fingerprint = crate::hex::encode(&digest.finalize());
        self.record(WriteCommand::KeepRefusal(KeptRefusal { key, fingerprint, response })).await
    }

    async fn submit(&self, command: BalanceCommand) -> Result<BalanceOutcome, EngineError> {
        self.record(WriteCommand::Balance(command)).await
    }

    async fn record(&self, command: WriteCommand) -> Result<BalanceOutcome, EngineError> {
        match self.engine.submit(command).await? {
            WriteOutcome::Balance(outcome) => {
                metrics::counter!("payledger_balance_operations_total", "outcome" => outcome_label(&outcome))
                    .increment(1);
                Ok(outcome)
            }
            // The engine answers a balance command with a balance outcome; anything else is a defect.
            _ => Ok(BalanceOutcome::Broken("the engine answered a balance command with another outcome".into())),
        }
    }
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

/// A key marked in flight in this process until dropped, also when the request is cancelled.
pub(crate) struct InFlight<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl<'a> InFlight<'a> {
    pub(crate) fn claim(set: &'a Mutex<HashSet<String>>, key: &str) -> Option<InFlight<'a>> {
        let inserted = set.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_owned());
        inserted.then(|| InFlight { set, key: key.to_owned() })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

/// The request's identity: SHA-256 over the endpoint and the canonical JSON of the parsed operation.
///
/// Canonical JSON has sorted keys, no spaces, and amounts as exact decimal strings, so the same request
/// written differently (key order, whitespace, `100` vs `"100.00"`) has the same fingerprint.
pub fn fingerprint(endpoint: &str, operation: &BalanceOperation) -> String {
    crate::hex::encode(&Sha256::digest(format!("{endpoint}\n{}", canonical_json(operation)).as_bytes()))
}

/// The operation as canonical JSON (serde_json's maps keep keys sorted).
pub fn canonical_json(operation: &BalanceOperation) -> String {
    canonical_value(operation).to_string()
}

/// The operation as a JSON value: its fields with exact decimal amounts.
pub fn canonical_value(operation: &BalanceOperation) -> serde_json::Value {
    use serde_json::json;
    match operation {
        BalanceOperation::Deposit { user, amount } => {
            json!({"user_id": user.get(), "amount": amount.to_decimal_string()})
        }
        BalanceOperation::Withdraw { user, amount } => {
            json!({"user_id": user.get(), "amount": amount.to_decimal_string()})
        }
        BalanceOperation::Reserve { key, amount } | BalanceOperation::Deduct { key, amount } => json!({
            "user_id": key.user.get(), "service_id": key.service.get(), "order_id": key.order.get(),
            "amount": amount.to_decimal_string(),
        }),
        BalanceOperation::Release { key, amount } => json!({
            "user_id": key.user.get(), "service_id": key.service.get(), "order_id": key.order.get(),
            "amount": amount.map(|amount| amount.to_decimal_string()),
        }),
        BalanceOperation::Transfer { sender, recipient, amount } => json!({
            "sender_id": sender.get(), "recipient_id": recipient.get(), "amount": amount.to_decimal_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payledger_core::{Currency, Money, UserId};

    fn deposit(minor: i64) -> BalanceOperation {
        BalanceOperation::Deposit {
            user: UserId::new(1).unwrap_or_else(|_| panic!("id")),
            amount: Money::from_minor(minor, Currency::RUB),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_writes_exact_amounts() {
        assert_eq!(canonical_json(&deposit(10_000)), r#"{"amount":"100.00","user_id":1}"#);
    }

    #[test]
    fn the_fingerprint_depends_on_the_endpoint_and_the_request() {
        let same = fingerprint("add_funds", &deposit(100));
        assert_eq!(same, fingerprint("add_funds", &deposit(100)));
        assert_eq!(same.len(), 64);
        assert_ne!(same, fingerprint("withdraw_funds", &deposit(100)));
        assert_ne!(same, fingerprint("add_funds", &deposit(101)));
    }

    #[test]
    fn an_in_flight_key_is_released_when_its_request_ends() {
        let set = Mutex::new(HashSet::new());
        let first = InFlight::claim(&set, "k");
        assert!(first.is_some());
        assert!(InFlight::claim(&set, "k").is_none());
        drop(first);
        assert!(InFlight::claim(&set, "k").is_some());
    }
}
