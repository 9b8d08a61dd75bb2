//! What a deployment relies on around the API: liveness and readiness for an orchestrator and a load balancer,
//! readiness failing while an instance drains, `payledger healthcheck` for a container's HEALTHCHECK, and
//! `payledger migrate --check` for a pipeline.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Backend, TestDb, TestServer, on_both_backends, settings};

on_both_backends!(ready_names_pending_migrations_and_live_does_not_look);

/// Ready and live on a current database; with this build's last migration missing from the database (a
/// restore of an older copy), readiness answers 503 naming it while liveness still answers 200.
async fn ready_names_pending_migrations_and_live_does_not_look(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(settings(&db)).await;
    let get = |path: &'static str| {
        let (client, url) = (server.anonymous.clone(), server.url(path));
        async move {
            let response = client.get(url).send().await.expect("request");
            (response.status().as_u16(), response.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = get("/api/health/ready/").await;
    assert_eq!((status, &body["status"], &body["reasons"]), (200, &Value::from("ok"), &Value::Array(vec![])));
    assert_eq!(get("/api/health/live/").await.0, 200);

    let last = db.scalar("SELECT MAX(version) FROM _sqlx_migrations").await;
    db.execute("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)").await;
    let (status, body) = get("/api/health/ready/").await;
    assert_eq!(status, 503, "{body}");
    let pending = body["reasons"][0].as_str().unwrap_or_default();
    // Only the forgotten one, as `<version>_<description>`.
    assert!(pending.starts_with(&format!("migrations pending: {last}_")) && !pending.contains(", "), "{body}");
    assert_eq!(get("/api/health/live/").await.0, 200);
    server.stop().await;
}

/// On a shutdown signal, readiness answers 503 `draining` for the drain period while the instance still
/// serves (so a balancer takes it out first); then it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_instance_fails_readiness_but_still_serves_until_it_stops() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut config = settings(&db);
    config.shutdown_drain = Duration::from_secs(3);
    let server = TestServer::start(config).await;
    let (client, ready, live) =
        (server.anonymous.clone(), server.url("/api/health/ready/"), server.url("/api/health/live/"));
    let stopping = tokio::spawn(server.stop());
    let started = std::time::Instant::now();
    let mut drained = None;
    while started.elapsed() < Duration::from_secs(2) {
        let response = client.get(&ready).send().await.expect("ready while draining");
        if response.status() == 503 {
            drained = Some(response.json::<Value>().await.expect("json"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = drained.expect("readiness fails during the drain");
    assert!(body["reasons"].to_string().contains("draining"), "{body}");
    assert_eq!(client.get(&live).send().await.expect("live while draining").status(), 200);
    stopping.await.expect("stopped");
    assert!(started.elapsed() >= Duration::from_secs(2), "the drain period was kept");
}

fn payledger(args: &[&str], database_url: &str) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_payledger"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("PAYLEDGER_BIND")
        .output()
        .expect("run payledger");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `migrate --check` changes nothing and says whether the database is current: no database (1), migrated
/// (0), behind (1, naming what is pending); `healthcheck` is 0 against a ready server and 1 against a closed
/// port.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_check_and_healthcheck_answer_with_their_exit_status() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let (code, out, _) = payledger(&["migrate", "--check"], &db.url);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no database"), "{out}");
    assert!(!db.dir.path().join("payledger.db").exists(), "the check creates nothing");

    assert_eq!(payledger(&["migrate"], &db.url).0, Some(0));
    let file = || std::fs::read(db.dir.path().join("payledger.db")).expect("database file");
    let before = file();
    let (code, out, _) = payledger(&["migrate", "--check"], &db.url);
    assert_eq!((code, out.trim()), (Some(0), "migrations current"));
    // (Whether SQLite's -wal and -shm files exist depends on how the last writer closed, not on the check.)
    assert!(file() == before, "the check opens the file read-only: not a byte of it changes");

    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 1").execute(&pool).await.expect("forget one");
    pool.close().await;
    let (code, out, _) = payledger(&["migrate", "--check"], &db.url);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("migrations pending: 1_"), "{out}");
    // A newer build's migration applied: this build must not run on that schema.
    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 SELECT 1, description, success, checksum, execution_time FROM _sqlx_migrations WHERE version = 2",
    )
    .execute(&pool)
    .await
    .expect("restore 1");
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 SELECT 9999, 'from a newer build', success, checksum, execution_time FROM _sqlx_migrations WHERE version = 2")
        .execute(&pool)
        .await
        .expect("a newer migration");
    pool.close().await;
    let (code, out, _) = payledger(&["migrate", "--check"], &db.url);
    assert_eq!((code, out.trim()), (Some(1), "migrations of a newer build applied: 9999"));

    let other = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let server = TestServer::start(settings(&other)).await;
    let ready = server.url("/api/health/ready/");
    let answered = tokio::task::spawn_blocking(move || payledger(&["healthcheck", "--url", &ready], "sqlite::memory:"));
    let (code, _, err) = answered.await.expect("healthcheck");
    assert_eq!(code, Some(0), "{err}");
    server.stop().await;
    // Port 1 on loopback: nothing listens there.
    let (code, _, err) =
        payledger(&["healthcheck", "--url", "http://127.0.0.1:1/api/health/ready/"], "sqlite::memory:");
    assert_eq!(code, Some(1));
    assert!(err.contains("unhealthy"), "{err}");
}
