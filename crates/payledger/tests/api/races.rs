//! Races fired at real servers: duplicates arriving at the same moment, and many payments to one hot
//! organization, on one server and on two servers sharing one PostgreSQL database. Each test holds
//! [`common::load::heavy`], so it runs alone among the heavy and timing-sensitive tests.

use std::sync::Arc;

use crate::common::{self, Backend, TestDb, TestServer, notice, on_both_backends, rubles};
use serde_json::json;
use tokio::sync::Barrier;
use uuid::Uuid;

const HOT_INN: &str = "7707083893";
const IDENTICAL_POSTS: usize = 64;
const DISTINCT_POSTS: usize = 2000;

on_both_backends!(concurrent_identical_notices_credit_once, concurrent_distinct_notices_to_one_inn_all_count);

/// Sends every body at once (after a barrier) through the given servers in turn; returns the statuses.
async fn fire(servers: &[&TestServer], bodies: Vec<serde_json::Value>) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let server = servers[i % servers.len()];
        let client = server.client.clone();
        let url = server.url("/api/webhook/bank/");
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let response =
                client.post(url).header("Content-Type", "application/json").body(body.to_string()).send().await;
            response.map(|r| r.status().as_u16()).unwrap_or(0)
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.expect("task"));
    }
    statuses
}

async fn identical_race(servers: &[&TestServer], db: &TestDb) {
    let body = notice(Uuid::new_v4(), json!("1234.56"), HOT_INN);
    let statuses = fire(servers, vec![body; IDENTICAL_POSTS]).await;
    assert!(statuses.iter().all(|s| *s == 200), "every duplicate answers 200: {statuses:?}");
    assert_eq!(servers[0].balance_text(HOT_INN).await.as_deref(), Some("1234.56"));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM bank_payments").await, 1);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM ledger_transactions").await, 1);
}

async fn distinct_race(servers: &[&TestServer], db: &TestDb) {
    // Amounts 1..=2000 kopecks: the exact sum is n(n+1)/2.
    let bodies: Vec<_> =
        (1..=DISTINCT_POSTS as i64).map(|kopecks| notice(Uuid::new_v4(), json!(rubles(kopecks)), HOT_INN)).collect();
    let statuses = fire(servers, bodies).await;
    assert!(statuses.iter().all(|s| *s == 200), "all accepted: {:?}", statuses.iter().filter(|s| **s != 200).count());
    let n = DISTINCT_POSTS as i64;
    let expected = rubles(n * (n + 1) / 2);
    for server in servers {
        assert_eq!(server.balance_text(HOT_INN).await, Some(expected.clone()));
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM bank_payments WHERE status = 'applied'").await, n);
}

async fn concurrent_identical_notices_credit_once(backend: Backend) {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    identical_race(&[&server], &db).await;
    server.stop().await;
    db.assert_verified().await;
}

async fn concurrent_distinct_notices_to_one_inn_all_count(backend: Backend) {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    distinct_race(&[&server], &db).await;
    server.stop().await;
    db.assert_verified().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_credit_identical_notices_once() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let first = TestServer::start(common::settings(&db)).await;
    let second = TestServer::start(common::settings(&db)).await;
    identical_race(&[&first, &second], &db).await;
    // Again with several fresh ids at once, so both writers race on the same keys in one batch.
    let ids: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    let bodies: Vec<_> = (0..256).map(|i| notice(ids[i % ids.len()], json!("1.00"), HOT_INN)).collect();
    let statuses = fire(&[&first, &second], bodies).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(first.balance_text(HOT_INN).await.as_deref(), Some("1242.56"));
    first.stop().await;
    second.stop().await;
    db.assert_verified().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_sum_distinct_notices_exactly() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let first = TestServer::start(common::settings(&db)).await;
    let second = TestServer::start(common::settings(&db)).await;
    distinct_race(&[&first, &second], &db).await;
    first.stop().await;
    second.stop().await;
    db.assert_verified().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_in_async_mode_apply_each_notice_once() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let first = TestServer::start(common::async_settings(&db)).await;
    let second = TestServer::start(common::async_settings(&db)).await;
    let bodies: Vec<_> = (1..=500i64).map(|k| notice(Uuid::new_v4(), json!(rubles(k)), HOT_INN)).collect();
    let statuses = fire(&[&first, &second], bodies).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let expected = rubles(500 * 501 / 2);
    let mut balance = None;
    for _ in 0..300 {
        balance = first.balance_text(HOT_INN).await;
        if balance.as_deref() == Some(expected.as_str()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(balance, Some(expected));
    first.stop().await;
    second.stop().await;
    db.assert_verified().await;
}
