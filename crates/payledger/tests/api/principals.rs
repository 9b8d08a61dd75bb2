//! `payledger user …` and the first admin, as an operator runs them: the real binary against a database.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{self, Backend, TestDb, TestServer, on_both_backends};

on_both_backends!(users_are_managed_from_the_cli_with_an_audit_trail, the_first_start_creates_one_admin);

/// Runs `payledger` with `input` on standard input; returns the exit code, stdout and stderr.
fn payledger(db: &TestDb, args: &[&str], input: &str, envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_payledger"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_DATA_DIR", db.dir.path())
        .env("PAYLEDGER_LOG", "warn")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run payledger");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("stdin");
    }
    let output = child.wait_with_output().expect("payledger output");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn users_are_managed_from_the_cli_with_an_audit_trail(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let (code, out, err) =
        payledger(&db, &["user", "create", "alice", "--role", "operator"], "a long enough password\n", &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = payledger(&db, &["user", "create", "alice"], "another long password\n", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("exists"), "{err}");
    let (code, _, err) = payledger(&db, &["user", "create", "bob"], "short\n", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("at least 12"), "{err}");
    let (code, _, err) =
        payledger(&db, &["user", "create", "carol", "--role", "root"], "a long enough password\n", &[]);
    assert_ne!(code, 0, "{err}");

    let (code, out, _) = payledger(&db, &["user", "list"], "", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("alice\toperator\tactive"), "{out}");
    assert!(!out.contains("a long enough password") && !out.contains("$argon2"), "no secrets listed: {out}");

    let store = db.store().await;
    let before = store.principal("alice").await.expect("read").expect("alice");
    assert!(before.password_hash.starts_with("$argon2id$"));
    assert!(payledger::auth::principals::password_matches("a long enough password", &before.password_hash));
    assert_eq!(payledger(&db, &["user", "passwd", "alice"], "a brand new password\n", &[]).0, 0);
    let after = store.principal("alice").await.expect("read").expect("alice");
    assert!(payledger::auth::principals::password_matches("a brand new password", &after.password_hash));
    assert_eq!(payledger(&db, &["user", "disable", "alice"], "", &[]).0, 0);
    assert_eq!(payledger(&db, &["user", "role", "alice", "admin"], "", &[]).0, 0);
    let alice = store.principal("alice").await.expect("read").expect("alice");
    assert_eq!((alice.active, alice.role.as_str()), (false, "admin"));
    assert_ne!(payledger(&db, &["user", "disable", "nobody"], "", &[]).0, 0);

    // The password never appears on the command line; every change is in the audit log.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE target = 'user:alice' AND actor = 'cli'").await,
        4,
        "create, passwd, disable, role"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE after LIKE '%password%' OR before LIKE '%argon2%'").await,
        0
    );
}

async fn the_first_start_creates_one_admin(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    // Configured: the named admin, with the given password.
    let mut settings = common::settings(&db);
    settings.admin = Some(("root-admin".into(), "configured admin password".into()));
    let server = TestServer::start(settings.clone()).await;
    server.stop().await;
    let store = db.store().await;
    let admin = store.principal("root-admin").await.expect("read").expect("admin created");
    assert_eq!((admin.role.as_str(), admin.password_generated), ("admin", false));
    assert!(payledger::auth::principals::password_matches("configured admin password", &admin.password_hash));
    // A second start changes nothing.
    let server = TestServer::start(settings).await;
    server.stop().await;
    assert_eq!(store.user_count().await.expect("count"), 1);
}

/// Without configuration the first start generates the admin's password and prints it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generated_admin_password_is_printed_once() {
    // It reserves a port for the server process and gives it 1.5 s to print the password.
    let _quiet = common::load::quiet().await;
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address").port();
    let run = || {
        let mut server = Command::new(env!("CARGO_BIN_EXE_payledger"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("PAYLEDGER_DATA_DIR", db.dir.path())
            .env("PAYLEDGER_BIND", format!("127.0.0.1:{port}"))
            .env("PAYLEDGER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
        let _ = server.wait();
        let mut err = String::new();
        if let Some(mut stderr) = server.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        err
    };
    let first = run();
    let password = first
        .lines()
        .skip_while(|line| !line.contains("generated password"))
        .map(str::trim)
        .find(|line| line.len() == 24)
        .unwrap_or_else(|| panic!("a generated password is printed: {first}"))
        .to_owned();
    let store = db.store().await;
    let admin = store.principal("admin").await.expect("read").expect("admin");
    assert!(admin.password_generated);
    assert!(payledger::auth::principals::password_matches(&password, &admin.password_hash));
    let second = run();
    assert!(!second.contains(&password), "printed only once");
}

mod tokens {
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use crate::common::{self, Backend, TestDb, TestServer};

    async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
        let answer = server.post(path, body.to_string(), None).await;
        (answer.status, answer.json)
    }

    /// Logging in gives a pair; a wrong password, an unknown user and a disabled user get the same 401.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn login_refresh_rotation_and_reuse_detection() {
        // It compares the time two logins take.
        let _quiet = common::load::quiet().await;
        let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
        let mut settings = common::settings(&db);
        settings.admin = Some(("alice".into(), "alice's long password".into()));
        settings.tokens.secret = Some("a test signing key that is long enough!".into());
        let server = TestServer::start(settings).await;

        let (status, pair) =
            post(&server, "/api/token/", json!({"username": "alice", "password": "alice's long password"})).await;
        assert_eq!(status, 200, "{pair}");
        let (access, refresh) = (pair["access"].as_str().expect("access"), pair["refresh"].as_str().expect("refresh"));
        assert_eq!(access.split('.').count(), 3, "a JWT");
        let keys = payledger::auth::tokens::TokenKeys::new(b"a test signing key that is long enough!").expect("keys");
        let claims = keys.verify_access(access, time::OffsetDateTime::now_utc()).expect("valid access token");
        assert_eq!((claims.name.as_str(), claims.role), ("alice", payledger::auth::tokens::Role::Admin));

        let started = Instant::now();
        let (wrong_status, wrong) =
            post(&server, "/api/token/", json!({"username": "alice", "password": "nope nope nope"})).await;
        let wrong_took = started.elapsed();
        let started = Instant::now();
        let (unknown_status, unknown) =
            post(&server, "/api/token/", json!({"username": "mallory", "password": "nope nope nope"})).await;
        let unknown_took = started.elapsed();
        assert_eq!((wrong_status, unknown_status), (401, 401));
        assert_eq!(wrong, unknown, "the same answer");
        // Both verify an argon2 hash; neither answers instantly.
        assert!(
            unknown_took >= wrong_took / 4 && unknown_took > Duration::from_millis(1),
            "{wrong_took:?} vs {unknown_took:?}"
        );

        // Rotation: a refresh token works once and gives a new pair.
        let (status, second) = post(&server, "/api/token/refresh/", json!({"refresh": refresh})).await;
        assert_eq!(status, 200, "{second}");
        let newer = second["refresh"].as_str().expect("refresh").to_owned();
        assert_ne!(newer, refresh);
        // Reuse of the first one revokes the whole login: the newer token stops working too.
        let (status, reused) = post(&server, "/api/token/refresh/", json!({"refresh": refresh})).await;
        assert_eq!(status, 401, "{reused}");
        assert!(reused["error"].as_str().is_some_and(|e| e.contains("reuse")), "{reused}");
        assert_eq!(post(&server, "/api/token/refresh/", json!({"refresh": newer})).await.0, 401);
        assert_eq!(post(&server, "/api/token/refresh/", json!({"refresh": "garbage"})).await.0, 401);
        assert_eq!(post(&server, "/api/token/", json!({"username": "alice"})).await.0, 400);
        server.stop().await;

        // A disabled user cannot log in (another admin stays: the last one cannot be disabled).
        let store = db.store().await;
        payledger::auth::principals::create(&store, "test", "bob", "bob's long password", "admin", false)
            .await
            .expect("bob");
        payledger::auth::principals::set_active(&store, "test", "alice", false).await.expect("disable");
        let mut settings = common::settings(&db);
        settings.admin = None;
        settings.tokens.secret = Some("a test signing key that is long enough!".into());
        let server = TestServer::start(settings).await;
        let (status, body) =
            post(&server, "/api/token/", json!({"username": "alice", "password": "alice's long password"})).await;
        assert_eq!((status, body), (401, unknown));
        server.stop().await;
    }
}

/// Password guessing is rate-limited per client address: 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_requests_are_rate_limited_per_address() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.tokens.login_attempts_per_minute = 3;
    settings.admin = None;
    let server = TestServer::start(settings).await;
    let body = serde_json::json!({"username": "admin", "password": "guess guess guess"}).to_string();
    for _ in 0..3 {
        assert_eq!(server.post("/api/token/", body.clone(), None).await.status, 401);
    }
    let response = server
        .client
        .post(server.url("/api/token/"))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let answer: serde_json::Value = response.json().await.expect("json");
    assert_eq!(answer["code"], "rate_limited");
    // Basic credentials verify the same passwords: they are no way around the limit.
    let basic = server
        .anonymous
        .get(server.url("/api/v1/payouts/"))
        .basic_auth("admin", Some("guess guess guess"))
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), 429);
    server.stop().await;
}
