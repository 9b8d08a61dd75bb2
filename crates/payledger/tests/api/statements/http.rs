//! The statement and reconciliation API as clients see it: uploads of each format (201, then 200
//! `already_imported`), bad files (400 with the line and the reason, nothing stored), the size limit (413) and
//! the content types (415), applying one discrepancy and all of an import, accepting with a note, the report's
//! filters, and who may do what.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::statements::{ACCOUNT, Credit, PAYER, STRANGER, one_c, sample, upload, upload_as};
use crate::common::{self, Backend, TestDb, TestServer, on_both_backends};

/// The statement of the scenario: one line with its notice, one without, one whose notice has another amount,
/// and one from a payer no organization has.
fn scenario_statement() -> String {
    one_c(&[
        Credit { number: "PAY-1", date: "28.04.2024", kopecks: 150_000, payer_inn: PAYER },
        Credit { number: "PAY-2", date: "28.04.2024", kopecks: 70_000, payer_inn: PAYER },
        Credit { number: "PAY-3", date: "28.04.2024", kopecks: 11_000, payer_inn: PAYER },
        Credit { number: "PAY-4", date: "28.04.2024", kopecks: 25_000, payer_inn: STRANGER },
    ])
}

/// A webhook notice of 28.04.2024 (Moscow).
async fn notify(server: &TestServer, number: &str, amount: &str, inn: &str) -> Uuid {
    let operation_id = Uuid::new_v4();
    let notice = json!({
        "operation_id": operation_id.to_string(),
        "amount": amount,
        "payer_inn": inn,
        "document_number": number,
        "document_date": "2024-04-27T21:00:00Z",
    });
    let (status, body) = server.post_webhook(&notice).await;
    assert_eq!(status, 200, "notice {number}: {body}");
    operation_id
}

/// The discrepancies of the report of 28.04.2024 with the extra filters `query` (`&kind=…`).
async fn discrepancies(server: &TestServer, query: &str) -> Vec<Value> {
    let (status, report) = server.get(&format!("/api/v1/reconciliation/?from=2024-04-28&to=2024-04-28{query}")).await;
    assert_eq!(status, 200, "report: {report}");
    report["discrepancies"].as_array().cloned().unwrap_or_default()
}

/// The one discrepancy of `kind`.
async fn one_of_kind(server: &TestServer, kind: &str) -> Value {
    let found = discrepancies(server, &format!("&kind={kind}")).await;
    assert_eq!(found.len(), 1, "one {kind}: {found:?}");
    assert!(found.iter().all(|item| item["kind"] == kind), "the kind filter holds: {found:?}");
    found[0].clone()
}

async fn imports(server: &TestServer) -> Vec<Value> {
    let (status, list) = server.get("/api/v1/statements/").await;
    assert_eq!(status, 200, "imports: {list}");
    list["results"].as_array().cloned().unwrap_or_default()
}

async fn match_apply_and_accept(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    notify(&server, "PAY-1", "1500.00", PAYER).await;
    notify(&server, "PAY-3", "100.00", PAYER).await;
    assert_eq!(server.balance_text(PAYER).await.as_deref(), Some("1600.00"));

    let statement = scenario_statement();
    let (status, summary) = upload(&server, statement.clone(), "?file_name=april.txt").await;
    assert_eq!(status, 201, "{summary}");
    assert_eq!(summary["format"], "1c");
    assert_eq!(summary["file_name"], "april.txt");
    assert_eq!(summary["already_imported"], false);
    assert_eq!((summary["lines_read"].as_u64(), summary["lines_new"].as_u64()), (Some(4), Some(4)));
    assert_eq!(summary["matched"], 1, "PAY-1 matches its notice: {summary}");
    assert_eq!(summary["discrepancies"]["missing_notice"], 1);
    assert_eq!(summary["discrepancies"]["amount_mismatch"], 1);
    assert_eq!(summary["discrepancies"]["unknown_payer"], 1);
    assert_eq!(summary["accounts"][0]["account"], ACCOUNT);
    assert_eq!(summary["accounts"][0]["total_credits"], "2560.00");
    let import_id = summary["id"].as_i64().expect("import id");

    let (status, again) = upload(&server, statement, "").await;
    assert_eq!(status, 200, "the same file again: {again}");
    assert_eq!((again["already_imported"].as_bool(), again["id"].as_i64()), (Some(true), Some(import_id)));
    assert_eq!(imports(&server).await.len(), 1, "one import stored");
    let (status, detail) = server.get(&format!("/api/v1/statements/{import_id}/")).await;
    assert_eq!((status, detail["id"].as_i64()), (200, Some(import_id)));
    assert_eq!(discrepancies(&server, "").await.len(), 3);

    // Apply the line without a notice: its payer is credited once, however often it is applied.
    let missing = one_of_kind(&server, "missing_notice").await;
    let path = format!("/api/v1/reconciliation/discrepancies/{}/apply/", missing["id"]);
    let applied = server.post(&path, "", None).await;
    assert_eq!(applied.status, 200, "{}", applied.text);
    assert_eq!(applied.json["outcome"], "applied");
    assert_eq!(server.balance_text(PAYER).await.as_deref(), Some("2300.00"));
    let twice = server.post(&path, "", None).await;
    assert!(matches!(twice.status, 200 | 409), "{}", twice.text);
    assert_eq!(server.balance_text(PAYER).await.as_deref(), Some("2300.00"), "applied once");
    assert_eq!(discrepancies(&server, "&kind=missing_notice&state=resolved").await.len(), 1);
    // Its notice arriving late credits nothing more.
    notify(&server, "PAY-2", "700.00", PAYER).await;
    assert_eq!(server.balance_text(PAYER).await.as_deref(), Some("2300.00"), "the late notice is a duplicate");

    // An amount mismatch is not applicable; it is accepted with a note.
    let mismatch = one_of_kind(&server, "amount_mismatch").await;
    let apply = server.post(&format!("/api/v1/reconciliation/discrepancies/{}/apply/", mismatch["id"]), "", None).await;
    assert_eq!((apply.status, apply.json["code"].as_str()), (409, Some("not_applicable")), "{}", apply.text);
    let accept = format!("/api/v1/reconciliation/discrepancies/{}/accept/", mismatch["id"]);
    let blank = server.post(&accept, json!({"note": "  "}).to_string(), None).await;
    assert_eq!((blank.status, blank.json["details"]["note"].is_string()), (400, true), "{}", blank.text);
    let accepted = server.post(&accept, json!({"note": "the payer sent 10.00 more; refunded"}).to_string(), None).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(
        (accepted.json["state"].as_str(), accepted.json["note"].as_str()),
        (Some("accepted"), Some("the payer sent 10.00 more; refunded"))
    );
    let again = server.post(&accept, json!({"note": "again"}).to_string(), None).await;
    assert_eq!(again.status, 409, "only an open discrepancy is accepted: {}", again.text);
    assert_eq!(discrepancies(&server, "&state=accepted").await.len(), 1);
    assert_eq!(discrepancies(&server, "&state=open").await.len(), 1, "the unknown payer is left");

    // Apply all of the import: the unknown payer's organization is created and credited.
    assert_eq!(server.balance_text(STRANGER).await, None);
    let all = server.post(&format!("/api/v1/statements/{import_id}/apply/"), "", None).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.json["applied"], 1, "{}", all.text);
    assert_eq!(server.balance_text(STRANGER).await.as_deref(), Some("250.00"));
    assert!(discrepancies(&server, "&state=open").await.is_empty());

    let (_, report) = server.get("/api/v1/reconciliation/?from=2024-04-28&to=2024-04-28").await;
    let totals = &report["totals"][0];
    assert_eq!(totals["credits_matched"], totals["ledger_credited"], "{report}");
    server.stop().await;
    db.assert_verified().await;
}

async fn bad_files_store_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let good = one_c(&[Credit { number: "PAY-1", date: "28.04.2024", kopecks: 150_000, payer_inn: PAYER }]);
    // Three decimals on the document's amount, on the line the file has it.
    let bad = good.replace("Сумма=1500.00", "Сумма=1500.005");
    let line = bad.lines().position(|line| line.starts_with("Сумма=1500.005")).expect("the amount's line") + 1;
    let (status, body) = upload(&server, bad, "").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("statement_invalid")), "{body}");
    assert_eq!(body["line"], line, "{body}");
    let reason = body["details"]["body"].as_str().unwrap_or_default();
    assert!(reason.starts_with(&format!("line {line}: ")) && reason.contains("1500.005"), "{reason}");
    // Without the end marker; and bytes that are no statement at all.
    let (status, body) = upload(&server, good.replace("КонецФайла\r\n", ""), "").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("statement_invalid")), "{body}");
    let (status, body) = upload(&server, vec![0xff_u8, 0x00, 0x13, 0x37, 0x80], "").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("statement_invalid")), "{body}");
    let (status, body) = upload(&server, good.clone(), "?format=camt053").await;
    assert_eq!(status, 400, "a 1C file read as camt.053: {body}");
    // Bad parameters name themselves.
    let (status, body) = upload(&server, good.clone(), "?format=pdf").await;
    assert_eq!((status, body["details"]["format"].is_string()), (400, true), "{body}");
    let (status, body) = upload(&server, good.clone(), "?account=123").await;
    assert_eq!((status, body["details"]["account"].is_string()), (400, true), "{body}");
    let (status, body) = upload(&server, good.clone(), "?account=40702810900000099999").await;
    assert_eq!((status, body["details"]["account"].is_string()), (400, true), "no such section: {body}");
    assert!(imports(&server).await.is_empty(), "nothing stored");
    assert_eq!(server.balance_text(PAYER).await, None);

    let (status, body) = upload_as(&server, &server.client, good.clone(), "application/json", "").await;
    assert_eq!((status, body["code"].as_str()), (415, Some("unsupported_media_type")), "{body}");
    let (status, _) = upload_as(&server, &server.client, good.clone(), "text/plain; charset=utf-8", "").await;
    assert_eq!(status, 201, "text/plain is a statement's type");
    server.stop().await;
    db.assert_verified().await;
}

on_both_backends!(match_apply_and_accept, bad_files_store_nothing);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_sample_format_imports_once() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    for (name, content_type, format) in
        [("statement-1c-cp1251.txt", "text/plain", "1c"), ("statement-camt053.xml", "application/xml", "camt053")]
    {
        let (status, summary) = upload_as(&server, &server.client, sample(name), content_type, "").await;
        assert_eq!(status, 201, "{name}: {summary}");
        assert_eq!(summary["format"], format, "{name}");
        assert!(summary["lines_read"].as_u64().is_some_and(|lines| lines > 0), "{name}: {summary}");
        let (status, again) = upload_as(&server, &server.client, sample(name), content_type, "").await;
        assert_eq!((status, again["already_imported"].as_bool()), (200, Some(true)), "{name}: {again}");
    }
    server.stop().await;
    db.assert_verified().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_over_the_limit_is_413_and_stores_nothing() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.statement_max_bytes = 1024;
    let server = TestServer::start(settings).await;
    let big = one_c(&[
        Credit { number: "PAY-1", date: "28.04.2024", kopecks: 150_000, payer_inn: PAYER },
        Credit { number: "PAY-2", date: "28.04.2024", kopecks: 70_000, payer_inn: PAYER },
    ]);
    assert!(big.len() > 1024);
    let (status, body) = upload(&server, big, "").await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    assert!(imports(&server).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_read_the_report_and_only_operators_change_it() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let store = db.store().await;
    for (name, role) in [("vera", "viewer"), ("oleg", "operator")] {
        payledger::auth::principals::create(&store, "test", name, "a long enough password", role, false)
            .await
            .expect("create user");
    }
    let viewer = server.client_with_token(&server.login("vera", "a long enough password").await);
    let operator = server.client_with_token(&server.login("oleg", "a long enough password").await);
    let statement = one_c(&[Credit { number: "PAY-9", date: "28.04.2024", kopecks: 5_000, payer_inn: PAYER }]);
    let (status, _) = upload_as(&server, &viewer, statement.clone(), "text/plain", "").await;
    assert_eq!(status, 403, "a viewer may not import");
    assert!(imports(&server).await.is_empty());
    let (status, summary) = upload_as(&server, &operator, statement, "text/plain", "").await;
    assert_eq!(status, 201, "{summary}");
    let report = viewer.get(server.url("/api/v1/reconciliation/?from=2024-04-28&to=2024-04-28")).send().await;
    assert_eq!(report.expect("report").status(), 200);
    let found = discrepancies(&server, "").await;
    let path = format!("/api/v1/reconciliation/discrepancies/{}/apply/", found[0]["id"]);
    let refused = viewer.post(server.url(&path)).send().await.expect("apply");
    assert_eq!(refused.status(), 403);
    assert_eq!(server.balance_text(PAYER).await, None, "nothing applied by the viewer");
    let applied = operator.post(server.url(&path)).send().await.expect("apply");
    assert_eq!(applied.status(), 200);
    assert_eq!(server.balance_text(PAYER).await.as_deref(), Some("50.00"));
    server.stop().await;
    db.assert_verified().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn report_parameters_are_checked_by_name() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    for (query, field) in [
        ("from=2024-04-31", "from"),
        ("to=28.04.2024", "to"),
        ("from=2024-05-01&to=2024-04-01", "from"),
        ("from=2020-01-01&to=2024-01-01", "to"),
        ("kind=lost", "kind"),
        ("state=closed", "state"),
        ("account=1", "account"),
        ("limit=0", "limit"),
        ("cursor=x", "cursor"),
    ] {
        let (status, body) = server.get(&format!("/api/v1/reconciliation/?{query}")).await;
        assert_eq!((status, body["details"][field].is_string()), (400, true), "{query}: {body}");
    }
    // Only `from`: the report runs a month on from it, but never past today; a future `from` names `from`
    // alone, never the `to` the client did not send.
    let (status, body) = server.get("/api/v1/reconciliation/?from=2024-04-26").await;
    assert_eq!(
        (status, body["from"].as_str(), body["to"].as_str()),
        (200, Some("2024-04-26"), Some("2024-05-26")),
        "{body}"
    );
    let (status, body) = server.get("/api/v1/reconciliation/?from=2999-01-01").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["details"].as_object().map(|fields| fields.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["from".to_owned()])
    );
    for name in ["a%00.txt", "a%0Ab.txt", "a%C2%85"] {
        let (status, body) = upload(&server, scenario_statement(), &format!("?file_name={name}")).await;
        assert_eq!((status, body["details"]["file_name"].is_string()), (400, true), "{name}: {body}");
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM statement_imports").await, 0, "nothing stored");
    let (status, body) = server.get("/api/v1/statements/abc/").await;
    assert_eq!((status, body["details"]["id"].is_string()), (400, true), "{body}");
    let (status, _) = server.get("/api/v1/statements/999/").await;
    assert_eq!(status, 404);
    let missing = server.post("/api/v1/reconciliation/discrepancies/999/accept/", r#"{"note":"x"}"#, None).await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    server.stop().await;
}
