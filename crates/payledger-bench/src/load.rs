//! The load phase: closed-loop workers, one connection and one request in flight each.
//!
//! Every worker keeps the exact bookkeeping the verification needs: an operation's amount is added to its
//! organization's expected total exactly once, when the server first answers 200 for that operation_id.
//! A fresh operation that gets anything else has an unknown outcome (the server may have booked it and
//! then failed to answer), so the worker resends that exact body before creating new work, until a 200
//! settles it. Whatever is still unsettled when the load ends is handed back for [`settle`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::api::{BATCH_PATH, WEBHOOK_PATH, batch_body, batch_results, notice_operation, webhook_body};
use crate::client::{Client, Failure, Response, Target};
use crate::closed_loop::{self, Pace, Request, Scenario, Tally};
use crate::histogram::Histogram;

/// The largest amount of one generated payment, in kopecks (1000.00 roubles).
pub const MAX_AMOUNT_KOPECKS: i64 = 100_000;

/// How many acknowledged bodies each worker keeps around to resend as duplicates.
///
/// Bounded so a long run does not hold every body it ever sent; once full, a random old one is replaced.
const DUPLICATE_POOL: usize = 4_096;

/// How the load phase is shaped; shared read-only by all workers.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server, the warm-up, the end of the load and how to stop it early.
    pub pace: Pace,
    /// The organizations' INNs; requests pick one uniformly.
    pub inns: Arc<Vec<String>>,
    /// Percent (0..=100) of requests that resend an already acknowledged body.
    pub duplicate_percent: u8,
    /// Keep the operation_id of every acknowledged operation (`--event-receiver` matches them with the
    /// deliveries); off otherwise, so a long run does not hold every id it ever sent.
    pub record_ids: bool,
    /// Notices per request: 1 to the webhook, more to the batch API (`--batch`; no duplicates then).
    pub batch: usize,
}

/// State the workers share while running.
#[derive(Debug)]
pub struct Shared {
    /// Exact sum of acknowledged unique amounts per organization, in kopecks, indexed like `Plan::inns`.
    pub acknowledged: Vec<AtomicI64>,
    /// Measured requests handed out so far, for `--requests`.
    issued: AtomicU64,
}

impl Shared {
    /// Zeroed state for `orgs` organizations.
    pub fn new(orgs: usize) -> Shared {
        Shared { acknowledged: (0..orgs).map(|_| AtomicI64::new(0)).collect(), issued: AtomicU64::new(0) }
    }

    /// The acknowledged sums as plain numbers, once the workers are done.
    pub fn acknowledged_totals(&self) -> Vec<i64> {
        self.acknowledged.iter().map(|sum| sum.load(Ordering::Relaxed)).collect()
    }
}

/// Responses by status class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatusCounts {
    /// 200 OK, the only answer that acknowledges a notice.
    pub ok: u64,
    /// 201 Created, the answer that applies a transfer.
    pub created: u64,
    /// Any other 2xx.
    pub other_2xx: u64,
    /// 1xx and 3xx, which the webhook should never answer.
    pub other: u64,
    /// 4xx.
    pub client_error: u64,
    /// 5xx, including 503.
    pub server_error: u64,
    /// 503 alone: the server shedding load.
    pub unavailable: u64,
}

impl StatusCounts {
    pub(crate) fn count(&mut self, status: StatusCode) {
        match status.as_u16() {
            200 => self.ok += 1,
            201 => self.created += 1,
            202..=299 => self.other_2xx += 1,
            400..=499 => self.client_error += 1,
            500..=599 => {
                self.server_error += 1;
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    self.unavailable += 1;
                }
            }
            _ => self.other += 1,
        }
    }

    fn merge(&mut self, other: &StatusCounts) {
        self.ok += other.ok;
        self.created += other.created;
        self.other_2xx += other.other_2xx;
        self.other += other.other;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
        self.unavailable += other.unavailable;
    }
}

/// How the answered transfer requests came out (the `transfers` scenario only).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransferCounts {
    /// 201: the transfer was applied (or a replay of its application).
    pub applied: u64,
    /// 409 `insufficient_funds`: the transfer was refused, nothing moved.
    pub refused: u64,
    /// 409 `idempotency_key_in_flight`: an earlier attempt with the same key was still being processed.
    pub in_flight: u64,
}

impl TransferCounts {
    fn merge(&mut self, other: &TransferCounts) {
        self.applied += other.applied;
        self.refused += other.refused;
        self.in_flight += other.in_flight;
    }
}

/// How payout creations came out (the `payouts` scenario only); every request is a new payout.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PayoutCounts {
    /// 201: created.
    pub created: u64,
    /// Certainly not created: 503 `overloaded` or `unavailable`, a 4xx refusing the request, or not sent.
    pub refused: u64,
    /// 503 `unconfirmed`: the commit failed, so the payout may exist. Never resent (no idempotency key).
    pub unconfirmed: u64,
    /// Any other answer, or none at all (after the request was sent): the payout may exist.
    pub unknown: u64,
}

impl PayoutCounts {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &PayoutCounts) {
        self.created += other.created;
        self.refused += other.refused;
        self.unconfirmed += other.unconfirmed;
        self.unknown += other.unknown;
    }

    /// Requests that may or may not have created a payout.
    pub fn in_doubt(&self) -> u64 {
        self.unconfirmed + self.unknown
    }
}

/// Requests that got no HTTP response at all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Connection attempts that failed; no request was sent on them.
    pub connect: u64,
    /// Connections that broke mid-request.
    pub transport: u64,
    /// Requests without a complete answer within the timeout.
    pub timeout: u64,
}

impl ErrorCounts {
    fn merge(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.transport += other.transport;
        self.timeout += other.timeout;
    }
}

/// What kind of body a request carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KindCounts {
    /// A new operation_id.
    pub fresh: u64,
    /// A deliberate resend of an acknowledged body (`--duplicate-share`).
    pub duplicate: u64,
    /// A resend of a body whose earlier attempt had an unknown outcome.
    pub retry: u64,
}

impl KindCounts {
    fn merge(&mut self, other: &KindCounts) {
        self.fresh += other.fresh;
        self.duplicate += other.duplicate;
        self.retry += other.retry;
    }
}

/// Measurements of the requests that started after the warm-up.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Requests sent (answered or not).
    pub requests: u64,
    /// Latency of answered requests, in nanoseconds.
    pub latency: Histogram,
    /// Answers by status.
    pub status: StatusCounts,
    /// Requests without an answer.
    pub errors: ErrorCounts,
    /// Requests by body kind.
    pub kinds: KindCounts,
    /// Transfer answers by outcome (all zero outside the `transfers` scenario).
    pub transfers: TransferCounts,
    /// Payout creations by outcome (all zero outside the `payouts` scenario).
    pub payouts: PayoutCounts,
    /// Operations answered with a final result in their places of batch requests (`--batch`): transfers
    /// applied or refused, notices acknowledged.
    pub batched: u64,
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.latency.merge(&other.latency);
        self.status.merge(&other.status);
        self.errors.merge(&other.errors);
        self.kinds.merge(&other.kinds);
        self.transfers.merge(&other.transfers);
        self.payouts.merge(&other.payouts);
        self.batched += other.batched;
    }
}

/// A sent operation that has not been acknowledged yet.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The notice's operation_id, which the server's `bank_payment.credited` event carries.
    pub operation_id: Uuid,
    /// Index into `Plan::inns`.
    pub org: usize,
    /// Its amount in kopecks.
    pub kopecks: i64,
    /// The exact body, resent verbatim so the server recognises the operation.
    pub body: Bytes,
}

/// What one worker (or all of them, merged) did.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// What the closed loop counted: measured requests, warm-up, connects, the first failure.
    pub tally: Tally,
    /// Unique operations acknowledged, warm-up included.
    pub acknowledged_ops: u64,
    /// Their operation_ids, if [`Plan::record_ids`].
    pub acknowledged_ids: Vec<Uuid>,
    /// Operations whose outcome is still unknown.
    pub pending: Vec<Pending>,
}

impl WorkerReport {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: WorkerReport) {
        self.tally.merge(other.tally);
        self.acknowledged_ops += other.acknowledged_ops;
        self.acknowledged_ids.extend(other.acknowledged_ids);
        self.pending.extend(other.pending);
    }
}

/// The next request a worker sends.
enum Job {
    Fresh(Pending),
    Retry(Pending),
    /// A resend of an acknowledged body (`--duplicate-share`).
    Duplicate,
    /// Notices sent together to the batch API, the resends first; the count of resends.
    Batch(Vec<Pending>, usize),
}

/// The webhook scenario's part of a worker: what it still has to settle and what it may resend.
struct Webhook<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    rng: SmallRng,
    unsettled: VecDeque<Pending>,
    acknowledged_bodies: Vec<Bytes>,
    acknowledged_ops: u64,
    acknowledged_ids: Vec<Uuid>,
}

impl Scenario for Webhook<'_> {
    type Job = Job;

    fn next(&mut self, _started: Instant) -> (Job, Request<'_>) {
        if self.plan.batch > 1 {
            return self.next_batch();
        }
        let (plan, rng) = (self.plan, &mut self.rng);
        // Unsettled operations go first: each one is a kopeck-exact question the verification must answer.
        let (job, body) = if let Some(pending) = self.unsettled.pop_front() {
            let body = pending.body.clone();
            (Job::Retry(pending), body)
        } else if plan.duplicate_percent > 0
            && !self.acknowledged_bodies.is_empty()
            && rng.random_range(0..100u8) < plan.duplicate_percent
        {
            let body = self.acknowledged_bodies[rng.random_range(0..self.acknowledged_bodies.len())].clone();
            (Job::Duplicate, body)
        } else {
            let pending = self.fresh();
            let body = pending.body.clone();
            (Job::Fresh(pending), body)
        };
        (job, Request::Post { path: WEBHOOK_PATH, body, idempotency_key: None })
    }

    fn book(&mut self, job: Job, result: &Result<Response, Failure>, measured: Option<&mut Stats>) -> Option<Duration> {
        let op = match job {
            Job::Batch(notices, resends) => {
                self.book_batch(notices, resends, result, measured);
                return None;
            }
            // A duplicate of an acknowledged operation changes nothing, whatever the answer.
            Job::Duplicate => {
                if let Some(stats) = measured {
                    stats.kinds.duplicate += 1;
                }
                return None;
            }
            Job::Fresh(op) => {
                if let Some(stats) = measured {
                    stats.kinds.fresh += 1;
                }
                op
            }
            Job::Retry(op) => {
                if let Some(stats) = measured {
                    stats.kinds.retry += 1;
                }
                op
            }
        };
        if matches!(result, Ok(response) if response.status == StatusCode::OK) {
            self.acknowledge(op);
        } else {
            self.unsettled.push_back(op);
        }
        None
    }
}

impl Webhook<'_> {
    /// A new notice to an organization drawn uniformly.
    fn fresh(&mut self) -> Pending {
        let (plan, rng) = (self.plan, &mut self.rng);
        let org = rng.random_range(0..plan.inns.len());
        let kopecks = rng.random_range(1..=MAX_AMOUNT_KOPECKS);
        // operation_ids come from the OS generator, never the seed: a rerun must not collide with old ones.
        let operation_id = Uuid::new_v4();
        let body = webhook_body(operation_id, &plan.inns[org], kopecks, rng.random(), rng.random());
        Pending { operation_id, org, kopecks, body }
    }

    /// Up to `batch` notices for the batch API: the unsettled ones first, then new ones.
    fn next_batch(&mut self) -> (Job, Request<'_>) {
        let mut notices = Vec::with_capacity(self.plan.batch);
        while notices.len() < self.plan.batch
            && let Some(pending) = self.unsettled.pop_front()
        {
            notices.push(pending);
        }
        let resends = notices.len();
        while notices.len() < self.plan.batch {
            let notice = self.fresh();
            notices.push(notice);
        }
        let operations: Vec<String> = notices.iter().map(|notice| notice_operation(&notice.body)).collect();
        let body = batch_body(operations.iter().map(String::as_str));
        (Job::Batch(notices, resends), Request::Post { path: BATCH_PATH, body, idempotency_key: None })
    }

    /// Books each notice of a batch by its own result: 200 acknowledges it, anything else (or a batch not
    /// answered 200 with one result per notice) leaves it unsettled, to be resent.
    fn book_batch(
        &mut self,
        notices: Vec<Pending>,
        resends: usize,
        result: &Result<Response, Failure>,
        mut measured: Option<&mut Stats>,
    ) {
        let results = batch_results(result, notices.len());
        // Bodies are counted per request, as the transfers scenario counts them: a retry if it resends any.
        if let Some(stats) = measured.as_deref_mut() {
            if resends > 0 {
                stats.kinds.retry += 1;
            } else {
                stats.kinds.fresh += 1;
            }
        }
        for (index, notice) in notices.into_iter().enumerate() {
            let acknowledged = results.as_ref().is_some_and(|results| results[index].0 == 200);
            if !acknowledged {
                self.unsettled.push_back(notice);
                continue;
            }
            if let Some(stats) = measured.as_deref_mut() {
                stats.batched += 1;
            }
            self.acknowledge(notice);
        }
    }

    /// Books an acknowledged notice: its amount, once, and what the run keeps of it.
    fn acknowledge(&mut self, op: Pending) {
        self.shared.acknowledged[op.org].fetch_add(op.kopecks, Ordering::Relaxed);
        self.acknowledged_ops += 1;
        if self.plan.record_ids {
            self.acknowledged_ids.push(op.operation_id);
        }
        if self.plan.duplicate_percent > 0 {
            remember(&mut self.acknowledged_bodies, op.body, &mut self.rng);
        }
    }
}

/// Runs one worker until the deadline, the request budget or a stop request.
pub async fn worker(plan: Arc<Plan>, shared: Arc<Shared>) -> WorkerReport {
    let mut webhook = Webhook {
        plan: &plan,
        shared: &shared,
        rng: SmallRng::from_os_rng(),
        unsettled: VecDeque::new(),
        acknowledged_bodies: Vec::new(),
        acknowledged_ops: 0,
        acknowledged_ids: Vec::new(),
    };
    let tally = closed_loop::run(&plan.pace, &shared.issued, &mut webhook).await;
    WorkerReport {
        tally,
        acknowledged_ops: webhook.acknowledged_ops,
        acknowledged_ids: webhook.acknowledged_ids,
        pending: webhook.unsettled.into(),
    }
}

/// Keeps `body` as a candidate duplicate, replacing a random one once the pool is full.
fn remember(pool: &mut Vec<Bytes>, body: Bytes, rng: &mut SmallRng) {
    if pool.len() < DUPLICATE_POOL {
        pool.push(body);
    } else {
        let slot = rng.random_range(0..pool.len());
        pool[slot] = body;
    }
}

/// How the settle phase went.
#[derive(Debug, Default, Clone, Copy)]
pub struct Settled {
    /// Operations carried over from the load phase.
    pub carried: u64,
    /// Of those, how many a resend finally got acknowledged.
    pub acknowledged: u64,
    /// Resends made.
    pub attempts: u64,
}

/// Resends each unsettled operation, one at a time, until it is acknowledged or `deadline` passes.
///
/// Runs after the load so the server is quiet and a 503 has every chance to turn into a 200. Returns the
/// operations still unknown, which make exact verification impossible for their organizations. The
/// operation_ids of those it settles are added to `acknowledged_ids`.
pub async fn settle(
    pending: Vec<Pending>,
    target: &Target,
    timeout: Duration,
    deadline: Instant,
    shared: &Shared,
    acknowledged_ids: &mut Vec<Uuid>,
) -> (Settled, Vec<Pending>) {
    let mut client = Client::new(target.clone(), timeout);
    let mut settled = Settled { carried: pending.len() as u64, ..Settled::default() };
    let mut unresolved = Vec::new();
    for op in pending {
        let mut backoff = Duration::from_millis(20);
        let mut done = false;
        while !done && Instant::now() < deadline {
            settled.attempts += 1;
            match client.post_json(WEBHOOK_PATH, op.body.clone()).await {
                Ok(response) if response.status == StatusCode::OK => done = true,
                _ => {
                    tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        if done {
            shared.acknowledged[op.org].fetch_add(op.kopecks, Ordering::Relaxed);
            settled.acknowledged += 1;
            acknowledged_ids.push(op.operation_id);
        } else {
            unresolved.push(op);
        }
    }
    (settled, unresolved)
}
