//! backtest: a request object under `backtests/incoming/<tenant>/<id>.json` (the api writes
//! it for a window too large to answer inline) is replayed and its result written to
//! `backtests/results/<tenant>/<id>.json`.
//!
//! This parses the S3 event, runs [`verdict::app::backtest::BacktestJobs`] (the job lease, the
//! replay, the result object) per record over DynamoDB and S3, and maps its outcome.

use serde::Serialize;
use verdict::adapters::lambda::uploaded_object;
use verdict::adapters::{DynamoStore, ObjectStore};
use verdict::app::backtest::BacktestJobs;

pub use aws_lambda_events::event::s3::S3Event;
pub use verdict::app::backtest::{BacktestJobError, BacktestJobOutcome, MAX_JOB_DECISIONS};
pub type Error = lambda_runtime::Error;

/// Clients and configuration, built once per container.
pub struct Deps {
    pub store: DynamoStore,
    pub objects: ObjectStore,
    /// The data bucket (`DATA_BUCKET`); events from any other bucket are skipped.
    pub bucket: String,
    /// Decisions one job replays at most.
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub records: Vec<BacktestJobOutcome>,
}

/// The function: each record's request in order. A retryable failure fails the invocation
/// (Lambda retries the event; the jobs already ended are no-ops then).
pub async fn handle(deps: &Deps, event: S3Event) -> Result<Outcome, Error> {
    let jobs = BacktestJobs {
        store: &deps.store,
        jobs: &deps.store,
        objects: &deps.objects,
        bucket: &deps.bucket,
        limit: deps.limit,
    };
    let mut records = Vec::with_capacity(event.records.len());
    for record in &event.records {
        // A key that is not valid encoding is kept as written (it then names no request).
        let up = uploaded_object(record).unwrap_or_else(|(_, as_written)| as_written);
        let outcome = jobs.run(&up).await.inspect_err(
            |e| tracing::error!(key = %up.key, error = %e, "backtest failed; the event will be retried"),
        )?;
        records.push(outcome);
    }
    Ok(Outcome { records })
}
