//! The services' waiting on tokio: the one [`Sleep`] the label applier and the batch runner use.

use crate::ports::Sleep;
use std::time::Duration;

/// [`Sleep`] on the tokio runtime the caller runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleep;

impl Sleep for TokioSleep {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}
