//! Payout requests decided without I/O: creation (with the source's hold and the processing job), status
//! changes through the one `transition()` table, and their ledger effects on the source account.
//!
//! A payout with a source holds its amount on that account under the reservation `payout:<id>`. Completion
//! captures the hold into the payout clearing account; failure and cancellation release it; a return moves the
//! money back from the clearing account. A payout without a source changes no balance.

use std::collections::HashMap;

use payledger_core::balances::{ActivityKind, HoldStatus};
use payledger_core::payout::{
    Actor, DeleteAction, PayoutStatus, TransitionError, delete_action, is_editable, transition,
};
use payledger_core::{AccountId, BalanceSheet, HoldChange, LedgerError, Money, Posting, UserId};
use uuid::Uuid;

use super::balances::BatchLedger;
use crate::store::batch::{ActivityLine, HoldState, NewTransaction, Plan, StoredResponse};
use crate::store::batch::{
    JobEnd, NewJob, PROCESS_PAYOUT_JOB, PayoutEvent, PayoutSource, PayoutState, StoredRecipient, hold_reference,
};

/// The ledger transaction kinds of payouts.
const PAYOUT_KIND: &str = "payout";
const PAYOUT_RETURN_KIND: &str = "payout_return";

/// Renders a payout creation's result for storage with its idempotency key (supplied by the HTTP layer).
pub type PayoutRenderer = fn(&Result<crate::store::payouts::PayoutView, PayoutError>) -> StoredResponse;

/// A payout creation's `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct PayoutKey {
    /// The client's key, scoped to its caller.
    pub key: crate::idempotency::IdempotencyKey,
    /// A keyed digest of the request (it holds a card number, so a plain hash would not do).
    pub fingerprint: String,
    /// How the result is rendered for storage.
    pub render: PayoutRenderer,
}

/// A payout to create.
#[derive(Debug, Clone)]
pub struct NewPayout {
    /// Its id (also the gateway's idempotency key).
    pub id: Uuid,
    /// The amount.
    pub amount: Money,
    /// Who is paid.
    pub recipient: StoredRecipient,
    /// Free text.
    pub description: String,
    /// The account it is drawn from, if any.
    pub source: Option<PayoutSource>,
    /// How many gateway attempts its job gets.
    pub max_attempts: i32,
    /// The client's idempotency key, if any.
    pub idempotency: Option<PayoutKey>,
    /// The user who asked, for the audit log.
    pub by: Option<String>,
}

/// A change asked of an existing payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutChange {
    /// Move to another status.
    Status {
        /// The new status.
        to: PayoutStatus,
        /// Why (a failure's reason).
        reason: Option<String>,
        /// The gateway's reference (on completion).
        reference: Option<String>,
    },
    /// An operator's edit: a new description (pending, never sent), a new status (`cancelled` or
    /// `returned`), or both, applied together or not at all.
    Edit {
        /// The new description.
        description: Option<String>,
        /// The new status.
        status: Option<PayoutStatus>,
    },
    /// Put a failed payout back to pending with a fresh job (its source's money held again).
    Retry {
        /// Attempts the new job gets.
        max_attempts: i32,
    },
    /// Cancel a pending payout, or archive a cancelled one.
    Delete,
    /// Count one more gateway attempt (a worker is about to call the gateway).
    Attempt,
}

/// A payout command as submitted to the engine.
#[derive(Debug, Clone)]
pub enum PayoutCommand {
    /// Create a payout (and hold its source's money, and enqueue its processing).
    Create(NewPayout),
    /// Change a payout.
    Change {
        /// Which payout.
        id: Uuid,
        /// What to change.
        change: PayoutChange,
        /// Who asks.
        actor: Actor,
        /// The job to end with it, if a worker asks.
        job: Option<JobEnd>,
        /// The user who asked, for the audit log (`None` for workers and the gateway).
        by: Option<String>,
    },
}

impl PayoutCommand {
    /// The payout this command reads or creates.
    pub fn payout_id(&self) -> Uuid {
        match self {
            PayoutCommand::Create(new) => new.id,
            PayoutCommand::Change { id, .. } => *id,
        }
    }

    /// The source account this command may need.
    pub fn source(&self) -> Option<&PayoutSource> {
        match self {
            PayoutCommand::Create(new) => new.source.as_ref(),
            PayoutCommand::Change { .. } => None,
        }
    }
}

/// Why a payout command was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    /// No such payout (or it is archived).
    #[error("payout not found")]
    NotFound,
    /// The change is not allowed from the payout's status.
    #[error("{0}")]
    Transition(#[from] TransitionError),
    /// The payout cannot be deleted in its status.
    #[error("{0}")]
    NotDeletable(payledger_core::payout::DeleteError),
    /// The worker no longer holds the job (its lease expired and another worker took it), or the job is
    /// not in the state the change needs.
    #[error("job {0} is no longer this worker's")]
    LeaseLost(i64),
    /// The payout's fields cannot change in its status.
    #[error("a {} payout cannot be edited", .0.as_str())]
    NotEditable(PayoutStatus),
    /// The source account does not exist.
    #[error("the source {kind} {key} has no account")]
    UnknownSource {
        /// `organization` or `user`.
        kind: &'static str,
        /// The INN or user id.
        key: String,
    },
    /// The source account holds another currency.
    #[error("the source account holds RUB, not {0}")]
    CurrencyMismatch(&'static str),
    /// The source's available balance is too small.
    #[error("insufficient funds")]
    InsufficientFunds {
        /// What was available, in minor units.
        available: i64,
    },
    /// A balance would leave the ledger's range.
    #[error("the balance would exceed the ledger's limit")]
    Overflow,
}

/// What became of a payout command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutOutcome {
    /// Created or changed; the payout as it now is.
    Done(Box<PayoutState>),
    /// Refused.
    Refused(PayoutError),
    /// The engine could not decide the command (a defect); nothing was stored.
    Broken(String),
    /// A keyed creation's result (created or refused), stored with its key: answer exactly this.
    Answered(StoredResponse),
    /// The key was used before for the same request: its stored answer.
    Replayed(StoredResponse),
    /// The key was used before for another request.
    KeyReused,
    /// Another request with the key is being applied right now.
    KeyInFlight,
}

/// The payout as the API shows it, from the batch's state and the recipient it stores.
pub fn view_of(state: &PayoutState, recipient: &StoredRecipient) -> crate::store::payouts::PayoutView {
    crate::store::payouts::PayoutView {
        state: state.clone(),
        recipient_type: recipient.kind.to_owned(),
        recipient_last4: recipient.last4.clone(),
        recipient_holder: recipient.holder.clone(),
        recipient_bik: recipient.bik.clone(),
        recipient_secret: recipient.secret.clone(),
    }
}

/// The payouts one batch reads and changes.
#[derive(Debug, Default)]
pub struct PayoutStates {
    /// By id: the locked stored payouts and the ones this batch creates.
    pub payouts: HashMap<Uuid, PayoutState>,
    /// Source accounts found for new payouts.
    pub sources: HashMap<PayoutSource, AccountId>,
    /// The jobs the batch's changes end, locked: their status and lease owner.
    pub jobs: HashMap<i64, (String, Option<String>)>,
    /// The jobs the batch's claims got, by the claiming command's position in the batch.
    pub claimed_jobs: HashMap<usize, Vec<crate::store::payouts::ClaimedJob>>,
    /// Ids of payouts this batch changed, in the order first changed.
    changed: Vec<Uuid>,
}

impl PayoutStates {
    /// The batch's view over the locked payouts and found source accounts.
    pub fn new(payouts: HashMap<Uuid, PayoutState>, sources: HashMap<PayoutSource, AccountId>) -> PayoutStates {
        PayoutStates { payouts, sources, jobs: HashMap::new(), claimed_jobs: HashMap::new(), changed: Vec::new() }
    }

    /// The payouts this batch created or changed, in their final state.
    pub fn writes(&self) -> Vec<PayoutState> {
        self.changed.iter().filter_map(|id| self.payouts.get(id).cloned()).collect()
    }

    fn store(&mut self, state: PayoutState) {
        if !self.changed.contains(&state.id) {
            self.changed.push(state.id);
        }
        self.payouts.insert(state.id, state);
    }
}

impl BatchLedger<'_> {
    /// Decides one payout command, adding its rows to `plan`.
    pub fn decide_payout(
        &mut self,
        command: &PayoutCommand,
        payouts: &mut PayoutStates,
        sheet: &mut BalanceSheet,
        plan: &mut Plan,
    ) -> PayoutOutcome {
        let decided = match command {
            PayoutCommand::Create(new) => {
                let Some(key) = &new.idempotency else { return outcome(self.create_payout(new, payouts, sheet, plan)) };
                if let Some(answered) = self.known_key(key.key.as_str(), &key.fingerprint) {
                    return match answered {
                        super::balances::BalanceOutcome::Replayed(response) => PayoutOutcome::Replayed(response),
                        super::balances::BalanceOutcome::KeyReused => PayoutOutcome::KeyReused,
                        _ => PayoutOutcome::KeyInFlight,
                    };
                }
                match self.create_payout(new, payouts, sheet, plan) {
                    Ok(result) => {
                        let response = (key.render)(&result.map(|state| view_of(&state, &new.recipient)));
                        self.remember_key(key.key.as_str(), &key.fingerprint, response.clone(), plan);
                        return PayoutOutcome::Answered(response);
                    }
                    Err(defect) => Err(defect),
                }
            }
            PayoutCommand::Change { id, change, actor, job, .. } => {
                if let Some(job) = job
                    && !holds_job(payouts, job)
                {
                    return PayoutOutcome::Refused(PayoutError::LeaseLost(job.job_id));
                }
                let result = self.change_payout(*id, change, *actor, payouts, sheet, plan);
                if result.as_ref().is_ok_and(Result::is_ok)
                    && let Some(job) = job
                {
                    plan.job_ends.push(job.clone());
                }
                result
            }
        };
        outcome(decided)
    }

    fn create_payout(
        &mut self,
        new: &NewPayout,
        payouts: &mut PayoutStates,
        sheet: &mut BalanceSheet,
        plan: &mut Plan,
    ) -> Result<Result<PayoutState, PayoutError>, String> {
        let amount = new.amount.minor();
        let source = match &new.source {
            None => None,
            Some(source) => {
                let Some(account) = payouts.sources.get(source).copied() else {
                    return Ok(Err(PayoutError::UnknownSource { kind: source.kind(), key: source.key() }));
                };
                // Every ledger account holds roubles today; a payout in another currency cannot draw on one.
                if new.amount.currency().code() != "RUB" {
                    return Ok(Err(PayoutError::CurrencyMismatch(new.amount.currency().code())));
                }
                Some((source.clone(), account))
            }
        };
        if let Some((source, account)) = &source {
            if let Err(refusal) = self.move_hold(new.id, *account, amount, HoldStatus::Held, None, sheet, plan)? {
                return Ok(Err(refusal));
            }
            if let PayoutSource::User(user) = source {
                self.payout_line(*account, *user, ActivityKind::PayoutHold, -amount, amount, new.id, None, plan)?;
            }
        }
        let state = PayoutState {
            is_new: true,
            id: new.id,
            amount,
            currency: new.amount.currency().code(),
            status: PayoutStatus::Pending,
            failure_reason: None,
            attempts: 0,
            gateway_reference: None,
            description: new.description.clone(),
            source,
            archived: false,
            recipient: Some(new.recipient.clone()),
            created_at: self.now,
            updated_at: self.now,
        };
        plan.payout_events.push(PayoutEvent {
            payout_id: new.id,
            from: None,
            to: PayoutStatus::Pending.as_str(),
            actor: Actor::Client,
            reason: None,
        });
        plan.new_jobs.push(NewJob {
            kind: PROCESS_PAYOUT_JOB,
            payload: new.id.to_string(),
            max_attempts: new.max_attempts,
        });
        payouts.store(state.clone());
        Ok(Ok(state))
    }

    fn change_payout(
        &mut self,
        id: Uuid,
        change: &PayoutChange,
        actor: Actor,
        payouts: &mut PayoutStates,
        sheet: &mut BalanceSheet,
        plan: &mut Plan,
    ) -> Result<Result<PayoutState, PayoutError>, String> {
        let Some(mut state) = payouts.payouts.get(&id).filter(|p| !p.archived).cloned() else {
            return Ok(Err(PayoutError::NotFound));
        };
        let from = state.status;
        let mut event_to: Option<&'static str> = None;
        let mut reason = None;
        match change {
            PayoutChange::Edit { description, status } => {
                // The description is what the gateway was (or will be) sent under the payout's key: once sent,
                // it is frozen, also after a retry.
                if description.is_some() && !(is_editable(from) && state.attempts == 0) {
                    return Ok(Err(PayoutError::NotEditable(from)));
                }
                if let Some(to) = status {
                    if !matches!(to, PayoutStatus::Cancelled | PayoutStatus::Returned) {
                        return Ok(Err(PayoutError::Transition(TransitionError::NotAllowed { from, to: *to })));
                    }
                    if let Err(refusal) = self.move_payout(&mut state, *to, actor, sheet, plan)? {
                        return Ok(Err(refusal));
                    }
                    event_to = Some(to.as_str());
                }
                if let Some(text) = description {
                    state.description = text.clone();
                }
            }
            PayoutChange::Retry { max_attempts } => {
                if let Err(refusal) = self.move_payout(&mut state, PayoutStatus::Pending, actor, sheet, plan)? {
                    return Ok(Err(refusal));
                }
                state.failure_reason = None;
                plan.new_jobs.push(NewJob {
                    kind: PROCESS_PAYOUT_JOB,
                    payload: id.to_string(),
                    max_attempts: *max_attempts,
                });
                event_to = Some(PayoutStatus::Pending.as_str());
                reason = Some("retried by an operator".to_owned());
            }
            PayoutChange::Attempt => {
                if from != PayoutStatus::Processing {
                    return Ok(Err(PayoutError::NotEditable(from)));
                }
                state.attempts = state.attempts.saturating_add(1);
            }
            PayoutChange::Delete => match delete_action(from) {
                Err(error) => return Ok(Err(PayoutError::NotDeletable(error))),
                Ok(DeleteAction::Archive) => {
                    state.archived = true;
                    event_to = Some("archived");
                }
                Ok(DeleteAction::Cancel) => {
                    if let Err(refusal) = self.move_payout(&mut state, PayoutStatus::Cancelled, actor, sheet, plan)? {
                        return Ok(Err(refusal));
                    }
                    event_to = Some(PayoutStatus::Cancelled.as_str());
                }
            },
            PayoutChange::Status { to, reason: why, reference } => {
                // Only workers move payouts through processing to an outcome; operators use Edit and Retry.
                if *to == PayoutStatus::Pending {
                    return Ok(Err(PayoutError::Transition(TransitionError::NotAllowed { from, to: *to })));
                }
                if let Err(refusal) = self.move_payout(&mut state, *to, actor, sheet, plan)? {
                    return Ok(Err(refusal));
                }
                match to {
                    PayoutStatus::Failed => state.failure_reason = why.clone(),
                    PayoutStatus::Completed => state.gateway_reference = reference.clone(),
                    _ => {}
                }
                event_to = Some(to.as_str());
                reason = why.clone();
            }
        }
        state.updated_at = self.now;
        if let Some(to) = event_to {
            plan.payout_events.push(PayoutEvent { payout_id: id, from: Some(from), to, actor, reason });
        }
        payouts.store(state.clone());
        Ok(Ok(state))
    }

    /// Moves a payout to `to` if the state machine lets `actor` do it, with its ledger effect. `Ok(Err)` is a
    /// refusal (nothing changed); `Err` a defect.
    fn move_payout(
        &mut self,
        state: &mut PayoutState,
        to: PayoutStatus,
        actor: Actor,
        sheet: &mut BalanceSheet,
        plan: &mut Plan,
    ) -> Result<Result<(), PayoutError>, String> {
        if let Err(error) = transition(state.status, to, actor) {
            return Ok(Err(PayoutError::Transition(error)));
        }
        if let Err(refusal) = self.settle_payout(state, to, sheet, plan)? {
            return Ok(Err(refusal));
        }
        state.status = to;
        Ok(Ok(()))
    }

    /// The ledger effect of moving a payout to `to`: capture, release, re-hold or return the source's money.
    fn settle_payout(
        &mut self,
        state: &PayoutState,
        to: PayoutStatus,
        sheet: &mut BalanceSheet,
        plan: &mut Plan,
    ) -> Result<Result<(), PayoutError>, String> {
        let Some((source, account)) = &state.source else { return Ok(Ok(())) };
        let (account, amount, id) = (*account, state.amount, state.id);
        let user = match source {
            PayoutSource::User(user) => Some(*user),
            PayoutSource::Organization(_) => None,
        };
        let (kind, available_change, held_change) = match to {
            PayoutStatus::Completed => {
                if let Err(refusal) = self.move_hold(
                    id,
                    account,
                    amount,
                    HoldStatus::Captured,
                    Some(self.payout_clearing_account()),
                    sheet,
                    plan,
                )? {
                    return Ok(Err(refusal));
                }
                (ActivityKind::Payout, 0, -amount)
            }
            PayoutStatus::Failed | PayoutStatus::Cancelled => {
                if let Err(refusal) = self.move_hold(id, account, amount, HoldStatus::Released, None, sheet, plan)? {
                    return Ok(Err(refusal));
                }
                (ActivityKind::PayoutRelease, amount, -amount)
            }
            PayoutStatus::Pending => {
                // A retried payout holds its money again.
                if let Err(refusal) = self.move_hold(id, account, amount, HoldStatus::Held, None, sheet, plan)? {
                    return Ok(Err(refusal));
                }
                (ActivityKind::PayoutHold, -amount, amount)
            }
            PayoutStatus::Returned => {
                let postings =
                    [Posting { account: self.payout_clearing_account(), amount: -amount }, Posting { account, amount }];
                match self.post(PAYOUT_RETURN_KIND, &postings, sheet, plan)? {
                    Ok(transaction) => {
                        if let Some(user) = user {
                            self.payout_line(
                                account,
                                user,
                                ActivityKind::PayoutReturn,
                                amount,
                                0,
                                id,
                                Some(transaction),
                                plan,
                            )?;
                        }
                        return Ok(Ok(()));
                    }
                    Err(refusal) => return Ok(Err(refusal)),
                }
            }
            PayoutStatus::Processing => return Ok(Ok(())),
        };
        if let Some(user) = user {
            let transaction = self.holds.get(&hold_reference(id)).and_then(|hold| hold.transaction_id);
            let transaction = transaction.filter(|_| to == PayoutStatus::Completed);
            self.payout_line(account, user, kind, available_change, held_change, id, transaction, plan)?;
        }
        Ok(Ok(()))
    }

    /// Places, captures or releases a payout's hold; a capture also posts source → `capture_to`.
    #[allow(clippy::too_many_arguments)]
    fn move_hold(
        &mut self,
        id: Uuid,
        account: AccountId,
        amount: i64,
        to: HoldStatus,
        capture_to: Option<AccountId>,
        sheet: &mut BalanceSheet,
        plan: &mut Plan,
    ) -> Result<Result<(), PayoutError>, String> {
        let reference = hold_reference(id);
        let current = self.holds.get(&reference).cloned();
        let (holds, postings) = match (to, &current) {
            (HoldStatus::Held, None) | (HoldStatus::Held, Some(HoldState { status: HoldStatus::Released, .. })) => {
                (vec![HoldChange { account, amount }], Vec::new())
            }
            (HoldStatus::Released, Some(hold)) if hold.status == HoldStatus::Held => {
                (vec![HoldChange { account, amount: -amount }], Vec::new())
            }
            (HoldStatus::Captured, Some(hold)) if hold.status == HoldStatus::Held => {
                let to = capture_to.ok_or("a capture needs an account to capture to")?;
                (
                    vec![HoldChange { account, amount: -amount }],
                    vec![Posting { account, amount: -amount }, Posting { account: to, amount }],
                )
            }
            (to, current) => {
                return Err(format!(
                    "payout {id}: cannot move its hold {:?} to {to:?}",
                    current.as_ref().map(|h| h.status)
                ));
            }
        };
        let entries = match sheet.transact(&holds, &postings) {
            Ok(entries) => entries,
            Err(LedgerError::InsufficientFunds { available, .. }) => {
                return Ok(Err(PayoutError::InsufficientFunds { available }));
            }
            Err(LedgerError::Overflow) => return Ok(Err(PayoutError::Overflow)),
            Err(defect) => return Err(defect.to_string()),
        };
        let transaction_id = (!entries.is_empty()).then(Uuid::now_v7);
        if let Some(transaction) = transaction_id {
            plan.transactions.push(NewTransaction { id: transaction, kind: PAYOUT_KIND, idempotency_key: None });
            plan.entries.extend(entries.into_iter().map(|entry| (transaction, entry)));
        }
        let is_new = current.as_ref().is_none_or(|hold| hold.is_new);
        let state = HoldState { is_new, account, amount, status: to, transaction_id };
        self.put_hold(reference, state);
        Ok(Ok(()))
    }

    fn post(
        &mut self,
        kind: &'static str,
        postings: &[Posting],
        sheet: &mut BalanceSheet,
        plan: &mut Plan,
    ) -> Result<Result<Uuid, PayoutError>, String> {
        match sheet.transact(&[], postings) {
            Ok(entries) => {
                let id = Uuid::now_v7();
                plan.transactions.push(NewTransaction { id, kind, idempotency_key: None });
                plan.entries.extend(entries.into_iter().map(|entry| (id, entry)));
                Ok(Ok(id))
            }
            Err(LedgerError::InsufficientFunds { available, .. }) => {
                Ok(Err(PayoutError::InsufficientFunds { available }))
            }
            Err(LedgerError::Overflow) => Ok(Err(PayoutError::Overflow)),
            Err(defect) => Err(defect.to_string()),
        }
    }

    /// A line of a user's history for a payout's effect on their money.
    #[allow(clippy::too_many_arguments)]
    fn payout_line(
        &mut self,
        account: AccountId,
        user: UserId,
        kind: ActivityKind,
        amount: i64,
        held_change: i64,
        payout: Uuid,
        transaction_id: Option<Uuid>,
        plan: &mut Plan,
    ) -> Result<(), String> {
        let id = self.line_ids.next().ok_or("the batch reserved too few history ids")?;
        plan.activity.push(ActivityLine {
            id,
            account,
            user,
            kind,
            amount,
            held_change,
            counterparty: None,
            order: None,
            payout: Some(payout),
            transaction_id,
            created_at: self.now,
        });
        Ok(())
    }
}

fn outcome(decided: Result<Result<PayoutState, PayoutError>, String>) -> PayoutOutcome {
    match decided {
        Ok(Ok(state)) => PayoutOutcome::Done(Box::new(state)),
        Ok(Err(refusal)) => PayoutOutcome::Refused(refusal),
        Err(defect) => PayoutOutcome::Broken(defect),
    }
}

/// Whether the job a change ends is still in the state the change expects: a worker's job is queued and
/// leased to that worker; an operator's is dead.
fn holds_job(payouts: &PayoutStates, job: &JobEnd) -> bool {
    match (payouts.jobs.get(&job.job_id), &job.owner) {
        (Some((status, lease_owner)), Some(owner)) => status == "queued" && lease_owner.as_ref() == Some(owner),
        (Some((status, _)), None) => status == "dead",
        (None, _) => false,
    }
}

/// A worker's claim of due jobs.
#[derive(Debug, Clone)]
pub struct JobClaim {
    /// The worker.
    pub owner: String,
    /// How long the claimed jobs are the worker's.
    pub lease: std::time::Duration,
    /// At most this many.
    pub limit: i64,
}
