//! The organizations pages: the list (searched by INN or name, sorted by name or balance), one organization
//! with its balance, a chart and the history of its changes, and the form that creates one (operators).
//!
//! Bad filter values are refused with the error page (400); the new organization form shows its refusals next
//! to its fields.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use payledger_core::Inn;
use serde::Deserialize;
use time::OffsetDateTime;

use super::charts::{Chart, balance_chart};
use super::lists::{Choice, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Pager, Params, link, page_size_choices};
use super::payments::payment_href;
use super::{ConsoleError, ConsoleUser, Form, Layout, Path, format, percent_encode, render};
use crate::AppState;
use crate::auth::tokens::Role;
use crate::store::AuditEntry;
use crate::store::console::organizations::{OrganizationQuery, OrganizationRow, OrganizationSort};

/// How many of the latest balance changes the organization's chart draws.
const CHART_CHANGES: i64 = 500;
/// The longest organization name accepted, in characters.
const MAX_NAME_CHARS: usize = 300;
/// The longest search text accepted, in characters.
const MAX_SEARCH_CHARS: usize = 100;

/// The organizations' routes (each behind the console guard, which `console::router` adds).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/organizations", get(organizations))
        .route("/admin/organizations/new", get(new_organization_form).post(create_organization))
        .route("/admin/organizations/{inn}", get(organization))
}

/// An organization's page.
pub(super) fn organization_href(inn: &str) -> String {
    format!("/admin/organizations/{}", percent_encode(inn))
}

/// An organization as a list row.
#[derive(Debug, Clone)]
struct OrganizationView {
    inn: String,
    name: String,
    balance: String,
    held: String,
    created: String,
    href: String,
}

impl OrganizationView {
    /// The row as the list and the page show it.
    fn new(row: &OrganizationRow) -> OrganizationView {
        OrganizationView {
            inn: row.inn.clone(),
            name: row.name.clone(),
            balance: format::rub(row.balance),
            held: if row.held == 0 { String::new() } else { format::rub(row.held) },
            created: format::time(row.created_at),
            href: organization_href(&row.inn),
        }
    }
}

/// A sortable column header: its link and its `aria-sort`.
#[derive(Debug, Clone)]
struct SortLink {
    href: String,
    state: &'static str,
    arrow: &'static str,
}

/// The organizations list.
#[derive(askama::Template)]
#[template(path = "console/overview_organizations.html")]
struct OrganizationsPage {
    layout: Layout,
    q: String,
    sorts: Vec<Choice>,
    sizes: Vec<Choice>,
    by_name: SortLink,
    by_balance: SortLink,
    rows: Vec<OrganizationView>,
    pager: Pager,
}

/// The `sort` parameter: `name` (the default), `-name`, `balance` or `-balance`.
fn parse_sort(text: Option<&str>) -> Result<OrganizationSort, ConsoleError> {
    match text.unwrap_or("name") {
        "name" => Ok(OrganizationSort::Name),
        "-name" => Ok(OrganizationSort::NameDesc),
        "balance" => Ok(OrganizationSort::Balance),
        "-balance" => Ok(OrganizationSort::BalanceDesc),
        _ => Err(ConsoleError::BadRequest("sort must be name, -name, balance or -balance".into())),
    }
}

/// How `sort` names an order in links.
fn sort_name(sort: OrganizationSort) -> &'static str {
    match sort {
        OrganizationSort::Name => "name",
        OrganizationSort::NameDesc => "-name",
        OrganizationSort::Balance => "balance",
        OrganizationSort::BalanceDesc => "-balance",
    }
}

/// `GET /admin/organizations?q=&sort=&page=&page_size=`.
async fn organizations(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let params = Params::parse(query);
    let q = params.get("q").unwrap_or("").to_owned();
    if q.chars().count() > MAX_SEARCH_CHARS {
        return Err(ConsoleError::BadRequest(format!("the search may have at most {MAX_SEARCH_CHARS} characters")));
    }
    let sort = parse_sort(params.get("sort"))?;
    let paging = params.paging()?;
    let query = OrganizationQuery { search: q.clone(), sort, limit: paging.size, offset: paging.offset() };
    let (total, rows) = state.store.console_organizations(&query).await?;

    let size_param = if paging.size == DEFAULT_PAGE_SIZE { String::new() } else { paging.size.to_string() };
    let sort_link = |ascending: OrganizationSort, descending: OrganizationSort, first: OrganizationSort| {
        let (next, state, arrow) = if sort == ascending {
            (descending, "ascending", " ▲")
        } else if sort == descending {
            (ascending, "descending", " ▼")
        } else {
            (first, "none", "")
        };
        let params = [("q", q.clone()), ("sort", sort_name(next).to_owned()), ("page_size", size_param.clone())];
        SortLink { href: link("/admin/organizations", &params), state, arrow }
    };
    let by_name = sort_link(OrganizationSort::Name, OrganizationSort::NameDesc, OrganizationSort::Name);
    let by_balance = sort_link(OrganizationSort::Balance, OrganizationSort::BalanceDesc, OrganizationSort::BalanceDesc);
    let sort_param = if sort == OrganizationSort::Name { String::new() } else { sort_name(sort).to_owned() };
    let pager = Pager::counted("/admin/organizations", &[("q", q.clone()), ("sort", sort_param)], paging, total);
    let sorts = [
        (OrganizationSort::Name, "Name, A–Z"),
        (OrganizationSort::NameDesc, "Name, Z–A"),
        (OrganizationSort::BalanceDesc, "Balance, largest first"),
        (OrganizationSort::Balance, "Balance, smallest first"),
    ]
    .into_iter()
    .map(|(value, label)| Choice {
        value: sort_name(value).to_owned(),
        label: label.to_owned(),
        selected: value == sort,
    })
    .collect();
    let page = OrganizationsPage {
        layout: user.layout("Organizations", "organizations"),
        q,
        sorts,
        sizes: page_size_choices(paging.size),
        by_name,
        by_balance,
        rows: rows.iter().map(OrganizationView::new).collect(),
        pager,
    };
    Ok(render(&page))
}

/// One change of an organization's balance.
#[derive(Debug, Clone)]
struct BalanceChangeView {
    when: String,
    previous: String,
    new: String,
    amount: String,
    credit: bool,
    document_number: String,
    document_date: String,
    operation_id: Option<String>,
    operation_href: Option<String>,
}

/// One organization's page.
#[derive(askama::Template)]
#[template(path = "console/overview_organization.html")]
struct OrganizationPage {
    layout: Layout,
    notice: Option<String>,
    organization: OrganizationView,
    available: String,
    chart: Chart,
    chart_caption: String,
    changes: Vec<BalanceChangeView>,
    newest: Option<String>,
    older: Option<String>,
    sizes: Vec<Choice>,
}

/// `GET /admin/organizations/{inn}?before=&page_size=`: the balance changes are paged by entry id.
async fn organization(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(inn): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let inn = Inn::parse(&inn).map_err(|_| ConsoleError::BadRequest("An INN is 10 or 12 digits.".into()))?;
    let params = Params::parse(query);
    let size = params.number("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let before = match params.get("before") {
        None => None,
        Some(_) => Some(params.number("before", i64::MAX, i64::MAX)?),
    };
    let not_found = || ConsoleError::NotFound(format!("No organization has the INN {inn}."));
    let found = state.store.console_organization(&inn).await?.ok_or_else(not_found)?;
    let mut log = state.store.balance_log(&inn, before, size + 1).await?.ok_or_else(not_found)?;
    let more = log.len() as i64 > size;
    log.truncate(usize::try_from(size).unwrap_or(0));
    let history = if before.is_none() && !more {
        log.clone()
    } else {
        state.store.balance_log(&inn, None, CHART_CHANGES).await?.ok_or_else(not_found)?
    };
    let changes: Vec<(OffsetDateTime, i64, i64)> =
        history.iter().rev().map(|row| (row.created_at, row.balance_before, row.balance_after)).collect();
    let chart_caption = if history.len() as i64 >= CHART_CHANGES {
        format!("The last {CHART_CHANGES} changes of the balance.")
    } else {
        "Every change of the balance.".to_owned()
    };
    let size_param = if size == DEFAULT_PAGE_SIZE { String::new() } else { size.to_string() };
    let here = organization_href(inn.as_str());
    let older = more
        .then(|| {
            log.last()
                .map(|row| link(&here, &[("page_size", size_param.clone()), ("before", row.entry_id.to_string())]))
        })
        .flatten();
    let newest = before.is_some().then(|| link(&here, &[("page_size", size_param.clone())]));
    let notice = params.get("created").map(|_| "The organization was created.".to_owned());
    let page = OrganizationPage {
        layout: user.layout(
            if found.name.is_empty() { format!("Organization {inn}") } else { found.name.clone() },
            "organizations",
        ),
        notice,
        available: format::rub(found.balance.saturating_sub(found.held)),
        organization: OrganizationView::new(&found),
        chart: balance_chart(&changes, OffsetDateTime::now_utc()),
        chart_caption,
        changes: log
            .iter()
            .map(|row| BalanceChangeView {
                when: format::time(row.created_at),
                previous: format::rub(row.balance_before),
                new: format::rub(row.balance_after),
                amount: format::rub(row.amount),
                credit: row.amount > 0,
                document_number: row.document_number.clone().unwrap_or_default(),
                document_date: row.document_date.map(format::date).unwrap_or_default(),
                operation_id: row.operation_id.map(format::uuid_text),
                operation_href: row.operation_id.map(payment_href),
            })
            .collect(),
        newest,
        older,
        sizes: page_size_choices(size),
    };
    Ok(render(&page))
}

/// The new organization form's fields, as typed.
#[derive(Debug, Default, Deserialize)]
struct NewOrganizationForm {
    #[serde(default)]
    inn: String,
    #[serde(default)]
    name: String,
}

/// The new organization form, blank or with its refusals.
#[derive(askama::Template)]
#[template(path = "console/overview_organization_new.html")]
struct NewOrganizationPage {
    layout: Layout,
    inn: String,
    name: String,
    inn_error: Option<String>,
    name_error: Option<String>,
    existing: Option<String>,
}

/// The form showing `form` as typed, without messages yet.
fn new_organization_page(user: &ConsoleUser, form: NewOrganizationForm) -> NewOrganizationPage {
    NewOrganizationPage {
        layout: user.layout("New organization", "organizations"),
        inn: form.inn,
        name: form.name,
        inn_error: None,
        name_error: None,
        existing: None,
    }
}

/// The form is shown only to those who may send it (the guard lets viewers read every page).
fn operator_only(user: &ConsoleUser) -> Result<(), ConsoleError> {
    if user.can(Role::Operator) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(format!("This needs the operator role; you are {}.", user.role)))
    }
}

/// `GET /admin/organizations/new` (operators).
async fn new_organization_form(user: ConsoleUser) -> Result<Response, ConsoleError> {
    operator_only(&user)?;
    Ok(render(&new_organization_page(&user, NewOrganizationForm::default())))
}

/// The INN as the form's error explains it, or the parsed INN.
fn check_inn(text: &str) -> Result<Inn, String> {
    if text.is_empty() {
        return Err("Enter the INN.".into());
    }
    let inn = Inn::parse(text).map_err(|_| "An INN is 10 digits (a company) or 12 digits (an individual).")?;
    if !inn.has_valid_checksum() {
        return Err("The check digits do not match: look for a typo.".into());
    }
    Ok(inn)
}

/// Whether the name may be stored, or the form's message why not.
fn check_name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        Err("Enter the organization's name.".into())
    } else if text.chars().count() > MAX_NAME_CHARS {
        Err(format!("At most {MAX_NAME_CHARS} characters."))
    } else if text.chars().any(char::is_control) {
        Err("The name must not contain control characters.".into())
    } else {
        Ok(())
    }
}

/// `POST /admin/organizations/new` (operators): creates it with its account, audited as `organization.create`,
/// and shows its page.
async fn create_organization(
    State(state): State<AppState>,
    user: ConsoleUser,
    Form(form): Form<NewOrganizationForm>,
) -> Result<Response, ConsoleError> {
    operator_only(&user)?;
    let form = NewOrganizationForm { inn: form.inn.trim().to_owned(), name: form.name.trim().to_owned() };
    let inn = check_inn(&form.inn);
    let name = check_name(&form.name);
    let inn = match (inn, name) {
        (Ok(inn), Ok(())) => inn,
        (inn, name) => {
            let mut page = new_organization_page(&user, form);
            page.inn_error = inn.err();
            page.name_error = name.err();
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    let audit = AuditEntry {
        actor: user.username.clone(),
        action: "organization.create".into(),
        target: format!("organization:{inn}"),
        before: None,
        after: Some(serde_json::json!({"inn": inn.as_str(), "name": form.name}).to_string()),
        origin: crate::origin::RequestOrigin::current(),
    };
    let created = state.store.console_create_organization(&inn, &form.name, &audit, OffsetDateTime::now_utc()).await?;
    if !created {
        let mut page = new_organization_page(&user, form);
        page.inn_error = Some("An organization with this INN already exists.".into());
        page.existing = Some(organization_href(inn.as_str()));
        return Ok((StatusCode::CONFLICT, render(&page)).into_response());
    }
    Ok(Redirect::to(&format!("{}?created=1", organization_href(inn.as_str()))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inns_are_checked_with_their_check_digits() {
        assert_eq!(check_inn("7707083893").map(|inn| inn.to_string()), Ok("7707083893".to_owned()));
        assert!(check_inn("7707083894").is_err() && check_inn("12345").is_err() && check_inn("").is_err());
    }
}
