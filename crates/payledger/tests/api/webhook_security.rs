//! Signed bank webhooks and the source-network allow-list, against the real server.

use crate::common::{self, Backend, TestDb, TestServer, notice};
use payledger::webhook::signature::sign;
use serde_json::json;
use uuid::Uuid;

const INN: &str = "7707083893";

fn guarded(db: &TestDb, secrets: &[&str], networks: &[&str]) -> payledger::config::Settings {
    let mut settings = common::settings(db);
    settings.webhook_guard.secrets = secrets.iter().map(|s| (*s).to_owned()).collect();
    settings.webhook_guard.allowed_networks =
        networks.iter().map(|n| n.parse().unwrap_or_else(|e: String| panic!("{e}"))).collect();
    settings
}

async fn post(server: &TestServer, body: &str, signature: Option<String>) -> (u16, serde_json::Value) {
    post_to(server, "/api/webhook/bank/", body, signature).await
}

/// Posts a batch to the batch API, signed if `signature` is given.
async fn post_batch(server: &TestServer, body: &str, signature: Option<String>) -> (u16, serde_json::Value) {
    post_to(server, "/api/v1/batch/", body, signature).await
}

async fn post_to(server: &TestServer, path: &str, body: &str, signature: Option<String>) -> (u16, serde_json::Value) {
    let mut request =
        server.client.post(server.url(path)).header("Content-Type", "application/json").body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("X-Payledger-Signature", signature);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_webhooks_are_checked_over_the_raw_body() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(guarded(&db, &["new-secret", "old-secret"], &[])).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = notice(Uuid::new_v4(), json!("100.00"), INN).to_string();

    let refused = [
        ("missing", None),
        ("wrong secret", Some(sign("other", now, body.as_bytes()))),
        ("expired", Some(sign("new-secret", now - 400, body.as_bytes()))),
        ("from the future", Some(sign("new-secret", now + 400, body.as_bytes()))),
        ("tampered body", Some(sign("new-secret", now, body.replace("100.00", "900.00").as_bytes()))),
        ("malformed", Some("v1=abc".to_owned())),
    ];
    for (case, signature) in refused {
        let (status, answer) = post(&server, &body, signature).await;
        assert_eq!((status, answer["code"].clone()), (401, json!("unauthorized")), "{case}: {answer}");
    }
    assert_eq!(server.balance_text(INN).await, None, "nothing was applied");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM rejected_notices WHERE reason = 'bad_signature'").await, 6);

    // A secret being rotated out still verifies; so does a header carrying several v1 values.
    let (status, _) = post(&server, &body, Some(sign("old-secret", now, body.as_bytes()))).await;
    assert_eq!(status, 200);
    let second = notice(Uuid::new_v4(), json!("1.00"), INN).to_string();
    let both = format!(
        "{},v1={}",
        sign("retired", now, second.as_bytes()),
        sign("new-secret", now, second.as_bytes()).split("v1=").nth(1).unwrap_or_default()
    );
    let (status, _) = post(&server, &second, Some(both)).await;
    assert_eq!(status, 200);
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("101.00"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notices_from_outside_the_allowed_networks_are_refused() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(guarded(&db, &[], &["10.0.0.0/8"])).await;
    let body = notice(Uuid::new_v4(), json!("5.00"), INN).to_string();
    let (status, answer) = post(&server, &body, None).await;
    assert_eq!((status, answer["code"].clone()), (403, json!("forbidden")));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM rejected_notices WHERE reason = 'forbidden_network'").await, 1);
    server.stop().await;

    let server = TestServer::start(guarded(&db, &[], &["10.0.0.0/8", "127.0.0.0/8"])).await;
    assert_eq!(post(&server, &body, None).await.0, 200);
    server.stop().await;
}

/// An operator's batch carries bank notices only with what the bank webhook needs: the bank's signature
/// over the whole body, from an allowed network. Balance operations alone need neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_notices_in_a_batch_need_the_banks_signature_and_network() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(guarded(&db, &["bank-secret"], &["127.0.0.0/8"])).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut bank = notice(Uuid::new_v4(), json!("100.00"), INN);
    bank["type"] = json!("bank_notice");
    let body = json!({"operations": [bank]}).to_string();
    let (status, answer) = post_batch(&server, &body, None).await;
    assert_eq!((status, answer["code"].clone()), (401, json!("unauthorized")), "{answer}");
    let forged = body.replace("100.00", "900.00");
    let (status, _) = post_batch(&server, &forged, Some(sign("bank-secret", now, body.as_bytes()))).await;
    assert_eq!(status, 401);
    assert_eq!(server.balance_text(INN).await, None, "nothing was applied");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM rejected_notices WHERE reason = 'bad_signature'").await, 2);
    let (status, answer) = post_batch(&server, &body, Some(sign("bank-secret", now, body.as_bytes()))).await;
    assert_eq!((status, answer["results"][0]["status"].clone()), (200, json!(200)), "{answer}");
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("100.00"));
    let deposits = json!({"operations": [{"type": "deposit", "idempotency_key": "d", "user_id": 1, "amount": "1"}]});
    assert_eq!(post_batch(&server, &deposits.to_string(), None).await.0, 200);
    server.stop().await;

    let server = TestServer::start(guarded(&db, &[], &["10.0.0.0/8"])).await;
    let (status, answer) = post_batch(&server, &body, None).await;
    assert_eq!((status, answer["code"].clone()), (403, json!("forbidden")), "{answer}");
    server.stop().await;
}
