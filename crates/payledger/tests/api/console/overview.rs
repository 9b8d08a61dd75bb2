//! The console's dashboard, organizations and bank payments pages, as a browser without JavaScript sees them.

use crate::common::console::{ConsoleClient, Page};
use crate::common::{self, ADMIN, Backend, TestDb, TestServer, notice};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "a long enough password";
const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A server with `demo` demo organizations and a viewer `vera` and an operator `oleg`.
async fn start(db: &TestDb, demo: u32) -> TestServer {
    let mut settings = common::settings(db);
    settings.demo_organizations = demo;
    let server = TestServer::start(settings).await;
    let store = db.store().await;
    for (name, role) in [("vera", "viewer"), ("oleg", "operator")] {
        payledger::auth::principals::create(&store, "test", name, PASSWORD, role, false).await.expect("user");
    }
    server
}

fn demo_inn(n: u32) -> String {
    payledger::seed::demo_organization(n).0.to_string()
}

fn demo_name(n: u32) -> String {
    payledger::seed::demo_organization(n).1
}

/// Posts a valid notice and checks it was credited.
async fn pay(server: &TestServer, inn: &str, amount: &str, document: &str) -> Uuid {
    let id = Uuid::new_v4();
    let mut body = notice(id, json!(amount), inn);
    body["document_number"] = json!(document);
    let (status, answer) = server.post_webhook(&body).await;
    assert_eq!(status, 200, "{answer}");
    id
}

fn ok(page: &Page) -> &str {
    assert_eq!(page.status, 200, "{}", page.body);
    &page.body
}

/// How often `needle` occurs in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The audit rows of an action, from the API.
async fn audit_rows(server: &TestServer, action: &str) -> Vec<Value> {
    let (status, page) = server.get(&format!("/api/v1/audit/?action={action}")).await;
    assert_eq!(status, 200, "{page}");
    page["results"].as_array().cloned().unwrap_or_default()
}

/// Waits until the intake has kept `expected` rejected notices (it records them through the ledger writer).
async fn wait_for_rejected(db: &TestDb, expected: i64) {
    for _ in 0..100 {
        if db.scalar("SELECT COUNT(*) FROM rejected_notices").await >= expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the rejected notices were not kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_sums_todays_inflow_and_counts_what_needs_attention() {
    for backend in BACKENDS {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = start(&db, 3).await;
        let inn = demo_inn(0);
        let first = pay(&server, &inn, "100.50", "PAY-1").await;
        pay(&server, &demo_inn(1), "1000", "PAY-2").await;
        // A conflicting notice, a rejected one and a user's deposit.
        let (status, _) = server.post_webhook(&notice(first, json!("999.99"), &inn)).await;
        assert_eq!(status, 200);
        let (status, _) = server.post_webhook_raw("{\"operation_id\": 1}").await;
        assert_eq!(status, 400);
        wait_for_rejected(&db, 1).await;
        let deposit = server.post("/api/add_funds/", json!({"user_id": 7, "amount": "5.00"}).to_string(), None).await;
        assert_eq!(deposit.status, 201, "{}", deposit.text);

        let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;
        let page = viewer.get("/admin/").await;
        let html = ok(&page);
        // Today and this month: the credited payments only (not the conflicting notice, not the deposit).
        assert_eq!(count(html, ">1,100.50 RUB</a>"), 2, "{html}");
        assert!(html.contains("Organizations") && html.contains(">3</a>"), "{html}");
        assert!(html.contains("Users with a balance"));
        for label in ["pending", "processing", "completed", "failed", "cancelled", "returned"] {
            assert!(html.contains(&format!("<div class=\"label\">{label}</div>")), "payouts by {label}");
        }
        assert!(html.contains("Queued") && html.contains("Retrying") && html.contains("Dead"));
        assert!(html.contains("href=\"/admin/payments/rejected\">1</a>"), "one rejected notice: {html}");
        assert!(html.contains("href=\"/admin/payments/conflicts\">1</a>"), "one conflicting notice: {html}");
        // The chart: a bar per day of the last 30, today's with the day's sum, an accessible table too.
        assert!(html.contains("<svg class=\"chart\""));
        assert_eq!(count(html, "<rect class=\"bar\""), 30);
        let today = time::OffsetDateTime::now_utc().date().to_string();
        assert!(html.contains(&format!("<td>{today}</td><td class=\"num\">1,100.50 RUB</td>")), "{html}");
        assert!(!html.contains("style=\"") && !html.contains("<script>"), "the CSP allows no inline style or script");
        // Job counts link to the jobs page only for admins.
        assert!(!html.contains("/admin/jobs?"));
        let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
        assert!(ok(&admin.get("/admin/").await).contains("/admin/jobs?status=dead"));
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn organizations_are_searched_sorted_and_paged() {
    for backend in BACKENDS {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = start(&db, 25).await;
        pay(&server, &demo_inn(3), "500", "PAY-3").await;
        pay(&server, &demo_inn(7), "100", "PAY-7").await;
        let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;

        let page = viewer.get("/admin/organizations").await;
        let html = ok(&page);
        assert_eq!(count(html, "<td><a href=\"/admin/organizations/"), 25);
        assert!(html.contains("1–25 of 25"));
        assert!(!html.contains("New organization"), "a viewer is not offered the form");

        // By balance, largest first: the two credited organizations lead.
        let html = viewer.get("/admin/organizations?sort=-balance").await.body;
        let third = html.find(&demo_inn(3)).expect("org 3");
        let seventh = html.find(&demo_inn(7)).expect("org 7");
        let other = html.find(&demo_inn(0)).expect("org 0");
        assert!(third < seventh && seventh < other, "sorted by balance");
        assert!(html.contains("500.00 RUB") && html.contains("aria-sort=\"descending\""));
        // Smallest first: the credited ones come last.
        let html = viewer.get("/admin/organizations?sort=balance").await.body;
        assert!(html.find(&demo_inn(0)).expect("org 0") < html.find(&demo_inn(7)).expect("org 7"));
        assert!(html.find(&demo_inn(7)).expect("org 7") < html.find(&demo_inn(3)).expect("org 3"));

        // Search by part of the INN and by part of the name.
        let part = &demo_inn(5)[2..8];
        let html = viewer.get(&format!("/admin/organizations?q={part}")).await.body;
        assert!(html.contains(&demo_inn(5)), "found by INN substring");
        let name = demo_name(4);
        let word = name.split(' ').nth(1).expect("a word").trim_start_matches('«');
        let found = viewer.get(&format!("/admin/organizations?q={}", urlencode(word))).await;
        let html = ok(&found);
        assert!(html.contains(&demo_inn(4)), "found by name: {word}");
        assert!(html.contains(&format!("value=\"{word}\"")), "the search stays in the form");
        let html = viewer.get("/admin/organizations?q=nothing-like-this").await.body;
        assert!(html.contains("No organization matches"));
        // Wildcards are searched for literally.
        let html = viewer.get("/admin/organizations?q=%25").await.body;
        assert!(html.contains("No organization matches"));

        // Pages of ten, sorted by name descending; the links keep the order and the page size.
        let html = viewer.get("/admin/organizations?sort=-name&page_size=10&page=3").await.body;
        assert_eq!(count(&html, "<td><a href=\"/admin/organizations/"), 5);
        assert!(html.contains("21–25 of 25 · page 3 of 3"));
        let links = html.replace("&#38;", "&").replace("&amp;", "&");
        assert!(links.contains("href=\"/admin/organizations?sort=-name&page_size=10&page=2\""), "{html}");
        let mut names: Vec<String> = (0..25).map(demo_name).collect();
        names.sort();
        let html2 = viewer.get("/admin/organizations?sort=-name&page_size=10").await.body;
        assert!(html2.contains(&names[24]) && !html2.contains(&names[0]));

        for bad in ["sort=size", "page=0", "page_size=1000", "page=x"] {
            assert_eq!(viewer.get(&format!("/admin/organizations?{bad}")).await.status, 400, "{bad}");
        }
        server.stop().await;
    }
}

/// Percent-encodes a query value.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_organization_shows_its_balance_chart_and_log() {
    for backend in BACKENDS {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = start(&db, 2).await;
        let inn = demo_inn(1);
        let first = pay(&server, &inn, "250.00", "DOC-A").await;
        let second = pay(&server, &inn, "1234.56", "DOC-B").await;
        let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;

        let page = viewer.get(&format!("/admin/organizations/{inn}")).await;
        let html = ok(&page);
        assert!(html.contains(&demo_name(1)), "the name is the title");
        assert!(html.contains("1,484.56 RUB"), "the balance");
        assert!(html.contains("<polyline class=\"line\""), "the balance chart");
        assert!(html.contains("0.00 RUB → 250.00 RUB") && html.contains("250.00 RUB → 1,484.56 RUB"), "{html}");
        assert!(html.contains("DOC-A") && html.contains("DOC-B") && html.contains("2024-04-27"));
        assert!(html.contains(&format!("href=\"/admin/payments/{first}\"")));
        assert!(html.contains(&format!("href=\"/admin/payments/{second}\"")));
        // Newest first; one change per page, then the older one.
        let page = viewer.get(&format!("/admin/organizations/{inn}?page_size=1")).await;
        let html = ok(&page);
        assert!(html.contains("DOC-B") && !html.contains("DOC-A"));
        let older = between(html, "<a href=\"", "\" rel=\"next\">Older").replace("&#38;", "&").replace("&amp;", "&");
        let page = viewer.get(&older).await;
        let html = ok(&page);
        assert!(html.contains("DOC-A") && !html.contains("DOC-B") && html.contains("← Newest"));
        assert!(!html.contains("Older →"), "the last page");

        // An organization with no change yet.
        let html = viewer.get(&format!("/admin/organizations/{}", demo_inn(0))).await.body;
        assert!(html.contains("No change of the balance yet"));
        assert_eq!(viewer.get("/admin/organizations/7707083893").await.status, 404);
        assert_eq!(viewer.get("/admin/organizations/12ab").await.status, 400);
        assert_eq!(viewer.get(&format!("/admin/organizations/{inn}?before=-1")).await.status, 400);
        server.stop().await;
    }
}

/// The text between the last `start` before `end` and `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let stop = html.find(end).expect("end marker");
    let begin = html[..stop].rfind(start).expect("start marker") + start.len();
    &html[begin..stop]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_create_organizations_with_an_audit_row() {
    for backend in BACKENDS {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = start(&db, 0).await;
        let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;
        let operator = ConsoleClient::login(&server, "oleg", PASSWORD).await;
        let inn = "7707083893";

        // Only operators: the form and the action; and only with the form's CSRF token.
        assert_eq!(viewer.get("/admin/organizations/new").await.status, 403);
        let refused = viewer.post("/admin/organizations/new", &[("inn", inn), ("name", "ПАО Сбербанк")]).await;
        assert_eq!(refused.status, 403);
        let forged = operator.post_raw("/admin/organizations/new", &[("inn", inn), ("name", "ПАО Сбербанк")]).await;
        assert_eq!(forged.status, 403);
        let html = operator.get("/admin/organizations/new").await;
        assert!(ok(&html).contains("name=\"csrf\"") && html.body.contains("<label for=\"inn\">INN</label>"));

        // Mistakes come back next to their field, with what was typed.
        let bad =
            operator.post("/admin/organizations/new", &[("inn", "7707083894"), ("name", "Typo <b>Ltd</b>")]).await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("The check digits do not match"), "{}", bad.body);
        assert!(bad.body.contains("value=\"7707083894\""), "the INN as typed");
        let escaped = ["value=\"Typo &lt;b&gt;Ltd&lt;/b&gt;\"", "value=\"Typo &#60;b&#62;Ltd&#60;/b&#62;\""];
        assert!(escaped.iter().any(|value| bad.body.contains(value)), "the name as typed, escaped: {}", bad.body);
        let bad = operator.post("/admin/organizations/new", &[("inn", "12345"), ("name", "  ")]).await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("10 digits") && bad.body.contains("Enter the organization"));
        assert_eq!(db.scalar("SELECT COUNT(*) FROM organizations").await, 0, "nothing was created");

        let created = operator.post("/admin/organizations/new", &[("inn", inn), ("name", " ПАО Сбербанк ")]).await;
        assert_eq!(created.status, 303, "{}", created.body);
        let location = created.location.expect("location");
        assert_eq!(location, format!("/admin/organizations/{inn}?created=1"));
        let html = operator.get(&location).await.body;
        assert!(html.contains("The organization was created.") && html.contains("ПАО Сбербанк"));
        assert_eq!(server.balance_text(inn).await.as_deref(), Some("0.00"), "the API sees it");

        // Once only.
        let again = operator.post("/admin/organizations/new", &[("inn", inn), ("name", "Another")]).await;
        assert_eq!(again.status, 409);
        assert!(again.body.contains("already exists") && again.body.contains(&format!("/admin/organizations/{inn}")));
        assert_eq!(db.scalar("SELECT COUNT(*) FROM organizations").await, 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM accounts WHERE kind = 'organization'").await, 1);

        // Audited, by the operator.
        let rows = audit_rows(&server, "organization.create").await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["actor"], "oleg");
        assert_eq!(rows[0]["target"], format!("organization:{inn}"));
        assert_eq!(rows[0]["after"]["name"], "ПАО Сбербанк");

        // Payments to it credit the account created here.
        pay(&server, inn, "42", "DOC-42").await;
        assert_eq!(server.balance_text(inn).await.as_deref(), Some("42.00"));
        let html = operator.get("/admin/organizations?q=Сбербанк").await.body;
        assert!(html.contains(inn) && html.contains("42.00 RUB"));
        server.stop().await;
        db.assert_verified().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_payment_inbox_filters_and_pages() {
    for backend in BACKENDS {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = start(&db, 2).await;
        let (a, b) = (demo_inn(0), demo_inn(1));
        let first = pay(&server, &a, "10", "A-1").await;
        pay(&server, &a, "20", "A-2").await;
        pay(&server, &b, "30", "B-1").await;
        let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;

        let page = viewer.get("/admin/payments").await;
        let html = ok(&page);
        assert_eq!(count(html, "<span class=\"badge applied\">Credited</span>"), 3);
        assert!(html.contains("10.00 RUB") && html.contains("30.00 RUB"));
        assert!(html.contains(&format!("href=\"/admin/organizations/{a}\"")) && html.contains(&demo_name(0)));
        assert!(html.find("B-1").expect("B-1") < html.find("A-1").expect("A-1"), "newest first");
        // Each shows the ledger transaction it was credited in.
        let stored = db.store().await.console_payment(first).await.expect("read").expect("stored");
        let transaction = stored.transaction_id.expect("credited");
        assert!(html.contains(&transaction.to_string()));

        let html = viewer.get(&format!("/admin/payments?inn={a}")).await.body;
        assert!(html.contains("A-1") && html.contains("A-2") && !html.contains("B-1"));
        assert!(html.contains(&format!("value=\"{a}\"")), "the filter stays in the form");
        let html = viewer.get("/admin/payments?status=received").await.body;
        assert!(html.contains("No bank payment matches"));
        let html = viewer.get("/admin/payments?status=applied").await.body;
        assert_eq!(count(&html, "badge applied"), 3);
        let today = time::OffsetDateTime::now_utc().date();
        let tomorrow = today.next_day().expect("tomorrow");
        let html = viewer.get(&format!("/admin/payments?from={today}&to={today}")).await.body;
        assert_eq!(count(&html, "badge applied"), 3, "the end date is included");
        let html = viewer.get(&format!("/admin/payments?from={tomorrow}")).await.body;
        assert!(html.contains("No bank payment matches"));

        // Pages of two.
        let html = viewer.get("/admin/payments?page_size=2").await.body;
        assert_eq!(count(&html, "badge applied"), 2);
        let next = between(&html, "<a href=\"", "\" rel=\"next\">").replace("&#38;", "&").replace("&amp;", "&");
        assert!(next.starts_with("/admin/payments?page_size=2&page=2&before="), "{next}");
        // A payment arriving between the two pages neither repeats a row nor hides one: the next page
        // continues below the last row shown.
        pay(&server, &b, "40", "B-2").await;
        let html = viewer.get(&next).await.body;
        assert_eq!(count(&html, "badge applied"), 1);
        assert!(html.contains("A-1") && !html.contains("B-2") && !html.contains("rel=\"next\""));
        assert!(html.contains("← Newest"));

        // Bad filters are shown next to their field.
        let bad = viewer.get("/admin/payments?from=27.04.2024&inn=12&status=lost").await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("Use the form YYYY-MM-DD") && bad.body.contains("10 or 12 digits"));
        assert!(bad.body.contains("Choose one of the listed statuses") && bad.body.contains("value=\"27.04.2024\""));
        let bad = viewer.get(&format!("/admin/payments?from={tomorrow}&to={today}")).await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("The end is before the start"));

        // One payment.
        let page = viewer.get(&format!("/admin/payments/{first}")).await;
        let html = ok(&page);
        assert!(html.contains(&first.to_string()) && html.contains(&transaction.to_string()) && html.contains("A-1"));
        assert_eq!(viewer.get(&format!("/admin/payments/{}", Uuid::new_v4())).await.status, 404);
        assert_eq!(viewer.get("/admin/payments/not-a-uuid").await.status, 400);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_and_conflicting_notices_show_their_bodies_escaped() {
    for backend in BACKENDS {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = start(&db, 1).await;
        let inn = demo_inn(0);
        let id = pay(&server, &inn, "10", "ORIG").await;
        let mut conflicting = notice(id, json!("11"), &inn);
        conflicting["document_number"] = json!("<img src=x onerror=alert(1)>");
        let (status, _) = server.post_webhook(&conflicting).await;
        assert_eq!(status, 200);
        let hostile = format!("{{\"payer_inn\": \"<script>alert(1)</script>\", \"pad\": \"{}\"}}", "x".repeat(3000));
        let (status, _) = server.post_webhook_raw(hostile).await;
        assert_eq!(status, 400);
        wait_for_rejected(&db, 1).await;
        let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;

        let page = viewer.get("/admin/payments/rejected").await;
        let html = ok(&page);
        assert!(!html.contains("<script>alert"), "never unescaped");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                || html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{html}"
        );
        assert!(html.contains("Cut short."), "the 3 KB body is cut to about 2 KB");
        assert!(!html.contains(&"x".repeat(2100)));
        assert!(html.contains("payer_inn"), "the reason names the field");
        assert!(html.contains("1–1 of 1"));

        let page = viewer.get("/admin/payments/conflicts").await;
        let html = ok(&page);
        assert!(!html.contains("<img src=x"), "never unescaped");
        assert!(
            html.contains("<span class=\"badge\">amount</span>")
                && html.contains("<span class=\"badge\">document_number</span>")
        );
        assert!(html.contains(&format!("href=\"/admin/payments/{id}\"")));
        // The original payment lists its conflicting notices.
        let html = viewer.get(&format!("/admin/payments/{id}")).await.body;
        assert!(html.contains("ORIG") && html.contains("<span class=\"badge\">amount</span>"));
        assert!(!html.contains("<img src=x"));

        // More rejected notices page, newest first.
        for n in 0..3 {
            let (status, _) = server.post_webhook_raw(format!("{{\"n\": {n}}}")).await;
            assert_eq!(status, 400);
        }
        wait_for_rejected(&db, 4).await;
        let html = viewer.get("/admin/payments/rejected?page_size=2").await.body;
        assert!(html.contains("1–2 of 4 · page 1 of 2"));
        assert!(html.find("{&quot;n&quot;: 2}").or(html.find("{&#34;n&#34;: 2}")).is_some(), "{html}");
        let html = viewer.get("/admin/payments/rejected?page_size=2&page=2").await.body;
        assert!(html.contains("3–4 of 4") && html.contains("script"));
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_needs_a_session_and_works_for_a_viewer() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = start(&db, 1).await;
    let id = pay(&server, &demo_inn(0), "1", "ONE").await;
    let pages = [
        "/admin/".to_owned(),
        "/admin/organizations".to_owned(),
        format!("/admin/organizations/{}", demo_inn(0)),
        "/admin/payments".to_owned(),
        format!("/admin/payments/{id}"),
        "/admin/payments/rejected".to_owned(),
        "/admin/payments/conflicts".to_owned(),
    ];
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;
    for path in &pages {
        let response = anonymous.get(server.url(path)).send().await.expect("get");
        assert_eq!(response.status(), 303, "{path} without a session");
        let page = viewer.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(page.body.contains("aria-current=\"page\""), "{path} marks its section");
        assert!(!page.body.contains("style=\""), "{path} has no inline style");
    }
    // A POST to the form without a session goes to the login page, not through.
    let response = anonymous
        .post(server.url("/admin/organizations/new"))
        .form(&[("inn", "7707083893"), ("name", "X")])
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 303);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM organizations WHERE inn = '7707083893'").await, 0);
    server.stop().await;
}
