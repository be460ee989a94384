//! The api Lambda: configuration and clients once per container, then [`api::handle`] per request.
//!
//! Environment: `TABLE_NAME`, `MODEL_BUCKET`, `DATA_BUCKET` (backtest jobs' requests and
//! results; all three set by template.yaml; without `DATA_BUCKET` no backtest runs as a job), optional
//! `VERDICT_MODEL_PATH` (a local model artifact serving tenants without an activation pointer),
//! `VERDICT_MODEL_CACHE_MB` (the loaded models' budget in MiB of artifact; default a quarter of
//! `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, else 64), `VERDICT_CURSOR_KEY` (required: the secret page
//! cursors are sealed with, at least 32 characters, the same in every container; template.yaml
//! resolves it from Secrets Manager), `RUST_LOG` (log filter, default `info`), and the
//! usual AWS variables (`AWS_ENDPOINT_URL` for moto).

use api::{App, CursorCodec, S3Backtests};
use lambda_http::{service_fn, Request};
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use verdict::adapters::lambda::{check_lambda_environment, exit_code, init_logging, required_env};
use verdict::adapters::{
    aws_config_from_env, dynamodb_client, s3_client_with, s3_request_timeouts, DynamoStore, ObjectStore, S3Blobs,
};
use verdict::app::scoring::ModelCache;
use verdict::domain::model::Model;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let started = Instant::now();
    init_logging();
    // A panic unwinds to `api::handle`, which answers it; this logs where, as one JSON line
    // (the default hook writes plain text). Never the request: only the location and message.
    std::panic::set_hook(Box::new(|info| {
        let message = api::panic_message(info.payload());
        tracing::error!(location = info.location().map(|l| l.to_string()), message, "panic");
    }));
    let app = match build().await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    // Lives as long as the process; a static borrow keeps the handler future simple.
    let app: &'static App<DynamoStore, S3Blobs> = Box::leak(Box::new(app));
    tracing::info!(
        cold_init_ms = started.elapsed().as_secs_f64() * 1000.0,
        fallback_model = app.scorer.fallback.as_ref().map(|m| m.version()),
        model_cache_bytes = app.scorer.models.budget(),
        "ready"
    );
    let served = lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(api::handle(app, req).await)
    }))
    .await;
    exit_code(served)
}

async fn build() -> Result<App<DynamoStore, S3Blobs>, String> {
    check_lambda_environment()?;
    let table = required_env("TABLE_NAME", "the DynamoDB table (template.yaml sets it)")?;
    let bucket = required_env("MODEL_BUCKET", "the model bucket (template.yaml sets it)")?;
    let fallback = match std::env::var("VERDICT_MODEL_PATH") {
        Ok(path) if !path.trim().is_empty() => {
            let model = Model::load(path.trim().as_ref()).map_err(|e| format!("VERDICT_MODEL_PATH: {e}"))?;
            Some(Arc::new(model))
        }
        _ => None,
    };
    let env = |name| std::env::var(name).ok();
    let cache_budget = ModelCache::budget_for(
        env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").as_deref(),
        env("VERDICT_MODEL_CACHE_MB").as_deref(),
    )
    .map_err(|e| format!("VERDICT_MODEL_CACHE_MB: {e}"))?;
    // Required: with a per-container key a cursor would not open on the next container.
    let cursor_secret = required_env(
        "VERDICT_CURSOR_KEY",
        "the secret page cursors are sealed with (template.yaml resolves it from Secrets Manager)",
    )?;
    let cursors = CursorCodec::from_secret(&cursor_secret).map_err(|e| format!("VERDICT_CURSOR_KEY: {e}"))?;
    let config = aws_config_from_env().await;
    let store = DynamoStore::new(dynamodb_client(&config), table);
    // Within the api's 10 s: a stuck model fetch becomes a 503, not a Lambda timeout.
    let s3 = s3_client_with(&config, s3_request_timeouts());
    let blobs = S3Blobs::new(s3.clone(), bucket).with_deadline(std::time::Duration::from_secs(5));
    let backtests = match std::env::var("DATA_BUCKET") {
        Ok(data) if !data.trim().is_empty() => Some(Arc::new(S3Backtests {
            objects: ObjectStore::new(s3),
            jobs: store.clone(),
            bucket: data.trim().to_owned(),
        }) as Arc<dyn api::BacktestQueue>),
        _ => {
            tracing::warn!("DATA_BUCKET is not set: large backtests are refused (503)");
            None
        }
    };
    let mut app = App::new(store, blobs, fallback).with_cursor_key(cursors);
    app.backtests = backtests;
    app.scorer.models = ModelCache::with_budget(cache_budget);
    Ok(app)
}
