//! The events Lambda: the EventBridge client once per container, then [`events::handle`] per
//! stream batch.
//!
//! Environment: `EVENT_BUS_NAME` (template.yaml sets it; locally `verdict-events`), `RUST_LOG`
//! (log filter, default `info`) and the usual AWS variables.

use events::{EventBridgeBus, StreamEvent};
use lambda_runtime::{service_fn, LambdaEvent};
use std::process::ExitCode;
use verdict::adapters::aws_config_from_env;
use verdict::adapters::eventbridge::LOCAL_EVENT_BUS;
use verdict::adapters::lambda::{check_lambda_environment, exit_code, init_logging, required_env};

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let bus = match build().await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    // Lives as long as the process.
    let bus: &'static EventBridgeBus = Box::leak(Box::new(bus));
    let served = lambda_runtime::run(service_fn(move |event: LambdaEvent<StreamEvent>| async move {
        Ok::<_, lambda_runtime::Error>(events::handle(bus, event.payload).await)
    }))
    .await;
    exit_code(served)
}

async fn build() -> Result<EventBridgeBus, String> {
    check_lambda_environment()?;
    // template.yaml always sets it; a local run (cargo lambda watch) may rely on the default.
    let bus = required_env("EVENT_BUS_NAME", "the EventBridge bus (template.yaml sets it)")
        .unwrap_or_else(|_| LOCAL_EVENT_BUS.to_owned());
    let config = aws_config_from_env().await;
    Ok(EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&config), bus))
}
