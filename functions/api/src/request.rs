//! What every route needs to know about the request: its id, path, query and start time.

use crate::problem::ApiError;
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::{header, HeaderMap};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use std::time::Instant;
use verdict::domain::decision::FieldError;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
use crate::cursor::MAX_CURSOR_LEN;

pub struct Ctx<'r> {
    /// API Gateway's `requestContext.requestId` (else the Lambda invocation's).
    pub request_id: &'r str,
    /// The path the routes see (see [`crate::routes::normalise`]).
    pub path: &'r str,
    pub started: Instant,
    req: &'r Request,
}

impl<'r> Ctx<'r> {
    pub fn new(req: &'r Request, started: Instant) -> Self {
        let raw = req.raw_http_path();
        let raw = if raw.is_empty() { req.uri().path() } else { raw };
        Ctx {
            request_id: request_id(req),
            path: crate::routes::normalise(raw),
            started,
            req,
        }
    }

    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Query parameters: API Gateway's `rawQueryString` as lambda_http parsed it, else the URI's.
    pub fn query(&self) -> QueryMap {
        match self.req.query_string_parameters_ref() {
            Some(q) => q.clone(),
            None => self.req.uri().query().unwrap_or("").parse().unwrap_or_default(),
        }
    }
}

fn request_id(req: &Request) -> &str {
    let gateway = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.as_deref(),
        _ => None,
    };
    gateway
        .or_else(|| req.lambda_context_ref().map(|c| c.request_id.as_str()))
        .filter(|id| !id.is_empty())
        .unwrap_or("-")
}

/// `limit` and `cursor` of a paginated route.
pub struct PageParams {
    pub limit: usize,
    pub cursor: Option<String>,
}

impl PageParams {
    /// Reads them from `query`; what is wrong goes to `errors` (so a route reports every field).
    pub fn parse(query: &QueryMap, errors: &mut Vec<FieldError>) -> Option<PageParams> {
        let limit = match query.first("limit") {
            None => Some(DEFAULT_LIMIT),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Some(n),
                _ => {
                    errors.push(field_error(
                        "limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    ));
                    None
                }
            },
        };
        let cursor = query.first("cursor");
        if cursor.is_some_and(|c| c.is_empty() || c.len() > MAX_CURSOR_LEN) {
            errors.push(field_error("cursor", "must be the next_cursor of a previous page"));
            return None;
        }
        Some(PageParams {
            limit: limit?,
            cursor: cursor.map(str::to_owned),
        })
    }
}

pub fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// `application/json`, optionally with `charset=utf-8`; nothing else.
pub fn check_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(None));
    };
    let raw = value.to_str().unwrap_or("");
    let mut parts = raw.split(';').map(str::trim);
    let essence_ok = parts.next().is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
    let params_ok = parts.filter(|p| !p.is_empty()).all(|p| {
        p.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("charset") && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        })
    });
    if essence_ok && params_ok {
        Ok(())
    } else {
        let shown: String = String::from_utf8_lossy(value.as_bytes()).chars().take(100).collect();
        Err(ApiError::UnsupportedMediaType(Some(shown)))
    }
}

/// An optional JSON body: none (or only whitespace) reads as `T::default()`.
pub fn optional_json_body<T: serde::de::DeserializeOwned + Default>(
    req: &Request,
    limit: usize,
) -> Result<T, ApiError> {
    let body: &[u8] = req.body().as_ref();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json_body(req, limit)
}

/// A JSON body of type `T` (its fields checked by serde), at most `limit` bytes, read strictly.
pub fn json_body<T: serde::de::DeserializeOwned>(req: &Request, limit: usize) -> Result<T, ApiError> {
    let body: &[u8] = req.body().as_ref();
    check_json(req.headers())?;
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge {
            size: body.len(),
            limit,
        });
    }
    strict_json(body).and_then(|v| serde_json::from_value(v).map_err(|e| ApiError::field("body", e.to_string())))
}

/// A body through the domain's one strict reader: a duplicate key (named by its path) or a body
/// nested too deep is a 400, as any syntax error.
pub fn strict_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    verdict::domain::json::parse_strict(body).map_err(|e| ApiError::field(&e.path, e.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    #[test]
    fn content_type_must_be_json_with_at_most_a_utf8_charset() {
        let check = |v: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = v {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            }
            check_json(&h).is_ok()
        };
        assert!(check(Some("application/json")));
        assert!(check(Some("Application/JSON; charset=UTF-8")));
        assert!(check(Some("application/json;charset=\"utf-8\"")));
        assert!(!check(None));
        assert!(!check(Some("text/plain")));
        assert!(!check(Some("application/json; charset=latin1")));
        assert!(!check(Some("application/jsonx")));
        assert!(!check(Some("application/problem+json")));
    }
}
