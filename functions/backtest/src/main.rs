//! The backtest Lambda: clients once per container, then [`backtest::handle`] per S3 event.
//!
//! Environment: `TABLE_NAME` and `DATA_BUCKET` (template.yaml sets both), `RUST_LOG` (log
//! filter, default `info`) and the usual AWS variables.

use backtest::{Deps, MAX_JOB_DECISIONS};
use lambda_runtime::{service_fn, LambdaEvent};
use std::process::ExitCode;
use verdict::adapters::lambda::{check_lambda_environment, exit_code, init_logging, required_env};
use verdict::adapters::{aws_config_from_env, dynamodb_client, s3_client, DynamoStore, ObjectStore};

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
    let served = lambda_runtime::run(service_fn(move |event: LambdaEvent<backtest::S3Event>| async move {
        backtest::handle(deps, event.payload).await
    }))
    .await;
    exit_code(served)
}

async fn build() -> Result<Deps, String> {
    check_lambda_environment()?;
    let table = required_env("TABLE_NAME", "the DynamoDB table (template.yaml sets it)")?;
    let bucket = required_env("DATA_BUCKET", "the data bucket (template.yaml sets it)")?;
    let config = aws_config_from_env().await;
    Ok(Deps {
        store: DynamoStore::new(dynamodb_client(&config), table),
        objects: ObjectStore::new(s3_client(&config)),
        bucket,
        limit: MAX_JOB_DECISIONS,
    })
}
