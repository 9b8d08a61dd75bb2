//! The `transfers` scenario's requests: deposits for the set-up, closed-loop transfer workers, and the
//! settling of transfers whose outcome is unknown.
//!
//! The bookkeeping mirrors the webhook scenario's. Every transfer carries a fresh Idempotency-Key, and the
//! key and exact body are kept until the server settles it: 201 (applied) or 409 `insufficient_funds`
//! (refused, nothing moved). Any other answer, or none, leaves the outcome unknown, so the worker resends
//! the same body with the same key before creating new work; the server replays the first outcome instead
//! of applying it again. Only applied transfers enter the expected balances, each exactly once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::api::{
    ADD_FUNDS_PATH, BATCH_PATH, INSUFFICIENT_FUNDS, KEY_IN_FLIGHT, TRANSFER_FUNDS_PATH, add_funds_body, batch_body,
    batch_results, error_code, transfer_body, transfer_operation,
};
use crate::client::{Client, Failure, Response, Target, auth_hint};
use crate::closed_loop::{self, Pace, Request, Scenario, Tally};
use crate::load::{Settled, Stats};

/// The largest amount of one generated transfer, in kopecks (100.00 roubles).
pub const MAX_TRANSFER_KOPECKS: i64 = 10_000;

/// How long a worker waits before resending a transfer the server says is still in flight, so it does not
/// spin on a request the server is still working on.
const IN_FLIGHT_PAUSE: Duration = Duration::from_millis(10);

/// How the load phase is shaped; shared read-only by all workers.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server, the warm-up, the end of the load and how to stop it early.
    pub pace: Pace,
    /// The users' ids; each transfer picks two distinct ones uniformly.
    pub users: Arc<Vec<u64>>,
    /// Transfers per request: 1 to the transfer endpoint, more to the batch API.
    pub batch: usize,
}

/// State the workers share while running: the money applied transfers moved, per user.
#[derive(Debug)]
pub struct Shared {
    /// Exact sum of applied transfers each user sent, in kopecks, indexed like `Plan::users`.
    pub sent: Vec<AtomicI64>,
    /// Exact sum of applied transfers each user received, in kopecks, indexed like `Plan::users`.
    pub received: Vec<AtomicI64>,
    /// Measured requests handed out so far, for `--requests`.
    issued: AtomicU64,
}

impl Shared {
    /// Zeroed state for `users` users.
    pub fn new(users: usize) -> Shared {
        Shared {
            sent: (0..users).map(|_| AtomicI64::new(0)).collect(),
            received: (0..users).map(|_| AtomicI64::new(0)).collect(),
            issued: AtomicU64::new(0),
        }
    }

    /// Books an applied transfer; called exactly once per transfer, on its first 201.
    pub fn apply(&self, transfer: &Transfer) {
        self.sent[transfer.sender].fetch_add(transfer.kopecks, Ordering::Relaxed);
        self.received[transfer.recipient].fetch_add(transfer.kopecks, Ordering::Relaxed);
    }

    /// The sent sums as plain numbers, once the workers are done.
    pub fn sent_totals(&self) -> Vec<i64> {
        self.sent.iter().map(|sum| sum.load(Ordering::Relaxed)).collect()
    }

    /// The received sums as plain numbers, once the workers are done.
    pub fn received_totals(&self) -> Vec<i64> {
        self.received.iter().map(|sum| sum.load(Ordering::Relaxed)).collect()
    }
}

/// A transfer sent at least once whose outcome is not known yet.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Index of the sender in `Plan::users`.
    pub sender: usize,
    /// Index of the recipient in `Plan::users`, never the sender.
    pub recipient: usize,
    /// The amount in kopecks.
    pub kopecks: i64,
    /// Its Idempotency-Key, resent with every attempt.
    pub key: HeaderValue,
    /// The exact body, resent verbatim: the server replays a key's outcome only for the same body.
    pub body: Bytes,
}

impl Transfer {
    /// A new transfer between `users[sender]` and `users[recipient]` with a fresh key.
    pub fn new(users: &[u64], sender: usize, recipient: usize, kopecks: i64) -> Transfer {
        Transfer {
            sender,
            recipient,
            kopecks,
            key: fresh_key(),
            body: transfer_body(users[sender], users[recipient], kopecks),
        }
    }
}

/// A fresh Idempotency-Key. Keys come from the OS generator, never the seed: a rerun must not replay old ones.
pub fn fresh_key() -> HeaderValue {
    let mut text = Uuid::encode_buffer();
    // Not I/O and cannot fail: a hyphenated UUID is 36 visible ASCII characters.
    HeaderValue::from_str(Uuid::new_v4().hyphenated().encode_lower(&mut text))
        .expect("a hyphenated UUID is a valid header value")
}

/// What one answer (or its absence) says about a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 201: the transfer was applied.
    Applied,
    /// 409 `insufficient_funds`: the transfer was refused and nothing moved.
    Refused,
    /// 409 `idempotency_key_in_flight`: an earlier attempt is still being processed; unknown for now.
    InFlight,
    /// Anything else, or no answer: it may or may not have been applied.
    Unknown,
}

/// Classifies the result of one transfer request.
pub fn classify(result: &Result<Response, Failure>) -> Outcome {
    match result {
        Ok(response) if response.status == StatusCode::CONFLICT => {
            classify_answer(response.status.as_u16(), error_code(&response.body).as_deref())
        }
        Ok(response) => classify_answer(response.status.as_u16(), None),
        Err(_) => Outcome::Unknown,
    }
}

/// Classifies one transfer's answer by its status and error code.
fn classify_answer(status: u16, code: Option<&str>) -> Outcome {
    match (status, code) {
        (201, _) => Outcome::Applied,
        (409, Some(INSUFFICIENT_FUNDS)) => Outcome::Refused,
        (409, Some(KEY_IN_FLIGHT)) => Outcome::InFlight,
        _ => Outcome::Unknown,
    }
}

/// Classifies each of `count` transfers sent in one batch request: by its own result when the batch was
/// answered 200 with one result per transfer, unknown otherwise.
pub fn classify_batch(result: &Result<Response, Failure>, count: usize) -> Vec<Outcome> {
    match batch_results(result, count) {
        Some(results) => results.iter().map(|(status, code)| classify_answer(*status, code.as_deref())).collect(),
        None => vec![Outcome::Unknown; count],
    }
}

/// What one worker (or all of them, merged) did.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// What the closed loop counted: measured requests, warm-up, connects, the first failure.
    pub tally: Tally,
    /// Transfers applied, warm-up included.
    pub applied: u64,
    /// Transfers refused for insufficient funds, warm-up included.
    pub refused: u64,
    /// Transfers whose outcome is still unknown.
    pub pending: Vec<Transfer>,
}

impl WorkerReport {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: WorkerReport) {
        self.tally.merge(other.tally);
        self.applied += other.applied;
        self.refused += other.refused;
        self.pending.extend(other.pending);
    }
}

/// The transfers scenario's part of a worker: the transfers it still has to settle.
struct Transfers<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    rng: SmallRng,
    unsettled: VecDeque<Transfer>,
    applied: u64,
    refused: u64,
}

impl Transfers<'_> {
    /// A fresh transfer between two distinct users drawn uniformly.
    fn fresh(&mut self) -> Transfer {
        let (users, rng) = (self.plan.users.len(), &mut self.rng);
        let sender = rng.random_range(0..users);
        // Draw from the other users-1 and skip over the sender: distinct and still uniform.
        let mut recipient = rng.random_range(0..users - 1);
        if recipient >= sender {
            recipient += 1;
        }
        let kopecks = rng.random_range(1..=MAX_TRANSFER_KOPECKS);
        Transfer::new(&self.plan.users, sender, recipient, kopecks)
    }
}

impl Scenario for Transfers<'_> {
    /// The transfers of one request, and whether any is a resend.
    type Job = (Vec<Transfer>, bool);

    fn next(&mut self, _started: Instant) -> ((Vec<Transfer>, bool), Request<'_>) {
        // Unsettled transfers go first: each one is a kopeck-exact question the verification must answer.
        let mut transfers = Vec::with_capacity(self.plan.batch);
        while transfers.len() < self.plan.batch
            && let Some(transfer) = self.unsettled.pop_front()
        {
            transfers.push(transfer);
        }
        let retry = !transfers.is_empty();
        while transfers.len() < self.plan.batch {
            let transfer = self.fresh();
            transfers.push(transfer);
        }
        let request = match transfers.as_slice() {
            [transfer] if self.plan.batch == 1 => Request::Post {
                path: TRANSFER_FUNDS_PATH,
                body: transfer.body.clone(),
                idempotency_key: Some(transfer.key.clone()),
            },
            _ => {
                let users = &self.plan.users;
                let operations: Vec<String> = transfers
                    .iter()
                    .map(|t| {
                        let key = t.key.to_str().unwrap_or_default();
                        transfer_operation(key, users[t.sender], users[t.recipient], t.kopecks)
                    })
                    .collect();
                Request::Post {
                    path: BATCH_PATH,
                    body: batch_body(operations.iter().map(String::as_str)),
                    idempotency_key: None,
                }
            }
        };
        ((transfers, retry), request)
    }

    fn book(
        &mut self,
        (transfers, retry): (Vec<Transfer>, bool),
        result: &Result<Response, Failure>,
        mut measured: Option<&mut Stats>,
    ) -> Option<Duration> {
        let outcomes =
            if self.plan.batch == 1 { vec![classify(result)] } else { classify_batch(result, transfers.len()) };
        if let Some(stats) = measured.as_deref_mut() {
            if retry {
                stats.kinds.retry += 1;
            } else {
                stats.kinds.fresh += 1;
            }
        }
        let mut pause = None;
        for (transfer, outcome) in transfers.into_iter().zip(outcomes) {
            if let Some(stats) = measured.as_deref_mut() {
                match outcome {
                    Outcome::Applied => stats.transfers.applied += 1,
                    Outcome::Refused => stats.transfers.refused += 1,
                    Outcome::InFlight => stats.transfers.in_flight += 1,
                    Outcome::Unknown => {}
                }
                if self.plan.batch > 1 && matches!(outcome, Outcome::Applied | Outcome::Refused) {
                    stats.batched += 1;
                }
            }
            match outcome {
                Outcome::Applied => {
                    self.shared.apply(&transfer);
                    self.applied += 1;
                }
                Outcome::Refused => self.refused += 1,
                Outcome::InFlight => {
                    self.unsettled.push_back(transfer);
                    pause = Some(IN_FLIGHT_PAUSE);
                }
                Outcome::Unknown => self.unsettled.push_back(transfer),
            }
        }
        pause
    }
}

/// Runs one worker until the deadline, the request budget or a stop request.
pub async fn worker(plan: Arc<Plan>, shared: Arc<Shared>) -> WorkerReport {
    let mut transfers = Transfers {
        plan: &plan,
        shared: &shared,
        rng: SmallRng::from_os_rng(),
        unsettled: VecDeque::new(),
        applied: 0,
        refused: 0,
    };
    let tally = closed_loop::run(&plan.pace, &shared.issued, &mut transfers).await;
    WorkerReport { tally, applied: transfers.applied, refused: transfers.refused, pending: transfers.unsettled.into() }
}

/// How the settle phase went, with the transfers it settled split by outcome.
#[derive(Debug, Default)]
pub struct SettleReport {
    /// Carried over, settled (applied or refused) and resends made.
    pub settled: Settled,
    /// Of the settled, how many turned out applied.
    pub applied: u64,
    /// Of the settled, how many turned out refused.
    pub refused: u64,
    /// Transfers still unknown at the deadline.
    pub unresolved: Vec<Transfer>,
}

/// Resends each unsettled transfer with its key, one at a time, until it is applied or refused or
/// `deadline` passes.
///
/// Runs after the load so the server is quiet and a 503 or an in-flight 409 has every chance to turn into
/// a final answer. Applied transfers are booked into `shared`.
pub async fn settle(
    pending: Vec<Transfer>,
    target: &Target,
    timeout: Duration,
    deadline: Instant,
    shared: &Shared,
) -> SettleReport {
    let mut client = Client::new(target.clone(), timeout);
    let mut report =
        SettleReport { settled: Settled { carried: pending.len() as u64, ..Settled::default() }, ..Default::default() };
    for transfer in pending {
        let mut backoff = Duration::from_millis(20);
        let mut outcome = Outcome::Unknown;
        while matches!(outcome, Outcome::Unknown | Outcome::InFlight) && Instant::now() < deadline {
            report.settled.attempts += 1;
            let result =
                client.post_json_idempotent(TRANSFER_FUNDS_PATH, transfer.body.clone(), transfer.key.clone()).await;
            outcome = classify(&result);
            if matches!(outcome, Outcome::Unknown | Outcome::InFlight) {
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        match outcome {
            Outcome::Applied => {
                shared.apply(&transfer);
                report.applied += 1;
                report.settled.acknowledged += 1;
            }
            Outcome::Refused => {
                report.refused += 1;
                report.settled.acknowledged += 1;
            }
            Outcome::InFlight | Outcome::Unknown => report.unresolved.push(transfer),
        }
    }
    report
}

/// Deposits `kopecks` into every user, `concurrency` at a time, each with its own Idempotency-Key.
///
/// A deposit whose outcome is unknown is resent with the same key, for up to `patience` per deposit; one
/// that still has no 201 then, or that the server rejects outright (4xx), ends the run, since the expected
/// balances would no longer be known. Returns how many resends were needed.
pub async fn deposit_all(
    target: &Target,
    timeout: Duration,
    users: Arc<Vec<u64>>,
    kopecks: i64,
    concurrency: usize,
    patience: Duration,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicUsize::new(0));
    let depositors = concurrency.clamp(1, users.len().max(1));
    let mut tasks = Vec::with_capacity(depositors);
    for _ in 0..depositors {
        let (users, next) = (Arc::clone(&users), Arc::clone(&next));
        let mut client = Client::new(target.clone(), timeout);
        tasks.push(tokio::spawn(async move {
            let mut resends = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&user) = users.get(index) else { break };
                resends += deposit(&mut client, user, kopecks, patience).await?;
            }
            Ok::<_, anyhow::Error>(resends)
        }));
    }
    let mut resends = 0;
    for task in tasks {
        resends += task.await.context("a depositor panicked")??;
    }
    Ok(resends)
}

/// One deposit, resent with the same key until the server answers 201; returns the number of resends.
async fn deposit(client: &mut Client, user: u64, kopecks: i64, patience: Duration) -> anyhow::Result<u64> {
    let body = add_funds_body(user, kopecks);
    let key = fresh_key();
    let deadline = Instant::now() + patience;
    let mut backoff = Duration::from_millis(20);
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let problem = match client.post_json_idempotent(ADD_FUNDS_PATH, body.clone(), key.clone()).await {
            Ok(response) if response.status == StatusCode::CREATED => return Ok(attempts - 1),
            Ok(response)
                if response.status == StatusCode::CONFLICT
                    && error_code(&response.body).as_deref() == Some(KEY_IN_FLIGHT) =>
            {
                "the first attempt is still in flight".to_owned()
            }
            Ok(response) if response.status.is_client_error() => bail!(
                "deposit for user {user}: HTTP {}{}: {}",
                response.status,
                auth_hint(response.status),
                String::from_utf8_lossy(&response.body)
            ),
            Ok(response) => format!("HTTP {}", response.status),
            Err(failure) => failure.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("deposit for user {user}: no 201 after {attempts} attempts, outcome unknown: {problem}");
        }
        tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Result<Response, Failure> {
        Ok(Response { status: StatusCode::from_u16(status).unwrap(), body: Bytes::from(body.to_owned()) })
    }

    #[test]
    fn answers_are_classified_by_status_and_code() {
        assert_eq!(classify(&response(201, "{}")), Outcome::Applied);
        let refused = r#"{"error": "not enough money", "code": "insufficient_funds", "available": "1.00"}"#;
        assert_eq!(classify(&response(409, refused)), Outcome::Refused);
        let in_flight = r#"{"error": "still processing", "code": "idempotency_key_in_flight"}"#;
        assert_eq!(classify(&response(409, in_flight)), Outcome::InFlight);
        // A 409 for anything else, a 409 without a readable code, and every other answer are unknown.
        assert_eq!(classify(&response(409, r#"{"code": "something_else"}"#)), Outcome::Unknown);
        assert_eq!(classify(&response(409, "not json")), Outcome::Unknown);
        assert_eq!(classify(&response(200, "{}")), Outcome::Unknown);
        assert_eq!(classify(&response(503, r#"{"code": "insufficient_funds"}"#)), Outcome::Unknown);
        assert_eq!(classify(&response(400, "{}")), Outcome::Unknown);
        assert_eq!(classify(&Err(Failure::Timeout)), Outcome::Unknown);
    }

    #[test]
    fn batch_answers_are_classified_per_transfer() {
        let body = r#"{"results":[{"status":201,"replayed":false,"body":{}},
            {"status":409,"replayed":false,"body":{"code":"insufficient_funds"}},
            {"status":409,"replayed":false,"body":{"code":"idempotency_key_in_flight"}},
            {"status":503,"replayed":false,"body":{"code":"unavailable"}}]}"#;
        let outcomes = classify_batch(&response(200, body), 4);
        assert_eq!(outcomes, [Outcome::Applied, Outcome::Refused, Outcome::InFlight, Outcome::Unknown]);
        // A count that does not match the request, or a batch not answered 200, leaves every transfer unknown.
        assert_eq!(classify_batch(&response(200, body), 3), vec![Outcome::Unknown; 3]);
        assert_eq!(classify_batch(&response(503, r#"{"code":"overloaded"}"#), 2), vec![Outcome::Unknown; 2]);
        assert_eq!(classify_batch(&Err(Failure::Timeout), 2), vec![Outcome::Unknown; 2]);
    }

    #[test]
    fn keys_are_fresh_uuids() {
        let (a, b) = (fresh_key(), fresh_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert!(Uuid::parse_str(a.to_str().unwrap()).is_ok());
    }

    #[test]
    fn applying_moves_money_between_the_two_users_only() {
        let users = [10, 11, 12];
        let shared = Shared::new(users.len());
        shared.apply(&Transfer::new(&users, 0, 2, 500));
        shared.apply(&Transfer::new(&users, 2, 1, 7));
        assert_eq!(shared.sent_totals(), vec![500, 0, 7]);
        assert_eq!(shared.received_totals(), vec![0, 7, 500]);
    }
}
