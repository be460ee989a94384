//! What every route needs to know about the request: its id, path, query and start time.

use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use std::time::Instant;
use verdict::domain::decision::FieldError;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
const MAX_CURSOR_LEN: usize = 2048;

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
