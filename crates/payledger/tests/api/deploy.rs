//! What a deployment relies on around the API: liveness and readiness for an orchestrator and a load balancer,
//! readiness failing while an instance drains, `payledger healthcheck` for a container's HEALTHCHECK, and
//! `payledger migrate --check` for a pipeline.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

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

    // A newer build migrated the database (a rolling upgrade): this build stays ready, says so, and starts.
    db.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         SELECT 9999, 'from a newer build', success, checksum, execution_time FROM _sqlx_migrations WHERE version = 1",
    )
    .await;
    let (status, body) = get("/api/health/ready/").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["notes"], serde_json::json!(["migrations of a newer build applied: 9999"]));
    let another = TestServer::start(settings(&db)).await;
    another.stop().await;
    db.execute("DELETE FROM _sqlx_migrations WHERE version = 9999").await;

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
    // Forgotten, but kept aside (as -1) to be put back exactly: `migrate` checks each migration's checksum.
    sqlx::query("UPDATE _sqlx_migrations SET version = -1 WHERE version = 1").execute(&pool).await.expect("forget one");
    pool.close().await;
    let (code, out, _) = payledger(&["migrate", "--check"], &db.url);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("migrations pending: 1_"), "{out}");
    // A newer build's migration applied: it only expanded the schema, so this build may still run on it.
    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
    sqlx::query("UPDATE _sqlx_migrations SET version = 1 WHERE version = -1").execute(&pool).await.expect("restore 1");
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 SELECT 9999, 'from a newer build', success, checksum, execution_time FROM _sqlx_migrations WHERE version = 2")
        .execute(&pool)
        .await
        .expect("a newer migration");
    pool.close().await;
    let (code, out, _) = payledger(&["migrate", "--check"], &db.url);
    assert_eq!((code, out.trim()), (Some(0), "migrations current\nmigrations of a newer build applied: 9999"));
    // A newer build's contracting migration for builds whose newest migration is below 99999: this one is
    // too old. It is refused by the check, by migrate and by start-up; one for builds below 2 is no obstacle.
    let contract = |description: &'static str| {
        let url = db.url.clone();
        async move {
            let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
            sqlx::query("DELETE FROM _sqlx_migrations WHERE description LIKE 'contract%'")
                .execute(&pool)
                .await
                .expect("clear");
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 SELECT 9998, $1, success, checksum, execution_time FROM _sqlx_migrations WHERE version = 2",
            )
            .bind(description)
            .execute(&pool)
            .await
            .expect("a contracting migration");
            pool.close().await;
        }
    };
    contract("contract after 2 drop something").await;
    assert_eq!(payledger(&["migrate", "--check"], &db.url).0, Some(0));
    contract("contract after 99999 drop something").await;
    let (code, out, _) = payledger(&["migrate", "--check"], &db.url);
    let too_old = "a newer build's migrations removed what this build uses: 9998 (contract after 99999)";
    assert_eq!((code, out.trim()), (Some(1), too_old));
    let (code, _, err) = payledger(&["migrate"], &db.url);
    assert!(code != Some(0) && err.contains(too_old), "{err}");

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

/// A managed PostgreSQL is reached over TLS: `sslmode=require` (and `verify-full` with the system's roots)
/// works, and the session is encrypted. On a server without TLS the same URL is refused rather than sent in
/// plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_can_be_required_to_use_tls() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let url = format!("{}?sslmode=require", db.url);
    let plain = sqlx::PgPool::connect(&db.url).await.expect("postgres");
    let server_tls: String = sqlx::query_scalar("SHOW ssl").fetch_one(&plain).await.expect("show ssl");
    plain.close().await;
    let checked = tokio::task::spawn_blocking({
        let url = url.clone();
        move || payledger(&["migrate", "--check"], &url)
    });
    let (code, out, err) = checked.await.expect("migrate --check");
    if server_tls == "on" {
        assert_eq!(code, Some(1), "{out}{err}");
        let pool = sqlx::PgPool::connect(&url).await.expect("a TLS connection");
        let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("pg_stat_ssl");
        assert!(encrypted, "the session is encrypted");
        pool.close().await;
    } else {
        assert_eq!(code, Some(2), "a server without TLS is refused: {out}{err}");
    }
}

/// On a shutdown, a request still in hand when the grace period ends is cut off: the server stops within the
/// grace period instead of waiting for it (here, a webhook whose body never finishes arriving).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_ends_within_its_grace_period_whatever_is_in_hand() {
    use tokio::io::AsyncWriteExt;
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut config = settings(&db);
    config.shutdown_grace = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(120);
    let server = TestServer::start(config).await;
    let mut stalled = tokio::net::TcpStream::connect(server.address).await.expect("connect");
    let head =
        "POST /api/webhook/bank/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    stalled.write_all(head.as_bytes()).await.expect("a partial request");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), server.stop()).await.expect("the server stopped");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(10), "stopped after {took:?}");
    drop(stalled);
}

/// One access line per request at `info`, in the JSON format too: method, the route's template, status,
/// latency, client, the user and the request id (echoed in `X-Request-Id`), and nothing of the credentials,
/// the path's values or the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_gets_one_access_line_with_its_id_and_no_secrets() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let (mut child, address) = serve_binary(&db, &[("PAYLEDGER_LOG_FORMAT", "json"), ("PAYLEDGER_LOG", "info")]).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{address}{path}");
    let secret = "a-password-nobody-may-log";
    let listed = client
        .get(url("/api/v1/payouts/00000000-0000-0000-0000-000000000042/?token=query-secret"))
        .basic_auth("admin", Some(secret))
        .send()
        .await
        .expect("payout");
    assert_eq!(listed.status(), 404);
    let id = listed.headers()["x-request-id"].to_str().expect("request id").to_owned();
    assert_eq!(client.get(url("/no/such/path-value")).send().await.expect("unrouted").status(), 404);
    let _ = child.kill();
    let output = child.wait_with_output().expect("server output");
    let log = String::from_utf8_lossy(&output.stderr);
    for secret in [secret, "query-secret", "00000000-0000-0000-0000-000000000042", "path-value", "Basic "] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
    let lines: Vec<Value> = log.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let access: Vec<&Value> = lines.iter().filter(|line| line["target"] == "payledger::access").collect();
    let payout = access.iter().find(|line| line["span"]["id"] == id.as_str()).expect("the payout's access line");
    assert_eq!(payout["level"], "INFO");
    let fields = &payout["fields"];
    assert_eq!(
        (&fields["method"], &fields["route"], &fields["status"], &fields["client"], &payout["span"]["user"]),
        (&json!("GET"), &json!("/api/v1/payouts/{id}/"), &json!(404), &json!("127.0.0.1"), &json!("admin"))
    );
    assert!(fields["latency_us"].as_u64().is_some(), "{payout}");
    assert!(access.iter().any(|line| line["fields"]["route"] == "(unmatched)"), "{log}");
}

/// `/metrics` counts what waits for an operator, read from the database at each scrape, and every answer by
/// status. (A process of its own: the metrics recorder is global to a process, and other tests scrape theirs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_dead_jobs_open_discrepancies_and_answers_by_status() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let (mut child, address) = serve_binary(&db, &[]).await;
    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
    for payload in ["dead-1", "dead-2"] {
        sqlx::query(
            "INSERT INTO jobs (kind, payload, status, run_at, attempts, max_attempts, created_at, updated_at)
             VALUES ('payout', $1, 'dead', '2026-01-01T00:00:00Z', 8, 8, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        )
        .bind(payload)
        .execute(&pool)
        .await
        .expect("a dead job");
    }
    pool.close().await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(client.get(format!("http://{address}/nowhere")).send().await.expect("404").status(), 404);
    }
    let metrics = client.get(format!("http://{address}/metrics")).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    let _ = child.kill();
    let log = String::from_utf8_lossy(&child.wait_with_output().expect("server output").stderr).into_owned();
    // The text log, written to a pipe (as to a file or journald), has no terminal colours.
    assert!(log.contains("payledger::access") && !log.contains('\u{1b}'), "{log}");
    for line in [
        "payledger_jobs_dead 2",
        "payledger_statement_discrepancies_open 0",
        "payledger_http_responses_total{status=\"404\"} 3",
    ] {
        assert!(text.lines().any(|found| found == line), "{line} missing from:\n{text}");
    }
}

/// `payledger serve` as a process on a free port, its admin `admin` with a known password; returns once it is
/// ready.
async fn serve_binary(db: &TestDb, env: &[(&str, &str)]) -> (std::process::Child, std::net::SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = Command::new(env!("CARGO_BIN_EXE_payledger"));
    command
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_DATA_DIR", db.dir.path())
        .env("PAYLEDGER_BIND", address.to_string())
        .env("PAYLEDGER_DEMO_ORGANIZATIONS", "0")
        .env("PAYLEDGER_ADMIN_USERNAME", "admin")
        .env("PAYLEDGER_ADMIN_PASSWORD", "a-password-nobody-may-log")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start payledger serve");
    // Ready, not merely listening: the listener opens before the database is migrated.
    let ready = format!("http://{address}/api/health/ready/");
    for _ in 0..400 {
        if reqwest::get(&ready).await.is_ok_and(|response| response.status() == 200) {
            return (child, address);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("payledger serve exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    panic!("payledger serve did not start");
}
