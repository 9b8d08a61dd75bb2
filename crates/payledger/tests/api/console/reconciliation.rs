//! The reconciliation pages as a browser sees them: the upload form (multipart, its CSRF token in the form's
//! address), the import's page, the report with its filters, and Apply / Accept with a note, both as plain
//! forms (a redirect back) and through htmx (the row alone).

use crate::common::console::{ConsoleClient, Page};
use crate::common::statements::{Credit, PAYER, STRANGER, one_c};
use crate::common::{self, ADMIN, Backend, TestDb, TestServer};

const PASSWORD: &str = "a long enough password";
const BOUNDARY: &str = "----payledgerTestBoundary7MA4YWxkTrZu0gW";

/// The upload form's body: the file and the format, as a browser encodes them.
fn multipart(file_name: &str, content: &str) -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"format\"\r\n\r\nauto\r\n--{BOUNDARY}\r\n\
         Content-Disposition: form-data; name=\"account\"\r\n\r\n\r\n--{BOUNDARY}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/plain\r\n\r\n\
         {content}\r\n--{BOUNDARY}--\r\n"
    )
}

/// Sends the upload form to `action` (the page's form address, CSRF token included).
async fn submit_upload(server: &TestServer, console: &ConsoleClient, action: &str, body: String) -> Page {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let response = http
        .post(server.url(action))
        .header("Cookie", format!("payledger_session={}", console.session))
        .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|value| value.to_str().ok()).map(str::to_owned);
    Page { status, location, body: response.text().await.unwrap_or_default() }
}

/// The form address of the upload form on a page.
fn upload_action(html: &str) -> String {
    let start = html.find("action=\"/admin/reconciliation/upload").expect("the upload form") + "action=\"".len();
    let end = html[start..].find('"').expect("the action's end") + start;
    html[start..end].replace("&amp;", "&")
}

/// The id of the row of the discrepancy of `kind` on a report page.
fn row_of(html: &str, kind: &str) -> i64 {
    let badge = html.find(&format!("badge {kind}")).expect("a row of the kind");
    let start = html[..badge].rfind("id=\"discrepancy-").expect("the row's id") + "id=\"discrepancy-".len();
    let end = html[start..].find('"').expect("the id's end") + start;
    html[start..end].parse().expect("a discrepancy id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_uploads_a_statement_and_decides_its_discrepancies_in_the_console() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let mut notice = common::notice(uuid::Uuid::new_v4(), "10.00".into(), PAYER);
    notice["document_number"] = "PAY-1".into();
    assert_eq!(server.post_webhook(&notice).await.0, 200);
    let console = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    let statement = one_c(&[
        Credit { number: "PAY-1", date: "28.04.2024", kopecks: 1_000, payer_inn: PAYER },
        Credit { number: "PAY-2", date: "28.04.2024", kopecks: 2_000, payer_inn: PAYER },
        Credit { number: "PAY-3", date: "28.04.2024", kopecks: 3_000, payer_inn: STRANGER },
    ]);

    let page = console.get("/admin/reconciliation").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let action = upload_action(&page.body);
    let forged =
        submit_upload(&server, &console, "/admin/reconciliation/upload?csrf=forged", multipart("a.txt", &statement))
            .await;
    assert_eq!(forged.status, 403, "a wrong CSRF token");
    let bad =
        submit_upload(&server, &console, &action, multipart("bad.txt", &statement.replace("КонецФайла", ""))).await;
    assert_eq!(bad.status, 400, "a bad file is refused with its reason: {}", bad.body);
    assert!(bad.body.contains("line "), "{}", bad.body);

    let uploaded = submit_upload(&server, &console, &action, multipart("april.txt", &statement)).await;
    assert_eq!(uploaded.status, 303, "{}", uploaded.body);
    let location = uploaded.location.expect("to the import's page");
    assert!(location.starts_with("/admin/statements/") && location.ends_with("?done=imported"), "{location}");
    let summary = console.get(&location).await;
    assert_eq!(summary.status, 200);
    assert!(summary.body.contains("april.txt") && summary.body.contains("Imported."), "{}", summary.body);
    let again = submit_upload(&server, &console, &action, multipart("april.txt", &statement)).await;
    assert!(again.location.is_some_and(|to| to.ends_with("?done=already")), "the same file again changes nothing");

    let report = console.get("/admin/reconciliation?from=2024-04-28&to=2024-04-28").await;
    assert_eq!(report.status, 200, "{}", report.body);
    let missing = row_of(&report.body, "missing_notice");
    let unknown = row_of(&report.body, "unknown_payer");
    let only_unknown = console.get("/admin/reconciliation?from=2024-04-28&to=2024-04-28&kind=unknown_payer").await;
    assert!(!only_unknown.body.contains(&format!("discrepancy-{missing}\"")), "the kind filter holds");

    // Apply without JavaScript: a redirect back to the report, the payer credited.
    let applied = console.post(&format!("/admin/reconciliation/discrepancies/{missing}/apply"), &[]).await;
    assert_eq!((applied.status, applied.location.as_deref()), (303, Some("/admin/reconciliation?done=applied")));
    assert_eq!(server.balance_text(PAYER).await.as_deref(), Some("30.00"));

    // Accept through htmx: the row comes back accepted with the note; a blank note is refused in place.
    let http = reqwest::Client::new();
    let accept = |note: &'static str| {
        http.post(server.url(&format!("/admin/reconciliation/discrepancies/{unknown}/accept")))
            .header("Cookie", format!("payledger_session={}", console.session))
            .header("HX-Request", "true")
            .header("X-CSRF-Token", console.csrf.clone())
            .form(&[("note", note)])
            .send()
    };
    let blank = accept("   ").await.expect("accept");
    assert_eq!(blank.headers().get("hx-retarget").and_then(|v| v.to_str().ok()), Some("#action-result"));
    let row = accept("a refund the bank booked by mistake").await.expect("accept");
    assert_eq!(row.status(), 200);
    let row = row.text().await.unwrap_or_default();
    assert!(row.contains(&format!("<tr id=\"discrepancy-{unknown}\"")), "{row}");
    assert!(row.contains("accepted") && row.contains("a refund the bank booked by mistake"), "{row}");
    assert_eq!(server.balance_text(STRANGER).await, None, "accepting credits nothing");

    // A viewer reads the pages and cannot post.
    let store = db.store().await;
    payledger::auth::principals::create(&store, "test", "vera", "a long enough password", "viewer", false)
        .await
        .expect("create viewer");
    let viewer = ConsoleClient::login(&server, "vera", "a long enough password").await;
    let page = viewer.get("/admin/reconciliation").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/admin/reconciliation/upload"), "no upload form for a viewer");
    let refused = viewer.post(&format!("/admin/reconciliation/discrepancies/{unknown}/apply"), &[]).await;
    assert_eq!(refused.status, 403);
    server.stop().await;
    db.assert_verified().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciliation_page_renders_its_filters_and_refuses_bad_ones() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let console = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    let page = console.get("/admin/reconciliation?from=2024-04-01&to=2024-04-30&kind=ambiguous&state=open").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("No statement imported yet.") && page.body.contains("No discrepancy matches."));
    assert!(page.body.contains("<option value=\"ambiguous\" selected>"), "the filter is shown back");
    assert!(upload_action(&page.body).contains(&format!("csrf={}", console.csrf)), "the form carries its token");
    let bad = console.get("/admin/reconciliation?from=2024-05-01&to=2024-04-01").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("must not be after the last"), "{}", bad.body);
    let missing = console.get("/admin/statements/999").await;
    assert_eq!(missing.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multipart_post_needs_the_upload_route_an_operator_and_the_token() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.statement_max_bytes = 4096;
    let server = TestServer::start(settings).await;
    payledger::auth::principals::create(&db.store().await, "test", "vera", PASSWORD, "viewer", false)
        .await
        .expect("a viewer");
    let statement = one_c(&[Credit { number: "PAY-1", date: "28.04.2024", kopecks: 1_000, payer_inn: PAYER }]);
    let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;
    let action = format!("/admin/reconciliation/upload?csrf={}", viewer.csrf);
    let refused = submit_upload(&server, &viewer, &action, multipart("a.txt", &statement)).await;
    assert_eq!(refused.status, 403, "a viewer may not upload: {}", refused.body);

    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    let untokened =
        submit_upload(&server, &admin, "/admin/reconciliation/upload", multipart("a.txt", &statement)).await;
    assert_eq!(untokened.status, 403, "no token: {}", untokened.body);
    // The address token is the upload's alone: another action's multipart body is read as a form.
    let elsewhere = format!("/admin/statements/1/apply?csrf={}", admin.csrf);
    let other = submit_upload(&server, &admin, &elsewhere, multipart("a.txt", &statement)).await;
    assert_eq!(other.status, 403, "{}", other.body);

    let action = format!("/admin/reconciliation/upload?csrf={}", admin.csrf);
    let nul = submit_upload(&server, &admin, &action, multipart("a\u{0}.txt", &statement)).await;
    assert_eq!(nul.status, 400, "{}", nul.body);
    assert!(nul.body.contains("file name must not hold control characters"), "{}", nul.body);
    let large = submit_upload(&server, &admin, &action, multipart("big.txt", &"x".repeat(80 * 1024))).await;
    assert_eq!(large.status, 413, "{}", large.body);
    let semicolon = submit_upload(&server, &admin, &action, multipart("april; final.txt", &statement)).await;
    assert_eq!(semicolon.status, 303, "{}", semicolon.body);
    let location = semicolon.location.expect("to the import");
    let page = admin.get(&location).await;
    assert!(page.body.contains("april; final.txt"), "the file name is read whole: {}", page.body);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM statement_imports").await, 1, "only the good upload");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_kind_state_or_page_link_is_refused_with_a_message() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let console = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    for (query, message) in [
        ("kind=lost", "Choose one of the listed kinds."),
        ("state=closed", "Choose one of the listed states."),
        ("cursor=abc", "The page link is broken"),
    ] {
        let page = console.get(&format!("/admin/reconciliation?{query}")).await;
        assert_eq!(page.status, 400, "{query}");
        assert!(page.body.contains(message), "{query}: {}", page.body);
    }
    server.stop().await;
}
