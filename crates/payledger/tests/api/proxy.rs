//! Behind a reverse proxy: the client's address and scheme come from the forwarded headers of a trusted proxy
//! only, and rate limits, the webhook's allowed networks, console cookies, request ids and the audit log all
//! use them. Clients bound to distinct loopback addresses play the proxy (127.0.0.5, trusted) and a client
//! that reaches the server directly (127.0.0.6, not trusted).

use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{self, Backend, TestDb, TestServer, from_loopback as from, notice, on_both_backends};

const PROXY: u8 = 5;
const DIRECT: u8 = 6;
/// The only network the bank may post from.
const BANK_NETWORK: &str = "203.0.113.0/24";
const INN: &str = "7707083893";

async fn proxied_server(db: &TestDb) -> TestServer {
    let mut settings = common::settings(db);
    settings.trusted_proxies = payledger::origin::TrustedProxies::new(vec![
        format!("127.0.0.{PROXY}").parse().expect("network"),
        "10.0.0.0/8".parse().expect("network"),
    ]);
    settings.tokens.login_attempts_per_minute = 2;
    settings.webhook_guard.allowed_networks = vec![BANK_NETWORK.parse().expect("network")];
    TestServer::start(settings).await
}

/// A wrong-password token request from `127.0.0.<last>` with `X-Forwarded-For: forwarded`: its status.
async fn guess(server: &TestServer, last: u8, forwarded: &str) -> u16 {
    let response = from(last)
        .post(server.url("/api/token/"))
        .header("X-Forwarded-For", forwarded)
        .json(&json!({"username": "nobody", "password": "a wrong guess, long"}))
        .send()
        .await
        .expect("token request");
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_count_the_client_behind_a_trusted_proxy_and_the_peer_otherwise() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = proxied_server(&db).await;

    // Through the proxy, each client has its own budget of two.
    assert_eq!(guess(&server, PROXY, "198.51.100.7").await, 401);
    assert_eq!(guess(&server, PROXY, "198.51.100.7").await, 401);
    assert_eq!(guess(&server, PROXY, "198.51.100.7").await, 429);
    assert_eq!(guess(&server, PROXY, "198.51.100.8").await, 401, "another client behind the same proxy");
    // A client that writes its own X-Forwarded-For gets the proxy's entry appended: the rightmost untrusted
    // address is still its real one. Hops inside trusted networks are skipped.
    assert_eq!(guess(&server, PROXY, "192.0.2.99, 198.51.100.7").await, 429, "a spoofed leftmost entry");
    assert_eq!(guess(&server, PROXY, "198.51.100.7, 10.1.2.3").await, 429, "behind a second, trusted proxy");

    // A peer that is not a trusted proxy is the client, whatever it forwards.
    assert_eq!(guess(&server, DIRECT, "198.51.100.30").await, 401);
    assert_eq!(guess(&server, DIRECT, "198.51.100.31").await, 401);
    assert_eq!(guess(&server, DIRECT, "198.51.100.32").await, 429, "X-Forwarded-For from an untrusted peer");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhook_allow_list_and_console_cookies_follow_the_trusted_proxy() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = proxied_server(&db).await;
    let post = |last: u8, forwarded: &'static str| {
        let url = server.url("/api/webhook/bank/");
        async move {
            let body = notice(Uuid::new_v4(), json!("10.00"), INN).to_string();
            let request = from(last).post(url).header("Content-Type", "application/json").body(body);
            request.header("X-Forwarded-For", forwarded).send().await.expect("webhook").status().as_u16()
        }
    };
    assert_eq!(post(PROXY, "203.0.113.5").await, 200, "the bank, through the proxy");
    assert_eq!(post(PROXY, "198.51.100.7").await, 403, "someone else, through the proxy");
    assert_eq!(post(DIRECT, "203.0.113.5").await, 403, "a direct peer claiming the bank's address");
    assert_eq!(server.balance_text(INN).await.as_deref(), Some("10.00"));

    let secure = |last: u8| {
        let url = server.url("/admin/login");
        async move {
            let response = from(last).get(url).header("X-Forwarded-Proto", "https").send().await.expect("login page");
            response.headers()["set-cookie"].to_str().expect("cookie").contains("; Secure")
        }
    };
    assert!(secure(PROXY).await, "the proxy says the browser used TLS");
    assert!(!secure(DIRECT).await, "anyone can send X-Forwarded-Proto");
    server.stop().await;
}

on_both_backends!(audit_rows_name_the_request_and_the_client);

/// The audit rows of a ledger change (written by the engine's batch) and of a user change (written in its own
/// transaction) carry the request's id and the client behind the proxy; every answer carries its request id.
async fn audit_rows_name_the_request_and_the_client(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = proxied_server(&db).await;
    let token = server.login(common::ADMIN.0, common::ADMIN.1).await;
    let send = |path: &str, body: Value, forwarded: &str, id: &str, last: u8| {
        from(last)
            .post(server.url(path))
            .bearer_auth(&token)
            .header("X-Forwarded-For", forwarded)
            .header("X-Request-Id", id)
            .json(&body)
            .send()
    };
    let deposit = send("/api/add_funds/", json!({"user_id": 1, "amount": "5.00"}), "198.51.100.20", "edge-1", PROXY);
    let deposit = deposit.await.expect("deposit");
    assert_eq!((deposit.status().as_u16(), deposit.headers()["x-request-id"].to_str().ok()), (201, Some("edge-1")));
    let user = json!({"username": "carol", "password": "carol's long password", "role": "viewer"});
    let created = send("/api/v1/users/", user, "198.51.100.21", "edge-2", PROXY).await.expect("user");
    assert_eq!((created.status().as_u16(), created.headers()["x-request-id"].to_str().ok()), (201, Some("edge-2")));
    // From a peer that is not trusted, the id it sends is not taken: the server makes one.
    let direct = send("/api/add_funds/", json!({"user_id": 2, "amount": "1.00"}), "198.51.100.22", "edge-3", DIRECT);
    let direct = direct.await.expect("deposit");
    let made = direct.headers()["x-request-id"].to_str().expect("id").to_owned();
    assert!(made.len() == 32 && made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");

    let (status, page) = server.get("/api/v1/audit/").await;
    assert_eq!(status, 200, "{page}");
    let origin = |action: &str, target: &str| {
        let rows = page["results"].as_array().expect("rows");
        let row = rows.iter().find(|row| row["action"] == action && row["target"] == target);
        let row = row.unwrap_or_else(|| panic!("no {action} of {target}: {page}"));
        (row["request_id"].clone(), row["client_address"].clone())
    };
    assert_eq!(origin("balance.deposit", "balance-user:1"), (json!("edge-1"), json!("198.51.100.20")));
    assert_eq!(origin("user.create", "user:carol"), (json!("edge-2"), json!("198.51.100.21")));
    assert_eq!(origin("balance.deposit", "balance-user:2"), (json!(made), json!("127.0.0.6")));
    server.stop().await;
}
