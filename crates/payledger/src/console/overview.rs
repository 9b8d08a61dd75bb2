//! The dashboard, organizations and bank payments pages.

use axum::Router;
use axum::response::Response;
use axum::routing::get;

use super::{ConsoleUser, Layout, render};
use crate::AppState;

/// The dashboard.
#[derive(askama::Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    layout: Layout,
}

async fn dashboard(user: ConsoleUser) -> Response {
    render(&DashboardPage { layout: user.layout("Dashboard", "dashboard") })
}

/// This area's routes (each behind the console guard, which `console::router` adds).
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/", get(dashboard))
}
