//! The read scenarios' requests (`balance`, `balances`, `history`) and the `ceiling`'s: closed-loop `GET`
//! workers that check every answer against what the set-up left, and the set-up of the `balance` scenario's
//! organizations (one bank notice each).
//!
//! Nothing writes to the read accounts during the load, so each one's answer is known exactly before it
//! starts: a 200 that says anything else (or a 404 for an account the set-up created) is a mismatch, which
//! fails the run. The ceiling's answers are not checked: the liveness probe reads no data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::StatusCode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::api::{
    self, LIVENESS_PATH, UserBalance, WEBHOOK_PATH, balance_path, history_path, user_balance_path, webhook_body,
};
use crate::client::{Client, Failure, Response, Target, auth_hint};
use crate::closed_loop::{self, Pace, Request, Scenario, Tally};
use crate::load::Stats;
use crate::money::format_kopecks;

/// The history line type of a deposit, the line the `history` scenario's set-up writes for each user.
const DEPOSIT: &str = "deposit";

/// Which read the scenario loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// `GET /api/organizations/{inn}/balance/`.
    Balance,
    /// `GET /api/balances/?user_id=`.
    Balances,
    /// `GET /api/users/{user_id}/transactions/`: the first page.
    History,
}

impl ReadKind {
    /// The scenario's name, as `--scenario` spells it.
    pub fn name(self) -> &'static str {
        match self {
            ReadKind::Balance => "balance",
            ReadKind::Balances => "balances",
            ReadKind::History => "history",
        }
    }
}

/// What the answer to one read must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Nothing: the ceiling's answers are not checked.
    Nothing,
    /// An organization's balance, in kopecks.
    Organization {
        /// Its INN.
        inn: String,
        /// Its balance.
        balance: i64,
    },
    /// A user's balance.
    User {
        /// The user.
        user_id: u64,
        /// Available and reserved money.
        balance: UserBalance,
    },
    /// A user's first history page: the newest line is the set-up's deposit, and a page that holds the whole
    /// history adds up to the balance.
    History {
        /// The user.
        user_id: u64,
        /// Available and reserved money after the set-up.
        balance: UserBalance,
        /// The set-up's deposit, in kopecks.
        deposit: i64,
    },
}

/// One read a worker may send: the path, built once before the load, and what its answer must say.
#[derive(Debug, Clone)]
pub struct Read {
    /// Where to `GET`, below the URL's prefix.
    pub path: String,
    /// What a 200 answer must say.
    pub expected: Expected,
}

impl Read {
    /// The ceiling's read: the liveness probe, unchecked.
    pub fn ceiling() -> Read {
        Read { path: LIVENESS_PATH.to_owned(), expected: Expected::Nothing }
    }

    /// An organization's balance read.
    pub fn organization(inn: &str, balance: i64) -> Read {
        Read { path: balance_path(inn), expected: Expected::Organization { inn: inn.to_owned(), balance } }
    }

    /// A user's balance read.
    pub fn user(user_id: u64, balance: UserBalance) -> Read {
        Read { path: user_balance_path(user_id), expected: Expected::User { user_id, balance } }
    }

    /// A read of a user's first history page.
    pub fn history(user_id: u64, balance: UserBalance, deposit: i64) -> Read {
        Read { path: history_path(user_id), expected: Expected::History { user_id, balance, deposit } }
    }
}

/// Money as `12.34 + reserved 0.00`.
fn user_money(balance: UserBalance) -> String {
    format!("{} + reserved {}", format_kopecks(balance.amount), format_kopecks(balance.reserved))
}

/// Compares one 200 answer with what it must say; `Err` says what differs, naming the account.
pub fn check(expected: &Expected, body: &[u8]) -> Result<(), String> {
    match expected {
        Expected::Nothing => Ok(()),
        Expected::Organization { inn, balance } => match api::parse_balance(body, inn) {
            Ok(found) if found == *balance => Ok(()),
            Ok(found) => Err(format!(
                "organization {inn}: expected {}, server says {}",
                format_kopecks(*balance),
                format_kopecks(found)
            )),
            Err(why) => Err(format!("organization {inn}: {why:#}")),
        },
        Expected::User { user_id, balance } => match api::parse_user_balance(body, *user_id) {
            Ok(found) if found == *balance => Ok(()),
            Ok(found) => {
                Err(format!("user {user_id}: expected {}, server says {}", user_money(*balance), user_money(found)))
            }
            Err(why) => Err(format!("user {user_id}: {why:#}")),
        },
        Expected::History { user_id, balance, deposit } => check_history(*user_id, *balance, *deposit, body),
    }
}

/// The `history` scenario's check of one page: see [`Expected::History`].
fn check_history(user_id: u64, balance: UserBalance, deposit: i64, body: &[u8]) -> Result<(), String> {
    let page = api::parse_history_page(body, user_id).map_err(|why| format!("user {user_id}: {why:#}"))?;
    let Some(newest) = page.lines.first() else {
        return Err(format!("user {user_id}: the history is empty, expected the set-up's deposit"));
    };
    if newest.transaction_type != DEPOSIT || newest.available_change != deposit || newest.reserved_change != 0 {
        return Err(format!(
            "user {user_id}: the newest line is a {} of {} (reserved {}), expected the set-up's deposit of {}",
            newest.transaction_type,
            format_kopecks(newest.available_change),
            format_kopecks(newest.reserved_change),
            format_kopecks(deposit)
        ));
    }
    // Only a last page holds the whole history (a reused --seed's users may have more than a page).
    if page.last && page.sum() != balance {
        return Err(format!(
            "user {user_id}: the whole history adds up to {}, the balance is {}",
            user_money(page.sum()),
            user_money(balance)
        ));
    }
    Ok(())
}

/// How the load phase is shaped; shared read-only by all workers.
#[derive(Debug)]
pub struct Plan {
    /// The server, the warm-up, the end of the load and how to stop it early.
    pub pace: Pace,
    /// The reads; each request picks one uniformly.
    pub reads: Vec<Read>,
    /// Measured requests handed out so far, for `--requests`.
    pub issued: AtomicU64,
}

/// What the checks of the answers found (warm-up included: a wrong answer is wrong whenever it came).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadTally {
    /// Answers compared with the set-up: every 200, and every 404 for an account the set-up created.
    pub checked: u64,
    /// Of those, the ones that said something else.
    pub mismatches: u64,
    /// What the first mismatch said.
    pub first_mismatch: Option<String>,
}

impl ReadTally {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: ReadTally) {
        self.checked += other.checked;
        self.mismatches += other.mismatches;
        if self.first_mismatch.is_none() {
            self.first_mismatch = other.first_mismatch;
        }
    }

    /// Books one compared answer.
    fn note(&mut self, verdict: Result<(), String>) {
        self.checked += 1;
        if let Err(why) = verdict {
            self.mismatches += 1;
            self.first_mismatch.get_or_insert(why);
        }
    }
}

/// What one worker (or all of them, merged) did.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// What the closed loop counted: measured requests, warm-up, connects, the first failure.
    pub tally: Tally,
    /// What the checks of the answers found.
    pub reads: ReadTally,
}

impl WorkerReport {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: WorkerReport) {
        self.tally.merge(other.tally);
        self.reads.merge(other.reads);
    }
}

/// The read scenarios' part of a worker: which read goes next, and what the answers said.
struct Reads<'a> {
    plan: &'a Plan,
    rng: SmallRng,
    reads: ReadTally,
}

impl Scenario for Reads<'_> {
    /// The index of the read in [`Plan::reads`].
    type Job = usize;

    fn next(&mut self, _started: Instant) -> (usize, Request<'_>) {
        let index = self.rng.random_range(0..self.plan.reads.len());
        (index, Request::Get { path: &self.plan.reads[index].path })
    }

    fn book(&mut self, index: usize, result: &Result<Response, Failure>, _: Option<&mut Stats>) -> Option<Duration> {
        let expected = &self.plan.reads[index].expected;
        match (expected, result) {
            (Expected::Nothing, _) | (_, Err(_)) => {}
            (_, Ok(response)) if response.status == StatusCode::OK => self.reads.note(check(expected, &response.body)),
            (_, Ok(response)) if response.status == StatusCode::NOT_FOUND => {
                // The set-up created every account read, and nothing deletes one: the server lost it.
                self.reads
                    .note(Err(format!("{}: HTTP 404 for an account the set-up created", self.plan.reads[index].path)))
            }
            // Other answers (a 503 under load, say) are counted in the statuses, like every scenario's.
            (_, Ok(_)) => {}
        }
        None
    }
}

/// Runs one worker until the deadline, the request budget or a stop request.
pub async fn worker(plan: Arc<Plan>) -> WorkerReport {
    let mut reads = Reads { plan: &plan, rng: SmallRng::from_os_rng(), reads: ReadTally::default() };
    let tally = closed_loop::run(&plan.pace, &plan.issued, &mut reads).await;
    WorkerReport { tally, reads: reads.reads }
}

/// Sends one bank notice per organization, paying `inns[i]` `kopecks[i]`, `concurrency` at a time: the
/// `balance` scenario's set-up, with the webhook scenario's notice body.
///
/// A notice whose outcome is unknown is resent verbatim (same operation_id, so it is booked at most once)
/// for up to `patience` per notice; one that still has no 200 then, or that the server rejects outright
/// (4xx), ends the run, since the expected balances would no longer be known. Returns how many resends
/// were needed.
pub async fn notify_all(
    target: &Target,
    timeout: Duration,
    inns: Arc<Vec<String>>,
    kopecks: Arc<Vec<i64>>,
    concurrency: usize,
    patience: Duration,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicUsize::new(0));
    let senders = concurrency.clamp(1, inns.len().max(1));
    let mut tasks = Vec::with_capacity(senders);
    for _ in 0..senders {
        let (inns, kopecks, next) = (Arc::clone(&inns), Arc::clone(&kopecks), Arc::clone(&next));
        let mut client = Client::new(target.clone(), timeout);
        tasks.push(tokio::spawn(async move {
            let mut resends = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let (Some(inn), Some(&amount)) = (inns.get(index), kopecks.get(index)) else { break };
                // operation_ids come from the OS generator: a rerun with the same --seed must not collide.
                let body = webhook_body(Uuid::new_v4(), inn, amount, 1, true);
                resends += notify(&mut client, inn, body, patience).await?;
            }
            Ok::<_, anyhow::Error>(resends)
        }));
    }
    let mut resends = 0;
    for task in tasks {
        resends += task.await.context("a notice sender panicked")??;
    }
    Ok(resends)
}

/// One notice, resent verbatim until the server answers 200; returns the number of resends.
async fn notify(client: &mut Client, inn: &str, body: Bytes, patience: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + patience;
    let mut backoff = Duration::from_millis(20);
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let problem = match client.post_json(WEBHOOK_PATH, body.clone()).await {
            Ok(response) if response.status == StatusCode::OK => return Ok(attempts - 1),
            Ok(response) if response.status.is_client_error() => bail!(
                "bank notice for organization {inn}: HTTP {}{}: {}",
                response.status,
                auth_hint(response.status),
                String::from_utf8_lossy(&response.body)
            ),
            Ok(response) => format!("HTTP {}", response.status),
            Err(failure) => failure.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("bank notice for organization {inn}: no 200 after {attempts} attempts, outcome unknown: {problem}");
        }
        tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INN: &str = "7707083893";

    fn money(amount: i64, reserved: i64) -> UserBalance {
        UserBalance { amount, reserved }
    }

    #[test]
    fn reads_have_the_documented_paths() {
        assert_eq!(Read::ceiling().path, "/api/health/live/");
        assert_eq!(Read::organization(INN, 5).path, "/api/organizations/7707083893/balance/");
        assert_eq!(Read::user(7, money(5, 0)).path, "/api/balances/?user_id=7");
        assert_eq!(Read::history(7, money(5, 0), 5).path, "/api/users/7/transactions/");
        let names = [ReadKind::Balance, ReadKind::Balances, ReadKind::History].map(ReadKind::name);
        assert_eq!(names, ["balance", "balances", "history"]);
    }

    #[test]
    fn organization_balances_must_be_exact() {
        let expected = Read::organization(INN, 150_025).expected;
        assert_eq!(check(&expected, br#"{"inn": "7707083893", "balance": 1500.25}"#), Ok(()));
        assert_eq!(
            check(&expected, br#"{"inn": "7707083893", "balance": 1500.26}"#),
            Err("organization 7707083893: expected 1500.25, server says 1500.26".into())
        );
        let other = check(&expected, br#"{"inn": "7736050003", "balance": 1500.25}"#).unwrap_err();
        assert!(other.contains("got 7736050003's"), "{other}");
        assert_eq!(check(&Expected::Nothing, b"anything"), Ok(()));
    }

    #[test]
    fn user_balances_must_be_exact_reserved_included() {
        let expected = Read::user(7, money(100_000, 0)).expected;
        assert_eq!(check(&expected, br#"{"user_id": 7, "amount": 1000.00, "reserved": 0.00}"#), Ok(()));
        assert_eq!(
            check(&expected, br#"{"user_id": 7, "amount": 999.99, "reserved": 0.01}"#),
            Err("user 7: expected 1000.00 + reserved 0.00, server says 999.99 + reserved 0.01".into())
        );
        assert!(check(&expected, br#"{"user_id": 8, "amount": 1000.00, "reserved": 0.00}"#).is_err());
    }

    fn page(lines: &[(&str, &str, &str)], next_cursor: &str) -> Vec<u8> {
        let lines: Vec<String> = lines
            .iter()
            .map(|(kind, available, reserved)| {
                format!(
                    r#"{{"user_id": 7, "transaction_type": "{kind}", "amount": "{available}",
                       "available_change": "{available}", "reserved_change": "{reserved}"}}"#
                )
            })
            .collect();
        format!(r#"{{"results": [{}], "next_cursor": {next_cursor}}}"#, lines.join(",")).into_bytes()
    }

    #[test]
    fn a_history_page_must_start_with_the_deposit_and_add_up() {
        let fresh = Read::history(7, money(10_000, 0), 10_000).expected;
        assert_eq!(check(&fresh, &page(&[("deposit", "100.00", "0.00")], "null")), Ok(()));
        // An earlier run's lines count too, when the page holds the whole history.
        let rerun = Read::history(7, money(10_500, 0), 10_000).expected;
        assert_eq!(check(&rerun, &page(&[("deposit", "100.00", "0.00"), ("deposit", "5.00", "0.00")], "null")), Ok(()));
        let missing = check(&rerun, &page(&[("deposit", "100.00", "0.00")], "null")).unwrap_err();
        assert_eq!(
            missing,
            "user 7: the whole history adds up to 100.00 + reserved 0.00, the balance is 105.00 + reserved 0.00"
        );
        // A page that is not the last cannot be summed; its newest line is still checked.
        assert_eq!(check(&rerun, &page(&[("deposit", "100.00", "0.00")], "\"6461\"")), Ok(()));
        let wrong = check(&fresh, &page(&[("deposit", "100.01", "0.00")], "null")).unwrap_err();
        assert!(wrong.contains("the newest line is a deposit of 100.01 (reserved 0.00), expected"), "{wrong}");
        let other = check(&fresh, &page(&[("transfer", "100.00", "0.00")], "null")).unwrap_err();
        assert!(other.contains("the newest line is a transfer of 100.00"), "{other}");
        let empty = check(&fresh, &page(&[], "null")).unwrap_err();
        assert!(empty.contains("the history is empty"), "{empty}");
    }

    #[test]
    fn mismatches_are_tallied_with_the_first_one_kept() {
        let mut tally = ReadTally::default();
        tally.note(Ok(()));
        tally.note(Err("first".into()));
        let mut other = ReadTally::default();
        other.note(Err("second".into()));
        tally.merge(other);
        assert_eq!(tally, ReadTally { checked: 3, mismatches: 2, first_mismatch: Some("first".into()) });
    }
}
