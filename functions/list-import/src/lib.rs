//! list-import: an upload to `lists/incoming/<tenant>/<list>.{csv,txt}[.gz]` adds its values to
//! the tenant's list.
//!
//! This parses the S3 event, runs [`verdict::app::list_import::ListImporter`] (the job lease, the
//! lines checked as the API checks entries, the chunks through the rules service, the reports)
//! over DynamoDB, S3 and Lambda, and maps its outcome.

use serde::{Deserialize, Serialize};
use verdict::adapters::lambda::uploaded_object;
use verdict::adapters::s3::ObjectStore;
use verdict::adapters::{DynamoStore, LambdaReinvoker, TokioSleep};
use verdict::app::list_import::ListImporter;
use verdict::domain::objects::UploadedObject;

pub use aws_lambda_events::event::s3::S3Event;
pub use verdict::app::list_import::{ImportError, ImportOutcome, Invocation, RecordOutcome, Settings};
pub use verdict::domain::list_upload::ListImportSummary;
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
    // A key that is not valid encoding is kept as written (it then names no list file).
    let uploads: Vec<UploadedObject> = event
        .records
        .iter()
        .map(|r| uploaded_object(r).unwrap_or_else(|(_, as_written)| as_written))
        .collect();
    // A continuation carries the whole event.
    let continuation = serde_json::to_value(&event).map_err(ImportError::Encode)?;
    let importer = ListImporter {
        rules: &deps.store,
        jobs: &deps.store,
        objects: &deps.objects,
        reinvoke: deps.reinvoke.as_ref(),
        sleep: &TokioSleep,
        bucket: &deps.bucket,
        settings: &deps.settings,
    };
    let records = importer
        .import_event(&uploads, &continuation, inv)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "list import failed; the event will be retried"))?;
    Ok(Outcome { records })
}
