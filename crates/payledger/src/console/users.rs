//! The users pages (admins): the users of the API and the console, a page at a time by name, with the form that
//! creates one; and one user's page, where an admin enables or disables them, changes their role or sets a new
//! password. Every change goes through [`crate::auth::principals`], which audits it.
//!
//! A refused form is shown again with its message (400 for invalid input, 409 when the change would leave no
//! active admin or the name is taken); a change that went through redirects (303) to the user's page, which
//! says what was done.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ConsoleError, ConsoleUser, Form, Layout, Query, format, percent_encode, render};
use crate::AppState;
use crate::auth::principals::{self, PrincipalError, UserChange};
use crate::fields::{FieldErrors, invalid};
use crate::store::console::users::UserListRow;

/// Users per page.
const USERS_PAGE: i64 = 50;

/// The users pages' routes (each behind the console guard, which `console::router` adds, and which lets only
/// admins in).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(users).post(create_user))
        .route("/admin/users/user", get(user_page))
        .route("/admin/users/active", post(set_active))
        .route("/admin/users/role", post(set_role))
        .route("/admin/users/password", post(set_password))
}

/// `/admin/users?after=`.
#[derive(Debug, Default, Deserialize)]
struct UsersQuery {
    /// Users whose names sort after this one.
    after: Option<String>,
}

/// One user in the list.
struct UserView {
    username: String,
    href: String,
    role: String,
    active: bool,
    generated: bool,
    created: String,
}

impl UserView {
    /// The user as the list and their page show them.
    fn new(username: &str, role: &str, active: bool, generated: bool, created: time::OffsetDateTime) -> UserView {
        UserView {
            username: username.to_owned(),
            href: user_href(username),
            role: role.to_owned(),
            active,
            generated,
            created: format::time(created),
        }
    }
}

/// A user's page. The name goes in the query, not the path: `.` and `..` are valid names, and a browser
/// would resolve them as path segments.
pub(super) fn user_href(username: &str) -> String {
    format!("/admin/users/user?username={}", percent_encode(username))
}

/// A `<select>` option of a role.
struct RoleOption {
    value: &'static str,
    selected: bool,
}

/// The roles a user may have, `selected` selected.
fn role_options(selected: &str) -> Vec<RoleOption> {
    principals::ROLES.iter().copied().map(|role| RoleOption { value: role, selected: role == selected }).collect()
}

/// The create form's input and errors (never the password).
#[derive(Default)]
struct CreateForm {
    username: String,
    roles: Vec<RoleOption>,
    errors: FieldErrors,
}

impl CreateForm {
    /// The message for a field, if it has one.
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }
}

/// The users page.
#[derive(askama::Template)]
#[template(path = "console/people_users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserView>,
    next: Option<String>,
    first: Option<String>,
    create: CreateForm,
    min_password: usize,
}

/// `GET /admin/users?after=`.
async fn users(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<UsersQuery>,
) -> Result<Response, ConsoleError> {
    let create = CreateForm { username: String::new(), roles: role_options("viewer"), errors: FieldErrors::new() };
    users_page(&state, &user, query.after.as_deref().unwrap_or_default(), create, StatusCode::OK).await
}

/// The users from the first name after `after`, with the create form as given and `status`.
async fn users_page(
    state: &AppState,
    user: &ConsoleUser,
    after: &str,
    create: CreateForm,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let mut rows: Vec<UserListRow> = state.store.console_users_page(after, USERS_PAGE + 1).await?;
    let more = rows.len() as i64 > USERS_PAGE;
    rows.truncate(usize::try_from(USERS_PAGE).unwrap_or(0));
    let next = rows.last().filter(|_| more).map(|row| format!("/admin/users?after={}", percent_encode(&row.username)));
    let page = UsersPage {
        layout: user.layout("Users", "users"),
        users: rows
            .iter()
            .map(|row| UserView::new(&row.username, &row.role, row.active, row.password_generated, row.created_at))
            .collect(),
        next,
        first: (!after.is_empty()).then(|| "/admin/users".to_owned()),
        create,
        min_password: principals::MIN_PASSWORD_CHARS,
    };
    Ok((status, render(&page)).into_response())
}

/// The create form's fields.
#[derive(Debug, Default, Deserialize)]
struct CreateInput {
    username: Option<String>,
    password: Option<String>,
    role: Option<String>,
}

/// `POST /admin/users`: creates a user (audited as `user.create`) and shows their page.
async fn create_user(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(input): Form<CreateInput>,
) -> Result<Response, ConsoleError> {
    let username = input.username.as_deref().unwrap_or_default().trim().to_owned();
    let role = input.role.as_deref().unwrap_or_default().trim().to_owned();
    let password = input.password.unwrap_or_default();
    let refusal = match principals::create(&state.store, &user.username, &username, &password, &role, false).await {
        Ok(()) => return Ok(Redirect::to(&format!("{}&done=created", user_href(&username))).into_response()),
        Err(error) => principal_refusal(error)?,
    };
    let (status, errors) = refusal;
    let create = CreateForm { username, roles: role_options(&role), errors };
    users_page(&state, &user, "", create, status).await
}

/// A refused change to a user as a field message and its status; failures as the error page.
fn principal_refusal(error: PrincipalError) -> Result<(StatusCode, FieldErrors), ConsoleError> {
    let message = format::sentence(&error.to_string());
    Ok(match error {
        PrincipalError::BadUsername => (StatusCode::BAD_REQUEST, invalid("username", &message)),
        PrincipalError::WeakPassword => (StatusCode::BAD_REQUEST, invalid("password", &message)),
        PrincipalError::BadRole => (StatusCode::BAD_REQUEST, invalid("role", &message)),
        PrincipalError::Exists => (StatusCode::CONFLICT, invalid("username", "A user with that name exists.")),
        PrincipalError::LastAdmin => (
            StatusCode::CONFLICT,
            invalid("form", "Refused: this would leave no active admin. Make another user an admin first."),
        ),
        PrincipalError::NotFound => return Err(ConsoleError::NotFound("No such user.".into())),
        PrincipalError::Hashing(error) => {
            tracing::error!(%error, "console: a password could not be hashed");
            return Err(ConsoleError::Unavailable);
        }
        PrincipalError::Store(error) => return Err(ConsoleError::Store(error)),
    })
}

/// `/admin/users/user?username=&done=`: whose page, and the change just made.
#[derive(Debug, Default, Deserialize)]
struct UserQuery {
    username: Option<String>,
    done: Option<String>,
}

/// Which of the user page's forms a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserAction {
    Active,
    Role,
    Password,
}

/// One user's page: details and the admin's actions.
#[derive(askama::Template)]
#[template(path = "console/people_user.html")]
struct UserPage {
    layout: Layout,
    user: UserView,
    is_self: bool,
    notice: Option<&'static str>,
    roles: Vec<RoleOption>,
    active_error: Option<String>,
    role_error: Option<String>,
    password_error: Option<String>,
    audit_href: String,
    min_password: usize,
}

/// `GET /admin/users/user?username=&done=`.
async fn user_page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<UserQuery>,
) -> Result<Response, ConsoleError> {
    let username = query.username.unwrap_or_default();
    let notice = match query.done.as_deref() {
        Some("created") => Some("User created."),
        Some("enabled") => Some("User enabled: they can log in again."),
        Some("disabled") => Some("User disabled: their sessions and tokens stop working at once."),
        Some("role") => Some("Role changed; it applies to their next request."),
        Some("password") => Some("Password set; their refresh tokens no longer work."),
        _ => None,
    };
    single_user_page(&state, &user, &username, notice, None, StatusCode::OK).await
}

/// One user's page with `notice` (what was just done) or `refusal` (which form, its message, the role it
/// asked for) and `status`.
async fn single_user_page(
    state: &AppState,
    user: &ConsoleUser,
    username: &str,
    notice: Option<&'static str>,
    refusal: Option<(UserAction, String, Option<String>)>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let row = state.store.principal(username).await?.ok_or_else(|| ConsoleError::NotFound("No such user.".into()))?;
    let (mut active_error, mut role_error, mut password_error) = (None, None, None);
    let mut selected_role = row.role.clone();
    if let Some((action, message, role)) = refusal {
        match action {
            UserAction::Active => active_error = Some(message),
            UserAction::Role => {
                role_error = Some(message);
                selected_role = role.unwrap_or(selected_role);
            }
            UserAction::Password => password_error = Some(message),
        }
    }
    let page = UserPage {
        layout: user.layout(format!("User {}", row.username), "users"),
        is_self: row.id == user.id,
        user: UserView::new(&row.username, &row.role, row.active, row.password_generated, row.created_at),
        notice,
        roles: role_options(&selected_role),
        active_error,
        role_error,
        password_error,
        audit_href: format!("/admin/audit?target={}", percent_encode(&format!("user:{}", row.username))),
        min_password: principals::MIN_PASSWORD_CHARS,
    };
    Ok((status, render(&page)).into_response())
}

/// The user page's forms' fields.
#[derive(Debug, Default, Deserialize)]
struct UserInput {
    /// Whose.
    username: Option<String>,
    active: Option<String>,
    role: Option<String>,
    password: Option<String>,
    password_again: Option<String>,
}

/// `POST /admin/users/active`: enables or disables a user.
async fn set_active(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(input): Form<UserInput>,
) -> Result<Response, ConsoleError> {
    let username = input.username.clone().unwrap_or_default();
    let active = match input.active.as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => {
            let refusal = (UserAction::Active, "Choose enable or disable.".to_owned(), None);
            return single_user_page(&state, &user, &username, None, Some(refusal), StatusCode::BAD_REQUEST).await;
        }
    };
    let change = UserChange { active: Some(active), ..UserChange::default() };
    let done = if active { "enabled" } else { "disabled" };
    change_user(&state, &user, &username, change, UserAction::Active, done, None).await
}

/// `POST /admin/users/role`: changes a user's role.
async fn set_role(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(input): Form<UserInput>,
) -> Result<Response, ConsoleError> {
    let username = input.username.clone().unwrap_or_default();
    let role = input.role.unwrap_or_default().trim().to_owned();
    let change = UserChange { role: Some(role.clone()), ..UserChange::default() };
    change_user(&state, &user, &username, change, UserAction::Role, "role", Some(role)).await
}

/// `POST /admin/users/password`: sets a new password, typed twice.
async fn set_password(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(input): Form<UserInput>,
) -> Result<Response, ConsoleError> {
    let username = input.username.clone().unwrap_or_default();
    let password = input.password.unwrap_or_default();
    if input.password_again.as_deref() != Some(password.as_str()) {
        let refusal = (UserAction::Password, "The two passwords differ; type the same one twice.".to_owned(), None);
        return single_user_page(&state, &user, &username, None, Some(refusal), StatusCode::BAD_REQUEST).await;
    }
    let change = UserChange { password: Some(password), ..UserChange::default() };
    change_user(&state, &user, &username, change, UserAction::Password, "password", None).await
}

/// Applies a change through [`principals::update`] (which audits); redirects to the user's page with a
/// notice, or shows the refusal next to the form.
async fn change_user(
    state: &AppState,
    user: &ConsoleUser,
    username: &str,
    change: UserChange,
    action: UserAction,
    done: &str,
    role: Option<String>,
) -> Result<Response, ConsoleError> {
    match principals::update(&state.store, &user.username, username, &change).await {
        Ok(()) => Ok(Redirect::to(&format!("{}&done={done}", user_href(username))).into_response()),
        Err(error) => {
            let (status, errors) = principal_refusal(error)?;
            let message = errors.into_values().next().unwrap_or_default();
            single_user_page(state, user, username, None, Some((action, message, role)), status).await
        }
    }
}
