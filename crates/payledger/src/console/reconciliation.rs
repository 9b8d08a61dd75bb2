//! The reconciliation pages: `/admin/reconciliation` (upload a bank statement, the imports, and the report for
//! an account and dates with each discrepancy's Apply and Accept buttons) and `/admin/statements/{id}` (one
//! import's summary, and applying every open discrepancy of it). Everything goes through the reconciliation
//! service, as the API does, with the user's name for the audit log. Apply and Accept answer the row alone to
//! htmx, and a redirect back to the report without JavaScript.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use payledger_core::statement::{AccountNumber, StatementFormat};
use serde::Deserialize;
use time::{Date, Duration};

use super::lists::{Choice, choices};
use super::payout_lists::{decode_query, given};
use super::upload;
use super::{ConsoleError, ConsoleUser, Form, Layout, Path, percent_encode, render};
use crate::AppState;
use crate::statement::{
    ApplyOutcome, DiscrepancyCounts, DiscrepancyKind, DiscrepancyState, DiscrepancyView, FormatChoice, ImportOptions,
    ImportSummary, ImportsPage, ReconcileError, ReconciliationReport, ReportQuery,
};

/// Discrepancies per page of the report.
const PAGE_SIZE: u32 = 50;
/// Imports listed above the report.
const RECENT_IMPORTS: u32 = 10;
/// The report's days when none are given: the last month.
const DEFAULT_DAYS: i64 = 30;
/// The longest report, in days (as the API's).
const MAX_REPORT_DAYS: i64 = 366;

/// The statement upload's route: the one console POST whose CSRF token may come in its address (a multipart
/// body is not read before the handler); the request log leaves that address's query out.
pub const UPLOAD_ROUTE: &str = "/admin/reconciliation/upload";

/// The reconciliation pages' routes (each behind the console guard: viewers read, operators change).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/reconciliation", get(page))
        .route("/admin/reconciliation/", get(page))
        .route(UPLOAD_ROUTE, post(upload_statement))
        .route("/admin/reconciliation/discrepancies/{id}/apply", post(apply))
        .route("/admin/reconciliation/discrepancies/{id}/accept", post(accept))
        .route("/admin/statements/{id}", get(statement))
        .route("/admin/statements/{id}/apply", post(apply_all))
}

impl From<ReconcileError> for ConsoleError {
    fn from(error: ReconcileError) -> ConsoleError {
        match error {
            ReconcileError::Invalid(error) => {
                ConsoleError::BadRequest(format!("The file is not a statement: {error}."))
            }
            ReconcileError::AccountNotInFile(account) => {
                ConsoleError::BadRequest(format!("The file has no section for the account {account}."))
            }
            ReconcileError::TooLarge { limit } => {
                ConsoleError::TooLarge(format!("The file is larger than the {limit} bytes a statement may have."))
            }
            ReconcileError::CsvMapping(reason) => {
                ConsoleError::BadRequest(format!("The CSV column mapping: {reason}."))
            }
            ReconcileError::NotFound(what) => ConsoleError::NotFound(format!("No such {what}.")),
            ReconcileError::NotApplicable { reason } => ConsoleError::Conflict(reason),
            ReconcileError::Engine(error) => ConsoleError::Engine(error),
            ReconcileError::Store(error) => ConsoleError::Store(error),
            ReconcileError::Io(error) => {
                tracing::error!(%error, "console: reading an uploaded statement failed");
                ConsoleError::Unavailable
            }
        }
    }
}

/// `/admin/reconciliation?account=&from=&to=&kind=&state=&cursor=&done=`.
#[derive(Debug, Default, Deserialize)]
struct ReportFilters {
    account: Option<String>,
    from: Option<String>,
    to: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

/// The filters as the form shows them back.
#[derive(Debug, Default)]
struct FilterValues {
    account: String,
    from: String,
    to: String,
}

const KIND_CHOICES: &[(&str, &str)] = &[
    ("", "Any kind"),
    ("missing_notice", "Missing notice"),
    ("unknown_payer", "Unknown payer"),
    ("amount_mismatch", "Amount mismatch"),
    ("ambiguous", "Ambiguous"),
    ("notice_without_line", "Notice without a line"),
];
const STATE_CHOICES: &[(&str, &str)] =
    &[("", "Any state"), ("open", "Open"), ("resolved", "Resolved"), ("accepted", "Accepted")];
const FORMAT_CHOICES: &[(&str, &str)] =
    &[("auto", "Detect"), ("1c", "1C ClientBankExchange"), ("camt053", "camt.053"), ("csv", "CSV (saved mapping)")];

/// The reconciliation page.
#[derive(askama::Template)]
#[template(path = "console/reconciliation.html")]
struct ReconciliationPage {
    layout: Layout,
    notice: Option<String>,
    upload_action: String,
    formats: Vec<Choice>,
    imports: Vec<ImportLine>,
    filters: FilterValues,
    kinds: Vec<Choice>,
    states: Vec<Choice>,
    errors: Vec<String>,
    facts: Vec<(&'static str, String)>,
    rows: Vec<DiscrepancyRow>,
    next: Option<String>,
}

/// One import in the list.
#[derive(Debug)]
struct ImportLine {
    id: i64,
    href: String,
    file_name: String,
    format: String,
    state: String,
    lines: u64,
    matched: u64,
    discrepancies: u64,
}

impl From<&ImportSummary> for ImportLine {
    fn from(summary: &ImportSummary) -> ImportLine {
        ImportLine {
            id: summary.id,
            href: format!("/admin/statements/{}", summary.id),
            file_name: summary.file_name.clone().unwrap_or_else(|| "—".to_owned()),
            format: summary.format.clone(),
            state: summary.state.clone(),
            lines: summary.lines_read,
            matched: summary.matched,
            discrepancies: total(&summary.discrepancies),
        }
    }
}

/// All discrepancies of the counts, of every kind.
fn total(counts: &DiscrepancyCounts) -> u64 {
    counts.missing_notice
        + counts.notice_without_line
        + counts.amount_mismatch
        + counts.ambiguous
        + counts.unknown_payer
}

/// One discrepancy, as the report's table shows it.
#[derive(Debug)]
struct DiscrepancyRow {
    id: i64,
    kind: String,
    kind_label: &'static str,
    state: String,
    resolution: String,
    day: String,
    amount: String,
    what: String,
    details: String,
    note: String,
    open: bool,
    can_apply: bool,
}

impl From<&DiscrepancyView> for DiscrepancyRow {
    fn from(view: &DiscrepancyView) -> DiscrepancyRow {
        let kind_label =
            KIND_CHOICES.iter().find(|(value, _)| *value == view.kind.as_str()).map_or("", |(_, label)| label);
        let document = match (&view.document_number, &view.document_date) {
            (Some(number), Some(date)) => format!("№ {number} of {date}"),
            (Some(number), None) => format!("№ {number}"),
            _ => String::new(),
        };
        let payer = match (&view.payer_inn, &view.payer_name) {
            (Some(inn), Some(name)) => format!("{name} (INN {inn})"),
            (Some(inn), None) => format!("INN {inn}"),
            (None, Some(name)) => format!("{name} (no INN)"),
            (None, None) => String::new(),
        };
        let mut what: Vec<String> = Vec::new();
        if let Some(line) = view.line_id {
            what.push(format!("line {line}"));
        }
        if let Some(operation) = &view.operation_id {
            what.push(format!("payment {operation}"));
        }
        what.extend([payer, document].into_iter().filter(|text| !text.is_empty()));
        if let Some(account) = &view.account {
            what.push(format!("to {account}"));
        }
        let details = match &view.details {
            serde_json::Value::Null => String::new(),
            serde_json::Value::Object(map) if map.is_empty() => String::new(),
            serde_json::Value::Array(list) if list.is_empty() => String::new(),
            other => other.to_string(),
        };
        DiscrepancyRow {
            id: view.id,
            kind: view.kind.as_str().to_owned(),
            kind_label,
            state: view.state.as_str().to_owned(),
            resolution: match (&view.resolution, &view.resolved_by) {
                (Some(how), Some(who)) => format!("{how} by {who}"),
                (Some(how), None) => how.clone(),
                _ => String::new(),
            },
            day: view.day.clone(),
            amount: format!("{} {}", view.amount, view.currency),
            what: what.join(", "),
            details,
            note: view.note.clone().unwrap_or_default(),
            open: view.state == DiscrepancyState::Open,
            // Every kind of a line may be applied; the engine refuses, naming the payment, while an open one
            // may be the line (an amount mismatch whose candidate is still unmatched, say).
            can_apply: view.kind != DiscrepancyKind::NoticeWithoutLine,
        }
    }
}

/// The report's counts and totals, as label and value.
fn report_facts(report: &ReconciliationReport) -> Vec<(&'static str, String)> {
    let counts = &report.counts;
    let mut facts = vec![
        ("Days", format!("{} – {}", report.from, report.to)),
        ("Statement lines", format!("{} ({} credits)", counts.statement_lines, counts.credit_lines)),
        ("Notices", counts.notices.to_string()),
        ("Matched credit lines", counts.matched.to_string()),
        ("Pending (day not closed)", format!("{} lines, {} notices", counts.pending_lines, counts.pending_notices)),
        ("Open discrepancies", total(&counts.open).to_string()),
        ("Resolved / accepted", format!("{} / {}", total(&counts.resolved), total(&counts.accepted))),
    ];
    for totals in &report.totals {
        facts.push((
            "Credits",
            format!(
                "statement {} {cur}; matched {} {cur}; credited in the ledger for them {} {cur}",
                totals.statement_credits,
                totals.credits_matched,
                totals.ledger_credited,
                cur = totals.currency
            ),
        ));
    }
    for coverage in &report.coverage {
        let periods: Vec<String> = coverage.covered.iter().map(|[start, end]| format!("{start} – {end}")).collect();
        facts.push(("Covered", format!("{}: {}", coverage.account, periods.join(", "))));
    }
    facts
}

/// The report's query from the page's filters, or the messages of the bad ones.
fn report_query(filters: &ReportFilters, today: Date) -> Result<ReportQuery, Vec<String>> {
    let mut errors = Vec::new();
    let account = given(&filters.account).and_then(|text| match AccountNumber::parse(text) {
        Ok(account) => Some(account),
        Err(_) => {
            errors.push("An account is 20 digits.".to_owned());
            None
        }
    });
    let mut day = |text: Option<&str>, what: &str| {
        text.and_then(|text| match Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")) {
            Ok(day) => Some(day),
            Err(_) => {
                errors.push(format!("The {what} day must be a date as YYYY-MM-DD."));
                None
            }
        })
    };
    let to = day(given(&filters.to), "last").unwrap_or(today);
    let from = day(given(&filters.from), "first").unwrap_or_else(|| to - Duration::days(DEFAULT_DAYS));
    if from > to || (to - from).whole_days() > MAX_REPORT_DAYS {
        errors.push(format!(
            "The first day must not be after the last, and a report covers at most {MAX_REPORT_DAYS} days."
        ));
    }
    let kind = given(&filters.kind).and_then(|text| {
        let kind = DiscrepancyKind::parse(text);
        if kind.is_none() {
            errors.push("Choose one of the listed kinds.".to_owned());
        }
        kind
    });
    let state = given(&filters.state).and_then(|text| {
        let state = DiscrepancyState::parse(text);
        if state.is_none() {
            errors.push("Choose one of the listed states.".to_owned());
        }
        state
    });
    let cursor = given(&filters.cursor).and_then(|text| {
        let cursor = text.parse::<i64>().ok().filter(|cursor| *cursor > 0);
        if cursor.is_none() {
            errors.push("The page link is broken: start from the first page.".to_owned());
        }
        cursor
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ReportQuery { account, from, to, kind, state, cursor, limit: PAGE_SIZE })
}

/// The report's page after `cursor`, with the same filters.
fn next_link(filters: &ReportFilters, cursor: i64) -> String {
    let mut url = format!("/admin/reconciliation?cursor={cursor}");
    for (name, value) in [
        ("account", given(&filters.account)),
        ("from", given(&filters.from)),
        ("to", given(&filters.to)),
        ("kind", given(&filters.kind)),
        ("state", given(&filters.state)),
    ] {
        if let Some(value) = value {
            url.push_str(&format!("&{name}={}", percent_encode(value)));
        }
    }
    url
}

/// What a `done` in the address tells about the action just done.
fn done_notice(done: Option<&str>) -> Option<String> {
    Some(match done? {
        "applied" => "Applied: the line is credited to its payer.".to_owned(),
        "matched" => "A notice that arrived since matched the line; nothing more was credited.".to_owned(),
        "already" => "The line was already matched; nothing changed.".to_owned(),
        "accepted" => "Accepted with your note.".to_owned(),
        _ => return None,
    })
}

/// `GET /admin/reconciliation`.
async fn page(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let filters: ReportFilters = decode_query(raw)?;
    let imports = state.reconciliation.imports(ImportsPage { cursor: None, limit: RECENT_IMPORTS }).await?;
    let mut view = ReconciliationPage {
        layout: user.layout("Reconciliation", "reconciliation"),
        notice: done_notice(given(&filters.done)),
        upload_action: format!("/admin/reconciliation/upload?csrf={}", percent_encode(&user.csrf)),
        formats: choices(FORMAT_CHOICES, "auto"),
        imports: imports.iter().map(ImportLine::from).collect(),
        filters: FilterValues {
            account: given(&filters.account).unwrap_or_default().to_owned(),
            from: given(&filters.from).unwrap_or_default().to_owned(),
            to: given(&filters.to).unwrap_or_default().to_owned(),
        },
        kinds: choices(KIND_CHOICES, given(&filters.kind).unwrap_or("")),
        states: choices(STATE_CHOICES, given(&filters.state).unwrap_or("")),
        errors: Vec::new(),
        facts: Vec::new(),
        rows: Vec::new(),
        next: None,
    };
    let query = match report_query(&filters, crate::api::reconciliation::moscow_today()) {
        Ok(query) => query,
        Err(errors) => {
            view.errors = errors;
            return Ok((StatusCode::BAD_REQUEST, render(&view)).into_response());
        }
    };
    let report = state.reconciliation.report(&query).await?;
    view.facts = report_facts(&report);
    view.rows = report.discrepancies.iter().map(DiscrepancyRow::from).collect();
    view.next = report.next_cursor.map(|cursor| next_link(&filters, cursor));
    Ok(render(&view))
}

/// The fields of the upload form other than the file.
fn text_field(body: &Bytes, parts: &[upload::Part], name: &str) -> Option<String> {
    parts
        .iter()
        .find(|part| part.name == name && part.file_name.is_none())
        .map(|part| String::from_utf8_lossy(&body[part.content.clone()]).trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The upload's file name, checked as the API checks its `file_name`.
fn check_file_name(name: Option<&str>) -> Result<(), ConsoleError> {
    crate::api::statements::check_file_name(name)
        .map_err(|reason| ConsoleError::BadRequest(format!("The file name {reason}.")))
}

/// `POST /admin/reconciliation/upload` (operators): the upload form, `multipart/form-data`.
async fn upload_statement(
    State(state): State<AppState>,
    user: ConsoleUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ConsoleError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let boundary = upload::boundary(content_type)
        .ok_or_else(|| ConsoleError::BadRequest("Send the upload form (multipart/form-data).".into()))?;
    let limit = usize::try_from(state.statement_max_bytes).unwrap_or(usize::MAX);
    // The form's other fields and the boundaries add a little to the file itself.
    let too_large =
        || ConsoleError::TooLarge(format!("The file is larger than the {limit} bytes a statement may have."));
    let body = to_bytes(body, limit.saturating_add(64 * 1024)).await.map_err(|error| {
        if crate::api::extract::is_length_limit(&error) {
            too_large()
        } else {
            ConsoleError::BadRequest("The upload could not be read; try again.".into())
        }
    })?;
    let parts = upload::parts(&body, &boundary).map_err(ConsoleError::BadRequest)?;
    let file = parts
        .iter()
        .find(|part| part.name == "file" && part.file_name.is_some())
        .ok_or_else(|| ConsoleError::BadRequest("Choose a statement file.".into()))?;
    if file.content.len() > limit {
        return Err(too_large());
    }
    check_file_name(file.file_name.as_deref())?;
    let format = match text_field(&body, &parts, "format").as_deref() {
        None | Some("auto") => FormatChoice::Auto,
        Some(name) => StatementFormat::parse(name)
            .map(FormatChoice::Fixed)
            .ok_or_else(|| ConsoleError::BadRequest("Choose one of the listed formats.".into()))?,
    };
    let account = text_field(&body, &parts, "account")
        .map(|text| {
            AccountNumber::parse(&text).map_err(|_| ConsoleError::BadRequest("An account is 20 digits.".into()))
        })
        .transpose()?;
    let csv = match (format, &account) {
        (FormatChoice::Fixed(StatementFormat::Csv), Some(account)) => {
            Some(state.store.csv_mapping(account.as_str()).await?.ok_or_else(|| {
                ConsoleError::BadRequest(format!("The account {account} has no saved CSV column mapping."))
            })?)
        }
        (FormatChoice::Fixed(StatementFormat::Csv), None) => {
            return Err(ConsoleError::BadRequest(
                "A CSV statement needs the account whose saved mapping reads it.".into(),
            ));
        }
        _ => None,
    };
    let options =
        ImportOptions { format, csv, account, file_name: file.file_name.clone(), by: Some(user.username.clone()) };
    let summary = state.reconciliation.import(body.slice(file.content.clone()), options, None).await?;
    tracing::info!(user = %user.username, import = summary.id, "console statement import");
    let done = if summary.already_imported { "already" } else { "imported" };
    Ok(Redirect::to(&format!("/admin/statements/{}?done={done}", summary.id)).into_response())
}

/// One import's page.
#[derive(askama::Template)]
#[template(path = "console/statement.html")]
struct StatementPage {
    layout: Layout,
    notice: Option<String>,
    facts: Vec<(&'static str, String)>,
    accounts: Vec<AccountLine>,
    apply_action: Option<String>,
    report_href: String,
}

/// One account section of an import.
#[derive(Debug)]
struct AccountLine {
    account: String,
    currency: String,
    period: String,
    opening: String,
    credits: String,
    debits: String,
    closing: String,
    lines: u64,
}

/// `/admin/statements/{id}?done=`.
#[derive(Debug, Default, Deserialize)]
struct StatementQuery {
    done: Option<String>,
}

fn import_id(text: &str) -> Result<i64, ConsoleError> {
    text.parse::<i64>().map_err(|_| ConsoleError::NotFound("No such statement import.".into()))
}

/// `GET /admin/statements/{id}`.
async fn statement(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let query: StatementQuery = decode_query(raw)?;
    let summary = state.reconciliation.import_summary(import_id(&id)?).await?;
    let notice = match given(&query.done) {
        Some("imported") => Some("Imported.".to_owned()),
        Some("already") => Some("This file was imported before; nothing changed.".to_owned()),
        Some("applied") => Some("Applied every open discrepancy that could be applied.".to_owned()),
        _ => None,
    };
    let first = summary.accounts.iter().map(|account| account.period_start.clone()).min().unwrap_or_default();
    let last = summary.accounts.iter().map(|account| account.period_end.clone()).max().unwrap_or_default();
    let view = StatementPage {
        layout: user.layout(format!("Statement import {}", summary.id), "reconciliation"),
        notice,
        facts: summary_facts(&summary),
        accounts: summary
            .accounts
            .iter()
            .map(|account| AccountLine {
                account: account.account.clone(),
                currency: account.currency.clone(),
                period: format!("{} – {}", account.period_start, account.period_end),
                opening: account.opening_balance.clone().unwrap_or_else(|| "—".into()),
                credits: account.total_credits.clone().unwrap_or_else(|| "—".into()),
                debits: account.total_debits.clone().unwrap_or_else(|| "—".into()),
                closing: account.closing_balance.clone().unwrap_or_else(|| "—".into()),
                lines: account.lines,
            })
            .collect(),
        apply_action: user
            .can(crate::auth::tokens::Role::Operator)
            .then(|| format!("/admin/statements/{}/apply", summary.id)),
        report_href: format!("/admin/reconciliation?from={first}&to={last}"),
    };
    Ok(render(&view))
}

/// An import's summary, as label and value.
fn summary_facts(summary: &ImportSummary) -> Vec<(&'static str, String)> {
    let counts = &summary.discrepancies;
    vec![
        ("File", summary.file_name.clone().unwrap_or_else(|| "—".to_owned())),
        ("Format", summary.format.clone()),
        ("State", summary.state.clone()),
        ("SHA-256", summary.sha256.clone()),
        (
            "Lines",
            format!(
                "{} ({} new, {} already known)",
                summary.lines_read, summary.lines_new, summary.lines_already_known
            ),
        ),
        ("Matched", summary.matched.to_string()),
        ("Pending (day not closed)", summary.pending.to_string()),
        (
            "Discrepancies found",
            format!(
                "{} missing notice, {} unknown payer, {} amount mismatch, {} ambiguous, {} notice without a line",
                counts.missing_notice,
                counts.unknown_payer,
                counts.amount_mismatch,
                counts.ambiguous,
                counts.notice_without_line
            ),
        ),
        ("Took", format!("{} ms", summary.duration_ms)),
    ]
}

/// `POST /admin/statements/{id}/apply` (operators).
async fn apply_all(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = import_id(&id)?;
    let done = state.reconciliation.apply_all(id, &user.username).await?;
    tracing::info!(user = %user.username, import = id, ?done, "console statement apply all");
    Ok(Redirect::to(&format!("/admin/statements/{id}?done=applied")).into_response())
}

/// The row fragment htmx swaps in.
#[derive(askama::Template)]
#[template(path = "console/reconciliation_row.html")]
struct RowFragment {
    row: DiscrepancyRow,
    csrf: String,
    can_operate: bool,
}

fn discrepancy_id(text: &str) -> Result<i64, ConsoleError> {
    text.parse::<i64>().map_err(|_| ConsoleError::NotFound("No such discrepancy.".into()))
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// The answer to Apply or Accept: the changed row to htmx, or the refusal into the page's message area; without
/// JavaScript, back to the report (a refusal is the error page).
fn answer(
    user: &ConsoleUser,
    headers: &HeaderMap,
    outcome: Result<(&'static str, Option<DiscrepancyView>), ConsoleError>,
) -> Result<Response, ConsoleError> {
    if !is_htmx(headers) {
        let (done, _) = outcome?;
        return Ok(Redirect::to(&format!("/admin/reconciliation?done={done}")).into_response());
    }
    match outcome {
        Ok((_, Some(view))) => Ok(render(&RowFragment {
            row: DiscrepancyRow::from(&view),
            csrf: user.csrf.clone(),
            can_operate: user.can(crate::auth::tokens::Role::Operator),
        })),
        // Nothing to redraw: the page is reloaded to show what changed.
        Ok((_, None)) => Ok(([("HX-Refresh", "true")], "").into_response()),
        Err(ConsoleError::Conflict(reason)) => {
            let html = format!("<p class=\"error\" role=\"alert\">{}</p>", escape(&reason));
            Ok(([("HX-Retarget", "#action-result"), ("HX-Reswap", "innerHTML")], axum::response::Html(html))
                .into_response())
        }
        Err(other) => Err(other),
    }
}

/// Text made safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `POST /admin/reconciliation/discrepancies/{id}/apply` (operators).
async fn apply(
    State(state): State<AppState>,
    user: ConsoleUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = discrepancy_id(&id)?;
    let outcome = match state.reconciliation.apply_discrepancy(id, &user.username).await {
        Ok(result) => {
            tracing::info!(user = %user.username, discrepancy = id, outcome = ?result.outcome, "console discrepancy apply");
            let done = match result.outcome {
                ApplyOutcome::Applied => "applied",
                ApplyOutcome::Matched => "matched",
                ApplyOutcome::AlreadyMatched => "already",
            };
            Ok((done, result.discrepancy))
        }
        Err(error) => Err(ConsoleError::from(error)),
    };
    answer(&user, &headers, outcome)
}

/// The accept form.
#[derive(Debug, Deserialize)]
struct AcceptForm {
    note: Option<String>,
}

/// `POST /admin/reconciliation/discrepancies/{id}/accept` (operators).
async fn accept(
    State(state): State<AppState>,
    user: ConsoleUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<AcceptForm>,
) -> Result<Response, ConsoleError> {
    let id = discrepancy_id(&id)?;
    let note = form.note.unwrap_or_default();
    let outcome = if let Err(reason) = crate::api::reconciliation::check_note(&note) {
        Err(ConsoleError::Conflict(format!("The note {reason}: say in a few words why.")))
    } else {
        match state.reconciliation.accept(id, note.trim(), &user.username).await {
            Ok(view) => Ok(("accepted", Some(view))),
            Err(error) => Err(ConsoleError::from(error)),
        }
    };
    answer(&user, &headers, outcome)
}
