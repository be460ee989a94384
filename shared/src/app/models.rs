//! The model services: [`ModelActivation`] (which registered version serves a tenant: activate,
//! roll back, read the registry) and [`ModelImporter`] (an upload becomes a registered version, or
//! a recorded rejection). The pure checks of an upload live in [`crate::domain::model_upload`].

use crate::app::scoring::ModelCache;
use crate::domain::model::{Model, ModelSource};
use crate::domain::model_upload::{
    detect_format, rejected_version, sha256_hex, upload_options, validate, IncomingModel, Manifest, Rejection,
    UploadOptions, Validated, MAX_MANIFEST_BYTES, MAX_MODEL_BYTES,
};
use crate::domain::registry::{ImportDetails, ModelPointer, ModelRegistration, ModelStatus, Registered, RegistryEntry};
use crate::domain::{JobStatus, ObjectRef, TenantId, Timestamp};
use crate::ports::jobs::{JobEnd, JobStore, JobType};
use crate::ports::objects::{FetchedObject, ObjectVersion, Objects};
use crate::ports::registry::{ExpectedPointer, ModelImports, ModelRegistry};
use crate::ports::{ModelBlobs, Page, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Activation

/// Why an activation or rollback did not happen. Every case but [`Self::Store`] is the tenant's
/// state, not a failure: retrying the same request gives the same answer. The messages are
/// written for the API's `detail`.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("No model \"{0}\".")]
    UnknownVersion(String),
    #[error("No model is active for this tenant, so there is nothing to roll back.")]
    NothingActive,
    #[error("Model \"{active}\" is active and no model was active before it.")]
    NoPrevious { active: String },
    #[error("The previous model \"{0}\" is no longer in the registry.")]
    PreviousGone(String),
    #[error("Model \"{version}\" was rejected at import ({reason}) and cannot be activated.")]
    Rejected { version: String, reason: String },
    /// Its artifact is missing, does not load, or is another version.
    #[error("Model \"{version}\" cannot serve: {why}. The serving model stays.")]
    Unusable { version: String, why: String },
    /// The pointer moved between the read this decision was taken on and the write.
    #[error("The active model changed while this request ran ({0}); read it again and retry.")]
    PointerMoved(String),
    /// The registration changed (or went) between the read and the write.
    #[error("Model \"{0}\" changed while it was being activated; retry.")]
    RegistrationChanged(String),
    /// Storage failed; the only case worth retrying as is.
    #[error(transparent)]
    Store(StoreError),
}

/// A registry entry with the status it has under the current pointer.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub entry: RegistryEntry,
    pub status: ModelStatus,
}

/// What the pointer names, and its registry entry (None for a pointer written outside the
/// registry).
#[derive(Debug, Clone, PartialEq)]
pub struct Serving {
    pub pointer: ModelPointer,
    pub entry: Option<RegistryEntry>,
}

/// The pointer after an activation, and the entry it now names.
#[derive(Debug, Clone, PartialEq)]
pub struct Activated {
    pub pointer: ModelPointer,
    pub entry: RegistryEntry,
}

/// Activation and the registry reads, over the registry and the model artifacts. A model is
/// loaded and checked before the pointer moves, and the loaded model goes into the scorer's
/// cache, so the next decision does not load it again.
pub struct ModelActivation<'a, R, B> {
    registry: &'a R,
    blobs: &'a B,
    cache: &'a ModelCache,
}

impl<'a, R: ModelRegistry, B: ModelBlobs> ModelActivation<'a, R, B> {
    pub fn new(registry: &'a R, blobs: &'a B, cache: &'a ModelCache) -> Self {
        ModelActivation { registry, blobs, cache }
    }

    /// What the pointer names; None without a pointer.
    pub async fn serving(&self, tenant: &TenantId) -> Result<Option<Serving>, StoreError> {
        let Some(pointer) = self.registry.model_pointer(tenant).await? else {
            return Ok(None);
        };
        let entry = self.registry.registry_entry(tenant, &pointer.version).await?;
        Ok(Some(Serving { pointer, entry }))
    }

    /// One version; another tenant's is simply not there.
    pub async fn entry(&self, tenant: &TenantId, version: &str) -> Result<Option<Listed>, StoreError> {
        let Some(entry) = self.registry.registry_entry(tenant, version).await? else {
            return Ok(None);
        };
        let pointer = self.registry.model_pointer(tenant).await?;
        let status = entry.status_under(pointer.as_ref());
        Ok(Some(Listed { entry, status }))
    }

    /// The registry, newest upload first.
    pub async fn page(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Listed>, StoreError> {
        let page = self.registry.registry_page(tenant, limit, cursor).await?;
        let pointer = self.registry.model_pointer(tenant).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|entry| Listed {
                    status: entry.status_under(pointer.as_ref()),
                    entry,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// Points the tenant at `version`, from the pointer as read now.
    pub async fn activate(&self, tenant: &TenantId, version: &str) -> Result<Activated, ActivationError> {
        let Some(entry) = self
            .registry
            .registry_entry(tenant, version)
            .await
            .map_err(ActivationError::Store)?
        else {
            return Err(ActivationError::UnknownVersion(version.to_owned()));
        };
        let current = self
            .registry
            .model_pointer(tenant)
            .await
            .map_err(ActivationError::Store)?
            .map(|p| p.version);
        self.switch_to(tenant, entry, current.as_deref()).await
    }

    /// Back to `previous_version`; a second rollback undoes the first.
    pub async fn rollback(&self, tenant: &TenantId) -> Result<Activated, ActivationError> {
        let Some(pointer) = self
            .registry
            .model_pointer(tenant)
            .await
            .map_err(ActivationError::Store)?
        else {
            return Err(ActivationError::NothingActive);
        };
        let Some(previous) = pointer.previous_version else {
            return Err(ActivationError::NoPrevious {
                active: pointer.version,
            });
        };
        let Some(entry) = self
            .registry
            .registry_entry(tenant, &previous)
            .await
            .map_err(ActivationError::Store)?
        else {
            return Err(ActivationError::PreviousGone(previous));
        };
        self.switch_to(tenant, entry, Some(&pointer.version)).await
    }

    /// Moves the pointer from `current` (as the caller read it) to `entry`. A rejected model, an
    /// artifact that does not load or is another version, or a pointer or registration that
    /// changed meanwhile leaves the serving model as it is.
    async fn switch_to(
        &self,
        tenant: &TenantId,
        entry: RegistryEntry,
        current: Option<&str>,
    ) -> Result<Activated, ActivationError> {
        let m = &entry.model;
        if m.status == ModelStatus::Rejected {
            return Err(ActivationError::Rejected {
                version: m.version.clone(),
                reason: entry
                    .reject_reason
                    .clone()
                    .unwrap_or_else(|| "no reason recorded".into()),
            });
        }
        // This tenant's artifact, fetched and verified now (not a cached model of the same
        // version): a registration whose artifact does not load, or is another version, never serves.
        let unusable = |why: String| ActivationError::Unusable {
            version: m.version.clone(),
            why,
        };
        let bytes = match self.blobs.fetch(&m.object_key).await {
            Ok(b) => b,
            Err(e) if e.is_retryable() => return Err(ActivationError::Store(e)),
            Err(e) => return Err(unusable(e.to_string())),
        };
        let model = Model::from_bytes(&m.object_key, &bytes).map_err(|e| unusable(e.to_string()))?;
        if model.version() != m.version {
            return Err(unusable(format!(
                "its artifact {} is version {}",
                m.object_key,
                model.version()
            )));
        }
        self.cache.insert(Arc::new(model), bytes.len());
        let pointer = match self
            .registry
            .activate(tenant, &m.version, &m.object_key, ExpectedPointer::At(current))
            .await
        {
            Ok(p) => p,
            Err(StoreError::Conflict(why)) => return Err(ActivationError::PointerMoved(why)),
            Err(StoreError::NotFound(_)) => return Err(ActivationError::RegistrationChanged(m.version.clone())),
            Err(e) => return Err(ActivationError::Store(e)),
        };
        tracing::info!(%tenant, version = %pointer.version, previous = ?pointer.previous_version, "model activated");
        Ok(Activated { pointer, entry })
    }
}

// ---------------------------------------------------------------------------------------------
// Import

/// An uploaded object, as its S3 event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUpload {
    pub bucket: String,
    /// Decoded (S3 events URL-encode keys).
    pub key: String,
    /// Without quotes.
    pub etag: String,
    pub version_id: Option<String>,
    pub uploaded_by: String,
    pub uploaded_at: Timestamp,
}

impl ModelUpload {
    fn version(&self) -> ObjectVersion<'_> {
        ObjectVersion {
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

/// What became of one upload. Recorded (as JSON) per object and per uploaded bytes, and answered
/// again on a redelivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ImportOutcome {
    Accepted {
        tenant: String,
        version: String,
        name: String,
        /// `active` or `candidate` (or the status an earlier identical upload left).
        status: ModelStatus,
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

/// One upload's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordOutcome {
    pub bucket: String,
    pub key: String,
    /// True when this object or these bytes were processed before: nothing was done now.
    pub duplicate: bool,
    #[serde(flatten)]
    pub outcome: ImportOutcome,
}

/// Only storage failures are errors (the event is delivered again); a bad upload is an outcome.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Cannot happen for these types; permanent if it did.
    #[error("{0}: cannot record the outcome: {1}")]
    Encode(String, serde_json::Error),
}

impl ImportError {
    /// Whether delivering the same event again can succeed: after a storage failure it can; a
    /// version registered with other bytes (a conflict) or a corrupt item stays as it is.
    pub fn retryable(&self) -> bool {
        matches!(self, ImportError::Store(e) if e.is_retryable())
    }
}

/// Model import: validate, then register (or record the rejection and move the upload aside),
/// optionally activate.
///
/// Idempotency: the outcome is recorded per object (bucket, key, etag: the object's job, ended at
/// once) and per uploaded bytes (SHA-256). A second delivery of the same object, or the same bytes under another key, changes
/// nothing and answers with the first outcome. Every step before that record is safe to repeat,
/// so an invocation that dies half-way is simply retried.
pub struct ModelImporter<'a, R, J, O> {
    registry: &'a R,
    jobs: &'a J,
    objects: &'a O,
    /// The model bucket; uploads to any other bucket are skipped.
    bucket: &'a str,
}

impl<'a, R: ModelImports, J: JobStore, O: Objects> ModelImporter<'a, R, J, O> {
    pub fn new(registry: &'a R, jobs: &'a J, objects: &'a O, bucket: &'a str) -> Self {
        ModelImporter {
            registry,
            jobs,
            objects,
            bucket,
        }
    }

    pub async fn import(&self, up: &ModelUpload) -> Result<RecordOutcome, ImportError> {
        let skip = |reason: String| {
            tracing::warn!(bucket = %up.bucket, key = %up.key, %reason, "upload skipped");
            Ok(up.result(false, ImportOutcome::Skipped { reason }))
        };
        if up.bucket != self.bucket {
            return skip(format!(
                "the event is for bucket {:?}, but this function imports from {:?}",
                up.bucket, self.bucket
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

        // A model job never runs: its item is only ever an end. Its progress is never read.
        let done = self.jobs.read_job::<serde::de::IgnoredAny>(tenant, &job).await?;
        let done = done.filter(|j| j.status == JobStatus::Completed).and_then(|j| j.result);
        if let Some(first) = done.and_then(|r| serde_json::from_str::<ImportOutcome>(&r).ok()) {
            tracing::info!(%origin, "delivered again: already imported");
            self.finish_move(up, &incoming, &first).await?;
            return Ok(up.result(true, first));
        }

        let object = match self
            .objects
            .get(&up.bucket, &up.key, up.version(), MAX_MODEL_BYTES)
            .await?
        {
            FetchedObject::Found(o) => o,
            FetchedObject::Missing => return skip(format!("{origin}: the object no longer exists or was replaced")),
            FetchedObject::TooLarge { size } => {
                let r = Rejection::TooLarge {
                    origin: origin.clone(),
                    size,
                    max: MAX_MODEL_BYTES,
                };
                // Unread, so named by its etag rather than its bytes.
                let sha = sha256_hex(format!("{origin}#{}", up.etag).as_bytes());
                let outcome = self.reject(up, &incoming, &sha, None, None, &r).await?;
                let outcome = self.record_outcome(tenant, &job, None, outcome).await?;
                self.finish_move(up, &incoming, &outcome).await?;
                return Ok(up.result(false, outcome));
            }
        };
        let sha = sha256_hex(&object.bytes);
        if let Some(first) = self.registry.source_outcome(tenant, &sha).await? {
            if let Ok(first) = serde_json::from_str::<ImportOutcome>(&first) {
                tracing::info!(%origin, sha256 = %sha, "the same bytes were imported before");
                let first = self.record_outcome(tenant, &job, None, first).await?;
                return Ok(up.result(true, first));
            }
        }

        let manifest = self.read_manifest(up, &incoming).await?;
        let options = manifest.and_then(|m| upload_options(&origin, &object.metadata, m));
        let checked = options
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|o| validate(&origin, incoming.stem(), &object.bytes, o));
        let outcome = match checked {
            Ok(v) => {
                let activate = options.as_ref().is_ok_and(|o| o.activate);
                self.accept(up, &incoming, &sha, v, activate).await?
            }
            Err(r) => {
                let format = detect_format(&origin, &object.bytes).ok().map(|f| f.as_str());
                self.reject(up, &incoming, &sha, options.as_ref().ok(), format, &r)
                    .await?
            }
        };
        // A concurrent delivery may have ended the job first: its outcome stands, here too.
        let outcome = self.record_outcome(tenant, &job, Some(&sha), outcome).await?;
        self.finish_move(up, &incoming, &outcome).await?;
        Ok(up.result(false, outcome))
    }

    /// The manifest beside the upload: None when there is none, Err(rejection) when it is bad.
    async fn read_manifest(
        &self,
        up: &ModelUpload,
        incoming: &IncomingModel,
    ) -> Result<Result<Option<Manifest>, Rejection>, StoreError> {
        let key = incoming.manifest_key();
        let origin = format!("s3://{}/{key}", up.bucket);
        Ok(
            match self
                .objects
                .get(&up.bucket, &key, ObjectVersion::LATEST, MAX_MANIFEST_BYTES)
                .await?
            {
                FetchedObject::Missing => Ok(None),
                FetchedObject::Found(m) => Manifest::parse(&origin, &m.bytes).map(Some),
                FetchedObject::TooLarge { size } => Err(Rejection::Manifest {
                    origin,
                    reason: format!("{size} bytes is larger than the {MAX_MANIFEST_BYTES}-byte limit for a manifest"),
                }),
            },
        )
    }

    async fn accept(
        &self,
        up: &ModelUpload,
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
            status: ModelStatus::Candidate,
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
        self.objects
            .put(
                &up.bucket,
                &object_key,
                v.artifact_bytes,
                "application/octet-stream",
                &[],
            )
            .await?;
        let (mut status, object_key) = match self.registry.register_import(tenant, &registration, &details).await? {
            Registered::New => (ModelStatus::Candidate, object_key),
            // Same artifact uploaded before under another name: keep that registration.
            Registered::Existing(e) => (e.status, e.object_key),
        };
        let mut previous_version = None;
        if activate {
            let p = self
                .registry
                .activate(tenant, &version, &object_key, ExpectedPointer::Anything)
                .await?;
            status = ModelStatus::Active;
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

    async fn reject(
        &self,
        up: &ModelUpload,
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
        self.objects
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
            status: ModelStatus::Rejected,
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
        self.registry.register_import(tenant, &registration, &details).await?;
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
        &self,
        up: &ModelUpload,
        incoming: &IncomingModel,
        outcome: &ImportOutcome,
    ) -> Result<(), StoreError> {
        if let ImportOutcome::Rejected { .. } = outcome {
            if self.objects.delete_if_unchanged(&up.bucket, &up.key, &up.etag).await? {
                let manifest = incoming.manifest_key();
                if self
                    .objects
                    .copy(&up.bucket, &manifest, None, &incoming.rejected_manifest_key())
                    .await?
                {
                    self.objects.delete(&up.bucket, &manifest).await?;
                }
            }
        }
        Ok(())
    }

    /// Per bytes (unless these bytes have an outcome already), then per object: the object's job
    /// ends with it. Either record stays as first written, so the outcome returned is the one
    /// the job holds: `outcome`, or a concurrent delivery's that got there first.
    async fn record_outcome(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        sha: Option<&str>,
        outcome: ImportOutcome,
    ) -> Result<ImportOutcome, ImportError> {
        let json = serde_json::to_string(&outcome).map_err(|e| ImportError::Encode(job.uri(), e))?;
        if let Some(sha) = sha {
            self.registry.record_source_outcome(tenant, sha, &json).await?;
        }
        let end = JobEnd::Completed { result: Some(json) };
        let recorded = self
            .jobs
            .record_job_end(tenant, job, JobType::Model, None, &end, Timestamp::now())
            .await?;
        if recorded {
            return Ok(outcome);
        }
        let first = self.jobs.read_job::<serde::de::IgnoredAny>(tenant, job).await?;
        let first = first
            .and_then(|j| j.result)
            .and_then(|r| serde_json::from_str::<ImportOutcome>(&r).ok());
        // An end that does not read as an outcome (an older shape) cannot be the answer.
        Ok(first.unwrap_or(outcome))
    }
}

fn source_name(s: &ModelSource) -> &'static str {
    match s {
        ModelSource::Verdict => "verdict",
        ModelSource::Lightgbm => "lightgbm",
        ModelSource::Xgboost => "xgboost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::stump_artifact;
    use crate::ports::in_memory::{block_on, InMemoryBlobs, InMemoryJobs, InMemoryObjects, InMemoryRegistry};
    use std::collections::BTreeMap;

    const BUCKET: &str = "models";

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    /// A valid artifact; each threshold gives another version.
    fn artifact(threshold: f64) -> Vec<u8> {
        stump_artifact(threshold, -3.0, -0.5, 6.0).to_bytes()
    }

    /// Registers (as a candidate) and stores the artifact; returns its version.
    fn register(registry: &InMemoryRegistry, blobs: &InMemoryBlobs, threshold: f64) -> String {
        let bytes = artifact(threshold);
        let model = Model::from_bytes("test", &bytes).unwrap();
        let version = model.version().to_owned();
        let object_key = format!("models/active/acme/{version}.vmodel");
        blobs.put(&object_key, bytes);
        registry
            .register_model(
                &acme(),
                &ModelRegistration {
                    version: version.clone(),
                    name: format!("stump-{threshold}"),
                    sha256: model.sha256.clone(),
                    object_key,
                    source: "verdict".into(),
                    status: ModelStatus::Candidate,
                    metrics: BTreeMap::new(),
                    uploaded_at: Timestamp::from_unix(1_533_000_000).unwrap(),
                    uploaded_by: "tests".into(),
                    trees: 1,
                },
            )
            .unwrap();
        version
    }

    fn pointer(registry: &InMemoryRegistry) -> ModelPointer {
        block_on(registry.model_pointer(&acme())).unwrap().expect("a pointer")
    }

    fn status(registry: &InMemoryRegistry, version: &str) -> ModelStatus {
        block_on(registry.registry_entry(&acme(), version))
            .unwrap()
            .unwrap()
            .model
            .status
    }

    #[test]
    fn an_activation_that_loses_to_a_concurrent_one_is_a_conflict_and_the_other_model_serves() {
        let (registry, blobs, cache) = (
            Arc::new(InMemoryRegistry::default()),
            InMemoryBlobs::default(),
            ModelCache::default(),
        );
        let a = register(&registry, &blobs, 220.0);
        let b = register(&registry, &blobs, 150.0);
        let c = register(&registry, &blobs, 100.0);
        let service = ModelActivation::new(&*registry, &blobs, &cache);
        block_on(service.activate(&acme(), &a)).unwrap();

        // While b's artifact is loading, someone else activates c.
        let (other, c_key) = (registry.clone(), format!("models/active/acme/{c}.vmodel"));
        let c_version = c.clone();
        blobs.before_next_fetch(move || {
            other
                .activate_now(&acme(), &c_version, &c_key, ExpectedPointer::Anything)
                .unwrap();
        });
        let err = block_on(service.activate(&acme(), &b)).unwrap_err();
        assert!(matches!(err, ActivationError::PointerMoved(_)), "{err}");
        let p = pointer(&registry);
        assert_eq!(
            (p.version.as_str(), p.previous_version.as_deref()),
            (c.as_str(), Some(a.as_str()))
        );
        assert_eq!(status(&registry, &b), ModelStatus::Candidate, "b never became active");
    }

    #[test]
    fn a_second_rollback_undoes_the_first() {
        let (registry, blobs, cache) = (
            InMemoryRegistry::default(),
            InMemoryBlobs::default(),
            ModelCache::default(),
        );
        let a = register(&registry, &blobs, 220.0);
        let b = register(&registry, &blobs, 150.0);
        let service = ModelActivation::new(&registry, &blobs, &cache);
        assert!(matches!(
            block_on(service.rollback(&acme())),
            Err(ActivationError::NothingActive)
        ));
        block_on(service.activate(&acme(), &a)).unwrap();
        assert!(matches!(
            block_on(service.rollback(&acme())),
            Err(ActivationError::NoPrevious { active }) if active == a
        ));
        let to_b = block_on(service.activate(&acme(), &b)).unwrap();
        assert_eq!(to_b.pointer.previous_version.as_deref(), Some(a.as_str()));

        let back = block_on(service.rollback(&acme())).unwrap();
        assert_eq!(
            (back.pointer.version.as_str(), back.pointer.previous_version.as_deref()),
            (a.as_str(), Some(b.as_str()))
        );
        assert_eq!(back.entry.model.version, a);
        let undone = block_on(service.rollback(&acme())).unwrap();
        assert_eq!(
            (
                undone.pointer.version.as_str(),
                undone.pointer.previous_version.as_deref()
            ),
            (b.as_str(), Some(a.as_str()))
        );
        assert_eq!(
            (status(&registry, &a), status(&registry, &b)),
            (ModelStatus::Retired, ModelStatus::Active)
        );
        // The verified model is what the scorer's cache now holds for that version.
        assert_eq!(cache.get(&b).map(|m| m.version().to_owned()), Some(b));
    }

    #[test]
    fn a_rejected_or_unloadable_model_is_never_activated_and_the_serving_model_stays() {
        let (registry, blobs, cache) = (
            InMemoryRegistry::default(),
            InMemoryBlobs::default(),
            ModelCache::default(),
        );
        let a = register(&registry, &blobs, 220.0);
        let service = ModelActivation::new(&registry, &blobs, &cache);
        block_on(service.activate(&acme(), &a)).unwrap();

        // A rejection, recorded by an import of junk.
        let (jobs, objects) = (InMemoryJobs::default(), InMemoryObjects::default());
        let importer = ModelImporter::new(&registry, &jobs, &objects, BUCKET);
        let junk = upload(&objects, "models/incoming/acme/junk.bin", b"not a model", &[]);
        let ImportOutcome::Rejected { version: rejected, .. } = block_on(importer.import(&junk)).unwrap().outcome
        else {
            panic!("junk is rejected");
        };
        match block_on(service.activate(&acme(), &rejected)) {
            Err(ActivationError::Rejected { version, reason }) => {
                assert_eq!(version, rejected);
                assert!(reason.contains("junk.bin"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // A registration whose artifact is another version's.
        let b = register(&registry, &blobs, 150.0);
        blobs.put(&format!("models/active/acme/{b}.vmodel"), artifact(100.0));
        assert!(matches!(
            block_on(service.activate(&acme(), &b)),
            Err(ActivationError::Unusable { why, .. }) if why.contains("is version")
        ));
        assert!(matches!(
            block_on(service.activate(&acme(), "0123456789abcdef")),
            Err(ActivationError::UnknownVersion(_))
        ));
        assert_eq!(pointer(&registry).version, a);
        assert_eq!(status(&registry, &b), ModelStatus::Candidate);
    }

    #[test]
    fn the_registry_shows_statuses_under_the_pointer() {
        let (registry, blobs, cache) = (
            InMemoryRegistry::default(),
            InMemoryBlobs::default(),
            ModelCache::default(),
        );
        let a = register(&registry, &blobs, 220.0);
        let b = register(&registry, &blobs, 150.0);
        let service = ModelActivation::new(&registry, &blobs, &cache);
        block_on(service.activate(&acme(), &a)).unwrap();
        block_on(service.activate(&acme(), &b)).unwrap();
        let page = block_on(service.page(&acme(), 10, None)).unwrap();
        let shown: BTreeMap<_, _> = page
            .items
            .iter()
            .map(|l| (l.entry.model.version.clone(), l.status))
            .collect();
        assert_eq!(
            shown,
            BTreeMap::from([(a.clone(), ModelStatus::Retired), (b.clone(), ModelStatus::Active)])
        );
        let serving = block_on(service.serving(&acme())).unwrap().unwrap();
        assert_eq!(serving.entry.map(|e| e.model.version), Some(b));
        assert_eq!(
            block_on(service.entry(&TenantId::parse("globex").unwrap(), &a)).unwrap(),
            None
        );
    }

    fn upload(objects: &InMemoryObjects, key: &str, bytes: &[u8], metadata: &[(&str, &str)]) -> ModelUpload {
        let etag = objects.upload(BUCKET, key, bytes, metadata);
        ModelUpload {
            bucket: BUCKET.into(),
            key: key.into(),
            etag,
            version_id: None,
            uploaded_by: "AWS:uploader".into(),
            uploaded_at: Timestamp::from_unix(1_533_659_231).unwrap(),
        }
    }

    #[test]
    fn the_same_bytes_imported_twice_are_registered_once() {
        let (registry, jobs, objects) = (
            InMemoryRegistry::default(),
            InMemoryJobs::default(),
            InMemoryObjects::default(),
        );
        let importer = ModelImporter::new(&registry, &jobs, &objects, BUCKET);
        let bytes = artifact(220.0);
        let first = block_on(importer.import(&upload(&objects, "models/incoming/acme/a.vmodel", &bytes, &[]))).unwrap();
        let ImportOutcome::Accepted { version, status, .. } = &first.outcome else {
            panic!("{first:?}");
        };
        assert_eq!(*status, ModelStatus::Candidate);
        assert!(!first.duplicate);

        // The same object again, then the same bytes under another name asking for activation.
        let again = block_on(importer.import(&upload(&objects, "models/incoming/acme/a.vmodel", &bytes, &[]))).unwrap();
        let renamed = upload(
            &objects,
            "models/incoming/acme/b.vmodel",
            &bytes,
            &[("activate", "true")],
        );
        let other = block_on(importer.import(&renamed)).unwrap();
        for r in [&again, &other] {
            assert!(r.duplicate);
            assert_eq!(r.outcome, first.outcome);
        }
        assert_eq!(registry.version_count(&acme()), 1);
        assert_eq!(block_on(registry.model_pointer(&acme())).unwrap(), None);
        assert_eq!(
            objects.keys(BUCKET, "models/active/"),
            [format!("models/active/acme/{version}.vmodel")]
        );
    }

    #[test]
    fn only_storage_failures_are_worth_a_redelivery() {
        assert!(ImportError::Store(StoreError::Unavailable("timeout".into())).retryable());
        assert!(!ImportError::Store(StoreError::Conflict("other bytes".into())).retryable());
        assert!(!ImportError::Store(StoreError::Rejected("ValidationException".into())).retryable());
    }

    #[test]
    fn a_rejected_upload_is_recorded_and_moved_aside_with_its_manifest() {
        let (registry, jobs, objects) = (
            InMemoryRegistry::default(),
            InMemoryJobs::default(),
            InMemoryObjects::default(),
        );
        let importer = ModelImporter::new(&registry, &jobs, &objects, BUCKET);
        objects.upload(
            BUCKET,
            "models/incoming/acme/x.bin.manifest.json",
            br#"{"name":"x"}"#,
            &[],
        );
        let up = upload(&objects, "models/incoming/acme/x.bin", b"junk", &[]);
        let r = block_on(importer.import(&up)).unwrap();
        let ImportOutcome::Rejected { version, code, .. } = &r.outcome else {
            panic!("{r:?}");
        };
        assert_eq!(
            (version.as_str(), code.as_str()),
            (&sha256_hex(b"junk")[..16], "unknown_format")
        );
        assert_eq!(status(&registry, version), ModelStatus::Rejected);
        let details = block_on(registry.import_details(&acme(), version)).unwrap().unwrap();
        assert_eq!(details.reject_code.as_deref(), Some("unknown_format"));
        assert_eq!(objects.keys(BUCKET, "models/incoming/"), Vec::<String>::new());
        assert_eq!(
            objects.keys(BUCKET, "models/rejected/"),
            ["models/rejected/acme/x.bin", "models/rejected/acme/x.bin.manifest.json"]
        );
        // Another bucket's event, and a manifest's own event, are skipped.
        let elsewhere = ModelUpload {
            bucket: "other".into(),
            ..up.clone()
        };
        assert!(matches!(
            block_on(importer.import(&elsewhere)).unwrap().outcome,
            ImportOutcome::Skipped { .. }
        ));
    }
}
