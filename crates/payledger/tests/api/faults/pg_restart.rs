//! PostgreSQL restarted (`pg_ctl restart -m fast`) and stopped for seconds under webhook and transfer load,
//! on a private cluster: the servers keep running, answer 503 with `Retry-After` while it is away, reconnect
//! by themselves, and the ledger holds every acknowledged operation exactly once. The second test runs two
//! instances (one in async webhook mode) and a `payledger worker` process paying payouts on one cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::cluster::PgCluster;
use super::load::Client;
use super::server::{ADMIN, Process, assert_verified};
use crate::common;

/// Concurrent clients, split over the servers.
const CLIENTS: usize = 24;
/// Acknowledgements to wait for between faults, so each fault hits a running load.
const ACKS_BETWEEN_FAULTS: usize = 150;
/// How long the database stays stopped.
const STOPPED_FOR: Duration = Duration::from_secs(6);
/// Payouts the worker process pays across the faults.
const PAYOUTS: usize = 20;
/// How soon after the database is back the first operation must be acknowledged again. Measured well under
/// a second; the bound leaves room for a loaded machine while still catching a server that needs the pool's
/// acquire timeout several times over, or a restart, to recover.
const RECOVERY_BOUND: Duration = Duration::from_secs(15);

/// Restarts the cluster, then stops it for [`STOPPED_FOR`], while the load runs; checks the servers on the way
/// and prints how long each took to serve again.
async fn faults(cluster: &PgCluster, client: &Client, processes: &mut [&mut Process]) {
    client.wait_for_acks(0, ACKS_BETWEEN_FAULTS).await;

    let restarting = Instant::now();
    cluster.restart_fast().await;
    let back = Instant::now();
    client.wait_for_acks(client.acked(), ACKS_BETWEEN_FAULTS).await;
    let recovered = client.tally.lock().expect("tally").first_ack_after(back);
    eprintln!("restart -m fast took {:?}; first acknowledgement {recovered:?} after it returned", back - restarting);
    assert!(
        recovered.is_some_and(|delay| delay < RECOVERY_BOUND),
        "the servers serve again within {RECOVERY_BOUND:?} of the restart: {recovered:?}"
    );

    cluster.stop_fast().await;
    let stopped = Instant::now();
    tokio::time::sleep(STOPPED_FOR / 2).await;
    // A read while the database is away is answered 503 with Retry-After, not left hanging.
    let response = reqwest::Client::new()
        .get(processes[0].url("/api/organizations/7707083893/balance/"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .timeout(super::load::CLIENT_TIMEOUT)
        .send()
        .await
        .expect("a read while the database is stopped gets an answer");
    assert_eq!(response.status(), 503, "a read while the database is stopped");
    assert!(response.headers().get("retry-after").is_some(), "503 carries Retry-After");
    tokio::time::sleep(STOPPED_FOR / 2).await;
    for process in processes.iter_mut() {
        process.assert_running("a payledger process while the database is stopped");
    }
    cluster.start_again().await;
    let back = Instant::now();
    let refused = client.tally.lock().expect("tally").unavailable_between(stopped, back);
    assert!(refused > 0, "writes while the database was stopped were answered 503");
    client.wait_for_acks(client.acked(), ACKS_BETWEEN_FAULTS).await;
    let recovered = client.tally.lock().expect("tally").first_ack_after(back);
    eprintln!(
        "stopped for {:?}: {refused} answers 503; first acknowledgement {recovered:?} after it returned",
        back - stopped
    );
    assert!(
        recovered.is_some_and(|delay| delay < RECOVERY_BOUND),
        "the servers serve again within {RECOVERY_BOUND:?} of the database's return: {recovered:?}"
    );
    for process in processes.iter_mut() {
        process.assert_running("a payledger process after the database came back");
    }
}

/// Stops the load (each client finishes its operation in hand) and checks the ledger against what was
/// acknowledged, through the API and by counting rows.
async fn finish(client: &Client, stop: &AtomicBool, mut tasks: tokio::task::JoinSet<()>, url: &str) {
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    eprintln!("{}", client.tally.lock().expect("tally").summary());
    let pool = sqlx::PgPool::connect(url).await.expect("connect to the cluster");
    // A notice acknowledged in async mode is recorded; the appliers credit it soon after.
    let applying = Instant::now();
    let mut waiting = i64::MAX;
    for _ in 0..600 {
        waiting = sqlx::query_scalar("SELECT COUNT(*) FROM bank_payments WHERE status = 'received'")
            .fetch_one(&pool)
            .await
            .expect("count");
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(waiting, 0, "every recorded notice is applied after the faults");
    eprintln!("waited {:?} for recorded notices to be applied", applying.elapsed());
    pool.close().await;
    client.assert_stored_once(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_rides_out_postgres_restarting_and_stopping_under_load() {
    let _heavy = common::load::heavy().await;
    let Some(cluster) = PgCluster::start().await else { return };
    let data = tempfile::tempdir().expect("data dir");
    let mut server = Process::serve(&cluster.url(), data.path(), &[]).await;
    let client = Client::new(vec![server.address.clone()]);
    client.fund_users().await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = client.start(CLIENTS, stop.clone());

    faults(&cluster, &client, &mut [&mut server]).await;

    finish(&client, &stop, tasks, &cluster.url()).await;
    eprintln!("the server logged:\n{}", server.problems());
    server.stop("the server").await;
    assert_verified(&cluster.url(), data.path()).await;
}

/// Creates payouts (no source, so balances are untouched) for the worker process to pay.
async fn create_payouts(server: &Process, from: usize, to: usize) {
    let http = reqwest::Client::new();
    for n in from..to {
        let body = json!({"amount": format!("{}.00", n + 1), "currency": "RUB",
            "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "Fault Test"}});
        loop {
            let response = http
                .post(server.url("/api/v1/payouts/"))
                .basic_auth(ADMIN.0, Some(ADMIN.1))
                .header("Idempotency-Key", format!("payout-{n}"))
                .json(&body)
                .send()
                .await;
            match response {
                Ok(response) if response.status() == 201 => break,
                Ok(response) => assert_eq!(response.status(), 503, "creating payout {n}"),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_and_a_worker_ride_out_postgres_restarting_and_stopping_under_load() {
    let _heavy = common::load::heavy().await;
    let Some(cluster) = PgCluster::start().await else { return };
    let data = tempfile::tempdir().expect("data dir");
    let url = cluster.url();
    let no_workers = [("PAYLEDGER_WORKERS", "0")];
    let mut first = Process::serve(&url, data.path(), &no_workers).await;
    // The second instance answers notices in async mode: it records them, and an applier credits them.
    let mut second = Process::serve(&url, data.path(), &[no_workers[0], ("PAYLEDGER_WEBHOOK_MODE", "async")]).await;
    // A job in hand when the database went away keeps its lease until it expires (its reschedule needed the
    // database too): a short lease lets another claim take it over within seconds.
    let fast = [
        ("PAYLEDGER_WORKERS", "2"),
        ("PAYLEDGER_PAYOUT_RETRY_BASE_MS", "50"),
        ("PAYLEDGER_GATEWAY_LATENCY_MS", "1"),
        ("PAYLEDGER_JOB_LEASE_SECONDS", "3"),
    ];
    let mut worker = Process::worker(&url, data.path(), &fast).await;
    let client = Client::new(vec![first.address.clone(), second.address.clone()]);
    client.fund_users().await;
    create_payouts(&first, 0, PAYOUTS / 2).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = client.start(CLIENTS, stop.clone());

    faults(&cluster, &client, &mut [&mut first, &mut second, &mut worker]).await;
    create_payouts(&second, PAYOUTS / 2, PAYOUTS).await;

    finish(&client, &stop, tasks, &url).await;
    // The worker pays every payout, the ones created before the faults and after.
    let paying = Instant::now();
    let mut completed = 0;
    for _ in 0..600 {
        completed = client.read("/api/v1/payouts/?status=completed&page_size=1").await["count"]
            .as_str()
            .and_then(|count| count.parse::<usize>().ok())
            .unwrap_or(0);
        if completed == PAYOUTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(completed, PAYOUTS, "the worker paid every payout across the faults");
    eprintln!("the last payouts were paid {:?} after the load stopped", paying.elapsed());
    worker.stop("the worker").await;
    first.stop("the first server").await;
    second.stop("the second server").await;
    assert_verified(&url, data.path()).await;
}
