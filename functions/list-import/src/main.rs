//! The list-import Lambda: clients once per container, then [`list_import::handle_with`] per S3 event.
//!
//! Environment: `TABLE_NAME` and `DATA_BUCKET` (template.yaml sets both), `RUST_LOG` (log
//! filter, default `info`), `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda; the function re-invokes
//! itself under that name to continue a long file) and the usual AWS variables.

use lambda_runtime::{service_fn, LambdaEvent};
use list_import::{Deps, Invocation, Settings};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use verdict::adapters::lambda::{check_lambda_environment, exit_code, init_logging, required_env};
use verdict::adapters::{aws_config_from_env, dynamodb_client, s3_client, DynamoStore, LambdaReinvoker, ObjectStore};

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
    // Lives as long as the process.
    let deps: &'static Deps = Box::leak(Box::new(deps));
    let served = lambda_runtime::run(service_fn(move |event: LambdaEvent<list_import::S3Event>| async move {
        let inv = Invocation {
            request_id: event.context.request_id.clone(),
            deadline: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(event.context.deadline)),
            max_rows: None,
        };
        list_import::handle_with(deps, event.payload, &inv).await
    }))
    .await;
    exit_code(served)
}

async fn build() -> Result<Deps, String> {
    check_lambda_environment()?;
    let table = required_env("TABLE_NAME", "the DynamoDB table (template.yaml sets it)")?;
    let bucket = required_env("DATA_BUCKET", "the data bucket (template.yaml sets it)")?;
    let config = aws_config_from_env().await;
    let reinvoke = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .map(|function_name| LambdaReinvoker::new(aws_sdk_lambda::Client::new(&config), function_name));
    Ok(Deps {
        store: DynamoStore::new(dynamodb_client(&config), table),
        objects: ObjectStore::new(s3_client(&config)),
        bucket,
        reinvoke,
        settings: Settings::default(),
    })
}
