//! A browser-less console client: logs in through the form, keeps the session cookie, and sends each form
//! with the page's CSRF token, as a browser would.

use super::TestServer;

/// A signed-in console user.
pub struct ConsoleClient {
    http: reqwest::Client,
    base: String,
    /// The session cookie's value.
    pub session: String,
    /// The session's CSRF token (read from a page).
    pub csrf: String,
}

/// An answer: status, `Location` if any, and the body.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// The value of the first `name="csrf" value="…"` in a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

async fn page(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|value| value.to_str().ok()).map(str::to_owned);
    Page { status, location, body: response.text().await.unwrap_or_default() }
}

/// Submits the login form; the answer and the session cookie if one was set.
pub async fn submit_login(server: &TestServer, username: &str, password: &str) -> (Page, Option<String>) {
    let http = no_redirects();
    let form = http.get(server.url("/admin/login")).send().await.expect("login page");
    let cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.strip_prefix("payledger_login_csrf="))
        .and_then(|value| value.split(';').next())
        .expect("login csrf cookie")
        .to_owned();
    let html = form.text().await.expect("login html");
    let csrf = csrf_of(&html).expect("login csrf field");
    let response = http
        .post(server.url("/admin/login"))
        .header("Cookie", format!("payledger_login_csrf={cookie}"))
        .form(&[("username", username), ("password", password), ("csrf", csrf.as_str()), ("next", "/admin/")])
        .send()
        .await
        .expect("login");
    let session = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.strip_prefix("payledger_session="))
        .and_then(|value| value.split(';').next())
        .filter(|value| !value.is_empty())
        .map(str::to_owned);
    (page(response).await, session)
}

impl ConsoleClient {
    /// Logs in through the form; panics if refused.
    pub async fn login(server: &TestServer, username: &str, password: &str) -> ConsoleClient {
        let (answer, session) = submit_login(server, username, password).await;
        assert_eq!(answer.status, 303, "console login as {username}: {}", answer.body);
        let session = session.expect("session cookie");
        let mut client = ConsoleClient { http: no_redirects(), base: server.url(""), session, csrf: String::new() };
        let home = client.get("/admin/").await;
        client.csrf = csrf_of(&home.body).expect("csrf on the dashboard");
        client
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GETs a console page.
    pub async fn get(&self, path: &str) -> Page {
        let response = self
            .http
            .get(self.url(path))
            .header("Cookie", format!("payledger_session={}", self.session))
            .send()
            .await
            .expect("console get");
        page(response).await
    }

    /// POSTs a form with this session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", self.csrf.as_str()));
        self.post_raw(path, &all).await
    }

    /// POSTs exactly these fields (to test CSRF refusals).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .http
            .post(self.url(path))
            .header("Cookie", format!("payledger_session={}", self.session))
            .form(fields)
            .send()
            .await
            .expect("console post");
        page(response).await
    }
}

/// Percent-encodes a query value.
pub fn query_value(text: &str) -> String {
    text.bytes()
        .map(|byte| if byte.is_ascii_alphanumeric() { char::from(byte).to_string() } else { format!("%{byte:02X}") })
        .collect()
}
