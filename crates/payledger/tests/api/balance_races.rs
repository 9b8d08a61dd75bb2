//! Races on users' balances fired at real servers: many transfers in both directions at once, reservations
//! that together exceed the balance, and a capture racing a release of one hold. Each ends with
//! `payledger verify`'s checks. On PostgreSQL the transfers also run through two servers sharing the
//! database. Each test holds [`common::load::heavy`], so it runs alone among the heavy and timing-sensitive
//! tests.

use std::collections::HashMap;
use std::sync::Arc;

use crate::common::{self, Backend, TestDb, TestServer, kopecks, on_both_backends};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Barrier;

const USERS: i64 = 10;
const TRANSFERS: usize = 1200;
const INITIAL_KOPECKS: i64 = 100_000;

on_both_backends!(
    concurrent_transfers_in_both_directions_conserve_money,
    concurrent_reservations_hold_only_what_fits,
    a_capture_racing_a_release_of_one_hold_has_one_winner,
);

/// Posts every `(path, body)` at once (after a barrier), spreading them over the servers; returns each
/// answer's status and JSON body, in request order.
async fn fire(servers: &[&TestServer], requests: Vec<(&'static str, Value)>) -> Vec<(u16, Value)> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (path, body)) in requests.into_iter().enumerate() {
        let server = servers[i % servers.len()];
        let (client, url, barrier) = (server.client.clone(), server.url(path), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let response =
                client.post(url).header("Content-Type", "application/json").body(body.to_string()).send().await;
            let answer = match response {
                Ok(response) => (response.status().as_u16(), response.json().await.unwrap_or(Value::Null)),
                Err(_) => (0, Value::Null),
            };
            (i, answer)
        });
    }
    let mut answers: Vec<(usize, (u16, Value))> = tasks.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, answer)| answer).collect()
}

async fn transfer_race(servers: &[&TestServer], db: &TestDb) {
    for user in 1..=USERS {
        let body = json!({"user_id": user, "amount": common::rubles(INITIAL_KOPECKS)}).to_string();
        assert_eq!(servers[0].post("/api/add_funds/", body, None).await.status, 201);
    }
    let mut rng = StdRng::seed_from_u64(7);
    let mut transfers = Vec::with_capacity(TRANSFERS);
    while transfers.len() < TRANSFERS {
        let sender = rng.random_range(1..=USERS);
        let recipient = rng.random_range(1..=USERS);
        if sender == recipient {
            continue;
        }
        // Large enough that some senders run dry and are refused.
        let amount = rng.random_range(1..=40_000i64);
        transfers.push((sender, recipient, amount));
        // Every pair also goes the other way at the same moment: A→B beside B→A.
        transfers.push((recipient, sender, amount));
    }
    let requests = transfers
        .iter()
        .map(|(s, r, a)| {
            ("/api/transfer_funds/", json!({"sender_id": s, "recipient_id": r, "amount": common::rubles(*a)}))
        })
        .collect();
    let answers = fire(servers, requests).await;

    let mut expected: HashMap<i64, i64> = (1..=USERS).map(|user| (user, INITIAL_KOPECKS)).collect();
    let mut applied = 0;
    for ((sender, recipient, amount), (status, body)) in transfers.iter().zip(&answers) {
        match status {
            201 => {
                applied += 1;
                *expected.entry(*sender).or_default() -= amount;
                *expected.entry(*recipient).or_default() += amount;
            }
            409 => assert_eq!(body["code"], "insufficient_funds", "{body}"),
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert!(applied > TRANSFERS / 2, "most transfers apply: {applied}");
    let mut total = 0;
    for user in 1..=USERS {
        let (amount, reserved) = servers[0].user_balance(user).await.expect("user");
        let amount = kopecks(&amount);
        assert!(amount >= 0, "user {user} went negative: {amount}");
        assert_eq!(reserved, "0.00");
        assert_eq!(amount, expected[&user], "user {user}: exactly the acknowledged transfers moved money");
        total += amount;
    }
    assert_eq!(total, USERS * INITIAL_KOPECKS, "money is conserved");
    db.assert_verified().await;
}

async fn concurrent_transfers_in_both_directions_conserve_money(backend: Backend) {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    transfer_race(&[&server], &db).await;
    server.stop().await;
}

async fn concurrent_reservations_hold_only_what_fits(backend: Backend) {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    // 50.00 available; 100 reservations of 0.75..=1.24 each ask for about twice that.
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 1, "amount": "50.00"}"#, None).await.status, 201);
    let amounts: Vec<i64> = (0..100).map(|i| 75 + (i * 37) % 50).collect();
    let requests = amounts
        .iter()
        .enumerate()
        .map(|(i, amount)| {
            let body = json!({"user_id": 1, "service_id": 1, "order_id": i + 1, "amount": common::rubles(*amount)});
            ("/api/reserve_funds/", body)
        })
        .collect();
    let answers = fire(&[&server], requests).await;
    let mut held = 0;
    for (amount, (status, body)) in amounts.iter().zip(&answers) {
        match status {
            201 => held += amount,
            409 => {
                assert_eq!(body["code"], "insufficient_funds", "{body}");
                // Refused only when it did not fit at its turn: what was left was less than it asked.
                assert!(kopecks(body["available"].as_str().unwrap_or("0")) < *amount, "{body}");
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert!(held <= 5_000 && held > 5_000 - 125, "held {held}: everything that fits and no more");
    let (amount, reserved) = server.user_balance(1).await.expect("user");
    assert_eq!((kopecks(&amount), kopecks(&reserved)), (5_000 - held, held));
    server.stop().await;
    db.assert_verified().await;
}

async fn a_capture_racing_a_release_of_one_hold_has_one_winner(backend: Backend) {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    capture_release_race(&[&server], &db).await;
    server.stop().await;
}

async fn capture_release_race(servers: &[&TestServer], db: &TestDb) {
    let server = servers[0];
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 1, "amount": "100.00"}"#, None).await.status, 201);
    const ORDERS: i64 = 40;
    for order in 1..=ORDERS {
        let body = json!({"user_id": 1, "service_id": 9, "order_id": order, "amount": "2.00"}).to_string();
        assert_eq!(server.post("/api/reserve_funds/", body, None).await.status, 201);
    }
    let mut requests = Vec::new();
    for order in 1..=ORDERS {
        let body = json!({"user_id": 1, "service_id": 9, "order_id": order, "amount": "2.00"});
        // Alternate which one is sent first, so neither always has the head start.
        if order % 2 == 0 {
            requests.push(("/api/deduct_funds/", body.clone()));
            requests.push(("/api/unreserve_funds/", body));
        } else {
            requests.push(("/api/unreserve_funds/", body.clone()));
            requests.push(("/api/deduct_funds/", body));
        }
    }
    let answers = fire(servers, requests.clone()).await;
    let mut captured = 0;
    for (pair, requests) in answers.chunks(2).zip(requests.chunks(2)) {
        let winners: Vec<&str> =
            pair.iter().zip(requests).filter(|((status, _), _)| *status == 201).map(|(_, (path, _))| *path).collect();
        assert_eq!(winners.len(), 1, "exactly one wins: {pair:?}");
        let loser = pair.iter().find(|(status, _)| *status != 201).map(|(status, body)| (status, body["code"].clone()));
        assert_eq!(loser, Some((&409, json!("hold_settled"))));
        if winners[0] == "/api/deduct_funds/" {
            captured += 200;
        }
    }
    let (amount, reserved) = server.user_balance(1).await.expect("user");
    assert_eq!((kopecks(&amount), reserved.as_str()), (10_000 - captured, "0.00"));
    db.assert_verified().await;
}

/// Two servers share one PostgreSQL database; their writers coordinate only through the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_transfer_in_both_directions_without_deadlock() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let first = TestServer::start(common::settings(&db)).await;
    let second = TestServer::start(common::settings(&db)).await;
    transfer_race(&[&first, &second], &db).await;
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_race_a_capture_against_a_release() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let first = TestServer::start(common::settings(&db)).await;
    let second = TestServer::start(common::settings(&db)).await;
    capture_release_race(&[&first, &second], &db).await;
    first.stop().await;
    second.stop().await;
}

/// One key sent to two instances at the same moment takes effect once; the others are answered "in
/// flight" or replay the first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_apply_one_idempotency_key_once() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let first = TestServer::start(common::settings(&db)).await;
    let second = TestServer::start(common::settings(&db)).await;
    for round in 0..10 {
        let key = format!("shared-{round}");
        let barrier = Arc::new(Barrier::new(16));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let server = if i % 2 == 0 { &first } else { &second };
            let (client, url, key, barrier) =
                (server.client.clone(), server.url("/api/add_funds/"), key.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let response = client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", key)
                    .body(r#"{"user_id": 3, "amount": "1.00"}"#)
                    .send()
                    .await
                    .expect("request");
                (response.status().as_u16(), response.text().await.unwrap_or_default())
            });
        }
        let answers: Vec<(u16, String)> = tasks.join_all().await;
        let created: std::collections::HashSet<&String> =
            answers.iter().filter(|(s, _)| *s == 201).map(|(_, body)| body).collect();
        assert_eq!(created.len(), 1, "{answers:?}");
        assert!(answers.iter().all(|(s, body)| *s == 201 || body.contains("idempotency_key_in_flight")), "{answers:?}");
        assert_eq!(first.user_balance(3).await.map(|b| b.0), Some(format!("{}.00", round + 1)));
    }
    db.assert_verified().await;
    first.stop().await;
    second.stop().await;
}

/// The same order reserved through two instances at the same moment is held once; every other attempt is
/// refused with `hold_exists`, never with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_reserve_one_order_once() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let first = TestServer::start(common::settings(&db)).await;
    let second = TestServer::start(common::settings(&db)).await;
    assert_eq!(first.post("/api/add_funds/", r#"{"user_id": 1, "amount": "100.00"}"#, None).await.status, 201);
    for order in 1..=10 {
        let body = json!({"user_id": 1, "service_id": 4, "order_id": order, "amount": "1.00"});
        let answers = fire(&[&first, &second], vec![("/api/reserve_funds/", body); 16]).await;
        assert_eq!(answers.iter().filter(|(status, _)| *status == 201).count(), 1, "{answers:?}");
        assert!(answers.iter().all(|(status, body)| *status == 201 || body["code"] == "hold_exists"), "{answers:?}");
    }
    assert_eq!(first.user_balance(1).await, Some(("90.00".into(), "10.00".into())));
    db.assert_verified().await;
    first.stop().await;
    second.stop().await;
}
