//! The one route table: [`ROUTES`] says, for every route, METHOD PATH → handler → who may call it. The access
//! middleware reads each request's rule from it, the OpenAPI spec's security is written from it, and a test
//! checks every row against the spec built from the handlers. API routes are registered through utoipa-axum,
//! so that spec comes from the same handlers that serve requests and cannot drift from them. The console's
//! pages have their own table (`console::needs`) and guard.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Uri;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::AppState;
use crate::api::access::Gate;
use crate::api::{
    auth, balances, bulk, docs, gateway_events, health, jobs, organizations, payouts, reconciliation, reports,
    statements, users, webhook, webhook_endpoints,
};
use crate::auth::tokens::Role;

/// One row of the route table.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method (a GET route also answers HEAD).
    pub method: Method,
    /// The path as axum matches it, with `{parameters}`.
    pub path: &'static str,
    /// The handler, as `module::function` under `api/` (the function's name is also its OpenAPI operationId).
    pub handler: &'static str,
    /// Who may call it.
    pub gate: Gate,
}

const fn route(method: Method, path: &'static str, handler: &'static str, gate: Gate) -> Route {
    Route { method, path, handler, gate }
}

const OPEN: Gate = Gate::Open;
const SIGNED: Gate = Gate::Signed;
const READ: Gate = Gate::read_open_in_development();
const VIEWER: Gate = Gate::role(Role::Viewer);
const OPERATOR: Gate = Gate::role(Role::Operator);
const ADMIN: Gate = Gate::role(Role::Admin);

/// Every route of the API, the docs and the metrics: METHOD PATH → handler → who may call it.
///
/// `READ` is a viewer in production and anyone in development (the original services' curl examples work
/// verbatim); `SIGNED` is checked by the handler against the sender's HMAC secret. A route missing from this
/// table needs an admin, so a new endpoint is closed until someone decides who may call it.
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    route(Method::POST,   "/api/webhook/bank/",                     "webhook::receive_bank_notice", SIGNED),
    route(Method::GET,    "/api/organizations/{inn}/balance/",      "organizations::balance",       READ),
    route(Method::GET,    "/api/organizations/{inn}/balance-log/",  "organizations::balance_log",   READ),
    route(Method::POST,   "/api/add_funds/",                        "balances::add_funds",          OPERATOR),
    route(Method::POST,   "/api/withdraw_funds/",                   "balances::withdraw_funds",     OPERATOR),
    route(Method::POST,   "/api/reserve_funds/",                    "balances::reserve_funds",      OPERATOR),
    route(Method::POST,   "/api/deduct_funds/",                     "balances::deduct_funds",       OPERATOR),
    route(Method::POST,   "/api/unreserve_funds/",                  "balances::unreserve_funds",    OPERATOR),
    route(Method::POST,   "/api/transfer_funds/",                   "balances::transfer_funds",     OPERATOR),
    route(Method::POST,   "/api/v1/batch/",                         "bulk::apply_batch",            OPERATOR),
    route(Method::GET,    "/api/balances/",                         "balances::balance",            READ),
    route(Method::GET,    "/api/users/{user_id}/transactions/",     "balances::history",            READ),
    route(Method::GET,    "/api/reports/revenue/",                  "reports::revenue",             VIEWER),
    route(Method::POST,   "/api/v1/payouts/",                       "payouts::create",              OPERATOR),
    route(Method::GET,    "/api/v1/payouts/",                       "payouts::list",                VIEWER),
    route(Method::GET,    "/api/v1/payouts/{id}/",                  "payouts::detail",              VIEWER),
    route(Method::PATCH,  "/api/v1/payouts/{id}/",                  "payouts::patch",               OPERATOR),
    route(Method::DELETE, "/api/v1/payouts/{id}/",                  "payouts::delete",              ADMIN),
    // The original services' paths for payouts, beside the versioned ones in the spec.
    route(Method::POST,   "/api/payouts/",                          "payouts::create",              OPERATOR),
    route(Method::GET,    "/api/payouts/",                          "payouts::list",                VIEWER),
    route(Method::GET,    "/api/payouts/{id}/",                     "payouts::detail",              VIEWER),
    route(Method::PATCH,  "/api/payouts/{id}/",                     "payouts::patch",               OPERATOR),
    route(Method::DELETE, "/api/payouts/{id}/",                     "payouts::delete",              ADMIN),
    route(Method::GET,    "/api/v1/jobs/",                          "jobs::jobs",                   ADMIN),
    route(Method::POST,   "/api/v1/jobs/{id}/retry/",               "jobs::retry_job",              ADMIN),
    route(Method::POST,   "/api/v1/gateway/events/",                "gateway_events::gateway_event", SIGNED),
    route(Method::GET,    "/api/v1/users/",                         "users::list",                  ADMIN),
    route(Method::POST,   "/api/v1/users/",                         "users::create",                ADMIN),
    route(Method::PATCH,  "/api/v1/users/{username}/",              "users::patch",                 ADMIN),
    route(Method::GET,    "/api/v1/audit/",                         "users::audit",                 ADMIN),
    route(Method::GET,    "/api/v1/webhook-endpoints/",             "webhook_endpoints::list",      ADMIN),
    route(Method::POST,   "/api/v1/webhook-endpoints/",             "webhook_endpoints::create",    ADMIN),
    route(Method::GET,    "/api/v1/webhook-endpoints/{id}/",        "webhook_endpoints::detail",    ADMIN),
    route(Method::PATCH,  "/api/v1/webhook-endpoints/{id}/",        "webhook_endpoints::patch",     ADMIN),
    route(Method::DELETE, "/api/v1/webhook-endpoints/{id}/",        "webhook_endpoints::delete",    ADMIN),
    route(Method::POST,   "/api/v1/webhook-endpoints/{id}/rotate-secret/", "webhook_endpoints::rotate_secret", ADMIN),
    route(Method::POST,   "/api/v1/webhook-endpoints/{id}/test/",   "webhook_endpoints::test",      ADMIN),
    route(Method::GET,    "/api/v1/webhook-endpoints/{id}/deliveries/", "webhook_endpoints::deliveries", ADMIN),
    route(Method::GET,    "/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/attempts/", "webhook_endpoints::attempts", ADMIN),
    route(Method::POST,   "/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/replay/", "webhook_endpoints::replay", ADMIN),
    route(Method::POST,   "/api/v1/webhook-endpoints/{id}/recover/", "webhook_endpoints::recover",  ADMIN),
    route(Method::POST,   "/api/v1/statements/",                    "statements::upload",           OPERATOR),
    route(Method::GET,    "/api/v1/statements/",                    "statements::list",             VIEWER),
    route(Method::GET,    "/api/v1/statements/{id}/",               "statements::detail",           VIEWER),
    route(Method::POST,   "/api/v1/statements/{id}/apply/",         "statements::apply",            OPERATOR),
    route(Method::GET,    "/api/v1/reconciliation/",                "reconciliation::report",       VIEWER),
    route(Method::POST,   "/api/v1/reconciliation/discrepancies/{id}/apply/",  "reconciliation::apply_discrepancy",  OPERATOR),
    route(Method::POST,   "/api/v1/reconciliation/discrepancies/{id}/accept/", "reconciliation::accept_discrepancy", OPERATOR),
    route(Method::POST,   "/api/token/",                            "auth::token",                  OPEN),
    route(Method::POST,   "/api/token/refresh/",                    "auth::refresh",                OPEN),
    route(Method::GET,    "/api/health/",                           "health::health",               OPEN),
    route(Method::GET,    "/api/health/live/",                      "health::live",                 OPEN),
    route(Method::GET,    "/api/health/ready/",                     "health::ready",                OPEN),
    route(Method::GET,    "/metrics",                               "health::metrics",              OPEN),
    route(Method::GET,    "/api/schema/",                           "docs::openapi_json",           READ),
    route(Method::GET,    "/api/schema",                            "docs::openapi_json",           READ),
    route(Method::GET,    "/api/schema/redoc/",                     "docs::redoc",                  READ),
    route(Method::GET,    "/api/schema/redoc",                      "docs::redoc",                  READ),
    route(Method::GET,    "/assets/redoc.standalone.js",            "docs::redoc_js",               READ),
];

/// The bank's webhook, whose signature the configuration decides.
const BANK_WEBHOOK: &str = "/api/webhook/bank/";

/// The swagger UI's own files, under one prefix; read like the rest of the documentation.
const SWAGGER_PREFIX: &str = "/api/schema/swagger";

/// The rule of a route, by method and path as axum matched it: its row in [`ROUTES`]. A path in the table
/// asked with a method it does not serve takes the least demanding rule of its rows (the caller then gets
/// 405, and learns nothing the spec does not say); anything else needs an admin.
pub fn gate(method: &Method, path: &str) -> Gate {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    let rows = || ROUTES.iter().filter(move |row| row.path == path);
    if let Some(row) = rows().find(|row| row.method == *method) {
        return row.gate;
    }
    match rows().map(|row| row.gate).min_by_key(|gate| demand(*gate)) {
        Some(least) => least,
        None if path.starts_with(SWAGGER_PREFIX) => READ,
        None => ADMIN,
    }
}

/// How much a rule asks, to compare rules: open, then signed, then by role (`Role`'s order is the privilege
/// order), anonymous-in-development before not.
fn demand(gate: Gate) -> (u8, Option<Role>, bool) {
    match gate {
        Gate::Open => (0, None, false),
        Gate::Signed => (1, None, false),
        Gate::Role { role, anonymous_in_development } => (2, Some(role), !anonymous_in_development),
    }
}

/// The access middleware with the table's rules.
async fn check_access(state: State<AppState>, request: Request, next: Next) -> Response {
    crate::api::access::guard(state, gate, request, next).await
}

/// The spec's static part; paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "payledger",
        description = "A self-hosted payments ledger: bank webhook intake, exact balances, double-entry ledger.\n\nEvery answer carries an `X-Request-Id` header: the request's id in the server's log lines and in the audit row of any change it made. A reverse proxy listed in `PAYLEDGER_TRUSTED_PROXIES` may set it (1 to 128 of `A-Z a-z 0-9 - _ . : /`); otherwise the server makes one."
    ),
    tags(
        (name = "bank webhook", description = "Payment notices from the bank"),
        (name = "organizations", description = "Organization balances and their history"),
        (name = "user balances", description = "Users' money: deposit, reserve for an order, recognize revenue, release, transfer, withdraw, balances and history. Every POST accepts an `Idempotency-Key`."),
        (name = "batch", description = "Up to 1,000 bank notices and balance operations in one request, each answered as its single endpoint answers it, applied each on its own or all together in one ledger transaction"),
        (name = "reports", description = "Accounting reports"),
        (name = "payouts", description = "Payout requests, processed asynchronously by workers through the payment gateway. Also served under `/api/payouts/`."),
        (name = "jobs", description = "The durable job queue: dead jobs and their retry"),
        (name = "reconciliation", description = "Bank statements: import one, match its lines with the bank's notices, and decide each discrepancy (apply the line, or accept it with a note)"),
        (name = "auth", description = "Access and refresh tokens"),
        (name = "webhook endpoints", description = "Admin only: the receivers of outbound events (Standard Webhooks), their signing secrets, a test event, and each one's delivery log with its replays"),
        (name = "users", description = "Admin only: the users of the API and the console, and the audit log"),
        (name = "operations", description = "Health and monitoring"),
    ),
    // Schemas that only parameters name: the router registers the ones bodies and answers use.
    components(schemas(
        crate::api::schema::IdText,
        crate::api::schema::IdempotencyKeyText,
        crate::api::schema::InnText,
        crate::api::bulk::BatchOperation,
        crate::api::balances::HistorySortName,
        crate::api::balances::SortOrder,
        crate::api::payouts::PayoutStatusName,
        crate::api::payouts::PayoutOrderingName,
        crate::api::jobs::JobStatusName,
        crate::api::webhook_endpoints::DeliveryStatusName,
    ))
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
        .routes(routes!(bulk::apply_batch))
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
        .routes(routes!(webhook_endpoints::list, webhook_endpoints::create))
        .routes(routes!(webhook_endpoints::detail, webhook_endpoints::patch, webhook_endpoints::delete))
        .routes(routes!(webhook_endpoints::rotate_secret))
        .routes(routes!(webhook_endpoints::test))
        .routes(routes!(webhook_endpoints::deliveries))
        .routes(routes!(webhook_endpoints::attempts))
        .routes(routes!(webhook_endpoints::replay))
        .routes(routes!(webhook_endpoints::recover))
        .routes(routes!(statements::upload, statements::list))
        .routes(routes!(statements::detail))
        .routes(routes!(statements::apply))
        .routes(routes!(reconciliation::report))
        .routes(routes!(reconciliation::apply_discrepancy))
        .routes(routes!(reconciliation::accept_discrepancy))
        .routes(routes!(auth::token))
        .routes(routes!(auth::refresh))
        .routes(routes!(health::health))
        .routes(routes!(health::live))
        .routes(routes!(health::ready));
    // Nest under /api before splitting, so the spec's paths carry the prefix.
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api", api).split_for_parts();
    document_security(&mut openapi);
    name_operations(&mut openapi);
    docs::document_common_responses(&mut openapi, gate, crate::config::DEFAULT_REQUEST_TIMEOUT);
    docs::document_links(&mut openapi);
    (router, openapi)
}

/// Names every operation after its row's handler, `module_function` (`payouts_create`): operationIds must be
/// unique, and `users::create` and `payouts::create` share a function name.
fn name_operations(openapi: &mut utoipa::openapi::OpenApi) {
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
            if let Some(row) = ROUTES.iter().find(|row| row.method == method && row.path == path) {
                operation.operation_id = Some(operation_id(row.handler));
            }
        }
    }
}

/// The operationId of a handler named `module::function`.
pub fn operation_id(handler: &str) -> String {
    handler.replace("::", "_")
}

/// Writes the access rules ([`ROUTES`]) into the spec: the security schemes, and on every
/// operation the credentials it takes and the least role it needs, read from the same table the server
/// enforces.
fn document_security(openapi: &mut utoipa::openapi::OpenApi) {
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
                // The bank's notices need a signature only once a webhook secret is configured (production
                // requires one); the gateway's callbacks always do.
                Gate::Signed if path == BANK_WEBHOOK => (
                    vec![SecurityRequirement::new("signature", Vec::<String>::new()), SecurityRequirement::default()],
                    "Authenticated by its HMAC signature, not by a user, whenever a webhook secret is configured \
                     (always in production); unsigned notices are accepted only without one."
                        .to_owned(),
                ),
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
    let bounded = state.clone();
    let observed = state.clone();
    let swagger = SwaggerUi::new("/api/schema/swagger").config(Config::new(["/api/schema/"]).validator_url("none"));
    Router::new()
        .merge(api)
        .route("/api/schema/", get(docs::openapi_json))
        .route("/api/schema", get(docs::openapi_json))
        .route("/api/schema/redoc/", get(docs::redoc))
        .route("/api/schema/redoc", get(docs::redoc))
        .route("/assets/redoc.standalone.js", get(docs::redoc_js))
        .route("/metrics", get(health::metrics))
        // The original services' paths for payouts, beside the versioned ones in the spec.
        .route("/api/payouts/", get(payouts::list).post(payouts::create))
        .route("/api/payouts/{id}/", get(payouts::detail).patch(payouts::patch).delete(payouts::delete))
        .merge(swagger)
        // After every API route, so each one passes the access table; the fallback (404) needs nothing.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), check_access))
        // The console has its own guard (sessions, CSRF) on its own routes.
        .merge(crate::console::router(state.clone()))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(bounded, bound_request_time))
        // Security headers on every answer (the docs pages are HTML): no MIME sniffing, no framing (click-
        // jacking), no referrer leaking paths with ids to other sites.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(CatchPanicLayer::custom(crate::error::panic_response))
        // Outermost, so its access line has the final status (a timeout's 503, a panic's 500). Every 5xx is
        // also logged where it is made, with its cause.
        .layer(axum::middleware::from_fn_with_state(observed, crate::access_log::observe))
}

/// Answers a request that takes longer than the request timeout with 503 `unconfirmed` and `Retry-After`,
/// so a client never waits forever on a slow or absent database. The handler is dropped, but a command it
/// already queued for the ledger engine may still be applied: hence `unconfirmed`, not `unavailable`. The
/// console's pages get the console's error page instead of the API's JSON.
async fn bound_request_time(state: State<AppState>, request: Request, next: Next) -> Response {
    let console = crate::console::is_console_path(request.uri().path());
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            // Once here, not per layer: under a slow database every waiting request times out, and one line
            // each is plenty (the count is also a metric).
            metrics::counter!("payledger_requests_timed_out_total").increment(1);
            tracing::warn!(%path, timeout = ?state.request_timeout, "request timed out; answered 503");
            if console {
                crate::console::ConsoleError::TimedOut.into_response()
            } else {
                crate::error::ApiError::TimedOut.into_response()
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The operations of the spec, as (method, path, operationId).
    fn spec_operations() -> Vec<(Method, String, String)> {
        let (_, openapi) = api();
        let mut operations = Vec::new();
        for (path, item) in &openapi.paths.paths {
            let methods = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PATCH, &item.patch),
                (Method::PUT, &item.put),
                (Method::DELETE, &item.delete),
            ];
            for (method, operation) in methods {
                if let Some(operation) = operation {
                    operations.push((method, path.clone(), operation.operation_id.clone().unwrap_or_default()));
                }
            }
        }
        operations
    }

    #[test]
    fn every_operation_of_the_spec_has_its_row_naming_its_handler() {
        let operations = spec_operations();
        assert!(operations.len() > 20, "the spec has the API's operations");
        for (method, path, operation_id) in operations {
            let row = ROUTES.iter().find(|row| row.method == method && row.path == path);
            let Some(row) = row else { panic!("{method} {path} is not in ROUTES") };
            assert_eq!(
                super::operation_id(row.handler),
                operation_id,
                "{method} {path}: the table names another handler"
            );
        }
    }

    #[test]
    fn every_api_row_is_served_and_documented() {
        let operations = spec_operations();
        // The docs describe the API, not themselves; the original payout paths are aliases of documented ones.
        let documented = |row: &&Route| {
            row.path.starts_with("/api/")
                && !row.path.starts_with("/api/schema")
                && !row.path.starts_with("/api/payouts/")
        };
        for row in ROUTES.iter().filter(documented) {
            assert!(
                operations.iter().any(|(method, path, _)| *method == row.method && path == row.path),
                "{} {} is in ROUTES but not in the spec",
                row.method,
                row.path
            );
        }
    }

    #[test]
    fn unknown_routes_need_an_admin() {
        assert_eq!(gate(&Method::GET, "/api/v1/something-new/"), ADMIN);
    }

    #[test]
    fn payouts_split_by_method() {
        let route = "/api/v1/payouts/{id}/";
        assert_eq!(gate(&Method::GET, route), VIEWER);
        assert_eq!(gate(&Method::HEAD, route), VIEWER);
        assert_eq!(gate(&Method::PATCH, route), OPERATOR);
        assert_eq!(gate(&Method::DELETE, route), ADMIN);
        // A method the path does not serve is answered 405 to anyone who may use the path at all.
        assert_eq!(gate(&Method::PUT, route), VIEWER);
    }

    #[test]
    fn the_documentation_is_read_like_balances() {
        assert_eq!(gate(&Method::GET, "/api/schema/swagger/{*rest}"), READ);
        assert_eq!(gate(&Method::GET, "/assets/redoc.standalone.js"), READ);
        assert_eq!(gate(&Method::POST, "/api/balances/"), READ);
    }
}

/// Checks of the assembled spec that need the router (the `api` modules may not import it).
#[cfg(test)]
mod spec_tests {
    use utoipa::openapi::RefOr;

    use crate::api::docs::{LINKS, operations};
    use crate::api::schema::{HISTORY_CURSOR_PATTERN, free_text_pattern};

    /// `document_links` skips a row whose operation or status the spec lacks; a renamed operation or a changed
    /// status must fail here instead of silently dropping its link.
    #[test]
    fn every_link_row_is_applied() {
        let (_, mut spec) = super::api();
        let mut applied = 0;
        for (_, item) in spec.paths.paths.iter_mut() {
            for (_, operation) in operations(item) {
                for response in operation.responses.responses.values() {
                    if let RefOr::T(response) = response {
                        applied += response.links.len();
                    }
                }
            }
        }
        assert_eq!(applied, LINKS.len());
    }

    /// Derive attributes take a pattern only as a string literal, so the history cursor's and the free-text
    /// fields' patterns are written out there; the spec must carry exactly the ones defined here.
    #[test]
    fn literal_patterns_in_the_spec_are_the_ones_defined_here() {
        let spec = serde_json::to_string(&super::api().1).unwrap_or_default();
        let json_text = |pattern: &str| serde_json::to_string(pattern).unwrap_or_default();
        let patterns: Vec<&str> = spec.match_indices("\"pattern\":").map(|(at, _)| &spec[at + 10..]).collect();
        let count = |pattern: &str| patterns.iter().filter(|rest| rest.starts_with(&json_text(pattern))).count();
        assert_eq!(count(HISTORY_CURSOR_PATTERN), 1, "the history's cursor parameter");
        assert!(count(&free_text_pattern()) >= 3, "payout description, patch description, gateway event reason");
    }
}
