//! The events Lambda: the EventBridge client once per container, then [`events::handle`] per
//! stream batch.
//!
//! Environment: `EVENT_BUS_NAME` (template.yaml sets it; locally `verdict-events`),
//! `DATA_BUCKET` (the archive's bucket; template.yaml sets it; unset: no archive), `RUST_LOG`
//! (log filter, default `info`) and the usual AWS variables.

// The handler's future is deep (SDK calls inside the runtime's service).
#![recursion_limit = "256"]

use events::{Deps, EventBridgeBus, ObjectStore, TokioSleep};
use lambda_runtime::{service_fn, LambdaEvent};
use std::process::ExitCode;
use verdict::adapters::eventbridge::LOCAL_EVENT_BUS;
use verdict::adapters::lambda::{check_lambda_environment, exit_code, init_logging, required_env};
use verdict::adapters::{aws_config_from_env, s3_client};

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
    let deps: &'static Deps<EventBridgeBus, ObjectStore> = Box::leak(Box::new(deps));
    // The event as JSON: each record is decoded on its own, so one odd record is skipped alone.
    let served = lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        events::handle(deps, event.payload)
            .await
            .map_err(|e| -> lambda_runtime::Error { e.into() })
    }))
    .await;
    exit_code(served)
}

async fn build() -> Result<Deps<EventBridgeBus, ObjectStore>, String> {
    check_lambda_environment()?;
    // template.yaml always sets it; a local run (cargo lambda watch) may rely on the default.
    let bus = required_env("EVENT_BUS_NAME", "the EventBridge bus (template.yaml sets it)")
        .unwrap_or_else(|_| LOCAL_EVENT_BUS.to_owned());
    let config = aws_config_from_env().await;
    let data_bucket = required_env("DATA_BUCKET", "the data bucket (template.yaml sets it)").ok();
    if data_bucket.is_none() {
        tracing::warn!("DATA_BUCKET is not set: events are published, nothing is archived");
    }
    Ok(Deps {
        bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&config), bus),
        objects: ObjectStore::new(s3_client(&config)),
        sleep: TokioSleep,
        data_bucket,
    })
}
