//! Extractors whose rejections are the API's JSON errors instead of axum's plain text.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Query parameters; a malformed query answers 400 with `details.query` saying why.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::field("query", rejection.body_text())),
        }
    }
}

/// Whether the request says its body is JSON.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether reading a body stopped at the size limit (rather than at a broken connection).
pub fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// Reads a JSON request body of at most `limit` bytes: 415 if it is not JSON, 413 if it is too large.
pub async fn json_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    match to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(error) if is_length_limit(&error) => Err(ApiError::PayloadTooLarge),
        Err(_) => Err(ApiError::field("body", "could not be read")),
    }
}

/// An integer query parameter within `bounds`: `default` when absent, 400 naming the parameter when it is not
/// a whole number or lies outside the bounds (never clamped, so a client learns its page is not the size it
/// asked for).
pub fn query_integer(
    name: &str,
    text: Option<&str>,
    default: i64,
    bounds: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let Some(text) = text else { return Ok(default) };
    let out_of_range = || ApiError::field(name, format!("must be between {} and {}", bounds.start(), bounds.end()));
    // One sign at most: `--5` is not a number at all, so it is not "out of range" either.
    let value: i64 = text.parse().map_err(|_| match text.strip_prefix(['-', '+']).unwrap_or(text) {
        digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => out_of_range(),
        _ => ApiError::field(name, "must be a whole number"),
    })?;
    if bounds.contains(&value) { Ok(value) } else { Err(out_of_range()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> String {
        match query_integer("limit", Some(text), 50, 1..=500) {
            Err(ApiError::InvalidData(details)) => details.get("limit").cloned().unwrap_or_default(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn one_sign_is_a_number_out_of_range_and_two_are_not_a_number() {
        assert_eq!(reason("-5"), "must be between 1 and 500");
        assert_eq!(reason("+99999999999999999999"), "must be between 1 and 500");
        assert_eq!(reason("--5"), "must be a whole number");
        assert_eq!(reason("+-5"), "must be a whole number");
        assert_eq!(reason("5x"), "must be a whole number");
        assert!(matches!(query_integer("limit", Some("+7"), 50, 1..=500), Ok(7)));
    }
}
