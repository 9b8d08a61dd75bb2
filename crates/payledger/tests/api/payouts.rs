//! The payout API and its workers against the real server, on SQLite and PostgreSQL: the life cycle, holds
//! on a source account, validation, filters and ordering, dead jobs and their retry.

use std::time::Duration;

use crate::common::{self, Backend, TestDb, TestServer, kopecks, notice, on_both_backends};
use payledger::config::Settings;
use payledger::gateway::{ALWAYS_TIMEOUT_CARD, DECLINED_CARD, TIMEOUT_ONCE_CARD};
use serde_json::{Value, json};
use uuid::Uuid;

on_both_backends!(
    a_payout_is_created_pending_and_a_worker_completes_it,
    gateway_outcomes_fail_retry_and_go_dead,
    a_source_is_held_captured_released_and_returned,
    cancel_delete_and_patch_follow_the_state_machine,
    invalid_payouts_are_refused_with_field_details,
    lists_filter_order_and_paginate,
);

const CARD: &str = "4111111111111111";

fn card_payout(amount: &str, number: &str) -> Value {
    json!({"amount": amount, "currency": "RUB",
           "recipient_details": {"type": "card", "number": number, "holder": "Иван Иванов"},
           "description": "Тестовая выплата"})
}

fn without_workers(db: &TestDb) -> Settings {
    let mut settings = common::settings(db);
    settings.payouts.workers = 0;
    settings
}

async fn create(server: &TestServer, body: &Value) -> Value {
    let answer = server.post("/api/v1/payouts/", body.to_string(), None).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.json
}

/// Polls a payout until it reaches `status` (workers run in the background).
async fn wait_for(server: &TestServer, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        let (code, payout) = server.get(&format!("/api/v1/payouts/{id}/")).await;
        assert_eq!(code, 200, "{payout}");
        if payout["status"] == status {
            return payout;
        }
        last = payout;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("payout {id} never became {status}: {last}");
}

async fn send(server: &TestServer, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = server.client.request(method, server.url(path));
    if let Some(body) = body {
        request = request.header("Content-Type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn a_payout_is_created_pending_and_a_worker_completes_it(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    // First without workers, to see the answer at creation and the alias path.
    let server = TestServer::start(without_workers(&db)).await;
    let answer = server.post("/api/payouts/", card_payout("1500.00", CARD).to_string(), None).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let created = answer.json;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["amount"], "1500.00");
    assert_eq!(created["currency"], "RUB");
    assert_eq!(created["recipient_details"], json!({"type": "card", "number": "•••• 1111", "holder": "Иван Иванов"}));
    assert_eq!(created["attempts"], 0);
    assert_eq!(created["source"], Value::Null);
    assert!(!answer.text.contains(CARD), "the full card number never leaves the server");
    let id = created["id"].as_str().expect("id").to_owned();
    Uuid::parse_str(&id).expect("a UUID id");
    server.stop().await;

    let server = TestServer::start(common::settings(&db)).await;
    let done = wait_for(&server, &id, "completed").await;
    assert_eq!(done["gateway_reference"], format!("sim-{}", Uuid::parse_str(&id).expect("id").simple()));
    assert_eq!(done["attempts"], 1);
    let history: Vec<(Value, Value, Value)> = done["status_history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|change| (change["from"].clone(), change["to"].clone(), change["actor"].clone()))
        .collect();
    assert_eq!(
        history,
        vec![
            (Value::Null, json!("pending"), json!("client")),
            (json!("pending"), json!("processing"), json!("worker")),
            (json!("processing"), json!("completed"), json!("worker")),
        ]
    );
    let (_, list) = server.get("/api/v1/payouts/").await;
    assert!(!list.to_string().contains(CARD));
    server.stop().await;
    // Stored encrypted: the number is nowhere in the payouts table.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM payouts WHERE recipient_secret LIKE '%4111111111111111%'").await,
        0,
        "the number is stored encrypted"
    );
    db.assert_verified().await;
}

async fn gateway_outcomes_fail_retry_and_go_dead(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let mut settings = common::settings(&db);
    settings.payouts.max_attempts = 3;
    let server = TestServer::start(settings).await;

    let declined = create(&server, &card_payout("10.00", DECLINED_CARD)).await;
    let declined_id = declined["id"].as_str().expect("id").to_owned();
    let declined = wait_for(&server, &declined_id, "failed").await;
    assert_eq!(declined["failure_reason"], "declined: card_declined");
    // Only the retry endpoint puts a failed payout back to pending; PATCH cannot.
    let (status, refused) = send(
        &server,
        reqwest::Method::PATCH,
        &format!("/api/v1/payouts/{declined_id}/"),
        Some(json!({"status": "pending"})),
    )
    .await;
    assert_eq!((status, refused["code"].clone()), (409, json!("invalid_transition")), "{refused}");

    let once = create(&server, &card_payout("11.00", TIMEOUT_ONCE_CARD)).await;
    let once = wait_for(&server, once["id"].as_str().expect("id"), "completed").await;
    assert_eq!(once["attempts"], 2, "one transient failure, then success: {once}");

    let never = create(&server, &card_payout("12.00", ALWAYS_TIMEOUT_CARD)).await;
    let id = never["id"].as_str().expect("id").to_owned();
    let never = wait_for(&server, &id, "failed").await;
    assert!(
        never["failure_reason"].as_str().is_some_and(|r| r.starts_with("gateway unavailable after 3 attempts")),
        "{never}"
    );
    let (status, dead) = server.get("/api/v1/jobs/?status=dead").await;
    assert_eq!(status, 200);
    let dead = dead.as_array().cloned().unwrap_or_default();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["payload"], id);
    assert_eq!(dead[0]["attempts"], 3);
    assert!(dead[0]["last_error"].is_string());

    // Retrying the dead job puts the payout back to pending with a fresh job (which will fail again here).
    let job = dead[0]["id"].as_i64().expect("job id");
    let (status, retried) = send(&server, reqwest::Method::POST, &format!("/api/v1/jobs/{job}/retry/"), None).await;
    assert_eq!(status, 200, "{retried}");
    assert!(["pending", "processing"].contains(&retried["status"].as_str().unwrap_or("")), "{retried}");
    let (status, again) = send(&server, reqwest::Method::POST, &format!("/api/v1/jobs/{job}/retry/"), None).await;
    assert_eq!((status, again["code"].clone()), (409, json!("job_not_dead")));
    let (_, queued) = server.get("/api/v1/jobs/?status=queued").await;
    let fresh = queued.as_array().and_then(|jobs| jobs.iter().find(|j| j["payload"] == id.as_str()).cloned());
    if let Some(fresh) = fresh {
        assert_eq!(fresh["max_attempts"], 3, "the retried job gets the configured attempts");
    }
    wait_for(&server, &id, "failed").await;
    server.stop().await;
    db.assert_verified().await;
}

async fn a_source_is_held_captured_released_and_returned(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(without_workers(&db)).await;
    let inn = "7707083893";
    assert_eq!(server.post_webhook(&notice(Uuid::new_v4(), json!("1000.00"), inn)).await.0, 200);
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 7, "amount": "300.00"}"#, None).await.status, 201);

    let mut from_org = card_payout("400.00", CARD);
    from_org["source"] = json!({"organization_inn": inn});
    let org_payout = create(&server, &from_org).await;
    assert_eq!(org_payout["source"], json!({"organization_inn": inn}));
    let mut declined_org = card_payout("100.00", DECLINED_CARD);
    declined_org["source"] = json!({"organization_inn": inn});
    create(&server, &declined_org).await;
    let mut too_much = card_payout("600.00", CARD);
    too_much["source"] = json!({"organization_inn": inn});
    let refused = server.post("/api/v1/payouts/", too_much.to_string(), None).await;
    assert_eq!((refused.status, refused.json["available"].clone()), (409, json!("500.00")), "{}", refused.text);

    let mut from_user = card_payout("250.00", CARD);
    from_user["source"] = json!({"user_id": 7});
    let user_payout = create(&server, &from_user).await;
    assert_eq!(server.user_balance(7).await, Some(("50.00".into(), "250.00".into())), "held at creation");
    let mut unknown = card_payout("1.00", CARD);
    unknown["source"] = json!({"user_id": 8});
    assert_eq!(server.post("/api/v1/payouts/", unknown.to_string(), None).await.status, 404);
    server.stop().await;

    // Workers: the org payout completes (captured), the declined one fails (released).
    let server = TestServer::start(common::settings(&db)).await;
    wait_for(&server, org_payout["id"].as_str().expect("id"), "completed").await;
    let user_id = user_payout["id"].as_str().expect("id").to_owned();
    wait_for(&server, &user_id, "completed").await;
    for _ in 0..200 {
        if server.balance_text(inn).await.as_deref() == Some("600.00") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(server.balance_text(inn).await.as_deref(), Some("600.00"), "1000 - 400 paid; the declined 100 released");
    assert_eq!(server.user_balance(7).await, Some(("50.00".into(), "0.00".into())));

    // An operator marks the user's payout returned: the money goes back to the user.
    let (status, returned) = send(
        &server,
        reqwest::Method::PATCH,
        &format!("/api/v1/payouts/{user_id}/"),
        Some(json!({"status": "returned"})),
    )
    .await;
    assert_eq!((status, returned["status"].clone()), (200, json!("returned")), "{returned}");
    assert_eq!(server.user_balance(7).await, Some(("300.00".into(), "0.00".into())));
    let (_, history) = server.get("/api/users/7/transactions/?order=asc").await;
    let kinds: Vec<&str> = history["results"]
        .as_array()
        .map_or(vec![], |l| l.iter().filter_map(|x| x["transaction_type"].as_str()).collect());
    assert_eq!(kinds, ["deposit", "payout_hold", "payout", "payout_return"]);
    let sum: i64 = history["results"]
        .as_array()
        .map_or(0, |l| l.iter().map(|x| kopecks(x["available_change"].as_str().unwrap_or("0"))).sum());
    assert_eq!(sum, 30_000, "the user's history adds up to the balance");
    server.stop().await;
    db.assert_verified().await;

    // A payout whose status disagrees with its hold is caught.
    db.execute("UPDATE payouts SET status = 'failed' WHERE status = 'completed' AND hold_reference IS NOT NULL").await;
    let problems = db.store().await.verify().await.expect("verify").problems;
    assert!(problems.iter().any(|p| p.contains("as its status says")), "{problems:?}");
}

async fn cancel_delete_and_patch_follow_the_state_machine(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(without_workers(&db)).await;
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 3, "amount": "100.00"}"#, None).await.status, 201);
    let mut held = card_payout("40.00", CARD);
    held["source"] = json!({"user_id": 3});
    let payout = create(&server, &held).await;
    let id = payout["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/payouts/{id}/");

    let (status, edited) = send(&server, reqwest::Method::PATCH, &path, Some(json!({"description": "new text"}))).await;
    assert_eq!((status, edited["description"].clone()), (200, json!("new text")));
    for to in ["processing", "completed", "failed", "returned", "pending"] {
        let (status, refused) = send(&server, reqwest::Method::PATCH, &path, Some(json!({"status": to}))).await;
        assert_eq!((status, refused["code"].clone()), (409, json!("invalid_transition")), "{to}: {refused}");
        let message = refused["error"].as_str().unwrap_or_default();
        assert!(message.contains("pending") && message.contains(to), "the message names both states: {message}");
    }
    let (status, bad) = send(&server, reqwest::Method::PATCH, &path, Some(json!({"status": "paid"}))).await;
    assert_eq!((status, bad["details"]["status"].is_string()), (400, true));
    // A PATCH is all or nothing: a refused status leaves the description as it was.
    let both = json!({"description": "changed", "status": "completed"});
    assert_eq!(send(&server, reqwest::Method::PATCH, &path, Some(both)).await.0, 409);
    assert_eq!(server.get(&path).await.1["description"], "new text");

    // DELETE of a pending payout cancels it (GET still shows it) and releases the hold.
    assert_eq!(send(&server, reqwest::Method::DELETE, &path, None).await.0, 204);
    let (status, cancelled) = server.get(&path).await;
    assert_eq!((status, cancelled["status"].clone()), (200, json!("cancelled")));
    assert_eq!(server.user_balance(3).await, Some(("100.00".into(), "0.00".into())));
    let (status, _) = send(&server, reqwest::Method::PATCH, &path, Some(json!({"description": "late"}))).await;
    assert_eq!(status, 409, "a cancelled payout cannot be edited");
    // DELETE of a cancelled payout archives it: gone from GET and lists, its history kept.
    assert_eq!(send(&server, reqwest::Method::DELETE, &path, None).await.0, 204);
    assert_eq!(server.get(&path).await.0, 404);
    let (_, list) = server.get("/api/v1/payouts/").await;
    assert_eq!(list["count"], 0);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM payout_events").await, 3, "created, cancelled, archived");
    assert_eq!(send(&server, reqwest::Method::DELETE, &path, None).await.0, 404);

    // PATCH status cancelled works too; a completed payout cannot be deleted or edited.
    let other = create(&server, &card_payout("5.00", CARD)).await;
    let other_path = format!("/api/v1/payouts/{}/", other["id"].as_str().expect("id"));
    let (status, cancelled) =
        send(&server, reqwest::Method::PATCH, &other_path, Some(json!({"status": "cancelled"}))).await;
    assert_eq!((status, cancelled["status"].clone()), (200, json!("cancelled")));
    server.stop().await;

    let server = TestServer::start(common::settings(&db)).await;
    let last = create(&server, &card_payout("6.00", CARD)).await;
    let last_id = last["id"].as_str().expect("id").to_owned();
    wait_for(&server, &last_id, "completed").await;
    let last_path = format!("/api/v1/payouts/{last_id}/");
    let (status, refused) = send(&server, reqwest::Method::DELETE, &last_path, None).await;
    assert_eq!((status, refused["code"].clone()), (409, json!("invalid_transition")));
    let (status, _) = send(&server, reqwest::Method::PATCH, &last_path, Some(json!({"description": "x"}))).await;
    assert_eq!(status, 409);
    assert_eq!(server.get("/api/v1/payouts/00000000-0000-0000-0000-000000000000/").await.0, 404);
    assert_eq!(server.get("/api/v1/payouts/not-a-uuid/").await.0, 400);
    server.stop().await;
    db.assert_verified().await;
}

async fn invalid_payouts_are_refused_with_field_details(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(without_workers(&db)).await;
    let card = |number: &str, holder: &str| json!({"type": "card", "number": number, "holder": holder});
    let account = |number: &str, bik: &str| json!({"type": "bank_account", "account_number": number, "bik": bik, "holder": "ООО Ромашка"});
    let base = |amount: Value, currency: &str, details: Value| json!({"amount": amount, "currency": currency, "recipient_details": details});
    let cases: Vec<(Value, &str)> = vec![
        (base(json!("0"), "RUB", card(CARD, "A")), "amount"),
        (base(json!("-1.00"), "RUB", card(CARD, "A")), "amount"),
        (base(json!("1.001"), "RUB", card(CARD, "A")), "amount"),
        (base(json!("1.5"), "JPY", card(CARD, "A")), "amount"),
        (base(json!("1.00"), "XAU", card(CARD, "A")), "currency"),
        (base(json!("1.00"), "RUBX", card(CARD, "A")), "currency"),
        (base(json!("1.00"), "RUB", card("4111111111111112", "A")), "recipient_details.number"),
        (base(json!("1.00"), "RUB", card("411111111111", "A")), "recipient_details.number"),
        (base(json!("1.00"), "RUB", card(CARD, "  ")), "recipient_details.holder"),
        (base(json!("1.00"), "RUB", card(CARD, &"x".repeat(101))), "recipient_details.holder"),
        (base(json!("1.00"), "RUB", account("4070281000000000000", "044525225")), "recipient_details.account_number"),
        (base(json!("1.00"), "RUB", account("40702810000000000001", "04452522")), "recipient_details.bik"),
        (base(json!("1.00"), "RUB", account("40702810000000000001", "044525225")), "recipient_details.account_number"),
        (base(json!("1.00"), "RUB", json!({"type": "cash"})), "recipient_details.type"),
        (base(json!("1.00"), "RUB", json!("card")), "recipient_details"),
        (json!({"amount": "1.00", "currency": "RUB"}), "recipient_details"),
        (json!({"amount": "1.00", "recipient_details": card(CARD, "A")}), "currency"),
    ];
    for (body, field) in cases {
        let answer = server.post("/api/v1/payouts/", body.to_string(), None).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert!(answer.json["details"][field].is_string(), "{body} should name {field}: {}", answer.text);
        assert!(!answer.text.contains("4111111111111112"), "errors never echo a card number");
    }
    let mut long = card_payout("1.00", CARD);
    long["description"] = json!("x".repeat(501));
    assert_eq!(server.post("/api/v1/payouts/", long.to_string(), None).await.status, 400);
    let mut two_sources = card_payout("1.00", CARD);
    two_sources["source"] = json!({"organization_inn": "7707083893", "user_id": 1});
    let answer = server.post("/api/v1/payouts/", two_sources.to_string(), None).await;
    assert_eq!((answer.status, answer.json["details"]["source"].is_string()), (400, true));
    // Valid ones: a bank account with a matching key, yen without decimals, dinars with three.
    let valid_account = json!({"amount": "1.00", "currency": "RUB", "recipient_details":
        {"type": "bank_account", "account_number": "40702810200000000001", "bik": "044525225", "holder": "ООО Ромашка"}});
    let answer = server.post("/api/v1/payouts/", valid_account.to_string(), None).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.json["recipient_details"]["account_number"], "•••• 0001");
    assert_eq!(create(&server, &base(json!("1500"), "JPY", card(CARD, "A"))).await["amount"], "1500");
    assert_eq!(create(&server, &base(json!("1.234"), "kwd", card(CARD, "A"))).await["amount"], "1.234");
    server.stop().await;
}

async fn lists_filter_order_and_paginate(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(without_workers(&db)).await;
    let mut ids = Vec::new();
    for amount in ["30.00", "10.00", "20.00", "50.00", "40.00"] {
        ids.push(create(&server, &card_payout(amount, CARD)).await["id"].as_str().expect("id").to_owned());
    }
    let usd = json!({"amount": "7.00", "currency": "USD",
        "recipient_details": {"type": "card", "number": CARD, "holder": "John"}});
    create(&server, &usd).await;
    let cancel = format!("/api/v1/payouts/{}/", ids[0]);
    assert_eq!(send(&server, reqwest::Method::DELETE, &cancel, None).await.0, 204);

    let amounts = |page: &Value| -> Vec<String> {
        page["results"]
            .as_array()
            .map_or(vec![], |r| r.iter().map(|p| p["amount"].as_str().unwrap_or("").to_owned()).collect())
    };
    let (_, page) = server.get("/api/v1/payouts/?currency=RUB&ordering=amount&page_size=2").await;
    assert_eq!(page["count"], 5);
    assert_eq!(amounts(&page), ["10.00", "20.00"]);
    assert_eq!(page["previous"], Value::Null);
    let next = page["next"].as_str().expect("next").to_owned();
    let (_, page) = server.get(&next).await;
    assert_eq!(amounts(&page), ["30.00", "40.00"]);
    assert!(page["previous"].is_string());
    let (_, page) = server.get("/api/v1/payouts/?currency=RUB&ordering=-amount&page=3&page_size=2").await;
    assert_eq!((amounts(&page), page["next"].clone()), (vec!["10.00".to_owned()], Value::Null));
    let (_, page) = server.get("/api/v1/payouts/?ordering=created_at").await;
    assert_eq!(page["results"][0]["id"], ids[0].as_str());
    let (_, page) = server.get("/api/v1/payouts/").await;
    assert_eq!(page["results"][0]["currency"], "USD", "newest first by default");
    let (_, page) = server.get("/api/v1/payouts/?status=cancelled").await;
    assert_eq!((page["count"].clone(), amounts(&page)), (json!(1), vec!["30.00".to_owned()]));
    let (_, page) = server.get("/api/v1/payouts/?currency=usd").await;
    assert_eq!(page["count"], 1);
    let (_, page) =
        server.get("/api/v1/payouts/?created_after=2000-01-01T00:00:00Z&created_before=2000-01-02T00:00:00Z").await;
    assert_eq!(page["count"], 0);
    let (_, page) = server.get("/api/v1/payouts/?created_after=2000-01-01T00:00:00Z").await;
    assert_eq!(page["count"], 6);
    // A cut-off between two payouts: created_after is inclusive, created_before exclusive.
    let (_, oldest_first) = server.get("/api/v1/payouts/?ordering=created_at&page_size=100").await;
    let third = oldest_first["results"][2]["created_at"].as_str().expect("created_at").to_owned();
    let (_, after) = server.get(&format!("/api/v1/payouts/?created_after={third}")).await;
    assert_eq!(after["count"], 4, "the third payout and the three after it");
    let (_, before) = server.get(&format!("/api/v1/payouts/?created_before={third}")).await;
    assert_eq!(before["count"], 2);
    for (query, field) in [
        ("status=paid", "status"),
        ("currency=XXX", "currency"),
        ("ordering=name", "ordering"),
        ("page=0", "page"),
        ("page_size=101", "page_size"),
        ("page=9223372036854775807&page_size=100", "page"),
        ("created_after=yesterday", "created_after"),
    ] {
        let (status, body) = server.get(&format!("/api/v1/payouts/?{query}")).await;
        assert_eq!((status, body["details"][field].is_string()), (400, true), "{query}: {body}");
    }
    server.stop().await;
}

/// The gateway reports a completed payout returned through a signed callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_gateway_callback_marks_a_payout_returned() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 2, "amount": "10.00"}"#, None).await.status, 201);
    let mut body = card_payout("4.00", CARD);
    body["source"] = json!({"user_id": 2});
    let id = create(&server, &body).await["id"].as_str().expect("id").to_owned();
    wait_for(&server, &id, "completed").await;
    server.stop().await;

    let mut settings = without_workers(&db);
    settings.payouts.gateway = payledger::gateway::GatewayConfig::http("http://127.0.0.1:9/pay", "gw-secret");
    let server = TestServer::start(settings).await;
    let event = json!({"payout_id": id, "event": "returned", "reason": "account closed"}).to_string();
    let post = |signature: Option<String>| {
        let mut request = server
            .client
            .post(server.url("/api/v1/gateway/events/"))
            .header("Content-Type", "application/json")
            .body(event.clone());
        if let Some(signature) = signature {
            request = request.header("X-Payledger-Signature", signature);
        }
        request.send()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for bad in [
        None,
        Some(payledger::webhook::signature::sign("wrong", now, event.as_bytes())),
        Some(payledger::webhook::signature::sign("gw-secret", now - 3600, event.as_bytes())),
    ] {
        assert_eq!(post(bad).await.expect("request").status(), 401);
    }
    assert_eq!(server.user_balance(2).await, Some(("6.00".into(), "0.00".into())), "nothing changed");
    let response =
        post(Some(payledger::webhook::signature::sign("gw-secret", now, event.as_bytes()))).await.expect("request");
    assert_eq!(response.status(), 200);
    let payout: Value = response.json().await.expect("json");
    assert_eq!(payout["status"], "returned");
    assert_eq!(server.user_balance(2).await, Some(("10.00".into(), "0.00".into())), "the money came back");
    let again =
        post(Some(payledger::webhook::signature::sign("gw-secret", now, event.as_bytes()))).await.expect("request");
    assert_eq!(again.status(), 409, "returned once");
    server.stop().await;
    db.assert_verified().await;
}

/// An `Idempotency-Key` on payout creation: a retry replays the first answer and creates nothing, another
/// request under the key is refused, a refusal (insufficient funds) is replayed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payout_creation_honours_idempotency_keys() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(without_workers(&db)).await;
    let body = card_payout("15.00", CARD).to_string();
    let first = server.post("/api/v1/payouts/", body.clone(), Some("payout-key-1")).await;
    assert_eq!((first.status, first.replayed), (201, false), "{}", first.text);
    let again = server.post("/api/v1/payouts/", body.clone(), Some("payout-key-1")).await;
    assert_eq!((again.status, again.replayed, again.text.clone()), (201, true, first.text.clone()));
    let other = server.post("/api/v1/payouts/", card_payout("16.00", CARD).to_string(), Some("payout-key-1")).await;
    assert_eq!((other.status, other.json["code"].clone()), (409, json!("idempotency_key_reused")));
    let (_, list) = server.get("/api/v1/payouts/").await;
    assert_eq!(list["count"], 1, "one payout for the key");

    let mut short = card_payout("15.00", CARD);
    short["source"] = json!({"user_id": 1});
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 1, "amount": "10.00"}"#, None).await.status, 201);
    let refused = server.post("/api/v1/payouts/", short.to_string(), Some("payout-key-2")).await;
    assert_eq!(refused.status, 409);
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 1, "amount": "10.00"}"#, None).await.status, 201);
    let replayed = server.post("/api/v1/payouts/", short.to_string(), Some("payout-key-2")).await;
    assert_eq!((replayed.status, replayed.replayed), (409, true), "the refusal is kept under its key");
    let stored: i64 =
        db.scalar("SELECT COUNT(*) FROM idempotency_keys WHERE fingerprint LIKE '%4111111111111111%'").await;
    assert_eq!(stored, 0);
    server.stop().await;
    db.assert_verified().await;
}
