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

/// Health (kept for existing probes): the database answers and the ledger writer is running.
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

/// The process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// Always `ok`.
    pub status: &'static str,
}

/// Liveness for an orchestrator: the process answers HTTP. Touches nothing else, so a slow or absent database
/// never gets a healthy process restarted (readiness says whether to send it requests).
#[utoipa::path(get, path = "/health/live/", tag = "operations", responses((status = 200, body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

/// Whether this instance should be sent requests, and if not, why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
    /// What is wrong, one phrase each: `database unreachable`, `migrations pending: <names>`, `ledger writer
    /// stopped`, `draining`. Empty when ready.
    pub reasons: Vec<String>,
    /// What is not wrong but worth knowing: `migrations of a newer build applied: <versions>` (this build on a
    /// schema a newer one expanded, as during a rolling upgrade; it still serves).
    pub notes: Vec<String>,
}

/// Readiness for a load balancer: the database answers, every migration of this build is applied, the
/// ledger writer runs, and the process is not shutting down (from the shutdown signal on it answers 503
/// while it finishes the requests it has).
#[utoipa::path(get, path = "/health/ready/", tag = "operations", responses(
    (status = 200, body = Ready), (status = 503, body = Ready)
))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (mut reasons, mut notes) = (Vec::new(), Vec::new());
    match state.store.migration_state().await {
        Ok(migrations) => {
            reasons.extend(migrations.problems());
            notes.extend(migrations.notes());
        }
        Err(error) => {
            tracing::warn!(%error, "readiness: the database did not answer");
            reasons.push("database unreachable".to_owned());
        }
    }
    if !state.intake.is_running() {
        reasons.push("ledger writer stopped".to_owned());
    }
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        reasons.push("draining".to_owned());
    }
    let database = state.store.backend();
    let (code, status) =
        if reasons.is_empty() { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "unavailable") };
    (code, Json(Ready { status, database, reasons, notes }))
}

/// The longest `/metrics` waits for the database's counts (Prometheus's scrape timeout is 10 s by default).
const ATTENTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus metrics in the text exposition format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Counted at each scrape: every instance reports the database's numbers (alert on their max, not sum).
    // Bounded well inside a scrape's timeout, since without a database the other series matter most; a failed
    // count leaves the two at their last value and says so in payledger_database_counts_ok.
    let counted = tokio::time::timeout(ATTENTION_TIMEOUT, state.store.attention()).await;
    match counted {
        Ok(Ok(attention)) => {
            metrics::gauge!("payledger_jobs_dead").set(attention.dead_jobs as f64);
            metrics::gauge!("payledger_statement_discrepancies_open").set(attention.open_discrepancies as f64);
            metrics::gauge!("payledger_webhook_endpoints_disabled").set(attention.disabled_endpoints as f64);
            metrics::gauge!("payledger_event_deliveries_pending").set(attention.pending_deliveries as f64);
            metrics::gauge!("payledger_database_counts_ok").set(1.0);
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: dead jobs and open discrepancies could not be counted");
            metrics::gauge!("payledger_database_counts_ok").set(0.0);
        }
        Err(_) => {
            tracing::warn!(timeout = ?ATTENTION_TIMEOUT, "metrics: counting dead jobs and open discrepancies timed out");
            metrics::gauge!("payledger_database_counts_ok").set(0.0);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::telemetry::render_metrics(&state.metrics))
}
