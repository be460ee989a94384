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
    LabelTransaction(&'p str),
    ListModels,
    ActiveModel,
    GetModel(&'p str),
    ActivateModel(&'p str),
    RollbackModel,
    ValidateRule,
    SaveRule,
    ListRules,
    GetRule(&'p str),
    CreateRuleset,
    ListRulesets,
    ActiveRuleset,
    RollbackRuleset,
    GetRuleset(&'p str),
    PublishRuleset(&'p str),
    ActivateRuleset(&'p str),
    BacktestRuleset(&'p str),
    GetBacktest(&'p str),
    CreateList,
    ListLists,
    GetList(&'p str),
    ListEntries(&'p str),
    AddEntries(&'p str),
    RemoveEntries(&'p str),
    Audit,
    ListReviews,
    GetReview(&'p str),
    ClaimReview(&'p str),
    ReleaseReview(&'p str),
    ResolveReview(&'p str),
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
        ["transactions", id, "label"] => (post.then_some(Route::LabelTransaction(id)), "POST"),
        ["models"] => (get.then_some(Route::ListModels), "GET"),
        // Static segments win over `{id}`, as in API Gateway.
        ["models", "active"] => (get.then_some(Route::ActiveModel), "GET"),
        ["models", "rollback"] => (post.then_some(Route::RollbackModel), "POST"),
        ["models", id] => (get.then_some(Route::GetModel(id)), "GET"),
        ["models", id, "activate"] => (post.then_some(Route::ActivateModel(id)), "POST"),
        ["rules"] if post => (Some(Route::SaveRule), ""),
        ["rules"] => (get.then_some(Route::ListRules), "GET, POST"),
        ["rules", "validate"] => (post.then_some(Route::ValidateRule), "POST"),
        ["rules", id] => (get.then_some(Route::GetRule(id)), "GET"),
        ["rulesets"] if post => (Some(Route::CreateRuleset), ""),
        ["rulesets"] => (get.then_some(Route::ListRulesets), "GET, POST"),
        ["rulesets", "active"] => (get.then_some(Route::ActiveRuleset), "GET"),
        ["rulesets", "rollback"] => (post.then_some(Route::RollbackRuleset), "POST"),
        ["rulesets", v] => (get.then_some(Route::GetRuleset(v)), "GET"),
        ["rulesets", v, "publish"] => (post.then_some(Route::PublishRuleset(v)), "POST"),
        ["rulesets", v, "activate"] => (post.then_some(Route::ActivateRuleset(v)), "POST"),
        ["rulesets", v, "backtest"] => (post.then_some(Route::BacktestRuleset(v)), "POST"),
        ["backtests", id] => (get.then_some(Route::GetBacktest(id)), "GET"),
        ["lists"] if post => (Some(Route::CreateList), ""),
        ["lists"] => (get.then_some(Route::ListLists), "GET, POST"),
        ["lists", name] => (get.then_some(Route::GetList(name)), "GET"),
        ["lists", name, "entries"] if post => (Some(Route::AddEntries(name)), ""),
        ["lists", name, "entries"] => (get.then_some(Route::ListEntries(name)), "GET, POST"),
        ["lists", name, "entries", "remove"] => (post.then_some(Route::RemoveEntries(name)), "POST"),
        ["audit"] => (get.then_some(Route::Audit), "GET"),
        ["reviews"] => (get.then_some(Route::ListReviews), "GET"),
        ["reviews", id] => (get.then_some(Route::GetReview(id)), "GET"),
        ["reviews", id, "claim"] => (post.then_some(Route::ClaimReview(id)), "POST"),
        ["reviews", id, "release"] => (post.then_some(Route::ReleaseReview(id)), "POST"),
        ["reviews", id, "resolve"] => (post.then_some(Route::ResolveReview(id)), "POST"),
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
        assert_eq!(
            ok(Method::POST, "/v1/transactions/tx-1/label"),
            Route::LabelTransaction("tx-1")
        );
        assert_eq!(ok(Method::GET, "/v1/models"), Route::ListModels);
        assert_eq!(ok(Method::GET, "/v1/models/active"), Route::ActiveModel);
        assert_eq!(ok(Method::POST, "/v1/models/rollback"), Route::RollbackModel);
        assert_eq!(
            ok(Method::GET, "/v1/models/0123456789abcdef"),
            Route::GetModel("0123456789abcdef")
        );
        assert_eq!(ok(Method::POST, "/v1/models/ab/activate"), Route::ActivateModel("ab"));
        assert_eq!(ok(Method::POST, "/v1/rules/validate"), Route::ValidateRule);
        assert_eq!(ok(Method::POST, "/v1/rules"), Route::SaveRule);
        assert_eq!(ok(Method::GET, "/v1/rules"), Route::ListRules);
        assert_eq!(ok(Method::GET, "/v1/rules/r1"), Route::GetRule("r1"));
        assert_eq!(ok(Method::POST, "/v1/rulesets"), Route::CreateRuleset);
        assert_eq!(ok(Method::GET, "/v1/rulesets"), Route::ListRulesets);
        assert_eq!(ok(Method::GET, "/v1/rulesets/active"), Route::ActiveRuleset);
        assert_eq!(ok(Method::POST, "/v1/rulesets/rollback"), Route::RollbackRuleset);
        assert_eq!(ok(Method::GET, "/v1/rulesets/3"), Route::GetRuleset("3"));
        assert_eq!(ok(Method::POST, "/v1/rulesets/3/publish"), Route::PublishRuleset("3"));
        assert_eq!(ok(Method::POST, "/v1/rulesets/3/activate"), Route::ActivateRuleset("3"));
        assert_eq!(ok(Method::POST, "/v1/rulesets/3/backtest"), Route::BacktestRuleset("3"));
        assert_eq!(ok(Method::GET, "/v1/backtests/bt1"), Route::GetBacktest("bt1"));
        assert_eq!(ok(Method::POST, "/v1/lists"), Route::CreateList);
        assert_eq!(ok(Method::GET, "/v1/lists"), Route::ListLists);
        assert_eq!(ok(Method::GET, "/v1/lists/l"), Route::GetList("l"));
        assert_eq!(ok(Method::GET, "/v1/lists/l/entries"), Route::ListEntries("l"));
        assert_eq!(ok(Method::POST, "/v1/lists/l/entries"), Route::AddEntries("l"));
        assert_eq!(
            ok(Method::POST, "/v1/lists/l/entries/remove"),
            Route::RemoveEntries("l")
        );
        assert_eq!(ok(Method::GET, "/v1/audit"), Route::Audit);
        assert_eq!(ok(Method::GET, "/v1/reviews"), Route::ListReviews);
        assert_eq!(ok(Method::GET, "/v1/reviews/tx-1"), Route::GetReview("tx-1"));
        assert_eq!(ok(Method::POST, "/v1/reviews/tx-1/claim"), Route::ClaimReview("tx-1"));
        assert_eq!(
            ok(Method::POST, "/v1/reviews/tx-1/release"),
            Route::ReleaseReview("tx-1")
        );
        assert_eq!(
            ok(Method::POST, "/v1/reviews/tx-1/resolve"),
            Route::ResolveReview("tx-1")
        );
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
        assert_eq!(allow(Method::GET, "/v1/transactions/tx-1/label"), "POST");
        assert_eq!(allow(Method::POST, "/v1/reviews"), "GET");
        assert_eq!(allow(Method::GET, "/v1/reviews/tx-1/resolve"), "POST");
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
