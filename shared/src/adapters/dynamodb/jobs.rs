//! Job items (docs/dynamodb.md, "Job checkpoint"): the one [`JobStore`] of batch-score, labels
//! and model-import, each call one GetItem, PutItem or conditional UpdateItem on
//! `T#<t>#JOB#<bucket>/<key>#<etag>`.
//!
//! The common attributes (status, lease, sequence, result) are this module's; the job kind's
//! progress is the serde_dynamo form of its payload type, stored flat beside them.

use super::*;
pub use crate::ports::jobs::JOB_TTL_SECS;
use crate::ports::jobs::{Claim, Job, JobEnd, JobStore, JobType, LeaseOwner, NewJob};
use serde::de::DeserializeOwned;

/// Attributes the store owns; a payload must not use these names.
const COMMON: [&str; 20] = [
    PK,
    SK,
    "kind",
    "job_type",
    "bucket",
    "key",
    "etag",
    "size",
    "status",
    "error",
    "result",
    "lease_owner",
    "lease_expires_at",
    "write_id",
    "seq",
    "invocations",
    "started_at",
    "updated_at",
    "completed_at",
    TTL_ATTRIBUTE,
];

fn status_str(s: JobStatus) -> &'static str {
    s.as_str()
}

fn progress_item<P: Serialize>(key: &ItemKey, progress: &P) -> Result<Item, StoreError> {
    let item: Item = serde_dynamo::aws_sdk_dynamodb_1::to_item(progress)
        .map_err(|e| StoreError::Rejected(format!("job {key}: its progress cannot be stored: {e}")))?;
    if let Some(clash) = item.keys().find(|k| COMMON.contains(&k.as_str())) {
        return Err(StoreError::Rejected(format!(
            "job {key}: progress attribute {clash:?} is one the job store owns"
        )));
    }
    Ok(item)
}

fn parse_job<P: DeserializeOwned>(item: Item, key: &ItemKey) -> Result<Job<P>, StoreError> {
    let status: JobStatus = match item.get("status") {
        Some(v) => serde_dynamo::aws_sdk_dynamodb_1::from_attribute_value(v.clone())
            .map_err(|_| corrupt(key, format!("status {v:?} is not running, completed or failed")))?,
        None => return Err(corrupt(key, "status is missing")),
    };
    let job_type: JobType = match item.get("job_type") {
        Some(v) => serde_dynamo::aws_sdk_dynamodb_1::from_attribute_value(v.clone()).map_err(|_| {
            corrupt(
                key,
                format!("job_type {v:?} is not batch, labels, model, list_import or backtest"),
            )
        })?,
        None => return Err(corrupt(key, "job_type is missing")),
    };
    let progress = match status {
        JobStatus::Running => Some(
            serde_dynamo::aws_sdk_dynamodb_1::from_item(item.clone())
                .map_err(|e| corrupt(key, format!("a running job's progress: {e}")))?,
        ),
        _ => None,
    };
    Ok(Job {
        object: ObjectRef::new(
            get_s(&item, "bucket", key)?,
            get_s(&item, "key", key)?,
            get_s(&item, "etag", key)?,
        ),
        job_type,
        size: get_n_opt(&item, "size", key)?,
        status,
        progress,
        error: get_s_opt(&item, "error", key)?.map(str::to_owned),
        result: get_s_opt(&item, "result", key)?.map(str::to_owned),
        lease_owner: get_s_opt(&item, "lease_owner", key)?.map(str::to_owned),
        lease_expires_at: get_n_opt(&item, "lease_expires_at", key)?.unwrap_or(0),
        seq: get_n_opt(&item, "seq", key)?.unwrap_or(0),
        invocations: get_n_opt(&item, "invocations", key)?.unwrap_or(0),
        started_at: get_timestamp(&item, "started_at", key)?,
    })
}

/// The identifying attributes every job item has.
fn identity(key: &ItemKey, object: &ObjectRef, job_type: JobType, size: Option<u64>) -> Item {
    let mut item = key.to_item();
    item.insert("kind".into(), s("job"));
    item.insert("job_type".into(), s(job_type.as_str()));
    item.insert("bucket".into(), s(&object.bucket));
    item.insert("key".into(), s(&object.key));
    item.insert("etag".into(), s(&object.etag));
    if let Some(size) = size {
        item.insert("size".into(), n(size));
    }
    item
}

/// An UpdateItem expression with numbered placeholders (several attribute names, such as
/// `status`, `key` and `size`, are DynamoDB reserved words).
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    sets: Vec<String>,
    removes: Vec<String>,
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

    fn remove(&mut self, attr: &str) {
        let n = self.name(attr);
        self.removes.push(n);
    }

    fn expression(&self) -> String {
        let mut e = String::new();
        if !self.sets.is_empty() {
            e.push_str("SET ");
            e.push_str(&self.sets.join(", "));
        }
        if !self.removes.is_empty() {
            e.push_str(" REMOVE ");
            e.push_str(&self.removes.join(", "));
        }
        e
    }

    /// `status = running AND lease_owner = :owner`: the lease holder's condition.
    fn held_by(&mut self, owner: &LeaseOwner) -> String {
        let (st, lo) = (self.name("status"), self.name("lease_owner"));
        let (running, me) = (
            self.value(s(status_str(JobStatus::Running))),
            self.value(s(owner.as_str())),
        );
        format!("{st} = {running} AND {lo} = {me}")
    }
}

impl DynamoStore {
    /// One conditional UpdateItem; `Ok(None)` when the condition failed.
    async fn update_job(
        &self,
        key: &ItemKey,
        mut e: Expr,
        condition: String,
        op: &'static str,
    ) -> Result<Option<Item>, StoreError> {
        e.set("updated_at", s(Timestamp::now().to_rfc3339()));
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(e.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(err) if is_conditional_check_failed(&err) => Ok(None),
            Err(err) => Err(sdk_error(op, err)),
        }
    }

    /// After a failed condition: whether the item already shows this very update. The SDK
    /// retries an attempt whose answer was lost (a timeout, a reset) and UpdateItem has no
    /// idempotency token, so the retry of an applied update fails on the state it wrote itself;
    /// taking that for a lost lease would stop the job with nobody left to resume it.
    async fn shows_own_update(&self, key: &ItemKey, own: impl Fn(&Item) -> bool) -> Result<bool, StoreError> {
        Ok(self.get(key).await?.is_some_and(|item| own(&item)))
    }
}

fn attr_is(item: &Item, name: &str, want: &AttributeValue) -> bool {
    item.get(name) == Some(want)
}

/// A random id that only this one call's write carries (see `shows_own_update`).
fn fresh_write_id() -> AttributeValue {
    s(format!("{:016x}", rand::random::<u64>()))
}

impl JobStore for DynamoStore {
    async fn read_job<P: DeserializeOwned + Send>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
    ) -> Result<Option<Job<P>>, StoreError> {
        let key = Keys::new(tenant).job(object);
        self.get(&key).await?.map(|item| parse_job(item, &key)).transpose()
    }

    async fn create_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        job: &NewJob<'_, P>,
    ) -> Result<bool, StoreError> {
        let key = Keys::new(tenant).job(job.object);
        let mut item = progress_item(&key, job.progress)?;
        item.extend(identity(&key, job.object, job.job_type, job.size));
        let started = job.started_at.to_rfc3339();
        item.insert("status".into(), s(status_str(JobStatus::Running)));
        item.insert("lease_owner".into(), s(job.owner.as_str()));
        item.insert("lease_expires_at".into(), n(job.lease_expires_at));
        item.insert("seq".into(), n(0));
        item.insert("invocations".into(), n(1));
        item.insert("started_at".into(), s(&started));
        item.insert("updated_at".into(), s(&started));
        // Also a running job ages out: one abandoned mid-way is not kept forever.
        item.insert(TTL_ATTRIBUTE.into(), n(job.started_at.unix() + JOB_TTL_SECS));
        self.put_item_if_absent(item, "PutItem (create job)").await
    }

    async fn claim_job<P: DeserializeOwned + Send>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        lease_expires_at: i64,
        now: i64,
    ) -> Result<Claim<P>, StoreError> {
        let key = Keys::new(tenant).job(object);
        let mut e = Expr::default();
        let (st, lo, le, inv) = (
            e.name("status"),
            e.name("lease_owner"),
            e.name("lease_expires_at"),
            e.name("invocations"),
        );
        let (running, me, now_v, one) = (
            e.value(s(status_str(JobStatus::Running))),
            e.value(s(owner.as_str())),
            e.value(n(now)),
            e.value(n(1)),
        );
        e.sets.push(format!("{inv} = if_not_exists({inv}, :zero) + {one}"));
        e.values.insert(":zero".into(), n(0));
        e.set("lease_owner", s(owner.as_str()));
        e.set("lease_expires_at", n(lease_expires_at));
        let condition = format!("{st} = {running} AND ({lo} = {me} OR {le} <= {now_v})");
        if let Some(item) = self.update_job(&key, e, condition, "UpdateItem (claim job)").await? {
            return Ok(Claim::Claimed(parse_job(item, &key)?));
        }
        Ok(match self.read_job::<P>(tenant, object).await? {
            None => Claim::Missing,
            Some(job) if job.status == JobStatus::Running => Claim::Busy {
                lease_expires_at: job.lease_expires_at,
            },
            Some(job) => Claim::Ended(job),
        })
    }

    async fn checkpoint_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        seq: u64,
        progress: &P,
        lease_expires_at: i64,
    ) -> Result<bool, StoreError> {
        let key = Keys::new(tenant).job(object);
        let mut e = Expr::default();
        for (attr, v) in progress_item(&key, progress)? {
            e.set(&attr, v);
        }
        e.set("seq", n(seq + 1));
        e.set("lease_expires_at", n(lease_expires_at));
        let write_id = fresh_write_id();
        e.set("write_id", write_id.clone());
        let held = e.held_by(owner);
        let seq_n = e.name("seq");
        let seen = e.value(n(seq));
        // Items written before the sequence was common have none: that is sequence 0.
        let at_seq = if seq == 0 {
            format!("({seq_n} = {seen} OR attribute_not_exists({seq_n}))")
        } else {
            format!("{seq_n} = {seen}")
        };
        let condition = format!("{held} AND {at_seq}");
        if self
            .update_job(&key, e, condition, "UpdateItem (checkpoint job)")
            .await?
            .is_some()
        {
            return Ok(true);
        }
        self.shows_own_update(&key, |item| attr_is(item, "write_id", &write_id))
            .await
    }

    async fn renew_lease(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        lease_expires_at: i64,
    ) -> Result<bool, StoreError> {
        let key = Keys::new(tenant).job(object);
        let mut e = Expr::default();
        e.set("lease_expires_at", n(lease_expires_at));
        let condition = e.held_by(owner);
        Ok(self
            .update_job(&key, e, condition, "UpdateItem (renew lease)")
            .await?
            .is_some())
    }

    async fn release_job(&self, tenant: &TenantId, object: &ObjectRef, owner: &LeaseOwner) -> Result<(), StoreError> {
        let key = Keys::new(tenant).job(object);
        let mut e = Expr::default();
        e.set("lease_expires_at", n(0));
        let condition = e.held_by(owner);
        self.update_job(&key, e, condition, "UpdateItem (release job)").await?;
        Ok(())
    }

    async fn finish_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        end: &JobEnd,
        progress: Option<&P>,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = Keys::new(tenant).job(object);
        let mut e = Expr::default();
        if let Some(p) = progress {
            for (attr, v) in progress_item(&key, p)? {
                e.set(&attr, v);
            }
        }
        // The condition's placeholders first: `status` is both read and written.
        let condition = e.held_by(owner);
        e.set("status", s(status_str(end.status())));
        if let Some(error) = end.error() {
            e.set("error", s(error));
        }
        if let Some(result) = end.result() {
            e.set("result", s(result));
        }
        e.set("completed_at", s(at.to_rfc3339()));
        e.set(TTL_ATTRIBUTE, n(at.unix() + JOB_TTL_SECS));
        let write_id = fresh_write_id();
        e.set("write_id", write_id.clone());
        e.remove("lease_owner");
        e.remove("lease_expires_at");
        if self
            .update_job(&key, e, condition, "UpdateItem (finish job)")
            .await?
            .is_some()
        {
            return Ok(true);
        }
        self.shows_own_update(&key, |item| attr_is(item, "write_id", &write_id))
            .await
    }

    async fn record_job_end(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        job_type: JobType,
        size: Option<u64>,
        end: &JobEnd,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = Keys::new(tenant).job(object);
        let mut item = identity(&key, object, job_type, size);
        let at_s = at.to_rfc3339();
        item.insert("status".into(), s(status_str(end.status())));
        if let Some(error) = end.error() {
            item.insert("error".into(), s(error));
        }
        if let Some(result) = end.result() {
            item.insert("result".into(), s(result));
        }
        for attr in ["started_at", "updated_at", "completed_at"] {
            item.insert(attr.into(), s(&at_s));
        }
        item.insert(TTL_ATTRIBUTE.into(), n(at.unix() + JOB_TTL_SECS));
        self.put_item_if_absent(item, "PutItem (record job end)").await
    }

    async fn put_report_chunk(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        seq: u32,
        text: &str,
    ) -> Result<(), StoreError> {
        let mut item = Keys::new(tenant).job_errors(object, seq).to_item();
        item.insert("kind".into(), s("job_errors"));
        item.insert("text".into(), s(text));
        item.insert(TTL_ATTRIBUTE.into(), n(Timestamp::now().unix() + JOB_TTL_SECS));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem (job errors)", e))?;
        Ok(())
    }

    async fn report_chunk(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        seq: u32,
    ) -> Result<Option<String>, StoreError> {
        let key = Keys::new(tenant).job_errors(object, seq);
        match self.get(&key).await? {
            Some(item) => Ok(Some(get_s(&item, "text", &key)?.to_owned())),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod job_tests {
    use super::*;
    use crate::domain::batch::{BatchProgress, Checkpoint, FeatureSource, PartRef, PinnedModel, Upload};

    #[test]
    fn job_keys_are_tenant_scoped_and_end_with_the_bare_etag() {
        let t = TenantId::parse("acme").unwrap();
        let k = Keys::new(&t).job(&ObjectRef::new("data", "batches/incoming/acme/a#b.csv", "\"abc-2\""));
        assert_eq!(k.pk, "T#acme#JOB#data/batches/incoming/acme/a#b.csv#abc-2");
        assert_eq!(k.sk, "JOB");
    }

    #[test]
    fn batch_progress_is_stored_flat_under_the_documented_names_and_reads_back() {
        let key = ItemKey::new("p".into(), "JOB");
        let progress = BatchProgress {
            feature_source: FeatureSource::Stored,
            model: PinnedModel {
                version: "v1".into(),
                object_key: "models/active/acme/v1.vmodel".into(),
            },
            thresholds: Thresholds::new(0.3, 0.8).unwrap(),
            ruleset: Some(3),
            checkpoint: Checkpoint {
                results_rows_done: 7,
                next_line: 9,
                results: Upload {
                    upload_id: Some("u-1".into()),
                    parts: vec![PartRef {
                        part_number: 1,
                        etag: "\"p1\"".into(),
                    }],
                },
                ..Checkpoint::default()
            },
        };
        let mut item = progress_item(&key, &progress).unwrap();
        for attr in [
            "feature_source",
            "model_version",
            "model_object_key",
            "review_threshold",
            "block_threshold",
            "results_rows_done",
            "errors_rows_done",
            "next_line",
            "reading_done",
            "results_upload_id",
            "results_parts",
            "errors_parts",
            "counts",
            "busy_ms",
        ] {
            assert!(item.contains_key(attr), "{attr} in {item:?}");
        }
        assert!(!item.contains_key("errors_upload_id"), "absent until its first part");
        item.extend(identity(&key, &ObjectRef::new("b", "k", "e"), JobType::Batch, Some(3)));
        item.insert("status".into(), s("running"));
        item.insert("started_at".into(), s("2026-01-01T00:00:00Z"));
        let job: Job<BatchProgress> = parse_job(item.clone(), &key).unwrap();
        assert_eq!(job.progress, Some(progress));
        assert_eq!((job.job_type, job.size, job.seq), (JobType::Batch, Some(3), 0));

        // Bad stored values are reported by key, not panicked on.
        item.insert("review_threshold".into(), n(0.9));
        let err = parse_job::<BatchProgress>(item.clone(), &key).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        item.insert("status".into(), s("paused"));
        assert!(matches!(
            parse_job::<BatchProgress>(item, &key),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_ended_job_parses_without_its_progress() {
        let key = ItemKey::new("p".into(), "JOB");
        let mut item = identity(&key, &ObjectRef::new("b", "k", "e"), JobType::Batch, None);
        item.insert("status".into(), s("failed"));
        item.insert("error".into(), s("no model"));
        item.insert("started_at".into(), s("2026-01-01T00:00:00Z"));
        let job: Job<BatchProgress> = parse_job(item, &key).unwrap();
        assert_eq!(
            (job.status, job.error.as_deref(), job.progress),
            (JobStatus::Failed, Some("no model"), None)
        );
    }

    #[test]
    fn a_payload_cannot_overwrite_the_lease() {
        #[derive(Serialize)]
        struct Sneaky {
            lease_owner: String,
        }
        let key = ItemKey::new("p".into(), "JOB");
        assert!(progress_item(
            &key,
            &Sneaky {
                lease_owner: "me".into()
            }
        )
        .is_err());
    }

    #[test]
    fn expressions_number_their_placeholders() {
        let mut e = Expr::default();
        e.set("status", s("x"));
        e.set("size", n(3));
        e.remove("lease_owner");
        assert_eq!(e.name("status"), "#n0");
        assert_eq!(e.expression(), "SET #n0 = :v0, #n1 = :v1 REMOVE #n2");
    }
}
