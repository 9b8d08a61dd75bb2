//! The webhooks pages (admins): the receivers of outbound events with their state (a disabled one with its
//! reason, a failing one since when), the form that registers one, and for each one enable or disable, a new
//! secret, a test event and its delivery log with a replay of each finished delivery. Everything goes through
//! the endpoint service (`events/endpoints.rs`), which checks and audits it as the API does.
//!
//! A secret is shown once, on the page that answers its creation or rotation (never in an address, so it is in
//! no history or log); other changes redirect (303) to the page that says what was done.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ConsoleError, ConsoleUser, Form, Layout, Path, Query, format, render};
use crate::AppState;
use crate::events::endpoints::{DELIVERY_STATUSES, EndpointError, EndpointUpdate, EndpointView, NewEndpoint};
use crate::store::event_rows::DeliveryRow;

/// Deliveries a page of the log shows.
const DELIVERIES_PAGE: i64 = 100;

/// The webhooks pages' routes (each behind the console guard, which `console::router` adds, and which lets only
/// admins in).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/webhooks", get(list).post(create))
        .route("/admin/webhooks/{id}/enabled", post(set_enabled))
        .route("/admin/webhooks/{id}/rotate", post(rotate))
        .route("/admin/webhooks/{id}/test", post(test))
        .route("/admin/webhooks/{id}/deliveries", get(deliveries))
        .route("/admin/webhooks/{id}/deliveries/{delivery}/replay", post(replay))
}

/// One endpoint as the list shows it.
struct EndpointLine {
    id: String,
    url: String,
    description: String,
    event_types: String,
    enabled: bool,
    disabled_reason: String,
    failing_since: Option<String>,
    rate_limit: String,
    rotating_until: Option<String>,
    created: String,
}

impl From<&EndpointView> for EndpointLine {
    fn from(view: &EndpointView) -> EndpointLine {
        EndpointLine {
            id: view.id.clone(),
            url: view.url.clone(),
            description: view.description.clone(),
            event_types: view.event_types.join(", "),
            enabled: view.enabled,
            disabled_reason: view.disabled_reason.clone().unwrap_or_default(),
            failing_since: view.failing_since.map(format::time),
            rate_limit: view.rate_limit_per_second.map_or_else(|| "—".to_owned(), |limit| format!("{limit}/s")),
            rotating_until: view.secret_rotating_until.map(format::time),
            created: format::time(view.created_at),
        }
    }
}

/// The secret just made, shown once.
struct ShownSecret {
    endpoint: String,
    secret: String,
}

/// The create form as it was sent, and why it was refused.
#[derive(Default)]
struct CreateForm {
    url: String,
    description: String,
    event_types: String,
    error: Option<String>,
}

/// The webhooks list.
#[derive(askama::Template)]
#[template(path = "console/webhooks_list.html")]
struct ListPage {
    layout: Layout,
    notice: Option<String>,
    secret: Option<ShownSecret>,
    rows: Vec<EndpointLine>,
    form: CreateForm,
    require_https: bool,
}

/// `/admin/webhooks?done=`.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    done: Option<String>,
}

/// `GET /admin/webhooks`.
async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let notice = match query.done.as_deref() {
        Some("enabled") => Some("Endpoint enabled; its failure window starts over.".to_owned()),
        Some("disabled") => Some("Endpoint disabled; its deliveries wait until it is enabled.".to_owned()),
        _ => None,
    };
    list_page(&state, &user, notice, None, CreateForm::default(), StatusCode::OK).await
}

async fn list_page(
    state: &AppState,
    user: &ConsoleUser,
    notice: Option<String>,
    secret: Option<ShownSecret>,
    form: CreateForm,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let endpoints = state.endpoints.list().await.map_err(console_error)?;
    let page = ListPage {
        layout: user.layout("Webhooks", "webhooks"),
        notice,
        secret,
        rows: endpoints.iter().map(EndpointLine::from).collect(),
        form,
        require_https: state.endpoints.require_https(),
    };
    Ok((status, render(&page)).into_response())
}

/// A failure of the endpoint service as the console's error page.
fn console_error(error: EndpointError) -> ConsoleError {
    match error {
        EndpointError::Invalid { field, reason } => ConsoleError::BadRequest(format!("{field}: {reason}")),
        EndpointError::NotFound => ConsoleError::NotFound("No such webhook endpoint.".into()),
        EndpointError::DeliveryNotFound => ConsoleError::NotFound("No such delivery.".into()),
        EndpointError::DeliveryPending | EndpointError::Disabled => {
            ConsoleError::Conflict(format::sentence(&error.to_string()))
        }
        EndpointError::Store(error) => ConsoleError::Store(error),
        EndpointError::Vault(error) => {
            tracing::error!(%error, "console: the card vault failed");
            ConsoleError::Unavailable
        }
        EndpointError::Randomness => ConsoleError::Defect,
    }
}

/// The create form's fields.
#[derive(Debug, Default, Deserialize)]
struct CreateInput {
    url: Option<String>,
    description: Option<String>,
    /// Event type names separated by commas or spaces; blank for all (`*`).
    event_types: Option<String>,
}

/// `POST /admin/webhooks`: registers an endpoint (audited as `webhook_endpoint.create`) and shows its secret once.
async fn create(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(input): Form<CreateInput>,
) -> Result<Response, ConsoleError> {
    let url = input.url.unwrap_or_default().trim().to_owned();
    let description = input.description.unwrap_or_default().trim().to_owned();
    let types_text = input.event_types.unwrap_or_default();
    let names: Vec<String> =
        types_text.split([',', ' ', '\n']).map(str::trim).filter(|name| !name.is_empty()).map(str::to_owned).collect();
    let new = NewEndpoint {
        url: url.clone(),
        description: description.clone(),
        event_types: (!names.is_empty()).then_some(names),
        enabled: true,
        rate_limit_per_second: None,
    };
    match state.endpoints.create(&user.username, new).await {
        Ok((view, secret)) => {
            let notice = Some(format!("Endpoint {} registered.", view.id));
            let secret = Some(ShownSecret { endpoint: view.id, secret });
            list_page(&state, &user, notice, secret, CreateForm::default(), StatusCode::OK).await
        }
        Err(EndpointError::Invalid { field, reason }) => {
            let error = Some(format!("{}: {}", field.replace('_', " "), format::sentence(&reason)));
            let form = CreateForm { url, description, event_types: types_text, error };
            list_page(&state, &user, None, None, form, StatusCode::BAD_REQUEST).await
        }
        Err(error) => Err(console_error(error)),
    }
}

/// The enable/disable form.
#[derive(Debug, Default, Deserialize)]
struct EnabledInput {
    enabled: Option<String>,
}

/// `POST /admin/webhooks/{id}/enabled`: `enabled=true` enables it (clearing its failure window), anything else
/// disables it.
async fn set_enabled(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Form(input): Form<EnabledInput>,
) -> Result<Response, ConsoleError> {
    let enabled = input.enabled.as_deref() == Some("true");
    let update = EndpointUpdate { enabled: Some(enabled), ..EndpointUpdate::default() };
    state.endpoints.update(&user.username, &id, update).await.map_err(console_error)?;
    let done = if enabled { "enabled" } else { "disabled" };
    Ok(Redirect::to(&format!("/admin/webhooks?done={done}")).into_response())
}

/// `POST /admin/webhooks/{id}/rotate`: a new secret, shown once; the old one signs for the configured overlap.
async fn rotate(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let (view, secret) = state.endpoints.rotate(&user.username, &id, None).await.map_err(console_error)?;
    let until = view.secret_rotating_until.map_or_else(|| "now".to_owned(), format::time);
    let notice = Some(format!("New secret for {}. The old one keeps signing until {until}.", view.id));
    let secret = Some(ShownSecret { endpoint: view.id, secret });
    list_page(&state, &user, notice, secret, CreateForm::default(), StatusCode::OK).await
}

/// `POST /admin/webhooks/{id}/test`: a `ping` event, then its delivery in the log.
async fn test(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    state.endpoints.test(&user.username, &id).await.map_err(console_error)?;
    Ok(Redirect::to(&format!("/admin/webhooks/{id}/deliveries?status=pending&done=test")).into_response())
}

/// One delivery as the log shows it.
struct DeliveryLine {
    id: i64,
    event_id: String,
    event_type: String,
    status: String,
    failed: bool,
    attempts: i32,
    next_attempt: String,
    last: String,
    created: String,
}

impl From<&DeliveryRow> for DeliveryLine {
    fn from(row: &DeliveryRow) -> DeliveryLine {
        let last = match (&row.last_status_code, &row.last_error) {
            (Some(code), Some(error)) => format!("{code}: {error}"),
            (Some(code), None) => code.to_string(),
            (None, Some(error)) => error.clone(),
            (None, None) => String::new(),
        };
        DeliveryLine {
            id: row.id,
            event_id: row.event_id.clone(),
            event_type: row.event_type.clone(),
            status: row.status.clone(),
            failed: row.status == "failed",
            attempts: row.attempts,
            next_attempt: if row.status == "pending" { format::time(row.next_attempt_at) } else { "—".to_owned() },
            last,
            created: format::time(row.created_at),
        }
    }
}

/// A filter of the log: its value, label and whether it is chosen.
struct StatusChoice {
    value: &'static str,
    selected: bool,
}

/// One endpoint's delivery log.
#[derive(askama::Template)]
#[template(path = "console/webhooks_deliveries.html")]
struct DeliveriesPage {
    layout: Layout,
    endpoint: EndpointLine,
    notice: Option<&'static str>,
    statuses: Vec<StatusChoice>,
    rows: Vec<DeliveryLine>,
    more: bool,
}

/// `/admin/webhooks/{id}/deliveries?status=&done=`.
#[derive(Debug, Default, Deserialize)]
struct DeliveriesQuery {
    status: Option<String>,
    done: Option<String>,
}

/// `GET /admin/webhooks/{id}/deliveries`.
async fn deliveries(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Response, ConsoleError> {
    let status = query.status.as_deref().filter(|status| !status.is_empty());
    if let Some(status) = status
        && !DELIVERY_STATUSES.contains(&status)
    {
        return Err(ConsoleError::BadRequest("Choose pending, succeeded or failed.".into()));
    }
    let endpoint = state.endpoints.get(&id).await.map_err(console_error)?;
    let (rows, next) = state.endpoints.deliveries(&id, status, None, DELIVERIES_PAGE).await.map_err(console_error)?;
    let notice = match query.done.as_deref() {
        Some("test") => Some("Test event queued: its delivery is below."),
        Some("replayed") => Some("Delivery queued again; its retry schedule starts over."),
        _ => None,
    };
    let page = DeliveriesPage {
        layout: user.layout(format!("Deliveries to {}", endpoint.url), "webhooks"),
        endpoint: EndpointLine::from(&endpoint),
        notice,
        statuses: DELIVERY_STATUSES
            .iter()
            .map(|value| StatusChoice { value, selected: status == Some(*value) })
            .collect(),
        rows: rows.iter().map(DeliveryLine::from).collect(),
        more: next.is_some(),
    };
    Ok(render(&page))
}

/// `POST /admin/webhooks/{id}/deliveries/{delivery}/replay`: sends a finished delivery again.
async fn replay(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let delivery = delivery.parse::<i64>().map_err(|_| ConsoleError::NotFound("No such delivery.".into()))?;
    state.endpoints.replay(&user.username, &id, delivery).await.map_err(console_error)?;
    Ok(Redirect::to(&format!("/admin/webhooks/{id}/deliveries?done=replayed")).into_response())
}
