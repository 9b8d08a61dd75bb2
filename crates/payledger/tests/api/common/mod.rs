//! Test harness: a fresh database per test (SQLite in a temp dir, or a new PostgreSQL database when
//! `TEST_DATABASE_URL` is set) and the real server on a random port.

pub mod browser;
pub mod console;
pub mod load;
pub mod statements;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use payledger::config::{ConflictPolicy, Settings, WebhookMode};
use payledger::store::{Store, VerifyReport};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database that is removed when dropped.
pub struct TestDb {
    pub url: String,
    /// A scratch folder for the server's data directory (and the SQLite file).
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A fresh database on `backend`, or `None` (after saying so) when PostgreSQL is not configured.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("payledger.db").display());
                Some(TestDb { url, dir, postgres: None })
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
                    if std::env::var("PAYLEDGER_REQUIRE_POSTGRES_TESTS").is_ok_and(|v| v == "1") {
                        panic!("PAYLEDGER_REQUIRE_POSTGRES_TESTS=1 but TEST_DATABASE_URL is not set");
                    }
                    eprintln!("SKIPPED: PostgreSQL test (set TEST_DATABASE_URL to run it)");
                    return None;
                };
                let name = format!("payledger_test_{}", Uuid::new_v4().simple());
                let mut admin = connect_admin(&admin_url).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let url = replace_database(&admin_url, &name);
                let dir = tempfile::tempdir().expect("temp dir");
                Some(TestDb { url, dir, postgres: Some((admin_url, name)) })
            }
        }
    }

    /// Connects a store to this database (for direct checks).
    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.expect("connect test store")
    }

    /// Runs `payledger verify`'s checks and fails the test on any problem.
    pub async fn assert_verified(&self) -> VerifyReport {
        let report = self.store().await.verify().await.expect("verify");
        assert!(report.problems.is_empty(), "verify found problems: {:#?}", report.problems);
        report
    }

    /// Runs one statement behind the server's back (to tamper with data in verify tests).
    pub async fn execute(&self, sql: &'static str) {
        if self.url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
            sqlx::query(sql).execute(&pool).await.expect("execute");
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
            sqlx::query(sql).execute(&pool).await.expect("execute");
        }
    }

    /// One integer from a SQL query (for checks no API exposes yet).
    pub async fn scalar(&self, sql: &'static str) -> i64 {
        if self.url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
            sqlx::query_scalar(sql).fetch_one(&pool).await.expect("scalar")
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
            sqlx::query_scalar(sql).fetch_one(&pool).await.expect("scalar")
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            // Dropping needs a runtime; use a small dedicated one so Drop works from any test.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(async {
                    let mut admin = connect_admin(&admin_url).await;
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut admin)
                        .await;
                });
                Some(())
            })
            .join();
        }
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.expect("connect to TEST_DATABASE_URL")
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Settings for tests: no demo organizations, sync mode, record conflicts, the data directory in the test's
/// scratch folder, and payout workers that poll and retry quickly.
/// The first admin every test server is bootstrapped with.
pub const ADMIN: (&str, &str) = ("admin", "test-admin-password");

pub fn settings(db: &TestDb) -> Settings {
    let mut settings = Settings::for_database(db.url.clone());
    settings.admin = Some((ADMIN.0.to_owned(), ADMIN.1.to_owned()));
    settings.data_dir = db.dir.path().to_path_buf();
    settings.payouts.poll = Duration::from_millis(20);
    settings.payouts.retry_base = Duration::from_millis(20);
    settings.payouts.gateway = payledger::gateway::GatewayConfig::Simulated { latency: Duration::from_millis(1) };
    settings
}

/// Settings in async webhook mode.
pub fn async_settings(db: &TestDb) -> Settings {
    Settings { webhook_mode: WebhookMode::Async, ..settings(db) }
}

/// Settings that refuse conflicting notices with 409.
pub fn strict_settings(db: &TestDb) -> Settings {
    Settings { webhook_conflict: ConflictPolicy::Reject, ..settings(db) }
}

/// The real server on a random port.
pub struct TestServer {
    pub address: SocketAddr,
    /// A client that sends the bootstrapped admin's access token on every request (anonymous when the
    /// settings configure no admin).
    pub client: reqwest::Client,
    /// A client without credentials.
    pub anonymous: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(settings: Settings) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let admin = settings.admin.clone();
        let task = tokio::spawn(payledger::launch(settings, listener, async {
            let _ = stopped.await;
        }));
        let anonymous = reqwest::Client::builder().pool_max_idle_per_host(512).build().expect("client");
        let mut server =
            TestServer { address, client: anonymous.clone(), anonymous, stop: Some(stop), task: Some(task) };
        server.wait_until_up().await;
        if let Some((username, password)) = admin {
            let token = server.login(&username, &password).await;
            server.client = server.client_with_token(&token);
        }
        server
    }

    async fn wait_until_up(&mut self) {
        // Wait until it answers, so tests never race start-up.
        for _ in 0..200 {
            if let Ok(response) = self.anonymous.get(self.url("/api/health/")).send().await
                && response.status().is_success()
            {
                return;
            }
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let result = self.task.take().expect("task").await;
                panic!("server stopped during start-up: {result:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not start");
    }

    /// An access token for a user.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let response = self
            .anonymous
            .post(self.url("/api/token/"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), 200, "login as {username}");
        let body: Value = response.json().await.expect("token json");
        body["access"].as_str().expect("access token").to_owned()
    }

    /// A client that sends `token` as its Bearer credentials.
    pub fn client_with_token(&self, token: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        reqwest::Client::builder().pool_max_idle_per_host(512).default_headers(headers).build().expect("client")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Posts a raw webhook body with the JSON content type.
    pub async fn post_webhook_raw(&self, body: impl Into<String>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/api/webhook/bank/"))
            .header("Content-Type", "application/json")
            .body(body.into())
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_webhook(&self, body: &Value) -> (u16, Value) {
        self.post_webhook_raw(body.to_string()).await
    }

    /// Posts a JSON body to an API path, with an `Idempotency-Key` if given.
    pub async fn post(&self, path: &str, body: impl Into<String>, key: Option<&str>) -> Answer {
        let mut request = self.client.post(self.url(path)).header("Content-Type", "application/json").body(body.into());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let replayed = response.headers().get("idempotent-replayed").is_some();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, json, text, replayed }
    }

    /// A user's balance as exact JSON texts `(amount, reserved)`, or None on 404.
    pub async fn user_balance(&self, user: i64) -> Option<(String, String)> {
        let response =
            self.client.get(self.url(&format!("/api/balances/?user_id={user}"))).send().await.expect("request");
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("body");
        let raw: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(&text).expect("balance json");
        let field = |name: &str| raw.get(name).expect("balance field").get().to_owned();
        Some((field("amount"), field("reserved")))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The organization's balance as its exact JSON text (e.g. `145000.00`), or None on 404.
    pub async fn balance_text(&self, inn: &str) -> Option<String> {
        let response =
            self.client.get(self.url(&format!("/api/organizations/{inn}/balance/"))).send().await.expect("request");
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("body");
        let raw: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(&text).expect("balance json");
        Some(raw.get("balance").expect("balance field").get().to_owned())
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

/// A response: status, body as JSON and as text, and whether it was a replay.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub replayed: bool,
}

/// Parses `R.KK` (or `-R.KK`) into kopecks, exactly.
pub fn kopecks(text: &str) -> i64 {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "00"));
    assert_eq!(fraction.len(), 2, "two decimals: {text}");
    sign * (whole.parse::<i64>().expect("whole") * 100 + fraction.parse::<i64>().expect("fraction"))
}

/// A valid notice with the given id, amount (a JSON literal or string) and INN.
pub fn notice(operation_id: Uuid, amount: Value, inn: &str) -> Value {
    json!({
        "operation_id": operation_id.to_string(),
        "amount": amount,
        "payer_inn": inn,
        "document_number": "PAY-328",
        "document_date": "2024-04-27T21:00:00Z",
    })
}

/// Formats kopecks as `R.KK`.
pub fn rubles(kopecks: i64) -> String {
    format!("{}.{:02}", kopecks / 100, kopecks % 100)
}

/// Generates the two test functions (SQLite and PostgreSQL) for each shared scenario.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// A client whose connections come from `127.0.0.<last>` (all of 127.0.0.0/8 reaches the server on Linux):
/// several clients with addresses of their own, for rate limits and trusted proxies.
pub fn from_loopback(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .expect("client bound to a loopback address")
}
