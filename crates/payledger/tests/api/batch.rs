//! The batch API (`POST /api/v1/batch/`) against the real server: each operation answered as its single
//! endpoint answers it, keys shared with the single endpoints, atomic batches all or nothing, and batches
//! racing single requests with the same keys and the same money.

// Amounts in kopecks are written roubles_kopecks: 100_00 is 100.00.
#![allow(clippy::inconsistent_digit_grouping)]

use std::sync::Arc;

use crate::common::{self, Backend, TestDb, TestServer, kopecks, notice, on_both_backends};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use uuid::Uuid;

on_both_backends!(
    each_operation_is_answered_as_its_endpoint_would_and_replayed_by_key,
    an_atomic_batch_applies_everything_or_nothing,
    batches_and_single_requests_with_the_same_keys_apply_each_once,
    atomic_batches_racing_withdrawals_never_apply_in_part,
);

const INN: &str = "7707083893";

/// Posts a batch; returns the status and the JSON answer.
async fn batch(server: &TestServer, body: &Value) -> (u16, Value) {
    let response = server
        .client
        .post(server.url("/api/v1/batch/"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Each result's `(status, replayed)`.
fn statuses(answer: &Value) -> Vec<(u64, bool)> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("results: {answer}"))
        .iter()
        .map(|r| (r["status"].as_u64().expect("status"), r["replayed"].as_bool().expect("replayed")))
        .collect()
}

async fn available(server: &TestServer, user: i64) -> i64 {
    kopecks(&server.user_balance(user).await.expect("account").0)
}

async fn each_operation_is_answered_as_its_endpoint_would_and_replayed_by_key(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let operation_id = Uuid::new_v4();
    let mut bank = notice(operation_id, json!("250.00"), INN);
    bank["type"] = json!("bank_notice");
    let request = json!({"operations": [
        {"type": "deposit", "idempotency_key": "d1", "user_id": 1, "amount": "100.00"},
        {"type": "deposit", "idempotency_key": "d2", "user_id": 2, "amount": 5},
        {"type": "transfer", "idempotency_key": "t1", "sender_id": 1, "recipient_id": 2, "amount": "30.00"},
        {"type": "reserve", "idempotency_key": "r1", "user_id": 1, "service_id": 7, "order_id": 70, "amount": "20.00"},
        {"type": "capture", "idempotency_key": "c1", "user_id": 1, "service_id": 7, "order_id": 70, "amount": "20.00"},
        {"type": "reserve", "idempotency_key": "r2", "user_id": 2, "service_id": 7, "order_id": 71, "amount": "1.00"},
        {"type": "release", "idempotency_key": "u2", "user_id": 2, "service_id": 7, "order_id": 71},
        {"type": "withdraw", "idempotency_key": "w1", "user_id": 2, "amount": "1000.00"},
        {"type": "deposit", "idempotency_key": "bad", "user_id": 1, "amount": "-1"},
        {"type": "refund", "idempotency_key": "x", "user_id": 1},
        {"type": "deposit", "user_id": 1, "amount": "1.00"},
        bank,
    ]});
    let (status, first) = batch(&server, &request).await;
    assert_eq!(status, 200, "{first}");
    let expected = [201, 201, 201, 201, 201, 201, 201, 409, 400, 400, 400, 200];
    assert_eq!(statuses(&first), expected.iter().map(|s| (*s, false)).collect::<Vec<_>>(), "{first}");
    let results = &first["results"];
    assert!(results[2]["body"]["recipient_transaction"].is_object(), "a transfer answers both sides: {first}");
    assert_eq!(results[7]["body"]["code"], "insufficient_funds");
    assert_eq!(results[8]["body"]["details"]["amount"], "must be greater than zero");
    assert!(results[9]["body"]["details"]["type"].as_str().is_some_and(|t| t.starts_with("must be one of")));
    assert_eq!(results[10]["body"]["details"]["idempotency_key"], "this field is required");
    assert_eq!(results[11]["body"]["status"], "processed");
    assert_eq!(available(&server, 1).await, 100_00 - 30_00 - 20_00);
    assert_eq!(available(&server, 2).await, 5_00 + 30_00);
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("250.00"));

    // The same batch again: every keyed answer is replayed byte for byte (the refusals too), nothing moves.
    let (status, again) = batch(&server, &request).await;
    assert_eq!(status, 200);
    let replayed: Vec<bool> = statuses(&again).iter().map(|(_, replayed)| *replayed).collect();
    assert_eq!(replayed, [true, true, true, true, true, true, true, true, true, false, false, false]);
    for index in 0..9 {
        assert_eq!(again["results"][index]["body"], first["results"][index]["body"], "operation {index}");
    }
    assert_eq!(again["results"][11]["body"]["status"], "duplicate");
    assert_eq!(available(&server, 1).await, 50_00);

    // A key is the same key for the single endpoint: the same request replays, another one is refused.
    let same = server.post("/api/add_funds/", json!({"user_id": 1, "amount": "100.00"}).to_string(), Some("d1")).await;
    assert_eq!((same.status, same.replayed), (201, true));
    assert_eq!(serde_json::from_str::<Value>(&same.text).ok(), Some(first["results"][0]["body"].clone()));
    let other = server.post("/api/add_funds/", json!({"user_id": 1, "amount": "1.00"}).to_string(), Some("d1")).await;
    assert_eq!((other.status, other.json["code"].clone()), (409, json!("idempotency_key_reused")));
    // And the other way round: a key a single request used answers its stored response inside a batch.
    let single = server.post("/api/add_funds/", json!({"user_id": 3, "amount": "7.00"}).to_string(), Some("s1")).await;
    assert_eq!(single.status, 201);
    let (_, mixed) = batch(
        &server,
        &json!({"operations": [
            {"type": "deposit", "idempotency_key": "s1", "user_id": 3, "amount": "7.00"},
            {"type": "deposit", "idempotency_key": "s1-other", "user_id": 3, "amount": "7.00"},
        ]}),
    )
    .await;
    assert_eq!(statuses(&mixed), [(201, true), (201, false)]);
    assert_eq!(available(&server, 3).await, 14_00);

    // Every change is audited under the caller, as the single endpoints' are.
    let audited = db.scalar("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'balance.%'").await;
    assert_eq!(audited, 7 + 2, "seven applied operations in the batch, one single deposit and one batched");

    // Requests that are not a batch are refused whole, naming the field, and change nothing.
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"type": "deposit", "idempotency_key": format!("m{i}"), "user_id": 9, "amount": "1"}))
        .collect();
    let refused = [
        (json!({"operations": []}), "operations"),
        (json!({"operations": too_many}), "operations"),
        (json!({"operations": {"type": "deposit"}}), "operations"),
        (
            json!({"operations": [{"type": "deposit", "idempotency_key": "k0", "user_id": 9, "amount": "1"}, 1]}),
            "operations[1]",
        ),
        (json!({"atomic": "yes", "operations": [{"type": "deposit"}]}), "atomic"),
        (
            json!({"operations": [
                {"type": "deposit", "idempotency_key": "k", "user_id": 9, "amount": "1"},
                {"type": "withdraw", "idempotency_key": "k", "user_id": 9, "amount": "1"},
            ]}),
            "operations[1].idempotency_key",
        ),
    ];
    for (body, field) in refused {
        let (status, answer) = batch(&server, &body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["details"][field].is_string(), "{field}: {answer}");
    }
    assert_eq!(server.user_balance(9).await, None);
    db.assert_verified().await;
    server.stop().await;
}

async fn an_atomic_batch_applies_everything_or_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let deposit = server.post("/api/add_funds/", json!({"user_id": 1, "amount": "50.00"}).to_string(), None).await;
    assert_eq!(deposit.status, 201);

    // The third operation overdraws: nothing of the batch is applied, the second user is not even opened,
    // and the bank notice is neither recorded nor credited.
    let mut bank = notice(Uuid::new_v4(), json!("9.00"), INN);
    bank["type"] = json!("bank_notice");
    let overdrawing = |amount: &str| {
        json!({"atomic": true, "operations": [
            {"type": "deposit", "idempotency_key": "a1", "user_id": 2, "amount": "10.00"},
            {"type": "transfer", "idempotency_key": "a2", "sender_id": 2, "recipient_id": 1, "amount": "10.00"},
            {"type": "withdraw", "idempotency_key": "a3", "user_id": 1, "amount": amount},
            bank,
        ]})
    };
    let (status, refused) = batch(&server, &overdrawing("60.01")).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "batch_not_applied");
    assert_eq!(statuses(&refused), [(424, false), (424, false), (409, false), (424, false)]);
    assert_eq!(refused["results"][0]["body"]["code"], "not_applied");
    assert_eq!(refused["results"][2]["body"]["code"], "insufficient_funds");
    assert_eq!(refused["results"][2]["body"]["available"], "60.00", "the earlier operations counted");
    assert_eq!(available(&server, 1).await, 50_00);
    assert_eq!(server.user_balance(2).await, None);
    assert_eq!(server.balance_text(INN).await, None);
    let kept = "SELECT (SELECT COUNT(*) FROM bank_payments) + (SELECT COUNT(*) FROM idempotency_keys)";
    assert_eq!(db.scalar(kept).await, 0, "no notice and no key was kept");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'balance.%'").await, 1, "the set-up only");

    // Its keys were not used: the corrected batch applies in full, every operation seeing the ones before.
    let (status, applied) = batch(&server, &overdrawing("60.00")).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(statuses(&applied), [(201, false), (201, false), (201, false), (200, false)]);
    assert_eq!(available(&server, 1).await, 0);
    assert_eq!(available(&server, 2).await, 0);
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("9.00"));
    // Retried, it replays (the notice is a duplicate); with one key reused for another request, nothing of it
    // applies.
    let (status, replayed) = batch(&server, &overdrawing("60.00")).await;
    assert_eq!((status, statuses(&replayed)), (200, vec![(201, true), (201, true), (201, true), (200, false)]));
    assert_eq!(replayed["results"][3]["body"]["status"], "duplicate");
    let (status, reused) = batch(
        &server,
        &json!({"atomic": true, "operations": [
            {"type": "deposit", "idempotency_key": "b1", "user_id": 1, "amount": "5.00"},
            {"type": "deposit", "idempotency_key": "a1", "user_id": 1, "amount": "5.00"},
        ]}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(reused["results"][1]["body"]["code"], "idempotency_key_reused");
    assert_eq!(available(&server, 1).await, 0);

    // An invalid operation refuses an atomic batch whole, naming the operation and its field.
    let (status, invalid) = batch(
        &server,
        &json!({"atomic": true, "operations": [
            {"type": "deposit", "idempotency_key": "c1", "user_id": 1, "amount": "5.00"},
            {"type": "deposit", "idempotency_key": "c2", "user_id": 1, "amount": "5.001"},
        ]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(invalid["details"]["operations[1].amount"].is_string(), "{invalid}");
    assert_eq!(available(&server, 1).await, 0);
    let again = server.post("/api/add_funds/", json!({"user_id": 1, "amount": "5.00"}).to_string(), Some("c1")).await;
    assert_eq!((again.status, again.replayed), (201, false), "the refused batch kept nothing under its keys");
    db.assert_verified().await;
    server.stop().await;
}

/// One request, a batch or a single one, fired after the barrier.
async fn fire(
    server: &TestServer,
    barrier: Arc<Barrier>,
    path: &'static str,
    key: Option<String>,
    body: Value,
) -> (u16, Value, bool) {
    barrier.wait().await;
    let mut request =
        server.client.post(server.url(path)).header("Content-Type", "application/json").body(body.to_string());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (status, response.json().await.unwrap_or(Value::Null), replayed)
}

const RACING_KEYS: usize = 200;

async fn batches_and_single_requests_with_the_same_keys_apply_each_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = Arc::new(TestServer::start(common::settings(&db)).await);
    for user in [1, 2] {
        let body = json!({"user_id": user, "amount": "1000.00"}).to_string();
        assert_eq!(server.post("/api/add_funds/", body, None).await.status, 201);
    }
    // Transfer k moves k kopecks from 1 to 2 (odd k) or back; two batches carry every key, and every key
    // is also sent alone, all at once.
    let transfer = |k: usize| {
        let (sender, recipient) = if k % 2 == 1 { (1, 2) } else { (2, 1) };
        json!({"sender_id": sender, "recipient_id": recipient, "amount": common::rubles(k as i64)})
    };
    let operations: Vec<Value> = (1..=RACING_KEYS)
        .map(|k| {
            let mut operation = transfer(k);
            operation["type"] = json!("transfer");
            operation["idempotency_key"] = json!(format!("race-{k}"));
            operation
        })
        .collect();
    let barrier = Arc::new(Barrier::new(RACING_KEYS + 2));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let body = json!({"operations": operations.clone()});
        let (server, barrier) = (server.clone(), barrier.clone());
        tasks.spawn(async move { (None, fire(&server, barrier, "/api/v1/batch/", None, body).await) });
    }
    for k in 1..=RACING_KEYS {
        let (server, barrier, body) = (server.clone(), barrier.clone(), transfer(k));
        tasks.spawn(async move {
            (Some(k), fire(&server, barrier, "/api/transfer_funds/", Some(format!("race-{k}")), body).await)
        });
    }
    // For each key: how many answers applied it (201, not replayed), and how many were refused as in flight.
    let mut applied = vec![0; RACING_KEYS + 1];
    let mut in_flight = 0;
    for (key, (status, answer, replayed)) in tasks.join_all().await {
        let answers: Vec<(usize, u64, bool, Value)> = match key {
            Some(k) => vec![(k, u64::from(status), replayed, answer)],
            None => {
                assert_eq!(status, 200, "{answer}");
                let results = answer["results"].as_array().expect("results").clone();
                results
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        (i + 1, r["status"].as_u64().unwrap_or(0), r["replayed"] == json!(true), r["body"].clone())
                    })
                    .collect()
            }
        };
        for (k, status, replayed, body) in answers {
            match (status, replayed) {
                (201, false) => applied[k] += 1,
                (201, true) => {}
                (409, false) if body["code"] == "idempotency_key_in_flight" => in_flight += 1,
                other => panic!("key {k}: {other:?} {body}"),
            }
        }
    }
    // Whoever held a key applied it, so each key was applied exactly once; the others waited or replayed.
    for (k, count) in applied.iter().enumerate().skip(1) {
        assert_eq!(*count, 1, "key race-{k} applied {count} times ({in_flight} answers were in flight)");
    }
    let moved: i64 = (1..=RACING_KEYS as i64).map(|k| if k % 2 == 1 { k } else { -k }).sum();
    assert_eq!(available(&server, 1).await, 1000_00 - moved);
    assert_eq!(available(&server, 2).await, 1000_00 + moved);
    db.assert_verified().await;
    Arc::into_inner(server).expect("one owner").stop().await;
}

async fn atomic_batches_racing_withdrawals_never_apply_in_part(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = Arc::new(TestServer::start(common::settings(&db)).await);
    assert_eq!(
        server.post("/api/add_funds/", json!({"user_id": 1, "amount": "100.00"}).to_string(), None).await.status,
        201
    );
    // Each atomic batch moves 30.00 out of user 1 in three parts, and single withdrawals of 10.00 race them:
    // together they ask for far more than there is.
    const BATCHES: usize = 8;
    const WITHDRAWALS: usize = 8;
    let barrier = Arc::new(Barrier::new(BATCHES + WITHDRAWALS));
    let mut tasks = tokio::task::JoinSet::new();
    for b in 0..BATCHES {
        let operations: Vec<Value> = (0..3)
            .map(|part| json!({"type": "transfer", "idempotency_key": format!("b{b}-{part}"), "sender_id": 1, "recipient_id": 2 + b, "amount": "10.00"}))
            .collect();
        let (server, barrier) = (server.clone(), barrier.clone());
        // The recipients need accounts; a deposit in the same atomic batch opens one.
        let mut all = vec![
            json!({"type": "deposit", "idempotency_key": format!("b{b}-open"), "user_id": 2 + b, "amount": "0.01"}),
        ];
        all.extend(operations);
        tasks.spawn(async move {
            (true, fire(&server, barrier, "/api/v1/batch/", None, json!({"atomic": true, "operations": all})).await)
        });
    }
    for w in 0..WITHDRAWALS {
        let (server, barrier) = (server.clone(), barrier.clone());
        let body = json!({"user_id": 1, "amount": "10.00"});
        tasks.spawn(async move {
            (false, fire(&server, barrier, "/api/withdraw_funds/", Some(format!("w{w}")), body).await)
        });
    }
    let (mut batches_applied, mut withdrawals_applied) = (0i64, 0i64);
    for (is_batch, (status, answer, _)) in tasks.join_all().await {
        match (is_batch, status) {
            (true, 200) => batches_applied += 1,
            (true, 409) => assert_eq!(answer["code"], "batch_not_applied", "{answer}"),
            (false, 201) => withdrawals_applied += 1,
            (false, 409) => assert_eq!(answer["code"], "insufficient_funds"),
            other => panic!("{other:?}: {answer}"),
        }
    }
    let left = available(&server, 1).await;
    assert_eq!(left, 100_00 - batches_applied * 30_00 - withdrawals_applied * 10_00);
    // Some batch was refused for want of money, and the balance only fell after that.
    assert!((0..30_00).contains(&left), "left {left}");
    if left >= 10_00 {
        assert_eq!(withdrawals_applied, WITHDRAWALS as i64, "a withdrawal was refused with {left} left");
    }
    // A refused batch opened no account; an applied one moved all three parts.
    let mut opened = 0;
    for user in 2..2 + BATCHES as i64 {
        if let Some((amount, _)) = server.user_balance(user).await {
            assert_eq!(kopecks(&amount), 30_01, "user {user}");
            opened += 1;
        }
    }
    assert_eq!(opened, batches_applied);
    db.assert_verified().await;
    Arc::into_inner(server).expect("one owner").stop().await;
}
