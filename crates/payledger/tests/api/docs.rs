//! The API documentation the server serves: the OpenAPI document, Swagger UI and Redoc, all from the binary.

use crate::common::{self, Backend, TestDb, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_spec_and_the_docs_pages_are_served_from_the_binary() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;

    let (status, spec) = server.get("/api/schema/").await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().expect("paths");
    for path in [
        "/api/webhook/bank/",
        "/api/add_funds/",
        "/api/transfer_funds/",
        "/api/users/{user_id}/transactions/",
        "/api/reports/revenue/",
        "/api/v1/payouts/",
        "/api/v1/payouts/{id}/",
        "/api/v1/jobs/",
        "/api/v1/gateway/events/",
        "/api/token/",
        "/api/token/refresh/",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }

    for page in ["/api/schema/swagger/", "/api/schema/redoc/"] {
        let response = server.client.get(server.url(page)).send().await.expect("request");
        assert_eq!(response.status(), 200, "{page}");
        let headers = response.headers().clone();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let html = response.text().await.expect("html");
        for cdn in ["cdn.", "unpkg.com", "jsdelivr", "googleapis"] {
            assert!(!html.contains(cdn), "{page} loads nothing from a CDN ({cdn})");
        }
    }
    let script = server.client.get(server.url("/assets/redoc.standalone.js")).send().await.expect("request");
    assert_eq!(script.status(), 200);
    assert!(script.bytes().await.expect("script").len() > 100_000, "Redoc is embedded");
    server.stop().await;
}
