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
use verdict::adapters::lambda::{check_lambda_environment, exit_code, init_logging, required_env};
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
    exit_code(served)
}

async fn build() -> Result<Deps<LambdaReinvoker>, String> {
    check_lambda_environment()?;
    let table = required_env("TABLE_NAME", "the DynamoDB table (template.yaml sets it)")?;
    let model_bucket = required_env("MODEL_BUCKET", "the model bucket (template.yaml sets it)")?;
    let function = required_env(
        "AWS_LAMBDA_FUNCTION_NAME",
        "this function (Lambda sets it); run under Lambda or `cargo lambda watch`",
    )?;
    let config = aws_config_from_env().await;
    let store = DynamoStore::new(dynamodb_client(&config), table);
    let reinvoker = LambdaReinvoker::new(aws_sdk_lambda::Client::new(&config), function);
    Ok(Deps::new(store, s3_client(&config), &model_bucket, reinvoker))
}
