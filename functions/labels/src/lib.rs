//! labels: an upload to `labels/incoming/<tenant>/…` labels the tenant's stored decisions.
//!
//! This parses the S3 event, runs [`verdict::app::labels::LabelApplier`] (the job lease, the
//! rows, the label transitions, the retention rule, the reports) over DynamoDB, S3 and Lambda,
//! and maps its outcome.

use serde::{Deserialize, Serialize};
use verdict::adapters::label_reading::TokioLabelReading;
use verdict::adapters::lambda::uploaded_object;
use verdict::adapters::s3::ObjectStore;
use verdict::adapters::{DynamoStore, LambdaReinvoker, TokioSleep};
use verdict::app::labels::LabelApplier;
use verdict::domain::objects::UploadedObject;

pub use aws_lambda_events::event::s3::S3Event;
pub use verdict::app::labels::{Invocation, LabelsError, LabelsOutcome, RecordOutcome, Settings};
pub use verdict::domain::labels::LabelProgress;
pub type Error = lambda_runtime::Error;

/// Clients and configuration, built once per container.
pub struct Deps {
    pub store: DynamoStore,
    pub objects: ObjectStore,
    /// The data bucket (`DATA_BUCKET`); events from any other bucket are skipped.
    pub bucket: String,
    /// None: a run that must stop early returns `handed_over` and waits for a redelivery.
    pub reinvoke: Option<LambdaReinvoker>,
    pub settings: Settings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub records: Vec<RecordOutcome>,
}

pub async fn handle(deps: &Deps, event: S3Event) -> Result<Outcome, Error> {
    handle_with(deps, event, &Invocation::unbounded()).await
}

/// The function, with the invocation's id and deadline.
pub async fn handle_with(deps: &Deps, event: S3Event, inv: &Invocation) -> Result<Outcome, Error> {
    // A key that is not valid encoding is kept as written (it then names no label file).
    let uploads: Vec<UploadedObject> = event
        .records
        .iter()
        .map(|r| uploaded_object(r).unwrap_or_else(|(_, as_written)| as_written))
        .collect();
    // A continuation carries the whole event.
    let continuation = serde_json::to_value(&event).map_err(LabelsError::Encode)?;
    let applier = LabelApplier {
        store: &deps.store,
        jobs: &deps.store,
        objects: &deps.objects,
        reading: &TokioLabelReading,
        reinvoke: deps.reinvoke.as_ref(),
        sleep: &TokioSleep,
        bucket: &deps.bucket,
        settings: &deps.settings,
    };
    let records = applier
        .apply_event(&uploads, &continuation, inv)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "labels failed; the event will be retried"))?;
    Ok(Outcome { records })
}
