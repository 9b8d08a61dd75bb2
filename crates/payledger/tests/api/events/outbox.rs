//! The outbox and the operator's tools: a failed write takes its events with it (and a failed event its change),
//! payouts report their life, a rotation signs with both secrets, the test button sends a ping, and failed
//! deliveries are replayed and recovered.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::receiver::{Mode, Receiver};
use super::{deliveries, event_settings, register};
use crate::common::{Backend, TestDb, TestServer, on_both_backends};

on_both_backends!(
    a_failed_write_takes_its_events_with_it_and_a_failed_event_its_change,
    a_payout_reports_its_creation_and_each_status_change,
    a_rotation_signs_with_both_secrets_during_the_overlap,
    the_test_button_sends_a_signed_ping,
    failed_deliveries_are_replayed_one_by_one_or_recovered_since_a_time,
    reconciliation_reports_a_discrepancy_and_the_payment_it_credits,
    a_binary_answer_is_logged_and_does_not_stall_the_queue,
    old_events_are_pruned_but_not_while_a_delivery_is_pending,
    a_disabled_endpoints_pending_deliveries_fail_and_are_recovered_once_it_is_enabled,
);

/// Makes the ledger refuse any entry of 13.13 and the outbox any event mentioning 66.66, inside the batch.
async fn inject_failures(db: &TestDb) {
    if db.url.starts_with("sqlite") {
        db.execute(
            "CREATE TRIGGER refuse_entry BEFORE INSERT ON entries WHEN abs(NEW.amount) = 1313
             BEGIN SELECT RAISE(ABORT, 'injected: an entry of 13.13'); END",
        )
        .await;
        db.execute(
            "CREATE TRIGGER refuse_event BEFORE INSERT ON events WHEN NEW.data LIKE '%\"66.66\"%'
             BEGIN SELECT RAISE(ABORT, 'injected: an event of 66.66'); END",
        )
        .await;
    } else {
        db.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'injected: %', TG_TABLE_NAME; END $$",
        )
        .await;
        db.execute(
            "CREATE TRIGGER refuse_entry BEFORE INSERT ON entries FOR EACH ROW
             WHEN (abs(NEW.amount) = 1313) EXECUTE FUNCTION refuse()",
        )
        .await;
        db.execute(
            "CREATE TRIGGER refuse_event BEFORE INSERT ON events FOR EACH ROW
             WHEN (NEW.data LIKE '%\"66.66\"%') EXECUTE FUNCTION refuse()",
        )
        .await;
    }
}

async fn a_failed_write_takes_its_events_with_it_and_a_failed_event_its_change(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (_, secret) = register(&server, &receiver.url(), &["balance.deposited"]).await;
    receiver.set_secrets(vec![secret]);
    inject_failures(&db).await;

    // Sent together, so the failing ones share batches with good ones (which then run one by one).
    let amounts: Vec<String> = (1..=20).map(|n| format!("{n}.00")).chain(["13.13".into(), "66.66".into()]).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (user, amount) in (1..).zip(amounts.clone()) {
        let (client, url) = (server.client.clone(), server.url("/api/add_funds/"));
        tasks.spawn(async move {
            let body = json!({"user_id": user, "amount": amount});
            let status = client.post(url).json(&body).send().await.expect("deposit").status().as_u16();
            (amount, status)
        });
    }
    let mut refused = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let (amount, status) = done.expect("task");
        match status {
            201 => {}
            503 => {
                refused.insert(amount);
            }
            other => panic!("deposit of {amount}: {other}"),
        }
    }
    assert_eq!(refused, HashSet::from(["13.13".to_owned(), "66.66".to_owned()]));

    assert!(receiver.wait_for(20, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reported: HashSet<String> =
        receiver.received().iter().map(|r| r.body["data"]["amount"].as_str().unwrap_or_default().to_owned()).collect();
    let applied: HashSet<String> = (1..=20).map(|n| format!("{n}.00")).collect();
    assert_eq!(reported, applied, "an event for each applied deposit and none for the refused ones");
    // Neither refused deposit moved money: the user of 13.13 (21) and of 66.66 (22) have no account.
    assert_eq!(server.user_balance(21).await, None);
    assert_eq!(server.user_balance(22).await, None);
    receiver.assert_all_verified();
    db.assert_verified().await;
}

async fn a_payout_reports_its_creation_and_each_status_change(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (_, secret) = register(&server, &receiver.url(), &["payout.created", "payout.status_changed"]).await;
    receiver.set_secrets(vec![secret]);
    let body = json!({"amount": "15.00", "currency": "RUB", "description": "Выплата",
                      "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "Иван Иванов"}});
    let answer = server.post("/api/v1/payouts/", body.to_string(), None).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let id = answer.json["id"].as_str().expect("payout id").to_owned();

    // Created, then processing, then completed by the simulated gateway.
    assert!(receiver.wait_for(3, Duration::from_secs(30)).await);
    let mut events: Vec<Value> = receiver.received().into_iter().map(|r| r.body).collect();
    events.sort_by_key(|event| event["data"]["version"].as_i64());
    events.dedup_by_key(|event| event["data"]["version"].as_i64());
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|event| {
            let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            (text(&event["type"]), text(&event["data"]["from"]), text(&event["data"]["status"]))
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("payout.created".into(), String::new(), "pending".into()),
            ("payout.status_changed".into(), "pending".into(), "processing".into()),
            ("payout.status_changed".into(), "processing".into(), "completed".into()),
        ]
    );
    for event in &events {
        assert_eq!(event["data"]["id"], id.as_str());
        assert_eq!(event["data"]["amount"], "15.00");
        // No card number, masked or not, in any event.
        let text = event.to_string();
        assert!(!text.contains("4111") && !text.contains("1111") && !text.contains("recipient"), "{text}");
    }
    receiver.assert_all_verified();
}

/// Deposits into `user` through the API (one `balance.deposited` event).
async fn deposit(server: &TestServer, user: i64) {
    let answer = server.post("/api/add_funds/", json!({"user_id": user, "amount": "1.00"}).to_string(), None).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
}

async fn a_rotation_signs_with_both_secrets_during_the_overlap(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (id, old) = register(&server, &receiver.url(), &["*"]).await;
    receiver.set_secrets(vec![old.clone()]);
    deposit(&server, 1).await;
    assert!(receiver.wait_for(1, Duration::from_secs(20)).await);

    let path = format!("/api/v1/webhook-endpoints/{id}/rotate-secret/");
    let rotated = server.post(&path, json!({"overlap_seconds": 3600}).to_string(), None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new = rotated.json["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(new, old);
    // A receiver still on the old secret verifies what is sent during the overlap...
    deposit(&server, 2).await;
    assert!(receiver.wait_for(2, Duration::from_secs(20)).await);
    // ... and one already on the new secret too: both signatures are sent.
    receiver.set_secrets(vec![new]);
    deposit(&server, 3).await;
    assert!(receiver.wait_for(3, Duration::from_secs(20)).await);
    receiver.assert_all_verified();
    let last = receiver.received().into_iter().last().expect("a delivery");
    assert_eq!(last.signature.split(' ').count(), 2, "two signatures while both secrets are live");
}

async fn the_test_button_sends_a_signed_ping(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (id, secret) = register(&server, &receiver.url(), &["payout.created"]).await;
    receiver.set_secrets(vec![secret]);
    let sent = server.post(&format!("/api/v1/webhook-endpoints/{id}/test/"), "", None).await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    assert!(receiver.wait_for(1, Duration::from_secs(20)).await);
    let ping = receiver.received().remove(0);
    assert_eq!(ping.body["type"], "ping");
    assert_eq!(ping.body["data"]["endpoint_id"], id.as_str());
    assert!(ping.webhook_id.starts_with("evt_"));
    receiver.assert_all_verified();
}

async fn failed_deliveries_are_replayed_one_by_one_or_recovered_since_a_time(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let mut settings = event_settings(&db);
    settings.payouts.events.retry_schedule = "1s".to_owned();
    let server = TestServer::start(settings).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (id, secret) = register(&server, &receiver.url(), &["balance.deposited"]).await;
    receiver.set_secrets(vec![secret]);
    receiver.set_mode(Mode::Status(500)).await;
    let since = time::OffsetDateTime::now_utc() - Duration::from_secs(60);
    for user in 1..=3 {
        deposit(&server, user).await;
    }
    // Two attempts each, then failed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while deliveries(&server, &id, "failed").await.len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = deliveries(&server, &id, "failed").await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.iter().all(|d| d["attempts"] == 2), "{failed:?}");
    receiver.set_mode(Mode::Accept).await;

    // One replayed on its own.
    let one = failed[0]["id"].as_i64().expect("delivery id");
    let replayed = server.post(&format!("/api/v1/webhook-endpoints/{id}/deliveries/{one}/replay/"), "", None).await;
    assert_eq!(replayed.status, 202, "{}", replayed.text);
    assert!(receiver.wait_for(1, Duration::from_secs(20)).await);
    // The rest recovered since a time, each once.
    let since = since.format(&time::format_description::well_known::Rfc3339).expect("a time");
    let body = json!({"since": since});
    let recovered = server.post(&format!("/api/v1/webhook-endpoints/{id}/recover/"), body.to_string(), None).await;
    assert_eq!(recovered.status, 202, "{}", recovered.text);
    assert_eq!(recovered.json["replayed"], 2);
    assert!(receiver.wait_for(3, Duration::from_secs(20)).await);
    let delivered: Vec<_> = receiver.received().into_iter().filter(|r| r.answered == 204).collect();
    let ids: HashSet<String> = delivered.iter().map(|r| r.webhook_id.clone()).collect();
    assert_eq!((delivered.len(), ids.len()), (3, 3), "each failed event delivered once");
    receiver.assert_all_verified();
}

async fn reconciliation_reports_a_discrepancy_and_the_payment_it_credits(backend: Backend) {
    use crate::common::statements::{Credit, PAYER, one_c, upload};
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let types = ["statement.discrepancy_opened", "bank_payment.credited"];
    let (_, secret) = register(&server, &receiver.url(), &types).await;
    receiver.set_secrets(vec![secret]);
    // The notice of PAY-328 arrived; the statement also has PAY-9, whose notice never did.
    let (status, _) = server.post_webhook(&crate::common::notice(uuid::Uuid::now_v7(), json!(1500), PAYER)).await;
    assert_eq!(status, 200);
    let statement = one_c(&[
        Credit { number: "PAY-328", date: "28.04.2024", kopecks: 150_000, payer_inn: PAYER },
        Credit { number: "PAY-9", date: "28.04.2024", kopecks: 5_000, payer_inn: PAYER },
    ]);
    let (status, summary) = upload(&server, statement, "").await;
    assert_eq!(status, 201, "{summary}");
    assert!(receiver.wait_for(2, Duration::from_secs(20)).await);
    let opened: Vec<Value> = receiver
        .received()
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b["type"] == "statement.discrepancy_opened")
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["data"]["kind"], "missing_notice");
    assert_eq!(opened[0]["data"]["amount"], "50.00");

    // Applying the import credits the line: a payment from the statement.
    let import = summary["id"].as_i64().expect("import id");
    let applied = server.post(&format!("/api/v1/statements/{import}/apply/"), "{}", None).await;
    assert!(applied.status < 300, "{}", applied.text);
    assert!(receiver.wait_for(3, Duration::from_secs(20)).await);
    let credited: Vec<Value> = receiver
        .received()
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b["type"] == "bank_payment.credited" && b["data"]["source"] == "statement")
        .collect();
    assert_eq!(credited.len(), 1, "{credited:?}");
    assert_eq!(
        (credited[0]["data"]["amount"].as_str(), credited[0]["data"]["document_number"].as_str()),
        (Some("50.00"), Some("PAY-9"))
    );
    receiver.assert_all_verified();
    db.assert_verified().await;
}

async fn a_binary_answer_is_logged_and_does_not_stall_the_queue(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (id, secret) = register(&server, &receiver.url(), &["balance.deposited"]).await;
    receiver.set_secrets(vec![secret]);
    // NUL bytes, which PostgreSQL's text cannot hold, in a 200 and in a 500.
    receiver.set_mode(Mode::StatusWithBody(500, b"\0\x1f\x8b binary \0")).await;
    deposit(&server, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while deliveries(&server, &id, "pending").await.first().is_none_or(|d| d["attempts"].as_i64() < Some(2))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.set_mode(Mode::StatusWithBody(200, b"ok\0")).await;
    deposit(&server, 2).await;
    assert!(receiver.wait_for(2, Duration::from_secs(20)).await, "both delivered");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while deliveries(&server, &id, "succeeded").await.len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let succeeded = deliveries(&server, &id, "succeeded").await;
    assert_eq!(succeeded.len(), 2, "{succeeded:?}");
    let first = succeeded.iter().find(|d| d["attempts"].as_i64() > Some(1)).expect("the retried one");
    let (status, attempts) =
        server.get(&format!("/api/v1/webhook-endpoints/{id}/deliveries/{}/attempts/", first["id"])).await;
    assert_eq!(status, 200, "{attempts}");
    let logged: Vec<String> = attempts
        .as_array()
        .or_else(|| attempts["results"].as_array())
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["response"].as_str().map(str::to_owned))
        .collect();
    assert!(logged.iter().any(|r| r.contains("binary")), "{attempts}");
    receiver.assert_all_verified();
}

async fn old_events_are_pruned_but_not_while_a_delivery_is_pending(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (id, secret) = register(&server, &receiver.url(), &["balance.deposited"]).await;
    receiver.set_secrets(vec![secret]);
    for user in 1..=3 {
        deposit(&server, user).await;
    }
    assert!(receiver.wait_for(3, Duration::from_secs(20)).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while deliveries(&server, &id, "succeeded").await.len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One more, that the receiver refuses: it stays pending, on its retry schedule.
    receiver.set_mode(Mode::Status(503)).await;
    deposit(&server, 4).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while deliveries(&server, &id, "pending").await.first().is_none_or(|d| d["attempts"].as_i64() < Some(1))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let store = db.store().await;
    let later = time::OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let pruned = store.prune_events(later, 5_000).await.expect("prune");
    assert!(pruned >= 6, "three events, their deliveries and attempts: {pruned}");
    assert!(deliveries(&server, &id, "succeeded").await.is_empty(), "the finished ones went");
    assert_eq!(deliveries(&server, &id, "pending").await.len(), 1, "the pending one stays");
    // Nothing is left to prune until it is sent.
    assert_eq!(store.prune_events(later, 5_000).await.expect("prune"), 0);
}

async fn a_disabled_endpoints_pending_deliveries_fail_and_are_recovered_once_it_is_enabled(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(event_settings(&db)).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (id, secret) = register(&server, &receiver.url(), &["balance.deposited"]).await;
    receiver.set_secrets(vec![secret]);
    receiver.set_mode(Mode::Status(503)).await;
    let since = time::OffsetDateTime::now_utc() - Duration::from_secs(60);
    deposit(&server, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while deliveries(&server, &id, "pending").await.first().is_none_or(|d| d["attempts"].as_i64() < Some(1))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An operator disables it: nothing more is sent, and the sweep fails what was pending.
    let path = format!("/api/v1/webhook-endpoints/{id}/");
    let patched = server.client.patch(server.url(&path)).json(&json!({"enabled": false})).send().await.expect("patch");
    assert_eq!(patched.status(), 200);
    // The sweep leaves a delivery whose attempt is in flight alone: try until it is not.
    let store = db.store().await;
    let mut swept = 0;
    for _ in 0..50 {
        swept += store.fail_stranded_deliveries(time::OffsetDateTime::now_utc(), 100).await.expect("sweep");
        if swept > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(swept, 1);
    let failed = deliveries(&server, &id, "failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0]["last_error"].as_str().unwrap_or_default().contains("disabled"), "{failed:?}");
    let recover = format!("/api/v1/webhook-endpoints/{id}/recover/");
    let since = since.format(&time::format_description::well_known::Rfc3339).expect("a time");
    let refused = server.post(&recover, json!({"since": since}).to_string(), None).await;
    assert_eq!((refused.status, refused.json["code"].as_str()), (409, Some("endpoint_disabled")));

    // Enabled again and recovered: the event arrives, once.
    receiver.set_mode(Mode::Accept).await;
    let patched = server.client.patch(server.url(&path)).json(&json!({"enabled": true})).send().await.expect("patch");
    assert_eq!(patched.status(), 200);
    let recovered = server.post(&recover, json!({"since": since}).to_string(), None).await;
    assert_eq!((recovered.status, recovered.json["replayed"].as_i64()), (202, Some(1)), "{}", recovered.text);
    assert!(receiver.wait_for(1, Duration::from_secs(20)).await);
    receiver.assert_all_verified();
}
