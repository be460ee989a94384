//! The job store's contract: the lease rules ([`crate::ports::jobs`]) as one test body, run
//! against [`InMemoryJobs`](crate::ports::in_memory::InMemoryJobs) and against the DynamoDB
//! adapter on moto. It panics on the first broken rule.

use crate::domain::{JobStatus, ObjectRef, TenantId, Timestamp};
use crate::ports::jobs::{Claim, JobEnd, JobStore, JobType, LeaseOwner, NewJob};
use serde::{Deserialize, Serialize};

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
