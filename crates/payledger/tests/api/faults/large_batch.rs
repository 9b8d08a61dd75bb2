//! A batch that fails for its size, not for an outage: on a private cluster with the smallest lock table
//! PostgreSQL allows (`max_locks_per_transaction=10`, few connections), a batch of hundreds of transfers
//! cannot take one advisory lock per idempotency key and fails with SQLSTATE 53200 "out of shared memory".
//! The engine must then apply the commands one by one, so every transfer is acknowledged at the first try
//! instead of every caller getting 503 (and, under load, the resends refilling an equally large batch).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;

use super::cluster::PgCluster;
use super::load::Client;
use super::server::{ADMIN, Process, assert_verified};
use crate::common::{self, kopecks, rubles};

/// Transfers queued behind the lock at once: far more advisory locks than the lock table holds (about
/// ten per connection slot), yet under [`payledger::engine::MAX_BATCH_COMMANDS`].
const TRANSFERS: usize = 900;
/// Users the transfers move money between.
const USERS: i64 = 4;
/// Each user's deposit before the transfers: more than they can move.
const FUNDING: i64 = 100_000_000;
/// How long the accounts table stays locked, so the transfers pile up into one batch behind it.
const LOCKED_FOR: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_too_large_for_the_lock_table_is_applied_one_by_one() {
    let _heavy = common::load::heavy().await;
    let settings = ["max_locks_per_transaction=10", "max_connections=20"];
    let Some(cluster) = PgCluster::start_with(&settings).await else { return };
    let url = cluster.url();
    let data = tempfile::tempdir().expect("data dir");
    let mut server = Process::serve(&url, data.path(), &[("PAYLEDGER_REQUEST_TIMEOUT_SECONDS", "120")]).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("client");
    for user in 1..=USERS {
        let response = http
            .post(server.url("/api/add_funds/"))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .header("Idempotency-Key", format!("fund-{user}"))
            .json(&json!({"user_id": user, "amount": rubles(FUNDING)}))
            .send()
            .await
            .expect("fund a user");
        assert_eq!(response.status(), 201, "funding user {user}");
    }

    // Every transfer waits in the engine's queue while the writer is blocked on the lock; once it is
    // released the writer takes them all as one batch.
    let mut lock = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut lock).await.expect("begin");
    sqlx::query("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE").execute(&mut lock).await.expect("lock");
    let mut transfers = tokio::task::JoinSet::new();
    let mut expected: HashMap<i64, i64> = (1..=USERS).map(|user| (user, FUNDING)).collect();
    for n in 0..TRANSFERS {
        let (http, url) = (http.clone(), server.url("/api/transfer_funds/"));
        let (from, kopecks) = (1 + n as i64 % USERS, 100 + n as i64);
        let to = 1 + from % USERS;
        *expected.entry(from).or_default() -= kopecks;
        *expected.entry(to).or_default() += kopecks;
        let body = json!({"sender_id": from, "recipient_id": to, "amount": rubles(kopecks)});
        transfers.spawn(async move {
            let response = http
                .post(url)
                .basic_auth(ADMIN.0, Some(ADMIN.1))
                .header("Idempotency-Key", format!("transfer-{n}"))
                .json(&body)
                .send()
                .await
                .expect("an answer");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        });
    }
    tokio::time::sleep(LOCKED_FOR).await;
    sqlx::query("COMMIT").execute(&mut lock).await.expect("release the lock");
    let released = Instant::now();

    let mut refused = Vec::new();
    while let Some(answer) = transfers.join_next().await {
        let (status, body) = answer.expect("a transfer task");
        if status != 200 && status != 201 {
            refused.push(format!("{status} {body}"));
        }
    }
    let problems = server.problems();
    eprintln!(
        "{TRANSFERS} transfers answered {:?} after the lock was released; the server logged:\n{problems}",
        released.elapsed()
    );
    assert!(
        problems.contains("out of shared memory"),
        "a batch failed for its size (53200), so this test tests something:\n{problems}"
    );
    assert!(refused.is_empty(), "{} of {TRANSFERS} transfers refused, e.g. {:?}", refused.len(), refused.first());

    // Exactly the transfers, each once: each user sent and received the same number of them.
    let count: i64 = {
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE key LIKE '%transfer-%'")
            .fetch_one(&mut conn)
            .await
            .expect("count")
    };
    assert_eq!(count as usize, TRANSFERS, "each transfer's key is stored once");
    let client = Client::new(vec![server.address.clone()]);
    for (user, balance) in expected {
        let body = client.read(&format!("/api/balances/?user_id={user}")).await;
        assert_eq!(kopecks(body["amount"].as_str().expect("amount")), balance, "user {user} after every transfer");
    }
    server.assert_running("the server");
    server.stop("the server").await;
    assert_verified(&url, data.path()).await;
}
