//! The admin console as a browser sees it, without a browser: login, sessions, CSRF, roles, headers.
//! (console/browser.rs drives real Chromium through the main flows.)

use crate::common::console::{ConsoleClient, submit_login};
use crate::common::{self, ADMIN, Backend, TestDb, TestServer};

const PASSWORD: &str = "a long enough password";

async fn server_with_users(db: &TestDb) -> TestServer {
    let server = TestServer::start(common::settings(db)).await;
    let store = db.store().await;
    for (name, role) in [("vera", "viewer"), ("oleg", "operator")] {
        payledger::auth::principals::create(&store, "test", name, PASSWORD, role, false).await.expect("user");
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logging_in_and_out() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = server_with_users(&db).await;
    // Without a session every page sends the browser to the login page, remembering where it was going.
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let response = anonymous.get(server.url("/admin/?status=failed")).send().await.expect("get");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin/login?next=/admin/%3Fstatus%3Dfailed");

    let (refused, session) = submit_login(&server, ADMIN.0, "not the password").await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("Invalid username or password"));
    assert!(session.is_none());

    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    let home = admin.get("/admin/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Log out") && home.body.contains(ADMIN.0));

    // Logging out needs the CSRF token, and ends the session for good.
    assert_eq!(admin.post_raw("/admin/logout", &[]).await.status, 403);
    assert_eq!(admin.post_raw("/admin/logout", &[("csrf", "forged")]).await.status, 403);
    let out = admin.post("/admin/logout", &[]).await;
    assert_eq!((out.status, out.location.as_deref()), (303, Some("/admin/login")));
    assert_eq!(admin.get("/admin/").await.status, 303, "the old cookie no longer works");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_login_form_has_its_own_csrf_and_a_rate_limit() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.tokens.login_attempts_per_minute = 3;
    settings.admin = None;
    let server = TestServer::start(settings).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    // A login form posted from elsewhere (no CSRF cookie) is refused before the password is looked at.
    let forged = http
        .post(server.url("/admin/login"))
        .form(&[("username", "admin"), ("password", "whatever-password"), ("csrf", "guess")])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 403);
    for _ in 0..3 {
        assert_eq!(submit_login(&server, "admin", "wrong wrong wrong").await.0.status, 401);
    }
    let (limited, _) = submit_login(&server, "admin", "wrong wrong wrong").await;
    assert_eq!(limited.status, 429);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_and_disabled_users() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = server_with_users(&db).await;
    let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;
    let home = viewer.get("/admin/").await;
    assert_eq!(home.status, 200);
    assert!(!home.body.contains("/admin/jobs"), "admin sections are not offered to a viewer");
    for admin_page in ["/admin/jobs", "/admin/users", "/admin/audit"] {
        assert_eq!(viewer.get(admin_page).await.status, 403, "{admin_page}");
    }
    // Disabling the user ends their console session at once.
    let store = db.store().await;
    payledger::auth::principals::set_active(&store, "test", "vera", false).await.expect("disable");
    assert_eq!(viewer.get("/admin/").await.status, 303);
    assert_eq!(submit_login(&server, "vera", PASSWORD).await.0.status, 401);
    // Enabling the user again does not bring the old session back.
    payledger::auth::principals::set_active(&store, "test", "vera", true).await.expect("enable");
    assert_eq!(viewer.get("/admin/").await.status, 303);
    // A new password ends a live session too.
    let again = ConsoleClient::login(&server, "vera", PASSWORD).await;
    assert_eq!(again.get("/admin/").await.status, 200);
    payledger::auth::principals::set_password(&store, "test", "vera", "vera's next long password")
        .await
        .expect("passwd");
    assert_eq!(again.get("/admin/").await.status, 303);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_carry_security_headers_and_cookies_are_strict() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = server_with_users(&db).await;
    let response = reqwest::get(server.url("/admin/login")).await.expect("get");
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    let cookie = headers["set-cookie"].to_str().expect("cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains("Secure"));
    // X-Forwarded-Proto from a peer that is not a trusted proxy is anyone's to send: it changes nothing
    // (tests/api/proxy.rs has the trusted proxy's Secure cookie).
    let claimed = reqwest::Client::new()
        .get(server.url("/admin/login"))
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .expect("get");
    assert!(!claimed.headers()["set-cookie"].to_str().expect("cookie").contains("; Secure"));
    // Every asset the console loads is served by the binary itself.
    let html = response.text().await.expect("html");
    for asset in ["/admin/assets/console.css", "/admin/assets/htmx.min.js"] {
        assert!(html.contains(asset));
        assert_eq!(reqwest::get(server.url(asset)).await.expect("asset").status(), 200, "{asset}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "no external URL in a console page");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_forms_get_the_console_error_page() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = server_with_users(&db).await;
    let response = reqwest::Client::new()
        .post(server.url("/admin/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("csrf=x")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 400);
    assert!(response.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
    assert!(response.text().await.unwrap_or_default().contains("the form is malformed"));
    // A path segment that is not UTF-8.
    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    for path in ["/admin/organizations/%FF", "/admin/payouts/%FF", "/admin/payments/%FF"] {
        let page = admin.get(path).await;
        assert_eq!(page.status, 400, "{path}");
        assert!(page.body.contains("the address is malformed"), "{path}: {}", page.body);
    }
    server.stop().await;
}

/// Organization search ignores case the same way on both backends, Cyrillic included (SQLite's own LOWER
/// folds only ASCII).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn organization_search_folds_cyrillic_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = TestServer::start(common::settings(&db)).await;
        let orgs = payledger::seed::seed(&db.store().await, 3).await.expect("seed");
        let (inn, name) = (&orgs[0].0, &orgs[0].1);
        let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
        let word = name.split_whitespace().last().expect("a word").trim_matches('»').to_lowercase();
        let page = admin.get(&format!("/admin/organizations?q={}", common::console::query_value(&word))).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains(inn.as_str()), "{backend:?}: searching {word:?} finds {name}");
        server.stop().await;
    }
}
