//! The OpenAPI spec and its two viewers, Swagger UI and Redoc, with every asset embedded in the binary.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};

use crate::AppState;

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
