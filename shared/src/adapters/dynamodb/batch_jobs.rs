//! The batch job checkpoint item (docs/dynamodb.md, "Job checkpoint"): claim, lease, checkpoint,
//! complete and fail, each one conditional UpdateItem or PutItem on `T#<t>#JOB#<bucket>/<key>#<etag>`.
//!
//! Every progress write is conditional on the caller holding the lease and on the checkpoint
//! sequence it last saw, so two invocations working on one job can never both advance it.

use super::{DynamoStore, ItemKey, Keys, JOB_TTL_SECS, TTL_ATTRIBUTE};
use crate::domain::batch::{
    BatchJob, Checkpoint, Counts, FeatureSource, JobState, ObjectRef, PartRef, PinnedModel, Upload,
};
use crate::domain::policy::Thresholds;
use crate::domain::{TenantId, Timestamp};
use crate::ports::StoreError;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

type Item = HashMap<String, AttributeValue>;

const JOB_TYPE: &str = "batch";

/// The item as stored. Flat, with the attribute names docs/dynamodb.md gives; a failed job has
/// only the identifying attributes, status and error, so everything else defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct JobItem {
    pk: String,
    sk: String,
    kind: String,
    job_type: String,
    bucket: String,
    key: String,
    etag: String,
    size: u64,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    feature_source: Option<FeatureSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_object_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review_threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_threshold: Option<f64>,
    seq: u64,
    results_rows_done: u64,
    errors_rows_done: u64,
    next_line: u64,
    reading_done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    results_upload_id: Option<String>,
    results_parts: Vec<PartRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors_upload_id: Option<String>,
    errors_parts: Vec<PartRef>,
    counts: Counts,
    busy_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_owner: Option<String>,
    lease_expires_at: i64,
    invocations: u64,
    started_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

fn sdk_error<E, R>(op: &'static str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    StoreError::Unavailable(format!("DynamoDB {op} (batch job): {}", DisplayErrorContext(&e)))
}

fn corrupt(key: &ItemKey, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn conditional_check_failed<E: ProvideErrorMetadata + std::error::Error + 'static, R: fmt::Debug>(
    e: &SdkError<E, R>,
) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

fn key_item(key: &ItemKey) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

fn value<T: Serialize + ?Sized>(v: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(v)
        .map_err(|e| StoreError::Unavailable(format!("batch job: a value cannot be stored: {e}")))
}

/// An UpdateItem expression with numbered placeholders (several attribute names, such as
/// `status`, `key` and `size`, are DynamoDB reserved words).
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    sets: Vec<String>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((k, _)) = self.names.iter().find(|(_, v)| v.as_str() == attr) {
            return k.clone();
        }
        let k = format!("#n{}", self.names.len());
        self.names.insert(k.clone(), attr.to_owned());
        k
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let k = format!(":v{}", self.values.len());
        self.values.insert(k.clone(), v);
        k
    }

    fn set(&mut self, attr: &str, v: AttributeValue) {
        let n = self.name(attr);
        let v = self.value(v);
        self.sets.push(format!("{n} = {v}"));
    }

    fn set_with<T: Serialize + ?Sized>(&mut self, attr: &str, v: &T) -> Result<(), StoreError> {
        self.set(attr, value(v)?);
        Ok(())
    }
}

fn n(v: impl fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn parse_item(item: Item, key: &ItemKey) -> Result<JobState, StoreError> {
    let j: JobItem = serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| corrupt(key, e.to_string()))?;
    match j.status.as_str() {
        "completed" => return Ok(JobState::Completed),
        "failed" => {
            return Ok(JobState::Failed {
                error: j.error.unwrap_or_default(),
            })
        }
        "running" => {}
        other => {
            return Err(corrupt(
                key,
                format!("status {other:?} is not running, completed or failed"),
            ))
        }
    }
    let missing = |what: &str| corrupt(key, format!("a running job without {what}"));
    let thresholds = Thresholds::new(
        j.review_threshold.ok_or_else(|| missing("review_threshold"))?,
        j.block_threshold.ok_or_else(|| missing("block_threshold"))?,
    )
    .map_err(|e| corrupt(key, e.to_string()))?;
    Ok(JobState::Running(Box::new(BatchJob {
        object: ObjectRef {
            bucket: j.bucket,
            key: j.key,
            etag: j.etag,
        },
        size: j.size,
        feature_source: j.feature_source.ok_or_else(|| missing("feature_source"))?,
        model: PinnedModel {
            version: j.model_version.ok_or_else(|| missing("model_version"))?,
            object_key: j.model_object_key.ok_or_else(|| missing("model_object_key"))?,
        },
        thresholds,
        checkpoint: Checkpoint {
            seq: j.seq,
            results_rows_done: j.results_rows_done,
            errors_rows_done: j.errors_rows_done,
            next_line: j.next_line,
            reading_done: j.reading_done,
            results: Upload {
                upload_id: j.results_upload_id,
                parts: j.results_parts,
            },
            errors: Upload {
                upload_id: j.errors_upload_id,
                parts: j.errors_parts,
            },
            counts: j.counts,
            busy_ms: j.busy_ms,
        },
        lease_owner: j.lease_owner.unwrap_or_default(),
        lease_expires_at: j.lease_expires_at,
        invocations: j.invocations,
        started_at: Timestamp::parse("started_at", &j.started_at).map_err(|e| corrupt(key, e.to_string()))?,
    })))
}

impl DynamoStore {
    fn job_key(tenant: &TenantId, object: &ObjectRef) -> ItemKey {
        Keys::new(tenant).job(object)
    }

    /// The job over `object`, if one was ever started (strongly consistent).
    pub async fn batch_job(&self, tenant: &TenantId, object: &ObjectRef) -> Result<Option<JobState>, StoreError> {
        let key = Self::job_key(tenant, object);
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key_item(&key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.map(|item| parse_item(item, &key)).transpose()
    }

    /// Starts a job, leased to `job.lease_owner`. `false` when the job exists already.
    pub async fn create_batch_job(&self, tenant: &TenantId, job: &BatchJob) -> Result<bool, StoreError> {
        let key = Self::job_key(tenant, &job.object);
        let cp = &job.checkpoint;
        let now = Timestamp::now().to_rfc3339();
        let item = JobItem {
            pk: key.pk.clone(),
            sk: key.sk.clone(),
            kind: "job".into(),
            job_type: JOB_TYPE.into(),
            bucket: job.object.bucket.clone(),
            key: job.object.key.clone(),
            etag: job.object.etag.clone(),
            size: job.size,
            status: "running".into(),
            error: None,
            feature_source: Some(job.feature_source),
            model_version: Some(job.model.version.clone()),
            model_object_key: Some(job.model.object_key.clone()),
            review_threshold: Some(job.thresholds.review),
            block_threshold: Some(job.thresholds.block),
            seq: cp.seq,
            results_rows_done: cp.results_rows_done,
            errors_rows_done: cp.errors_rows_done,
            next_line: cp.next_line,
            reading_done: cp.reading_done,
            results_upload_id: cp.results.upload_id.clone(),
            results_parts: cp.results.parts.clone(),
            errors_upload_id: cp.errors.upload_id.clone(),
            errors_parts: cp.errors.parts.clone(),
            counts: cp.counts,
            busy_ms: cp.busy_ms,
            lease_owner: Some(job.lease_owner.clone()),
            lease_expires_at: job.lease_expires_at,
            invocations: job.invocations,
            started_at: job.started_at.to_rfc3339(),
            updated_at: now,
            completed_at: None,
            // Also a running job ages out: one abandoned mid-way is not kept forever.
            expires_at: Some(job.started_at.unix() + JOB_TTL_SECS),
        };
        let item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(&item)
            .map_err(|e| StoreError::Unavailable(format!("batch job {key}: cannot be stored: {e}")))?;
        let out = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    /// One conditional UpdateItem; `Ok(None)` when the condition failed.
    async fn update_job(
        &self,
        key: &ItemKey,
        mut e: Expr,
        condition: &str,
        op: &'static str,
    ) -> Result<Option<Item>, StoreError> {
        let now = Timestamp::now().to_rfc3339();
        e.set("updated_at", s(now));
        // The condition refers to attributes by name; map them through the same placeholders.
        let mut condition = condition.to_owned();
        for attr in ["status", "lease_owner", "lease_expires_at", "seq"] {
            let placeholder = format!("{{{attr}}}");
            if condition.contains(&placeholder) {
                let n = e.name(attr);
                condition = condition.replace(&placeholder, &n);
            }
        }
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key_item(key)))
            .update_expression(format!("SET {}", e.sets.join(", ")))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(err) if conditional_check_failed(&err) => Ok(None),
            Err(err) => Err(sdk_error(op, err)),
        }
    }

    /// Takes the lease of a running job when it is free, expired at `now` (epoch seconds), or
    /// already ours; counts the invocation. `Ok(None)` when another invocation holds it.
    pub async fn claim_batch_job(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &str,
        lease_expires_at: i64,
        now: i64,
    ) -> Result<Option<BatchJob>, StoreError> {
        let key = Self::job_key(tenant, object);
        let mut e = Expr::default();
        let me = e.value(s(owner));
        let running = e.value(s("running"));
        let now_v = e.value(n(now));
        let one = e.value(n(1));
        let inv = e.name("invocations");
        e.sets.push(format!("{inv} = {inv} + {one}"));
        e.set("lease_owner", s(owner));
        e.set("lease_expires_at", n(lease_expires_at));
        let condition =
            format!("{{status}} = {running} AND ({{lease_owner}} = {me} OR {{lease_expires_at}} <= {now_v})");
        match self.update_job(&key, e, &condition, "UpdateItem (claim)").await? {
            None => Ok(None),
            Some(item) => match parse_item(item, &key)? {
                JobState::Running(job) => Ok(Some(*job)),
                _ => Err(corrupt(&key, "claimed a job that is not running")),
            },
        }
    }

    /// Records progress after the parts of a checkpoint are uploaded, and renews the lease.
    /// `cp.seq` is the new sequence; the stored one must be `cp.seq - 1` and the lease ours.
    /// `false` when another invocation has taken the job over.
    pub async fn checkpoint_batch_job(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &str,
        cp: &Checkpoint,
        lease_expires_at: i64,
    ) -> Result<bool, StoreError> {
        let key = Self::job_key(tenant, object);
        let mut e = Expr::default();
        let me = e.value(s(owner));
        let running = e.value(s("running"));
        let expected = e.value(n(cp.seq.saturating_sub(1)));
        e.set("seq", n(cp.seq));
        e.set("results_rows_done", n(cp.results_rows_done));
        e.set("errors_rows_done", n(cp.errors_rows_done));
        e.set("next_line", n(cp.next_line));
        e.set("reading_done", AttributeValue::Bool(cp.reading_done));
        if let Some(id) = &cp.results.upload_id {
            e.set("results_upload_id", s(id));
        }
        e.set_with("results_parts", &cp.results.parts)?;
        if let Some(id) = &cp.errors.upload_id {
            e.set("errors_upload_id", s(id));
        }
        e.set_with("errors_parts", &cp.errors.parts)?;
        e.set_with("counts", &cp.counts)?;
        e.set("busy_ms", n(cp.busy_ms));
        e.set("lease_expires_at", n(lease_expires_at));
        let condition = format!("{{status}} = {running} AND {{lease_owner}} = {me} AND {{seq}} = {expected}");
        Ok(self
            .update_job(&key, e, &condition, "UpdateItem (checkpoint)")
            .await?
            .is_some())
    }

    /// Extends our lease without other progress. `false` when it is no longer ours.
    pub async fn renew_batch_lease(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &str,
        lease_expires_at: i64,
    ) -> Result<bool, StoreError> {
        let key = Self::job_key(tenant, object);
        let mut e = Expr::default();
        let me = e.value(s(owner));
        let running = e.value(s("running"));
        e.set("lease_expires_at", n(lease_expires_at));
        let condition = format!("{{status}} = {running} AND {{lease_owner}} = {me}");
        Ok(self
            .update_job(&key, e, &condition, "UpdateItem (lease)")
            .await?
            .is_some())
    }

    /// Lets the next invocation take the job at once (on a hand-over or a transient error).
    pub async fn release_batch_job(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &str,
    ) -> Result<(), StoreError> {
        let key = Self::job_key(tenant, object);
        let mut e = Expr::default();
        let me = e.value(s(owner));
        let running = e.value(s("running"));
        e.set("lease_expires_at", n(0));
        let condition = format!("{{status}} = {running} AND {{lease_owner}} = {me}");
        self.update_job(&key, e, &condition, "UpdateItem (release)").await?;
        Ok(())
    }

    /// Marks the job completed, with a TTL. `false` when the lease is not ours (any more).
    pub async fn complete_batch_job(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &str,
        completed_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = Self::job_key(tenant, object);
        let mut e = Expr::default();
        let me = e.value(s(owner));
        let running = e.value(s("running"));
        e.set("status", s("completed"));
        e.set("completed_at", s(completed_at.to_rfc3339()));
        e.set(TTL_ATTRIBUTE, n(completed_at.unix() + JOB_TTL_SECS));
        let condition = format!("{{status}} = {running} AND {{lease_owner}} = {me}");
        Ok(self
            .update_job(&key, e, &condition, "UpdateItem (complete)")
            .await?
            .is_some())
    }

    /// Records a job that cannot run (bad file type, bad metadata, no model), creating the item
    /// if needed. A completed job is left alone. Returns whether the failure was recorded.
    pub async fn fail_batch_job(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        size: u64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let key = Self::job_key(tenant, object);
        let now = Timestamp::now();
        let mut e = Expr::default();
        let running = e.value(s("running"));
        for (attr, v) in [
            ("kind", s("job")),
            ("job_type", s(JOB_TYPE)),
            ("bucket", s(&object.bucket)),
            ("key", s(&object.key)),
            ("etag", s(&object.etag)),
            ("size", n(size)),
            ("status", s("failed")),
            ("error", s(error)),
            ("completed_at", s(now.to_rfc3339())),
            (TTL_ATTRIBUTE, n(now.unix() + JOB_TTL_SECS)),
        ] {
            e.set(attr, v);
        }
        let started = e.name("started_at");
        let now_v = e.value(s(now.to_rfc3339()));
        e.sets.push(format!("{started} = if_not_exists({started}, {now_v})"));
        let condition = format!("attribute_not_exists(pk) OR {{status}} = {running}");
        Ok(self
            .update_job(&key, e, &condition, "UpdateItem (fail)")
            .await?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_keys_are_tenant_scoped_and_end_with_the_bare_etag() {
        let t = TenantId::parse("acme").unwrap();
        let k = Keys::new(&t).job(&ObjectRef::new("data", "batches/incoming/acme/a#b.csv", "\"abc-2\""));
        assert_eq!(k.pk, "T#acme#JOB#data/batches/incoming/acme/a#b.csv#abc-2");
        assert_eq!(k.sk, "JOB");
        assert_eq!(k.pk.rsplit_once('#').unwrap().1, "abc-2");
    }

    #[test]
    fn a_failed_item_parses_without_its_progress() {
        let key = ItemKey {
            pk: "p".into(),
            sk: "JOB".into(),
        };
        let mut item = key_item(&key);
        item.insert("status".into(), s("failed"));
        item.insert("error".into(), s("no model"));
        assert_eq!(
            parse_item(item.clone(), &key).unwrap(),
            JobState::Failed {
                error: "no model".into()
            }
        );
        item.insert("status".into(), s("running"));
        let err = parse_item(item.clone(), &key).unwrap_err();
        assert!(err.to_string().contains("without"), "{err}");
        item.insert("status".into(), s("paused"));
        assert!(matches!(parse_item(item, &key), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn expressions_number_their_placeholders() {
        let mut e = Expr::default();
        e.set("status", s("x"));
        e.set("size", n(3));
        let again = e.name("status");
        assert_eq!(again, "#n0");
        assert_eq!(e.sets, vec!["#n0 = :v0", "#n1 = :v1"]);
        assert_eq!(e.values.len(), 2);
    }
}
