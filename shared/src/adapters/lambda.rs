//! Lambda glue: what every function's `main` does around its handler (JSON logs, its
//! configuration from the environment, a plain error where `lambda_runtime` would panic), the
//! one mapping of an S3 event record to an [`UploadedObject`], and the one self-reinvoker.

use crate::domain::objects::{KeyEncodingError, UploadedObject};
use crate::ports::reinvoke::{Reinvoke, ReinvokeError};
use aws_lambda_events::event::s3::S3EventRecord;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// The object an S3 record names ([`UploadedObject::from_event`]). A key that is not valid
/// encoding is an error carrying the object with its key as written.
// The error path is rare (an S3 key S3 itself did not encode); no need to box.
#[allow(clippy::result_large_err)]
pub fn uploaded_object(record: &S3EventRecord) -> Result<UploadedObject, (KeyEncodingError, UploadedObject)> {
    let object = &record.s3.object;
    UploadedObject::from_event(
        record.s3.bucket.name.as_deref(),
        object.key.as_deref(),
        object.url_decoded_key.as_deref(),
        object.e_tag.as_deref(),
        object.size,
        object.version_id.as_deref(),
    )
}

/// Invokes a function (this one, by the name Lambda gives it in `AWS_LAMBDA_FUNCTION_NAME`)
/// asynchronously (`InvocationType=Event`) with the continuation's payload.
#[derive(Debug, Clone)]
pub struct LambdaReinvoker {
    client: aws_sdk_lambda::Client,
    function_name: String,
}

impl LambdaReinvoker {
    pub fn new(client: aws_sdk_lambda::Client, function_name: impl Into<String>) -> Self {
        LambdaReinvoker {
            client,
            function_name: function_name.into(),
        }
    }
}

impl Reinvoke for LambdaReinvoker {
    async fn reinvoke(&self, payload: &serde_json::Value) -> Result<(), ReinvokeError> {
        let failed = |reason: String| ReinvokeError {
            function: self.function_name.clone(),
            reason,
        };
        let bytes = serde_json::to_vec(payload).map_err(|e| failed(e.to_string()))?;
        self.client
            .invoke()
            .function_name(&self.function_name)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(bytes))
            .send()
            .await
            .map_err(|e| failed(aws_sdk_lambda::error::DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }
}

/// JSON lines on stdout, filtered by `RUST_LOG` (else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else info).
pub fn init_logging() {
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

/// The variables `lambda_runtime` panics without, checked up front so the process says which.
pub fn check_lambda_environment() -> Result<(), String> {
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
    Ok(())
}

/// A required setting; `what` says what it must name, for the error.
pub fn required_env(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Ok(_) => Err(format!("{name} is empty; it must name {what}")),
        Err(_) => Err(format!("{name} is not set; it must name {what}")),
    }
}

/// The process's exit once the runtime loop ends (it only ends on a runtime failure).
pub fn exit_code<E: std::fmt::Display>(served: Result<(), E>) -> ExitCode {
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}
