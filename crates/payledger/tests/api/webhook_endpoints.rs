//! The webhook endpoints API (issue 15): registering receivers, their secrets shown once, the checks of their
//! fields, the production profile's https, admins only, rotation, deletion, the audit trail and the test event.

use std::time::Duration;

use base64::Engine as _;
use payledger::config::{Profile, Settings};
use serde_json::{Value, json};

use crate::common::{self, Backend, TestDb, TestServer, on_both_backends};

on_both_backends!(
    endpoints_are_created_with_a_secret_shown_once_and_managed_with_an_audit_trail,
    bad_fields_are_refused_naming_the_field,
    the_test_event_is_a_pending_delivery_in_the_log,
);

const BASE: &str = "/api/v1/webhook-endpoints/";

async fn send(server: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = server.client.request(method, server.url(path));
    if let Some(body) = body {
        request = request.header("Content-Type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The key bytes of a `whsec_` secret.
fn secret_key(secret: &Value) -> Vec<u8> {
    let text = secret.as_str().expect("a secret");
    let encoded = text.strip_prefix("whsec_").expect("whsec_ prefix");
    base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64")
}

async fn create(server: &TestServer, body: Value) -> Value {
    let (status, created) = send(server, "POST", BASE, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn endpoints_are_created_with_a_secret_shown_once_and_managed_with_an_audit_trail(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let created = create(
        &server,
        json!({"url": "https://hooks.example.com/in", "description": "ERP", "event_types": ["payout.created"],
               "rate_limit_per_second": 5}),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("ep_") && id.len() == 35, "{id}");
    assert_eq!(secret_key(&created["secret"]).len(), 32);
    assert_eq!(created["event_types"], json!(["payout.created"]));
    assert_eq!(created["enabled"], json!(true));
    assert_eq!(created["rate_limit_per_second"], json!(5));
    assert_eq!(created["secret_rotating_until"], Value::Null);
    let secret = created["secret"].as_str().expect("secret").to_owned();

    // Never again: neither the list nor the endpoint carries it.
    let (status, list) = send(&server, "GET", BASE, None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert!(!list.to_string().contains(&secret) && list[0].get("secret").is_none());
    let (status, one) = send(&server, "GET", &format!("{BASE}{id}/"), None).await;
    assert_eq!(status, 200);
    assert!(one.get("secret").is_none());
    assert_eq!(one["event_types"], json!(["payout.created"]), "absent types mean all only at creation");

    // A change; disabling keeps a reason, enabling clears it.
    let (status, changed) =
        send(&server, "PATCH", &format!("{BASE}{id}/"), Some(json!({"enabled": false, "description": "off"}))).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["enabled"], json!(false));
    assert!(changed["disabled_reason"].as_str().is_some_and(|reason| reason.contains("admin")), "{changed}");
    let (_, changed) = send(&server, "PATCH", &format!("{BASE}{id}/"), Some(json!({"enabled": true}))).await;
    assert_eq!((changed["enabled"].clone(), changed["disabled_reason"].clone()), (json!(true), Value::Null));

    // A new rate limit, then none: null removes it (and only there does null mean more than absent).
    let path = format!("{BASE}{id}/");
    let (status, changed) = send(&server, "PATCH", &path, Some(json!({"rate_limit_per_second": 20}))).await;
    assert_eq!((status, changed["rate_limit_per_second"].clone()), (200, json!(20)), "{changed}");
    let (status, changed) = send(&server, "PATCH", &path, Some(json!({"rate_limit_per_second": null}))).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["rate_limit_per_second"], Value::Null);
    let (_, one) = send(&server, "GET", &path, None).await;
    assert_eq!(one["rate_limit_per_second"], Value::Null, "the removal is stored");
    let (status, audit) = server.get(&format!("/api/v1/audit/?target=webhook_endpoint:{id}")).await;
    assert_eq!(status, 200);
    let removal = audit["results"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|row| row["before"]["rate_limit_per_second"] == json!(20))
        .expect("the removal's audit row");
    assert_eq!(removal["after"]["rate_limit_per_second"], Value::Null, "{removal}");
    // Any other field's null still means absent: a change of nothing but nulls is no change.
    let (status, refused) = send(&server, "PATCH", &path, Some(json!({"description": null, "enabled": null}))).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(send(&server, "GET", &path, None).await.1["description"], json!("off"));

    // A rotation: a new secret, the old one signing for the overlap.
    let (status, rotated) =
        send(&server, "POST", &format!("{BASE}{id}/rotate-secret/"), Some(json!({"overlap_seconds": 3600}))).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(secret_key(&rotated["secret"]).len(), 32);
    assert_ne!(rotated["secret"].as_str(), Some(secret.as_str()));
    assert!(rotated["secret_rotating_until"].is_string(), "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();

    // Deleted: gone for the API.
    let response = server.client.delete(server.url(&format!("{BASE}{id}/"))).send().await.expect("delete");
    assert_eq!(response.status(), 204);
    assert_eq!(send(&server, "GET", &format!("{BASE}{id}/"), None).await.0, 404);
    assert_eq!(send(&server, "DELETE", &format!("{BASE}{id}/"), None).await.0, 404);

    // Every change in the audit log, by the admin, without a secret.
    let (status, audit) = server.get(&format!("/api/v1/audit/?target=webhook_endpoint:{id}")).await;
    assert_eq!(status, 200);
    let actions: Vec<&str> =
        audit["results"].as_array().expect("rows").iter().filter_map(|row| row["action"].as_str()).collect();
    for action in ["create", "update", "rotate_secret", "delete"] {
        assert!(actions.contains(&format!("webhook_endpoint.{action}").as_str()), "{action} in {actions:?}");
    }
    assert!(audit["results"].as_array().expect("rows").iter().all(|row| row["actor"] == json!("admin")));
    let text = audit.to_string();
    for secret in [&secret, &new_secret] {
        assert!(!text.contains(&secret["whsec_".len()..]), "no secret in the audit log");
    }
    server.stop().await;
}

async fn bad_fields_are_refused_naming_the_field(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let refused = [
        (json!({"url": "ftp://hooks.example.com/"}), "url"),
        (json!({"url": "https://user:pw@hooks.example.com/"}), "url"),
        (json!({"url": "http://127.0.0.1:8080/"}), "url"),
        (json!({"url": "https://169.254.169.254/latest"}), "url"),
        (json!({"url": "/relative"}), "url"),
        (json!({}), "url"),
        (json!({"url": "https://a.example/", "event_types": ["payout.paid"]}), "event_types"),
        (json!({"url": "https://a.example/", "event_types": ["*", "payout.created"]}), "event_types"),
        (json!({"url": "https://a.example/", "event_types": []}), "event_types"),
        (json!({"url": "https://a.example/", "rate_limit_per_second": 0}), "rate_limit_per_second"),
        (json!({"url": "https://a.example/", "rate_limit_per_second": 10001}), "rate_limit_per_second"),
        (json!({"url": "https://a.example/", "enabled": "yes"}), "enabled"),
    ];
    for (body, field) in refused {
        let (status, answer) = send(&server, "POST", BASE, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(answer["details"][field].is_string(), "{body} names {field}: {answer}");
    }
    // `*` with the one type it leaves out is fine.
    let created =
        create(&server, json!({"url": "http://hooks.example.com/", "event_types": ["bank_payment.rejected", "*"]}))
            .await;
    assert_eq!(created["event_types"], json!(["*", "bank_payment.rejected"]));
    let id = created["id"].as_str().expect("id");

    let log = format!("{BASE}{id}/deliveries/");
    for (query, field) in
        [("limit=0", "limit"), ("limit=501", "limit"), ("status=lost", "status"), ("before=-1", "before")]
    {
        let (status, answer) = server.get(&format!("{log}?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(answer["details"][field].is_string(), "{query} names {field}: {answer}");
    }
    assert_eq!(server.get(&format!("{BASE}ep_{}/", "0".repeat(32))).await.0, 404);
    assert_eq!(server.get(&format!("{BASE}not-an-id/")).await.0, 400);

    // Admins only: an operator is refused.
    let store = db.store().await;
    payledger::auth::principals::create(&store, "test", "oleg", "a long operator password", "operator", false)
        .await
        .expect("operator");
    let operator = server.client_with_token(&server.login("oleg", "a long operator password").await);
    let response = operator.get(server.url(BASE)).send().await.expect("list");
    assert_eq!(response.status(), 403);
    let response = operator
        .post(server.url(BASE))
        .header("Content-Type", "application/json")
        .body(json!({"url": "https://a.example/"}).to_string())
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), 403);
    server.stop().await;
}

async fn the_test_event_is_a_pending_delivery_in_the_log(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let created = create(&server, json!({"url": "https://hooks.example.com/in"})).await;
    assert_eq!(created["event_types"], json!(["*"]));
    let id = created["id"].as_str().expect("id");
    let (status, test) = send(&server, "POST", &format!("{BASE}{id}/test/"), None).await;
    assert_eq!(status, 202, "{test}");
    let delivery = test["delivery_id"].as_i64().expect("delivery id");

    let (status, page) = server.get(&format!("{BASE}{id}/deliveries/?status=pending")).await;
    assert_eq!(status, 200, "{page}");
    let results = page["results"].as_array().expect("results");
    assert!(results.iter().any(|row| row["id"] == json!(delivery) && row["event_type"] == json!("ping")), "{page}");
    assert_eq!(page["next_before"], Value::Null);
    let (_, succeeded) = server.get(&format!("{BASE}{id}/deliveries/?status=succeeded")).await;
    assert_eq!(succeeded["results"], json!([]));

    let (status, attempts) = server.get(&format!("{BASE}{id}/deliveries/{delivery}/attempts/")).await;
    assert_eq!(status, 200, "{attempts}");
    assert!(attempts.is_array());
    assert_eq!(server.get(&format!("{BASE}{id}/deliveries/999999/attempts/")).await.0, 404);

    // A pending delivery is tried on its schedule, not replayed; an unknown one is not found.
    let (status, answer) = send(&server, "POST", &format!("{BASE}{id}/deliveries/{delivery}/replay/"), None).await;
    assert_eq!((status, answer["code"].clone()), (409, json!("delivery_pending")), "{answer}");
    assert_eq!(send(&server, "POST", &format!("{BASE}{id}/deliveries/999999/replay/"), None).await.0, 404);
    let (status, recovered) =
        send(&server, "POST", &format!("{BASE}{id}/recover/"), Some(json!({"since": "2026-01-01T00:00:00Z"}))).await;
    assert_eq!((status, recovered["replayed"].clone()), (202, json!(0)), "{recovered}");
    let (status, answer) =
        send(&server, "POST", &format!("{BASE}{id}/recover/"), Some(json!({"since": "yesterday"}))).await;
    assert!(status == 400 && answer["details"]["since"].is_string(), "{answer}");

    // The ping and the recovery are the admin's, in the audit log.
    let (status, audit) = server.get(&format!("/api/v1/audit/?target=webhook_endpoint:{id}")).await;
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<(&str, &str)> = audit["results"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| Some((row["action"].as_str()?, row["actor"].as_str()?)))
        .collect();
    assert!(actions.contains(&("webhook_endpoint.test", "admin")), "{audit}");
    assert!(actions.contains(&("webhook_endpoint.recover", "admin")), "{audit}");
    server.stop().await;
}

/// The production profile's settings (secrets it requires at start-up, no payout workers).
fn production_settings(db: &TestDb) -> Settings {
    let mut settings = common::settings(db);
    settings.profile = Profile::Production;
    settings.webhook_guard.secrets = vec!["endpoints-test-webhook-secret".into()];
    settings.tokens.secret = Some("endpoints-test-jwt-secret-of-at-least-32-bytes".into());
    settings.payouts.card_keys = vec!["00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into()];
    settings.payouts.workers = 0;
    settings.payouts.gateway = payledger::gateway::GatewayConfig::Http {
        url: "http://127.0.0.1:9/pay".into(),
        secret: "endpoints-test-gateway-secret-of-32-bytes-or-more".into(),
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
    };
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn production_requires_https_endpoints() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(production_settings(&db)).await;
    let (status, answer) = send(&server, "POST", BASE, Some(json!({"url": "http://hooks.example.com/"}))).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["details"]["url"].as_str().is_some_and(|reason| reason.contains("https")), "{answer}");
    create(&server, json!({"url": "https://hooks.example.com/"})).await;
    server.stop().await;
}
