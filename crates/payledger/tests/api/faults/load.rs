//! The load a fault test runs: bank notices and transfers between funded users, sent by concurrent
//! clients that behave as the README tells a client to. An answer that is not definitive (503, a timeout, a
//! broken connection, a key in flight) is resent with the same `operation_id` / `Idempotency-Key` until
//! it is; every operation ends acknowledged, and the ledger must then hold each of them exactly once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use super::server::ADMIN;
use crate::common::{kopecks, notice, rubles};

/// The organizations notices credit.
pub const INNS: [&str; 3] = ["7707083893", "7736207543", "500100732259"];
/// The users transfers move money between, each funded with [`FUNDING`] kopecks first.
pub const USERS: i64 = 8;
/// Each user's deposit before the load: far more than the load can move, so no transfer is refused.
pub const FUNDING: i64 = 100_000_000;
/// How long one request may take before the client gives up on it (and resends): far above the server's
/// own bounds, so a client timeout means the server hung.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);
/// How long one operation may go without a definitive answer before the test fails.
const OPERATION_DEADLINE: Duration = Duration::from_secs(120);

/// One operation a client sends until it gets a definitive answer.
#[derive(Debug, Clone)]
pub enum Operation {
    Notice { id: Uuid, inn: &'static str, kopecks: i64 },
    Transfer { key: String, from: i64, to: i64, kopecks: i64 },
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Operations acknowledged (2xx), each once, whatever it took.
    pub acknowledged: Vec<Operation>,
    /// Acknowledged at the first try.
    pub first_try: usize,
    /// Operations that got at least one answer that was not definitive, and so were resent.
    pub resent_operations: usize,
    /// Answers that were not definitive, by kind: `503 unavailable`, `timeout`, `connection`, ….
    pub unknown: BTreeMap<String, usize>,
    /// 503 answers without `Retry-After`.
    pub without_retry_after: usize,
    /// Answers that are wrong under any fault (a 500, an unexpected refusal), with their bodies.
    pub wrong: Vec<String>,
    /// When each acknowledgement arrived.
    pub acknowledged_at: Vec<Instant>,
    /// When each 503 arrived.
    pub unavailable_at: Vec<Instant>,
    /// The longest any one request took to be answered (or to fail).
    pub slowest: Duration,
}

impl Tally {
    /// Unknown outcomes in all.
    pub fn unknown_total(&self) -> usize {
        self.unknown.values().sum()
    }

    /// The first acknowledgement at or after `since`, as a delay from it.
    pub fn first_ack_after(&self, since: Instant) -> Option<Duration> {
        self.acknowledged_at.iter().filter(|at| **at >= since).min().map(|at| at.duration_since(since))
    }

    /// 503 answers that arrived between two instants.
    pub fn unavailable_between(&self, from: Instant, to: Instant) -> usize {
        self.unavailable_at.iter().filter(|at| **at >= from && **at <= to).count()
    }

    /// A one-line summary for the test's output.
    pub fn summary(&self) -> String {
        format!(
            "{} acknowledged ({} at the first try), {} resent after {} unknown outcomes {:?}; slowest answer {:?}",
            self.acknowledged.len(),
            self.first_try,
            self.resent_operations,
            self.unknown_total(),
            self.unknown,
            self.slowest
        )
    }
}

/// A client that sends operations to one or more servers.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    addresses: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    pub tally: Arc<Mutex<Tally>>,
}

/// How one attempt ended.
enum Attempt {
    Acknowledged,
    Unknown(String),
    Wrong(String),
}

impl Client {
    pub fn new(addresses: Vec<String>) -> Client {
        let http = reqwest::Client::builder().timeout(CLIENT_TIMEOUT).build().expect("client");
        Client { http, addresses: Arc::new(addresses), next: Arc::default(), tally: Arc::default() }
    }

    fn address(&self) -> String {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.addresses.len();
        self.addresses[index].clone()
    }

    async fn attempt(&self, operation: &Operation) -> Attempt {
        let started = Instant::now();
        let attempt = self.send(operation).await;
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.slowest = tally.slowest.max(started.elapsed());
        attempt
    }

    async fn send(&self, operation: &Operation) -> Attempt {
        let request = match operation {
            Operation::Notice { id, inn, kopecks } => {
                let body = notice(*id, json!(rubles(*kopecks)), inn);
                self.http.post(format!("http://{}/api/webhook/bank/", self.address())).body(body.to_string())
            }
            Operation::Transfer { key, from, to, kopecks } => {
                let body = json!({"sender_id": from, "recipient_id": to, "amount": rubles(*kopecks)});
                self.http
                    .post(format!("http://{}/api/transfer_funds/", self.address()))
                    .basic_auth(ADMIN.0, Some(ADMIN.1))
                    .header("Idempotency-Key", key)
                    .body(body.to_string())
            }
        };
        let response = match request.header("Content-Type", "application/json").send().await {
            Ok(response) => response,
            Err(error) if error.is_timeout() => return Attempt::Unknown("timeout".into()),
            Err(_) => return Attempt::Unknown("connection".into()),
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").is_some();
        let body: Value = match response.text().await {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            Err(_) => return Attempt::Unknown("connection".into()),
        };
        let code = body["code"].as_str().unwrap_or_default().to_owned();
        match status {
            200 | 201 => Attempt::Acknowledged,
            503 => {
                let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
                tally.unavailable_at.push(Instant::now());
                if !retry_after {
                    tally.without_retry_after += 1;
                }
                Attempt::Unknown(format!("503 {code}"))
            }
            409 if code == "idempotency_key_in_flight" => Attempt::Unknown(format!("409 {code}")),
            _ => Attempt::Wrong(format!("{operation:?}: {status} {body}")),
        }
    }

    /// Sends one operation until its answer is definitive, as a client following the README does.
    pub async fn run(&self, operation: Operation) {
        let started = Instant::now();
        let mut first = true;
        loop {
            match self.attempt(&operation).await {
                Attempt::Acknowledged => {
                    let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
                    tally.first_try += usize::from(first);
                    tally.acknowledged.push(operation);
                    tally.acknowledged_at.push(Instant::now());
                    return;
                }
                Attempt::Wrong(what) => {
                    self.tally.lock().unwrap_or_else(|e| e.into_inner()).wrong.push(what);
                    return;
                }
                Attempt::Unknown(kind) => {
                    let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
                    *tally.unknown.entry(kind).or_default() += 1;
                    tally.resent_operations += usize::from(first);
                    if started.elapsed() > OPERATION_DEADLINE {
                        tally.wrong.push(format!("{operation:?}: no definitive answer in {OPERATION_DEADLINE:?}"));
                        return;
                    }
                }
            }
            first = false;
            // Retry-After says 1 second; a little less keeps the load up without hammering.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Deposits [`FUNDING`] into each user's account (resent like any other operation).
    pub async fn fund_users(&self) {
        for user in 1..=USERS {
            let key = format!("fund-{user}");
            loop {
                let response = self
                    .http
                    .post(format!("http://{}/api/add_funds/", self.address()))
                    .basic_auth(ADMIN.0, Some(ADMIN.1))
                    .header("Idempotency-Key", &key)
                    .json(&json!({"user_id": user, "amount": rubles(FUNDING)}))
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == 201 => break,
                    Ok(response) => assert_eq!(response.status(), 503, "funding user {user}"),
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Starts `clients` tasks that each send operation after operation until `stop` is set; each finishes
    /// the operation in hand (to a definitive answer) before it stops.
    pub fn start(&self, clients: usize, stop: Arc<AtomicBool>) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..clients {
            let (client, stop) = (self.clone(), stop.clone());
            tasks.spawn(async move {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let amount = 100 + (worker as i64 * 7 + i * 13) % 9_900;
                    let operation = if (worker as i64 + i) % 2 == 0 {
                        Operation::Notice {
                            id: Uuid::new_v4(),
                            inn: INNS[(worker + i as usize) % INNS.len()],
                            kopecks: amount,
                        }
                    } else {
                        let from = 1 + (worker as i64 + i) % USERS;
                        let to = 1 + (from + i % (USERS - 1)) % USERS;
                        Operation::Transfer { key: Uuid::new_v4().to_string(), from, to, kopecks: amount }
                    };
                    client.run(operation).await;
                }
            });
        }
        tasks
    }

    /// Waits until `count` more operations have been acknowledged since `before` (or a minute passed).
    pub async fn wait_for_acks(&self, before: usize, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < before + count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(self.acked() >= before + count, "the load ran: {} acknowledged", self.acked());
    }

    /// Operations acknowledged so far.
    pub fn acked(&self) -> usize {
        self.tally.lock().unwrap_or_else(|e| e.into_inner()).acknowledged.len()
    }

    /// [`Client::assert_ledger_matches`], then the rows behind it in the database at `database_url` (SQLite or
    /// PostgreSQL): one applied bank payment per acknowledged notice, one stored key per acknowledged transfer.
    pub async fn assert_stored_once(&self, database_url: &str) {
        let (notices, transfers) = self.assert_ledger_matches().await;
        let payments = count(database_url, "SELECT COUNT(*) FROM bank_payments WHERE status = 'applied'").await;
        assert_eq!(payments as usize, notices, "each acknowledged notice is one bank payment");
        let keys = count(database_url, "SELECT COUNT(*) FROM idempotency_keys WHERE key LIKE '%-%-%-%-%'").await;
        assert_eq!(keys as usize, transfers, "each acknowledged transfer's key is stored once");
    }

    /// Checks the ledger through the API against the acknowledged operations: each organization holds
    /// exactly the notices acknowledged for it, each user their funding plus what the acknowledged transfers
    /// moved. Returns the number of notices and transfers.
    pub async fn assert_ledger_matches(&self) -> (usize, usize) {
        let (organizations, users, notices, transfers) = self.expected_ledger();
        for (inn, expected) in organizations {
            let body = self.read(&format!("/api/organizations/{inn}/balance/")).await;
            let balance = if body.is_null() { 0 } else { kopecks(body["balance"].as_str().expect("balance")) };
            assert_eq!(balance, expected, "organization {inn} holds exactly its acknowledged notices");
        }
        for (user, expected) in users {
            let body = self.read(&format!("/api/balances/?user_id={user}")).await;
            assert_eq!(
                kopecks(body["amount"].as_str().expect("amount")),
                expected,
                "user {user}: exactly the acknowledged transfers"
            );
        }
        (notices, transfers)
    }

    /// What the ledger must hold after the acknowledged operations: each organization's balance, each user's,
    /// and how many notices and transfers there were.
    fn expected_ledger(&self) -> (HashMap<&'static str, i64>, HashMap<i64, i64>, usize, usize) {
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        assert!(tally.wrong.is_empty(), "wrong answers under the fault: {:#?}", tally.wrong);
        assert_eq!(tally.without_retry_after, 0, "every 503 carries Retry-After");
        assert!(
            !tally.unknown.contains_key("timeout"),
            "no request hung until the client gave up: {:?}",
            tally.unknown
        );
        let mut organizations: HashMap<&'static str, i64> = INNS.iter().map(|inn| (*inn, 0)).collect();
        let mut users: HashMap<i64, i64> = (1..=USERS).map(|user| (user, FUNDING)).collect();
        let (mut notices, mut transfers) = (0, 0);
        for operation in &tally.acknowledged {
            match operation {
                Operation::Notice { inn, kopecks, .. } => {
                    notices += 1;
                    *organizations.get_mut(inn).expect("inn") += kopecks;
                }
                Operation::Transfer { from, to, kopecks, .. } => {
                    transfers += 1;
                    *users.get_mut(from).expect("sender") -= kopecks;
                    *users.get_mut(to).expect("recipient") += kopecks;
                }
            }
        }
        (organizations, users, notices, transfers)
    }

    /// A GET that must answer 200 (or 404, as `null`).
    pub async fn read(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("http://{}{path}", self.address()))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .send()
            .await
            .expect("read");
        if response.status() == 404 {
            return Value::Null;
        }
        assert_eq!(response.status(), 200, "GET {path}");
        // Exact text: the amounts are JSON numbers with two decimals, never read through a float.
        let text = response.text().await.expect("body");
        let raw: BTreeMap<String, Box<serde_json::value::RawValue>> = serde_json::from_str(&text).expect("json");
        raw.into_iter().map(|(k, v)| (k, Value::String(v.get().to_owned()))).collect::<serde_json::Map<_, _>>().into()
    }
}

/// One count from the database at `database_url`.
async fn count(database_url: &str, sql: &'static str) -> i64 {
    if database_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(database_url).await.expect("sqlite");
        sqlx::query_scalar(sql).fetch_one(&pool).await.expect("count")
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.expect("postgres");
        sqlx::query_scalar(sql).fetch_one(&pool).await.expect("count")
    }
}
