//! The console's payouts and jobs pages as a browser without JavaScript sees them: the list's filters, order and
//! pages; a payout's detail with its history, jobs and masked recipient; cancel, retry and mark returned with
//! their confirmation steps; the admins' jobs page with retry and discard; roles, CSRF and the audit log.

use std::time::Duration;

use crate::common::console::{ConsoleClient, Page};
use crate::common::{self, ADMIN, Backend, TestDb, TestServer};
use payledger::gateway::{ALWAYS_TIMEOUT_CARD, DECLINED_CARD, TIMEOUT_ONCE_CARD};
use serde_json::{Value, json};

const PASSWORD: &str = "a long enough password";
const CARD: &str = "4111111111111111";

/// Starts a server and adds a viewer (`vera`) and an operator (`oleg`).
async fn start(db: &TestDb, settings: payledger::config::Settings) -> TestServer {
    let server = TestServer::start(settings).await;
    let store = db.store().await;
    for (name, role) in [("vera", "viewer"), ("oleg", "operator")] {
        payledger::auth::principals::create(&store, "test", name, PASSWORD, role, false).await.expect("user");
    }
    server
}

/// Creates a payout through the API and returns its id.
async fn create_payout(server: &TestServer, amount: &str, currency: &str, card: &str, user: Option<i64>) -> String {
    let mut body = json!({"amount": amount, "currency": currency,
        "recipient_details": {"type": "card", "number": card, "holder": "Test Person"}});
    if let Some(user) = user {
        body["source"] = json!({"user_id": user});
    }
    let created = server.post("/api/v1/payouts/", body.to_string(), None).await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.json["id"].as_str().expect("id").to_owned()
}

async fn deposit(server: &TestServer, user: i64, amount: &str) {
    let body = json!({"user_id": user, "amount": amount}).to_string();
    assert_eq!(server.post("/api/add_funds/", body, None).await.status, 201);
}

/// Waits until the payout is in `status` (workers are asynchronous).
async fn wait_for(server: &TestServer, id: &str, status: &str) -> Value {
    for _ in 0..400 {
        let (code, payout) = server.get(&format!("/api/v1/payouts/{id}/")).await;
        assert_eq!(code, 200);
        if payout["status"] == status {
            return payout;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("payout {id} never became {status}");
}

/// The dead jobs as the API lists them.
async fn dead_jobs(server: &TestServer) -> Vec<Value> {
    let (status, jobs) = server.get("/api/v1/jobs/?status=dead").await;
    assert_eq!(status, 200);
    jobs.as_array().cloned().unwrap_or_default()
}

/// Waits until the payout's job is dead and returns its id.
async fn wait_for_dead_job(server: &TestServer, payout: &str) -> i64 {
    for _ in 0..400 {
        if let Some(job) = dead_jobs(server).await.iter().find(|job| job["payload"] == payout) {
            return job["id"].as_i64().expect("job id");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("payout {payout} never got a dead job");
}

/// Every audit row (newest first).
async fn audit(server: &TestServer) -> Vec<Value> {
    let page: Value = server
        .client
        .get(server.url("/api/v1/audit/?limit=500"))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("audit json");
    page["results"].as_array().cloned().unwrap_or_default()
}

fn find_audit<'a>(rows: &'a [Value], action: &str, target: &str) -> Option<&'a Value> {
    rows.iter().find(|row| row["action"] == action && row["target"] == target)
}

/// Follows a 303 and returns the page it leads to.
async fn follow(client: &ConsoleClient, answer: &Page) -> Page {
    assert_eq!(answer.status, 303, "{}", answer.body);
    client.get(answer.location.as_deref().expect("location")).await
}

/// No page may ever show a full card number.
fn assert_masked(page: &Page) {
    for number in [CARD, DECLINED_CARD, ALWAYS_TIMEOUT_CARD, TIMEOUT_ONCE_CARD] {
        assert!(!page.body.contains(number), "a full card number in the page:\n{}", page.body);
    }
}

/// The position of `needle` in the page (to check the order of rows).
fn at(page: &Page, needle: &str) -> usize {
    page.body.find(needle).unwrap_or_else(|| panic!("{needle:?} not in the page:\n{}", page.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_list_filters_orders_and_pages() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    settings.payouts.workers = 0;
    let server = start(&db, settings).await;
    for amount in ["10.00", "1500.00", "30.00", "20.00"] {
        create_payout(&server, amount, "RUB", CARD, None).await;
    }
    let dollars = create_payout(&server, "7.00", "USD", CARD, None).await;
    let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;

    let all = viewer.get("/admin/payouts").await;
    assert_eq!(all.status, 200);
    assert!(all.body.contains("5 payouts") && all.body.contains("1,500.00 RUB") && all.body.contains("7.00 USD"));
    assert!(all.body.contains("•••• 1111") && all.body.contains("Test Person"));
    assert!(all.body.contains("<label>Status") && all.body.contains("<label>Currency"), "labelled filters");
    assert!(all.body.contains("class=\"table-wrap\""));
    assert_masked(&all);
    // Newest first by default.
    assert!(at(&all, "7.00 USD") < at(&all, "10.00 RUB"));

    let usd = viewer.get("/admin/payouts?currency=usd").await;
    assert_eq!(usd.status, 200);
    assert!(
        usd.body.contains("1 payout,")
            && usd.body.contains(&format!("{}…{}", &dollars[..8], &dollars[32..]))
            && !usd.body.contains("RUB</td>")
    );

    let by_amount = viewer.get("/admin/payouts?ordering=-amount").await;
    assert!(at(&by_amount, "1,500.00 RUB") < at(&by_amount, "30.00 RUB"));
    assert!(at(&by_amount, "30.00 RUB") < at(&by_amount, "20.00 RUB"));
    assert!(by_amount.body.contains("value=\"-amount\" selected"), "the form shows the current order");

    // Pages keep the filters and the order in their links.
    let first = viewer.get("/admin/payouts?currency=RUB&ordering=amount&page_size=2").await;
    assert!(first.body.contains("page 1 of 2") && at(&first, "10.00 RUB") < at(&first, "20.00 RUB"));
    assert!(!first.body.contains("30.00 RUB"));
    let next = "/admin/payouts?page=2&#38;currency=RUB&#38;ordering=amount&#38;page_size=2";
    assert!(first.body.contains(next), "next link in\n{}", first.body);
    let second = viewer.get(&next.replace("&#38;", "&")).await;
    assert!(second.body.contains("30.00 RUB") && second.body.contains("1,500.00 RUB"));
    assert!(!second.body.contains(">10.00 RUB") && second.body.contains("rel=\"prev\""));
    let beyond = viewer.get("/admin/payouts?page=9").await;
    assert_eq!(beyond.status, 200);
    assert!(beyond.body.contains("No payouts on this page") && beyond.body.contains("/admin/payouts?page=1"));

    // Status and dates.
    assert!(viewer.get("/admin/payouts?status=pending").await.body.contains("5 payouts"));
    let none = viewer.get("/admin/payouts?status=completed").await;
    assert!(none.body.contains("No payouts match these filters"));
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().expect("tomorrow");
    let after_today = viewer.get(&format!("/admin/payouts?created_after={today}&created_before={tomorrow}")).await;
    assert!(after_today.body.contains("5 payouts"), "{}", after_today.body);
    assert!(viewer.get(&format!("/admin/payouts?created_after={tomorrow}")).await.body.contains("No payouts match"));
    assert!(viewer.get(&format!("/admin/payouts?created_before={today}")).await.body.contains("No payouts match"));
    // Blank fields (an empty form submitted) are no filter.
    let blank = viewer.get("/admin/payouts?status=&currency=&created_after=&created_before=&ordering=").await;
    assert!(blank.body.contains("5 payouts"));

    // Bad filters are explained next to their field, with 400.
    for (query, message) in [
        ("status=lost", "Choose one of the listed statuses."),
        ("currency=XYZ", "Give an ISO 4217 code"),
        ("created_after=30.11.2026", "Give a date as YYYY-MM-DD."),
        ("ordering=random", "Choose one of the listed orders."),
        ("page=0", "The page must be 1 or more."),
        ("page_size=1000", "The page size must be between 1 and 100."),
    ] {
        let bad = viewer.get(&format!("/admin/payouts?{query}")).await;
        assert_eq!(bad.status, 400, "{query}");
        assert!(bad.body.contains(message), "{query}: {}", bad.body);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_detail_shows_history_jobs_and_a_masked_card() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = start(&db, common::settings(&db)).await;
    deposit(&server, 5, "100.00").await;
    let id = create_payout(&server, "12.34", "RUB", CARD, Some(5)).await;
    let payout = wait_for(&server, &id, "completed").await;
    let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;
    let page = viewer.get(&format!("/admin/payouts/{id}")).await;
    assert_eq!(page.status, 200);
    assert_masked(&page);
    for expected in [
        id.as_str(),
        "12.34 RUB",
        "Card •••• 1111",
        "Test Person",
        "user 5",
        "<span class=\"badge completed\">completed</span>",
        payout["gateway_reference"].as_str().expect("reference"),
        "Status history",
        "pending → <span class=\"badge processing\">processing</span>",
        "processing → <span class=\"badge completed\">completed</span>",
        "worker",
        "<span class=\"badge done\">done</span>",
        "1 / 8",
    ] {
        assert!(page.body.contains(expected), "{expected:?} missing from\n{}", page.body);
    }
    assert!(!page.body.contains("Mark returned"), "a viewer is offered no actions");
    // An operator is offered what the state machine allows: a completed payout can only be marked returned.
    let operator = ConsoleClient::login(&server, "oleg", PASSWORD).await;
    let page = operator.get(&format!("/admin/payouts/{id}")).await;
    assert!(page.body.contains(&format!("href=\"/admin/payouts/{id}/return\"")));
    assert!(!page.body.contains(&format!("/admin/payouts/{id}/cancel")));
    assert!(!page.body.contains(&format!("/admin/payouts/{id}/retry")));

    assert_eq!(viewer.get("/admin/payouts/0191e5a4-0000-7000-8000-000000000000").await.status, 404);
    assert_eq!(viewer.get("/admin/payouts/not-a-uuid").await.status, 404);
    server.stop().await;
}

/// Cancel a pending payout (its hold released), refused twice, by a viewer and without the CSRF token; on both
/// backends.
async fn cancel_scenario(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let mut settings = common::settings(&db);
    settings.payouts.workers = 0;
    let server = start(&db, settings).await;
    deposit(&server, 7, "100.00").await;
    let id = create_payout(&server, "30.00", "RUB", CARD, Some(7)).await;
    assert_eq!(server.user_balance(7).await, Some(("70.00".into(), "30.00".into())));
    let path = format!("/admin/payouts/{id}/cancel");

    let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;
    assert_eq!(viewer.get(&path).await.status, 403, "a viewer is not asked to confirm");
    assert_eq!(viewer.post(&path, &[]).await.status, 403, "nor may cancel");

    let operator = ConsoleClient::login(&server, "oleg", PASSWORD).await;
    let detail = operator.get(&format!("/admin/payouts/{id}")).await;
    assert!(detail.body.contains(&format!("href=\"{path}\"")), "pending: cancel offered");
    let confirm = operator.get(&path).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains(&format!("Cancel payout {id} of 30.00 RUB to •••• 1111?")), "{}", confirm.body);
    assert!(confirm.body.contains(&format!("action=\"{path}\"")) && confirm.body.contains("name=\"csrf\""));
    assert_masked(&confirm);
    assert_eq!(server.user_balance(7).await, Some(("70.00".into(), "30.00".into())), "a GET changes nothing");

    assert_eq!(operator.post_raw(&path, &[]).await.status, 403, "no CSRF token");
    assert_eq!(operator.post_raw(&path, &[("csrf", "forged")]).await.status, 403, "a wrong CSRF token");
    let done = operator.post(&path, &[]).await;
    assert_eq!(done.location.as_deref(), Some(format!("/admin/payouts/{id}?done=cancelled").as_str()));
    let page = follow(&operator, &done).await;
    assert!(page.body.contains("Payout cancelled.") && page.body.contains("badge cancelled"));
    assert!(page.body.contains("pending → <span class=\"badge cancelled\">cancelled</span>"));
    assert_eq!(server.user_balance(7).await, Some(("100.00".into(), "0.00".into())), "the hold is released");

    // Again: refused inline with 409, nothing changes.
    let again = operator.post(&path, &[]).await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("only pending payouts can be cancelled") && again.body.contains("role=\"alert\""));
    assert!(!again.body.contains("<form method=\"post\" action=\"/admin/payouts"), "no form for an impossible action");
    assert_eq!(operator.get(&path).await.status, 409);

    let rows = audit(&server).await;
    let row = find_audit(&rows, "payout.edit", &format!("payout:{id}")).expect("the cancellation is audited");
    assert_eq!(row["actor"], "oleg");
    assert_eq!(
        (row["before"]["status"].as_str(), row["after"]["status"].as_str()),
        (Some("pending"), Some("cancelled"))
    );
    assert!(!serde_json::to_string(&rows).expect("json").contains(CARD));
    server.stop().await;
    db.assert_verified().await;
}

/// Retry a failed payout through its dead job (from its page), and discard another dead job (from the jobs page);
/// on both backends.
async fn retry_and_discard_scenario(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let mut settings = common::settings(&db);
    settings.payouts.max_attempts = 1;
    let server = start(&db, settings).await;
    deposit(&server, 9, "100.00").await;
    let retried = create_payout(&server, "40.00", "RUB", ALWAYS_TIMEOUT_CARD, Some(9)).await;
    let discarded = create_payout(&server, "25.00", "RUB", ALWAYS_TIMEOUT_CARD, Some(9)).await;
    let retried_job = wait_for_dead_job(&server, &retried).await;
    let discarded_job = wait_for_dead_job(&server, &discarded).await;
    wait_for(&server, &retried, "failed").await;
    wait_for(&server, &discarded, "failed").await;
    assert_eq!(server.user_balance(9).await, Some(("100.00".into(), "0.00".into())), "failing released the holds");

    let operator = ConsoleClient::login(&server, "oleg", PASSWORD).await;
    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;

    // The payout page shows the dead job and offers a retry, which closes that job.
    let page = operator.get(&format!("/admin/payouts/{retried}")).await;
    assert!(
        page.body.contains("<span class=\"badge dead\">dead</span>") && page.body.contains("simulated gateway timeout")
    );
    let path = format!("/admin/payouts/{retried}/retry");
    assert!(page.body.contains(&format!("href=\"{path}\"")));
    let confirm = operator.get(&path).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Retry payout") && confirm.body.contains(&format!("Dead job</dt><dd>{retried_job}")));
    let done = operator.post(&path, &[]).await;
    assert_eq!(done.location.as_deref(), Some(format!("/admin/payouts/{retried}?done=retried").as_str()));
    let page = follow(&operator, &done).await;
    assert!(page.body.contains("Payout retried"));
    assert!(page.body.contains("failed → <span class=\"badge pending\">pending</span>"));
    // It fails again (the card always times out): a new dead job, the first one closed.
    let second_job = wait_for_dead_job(&server, &retried).await;
    assert_ne!(second_job, retried_job);

    // The jobs page is for admins.
    assert_eq!(operator.get("/admin/jobs").await.status, 403);
    assert_eq!(operator.post(&format!("/admin/jobs/{discarded_job}/discard"), &[]).await.status, 403);
    let jobs = admin.get("/admin/jobs").await;
    assert_eq!(jobs.status, 200);
    assert!(jobs.body.contains(&format!("/admin/jobs/{discarded_job}/discard")));
    assert!(jobs.body.contains(&format!("/admin/jobs/{second_job}/retry")));
    assert!(!jobs.body.contains(&format!("/admin/jobs/{retried_job}/")), "the retried job is closed");
    assert!(jobs.body.contains("simulated gateway timeout") && jobs.body.contains("1 / 1"));

    // Discard: confirmation, CSRF, the action, then it is gone and cannot be retried or discarded again.
    let path = format!("/admin/jobs/{discarded_job}/discard");
    let confirm = admin.get(&path).await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains(&format!("Discard dead job {discarded_job}?")) && confirm.body.contains("No money moves")
    );
    assert_masked(&confirm);
    assert_eq!(admin.post_raw(&path, &[]).await.status, 403);
    let done = admin.post(&path, &[]).await;
    assert_eq!(done.location.as_deref(), Some(format!("/admin/jobs?done=discarded&job={discarded_job}").as_str()));
    let jobs = follow(&admin, &done).await;
    assert!(jobs.body.contains(&format!("Job {discarded_job} discarded.")));
    assert!(!jobs.body.contains(&format!("/admin/jobs/{discarded_job}/")), "it left the dead list");
    assert!(dead_jobs(&server).await.iter().all(|job| job["id"] != discarded_job), "the API's dead list too");
    assert_eq!(server.user_balance(9).await, Some(("100.00".into(), "0.00".into())), "discarding moved no money");
    let again = admin.post(&path, &[]).await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("only dead jobs can be discarded"));
    let api_retry = server.client.post(server.url(&format!("/api/v1/jobs/{discarded_job}/retry/"))).send().await;
    assert_eq!(api_retry.expect("retry").status(), 409, "a discarded job cannot be retried");
    assert_eq!(admin.post(&format!("/admin/jobs/{discarded_job}/retry"), &[]).await.status, 409);
    let page = operator.get(&format!("/admin/payouts/{discarded}")).await;
    assert!(page.body.contains("<span class=\"badge discarded\">discarded</span>"));
    assert!(page.body.contains(&format!("its dead job {discarded_job} was discarded by {}", ADMIN.0)), "{}", page.body);
    assert!(!page.body.contains(&format!("/admin/payouts/{discarded}/retry\"")));
    assert_eq!(operator.post(&format!("/admin/payouts/{discarded}/retry"), &[]).await.status, 409);

    // Retry from the jobs page: what POST /api/v1/jobs/{id}/retry/ does.
    let path = format!("/admin/jobs/{second_job}/retry");
    assert_eq!(admin.get(&path).await.status, 200);
    let done = admin.post(&path, &[]).await;
    assert_eq!(done.location.as_deref(), Some(format!("/admin/payouts/{retried}?done=retried").as_str()));
    wait_for_dead_job_other_than(&server, &retried, &[retried_job, second_job]).await;

    let rows = audit(&server).await;
    let discard = find_audit(&rows, "job.discard", &format!("job:{discarded_job}")).expect("the discard is audited");
    assert_eq!(discard["actor"], ADMIN.0);
    assert_eq!(
        (discard["before"]["status"].as_str(), discard["after"]["status"].as_str()),
        (Some("dead"), Some("discarded"))
    );
    let retries: Vec<&Value> = rows
        .iter()
        .filter(|row| row["action"] == "job.retry" && row["target"] == format!("payout:{retried}"))
        .collect();
    assert_eq!(retries.len(), 2, "both retries audited");
    assert!(retries.iter().any(|row| row["actor"] == "oleg") && retries.iter().any(|row| row["actor"] == ADMIN.0));
    server.stop().await;
    db.assert_verified().await;
}

async fn wait_for_dead_job_other_than(server: &TestServer, payout: &str, known: &[i64]) -> i64 {
    for _ in 0..400 {
        let found = dead_jobs(server).await.iter().find_map(|job| {
            let id = job["id"].as_i64()?;
            (job["payload"] == payout && !known.contains(&id)).then_some(id)
        });
        if let Some(id) = found {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("payout {payout} never got another dead job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_flows_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        cancel_scenario(backend).await;
        retry_and_discard_scenario(backend).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completed_payout_is_marked_returned() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = start(&db, common::settings(&db)).await;
    deposit(&server, 3, "100.00").await;
    let id = create_payout(&server, "60.00", "RUB", CARD, Some(3)).await;
    wait_for(&server, &id, "completed").await;
    assert_eq!(server.user_balance(3).await, Some(("40.00".into(), "0.00".into())));
    let operator = ConsoleClient::login(&server, "oleg", PASSWORD).await;

    // Cancelling a completed payout is not offered, and refused when asked for anyway.
    let cancel = operator.get(&format!("/admin/payouts/{id}/cancel")).await;
    assert_eq!(cancel.status, 409);
    assert!(cancel.body.contains("This payout is completed: only pending payouts can be cancelled."));
    assert_eq!(operator.post(&format!("/admin/payouts/{id}/cancel"), &[]).await.status, 409);

    let path = format!("/admin/payouts/{id}/return");
    let viewer = ConsoleClient::login(&server, "vera", PASSWORD).await;
    assert_eq!(viewer.post(&path, &[]).await.status, 403);
    let confirm = operator.get(&path).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains(&format!("Mark payout {id} of 60.00 RUB to •••• 1111 returned?")));
    let done = operator.post(&path, &[]).await;
    assert_eq!(done.location.as_deref(), Some(format!("/admin/payouts/{id}?done=returned").as_str()));
    let page = follow(&operator, &done).await;
    assert!(page.body.contains("Payout marked returned.") && page.body.contains("badge returned"));
    assert_eq!(server.user_balance(3).await, Some(("100.00".into(), "0.00".into())), "the money went back");
    let again = operator.post(&path, &[]).await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("only completed payouts can be marked returned"));

    let rows = audit(&server).await;
    let row = find_audit(&rows, "payout.edit", &format!("payout:{id}")).expect("audited");
    assert_eq!((row["actor"].as_str(), row["after"]["status"].as_str()), (Some("oleg"), Some("returned")));
    server.stop().await;
    db.assert_verified().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_payout_explains_why_it_cannot_be_retried() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = start(&db, common::settings(&db)).await;
    let id = create_payout(&server, "5.00", "RUB", DECLINED_CARD, None).await;
    wait_for(&server, &id, "failed").await;
    let operator = ConsoleClient::login(&server, "oleg", PASSWORD).await;
    let page = operator.get(&format!("/admin/payouts/{id}")).await;
    assert_masked(&page);
    assert!(page.body.contains("•••• 0002") && page.body.contains("declined"));
    assert!(page.body.contains("It cannot be retried: it failed with a final answer"), "{}", page.body);
    assert!(!page.body.contains(&format!("href=\"/admin/payouts/{id}/retry\"")));
    let confirm = operator.get(&format!("/admin/payouts/{id}/retry")).await;
    assert_eq!(confirm.status, 409);
    assert!(confirm.body.contains("no dead job to retry"));
    let refused = operator.post(&format!("/admin/payouts/{id}/retry"), &[]).await;
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains("no dead job to retry"));
    let (_, payout) = server.get(&format!("/api/v1/payouts/{id}/")).await;
    assert_eq!(payout["status"], "failed", "nothing changed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_jobs_page_lists_retrying_jobs_and_pages() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let mut settings = common::settings(&db);
    // A timed-out first attempt waits a long time before its next one: the job stays retrying.
    settings.payouts.retry_base = Duration::from_secs(600);
    settings.payouts.max_attempts = 3;
    let server = start(&db, settings).await;
    let mut retrying = Vec::new();
    for _ in 0..3 {
        retrying.push(create_payout(&server, "1.00", "RUB", TIMEOUT_ONCE_CARD, None).await);
    }
    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    let mut page = admin.get("/admin/jobs?status=retrying").await;
    for _ in 0..400 {
        if page.body.contains("3 jobs,") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        page = admin.get("/admin/jobs?status=retrying").await;
    }
    assert_eq!(page.status, 200);
    assert!(page.body.contains("3 jobs,") && page.body.contains("<span class=\"badge retrying\">retrying</span>"));
    assert!(page.body.contains("simulated gateway timeout") && page.body.contains("1 / 3"));
    assert!(page.body.contains("value=\"retrying\" selected"));
    assert!(!page.body.contains("Discard…"), "only dead jobs can be discarded");
    for id in &retrying {
        assert!(page.body.contains(&format!("/admin/payouts/{id}")));
    }
    assert!(admin.get("/admin/jobs?status=dead").await.body.contains("No dead or retrying jobs."));
    let all = admin.get("/admin/jobs").await;
    assert!(all.body.contains("3 jobs,"));

    let first = admin.get("/admin/jobs?status=retrying&page_size=2").await;
    assert!(first.body.contains("page 1 of 2"));
    assert!(first.body.contains("/admin/jobs?page=2&#38;status=retrying&#38;page_size=2"));
    let second = admin.get("/admin/jobs?page=2&status=retrying&page_size=2").await;
    assert!(second.body.contains("page 2 of 2") && second.body.contains("rel=\"prev\""));
    assert_eq!(admin.get("/admin/jobs?status=whatever").await.status, 400);

    // A retrying job is not dead: neither retried nor discarded.
    let (_, queued) = server.get("/api/v1/jobs/?status=queued").await;
    let job = queued[0]["id"].as_i64().expect("a queued job");
    let refused = admin.post(&format!("/admin/jobs/{job}/discard"), &[]).await;
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains(&format!("Job {job} is retrying: only dead jobs can be discarded.")));
    assert_eq!(admin.get(&format!("/admin/jobs/{job}/retry")).await.status, 409);
    assert_eq!(admin.get("/admin/jobs/999999/discard").await.status, 404);
    server.stop().await;
}
