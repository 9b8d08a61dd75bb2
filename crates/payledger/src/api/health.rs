//! Health and metrics endpoints for load balancers and Prometheus.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// Whether the service can reach its database.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
}

/// Liveness: the database answers and the ledger writer is running.
#[utoipa::path(get, path = "/health/", tag = "operations", responses(
    (status = 200, body = Health), (status = 503, body = Health)
))]
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.store.backend();
    match state.store.organization_count().await {
        Ok(_) if state.intake.is_running() => (StatusCode::OK, Json(Health { status: "ok", database })),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "unavailable", database })),
    }
}

/// Prometheus metrics in the text exposition format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::telemetry::render_metrics(&state.metrics))
}
