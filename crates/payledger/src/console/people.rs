//! The users' balances, users and audit log pages.

use axum::Router;

use crate::AppState;

/// This area's routes (each behind the console guard, which `console::router` adds).
pub fn routes() -> Router<AppState> {
    Router::new()
}
