//! The closed loop every scenario's workers share: one connection and one request in flight each.
//!
//! The loop owns what is the same everywhere: stopping at the deadline, the request budget or a stop
//! request, reconnecting with backoff, telling warm-up from measured requests, timing each request and
//! counting its status or failure. A [`Scenario`] makes the next request and books its answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderValue;

use crate::client::{Client, Failure, Response, Target};
use crate::load::Stats;

/// How a scenario's workers are paced; part of its plan, shared read-only by all workers.
#[derive(Debug, Clone)]
pub struct Pace {
    /// The server.
    pub target: Target,
    /// Requests starting before this instant are warm-up: booked by the scenario, left out of the report.
    pub warmup_end: Instant,
    /// No request starts at or after this instant, if set.
    pub deadline: Option<Instant>,
    /// Stop after this many measured requests in total, if set.
    pub max_requests: Option<u64>,
    /// Bound on each connect and each request/response.
    pub timeout: Duration,
    /// Set (by Ctrl-C) to end the load early; in-flight requests still finish and are booked.
    pub stop: Arc<AtomicBool>,
}

/// One request for the loop to send; `path` is below the URL's prefix.
pub enum Request<'a> {
    /// A `GET`, for the read scenarios and the ceiling; the path may borrow from the scenario's plan, so a
    /// read does not allocate its path per request.
    Get {
        /// Where to `GET`.
        path: &'a str,
    },
    /// A JSON `POST`.
    Post {
        /// Where to `POST` it.
        path: &'a str,
        /// The exact body.
        body: Bytes,
        /// Its Idempotency-Key, if the endpoint takes one.
        idempotency_key: Option<HeaderValue>,
    },
}

/// A scenario's part of the loop: making the next request and booking its answer.
pub trait Scenario {
    /// What the scenario keeps about a sent request until its answer is booked.
    type Job;

    /// The next request, which starts at `started`.
    fn next(&mut self, started: Instant) -> (Self::Job, Request<'_>);

    /// Books the answer to `job` (or its absence); `measured` is `None` during the warm-up. Returns how long
    /// to pause before the next request, if at all.
    fn book(
        &mut self,
        job: Self::Job,
        result: &Result<Response, Failure>,
        measured: Option<&mut Stats>,
    ) -> Option<Duration>;
}

/// What the loop itself counted: the part every scenario's worker report shares.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests after the warm-up.
    pub measured: Stats,
    /// Requests during the warm-up (sent, answered or not).
    pub warmup_requests: u64,
    /// When the last measured request finished.
    pub last_measured: Option<Instant>,
    /// Connections opened.
    pub connects: u64,
    /// The first connect or transport failure seen, to tell the operator why requests failed.
    pub first_error: Option<String>,
}

impl Tally {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: Tally) {
        self.measured.merge(&other.measured);
        self.warmup_requests += other.warmup_requests;
        self.last_measured = self.last_measured.max(other.last_measured);
        self.connects += other.connects;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// How long the measured requests took, from the end of the warm-up to the last one's end.
    pub fn elapsed(&self, warmup_end: Instant) -> Duration {
        self.last_measured.map(|last| last.saturating_duration_since(warmup_end)).unwrap_or_default()
    }
}

/// Runs one worker until the deadline, the request budget (counted in `issued`) or a stop request.
pub async fn run(pace: &Pace, issued: &AtomicU64, scenario: &mut impl Scenario) -> Tally {
    let mut client = Client::new(pace.target.clone(), pace.timeout);
    let mut tally = Tally::default();
    let mut connect_backoff = Duration::from_millis(10);

    loop {
        if pace.stop.load(Ordering::Relaxed) || pace.deadline.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        if let Err(failure) = client.ensure_connected().await {
            // Nothing was sent, so nothing is in doubt: wait a little instead of hammering a dead port.
            if Instant::now() >= pace.warmup_end {
                tally.measured.errors.connect += 1;
            }
            tally.first_error.get_or_insert_with(|| failure.to_string());
            tokio::time::sleep(connect_backoff).await;
            connect_backoff = (connect_backoff * 2).min(Duration::from_millis(500));
            continue;
        }
        connect_backoff = Duration::from_millis(10);

        let started = Instant::now();
        let warmup = started < pace.warmup_end;
        if !warmup
            && let Some(budget) = pace.max_requests
            && issued.fetch_add(1, Ordering::Relaxed) >= budget
        {
            break;
        }

        let (job, request) = scenario.next(started);
        let result = match request {
            Request::Get { path } => client.get(path).await,
            Request::Post { path, body, idempotency_key: Some(key) } => {
                client.post_json_idempotent(path, body, key).await
            }
            Request::Post { path, body, idempotency_key: None } => client.post_json(path, body).await,
        };
        let finished = Instant::now();
        let stats = &mut tally.measured;
        if warmup {
            tally.warmup_requests += 1;
        } else {
            stats.requests += 1;
            tally.last_measured = Some(finished);
        }
        match &result {
            Ok(response) => {
                if !warmup {
                    let nanos = u64::try_from((finished - started).as_nanos()).unwrap_or(u64::MAX);
                    stats.latency.record(nanos);
                    stats.status.count(response.status);
                }
            }
            Err(failure) => {
                tally.first_error.get_or_insert_with(|| failure.to_string());
                if !warmup {
                    match failure {
                        Failure::Connect(_) => stats.errors.connect += 1,
                        Failure::Transport(_) => stats.errors.transport += 1,
                        Failure::Timeout => stats.errors.timeout += 1,
                    }
                }
            }
        }

        if let Some(pause) = scenario.book(job, &result, (!warmup).then_some(stats)) {
            tokio::time::sleep(pause).await;
        }
    }

    tally.connects = client.connects();
    tally
}
