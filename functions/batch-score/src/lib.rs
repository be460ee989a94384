//! batch-score: an upload to `batches/incoming/{tenant}/{name}.{csv|ndjson}[.gz]` (S3
//! ObjectCreated) becomes `batches/results/{tenant}/{name}.{csv|ndjson}`, `{name}.summary.json`
//! and `{name}.errors.csv`.
//!
//! This crate parses the trigger (an S3 event, or the `{"resume": {bucket, key, etag}}` payload it
//! sends itself to continue a job), calls the batch runner ([`verdict::app::batch`]: the lease
//! state machine, checkpoints, hand-over, completion, the rows and their stored aggregates) per
//! object and maps its outcome. The runner's platform (the scoring thread on tokio, the pinned
//! models) is [`verdict::adapters::batch`].

pub use verdict::adapters::LambdaReinvoker;
pub use verdict::app::batch::{ResumeRequest, Settings, Status};
pub use verdict::ports::reinvoke::{Reinvoke, ReinvokeError};

use aws_lambda_events::event::s3::S3Event;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;
use verdict::adapters::lambda::uploaded_object;
use verdict::adapters::{DynamoStore, ObjectStore, S3Blobs, TokioScoring, TokioSleep};
use verdict::app::batch::{BatchRunError, BatchRunner};
use verdict::app::scoring::Scorer;

/// Clients and caches, built once per container.
pub struct Deps<R> {
    pub store: DynamoStore,
    pub objects: ObjectStore,
    /// Loads and caches the pinned model from the model bucket.
    pub scorer: Scorer<DynamoStore, S3Blobs>,
    /// The scoring thread; the `stored` source reads the table.
    pub platform: TokioScoring<DynamoStore>,
    pub reinvoker: R,
    pub settings: Settings,
}

impl<R: Reinvoke> Deps<R> {
    pub fn new(store: DynamoStore, s3: aws_sdk_s3::Client, model_bucket: &str, reinvoker: R) -> Self {
        let blobs = S3Blobs::new(s3.clone(), model_bucket);
        Deps {
            scorer: Scorer::new(store.clone(), blobs, None),
            platform: TokioScoring::new(store.clone()),
            store,
            objects: ObjectStore::new(s3),
            reinvoker,
            settings: Settings::default(),
        }
    }
}

/// What the function is invoked with.
#[derive(Debug, Clone)]
pub enum Event {
    S3(S3Event),
    Resume(ResumeRequest),
}

impl Event {
    pub fn from_value(v: serde_json::Value) -> Result<Event, Error> {
        if v.get("resume").is_some() {
            serde_json::from_value(v)
                .map(Event::Resume)
                .map_err(|e| Error::BadEvent(format!("resume payload: {e}")))
        } else {
            serde_json::from_value(v)
                .map(Event::S3)
                .map_err(|e| Error::BadEvent(format!("S3 event: {e}")))
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Event::from_value(v).map_err(serde::de::Error::custom)
    }
}

/// What happened to each object of an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub objects: Vec<ObjectOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectOutcome {
    pub bucket: String,
    pub key: String,
    #[serde(flatten)]
    pub status: Status,
}

/// Failures that the invocation should be retried for (Lambda retries, then the DLQ).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the event is neither an S3 event nor a resume payload: {0}")]
    BadEvent(String),
    #[error(transparent)]
    Run(#[from] BatchRunError),
}

/// Handles one invocation. `deadline` is when Lambda stops it (tests pass their own).
pub async fn handle<R: Reinvoke>(deps: &Deps<R>, event: Event, deadline: SystemTime) -> Result<Outcome, Error> {
    let runner = BatchRunner {
        jobs: &deps.store,
        objects: &deps.objects,
        models: &deps.scorer,
        platform: &deps.platform,
        reinvoke: &deps.reinvoker,
        sleep: &TokioSleep,
        settings: &deps.settings,
    };
    let mut objects = Vec::new();
    match event {
        Event::Resume(r) => {
            let o = r.resume;
            let status = runner.process(&o.bucket, &o.key, Some(&o.etag), deadline).await?;
            objects.push(outcome(o.bucket, o.key, status));
        }
        Event::S3(e) => {
            for record in e.records {
                let created = record
                    .event_name
                    .as_deref()
                    .is_none_or(|n| n.starts_with("ObjectCreated"));
                let up = match uploaded_object(&record) {
                    Ok(up) => up,
                    Err((e, up)) => {
                        objects.push(outcome(up.bucket, up.key, Status::Skipped { reason: e.to_string() }));
                        continue;
                    }
                };
                let status = if !created || up.bucket.is_empty() {
                    let reason = format!("not an ObjectCreated record: {:?}", record.event_name);
                    Status::Skipped { reason }
                } else {
                    runner.process(&up.bucket, &up.key, up.etag(), deadline).await?
                };
                objects.push(outcome(up.bucket, up.key, status));
            }
        }
    }
    Ok(Outcome { objects })
}

fn outcome(bucket: String, key: String, status: Status) -> ObjectOutcome {
    if let Status::Skipped { reason } = &status {
        tracing::warn!(%bucket, %key, %reason, "not a batch job");
    }
    ObjectOutcome { bucket, key, status }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verdict::domain::batch::ObjectRef;

    #[test]
    fn events_are_s3_notifications_or_resume_payloads() {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../../events/s3/batch-upload.json")).unwrap();
        let Event::S3(e) = Event::from_value(v).unwrap() else {
            panic!("an S3 event")
        };
        assert_eq!(
            e.records[0].s3.object.key.as_deref(),
            Some("batches/incoming/demo/2018-08-08.csv")
        );

        let r = ResumeRequest {
            resume: ObjectRef {
                bucket: "b".into(),
                key: "batches/incoming/acme/x.csv".into(),
                etag: "e-2".into(),
            },
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"resume": {"bucket": "b", "key": "batches/incoming/acme/x.csv", "etag": "e-2"}})
        );
        let Event::Resume(back) = serde_json::from_value::<Event>(v).unwrap() else {
            panic!("a resume payload")
        };
        assert_eq!(back, r);
        for bad in [
            serde_json::json!({"resume": {}}),
            serde_json::json!({"Records": 5}),
            serde_json::json!("x"),
        ] {
            assert!(matches!(Event::from_value(bad), Err(Error::BadEvent(_))));
        }
    }

    #[test]
    fn outcomes_serialise_with_a_status_tag() {
        let o = ObjectOutcome {
            bucket: "b".into(),
            key: "k".into(),
            status: Status::HandedOver {
                results_rows_done: 10,
                next_line: 12,
            },
        };
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::json!({"bucket": "b", "key": "k", "status": "handed_over", "results_rows_done": 10, "next_line": 12})
        );
    }
}
