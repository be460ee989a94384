//! The labels Lambda: clients once per container, then [`labels::handle_with`] per S3 event.
//!
//! Environment: `TABLE_NAME` and `DATA_BUCKET` (template.yaml sets both), `RUST_LOG` (log
//! filter, default `info`), `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda; the function re-invokes
//! itself under that name to continue a long file) and the usual AWS variables.

use labels::{Deps, Invocation, Reinvoker, Settings};
use lambda_runtime::{service_fn, LambdaEvent};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use tracing_subscriber::EnvFilter;
use verdict::adapters::model_objects::ObjectStore;
use verdict::adapters::{aws_config_from_env, dynamodb_client, s3_client, DynamoStore};

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
    let served = lambda_runtime::run(service_fn(move |event: LambdaEvent<labels::S3Event>| async move {
        let inv = Invocation {
            request_id: event.context.request_id.clone(),
            deadline: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(event.context.deadline)),
            max_rows: None,
        };
        labels::handle_with(deps, event.payload, &inv).await
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

async fn build() -> Result<Deps, String> {
    // lambda_runtime panics without it; say it plainly instead.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return Err("AWS_LAMBDA_RUNTIME_API is not set: run this under Lambda or `cargo lambda watch`".into());
    }
    let table = required("TABLE_NAME", "the DynamoDB table (template.yaml sets it)")?;
    let bucket = required("DATA_BUCKET", "the data bucket (template.yaml sets it)")?;
    let config = aws_config_from_env().await;
    let reinvoke = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .map(|function_name| Reinvoker {
            client: aws_sdk_lambda::Client::new(&config),
            function_name,
        });
    Ok(Deps {
        store: DynamoStore::new(dynamodb_client(&config), table),
        objects: ObjectStore::new(s3_client(&config)),
        bucket,
        reinvoke,
        settings: Settings::default(),
    })
}

fn required(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Ok(_) => Err(format!("{name} is empty; it must name {what}")),
        Err(_) => Err(format!("{name} is not set; it must name {what}")),
    }
}
