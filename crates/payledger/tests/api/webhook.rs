//! The bank webhook's HTTP contract, on SQLite and PostgreSQL, against the real server.

use crate::common::{self, Backend, TestDb, TestServer, notice, on_both_backends};
use serde_json::{Value, json};
use uuid::Uuid;

const INN: &str = "1234567890";

on_both_backends!(
    a_new_payment_is_credited_and_logged,
    a_replayed_notice_changes_nothing,
    a_conflicting_notice_answers_200_and_is_recorded,
    the_strict_policy_refuses_a_conflicting_notice_with_409,
    invalid_notices_get_400_naming_the_field_and_are_kept,
    wrong_content_type_and_oversized_bodies_are_refused,
    balances_of_unknown_or_malformed_inns_are_refused,
    the_balance_log_pages_newest_first_without_gaps,
    async_mode_accepts_at_once_and_applies_in_the_background,
    amounts_keep_every_kopeck,
    bad_notices_in_a_busy_batch_do_not_fail_the_good_ones,
    replays_of_precise_dates_are_duplicates_on_every_backend,
    malformed_queries_get_json_errors,
    a_failed_credit_answers_the_same_422_to_every_exact_replay,
    a_credit_failed_by_the_async_applier_answers_422_to_replays,
);

async fn a_new_payment_is_credited_and_logged(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let id = Uuid::parse_str("ccf0a86d-041b-4991-bcf7-e2352f7b8a4a").unwrap();

    let (status, body) = server.post_webhook(&notice(id, json!(145000), INN)).await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "Payment processed successfully");

    // The exact text of the original contract: a JSON number with two decimals.
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("145000.00"));
    let (status, body) = server.get(&format!("/api/organizations/{INN}/balance/")).await;
    assert_eq!((status, body["inn"].as_str()), (200, Some(INN)));

    let (status, log) = server.get(&format!("/api/organizations/{INN}/balance-log/")).await;
    assert_eq!(status, 200);
    let rows = log["results"].as_array().expect("results");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["operation_id"], id.to_string());
    assert_eq!(rows[0]["document_number"], "PAY-328");
    assert_eq!(rows[0]["document_date"], "2024-04-27T21:00:00Z");
    // Amounts are JSON numbers with exactly two decimals, as the balance endpoint writes them.
    let raw = server
        .client
        .get(server.url(&format!("/api/organizations/{INN}/balance-log/")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains(r#""amount":145000.00,"previous_balance":0.00,"new_balance":145000.00"#), "{raw}");
    assert!(log["next"].is_null());

    server.stop().await;
    db.assert_verified().await;
}

async fn a_replayed_notice_changes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let body = notice(Uuid::new_v4(), json!("100.50"), INN);
    assert_eq!(server.post_webhook(&body).await.0, 200);
    for _ in 0..3 {
        let (status, answer) = server.post_webhook(&body).await;
        assert_eq!(status, 200);
        assert_eq!(answer["status"], "duplicate");
        assert!(answer["message"].as_str().unwrap_or_default().contains("already processed"));
    }
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("100.50"));
    let (_, log) = server.get(&format!("/api/organizations/{INN}/balance-log")).await;
    assert_eq!(log["results"].as_array().map(Vec::len), Some(1));
    server.stop().await;
    db.assert_verified().await;
}

async fn a_conflicting_notice_answers_200_and_is_recorded(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let id = Uuid::new_v4();
    assert_eq!(server.post_webhook(&notice(id, json!(10), INN)).await.0, 200);

    let (status, answer) = server.post_webhook(&notice(id, json!(20), "0987654321")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "conflict");
    assert_eq!(answer["conflicting_fields"], json!(["amount", "payer_inn"]));

    assert_eq!(server.balance_text(INN).await.as_deref(), Some("10.00"));
    assert_eq!(server.balance_text("0987654321").await, None, "the conflicting payer must not be created");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM notice_conflicts").await, 1);
    let (_, metrics) = (0, server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap());
    assert!(metrics.contains("payledger_webhook_notices_total{outcome=\"conflict\"}"));
    server.stop().await;
    db.assert_verified().await;
}

async fn the_strict_policy_refuses_a_conflicting_notice_with_409(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::strict_settings(&db)).await;
    let id = Uuid::new_v4();
    assert_eq!(server.post_webhook(&notice(id, json!(10), INN)).await.0, 200);
    let (status, answer) = server.post_webhook(&notice(id, json!(11), INN)).await;
    assert_eq!(status, 409);
    assert_eq!(answer["code"], "operation_id_conflict");
    // A true replay is still fine under the strict policy.
    assert_eq!(server.post_webhook(&notice(id, json!(10), INN)).await.0, 200);
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("10.00"));
    server.stop().await;
}

async fn invalid_notices_get_400_naming_the_field_and_are_kept(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let valid = notice(Uuid::new_v4(), json!(100), INN);
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body.to_string()
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        body.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (without("operation_id"), "operation_id"),
        (without("amount"), "amount"),
        (without("payer_inn"), "payer_inn"),
        (without("document_number"), "document_number"),
        (without("document_date"), "document_date"),
        (with("operation_id", json!("not-a-uuid")), "operation_id"),
        (with("operation_id", json!(42)), "operation_id"),
        (with("amount", json!(0)), "amount"),
        (with("amount", json!(-100)), "amount"),
        (with("amount", json!("1.001")), "amount"),
        (with("amount", json!(1e300)), "amount"),
        (with("amount", json!("1000000000000000")), "amount"),
        (with("amount", json!("abc")), "amount"),
        (with("amount", json!(true)), "amount"),
        (with("amount", json!([1])), "amount"),
        (with("amount", Value::Null), "amount"),
        (with("payer_inn", json!("123456789")), "payer_inn"),
        (with("payer_inn", json!("12345678901")), "payer_inn"),
        (with("payer_inn", json!("12345abcde")), "payer_inn"),
        (with("document_number", json!("")), "document_number"),
        (with("document_number", json!("   ")), "document_number"),
        (with("document_date", json!("27.04.2024")), "document_date"),
        (with("document_date", json!("2024-04-27")), "document_date"),
        ("[1, 2, 3]".into(), "body"),
        ("\"text\"".into(), "body"),
        ("{\"operation_id\": ".into(), "body"),
        ("".into(), "body"),
    ];
    for (body, field) in &cases {
        let (status, answer) = server.post_webhook_raw(body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"], "Invalid data", "{body}");
        assert!(answer["details"][field].is_string(), "{body} should name {field}: {answer}");
    }
    // A body with more decimals than a float can hold is not rounded into validity.
    let (status, _) = server
        .post_webhook_raw(with("amount", json!(1)).replace("\"amount\":1", "\"amount\":1.0000000000000001"))
        .await;
    assert_eq!(status, 400);

    assert_eq!(server.balance_text(INN).await, None, "nothing invalid reached the ledger");
    let kept = db.scalar("SELECT COUNT(*) FROM rejected_notices").await;
    assert_eq!(kept, cases.len() as i64 + 1);
    server.stop().await;
    db.assert_verified().await;
}

async fn wrong_content_type_and_oversized_bodies_are_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let body = notice(Uuid::new_v4(), json!(1), INN).to_string();
    let response = server
        .client
        .post(server.url("/api/webhook/bank/"))
        .header("Content-Type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = server.client.post(server.url("/api/webhook/bank/")).body(body).send().await.unwrap();
    assert_eq!(response.status(), 415);

    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(payledger::webhook::intake::MAX_WEBHOOK_BODY_BYTES));
    let (status, answer) = server.post_webhook_raw(huge).await;
    assert_eq!(status, 413);
    assert_eq!(answer["code"], "payload_too_large");
    assert_eq!(server.balance_text(INN).await, None);
    server.stop().await;
}

async fn balances_of_unknown_or_malformed_inns_are_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let (status, body) = server.get("/api/organizations/1234567890/balance/").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "Organization not found");
    let (status, _) = server.get("/api/organizations/1234567890/balance-log/").await;
    assert_eq!(status, 404);
    let (status, body) = server.get("/api/organizations/12345/balance/").await;
    assert_eq!(status, 400);
    assert!(body["details"]["inn"].is_string());
    server.stop().await;
}

async fn the_balance_log_pages_newest_first_without_gaps(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    for kopecks in 1..=7 {
        let (status, _) = server.post_webhook(&notice(Uuid::new_v4(), json!(common::rubles(kopecks * 100)), INN)).await;
        assert_eq!(status, 200);
    }
    let mut seen = Vec::new();
    let mut path = format!("/api/organizations/{INN}/balance-log/?limit=3");
    loop {
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200);
        for row in page["results"].as_array().unwrap() {
            seen.push(row["amount"].to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, vec!["7.0", "6.0", "5.0", "4.0", "3.0", "2.0", "1.0"]);
    let (status, body) = server.get(&format!("/api/organizations/{INN}/balance-log/?limit=0")).await;
    assert_eq!(status, 400);
    assert!(body["details"]["limit"].is_string());
    server.stop().await;
}

async fn async_mode_accepts_at_once_and_applies_in_the_background(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::async_settings(&db)).await;
    let first = notice(Uuid::new_v4(), json!(300), INN);
    let (status, answer) = server.post_webhook(&first).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "accepted");
    assert_eq!(server.post_webhook(&notice(Uuid::new_v4(), json!("0.25"), INN)).await.0, 200);
    let (status, answer) = server.post_webhook(&first).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")));

    let mut balance = None;
    for _ in 0..200 {
        balance = server.balance_text(INN).await;
        if balance.as_deref() == Some("300.25") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(balance.as_deref(), Some("300.25"));
    server.stop().await;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM bank_payments WHERE status = 'applied'").await, 2);
    db.assert_verified().await;
}

async fn amounts_keep_every_kopeck(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    // 0.1 + 0.2 is not 0.3 in floating point; here it must be exactly 0.30, and the largest accepted
    // amount must come back digit for digit.
    for amount in [json!(0.1), json!("0.2")] {
        assert_eq!(server.post_webhook(&notice(Uuid::new_v4(), amount, INN)).await.0, 200);
    }
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("0.30"));
    let big = "{\"operation_id\":\"0b7f8e3c-8a36-4c8e-9a51-6f1f7f4c2b10\",\"amount\":999999999999.99,\
               \"payer_inn\":\"123456789012\",\"document_number\":\"N\",\"document_date\":\"2024-01-01T00:00:00+03:00\"}";
    assert_eq!(server.post_webhook_raw(big).await.0, 200);
    assert_eq!(server.balance_text("123456789012").await.as_deref(), Some("999999999999.99"));
    server.stop().await;
    db.assert_verified().await;
}

async fn bad_notices_in_a_busy_batch_do_not_fail_the_good_ones(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    // NUL characters cannot be stored in PostgreSQL text; they must be refused alone, never fail the
    // batch that the valid notices around them share.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..120i64 {
        let client = server.client.clone();
        let url = server.url("/api/webhook/bank/");
        let body = if i % 20 == 0 {
            let mut body = notice(Uuid::new_v4(), json!("1.00"), INN);
            body["document_number"] = json!("PAY\u{0}1");
            body.to_string()
        } else if i % 20 == 1 {
            format!("{{\"operation_id\": \"{}\", \"pad\": \"a\u{0}b\"}}", Uuid::new_v4())
        } else {
            notice(Uuid::new_v4(), json!("1.00"), INN).to_string()
        };
        tasks.spawn(async move {
            let response = client.post(url).header("Content-Type", "application/json").body(body).send().await;
            (i, response.map(|r| r.status().as_u16()).unwrap_or(0))
        });
    }
    while let Some(result) = tasks.join_next().await {
        let (i, status) = result.unwrap();
        let expected = if i % 20 <= 1 { 400 } else { 200 };
        assert_eq!(status, expected, "request {i}");
    }
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("108.00"));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM rejected_notices").await, 12);
    server.stop().await;
    db.assert_verified().await;
}

async fn replays_of_precise_dates_are_duplicates_on_every_backend(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::strict_settings(&db)).await;
    let mut body = notice(Uuid::new_v4(), json!(5), INN);
    body["document_date"] = json!("2024-04-27T21:00:00.123456789Z");
    assert_eq!(server.post_webhook(&body).await.0, 200);
    let (status, answer) = server.post_webhook(&body).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "{answer}");
    // The same instant written with another offset is the same document date.
    body["document_date"] = json!("2024-04-28T00:00:00.123456+03:00");
    assert_eq!(server.post_webhook(&body).await.0, 200);
    let mut extreme = notice(Uuid::new_v4(), json!(5), INN);
    extreme["document_date"] = json!("9999-12-31T23:59:59-01:00");
    let (status, answer) = server.post_webhook(&extreme).await;
    assert_eq!(status, 400);
    assert!(answer["details"]["document_date"].is_string());
    server.stop().await;
}

async fn malformed_queries_get_json_errors(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    assert_eq!(server.post_webhook(&notice(Uuid::new_v4(), json!(1), INN)).await.0, 200);
    for query in ["limit=abc", "before=99999999999999999999", "limit=-1"] {
        let (status, body) = server.get(&format!("/api/organizations/{INN}/balance-log/?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"], "Invalid data", "{query}");
    }
    server.stop().await;
}

/// Near `i64::MAX` minor units: one more notice of 10,000.00 overflows the organization's balance.
const NEAR_OVERFLOW: &str = "UPDATE accounts SET balance = 9223372036854775000 WHERE external_key = '1234567890'";
/// The balance the tests' first notice (1.00) left, put back so that `verify` judges the rest of the ledger.
const RESTORED: &str = "UPDATE accounts SET balance = 100 WHERE external_key = '1234567890'";

async fn a_failed_credit_answers_the_same_422_to_every_exact_replay(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    assert_eq!(server.post_webhook(&notice(Uuid::new_v4(), json!(1), INN)).await.0, 200);
    // The balance is pushed to the edge of i64 behind the server's back: no real notice stream gets there in a test.
    db.execute(NEAR_OVERFLOW).await;
    let overflowing = notice(Uuid::new_v4(), json!("10000.00"), INN);
    let (status, first) = server.post_webhook(&overflowing).await;
    assert_eq!(status, 422, "{first}");
    assert_eq!(first["error"], "Payment could not be applied: the balance would overflow");
    assert_eq!(first["code"], "ledger_refused");
    for _ in 0..2 {
        let (status, replay) = server.post_webhook(&overflowing).await;
        assert_eq!((status, &replay), (422, &first), "an exact replay gets the original answer");
    }
    // The same operation_id with other data follows the conflict policy (record: 200 and a recorded conflict).
    let mut different = overflowing.clone();
    different["document_number"] = json!("PAY-329");
    let (status, answer) = server.post_webhook(&different).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("conflict")), "{answer}");
    assert_eq!(answer["conflicting_fields"], json!(["document_number"]));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM bank_payments WHERE status = 'failed'").await, 1);
    server.stop().await;
    db.execute(RESTORED).await;
    // Nothing of the failed credit reached the ledger.
    db.assert_verified().await;
}

async fn a_credit_failed_by_the_async_applier_answers_422_to_replays(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::async_settings(&db)).await;
    assert_eq!(server.post_webhook(&notice(Uuid::new_v4(), json!(1), INN)).await.0, 200);
    let mut applied = 0;
    for _ in 0..250 {
        applied = db.scalar("SELECT COUNT(*) FROM bank_payments WHERE status = 'applied'").await;
        if applied == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(applied, 1, "the first notice was not applied");
    db.execute(NEAR_OVERFLOW).await;
    let overflowing = notice(Uuid::new_v4(), json!("10000.00"), INN);
    let (status, answer) = server.post_webhook(&overflowing).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
    let mut failed = 0;
    for _ in 0..250 {
        failed = db.scalar("SELECT COUNT(*) FROM bank_payments WHERE status = 'failed'").await;
        if failed == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(failed, 1, "the applier did not record the failed credit");
    // Once the applier has failed it, a replay tells the bank so, as a sync-mode server would have at once.
    for _ in 0..2 {
        let (status, replay) = server.post_webhook(&overflowing).await;
        assert_eq!(status, 422, "{replay}");
        assert_eq!(replay["error"], "Payment could not be applied: the balance would overflow");
        assert_eq!(replay["code"], "ledger_refused");
    }
    let mut different = overflowing.clone();
    different["amount"] = json!("10000.01");
    let (status, answer) = server.post_webhook(&different).await;
    assert_eq!((status, answer["conflicting_fields"].clone()), (200, json!(["amount"])), "{answer}");
    server.stop().await;
    db.execute(RESTORED).await;
    db.assert_verified().await;
}
