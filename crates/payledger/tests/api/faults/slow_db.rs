//! A slow database (PostgreSQL): another session holds `LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE` for
//! seconds while load and a burst of requests arrive. Requests wait up to the request timeout and answer
//! 503 with `Retry-After`; none hangs, the server's memory stays bounded, and once the lock is gone every
//! resent operation is applied exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use uuid::Uuid;

use super::load::{Client, INNS, Operation};
use super::server::{Process, assert_verified, rss_kib};
use crate::common::{self, Backend, TestDb};

/// The server's request timeout in this test (`PAYLEDGER_REQUEST_TIMEOUT_SECONDS`), well under the lock.
const REQUEST_TIMEOUT_SECONDS: &str = "3";
/// How far past the request timeout an answer may come: the timeout fires in the server, the answer still
/// has to be written and read on a loaded machine (measured: 3.3 s for a 3 s timeout).
const ANSWER_SLACK: Duration = Duration::from_secs(5);
/// How long the lock is held.
const LOCKED_FOR: Duration = Duration::from_secs(8);
/// Concurrent clients sending operation after operation.
const CLIENTS: usize = 32;
/// Notices sent all at once while the lock is held, each by its own client.
const BURST: usize = 400;
/// A generous bound on the server's resident memory while requests pile up behind the lock.
const RSS_BOUND_KIB: u64 = 300 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locked_accounts_table_answers_503_within_the_timeout_with_bounded_memory() {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let mut server =
        Process::serve(&db.url, db.dir.path(), &[("PAYLEDGER_REQUEST_TIMEOUT_SECONDS", REQUEST_TIMEOUT_SECONDS)]).await;
    let pid = server.pid();
    let client = Client::new(vec![server.address.clone()]);
    client.fund_users().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = client.start(CLIENTS, stop.clone());
    client.wait_for_acks(0, 100).await;
    let rss_before = rss_kib(pid).expect("the server's VmRSS");

    let mut lock = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut lock).await.expect("begin");
    sqlx::query("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE").execute(&mut lock).await.expect("lock");
    let locked = Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..BURST {
        let client = client.clone();
        let operation = Operation::Notice { id: Uuid::new_v4(), inn: INNS[n % INNS.len()], kopecks: 100 + n as i64 };
        burst.spawn(async move { client.run(operation).await });
    }
    let mut rss_peak = rss_before;
    while locked.elapsed() < LOCKED_FOR {
        rss_peak = rss_peak.max(rss_kib(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.assert_running("the server behind a locked table");
    let refused = client.tally.lock().expect("tally").unavailable_between(locked, Instant::now());
    sqlx::query("COMMIT").execute(&mut lock).await.expect("release the lock");
    let released = Instant::now();
    assert!(refused > 0, "requests behind the lock are answered 503 after the request timeout");

    while burst.join_next().await.is_some() {}
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let recovered = client.tally.lock().expect("tally").first_ack_after(released);
    eprintln!(
        "locked for {LOCKED_FOR:?}: {refused} answers 503; VmRSS {} MiB before, peak {} MiB during; first \
         acknowledgement {recovered:?} after the lock was released",
        rss_before / 1024,
        rss_peak / 1024
    );
    eprintln!("{}", client.tally.lock().expect("tally").summary());
    assert!(
        !client.tally.lock().expect("tally").unknown.contains_key("timeout"),
        "no request hung until the client gave up"
    );
    let slowest = client.tally.lock().expect("tally").slowest;
    let bound = Duration::from_secs(REQUEST_TIMEOUT_SECONDS.parse().expect("seconds")) + ANSWER_SLACK;
    assert!(slowest < bound, "every request is answered within the request timeout (+ slack): slowest {slowest:?}");
    assert!(rss_peak < RSS_BOUND_KIB, "the server's memory stays bounded: peak VmRSS {} MiB", rss_peak / 1024);
    client.assert_ledger_matches().await;
    eprintln!("the server logged:\n{}", server.problems());
    server.stop("the server").await;
    assert_verified(&db.url, db.dir.path()).await;
}
