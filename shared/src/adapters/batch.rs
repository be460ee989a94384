//! The batch runner's platform on tokio and AWS: the scoring thread ([`TokioScoring`]:
//! `spawn_blocking`, a channel of flushes, the heartbeat, stopping when dropped) and the models a
//! job pins (the scorer over DynamoDB and the model bucket as [`BatchModels`]). What the thread
//! does is [`crate::app::batch::score_rows`].

use crate::adapters::{DynamoStore, S3Blobs};
use crate::app::batch::{
    score_rows, BatchModels, Scored, ScoringPlan, ScoringPlatform, ScoringRun, ScoringStop, ScoringThread,
};
use crate::app::policy_cache::{RulesUnavailable, TenantRules};
use crate::app::scoring::{ScoreError, Scorer};
use crate::domain::batch::Flush;
use crate::domain::model::Model;
use crate::domain::TenantId;
use crate::ports::objects::ReadFailure;
use crate::ports::rules::{TenantPolicy, TenantPolicyRead};
use crate::ports::{ActiveModel, AggregateReads, DecisionStore, StoreError};
use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The runner's scoring threads, on the tokio runtime `start` is called from; the `stored`
/// source reads through `aggregates`.
#[derive(Debug, Clone)]
pub struct TokioScoring<A> {
    aggregates: A,
}

impl<A> TokioScoring<A> {
    pub fn new(aggregates: A) -> Self {
        TokioScoring { aggregates }
    }
}

/// Sets the flag when dropped, so the scoring thread stops when the run is dropped (the
/// invocation's future is dropped, or it returns early).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub struct TokioRun {
    rx: mpsc::Receiver<Flush>,
    worker: Option<tokio::task::JoinHandle<Result<(), ScoringStop>>>,
    _stop: CancelOnDrop,
}

/// The blocking thread's side: the channel's sender, the cancel flag, the runtime to read on.
struct TokioThread {
    tx: mpsc::Sender<Flush>,
    cancel: Arc<AtomicBool>,
    handle: tokio::runtime::Handle,
}

impl ScoringThread for TokioThread {
    fn send(&mut self, flush: Flush) -> bool {
        self.tx.blocking_send(flush).is_ok()
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }
}

impl<A: AggregateReads + Clone + 'static> ScoringPlatform for TokioScoring<A> {
    type Run = TokioRun;

    fn start<R: Read + Send + 'static>(&self, plan: ScoringPlan, reader: R, failure: ReadFailure) -> TokioRun {
        let (tx, rx) = mpsc::channel::<Flush>(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let mut thread = TokioThread {
            tx,
            cancel: cancel.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        let aggregates = self.aggregates.clone();
        let worker = tokio::task::spawn_blocking(move || score_rows(plan, reader, failure, &aggregates, &mut thread));
        TokioRun {
            rx,
            worker: Some(worker),
            _stop: CancelOnDrop(cancel),
        }
    }
}

impl ScoringRun for TokioRun {
    async fn next(&mut self, heartbeat: Duration) -> Scored {
        let flush = if heartbeat.is_zero() {
            self.rx.recv().await
        } else {
            tokio::select! {
                f = self.rx.recv() => f,
                _ = tokio::time::sleep(heartbeat) => return Scored::Tick,
            }
        };
        if let Some(f) = flush {
            return Scored::Flush(f);
        }
        self.rx.close();
        let stop = match self.worker.take() {
            None => ScoringStop::Other("it has stopped already".into()),
            Some(worker) => match worker.await {
                Ok(Err(stop)) => stop,
                Ok(Ok(())) => ScoringStop::Other("it ended without the last part".into()),
                Err(e) => ScoringStop::Other(e.to_string()),
            },
        };
        Scored::Stopped(stop)
    }
}

/// The model and thresholds a new job pins, from the table, and the pinned model loaded from the
/// model bucket through the scorer's cache.
impl BatchModels for Scorer<DynamoStore, S3Blobs> {
    async fn active_model(&self, tenant: &TenantId) -> Result<Option<ActiveModel>, StoreError> {
        self.store.active_model(tenant).await
    }

    async fn tenant_policy(&self, tenant: &TenantId) -> Result<TenantPolicy, StoreError> {
        self.store.tenant_policy(tenant).await
    }

    async fn rules(&self, tenant: &TenantId, version: u32) -> Result<Option<TenantRules>, RulesUnavailable> {
        self.policies.pinned(&self.store, tenant, version).await
    }

    async fn load(&self, model: &ActiveModel) -> Result<Arc<Model>, ScoreError> {
        self.model_for(Some(model)).await
    }
}
