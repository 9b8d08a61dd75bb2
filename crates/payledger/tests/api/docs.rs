//! The API documentation the server serves: the OpenAPI document, Swagger UI and Redoc, all from the binary.

use serde_json::Value;

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

/// Every operation of the spec, as (method, path, operation).
fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            found.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_list_answers_400_naming_a_query_parameter_out_of_its_documented_bounds() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let (_, spec) = server.get("/api/schema/").await;
    let cases = [
        ("/api/v1/audit/", "limit", "501"),
        ("/api/v1/audit/", "limit", "0"),
        ("/api/v1/audit/", "before", "0"),
        ("/api/v1/jobs/", "limit", "501"),
        ("/api/v1/jobs/", "limit", "x"),
        ("/api/v1/payouts/", "page_size", "101"),
        ("/api/v1/payouts/", "page", "0"),
        ("/api/v1/payouts/", "page", "10000001"),
        ("/api/organizations/{inn}/balance-log/", "limit", "501"),
        ("/api/organizations/{inn}/balance-log/", "before", "-1"),
        ("/api/users/{user_id}/transactions/", "limit", "0"),
        ("/api/users/{user_id}/transactions/", "limit", "99999999999999999999"),
    ];
    for (path, parameter, value) in cases {
        // The spec states the bound the server enforces, in the query.
        let documented = spec["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == parameter)
            .unwrap_or_else(|| panic!("{path} documents {parameter}"))
            .clone();
        assert_eq!(documented["in"], "query", "{path} {parameter}");
        assert_eq!(documented["schema"]["minimum"], 1, "{path} {parameter}");
        let url = format!("{}?{parameter}={value}", path.replace("{inn}", "7707083893").replace("{user_id}", "1"));
        let (status, body) = server.get(&url).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body["details"][parameter].is_string(), "{url} names {parameter}: {body}");
    }
    for (path, parameter, maximum) in [
        ("/api/v1/audit/", "limit", 500),
        ("/api/v1/jobs/", "limit", 500),
        ("/api/v1/payouts/", "page_size", 100),
        ("/api/organizations/{inn}/balance-log/", "limit", 500),
        ("/api/users/{user_id}/transactions/", "limit", 500),
    ] {
        let parameters = spec["paths"][path]["get"]["parameters"].as_array().expect("parameters").clone();
        let documented = parameters.iter().find(|p| p["name"] == parameter).expect("parameter");
        assert_eq!(documented["schema"]["maximum"], maximum, "{path} {parameter}");
        let url = format!("{}?{parameter}={maximum}", path.replace("{inn}", "7707083893").replace("{user_id}", "1"));
        let (status, _) = server.get(&url).await;
        assert_ne!(status, 400, "{url}: the documented maximum is accepted");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_spec_documents_what_the_access_layer_and_the_body_reader_answer_and_links_its_operations() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let (_, spec) = server.get("/api/schema/").await;
    let mut ids = std::collections::BTreeSet::new();
    for (method, path, operation) in operations(&spec) {
        let id = operation["operationId"].as_str().expect("operationId").to_owned();
        assert!(ids.insert(id.clone()), "{id} is unique");
        let responses = operation["responses"].as_object().expect("responses");
        let takes_users = operation["security"].as_array().expect("security").iter().any(|s| s.get("basic").is_some());
        if takes_users {
            for status in ["401", "403", "429", "503"] {
                assert!(responses.contains_key(status), "{method} {path} documents {status}");
            }
            assert!(responses["429"]["headers"]["Retry-After"].is_object(), "{method} {path}");
        }
        if operation["requestBody"]["content"]["application/json"].is_object() {
            for status in ["400", "413", "415"] {
                assert!(responses.contains_key(status), "{method} {path} documents {status}");
            }
        }
        if path.contains('{') {
            assert!(responses.contains_key("400") && responses.contains_key("404"), "{method} {path}");
        }
        for parameter in operation["parameters"].as_array().cloned().unwrap_or_default() {
            let name = parameter["name"].as_str().expect("name");
            match parameter["in"].as_str() {
                Some("path") => {
                    assert!(path.contains(&format!("{{{name}}}")), "{method} {path}: {name} is in the path")
                }
                Some("query") | Some("header") => {}
                other => panic!("{method} {path}: {name} is in {other:?}"),
            }
        }
    }
    let link = |path: &str, method: &str, status: &str, name: &str| {
        spec["paths"][path][method]["responses"][status]["links"][name]["operationId"].as_str().map(str::to_owned)
    };
    assert_eq!(link("/api/v1/payouts/", "post", "201", "detail").as_deref(), Some("payouts_detail"));
    assert_eq!(link("/api/v1/payouts/", "post", "201", "patch").as_deref(), Some("payouts_patch"));
    assert_eq!(link("/api/v1/payouts/", "post", "201", "delete").as_deref(), Some("payouts_delete"));
    assert_eq!(link("/api/v1/jobs/", "get", "200", "retry").as_deref(), Some("jobs_retry_job"));
    assert_eq!(link("/api/add_funds/", "post", "201", "reserve").as_deref(), Some("balances_reserve_funds"));
    assert_eq!(link("/api/reserve_funds/", "post", "201", "deduct").as_deref(), Some("balances_deduct_funds"));
    assert_eq!(link("/api/reserve_funds/", "post", "201", "release").as_deref(), Some("balances_unreserve_funds"));
    assert_eq!(link("/api/v1/users/", "post", "201", "patch").as_deref(), Some("users_patch"));
    let deduct = &spec["paths"]["/api/reserve_funds/"]["post"]["responses"]["201"]["links"]["deduct"];
    assert_eq!(deduct["requestBody"]["order_id"], "$response.body#/order_id");

    // The recipient is one of two kinds, each with its own required fields.
    let recipient = &spec["components"]["schemas"]["RecipientBody"];
    let kinds: Vec<&Value> = recipient["oneOf"].as_array().expect("recipient oneOf").iter().collect();
    assert_eq!(kinds.len(), 2, "{recipient}");
    let card = kinds.iter().find(|kind| kind["properties"]["type"]["enum"][0] == "card").expect("card");
    assert!(card["required"].as_array().expect("required").contains(&Value::from("number")));
    // An amount is a decimal string or a JSON number, both bounded as the parser bounds them.
    let amount = &spec["components"]["schemas"]["RubAmount"]["oneOf"];
    assert_eq!(amount[0]["type"], "string");
    assert_eq!(amount[0]["maxLength"], 64);
    assert_eq!(amount[1]["type"], "number");
    assert_eq!(amount[1]["multipleOf"], 0.01);
    assert_eq!(amount[1]["maximum"], 1_000_000_000_000u64);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn values_the_spec_allows_are_accepted_and_its_malformed_ids_are_json_400s() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    // Amounts as strings or numbers, trailing zeros past two decimals, ids as whole JSON numbers or digits.
    for body in [
        r#"{"user_id": 7, "amount": 1.5}"#,
        r#"{"user_id": "007", "amount": "1.50"}"#,
        r#"{"user_id": 7.0, "amount": "0001.500"}"#,
        r#"{"user_id": 7, "amount": 1e2}"#,
    ] {
        let answer = server.post("/api/add_funds/", body, None).await;
        assert_eq!(answer.status, 201, "{body}: {}", answer.text);
        assert_eq!(answer.json["user_id"], 7, "{body}");
    }
    for (body, field) in [
        (r#"{"user_id": 7, "amount": "1.505"}"#, "amount"),
        (r#"{"user_id": 7, "amount": 1000000000000.01}"#, "amount"),
        (r#"{"user_id": 7.5, "amount": 1}"#, "user_id"),
        (r#"{"user_id": 0, "amount": 1}"#, "user_id"),
    ] {
        let answer = server.post("/api/add_funds/", body, None).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert!(answer.json["details"][field].is_string(), "{body}: {}", answer.text);
    }
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/payouts/not-a-uuid/"),
        (reqwest::Method::DELETE, "/api/v1/payouts/not-a-uuid/"),
        (reqwest::Method::POST, "/api/v1/jobs/abc/retry/"),
    ] {
        let response = server.client.request(method.clone(), server.url(path)).send().await.expect("request");
        assert_eq!(response.status(), 400, "{method} {path}");
        assert_eq!(response.headers()["content-type"], "application/json", "{method} {path}");
        let body: Value = response.json().await.expect("json");
        assert!(body["details"]["id"].is_string(), "{method} {path}: {body}");
    }
    server.stop().await;
}
