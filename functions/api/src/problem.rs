//! The api layer's one error type and its one mapping to RFC 9457 problem responses.
//!
//! Every `type` URI, title and status comes from `openapi.yaml` ("Errors"); nothing else in the
//! crate builds an error response.

use crate::response::{json_response, PROBLEM_JSON};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;
use verdict::app::scoring::ScoreError;
use verdict::domain::auth::{AuthError, Scope};
use verdict::domain::decision::FieldError;
use verdict::domain::rules::RuleProblem;
use verdict::ports::StoreError;

const BASE: &str = "https://verdict.dev/problems/";

/// Everything that can go wrong in a request, at the HTTP edge.
#[derive(Debug)]
pub enum ApiError {
    /// 400: every bad field, header or parameter.
    Validation(Vec<FieldError>),
    /// 400: problems in a rule, ruleset or list entry, with the rule and the position.
    RuleProblems(Vec<RuleProblem>),
    /// 401: missing, malformed, unknown, expired or revoked key, or a token that does not verify. `missing` only picks the
    /// `WWW-Authenticate` challenge; the body differs in `detail` alone.
    Unauthenticated { detail: &'static str, missing: bool },
    /// 403: valid key without the route's scope.
    Forbidden(Scope),
    /// 404: no such resource for this tenant, or no such route.
    NotFound(String),
    /// 405: a known path with another method, with `Allow`.
    MethodNotAllowed { allow: &'static str },
    /// 409: idempotency key or transaction id reused with another body.
    IdempotencyConflict(String),
    /// 409: model state does not allow it (including "no model to score with").
    Conflict(String),
    /// 409: the stored transaction does not take the label (it occurs later than the label's
    /// time, or its stored data does not allow it). Not the request's fault, so not a 400.
    LabelNotApplicable(String),
    /// 413
    PayloadTooLarge { size: usize, limit: usize },
    /// 415: what the Content-Type was (`None` when absent).
    UnsupportedMediaType(Option<String>),
    /// 500: a dependency failed for good, or stored data is unreadable. The message is logged,
    /// never sent.
    Internal(String),
    /// 503 with `Retry-After`: a dependency failed in a way that may pass (throttled, timed out,
    /// contention). The message is logged, never sent.
    Unavailable(String),
}

/// `Retry-After` on a 503, in seconds: long enough for a throttle or a busy item to clear.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The 405 problem's `type` (the contract's `components/responses/MethodNotAllowed`).
pub const TYPE_405: &str = "https://verdict.dev/problems/method-not-allowed";

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::RuleProblems(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::IdempotencyConflict(_) | ApiError::Conflict(_) | ApiError::LabelNotApplicable(_) => {
                StatusCode::CONFLICT
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `type` and `title`, fixed per kind.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Validation(_) | ApiError::RuleProblems(_) => ("validation", "Invalid request"),
            ApiError::Unauthenticated { .. } => ("unauthenticated", "Authentication required"),
            ApiError::Forbidden(_) => ("forbidden", "Insufficient scope"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            ApiError::IdempotencyConflict(_) => (
                "idempotency-conflict",
                "Idempotency key reused with a different request",
            ),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::LabelNotApplicable(_) => ("label-not-applicable", "Label not applicable"),
            ApiError::PayloadTooLarge { .. } => ("payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported media type"),
            ApiError::Internal(_) => ("internal", "Internal error"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Validation(errors) if errors.len() == 1 => "1 field is invalid.".into(),
            ApiError::Validation(errors) => format!("{} fields are invalid.", errors.len()),
            ApiError::RuleProblems(p) if p.len() == 1 => "1 field is invalid.".into(),
            ApiError::RuleProblems(p) => format!("{} fields are invalid.", p.len()),
            ApiError::Unauthenticated { detail, .. } => (*detail).into(),
            ApiError::Forbidden(scope) => format!("This route needs scope \"{scope}\"."),
            ApiError::NotFound(what) => what.clone(),
            ApiError::MethodNotAllowed { allow } => format!("This path allows {allow}."),
            ApiError::IdempotencyConflict(id) => {
                format!("Transaction \"{id}\" was already scored with a different body.")
            }
            ApiError::Conflict(detail) | ApiError::LabelNotApplicable(detail) => detail.clone(),
            ApiError::PayloadTooLarge { size, limit } => format!("The body is {size} bytes; the limit is {limit}."),
            ApiError::UnsupportedMediaType(Some(ct)) => {
                format!("Content-Type \"{ct}\" is not supported; send application/json.")
            }
            ApiError::UnsupportedMediaType(None) => "The Content-Type header is missing; send application/json.".into(),
            ApiError::Internal(_) | ApiError::Unavailable(_) => {
                "The request could not be completed; retry it. A POST retried with the same Idempotency-Key is \
                 never decided twice."
                    .into()
            }
        }
    }

    /// The problem response. `instance` is the request path, `request_id` the gateway's.
    pub fn to_response(&self, instance: &str, request_id: &str) -> Response<Body> {
        let (kind, title) = self.kind();
        let status = self.status();
        let problem = Problem {
            kind: format!("{BASE}{kind}"),
            title,
            status: status.as_u16(),
            detail: self.detail(),
            instance,
            request_id,
            errors: match self {
                ApiError::Validation(errors) => Some(Errors::Fields(errors)),
                ApiError::RuleProblems(problems) => Some(Errors::Rules(problems)),
                _ => None,
            },
        };
        let mut response = json_response(status, &problem, PROBLEM_JSON, request_id);
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthenticated { missing, .. } => {
                // RFC 6750: no error code when no credential was sent.
                let challenge = if *missing {
                    r#"Bearer realm="verdict""#
                } else {
                    r#"Bearer realm="verdict", error="invalid_token""#
                };
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        response
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    instance: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Errors<'a>>,
}

/// `errors[]`: field errors, or rule problems (a field error with the rule and position).
#[derive(Serialize)]
#[serde(untagged)]
enum Errors<'a> {
    Fields(&'a Vec<FieldError>),
    Rules(&'a Vec<RuleProblem>),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let unauthenticated = |detail| ApiError::Unauthenticated { detail, missing: false };
        match e {
            AuthError::Missing => ApiError::Unauthenticated {
                detail: "Send an API key or an OIDC token as \"Authorization: Bearer <credential>\".",
                missing: true,
            },
            AuthError::Invalid => unauthenticated("The API key is not valid."),
            AuthError::Expired => unauthenticated("The API key has expired."),
            AuthError::Revoked => unauthenticated("The API key has been revoked."),
            AuthError::MissingScope(scope) => ApiError::Forbidden(scope),
            AuthError::Token(e) => unauthenticated(e.detail()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // A bad cursor is the caller's: the one place it becomes a 400 naming `cursor`.
        if matches!(e, StoreError::BadCursor) {
            crate::cursor::bad_cursor()
        } else if e.is_retryable() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<ScoreError> for ApiError {
    fn from(e: ScoreError) -> Self {
        match e {
            ScoreError::Auth(a) => a.into(),
            ScoreError::Conflict { id } => ApiError::IdempotencyConflict(id),
            // Not caused by the body and not a failed dependency: the tenant has no model yet.
            ScoreError::NoModel => {
                ApiError::Conflict("No model is active for this tenant; upload one and activate it.".into())
            }
            ScoreError::Store(s) => s.into(),
            e @ ScoreError::Model { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(r.body().as_ref()).unwrap()
    }

    #[test]
    fn problems_carry_type_title_status_instance_and_request_id() {
        let r = ApiError::field("limit", "must be an integer from 1 to 100").to_response("/v1/transactions", "rid-1");
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert_eq!(r.headers()["x-request-id"], "rid-1");
        let b = body(&r);
        assert_eq!(b["type"], "https://verdict.dev/problems/validation");
        assert_eq!(b["title"], "Invalid request");
        assert_eq!(b["status"], 400);
        assert_eq!(b["detail"], "1 field is invalid.");
        assert_eq!(b["instance"], "/v1/transactions");
        assert_eq!(b["request_id"], "rid-1");
        assert_eq!(b["errors"][0]["field"], "limit");

        let r = ApiError::from(AuthError::Missing).to_response("/v1/models/active", "r");
        assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="verdict""#);
        assert!(body(&r).get("errors").is_none());
        let r = ApiError::MethodNotAllowed { allow: "GET" }.to_response("/v1/health", "r");
        assert_eq!(
            (r.status().as_u16(), &r.headers()["allow"]),
            (405, &HeaderValue::from_static("GET"))
        );
        assert_eq!(body(&r)["type"], TYPE_405);
    }

    #[test]
    fn internal_errors_never_leak_their_cause() {
        let e: ApiError = StoreError::Rejected("DynamoDB GetItem: secret-table-name ValidationException".into()).into();
        let b = body(&e.to_response("/v1/transactions", "r"));
        assert_eq!(b["status"], 500);
        assert!(!b.to_string().contains("secret-table-name"), "{b}");
        let e: ApiError = StoreError::Unavailable("DynamoDB GetItem: secret-table-name timed out".into()).into();
        let b = body(&e.to_response("/v1/transactions", "r"));
        assert_eq!(b["status"], 503);
        assert!(!b.to_string().contains("secret-table-name"), "{b}");
    }

    #[test]
    fn a_retryable_store_failure_is_a_503_with_retry_after_and_a_permanent_one_a_500() {
        let r = ApiError::from(ScoreError::Store(StoreError::Unavailable("throttled".into())))
            .to_response("/v1/transactions", "r");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let b = body(&r);
        assert_eq!(b["type"], "https://verdict.dev/problems/unavailable");
        assert_eq!(b["title"], "Service unavailable");
        for permanent in [
            StoreError::Rejected("ValidationException".into()),
            StoreError::Corrupt {
                key: "k".into(),
                reason: "r".into(),
            },
        ] {
            let r = ApiError::from(permanent).to_response("/v1/transactions", "r");
            assert_eq!(r.status(), 500);
            assert!(r.headers().get("retry-after").is_none());
            assert_eq!(body(&r)["type"], "https://verdict.dev/problems/internal");
        }
    }

    /// Every kind's type, title and status is a row of openapi.yaml's "Errors" table and has a
    /// problem schema there.
    #[test]
    fn every_problem_kind_is_in_the_contract() {
        let contract = crate::OPENAPI_YAML;
        let kinds = [
            ApiError::field("f", "m"),
            ApiError::Unauthenticated {
                detail: "d",
                missing: false,
            },
            ApiError::Forbidden(Scope::ModelsRead),
            ApiError::NotFound("x".into()),
            ApiError::MethodNotAllowed { allow: "GET" },
            ApiError::IdempotencyConflict("x".into()),
            ApiError::Conflict("x".into()),
            ApiError::LabelNotApplicable("x".into()),
            ApiError::PayloadTooLarge { size: 2, limit: 1 },
            ApiError::UnsupportedMediaType(None),
            ApiError::Internal("x".into()),
            ApiError::Unavailable("x".into()),
        ];
        for e in kinds {
            let (kind, title) = e.kind();
            let row = format!("| {}    | `{BASE}{kind}`", e.status().as_u16());
            assert!(contract.contains(&row), "no Errors row {row:?}");
            assert!(
                contract.contains(&format!("type: {{const: '{BASE}{kind}'}}")),
                "no schema for {kind}"
            );
            assert!(
                contract.contains(&format!("title: {{const: {title}}}")),
                "no title {title:?}"
            );
        }
    }
}
