//! The payout service: creating payouts (validated, the full number encrypted, the source's money held and the
//! processing job enqueued in one transaction) and changing them, always through the ledger engine. Knows
//! nothing of HTTP.

use std::sync::Arc;

use payledger_core::Money;
use payledger_core::payout::{Actor, RecipientDetails};
use uuid::Uuid;

use crate::engine::batch::{WriteCommand, WriteOutcome};
use crate::engine::payouts::{NewPayout, PayoutChange, PayoutCommand, PayoutKey, PayoutOutcome, PayoutRenderer};
use crate::engine::{EngineError, LedgerEngine};
use crate::idempotency::{IdempotencyKey, InFlightKeys};
use crate::store::batch::{JobEnd, PayoutSource, StoredRecipient};
use crate::vault::{Vault, VaultError};

/// Why the service could not give a payout command an outcome.
#[derive(Debug, thiserror::Error)]
pub enum PayoutServiceError {
    /// The ledger engine refused or failed the batch.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The card vault could not encrypt or decrypt.
    #[error("card vault: {0}")]
    Vault(#[from] VaultError),
}

/// A validated payout request.
#[derive(Debug, Clone)]
pub struct PayoutRequest {
    /// The amount.
    pub amount: Money,
    /// Who is paid, with the full number.
    pub recipient: RecipientDetails,
    /// Free text, at most 500 characters.
    pub description: String,
    /// The account it is drawn from, if any.
    pub source: Option<PayoutSource>,
}

/// The associated data that binds an encrypted number to its payout (and to its column).
pub fn secret_binding(id: Uuid) -> Vec<u8> {
    format!("payout:{id}:recipient_number").into_bytes()
}

/// The payout service.
#[derive(Debug, Clone)]
pub struct Payouts {
    engine: LedgerEngine,
    vault: Arc<Vault>,
    max_attempts: i32,
    /// Idempotency keys of creations this process is applying right now.
    in_flight: InFlightKeys,
}

impl Payouts {
    /// A service submitting to `engine` and encrypting numbers with `vault`.
    pub fn new(engine: LedgerEngine, vault: Arc<Vault>, max_attempts: i32) -> Payouts {
        Payouts { engine, vault, max_attempts, in_flight: InFlightKeys::default() }
    }

    /// The card vault (workers decrypt with it).
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The card vault, to share with the other secrets this process keeps (webhook endpoints' signing secrets).
    pub fn shared_vault(&self) -> Arc<Vault> {
        Arc::clone(&self.vault)
    }

    /// The ledger engine it submits to, for the other workers of this process (event deliveries).
    pub fn engine(&self) -> LedgerEngine {
        self.engine.clone()
    }

    /// Creates a payout: pending, its source's money held, its processing enqueued, all in one transaction.
    /// With an idempotency key, the key, a keyed fingerprint of the request and the answer are stored in that
    /// transaction; the same key with the same request replays the answer, with another request it is refused.
    pub async fn create(
        &self,
        request: PayoutRequest,
        key: Option<(IdempotencyKey, PayoutRenderer)>,
        by: Option<String>,
    ) -> Result<PayoutOutcome, PayoutServiceError> {
        let idempotency = key.map(|(key, render)| PayoutKey { key, fingerprint: self.fingerprint(&request), render });
        let _claim = match &idempotency {
            Some(key) => match self.in_flight.claim(&key.key) {
                Some(claim) => Some(claim),
                None => return Ok(PayoutOutcome::KeyInFlight),
            },
            None => None,
        };
        let id = Uuid::now_v7();
        let number = match &request.recipient {
            RecipientDetails::Card { number, .. } => number,
            RecipientDetails::BankAccount { account_number, .. } => account_number,
        };
        let secret = self.vault.encrypt(number, &secret_binding(id))?;
        let recipient = StoredRecipient {
            kind: request.recipient.kind(),
            last4: request.recipient.last4().to_owned(),
            holder: request.recipient.holder().to_owned(),
            bik: match &request.recipient {
                RecipientDetails::BankAccount { bik, .. } => Some(bik.clone()),
                RecipientDetails::Card { .. } => None,
            },
            secret,
        };
        let new = NewPayout {
            id,
            amount: request.amount,
            recipient,
            description: request.description,
            source: request.source,
            max_attempts: self.max_attempts,
            idempotency,
            by,
        };
        Ok(self.submit(PayoutCommand::Create(new)).await?)
    }

    /// The request's identity under the vault's fingerprint key: canonical JSON (sorted keys, exact amounts)
    /// of everything the request asks for, so the same request written differently is the same request.
    fn fingerprint(&self, request: &PayoutRequest) -> String {
        let recipient = match &request.recipient {
            RecipientDetails::Card { number, holder } => {
                serde_json::json!({"type": "card", "number": number, "holder": holder})
            }
            RecipientDetails::BankAccount { account_number, bik, holder } => serde_json::json!({
                "type": "bank_account", "account_number": account_number, "bik": bik, "holder": holder,
            }),
        };
        let source =
            request.source.as_ref().map(|source| serde_json::json!({"kind": source.kind(), "key": source.key()}));
        let canonical = serde_json::json!({
            "amount": request.amount.to_decimal_string(),
            "currency": request.amount.currency().code(),
            "recipient_details": recipient,
            "description": request.description,
            "source": source,
        });
        self.vault.fingerprint(format!("payouts\n{canonical}").as_bytes())
    }

    /// Changes a payout as `actor`, ending `job` in the same transaction if given; audited under `by`.
    pub async fn change(
        &self,
        id: Uuid,
        change: PayoutChange,
        actor: Actor,
        job: Option<JobEnd>,
        by: Option<String>,
    ) -> Result<PayoutOutcome, EngineError> {
        self.submit(PayoutCommand::Change { id, change, actor, job, by }).await
    }

    /// Puts a failed payout back to pending with a fresh job, closing its dead job (an operator's retry).
    pub async fn retry(&self, id: Uuid, dead_job: i64, by: Option<String>) -> Result<PayoutOutcome, EngineError> {
        let end = JobEnd { job_id: dead_job, owner: None, dead: false, error: None };
        let change = PayoutChange::Retry { max_attempts: self.max_attempts };
        self.change(id, change, Actor::Operator, Some(end), by).await
    }

    /// Claims up to `limit` due jobs for `owner` through the ledger engine's queue (SQLite: the one write lock
    /// is then shared in arrival order with the ledger's batches, instead of being raced for).
    pub async fn claim_jobs(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<crate::store::payouts::ClaimedJob>, EngineError> {
        let claim = crate::engine::payouts::JobClaim { owner: owner.to_owned(), lease, limit };
        match self.engine.submit(WriteCommand::ClaimJobs(claim)).await? {
            WriteOutcome::Jobs(jobs) => Ok(jobs),
            _ => Ok(Vec::new()),
        }
    }

    async fn submit(&self, command: PayoutCommand) -> Result<PayoutOutcome, EngineError> {
        match self.engine.submit(WriteCommand::Payout(command)).await? {
            WriteOutcome::Payout(outcome) => Ok(outcome),
            _ => Ok(PayoutOutcome::Broken("the engine answered a payout command with another outcome".into())),
        }
    }
}
