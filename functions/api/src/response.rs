//! Building JSON responses. Every response carries `X-Request-Id` (the contract's convention).

use lambda_http::http::{header, HeaderName, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

pub const JSON: &str = "application/json";
pub const PROBLEM_JSON: &str = "application/problem+json";
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Serialises `body` into a response. Serialising plain data structs cannot fail; if it ever
/// did, the client gets a bare 500 rather than a panic.
pub fn json_response<T: Serialize>(
    status: StatusCode,
    body: &T,
    content_type: &'static str,
    request_id: &str,
) -> Response<Body> {
    let (status, text) = match serde_json::to_string(body) {
        Ok(text) => (status, text),
        Err(e) => {
            tracing::error!(request_id, error = %e, "response body could not be serialised");
            (StatusCode::INTERNAL_SERVER_ERROR, String::new())
        }
    };
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Gateway request ids are header-safe; anything odd is dropped rather than echoed.
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    response
}

pub fn ok<T: Serialize>(body: &T, request_id: &str) -> Response<Body> {
    json_response(StatusCode::OK, body, JSON, request_id)
}
