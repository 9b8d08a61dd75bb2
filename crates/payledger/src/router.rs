//! The one route table. API routes are registered through utoipa-axum, so the OpenAPI spec is built from
//! the same handlers that serve requests and cannot drift from them.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::AppState;
use crate::api::{auth, balances, docs, gateway_events, health, jobs, organizations, payouts, reports, users, webhook};

/// How long any request may take before it is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The spec's static part; paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "payledger",
        description = "A self-hosted payments ledger: bank webhook intake, exact balances, double-entry ledger."
    ),
    tags(
        (name = "bank webhook", description = "Payment notices from the bank"),
        (name = "organizations", description = "Organization balances and their history"),
        (name = "user balances", description = "Users' money: deposit, reserve for an order, recognize revenue, release, transfer, withdraw, balances and history. Every POST accepts an `Idempotency-Key`."),
        (name = "reports", description = "Accounting reports"),
        (name = "payouts", description = "Payout requests, processed asynchronously by workers through the payment gateway. Also served under `/api/payouts/`."),
        (name = "jobs", description = "The durable job queue: dead jobs and their retry"),
        (name = "auth", description = "Access and refresh tokens"),
        (name = "users", description = "Admin only: the users of the API and the console, and the audit log"),
        (name = "operations", description = "Health and monitoring"),
    )
)]
struct ApiDoc;

/// The API routes and the OpenAPI document built from them.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let api = OpenApiRouter::new()
        .routes(routes!(webhook::receive_bank_notice))
        .routes(routes!(organizations::balance))
        .routes(routes!(organizations::balance_log))
        .routes(routes!(balances::add_funds))
        .routes(routes!(balances::withdraw_funds))
        .routes(routes!(balances::reserve_funds))
        .routes(routes!(balances::deduct_funds))
        .routes(routes!(balances::unreserve_funds))
        .routes(routes!(balances::transfer_funds))
        .routes(routes!(balances::balance))
        .routes(routes!(balances::history))
        .routes(routes!(reports::revenue))
        .routes(routes!(payouts::create, payouts::list))
        .routes(routes!(payouts::detail, payouts::patch, payouts::delete))
        .routes(routes!(jobs::jobs))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(gateway_events::gateway_event))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::patch))
        .routes(routes!(users::audit))
        .routes(routes!(auth::token))
        .routes(routes!(auth::refresh))
        .routes(routes!(health::health));
    // Nest under /api before splitting, so the spec's paths carry the prefix.
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api", api).split_for_parts();
    document_security(&mut openapi);
    (router, openapi)
}

/// Writes the access table ([`crate::api::access::gate`]) into the spec: the security schemes, and on every
/// operation the credentials it takes and the least role it needs, read from the same table the server
/// enforces.
fn document_security(openapi: &mut utoipa::openapi::OpenApi) {
    use crate::api::access::{Gate, gate};
    use axum::http::Method;
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};

    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
    );
    components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    components.add_security_scheme(
        "signature",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-Payledger-Signature",
            "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">; required when a secret is configured",
        ))),
    );
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PATCH, &mut item.patch),
            (Method::PUT, &mut item.put),
            (Method::DELETE, &mut item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let (security, note) = match gate(&method, path) {
                Gate::Open => (vec![SecurityRequirement::default()], "No authentication.".to_owned()),
                Gate::Signed => (
                    vec![SecurityRequirement::new("signature", Vec::<String>::new())],
                    "Authenticated by its HMAC signature, not by a user.".to_owned(),
                ),
                Gate::Role { role, anonymous_in_development } => {
                    let mut security = vec![
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                        SecurityRequirement::new("basic", Vec::<String>::new()),
                    ];
                    if anonymous_in_development {
                        security.push(SecurityRequirement::default());
                    }
                    let anonymous = if anonymous_in_development {
                        " Anonymous callers too in the development profile."
                    } else {
                        ""
                    };
                    (security, format!("Needs the **{role}** role or higher.{anonymous}"))
                }
            };
            operation.security = Some(security);
            let description = operation.description.take().unwrap_or_default();
            operation.description =
                Some(if description.is_empty() { note } else { format!("{description}\n\n{note}") });
        }
    }
}

/// The whole application: API, docs, metrics, and the layers every request passes through.
pub fn app(state: AppState) -> Router {
    let (api, _) = api();
    let swagger = SwaggerUi::new("/api/schema/swagger").config(Config::new(["/api/schema/"]).validator_url("none"));
    Router::new()
        .merge(api)
        .route("/api/schema/", get(docs::openapi_json))
        .route("/api/schema", get(docs::openapi_json))
        .route("/api/schema/redoc/", get(docs::redoc))
        .route("/api/schema/redoc", get(docs::redoc))
        .route("/assets/redoc.standalone.js", get(docs::redoc_js))
        .route("/metrics", get(health::metrics))
        // The original services' path for payouts, beside the versioned one in the spec.
        .route("/api/payouts/", get(payouts::list).post(payouts::create))
        .route("/api/payouts/{id}/", get(payouts::detail).patch(payouts::patch).delete(payouts::delete))
        .merge(swagger)
        // After every API route, so each one passes the access table; the fallback (404) needs nothing.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::api::access::guard))
        // The console has its own guard (sessions, CSRF) on its own routes.
        .merge(crate::console::router(state.clone()))
        .fallback(not_found)
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        // Security headers on every answer (the docs pages are HTML): no MIME sniffing, no framing (click-
        // jacking), no referrer leaking paths with ids to other sites.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(CatchPanicLayer::custom(crate::error::panic_response))
        .layer(TraceLayer::new_for_http())
}

async fn not_found() -> crate::error::ApiError {
    crate::error::ApiError::NotFound("Not found")
}

/// Adds the trailing slash to API paths that lack one, so `/api/x` and `/api/x/` reach the same handler.
/// Runs before routing; the docs and assets keep their exact paths.
pub fn add_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.starts_with("/api/") && !path.ends_with('/') && !path.starts_with("/api/schema") {
        let new_path = format!("{path}/");
        let rewritten = match request.uri().query() {
            Some(query) => format!("{new_path}?{query}"),
            None => new_path,
        };
        if let Ok(uri) = rewritten.parse::<Uri>() {
            *request.uri_mut() = uri;
        }
    }
    request
}
