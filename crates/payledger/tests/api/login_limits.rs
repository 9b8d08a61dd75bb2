//! Login rate limits per username as well as per address, against the real server: clients bound to distinct
//! loopback addresses (127.0.0.x, all routed to the server on Linux) play an attacker with many addresses.

use serde_json::{Value, json};

use crate::common::console::submit_login;
use crate::common::{self, Backend, TestDb, TestServer, from_loopback as from};

const PASSWORD: &str = "vera's long enough password";

/// A token request from `127.0.0.<last>`: its status, `Retry-After` and body.
async fn token(server: &TestServer, last: u8, username: &str, password: &str) -> (u16, Option<u64>, Value) {
    let response = from(last)
        .post(server.url("/api/token/"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry_after, response.json().await.unwrap_or(Value::Null))
}

/// A request with Basic credentials from `127.0.0.<last>`: its status.
async fn basic(server: &TestServer, last: u8, username: &str, password: &str) -> u16 {
    let request = from(last).get(server.url("/api/v1/payouts/")).basic_auth(username, Some(password));
    request.send().await.expect("basic request").status().as_u16()
}

/// A refresh from `127.0.0.<last>`: its status and body.
async fn refresh(server: &TestServer, last: u8, refresh: &str) -> (u16, Value) {
    let response = from(last)
        .post(server.url("/api/token/refresh/"))
        .json(&json!({"refresh": refresh}))
        .send()
        .await
        .expect("refresh request");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guesses_at_one_username_from_many_addresses_are_limited_like_guesses_from_one() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.tokens.login_attempts_per_minute = 3;
    settings.tokens.login_failures_per_username_per_minute = 3;
    let server = TestServer::start(settings).await;
    let store = db.store().await;
    payledger::auth::principals::create(&store, "test", "vera", PASSWORD, "viewer", false).await.expect("vera");

    // Right passwords never use up the username's budget: twice as many logins as it allows failures, from a
    // client each (a service account on many hosts), all succeed. One Basic client's password is verified now
    // and remembered; one login's refresh token is kept.
    let mut kept_refresh = String::new();
    for last in 40..46 {
        let (status, _, pair) = token(&server, last, "vera", PASSWORD).await;
        assert_eq!(status, 200, "{pair}");
        kept_refresh = pair["refresh"].as_str().expect("a refresh token").to_owned();
    }
    assert_eq!(basic(&server, 46, "vera", PASSWORD).await, 200);

    // Three wrong guesses, each from an address of its own: no address is anywhere near its own limit.
    for last in 10..13 {
        assert_eq!(token(&server, last, "vera", "a wrong guess, long").await.0, 401);
    }
    // The fourth, from a fresh address, is refused as an address past its limit would be: 429 and Retry-After.
    let (status, retry_after, limited) = token(&server, 13, "vera", "another wrong guess").await;
    assert_eq!((status, limited["code"].as_str()), (429, Some("rate_limited")), "{limited}");
    assert!(retry_after.is_some_and(|seconds| (1..=60).contains(&seconds)), "{retry_after:?}");
    // While the username is limited even its right password is refused, as under the per-address limit, on
    // every login path that checks a password: the token endpoint, Basic credentials never verified from that
    // client, the console's form.
    assert_eq!(token(&server, 14, "vera", PASSWORD).await.0, 429);
    assert_eq!(basic(&server, 16, "vera", "a wrong guess, long").await, 429);
    assert_eq!(submit_login(&server, "vera", PASSWORD).await.0.status, 429, "the console login");
    // What needs no password check keeps working, as the README promises: the Basic credential verified before
    // the lockout (from any address: the server remembers the credential, not the client), and a refresh token.
    assert_eq!(basic(&server, 15, "vera", PASSWORD).await, 200, "a remembered Basic credential");
    let (status, pair) = refresh(&server, 17, &kept_refresh).await;
    assert_eq!(status, 200, "a refresh during the lockout: {pair}");
    // Another username is unaffected, from any address.
    assert_eq!(token(&server, 18, common::ADMIN.0, common::ADMIN.1).await.0, 200);
    assert_eq!(basic(&server, 19, common::ADMIN.0, common::ADMIN.1).await, 200);

    // An address past its own limit gets exactly the same answer, and no header makes it another address.
    for n in 0..3 {
        assert_eq!(token(&server, 30, &format!("nobody{n}"), "a wrong guess, long").await.0, 401);
    }
    let (status, _, by_address) = token(&server, 30, "nobody9", "a wrong guess, long").await;
    assert_eq!((status, &by_address), (429, &limited));
    for header in ["x-forwarded-for", "x-real-ip", "forwarded"] {
        let value = if header == "forwarded" { "for=10.9.9.9" } else { "10.9.9.9" };
        let response = from(30)
            .post(server.url("/api/token/"))
            .header(header, value)
            .json(&json!({"username": "nobody10", "password": "a wrong guess, long"}))
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), 429, "{header} is not trusted for the client's address");
    }
    server.stop().await;
}
