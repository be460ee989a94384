//! `/v1/health` and `/v1/openapi.json`: no credential, no I/O.

use crate::problem::ApiError;
use crate::response::{ok, JSON, X_REQUEST_ID};
use lambda_http::http::{header, HeaderValue};
use lambda_http::{Body, Response};
use serde::Serialize;
use std::sync::OnceLock;

/// The contract, compiled in so the served copy always matches the deployed code.
pub const OPENAPI_YAML: &str = include_str!("../../../openapi.yaml");

static OPENAPI_JSON: OnceLock<Result<String, String>> = OnceLock::new();

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
}

pub fn health(request_id: &str) -> Response<Body> {
    ok(
        &Health {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
        },
        request_id,
    )
}

/// The contract as JSON, converted on first request so cold init does not pay for it.
pub fn openapi_json() -> Result<&'static str, String> {
    OPENAPI_JSON
        .get_or_init(|| {
            let value: serde_json::Value =
                serde_yaml::from_str(OPENAPI_YAML).map_err(|e| format!("openapi.yaml does not parse: {e}"))?;
            serde_json::to_string(&value).map_err(|e| format!("openapi.yaml does not convert to JSON: {e}"))
        })
        .as_deref()
        .map_err(Clone::clone)
}

pub fn openapi(request_id: &str) -> Result<Response<Body>, ApiError> {
    let text = openapi_json().map_err(ApiError::Internal)?;
    let mut response = Response::new(Body::Text(text.to_owned()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_contract_converts_to_json_with_every_path() {
        let doc: serde_json::Value = serde_json::from_str(super::openapi_json().unwrap()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/transactions",
            "/v1/transactions/{id}",
            "/v1/models/active",
            "/v1/health",
            "/v1/openapi.json",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
    }
}
