//! The dashboard, organizations and bank payments pages.
//!
//! Every list keeps its filters, order and page in the query string, so a link shows the same view. Bad
//! filter values are shown next to their field (400) rather than ignored; the charts are inline SVG built
//! here with integer arithmetic (money never passes through a float).

use std::collections::BTreeMap;

use super::Form;
use super::Path;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use payledger_core::Inn;
use serde::Deserialize;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, Time};

use super::{ConsoleError, ConsoleUser, Layout, format, percent_encode, render};
use crate::AppState;
use crate::store::AuditEntry;
use crate::store::console::payments::{
    ConflictRow, OrganizationQuery, OrganizationRow, OrganizationSort, PaymentQuery, PaymentRow, RejectedRow,
};
use crate::tokens::Role;

/// Rows per page unless the query says otherwise.
const DEFAULT_PAGE_SIZE: i64 = 50;
/// The page sizes offered (any value from 1 to the largest is accepted).
const PAGE_SIZES: [i64; 4] = [20, 50, 100, 200];
/// The largest page.
const MAX_PAGE_SIZE: i64 = 200;
/// How many days the dashboard's inflow chart shows, today included.
const CHART_DAYS: i64 = 30;
/// How many of the latest balance changes the organization's chart draws.
const CHART_CHANGES: i64 = 500;
/// How much of a kept notice body a page shows, in bytes.
const SHOWN_BODY_BYTES: usize = 2048;
/// The longest organization name accepted, in characters.
const MAX_NAME_CHARS: usize = 300;
/// The longest search text accepted, in characters.
const MAX_SEARCH_CHARS: usize = 100;
/// The payouts' statuses, in the order the dashboard lists them.
const PAYOUT_STATUSES: [&str; 6] = ["pending", "processing", "completed", "failed", "cancelled", "returned"];
/// The bank payments' statuses with their labels.
const PAYMENT_STATUSES: [(&str, &str); 3] = [("received", "Waiting"), ("applied", "Credited"), ("failed", "Failed")];

/// This area's routes (each behind the console guard, which `console::router` adds).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/", get(dashboard))
        .route("/admin/organizations", get(organizations))
        .route("/admin/organizations/new", get(new_organization_form).post(create_organization))
        .route("/admin/organizations/{inn}", get(organization))
        .route("/admin/payments", get(payments))
        .route("/admin/payments/rejected", get(rejected_notices))
        .route("/admin/payments/conflicts", get(notice_conflicts))
        .route("/admin/payments/{operation_id}", get(payment))
}

// ---------------------------------------------------------------------------------------------------------
// Query strings, links and pages

/// A page's query string: the first value of each name.
struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(query: Option<String>) -> Params {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            map.entry(key).or_insert(value);
        }
        Params(map)
    }

    /// The trimmed value, `None` when absent or blank.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|value| value.trim()).filter(|value| !value.is_empty())
    }

    /// A positive integer parameter no larger than `max`.
    fn number(&self, name: &str, default: i64, max: i64) -> Result<i64, ConsoleError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|value| (1..=max).contains(value))
                .ok_or_else(|| ConsoleError::BadRequest(format!("{name} must be a whole number from 1 to {max}"))),
        }
    }

    /// `page` and `page_size`.
    fn paging(&self) -> Result<Paging, ConsoleError> {
        let size = self.number("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let page = self.number("page", 1, 1_000_000)?;
        Ok(Paging { page, size })
    }
}

/// Which page of a list.
#[derive(Debug, Clone, Copy)]
struct Paging {
    page: i64,
    size: i64,
}

impl Paging {
    fn offset(self) -> i64 {
        (self.page - 1).saturating_mul(self.size)
    }
}

/// `path?k=v&…` with the non-empty values percent-encoded.
fn link(path: &str, params: &[(&str, String)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}", percent_encode(value)))
        .collect();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) }
}

/// The previous/next links of a list and where we are.
#[derive(Debug, Clone, Default)]
struct Pager {
    prev: Option<String>,
    /// What the link to `prev` says.
    prev_label: &'static str,
    next: Option<String>,
    summary: String,
}

impl Pager {
    /// For a list whose total is known. `params` are the list's other query parameters.
    fn counted(path: &str, params: &[(&str, String)], paging: Paging, total: i64) -> Pager {
        let pages = ((total + paging.size - 1) / paging.size).max(1);
        let at = |page: i64| {
            let mut all = params.to_vec();
            if paging.size != DEFAULT_PAGE_SIZE {
                all.push(("page_size", paging.size.to_string()));
            }
            if page > 1 {
                all.push(("page", page.to_string()));
            }
            link(path, &all)
        };
        let first = paging.offset() + 1;
        let last = (paging.offset() + paging.size).min(total);
        let summary = if total == 0 {
            "Nothing found".to_owned()
        } else if first > total {
            format!("Page {} of {pages} ({total} in all): past the end", paging.page)
        } else {
            format!("{first}–{last} of {total} · page {} of {pages}", paging.page)
        };
        Pager {
            prev: (paging.page > 1).then(|| at((paging.page - 1).min(pages))),
            prev_label: "← Previous",
            next: (paging.page < pages).then(|| at(paging.page + 1)),
            summary,
        }
    }

    /// For a list read one row beyond the page, so whether a next page exists is known without counting,
    /// newest first by id: "Next" continues below the last row shown (`before`), so rows arriving meanwhile
    /// neither repeat nor hide rows; "Previous" goes back to the newest.
    fn keyset(path: &str, params: &[(&str, String)], paging: Paging, shown: usize, last: Option<i64>) -> Pager {
        let at = |page: i64, before: Option<i64>| {
            let mut all = params.to_vec();
            if paging.size != DEFAULT_PAGE_SIZE {
                all.push(("page_size", paging.size.to_string()));
            }
            if let Some(before) = before {
                all.push(("page", page.to_string()));
                all.push(("before", before.to_string()));
            }
            link(path, &all)
        };
        let first = paging.offset() + 1;
        let summary = if shown == 0 {
            if paging.page > 1 { format!("Page {}: nothing here", paging.page) } else { "Nothing found".to_owned() }
        } else {
            format!("{first}–{} · page {}", paging.offset() + shown as i64, paging.page)
        };
        Pager {
            prev: (paging.page > 1).then(|| at(1, None)),
            prev_label: "← Newest",
            next: last.map(|last| at(paging.page + 1, Some(last))),
            summary,
        }
    }
}

/// A choice of a `<select>`.
#[derive(Debug, Clone)]
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn page_size_choices(size: i64) -> Vec<Choice> {
    let mut sizes = PAGE_SIZES.to_vec();
    if !sizes.contains(&size) {
        sizes.push(size);
        sizes.sort_unstable();
    }
    sizes
        .into_iter()
        .map(|value| Choice { value: value.to_string(), label: value.to_string(), selected: value == size })
        .collect()
}

/// The first `SHOWN_BODY_BYTES` of a kept body (cut at a character boundary), and whether it was cut.
fn shown_body(body: &str) -> (String, bool) {
    if body.len() <= SHOWN_BODY_BYTES {
        return (body.to_owned(), false);
    }
    let mut end = SHOWN_BODY_BYTES;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}…", &body[..end]), true)
}

fn uuid_text(id: uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

fn payment_href(id: uuid::Uuid) -> String {
    format!("/admin/payments/{}", uuid_text(id))
}

fn organization_href(inn: &str) -> String {
    format!("/admin/organizations/{}", percent_encode(inn))
}

fn start_of_day(date: Date) -> OffsetDateTime {
    date.with_time(Time::MIDNIGHT).assume_utc()
}

fn start_of_month(date: Date) -> OffsetDateTime {
    start_of_day(date.replace_day(1).unwrap_or(date))
}

fn start_of_next_month(date: Date) -> OffsetDateTime {
    let (year, month) = match date.month() {
        time::Month::December => (date.year() + 1, time::Month::January),
        month => (date.year(), month.next()),
    };
    Date::from_calendar_date(year, month, 1)
        .map(start_of_day)
        .unwrap_or_else(|_| start_of_day(date) + Duration::days(31))
}

// ---------------------------------------------------------------------------------------------------------
// Charts

/// One bar of a bar chart, in the chart's own units.
#[derive(Debug, Clone)]
struct Bar {
    x: i64,
    y: i64,
    width: i64,
    height: i64,
    title: String,
}

/// A text on a chart's axis.
#[derive(Debug, Clone)]
struct AxisLabel {
    x: i64,
    y: i64,
    text: String,
    anchor: &'static str,
}

/// A horizontal guide line.
#[derive(Debug, Clone)]
struct Guide {
    y: i64,
    x1: i64,
    x2: i64,
}

/// An inline SVG chart: bars or a line (`points` of a polyline), labels and guides.
#[derive(Debug, Clone, Default)]
struct Chart {
    width: i64,
    height: i64,
    description: String,
    bars: Vec<Bar>,
    points: String,
    labels: Vec<AxisLabel>,
    guides: Vec<Guide>,
}

const CHART_LEFT: i64 = 120;
const CHART_TOP: i64 = 12;
const CHART_PLOT_HEIGHT: i64 = 200;
const CHART_BOTTOM: i64 = 28;

/// The smallest of 1, 2, 5 × 10ⁿ roubles at or above `kopecks`, in kopecks (so axis labels are round).
fn round_ceiling(kopecks: i64) -> i64 {
    let kopecks = kopecks.max(1);
    let roubles = kopecks / 100 + i64::from(kopecks % 100 != 0);
    let mut scale: i64 = 1;
    loop {
        for step in [1i64, 2, 5] {
            let candidate = step.saturating_mul(scale);
            if candidate >= roubles {
                return candidate.saturating_mul(100);
            }
        }
        if scale > i64::MAX / 100 {
            return kopecks;
        }
        scale *= 10;
    }
}

/// `value` scaled from `0..=range` to `0..=span`, exactly in integers.
fn scale(value: i128, range: i128, span: i64) -> i64 {
    if range <= 0 {
        return 0;
    }
    i64::try_from(value.clamp(0, range) * i128::from(span) / range).unwrap_or(span)
}

/// The daily inflow as bars, with the amount axis rounded up and a few dates below.
fn inflow_chart(days: &[(Date, i64)]) -> Chart {
    const SLOT: i64 = 20;
    const BAR: i64 = 14;
    let plot_width = SLOT * days.len() as i64;
    let top = round_ceiling(days.iter().map(|(_, amount)| *amount).max().unwrap_or(0));
    let baseline = CHART_TOP + CHART_PLOT_HEIGHT;
    let mut chart = Chart {
        width: CHART_LEFT + plot_width + 10,
        height: baseline + CHART_BOTTOM,
        description: format!("Bank inflow per day over the last {} days, up to {} a day", days.len(), format::rub(top)),
        ..Chart::default()
    };
    for (fraction, text) in [(0, format::rub(0)), (1, format::rub(top / 2)), (2, format::rub(top))] {
        let y = baseline - CHART_PLOT_HEIGHT * fraction / 2;
        chart.guides.push(Guide { y, x1: CHART_LEFT, x2: CHART_LEFT + plot_width });
        chart.labels.push(AxisLabel { x: CHART_LEFT - 6, y: y + 4, text, anchor: "end" });
    }
    let last = days.len().saturating_sub(1);
    for (index, (date, amount)) in days.iter().enumerate() {
        let height = match scale(i128::from(*amount), i128::from(top), CHART_PLOT_HEIGHT) {
            0 if *amount > 0 => 1,
            height => height,
        };
        let x = CHART_LEFT + SLOT * index as i64 + (SLOT - BAR) / 2;
        chart.bars.push(Bar {
            x,
            y: baseline - height,
            width: BAR,
            height,
            title: format!("{}: {}", short_date(*date), format::rub(*amount)),
        });
        if index % 7 == 0 && last - index >= 3 || index == last {
            chart.labels.push(AxisLabel {
                x: x + BAR / 2,
                y: baseline + 18,
                text: short_date(*date),
                anchor: "middle",
            });
        }
    }
    chart
}

fn short_date(date: Date) -> String {
    date.format(format_description!("[month repr:short] [day padding:none]")).unwrap_or_else(|_| date.to_string())
}

/// A balance over time as a step line: flat between changes, a vertical step at each change, up to `now`.
/// `changes` are `(when, before, after)`, oldest first.
fn balance_chart(changes: &[(OffsetDateTime, i64, i64)], now: OffsetDateTime) -> Chart {
    const PLOT_WIDTH: i64 = 600;
    let baseline = CHART_TOP + CHART_PLOT_HEIGHT;
    let mut chart = Chart { width: CHART_LEFT + PLOT_WIDTH + 10, height: baseline + CHART_BOTTOM, ..Chart::default() };
    let Some(&(start, first_before, _)) = changes.first() else { return chart };
    let end = now.max(changes.last().map_or(start, |change| change.0));
    let low = changes.iter().map(|change| change.2).chain([first_before, 0]).min().unwrap_or(0);
    let high = changes.iter().map(|change| change.2).chain([first_before]).max().unwrap_or(0);
    let high = if high > 0 { round_ceiling(high) } else { high };
    let range = i128::from(high) - i128::from(low);
    let span = (end - start).whole_milliseconds();
    let x_of = |moment: OffsetDateTime| CHART_LEFT + scale((moment - start).whole_milliseconds(), span, PLOT_WIDTH);
    let y_of = |balance: i64| baseline - scale(i128::from(balance) - i128::from(low), range, CHART_PLOT_HEIGHT);
    let mut points = vec![(x_of(start), y_of(first_before))];
    for &(moment, before, after) in changes {
        points.push((x_of(moment), y_of(before)));
        points.push((x_of(moment), y_of(after)));
    }
    let last_balance = changes.last().map_or(first_before, |change| change.2);
    points.push((CHART_LEFT + PLOT_WIDTH, y_of(last_balance)));
    chart.points = points.iter().map(|(x, y)| format!("{x},{y}")).collect::<Vec<_>>().join(" ");
    for value in if low < 0 { vec![low, 0, high] } else { vec![low, high] } {
        let y = y_of(value);
        chart.guides.push(Guide { y, x1: CHART_LEFT, x2: CHART_LEFT + PLOT_WIDTH });
        chart.labels.push(AxisLabel { x: CHART_LEFT - 6, y: y + 4, text: format::rub(value), anchor: "end" });
    }
    // Within one day the dates would say nothing: the times do.
    let moment = |at: OffsetDateTime| if start.date() == end.date() { format::time(at) } else { format::date(at) };
    chart.labels.push(AxisLabel { x: CHART_LEFT, y: baseline + 18, text: moment(start), anchor: "start" });
    chart.labels.push(AxisLabel { x: CHART_LEFT + PLOT_WIDTH, y: baseline + 18, text: moment(end), anchor: "end" });
    chart.description = format!(
        "Balance from {} to {}: {} changes, between {} and {}, now {}",
        format::date(start),
        format::date(end),
        changes.len(),
        format::rub(changes.iter().map(|change| change.2).chain([first_before]).min().unwrap_or(0)),
        format::rub(changes.iter().map(|change| change.2).chain([first_before]).max().unwrap_or(0)),
        format::rub(last_balance),
    );
    chart
}

// ---------------------------------------------------------------------------------------------------------
// Dashboard

/// One figure of the dashboard.
#[derive(Debug, Clone)]
struct Stat {
    label: String,
    value: String,
    href: Option<String>,
}

/// One day of the inflow table under the chart.
#[derive(Debug, Clone)]
struct DayRow {
    date: String,
    amount: String,
}

#[derive(askama::Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    as_of: String,
    money: Vec<Stat>,
    ledger: Vec<Stat>,
    payouts: Vec<Stat>,
    jobs: Vec<Stat>,
    notices: Vec<Stat>,
    chart: Chart,
    days: Vec<DayRow>,
}

async fn dashboard(State(state): State<AppState>, user: ConsoleUser) -> Result<Response, ConsoleError> {
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let tomorrow = start_of_day(today) + Duration::days(1);
    let first_day = start_of_day(today) - Duration::days(CHART_DAYS - 1);
    let mut ranges = vec![(start_of_day(today), tomorrow), (start_of_month(today), start_of_next_month(today))];
    let day_starts: Vec<OffsetDateTime> = (0..CHART_DAYS).map(|day| first_day + Duration::days(day)).collect();
    ranges.extend(day_starts.iter().map(|start| (*start, *start + Duration::days(1))));
    let inflow = state.store.console_inflow(&ranges).await?;
    let counts = state.store.console_dashboard_counts(now - Duration::hours(24)).await?;
    let amount = |index: usize| inflow.get(index).copied().unwrap_or(0);
    let days: Vec<(Date, i64)> =
        day_starts.iter().enumerate().map(|(index, start)| (start.date(), amount(index + 2))).collect();

    let count = |value: i64| value.to_string();
    let stat = |label: &str, value: String, href: Option<String>| Stat { label: label.to_owned(), value, href };
    let payments_since =
        |from: Date| link("/admin/payments", &[("status", "applied".into()), ("from", from.to_string())]);
    let month_start = start_of_month(today).date();
    let payouts = PAYOUT_STATUSES
        .iter()
        .map(|status| {
            let found = counts.payouts_by_status.iter().find(|(name, _)| name == status).map_or(0, |(_, n)| *n);
            stat(status, count(found), Some(link("/admin/payouts", &[("status", (*status).to_owned())])))
        })
        .collect();
    let jobs_link = |status: &str| user.can(Role::Admin).then(|| link("/admin/jobs", &[("status", status.to_owned())]));
    let page = DashboardPage {
        layout: user.layout("Dashboard", "dashboard"),
        as_of: format::time(now),
        money: vec![
            stat("Inflow today (UTC)", format::rub(amount(0)), Some(payments_since(today))),
            stat("Inflow this month", format::rub(amount(1)), Some(payments_since(month_start))),
        ],
        ledger: vec![
            stat("Organizations", count(counts.organizations), Some("/admin/organizations".into())),
            stat("Users with a balance", count(counts.user_accounts), Some("/admin/balances".into())),
        ],
        payouts,
        jobs: vec![
            stat("Queued", count(counts.jobs_queued), None),
            stat("Retrying", count(counts.jobs_retrying), jobs_link("retrying")),
            stat("Dead", count(counts.jobs_dead), jobs_link("dead")),
        ],
        notices: vec![
            stat("Rejected", count(counts.rejected_recent), Some("/admin/payments/rejected".into())),
            stat("Conflicting", count(counts.conflicts_recent), Some("/admin/payments/conflicts".into())),
        ],
        chart: inflow_chart(&days),
        days: days
            .iter()
            .rev()
            .map(|(date, amount)| DayRow { date: date.to_string(), amount: format::rub(*amount) })
            .collect(),
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------------------------------------------------
// Organizations

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

fn parse_sort(text: Option<&str>) -> Result<OrganizationSort, ConsoleError> {
    match text.unwrap_or("name") {
        "name" => Ok(OrganizationSort::Name),
        "-name" => Ok(OrganizationSort::NameDesc),
        "balance" => Ok(OrganizationSort::Balance),
        "-balance" => Ok(OrganizationSort::BalanceDesc),
        _ => Err(ConsoleError::BadRequest("sort must be name, -name, balance or -balance".into())),
    }
}

fn sort_name(sort: OrganizationSort) -> &'static str {
    match sort {
        OrganizationSort::Name => "name",
        OrganizationSort::NameDesc => "-name",
        OrganizationSort::Balance => "balance",
        OrganizationSort::BalanceDesc => "-balance",
    }
}

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
                operation_id: row.operation_id.map(uuid_text),
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

fn operator_only(user: &ConsoleUser) -> Result<(), ConsoleError> {
    if user.can(Role::Operator) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(format!("This needs the operator role; you are {}.", user.role)))
    }
}

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

// ---------------------------------------------------------------------------------------------------------
// Bank payments

/// A received notice as a row or a detail.
#[derive(Debug, Clone)]
struct PaymentView {
    operation_id: String,
    href: String,
    amount: String,
    inn: String,
    inn_href: String,
    organization: String,
    document_number: String,
    document_date: String,
    status: String,
    status_label: &'static str,
    received: String,
    applied: String,
    transaction_id: String,
    failure_reason: String,
}

impl PaymentView {
    fn new(row: &PaymentRow) -> PaymentView {
        PaymentView {
            operation_id: uuid_text(row.operation_id),
            href: payment_href(row.operation_id),
            amount: format::money(row.amount, &row.currency),
            inn: row.payer_inn.clone(),
            inn_href: organization_href(&row.payer_inn),
            organization: row.organization_name.clone().unwrap_or_default(),
            document_number: row.document_number.clone(),
            document_date: format::date(row.document_date),
            status: row.status.clone(),
            status_label: PAYMENT_STATUSES
                .iter()
                .find(|(status, _)| *status == row.status)
                .map_or("Unknown", |(_, label)| *label),
            received: format::time(row.received_at),
            applied: row.applied_at.map(format::time).unwrap_or_default(),
            transaction_id: row.transaction_id.map(uuid_text).unwrap_or_default(),
            failure_reason: row.failure_reason.clone().unwrap_or_default(),
        }
    }
}

/// The inbox's filters as typed, with an error per field.
#[derive(Debug, Clone, Default)]
struct PaymentFilters {
    status: String,
    inn: String,
    from: String,
    to: String,
    status_error: Option<String>,
    inn_error: Option<String>,
    from_error: Option<String>,
    to_error: Option<String>,
}

impl PaymentFilters {
    fn has_errors(&self) -> bool {
        self.status_error.is_some() || self.inn_error.is_some() || self.from_error.is_some() || self.to_error.is_some()
    }
}

#[derive(askama::Template)]
#[template(path = "console/overview_payments.html")]
struct PaymentsPage {
    layout: Layout,
    tab: &'static str,
    filters: PaymentFilters,
    statuses: Vec<Choice>,
    sizes: Vec<Choice>,
    rows: Vec<PaymentView>,
    pager: Pager,
}

fn parse_date(text: &str) -> Result<Date, String> {
    Date::parse(text, format_description!("[year]-[month]-[day]")).map_err(|_| "Use the form YYYY-MM-DD.".to_owned())
}

async fn payments(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let params = Params::parse(query);
    let paging = params.paging()?;
    // The page is a keyset cursor (`before` = the previous page's last id); `page` only numbers it.
    let before = params.number("before", 0, i64::MAX)?;
    let text = |name: &str| params.get(name).unwrap_or("").to_owned();
    let mut filters = PaymentFilters {
        status: text("status"),
        inn: text("inn"),
        from: text("from"),
        to: text("to"),
        ..Default::default()
    };
    if !filters.status.is_empty() && !PAYMENT_STATUSES.iter().any(|(status, _)| *status == filters.status) {
        filters.status_error = Some("Choose one of the listed statuses.".into());
    }
    if !filters.inn.is_empty() && Inn::parse(&filters.inn).is_err() {
        filters.inn_error = Some("An INN is 10 or 12 digits.".into());
    }
    let from = (!filters.from.is_empty()).then(|| parse_date(&filters.from)).transpose();
    let to = (!filters.to.is_empty()).then(|| parse_date(&filters.to)).transpose();
    let (from, to) = match (from, to) {
        (Ok(from), Ok(to)) => (from, to),
        (from, to) => {
            filters.from_error = from.err();
            filters.to_error = to.err();
            (None, None)
        }
    };
    if let (Some(from), Some(to)) = (from, to)
        && to < from
    {
        filters.to_error = Some("The end is before the start.".into());
    }
    let statuses = PAYMENT_STATUSES
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: (*label).to_owned(),
            selected: *value == filters.status,
        })
        .collect();
    let mut page = PaymentsPage {
        layout: user.layout("Bank payments", "payments"),
        tab: "inbox",
        filters: filters.clone(),
        statuses,
        sizes: page_size_choices(paging.size),
        rows: Vec::new(),
        pager: Pager::default(),
    };
    if filters.has_errors() {
        return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
    }
    let query = PaymentQuery {
        status: (!filters.status.is_empty()).then(|| filters.status.clone()),
        inn: (!filters.inn.is_empty()).then(|| filters.inn.clone()),
        from: from.map(start_of_day),
        // The end date is included: received before the next day starts.
        until: to.map(|to| start_of_day(to) + Duration::days(1)),
        limit: paging.size + 1,
        before: (before > 0).then_some(before),
    };
    let mut rows = state.store.console_payments(&query).await?;
    let more = rows.len() as i64 > paging.size;
    rows.truncate(usize::try_from(paging.size).unwrap_or(0));
    let params = [("status", filters.status), ("inn", filters.inn), ("from", filters.from), ("to", filters.to)];
    page.pager =
        Pager::keyset("/admin/payments", &params, paging, rows.len(), rows.last().filter(|_| more).map(|row| row.id));
    page.rows = rows.iter().map(PaymentView::new).collect();
    Ok(render(&page))
}

/// A conflicting notice as a row.
#[derive(Debug, Clone)]
struct ConflictView {
    received: String,
    operation_id: String,
    href: String,
    fields: Vec<String>,
    body: String,
    cut: bool,
}

impl ConflictView {
    fn new(row: &ConflictRow) -> ConflictView {
        let (body, cut) = shown_body(&row.notice);
        ConflictView {
            received: format::time(row.received_at),
            operation_id: uuid_text(row.operation_id),
            href: payment_href(row.operation_id),
            fields: row.differing_fields.split(',').filter(|field| !field.is_empty()).map(str::to_owned).collect(),
            body,
            cut,
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/overview_payment.html")]
struct PaymentPage {
    layout: Layout,
    tab: &'static str,
    payment: PaymentView,
    conflicts: Vec<ConflictView>,
    more_conflicts: bool,
}

async fn payment(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(operation_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = uuid::Uuid::parse_str(&operation_id)
        .map_err(|_| ConsoleError::BadRequest("An operation id is a UUID.".into()))?;
    let found = state
        .store
        .console_payment(id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("No bank payment has the operation id {id}.")))?;
    let (total, conflicts) = state.store.console_notice_conflicts(Some(id), 20, 0).await?;
    let page = PaymentPage {
        layout: user.layout(format!("Bank payment {}", found.document_number), "payments"),
        tab: "inbox",
        payment: PaymentView::new(&found),
        more_conflicts: total > conflicts.len() as i64,
        conflicts: conflicts.iter().map(ConflictView::new).collect(),
    };
    Ok(render(&page))
}

/// A rejected notice as a row.
#[derive(Debug, Clone)]
struct RejectedView {
    received: String,
    reason: String,
    details: Vec<(String, String)>,
    raw_details: String,
    body: String,
    cut: bool,
}

impl RejectedView {
    fn new(row: &RejectedRow) -> RejectedView {
        let (body, cut) = shown_body(&row.body);
        // The details are the intake's field errors as a JSON object; shown as stored if they are anything else.
        let details: Option<BTreeMap<String, serde_json::Value>> = serde_json::from_str(&row.details).ok();
        let details: Vec<(String, String)> = details
            .unwrap_or_default()
            .into_iter()
            .map(|(field, message)| match message {
                serde_json::Value::String(text) => (field, text),
                other => (field, other.to_string()),
            })
            .collect();
        RejectedView {
            received: format::time(row.received_at),
            reason: row.reason.clone(),
            raw_details: if details.is_empty() { row.details.clone() } else { String::new() },
            details,
            body,
            cut,
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/overview_rejected.html")]
struct RejectedPage {
    layout: Layout,
    tab: &'static str,
    rows: Vec<RejectedView>,
    sizes: Vec<Choice>,
    pager: Pager,
    shown_bytes: usize,
}

async fn rejected_notices(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let paging = Params::parse(query).paging()?;
    let (total, rows) = state.store.console_rejected_notices(paging.size, paging.offset()).await?;
    let page = RejectedPage {
        layout: user.layout("Rejected bank notices", "payments"),
        tab: "rejected",
        rows: rows.iter().map(RejectedView::new).collect(),
        sizes: page_size_choices(paging.size),
        pager: Pager::counted("/admin/payments/rejected", &[], paging, total),
        shown_bytes: SHOWN_BODY_BYTES,
    };
    Ok(render(&page))
}

#[derive(askama::Template)]
#[template(path = "console/overview_conflicts.html")]
struct ConflictsPage {
    layout: Layout,
    tab: &'static str,
    rows: Vec<ConflictView>,
    sizes: Vec<Choice>,
    pager: Pager,
    shown_bytes: usize,
}

async fn notice_conflicts(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let paging = Params::parse(query).paging()?;
    let (total, rows) = state.store.console_notice_conflicts(None, paging.size, paging.offset()).await?;
    let page = ConflictsPage {
        layout: user.layout("Conflicting bank notices", "payments"),
        tab: "conflicts",
        rows: rows.iter().map(ConflictView::new).collect(),
        sizes: page_size_choices(paging.size),
        pager: Pager::counted("/admin/payments/conflicts", &[], paging, total),
        shown_bytes: SHOWN_BODY_BYTES,
    };
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(round_ceiling(0), 100);
        assert_eq!(round_ceiling(150), 200);
        assert_eq!(round_ceiling(123_456), 200_000);
        assert_eq!(round_ceiling(5_00000), 5_00000);
        assert_eq!(round_ceiling(5_00001), 10_00000);
        assert!(round_ceiling(i64::MAX) > 0);
    }

    #[test]
    fn bars_scale_exactly_and_small_amounts_stay_visible() {
        let day = time::macros::date!(2026 - 03 - 01);
        let chart = inflow_chart(&[(day, 0), (day, 1), (day, 10_0000), (day, 5_0000)]);
        let heights: Vec<i64> = chart.bars.iter().map(|bar| bar.height).collect();
        assert_eq!(heights, vec![0, 1, CHART_PLOT_HEIGHT, CHART_PLOT_HEIGHT / 2]);
        assert!(chart.bars.iter().all(|bar| bar.y + bar.height == CHART_TOP + CHART_PLOT_HEIGHT));
        assert!(chart.bars[2].title.contains("1,000.00 RUB"));
    }

    #[test]
    fn the_balance_line_steps_at_each_change() {
        let start = time::macros::datetime!(2026-03-01 00:00:00 UTC);
        let chart =
            balance_chart(&[(start, 0, 10_000), (start + Duration::days(1), 10_000, 5_000)], start + Duration::days(2));
        let points: Vec<&str> = chart.points.split(' ').collect();
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], format!("{CHART_LEFT},{}", CHART_TOP + CHART_PLOT_HEIGHT));
        assert!(points[5].starts_with(&format!("{},", CHART_LEFT + 600)));
        assert!(balance_chart(&[], start).points.is_empty());
    }

    #[test]
    fn bodies_are_cut_at_a_character() {
        let long = "ж".repeat(SHOWN_BODY_BYTES);
        let (shown, cut) = shown_body(&long);
        assert!(cut && shown.ends_with('…') && shown.len() <= SHOWN_BODY_BYTES + '…'.len_utf8());
        assert_eq!(shown_body("short"), ("short".to_owned(), false));
    }

    #[test]
    fn links_keep_only_given_values() {
        assert_eq!(link("/a", &[("q", "x y&z".into()), ("sort", String::new())]), "/a?q=x%20y%26z");
        assert_eq!(link("/a", &[]), "/a");
        assert_eq!(check_inn("7707083893").map(|inn| inn.to_string()), Ok("7707083893".to_owned()));
        assert!(check_inn("7707083894").is_err() && check_inn("12345").is_err() && check_inn("").is_err());
    }
}
