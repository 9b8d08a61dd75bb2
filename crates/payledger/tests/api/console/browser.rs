//! The console in a real browser: headless Chromium driven over WebDriver through the main flows an operator
//! runs. With `PAYLEDGER_SCREENSHOTS=<folder>` the tests also save screenshots of the main pages (the README's
//! come from `PAYLEDGER_SCREENSHOTS=docs/screenshots`). Each test holds [`common::load::quiet`]: Chromium
//! waits on deadlines, and chromedriver gets a port reserved for it.

use crate::common::browser::{self, Browser};
use crate::common::{self, ADMIN, Backend, TestDb, TestServer};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "a long enough password";

/// Saves a screenshot when screenshots were asked for.
async fn snapshot(browser: &Browser, name: &str) {
    if let Some(folder) = std::env::var_os("PAYLEDGER_SCREENSHOTS") {
        browser.screenshot(&std::path::Path::new(&folder).join(format!("{name}.png"))).await;
    }
}

async fn payout_for(server: &TestServer, user: i64, amount: &str) -> String {
    let body = json!({"amount": amount, "currency": "RUB", "source": {"user_id": user},
        "recipient_details": {"type": "card", "number": "4111111111111111", "holder": "Browser Test"},
        "description": "browser test"});
    let response = server.client.post(server.url("/api/v1/payouts/")).json(&body).send().await.expect("create");
    assert_eq!(response.status(), 201);
    let payout: Value = response.json().await.expect("json");
    payout["id"].as_str().expect("id").to_owned()
}

async fn deposit(server: &TestServer, user: i64, amount: &str) {
    let answer = server.post("/api/add_funds/", json!({"user_id": user, "amount": amount}).to_string(), None).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
}

/// Log in, post a webhook through the API, and see the new balance and its log row on the organization's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_shows_on_the_organization_page() {
    if !browser::available() {
        return;
    }
    let _quiet = common::load::quiet().await;
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let orgs = payledger::seed::seed(&db.store().await, 3).await.expect("seed");
    let inn = orgs[0].0.as_str().to_owned();
    let browser = Browser::start(1280, 900).await;
    browser.login(&server.url(""), ADMIN.0, ADMIN.1).await;

    let page = server.url(&format!("/admin/organizations/{inn}"));
    browser.goto(&page).await;
    browser.wait_for_text(&inn, 10, None).await;
    let mut notice = common::notice(Uuid::new_v4(), json!(145000), &inn);
    notice["document_number"] = json!("PAY-BROWSER-1");
    let (status, body) = server.post_webhook(&notice).await;
    assert_eq!(status, 200, "{body}");
    let text = browser.wait_for_text("145,000.00 RUB", 10, Some(&page)).await;
    assert!(text.contains("PAY-BROWSER-1"), "the log row names the document:\n{text}");
    snapshot(&browser, "organization").await;
    browser.goto(&server.url("/admin/organizations")).await;
    browser.wait_for_text(&inn, 10, None).await;
    browser.goto(&server.url("/admin/")).await;
    browser.wait_for_text("145,000.00 RUB", 10, None).await;
    snapshot(&browser, "dashboard").await;
    browser.quit().await;
    server.stop().await;
}

/// A payout drawing on a user's balance: created, watched until it completes, and the balance is lower.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_completes_and_the_balance_changes() {
    if !browser::available() {
        return;
    }
    let _quiet = common::load::quiet().await;
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    deposit(&server, 5, "100.00").await;
    let browser = Browser::start(1280, 900).await;
    browser.login(&server.url(""), ADMIN.0, ADMIN.1).await;
    let balances = server.url("/admin/balances?user_id=5");
    browser.goto(&balances).await;
    browser.wait_for_text("100.00 RUB", 10, None).await;

    let id = payout_for(&server, 5, "30.00").await;
    let detail = server.url(&format!("/admin/payouts/{id}"));
    browser.goto(&detail).await;
    let text = browser.wait_for_text("completed", 20, Some(&detail)).await;
    assert!(text.contains("•••• 1111") && !text.contains("4111111111111111"), "masked card only:\n{text}");
    snapshot(&browser, "payout").await;
    browser.goto(&balances).await;
    browser.wait_for_text("70.00 RUB", 10, None).await;
    snapshot(&browser, "balances").await;
    browser.goto(&server.url("/admin/payouts")).await;
    browser.wait_for_text("30.00 RUB", 10, None).await;
    snapshot(&browser, "payouts").await;
    browser.quit().await;
    server.stop().await;
    db.assert_verified().await;
}

/// An operator cancels a pending payout through its confirmation step; the held money is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_a_pending_payout() {
    if !browser::available() {
        return;
    }
    let _quiet = common::load::quiet().await;
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.payouts.workers = 0;
    let server = TestServer::start(settings).await;
    payledger::auth::principals::create(&db.store().await, "test", "oleg", PASSWORD, "operator", false)
        .await
        .expect("user");
    deposit(&server, 7, "50.00").await;
    let id = payout_for(&server, 7, "20.00").await;
    assert_eq!(server.user_balance(7).await, Some(("30.00".into(), "20.00".into())));

    let browser = Browser::start(390, 844).await;
    browser.login(&server.url(""), "oleg", PASSWORD).await;
    let detail = server.url(&format!("/admin/payouts/{id}"));
    browser.goto(&detail).await;
    browser.wait_for_text("pending", 10, None).await;
    snapshot(&browser, "payout-phone").await;
    browser.click("a[href$='/cancel'], button[formaction$='/cancel']").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text("cancelled", 10, Some(&detail)).await;
    assert_eq!(server.user_balance(7).await, Some(("50.00".into(), "0.00".into())), "the hold is released");
    browser.quit().await;
    server.stop().await;
    db.assert_verified().await;
}

/// A viewer is not offered an operator's action, is refused it when reaching it by its address, and nothing
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_is_refused_an_operator_action() {
    if !browser::available() {
        return;
    }
    let _quiet = common::load::quiet().await;
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.payouts.workers = 0;
    let server = TestServer::start(settings).await;
    payledger::auth::principals::create(&db.store().await, "test", "vera", PASSWORD, "viewer", false)
        .await
        .expect("user");
    deposit(&server, 8, "50.00").await;
    let id = payout_for(&server, 8, "20.00").await;

    let browser = Browser::start(1280, 900).await;
    browser.login(&server.url(""), "vera", PASSWORD).await;
    let detail = server.url(&format!("/admin/payouts/{id}"));
    browser.goto(&detail).await;
    let text = browser.wait_for_text("pending", 10, None).await;
    assert!(!text.to_lowercase().contains("cancel payout"), "a viewer is not offered the action:\n{text}");
    // Reaching the action by its address is refused with a page that says why.
    browser.goto(&server.url(&format!("/admin/payouts/{id}/cancel"))).await;
    let refusal = browser.wait_for_text("operator", 10, None).await;
    assert!(refusal.contains("403"), "{refusal}");
    assert_eq!(server.user_balance(8).await, Some(("30.00".into(), "20.00".into())), "nothing changed");
    let (_, payout) = server.get(&format!("/api/v1/payouts/{id}/")).await;
    assert_eq!(payout["status"], "pending");
    browser.quit().await;
    server.stop().await;
}

/// A payout's page follows its status without a reload while it is in flight (htmx polling).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_page_follows_its_status_live() {
    if !browser::available() {
        return;
    }
    let _quiet = common::load::quiet().await;
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.payouts.workers = 0;
    let server = TestServer::start(settings).await;
    deposit(&server, 9, "50.00").await;
    let id = payout_for(&server, 9, "10.00").await;
    let browser = Browser::start(1280, 900).await;
    browser.login(&server.url(""), ADMIN.0, ADMIN.1).await;
    browser.goto(&server.url(&format!("/admin/payouts/{id}"))).await;
    browser.wait_for_text("pending", 10, None).await;
    // Changed behind the page's back, through the API.
    let response = server.client.delete(server.url(&format!("/api/v1/payouts/{id}/"))).send().await.expect("cancel");
    assert_eq!(response.status(), 204);
    browser.wait_for_text("cancelled", 15, None).await;
    browser.quit().await;
    server.stop().await;
}
