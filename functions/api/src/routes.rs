//! Routing on method and path, independent of API Gateway's route key and path parameters, so
//! the same binary routes behind API Gateway, under `cargo lambda watch` and in tests.

use crate::problem::ApiError;
use lambda_http::http::Method;
use std::borrow::Cow;

/// Prefix `cargo lambda watch` serves the function under.
const WATCH_PREFIX: &str = "/lambda-url/api";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'p> {
    ScoreTransaction,
    ListTransactions,
    GetTransaction(Cow<'p, str>),
    LabelTransaction(Cow<'p, str>),
    ListModels,
    ActiveModel,
    GetModel(Cow<'p, str>),
    ActivateModel(Cow<'p, str>),
    RollbackModel,
    ValidateRule,
    SaveRule,
    ListRules,
    GetRule(Cow<'p, str>),
    CreateRuleset,
    ListRulesets,
    ActiveRuleset,
    RollbackRuleset,
    GetRuleset(Cow<'p, str>),
    PublishRuleset(Cow<'p, str>),
    ActivateRuleset(Cow<'p, str>),
    BacktestRuleset(Cow<'p, str>),
    GetBacktest(Cow<'p, str>),
    CreateList,
    ListLists,
    GetList(Cow<'p, str>),
    ListEntries(Cow<'p, str>),
    AddEntries(Cow<'p, str>),
    RemoveEntries(Cow<'p, str>),
    Audit,
    ListReviews,
    GetReview(Cow<'p, str>),
    ClaimReview(Cow<'p, str>),
    ReleaseReview(Cow<'p, str>),
    ResolveReview(Cow<'p, str>),
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
/// another method is 405 with the methods it allows. Path parameters are percent-decoded once
/// (see [`decode_param`]); a bad one is a 400 naming the parameter.
pub fn route<'p>(method: &Method, path: &'p str) -> Result<Route<'p>, ApiError> {
    let route = match_route(method, path)?;
    Ok(match route {
        Route::GetTransaction(id) => Route::GetTransaction(decode_param("id", id)?),
        Route::LabelTransaction(id) => Route::LabelTransaction(decode_param("id", id)?),
        Route::GetModel(id) => Route::GetModel(decode_param("id", id)?),
        Route::ActivateModel(id) => Route::ActivateModel(decode_param("id", id)?),
        Route::GetRule(id) => Route::GetRule(decode_param("id", id)?),
        Route::GetRuleset(v) => Route::GetRuleset(decode_param("version", v)?),
        Route::PublishRuleset(v) => Route::PublishRuleset(decode_param("version", v)?),
        Route::ActivateRuleset(v) => Route::ActivateRuleset(decode_param("version", v)?),
        Route::BacktestRuleset(v) => Route::BacktestRuleset(decode_param("version", v)?),
        Route::GetBacktest(id) => Route::GetBacktest(decode_param("id", id)?),
        Route::GetList(name) => Route::GetList(decode_param("name", name)?),
        Route::ListEntries(name) => Route::ListEntries(decode_param("name", name)?),
        Route::AddEntries(name) => Route::AddEntries(decode_param("name", name)?),
        Route::RemoveEntries(name) => Route::RemoveEntries(decode_param("name", name)?),
        Route::GetReview(id) => Route::GetReview(decode_param("id", id)?),
        Route::ClaimReview(id) => Route::ClaimReview(decode_param("id", id)?),
        Route::ReleaseReview(id) => Route::ReleaseReview(decode_param("id", id)?),
        Route::ResolveReview(id) => Route::ResolveReview(decode_param("id", id)?),
        other => other,
    })
}

/// One path parameter, percent-decoded exactly once (RFC 3986: `%3A` is `:`; `%253A` is the
/// three characters `%3A`, which the id rules then refuse). A `%` not followed by two hex
/// digits, bytes that are not UTF-8, or a decoded value holding `/`, a control character (NUL
/// included) or being `.`/`..` is a 400 naming the parameter, before any id rule or storage
/// key sees it.
pub fn decode_param<'p>(name: &str, raw: Cow<'p, str>) -> Result<Cow<'p, str>, ApiError> {
    let bad = |why: &str| ApiError::field(name, why.to_owned());
    let decoded: Cow<'p, str> = if raw.contains('%') {
        let bytes = raw.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(bad("has a '%' that is not followed by two hex digits")),
                }
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Cow::Owned(String::from_utf8(out).map_err(|_| bad("is not UTF-8 once percent-decoded"))?)
    } else {
        raw
    };
    if decoded.contains('/') || decoded.chars().any(char::is_control) || matches!(&*decoded, "." | "..") {
        return Err(bad("must not contain '/', control characters, or be '.' or '..'"));
    }
    Ok(decoded)
}

fn match_route<'p>(method: &Method, path: &'p str) -> Result<Route<'p>, ApiError> {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(not_found(path));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let (route, allow) = match segments.as_slice() {
        ["transactions"] if post => (Some(Route::ScoreTransaction), ""),
        ["transactions"] => (get.then_some(Route::ListTransactions), "GET, POST"),
        ["transactions", id] => (get.then_some(Route::GetTransaction(Cow::Borrowed(*id))), "GET"),
        ["transactions", id, "label"] => (post.then_some(Route::LabelTransaction(Cow::Borrowed(*id))), "POST"),
        ["models"] => (get.then_some(Route::ListModels), "GET"),
        // Static segments win over `{id}`, as in API Gateway.
        ["models", "active"] => (get.then_some(Route::ActiveModel), "GET"),
        ["models", "rollback"] => (post.then_some(Route::RollbackModel), "POST"),
        ["models", id] => (get.then_some(Route::GetModel(Cow::Borrowed(*id))), "GET"),
        ["models", id, "activate"] => (post.then_some(Route::ActivateModel(Cow::Borrowed(*id))), "POST"),
        ["rules"] if post => (Some(Route::SaveRule), ""),
        ["rules"] => (get.then_some(Route::ListRules), "GET, POST"),
        ["rules", "validate"] => (post.then_some(Route::ValidateRule), "POST"),
        ["rules", id] => (get.then_some(Route::GetRule(Cow::Borrowed(*id))), "GET"),
        ["rulesets"] if post => (Some(Route::CreateRuleset), ""),
        ["rulesets"] => (get.then_some(Route::ListRulesets), "GET, POST"),
        ["rulesets", "active"] => (get.then_some(Route::ActiveRuleset), "GET"),
        ["rulesets", "rollback"] => (post.then_some(Route::RollbackRuleset), "POST"),
        ["rulesets", v] => (get.then_some(Route::GetRuleset(Cow::Borrowed(*v))), "GET"),
        ["rulesets", v, "publish"] => (post.then_some(Route::PublishRuleset(Cow::Borrowed(*v))), "POST"),
        ["rulesets", v, "activate"] => (post.then_some(Route::ActivateRuleset(Cow::Borrowed(*v))), "POST"),
        ["rulesets", v, "backtest"] => (post.then_some(Route::BacktestRuleset(Cow::Borrowed(*v))), "POST"),
        ["backtests", id] => (get.then_some(Route::GetBacktest(Cow::Borrowed(*id))), "GET"),
        ["lists"] if post => (Some(Route::CreateList), ""),
        ["lists"] => (get.then_some(Route::ListLists), "GET, POST"),
        ["lists", name] => (get.then_some(Route::GetList(Cow::Borrowed(*name))), "GET"),
        ["lists", name, "entries"] if post => (Some(Route::AddEntries(Cow::Borrowed(*name))), ""),
        ["lists", name, "entries"] => (get.then_some(Route::ListEntries(Cow::Borrowed(*name))), "GET, POST"),
        ["lists", name, "entries", "remove"] => (post.then_some(Route::RemoveEntries(Cow::Borrowed(*name))), "POST"),
        ["audit"] => (get.then_some(Route::Audit), "GET"),
        ["reviews"] => (get.then_some(Route::ListReviews), "GET"),
        ["reviews", id] => (get.then_some(Route::GetReview(Cow::Borrowed(*id))), "GET"),
        ["reviews", id, "claim"] => (post.then_some(Route::ClaimReview(Cow::Borrowed(*id))), "POST"),
        ["reviews", id, "release"] => (post.then_some(Route::ReleaseReview(Cow::Borrowed(*id))), "POST"),
        ["reviews", id, "resolve"] => (post.then_some(Route::ResolveReview(Cow::Borrowed(*id))), "POST"),
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
        assert_eq!(
            ok(Method::GET, "/v1/transactions/tx-1"),
            Route::GetTransaction("tx-1".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/transactions/tx-1/label"),
            Route::LabelTransaction("tx-1".into())
        );
        assert_eq!(ok(Method::GET, "/v1/models"), Route::ListModels);
        assert_eq!(ok(Method::GET, "/v1/models/active"), Route::ActiveModel);
        assert_eq!(ok(Method::POST, "/v1/models/rollback"), Route::RollbackModel);
        assert_eq!(
            ok(Method::GET, "/v1/models/0123456789abcdef"),
            Route::GetModel("0123456789abcdef".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/models/ab/activate"),
            Route::ActivateModel("ab".into())
        );
        assert_eq!(ok(Method::POST, "/v1/rules/validate"), Route::ValidateRule);
        assert_eq!(ok(Method::POST, "/v1/rules"), Route::SaveRule);
        assert_eq!(ok(Method::GET, "/v1/rules"), Route::ListRules);
        assert_eq!(ok(Method::GET, "/v1/rules/r1"), Route::GetRule("r1".into()));
        assert_eq!(ok(Method::POST, "/v1/rulesets"), Route::CreateRuleset);
        assert_eq!(ok(Method::GET, "/v1/rulesets"), Route::ListRulesets);
        assert_eq!(ok(Method::GET, "/v1/rulesets/active"), Route::ActiveRuleset);
        assert_eq!(ok(Method::POST, "/v1/rulesets/rollback"), Route::RollbackRuleset);
        assert_eq!(ok(Method::GET, "/v1/rulesets/3"), Route::GetRuleset("3".into()));
        assert_eq!(
            ok(Method::POST, "/v1/rulesets/3/publish"),
            Route::PublishRuleset("3".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/rulesets/3/activate"),
            Route::ActivateRuleset("3".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/rulesets/3/backtest"),
            Route::BacktestRuleset("3".into())
        );
        assert_eq!(ok(Method::GET, "/v1/backtests/bt1"), Route::GetBacktest("bt1".into()));
        assert_eq!(ok(Method::POST, "/v1/lists"), Route::CreateList);
        assert_eq!(ok(Method::GET, "/v1/lists"), Route::ListLists);
        assert_eq!(ok(Method::GET, "/v1/lists/l"), Route::GetList("l".into()));
        assert_eq!(ok(Method::GET, "/v1/lists/l/entries"), Route::ListEntries("l".into()));
        assert_eq!(ok(Method::POST, "/v1/lists/l/entries"), Route::AddEntries("l".into()));
        assert_eq!(
            ok(Method::POST, "/v1/lists/l/entries/remove"),
            Route::RemoveEntries("l".into())
        );
        assert_eq!(ok(Method::GET, "/v1/audit"), Route::Audit);
        assert_eq!(ok(Method::GET, "/v1/reviews"), Route::ListReviews);
        assert_eq!(ok(Method::GET, "/v1/reviews/tx-1"), Route::GetReview("tx-1".into()));
        assert_eq!(
            ok(Method::POST, "/v1/reviews/tx-1/claim"),
            Route::ClaimReview("tx-1".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/reviews/tx-1/release"),
            Route::ReleaseReview("tx-1".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/reviews/tx-1/resolve"),
            Route::ResolveReview("tx-1".into())
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
    fn path_parameters_are_percent_decoded_once_and_bad_ones_are_400s_naming_them() {
        assert_eq!(
            ok(Method::GET, "/v1/transactions/a%3Ab"),
            Route::GetTransaction("a:b".into())
        );
        assert_eq!(
            ok(Method::GET, "/v1/transactions/a%3ab"),
            Route::GetTransaction("a:b".into())
        );
        // Once: `%253A` is `%3A`, left for the id rules to refuse.
        assert_eq!(
            ok(Method::GET, "/v1/transactions/a%253A"),
            Route::GetTransaction("a%3A".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/lists/l%5F1/entries"),
            Route::AddEntries("l_1".into())
        );
        assert_eq!(ok(Method::GET, "/v1/rulesets/%33"), Route::GetRuleset("3".into()));
        let field = |m: Method, p: &str| match route(&m, p) {
            Err(ApiError::Validation(e)) => e[0].field.clone(),
            other => panic!("{m} {p}: {other:?}"),
        };
        for p in [
            "/v1/transactions/a%2Fb",
            "/v1/transactions/a%00b",
            "/v1/transactions/%2E%2E",
            "/v1/transactions/%2e",
            "/v1/transactions/a%",
            "/v1/transactions/a%4",
            "/v1/transactions/a%zz",
            "/v1/transactions/%FF%FE",
            "/v1/transactions/a%0Ab",
        ] {
            assert_eq!(field(Method::GET, p), "id", "{p}");
        }
        assert_eq!(field(Method::GET, "/v1/lists/a%2F..%2Fb"), "name");
        assert_eq!(field(Method::POST, "/v1/rulesets/%2F/publish"), "version");
        assert_eq!(field(Method::POST, "/v1/reviews/%00/claim"), "id");
        // The method is checked first: a wrong method on a bad id is still a 405.
        assert!(matches!(
            route(&Method::DELETE, "/v1/transactions/a%zz"),
            Err(ApiError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn strips_the_watch_prefix_only_as_a_whole_segment() {
        assert_eq!(normalise("/lambda-url/api/v1/health"), "/v1/health");
        assert_eq!(normalise("/lambda-url/api"), "/");
        assert_eq!(normalise("/lambda-url/apix/v1/health"), "/lambda-url/apix/v1/health");
        assert_eq!(normalise("/v1/health"), "/v1/health");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 1024, ..Default::default() })]
        /// Any string (and `%`-heavy ones) decodes or is a 400 naming the parameter; what
        /// decodes holds no `/` or control character.
        #[test]
        fn decode_param_never_panics_on_any_string(
            raw in proptest::prop_oneof![".{0,64}", "(%[0-9A-Fa-fGz]{0,2}|[a-z:./])*"],
        ) {
            match decode_param("id", Cow::Borrowed(&raw)) {
                Ok(v) => proptest::prop_assert!(!v.contains('/') && !v.chars().any(char::is_control)),
                Err(ApiError::Validation(e)) => proptest::prop_assert_eq!(&e[0].field, "id"),
                Err(other) => proptest::prop_assert!(false, "{raw:?}: {other:?}"),
            }
        }
    }
}
