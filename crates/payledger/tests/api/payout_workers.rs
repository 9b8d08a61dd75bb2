//! Payout workers as separate `payledger worker` processes sharing one PostgreSQL queue, paying through the
//! HTTP gateway into a test gateway that counts every call per idempotency key.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{self, Backend, TestDb, TestServer};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The card vault key every process of a test shares (the API encrypts, the workers decrypt).
pub(crate) const CARD_KEY: &str = "8f3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b";
const SECRET: &str = "test-gateway-secret";
/// The amount whose first gateway call never answers (the worker making it is killed).
const STALLING_AMOUNT: &str = "66.66";

/// A gateway that pays each idempotency key once and answers repeats with the first outcome, as a real
/// gateway does; it counts every call.
#[derive(Default)]
struct TestGateway {
    calls: Mutex<HashMap<String, u32>>,
    paid: Mutex<HashMap<String, String>>,
    stalled: Notify,
}

async fn pay(State(gateway): State<Arc<TestGateway>>, headers: HeaderMap, body: String) -> (StatusCode, Json<Value>) {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let first_call = {
        let mut calls = gateway.calls.lock().unwrap_or_else(|e| e.into_inner());
        let count = calls.entry(key.clone()).or_default();
        *count += 1;
        *count == 1
    };
    let reference = {
        let mut paid = gateway.paid.lock().unwrap_or_else(|e| e.into_inner());
        let next = paid.len() + 1;
        paid.entry(key.clone()).or_insert_with(|| format!("gw-{next}")).clone()
    };
    if first_call && body.contains(&format!("\"amount\":\"{STALLING_AMOUNT}\"")) {
        // Paid, but the answer never comes: the worker is killed while it waits.
        gateway.stalled.notify_one();
        std::future::pending::<()>().await;
    }
    (StatusCode::OK, Json(json!({"status": "completed", "reference": reference})))
}

async fn start_gateway() -> (Arc<TestGateway>, String) {
    let gateway = Arc::new(TestGateway::default());
    let app = axum::Router::new().route("/pay", axum::routing::post(pay)).with_state(gateway.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/pay", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (gateway, url)
}

fn worker_process(db: &TestDb, gateway_url: &str, workers: usize, lease_seconds: u64) -> Child {
    worker_command(db, gateway_url, workers, lease_seconds)
        .env("PAYLEDGER_CARD_KEYS", CARD_KEY)
        .spawn()
        .expect("start payledger worker")
}

/// `payledger worker` on the test's database and data folder, without card keys.
fn worker_command(db: &TestDb, gateway_url: &str, workers: usize, lease_seconds: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payledger"));
    command
        .arg("worker")
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_DATA_DIR", db.dir.path())
        .env("PAYLEDGER_WORKERS", workers.to_string())
        .env("PAYLEDGER_GATEWAY", "http")
        .env("PAYLEDGER_GATEWAY_URL", gateway_url)
        .env("PAYLEDGER_GATEWAY_SECRET", SECRET)
        .env_remove("PAYLEDGER_CARD_KEYS")
        .env("PAYLEDGER_JOB_LEASE_SECONDS", lease_seconds.to_string())
        .env("PAYLEDGER_GATEWAY_TIMEOUT_SECONDS", "1")
        .env("PAYLEDGER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// Stops a worker process gracefully (SIGTERM) and waits for it.
fn stop(mut child: Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().expect("worker exit");
    assert!(status.success(), "a worker stops cleanly on SIGTERM: {status}");
}

async fn api_server(db: &TestDb) -> TestServer {
    let mut settings = common::settings(db);
    settings.payouts.workers = 0;
    settings.payouts.card_keys = vec![CARD_KEY.to_owned()];
    TestServer::start(settings).await
}

fn payout(amount: &str) -> String {
    json!({"amount": amount, "currency": "RUB",
           "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "Worker Test"}})
    .to_string()
}

async fn count(server: &TestServer, status: &str) -> i64 {
    server.get(&format!("/api/v1/payouts/?status={status}&page_size=1")).await.1["count"].as_i64().unwrap_or(-1)
}

/// 1000 payouts, 8 workers in 2 processes: every payout completes and the gateway is called exactly once
/// for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_in_two_processes_call_the_gateway_once_per_payout() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let server = api_server(&db).await;
    let (gateway, url) = start_gateway().await;
    const PAYOUTS: usize = 1000;
    let mut created = std::collections::HashSet::new();
    for chunk in 0..(PAYOUTS / 50) {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let (client, url) = (server.client.clone(), server.url("/api/v1/payouts/"));
            let body = payout(&common::rubles(((chunk * 50 + i) % 9_999 + 1) as i64));
            tasks.spawn(async move {
                let response = client.post(url).header("Content-Type", "application/json").body(body).send().await;
                let response = response.expect("create");
                assert_eq!(response.status(), 201);
                let payout: Value = response.json().await.expect("json");
                payout["id"].as_str().expect("id").to_owned()
            });
        }
        created.extend(tasks.join_all().await);
    }
    assert_eq!(created.len(), PAYOUTS);

    let first = worker_process(&db, &url, 4, 30);
    let second = worker_process(&db, &url, 4, 30);
    let mut completed = 0;
    for _ in 0..1200 {
        completed = count(&server, "completed").await;
        if completed == PAYOUTS as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(first);
    stop(second);
    assert_eq!(completed, PAYOUTS as i64, "every payout completed");
    let calls = gateway.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let keys: std::collections::HashSet<String> = calls.keys().cloned().collect();
    assert_eq!(keys, created, "each payout's id is its idempotency key");
    let repeated: Vec<_> = calls.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "each payout's gateway call happened exactly once: {repeated:?}");
    server.stop().await;
    db.assert_verified().await;
}

/// A worker killed while the gateway is paying loses its lease; another worker takes the job over, calls
/// the gateway again with the same idempotency key, and the payout completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_payout_is_taken_over_and_pays_once() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let server = api_server(&db).await;
    let (gateway, url) = start_gateway().await;
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 5, "amount": "100.00"}"#, None).await.status, 201);
    let mut body: Value = serde_json::from_str(&payout(STALLING_AMOUNT)).expect("json");
    body["source"] = json!({"user_id": 5});
    let created = server.post("/api/v1/payouts/", body.to_string(), None).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().expect("id").to_owned();

    let mut doomed = worker_process(&db, &url, 1, 2);
    tokio::time::timeout(Duration::from_secs(30), gateway.stalled.notified()).await.expect("the gateway is called");
    doomed.kill().expect("kill -9 the worker");
    let _ = doomed.wait();
    let (_, stuck) = server.get(&format!("/api/v1/payouts/{id}/")).await;
    assert_eq!(stuck["status"], "processing", "the killed worker left it processing");

    let rescuer = worker_process(&db, &url, 1, 2);
    let mut payout = Value::Null;
    for _ in 0..600 {
        payout = server.get(&format!("/api/v1/payouts/{id}/")).await.1;
        if payout["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(rescuer);
    assert_eq!(payout["status"], "completed", "{payout}");
    let key_calls = gateway.calls.lock().unwrap_or_else(|e| e.into_inner()).get(&id).copied();
    assert_eq!(key_calls, Some(2), "called again after the lease expired, with the same key");
    assert_eq!(gateway.paid.lock().unwrap_or_else(|e| e.into_inner()).len(), 1, "paid once");
    assert_eq!(payout["gateway_reference"], "gw-1");
    assert_eq!(server.user_balance(5).await, Some(("33.34".into(), "0.00".into())), "captured exactly once");
    server.stop().await;
    db.assert_verified().await;
}

/// In the development profile a worker without card keys uses the API's generated key from the data folder
/// they share (compose's volume), and pays what the API encrypted; without that key it refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_development_worker_shares_the_api_key_from_their_data_folder() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let (_gateway, url) = start_gateway().await;
    let alone = TestDb::new(Backend::Sqlite).await.expect("a scratch folder");
    let mut refused = worker_command(&db, &url, 1, 2);
    let refused = refused.env("PAYLEDGER_DATA_DIR", alone.dir.path()).stderr(Stdio::piped()).output().expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PAYLEDGER_CARD_KEYS"));

    let mut settings = common::settings(&db);
    settings.payouts.workers = 0;
    let server = TestServer::start(settings).await;
    let created = server.post("/api/v1/payouts/", payout("10.00"), None).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().expect("id").to_owned();
    let worker = worker_command(&db, &url, 1, 2).spawn().expect("start payledger worker");
    let mut status = Value::Null;
    for _ in 0..600 {
        status = server.get(&format!("/api/v1/payouts/{id}/")).await.1["status"].clone();
        if status == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(worker);
    assert_eq!(status, "completed");
    server.stop().await;
    db.assert_verified().await;
}

/// Secrets never reach the logs, even at debug level: full card numbers (through creation, processing and a
/// decline), the admin's password (sent as Basic credentials, in a token request and a failed one), access
/// and refresh tokens, and the configured JWT, webhook and card-vault secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_never_reach_the_logs() {
    // It reserves a port for the server process.
    let _quiet = common::load::quiet().await;
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address").port();
    let log = db.dir.path().join("server.log");
    const ADMIN_PASSWORD: &str = "log-test-admin-password-7f3a";
    const JWT_SECRET: &str = "log-test-jwt-secret-0123456789abcdef-xyz";
    const WEBHOOK_SECRET: &str = "log-test-webhook-secret-42";
    let mut server = Command::new(env!("CARGO_BIN_EXE_payledger"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_DATA_DIR", db.dir.path())
        .env("PAYLEDGER_BIND", format!("127.0.0.1:{port}"))
        .env("PAYLEDGER_DEMO_ORGANIZATIONS", "0")
        .env("PAYLEDGER_GATEWAY_LATENCY_MS", "1")
        .env("PAYLEDGER_ADMIN_USERNAME", "root")
        .env("PAYLEDGER_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("PAYLEDGER_JWT_SECRET", JWT_SECRET)
        .env("PAYLEDGER_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("PAYLEDGER_CARD_KEYS", CARD_KEY)
        .env("PAYLEDGER_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start payledger serve");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if client.get(format!("{base}/api/health/")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let tokens: Value = client
        .post(format!("{base}/api/token/"))
        .json(&json!({"username": "root", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let first_access = tokens["access"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh"].as_str().expect("refresh").to_owned();
    let refreshed: Value = client
        .post(format!("{base}/api/token/refresh/"))
        .json(&json!({"refresh": refresh}))
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("refresh json");
    let second_refresh = refreshed["refresh"].as_str().expect("rotated refresh").to_owned();
    // A wrong password, and a reused refresh token: both refused, and both must stay out of the log.
    let wrong = client
        .post(format!("{base}/api/token/"))
        .json(&json!({"username": "root", "password": "wrong-password-in-the-log-test"}))
        .send()
        .await
        .expect("wrong login");
    assert_eq!(wrong.status(), 401);
    let reused = client.post(format!("{base}/api/token/refresh/")).json(&json!({"refresh": refresh})).send().await;
    assert_eq!(reused.expect("reuse").status(), 401);
    // The reuse revoked the user's access tokens too: log in again.
    let tokens: Value = client
        .post(format!("{base}/api/token/"))
        .json(&json!({"username": "root", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let access = tokens["access"].as_str().expect("access").to_owned();
    let mut ids = Vec::new();
    for (index, number) in ["4111111111111111", payledger::gateway::DECLINED_CARD].into_iter().enumerate() {
        let request = client
            .post(format!("{base}/api/v1/payouts/"))
            .header("Content-Type", "application/json")
            .body(payout("3.00").replace("4111111111111111", number));
        // One with a Bearer token, one with Basic credentials.
        let request =
            if index == 0 { request.bearer_auth(&access) } else { request.basic_auth("root", Some(ADMIN_PASSWORD)) };
        let response = request.send().await.expect("create");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        for _ in 0..200 {
            let body: Value = client
                .get(format!("{base}/api/v1/payouts/{id}/"))
                .bearer_auth(&access)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            if body["status"] == "completed" || body["status"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    let _ = server.wait();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("payout"), "the log has payout activity to check: {} bytes", text.len());
    assert!(text.contains("/api/token/"), "the log has the token requests to check");
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("root:{ADMIN_PASSWORD}"))
    };
    let secrets = [
        ("a card number", "4111111111111111"),
        ("a card number", payledger::gateway::DECLINED_CARD),
        ("the admin password", ADMIN_PASSWORD),
        ("a wrong password", "wrong-password-in-the-log-test"),
        ("Basic credentials", basic.as_str()),
        ("the JWT secret", JWT_SECRET),
        ("the webhook secret", WEBHOOK_SECRET),
        ("the card key", CARD_KEY),
        ("an access token", access.as_str()),
        ("an access token", first_access.as_str()),
        ("an access token's signature", access.rsplit('.').next().unwrap_or_default()),
        ("a refresh token", refresh.as_str()),
        ("a refresh token", second_refresh.as_str()),
    ];
    for (what, secret) in secrets {
        assert!(!secret.is_empty() && !text.contains(secret), "{what} reached the log");
    }
}

mod stale_lease {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use payledger::gateway::{GatewayError, GatewayFuture, GatewayOutcome, GatewayRequest, PayoutGateway};
    use payledger::store::Store;
    use payledger::workers::{WorkerContext, spawn};
    use serde_json::json;
    use tokio::sync::Notify;

    use super::CARD_KEY;
    use crate::common::{self, Backend, TestDb, TestServer};

    /// Worker A's gateway: answers nothing useful until long after A's lease expired.
    struct Stalling {
        called: Arc<Notify>,
    }

    impl PayoutGateway for Stalling {
        fn pay<'a>(&'a self, _request: &'a GatewayRequest) -> GatewayFuture<'a> {
            Box::pin(async move {
                self.called.notify_one();
                tokio::time::sleep(Duration::from_millis(2500)).await;
                Err(GatewayError::Transient("no answer within 2500 ms".into()))
            })
        }
    }

    /// Worker B's gateway: pays.
    struct Paying {
        paid: Arc<AtomicBool>,
    }

    impl PayoutGateway for Paying {
        fn pay<'a>(&'a self, request: &'a GatewayRequest) -> GatewayFuture<'a> {
            Box::pin(async move {
                self.paid.store(true, Ordering::SeqCst);
                Ok(GatewayOutcome::Completed { reference: format!("gw-{}", request.payout_id.simple()) })
            })
        }
    }

    async fn context(db: &TestDb, gateway: Arc<dyn PayoutGateway>) -> (WorkerContext, payledger::engine::WriterHandle) {
        let store = Store::connect(&db.url).await.expect("store");
        let (engine, writer) = payledger::engine::LedgerEngine::start(&store).await.expect("engine");
        let vault = payledger::vault::Vault::from_config(&[CARD_KEY]).expect("vault");
        let payouts = payledger::payouts::Payouts::new(engine, Arc::new(vault), 1);
        let mut settings = common::settings(db).payouts;
        settings.lease = Duration::from_secs(1);
        settings.max_attempts = 1;
        (WorkerContext { store, payouts, gateway, settings }, writer)
    }

    /// A worker still waiting on the gateway when its lease expires records nothing once another worker has
    /// taken the job over: the payout the gateway paid ends completed, captured once, never failed and refunded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_worker_whose_lease_expired_records_nothing() {
        // Worker B must take the job over within the 3.5 s the test waits.
        let _quiet = common::load::quiet().await;
        let Some(db) = TestDb::new(Backend::Postgres).await else { return };
        let mut settings = common::settings(&db);
        settings.payouts.workers = 0;
        settings.payouts.card_keys = vec![CARD_KEY.to_owned()];
        let server = TestServer::start(settings).await;
        assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 5, "amount": "100.00"}"#, None).await.status, 201);
        let body = json!({"amount": "70.00", "currency": "RUB", "source": {"user_id": 5},
            "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "X"}});
        let created = server.post("/api/v1/payouts/", body.to_string(), None).await;
        let id = created.json["id"].as_str().expect("id").to_owned();

        let called = Arc::new(Notify::new());
        let (a, _writer_a) = context(&db, Arc::new(Stalling { called: called.clone() })).await;
        let (_stop_a, stopped_a) = tokio::sync::watch::channel(false);
        let _workers_a = spawn(a, 1, stopped_a);
        called.notified().await;
        let paid = Arc::new(AtomicBool::new(false));
        let (b, _writer_b) = context(&db, Arc::new(Paying { paid: paid.clone() })).await;
        let (_stop_b, stopped_b) = tokio::sync::watch::channel(false);
        let _workers_b = spawn(b, 1, stopped_b);

        // B takes over after A's 1 s lease; A's stalled call ends at 2.5 s and must change nothing.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let (_, payout) = server.get(&format!("/api/v1/payouts/{id}/")).await;
        assert!(paid.load(Ordering::SeqCst), "B paid");
        assert_eq!(payout["status"], "completed", "{payout}");
        assert_eq!(server.user_balance(5).await, Some(("30.00".into(), "0.00".into())), "captured once, not refunded");
        let (_, dead) = server.get("/api/v1/jobs/?status=dead").await;
        assert_eq!(dead, json!([]));
        server.stop().await;
        db.assert_verified().await;
    }
}
