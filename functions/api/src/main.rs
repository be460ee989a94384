//! The api Lambda: configuration and clients once per container, then [`api::handle`] per request.
//!
//! Environment: `TABLE_NAME`, `MODEL_BUCKET` (both set by template.yaml), optional
//! `VERDICT_MODEL_PATH` (a local model artifact serving tenants without an activation pointer),
//! `RUST_LOG` (log filter, default `info`), and the usual AWS variables (`AWS_ENDPOINT_URL` for moto).

use api::App;
use lambda_http::{service_fn, Request};
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tracing_subscriber::EnvFilter;
use verdict::adapters::{aws_config_from_env, dynamodb_client, s3_client, DynamoStore, S3Blobs};
use verdict::model::Model;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let started = Instant::now();
    init_logging();
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
        "ready"
    );
    let served = lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(api::handle(app, req).await)
    }))
    .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// JSON lines on stdout, filtered by `RUST_LOG` (else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else info).
fn init_logging() {
    let lambda_level = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_default().to_lowercase();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| match lambda_level.trim() {
            "" => EnvFilter::try_new("info"),
            level => EnvFilter::try_new(level),
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_current_span(false)
        .with_span_list(false)
        .init();
}

async fn build() -> Result<App<DynamoStore, S3Blobs>, String> {
    // lambda_runtime panics on these; say it plainly instead.
    for name in [
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
    ] {
        if std::env::var_os(name).is_none() {
            return Err(format!(
                "{name} is not set: run this under Lambda or `cargo lambda watch`"
            ));
        }
    }
    if std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").map_or(true, |v| v.parse::<i32>().is_err()) {
        return Err("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is not a whole number of MB".into());
    }
    let table = required("TABLE_NAME", "the DynamoDB table (template.yaml sets it)")?;
    let bucket = required("MODEL_BUCKET", "the model bucket (template.yaml sets it)")?;
    let fallback = match std::env::var("VERDICT_MODEL_PATH") {
        Ok(path) if !path.trim().is_empty() => {
            let model = Model::load(path.trim().as_ref()).map_err(|e| format!("VERDICT_MODEL_PATH: {e}"))?;
            Some(Arc::new(model))
        }
        _ => None,
    };
    let config = aws_config_from_env().await;
    let store = DynamoStore::new(dynamodb_client(&config), table);
    let blobs = S3Blobs::new(s3_client(&config), bucket);
    Ok(App::new(store, blobs, fallback))
}

fn required(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Ok(_) => Err(format!("{name} is empty; it must name {what}")),
        Err(_) => Err(format!("{name} is not set; it must name {what}")),
    }
}
