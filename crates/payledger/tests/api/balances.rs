//! The user-balance API over HTTP against the real server, on SQLite and PostgreSQL: every endpoint, every
//! error, the idempotency rules, the history's pagination and the revenue report.

use std::collections::HashSet;

use crate::common::{self, Answer, Backend, TestDb, TestServer, kopecks, on_both_backends};
use serde_json::{Value, json};

on_both_backends!(
    a_deposit_creates_the_account_and_answers_the_transaction_object,
    reserve_deduct_and_release_follow_the_hold_rules,
    refusals_name_the_reason_and_change_nothing,
    invalid_input_is_refused_with_field_details,
    a_transfer_answers_both_sides_and_moves_the_money,
    the_history_pages_stably_in_every_order,
    idempotency_keys_replay_refuse_reuse_and_scope_by_endpoint,
    concurrent_requests_with_one_key_apply_once,
    the_revenue_report_is_csv_or_json_and_reproducible,
    verify_catches_a_history_or_hold_that_disagrees_with_the_ledger,
);

async fn post(server: &TestServer, path: &str, body: Value) -> Answer {
    server.post(path, body.to_string(), None).await
}

async fn deposit(server: &TestServer, user: i64, amount: &str) -> Answer {
    let answer = post(server, "/api/add_funds/", json!({"user_id": user, "amount": amount})).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer
}

fn order(user: i64, service: i64, order: i64, amount: Option<&str>) -> Value {
    let mut body = json!({"user_id": user, "service_id": service, "order_id": order});
    if let Some(amount) = amount {
        body["amount"] = json!(amount);
    }
    body
}

async fn balance(server: &TestServer, user: i64) -> (String, String) {
    server.user_balance(user).await.expect("user exists")
}

async fn a_deposit_creates_the_account_and_answers_the_transaction_object(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    assert_eq!(server.user_balance(1).await, None, "no account before the first deposit");

    let answer = post(&server, "/api/add_funds/", json!({"user_id": 1, "amount": 100})).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let line = &answer.json;
    assert_eq!(line["user"], 1);
    assert_eq!(line["user_id"], 1);
    assert_eq!(line["amount"], "100.00");
    assert_eq!(line["available_change"], "100.00");
    assert_eq!(line["reserved_change"], "0.00");
    assert_eq!(line["transaction_type"], "deposit");
    assert_eq!(line["comment"], "deposit");
    assert!(line["id"].as_i64().is_some_and(|id| id > 0));
    assert!(line["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // The original curl body, a decimal string, and an id written as a string all work.
    deposit(&server, 1, "0.01").await;
    let answer = post(&server, "/api/add_funds/", json!({"user_id": "1", "amount": 2.5})).await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.json["amount"], "2.50");
    assert_eq!(balance(&server, 1).await, ("102.51".into(), "0.00".into()));

    let withdrawn = post(&server, "/api/withdraw_funds/", json!({"user_id": 1, "amount": "2.51"})).await;
    assert_eq!(withdrawn.status, 201, "{}", withdrawn.text);
    assert_eq!(withdrawn.json["amount"], "-2.51");
    assert_eq!(withdrawn.json["available_change"], "-2.51");
    assert_eq!(withdrawn.json["transaction_type"], "withdrawal");
    assert_eq!(balance(&server, 1).await, ("100.00".into(), "0.00".into()));
    server.stop().await;
    db.assert_verified().await;
}

async fn reserve_deduct_and_release_follow_the_hold_rules(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    deposit(&server, 1, "100.00").await;

    let reserved = post(&server, "/api/reserve_funds/", order(1, 101, 1001, Some("30.00"))).await;
    assert_eq!(reserved.status, 201, "{}", reserved.text);
    assert_eq!(reserved.json["transaction_type"], "reservation");
    // The original service's amount is the operation's: positive; the signed effects say where it went.
    assert_eq!(reserved.json["amount"], "30.00");
    assert_eq!(reserved.json["available_change"], "-30.00");
    assert_eq!(reserved.json["reserved_change"], "30.00");
    assert_eq!(reserved.json["comment"], "reserved for order 1001 of service 101");
    assert_eq!(balance(&server, 1).await, ("70.00".into(), "30.00".into()));

    let again = post(&server, "/api/reserve_funds/", order(1, 101, 1001, Some("1.00"))).await;
    assert_eq!((again.status, again.json["code"].clone()), (409, json!("hold_exists")));

    let mismatch = post(&server, "/api/deduct_funds/", order(1, 101, 1001, Some("29.99"))).await;
    assert_eq!((mismatch.status, mismatch.json["code"].clone()), (409, json!("amount_mismatch")));
    assert_eq!(mismatch.json["reserved"], "30.00");

    let captured = post(&server, "/api/deduct_funds/", order(1, 101, 1001, Some("30"))).await;
    assert_eq!(captured.status, 201, "{}", captured.text);
    assert_eq!(captured.json["transaction_type"], "revenue_recognition");
    assert_eq!(captured.json["amount"], "30.00");
    assert_eq!(captured.json["available_change"], "0.00", "the money had already left the available balance");
    assert_eq!(captured.json["reserved_change"], "-30.00");
    assert_eq!(balance(&server, 1).await, ("70.00".into(), "0.00".into()));

    for path in ["/api/deduct_funds/", "/api/unreserve_funds/"] {
        let settled = post(&server, path, order(1, 101, 1001, Some("30.00"))).await;
        assert_eq!((settled.status, settled.json["code"].clone()), (409, json!("hold_settled")), "{path}");
    }

    // Release: the amount is optional, and must match when given.
    assert_eq!(post(&server, "/api/reserve_funds/", order(1, 101, 1002, Some("20.00"))).await.status, 201);
    let wrong = post(&server, "/api/unreserve_funds/", order(1, 101, 1002, Some("19.00"))).await;
    assert_eq!((wrong.status, wrong.json["code"].clone()), (409, json!("amount_mismatch")));
    let released = post(&server, "/api/unreserve_funds/", order(1, 101, 1002, None)).await;
    assert_eq!(released.status, 201, "{}", released.text);
    assert_eq!(released.json["transaction_type"], "release");
    assert_eq!(released.json["amount"], "20.00");
    assert_eq!(released.json["available_change"], "20.00");
    assert_eq!(released.json["reserved_change"], "-20.00");
    assert_eq!(balance(&server, 1).await, ("70.00".into(), "0.00".into()));

    // A hold key is used once, forever, even after a release.
    let reused = post(&server, "/api/reserve_funds/", order(1, 101, 1002, Some("5.00"))).await;
    assert_eq!((reused.status, reused.json["code"].clone()), (409, json!("hold_exists")));

    for path in ["/api/deduct_funds/", "/api/unreserve_funds/"] {
        let missing = post(&server, path, order(1, 101, 9999, Some("1.00"))).await;
        assert_eq!(missing.status, 404, "{path}: {}", missing.text);
        assert!(missing.json["details"]["order_id"].is_string(), "{}", missing.text);
    }
    // The same order number in another service is another hold.
    assert_eq!(post(&server, "/api/reserve_funds/", order(1, 102, 1001, Some("5.00"))).await.status, 201);
    server.stop().await;
    db.assert_verified().await;
}

async fn refusals_name_the_reason_and_change_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    deposit(&server, 1, "50.00").await;
    assert_eq!(post(&server, "/api/reserve_funds/", order(1, 7, 1, Some("20.00"))).await.status, 201);

    let short = post(&server, "/api/withdraw_funds/", json!({"user_id": 1, "amount": "30.01"})).await;
    assert_eq!((short.status, short.json["code"].clone()), (409, json!("insufficient_funds")));
    assert_eq!(short.json["available"], "30.00", "held money is not available");
    let short = post(&server, "/api/reserve_funds/", order(1, 7, 2, Some("30.01"))).await;
    assert_eq!((short.status, short.json["available"].clone()), (409, json!("30.00")));
    deposit(&server, 2, "1.00").await;
    let short = post(&server, "/api/transfer_funds/", json!({"sender_id": 1, "recipient_id": 2, "amount": 31})).await;
    assert_eq!((short.status, short.json["code"].clone()), (409, json!("insufficient_funds")));

    let cases = [
        ("/api/withdraw_funds/", json!({"user_id": 9, "amount": 1}), "user_id"),
        ("/api/reserve_funds/", order(9, 7, 3, Some("1.00")), "user_id"),
        ("/api/transfer_funds/", json!({"sender_id": 9, "recipient_id": 1, "amount": 1}), "sender_id"),
        ("/api/transfer_funds/", json!({"sender_id": 1, "recipient_id": 9, "amount": 1}), "recipient_id"),
    ];
    for (path, body, field) in cases {
        let missing = post(&server, path, body).await;
        assert_eq!(missing.status, 404, "{path}: {}", missing.text);
        assert_eq!(missing.json["code"], "not_found");
        assert_eq!(missing.json["details"][field], "user 9 not found", "{}", missing.text);
    }
    assert_eq!(server.user_balance(9).await, None, "a transfer to a user without an account creates none");
    assert_eq!(balance(&server, 1).await, ("30.00".into(), "20.00".into()));
    assert_eq!(balance(&server, 2).await, ("1.00".into(), "0.00".into()));
    server.stop().await;
    db.assert_verified().await;
}

async fn invalid_input_is_refused_with_field_details(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    deposit(&server, 1, "10.00").await;
    let cases: Vec<(&str, String, &str)> = vec![
        ("/api/add_funds/", json!({"amount": 1}).to_string(), "user_id"),
        ("/api/add_funds/", json!({"user_id": 1}).to_string(), "amount"),
        ("/api/add_funds/", json!({"user_id": 0, "amount": 1}).to_string(), "user_id"),
        ("/api/add_funds/", json!({"user_id": -4, "amount": 1}).to_string(), "user_id"),
        ("/api/add_funds/", json!({"user_id": 1.5, "amount": 1}).to_string(), "user_id"),
        ("/api/add_funds/", json!({"user_id": "abc", "amount": 1}).to_string(), "user_id"),
        ("/api/add_funds/", json!({"user_id": 1, "amount": 0}).to_string(), "amount"),
        ("/api/add_funds/", json!({"user_id": 1, "amount": "-5"}).to_string(), "amount"),
        ("/api/add_funds/", json!({"user_id": 1, "amount": "1.001"}).to_string(), "amount"),
        ("/api/add_funds/", r#"{"user_id": 1, "amount": 1e400}"#.to_owned(), "amount"),
        ("/api/add_funds/", json!({"user_id": 1, "amount": true}).to_string(), "amount"),
        ("/api/add_funds/", json!({"user_id": 1, "amount": "1000000000000000"}).to_string(), "amount"),
        ("/api/add_funds/", "[1, 2]".to_owned(), "body"),
        ("/api/add_funds/", "{not json".to_owned(), "body"),
        ("/api/reserve_funds/", order(1, 0, 1, Some("1.00")).to_string(), "service_id"),
        ("/api/reserve_funds/", order(1, 1, -1, Some("1.00")).to_string(), "order_id"),
        ("/api/deduct_funds/", order(1, 1, 1, None).to_string(), "amount"),
        ("/api/unreserve_funds/", order(1, 1, 1, Some("0.001")).to_string(), "amount"),
        ("/api/transfer_funds/", json!({"sender_id": 1, "recipient_id": 1, "amount": 1}).to_string(), "recipient_id"),
        ("/api/transfer_funds/", json!({"sender_id": 1, "amount": 1}).to_string(), "recipient_id"),
    ];
    for (path, body, field) in cases {
        let answer = server.post(path, body.clone(), None).await;
        assert_eq!(answer.status, 400, "{path} {body}: {}", answer.text);
        assert_eq!(answer.json["code"], "invalid_data");
        assert!(answer.json["details"][field].is_string(), "{path} {body} should name {field}: {}", answer.text);
    }
    // Every bad field at once.
    let answer = post(&server, "/api/reserve_funds/", json!({"user_id": 0, "amount": "x"})).await;
    let fields: HashSet<&str> =
        answer.json["details"].as_object().map(|d| d.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(fields, HashSet::from(["user_id", "service_id", "order_id", "amount"]));

    let form = server
        .client
        .post(server.url("/api/add_funds/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("user_id=1&amount=1")
        .send()
        .await
        .expect("request");
    assert_eq!(form.status(), 415);
    // The server answers 413 without reading the rest, and with `Connection: close`, so the client's next
    // request does not go out on that connection.
    let huge = format!(r#"{{"user_id": 1, "amount": 1, "pad": "{}"}}"#, "x".repeat(64 * 1024));
    assert_eq!(server.post("/api/add_funds/", huge, None).await.status, 413);

    for (path, field) in [
        ("/api/balances/", "user_id"),
        ("/api/balances/?user_id=abc", "user_id"),
        ("/api/balances/?user_id=0", "user_id"),
        ("/api/users/abc/transactions/", "user_id"),
        ("/api/users/1/transactions/?sort=size", "sort"),
        ("/api/users/1/transactions/?order=up", "order"),
        ("/api/users/1/transactions/?limit=0", "limit"),
        ("/api/users/1/transactions/?limit=501", "limit"),
        ("/api/users/1/transactions/?cursor=zz", "cursor"),
        ("/api/reports/revenue/", "month"),
        ("/api/reports/revenue/?month=2024-13", "month"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["details"][field].is_string(), "{path} should name {field}: {body}");
    }
    assert_eq!(server.get("/api/users/2/transactions/").await.0, 404);
    assert_eq!(balance(&server, 1).await, ("10.00".into(), "0.00".into()), "nothing changed");
    server.stop().await;
    db.assert_verified().await;
}

async fn a_transfer_answers_both_sides_and_moves_the_money(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    deposit(&server, 4, "100.00").await;
    deposit(&server, 5, "0.01").await;
    let answer =
        post(&server, "/api/transfer_funds/", json!({"sender_id": 4, "recipient_id": 5, "amount": "40"})).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let (sender, recipient) = (&answer.json["sender_transaction"], &answer.json["recipient_transaction"]);
    assert_eq!((sender["user_id"].clone(), sender["amount"].clone()), (json!(4), json!("-40.00")));
    assert_eq!((recipient["user_id"].clone(), recipient["amount"].clone()), (json!(5), json!("40.00")));
    assert_eq!(
        (sender["available_change"].clone(), recipient["available_change"].clone()),
        (json!("-40.00"), json!("40.00"))
    );
    assert_eq!(sender["transaction_type"], "transfer");
    assert_eq!(sender["comment"], "transfer to user 5");
    assert_eq!(recipient["comment"], "transfer from user 4");
    assert_eq!(balance(&server, 4).await.0, "60.00");
    assert_eq!(balance(&server, 5).await.0, "40.01");

    let (_, history) = server.get("/api/users/5/transactions/").await;
    let comments: Vec<&str> = history["results"]
        .as_array()
        .map_or(vec![], |lines| lines.iter().filter_map(|line| line["comment"].as_str()).collect());
    assert_eq!(comments, ["transfer from user 4", "deposit"], "newest first");
    server.stop().await;
    db.assert_verified().await;
}

/// Reads every page of a user's history in one order, adding a deposit between pages.
async fn read_all_pages(server: &TestServer, user: i64, query: &str, interleave: bool) -> Vec<Value> {
    let mut lines = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(cursor) => format!("/api/users/{user}/transactions/?{query}&limit=3&cursor={cursor}"),
            None => format!("/api/users/{user}/transactions/?{query}&limit=3"),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        lines.extend(page["results"].as_array().cloned().unwrap_or_default());
        if interleave {
            // New lines arrive while a client pages through; the pages must still neither skip nor repeat.
            deposit(server, user, "0.05").await;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return lines,
        }
    }
    panic!("pagination did not end");
}

async fn the_history_pages_stably_in_every_order(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    deposit(&server, 1, "500.00").await;
    deposit(&server, 2, "1.00").await;
    for (i, amount) in ["7.00", "3.00", "7.00", "12.00", "1.00"].iter().enumerate() {
        let body = order(1, 5, i as i64 + 1, Some(amount));
        assert_eq!(post(&server, "/api/reserve_funds/", body).await.status, 201);
    }
    assert_eq!(post(&server, "/api/deduct_funds/", order(1, 5, 1, Some("7.00"))).await.status, 201);
    assert_eq!(post(&server, "/api/unreserve_funds/", order(1, 5, 2, None)).await.status, 201);
    let body = json!({"sender_id": 1, "recipient_id": 2, "amount": "7.00"});
    assert_eq!(post(&server, "/api/transfer_funds/", body).await.status, 201);
    assert_eq!(post(&server, "/api/withdraw_funds/", json!({"user_id": 1, "amount": "0.50"})).await.status, 201);

    let everything = read_all_pages(&server, 1, "sort=date&order=asc", false).await;
    assert_eq!(everything.len(), 10);
    let ids: Vec<i64> = everything.iter().filter_map(|line| line["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "date ascending is application order: {ids:?}");
    // The signed effects add up to the balances; `amount` is the operation's, as the original service showed it.
    let available: i64 = everything.iter().map(|line| kopecks(line["available_change"].as_str().unwrap_or("0"))).sum();
    let reserved: i64 = everything.iter().map(|line| kopecks(line["reserved_change"].as_str().unwrap_or("0"))).sum();
    let (amount, held) = balance(&server, 1).await;
    assert_eq!((available, reserved), (kopecks(&amount), kopecks(&held)));
    let amounts: Vec<&str> = everything.iter().filter_map(|line| line["amount"].as_str()).collect();
    let expected = ["500.00", "7.00", "3.00", "7.00", "12.00", "1.00", "7.00", "3.00", "-7.00", "-0.50"];
    assert_eq!(amounts, expected, "positive but for the transfer sent and the withdrawal");

    for (query, descending_amounts) in
        [("sort=amount&order=asc", false), ("sort=amount&order=desc", true), ("sort=date&order=desc", false)]
    {
        let lines = read_all_pages(&server, 1, query, true).await;
        let ids: Vec<i64> = lines.iter().filter_map(|line| line["id"].as_i64()).collect();
        let unique: HashSet<i64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "{query}: no line repeated: {ids:?}");
        for original in &everything {
            assert!(unique.contains(&original["id"].as_i64().unwrap_or(0)), "{query}: line skipped");
        }
        if query.starts_with("sort=amount") {
            let keys: Vec<(i64, i64)> = lines
                .iter()
                .map(|line| {
                    (kopecks(line["available_change"].as_str().unwrap_or("0")), line["id"].as_i64().unwrap_or(0))
                })
                .collect();
            let mut sorted = keys.clone();
            sorted.sort();
            if descending_amounts {
                sorted.reverse();
            }
            assert_eq!(keys, sorted, "{query}");
        }
    }
    // A cursor belongs to its order.
    let (_, page) = server.get("/api/users/1/transactions/?sort=amount&limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
    let (status, body) = server.get(&format!("/api/users/1/transactions/?sort=date&cursor={cursor}")).await;
    assert_eq!((status, body["details"]["cursor"].is_string()), (400, true));
    server.stop().await;
    db.assert_verified().await;
}

async fn idempotency_keys_replay_refuse_reuse_and_scope_by_endpoint(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let first = server.post("/api/add_funds/", r#"{"user_id": 1, "amount": 100}"#, Some("key-1")).await;
    assert_eq!((first.status, first.replayed), (201, false));
    // The same request, written differently, is the same request: the first answer, byte for byte.
    let again = server.post("/api/add_funds/", r#"{ "amount" : "100.00",  "user_id":1 }"#, Some("key-1")).await;
    assert_eq!((again.status, again.replayed), (201, true));
    assert_eq!(again.text, first.text);
    assert_eq!(balance(&server, 1).await.0, "100.00", "applied once");

    let different = server.post("/api/add_funds/", r#"{"user_id": 1, "amount": 101}"#, Some("key-1")).await;
    assert_eq!((different.status, different.json["code"].clone()), (409, json!("idempotency_key_reused")));
    // A deposit refused for its key opens no account for its user.
    let stranger = server.post("/api/add_funds/", r#"{"user_id": 999, "amount": 1}"#, Some("key-1")).await;
    assert_eq!(stranger.status, 409);
    assert_eq!(server.user_balance(999).await, None);
    let to_stranger =
        server.post("/api/transfer_funds/", r#"{"sender_id": 1, "recipient_id": 999, "amount": 1}"#, None).await;
    assert_eq!(to_stranger.status, 404, "{}", to_stranger.text);
    let other_endpoint = server.post("/api/withdraw_funds/", r#"{"user_id": 1, "amount": 100}"#, Some("key-1")).await;
    assert_eq!((other_endpoint.status, other_endpoint.json["code"].clone()), (409, json!("idempotency_key_reused")));
    assert_eq!(balance(&server, 1).await.0, "100.00");

    // A 4xx outcome is stored and replayed, even once the request would succeed.
    let refused = server.post("/api/withdraw_funds/", r#"{"user_id": 1, "amount": 150}"#, Some("key-2")).await;
    assert_eq!((refused.status, refused.json["code"].clone()), (409, json!("insufficient_funds")));
    deposit(&server, 1, "100.00").await;
    let replayed = server.post("/api/withdraw_funds/", r#"{"user_id": 1, "amount": 150}"#, Some("key-2")).await;
    assert_eq!((replayed.status, replayed.replayed, replayed.text.clone()), (409, true, refused.text.clone()));
    let missing = server.post("/api/withdraw_funds/", r#"{"user_id": 77, "amount": 1}"#, Some("key-3")).await;
    assert_eq!(missing.status, 404);
    deposit(&server, 77, "5.00").await;
    let still = server.post("/api/withdraw_funds/", r#"{"user_id": 77, "amount": 1}"#, Some("key-3")).await;
    assert_eq!((still.status, still.replayed), (404, true));

    // Invalid input gets a 400 that is kept under its key too: the same body gets it again, another body is
    // refused for reusing the key.
    let invalid = server.post("/api/add_funds/", r#"{"user_id": 1, "amount": -1}"#, Some("key-4")).await;
    assert_eq!((invalid.status, invalid.json["code"].clone()), (400, json!("invalid_data")));
    let again = server.post("/api/add_funds/", r#"{"user_id": 1, "amount": -1}"#, Some("key-4")).await;
    assert_eq!((again.status, again.replayed, again.text.clone()), (400, true, invalid.text.clone()));
    let valid = server.post("/api/add_funds/", r#"{"user_id": 1, "amount": 1}"#, Some("key-4")).await;
    assert_eq!((valid.status, valid.json["code"].clone()), (409, json!("idempotency_key_reused")));

    // Keys: up to 255 visible characters.
    let longest = "k".repeat(255);
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 1, "amount": 1}"#, Some(&longest)).await.status, 201);
    let too_long = "k".repeat(256);
    let answer = server.post("/api/add_funds/", r#"{"user_id": 1, "amount": 1}"#, Some(&too_long)).await;
    assert_eq!(answer.status, 400);
    assert!(answer.json["details"]["Idempotency-Key"].is_string(), "{}", answer.text);

    // A transfer replays both sides.
    deposit(&server, 2, "1.00").await;
    let body = r#"{"sender_id": 1, "recipient_id": 2, "amount": "3.00"}"#;
    let sent = server.post("/api/transfer_funds/", body, Some("key-5")).await;
    let resent = server.post("/api/transfer_funds/", body, Some("key-5")).await;
    assert_eq!((sent.status, resent.status, resent.text.clone()), (201, 201, sent.text.clone()));
    assert_eq!(balance(&server, 2).await.0, "4.00");
    server.stop().await;
    db.assert_verified().await;
}

async fn concurrent_requests_with_one_key_apply_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    for round in 0..5 {
        let key = format!("same-moment-{round}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (client, url, key, barrier) =
                (server.client.clone(), server.url("/api/add_funds/"), key.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let response = client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", key)
                    .body(r#"{"user_id": 1, "amount": "1.00"}"#)
                    .send()
                    .await
                    .expect("request");
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            });
        }
        let answers: Vec<(u16, String)> = tasks.join_all().await;
        let created: HashSet<&String> = answers.iter().filter(|(s, _)| *s == 201).map(|(_, body)| body).collect();
        assert_eq!(created.len(), 1, "every 201 is the same response: {answers:?}");
        for (status, body) in &answers {
            assert!(
                *status == 201 || (*status == 409 && body.contains("idempotency_key_in_flight")),
                "{status} {body}"
            );
        }
        assert_eq!(balance(&server, 1).await.0, format!("{}.00", round + 1), "one deposit per key");
    }
    server.stop().await;
    db.assert_verified().await;
}

async fn the_revenue_report_is_csv_or_json_and_reproducible(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    deposit(&server, 1, "2000.00").await;
    for (service, order_id, amount) in [(202, 1, "100.50"), (101, 2, "1000"), (101, 3, "0.01")] {
        let body = order(1, service, order_id, Some(amount));
        assert_eq!(post(&server, "/api/reserve_funds/", body.clone()).await.status, 201);
        assert_eq!(post(&server, "/api/deduct_funds/", body).await.status, 201, "{service} {order_id}");
    }
    // Released and still-held reservations are not revenue.
    assert_eq!(post(&server, "/api/reserve_funds/", order(1, 303, 4, Some("5.00"))).await.status, 201);
    assert_eq!(post(&server, "/api/reserve_funds/", order(1, 303, 5, Some("5.00"))).await.status, 201);
    assert_eq!(post(&server, "/api/unreserve_funds/", order(1, 303, 5, None)).await.status, 201);

    let month = time::OffsetDateTime::now_utc();
    let month = format!("{}-{:02}", month.year(), u8::from(month.month()));
    let path = format!("/api/reports/revenue/?month={month}");
    let response = server.client.get(server.url(&path)).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = response.text().await.expect("csv");
    assert_eq!(csv, "service_id;revenue\r\n101;1000.01\r\n202;100.50\r\n");

    let response = server.client.get(server.url(&path)).header("Accept", "application/json").send().await;
    let report: Value = response.expect("request").json().await.expect("json");
    assert_eq!(
        report,
        json!({"month": month, "currency": "RUB", "services": [
            {"service_id": 101, "revenue": "1000.01"}, {"service_id": 202, "revenue": "100.50"}
        ]})
    );
    let (status, past) = server.get("/api/reports/revenue/?month=2020-01").await;
    assert_eq!(status, 200, "{past}");
    let past_csv = server.client.get(server.url("/api/reports/revenue/?month=2020-01")).send().await;
    assert_eq!(past_csv.expect("request").text().await.expect("csv"), "service_id;revenue\r\n");

    // The same month read again, after more activity in other months' terms, is the same bytes.
    deposit(&server, 2, "1.00").await;
    let again = server.client.get(server.url(&path)).send().await.expect("request").text().await.expect("csv");
    assert_eq!(again, csv);
    server.stop().await;
    db.assert_verified().await;
}

async fn verify_catches_a_history_or_hold_that_disagrees_with_the_ledger(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    deposit(&server, 1, "10.00").await;
    assert_eq!(post(&server, "/api/reserve_funds/", order(1, 1, 1, Some("4.00"))).await.status, 201);
    server.stop().await;
    db.assert_verified().await;

    db.execute("UPDATE account_activity SET amount = amount + 1 WHERE kind = 'deposit'").await;
    let problems = db.store().await.verify().await.expect("verify").problems;
    assert!(problems.iter().any(|p| p.contains("history adds up")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("matches its ledger entry")), "{problems:?}");
    db.execute("UPDATE account_activity SET amount = amount - 1 WHERE kind = 'deposit'").await;

    db.execute("UPDATE holds SET amount = amount + 1").await;
    let problems = db.store().await.verify().await.expect("verify").problems;
    assert!(problems.iter().any(|p| p.contains("holds exactly its open reservations")), "{problems:?}");
}
