//! The `payouts` scenario: closed-loop payout creation, then the drain of the server's payout queue.
//!
//! Phase 1 creates payouts (each a new one: the endpoint has no idempotency key) and counts how each request
//! came out: 201 created it; a 503 `overloaded` or `unavailable`, a 4xx or a failed connect certainly did
//! not; a 503 `unconfirmed`, any other answer, or a request sent without getting an answer may have. The
//! last are never resent, since a resend could create a second payout: they only widen the check at the
//! end to a range.
//!
//! Phase 2 polls the payout counts by status until nothing is pending or processing, and reports how fast
//! the server's workers completed payouts while creation was over, and overall.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::StatusCode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::api::{PAYOUTS_PATH, PayoutStatus, UNCONFIRMED, error_code, payout_body, read_payout_count};
use crate::client::{Client, Failure, Response, Target};
use crate::load::{PayoutCounts, Stats};

/// The largest amount of one generated payout, in kopecks (100.00 roubles); the smallest is 1 (0.01).
pub const MAX_PAYOUT_KOPECKS: i64 = 10_000;

/// How often the counts are read while the queue drains.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Every how many polls the drain's progress is printed (every 10 s).
const PROGRESS_EVERY: u64 = 40;

/// How the creation phase is shaped; shared read-only by all workers.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server.
    pub target: Target,
    /// Requests starting before this instant are warm-up: their payouts count, their latency does not.
    pub warmup_end: Instant,
    /// No request starts at or after this instant, if set.
    pub deadline: Option<Instant>,
    /// Stop after this many measured requests in total, if set.
    pub max_requests: Option<u64>,
    /// Bound on each connect and each request/response.
    pub timeout: Duration,
    /// Set (by Ctrl-C) to end creation early; in-flight requests still finish and are counted.
    pub stop: Arc<AtomicBool>,
}

/// State the workers share while running.
#[derive(Debug, Default)]
pub struct Shared {
    /// Measured requests handed out so far, for `--requests`.
    issued: AtomicU64,
}

/// What one answer (or its absence) says about a payout creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 201: the payout exists.
    Created,
    /// Certainly not created: 503 `overloaded`/`unavailable`, a 4xx refusing the request, or never sent.
    Refused,
    /// 503 `unconfirmed`: the server's commit failed; the payout may exist.
    Unconfirmed,
    /// Any other answer, or none after the request went out: the payout may exist.
    Unknown,
}

/// Classifies the result of one creation request.
pub fn classify(result: &Result<Response, Failure>) -> Outcome {
    match result {
        Ok(response) => match response.status {
            StatusCode::CREATED => Outcome::Created,
            StatusCode::SERVICE_UNAVAILABLE => match error_code(&response.body).as_deref() {
                Some(UNCONFIRMED) => Outcome::Unconfirmed,
                // The engine refused or rolled back the command: nothing was created.
                Some("overloaded" | "unavailable") => Outcome::Refused,
                // A 503 without payledger's body (a proxy, say) says nothing about the payout.
                _ => Outcome::Unknown,
            },
            // A 404 to a create can only come from the read after the creation not finding the payout (or a
            // wrong --url, which leaves nothing created at all and fails the run anyway): in doubt.
            StatusCode::NOT_FOUND => Outcome::Unknown,
            status if status.is_client_error() => Outcome::Refused,
            _ => Outcome::Unknown,
        },
        // No connection, so the request was never sent.
        Err(Failure::Connect(_)) => Outcome::Refused,
        Err(Failure::Transport(_) | Failure::Timeout) => Outcome::Unknown,
    }
}

impl PayoutCounts {
    /// Counts one creation outcome.
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::Unconfirmed => self.unconfirmed += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }
}

/// What one worker (or all of them, merged) did.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// Requests after the warm-up.
    pub measured: Stats,
    /// Requests during the warm-up (sent, answered or not).
    pub warmup_requests: u64,
    /// Every creation's outcome, warm-up included: what the queue's counts are checked against.
    pub outcomes: PayoutCounts,
    /// When the first creation request was sent.
    pub first_sent: Option<Instant>,
    /// When the last measured request finished.
    pub last_measured: Option<Instant>,
    /// Connections opened.
    pub connects: u64,
    /// The first connect or transport failure seen, to tell the operator why requests failed.
    pub first_error: Option<String>,
}

impl WorkerReport {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: WorkerReport) {
        self.measured.merge(&other.measured);
        self.warmup_requests += other.warmup_requests;
        self.outcomes.merge(&other.outcomes);
        self.first_sent = match (self.first_sent, other.first_sent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_measured = self.last_measured.max(other.last_measured);
        self.connects += other.connects;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs one worker until the deadline, the request budget or a stop request.
pub async fn worker(plan: Arc<Plan>, shared: Arc<Shared>) -> WorkerReport {
    let mut rng = SmallRng::from_os_rng();
    let mut client = Client::new(plan.target.clone(), plan.timeout);
    let mut report = WorkerReport::default();
    let mut connect_backoff = Duration::from_millis(10);

    loop {
        if plan.stop.load(Ordering::Relaxed) || plan.deadline.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        if let Err(failure) = client.ensure_connected().await {
            // Nothing was sent, so nothing is in doubt: wait a little instead of hammering a dead port.
            if Instant::now() >= plan.warmup_end {
                report.measured.errors.connect += 1;
            }
            report.first_error.get_or_insert_with(|| failure.to_string());
            tokio::time::sleep(connect_backoff).await;
            connect_backoff = (connect_backoff * 2).min(Duration::from_millis(500));
            continue;
        }
        connect_backoff = Duration::from_millis(10);

        let started = Instant::now();
        let warmup = started < plan.warmup_end;
        if !warmup
            && let Some(budget) = plan.max_requests
            && shared.issued.fetch_add(1, Ordering::Relaxed) >= budget
        {
            break;
        }

        // Every request is a new payout; one whose outcome is unknown is never resent.
        let body = payout_body(rng.random_range(1..=MAX_PAYOUT_KOPECKS));
        report.first_sent.get_or_insert(started);
        let result = client.post_json(PAYOUTS_PATH, body).await;
        let finished = Instant::now();
        let outcome = classify(&result);
        report.outcomes.count(outcome);
        let stats = &mut report.measured;
        if warmup {
            report.warmup_requests += 1;
        } else {
            stats.requests += 1;
            stats.kinds.fresh += 1;
            stats.payouts.count(outcome);
            report.last_measured = Some(finished);
        }
        match result {
            Ok(response) => {
                if !warmup {
                    let nanos = u64::try_from((finished - started).as_nanos()).unwrap_or(u64::MAX);
                    stats.latency.record(nanos);
                    stats.status.count(response.status);
                }
            }
            Err(failure) => {
                report.first_error.get_or_insert_with(|| failure.to_string());
                if !warmup {
                    match failure {
                        Failure::Connect(_) => stats.errors.connect += 1,
                        Failure::Transport(_) => stats.errors.transport += 1,
                        Failure::Timeout => stats.errors.timeout += 1,
                    }
                }
            }
        }
    }

    report.connects = client.connects();
    report
}

/// The server's payout counts by status (its whole table, not only this run's payouts).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting for a worker.
    pub pending: i64,
    /// Claimed by a worker.
    pub processing: i64,
    /// Paid.
    pub completed: i64,
    /// Declined or given up on.
    pub failed: i64,
}

impl QueueCounts {
    /// Payouts not finished yet: pending or processing.
    pub fn unfinished(&self) -> i64 {
        self.pending.saturating_add(self.processing)
    }
}

/// Reads the four counts, in the order a payout moves through the statuses.
///
/// The four reads are not one snapshot, and the order is what makes "nothing unfinished" trustworthy: a
/// payout not seen pending was already processing or finished, and one then not seen processing was
/// finished, so it is in the completed or failed count read after. (Reading processing first could miss a
/// payout that moved from pending to processing between the two reads.)
pub async fn read_queue_counts(client: &mut Client) -> anyhow::Result<QueueCounts> {
    Ok(QueueCounts {
        pending: read_payout_count(client, PayoutStatus::Pending).await?,
        processing: read_payout_count(client, PayoutStatus::Processing).await?,
        completed: read_payout_count(client, PayoutStatus::Completed).await?,
        failed: read_payout_count(client, PayoutStatus::Failed).await?,
    })
}

/// How the queue drained after creation stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// The counts read right after creation stopped.
    pub at_stop: QueueCounts,
    /// The last counts read: nothing unfinished, or the state at the `--converge` deadline.
    pub last: QueueCounts,
    /// Whether nothing was pending or processing in the end.
    pub drained: bool,
    /// Whether Ctrl-C ended the drain before the queue was empty or the `--converge` limit passed.
    pub interrupted: bool,
    /// From the first poll (creation just stopped) to the last.
    pub elapsed: Duration,
    /// From the first creation request to the last poll.
    pub since_first_creation: Duration,
    /// Polls made.
    pub polls: u64,
}

impl Drain {
    /// Payouts completed between the first and the last poll.
    pub fn completed_during_drain(&self) -> i64 {
        self.last.completed.saturating_sub(self.at_stop.completed)
    }

    /// Payouts completed per second between the first and the last poll, in tenths; `None` when the queue
    /// was already empty at the first poll.
    pub fn drain_rate_tenths(&self) -> Option<u64> {
        rate_tenths(self.completed_during_drain(), self.elapsed)
    }
}

/// `count` per second over `elapsed`, in tenths, computed in integers; `None` over no time at all.
pub fn rate_tenths(count: i64, elapsed: Duration) -> Option<u64> {
    let nanos = elapsed.as_nanos();
    if nanos == 0 {
        return None;
    }
    let count = u128::try_from(count.max(0)).unwrap_or(0);
    Some(u64::try_from(count * 10_000_000_000 / nanos).unwrap_or(u64::MAX))
}

/// Polls the counts every [`POLL_INTERVAL`] until nothing is pending or processing, `patience` has passed
/// since the first poll, or `stop` is set during the drain (a Ctrl-C during creation already set it, so only
/// a change counts). `first_sent` is when creation began, for the overall duration.
pub async fn drain(
    target: &Target,
    timeout: Duration,
    patience: Duration,
    first_sent: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<Drain> {
    let stopped_before = stop.load(Ordering::Relaxed);
    let mut client = Client::new(target.clone(), timeout);
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first: Option<(Instant, QueueCounts)> = None;
    let mut polls = 0;
    loop {
        ticks.tick().await;
        let at = Instant::now();
        let counts = read_queue_counts(&mut client).await.context("reading the payout counts while draining")?;
        polls += 1;
        let (started, at_stop) = *first.get_or_insert((at, counts));
        let drained = counts.unfinished() == 0;
        let interrupted = !stopped_before && stop.load(Ordering::Relaxed);
        if drained || interrupted || at.saturating_duration_since(started) >= patience {
            return Ok(Drain {
                at_stop,
                last: counts,
                drained,
                interrupted: interrupted && !drained,
                elapsed: at.saturating_duration_since(started),
                since_first_creation: at.saturating_duration_since(first_sent),
                polls,
            });
        }
        if polls.is_multiple_of(PROGRESS_EVERY) {
            eprintln!(
                "draining: {} pending, {} processing, {} completed, {} failed after {} s",
                counts.pending,
                counts.processing,
                counts.completed,
                counts.failed,
                at.saturating_duration_since(started).as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn response(status: u16, body: &str) -> Result<Response, Failure> {
        Ok(Response { status: StatusCode::from_u16(status).unwrap(), body: Bytes::from(body.to_owned()) })
    }

    #[test]
    fn answers_are_classified_by_what_they_say_about_the_payout() {
        assert_eq!(classify(&response(201, r#"{"id": "x", "status": "pending"}"#)), Outcome::Created);
        let unconfirmed = r#"{"error": "The outcome is not confirmed", "code": "unconfirmed"}"#;
        assert_eq!(classify(&response(503, unconfirmed)), Outcome::Unconfirmed);
        assert_eq!(classify(&response(503, r#"{"error": "busy", "code": "overloaded"}"#)), Outcome::Refused);
        assert_eq!(classify(&response(503, r#"{"error": "down", "code": "unavailable"}"#)), Outcome::Refused);
        assert_eq!(classify(&response(503, "<html>bad gateway</html>")), Outcome::Unknown);
        assert_eq!(classify(&response(400, r#"{"code": "invalid_data"}"#)), Outcome::Refused);
        assert_eq!(classify(&response(409, r#"{"code": "insufficient_funds"}"#)), Outcome::Refused);
        assert_eq!(classify(&response(404, r#"{"error": "Payout not found"}"#)), Outcome::Unknown);
        assert_eq!(classify(&response(500, "{}")), Outcome::Unknown);
        assert_eq!(classify(&response(200, "{}")), Outcome::Unknown);
        assert_eq!(classify(&Err(Failure::Timeout)), Outcome::Unknown);
        assert_eq!(classify(&Err(Failure::Transport(anyhow::anyhow!("reset")))), Outcome::Unknown);
        assert_eq!(classify(&Err(Failure::Connect(anyhow::anyhow!("refused")))), Outcome::Refused);
    }

    #[test]
    fn outcomes_are_counted_and_merged() {
        let mut a = WorkerReport::default();
        for outcome in [Outcome::Created, Outcome::Created, Outcome::Unconfirmed] {
            a.outcomes.count(outcome);
        }
        let mut b = WorkerReport::default();
        for outcome in [Outcome::Created, Outcome::Refused, Outcome::Unknown] {
            b.outcomes.count(outcome);
        }
        let now = Instant::now();
        b.first_sent = Some(now);
        a.merge(b);
        assert_eq!(a.outcomes, PayoutCounts { created: 3, refused: 1, unconfirmed: 1, unknown: 1 });
        assert_eq!(a.outcomes.in_doubt(), 2);
        assert_eq!(a.first_sent, Some(now));
    }

    #[test]
    fn rates_are_integers_and_undefined_over_no_time() {
        assert_eq!(rate_tenths(400, Duration::from_secs(1)), Some(4_000));
        assert_eq!(rate_tenths(1, Duration::from_secs(3)), Some(3));
        assert_eq!(rate_tenths(0, Duration::from_secs(3)), Some(0));
        assert_eq!(rate_tenths(-5, Duration::from_secs(3)), Some(0));
        assert_eq!(rate_tenths(7, Duration::ZERO), None);
        let drain = Drain {
            at_stop: QueueCounts { pending: 90, processing: 2, completed: 8, failed: 0 },
            last: QueueCounts { completed: 100, ..QueueCounts::default() },
            drained: true,
            interrupted: false,
            elapsed: Duration::from_millis(500),
            since_first_creation: Duration::from_secs(1),
            polls: 3,
        };
        assert_eq!((drain.completed_during_drain(), drain.drain_rate_tenths()), (92, Some(1_840)));
        assert_eq!(QueueCounts { pending: 3, processing: 4, completed: 5, failed: 6 }.unfinished(), 7);
    }
}
