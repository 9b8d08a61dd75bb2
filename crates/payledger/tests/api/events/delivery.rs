//! Delivery to a real receiver: every event of a change arrives signed, retries survive a receiver that is down,
//! failing and hanging, 410 and the failure window disable an endpoint, and the SSRF guard refuses loopback.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::receiver::{Mode, Receiver};
use super::{deliveries, endpoint, event_settings, register};
use crate::common::{Backend, TestDb, TestServer, notice, on_both_backends};

const INN: &str = "7707083893";

on_both_backends!(
    concurrent_webhooks_each_yield_one_signed_event_with_versions_in_ledger_order,
    a_receiver_down_then_failing_then_hanging_gets_every_event_when_it_returns,
    a_410_disables_the_endpoint_and_says_why,
    an_endpoint_failing_for_the_whole_window_is_disabled,
    a_hostname_that_resolves_to_loopback_is_refused_unless_allowed,
    balance_operations_report_one_event_per_history_line_and_refusals_none,
);

/// Posts `count` notices for one organization, 64 at a time, and checks each was credited.
async fn credit_concurrently(server: &TestServer, count: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.clone() {
        let (client, url, gate) = (server.client.clone(), server.url("/api/webhook/bank/"), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await.expect("permit");
            let response = client.post(url).json(&notice(id, json!(100), INN)).send().await.expect("webhook");
            response.status().as_u16()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("task"), 200);
    }
    ids
}

async fn concurrent_webhooks_each_yield_one_signed_event_with_versions_in_ledger_order(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let _heavy = crate::common::load::heavy().await;
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    // A hostname, not an address: `localhost` resolves to loopback, which the settings allow.
    let url = receiver.url().replace("127.0.0.1", "localhost");
    let (_, secret) = register(&server, &url, &["bank_payment.credited"]).await;
    receiver.set_secrets(vec![secret.clone()]);

    let count = 2000;
    let ids = credit_concurrently(&server, count).await;
    assert!(receiver.wait_for(count, Duration::from_secs(120)).await, "every event delivered");
    receiver.assert_all_verified();

    // One event (one webhook-id) per payment, however often it was sent.
    let mut event_of: HashMap<String, String> = HashMap::new();
    let mut version_of: HashMap<String, i64> = HashMap::new();
    for delivered in receiver.received() {
        let body = &delivered.body;
        assert_eq!(body["type"], "bank_payment.credited");
        assert_eq!(body["data"]["organization_inn"], INN);
        assert_eq!(body["data"]["amount"], "100.00");
        let operation = body["data"]["operation_id"].as_str().expect("operation id").to_owned();
        let first = event_of.entry(operation.clone()).or_insert_with(|| delivered.webhook_id.clone());
        assert_eq!(*first, delivered.webhook_id, "a resend of {operation} keeps its webhook-id");
        version_of.insert(operation, body["data"]["version"].as_i64().expect("version"));
    }
    let expected: HashSet<String> = ids.iter().map(Uuid::to_string).collect();
    assert_eq!(event_of.keys().cloned().collect::<HashSet<_>>(), expected);

    // Versions are distinct and follow the order the ledger applied the payments in (the balance log).
    let mut by_version: Vec<(i64, String)> = version_of.into_iter().map(|(op, v)| (v, op)).collect();
    by_version.sort();
    assert!(by_version.windows(2).all(|pair| pair[0].0 < pair[1].0), "versions strictly increase");
    let mut ledger_order = Vec::new();
    let mut path = format!("/api/organizations/{INN}/balance-log/?limit=500");
    loop {
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for row in page["results"].as_array().expect("rows") {
            ledger_order.push(row["operation_id"].as_str().expect("operation").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = next.trim_start_matches(&format!("http://{}", server.address)).to_owned(),
            None => break,
        }
    }
    ledger_order.reverse();
    let version_order: Vec<String> = by_version.into_iter().map(|(_, op)| op).collect();
    assert_eq!(version_order, ledger_order, "versions follow the ledger's order");
    db.assert_verified().await;
}

async fn a_receiver_down_then_failing_then_hanging_gets_every_event_when_it_returns(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (id, secret) = register(&server, &receiver.url(), &["*"]).await;
    receiver.set_secrets(vec![secret.clone()]);
    receiver.set_mode(Mode::Down).await;

    let ids = credit_concurrently(&server, 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    receiver.set_mode(Mode::Status(500)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    receiver.set_mode(Mode::Hang).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    receiver.set_mode(Mode::Accept).await;
    assert!(receiver.wait_for(ids.len(), Duration::from_secs(60)).await, "every event delivered once it returned");
    receiver.assert_all_verified();

    // Every failure was retried under the same webhook-id, and the log says what happened.
    let mut ids_by_operation: HashMap<String, HashSet<String>> = HashMap::new();
    for delivered in receiver.received() {
        let operation = delivered.body["data"]["operation_id"].as_str().unwrap_or_default().to_owned();
        ids_by_operation.entry(operation).or_default().insert(delivered.webhook_id.clone());
    }
    assert!(ids_by_operation.values().all(|ids| ids.len() == 1), "{ids_by_operation:?}");
    let failed_answers = receiver.received().iter().filter(|r| r.answered == 500).count();
    assert!(failed_answers > 0, "the receiver answered 500 to some attempts");
    // A worker records its round's attempts together, after the slowest of them: wait for the log to catch up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut succeeded = deliveries(&server, &id, "succeeded").await;
    while succeeded.len() < ids.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        succeeded = deliveries(&server, &id, "succeeded").await;
    }
    assert_eq!(succeeded.len(), ids.len());
    assert!(succeeded.iter().any(|d| d["attempts"].as_i64().unwrap_or(0) > 1), "some were retried");
    assert!(endpoint(&server, &id).await["enabled"].as_bool().unwrap_or(false));
}

/// Waits until `check` holds for the endpoint, up to `within`.
async fn wait_for_endpoint(server: &TestServer, id: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let shown = endpoint(server, id).await;
        if check(&shown) || tokio::time::Instant::now() > deadline {
            return shown;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_410_disables_the_endpoint_and_says_why(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (id, secret) = register(&server, &receiver.url(), &["bank_payment.credited"]).await;
    receiver.set_secrets(vec![secret.clone()]);
    receiver.set_mode(Mode::Status(410)).await;
    credit_concurrently(&server, 1).await;

    let shown = wait_for_endpoint(&server, &id, Duration::from_secs(20), |e| e["enabled"] == false).await;
    assert_eq!(shown["enabled"], false, "{shown}");
    assert!(shown["disabled_reason"].as_str().unwrap_or_default().contains("410"), "{shown}");
    let (_, audit) = server.get("/api/v1/audit/?action=webhook_endpoint.disable").await;
    let rows = audit["results"].as_array().cloned().unwrap_or_default();
    assert!(rows.iter().any(|row| row["target"] == format!("webhook_endpoint:{id}")), "{audit}");
    // A disabled endpoint gets no deliveries of new events.
    let before = deliveries(&server, &id, "failed").await.len() + deliveries(&server, &id, "pending").await.len();
    credit_concurrently(&server, 3).await;
    let after = deliveries(&server, &id, "failed").await.len() + deliveries(&server, &id, "pending").await.len();
    assert_eq!(before, after);
    assert_eq!(receiver.received().len(), 1, "the receiver was asked once");
}

async fn an_endpoint_failing_for_the_whole_window_is_disabled(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let mut settings = event_settings(&db);
    settings.payouts.events.failure_window = Duration::from_secs(2);
    let server = TestServer::start(settings).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (id, secret) = register(&server, &receiver.url(), &["*"]).await;
    receiver.set_secrets(vec![secret.clone()]);
    receiver.set_mode(Mode::Status(503)).await;
    credit_concurrently(&server, 2).await;

    let shown = wait_for_endpoint(&server, &id, Duration::from_secs(30), |e| e["enabled"] == false).await;
    assert_eq!(shown["enabled"], false, "{shown}");
    assert!(shown["disabled_reason"].as_str().unwrap_or_default().contains("failure window"), "{shown}");
    assert!(receiver.received().len() >= 2, "it was tried before it was disabled");
}

async fn a_hostname_that_resolves_to_loopback_is_refused_unless_allowed(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let mut settings = event_settings(&db);
    settings.payouts.events.allowed_networks = Vec::new();
    let server = TestServer::start(settings).await;
    let receiver = Receiver::start(Vec::new()).await;
    let url = receiver.url().replace("127.0.0.1", "localhost");
    let (id, _) = register(&server, &url, &["*"]).await;
    credit_concurrently(&server, 1).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let pending = deliveries(&server, &id, "pending").await;
        if pending.iter().any(|d| d["attempts"].as_i64().unwrap_or(0) >= 2) || tokio::time::Instant::now() > deadline {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = refused.first().and_then(|d| d["last_error"].as_str()).unwrap_or_default().to_owned();
    assert!(error.contains("allowed networks"), "{refused:?}");
    assert!(receiver.received().is_empty(), "nothing reached the receiver");
}

async fn balance_operations_report_one_event_per_history_line_and_refusals_none(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (_, secret) = register(&server, &receiver.url(), &["*"]).await;
    receiver.set_secrets(vec![secret.clone()]);

    for user in [1, 2] {
        let answer =
            server.post("/api/add_funds/", json!({"user_id": user, "amount": "100.00"}).to_string(), None).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    let moved = json!({"sender_id": 1, "recipient_id": 2, "amount": "30.00"}).to_string();
    assert_eq!(server.post("/api/transfer_funds/", moved, None).await.status, 201);
    // Refused: more than user 1 has. No event.
    let refused = json!({"sender_id": 1, "recipient_id": 2, "amount": "1000.00"}).to_string();
    assert_eq!(server.post("/api/transfer_funds/", refused, None).await.status, 409);
    let withdrawn = json!({"user_id": 2, "amount": "10.00"}).to_string();
    assert_eq!(server.post("/api/withdraw_funds/", withdrawn, None).await.status, 201);

    assert!(receiver.wait_for(5, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut kinds: Vec<(String, i64, String)> = receiver
        .received()
        .iter()
        .map(|r| {
            let data = &r.body["data"];
            (
                r.body["type"].as_str().unwrap_or_default().to_owned(),
                data["user_id"].as_i64().unwrap_or(0),
                data["amount"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        vec![
            ("balance.deposited".to_owned(), 1, "100.00".to_owned()),
            ("balance.deposited".to_owned(), 2, "100.00".to_owned()),
            ("balance.transferred".to_owned(), 1, "-30.00".to_owned()),
            ("balance.transferred".to_owned(), 2, "30.00".to_owned()),
            ("balance.withdrawn".to_owned(), 2, "-10.00".to_owned()),
        ]
    );
    receiver.assert_all_verified();
    db.assert_verified().await;
}
