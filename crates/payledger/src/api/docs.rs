//! The OpenAPI spec and its two viewers, Swagger UI and Redoc, with every asset embedded in the binary.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{Html, IntoResponse};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{OpenApi, RefOr};

use crate::AppState;
use crate::api::access::Gate;

/// Redoc's standalone bundle (redoc@2.5.4 from npm), served from `/assets/` so nothing loads from a CDN.
const REDOC_JS: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

const REDOC_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>payledger API reference</title>
  <style>body { margin: 0; padding: 0; }</style>
</head>
<body>
  <div id="redoc-container"></div>
  <script src="/assets/redoc.standalone.js"></script>
  <script>Redoc.init($spec, $config, document.getElementById("redoc-container"));</script>
</body>
</html>"#;

/// The OpenAPI document as JSON.
pub async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.openapi.clone())
}

/// The Redoc page, rendered once at start-up.
pub fn redoc_html(openapi: &utoipa::openapi::OpenApi) -> String {
    utoipa_redoc::Redoc::new(openapi.clone()).custom_html(REDOC_PAGE).to_html()
}

/// The Redoc page.
pub async fn redoc(State(state): State<AppState>) -> impl IntoResponse {
    Html(state.redoc_html.as_str().to_owned())
}

/// The vendored Redoc script.
pub async fn redoc_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        REDOC_JS,
    )
}

/// The statuses every operation of a kind can answer, whichever handler it is, added to the spec from what
/// sends them: the access middleware (`api::access`: 401, 403 and 429 for a route that takes users), the JSON
/// body reader (`api::extract::json_body`: 400, 413, 415), path parameters parsed by the handlers (400, 404),
/// the store and the request timeout (503 with `Retry-After`). A status an operation already documents
/// keeps its own description. `gate` is the route table's rule of a route (`router::gate`, passed in as the
/// access middleware gets it), `timeout` the default request timeout.
pub fn document_common_responses(openapi: &mut OpenApi, gate: fn(&Method, &str) -> Gate, timeout: Duration) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            let gate = gate(&method, path);
            let has_json_body = operation
                .request_body
                .as_ref()
                .is_some_and(|body| matches!(body, RefOr::T(body) if body.content.contains_key("application/json")));
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, response: Response| {
                responses.entry(status.to_owned()).or_insert_with(|| RefOr::T(response));
            };
            if let Gate::Role { .. } = gate {
                add(
                    "401",
                    with_header(
                        error("Missing, malformed or wrong credentials (`unauthorized`)"),
                        "WWW-Authenticate",
                        text_header("The schemes the API takes: Bearer and Basic"),
                    ),
                );
                add("403", error("The caller's role is too low (`forbidden`)"));
                add(
                    "429",
                    with_header(
                        error("Too many Basic verifications from this address, or for this username (`rate_limited`)"),
                        "Retry-After",
                        seconds_header(),
                    ),
                );
            }
            if has_json_body {
                add("400", error("Invalid data; `details` names each bad field"));
                add("413", error("The body is larger than the operation accepts (`payload_too_large`)"));
                add("415", error("The body is not `application/json` (`unsupported_media_type`)"));
            }
            if path.contains('{') {
                add("400", error("A malformed path parameter; `details` names it"));
                add("404", error("Nothing has that id"));
            }
            if matches!(gate, Gate::Role { .. } | Gate::Signed) || has_json_body {
                add(
                    "503",
                    with_header(
                        error(
                            "The database is unavailable or the service overloaded: nothing was applied, or, for \
                             `unconfirmed`, retry with the same key",
                        ),
                        "Retry-After",
                        seconds_header(),
                    ),
                );
            }
            // Any operation, past the request timeout (`router::bound_request_time`).
            add(
                "503",
                with_header(
                    error(&format!(
                        "No answer within the request timeout (`PAYLEDGER_REQUEST_TIMEOUT_SECONDS`, {} s by default): \
                         `unconfirmed`, retry (with the same key for a write)",
                        timeout.as_secs()
                    )),
                    "Retry-After",
                    seconds_header(),
                ),
            );
            // Every answer, whatever its status (`access_log::observe`).
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.entry("X-Request-Id".to_owned()).or_insert_with(|| {
                        RefOr::T(text_header(
                            "The request's id, in the server's log lines and the audit row of any change it made \
                             (a trusted proxy's `X-Request-Id`, or made by the server)",
                        ))
                    });
                }
            }
        }
    }
}

/// The operations of a path, by method.
pub(crate) fn operations(item: &mut PathItem) -> Vec<(Method, &mut Operation)> {
    [
        (Method::GET, item.get.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|operation| (method, operation)))
    .collect()
}

fn error(description: &str) -> Response {
    let content = utoipa::openapi::ContentBuilder::new()
        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
        .build();
    let mut response = Response::new(description);
    response.content.insert("application/json".to_owned(), RefOr::T(content));
    response
}

fn with_header(mut response: Response, name: &str, header: Header) -> Response {
    response.headers.insert(name.to_owned(), RefOr::T(header));
    response
}

fn text_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

fn seconds_header() -> Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
        .description(Some("Seconds to wait before retrying"))
        .build()
}

/// Pairs of (name, runtime expression): a link's parameters (`path.id`) or request body fields.
type Expressions = &'static [(&'static str, &'static str)];

/// One link: source operationId, status, link name, target operationId, parameters, request body fields.
type LinkRow = (&'static str, &'static str, &'static str, &'static str, Expressions, Expressions);

/// Which operation's answer feeds which next operation, as OpenAPI links: an operation that creates a
/// resource links to the ones that use it, so a client (and a stateful test) can follow them.
/// Each row: source operationId, status, link name, target operationId, parameters, request body fields.
/// The user list links nowhere: its first user is the admin, and a client following a link to change them
/// (a new password, say) would lock itself out.
#[rustfmt::skip]
pub(crate) const LINKS: &[LinkRow] = &[
    ("balances_add_funds", "201", "withdraw", "balances_withdraw_funds", &[], &[("user_id", "$response.body#/user_id")]),
    ("balances_add_funds", "201", "reserve", "balances_reserve_funds", &[], &[("user_id", "$response.body#/user_id")]),
    ("balances_add_funds", "201", "transfer", "balances_transfer_funds", &[], &[("sender_id", "$response.body#/user_id")]),
    ("balances_add_funds", "201", "balance", "balances_balance", &[("query.user_id", "$response.body#/user_id")], &[]),
    ("balances_add_funds", "201", "history", "balances_history", &[("path.user_id", "$response.body#/user_id")], &[]),
    ("balances_reserve_funds", "201", "deduct", "balances_deduct_funds", &[], &[
        ("user_id", "$response.body#/user_id"), ("service_id", "$response.body#/service_id"),
        ("order_id", "$response.body#/order_id"), ("amount", "$response.body#/reserved_change")]),
    ("balances_reserve_funds", "201", "release", "balances_unreserve_funds", &[], &[
        ("user_id", "$response.body#/user_id"), ("service_id", "$response.body#/service_id"),
        ("order_id", "$response.body#/order_id")]),
    ("balances_transfer_funds", "201", "transfer_back", "balances_transfer_funds", &[], &[
        ("sender_id", "$response.body#/recipient_transaction/user_id"),
        ("recipient_id", "$response.body#/sender_transaction/user_id")]),
    ("balances_withdraw_funds", "201", "balance", "balances_balance", &[("query.user_id", "$response.body#/user_id")], &[]),
    ("webhook_receive_bank_notice", "200", "balance", "organizations_balance", &[("path.inn", "$request.body#/payer_inn")], &[]),
    ("webhook_receive_bank_notice", "200", "balance_log", "organizations_balance_log", &[("path.inn", "$request.body#/payer_inn")], &[]),
    ("payouts_create", "201", "detail", "payouts_detail", &[("path.id", "$response.body#/id")], &[]),
    ("payouts_create", "201", "patch", "payouts_patch", &[("path.id", "$response.body#/id")], &[]),
    ("payouts_create", "201", "delete", "payouts_delete", &[("path.id", "$response.body#/id")], &[]),
    ("payouts_detail", "200", "patch", "payouts_patch", &[("path.id", "$response.body#/id")], &[]),
    ("payouts_detail", "200", "delete", "payouts_delete", &[("path.id", "$response.body#/id")], &[]),
    ("payouts_patch", "200", "detail", "payouts_detail", &[("path.id", "$response.body#/id")], &[]),
    ("jobs_jobs", "200", "retry", "jobs_retry_job", &[("path.id", "$response.body#/0/id")], &[]),
    ("jobs_retry_job", "200", "payout", "payouts_detail", &[("path.id", "$response.body#/id")], &[]),
    ("statements_upload", "201", "detail", "statements_detail", &[("path.id", "$response.body#/id")], &[]),
    ("statements_upload", "201", "apply", "statements_apply", &[("path.id", "$response.body#/id")], &[]),
    ("statements_upload", "200", "detail", "statements_detail", &[("path.id", "$response.body#/id")], &[]),
    ("statements_list", "200", "detail", "statements_detail", &[("path.id", "$response.body#/results/0/id")], &[]),
    ("reconciliation_report", "200", "apply", "reconciliation_apply_discrepancy",
        &[("path.id", "$response.body#/discrepancies/0/id")], &[]),
    ("reconciliation_report", "200", "accept", "reconciliation_accept_discrepancy",
        &[("path.id", "$response.body#/discrepancies/0/id")], &[]),
    ("webhook_endpoints_create", "201", "detail", "webhook_endpoints_detail", &[("path.id", "$response.body#/id")], &[]),
    ("webhook_endpoints_create", "201", "patch", "webhook_endpoints_patch", &[("path.id", "$response.body#/id")], &[]),
    ("webhook_endpoints_create", "201", "delete", "webhook_endpoints_delete", &[("path.id", "$response.body#/id")], &[]),
    ("webhook_endpoints_create", "201", "rotate", "webhook_endpoints_rotate_secret", &[("path.id", "$response.body#/id")], &[]),
    ("webhook_endpoints_create", "201", "test", "webhook_endpoints_test", &[("path.id", "$response.body#/id")], &[]),
    ("webhook_endpoints_create", "201", "deliveries", "webhook_endpoints_deliveries", &[("path.id", "$response.body#/id")], &[]),
    ("webhook_endpoints_create", "201", "recover", "webhook_endpoints_recover", &[("path.id", "$response.body#/id")], &[]),
    ("webhook_endpoints_list", "200", "detail", "webhook_endpoints_detail", &[("path.id", "$response.body#/0/id")], &[]),
    ("webhook_endpoints_test", "202", "attempts", "webhook_endpoints_attempts",
        &[("path.id", "$request.path.id"), ("path.delivery_id", "$response.body#/delivery_id")], &[]),
    ("webhook_endpoints_test", "202", "replay", "webhook_endpoints_replay",
        &[("path.id", "$request.path.id"), ("path.delivery_id", "$response.body#/delivery_id")], &[]),
    ("users_create", "201", "patch", "users_patch", &[("path.username", "$response.body#/username")], &[]),
    ("auth_token", "200", "refresh", "auth_refresh", &[], &[("refresh", "$response.body#/refresh")]),
    ("auth_refresh", "200", "refresh", "auth_refresh", &[], &[("refresh", "$response.body#/refresh")]),
];

/// Adds [`LINKS`] to the responses they start from.
pub fn document_links(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let _ = path;
        for (_, operation) in operations(item) {
            let Some(id) = operation.operation_id.clone() else { continue };
            for (_, status, name, target, parameters, body) in LINKS.iter().filter(|row| row.0 == id) {
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status) else { continue };
                let mut link = LinkBuilder::new().operation_id(*target);
                for (parameter, expression) in *parameters {
                    link = link.parameter(*parameter, *expression);
                }
                if !body.is_empty() {
                    let fields: serde_json::Map<String, serde_json::Value> =
                        body.iter().map(|(field, expression)| ((*field).to_owned(), (*expression).into())).collect();
                    link = link.request_body(Some(serde_json::Value::Object(fields)));
                }
                response.links.insert((*name).to_owned(), RefOr::T(link.build()));
            }
        }
    }
}
