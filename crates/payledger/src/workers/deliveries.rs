//! Event delivery workers: claim due deliveries with a lease, sign each with its endpoint's live secrets, send it
//! through the SSRF guard, and record every attempt (and what it means for the delivery and its endpoint). A
//! worker's records and its next claim are one round, one transaction (`store/delivery_rounds.rs`).
//!
//! Delivery is at least once: a worker that dies mid-send loses its lease when it expires, and the delivery is
//! sent again with the same `webhook-id` (receivers drop what they have seen). It is not ordered: a retry may
//! overtake a later event, which is why `data.version` exists.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;

use crate::engine::LedgerEngine;
use crate::engine::batch::{WriteCommand, WriteOutcome};
use crate::events::endpoints::secret_binding;
use crate::events::guard::OutboundNetworks;
use crate::events::schedule::RetrySchedule;
use crate::events::sender::{Attempt, Outbound, Sender, Verdict};
use crate::events::settings::EventSettings;
use crate::events::signature::{EndpointSecret, signature_header};
use crate::events::throttle::Throttle;
use crate::store::Store;
use crate::store::event_rows::{AttemptRecord, ClaimedDelivery, DeliveryEnd, DeliveryRound, RoundOutcome};
use crate::vault::Vault;

/// How long a worker waits after the database failed before it tries again.
const FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// What every delivery worker of a process shares.
#[derive(Clone)]
pub struct DeliveryContext {
    store: Store,
    /// On SQLite, rounds go through the ledger engine's queue.
    engine: LedgerEngine,
    vault: Arc<Vault>,
    sender: Arc<Sender>,
    schedule: Arc<RetrySchedule>,
    settings: EventSettings,
    /// Per-endpoint rate limits, shared by the process's workers.
    throttle: Arc<Mutex<Throttle>>,
}

impl DeliveryContext {
    /// The context for `settings`, or why they are wrong (a bad retry schedule).
    pub fn new(
        store: Store,
        engine: LedgerEngine,
        vault: Arc<Vault>,
        settings: EventSettings,
    ) -> anyhow::Result<DeliveryContext> {
        let schedule = RetrySchedule::parse(&settings.retry_schedule)
            .map_err(|error| anyhow::anyhow!("PAYLEDGER_EVENT_RETRY_SCHEDULE: {error}"))?;
        let networks = OutboundNetworks::from_networks(settings.allowed_networks.clone());
        let sender = Sender::new(networks, settings.timeout).map_err(|error| anyhow::anyhow!(error))?;
        Ok(DeliveryContext {
            store,
            engine,
            vault,
            sender: Arc::new(sender),
            schedule: Arc::new(schedule),
            settings,
            throttle: Arc::new(Mutex::new(Throttle::new())),
        })
    }
}

impl DeliveryContext {
    /// Runs a round where its store runs them: on PostgreSQL in a transaction of its own, on SQLite in a
    /// ledger batch (`store/delivery_rounds.rs` says why).
    async fn run_round(&self, round: DeliveryRound) -> Result<RoundOutcome, String> {
        if let Some(outcome) = self.store.delivery_round(&round).await.map_err(|error| error.to_string())? {
            return Ok(outcome);
        }
        match self.engine.submit(WriteCommand::Deliveries(round)).await.map_err(|error| error.to_string())? {
            WriteOutcome::Deliveries(outcome) => Ok(outcome),
            other => Err(format!("the ledger engine answered a delivery round with {other:?}")),
        }
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

/// How often stranded deliveries are failed and old events and their delivery log are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The most events one pruning transaction removes, so it never holds the write lock long.
const PRUNE_CHUNK: i64 = 5_000;

/// Keeps the queue and the log bounded: every [`PRUNE_EVERY`], fails the pending deliveries of endpoints that
/// were disabled or deleted, then removes what is older than the retention, a chunk at a time. Every process
/// with delivery workers does it; two at once change the same rows once.
async fn prune(context: DeliveryContext, mut stop: watch::Receiver<bool>) {
    loop {
        pause(&mut stop, PRUNE_EVERY).await;
        if *stop.borrow() {
            break;
        }
        // The database's clock (on PostgreSQL), which dated the leases and the events.
        let now = match context.store.clock().await {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!(%error, "pruning events: reading the database's clock failed");
                continue;
            }
        };
        loop {
            match context.store.fail_stranded_deliveries(now, PRUNE_CHUNK).await {
                Ok(failed) => {
                    if failed > 0 {
                        tracing::info!(failed, "failed the pending deliveries of disabled or deleted endpoints");
                    }
                    if failed < u64::try_from(PRUNE_CHUNK).unwrap_or(u64::MAX) || *stop.borrow() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "failing stranded deliveries failed");
                    break;
                }
            }
        }
        while !*stop.borrow() {
            let before = now - context.settings.retention;
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

/// One worker: keeps up to [`IN_FLIGHT`] attempts going, and in each round (one transaction) records the attempts that have finished and claims as many due deliveries as there is room for. A receiver
/// that hangs for the whole timeout holds only its own slots (at most [`SLOW_ENDPOINT_SLOTS`] of them), not
/// every other endpoint's deliveries. Stops claiming when `stop` turns true and ends once the attempts in hand
/// are recorded (each is bounded by the attempt timeout).
async fn run(context: DeliveryContext, owner: String, mut stop: watch::Receiver<bool>) {
    tracing::debug!(%owner, "event delivery worker started");
    let mut worker = Worker {
        context,
        owner,
        sending: JoinSet::new(),
        endpoint_of: HashMap::new(),
        busy: HashMap::new(),
        slow: HashMap::new(),
    };
    // Attempts finished or put off, recorded by the next round.
    let mut finished = Vec::new();
    loop {
        let stopping = *stop.borrow();
        let mut records = std::mem::take(&mut finished);
        let started = match worker.round(&mut records, !stopping, &mut finished).await {
            Ok(started) => started,
            Err(error) => {
                tracing::warn!(%error, records = records.len(), "an event delivery round failed");
                // Kept for the next round: a record changes its delivery only under the lease it names, so one
                // whose round did commit after all changes nothing the second time. At shutdown they are left:
                // their deliveries stay leased and are sent again once the lease ends.
                if !stopping {
                    finished.append(&mut records);
                }
                pause(&mut stop, FAILURE_PAUSE).await;
                0
            }
        };
        if worker.sending.is_empty() {
            if stopping && finished.is_empty() {
                break;
            }
            // Nothing due (or everything claimed must wait): rest, rather than claim again at once.
            if started == 0 && !stopping {
                pause(&mut stop, worker.context.settings.poll).await;
            }
            continue;
        }
        // Wait for an attempt to finish; while there is room to claim more, no longer than the poll.
        let room = worker.sending.len() < IN_FLIGHT && !stopping;
        worker.collect(room.then_some(worker.context.settings.poll), &mut finished).await;
    }
    tracing::debug!(owner = %worker.owner, "event delivery worker stopped");
}

/// Waits `duration`, or less if shutdown is asked meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = stop.changed() => {}
    }
}

/// The most attempts one worker has in flight.
const IN_FLIGHT: usize = 32;
/// The most of them to one endpoint whose last attempt got no answer (a timeout, a refused or dropped
/// connection): a receiver that hangs cannot take a worker's every slot. A healthy endpoint may have them all.
const SLOW_ENDPOINT_SLOTS: usize = 2;
/// How long an endpoint stays marked slow after its last unanswered attempt, unless an answer clears it.
const SLOW_FOR: Duration = Duration::from_secs(60);
/// How long a worker waits for more attempts to finish before it records the ones that have.
const RECORD_LINGER: Duration = Duration::from_millis(20);
/// How long a delivery waits when this process cannot read its endpoint's secret (another process may).
const SECRET_PAUSE: Duration = Duration::from_secs(30);

/// One worker's state: its attempts in flight, whose endpoint each is, and how many each endpoint has.
struct Worker {
    context: DeliveryContext,
    owner: String,
    sending: JoinSet<AttemptRecord>,
    /// Each attempt's endpoint, so even a panicking one gives its slot back.
    endpoint_of: HashMap<tokio::task::Id, String>,
    busy: HashMap<String, usize>,
    /// The endpoints whose last attempt got no answer, and when that was.
    slow: HashMap<String, std::time::Instant>,
}

impl Worker {
    /// One round: records `records` (taken once the round commits) and, if `claim`, claims as many due
    /// deliveries as there is room for (leaving out the endpoints at their slow share) and starts them; the
    /// ones an endpoint's rate limit puts off go to `finished` as deferred. How many started.
    async fn round(
        &mut self,
        records: &mut Vec<AttemptRecord>,
        claim: bool,
        finished: &mut Vec<AttemptRecord>,
    ) -> Result<usize, String> {
        let room = if claim { IN_FLIGHT.saturating_sub(self.sending.len()) } else { 0 };
        if records.is_empty() && room == 0 {
            return Ok(0);
        }
        let excluding: Vec<String> = self
            .slow
            .iter()
            .filter(|(endpoint, since)| {
                since.elapsed() < SLOW_FOR && self.busy.get(*endpoint).is_some_and(|busy| *busy >= SLOW_ENDPOINT_SLOTS)
            })
            .map(|(endpoint, _)| endpoint.clone())
            .collect();
        let round = DeliveryRound {
            owner: self.owner.clone(),
            records: records.clone(),
            failure_window: self.context.settings.failure_window,
            lease: self.context.settings.lease,
            limit: i64::try_from(room).unwrap_or(0),
            excluding,
        };
        let outcome = self.context.run_round(round).await?;
        records.clear();
        for endpoint in outcome.disabled {
            metrics::counter!("payledger_webhook_endpoints_disabled_total").increment(1);
            tracing::warn!(%endpoint, "a webhook endpoint was disabled: it answered 410, or every delivery failed for the failure window");
        }
        let mut started = 0;
        for delivery in outcome.claimed {
            if let Some(wait) = over_rate(&self.context, &delivery).await {
                finished.push(deferred(&delivery, wait));
                continue;
            }
            *self.busy.entry(delivery.endpoint_id.clone()).or_default() += 1;
            let endpoint = delivery.endpoint_id.clone();
            let context = self.context.clone();
            let handle = self.sending.spawn(async move { attempt(&context, &delivery).await });
            self.endpoint_of.insert(handle.id(), endpoint);
            started += 1;
        }
        Ok(started)
    }

    /// Adds to `finished` the attempts that have finished: waits for the first (at most `wait`, if given),
    /// then for others finishing within [`RECORD_LINGER`], so that one transaction (one commit, one fsync)
    /// records many while a hanging receiver's attempt holds up none of them longer than the linger.
    async fn collect(&mut self, wait: Option<Duration>, finished: &mut Vec<AttemptRecord>) {
        let first = match (self.sending.is_empty(), wait) {
            (true, _) => None,
            (false, Some(wait)) => tokio::time::timeout(wait, self.sending.join_next_with_id()).await.ok().flatten(),
            (false, None) => self.sending.join_next_with_id().await,
        };
        let mut done: Vec<_> = first.into_iter().collect();
        if !done.is_empty() {
            let deadline = tokio::time::Instant::now() + RECORD_LINGER;
            while let Ok(Some(next)) = tokio::time::timeout_at(deadline, self.sending.join_next_with_id()).await {
                done.push(next);
            }
        }
        for result in done {
            let id = match &result {
                Ok((id, _)) => *id,
                Err(error) => error.id(),
            };
            if let Some(endpoint) = self.endpoint_of.remove(&id)
                && let Some(busy) = self.busy.get_mut(&endpoint)
            {
                *busy = busy.saturating_sub(1);
            }
            match result {
                Ok((_, record)) => {
                    if record.status_code.is_none() && matches!(record.end, DeliveryEnd::RetryAfter(_)) {
                        self.slow.insert(record.endpoint_id.clone(), std::time::Instant::now());
                    } else if record.status_code.is_some() {
                        self.slow.remove(&record.endpoint_id);
                    }
                    finished.push(record);
                }
                // A panicking attempt records nothing: its lease expires and the delivery is tried again.
                Err(error) => tracing::error!(%error, "an event delivery attempt panicked"),
            }
        }
        self.busy.retain(|_, busy| *busy > 0);
        self.slow.retain(|_, since| since.elapsed() < SLOW_FOR);
    }
}

/// How long `delivery` must wait for its endpoint's rate limit, if it is over it: until a slot of its own,
/// after the slots of the deliveries put off before it (`Throttle::reserve`).
async fn over_rate(context: &DeliveryContext, delivery: &ClaimedDelivery) -> Option<Duration> {
    let per_second = u32::try_from(delivery.rate_limit_per_second?).ok().filter(|rate| *rate > 0)?;
    let now = std::time::Instant::now();
    let mut throttle = context.throttle.lock().await;
    match throttle.admit(&delivery.endpoint_id, per_second, now) {
        Ok(()) => None,
        Err(_) => Some(throttle.reserve(&delivery.endpoint_id, per_second, now)),
    }
}

/// A delivery put back unattempted for `wait`.
fn deferred(delivery: &ClaimedDelivery, wait: Duration) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.id,
        endpoint_id: delivery.endpoint_id.clone(),
        status_code: None,
        duration_ms: 0,
        response: None,
        error: None,
        end: DeliveryEnd::Deferred(wait),
        gone: false,
        lease: delivery.lease_expires_at,
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
        // The current secret signs; a previous one this process cannot read only leaves its signature out.
        match open(previous) {
            Ok(secret) => secrets.push(secret),
            Err(error) => tracing::warn!(endpoint = %delivery.endpoint_id, %error, "the previous secret does not sign"),
        }
    }
    Ok(secrets)
}

/// Sends one delivery and says what becomes of it.
async fn attempt(context: &DeliveryContext, delivery: &ClaimedDelivery) -> AttemptRecord {
    let body = crate::events::payloads::body(
        &delivery.event_type,
        delivery.event_created_at,
        &delivery.event_data,
        delivery.event_seq,
    );
    // The timestamp of this attempt, as the specification asks: receivers refuse stale ones.
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let secrets = match live_secrets(context, delivery) {
        Ok(secrets) => secrets,
        // A process without the vault's key: not the endpoint's failure. Another process (or this one once
        // configured) delivers it.
        Err(error) => {
            metrics::counter!("payledger_event_deliveries_total", "result" => "unsigned").increment(1);
            tracing::warn!(endpoint = %delivery.endpoint_id, %error, "cannot sign an event delivery here; it waits");
            return deferred(delivery, SECRET_PAUSE);
        }
    };
    let signature = signature_header(&secrets, &delivery.event_id, timestamp, body.as_bytes());
    let outbound = Outbound {
        url: &delivery.url,
        message_id: &delivery.event_id,
        timestamp,
        body: bytes::Bytes::from(body),
        signature,
    };
    let sent = context.sender.send(&outbound).await;
    outcome(context, delivery, sent)
}

/// What an attempt's result means for its delivery.
fn outcome(context: &DeliveryContext, delivery: &ClaimedDelivery, sent: Attempt) -> AttemptRecord {
    let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
    let (end, gone, result) = match sent.verdict {
        Verdict::Delivered => (DeliveryEnd::Succeeded, false, "delivered"),
        Verdict::Gone => (DeliveryEnd::Failed, true, "gone"),
        Verdict::Retry { after } => match context.schedule.next_attempt(attempts, after, &mut rand::rng()) {
            Some(wait) => (DeliveryEnd::RetryAfter(wait), false, "retry"),
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
        lease: delivery.lease_expires_at,
    }
}
