//! Job items of the labels and model-import functions: claim, checkpoint, finish, release.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobProgress {
    /// The first input line not yet processed (1-based; the CSV header is line 1).
    pub next_line: u64,
    /// Byte offset of `next_line` in the object.
    pub next_offset: u64,
    /// The CSV header, so a ranged resume can parse rows.
    pub header: Option<String>,
    pub counts: BTreeMap<String, u64>,
    /// How many error-report chunks ([`Keys::job_errors`]) are stored.
    pub error_chunks: u32,
}

/// A job item as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub job_type: String,
    pub status: JobStatus,
    pub progress: JobProgress,
    pub invocations: u64,
    pub started_at: String,
    /// What the job produced, as JSON (set on completion).
    pub result: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: i64,
}

/// The answer to [`DynamoStore::claim_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobClaim {
    /// This invocation now holds the lease; resume from the state.
    Claimed(JobState),
    /// Finished earlier (completed or failed): nothing to do.
    Done(JobState),
    /// Another invocation holds an unexpired lease.
    Busy { lease_expires_at: i64 },
}

/// How long a finished job's item (and its error chunks) is kept.
pub const JOB_TTL_SECS: i64 = 30 * 24 * 3600;

pub(super) fn parse_job(item: &Item, key: &ItemKey) -> Result<JobState, StoreError> {
    let status = match get_s(item, "status", key)? {
        "running" => JobStatus::Running,
        "completed" => JobStatus::Completed,
        "failed" => JobStatus::Failed,
        other => {
            return Err(corrupt(
                key,
                format!("status {other:?} is not running, completed or failed"),
            ))
        }
    };
    let mut counts = BTreeMap::new();
    match item.get("counts") {
        None => {}
        Some(AttributeValue::M(m)) => {
            for (k, v) in m {
                let AttributeValue::N(raw) = v else {
                    return Err(corrupt(key, format!("counts.{k} is not a number")));
                };
                counts.insert(
                    k.clone(),
                    raw.parse()
                        .map_err(|e| corrupt(key, format!("counts.{k} = {raw:?}: {e}")))?,
                );
            }
        }
        Some(_) => return Err(corrupt(key, "counts is not a map")),
    }
    Ok(JobState {
        job_type: get_s(item, "job_type", key)?.to_owned(),
        status,
        progress: JobProgress {
            next_line: get_n_opt(item, "next_line", key)?.unwrap_or(1),
            next_offset: get_n_opt(item, "next_offset", key)?.unwrap_or(0),
            header: get_s_opt(item, "header", key)?.map(str::to_owned),
            counts,
            error_chunks: get_n_opt(item, "error_chunks", key)?.unwrap_or(0),
        },
        invocations: get_n_opt(item, "invocations", key)?.unwrap_or(0),
        started_at: get_s_opt(item, "started_at", key)?.unwrap_or_default().to_owned(),
        result: get_s_opt(item, "result", key)?.map(str::to_owned),
        lease_owner: get_s_opt(item, "lease_owner", key)?.map(str::to_owned),
        lease_expires_at: get_n_opt(item, "lease_expires_at", key)?.unwrap_or(0),
    })
}

pub(super) fn counts_value(counts: &BTreeMap<String, u64>) -> AttributeValue {
    AttributeValue::M(counts.iter().map(|(k, v)| (k.clone(), n(v))).collect())
}

impl DynamoStore {
    /// The job item, if any.
    pub async fn job(&self, tenant: &TenantId, job: &ObjectRef) -> Result<Option<JobState>, StoreError> {
        let key = Keys::new(tenant).job(job);
        self.get(&key).await?.map(|item| parse_job(&item, &key)).transpose()
    }

    /// Starts a job or takes over its lease. `owner` is the invocation (its request id).
    pub async fn claim_job(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        job_type: &str,
        size: Option<i64>,
        owner: &str,
        lease_secs: i64,
    ) -> Result<JobClaim, StoreError> {
        let key = Keys::new(tenant).job(job);
        let now = Timestamp::now();
        let lease_until = now.unix() + lease_secs;
        let mut item = key.to_item();
        for (k, v) in [
            ("kind", "job"),
            ("job_type", job_type),
            ("bucket", job.bucket.as_str()),
            ("key", job.key.as_str()),
            ("etag", job.etag.as_str()),
            ("status", JobStatus::Running.as_str()),
            ("lease_owner", owner),
        ] {
            item.insert(k.into(), s(v));
        }
        let started = now.to_rfc3339();
        item.insert("started_at".into(), s(&started));
        item.insert("updated_at".into(), s(&started));
        item.insert("next_line".into(), n(1));
        item.insert("next_offset".into(), n(0));
        item.insert("error_chunks".into(), n(0));
        item.insert("invocations".into(), n(1));
        item.insert("counts".into(), AttributeValue::M(HashMap::new()));
        item.insert("lease_expires_at".into(), n(lease_until));
        // Also a running job ages out: one abandoned mid-way is not kept forever.
        item.insert(TTL_ATTRIBUTE.into(), n(now.unix() + JOB_TTL_SECS));
        if let Some(size) = size {
            item.insert("size".into(), n(size));
        }
        let fresh = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match fresh {
            Ok(_) => return Ok(JobClaim::Claimed(parse_job(&item, &key)?)),
            Err(e) if is_conditional_check_failed(&e) => {}
            Err(e) => return Err(sdk_error("PutItem (claim job)", e)),
        }
        let took = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(
                "SET lease_owner = :me, lease_expires_at = :until, updated_at = :now_s ADD invocations :one",
            )
            .condition_expression(
                "#st = :running AND (lease_owner = :me OR lease_expires_at < :now OR attribute_not_exists(lease_owner))",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":until", n(lease_until))
            .expression_attribute_values(":now", n(now.unix()))
            .expression_attribute_values(":now_s", s(now.to_rfc3339()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match took {
            Ok(out) => Ok(JobClaim::Claimed(parse_job(&out.attributes.unwrap_or_default(), &key)?)),
            Err(e) if is_conditional_check_failed(&e) => {
                let state = self
                    .job(tenant, job)
                    .await?
                    .ok_or_else(|| corrupt(&key, "the job item vanished while being claimed"))?;
                Ok(match state.status {
                    JobStatus::Running => JobClaim::Busy {
                        lease_expires_at: state.lease_expires_at,
                    },
                    _ => JobClaim::Done(state),
                })
            }
            Err(e) => Err(sdk_error("UpdateItem (take over job)", e)),
        }
    }

    /// Records progress and renews the lease, if this invocation still holds it and nobody moved
    /// the job since `expected_next_line`. Returns false when the lease was lost.
    pub async fn checkpoint_job(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        owner: &str,
        expected_next_line: u64,
        progress: &JobProgress,
        lease_secs: i64,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Keys::new(tenant).job(job).to_item()))
            .condition_expression("lease_owner = :me AND next_line = :expected")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":expected", n(expected_next_line))
            .expression_attribute_values(":line", n(progress.next_line))
            .expression_attribute_values(":offset", n(progress.next_offset))
            .expression_attribute_values(":counts", counts_value(&progress.counts))
            .expression_attribute_values(":chunks", n(progress.error_chunks))
            .expression_attribute_values(":until", n(now.unix() + lease_secs))
            .expression_attribute_values(":now", s(now.to_rfc3339()));
        let mut set = "SET next_line = :line, next_offset = :offset, counts = :counts, error_chunks = :chunks, \
                       lease_expires_at = :until, updated_at = :now"
            .to_owned();
        if let Some(h) = &progress.header {
            set.push_str(", header = :header");
            req = req.expression_attribute_values(":header", s(h));
        }
        match req.update_expression(set).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error("UpdateItem (checkpoint job)", e)),
        }
    }

    /// Ends a job (completed or failed) with its result JSON; the item then expires.
    pub async fn finish_job(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        owner: &str,
        status: JobStatus,
        progress: &JobProgress,
        result: &str,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Keys::new(tenant).job(job).to_item()))
            .update_expression(
                "SET #st = :status, next_line = :line, next_offset = :offset, counts = :counts, \
                 error_chunks = :chunks, #result = :result, completed_at = :now, updated_at = :now, \
                 #exp = :exp REMOVE lease_owner, lease_expires_at",
            )
            .condition_expression("lease_owner = :me")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#result", "result")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":line", n(progress.next_line))
            .expression_attribute_values(":offset", n(progress.next_offset))
            .expression_attribute_values(":counts", counts_value(&progress.counts))
            .expression_attribute_values(":chunks", n(progress.error_chunks))
            .expression_attribute_values(":result", s(result))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":exp", n(now.unix() + JOB_TTL_SECS))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error("UpdateItem (finish job)", e)),
        }
    }

    /// Gives the lease up (before a hand-over or after an error), so the next invocation need
    /// not wait for it to expire.
    pub async fn release_job(&self, tenant: &TenantId, job: &ObjectRef, owner: &str) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Keys::new(tenant).job(job).to_item()))
            .update_expression("SET lease_expires_at = :zero")
            .condition_expression("lease_owner = :me")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error("UpdateItem (release job)", e)),
        }
    }

    /// Stores chunk `seq` of a job's error report (rewriting it is harmless: same rows, same text).
    pub async fn put_job_errors(
        &self,
        tenant: &TenantId,
        job: &ObjectRef,
        seq: u32,
        text: &str,
    ) -> Result<(), StoreError> {
        let mut item = Keys::new(tenant).job_errors(job, seq).to_item();
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

    pub async fn job_errors(&self, tenant: &TenantId, job: &ObjectRef, seq: u32) -> Result<Option<String>, StoreError> {
        let key = Keys::new(tenant).job_errors(job, seq);
        match self.get(&key).await? {
            Some(item) => Ok(Some(get_s(&item, "text", &key)?.to_owned())),
            None => Ok(None),
        }
    }
}
