//! Job leases: one job per S3 object version (batch-score, labels, model-import), worked on by
//! one invocation at a time under a lease, checkpointed, handed over, finished.
//!
//! The job kind's progress is the type parameter `P` (the batch checkpoint, the label file's
//! position): the store keeps its serde form beside the common attributes and hands it back.
//!
//! The rules, the same in every implementation (the [`contract`] checks them):
//! - a job is created once (`attribute_not_exists`), leased to its creator;
//! - a running job's lease is taken by its holder again, or by anyone once
//!   `lease_expires_at <= now` (a released lease is 0);
//! - a checkpoint needs the lease AND the sequence the caller last saw, and bumps it, so two
//!   invocations can never both advance a job;
//! - renew, release and finish need the lease and a running job; an ended job never changes.

use crate::domain::{JobStatus, ObjectRef, TenantId, Timestamp};
use crate::ports::StoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;

/// How long a job's item (and its report chunks) is kept after it ends, and while it runs
/// after its start (so an abandoned one ages out).
pub const JOB_TTL_SECS: i64 = 30 * 24 * 3600;

/// Which function's job an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    Batch,
    Labels,
    Model,
}

impl JobType {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobType::Batch => "batch",
            JobType::Labels => "labels",
            JobType::Model => "model",
        }
    }
}

/// Who holds a lease: one id per invocation, never shared with a retry of the same event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner(String);

impl LeaseOwner {
    /// A fresh random 16-hex-digit id.
    pub fn fresh() -> Self {
        LeaseOwner(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Job<P> {
    pub object: ObjectRef,
    pub job_type: JobType,
    pub size: Option<u64>,
    pub status: JobStatus,
    /// Where a running job got; `None` once it ended (an ended job's progress is not read).
    pub progress: Option<P>,
    /// A failed job: why.
    pub error: Option<String>,
    /// An ended job: what it produced, as JSON (a summary, an outcome).
    pub result: Option<String>,
    /// The holder while running; `None` once ended.
    pub lease_owner: Option<String>,
    /// Epoch seconds; anyone may take the lease from then on.
    pub lease_expires_at: i64,
    /// The checkpoint sequence: +1 on each checkpoint.
    pub seq: u64,
    /// How many invocations have held the job.
    pub invocations: u64,
    pub started_at: Timestamp,
}

impl<P> Job<P> {
    /// Whether `owner` may take the lease at `now` (epoch seconds).
    pub fn lease_free_for(&self, owner: &LeaseOwner, now: i64) -> bool {
        self.status == JobStatus::Running
            && (self.lease_owner.as_deref() == Some(owner.as_str()) || self.lease_expires_at <= now)
    }
}

/// A job to start, leased to its creator.
#[derive(Debug, Clone)]
pub struct NewJob<'a, P> {
    pub object: &'a ObjectRef,
    pub job_type: JobType,
    pub size: Option<u64>,
    pub owner: &'a LeaseOwner,
    pub lease_expires_at: i64,
    pub started_at: Timestamp,
    pub progress: &'a P,
}

/// The answer to [`JobStore::claim_job`].
#[derive(Debug, Clone, PartialEq)]
pub enum Claim<P> {
    /// The caller holds the lease now; resume from the job.
    Claimed(Job<P>),
    /// It ended earlier (completed or failed): nothing to do.
    Ended(Job<P>),
    /// Another invocation holds an unexpired lease.
    Busy { lease_expires_at: i64 },
    /// There is no such job.
    Missing,
}

/// How a job ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    Completed { result: Option<String> },
    Failed { error: String, result: Option<String> },
}

impl JobEnd {
    pub fn status(&self) -> JobStatus {
        match self {
            JobEnd::Completed { .. } => JobStatus::Completed,
            JobEnd::Failed { .. } => JobStatus::Failed,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            JobEnd::Completed { .. } => None,
            JobEnd::Failed { error, .. } => Some(error),
        }
    }

    pub fn result(&self) -> Option<&str> {
        match self {
            JobEnd::Completed { result } | JobEnd::Failed { result, .. } => result.as_deref(),
        }
    }
}

/// Job items with their leases. Every method takes the tenant; keys are scoped in one place.
/// Lease times are epoch seconds given by the caller.
pub trait JobStore: Send + Sync {
    /// The job, if one was ever started (strongly consistent).
    fn read_job<P: DeserializeOwned + Send>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Option<Job<P>>, StoreError>> + Send;

    /// Starts a job leased to `job.owner`. `false` when it exists already.
    fn create_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        job: &NewJob<'_, P>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes the lease of a running job that is ours or free at `now`; counts the invocation.
    fn claim_job<P: DeserializeOwned + Send>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        lease_expires_at: i64,
        now: i64,
    ) -> impl Future<Output = Result<Claim<P>, StoreError>> + Send;

    /// Records progress and renews the lease, if the job runs, the lease is `owner`'s and its
    /// sequence is still `seq`; the sequence becomes `seq + 1`. `false` when it was not.
    #[allow(clippy::too_many_arguments)]
    fn checkpoint_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        seq: u64,
        progress: &P,
        lease_expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Extends `owner`'s lease of a running job. `false` when it is not `owner`'s.
    fn renew_lease(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        lease_expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Lets the next invocation take the job at once (a hand-over, a transient error). Does
    /// nothing when the lease is not `owner`'s.
    fn release_job(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends `owner`'s running job, with its last progress if given; the item then expires
    /// [`JOB_TTL_SECS`] after `at`. `false` when the lease is not `owner`'s (any more).
    fn finish_job<P: Serialize + Sync>(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        owner: &LeaseOwner,
        end: &JobEnd,
        progress: Option<&P>,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a job that ended without ever running (a file that cannot be a job). `false`
    /// when a job exists already.
    fn record_job_end(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        job_type: JobType,
        size: Option<u64>,
        end: &JobEnd,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores chunk `seq` of a job's error report (rewriting one is harmless).
    fn put_report_chunk(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        seq: u32,
        text: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn report_chunk(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        seq: u32,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

pub mod memory {
    //! [`JobStore`] in memory, for the services' unit tests. Progress goes through JSON, as the
    //! real store's goes through its item, so what does not round-trip fails here too.

    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Debug, Clone)]
    struct Stored {
        job: Job<serde_json::Value>,
    }

    #[derive(Debug, Default)]
    pub struct MemoryJobs {
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
        serde_json::to_value(p).map_err(|e| StoreError::Unavailable(format!("job progress cannot be stored: {e}")))
    }

    fn decode<P: DeserializeOwned>(job: &Job<serde_json::Value>) -> Result<Job<P>, StoreError> {
        let progress = match (&job.progress, job.status) {
            (Some(v), JobStatus::Running) => {
                Some(serde_json::from_value(v.clone()).map_err(|e| StoreError::Corrupt {
                    key: job.object.uri(),
                    reason: e.to_string(),
                })?)
            }
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

    impl MemoryJobs {
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

    impl JobStore for MemoryJobs {
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

        async fn release_job(
            &self,
            tenant: &TenantId,
            object: &ObjectRef,
            owner: &LeaseOwner,
        ) -> Result<(), StoreError> {
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
}

pub mod contract {
    //! The lease rules as one test body, run against [`super::memory::MemoryJobs`] (unit tests)
    //! and against the DynamoDB adapter on moto (tests/tests/store.rs), so the fake cannot drift.
    //! It panics on the first broken rule.

    use super::*;

    /// A payload with the shapes progress has: a number, an optional string, a map.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub struct Progress {
        pub next_line: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub header: Option<String>,
        #[serde(default)]
        pub counts: std::collections::BTreeMap<String, u64>,
    }

    /// Runs every rule on jobs over `bucket` (objects named `<prefix>…`, fresh per run).
    pub async fn lease_rules<J: JobStore>(store: &J, tenant: &TenantId, bucket: &str, prefix: &str) {
        let object = ObjectRef::new(bucket, format!("{prefix}/a.csv"), "\"e-1\"");
        let (a, b) = (LeaseOwner::fresh(), LeaseOwner::fresh());
        let now = Timestamp::now();
        let t = now.unix();
        assert_eq!(store.read_job::<Progress>(tenant, &object).await.unwrap(), None);
        assert_eq!(
            store
                .claim_job::<Progress>(tenant, &object, &a, t + 60, t)
                .await
                .unwrap(),
            Claim::Missing
        );
        let first = Progress {
            next_line: 1,
            ..Progress::default()
        };
        let new = NewJob {
            object: &object,
            job_type: JobType::Labels,
            size: Some(42),
            owner: &a,
            lease_expires_at: t + 60,
            started_at: now,
            progress: &first,
        };
        assert!(store.create_job(tenant, &new).await.unwrap(), "created");
        assert!(!store.create_job(tenant, &new).await.unwrap(), "created once");
        let job = store.read_job::<Progress>(tenant, &object).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.progress.as_ref(), Some(&first));
        assert_eq!((job.seq, job.invocations, job.size), (0, 1, Some(42)));
        assert_eq!(job.lease_owner.as_deref(), Some(a.as_str()));
        assert_eq!(job.started_at.to_rfc3339(), now.to_rfc3339());

        // Held: b is refused, a may claim again.
        assert_eq!(
            store
                .claim_job::<Progress>(tenant, &object, &b, t + 60, t)
                .await
                .unwrap(),
            Claim::Busy {
                lease_expires_at: t + 60
            }
        );
        let Claim::Claimed(again) = store
            .claim_job::<Progress>(tenant, &object, &a, t + 61, t)
            .await
            .unwrap()
        else {
            panic!("the holder claims again")
        };
        assert_eq!(again.invocations, 2);

        // Checkpoints: the holder's, at the sequence it saw; each bumps it.
        let mut second = first.clone();
        second.next_line = 5;
        second.header = Some("a,b".into());
        second.counts.insert("applied".into(), 3);
        assert!(
            !store
                .checkpoint_job(tenant, &object, &b, 0, &second, t + 60)
                .await
                .unwrap(),
            "not b's"
        );
        assert!(
            !store
                .checkpoint_job(tenant, &object, &a, 1, &second, t + 60)
                .await
                .unwrap(),
            "stale seq"
        );
        assert!(store
            .checkpoint_job(tenant, &object, &a, 0, &second, t + 90)
            .await
            .unwrap());
        assert!(
            !store
                .checkpoint_job(tenant, &object, &a, 0, &second, t + 90)
                .await
                .unwrap(),
            "seq moved"
        );
        let job = store.read_job::<Progress>(tenant, &object).await.unwrap().unwrap();
        assert_eq!((job.seq, job.lease_expires_at), (1, t + 90));
        assert_eq!(job.progress.as_ref(), Some(&second));
        assert!(!store.renew_lease(tenant, &object, &b, t + 100).await.unwrap());
        assert!(store.renew_lease(tenant, &object, &a, t + 100).await.unwrap());

        // Expired at `now` (<=): b takes over, and a has lost it.
        let Claim::Claimed(taken) = store
            .claim_job::<Progress>(tenant, &object, &b, t + 160, t + 100)
            .await
            .unwrap()
        else {
            panic!("an expired lease is taken over")
        };
        assert_eq!((taken.seq, taken.invocations), (1, 3));
        assert_eq!(taken.progress.as_ref(), Some(&second));
        assert!(
            !store
                .checkpoint_job(tenant, &object, &a, 1, &first, t + 200)
                .await
                .unwrap(),
            "a lost it"
        );
        assert!(!store.renew_lease(tenant, &object, &a, t + 200).await.unwrap());
        let end = JobEnd::Completed { result: None };
        assert!(!store
            .finish_job(tenant, &object, &a, &end, Some(&first), now)
            .await
            .unwrap());
        store.release_job(tenant, &object, &a).await.unwrap();
        let job = store.read_job::<Progress>(tenant, &object).await.unwrap().unwrap();
        assert_eq!(
            (job.lease_owner.as_deref(), job.lease_expires_at),
            (Some(b.as_str()), t + 160),
            "a's release is a no-op"
        );

        // Released: anyone may take it at once.
        store.release_job(tenant, &object, &b).await.unwrap();
        let Claim::Claimed(back) = store
            .claim_job::<Progress>(tenant, &object, &a, t + 60, t)
            .await
            .unwrap()
        else {
            panic!("a released lease is free")
        };
        assert_eq!(back.invocations, 4);

        // Finished: by the holder only, once; then nothing changes it.
        let end = JobEnd::Failed {
            error: "stopped".into(),
            result: Some("{\"x\":1}".into()),
        };
        assert!(!store
            .finish_job(tenant, &object, &b, &end, Some(&second), now)
            .await
            .unwrap());
        assert!(store
            .finish_job(tenant, &object, &a, &end, Some(&second), now)
            .await
            .unwrap());
        assert!(!store
            .finish_job(tenant, &object, &a, &end, Some(&second), now)
            .await
            .unwrap());
        let job = store.read_job::<Progress>(tenant, &object).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert_eq!(
            (job.error.as_deref(), job.result.as_deref()),
            (Some("stopped"), Some("{\"x\":1}"))
        );
        assert_eq!((job.progress, job.lease_owner), (None, None));
        match store
            .claim_job::<Progress>(tenant, &object, &b, t + 60, t + 1000)
            .await
            .unwrap()
        {
            Claim::Ended(j) => assert_eq!(j.status, JobStatus::Failed),
            other => panic!("an ended job is not claimed: {other:?}"),
        }
        assert!(!store.checkpoint_job(tenant, &object, &a, 1, &second, t).await.unwrap());
        assert!(!store.renew_lease(tenant, &object, &a, t).await.unwrap());
        assert!(!store
            .record_job_end(tenant, &object, JobType::Labels, None, &end, now)
            .await
            .unwrap());

        // A job that never ran; and report chunks.
        let never = ObjectRef::new(bucket, format!("{prefix}/b.txt"), "e-2");
        let refused = JobEnd::Failed {
            error: "unknown file type".into(),
            result: None,
        };
        assert!(store
            .record_job_end(tenant, &never, JobType::Batch, Some(3), &refused, now)
            .await
            .unwrap());
        let job = store.read_job::<Progress>(tenant, &never).await.unwrap().unwrap();
        assert_eq!(
            (job.status, job.job_type, job.size),
            (JobStatus::Failed, JobType::Batch, Some(3))
        );
        assert_eq!(job.error.as_deref(), Some("unknown file type"));
        assert!(!store
            .create_job(
                tenant,
                &NewJob {
                    object: &never,
                    ..new.clone()
                }
            )
            .await
            .unwrap());

        // Model import's record of an object: a completed end with its result; the first stands.
        let imported = ObjectRef::new(bucket, format!("{prefix}/m.txt"), "e-3");
        let outcome = |text: &str| JobEnd::Completed {
            result: Some(text.to_owned()),
        };
        assert!(store
            .record_job_end(tenant, &imported, JobType::Model, None, &outcome("first"), now)
            .await
            .unwrap());
        assert!(!store
            .record_job_end(tenant, &imported, JobType::Model, None, &outcome("second"), now)
            .await
            .unwrap());
        let job = store.read_job::<Progress>(tenant, &imported).await.unwrap().unwrap();
        assert_eq!(
            (job.status, job.job_type, job.size, job.result.as_deref()),
            (JobStatus::Completed, JobType::Model, None, Some("first"))
        );
        assert_eq!(store.report_chunk(tenant, &object, 0).await.unwrap(), None);
        store.put_report_chunk(tenant, &object, 0, "1,x\n").await.unwrap();
        store.put_report_chunk(tenant, &object, 1, "2,y\n").await.unwrap();
        assert_eq!(
            store.report_chunk(tenant, &object, 1).await.unwrap().as_deref(),
            Some("2,y\n")
        );

        // Another tenant's job over the same object is another job.
        let other = TenantId::parse(&format!("{tenant}-other")).unwrap();
        assert_eq!(store.read_job::<Progress>(&other, &object).await.unwrap(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll, Waker};

    /// The fake's futures never wait, so polling once finishes them.
    fn now_or_never<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the in-memory store never waits"),
        }
    }

    #[test]
    fn the_in_memory_store_keeps_the_lease_rules() {
        let store = memory::MemoryJobs::default();
        let tenant = TenantId::parse("acme").unwrap();
        now_or_never(contract::lease_rules(&store, &tenant, "data", "labels/incoming/acme"));
    }
}
