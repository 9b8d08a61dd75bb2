//! The dashboard (`/admin/`): today's and this month's inflow, the daily inflow of the last 30 days as a chart and
//! a table, and the counts of organizations, users with a balance, payouts by status, troubled jobs and recent
//! rejected or conflicting notices, each linked to the list it counts.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use time::{Date, Duration, OffsetDateTime};

use super::calendar::{start_of_day, start_of_month, start_of_next_month};
use super::charts::{Chart, inflow_chart};
use super::lists::link;
use super::{ConsoleError, ConsoleUser, Layout, format, render};
use crate::AppState;
use crate::auth::tokens::Role;

/// How many days the dashboard's inflow chart shows, today included.
const CHART_DAYS: i64 = 30;
/// The payouts' statuses, in the order the dashboard lists them.
const PAYOUT_STATUSES: [&str; 6] = ["pending", "processing", "completed", "failed", "cancelled", "returned"];

/// The dashboard's route (behind the console guard, which `console::router` adds).
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/", get(dashboard))
}

/// One figure of the dashboard.
#[derive(Debug, Clone)]
struct Stat {
    label: String,
    value: String,
    /// The list it counts, if the user may see it.
    href: Option<String>,
}

/// One day of the inflow table under the chart.
#[derive(Debug, Clone)]
struct DayRow {
    date: String,
    amount: String,
}

/// The dashboard page: its figures in groups, the inflow chart and its table.
#[derive(askama::Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    as_of: String,
    /// What an operator must act on, shown above everything else, with where to act (for those allowed).
    alerts: Vec<Stat>,
    money: Vec<Stat>,
    ledger: Vec<Stat>,
    payouts: Vec<Stat>,
    jobs: Vec<Stat>,
    notices: Vec<Stat>,
    chart: Chart,
    days: Vec<DayRow>,
}

/// The RUB inflow the dashboard shows, in kopecks.
struct Inflow {
    today: i64,
    this_month: i64,
    /// The last [`CHART_DAYS`] days, oldest first.
    days: Vec<(Date, i64)>,
}

/// Reads today's, this month's and each chart day's inflow in one query.
async fn read_inflow(state: &AppState, today: Date) -> Result<Inflow, ConsoleError> {
    let tomorrow = start_of_day(today) + Duration::days(1);
    let first_day = start_of_day(today) - Duration::days(CHART_DAYS - 1);
    let mut ranges = vec![(start_of_day(today), tomorrow), (start_of_month(today), start_of_next_month(today))];
    let day_starts: Vec<OffsetDateTime> = (0..CHART_DAYS).map(|day| first_day + Duration::days(day)).collect();
    ranges.extend(day_starts.iter().map(|start| (*start, *start + Duration::days(1))));
    let inflow = state.store.console_inflow(&ranges).await?;
    let amount = |index: usize| inflow.get(index).copied().unwrap_or(0);
    Ok(Inflow {
        today: amount(0),
        this_month: amount(1),
        days: day_starts.iter().enumerate().map(|(index, start)| (start.date(), amount(index + 2))).collect(),
    })
}

/// `GET /admin/`.
async fn dashboard(State(state): State<AppState>, user: ConsoleUser) -> Result<Response, ConsoleError> {
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let inflow = read_inflow(&state, today).await?;
    let counts = state.store.console_dashboard_counts(now - Duration::hours(24)).await?;
    let attention = state.store.attention().await?;

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
    // The jobs page is for admins only: others see the figures without a link that would refuse them.
    let jobs_link = |status: &str| user.can(Role::Admin).then(|| link("/admin/jobs", &[("status", status.to_owned())]));
    let mut alerts = Vec::new();
    if attention.disabled_endpoints > 0 {
        let text =
            format!("{} webhook endpoint(s) disabled: events are no longer sent to them", attention.disabled_endpoints);
        alerts.push(stat(&text, String::new(), user.can(Role::Admin).then(|| "/admin/webhooks".to_owned())));
    }
    let page = DashboardPage {
        layout: user.layout("Dashboard", "dashboard"),
        as_of: format::time(now),
        alerts,
        money: vec![
            stat("Inflow today (UTC)", format::rub(inflow.today), Some(payments_since(today))),
            stat("Inflow this month", format::rub(inflow.this_month), Some(payments_since(month_start))),
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
        chart: inflow_chart(&inflow.days),
        days: inflow
            .days
            .iter()
            .rev()
            .map(|(date, amount)| DayRow { date: date.to_string(), amount: format::rub(*amount) })
            .collect(),
    };
    Ok(render(&page))
}
