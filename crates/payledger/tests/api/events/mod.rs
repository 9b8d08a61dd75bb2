//! Outbound events against the real server: the outbox, delivery to a real receiver that verifies every
//! signature with its own implementation (`receiver.rs`), retries, disabling, and the SSRF guard.

mod delivery;
mod outbox;
mod processes;
pub mod receiver;

use std::time::Duration;

use payledger::config::Settings;
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer};

/// Settings whose delivery workers reach receivers on loopback and retry within seconds.
pub fn event_settings(db: &TestDb) -> Settings {
    let mut settings = crate::common::settings(db);
    let events = &mut settings.payouts.events;
    events.allowed_networks = vec!["127.0.0.0/8".parse().expect("network")];
    events.retry_schedule = "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s".to_owned();
    events.timeout = Duration::from_millis(1500);
    events.lease = Duration::from_secs(10);
    events.poll = Duration::from_millis(20);
    settings
}

/// Registers an endpoint for `types` at `url` and returns its id and secret.
pub async fn register(server: &TestServer, url: &str, types: &[&str]) -> (String, String) {
    let body = json!({"url": url, "description": "test receiver", "event_types": types});
    let answer = server.post("/api/v1/webhook-endpoints/", body.to_string(), None).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let id = answer.json["id"].as_str().expect("endpoint id").to_owned();
    let secret = answer.json["secret"].as_str().expect("secret").to_owned();
    (id, secret)
}

/// An endpoint as the API shows it.
pub async fn endpoint(server: &TestServer, id: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/webhook-endpoints/{id}/")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// An endpoint's deliveries in a status (first page).
pub async fn deliveries(server: &TestServer, id: &str, status: &str) -> Vec<Value> {
    let (code, body) =
        server.get(&format!("/api/v1/webhook-endpoints/{id}/deliveries/?status={status}&limit=500")).await;
    assert_eq!(code, 200, "{body}");
    body["results"].as_array().cloned().unwrap_or_default()
}
