//! The `payouts` scenario: closed-loop payout creation, then the drain of the server's payout queue.
//!
//! Phase 1 creates payouts (each a new one: the bench sends no idempotency key) and counts how each request
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
use crate::closed_loop::{self, Pace, Request, Scenario, Tally};
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
    /// The server, the warm-up, the end of creation and how to stop it early; in-flight requests still finish
    /// and are counted.
    pub pace: Pace,
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
    /// What the closed loop counted: measured requests, warm-up, connects, the first failure.
    pub tally: Tally,
    /// Every creation's outcome, warm-up included: what the queue's counts are checked against.
    pub outcomes: PayoutCounts,
    /// When the first creation request was sent.
    pub first_sent: Option<Instant>,
}

impl WorkerReport {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: WorkerReport) {
        self.tally.merge(other.tally);
        self.outcomes.merge(&other.outcomes);
        self.first_sent = match (self.first_sent, other.first_sent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The payouts scenario's part of a worker: how its creations came out.
struct Payouts {
    rng: SmallRng,
    outcomes: PayoutCounts,
    first_sent: Option<Instant>,
}

impl Scenario for Payouts {
    type Job = ();

    fn next(&mut self, started: Instant) -> ((), Request<'_>) {
        // Every request is a new payout; one whose outcome is unknown is never resent.
        let body = payout_body(self.rng.random_range(1..=MAX_PAYOUT_KOPECKS));
        self.first_sent.get_or_insert(started);
        ((), Request::Post { path: PAYOUTS_PATH, body, idempotency_key: None })
    }

    fn book(&mut self, (): (), result: &Result<Response, Failure>, measured: Option<&mut Stats>) -> Option<Duration> {
        let outcome = classify(result);
        self.outcomes.count(outcome);
        if let Some(stats) = measured {
            stats.kinds.fresh += 1;
            stats.payouts.count(outcome);
        }
        None
    }
}

/// Runs one worker until the deadline, the request budget or a stop request.
pub async fn worker(plan: Arc<Plan>, shared: Arc<Shared>) -> WorkerReport {
    let mut payouts = Payouts { rng: SmallRng::from_os_rng(), outcomes: PayoutCounts::default(), first_sent: None };
    let tally = closed_loop::run(&plan.pace, &shared.issued, &mut payouts).await;
    WorkerReport { tally, outcomes: payouts.outcomes, first_sent: payouts.first_sent }
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
