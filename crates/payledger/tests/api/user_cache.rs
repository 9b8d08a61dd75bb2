//! The per-process cache of the users requests authenticate as (`store/principal_cache.rs`), as clients see
//! it: a change of a user applies to the next request on the instance that made it, also while requests race
//! it; other PostgreSQL instances hear of it at commit; a change made by another process applies within the
//! cache's bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, Backend, TestDb, TestServer};
use serde_json::json;

const PASSWORD: &str = "a long enough password";
const JWT_SECRET: &str = "user-cache-test-jwt-secret-long-enough";
/// A cache bound no test waits out: only forgetting the entry (locally, or on a notification) can make a change
/// apply within these tests.
const LONG_CACHE: Duration = Duration::from_secs(120);

fn settings(db: &TestDb, user_cache: Duration) -> payledger::config::Settings {
    let mut settings = common::settings(db);
    settings.tokens.secret = Some(JWT_SECRET.to_owned());
    settings.tokens.user_cache = user_cache;
    settings
}

/// Creates an admin `name` through the API and returns a client with their access token.
async fn admin_client(server: &TestServer, name: &str) -> reqwest::Client {
    let user = json!({"username": name, "password": PASSWORD, "role": "admin"});
    let response = server.client.post(server.url("/api/v1/users/")).json(&user).send().await.expect("create");
    assert_eq!(response.status(), 201, "create {name}");
    server.client_with_token(&server.login(name, PASSWORD).await)
}

async fn jobs_status(client: &reqwest::Client, server: &TestServer) -> u16 {
    client.get(server.url("/api/v1/jobs/")).send().await.expect("jobs").status().as_u16()
}

/// Calls with `client` until `server` answers `expected`, for at most `within`; returns how long that took.
async fn wait_for_status(
    client: &reqwest::Client,
    server: &TestServer,
    expected: u16,
    within: Duration,
    what: &str,
) -> Duration {
    let start = Instant::now();
    while jobs_status(client, server).await != expected {
        assert!(start.elapsed() < within, "{what}: still not {expected} after {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

async fn patch_user(server: &TestServer, name: &str, change: serde_json::Value) {
    let response = server.client.patch(server.url(&format!("/api/v1/users/{name}/"))).json(&change).send().await;
    assert_eq!(response.expect("patch").status(), 200, "patch {name} with {change}");
}

/// While eight clients keep calling with a user's token, the user is demoted, then disabled: every request
/// sent after the change was answered is judged by the new row (403, then 401), although the cache would keep
/// the old one for minutes. A request racing the change may see either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_applies_to_the_next_request_on_its_instance_while_requests_race_it() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = Arc::new(TestServer::start(settings(&db, LONG_CACHE)).await);
        let adm2 = admin_client(&server, "adm2").await;
        assert_eq!(jobs_status(&adm2, &server).await, 200);
        for (change, expected) in [(json!({"role": "viewer"}), 403), (json!({"active": false}), 401)] {
            let changed = Arc::new(AtomicBool::new(false));
            let checked = Arc::new(AtomicUsize::new(0));
            let callers: Vec<_> = (0..8)
                .map(|_| {
                    let (server, adm2, changed, checked) =
                        (server.clone(), adm2.clone(), changed.clone(), checked.clone());
                    tokio::spawn(async move {
                        for _ in 0..400 {
                            let after_change = changed.load(Ordering::SeqCst);
                            let status = jobs_status(&adm2, &server).await;
                            if after_change {
                                assert_eq!(status, expected, "{backend:?}: a request sent after the change");
                                if checked.fetch_add(1, Ordering::SeqCst) >= 200 {
                                    return;
                                }
                            }
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(50)).await;
            patch_user(&server, "adm2", change.clone()).await;
            changed.store(true, Ordering::SeqCst);
            for caller in callers {
                caller.await.expect("caller");
            }
            assert!(checked.load(Ordering::SeqCst) >= 100, "{backend:?}: {change}: requests after the change");
        }
        Arc::into_inner(server).expect("the only handle").stop().await;
    }
}

/// A revoked login (its refresh token used twice) stops the user's access tokens on the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_login_applies_to_the_next_request() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(settings(&db, LONG_CACHE)).await;
    let _ = admin_client(&server, "adm2").await;
    let pair: serde_json::Value = server
        .anonymous
        .post(server.url("/api/token/"))
        .json(&json!({"username": "adm2", "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("pair");
    let access = server.client_with_token(pair["access"].as_str().expect("access"));
    assert_eq!(jobs_status(&access, &server).await, 200);
    for expected in [200, 401] {
        let refresh = json!({"refresh": pair["refresh"]});
        let response = server.anonymous.post(server.url("/api/token/refresh/")).json(&refresh).send().await;
        assert_eq!(response.expect("refresh").status(), expected, "the second use is a reuse");
    }
    assert_eq!(jobs_status(&access, &server).await, 401, "the reused login's access token");
    server.stop().await;
}

/// Two instances on one database with long caches, an admin `adm2` created through the first, and a client
/// with adm2's token, which the second instance has cached once this returns.
async fn two_instances(db: &TestDb) -> (TestServer, TestServer, reqwest::Client) {
    let first = TestServer::start(settings(db, LONG_CACHE)).await;
    let second = TestServer::start(settings(db, LONG_CACHE)).await;
    let adm2 = admin_client(&first, "adm2").await;
    assert_eq!(jobs_status(&adm2, &second).await, 200, "the second instance has the user cached now");
    (first, second, adm2)
}

/// Two instances on one PostgreSQL database: a user disabled through one is refused by the other as soon as
/// the notification arrives, although the other's cache would keep the user for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_instances_hear_a_change_at_commit() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let (first, second, adm2) = two_instances(&db).await;
    for (change, expected) in [(json!({"role": "viewer"}), 403), (json!({"active": false}), 401)] {
        patch_user(&first, "adm2", change.clone()).await;
        wait_for_status(&adm2, &second, expected, Duration::from_secs(10), &format!("{change} on the other")).await;
    }
    second.stop().await;
    first.stop().await;
}

/// The listening connection is cut (PostgreSQL terminates it, as a restart or a failover would): the
/// instances listen again on their own, and a change made afterwards still reaches the other instance at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listening_resumes_after_its_connection_is_cut() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let (first, second, adm2) = two_instances(&db).await;
    const LISTENING: &str = "SELECT COUNT(*) FROM pg_stat_activity
                             WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    assert_eq!(db.scalar(LISTENING).await, 2, "one listening connection per instance");
    let cut = db
        .scalar(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .await;
    assert_eq!(cut, 2);
    let start = Instant::now();
    while db.scalar(LISTENING).await < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "the instances did not listen again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    patch_user(&first, "adm2", json!({"active": false})).await;
    wait_for_status(&adm2, &second, 401, Duration::from_secs(10), "disabled, on the other instance").await;
    second.stop().await;
    first.stop().await;
}

/// A change made by another process (the CLI, here a store of the test's own) reaches no cache directly: the
/// server refuses the disabled user once its cached row is older than the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_made_elsewhere_applies_within_the_bound() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let bound = Duration::from_millis(300);
    let server = TestServer::start(settings(&db, bound)).await;
    let adm2 = admin_client(&server, "adm2").await;
    assert_eq!(jobs_status(&adm2, &server).await, 200);
    let store = db.store().await;
    payledger::auth::principals::set_active(&store, "cli", "adm2", false).await.expect("disable");
    wait_for_status(&adm2, &server, 401, bound * 10, "disabled by another process").await;
    server.stop().await;
}
