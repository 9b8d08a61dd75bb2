//! Who may call what, as clients see it: the role matrix cell by cell (every endpoint × anonymous, viewer,
//! operator, admin × both profiles), token expiry and tampering, Basic credentials that stop working the
//! moment a user is disabled, idempotency keys scoped by user, the audit log, and production's start-up
//! refusals.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{self, ADMIN, Backend, TestDb, TestServer};
use payledger::config::{Profile, Settings};
use serde_json::{Value, json};

const JWT_SECRET: &str = "access-test-jwt-secret-that-is-long-enough";
const PASSWORD: &str = "a long enough password";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Viewer,
    Operator,
    Admin,
}

/// What a route asks, written out here independently of the server's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    /// A signature, checked by the handler: credentials change nothing.
    Signature,
    /// This role or higher; `true` if anonymous callers pass in development.
    Role(Who, bool),
}

/// Every operation of the API: method, path as in the spec, a concrete path to call, and what it needs.
const MATRIX: &[(&str, &str, &str, Needs)] = &[
    ("GET", "/api/health/", "/api/health/", Needs::Nothing),
    ("GET", "/api/health/live/", "/api/health/live/", Needs::Nothing),
    ("GET", "/api/health/ready/", "/api/health/ready/", Needs::Nothing),
    ("POST", "/api/token/", "/api/token/", Needs::Nothing),
    ("POST", "/api/token/refresh/", "/api/token/refresh/", Needs::Nothing),
    ("POST", "/api/webhook/bank/", "/api/webhook/bank/", Needs::Signature),
    ("POST", "/api/v1/gateway/events/", "/api/v1/gateway/events/", Needs::Signature),
    (
        "GET",
        "/api/organizations/{inn}/balance/",
        "/api/organizations/7707083893/balance/",
        Needs::Role(Who::Viewer, true),
    ),
    (
        "GET",
        "/api/organizations/{inn}/balance-log/",
        "/api/organizations/7707083893/balance-log/",
        Needs::Role(Who::Viewer, true),
    ),
    ("GET", "/api/balances/", "/api/balances/?user_id=1", Needs::Role(Who::Viewer, true)),
    ("GET", "/api/users/{user_id}/transactions/", "/api/users/1/transactions/", Needs::Role(Who::Viewer, true)),
    ("GET", "/api/reports/revenue/", "/api/reports/revenue/?year=2026&month=1", Needs::Role(Who::Viewer, false)),
    ("POST", "/api/add_funds/", "/api/add_funds/", Needs::Role(Who::Operator, false)),
    ("POST", "/api/v1/batch/", "/api/v1/batch/", Needs::Role(Who::Operator, false)),
    ("POST", "/api/withdraw_funds/", "/api/withdraw_funds/", Needs::Role(Who::Operator, false)),
    ("POST", "/api/reserve_funds/", "/api/reserve_funds/", Needs::Role(Who::Operator, false)),
    ("POST", "/api/deduct_funds/", "/api/deduct_funds/", Needs::Role(Who::Operator, false)),
    ("POST", "/api/unreserve_funds/", "/api/unreserve_funds/", Needs::Role(Who::Operator, false)),
    ("POST", "/api/transfer_funds/", "/api/transfer_funds/", Needs::Role(Who::Operator, false)),
    ("GET", "/api/v1/payouts/", "/api/v1/payouts/", Needs::Role(Who::Viewer, false)),
    ("POST", "/api/v1/payouts/", "/api/v1/payouts/", Needs::Role(Who::Operator, false)),
    (
        "GET",
        "/api/v1/payouts/{id}/",
        "/api/v1/payouts/0193a2b4-0000-7000-8000-000000000000/",
        Needs::Role(Who::Viewer, false),
    ),
    (
        "PATCH",
        "/api/v1/payouts/{id}/",
        "/api/v1/payouts/0193a2b4-0000-7000-8000-000000000000/",
        Needs::Role(Who::Operator, false),
    ),
    (
        "DELETE",
        "/api/v1/payouts/{id}/",
        "/api/v1/payouts/0193a2b4-0000-7000-8000-000000000000/",
        Needs::Role(Who::Admin, false),
    ),
    ("GET", "/api/payouts/", "/api/payouts/", Needs::Role(Who::Viewer, false)),
    ("POST", "/api/payouts/", "/api/payouts/", Needs::Role(Who::Operator, false)),
    (
        "DELETE",
        "/api/payouts/{id}/",
        "/api/payouts/0193a2b4-0000-7000-8000-000000000000/",
        Needs::Role(Who::Admin, false),
    ),
    ("GET", "/api/v1/jobs/", "/api/v1/jobs/", Needs::Role(Who::Admin, false)),
    ("POST", "/api/v1/jobs/{id}/retry/", "/api/v1/jobs/999999/retry/", Needs::Role(Who::Admin, false)),
    ("GET", "/api/v1/users/", "/api/v1/users/", Needs::Role(Who::Admin, false)),
    ("POST", "/api/v1/users/", "/api/v1/users/", Needs::Role(Who::Admin, false)),
    ("PATCH", "/api/v1/users/{username}/", "/api/v1/users/nobody/", Needs::Role(Who::Admin, false)),
    ("GET", "/api/v1/audit/", "/api/v1/audit/", Needs::Role(Who::Admin, false)),
    ("GET", "/api/v1/webhook-endpoints/", "/api/v1/webhook-endpoints/", Needs::Role(Who::Admin, false)),
    ("POST", "/api/v1/webhook-endpoints/", "/api/v1/webhook-endpoints/", Needs::Role(Who::Admin, false)),
    (
        "GET",
        "/api/v1/webhook-endpoints/{id}/",
        "/api/v1/webhook-endpoints/ep_0193a2b4c0de70008000000000000000/",
        Needs::Role(Who::Admin, false),
    ),
    (
        "PATCH",
        "/api/v1/webhook-endpoints/{id}/",
        "/api/v1/webhook-endpoints/ep_0193a2b4c0de70008000000000000000/",
        Needs::Role(Who::Admin, false),
    ),
    (
        "DELETE",
        "/api/v1/webhook-endpoints/{id}/",
        "/api/v1/webhook-endpoints/ep_0193a2b4c0de70008000000000000000/",
        Needs::Role(Who::Admin, false),
    ),
    (
        "POST",
        "/api/v1/webhook-endpoints/{id}/rotate-secret/",
        "/api/v1/webhook-endpoints/ep_0193a2b4c0de70008000000000000000/rotate-secret/",
        Needs::Role(Who::Admin, false),
    ),
    (
        "POST",
        "/api/v1/webhook-endpoints/{id}/test/",
        "/api/v1/webhook-endpoints/ep_0193a2b4c0de70008000000000000000/test/",
        Needs::Role(Who::Admin, false),
    ),
    (
        "GET",
        "/api/v1/webhook-endpoints/{id}/deliveries/",
        "/api/v1/webhook-endpoints/ep_0193a2b4c0de70008000000000000000/deliveries/",
        Needs::Role(Who::Admin, false),
    ),
    (
        "GET",
        "/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/attempts/",
        "/api/v1/webhook-endpoints/ep_0193a2b4c0de70008000000000000000/deliveries/1/attempts/",
        Needs::Role(Who::Admin, false),
    ),
    (
        "POST",
        "/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/replay/",
        "/api/v1/webhook-endpoints/ep_0193a2b4c0de70008000000000000000/deliveries/1/replay/",
        Needs::Role(Who::Admin, false),
    ),
    (
        "POST",
        "/api/v1/webhook-endpoints/{id}/recover/",
        "/api/v1/webhook-endpoints/ep_0193a2b4c0de70008000000000000000/recover/",
        Needs::Role(Who::Admin, false),
    ),
    ("POST", "/api/v1/statements/", "/api/v1/statements/", Needs::Role(Who::Operator, false)),
    ("GET", "/api/v1/statements/", "/api/v1/statements/", Needs::Role(Who::Viewer, false)),
    ("GET", "/api/v1/statements/{id}/", "/api/v1/statements/999999/", Needs::Role(Who::Viewer, false)),
    ("POST", "/api/v1/statements/{id}/apply/", "/api/v1/statements/999999/apply/", Needs::Role(Who::Operator, false)),
    ("GET", "/api/v1/reconciliation/", "/api/v1/reconciliation/", Needs::Role(Who::Viewer, false)),
    (
        "POST",
        "/api/v1/reconciliation/discrepancies/{id}/apply/",
        "/api/v1/reconciliation/discrepancies/999999/apply/",
        Needs::Role(Who::Operator, false),
    ),
    (
        "POST",
        "/api/v1/reconciliation/discrepancies/{id}/accept/",
        "/api/v1/reconciliation/discrepancies/999999/accept/",
        Needs::Role(Who::Operator, false),
    ),
    ("GET", "/api/schema/", "/api/schema/", Needs::Role(Who::Viewer, true)),
    ("GET", "/api/schema/redoc/", "/api/schema/redoc/", Needs::Role(Who::Viewer, true)),
    ("GET", "/metrics", "/metrics", Needs::Nothing),
];

fn rank(who: Who) -> u8 {
    match who {
        Who::Anonymous => 0,
        Who::Viewer => 1,
        Who::Operator => 2,
        Who::Admin => 3,
    }
}

/// The answer a caller must get at the gate: `None` when it passes (any status but 401 and 403).
fn expected(needs: Needs, who: Who, profile: Profile) -> Option<u16> {
    match needs {
        Needs::Nothing | Needs::Signature => None,
        Needs::Role(_, true) if who == Who::Anonymous && profile == Profile::Development => None,
        Needs::Role(_, _) if who == Who::Anonymous => Some(401),
        Needs::Role(least, _) if rank(who) < rank(least) => Some(403),
        Needs::Role(..) => None,
    }
}

fn production_settings(db: &TestDb) -> Settings {
    let mut settings = common::settings(db);
    settings.profile = Profile::Production;
    settings.webhook_guard.secrets = vec!["access-test-webhook-secret".into()];
    settings.tokens.secret = Some(JWT_SECRET.into());
    settings.payouts.card_keys = vec!["00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into()];
    settings.payouts.workers = 0;
    settings.payouts.gateway = payledger::gateway::GatewayConfig::Http {
        url: "http://127.0.0.1:9/pay".into(),
        secret: "access-test-gateway-secret-of-32-bytes-or-more".into(),
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
    };
    settings
}

/// A server with a viewer and an operator besides the admin, and a client for each caller.
struct Callers {
    server: TestServer,
    clients: Vec<(Who, reqwest::Client)>,
}

async fn callers(settings: Settings, db: &TestDb) -> Callers {
    let server = TestServer::start(settings).await;
    let store = db.store().await;
    for (name, role) in [("vera", "viewer"), ("oleg", "operator")] {
        payledger::auth::principals::create(&store, "test", name, PASSWORD, role, false).await.expect("create user");
    }
    let viewer = server.client_with_token(&server.login("vera", PASSWORD).await);
    let operator = server.client_with_token(&server.login("oleg", PASSWORD).await);
    let clients = vec![
        (Who::Anonymous, server.anonymous.clone()),
        (Who::Viewer, viewer),
        (Who::Operator, operator),
        (Who::Admin, server.client.clone()),
    ];
    Callers { server, clients }
}

async fn call(client: &reqwest::Client, server: &TestServer, method: &str, path: &str) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method.clone(), server.url(path));
    if method == reqwest::Method::POST || method == reqwest::Method::PATCH {
        request = request.header("Content-Type", "application/json").body("{}");
    }
    request.send().await.expect("request").status().as_u16()
}

/// Every endpoint × every caller × both profiles. Each cell is checked against the table above, and the
/// table must name every operation of the OpenAPI spec, so a new endpoint cannot go untested.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_role_matrix_holds_cell_by_cell() {
    for profile in [Profile::Development, Profile::Production] {
        let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
        let settings = match profile {
            Profile::Development => common::settings(&db),
            Profile::Production => production_settings(&db),
        };
        let Callers { server, clients } = callers(settings, &db).await;

        let spec: Value =
            server.client.get(server.url("/api/schema/")).send().await.expect("spec").json().await.expect("json");
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                let method = method.to_uppercase();
                assert!(
                    MATRIX.iter().any(|(m, p, _, _)| *m == method && p == path),
                    "{method} {path} is in the spec but not in the role matrix test"
                );
                let security = &item[method.to_lowercase()]["security"];
                assert!(security.is_array(), "{method} {path} documents its security: {security}");
            }
        }

        let mut failures = Vec::new();
        for &(method, _, path, needs) in MATRIX {
            let mut statuses = Vec::new();
            for (who, client) in &clients {
                let status = call(client, &server, method, path).await;
                statuses.push(status);
                let wanted = expected(needs, *who, profile);
                let fine = match (wanted, needs) {
                    // The handler checks the signature: unsigned requests get its 401 whoever sends them.
                    (_, Needs::Signature) => true,
                    (Some(refusal), _) => status == refusal,
                    (None, _) => status != 401 && status != 403,
                };
                if !fine {
                    failures.push(format!("{profile:?} {who:?} {method} {path}: got {status}, wanted {wanted:?}"));
                }
            }
            if needs == Needs::Signature {
                assert!(statuses.windows(2).all(|pair| pair[0] == pair[1]), "{method} {path}: {statuses:?}");
            }
        }
        assert!(failures.is_empty(), "role matrix failures:\n{}", failures.join("\n"));
        server.stop().await;
    }
}

/// An anonymous refusal names the schemes; a role refusal names the role needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_say_what_is_missing() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let Callers { server, clients } = callers(common::settings(&db), &db).await;
    let response = server.anonymous.get(server.url("/api/v1/payouts/")).send().await.expect("request");
    assert_eq!(response.status(), 401);
    let challenges: Vec<_> =
        response.headers().get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(challenges.iter().any(|c| c.starts_with("Bearer")) && challenges.iter().any(|c| c.starts_with("Basic")));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "unauthorized");

    let viewer = &clients[1].1;
    let response =
        viewer.post(server.url("/api/add_funds/")).json(&json!({"user_id": 1, "amount": "1.00"})).send().await;
    let response = response.expect("request");
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "forbidden");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("operator")), "{body}");
    // Refused means not applied.
    assert_eq!(server.user_balance(1).await, None);
    server.stop().await;
}

/// Access tokens: an expired one, one signed with another key, one tampered with, and garbage are all 401;
/// a fresh one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_forged_and_tampered_tokens_are_refused() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.tokens.secret = Some(JWT_SECRET.into());
    let server = TestServer::start(settings).await;
    let keys = payledger::auth::tokens::TokenKeys::new(JWT_SECRET.as_bytes()).expect("keys");
    let role = payledger::auth::tokens::Role::Admin;
    let now = time::OffsetDateTime::now_utc();
    let (expired, _) =
        keys.issue_access(1, ADMIN.0, role, now - time::Duration::hours(1), time::Duration::minutes(5)).expect("token");
    let (fresh, _) = keys.issue_access(1, ADMIN.0, role, now, time::Duration::minutes(5)).expect("token");
    let other = payledger::auth::tokens::TokenKeys::new(b"another key, also long enough for HS256").expect("keys");
    let (forged, _) = other.issue_access(1, ADMIN.0, role, now, time::Duration::minutes(5)).expect("token");
    let mut parts: Vec<String> = fresh.split('.').map(str::to_owned).collect();
    // The payload of a viewer's token under the admin's signature.
    let (viewer, _) = keys
        .issue_access(1, ADMIN.0, payledger::auth::tokens::Role::Viewer, now, time::Duration::minutes(5))
        .expect("token");
    parts[1] = viewer.split('.').nth(1).expect("payload").to_owned();
    let tampered = parts.join(".");

    let status = |token: String| {
        let client = server.client_with_token(&token);
        let url = server.url("/api/v1/jobs/");
        async move {
            let response = client.get(url).send().await.expect("request");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["error"].as_str().unwrap_or_default().to_owned())
        }
    };
    let (code, message) = status(expired).await;
    assert_eq!(code, 401);
    assert!(message.contains("expired"), "{message}");
    assert_eq!(status(forged).await.0, 401);
    assert_eq!(status(tampered).await.0, 401);
    assert_eq!(status("not.a.jwt".into()).await.0, 401);
    assert_eq!(status(fresh).await.0, 200);
    server.stop().await;
}

/// Basic credentials work, and stop working at once when the password changes or the user is disabled
/// (the server remembers verified credentials only while the stored hash is the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn basic_credentials_follow_the_user_row() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let Callers { server, .. } = callers(common::settings(&db), &db).await;
    let get = |username: &'static str, password: &'static str| {
        let request = server.anonymous.get(server.url("/api/v1/payouts/")).basic_auth(username, Some(password));
        async move { request.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(get("vera", PASSWORD).await, 200);
    assert_eq!(get("vera", PASSWORD).await, 200, "the remembered verification");
    assert_eq!(get("vera", "a wrong password!!").await, 401);
    assert_eq!(get("nobody", PASSWORD).await, 401);
    // The admin changes vera's password through the API: the old one stops working on the next request.
    let response = server
        .client
        .patch(server.url("/api/v1/users/vera/"))
        .json(&json!({"password": "vera's brand new password"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 200);
    assert_eq!(get("vera", PASSWORD).await, 401);
    assert_eq!(get("vera", "vera's brand new password").await, 200);
    let response = server.client.patch(server.url("/api/v1/users/vera/")).json(&json!({"active": false})).send().await;
    assert_eq!(response.expect("patch").status(), 200);
    assert_eq!(get("vera", "vera's brand new password").await, 401, "disabled");
    server.stop().await;
}

/// Two users may use the same Idempotency-Key without meeting: each gets its own request applied, and each
/// replay answers its own first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_keys_are_scoped_by_user() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let Callers { server, clients } = callers(common::settings(&db), &db).await;
    let operator = &clients[2].1;
    let admin = &clients[3].1;
    let deposit = |client: &reqwest::Client, user: i64| {
        client
            .post(server.url("/api/add_funds/"))
            .header("Idempotency-Key", "shared-key")
            .json(&json!({"user_id": user, "amount": "10.00"}))
            .send()
    };
    assert_eq!(deposit(operator, 1).await.expect("request").status(), 201);
    assert_eq!(deposit(admin, 2).await.expect("request").status(), 201, "another user's key is not reused");
    let replay = deposit(operator, 1).await.expect("request");
    assert_eq!(replay.status(), 201);
    assert!(replay.headers().get("idempotent-replayed").is_some());
    assert_eq!(deposit(operator, 2).await.expect("request").status(), 409, "the same user's key, another request");
    assert_eq!(server.user_balance(1).await, Some(("10.00".into(), "0.00".into())));
    assert_eq!(server.user_balance(2).await, Some(("10.00".into(), "0.00".into())));
    server.stop().await;
    db.assert_verified().await;
}

/// Privileged actions through the API land in the audit log with the user, the action, the target, before
/// and after; admins read it, others may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn privileged_actions_are_audited_and_admins_read_them() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else { continue };
        let mut settings = common::settings(&db);
        // No workers: the payout stays pending for the admin to cancel.
        settings.payouts.workers = 0;
        let Callers { server, clients } = callers(settings, &db).await;
        let operator = &clients[2].1;
        let response =
            operator.post(server.url("/api/add_funds/")).json(&json!({"user_id": 7, "amount": "100.00"})).send();
        assert_eq!(response.await.expect("deposit").status(), 201);
        let refused =
            operator.post(server.url("/api/withdraw_funds/")).json(&json!({"user_id": 7, "amount": "500.00"}));
        assert_eq!(refused.send().await.expect("withdraw").status(), 409, "refused: nothing to audit");
        let payout = json!({"amount": "25.00", "currency": "RUB", "source": {"user_id": 7},
            "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "Audit Test"}});
        let created: Value = operator
            .post(server.url("/api/v1/payouts/"))
            .json(&payout)
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        let id = created["id"].as_str().expect("id").to_owned();
        let cancelled =
            server.client.delete(server.url(&format!("/api/v1/payouts/{id}/"))).send().await.expect("delete");
        assert_eq!(cancelled.status(), 204);
        let response = server
            .client
            .post(server.url("/api/v1/users/"))
            .json(&json!({"username": "newbie", "password": PASSWORD, "role": "operator"}))
            .send()
            .await
            .expect("create user");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["role"], "operator");
        assert!(body.get("password_hash").is_none() && body.get("password").is_none());

        let viewer = &clients[1].1;
        assert_eq!(viewer.get(server.url("/api/v1/audit/")).send().await.expect("audit").status(), 403);
        let page: Value = server
            .client
            .get(server.url("/api/v1/audit/?limit=500"))
            .send()
            .await
            .expect("audit")
            .json()
            .await
            .expect("json");
        let rows = page["results"].as_array().expect("results");
        let find = |action: &str| rows.iter().find(|row| row["action"] == action).cloned();
        let deposit = find("balance.deposit").expect("the deposit is audited");
        assert_eq!(deposit["actor"], "oleg");
        assert_eq!(deposit["target"], "balance-user:7");
        assert_eq!(deposit["after"]["request"]["amount"], "100.00");
        assert!(find("balance.withdraw").is_none(), "a refused withdrawal changed nothing");
        let create = find("payout.create").expect("payout creation audited");
        assert_eq!(
            (create["actor"].as_str(), create["target"].as_str()),
            (Some("oleg"), Some(format!("payout:{id}").as_str()))
        );
        assert_eq!(create["after"]["status"], "pending");
        let delete = find("payout.delete").expect("the cancellation is audited");
        assert_eq!(delete["actor"], ADMIN.0);
        assert_eq!(delete["before"]["status"], "pending");
        assert_eq!(delete["after"]["status"], "cancelled");
        let user = find("user.create").expect("user creation audited");
        assert_eq!((user["actor"].as_str(), user["target"].as_str()), (Some(ADMIN.0), Some("user:newbie")));
        let text = page.to_string();
        assert!(!text.contains("4111111111111111") && !text.contains(PASSWORD), "no secrets in the audit log");
        // Filters and paging.
        let only: Value = server
            .client
            .get(server.url("/api/v1/audit/?actor=oleg&limit=1"))
            .send()
            .await
            .expect("audit")
            .json()
            .await
            .expect("json");
        assert_eq!(only["results"].as_array().map(Vec::len), Some(1));
        assert_eq!(only["results"][0]["actor"], "oleg");
        let older = only["next_before"].as_i64().expect("another page");
        let next: Value = server
            .client
            .get(server.url(&format!("/api/v1/audit/?actor=oleg&before={older}")))
            .send()
            .await
            .expect("audit")
            .json()
            .await
            .expect("json");
        assert!(next["results"].as_array().is_some_and(|rows| rows.iter().all(|row| row["id"].as_i64() < Some(older))));
        server.stop().await;
        db.assert_verified().await;
    }
}

/// The last active admin can be neither demoted nor disabled through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_admin_stays() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let path = format!("/api/v1/users/{}/", ADMIN.0);
    for change in [json!({"role": "viewer"}), json!({"active": false})] {
        let response = server.client.patch(server.url(&path)).json(&change).send().await.expect("patch");
        assert_eq!(response.status(), 409);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "last_admin");
    }
    let bad = server.client.patch(server.url(&path)).json(&json!({"role": "root", "password": "short"})).send();
    let body: Value = bad.await.expect("patch").json().await.expect("json");
    assert_eq!(body["code"], "invalid_data");
    assert!(body["details"]["role"].is_string() && body["details"]["password"].is_string(), "{body}");
    server.stop().await;
}

/// Runs `payledger --profile production` with only `envs` set and returns its exit code and stderr.
fn start_production(db: &TestDb, envs: &[(&str, &str)], seconds: u64) -> (Option<i32>, String) {
    let log = db.dir.path().join(format!("production-{}.log", uuid::Uuid::new_v4()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_payledger"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PAYLEDGER_") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args(["serve", "--profile", "production"])
        .env("PAYLEDGER_DATA_DIR", db.dir.path())
        .env("PAYLEDGER_BIND", "127.0.0.1:0")
        .env("PAYLEDGER_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start payledger");
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

/// Production refuses to start, naming every missing or weak setting; with all of them it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn production_refuses_to_start_without_its_settings() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let (code, stderr) = start_production(&db, &[], 30);
    assert_eq!(code, Some(1), "{stderr}");
    for named in [
        "PAYLEDGER_WEBHOOK_SECRET",
        "PAYLEDGER_JWT_SECRET",
        "DATABASE_URL",
        "PAYLEDGER_ADMIN_USERNAME",
        "PAYLEDGER_CARD_KEYS",
        "PAYLEDGER_GATEWAY",
    ] {
        assert!(stderr.contains(named), "{named} is named:\n{stderr}");
    }

    let good: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("PAYLEDGER_WEBHOOK_SECRET", "production-webhook-secret"),
        ("PAYLEDGER_JWT_SECRET", JWT_SECRET),
        ("PAYLEDGER_ADMIN_USERNAME", "root"),
        ("PAYLEDGER_ADMIN_PASSWORD", "a strong production password"),
        ("PAYLEDGER_CARD_KEYS", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
        ("PAYLEDGER_GATEWAY", "http"),
        ("PAYLEDGER_GATEWAY_URL", "http://127.0.0.1:9/pay"),
        ("PAYLEDGER_GATEWAY_SECRET", "production-gateway-secret-at-least-32-bytes"),
        ("PAYLEDGER_WORKERS", "0"),
    ];
    let with = |changes: &[(&'static str, &'static str)]| {
        let mut envs = good.clone();
        for (key, value) in changes {
            envs.retain(|(k, _)| k != key);
            envs.push((key, value));
        }
        envs
    };
    // A weak JWT key and a default admin password are named.
    let (code, stderr) = start_production(
        &db,
        &with(&[("PAYLEDGER_JWT_SECRET", "short"), ("PAYLEDGER_ADMIN_PASSWORD", "password1234")]),
        30,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("PAYLEDGER_JWT_SECRET is 5 bytes"), "{stderr}");
    assert!(stderr.contains("PAYLEDGER_ADMIN_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("DATABASE_URL"), "only what is wrong is named:\n{stderr}");

    // Everything set: it starts (and is still running when the test stops it).
    let (code, stderr) = start_production(&db, &good, 3);
    assert_eq!(code, None, "it runs:\n{stderr}");
    assert!(!stderr.contains("DEVELOPMENT"), "{stderr}");

    // A user still on a generated password keeps production from starting.
    let store = db.store().await;
    payledger::auth::principals::create(&store, "test", "temp", "generated-password-xyz", "operator", true)
        .await
        .expect("user");
    let (code, stderr) = start_production(&db, &good, 30);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("`temp` still has the password payledger generated"), "{stderr}");
}

/// The development profile says what it relaxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn development_prints_what_it_relaxes() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let log = db.dir.path().join("dev.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_payledger"))
        .args(["serve"])
        .env_remove("PAYLEDGER_WEBHOOK_SECRET")
        .env_remove("PAYLEDGER_PROFILE")
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_DATA_DIR", db.dir.path())
        .env("PAYLEDGER_BIND", "127.0.0.1:0")
        .env("PAYLEDGER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start payledger");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Use --profile production") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("DEVELOPMENT profile"), "{text}");
    assert!(text.contains("unsigned bank webhooks are accepted"), "{text}");
    assert!(text.contains("anonymous reads of balances"), "{text}");
}

/// The same refresh token sent twenty times at once: at most one request gets a new pair, the others are
/// refused as reuse, and the reuse revokes the login: no refresh or access token of it works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_one_token_give_one_pair_and_revoke_the_login() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else { continue };
        let mut settings = common::settings(&db);
        settings.tokens.login_attempts_per_minute = 1000;
        let server = TestServer::start(settings).await;
        let pair: Value = server
            .anonymous
            .post(server.url("/api/token/"))
            .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        let refresh = pair["refresh"].as_str().expect("refresh").to_owned();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (client, url, refresh) = (server.anonymous.clone(), server.url("/api/token/refresh/"), refresh.clone());
            tasks.spawn(async move {
                let response = client.post(url).json(&json!({"refresh": refresh})).send().await.expect("refresh");
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap_or(Value::Null))
            });
        }
        let answers = tasks.join_all().await;
        assert!(answers.iter().all(|(status, _)| *status == 200 || *status == 401), "{answers:?}");
        // At most one request rotated the token; when the reuse was detected while it was issuing its pair, it
        // was refused too. Either way nothing of this login works afterwards.
        let winners: Vec<_> = answers.iter().filter(|(status, _)| *status == 200).collect();
        assert!(winners.len() <= 1, "{backend:?}: {answers:?}");
        for (_, pair) in &winners {
            let newer = pair["refresh"].as_str().expect("rotated").to_owned();
            let response = server.anonymous.post(server.url("/api/token/refresh/")).json(&json!({"refresh": newer}));
            assert_eq!(response.send().await.expect("refresh").status(), 401, "{backend:?}: the login is revoked");
            let access = server.client_with_token(pair["access"].as_str().expect("access"));
            assert_eq!(access.get(server.url("/api/v1/payouts/")).send().await.expect("get").status(), 401);
        }
        // The access token issued with the login stops too: the copy may hold one.
        let original = server.client_with_token(pair["access"].as_str().expect("access"));
        let response = original.get(server.url("/api/v1/payouts/")).send().await.expect("get");
        assert_eq!(response.status(), 401, "{backend:?}: an access token of the reused login");
        // Logging in again works at once.
        let fresh = server.client_with_token(&server.login(ADMIN.0, ADMIN.1).await);
        assert_eq!(fresh.get(server.url("/api/v1/payouts/")).send().await.expect("get").status(), 200);
        server.stop().await;
    }
}

/// A disabled user's access token stops working at once, and a role change applies to the next request: the
/// token says who, the users table says what they may do. The changes here are made by another process (the
/// CLI's way), so at once only with the cache of users off (`user_cache.rs` tests it on).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_tokens_follow_the_user_row() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.tokens.user_cache = Duration::ZERO;
    let server = TestServer::start(settings).await;
    let store = db.store().await;
    payledger::auth::principals::create(&store, "test", "adm2", PASSWORD, "admin", false).await.expect("user");
    let adm2 = server.client_with_token(&server.login("adm2", PASSWORD).await);
    assert_eq!(adm2.get(server.url("/api/v1/jobs/")).send().await.expect("jobs").status(), 200);
    payledger::auth::principals::set_role(&store, "test", "adm2", "viewer").await.expect("demote");
    assert_eq!(adm2.get(server.url("/api/v1/jobs/")).send().await.expect("jobs").status(), 403, "demoted at once");
    payledger::auth::principals::set_active(&store, "test", "adm2", false).await.expect("disable");
    let response = adm2.patch(server.url("/api/v1/users/adm2/")).json(&json!({"active": true})).send().await;
    assert_eq!(response.expect("patch").status(), 401, "a disabled user's token cannot re-enable them");
    let page: Value =
        server.client.get(server.url("/api/v1/users/")).send().await.expect("users").json().await.expect("json");
    let adm2_row = page.as_array().expect("users").iter().find(|u| u["username"] == "adm2").cloned().expect("adm2");
    assert_eq!(adm2_row["active"], false);
    server.stop().await;
}

/// Two admins disabling each other at the same moment: one of them wins, and an active admin remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_cannot_disable_each_other_at_once() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else { continue };
        // Each round puts the admins back from the CLI's side, which the server's cache of users would only
        // see within its bound: off, so that every round races two live admins.
        let mut settings = common::settings(&db);
        settings.tokens.user_cache = Duration::ZERO;
        let server = TestServer::start(settings).await;
        let store = db.store().await;
        for round in 0..5 {
            let other = format!("adm{round}");
            payledger::auth::principals::create(&store, "test", &other, PASSWORD, "admin", false).await.expect("user");
            let theirs = server.client_with_token(&server.login(&other, PASSWORD).await);
            let ours = server.client.clone();
            let (a, b) = tokio::join!(
                ours.patch(server.url(&format!("/api/v1/users/{other}/"))).json(&json!({"active": false})).send(),
                theirs.patch(server.url(&format!("/api/v1/users/{}/", ADMIN.0))).json(&json!({"active": false})).send(),
            );
            let statuses = [a.expect("patch").status().as_u16(), b.expect("patch").status().as_u16()];
            let users: Value = server
                .client
                .get(server.url("/api/v1/users/"))
                .send()
                .await
                .expect("users")
                .json()
                .await
                .unwrap_or(Value::Null);
            let active_admins = db.scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND active").await;
            assert!(active_admins >= 1, "{backend:?} round {round}: {statuses:?}, {users}");
            if active_admins == 2 {
                // Neither applied (one lost its token's user first): nothing to undo.
                continue;
            }
            // Put things back for the next round: whoever is disabled, re-enable them from the CLI side.
            for name in [ADMIN.0, other.as_str()] {
                payledger::auth::principals::set_active(&store, "test", name, true).await.expect("enable");
            }
            payledger::auth::principals::set_active(&store, "test", &other, false).await.expect("disable the extra");
        }
        server.stop().await;
    }
}

/// A new password ends every login: refresh and access tokens issued before it are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_password_revokes_refresh_tokens() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let pair: Value = server
        .anonymous
        .post(server.url("/api/token/"))
        .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let response = server
        .client
        .patch(server.url(&format!("/api/v1/users/{}/", ADMIN.0)))
        .json(&json!({"password": "the admin's new password"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 200);
    let refreshed =
        server.anonymous.post(server.url("/api/token/refresh/")).json(&json!({"refresh": pair["refresh"]})).send();
    assert_eq!(refreshed.await.expect("refresh").status(), 401);
    // Access tokens issued before the new password stop too; one issued after it works.
    let before = server.client_with_token(pair["access"].as_str().expect("access"));
    assert_eq!(before.get(server.url("/api/v1/payouts/")).send().await.expect("get").status(), 401);
    let after = server.client_with_token(&server.login(ADMIN.0, "the admin's new password").await);
    assert_eq!(after.get(server.url("/api/v1/payouts/")).send().await.expect("get").status(), 200);
    server.stop().await;
}

/// A username no user can have (a NUL byte) is refused like any unknown name, not answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn impossible_usernames_are_just_unknown() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = TestServer::start(common::settings(&db)).await;
        let token =
            server.anonymous.post(server.url("/api/token/")).json(&json!({"username": "vera\u{0}", "password": "x"}));
        assert_eq!(token.send().await.expect("token").status(), 401);
        let basic = server.anonymous.get(server.url("/api/v1/payouts/")).basic_auth("vera\0", Some("x")).send().await;
        assert_eq!(basic.expect("basic").status(), 401);
        server.stop().await;
    }
}
