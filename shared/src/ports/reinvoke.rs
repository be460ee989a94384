//! Handing work to a later invocation of the same function: a long job continues in a fresh
//! invocation near the deadline.

use std::future::Future;

/// The continuation could not be queued; the invocation fails and is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("re-invoking {function}: {reason}")]
pub struct ReinvokeError {
    pub function: String,
    pub reason: String,
}

pub trait Reinvoke: Send + Sync {
    /// Arranges for `payload` (the continuation's event, as JSON) to be handled by a later
    /// invocation; returns once it is queued.
    fn reinvoke(&self, payload: &serde_json::Value) -> impl Future<Output = Result<(), ReinvokeError>> + Send;
}
