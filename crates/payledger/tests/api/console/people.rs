//! The console's people pages as a browser without JavaScript uses them: users' balances (lookup, the five
//! operations with their confirmation step, refusals inline), users (create, disable, enable, role, password,
//! the last admin), and the audit log (filters, paging, escaping); CSRF and role refusals.

use crate::common::console::{ConsoleClient, Page, submit_login};
use crate::common::{self, ADMIN, Backend, TestDb, TestServer};
use payledger::store::AuditEntry;

const PASSWORD: &str = "a long enough password";

async fn server_with_users(db: &TestDb) -> TestServer {
    let server = TestServer::start(common::settings(db)).await;
    let store = db.store().await;
    for (name, role) in [("vera", "viewer"), ("oleg", "operator")] {
        payledger::auth::principals::create(&store, "test", name, PASSWORD, role, false).await.expect("user");
    }
    server
}

/// The hidden fields of the page's form that posts to `action` (the CSRF token left out: `post` adds it).
fn hidden_fields(html: &str, action: &str) -> Vec<(String, String)> {
    let start = html.find(&format!("action=\"{action}#")).unwrap_or_else(|| panic!("no form for {action}:\n{html}"));
    let form = &html[start..start + html[start..].find("</form>").expect("form end")];
    let mut fields = Vec::new();
    for piece in form.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = piece.split_once('"').expect("name");
        let value = rest.split_once("value=\"").expect("value").1.split_once('"').expect("value end").0;
        if name != "csrf" {
            fields.push((name.to_owned(), value.to_owned()));
        }
    }
    fields
}

/// Submits an operation form and answers the confirmation page.
async fn ask(client: &ConsoleClient, op: &str, fields: &[(&str, &str)]) -> Page {
    let page = client.post(&format!("/admin/balances/{op}"), fields).await;
    assert_eq!(page.status, 200, "{op} confirmation: {}", page.body);
    assert!(page.body.contains("Confirm"), "{}", page.body);
    page
}

/// Posts the confirmation page's form as its Confirm button would.
async fn confirm(client: &ConsoleClient, op: &str, confirmation: &Page) -> Page {
    let action = format!("/admin/balances/{op}");
    let fields = hidden_fields(&confirmation.body, &action);
    assert!(fields.iter().any(|(name, value)| name == "confirm" && value == "yes"));
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    client.post(&action, &borrowed).await
}

/// Asks, confirms, expects the redirect to the user's page, and returns that page.
async fn apply(client: &ConsoleClient, op: &str, fields: &[(&str, &str)]) -> Page {
    let question = ask(client, op, fields).await;
    let done = confirm(client, op, &question).await;
    assert_eq!(done.status, 303, "{op}: {}", done.body);
    let location = done.location.expect("location");
    assert!(location.starts_with("/admin/balances?user_id="), "{location}");
    let page = client.get(&location).await;
    assert_eq!(page.status, 200);
    page
}

/// The address of the page's link labelled `label`, unescaped.
fn link(html: &str, label: &str) -> String {
    let end = html.find(&format!("\">{label}</a>")).unwrap_or_else(|| panic!("no link {label}"));
    let start = html[..end].rfind("href=\"").expect("href") + "href=\"".len();
    html[start..end].replace("&#38;", "&").replace("&amp;", "&")
}

async fn audit_actions(server: &TestServer, actor: &str) -> Vec<(String, String)> {
    let (status, body) = server.get(&format!("/api/v1/audit/?actor={actor}&limit=500")).await;
    assert_eq!(status, 200);
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|row| {
            (
                row["action"].as_str().unwrap_or_default().to_owned(),
                row["target"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_five_operations_confirm_first_then_apply_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = server_with_users(&db).await;
        let oleg = ConsoleClient::login(&server, "oleg", PASSWORD).await;

        // The lookup: a form; a bad id inline; an unknown user has no account yet (a deposit opens one).
        let empty = oleg.get("/admin/balances").await;
        assert_eq!(empty.status, 200);
        assert!(empty.body.contains("name=\"user_id\"") && empty.body.contains("<label for=\"lookup-user\">"));
        let bad = oleg.get("/admin/balances?user_id=five").await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("must be a positive integer"), "{}", bad.body);
        let unknown = oleg.get("/admin/balances?user_id=5").await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.body.contains("User 5 has no account yet"));
        assert!(unknown.body.contains("action=\"/admin/balances/deposit#op-deposit\""));

        // Deposit: the first POST only asks; nothing happens until it is confirmed.
        let question = ask(&oleg, "deposit", &[("user_id", "5"), ("amount", "100")]).await;
        assert!(question.body.contains("Deposit 100.00 RUB to user 5?"), "{}", question.body);
        assert_eq!(server.user_balance(5).await, None, "nothing before the confirmation");
        let done = confirm(&oleg, "deposit", &question).await;
        assert_eq!(done.status, 303, "{}", done.body);
        let location = done.location.clone().expect("location");
        let page = oleg.get(&location).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Deposited 100.00 RUB to user 5."), "{}", page.body);
        assert!(page.body.contains("100.00 RUB"));
        assert_eq!(server.user_balance(5).await, Some(("100.00".into(), "0.00".into())));
        // The same confirmation again (a double click, a reload) applies once.
        let again = confirm(&oleg, "deposit", &question).await;
        assert_eq!((again.status, again.location.as_deref()), (303, Some(location.as_str())));
        assert_eq!(server.user_balance(5).await, Some(("100.00".into(), "0.00".into())));

        // Reserve, shown as an open reservation; then recognize it as revenue.
        let question =
            ask(&oleg, "reserve", &[("user_id", "5"), ("service_id", "1"), ("order_id", "42"), ("amount", "30.5")])
                .await;
        assert!(question.body.contains("Reserve 30.50 RUB of user 5 for order 42 of service 1?"), "{}", question.body);
        assert_eq!(server.user_balance(5).await, Some(("100.00".into(), "0.00".into())));
        let done = confirm(&oleg, "reserve", &question).await;
        assert_eq!(done.status, 303);
        let page = oleg.get(&done.location.expect("location")).await;
        assert!(page.body.contains("Reserved 30.50 RUB of user 5 for order 42 of service 1."), "{}", page.body);
        assert!(page.body.contains("<td>42</td>"), "the open reservation is listed");
        assert_eq!(server.user_balance(5).await, Some(("69.50".into(), "30.50".into())));

        let question =
            ask(&oleg, "deduct", &[("user_id", "5"), ("service_id", "1"), ("order_id", "42"), ("amount", "30.50")])
                .await;
        assert!(question.body.contains("capture 30.50 RUB reserved by user 5 for order 42 of service 1?"));
        assert!(question.body.contains("The reservation for this order holds 30.50 RUB."));
        assert_eq!(server.user_balance(5).await, Some(("69.50".into(), "30.50".into())));
        let done = confirm(&oleg, "deduct", &question).await;
        assert_eq!(done.status, 303);
        let page = oleg.get(&done.location.expect("location")).await;
        assert!(page.body.contains("Recognized 30.50 RUB reserved for order 42 of service 1 as revenue."));
        assert!(!page.body.contains("<td>42</td>"), "no longer open");
        assert_eq!(server.user_balance(5).await, Some(("69.50".into(), "0.00".into())));

        // Release, without an amount: the whole reservation.
        apply(&oleg, "reserve", &[("user_id", "5"), ("service_id", "1"), ("order_id", "43"), ("amount", "20")]).await;
        assert_eq!(server.user_balance(5).await, Some(("49.50".into(), "20.00".into())));
        let question = ask(&oleg, "release", &[("user_id", "5"), ("service_id", "1"), ("order_id", "43")]).await;
        assert!(question.body.contains("Release the whole reservation of user 5 for order 43 of service 1"));
        assert_eq!(server.user_balance(5).await, Some(("49.50".into(), "20.00".into())));
        let done = confirm(&oleg, "release", &question).await;
        assert_eq!(done.status, 303);
        let page = oleg.get(&done.location.expect("location")).await;
        assert!(page.body.contains("Released 20.00 RUB reserved for order 43 of service 1 back to user 5."));
        assert_eq!(server.user_balance(5).await, Some(("69.50".into(), "0.00".into())));

        // Transfer: to a user without an account, refused inline with nothing changed; then to one with one.
        let question = ask(&oleg, "transfer", &[("user_id", "5"), ("to_user_id", "7"), ("amount", "25")]).await;
        assert!(question.body.contains("Transfer 25.00 RUB from user 5 to user 7?"));
        let refused = confirm(&oleg, "transfer", &question).await;
        assert_eq!(refused.status, 404, "{}", refused.body);
        assert!(refused.body.contains("User 7 has no account"), "{}", refused.body);
        assert!(refused.body.contains("value=\"7\""), "the input is kept");
        assert_eq!(server.user_balance(5).await, Some(("69.50".into(), "0.00".into())));
        apply(&oleg, "deposit", &[("user_id", "6"), ("amount", "1")]).await;
        let page = apply(&oleg, "transfer", &[("user_id", "5"), ("to_user_id", "6"), ("amount", "25")]).await;
        assert!(page.body.contains("Transferred 25.00 RUB from user 5 to user 6."), "{}", page.body);
        assert_eq!(server.user_balance(5).await, Some(("44.50".into(), "0.00".into())));
        assert_eq!(server.user_balance(6).await, Some(("26.00".into(), "0.00".into())));

        // Refusals are shown next to the field, with the API's status, and change nothing.
        let question =
            ask(&oleg, "reserve", &[("user_id", "5"), ("service_id", "1"), ("order_id", "44"), ("amount", "1000")])
                .await;
        let refused = confirm(&oleg, "reserve", &question).await;
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert!(refused.body.contains("Insufficient funds: 44.50 RUB available."), "{}", refused.body);
        let question = ask(&oleg, "release", &[("user_id", "5"), ("service_id", "1"), ("order_id", "999")]).await;
        assert!(question.body.contains("There is no reservation for this order."));
        let refused = confirm(&oleg, "release", &question).await;
        assert_eq!(refused.status, 404, "{}", refused.body);
        assert!(refused.body.contains("No reservation for order 999 of service 1."), "{}", refused.body);
        let question =
            ask(&oleg, "deduct", &[("user_id", "5"), ("service_id", "1"), ("order_id", "42"), ("amount", "30.50")])
                .await;
        let refused = confirm(&oleg, "deduct", &question).await;
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert!(refused.body.contains("already captured"), "{}", refused.body);
        assert_eq!(server.user_balance(5).await, Some(("44.50".into(), "0.00".into())));

        // Invalid input never reaches a confirmation: 400 with the input and the message by the field.
        for (amount, message) in [
            ("1.234", "The amount must have at most 2 decimal places."),
            ("abc", "The amount must be a decimal number."),
            ("-5", "The amount must be greater than zero."),
            ("0", "The amount must be greater than zero."),
            ("", "This field is required."),
        ] {
            let page = oleg.post("/admin/balances/deposit", &[("user_id", "5"), ("amount", amount)]).await;
            assert_eq!(page.status, 400, "{amount}: {}", page.body);
            assert!(page.body.contains(message), "{amount}: {}", page.body);
            assert!(page.body.contains(&format!("name=\"amount\" value=\"{amount}\"")), "the input is kept");
            assert!(!page.body.contains("name=\"confirm\""));
        }
        let page = oleg
            .post(
                "/admin/balances/reserve",
                &[("user_id", "5"), ("service_id", "x"), ("order_id", "0"), ("amount", "1")],
            )
            .await;
        assert_eq!(page.status, 400);
        assert!(page.body.contains("The id must be a positive integer."));
        let page =
            oleg.post("/admin/balances/transfer", &[("user_id", "5"), ("to_user_id", "5"), ("amount", "1")]).await;
        assert_eq!(page.status, 400);
        assert!(page.body.contains("Must be another user than the sender."));
        // Even a confirmation with a changed amount is checked again.
        let page =
            oleg.post("/admin/balances/deposit", &[("user_id", "5"), ("amount", "1.001"), ("confirm", "yes")]).await;
        assert_eq!(page.status, 400);
        assert_eq!(server.user_balance(5).await, Some(("44.50".into(), "0.00".into())));

        // The history shows every line; every change is in the audit log under the console user's name.
        let page = oleg.get("/admin/balances?user_id=5").await;
        for kind in ["Deposit", "Reservation", "Revenue recognition", "Release", "Transfer"] {
            assert!(page.body.contains(&format!("<td>{kind}</td>")), "{kind}");
        }
        assert!(page.body.contains("to user 6"));
        let actions = audit_actions(&server, "oleg").await;
        for (action, target) in [
            ("balance.deposit", "balance-user:5"),
            ("balance.reserve", "order:5:1:42"),
            ("balance.deduct", "order:5:1:42"),
            ("balance.release", "order:5:1:43"),
            ("balance.transfer", "balance-user:5"),
        ] {
            assert!(actions.contains(&(action.to_owned(), target.to_owned())), "{action} {target}: {actions:?}");
        }
        assert_eq!(actions.iter().filter(|(action, _)| action == "balance.deposit").count(), 2, "{actions:?}");
        server.stop().await;
        db.assert_verified().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_history_and_the_open_reservations_are_paged_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else { continue };
        let server = server_with_users(&db).await;
        for _ in 0..30 {
            let answer = server.post("/api/add_funds/", r#"{"user_id": 9, "amount": "1.00"}"#, None).await;
            assert_eq!(answer.status, 201);
        }
        for order in 1..=27 {
            let body = format!(r#"{{"user_id": 9, "service_id": 3, "order_id": {order}, "amount": "0.10"}}"#);
            assert_eq!(server.post("/api/reserve_funds/", body, None).await.status, 201);
        }
        let vera = ConsoleClient::login(&server, "vera", PASSWORD).await;
        let first = vera.get("/admin/balances?user_id=9").await;
        assert_eq!(first.status, 200);
        assert!(first.body.contains("27.30 RUB") && first.body.contains("2.70 RUB"), "available and reserved");
        assert_eq!(first.body.matches("<td class=\"hide-narrow\">").count(), 25, "one page of history");
        let older = link(&first.body, "Older");
        let second = vera.get(&older).await;
        assert_eq!(second.status, 200);
        assert_eq!(second.body.matches("<td class=\"hide-narrow\">").count(), 25);
        assert!(second.body.contains(">Newest</a>"));
        let older = link(&second.body, "Older");
        assert!(older.contains("&before=") && !older.contains("holds_after"), "{older}");
        let third = vera.get(&older).await;
        assert_eq!(third.body.matches("<td class=\"hide-narrow\">").count(), 7, "57 lines in all");
        assert!(!third.body.contains(">Older</a>"), "the last page");
        let more = link(&first.body, "More reservations");
        let holds = vera.get(&more).await;
        assert_eq!(holds.status, 200);
        assert!(holds.body.contains("<td>26</td>") && holds.body.contains("<td>27</td>"), "{}", holds.body);
        assert!(!holds.body.contains("<td>25</td>"));
        assert_eq!(vera.get("/admin/balances?user_id=9&before=x").await.status, 400);
        server.stop().await;
        db.assert_verified().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_and_csrf_are_enforced() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = server_with_users(&db).await;
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 5, "amount": "10"}"#, None).await.status, 201);
    let vera = ConsoleClient::login(&server, "vera", PASSWORD).await;
    let page = vera.get("/admin/balances?user_id=5").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("10.00 RUB"));
    assert!(!page.body.contains("/admin/balances/deposit"), "a viewer is offered no operations");
    let refused = vera.post("/admin/balances/deposit", &[("user_id", "5"), ("amount", "1"), ("confirm", "yes")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(vera.get("/admin/users").await.status, 403);

    let oleg = ConsoleClient::login(&server, "oleg", PASSWORD).await;
    assert_eq!(oleg.get("/admin/users").await.status, 403);
    assert_eq!(oleg.get("/admin/users/user?username=admin").await.status, 403);
    assert_eq!(oleg.get("/admin/audit").await.status, 403);
    assert_eq!(oleg.post("/admin/users/role", &[("username", "oleg"), ("role", "admin")]).await.status, 403);
    // A form without this session's token is refused before anything is looked at.
    let forged =
        oleg.post_raw("/admin/balances/deposit", &[("user_id", "5"), ("amount", "1"), ("confirm", "yes")]).await;
    assert_eq!(forged.status, 403);
    let forged = oleg
        .post_raw("/admin/balances/deposit", &[("user_id", "5"), ("amount", "1"), ("confirm", "yes"), ("csrf", "x")])
        .await;
    assert_eq!(forged.status, 403);
    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    assert_eq!(
        admin
            .post_raw("/admin/users", &[("username", "mallory"), ("password", PASSWORD), ("role", "admin")])
            .await
            .status,
        403
    );
    assert_eq!(server.user_balance(5).await, Some(("10.00".into(), "0.00".into())));
    assert!(db.store().await.principal("mallory").await.expect("read").is_none());
    // Operators and admins see the forms.
    assert!(
        oleg.get("/admin/balances?user_id=5").await.body.contains("action=\"/admin/balances/transfer#op-transfer\"")
    );
    server.stop().await;
    db.assert_verified().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_manage_users() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = server_with_users(&db).await;
    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    let list = admin.get("/admin/users").await;
    assert_eq!(list.status, 200);
    for name in ["admin", "oleg", "vera"] {
        assert!(list.body.contains(&format!(">{name}</a>")), "{name}");
    }
    assert!(list.body.contains("<label for=\"create-password\">"));

    // Refusals inline, the input kept (never the password).
    let weak = admin.post("/admin/users", &[("username", "alice"), ("password", "short"), ("role", "operator")]).await;
    assert_eq!(weak.status, 400);
    assert!(weak.body.contains("The password must be at least 12 characters."), "{}", weak.body);
    assert!(weak.body.contains("value=\"alice\""));
    assert!(weak.body.contains("<option value=\"operator\" selected>"));
    assert!(!weak.body.contains("value=\"short\""));
    let bad = admin.post("/admin/users", &[("username", "al ice"), ("password", PASSWORD), ("role", "viewer")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("The username must be"));
    let role = admin.post("/admin/users", &[("username", "alice"), ("password", PASSWORD), ("role", "root")]).await;
    assert_eq!(role.status, 400);
    assert!(role.body.contains("The role must be viewer, operator or admin."));
    let taken = admin.post("/admin/users", &[("username", "oleg"), ("password", PASSWORD), ("role", "viewer")]).await;
    assert_eq!(taken.status, 409);
    assert!(taken.body.contains("A user with that name exists."));

    // Create, then see it with a notice.
    let created =
        admin.post("/admin/users", &[("username", "alice"), ("password", PASSWORD), ("role", "operator")]).await;
    assert_eq!(
        (created.status, created.location.as_deref()),
        (303, Some("/admin/users/user?username=alice&done=created"))
    );
    let page = admin.get("/admin/users/user?username=alice&done=created").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("User created.") && page.body.contains("operator"));
    ConsoleClient::login(&server, "alice", PASSWORD).await;

    // Disable (she can no longer log in), enable.
    let disabled = admin.post("/admin/users/active", &[("username", "alice"), ("active", "false")]).await;
    assert_eq!(
        (disabled.status, disabled.location.as_deref()),
        (303, Some("/admin/users/user?username=alice&done=disabled"))
    );
    assert!(admin.get("/admin/users/user?username=alice&done=disabled").await.body.contains("User disabled"));
    assert_eq!(submit_login(&server, "alice", PASSWORD).await.0.status, 401);
    let enabled = admin.post("/admin/users/active", &[("username", "alice"), ("active", "true")]).await;
    assert_eq!(enabled.status, 303);
    let alice = ConsoleClient::login(&server, "alice", PASSWORD).await;

    // Role: admin, so she sees the users page at once; back to operator.
    assert_eq!(alice.get("/admin/users").await.status, 403);
    let promoted = admin.post("/admin/users/role", &[("username", "alice"), ("role", "admin")]).await;
    assert_eq!(
        (promoted.status, promoted.location.as_deref()),
        (303, Some("/admin/users/user?username=alice&done=role"))
    );
    assert_eq!(alice.get("/admin/users").await.status, 200);
    assert_eq!(admin.post("/admin/users/role", &[("username", "alice"), ("role", "operator")]).await.status, 303);
    let bad_role = admin.post("/admin/users/role", &[("username", "alice"), ("role", "superuser")]).await;
    assert_eq!(bad_role.status, 400);
    assert!(bad_role.body.contains("The role must be viewer, operator or admin."));

    // A new password typed by the admin: twice the same, long enough.
    let differ = admin
        .post(
            "/admin/users/password",
            &[("username", "alice"), ("password", "new password number one"), ("password_again", "other")],
        )
        .await;
    assert_eq!(differ.status, 400);
    assert!(differ.body.contains("The two passwords differ"));
    let weak = admin
        .post("/admin/users/password", &[("username", "alice"), ("password", "short"), ("password_again", "short")])
        .await;
    assert_eq!(weak.status, 400);
    assert!(weak.body.contains("The password must be at least 12 characters."));
    let reset = admin
        .post(
            "/admin/users/password",
            &[
                ("username", "alice"),
                ("password", "new password number one"),
                ("password_again", "new password number one"),
            ],
        )
        .await;
    assert_eq!(
        (reset.status, reset.location.as_deref()),
        (303, Some("/admin/users/user?username=alice&done=password"))
    );
    assert_eq!(submit_login(&server, "alice", PASSWORD).await.0.status, 401);
    ConsoleClient::login(&server, "alice", "new password number one").await;

    // The last active admin can be neither disabled nor demoted.
    let last = admin.post("/admin/users/active", &[("username", "admin"), ("active", "false")]).await;
    assert_eq!(last.status, 409, "{}", last.body);
    assert!(last.body.contains("this would leave no active admin"), "{}", last.body);
    let last = admin.post("/admin/users/role", &[("username", "admin"), ("role", "viewer")]).await;
    assert_eq!(last.status, 409);
    assert!(last.body.contains("this would leave no active admin"));
    assert!(last.body.contains("<option value=\"viewer\" selected>"), "the choice is kept");
    assert_eq!(admin.get("/admin/users").await.status, 200, "still an admin");
    assert_eq!(admin.get("/admin/users/user?username=nobody").await.status, 404);
    assert_eq!(admin.post("/admin/users/role", &[("username", "nobody"), ("role", "viewer")]).await.status, 404);

    // Every change is audited under the admin's name.
    let actions = audit_actions(&server, "admin").await;
    for action in ["user.create", "user.disable", "user.enable", "user.role", "user.password"] {
        assert!(actions.contains(&(action.to_owned(), "user:alice".to_owned())), "{action}: {actions:?}");
    }
    // Names that look like path segments work like any other.
    let dots = admin.post("/admin/users", &[("username", ".."), ("password", PASSWORD), ("role", "viewer")]).await;
    assert_eq!(dots.location.as_deref(), Some("/admin/users/user?username=..&done=created"));
    let page = admin.get("/admin/users/user?username=..").await;
    assert!(page.status == 200 && page.body.contains("<h1>User ..</h1>"), "{}", page.body);
    assert_eq!(admin.post("/admin/users/active", &[("username", ".."), ("active", "false")]).await.status, 303);
    assert!(!db.store().await.principal("..").await.expect("read").expect("user").active);

    let page = admin.get("/admin/users/user?username=alice").await;
    assert!(page.body.contains("href=\"/admin/audit?target=user%3Aalice\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_users_list_is_paged() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = server_with_users(&db).await;
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60)
         INSERT INTO users (username, password_hash, role, active, password_generated, created_at, updated_at)
         SELECT 'bulk' || printf('%02d', i), 'x', 'viewer', 1, 0, '2026-01-01T00:00:00.000000Z',
                '2026-01-01T00:00:00.000000Z' FROM n",
    )
    .await;
    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    let first = admin.get("/admin/users").await;
    assert_eq!(first.status, 200);
    assert!(first.body.contains(">admin</a>") && first.body.contains(">bulk49</a>"));
    assert!(!first.body.contains(">bulk50</a>"));
    assert!(first.body.contains("href=\"/admin/users?after=bulk49\""), "{}", first.body);
    let second = admin.get("/admin/users?after=bulk49").await;
    assert!(second.body.contains(">bulk50</a>") && second.body.contains(">vera</a>"));
    assert!(!second.body.contains(">bulk49</a>") && !second.body.contains("after="));
    assert!(second.body.contains("2026-01-01 00:00:00 +00:00"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_log_filters_pages_and_escapes() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = server_with_users(&db).await;
    let store = db.store().await;
    let now = time::OffsetDateTime::now_utc();
    for index in 0..60 {
        let entry = AuditEntry {
            actor: if index % 2 == 0 { "ann".into() } else { "bob".into() },
            action: "test.thing".into(),
            target: format!("thing:{index}"),
            before: None,
            after: Some(format!(r#"{{"n": {index}}}"#)),
            origin: None,
        };
        store.write_audit_entry(&entry, now).await.expect("audit");
    }
    let hostile = AuditEntry {
        actor: "eve".into(),
        action: "test.hostile".into(),
        target: "thing:<b>x</b>".into(),
        before: Some(r#"{"name": "<script>alert(1)</script>"}"#.into()),
        after: Some("not json </pre><script>alert(2)</script>".into()),
        origin: Some(payledger::origin::RequestOrigin {
            id: payledger::origin::RequestId::stored("<i>req</i>".into()),
            client: Some(std::net::IpAddr::from([192, 0, 2, 9])),
        }),
    };
    store.write_audit_entry(&hostile, now).await.expect("audit");

    let admin = ConsoleClient::login(&server, ADMIN.0, ADMIN.1).await;
    let page = admin.get("/admin/audit").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<label for=\"audit-actor\">"));
    // Newest first, escaped: never markup from the log.
    let hostile_at = page.body.find("test.hostile").expect("the newest entry");
    assert!(hostile_at < page.body.find("thing:59").expect("an older entry"));
    assert!(!page.body.contains("<script>alert"), "nothing from the log runs");
    assert!(page.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(page.body.contains("&#60;/pre&#62;&#60;script&#62;alert(2)"));
    assert!(!page.body.contains("<b>x</b>"));
    // The request it came from: the client and its id, escaped too.
    assert!(page.body.contains("from 192.0.2.9") && page.body.contains("<code>&#60;i&#62;req&#60;/i&#62;</code>"));
    assert!(page.body.matches("<pre class=\"raw\">").count() > 40);

    // Paging: 50 a page, older pages through `before=`.
    assert!(page.body.contains("thing:11<") && !page.body.contains("thing:10<"));
    let older = link(&page.body, "Older");
    assert!(older.starts_with("/admin/audit?before="), "{older}");
    let second = admin.get(&older).await;
    assert_eq!(second.status, 200);
    assert!(second.body.contains("thing:10<") && !second.body.contains("thing:11<"));
    assert!(second.body.contains("user.create") && second.body.contains(">Newest</a>"));

    // Filters by actor, action and target, in the query string.
    let ann = admin.get("/admin/audit?actor=ann").await;
    assert_eq!(ann.status, 200);
    assert!(ann.body.contains("thing:58<") && !ann.body.contains("thing:59<") && !ann.body.contains("test.hostile<"));
    assert!(ann.body.contains("value=\"ann\""));
    let one = admin.get("/admin/audit?action=test.thing&target=thing%3A7").await;
    assert!(one.body.contains("thing:7<") && !one.body.contains("thing:17<"));
    assert_eq!(one.body.matches("<tr>").count(), 2, "the header and one entry");
    let none = admin.get("/admin/audit?actor=nobody").await;
    assert!(none.body.contains("No entries match these filters."));
    // The pages of a filtered log keep the filter.
    let things = admin.get("/admin/audit?action=test.thing").await;
    assert!(things.body.contains("thing:10<") && !things.body.contains("thing:9<"));
    let older = link(&things.body, "Older");
    assert!(older.starts_with("/admin/audit?action=test.thing&before="), "{older}");
    let rest = admin.get(&older).await;
    assert!(rest.body.contains("thing:9<") && rest.body.contains("thing:0<"));
    assert!(!rest.body.contains("thing:10<") && !rest.body.contains("user.create<"));
    let broken = admin.get("/admin/audit?before=abc").await;
    assert_eq!(broken.status, 400);
    assert!(broken.body.contains("The page link is broken"));

    // A change made in the console is there too.
    admin.post("/admin/users", &[("username", "carol"), ("password", PASSWORD), ("role", "viewer")]).await;
    let carol = admin.get("/admin/audit?target=user%3Acarol").await;
    assert!(carol.body.contains("user.create") && carol.body.contains("href=\"/admin/users/user?username=carol\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmation_replays_its_refusal() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let server = server_with_users(&db).await;
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 5, "amount": "10"}"#, None).await.status, 201);
    let oleg = ConsoleClient::login(&server, "oleg", PASSWORD).await;
    let question = ask(&oleg, "transfer", &[("user_id", "5"), ("to_user_id", "6"), ("amount", "20")]).await;
    let first = confirm(&oleg, "transfer", &question).await;
    assert_eq!(first.status, 404, "user 6 has no account");
    assert_eq!(server.post("/api/add_funds/", r#"{"user_id": 6, "amount": "10"}"#, None).await.status, 201);
    // The same confirmation is answered as before: it is never applied later by surprise.
    let again = confirm(&oleg, "transfer", &question).await;
    assert_eq!(again.status, 404);
    assert!(again.body.contains("User 6 has no account"));
    // A damaged confirmation is refused.
    let damaged = oleg
        .post(
            "/admin/balances/transfer",
            &[("user_id", "5"), ("to_user_id", "6"), ("amount", "1"), ("confirm", "yes"), ("key", "../x")],
        )
        .await;
    assert_eq!(damaged.status, 400);
    assert_eq!(server.user_balance(5).await, Some(("10.00".into(), "0.00".into())));
    let audit = audit_actions(&server, "oleg").await;
    assert!(audit.is_empty(), "nothing applied, nothing audited: {audit:?}");
    server.stop().await;
    db.assert_verified().await;
}
