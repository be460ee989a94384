//! model-import: an upload to `models/incoming/<tenant>/…` becomes a registered model version.
//!
//! For each S3 record: parse the key (the tenant is its second segment), skip what is already
//! done, read the object and its metadata or manifest (see [`verdict::domain::model_upload`] for both
//! formats), validate it, then either
//!
//! - **accept:** write the Verdict artifact to `models/active/<tenant>/<version>.vmodel`, register
//!   the version (`candidate`) and, if asked, activate it (the api follows the pointer); or
//! - **reject:** copy the upload to `models/rejected/<tenant>/…`, register the upload as
//!   `rejected` with its reason, and delete it from `models/incoming/`. The pointer is not touched.
//!
//! Idempotency: the outcome is recorded per object (bucket, key, etag) and per uploaded bytes
//! (SHA-256). A second delivery of the same object, or the same bytes under another key, changes
//! nothing and answers with the first outcome. Every step before that record is safe to repeat,
//! so an invocation that dies half-way is simply retried.
//!
//! Only storage failures are errors (Lambda retries the event); a bad upload is an outcome.

use aws_lambda_events::event::s3::S3EventRecord;
use serde::{Deserialize, Serialize};
use verdict::adapters::dynamodb::{
    ImportDetails, JobStatus, ObjectRef, Registered, STATUS_ACTIVE, STATUS_CANDIDATE, STATUS_REJECTED,
};
use verdict::adapters::lambda::uploaded_object;
use verdict::adapters::s3::{Fetched, ObjectStore, Version};
use verdict::adapters::{DynamoStore, ModelRegistration};
use verdict::domain::model::ModelSource;
use verdict::domain::model_upload::{
    detect_format, rejected_version, sha256_hex, upload_options, validate, IncomingModel, Manifest, Rejection,
    UploadOptions, Validated, MAX_MANIFEST_BYTES, MAX_MODEL_BYTES,
};
use verdict::domain::{TenantId, Timestamp};
use verdict::ports::StoreError;

pub use aws_lambda_events::event::s3::S3Event;
pub type Error = lambda_runtime::Error;

/// Clients and configuration, built once per container.
pub struct Deps {
    pub store: DynamoStore,
    pub objects: ObjectStore,
    /// The model bucket (`MODEL_BUCKET`); events from any other bucket are skipped.
    pub bucket: String,
}

/// What became of one upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ImportOutcome {
    Accepted {
        tenant: String,
        version: String,
        name: String,
        /// `active` or `candidate` (or the status an earlier identical upload left).
        status: String,
        object_key: String,
        source: String,
        format: String,
        check: String,
        /// When activated: the version it replaced.
        previous_version: Option<String>,
    },
    Rejected {
        tenant: String,
        version: String,
        code: String,
        reason: String,
        object_key: String,
    },
    /// Not an upload to import (another prefix, a manifest, a malformed key, a vanished object).
    Skipped { reason: String },
}

/// One S3 record's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordOutcome {
    pub bucket: String,
    pub key: String,
    /// True when this object or these bytes were processed before: nothing was done now.
    pub duplicate: bool,
    #[serde(flatten)]
    pub outcome: ImportOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub records: Vec<RecordOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}: cannot record the outcome: {1}")]
    Encode(String, serde_json::Error),
}

/// The function: every record of the event, in order.
pub async fn handle(deps: &Deps, event: S3Event) -> Result<Outcome, Error> {
    let mut records = Vec::with_capacity(event.records.len());
    for record in &event.records {
        let r = import_record(deps, record).await.map_err(|e| {
            tracing::error!(error = %e, "model import failed; the event will be retried");
            e
        })?;
        records.push(r);
    }
    Ok(Outcome { records })
}

/// The object an S3 record names.
struct Upload {
    bucket: String,
    key: String,
    etag: String,
    version_id: Option<String>,
    uploaded_by: String,
    uploaded_at: Timestamp,
}

impl Upload {
    fn of(record: &S3EventRecord) -> Upload {
        // A key that is not valid encoding is kept as written (it then names no model upload).
        let object = uploaded_object(record).unwrap_or_else(|(_, as_written)| as_written);
        Upload {
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

    fn version(&self) -> Version<'_> {
        Version {
            version_id: self.version_id.as_deref(),
            etag: Some(&self.etag),
        }
    }

    fn result(&self, duplicate: bool, outcome: ImportOutcome) -> RecordOutcome {
        RecordOutcome {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            duplicate,
            outcome,
        }
    }
}

async fn import_record(deps: &Deps, record: &S3EventRecord) -> Result<RecordOutcome, ImportError> {
    let up = Upload::of(record);
    let skip = |reason: String| {
        tracing::warn!(bucket = %up.bucket, key = %up.key, %reason, "upload skipped");
        Ok(up.result(false, ImportOutcome::Skipped { reason }))
    };
    if up.bucket != deps.bucket {
        return skip(format!(
            "the event is for bucket {:?}, but this function imports from {:?}",
            up.bucket, deps.bucket
        ));
    }
    let incoming = match IncomingModel::parse(&up.key) {
        Ok(m) => m,
        Err(e) => return skip(e.to_string()),
    };
    if incoming.is_manifest() {
        tracing::info!(key = %up.key, "a manifest: read when its model arrives");
        return Ok(up.result(
            false,
            ImportOutcome::Skipped {
                reason: "a manifest is read with its model (upload it before the model)".into(),
            },
        ));
    }
    let tenant = &incoming.tenant;
    let job = ObjectRef::new(&up.bucket, &up.key, &up.etag);
    let origin = job.uri();

    if let Some(state) = deps.store.job(tenant, &job).await? {
        if state.status == JobStatus::Completed {
            if let Some(first) = state.result.as_deref().and_then(|r| serde_json::from_str(r).ok()) {
                tracing::info!(%origin, "delivered again: already imported");
                finish_move(deps, &up, &incoming, &first).await?;
                return Ok(up.result(true, first));
            }
        }
    }

    let object = match deps
        .objects
        .get(&up.bucket, &up.key, up.version(), MAX_MODEL_BYTES)
        .await?
    {
        Fetched::Found(o) => o,
        Fetched::Missing => return skip(format!("{origin}: the object no longer exists or was replaced")),
        Fetched::TooLarge { size } => {
            let r = Rejection::TooLarge {
                origin: origin.clone(),
                size,
                max: MAX_MODEL_BYTES,
            };
            // Unread, so named by its etag rather than its bytes.
            let sha = sha256_hex(format!("{origin}#{}", up.etag).as_bytes());
            let outcome = reject(deps, &up, &incoming, &sha, None, None, &r).await?;
            record_outcome(deps, tenant, &job, None, &outcome).await?;
            finish_move(deps, &up, &incoming, &outcome).await?;
            return Ok(up.result(false, outcome));
        }
    };
    let sha = sha256_hex(&object.bytes);
    if let Some(first) = deps.store.source_outcome(tenant, &sha).await? {
        if let Ok(first) = serde_json::from_str::<ImportOutcome>(&first) {
            tracing::info!(%origin, sha256 = %sha, "the same bytes were imported before");
            record_outcome(deps, tenant, &job, None, &first).await?;
            return Ok(up.result(true, first));
        }
    }

    let manifest = read_manifest(deps, &up, &incoming).await?;
    let options = manifest.and_then(|m| upload_options(&origin, &object.metadata, m));
    let checked = options
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|o| validate(&origin, incoming.stem(), &object.bytes, o));
    let outcome = match checked {
        Ok(v) => {
            let activate = options.as_ref().is_ok_and(|o| o.activate);
            accept(deps, &up, &incoming, &sha, v, activate).await?
        }
        Err(r) => {
            let format = detect_format(&origin, &object.bytes).ok().map(|f| f.as_str());
            reject(deps, &up, &incoming, &sha, options.as_ref().ok(), format, &r).await?
        }
    };
    record_outcome(deps, tenant, &job, Some(&sha), &outcome).await?;
    finish_move(deps, &up, &incoming, &outcome).await?;
    Ok(up.result(false, outcome))
}

/// The manifest beside the upload: None when there is none, Err(rejection) when it is bad.
async fn read_manifest(
    deps: &Deps,
    up: &Upload,
    incoming: &IncomingModel,
) -> Result<Result<Option<Manifest>, Rejection>, StoreError> {
    let key = incoming.manifest_key();
    let origin = format!("s3://{}/{key}", up.bucket);
    Ok(
        match deps
            .objects
            .get(&up.bucket, &key, Version::LATEST, MAX_MANIFEST_BYTES)
            .await?
        {
            Fetched::Missing => Ok(None),
            Fetched::Found(m) => Manifest::parse(&origin, &m.bytes).map(Some),
            Fetched::TooLarge { size } => Err(Rejection::Manifest {
                origin,
                reason: format!("{size} bytes is larger than the {MAX_MANIFEST_BYTES}-byte limit for a manifest"),
            }),
        },
    )
}

async fn accept(
    deps: &Deps,
    up: &Upload,
    incoming: &IncomingModel,
    upload_sha: &str,
    v: Validated,
    activate: bool,
) -> Result<ImportOutcome, StoreError> {
    let tenant = &incoming.tenant;
    let version = v.model.version().to_owned();
    let object_key = incoming.active_key(&version);
    let source = source_name(&v.source());
    let check = v.check.to_string();
    let registration = ModelRegistration {
        version: version.clone(),
        name: v.name.clone(),
        sha256: v.model.sha256.clone(),
        object_key: object_key.clone(),
        source: source.into(),
        status: STATUS_CANDIDATE.into(),
        metrics: v.metrics.clone(),
        uploaded_at: up.uploaded_at,
        uploaded_by: up.uploaded_by.clone(),
        trees: u32::try_from(v.model.tree_count()).unwrap_or(u32::MAX),
    };
    let details = ImportDetails {
        source_key: up.key.clone(),
        source_version_id: up.version_id.clone(),
        source_etag: up.etag.clone(),
        source_sha256: upload_sha.to_owned(),
        source_format: Some(v.format.as_str().into()),
        validation: Some(check.clone()),
        reject_code: None,
        reject_reason: None,
    };
    // The artifact first: a registry item never names a missing object.
    deps.objects
        .put(&up.bucket, &object_key, v.artifact_bytes, "application/octet-stream")
        .await?;
    let (mut status, object_key) = match deps.store.register_import(tenant, &registration, &details).await? {
        Registered::New => (STATUS_CANDIDATE.to_owned(), object_key),
        // Same artifact uploaded before under another name: keep that registration.
        Registered::Existing(e) => (e.status, e.object_key),
    };
    let mut previous_version = None;
    if activate {
        let p = deps.store.activate_model(tenant, &version, &object_key).await?;
        status = STATUS_ACTIVE.into();
        previous_version = p.previous_version;
    }
    tracing::info!(
        tenant = %tenant, %version, name = %v.name, %status, %source, %check, "model accepted"
    );
    Ok(ImportOutcome::Accepted {
        tenant: tenant.to_string(),
        version,
        name: v.name,
        status,
        object_key,
        source: source.into(),
        format: v.format.as_str().into(),
        check,
        previous_version,
    })
}

#[allow(clippy::too_many_arguments)]
async fn reject(
    deps: &Deps,
    up: &Upload,
    incoming: &IncomingModel,
    upload_sha: &str,
    options: Option<&UploadOptions>,
    format: Option<&str>,
    why: &Rejection,
) -> Result<ImportOutcome, StoreError> {
    let tenant = &incoming.tenant;
    let version = rejected_version(upload_sha);
    let object_key = incoming.rejected_key();
    // A copy now, the delete once the outcome is recorded (finish_move).
    deps.objects
        .copy(&up.bucket, &up.key, up.version_id.as_deref(), &object_key)
        .await?;
    let name = options
        .and_then(|o| o.name.clone())
        .unwrap_or_else(|| incoming.stem().to_owned());
    let registration = ModelRegistration {
        version: version.clone(),
        name,
        sha256: upload_sha.to_owned(),
        object_key: object_key.clone(),
        source: format.unwrap_or("unknown").into(),
        status: STATUS_REJECTED.into(),
        metrics: Default::default(),
        uploaded_at: up.uploaded_at,
        uploaded_by: up.uploaded_by.clone(),
        trees: 0,
    };
    let details = ImportDetails {
        source_key: up.key.clone(),
        source_version_id: up.version_id.clone(),
        source_etag: up.etag.clone(),
        source_sha256: upload_sha.to_owned(),
        source_format: format.map(str::to_owned),
        validation: None,
        reject_code: Some(why.code().into()),
        reject_reason: Some(why.to_string()),
    };
    deps.store.register_import(tenant, &registration, &details).await?;
    tracing::warn!(tenant = %tenant, %version, code = why.code(), reason = %why, "model rejected");
    Ok(ImportOutcome::Rejected {
        tenant: tenant.to_string(),
        version,
        code: why.code().into(),
        reason: why.to_string(),
        object_key,
    })
}

/// A rejected upload leaves `models/incoming/` (unless a newer upload replaced it meanwhile),
/// and its manifest goes with it. Repeated on a redelivery, in case the first run stopped
/// between recording and deleting. Reads only `models/incoming/`, as the function's policy allows.
async fn finish_move(
    deps: &Deps,
    up: &Upload,
    incoming: &IncomingModel,
    outcome: &ImportOutcome,
) -> Result<(), StoreError> {
    if let ImportOutcome::Rejected { .. } = outcome {
        if deps.objects.delete_if_unchanged(&up.bucket, &up.key, &up.etag).await? {
            let manifest = incoming.manifest_key();
            if deps
                .objects
                .copy(&up.bucket, &manifest, None, &incoming.rejected_manifest_key())
                .await?
            {
                deps.objects.delete(&up.bucket, &manifest).await?;
            }
        }
    }
    Ok(())
}

async fn record_outcome(
    deps: &Deps,
    tenant: &TenantId,
    job: &ObjectRef,
    sha: Option<&str>,
    outcome: &ImportOutcome,
) -> Result<(), ImportError> {
    let json = serde_json::to_string(outcome).map_err(|e| ImportError::Encode(job.uri(), e))?;
    deps.store.complete_import(tenant, job, sha, &json).await?;
    Ok(())
}

fn source_name(s: &ModelSource) -> &'static str {
    match s {
        ModelSource::Verdict => "verdict",
        ModelSource::Lightgbm => "lightgbm",
        ModelSource::Xgboost => "xgboost",
    }
}
