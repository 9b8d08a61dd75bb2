//! The audit log page (admins): every change made through the API and the console, newest first, filtered by
//! actor, action and target, a page at a time; each entry links to the page of what it changed, when there is
//! one.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::ids::positive_id;
use super::users::user_href;
use super::{ConsoleError, ConsoleUser, Layout, Query, format, percent_encode, render};
use crate::AppState;
use crate::store::{AuditFilter, AuditRow};

/// Audit entries per page.
const AUDIT_PAGE: i64 = 50;

/// The audit log's route (behind the console guard, which `console::router` adds, and which lets only admins
/// in).
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/audit", get(audit))
}

/// `/admin/audit?actor=&action=&target=&before=`.
#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    /// Entries older than this id.
    before: Option<String>,
}

/// The actions the audit log records, offered as suggestions in the filter.
const ACTIONS: [&str; 21] = [
    "balance.deposit",
    "balance.withdraw",
    "balance.reserve",
    "balance.deduct",
    "balance.release",
    "balance.transfer",
    "payout.create",
    "payout.edit",
    "payout.delete",
    "payout.retry",
    "payout.status",
    "payout.attempt",
    "job.retry",
    "job.discard",
    "organization.create",
    "user.create",
    "user.role",
    "user.enable",
    "user.disable",
    "user.password",
    "token.reuse",
];

/// One audit entry.
struct AuditView {
    id: i64,
    at: String,
    actor: String,
    actor_filter: String,
    action: String,
    action_filter: String,
    target: String,
    target_filter: String,
    /// The console page of what was changed, if it has one.
    target_page: Option<String>,
    before: Option<String>,
    after: Option<String>,
    /// The client and the id of the request that asked for it, if one did.
    client_address: Option<String>,
    request_id: Option<String>,
}

/// The audit log page.
#[derive(askama::Template)]
#[template(path = "console/people_audit.html")]
struct AuditPage {
    layout: Layout,
    actor: String,
    action: String,
    target: String,
    error: Option<String>,
    rows: Vec<AuditView>,
    next: Option<String>,
    newest: Option<String>,
    filtered: bool,
    actions: &'static [&'static str],
}

/// `GET /admin/audit?actor=&action=&target=&before=`, newest first.
async fn audit(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    let text = |value: &Option<String>| value.as_deref().unwrap_or_default().trim().to_owned();
    let (actor, action, target) = (text(&query.actor), text(&query.action), text(&query.target));
    let filtered = !(actor.is_empty() && action.is_empty() && target.is_empty());
    let mut page = AuditPage {
        layout: user.layout("Audit log", "audit"),
        actor,
        action,
        target,
        error: None,
        rows: Vec::new(),
        next: None,
        newest: None,
        filtered,
        actions: &ACTIONS,
    };
    let before = match query.before.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        None => None,
        Some(text) => match positive_id(text) {
            Ok(before) => Some(before),
            Err(message) => {
                page.error = Some(format!("The page link is broken: before {message}."));
                page.newest = Some(audit_href(&page.actor, &page.action, &page.target, None));
                return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
            }
        },
    };
    let nonempty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    let filter = AuditFilter {
        actor: nonempty(&page.actor),
        action: nonempty(&page.action),
        target: nonempty(&page.target),
        before_id: before,
        limit: AUDIT_PAGE + 1,
    };
    let mut rows = state.store.audit_rows(&filter).await?;
    let more = rows.len() as i64 > AUDIT_PAGE;
    rows.truncate(usize::try_from(AUDIT_PAGE).unwrap_or(0));
    page.next =
        rows.last().filter(|_| more).map(|row| audit_href(&page.actor, &page.action, &page.target, Some(row.id)));
    page.newest = before.map(|_| audit_href(&page.actor, &page.action, &page.target, None));
    page.rows = rows.into_iter().map(audit_view).collect();
    Ok(render(&page))
}

/// The audit log filtered by the non-empty values, from entries older than `before`.
fn audit_href(actor: &str, action: &str, target: &str, before: Option<i64>) -> String {
    let mut parts = Vec::new();
    for (name, value) in [("actor", actor), ("action", action), ("target", target)] {
        if !value.is_empty() {
            parts.push(format!("{name}={}", percent_encode(value)));
        }
    }
    if let Some(before) = before {
        parts.push(format!("before={before}"));
    }
    if parts.is_empty() { "/admin/audit".to_owned() } else { format!("/admin/audit?{}", parts.join("&")) }
}

/// An entry as the page shows it, with links that filter by its actor, action or target.
fn audit_view(row: AuditRow) -> AuditView {
    let entry = row.entry;
    AuditView {
        client_address: entry.client_address(),
        request_id: entry.request_id().map(str::to_owned),
        id: row.id,
        at: format::time(row.at),
        actor_filter: audit_href(&entry.actor, "", "", None),
        action_filter: audit_href("", &entry.action, "", None),
        target_filter: audit_href("", "", &entry.target, None),
        target_page: target_page(&entry.target),
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        before: entry.before.as_deref().map(pretty_json),
        after: entry.after.as_deref().map(pretty_json),
    }
}

/// The console page of an audit target: a user's page, a balance user's page.
fn target_page(target: &str) -> Option<String> {
    let (kind, rest) = target.split_once(':')?;
    match kind {
        "user" => Some(user_href(rest)),
        "balance-user" => positive_id(rest).ok().map(|id| format!("/admin/balances?user_id={id}")),
        "order" => {
            let user = rest.split(':').next()?;
            positive_id(user).ok().map(|id| format!("/admin/balances?user_id={id}"))
        }
        _ => None,
    }
}

/// Stored JSON, indented for reading (as text: the template escapes it); anything else as it is.
fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_links_keep_the_filters() {
        assert_eq!(audit_href("", "", "", None), "/admin/audit");
        assert_eq!(audit_href("ann", "", "user:bob", Some(7)), "/admin/audit?actor=ann&target=user%3Abob&before=7");
        assert_eq!(target_page("order:5:1:42").as_deref(), Some("/admin/balances?user_id=5"));
        assert_eq!(target_page("user:a b").as_deref(), Some("/admin/users/user?username=a%20b"));
        assert_eq!(target_page("payout:x"), None);
    }
}
