//! Routing on method and path, independent of API Gateway's route key and path parameters, so
//! the same binary routes behind API Gateway, under `cargo lambda watch` and in tests.

use crate::problem::ApiError;
use lambda_http::http::Method;

/// Prefix `cargo lambda watch` serves the function under.
const WATCH_PREFIX: &str = "/lambda-url/api";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'p> {
    ScoreTransaction,
    ListTransactions,
    GetTransaction(&'p str),
    ListModels,
    ActiveModel,
    GetModel(&'p str),
    ActivateModel(&'p str),
    RollbackModel,
    Health,
    OpenApi,
}

/// The path the routes see: without the `cargo lambda watch` prefix.
pub fn normalise(path: &str) -> &str {
    match path.strip_prefix(WATCH_PREFIX) {
        Some(rest) if rest.starts_with('/') => rest,
        Some("") => "/",
        _ => path,
    }
}

/// Matches a path (already normalised) and method. An unknown path is 404; a known path with
/// another method is 405 with the methods it allows.
pub fn route<'p>(method: &Method, path: &'p str) -> Result<Route<'p>, ApiError> {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(not_found(path));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let (route, allow) = match segments.as_slice() {
        ["transactions"] if post => (Some(Route::ScoreTransaction), ""),
        ["transactions"] => (get.then_some(Route::ListTransactions), "GET, POST"),
        ["transactions", id] => (get.then_some(Route::GetTransaction(id)), "GET"),
        ["models"] => (get.then_some(Route::ListModels), "GET"),
        // Static segments win over `{id}`, as in API Gateway.
        ["models", "active"] => (get.then_some(Route::ActiveModel), "GET"),
        ["models", "rollback"] => (post.then_some(Route::RollbackModel), "POST"),
        ["models", id] => (get.then_some(Route::GetModel(id)), "GET"),
        ["models", id, "activate"] => (post.then_some(Route::ActivateModel(id)), "POST"),
        ["health"] => (get.then_some(Route::Health), "GET"),
        ["openapi.json"] => (get.then_some(Route::OpenApi), "GET"),
        _ => return Err(not_found(path)),
    };
    route.ok_or(ApiError::MethodNotAllowed { allow })
}

fn not_found(path: &str) -> ApiError {
    // The path is the caller's own input; quoting it is safe and helps spot typos.
    let shown: String = path.chars().take(200).collect();
    ApiError::NotFound(format!("No route {shown:?}; see GET /v1/openapi.json."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(m: Method, p: &str) -> Route<'_> {
        route(&m, p).unwrap()
    }

    #[test]
    fn routes_every_contract_path() {
        assert_eq!(ok(Method::POST, "/v1/transactions"), Route::ScoreTransaction);
        assert_eq!(ok(Method::GET, "/v1/transactions"), Route::ListTransactions);
        assert_eq!(ok(Method::GET, "/v1/transactions/tx-1"), Route::GetTransaction("tx-1"));
        assert_eq!(ok(Method::GET, "/v1/models"), Route::ListModels);
        assert_eq!(ok(Method::GET, "/v1/models/active"), Route::ActiveModel);
        assert_eq!(ok(Method::POST, "/v1/models/rollback"), Route::RollbackModel);
        assert_eq!(
            ok(Method::GET, "/v1/models/0123456789abcdef"),
            Route::GetModel("0123456789abcdef")
        );
        assert_eq!(ok(Method::POST, "/v1/models/ab/activate"), Route::ActivateModel("ab"));
        assert_eq!(ok(Method::GET, "/v1/health"), Route::Health);
        assert_eq!(ok(Method::GET, "/v1/openapi.json"), Route::OpenApi);
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        for p in [
            "/",
            "",
            "/v2/health",
            "/v1",
            "/v1/",
            "/v1/nope",
            "/v1/transactions/a/b",
            "/health",
        ] {
            assert!(matches!(route(&Method::GET, p), Err(ApiError::NotFound(_))), "{p}");
        }
        let allow = |m: Method, p: &str| match route(&m, p) {
            Err(ApiError::MethodNotAllowed { allow }) => allow,
            other => panic!("{m} {p}: {other:?}"),
        };
        assert_eq!(allow(Method::DELETE, "/v1/transactions"), "GET, POST");
        assert_eq!(allow(Method::POST, "/v1/transactions/tx-1"), "GET");
        assert_eq!(allow(Method::GET, "/v1/models/rollback"), "POST");
        assert_eq!(allow(Method::POST, "/v1/health"), "GET");
        assert_eq!(allow(Method::PUT, "/v1/openapi.json"), "GET");
    }

    #[test]
    fn strips_the_watch_prefix_only_as_a_whole_segment() {
        assert_eq!(normalise("/lambda-url/api/v1/health"), "/v1/health");
        assert_eq!(normalise("/lambda-url/api"), "/");
        assert_eq!(normalise("/lambda-url/apix/v1/health"), "/lambda-url/apix/v1/health");
        assert_eq!(normalise("/v1/health"), "/v1/health");
    }
}
