//! Payout workers: claim due jobs from the database's queue with a lease, move the payout to processing,
//! call the gateway with the payout id as its idempotency key, and record the outcome (with the job's end) in
//! one ledger transaction.
//!
//! A worker that dies loses its lease when it expires; the job runs again and calls the gateway again with
//! the same idempotency key, so the gateway answers with its first outcome and a payout is never paid twice.
//! Transient gateway errors retry with exponential backoff and jitter; past the job's attempts the payout
//! fails with the reason and the job is dead, for operators to retry.
//!
//! The event delivery workers, which drive the ledger engine the same way, are in `deliveries.rs`.

pub mod deliveries;

use std::sync::Arc;
use std::time::Duration;

use payledger_core::payout::{Actor, PayoutStatus};
use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::config::PayoutSettings;
use crate::engine::payouts::{PayoutChange, PayoutError, PayoutOutcome};
use crate::gateway::{GatewayError, GatewayOutcome, GatewayRecipient, GatewayRequest, PayoutGateway};
use crate::payouts::{Payouts, secret_binding};
use crate::store::Store;
use crate::store::batch::{JobEnd, PROCESS_PAYOUT_JOB};
use crate::store::payouts::{ClaimedJob, PayoutView};

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// How long a worker waits after the database failed before it tries again.
const FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// What every worker of a process shares.
#[derive(Clone)]
pub struct WorkerContext {
    /// The database (the queue).
    pub store: Store,
    /// The payout service (the engine and the vault).
    pub payouts: Payouts,
    /// The gateway.
    pub gateway: Arc<dyn PayoutGateway>,
    /// Timings and limits.
    pub settings: PayoutSettings,
}

/// Starts `count` workers; they stop claiming when `stop` turns true, finish the job in hand, and end.
pub fn spawn(context: WorkerContext, count: usize, stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut workers = JoinSet::new();
    let process = format!("{}-{:08x}", std::process::id(), rand::rng().random::<u32>());
    for n in 0..count {
        let owner = format!("worker-{process}-{n}");
        workers.spawn(run(context.clone(), owner, stop.clone()));
    }
    workers
}

/// One worker: claims a due job at a time and processes it, until `stop` turns true.
async fn run(context: WorkerContext, owner: String, mut stop: watch::Receiver<bool>) {
    tracing::debug!(%owner, "payout worker started");
    while !*stop.borrow() {
        let now = match context.store.clock().await {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!(%error, "reading the database's clock failed");
                pause(&mut stop, FAILURE_PAUSE).await;
                continue;
            }
        };
        let lease = now + context.settings.lease;
        // On SQLite the claim waits its turn in the ledger writer's queue; racing the writer for SQLite's one
        // write lock from another connection starves the workers while the ledger is busy. On PostgreSQL the
        // claim goes straight to the database (`FOR UPDATE SKIP LOCKED`), never blocking the ledger's batches.
        let claimed = match &context.store {
            Store::Sqlite(_) => {
                context.payouts.claim_jobs(&owner, context.settings.lease, 1).await.map_err(|e| e.to_string())
            }
            Store::Postgres(_) => context.store.claim_jobs(&owner, now, lease, 1).await.map_err(|e| e.to_string()),
        };
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "claiming jobs failed");
                pause(&mut stop, FAILURE_PAUSE).await;
                continue;
            }
        };
        if claimed.is_empty() {
            pause(&mut stop, context.settings.poll).await;
            continue;
        }
        for job in claimed {
            // A job in hand is finished even when shutdown is asked meanwhile: its gateway call is bounded
            // by the gateway's timeout, and releasing it half-way would only make another worker repeat it.
            if let Err(error) = process(&context, &owner, &job).await {
                give_up_or_retry(&context, &owner, &job, &error).await;
            }
        }
    }
    tracing::debug!(%owner, "payout worker stopped");
}

/// After a failure that is not the gateway's (the database, the engine): retry with backoff like a transient
/// gateway error, and past the job's attempts fail the payout with the reason, so nothing stays processing
/// with money held forever.
async fn give_up_or_retry(context: &WorkerContext, owner: &str, job: &ClaimedJob, error: &str) {
    metrics::counter!("payledger_job_failures_total").increment(1);
    let now = context.store.clock().await.unwrap_or_else(|_| OffsetDateTime::now_utc());
    if job.attempts < job.max_attempts {
        tracing::warn!(job = job.id, attempt = job.attempts, %error, "job failed; it will run again");
        let run_at = now + retry_delay(context.settings.retry_base, job.attempts);
        let _ = context.store.reschedule_job(job.id, owner, Some(run_at), Some(error), now).await;
        return;
    }
    tracing::error!(job = job.id, %error, "job failed on its last attempt; its payout fails");
    if let Ok(id) = Uuid::parse_str(&job.payload) {
        let change = PayoutChange::Status {
            to: PayoutStatus::Failed,
            reason: Some(format!("could not be processed: {error}")),
            reference: None,
        };
        let end = JobEnd { job_id: job.id, owner: Some(owner.to_owned()), dead: true, error: Some(error.to_owned()) };
        let _ = context.payouts.change(id, change, Actor::Worker, Some(end), None).await;
    }
}

/// Waits `duration`, or less if shutdown is asked meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = stop.changed() => {}
    }
}

/// Runs one claimed job. An `Err` is an infrastructure failure (the job is rescheduled); every outcome of
/// the payout itself is recorded and returns `Ok`.
async fn process(context: &WorkerContext, owner: &str, job: &ClaimedJob) -> Result<(), String> {
    let Some((id, view)) = start_payout(context, owner, job).await? else { return Ok(()) };
    let request = gateway_request(context, id, &view)?;
    let answer = call_gateway(context, &request).await;
    let paid = matches!(answer, Ok(GatewayOutcome::Completed { .. }));
    match verdict(owner, job, answer) {
        Verdict::Record { change, job_end } => record_outcome(context, owner, job, id, change, job_end, paid).await,
        Verdict::RetryLater(message) => retry_later(context, owner, job, id, &message).await,
    }
}

/// The payout a job must pay, moved to processing, with its id; `None` when there is nothing to pay (an
/// unknown job kind, a payout that is gone, finished or cancelled meanwhile), the job then ended.
async fn start_payout(
    context: &WorkerContext,
    owner: &str,
    job: &ClaimedJob,
) -> Result<Option<(Uuid, PayoutView)>, String> {
    let now = OffsetDateTime::now_utc();
    let end_job = || async { context.store.finish_job(job.id, owner, now).await.map_err(|e| e.to_string()) };
    if job.kind != PROCESS_PAYOUT_JOB {
        tracing::error!(job = job.id, kind = %job.kind, "unknown job kind; ending it");
        end_job().await?;
        return Ok(None);
    }
    let Ok(id) = Uuid::parse_str(&job.payload) else {
        end_job().await?;
        return Ok(None);
    };
    let Some(view) = context.store.payout(id).await.map_err(|e| e.to_string())? else {
        end_job().await?;
        return Ok(None);
    };
    match view.state.status {
        PayoutStatus::Pending => {
            let to = PayoutChange::Status { to: PayoutStatus::Processing, reason: None, reference: None };
            match context.payouts.change(id, to, Actor::Worker, None, None).await.map_err(|e| e.to_string())? {
                PayoutOutcome::Done(_) => {}
                // Cancelled (or otherwise moved on) meanwhile: nothing to pay.
                PayoutOutcome::Refused(_) => {
                    end_job().await?;
                    return Ok(None);
                }
                PayoutOutcome::Broken(defect) => return Err(defect),
                other => return Err(format!("unexpected outcome {other:?}")),
            }
        }
        // A worker that died after this point left it processing: the gateway call is repeated with the
        // same idempotency key, and the gateway answers with its first outcome.
        PayoutStatus::Processing => {}
        PayoutStatus::Completed | PayoutStatus::Failed | PayoutStatus::Cancelled | PayoutStatus::Returned => {
            end_job().await?;
            return Ok(None);
        }
    }
    Ok(Some((id, view)))
}

/// What the gateway is asked to pay for payout `id`, with the recipient's number decrypted for this call.
fn gateway_request(context: &WorkerContext, id: Uuid, view: &PayoutView) -> Result<GatewayRequest, String> {
    // A number this process cannot decrypt (a worker without the vault's keys) is an error of this process:
    // the job is retried (perhaps by a worker that has the keys) and, past its attempts, fails the payout.
    let number = context
        .payouts
        .vault()
        .decrypt(&view.recipient_secret, &secret_binding(id))
        .map_err(|e| format!("cannot decrypt the recipient: {e}"))?;
    let recipient = match view.recipient_type.as_str() {
        "bank_account" => GatewayRecipient::BankAccount {
            account_number: number,
            bik: view.recipient_bik.clone().unwrap_or_default(),
            holder: view.recipient_holder.clone(),
        },
        _ => GatewayRecipient::Card { number, holder: view.recipient_holder.clone() },
    };
    let currency = payledger_core::Currency::from_code(view.state.currency)
        .ok_or_else(|| format!("payout {id}: unknown currency {}", view.state.currency))?;
    Ok(GatewayRequest {
        payout_id: id,
        amount_minor: view.state.amount,
        currency: currency.code().to_owned(),
        minor_digits: currency.minor_digits(),
        recipient,
        description: view.state.description.clone(),
    })
}

/// Counts the attempt on the payout, then calls the gateway and times the call.
async fn call_gateway(context: &WorkerContext, request: &GatewayRequest) -> Result<GatewayOutcome, GatewayError> {
    // Counted right before the call, so only real gateway calls count. A failed count only makes the
    // payout's attempt number low; it must not stop the payment.
    let _ = context.payouts.change(request.payout_id, PayoutChange::Attempt, Actor::Worker, None, None).await;
    let started = std::time::Instant::now();
    let answer = context.gateway.pay(request).await;
    metrics::histogram!("payledger_gateway_seconds").record(started.elapsed());
    answer
}

/// What a gateway answer means for the payout and its job.
enum Verdict {
    /// Record this change of the payout, ending the job with it.
    Record {
        /// The payout's new status.
        change: PayoutChange,
        /// How the job ends.
        job_end: JobEnd,
    },
    /// The gateway could not be reached and the job has attempts left: run it again later.
    RetryLater(String),
}

/// Decides what the gateway's answer does: complete or fail the payout, or retry a transient error while the
/// job has attempts left.
fn verdict(owner: &str, job: &ClaimedJob, answer: Result<GatewayOutcome, GatewayError>) -> Verdict {
    let job_end =
        |dead: bool, error: Option<String>| JobEnd { job_id: job.id, owner: Some(owner.to_owned()), dead, error };
    let failed =
        |reason: String| PayoutChange::Status { to: PayoutStatus::Failed, reason: Some(reason), reference: None };
    match answer {
        Ok(GatewayOutcome::Completed { reference }) => Verdict::Record {
            change: PayoutChange::Status { to: PayoutStatus::Completed, reason: None, reference: Some(reference) },
            job_end: job_end(false, None),
        },
        Ok(GatewayOutcome::Declined { reason }) => {
            Verdict::Record { change: failed(format!("declined: {reason}")), job_end: job_end(false, None) }
        }
        Err(GatewayError::Permanent(message)) => Verdict::Record {
            change: failed(format!("gateway refused the request: {message}")),
            job_end: job_end(true, Some(message)),
        },
        Err(GatewayError::Transient(message)) if job.attempts < job.max_attempts => Verdict::RetryLater(message),
        Err(GatewayError::Transient(message)) => Verdict::Record {
            change: failed(format!("gateway unavailable after {} attempts: {message}", job.attempts)),
            job_end: job_end(true, Some(message)),
        },
    }
}

/// Puts the job back in the queue after a transient gateway error, due after the backoff delay.
async fn retry_later(
    context: &WorkerContext,
    owner: &str,
    job: &ClaimedJob,
    id: Uuid,
    message: &str,
) -> Result<(), String> {
    let delay = retry_delay(context.settings.retry_base, job.attempts);
    let now = context.store.clock().await.map_err(|e| e.to_string())?;
    let run_at = now + delay;
    metrics::counter!("payledger_payout_retries_total").increment(1);
    tracing::info!(payout = %id, attempt = job.attempts, ?delay, error = %message, "gateway unavailable; retrying later");
    context.store.reschedule_job(job.id, owner, Some(run_at), Some(message), now).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Records the gateway's verdict on the payout and ends the job in the same ledger transaction. `paid` says
/// the gateway sent the money, which matters when the payout can no longer take the change.
async fn record_outcome(
    context: &WorkerContext,
    owner: &str,
    job: &ClaimedJob,
    id: Uuid,
    change: PayoutChange,
    job_end: JobEnd,
    paid: bool,
) -> Result<(), String> {
    match context.payouts.change(id, change, Actor::Worker, Some(job_end), None).await.map_err(|e| e.to_string())? {
        PayoutOutcome::Done(payout) => {
            metrics::counter!("payledger_payouts_total", "status" => payout.status.as_str()).increment(1);
            Ok(())
        }
        // This worker's lease expired and another worker took the job over: that worker records the outcome
        // (the gateway answers it the same under the payout's key).
        PayoutOutcome::Refused(PayoutError::LeaseLost(_)) => {
            metrics::counter!("payledger_job_leases_lost_total").increment(1);
            tracing::warn!(payout = %id, job = job.id, "lease lost while calling the gateway; the new holder records the outcome");
            Ok(())
        }
        PayoutOutcome::Refused(refusal) => {
            if paid {
                // The gateway paid a payout that has already moved on (e.g. failed by an earlier attempt's
                // timeout): operators must reconcile it.
                metrics::counter!("payledger_payout_outcome_conflicts_total").increment(1);
                tracing::error!(payout = %id, %refusal, "the gateway paid a payout that is no longer processing");
            }
            context.store.finish_job(job.id, owner, OffsetDateTime::now_utc()).await.map_err(|e| e.to_string())?;
            Ok(())
        }
        PayoutOutcome::Broken(defect) => Err(defect),
        other => Err(format!("unexpected outcome {other:?}")),
    }
}

/// The wait before attempt `attempt + 1`: `base × 2^(attempt-1)`, capped at [`MAX_RETRY_DELAY`], with "equal
/// jitter" (a random half on top of a fixed half) so retries of many payouts spread out.
pub fn retry_delay(base: Duration, attempt: i32) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let full = base.saturating_mul(1u32 << exponent).min(MAX_RETRY_DELAY);
    let half = full / 2;
    half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_with_jitter_and_are_capped() {
        let base = Duration::from_secs(1);
        for attempt in 1..=30 {
            let delay = retry_delay(base, attempt);
            let full = base.saturating_mul(1u32 << (attempt - 1).min(20)).min(MAX_RETRY_DELAY);
            assert!(
                delay >= full / 2 && delay <= full,
                "attempt {attempt}: {delay:?} within [{:?}, {full:?}]",
                full / 2
            );
        }
        assert!(retry_delay(base, 30) <= MAX_RETRY_DELAY);
    }
}
