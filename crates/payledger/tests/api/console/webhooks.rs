//! The console's webhooks pages as a browser without JavaScript uses them: an endpoint registered with its
//! secret shown once, the list with a disabled endpoint's reason, a test event in the delivery log, and admins
//! only.

use crate::common::console::ConsoleClient;
use crate::common::{self, ADMIN, Backend, TestDb, TestServer, on_both_backends};

on_both_backends!(the_webhooks_page_lists_endpoints_and_a_disabled_ones_reason);

async fn the_webhooks_page_lists_endpoints_and_a_disabled_ones_reason(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;

    let created = admin
        .post(
            "/admin/webhooks",
            &[("url", "https://hooks.example.com/erp"), ("description", "ERP"), ("event_types", "payout.created")],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.body.contains("whsec_"), "the secret is shown once: {}", created.body);
    let start = created.body.find("<code>ep_").expect("the endpoint's id") + "<code>".len();
    let id = created.body[start..start + 35].to_owned();

    let list = admin.get("/admin/webhooks").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("https://hooks.example.com/erp") && list.body.contains("payout.created"));
    assert!(!list.body.contains("whsec_"), "never again");
    assert!(list.body.contains("href=\"/admin/webhooks\""), "the navigation links the page");

    let refused = admin.post("/admin/webhooks", &[("url", "ftp://hooks.example.com/")]).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("url:"), "{}", refused.body);

    let test = admin.post(&format!("/admin/webhooks/{id}/test"), &[]).await;
    assert_eq!(test.status, 303);
    let log = admin.get(&format!("/admin/webhooks/{id}/deliveries?status=pending")).await;
    assert_eq!(log.status, 200, "{}", log.body);
    assert!(log.body.contains("ping") && log.body.contains("pending"), "{}", log.body);
    let disabled = admin.post(&format!("/admin/webhooks/{id}/enabled"), &[("enabled", "false")]).await;
    assert_eq!(disabled.status, 303, "{}", disabled.body);
    let list = admin.get("/admin/webhooks").await;
    assert!(list.body.contains("Disabled: disabled by admin"), "{}", list.body);
    // The dashboard says so to everyone, with the way there for admins.
    let dashboard = admin.get("/admin/").await;
    assert!(dashboard.body.contains("1 webhook endpoint(s) disabled"), "{}", dashboard.body);
    assert!(dashboard.body.contains("<a href=\"/admin/webhooks\">see them</a>"), "{}", dashboard.body);
    // Nothing is sent to a disabled endpoint, a test neither.
    let refused = admin.post(&format!("/admin/webhooks/{id}/test"), &[]).await;
    assert_eq!(refused.status, 409, "{}", refused.body);

    let store = db.store().await;
    payledger::auth::principals::create(&store, "test", "oleg", "a long operator password", "operator", false)
        .await
        .expect("operator");
    let operator = ConsoleClient::login(&server, "oleg", "a long operator password").await;
    assert_eq!(operator.get("/admin/webhooks").await.status, 403);
    let dashboard = operator.get("/admin/").await;
    assert!(dashboard.body.contains("1 webhook endpoint(s) disabled"), "{}", dashboard.body);
    assert!(!dashboard.body.contains("<a href=\"/admin/webhooks\">see them</a>"), "no link that would refuse them");
    server.stop().await;
}
