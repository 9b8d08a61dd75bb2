//! Logging in and out of the console, the session cookie, and the CSRF checks.
//!
//! - The session cookie holds 32 random bytes; the database keeps only their SHA-256 with the user's id and the
//!   session's CSRF token. The cookie is `HttpOnly`, `SameSite=Strict`, scoped to `/admin`, and `Secure` when
//!   the browser reached the proxy in front over TLS (`X-Forwarded-Proto: https` from a proxy in
//!   `PAYLEDGER_TRUSTED_PROXIES`; the server itself speaks plain HTTP).
//! - Each session has its own CSRF token, embedded in every form and checked on every POST (constant time).
//!   The login form, before any session exists, carries a token that must match a short-lived cookie (double
//!   submit).
//! - The user's role and active flag are read with the session on every request, so a disabled user or a
//!   changed role takes effect at once.
//! - Login attempts count against the same per-address limit as `/api/token/` (the client's address behind
//!   trusted proxies).

use super::{Form, Query};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{ConsoleError, ConsoleUser, Layout, render};
use crate::AppState;
use crate::access_log::Client;
use crate::auth::principals::password_matches;
use crate::auth::tokens::{random_secret, secret_hash};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "payledger_session";

/// The login form's double-submit CSRF cookie.
const LOGIN_CSRF_COOKIE: &str = "payledger_login_csrf";

/// How long a console session lasts from login.
pub const SESSION_TTL: time::Duration = time::Duration::hours(8);

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A cookie for the console; `Secure` when the browser reached us over TLS (as a trusted proxy says), where it
/// may and must be.
fn set_cookie(client: &Client, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if client.https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .ok()
}

/// Compares two secrets in constant time (for equal lengths; lengths are not secret).
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where to go after logging in: only a path inside the console, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with("/admin")
                && !path.starts_with("//")
                && !path.contains("://")
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/admin/".to_owned(),
    }
}

/// The login page.
#[derive(askama::Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    username: String,
    error: Option<String>,
}

/// `?next=` on the login page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_page(client: &Client, next: String, username: String, error: Option<String>) -> Response {
    let csrf = match random_secret() {
        Ok(token) => token,
        Err(_) => return ConsoleError::Unavailable.into_response(),
    };
    let page = LoginPage { layout: Layout::anonymous("Log in", csrf.clone()), next, username, error };
    let status = if page.error.is_some() { axum::http::StatusCode::UNAUTHORIZED } else { axum::http::StatusCode::OK };
    let mut response = (status, render(&page)).into_response();
    if let Some(value) = set_cookie(client, LOGIN_CSRF_COOKIE, &csrf, 3600) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /admin/login`.
pub async fn login_form(client: Client, Query(query): Query<NextQuery>) -> Response {
    login_page(&client, safe_next(query.next.as_deref()), String::new(), None)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

/// `POST /admin/login`: a session for a valid username and password.
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(expected, &form.csrf) {
        return Err(ConsoleError::Csrf);
    }
    if let Some(address) = client.address()
        && let Err(wait) = state.login_limiter.check(&address, std::time::Instant::now())
    {
        tracing::warn!(client = %address, "console logins rate-limited");
        return Err(ConsoleError::RateLimited(wait.as_secs()));
    }
    // Failures per username too, as the token endpoint counts them: many addresses get a bounded number of
    // guesses at one account. The username is not logged (attacker-chosen text, maybe a misplaced password).
    let attempt = match state.username_limiter.attempt(&form.username, std::time::Instant::now()) {
        Ok(attempt) => attempt,
        Err(wait) => {
            tracing::warn!("failed console logins for one username rate-limited");
            return Err(ConsoleError::RateLimited(wait.as_secs()));
        }
    };
    let user = state.store.principal(&form.username).await?;
    let hash = user.as_ref().map_or_else(crate::auth::principals::dummy_hash, |user| user.password_hash.clone());
    let password = form.password;
    let matches = tokio::task::spawn_blocking(move || password_matches(&password, &hash)).await.unwrap_or(false);
    let user = match user {
        Some(user) if matches && user.active => {
            attempt.succeeded();
            user
        }
        _ => {
            attempt.failed();
            return Ok(login_page(&client, next, form.username, Some("Invalid username or password".into())));
        }
    };
    let token = random_secret().map_err(|_| ConsoleError::Unavailable)?;
    let token_hash = secret_hash(&token);
    let csrf = random_secret().map_err(|_| ConsoleError::Unavailable)?;
    let now = OffsetDateTime::now_utc();
    state.store.create_console_session(&token_hash, user.id, &csrf, now, now + SESSION_TTL).await?;
    tracing::info!(user = %user.username, "console login");
    let mut response = Redirect::to(&next).into_response();
    let headers_out = response.headers_mut();
    if let Some(value) = set_cookie(&client, SESSION_COOKIE, &token, SESSION_TTL.whole_seconds()) {
        headers_out.append(header::SET_COOKIE, value);
    }
    if let Some(value) = set_cookie(&client, LOGIN_CSRF_COOKIE, "", 0) {
        headers_out.append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /admin/logout` (CSRF-checked by the guard): ends the session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    _user: ConsoleUser,
) -> Result<Response, ConsoleError> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.store.end_console_session(&secret_hash(token)).await?;
    }
    let mut response = Redirect::to("/admin/login").into_response();
    if let Some(value) = set_cookie(&client, SESSION_COOKIE, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_console() {
        assert_eq!(safe_next(Some("/admin/payouts?status=failed")), "/admin/payouts?status=failed");
        assert_eq!(safe_next(Some("https://evil.example/admin")), "/admin/");
        assert_eq!(safe_next(Some("//evil.example/admin")), "/admin/");
        assert_eq!(safe_next(Some("/api/v1/jobs/")), "/admin/");
        assert_eq!(safe_next(None), "/admin/");
        assert_eq!(safe_next(Some("/admin/\r\nSet-Cookie: x=y")), "/admin/");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; payledger_session_x=2; payledger_session=3"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("3"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
