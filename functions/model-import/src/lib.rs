//! model-import: an upload to `models/incoming/<tenant>/…` becomes a registered model version.
//!
//! Each S3 record is parsed into a [`ModelUpload`] and handed to [`ModelImporter`], which skips
//! what is already done, validates the upload (see [`verdict::domain::model_upload`] for its
//! metadata and manifest), and then either accepts it (artifact under `models/active/`, registered
//! as a candidate, activated if asked) or rejects it (moved to `models/rejected/`, registered as
//! rejected with its reason; the pointer is not touched). A redelivery answers the first outcome.
//!
//! Only storage failures are errors (Lambda retries the event); a bad upload is an outcome.

use aws_lambda_events::event::s3::S3EventRecord;
use serde::{Deserialize, Serialize};
use verdict::adapters::lambda::uploaded_object;
use verdict::adapters::DynamoStore;
use verdict::adapters::ObjectStore;
use verdict::app::models::{ModelImporter, ModelUpload};
use verdict::domain::Timestamp;

pub use aws_lambda_events::event::s3::S3Event;
pub use verdict::app::models::{ImportError, ImportOutcome, RecordOutcome};
pub type Error = lambda_runtime::Error;

/// Clients and configuration, built once per container.
pub struct Deps {
    pub store: DynamoStore,
    pub objects: ObjectStore,
    /// The model bucket (`MODEL_BUCKET`); events from any other bucket are skipped.
    pub bucket: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub records: Vec<RecordOutcome>,
}

/// The function: every record of the event, in order.
pub async fn handle(deps: &Deps, event: S3Event) -> Result<Outcome, Error> {
    let importer = ModelImporter::new(&deps.store, &deps.store, &deps.objects, &deps.bucket);
    let mut records = Vec::with_capacity(event.records.len());
    for record in &event.records {
        // Boxed: the import future is deep enough to overflow the compiler's layout query inline.
        let r = Box::pin(importer.import(&upload_of(record))).await.map_err(|e| {
            tracing::error!(error = %e, retryable = e.retryable(), "model import failed; the event will be retried");
            e
        })?;
        records.push(r);
    }
    Ok(Outcome { records })
}

/// The object an S3 record names.
fn upload_of(record: &S3EventRecord) -> ModelUpload {
    // A key that is not valid encoding is kept as written (it then names no model upload).
    let object = uploaded_object(record).unwrap_or_else(|(_, as_written)| as_written);
    ModelUpload {
        bucket: object.bucket,
        key: object.key,
        etag: object.etag,
        version_id: object.version_id,
        uploaded_by: record
            .principal_id
            .principal_id
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "unknown".into()),
        uploaded_at: Timestamp::parse("eventTime", &record.event_time.to_rfc3339())
            .unwrap_or_else(|_| Timestamp::now()),
    }
}
