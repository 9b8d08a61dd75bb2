//! Kill -9 in async mode: the real binary is killed mid-load and restarted; every acknowledged notice must
//! then be applied exactly once and `payledger verify` must pass. It holds [`common::load::heavy`]: it loads
//! the machine, and it needs its own load to build up within two seconds.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{self, Backend, TestDb, notice, on_both_backends};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

const CLIENTS: usize = 32;
const INNS: [&str; 3] = ["7707083893", "7736207543", "500100732259"];

on_both_backends!(async_mode_survives_kill_minus_nine);

/// Starts the real binary in async mode on a random port and returns it with its address.
async fn start_binary(db: &TestDb) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_payledger"))
        .args(["serve", "--bind", "127.0.0.1:0", "--webhook-mode", "async", "--demo-organizations", "0"])
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_LOG", "info")
        .env("PAYLEDGER_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn payledger");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if entry["fields"]["message"] == "payledger is serving" {
                return entry["fields"]["address"].as_str().map(str::to_owned);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("server announced its address");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

async fn async_mode_survives_kill_minus_nine(backend: Backend) {
    let _heavy = common::load::heavy().await;
    let Some(db) = TestDb::new(backend).await else { return };
    let (mut child, address) = start_binary(&db).await;
    let acknowledged: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let client = reqwest::Client::new();
    let mut clients = tokio::task::JoinSet::new();
    for worker in 0..CLIENTS {
        let (client, acknowledged, address) = (client.clone(), acknowledged.clone(), address.clone());
        clients.spawn(async move {
            for i in 0.. {
                let id = Uuid::new_v4();
                let body = notice(id, json!(format!("{}.{:02}", 1 + i % 50, worker)), INNS[(worker + i) % INNS.len()]);
                let sent = client
                    .post(format!("http://{address}/api/webhook/bank/"))
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => acknowledged.lock().unwrap().push(id),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
    }
    // Let load build up, then kill without warning while requests are in flight.
    for _ in 0..200 {
        if acknowledged.lock().unwrap().len() >= 1500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().expect("kill -9");
    let _ = child.wait().await;
    while clients.join_next().await.is_some() {}
    let acknowledged: HashSet<Uuid> = acknowledged.lock().unwrap().iter().copied().collect();
    assert!(acknowledged.len() > 100, "the load ran before the kill ({} acknowledged)", acknowledged.len());

    let left_waiting = db.scalar("SELECT COUNT(*) FROM bank_payments WHERE status = 'received'").await;
    eprintln!("killed with {} acknowledged, {left_waiting} recorded but not yet applied", acknowledged.len());

    // Restart on the same database: the applier must finish what the killed process accepted.
    let (mut child, _) = start_binary(&db).await;
    let mut waiting = i64::MAX;
    for _ in 0..500 {
        waiting = db.scalar("SELECT COUNT(*) FROM bank_payments WHERE status = 'received'").await;
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(waiting, 0, "every recorded notice is applied after the restart");
    child.start_kill().expect("kill");
    let _ = child.wait().await;

    let store = db.store().await;
    let applied = applied_operation_ids(&db).await;
    let missing: Vec<_> = acknowledged.iter().filter(|id| !applied.contains(*id)).collect();
    assert!(missing.is_empty(), "{} acknowledged notices were lost, e.g. {:?}", missing.len(), missing.first());
    let report = store.verify().await.expect("verify");
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.bank_payments as usize, applied.len());
    // Each applied notice is one transaction; none was applied twice.
    assert_eq!(report.transactions as usize, applied.len());
}

async fn applied_operation_ids(db: &TestDb) -> HashSet<Uuid> {
    let ids: Vec<Uuid> = if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
        sqlx::query_scalar("SELECT operation_id FROM bank_payments WHERE status = 'applied'")
            .fetch_all(&pool)
            .await
            .expect("ids")
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
        sqlx::query_scalar("SELECT operation_id FROM bank_payments WHERE status = 'applied'")
            .fetch_all(&pool)
            .await
            .expect("ids")
    };
    ids.into_iter().collect()
}
