//! [`JobStore`] in memory, for the services' unit tests. Progress goes through JSON, as the
//! real store's goes through its item, so what does not round-trip fails here too.

use crate::domain::{JobStatus, ObjectRef, TenantId, Timestamp};
use crate::ports::jobs::{Claim, Job, JobEnd, JobStore, JobType, LeaseOwner, NewJob};
use crate::ports::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone)]
struct Stored {
    job: Job<serde_json::Value>,
}

#[derive(Debug, Default)]
pub struct InMemoryJobs {
    jobs: Mutex<HashMap<(String, ObjectRef), Stored>>,
    reports: Mutex<HashMap<(String, ObjectRef, u32), String>>,
}

fn key(tenant: &TenantId, object: &ObjectRef) -> (String, ObjectRef) {
    (
        tenant.to_string(),
        ObjectRef::new(&object.bucket, &object.key, &object.etag),
    )
}

fn encode<P: Serialize>(p: &P) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(p).map_err(|e| StoreError::Rejected(format!("job progress cannot be stored: {e}")))
}

fn decode<P: DeserializeOwned>(job: &Job<serde_json::Value>) -> Result<Job<P>, StoreError> {
    let progress = match (&job.progress, job.status) {
        (Some(v), JobStatus::Running) => Some(serde_json::from_value(v.clone()).map_err(|e| StoreError::Corrupt {
            key: job.object.uri(),
            reason: e.to_string(),
        })?),
        _ => None,
    };
    Ok(Job {
        object: job.object.clone(),
        job_type: job.job_type,
        size: job.size,
        status: job.status,
        progress,
        error: job.error.clone(),
        result: job.result.clone(),
        lease_owner: job.lease_owner.clone(),
        lease_expires_at: job.lease_expires_at,
        seq: job.seq,
        invocations: job.invocations,
        started_at: job.started_at,
    })
}

impl InMemoryJobs {
    fn with<T>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        f: impl FnOnce(Option<&mut Stored>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut jobs = self
            .jobs
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))?;
        f(jobs.get_mut(&key(tenant, object)))
    }

    /// Test hook: a lease as a crashed holder leaves it, still held until `expires_at`.
    pub fn set_lease(&self, tenant: &TenantId, object: &ObjectRef, owner: &str, expires_at: i64) {
        let _ = self.with(tenant, object, |s| {
            if let Some(s) = s {
                s.job.lease_owner = Some(owner.to_owned());
                s.job.lease_expires_at = expires_at;
            }
            Ok(())
        });
    }
}

impl JobStore for InMemoryJobs {
    async fn read_job<P: DeserializeOwned + Send>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
    ) -> Result<Option<Job<P>>, StoreError> {
        self.with(tenant, object, |s| s.map(|s| decode(&s.job)).transpose())
    }

    async fn create_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        job: &NewJob<'_, P>,
    ) -> Result<bool, StoreError> {
        let progress = encode(job.progress)?;
        let mut jobs = self
            .jobs
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))?;
        let k = key(tenant, job.object);
        if jobs.contains_key(&k) {
            return Ok(false);
        }
        jobs.insert(
            k.clone(),
            Stored {
                job: Job {
                    object: k.1,
                    job_type: job.job_type,
                    size: job.size,
                    status: JobStatus::Running,
                    progress: Some(progress),
                    error: None,
                    result: None,
                    lease_owner: Some(job.owner.to_string()),
                    lease_expires_at: job.lease_expires_at,
                    seq: 0,
                    invocations: 1,
                    started_at: job.started_at,
                },
            },
        );
        Ok(true)
    }

    async fn claim_job<P: DeserializeOwned + Send>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        lease_expires_at: i64,
        now: i64,
    ) -> Result<Claim<P>, StoreError> {
        self.with(tenant, object, |s| {
            let Some(s) = s else { return Ok(Claim::Missing) };
            if s.job.status != JobStatus::Running {
                return Ok(Claim::Ended(decode(&s.job)?));
            }
            if !s.job.lease_free_for(owner, now) {
                return Ok(Claim::Busy {
                    lease_expires_at: s.job.lease_expires_at,
                });
            }
            s.job.lease_owner = Some(owner.to_string());
            s.job.lease_expires_at = lease_expires_at;
            s.job.invocations += 1;
            Ok(Claim::Claimed(decode(&s.job)?))
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
        let progress = encode(progress)?;
        self.with(tenant, object, |s| {
            let Some(s) = s.filter(|s| held(&s.job, owner) && s.job.seq == seq) else {
                return Ok(false);
            };
            s.job.progress = Some(progress);
            s.job.seq += 1;
            s.job.lease_expires_at = lease_expires_at;
            Ok(true)
        })
    }

    async fn renew_lease(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        lease_expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.with(tenant, object, |s| {
            let Some(s) = s.filter(|s| held(&s.job, owner)) else {
                return Ok(false);
            };
            s.job.lease_expires_at = lease_expires_at;
            Ok(true)
        })
    }

    async fn release_job(&self, tenant: &TenantId, object: &ObjectRef, owner: &LeaseOwner) -> Result<(), StoreError> {
        self.with(tenant, object, |s| {
            if let Some(s) = s.filter(|s| held(&s.job, owner)) {
                s.job.lease_expires_at = 0;
            }
            Ok(())
        })
    }

    async fn finish_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        end: &JobEnd,
        progress: Option<&P>,
        _at: Timestamp,
    ) -> Result<bool, StoreError> {
        let progress = progress.map(encode).transpose()?;
        self.with(tenant, object, |s| {
            let Some(s) = s.filter(|s| held(&s.job, owner)) else {
                return Ok(false);
            };
            end_job(&mut s.job, end);
            if progress.is_some() {
                s.job.progress = progress;
            }
            Ok(true)
        })
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
        let mut jobs = self
            .jobs
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))?;
        let k = key(tenant, object);
        if jobs.contains_key(&k) {
            return Ok(false);
        }
        let mut job = Job {
            object: k.1.clone(),
            job_type,
            size,
            status: JobStatus::Running,
            progress: None,
            error: None,
            result: None,
            lease_owner: None,
            lease_expires_at: 0,
            seq: 0,
            invocations: 0,
            started_at: at,
        };
        end_job(&mut job, end);
        jobs.insert(k, Stored { job });
        Ok(true)
    }

    async fn put_report_chunk(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        seq: u32,
        text: &str,
    ) -> Result<(), StoreError> {
        let (t, o) = key(tenant, object);
        self.reports
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))?
            .insert((t, o, seq), text.to_owned());
        Ok(())
    }

    async fn report_chunk(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        seq: u32,
    ) -> Result<Option<String>, StoreError> {
        let (t, o) = key(tenant, object);
        Ok(self
            .reports
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))?
            .get(&(t, o, seq))
            .cloned())
    }
}

fn held(job: &Job<serde_json::Value>, owner: &LeaseOwner) -> bool {
    job.status == JobStatus::Running && job.lease_owner.as_deref() == Some(owner.as_str())
}

fn end_job(job: &mut Job<serde_json::Value>, end: &JobEnd) {
    job.status = end.status();
    job.error = end.error().map(str::to_owned);
    job.result = end.result().map(str::to_owned);
    job.lease_owner = None;
    job.lease_expires_at = 0;
}
