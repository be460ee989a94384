//! The batch-score Lambda: clients and caches once per container, then [`batch_score::handle`]
//! per event.
//!
//! Environment: `TABLE_NAME`, `MODEL_BUCKET` (set by template.yaml), `AWS_LAMBDA_FUNCTION_NAME`
//! (set by Lambda; the function re-invokes itself by it), `RUST_LOG`, and the usual AWS variables
//! (`AWS_ENDPOINT_URL` for moto).

use batch_score::{Deps, Event, LambdaReinvoker, Outcome};
use lambda_runtime::{service_fn, LambdaEvent};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};
use tracing_subscriber::EnvFilter;
use verdict::adapters::{aws_config_from_env, dynamodb_client, s3_client, DynamoStore};

// Multi-threaded: the scoring thread blocks on the S3 stream while uploads run here.
#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let deps = match build().await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    // Lives as long as the process; a static borrow keeps the handler future simple.
    let deps: &'static Deps<LambdaReinvoker> = Box::leak(Box::new(deps));
    let served = lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let deadline = UNIX_EPOCH + Duration::from_millis(event.context.deadline);
        let parsed = Event::from_value(event.payload)?;
        let outcome: Outcome = batch_score::handle(deps, parsed, deadline).await?;
        for o in &outcome.objects {
            tracing::info!(bucket = %o.bucket, key = %o.key, status = ?o.status, "batch object");
        }
        Ok::<_, lambda_runtime::Error>(outcome)
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

async fn build() -> Result<Deps<LambdaReinvoker>, String> {
    let table = required("TABLE_NAME", "the DynamoDB table (template.yaml sets it)")?;
    let model_bucket = required("MODEL_BUCKET", "the model bucket (template.yaml sets it)")?;
    let function = required(
        "AWS_LAMBDA_FUNCTION_NAME",
        "this function (Lambda sets it); run under Lambda or `cargo lambda watch`",
    )?;
    let config = aws_config_from_env().await;
    let store = DynamoStore::new(dynamodb_client(&config), table);
    let reinvoker = LambdaReinvoker::new(aws_sdk_lambda::Client::new(&config), function);
    Ok(Deps::new(store, s3_client(&config), &model_bucket, reinvoker))
}

fn required(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Ok(_) => Err(format!("{name} is empty; it must name {what}")),
        Err(_) => Err(format!("{name} is not set; it must name {what}")),
    }
}
