//! Backtest jobs as the api sees them: start one (write its request object), read its state.
//! Behind a small object-safe trait so [`crate::App`] holds it without another type parameter;
//! [`S3Backtests`] is the one implementation, over any [`Objects`] and [`JobStore`].

use std::future::Future;
use std::pin::Pin;
use verdict::app::backtest::{job_state, start_job, BacktestId, BacktestJobError, BacktestRequest, BacktestState};
use verdict::domain::TenantId;
use verdict::ports::jobs::JobStore;
use verdict::ports::objects::Objects;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Backtest requests and results of the data bucket.
pub trait BacktestQueue: Send + Sync {
    fn start<'a>(
        &'a self,
        tenant: &'a TenantId,
        request: &'a BacktestRequest,
    ) -> BoxFuture<'a, Result<BacktestId, BacktestJobError>>;

    /// `None`: `tenant` never requested `id`.
    fn state<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a BacktestId,
    ) -> BoxFuture<'a, Result<Option<BacktestState>, BacktestJobError>>;
}

/// Requests and results in `bucket`, job states in `jobs` (the table).
pub struct S3Backtests<O, J> {
    pub objects: O,
    pub jobs: J,
    pub bucket: String,
}

impl<O: Objects, J: JobStore> BacktestQueue for S3Backtests<O, J> {
    fn start<'a>(
        &'a self,
        tenant: &'a TenantId,
        request: &'a BacktestRequest,
    ) -> BoxFuture<'a, Result<BacktestId, BacktestJobError>> {
        Box::pin(start_job(&self.objects, &self.bucket, tenant, request))
    }

    fn state<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a BacktestId,
    ) -> BoxFuture<'a, Result<Option<BacktestState>, BacktestJobError>> {
        Box::pin(job_state(&self.objects, &self.jobs, &self.bucket, tenant, id))
    }
}
