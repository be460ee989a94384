//! The HTTP edge: parse the request, call the shared crate, map the result to HTTP.
//!
//! [`handle`] is the whole function: routing, authentication, the routes of `openapi.yaml`, and
//! RFC 9457 problems for every failure. It never returns an error and never panics on input.

mod auth;
mod backtests;
mod cursor;
mod labels;
mod meta;
mod models;
mod problem;
mod request;
mod response;
mod reviews;
mod routes;
mod rules;
mod store;
mod transactions;
mod views;

pub use auth::KEY_CACHE_TTL;
pub use backtests::{BacktestQueue, S3Backtests};
pub use cursor::{CursorCodec, CursorKeyError, MAX_CURSOR_LEN};
pub use meta::{openapi_json, OPENAPI_YAML};
pub use problem::{ApiError, TYPE_405};
pub use request::{DEFAULT_LIMIT, MAX_LIMIT};
pub use store::ApiStore;
pub use transactions::MAX_BODY_BYTES;

use crate::request::Ctx;
use crate::routes::Route;
use futures_util::FutureExt;
use lambda_http::{Body, Request, Response};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;
use verdict::adapters::HttpJwks;
use verdict::app::oidc::TokenVerifier;
use verdict::app::scoring::Scorer;
use verdict::domain::model::Model;
use verdict::domain::Timestamp;
use verdict::ports::ModelBlobs;

/// Per-container state, built once in `main`: the scorer (store, blobs, model cache, fallback
/// model), the API-key cache, the OIDC token caches and the backtest jobs.
pub struct App<S, B> {
    pub scorer: Scorer<S, B>,
    /// Backtest requests and results (the data bucket). `None`: a window too large to answer
    /// inline is a 503, and `GET /v1/backtests/{id}` finds nothing.
    pub backtests: Option<Arc<dyn BacktestQueue>>,
    keys: auth::KeyCache,
    /// Seals and opens page cursors. Private: [`App::new`] gives a random key, and only
    /// [`App::with_cursor_key`] replaces it.
    cursors: CursorCodec,
    /// OIDC bearer tokens: the issuer and JWKS caches (HTTPS fetches, built on first use).
    pub tokens: TokenVerifier,
    /// When this container started serving; the fallback model's activation time.
    started_at: Timestamp,
}

#[cfg(debug_assertions)]
impl<S, B> App<S, B> {
    /// Tests only (never in a release build): `probe` is called with the key's hash while the
    /// key cache's lock is held, so a test can panic inside that critical section and show the
    /// cache recovers from the poisoned lock.
    #[doc(hidden)]
    pub fn set_key_cache_probe(&mut self, probe: fn(&verdict::domain::auth::KeyHash)) {
        self.keys.probe = Some(probe);
    }
}

impl<S: ApiStore, B: ModelBlobs> App<S, B> {
    pub fn new(store: S, blobs: B, fallback: Option<Arc<Model>>) -> Self {
        App {
            scorer: Scorer::new(store, blobs, fallback),
            backtests: None,
            keys: auth::KeyCache::default(),
            cursors: CursorCodec::ephemeral(),
            tokens: TokenVerifier::new(Arc::new(HttpJwks::default())),
            started_at: Timestamp::now(),
        }
    }
}

impl<S, B> App<S, B> {
    /// The deployment's cursor key, which `main` sets from `VERDICT_CURSOR_KEY` (and refuses to
    /// start without). [`App::new`]'s default is a random key, so that an App built in-process
    /// (tests, benchmarks) needs no secret; its cursors then open only on that App, which on
    /// Lambda would mean a cursor from one container is a 400 on the next. Besides `main`, only
    /// the test harness calls this, to model two containers of one deployment.
    pub fn with_cursor_key(mut self, cursors: CursorCodec) -> Self {
        self.cursors = cursors;
        self
    }
}

/// Answers one request. Every failure is a problem response; one log line per request.
///
/// A panic inside a route is caught here (the release profile unwinds): it answers the
/// `internal` problem with the request id, and the container, its key, model and policy
/// caches (whose locks recover from poisoning) go on serving the next request.
pub async fn handle<S: ApiStore, B: ModelBlobs>(app: &App<S, B>, req: Request) -> Response<Body> {
    let cx = Ctx::new(&req, Instant::now());
    let outcome = match AssertUnwindSafe(dispatch(app, &req, &cx)).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(payload) => {
            // The message and where, never the request body; `main`'s panic hook logged the
            // location already.
            Err(ApiError::Internal(format!("panicked: {}", panic_message(&*payload))))
        }
    };
    let response = match outcome {
        Ok(r) => r,
        Err(e) => {
            match &e {
                ApiError::Internal(cause) => {
                    tracing::error!(request_id = cx.request_id, path = cx.path, error = %cause, "request failed")
                }
                ApiError::Unavailable(cause) => {
                    tracing::warn!(request_id = cx.request_id, path = cx.path, error = %cause, "request failed; retryable")
                }
                _ => {}
            }
            e.to_response(cx.path, cx.request_id)
        }
    };
    tracing::info!(
        request_id = cx.request_id,
        method = %req.method(),
        path = cx.path,
        status = response.status().as_u16(),
        ms = cx.elapsed_ms(),
        "request"
    );
    response
}

/// A panic's message (`panic!`'s text), cut to 200 characters for the log.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("");
    message.chars().take(200).collect()
}

async fn dispatch<S: ApiStore, B: ModelBlobs>(
    app: &App<S, B>,
    req: &Request,
    cx: &Ctx<'_>,
) -> Result<Response<Body>, ApiError> {
    let route = match routes::route(req.method(), cx.path) {
        Ok(route) => route,
        // A bad path parameter is found before the route authenticates: an unauthenticated
        // caller is told 401, not how its path was malformed. 404 and 405 need no credential.
        Err(e @ ApiError::Validation(_)) => {
            auth::authenticated(app, req.headers()).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    match route {
        Route::Health => Ok(meta::health(cx.request_id)),
        Route::OpenApi => meta::openapi(cx.request_id),
        Route::ScoreTransaction => transactions::score(app, req, cx).await,
        Route::GetTransaction(id) => transactions::get(app, req, cx, &id).await,
        Route::ListTransactions => transactions::list(app, req, cx).await,
        Route::LabelTransaction(id) => labels::label(app, req, cx, &id).await,
        Route::ActiveModel => models::active(app, req, cx).await,
        Route::GetModel(id) => models::get(app, req, cx, &id).await,
        Route::ListModels => models::list(app, req, cx).await,
        Route::ActivateModel(id) => models::activate(app, req, cx, &id).await,
        Route::RollbackModel => models::rollback(app, req, cx).await,
        Route::ValidateRule => rules::validate(app, req, cx).await,
        Route::SaveRule => rules::save(app, req, cx).await,
        Route::ListRules => rules::list(app, req, cx).await,
        Route::GetRule(id) => rules::get(app, req, cx, &id).await,
        Route::CreateRuleset => rules::create_ruleset(app, req, cx).await,
        Route::ListRulesets => rules::list_rulesets(app, req, cx).await,
        Route::ActiveRuleset => rules::active(app, req, cx).await,
        Route::RollbackRuleset => rules::rollback(app, req, cx).await,
        Route::GetRuleset(v) => rules::get_ruleset(app, req, cx, &v).await,
        Route::PublishRuleset(v) => rules::publish(app, req, cx, &v).await,
        Route::ActivateRuleset(v) => rules::activate(app, req, cx, &v).await,
        Route::BacktestRuleset(v) => rules::backtest(app, req, cx, &v).await,
        Route::GetBacktest(id) => rules::get_backtest(app, req, cx, &id).await,
        Route::CreateList => rules::create_list(app, req, cx).await,
        Route::ListLists => rules::lists(app, req, cx).await,
        Route::GetList(name) => rules::get_list(app, req, cx, &name).await,
        Route::ListEntries(name) => rules::entries(app, req, cx, &name).await,
        Route::AddEntries(name) => rules::add_entries(app, req, cx, &name).await,
        Route::RemoveEntries(name) => rules::remove_entries(app, req, cx, &name).await,
        Route::Audit => rules::audit(app, req, cx).await,
        Route::ListReviews => reviews::list(app, req, cx).await,
        Route::GetReview(id) => reviews::get(app, req, cx, &id).await,
        Route::ClaimReview(id) => reviews::claim(app, req, cx, &id).await,
        Route::ReleaseReview(id) => reviews::release(app, req, cx, &id).await,
        Route::ResolveReview(id) => reviews::resolve(app, req, cx, &id).await,
    }
}
