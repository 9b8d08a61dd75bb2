//! Delivery across real processes: a `kill -9` of the server mid-delivery loses no event, and two instances with
//! two `payledger worker` processes on one PostgreSQL deliver every event of both instances.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::receiver::{Mode, Receiver};
use crate::common::{self, Backend, TestDb, notice, on_both_backends};

const INN: &str = "7736207543";
const PASSWORD: &str = "a-password-for-the-events-tests";

on_both_backends!(a_kill_minus_nine_mid_delivery_loses_no_event);

/// What every process of these tests is given: receivers on loopback allowed, attempts of one second (so a
/// lease is 32 s), retries every second.
const EVENT_ENV: [(&str, &str); 4] = [
    ("PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8"),
    ("PAYLEDGER_EVENT_TIMEOUT_SECONDS", "1"),
    ("PAYLEDGER_EVENT_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s"),
    ("PAYLEDGER_LOG", "warn"),
];

/// Starts `payledger <command>` on the test's database with the events' settings and `extra`.
fn spawn(db: &TestDb, command: &str, extra: &[(&str, String)]) -> Child {
    let mut process = Command::new(env!("CARGO_BIN_EXE_payledger"));
    process
        .arg(command)
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_DATA_DIR", db.dir.path())
        .env("PAYLEDGER_DEMO_ORGANIZATIONS", "0")
        .env("PAYLEDGER_ADMIN_USERNAME", "admin")
        .env("PAYLEDGER_ADMIN_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in EVENT_ENV {
        process.env(name, value);
    }
    for (name, value) in extra {
        process.env(name, value);
    }
    process.spawn().expect("start payledger")
}

/// Starts `payledger serve` on a free port and waits until it is ready.
async fn serve(db: &TestDb, extra: &[(&str, String)]) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = vec![("PAYLEDGER_BIND", format!("127.0.0.1:{port}"))];
    env.extend(extra.iter().cloned());
    let mut child = spawn(db, "serve", &env);
    for _ in 0..400 {
        if reqwest::get(format!("{base}/api/health/ready/")).await.is_ok_and(|r| r.status() == 200) {
            return (child, base);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("payledger serve exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    panic!("payledger serve did not start");
}

/// An admin's client of the server at `base`.
async fn admin(base: &str) -> reqwest::Client {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/token/"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let token = answer["access"].as_str().expect("access token");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("header"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

/// Registers `url` for credited payments on the server at `base`; its secret.
async fn register(client: &reqwest::Client, base: &str, url: &str) -> String {
    let body = json!({"url": url, "event_types": ["bank_payment.credited"]});
    let response = client.post(format!("{base}/api/v1/webhook-endpoints/")).json(&body).send().await.expect("register");
    assert_eq!(response.status(), 201);
    let answer: serde_json::Value = response.json().await.expect("endpoint");
    answer["secret"].as_str().expect("secret").to_owned()
}

/// Credits one payment through the server at `base`; its operation id.
async fn credit(client: &reqwest::Client, base: &str) -> Uuid {
    let id = Uuid::now_v7();
    let response = client.post(format!("{base}/api/webhook/bank/")).json(&notice(id, json!(10), INN)).send().await;
    assert_eq!(response.expect("webhook").status(), 200);
    id
}

/// The operation ids the receiver got, with the webhook-ids each came under.
fn delivered(receiver: &Receiver) -> HashMap<String, HashSet<String>> {
    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    for seen in receiver.received().into_iter().filter(|seen| seen.answered / 100 == 2) {
        let operation = seen.body["data"]["operation_id"].as_str().unwrap_or_default().to_owned();
        ids.entry(operation).or_default().insert(seen.webhook_id);
    }
    ids
}

async fn a_kill_minus_nine_mid_delivery_loses_no_event(backend: Backend) {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(backend).await else { return };
    let receiver = Receiver::start(Vec::new()).await;
    receiver.set_mode(Mode::Hang).await;
    let (mut first, base) = serve(&db, &[]).await;
    let client = admin(&base).await;
    receiver.set_secrets(vec![register(&client, &base, &receiver.url()).await]);
    let credited: Vec<Uuid> = vec![credit(&client, &base).await, credit(&client, &base).await];

    // The first attempt is in hand (the receiver holds it): kill the server there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while receiver.received().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!receiver.received().is_empty(), "a delivery was in hand");
    first.kill().expect("kill -9");
    let _ = first.wait();

    receiver.set_mode(Mode::Accept).await;
    let (mut second, _) = serve(&db, &[]).await;
    assert!(
        receiver.wait_for(credited.len(), Duration::from_secs(60)).await,
        "every event delivered after the restart"
    );
    receiver.assert_all_verified();
    let seen = delivered(&receiver);
    for id in &credited {
        assert_eq!(seen.get(&id.to_string()).map(HashSet::len), Some(1), "{id}: one webhook-id");
    }
    let _ = second.kill();
    let _ = second.wait();
    db.assert_verified().await;
}

#[tokio::test]
async fn two_instances_and_two_workers_on_postgresql_deliver_every_event_once() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let receiver = Receiver::start(Vec::new()).await;
    let quiet = [("PAYLEDGER_EVENT_WORKERS", "0".to_owned()), ("PAYLEDGER_WORKERS", "0".to_owned())];
    let (one, first) = serve(&db, &quiet).await;
    let (two, second) = serve(&db, &quiet).await;
    let workers: Vec<Child> =
        (0..2).map(|_| spawn(&db, "worker", &[("PAYLEDGER_EVENT_WORKERS", "2".to_owned())])).collect();
    let client = admin(&first).await;
    receiver.set_secrets(vec![register(&client, &first, &receiver.url()).await]);

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..400 {
        let (client, base) = (client.clone(), if n % 2 == 0 { first.clone() } else { second.clone() });
        tasks.spawn(async move { credit(&client, &base).await });
    }
    let mut credited = HashSet::new();
    while let Some(id) = tasks.join_next().await {
        credited.insert(id.expect("task").to_string());
    }
    assert!(receiver.wait_for(credited.len(), Duration::from_secs(120)).await, "every event delivered");
    receiver.assert_all_verified();
    let seen = delivered(&receiver);
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), credited);
    assert!(seen.values().all(|ids| ids.len() == 1), "one webhook-id per payment");
    for mut child in workers.into_iter().chain([one, two]) {
        let _ = child.kill();
        let _ = child.wait();
    }
    db.assert_verified().await;
}
