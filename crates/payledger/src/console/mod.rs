//! The operators' console at `/admin/`: server-rendered pages (askama templates under `templates/console/`),
//! working without JavaScript; a vendored htmx only refreshes live parts of some pages.
//!
//! Every console route passes [`guard`]: it finds the session, checks the role the route needs in
//! [`needs`] (the console's one access table, with the API's roles), and checks the CSRF token of every
//! POST. Handlers receive the [`ConsoleUser`]. Every change goes through the same services (and the ledger
//! engine) as the API, with the user's name for the audit log.
//!
//! One module per page or area, each with its routes: [`dashboard`], [`organizations`], [`payments`] (bank
//! payments), [`balances`] and its [`balance_operations`], [`users`], [`audit`], [`payouts`] and [`jobs`];
//! [`reconciliation`] (bank statements: upload, the report, apply and accept); [`session`] logs in and out.
//! What several of them share has a module of its own: [`format`] (amounts, times, ids), `lists` and
//! `payout_lists` (query strings, paging, choices), `charts`, `calendar` and `ids`; `upload` reads the one
//! multipart form.

pub mod audit;
pub mod balance_operations;
pub mod balances;
mod calendar;
mod charts;
pub mod dashboard;
pub mod format;
mod ids;
pub mod jobs;
mod lists;
pub mod organizations;
pub mod payments;
mod payout_lists;
pub mod payouts;
pub mod reconciliation;
pub mod session;
mod upload;
pub mod users;
pub mod webhooks;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::auth::tokens::{Role, secret_hash};
use crate::store::StoreError;

/// The largest console form accepted, in bytes.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// The console's stylesheet and the vendored htmx, embedded in the binary.
const CONSOLE_CSS: &str = include_str!("../../assets/console/console.css");
const HTMX_JS: &[u8] = include_bytes!("../../assets/htmx/htmx-2.0.11.min.js");

/// The signed-in user, as pages see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    /// The user's id.
    pub id: i64,
    /// The login name.
    pub username: String,
    /// The role now.
    pub role: Role,
    /// This session's CSRF token, for the forms of the page.
    pub csrf: String,
}

impl ConsoleUser {
    /// Whether the user has at least `role` (to show or hide actions; the guard enforces).
    pub fn can(&self, role: Role) -> bool {
        self.role.at_least(role)
    }

    /// The page frame for this user.
    pub fn layout(&self, title: impl Into<String>, section: &'static str) -> Layout {
        Layout {
            title: title.into(),
            section,
            username: Some(self.username.clone()),
            role: self.role.as_str(),
            csrf: self.csrf.clone(),
            can_operate: self.can(Role::Operator),
            is_admin: self.can(Role::Admin),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConsoleUser {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<ConsoleUser>().cloned().ok_or(ConsoleError::LoggedOut(None))
    }
}

/// What every page's frame needs: title, the navigation's current section, the user and the CSRF token.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The page title.
    pub title: String,
    /// Which navigation entry is current.
    pub section: &'static str,
    /// The signed-in user, if any.
    pub username: Option<String>,
    /// Their role.
    pub role: &'static str,
    /// The CSRF token for forms.
    pub csrf: String,
    /// Whether operator actions are shown.
    pub can_operate: bool,
    /// Whether admin pages are shown.
    pub is_admin: bool,
}

impl Layout {
    /// The frame of a page seen before logging in.
    pub fn anonymous(title: &str, csrf: String) -> Layout {
        Layout {
            title: title.to_owned(),
            section: "",
            username: None,
            role: "",
            csrf,
            can_operate: false,
            is_admin: false,
        }
    }
}

/// Renders a template, or the error page if rendering failed (a defect, logged).
pub fn render<T: askama::Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "a console template failed to render");
            ConsoleError::Defect.into_response()
        }
    }
}

/// Why a console request was not answered with its page.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session (or it ended): to the login page, then back to `next`.
    #[error("log in")]
    LoggedOut(Option<String>),
    /// The user's role is too low.
    #[error("{0}")]
    Forbidden(String),
    /// A form without a valid CSRF token.
    #[error("the form expired or did not come from this console; reload the page and try again")]
    Csrf,
    /// Too many logins from this address.
    #[error("too many attempts; retry in {0} s")]
    RateLimited(u64),
    /// Nothing there.
    #[error("{0}")]
    NotFound(String),
    /// A malformed request (a bad query parameter).
    #[error("{0}")]
    BadRequest(String),
    /// An upload over its size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The database failed.
    #[error("the database is unavailable; retry shortly")]
    Store(#[from] StoreError),
    /// The ledger engine could not take the change (or, for `Unconfirmed`, cannot say whether it did).
    #[error("{}", engine_message(.0))]
    Engine(#[from] crate::engine::EngineError),
    /// The change conflicts with what is stored (an invalid transition, a duplicate).
    #[error("{0}")]
    Conflict(String),
    /// Something that cannot be rendered (a template defect).
    #[error("internal error")]
    Defect,
    /// Temporarily unavailable.
    #[error("temporarily unavailable")]
    Unavailable,
    /// The page took longer than the request timeout (the database is slow or away).
    #[error(
        "the page took too long (the database is slow or away); a change may or may not have been made: look before retrying"
    )]
    TimedOut,
}

/// Why the engine could not take a change, for people.
fn engine_message(error: &crate::engine::EngineError) -> &'static str {
    match error {
        crate::engine::EngineError::Unconfirmed => {
            "the database failed while committing: the change may or may not have been made; look before retrying"
        }
        _ => "the ledger is busy or unavailable; nothing was changed; retry shortly",
    }
}

/// The error page.
#[derive(askama::Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            ConsoleError::LoggedOut(next) => {
                let target = match next {
                    Some(next) => format!("/admin/login?next={}", percent_encode(next)),
                    None => "/admin/login".to_owned(),
                };
                return Redirect::to(&target).into_response();
            }
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ConsoleError::Store(error) => {
                tracing::error!(%error, "console: the store failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ConsoleError::Engine(_) | ConsoleError::Unavailable | ConsoleError::TimedOut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ConsoleError::Defect => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let page = ErrorPage {
            layout: Layout::anonymous("Error", String::new()),
            status: status.as_u16(),
            message: self.to_string(),
        };
        let mut response = (status, render(&page)).into_response();
        if let ConsoleError::RateLimited(seconds) = self
            && let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        // As the API does: the database or the ledger is away for a moment, try again in a second.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A form body; a malformed one is the console's 400 page, not axum's plain text.
#[derive(Debug)]
pub struct Form<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Form<T> {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Form::<T>::from_request(request, state).await {
            Ok(axum::extract::Form(value)) => Ok(Form(value)),
            Err(rejection) => {
                Err(ConsoleError::BadRequest(format!("the form is malformed: {}", rejection.body_text())))
            }
        }
    }
}

/// Query parameters; malformed ones are the console's 400 page, not axum's plain text.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => {
                Err(ConsoleError::BadRequest(format!("the address is malformed: {}", rejection.body_text())))
            }
        }
    }
}

/// Path parameters; undecodable ones (invalid UTF-8, say) are the console's 400 page, not axum's plain text.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                Err(ConsoleError::BadRequest(format!("the address is malformed: {}", rejection.body_text())))
            }
        }
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The role a console route needs: the console's one access table. `None`: open (the login page, assets).
/// Reads need a viewer; changes an operator; jobs, users, the audit log and webhooks an admin. Pages are matched by
/// prefix, so a new page is a viewer's to read and an operator's to change unless its prefix is added to the
/// admin ones here; only a route outside `/admin/` falls to the closed default (admin).
pub fn needs(method: &Method, route: &str) -> Option<Role> {
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        "/admin/login" | "/admin/assets/console.css" | "/admin/assets/htmx.min.js" => None,
        "/admin/logout" => Some(Role::Viewer),
        _ if route.starts_with("/admin/jobs")
            || route.starts_with("/admin/users")
            || route.starts_with("/admin/audit")
            || route.starts_with("/admin/webhooks") =>
        {
            Some(Role::Admin)
        }
        _ if read => Some(Role::Viewer),
        _ if route.starts_with("/admin/") => Some(Role::Operator),
        _ => Some(Role::Admin),
    }
}

/// The middleware on every console route: session, role, CSRF.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match admit(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// The request with its [`ConsoleUser`], or why it is refused.
async fn admit(state: &AppState, request: Request) -> Result<Request, ConsoleError> {
    let route = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str);
    let Some(role) = needs(request.method(), route) else { return Ok(request) };
    // Back to where the browser was going after logging in: only for pages (a POST's address is an action
    // that answers only POSTs).
    let here = matches!(*request.method(), Method::GET | Method::HEAD)
        .then(|| request.uri().path_and_query().map(|path| path.as_str().to_owned()))
        .flatten();
    let token = session::cookie(request.headers(), session::SESSION_COOKIE).map(secret_hash);
    let Some(token) = token else { return Err(ConsoleError::LoggedOut(here)) };
    let found = state.store.console_session(&token, time::OffsetDateTime::now_utc()).await?;
    let Some(found) = found else { return Err(ConsoleError::LoggedOut(here)) };
    let Some(user_role) = Role::parse(&found.role) else { return Err(ConsoleError::Defect) };
    let user = ConsoleUser { id: found.user_id, username: found.username, role: user_role, csrf: found.csrf };
    if !user.can(role) {
        return Err(ConsoleError::Forbidden(format!("This needs the {role} role; you are {}.", user.role)));
    }
    crate::access_log::record_user(&user.username);
    let request = if request.method() == Method::POST {
        let upload = route == reconciliation::UPLOAD_ROUTE;
        check_csrf(request, &user.csrf, upload).await?
    } else {
        request
    };
    let mut request = request;
    request.extensions_mut().insert(user);
    Ok(request)
}

/// Reads the form (bounded), checks its `csrf` field (or the `X-CSRF-Token` header htmx sends), and puts the
/// body back for the handler. Only the statement upload (`upload`) may send a multipart body, with its token
/// in the header or the address; any other route reads its body as a form.
async fn check_csrf(request: Request, expected: &str, upload: bool) -> Result<Request, ConsoleError> {
    let header_token = request.headers().get("x-csrf-token").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(upload::boundary)
        .is_some();
    if multipart && upload {
        // A file upload is larger than any form and is read by its handler within the statement limit: its
        // token comes in the header (htmx) or in the form's action address (`?csrf=`), never from the body.
        // The request log leaves the address's query out for this route (see `router::request_span`).
        let query_token = request.uri().query().and_then(|query| form_field(query.as_bytes(), "csrf"));
        let sent = header_token.or(query_token).unwrap_or_default();
        if sent.is_empty() || !session::same_secret(&sent, expected) {
            return Err(ConsoleError::Csrf);
        }
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| ConsoleError::BadRequest("form too large".into()))?;
    let form_token = form_field(&bytes, "csrf");
    let sent = form_token.or(header_token).unwrap_or_default();
    if sent.is_empty() || !session::same_secret(&sent, expected) {
        return Err(ConsoleError::Csrf);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// `GET /admin/assets/console.css`.
async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CONSOLE_CSS).into_response()
}

/// `GET /admin/assets/htmx.min.js`.
async fn htmx() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], HTMX_JS).into_response()
}

/// `GET /admin`: the dashboard is at `/admin/`.
async fn to_dashboard() -> Redirect {
    Redirect::permanent("/admin/")
}

/// Whether a request path is the console's (its pages answer HTML, not the API's JSON).
pub fn is_console_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// The console's routes, each behind [`guard`].
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin", get(to_dashboard))
        .route("/admin/login", get(session::login_form).post(session::login))
        .route("/admin/logout", post(session::logout))
        .route("/admin/assets/console.css", get(css))
        .route("/admin/assets/htmx.min.js", get(htmx))
        .merge(dashboard::routes())
        .merge(organizations::routes())
        .merge(payments::routes())
        .merge(balances::routes())
        .merge(balance_operations::routes())
        .merge(users::routes())
        .merge(audit::routes())
        .merge(payouts::routes())
        .merge(jobs::routes())
        .merge(reconciliation::routes())
        .merge(webhooks::routes())
        .route_layer(axum::middleware::from_fn_with_state(state, guard))
        // Only this origin's scripts, styles and forms; no framing; no inline script can run even if some
        // text escaped escaping.
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// The console pages' Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

    #[test]
    fn the_console_table_is_closed_by_default() {
        assert_eq!(needs(&Method::GET, "/admin/login"), None);
        assert_eq!(needs(&Method::GET, "/admin/"), Some(Role::Viewer));
        assert_eq!(needs(&Method::POST, "/admin/payouts/{id}/cancel"), Some(Role::Operator));
        assert_eq!(needs(&Method::GET, "/admin/jobs"), Some(Role::Admin));
        assert_eq!(needs(&Method::GET, "/admin/users"), Some(Role::Admin));
        assert_eq!(needs(&Method::GET, "/admin/audit"), Some(Role::Admin));
        assert_eq!(needs(&Method::GET, "/elsewhere"), Some(Role::Viewer));
        assert_eq!(needs(&Method::POST, "/elsewhere"), Some(Role::Admin));
    }

    #[tokio::test]
    async fn a_console_503_is_a_page_with_retry_after() {
        for error in [ConsoleError::TimedOut, ConsoleError::Unavailable, ConsoleError::Engine(EngineError::Unavailable)]
        {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
            let page = String::from_utf8_lossy(&bytes);
            assert!(page.contains("<html") && !page.contains("Idempotency-Key"), "an HTML page: {page}");
        }
        assert!(is_console_path("/admin") && is_console_path("/admin/payouts"));
        assert!(!is_console_path("/administrator") && !is_console_path("/api/balances/"));
    }

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(form_field(b"a=1&csrf=x%2By&b=2", "csrf").as_deref(), Some("x+y"));
        assert_eq!(form_field(b"a=1", "csrf"), None);
    }
}
