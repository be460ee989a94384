//! Handing a job to the next invocation: the function invokes itself asynchronously with the
//! resume payload. A trait, so tests can call the handler again themselves.

use crate::ResumeRequest;
use aws_sdk_lambda::error::DisplayErrorContext;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use std::future::Future;

pub trait Reinvoke: Send + Sync {
    /// Arranges for `request` to be handled by a later invocation; returns once it is queued.
    fn reinvoke(&self, request: &ResumeRequest) -> impl Future<Output = Result<(), String>> + Send;
}

/// Invokes the function itself (`InvocationType=Event`), by the name Lambda gives it in
/// `AWS_LAMBDA_FUNCTION_NAME`.
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
    async fn reinvoke(&self, request: &ResumeRequest) -> Result<(), String> {
        let payload = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        self.client
            .invoke()
            .function_name(&self.function_name)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| format!("Lambda Invoke {}: {}", self.function_name, DisplayErrorContext(&e)))?;
        Ok(())
    }
}
