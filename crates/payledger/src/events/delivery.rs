//! Event delivery workers: claim due deliveries with a lease, sign each with its endpoint's live secrets, send it
//! through the SSRF guard, and record every attempt (and what it means for the delivery and its endpoint) in
//! one transaction per claim.
//!
//! Delivery is at least once: a worker that dies mid-send loses its lease when it expires, and the delivery is
//! sent again with the same `webhook-id` (receivers drop what they have seen). It is not ordered: a retry may
//! overtake a later event, which is why `data.version` exists.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;

use super::endpoints::secret_binding;
use super::guard::OutboundNetworks;
use super::schedule::RetrySchedule;
use super::sender::{Attempt, Outbound, Sender, Verdict};
use super::settings::EventSettings;
use super::signature::{EndpointSecret, signature_header};
use super::throttle::Throttle;
use crate::store::Store;
use crate::store::event_rows::{AttemptRecord, ClaimedDelivery, DeliveryEnd};
use crate::vault::Vault;

/// The most deliveries one worker claims at once; they are sent concurrently and recorded together.
const CLAIM_LIMIT: i64 = 32;
/// How long a worker waits after the database failed before it tries again.
const FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// What every delivery worker of a process shares.
#[derive(Clone)]
pub struct DeliveryContext {
    store: Store,
    vault: Arc<Vault>,
    sender: Arc<Sender>,
    schedule: Arc<RetrySchedule>,
    settings: EventSettings,
    /// Per-endpoint rate limits, shared by the process's workers.
    throttle: Arc<Mutex<Throttle>>,
}

impl DeliveryContext {
    /// The context for `settings`, or why they are wrong (a bad retry schedule).
    pub fn new(store: Store, vault: Arc<Vault>, settings: EventSettings) -> anyhow::Result<DeliveryContext> {
        let schedule = RetrySchedule::parse(&settings.retry_schedule)
            .map_err(|error| anyhow::anyhow!("PAYLEDGER_EVENT_RETRY_SCHEDULE: {error}"))?;
        let networks = OutboundNetworks::from_networks(settings.allowed_networks.clone());
        let sender = Sender::new(networks, settings.timeout).map_err(|error| anyhow::anyhow!(error))?;
        Ok(DeliveryContext {
            store,
            vault,
            sender: Arc::new(sender),
            schedule: Arc::new(schedule),
            settings,
            throttle: Arc::new(Mutex::new(Throttle::new())),
        })
    }
}

/// Starts `count` delivery workers in `workers`; they stop claiming when `stop` turns true, finish the
/// deliveries in hand (each bounded by the attempt timeout), and end.
pub fn spawn(workers: &mut JoinSet<()>, context: DeliveryContext, count: usize, stop: watch::Receiver<bool>) {
    let process = format!("{}-{:08x}", std::process::id(), rand::rng().random::<u32>());
    for n in 0..count {
        workers.spawn(run(context.clone(), format!("events-{process}-{n}"), stop.clone()));
    }
    if count > 0 {
        workers.spawn(prune(context, stop));
    }
}

/// How often old events and their delivery log are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// The most events one pruning transaction removes, so it never holds the write lock long.
const PRUNE_CHUNK: i64 = 5_000;

/// Keeps the log bounded: every [`PRUNE_EVERY`], removes what is older than the retention, a chunk at a time.
/// Every process with delivery workers prunes; two pruning at once delete the same rows once.
async fn prune(context: DeliveryContext, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        pause(&mut stop, PRUNE_EVERY).await;
        while !*stop.borrow() {
            let before = OffsetDateTime::now_utc() - context.settings.retention;
            match context.store.prune_events(before, PRUNE_CHUNK).await {
                Ok(0) => break,
                Ok(rows) => tracing::debug!(rows, "pruned old events and their deliveries"),
                Err(error) => {
                    tracing::warn!(%error, "pruning old events failed");
                    break;
                }
            }
        }
    }
}

/// One worker: claims due deliveries, sends them, records them, until `stop` turns true.
async fn run(context: DeliveryContext, owner: String, mut stop: watch::Receiver<bool>) {
    tracing::debug!(%owner, "event delivery worker started");
    while !*stop.borrow() {
        match deliver_due(&context, &owner).await {
            Ok(0) => pause(&mut stop, context.settings.poll).await,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "delivering events failed");
                pause(&mut stop, FAILURE_PAUSE).await;
            }
        }
    }
    tracing::debug!(%owner, "event delivery worker stopped");
}

/// Waits `duration`, or less if shutdown is asked meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = stop.changed() => {}
    }
}

/// Claims, sends and records one round of due deliveries; how many it claimed.
async fn deliver_due(context: &DeliveryContext, owner: &str) -> Result<usize, crate::store::StoreError> {
    let now = context.store.clock().await?;
    let lease = now + context.settings.lease;
    let claimed = context.store.claim_deliveries(owner, now, lease, CLAIM_LIMIT).await?;
    let count = claimed.len();
    if count == 0 {
        return Ok(0);
    }
    let mut records = Vec::with_capacity(count);
    let mut sending = JoinSet::new();
    for delivery in claimed {
        if let Some(wait) = over_rate(context, &delivery).await {
            records.push(deferred(&delivery, now + wait));
            continue;
        }
        let context = context.clone();
        sending.spawn(async move { attempt(&context, &delivery).await });
    }
    while let Some(done) = sending.join_next().await {
        match done {
            Ok(record) => records.push(record),
            // A panicking attempt records nothing: its lease expires and the delivery is tried again.
            Err(error) => tracing::error!(%error, "an event delivery attempt panicked"),
        }
    }
    let recorded_at = context.store.clock().await?;
    let failing_before = recorded_at - context.settings.failure_window;
    let disabled = context.store.record_delivery_attempts(owner, &records, recorded_at, failing_before).await?;
    for endpoint in disabled {
        metrics::counter!("payledger_webhook_endpoints_disabled_total").increment(1);
        tracing::warn!(%endpoint, "a webhook endpoint was disabled: it answered 410, or every delivery failed for the failure window");
    }
    Ok(count)
}

/// How long `delivery` must wait for its endpoint's rate limit, if it is over it.
async fn over_rate(context: &DeliveryContext, delivery: &ClaimedDelivery) -> Option<Duration> {
    let per_second = u32::try_from(delivery.rate_limit_per_second?).ok().filter(|rate| *rate > 0)?;
    let mut throttle = context.throttle.lock().await;
    throttle.admit(&delivery.endpoint_id, per_second, std::time::Instant::now()).err()
}

/// A delivery put back unattempted until `at`.
fn deferred(delivery: &ClaimedDelivery, at: OffsetDateTime) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.id,
        endpoint_id: delivery.endpoint_id.clone(),
        status_code: None,
        duration_ms: 0,
        response: None,
        error: None,
        end: DeliveryEnd::Deferred(at),
        gone: false,
    }
}

/// The endpoint's live secrets: its current one, and the previous one while the rotation's overlap lasts.
fn live_secrets(context: &DeliveryContext, delivery: &ClaimedDelivery) -> Result<Vec<EndpointSecret>, String> {
    let binding = secret_binding(&delivery.endpoint_id);
    let open = |token: &str| -> Result<EndpointSecret, String> {
        let text =
            context.vault.decrypt(token, &binding).map_err(|e| format!("cannot decrypt the endpoint's secret: {e}"))?;
        EndpointSecret::parse(&text).map_err(|e| format!("the endpoint's secret is not a secret: {e}"))
    };
    let mut secrets = vec![open(&delivery.secret)?];
    if let (Some(previous), Some(until)) = (&delivery.previous_secret, delivery.previous_secret_until)
        && until > OffsetDateTime::now_utc()
    {
        secrets.push(open(previous)?);
    }
    Ok(secrets)
}

/// Sends one delivery and says what becomes of it.
async fn attempt(context: &DeliveryContext, delivery: &ClaimedDelivery) -> AttemptRecord {
    let body = super::payloads::body(
        &delivery.event_type,
        delivery.event_created_at,
        &delivery.event_data,
        delivery.event_seq,
    );
    // The timestamp of this attempt, as the specification asks: receivers refuse stale ones.
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let sent = match live_secrets(context, delivery) {
        Ok(secrets) => {
            let signature = signature_header(&secrets, &delivery.event_id, timestamp, body.as_bytes());
            let outbound = Outbound {
                url: &delivery.url,
                message_id: &delivery.event_id,
                timestamp,
                body: bytes::Bytes::from(body),
                signature,
            };
            context.sender.send(&outbound).await
        }
        // A process without the vault's key: another process (or this one once configured) delivers it.
        Err(error) => Attempt {
            status: None,
            duration: Duration::ZERO,
            response: None,
            error: Some(error),
            verdict: Verdict::Retry { after: None },
        },
    };
    outcome(context, delivery, sent)
}

/// What an attempt's result means for its delivery.
fn outcome(context: &DeliveryContext, delivery: &ClaimedDelivery, sent: Attempt) -> AttemptRecord {
    let now = OffsetDateTime::now_utc();
    let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
    let (end, gone, result) = match sent.verdict {
        Verdict::Delivered => (DeliveryEnd::Succeeded, false, "delivered"),
        Verdict::Gone => (DeliveryEnd::Failed, true, "gone"),
        Verdict::Retry { after } => match context.schedule.next_attempt(attempts, after, &mut rand::rng()) {
            Some(wait) => (DeliveryEnd::RetryAt(now + wait), false, "retry"),
            None => (DeliveryEnd::Failed, false, "failed"),
        },
    };
    metrics::counter!("payledger_event_deliveries_total", "result" => result).increment(1);
    metrics::histogram!("payledger_event_delivery_seconds").record(sent.duration);
    if result != "delivered" {
        tracing::info!(
            delivery = delivery.id,
            endpoint = %delivery.endpoint_id,
            event = %delivery.event_id,
            attempt = delivery.attempts,
            status = ?sent.status,
            error = sent.error.as_deref().unwrap_or(""),
            result,
            "event delivery attempt failed"
        );
    }
    AttemptRecord {
        delivery_id: delivery.id,
        endpoint_id: delivery.endpoint_id.clone(),
        status_code: sent.status.map(i32::from),
        duration_ms: i64::try_from(sent.duration.as_millis()).unwrap_or(i64::MAX),
        response: sent.response,
        error: sent.error,
        end,
        gone,
    }
}
