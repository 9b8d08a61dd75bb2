//! Payout gateways: the simulated gateway's documented test cards and idempotency, and the HTTP gateway
//! against a local server that verifies its signature and answers each case by card number.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use payledger::gateway::*;
use sha2::Sha256;
use tokio::net::TcpListener;
use uuid::Uuid;

const SECRET: &str = "whsec_gateway_test_secret";

fn card(number: &str) -> GatewayRecipient {
    GatewayRecipient::Card { number: number.to_owned(), holder: "Иван Иванов".to_owned() }
}

fn bank_account() -> GatewayRecipient {
    GatewayRecipient::BankAccount {
        account_number: "40817810099910004312".to_owned(),
        bik: "044525225".to_owned(),
        holder: "ООО Ромашка".to_owned(),
    }
}

fn request(recipient: GatewayRecipient) -> GatewayRequest {
    GatewayRequest {
        payout_id: Uuid::new_v4(),
        amount_minor: 150_000,
        currency: "RUB".to_owned(),
        minor_digits: 2,
        recipient,
        description: "Тестовая выплата".to_owned(),
    }
}

fn completed(id: Uuid) -> GatewayOutcome {
    GatewayOutcome::Completed { reference: format!("sim-{}", id.simple()) }
}

// ------------------------------------------------------------------------------------------------------
// Simulated gateway
// ------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn simulated_ordinary_cards_and_bank_accounts_complete() {
    let gateway = SimulatedGateway::new(Duration::ZERO);
    for recipient in [card("4111111111111111"), card("4111 1111 1111 1111"), card("5555555555554444"), bank_account()] {
        let request = request(recipient);
        assert_eq!(gateway.pay(&request).await, Ok(completed(request.payout_id)));
    }
}

#[tokio::test]
async fn simulated_declined_card_always_declines_with_the_documented_reason() {
    let gateway = SimulatedGateway::new(Duration::ZERO);
    let request = request(card(DECLINED_CARD));
    for _ in 0..3 {
        assert_eq!(gateway.pay(&request).await, Ok(GatewayOutcome::Declined { reason: "card_declined".to_owned() }));
    }
    assert_eq!(DECLINED_REASON, "card_declined");
    assert_eq!(gateway.calls(request.payout_id), 3);
}

#[tokio::test]
async fn simulated_timeout_once_card_fails_transiently_then_completes_per_payout() {
    let gateway = SimulatedGateway::new(Duration::ZERO);
    let first = request(card(TIMEOUT_ONCE_CARD));
    let second = request(card(TIMEOUT_ONCE_CARD));

    let error = gateway.pay(&first).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(gateway.final_outcome(first.payout_id), None, "a transient failure is not a final outcome");
    assert_eq!(gateway.pay(&first).await, Ok(completed(first.payout_id)));
    assert_eq!(gateway.pay(&first).await, Ok(completed(first.payout_id)));
    assert_eq!(gateway.calls(first.payout_id), 3);

    // Another payout with the same card gets its own first timeout.
    assert!(gateway.pay(&second).await.unwrap_err().is_transient());
    assert_eq!(gateway.pay(&second).await, Ok(completed(second.payout_id)));
}

#[tokio::test]
async fn simulated_always_timeout_card_never_gives_a_final_outcome() {
    let gateway = SimulatedGateway::new(Duration::ZERO);
    let request = request(card(ALWAYS_TIMEOUT_CARD));
    for _ in 0..5 {
        assert!(matches!(gateway.pay(&request).await, Err(GatewayError::Transient(_))));
    }
    assert_eq!(gateway.calls(request.payout_id), 5);
    assert_eq!(gateway.final_outcome(request.payout_id), None);
}

#[tokio::test]
async fn simulated_invalid_card_number_is_declined() {
    let gateway = SimulatedGateway::new(Duration::ZERO);
    for number in ["4111111111111112", "1234", "4111-1111-1111-1111"] {
        let request = request(card(number));
        assert_eq!(
            gateway.pay(&request).await,
            Ok(GatewayOutcome::Declined { reason: INVALID_CARD_REASON.to_owned() }),
            "{number}"
        );
    }
}

#[tokio::test]
async fn simulated_replay_returns_the_first_final_outcome_and_counts_calls() {
    let gateway = SimulatedGateway::new(Duration::ZERO);
    let paid = request(card("4111111111111111"));
    let declined = request(card(DECLINED_CARD));
    assert_eq!(gateway.calls(paid.payout_id), 0);

    let first = gateway.pay(&paid).await;
    for _ in 0..4 {
        assert_eq!(gateway.pay(&paid).await, first);
    }
    gateway.pay(&declined).await.unwrap();

    // A retry with the same key but a changed description is still the same payout.
    let mut redescribed = paid.clone();
    redescribed.description = "другое описание".to_owned();
    assert_eq!(gateway.pay(&redescribed).await, first);

    assert_eq!(gateway.calls(paid.payout_id), 6);
    assert_eq!(gateway.calls(declined.payout_id), 1);
    assert_eq!(gateway.calls(Uuid::new_v4()), 0);
    assert_eq!(gateway.total_calls(), 7);
    assert_eq!(gateway.final_outcome(paid.payout_id), first.ok());
    assert_eq!(gateway.final_outcome_count(), 2);
}

#[tokio::test]
async fn simulated_key_reused_for_a_different_payment_is_refused() {
    let gateway = SimulatedGateway::new(Duration::ZERO);
    let original = request(card("4111111111111111"));
    gateway.pay(&original).await.unwrap();

    let mut more = original.clone();
    more.amount_minor += 1;
    assert!(matches!(gateway.pay(&more).await, Err(GatewayError::Permanent(_))));
    let mut elsewhere = original.clone();
    elsewhere.recipient = bank_account();
    assert!(matches!(gateway.pay(&elsewhere).await, Err(GatewayError::Permanent(_))));
    assert_eq!(gateway.final_outcome(original.payout_id), Some(completed(original.payout_id)));
}

#[tokio::test]
async fn simulated_concurrent_calls_with_one_key_share_one_outcome() {
    let gateway = Arc::new(SimulatedGateway::new(Duration::from_millis(20)));
    let request = Arc::new(request(card(TIMEOUT_ONCE_CARD)));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let gateway = Arc::clone(&gateway);
            let request = Arc::clone(&request);
            tokio::spawn(async move { gateway.pay(&request).await })
        })
        .collect();
    let mut transient = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) => assert_eq!(outcome, completed(request.payout_id)),
            Err(error) => {
                assert!(error.is_transient());
                transient += 1;
            }
        }
    }
    assert_eq!(transient, 1, "exactly one call is the first");
    assert_eq!(gateway.calls(request.payout_id), 8);
}

#[tokio::test]
async fn simulated_latency_is_applied() {
    let gateway = SimulatedGateway::new(Duration::from_millis(50));
    let started = std::time::Instant::now();
    gateway.pay(&request(card("4111111111111111"))).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn build_gives_a_working_gateway_from_configuration() {
    let gateway = build(&GatewayConfig::Simulated { latency: Duration::ZERO }).unwrap();
    let request = request(card(DECLINED_CARD));
    assert!(matches!(gateway.pay(&request).await, Ok(GatewayOutcome::Declined { .. })));
    assert!(
        matches!(GatewayConfig::default(), GatewayConfig::Simulated { latency } if latency == DEFAULT_SIMULATED_LATENCY)
    );

    assert!(build(&GatewayConfig::http("http://127.0.0.1:9/payouts", SECRET)).is_ok());
    assert!(matches!(
        build(&GatewayConfig::http("http://127.0.0.1:9/payouts", "")),
        Err(GatewayConfigError::InvalidSecret(_))
    ));
    assert!(matches!(
        build(&GatewayConfig::http("ftp://127.0.0.1/payouts", SECRET)),
        Err(GatewayConfigError::UnsupportedScheme { .. })
    ));
}

#[tokio::test]
async fn build_sets_up_tls_for_https_urls_without_panicking() {
    // The plain-http test server answers our TLS ClientHello with garbage, so the handshake really starts
    // (the ring provider does its work; no process-wide provider is installed) and then fails, which must
    // be a transient error rather than a panic.
    let (url, server) = start_server().await;
    let url = url.replacen("http://", "https://", 1);
    match build(&GatewayConfig::http(url, SECRET)) {
        Ok(gateway) => {
            let result = gateway.pay(&request(card("4111111111111111"))).await;
            assert!(matches!(result, Err(GatewayError::Transient(_))), "{result:?}");
            assert!(server.seen.lock().unwrap().is_empty());
        }
        // A machine without a system certificate bundle cannot verify any server: refused at start-up.
        Err(error) => assert!(matches!(error, GatewayConfigError::Tls(_)), "{error:?}"),
    }
}

// ------------------------------------------------------------------------------------------------------
// HTTP gateway against a local server
// ------------------------------------------------------------------------------------------------------

const COMPLETE_CARD: &str = "4111111111111111";
const DECLINE_CARD: &str = "4000000000000002";
const SERVER_ERROR_CARD: &str = "4000000000000500";
const RATE_LIMITED_CARD: &str = "4000000000000429";
const REQUEST_TIMEOUT_CARD: &str = "4000000000000408";
const BAD_REQUEST_CARD: &str = "4000000000000400";
const GARBAGE_CARD: &str = "4000000000000999";
const UNKNOWN_STATUS_CARD: &str = "4000000000000202";
const SLOW_CARD: &str = "4000000000000777";

/// What the test server saw of one request whose signature verified.
#[derive(Clone, Debug)]
struct Seen {
    idempotency_key: String,
    content_type: String,
    timestamp: i64,
    body: serde_json::Value,
}

#[derive(Clone, Default)]
struct ServerState {
    seen: Arc<Mutex<Vec<Seen>>>,
    rejected_signatures: Arc<Mutex<u32>>,
}

/// Verifies `t=<t>,v1=<hex>` against HMAC-SHA256(SECRET, "<t>.<raw body>"), computed here independently
/// of the gateway's own code.
fn verify_signature(header: &str, body: &[u8]) -> Option<i64> {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.split_once('=')? {
            ("t", value) => timestamp = Some(value),
            ("v1", value) => signature = Some(value),
            _ => return None,
        }
    }
    let (timestamp, signature) = (timestamp?, signature?);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).ok()?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    (expected == signature).then(|| timestamp.parse().ok()).flatten()
}

async fn payouts(State(state): State<ServerState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let Some(timestamp) = verify_signature(&header("x-payledger-signature"), &body) else {
        *state.rejected_signatures.lock().unwrap() += 1;
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not json").into_response();
    };
    state.seen.lock().unwrap().push(Seen {
        idempotency_key: header("idempotency-key"),
        content_type: header("content-type"),
        timestamp,
        body: json.clone(),
    });
    let id = json["payout_id"].as_str().unwrap_or_default().to_owned();
    let number = json["recipient"]["number"].as_str().or(json["recipient"]["account_number"].as_str());
    let completed = || axum::Json(serde_json::json!({"status": "completed", "reference": format!("gw-{id}")}));
    match number.unwrap_or_default() {
        DECLINE_CARD => {
            axum::Json(serde_json::json!({"status": "declined", "reason": "insufficient_funds"})).into_response()
        }
        SERVER_ERROR_CARD => (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response(),
        RATE_LIMITED_CARD => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        REQUEST_TIMEOUT_CARD => (StatusCode::REQUEST_TIMEOUT, "").into_response(),
        BAD_REQUEST_CARD => {
            (StatusCode::BAD_REQUEST, format!("invalid card {BAD_REQUEST_CARD}: {}", "x".repeat(1000))).into_response()
        }
        GARBAGE_CARD => (StatusCode::OK, "<html>definitely not json</html>").into_response(),
        UNKNOWN_STATUS_CARD => {
            (StatusCode::ACCEPTED, axum::Json(serde_json::json!({"status": "pending"}))).into_response()
        }
        SLOW_CARD => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            completed().into_response()
        }
        _ => completed().into_response(),
    }
}

async fn start_server() -> (String, ServerState) {
    let state = ServerState::default();
    let app = Router::new().route("/payouts", post(payouts)).with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/payouts"), state)
}

fn http_gateway(url: &str, secret: &str, timeout: Duration) -> HttpGateway {
    HttpGateway::new(url, secret, timeout, Duration::from_secs(2)).unwrap()
}

#[tokio::test]
async fn http_gateway_sends_signed_json_with_the_idempotency_key() {
    let (url, server) = start_server().await;
    let gateway = http_gateway(&url, SECRET, Duration::from_secs(5));
    let request = request(card(COMPLETE_CARD));

    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let outcome = gateway.pay(&request).await;
    let after = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(outcome, Ok(GatewayOutcome::Completed { reference: format!("gw-{}", request.payout_id) }));

    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the signature verified and the request was recorded");
    assert_eq!(*server.rejected_signatures.lock().unwrap(), 0);
    let seen = &seen[0];
    assert_eq!(seen.idempotency_key, request.payout_id.to_string());
    assert_eq!(seen.content_type, "application/json");
    assert!((before..=after).contains(&seen.timestamp), "t={} not in {before}..={after}", seen.timestamp);
    assert_eq!(
        seen.body,
        serde_json::json!({
            "payout_id": request.payout_id.to_string(),
            "amount": "1500.00",
            "currency": "RUB",
            "recipient": {"type": "card", "number": COMPLETE_CARD, "holder": "Иван Иванов"},
            "description": "Тестовая выплата",
        })
    );
}

#[tokio::test]
async fn http_gateway_sends_bank_accounts_in_full() {
    let (url, server) = start_server().await;
    let gateway = http_gateway(&url, SECRET, Duration::from_secs(5));
    let mut request = request(bank_account());
    request.amount_minor = 5;
    assert!(matches!(gateway.pay(&request).await, Ok(GatewayOutcome::Completed { .. })));
    let seen = server.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.body["amount"], "0.05");
    assert_eq!(
        seen.body["recipient"],
        serde_json::json!({
            "type": "bank_account",
            "account_number": "40817810099910004312",
            "bik": "044525225",
            "holder": "ООО Ромашка",
        })
    );
}

#[tokio::test]
async fn http_gateway_maps_each_answer() {
    let (url, server) = start_server().await;
    let gateway = http_gateway(&url, SECRET, Duration::from_secs(5));

    let declined = gateway.pay(&request(card(DECLINE_CARD))).await;
    assert_eq!(declined, Ok(GatewayOutcome::Declined { reason: "insufficient_funds".to_owned() }));

    for (number, status) in
        [(SERVER_ERROR_CARD, "500"), (RATE_LIMITED_CARD, "429"), (REQUEST_TIMEOUT_CARD, "408"), (GARBAGE_CARD, "200")]
    {
        match gateway.pay(&request(card(number))).await {
            Err(GatewayError::Transient(message)) => assert!(message.contains(status), "{number}: {message}"),
            other => panic!("{number}: expected a transient error, got {other:?}"),
        }
    }
    match gateway.pay(&request(card(UNKNOWN_STATUS_CARD))).await {
        Err(GatewayError::Transient(message)) => assert!(message.contains("202"), "{message}"),
        other => panic!("expected a transient error, got {other:?}"),
    }

    match gateway.pay(&request(card(BAD_REQUEST_CARD))).await {
        Err(GatewayError::Permanent(message)) => {
            assert!(message.contains("400"), "{message}");
            assert!(message.chars().count() < 300, "the body is truncated: {} chars", message.chars().count());
            assert!(!message.contains(BAD_REQUEST_CARD), "an echoed card number is masked: {message}");
            assert!(message.contains("•••• 0400"), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(*server.rejected_signatures.lock().unwrap(), 0);
}

#[tokio::test]
async fn http_gateway_replays_use_the_same_idempotency_key() {
    let (url, server) = start_server().await;
    let gateway = http_gateway(&url, SECRET, Duration::from_secs(5));
    let request = request(card(SERVER_ERROR_CARD));
    for _ in 0..3 {
        assert!(gateway.pay(&request).await.unwrap_err().is_transient());
    }
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|seen| seen.idempotency_key == request.payout_id.to_string()));
}

#[tokio::test]
async fn http_gateway_times_out_transiently() {
    // It checks how long giving up took.
    let _quiet = crate::common::load::quiet().await;
    let (url, _server) = start_server().await;
    let gateway = http_gateway(&url, SECRET, Duration::from_millis(300));
    let started = std::time::Instant::now();
    match gateway.pay(&request(card(SLOW_CARD))).await {
        Err(GatewayError::Transient(message)) => assert!(message.contains("300 ms"), "{message}"),
        other => panic!("expected a transient timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3), "gave up after {:?}", started.elapsed());
}

#[tokio::test]
async fn http_gateway_with_the_wrong_secret_fails_permanently() {
    let (url, server) = start_server().await;
    let gateway = http_gateway(&url, "not-the-shared-secret", Duration::from_secs(5));
    match gateway.pay(&request(card(COMPLETE_CARD))).await {
        Err(GatewayError::Permanent(message)) => assert!(message.contains("401"), "{message}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(*server.rejected_signatures.lock().unwrap(), 1);
    assert!(server.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn http_gateway_connection_refused_is_transient() {
    // It counts on the port it dropped staying free.
    let _quiet = crate::common::load::quiet().await;
    // Bind and drop a listener to get a port that nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let gateway = http_gateway(&format!("http://127.0.0.1:{port}/payouts"), SECRET, Duration::from_secs(5));
    let error = gateway.pay(&request(card(COMPLETE_CARD))).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn http_gateway_refuses_an_invalid_request_without_sending_it() {
    let (url, server) = start_server().await;
    let gateway = http_gateway(&url, SECRET, Duration::from_secs(5));
    let mut request = request(card(COMPLETE_CARD));
    request.amount_minor = 0;
    assert!(matches!(gateway.pay(&request).await, Err(GatewayError::Permanent(_))));
    assert!(server.seen.lock().unwrap().is_empty());
}
