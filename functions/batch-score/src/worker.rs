//! The scoring thread: streams the object, scores it through `verdict::domain::batch::BatchScorer` and
//! sends each full part to the batch runner, which uploads and checkpoints it. This is the
//! runner's [`ScoringPlatform`] on tokio (`spawn_blocking`, a channel, the heartbeat timer), and
//! the `stored` feature source's parallel aggregate reads.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use verdict::adapters::DynamoStore;
use verdict::app::batch::{Scored, ScoringPlan, ScoringPlatform, ScoringRun, ScoringStop};
use verdict::domain::batch::{decoder, BatchScorer, Checkpoint, FeatureSource, Flush, LineTracker, StoredAggregates};
use verdict::domain::features::EntityAggregate;
use verdict::domain::io::{FileKind, RowError, TransactionReader};
use verdict::domain::model::Model;
use verdict::domain::policy::Policy;
use verdict::domain::{CustomerId, LabelledTransaction, TenantId, TerminalId};
use verdict::ports::objects::ReadFailure;
use verdict::ports::StoreError;

/// The runner's scoring threads, on the tokio runtime this is called from.
pub(crate) struct TokioScoring {
    pub store: DynamoStore,
    pub stored_chunk_rows: usize,
    pub aggregate_cache: usize,
}

/// Sets the flag when dropped, so the scoring thread stops when the run is dropped (the
/// invocation's future is dropped, or it returns early).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub(crate) struct TokioRun {
    rx: mpsc::Receiver<Flush>,
    worker: Option<tokio::task::JoinHandle<Result<(), WorkerError>>>,
    _stop: CancelOnDrop,
}

impl ScoringPlatform for TokioScoring {
    type Run = TokioRun;

    fn start<R: Read + Send + 'static>(&self, plan: ScoringPlan, reader: R, failure: ReadFailure) -> TokioRun {
        let (tx, rx) = mpsc::channel::<Flush>(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let plan = Plan {
            kind: plan.kind,
            model: plan.model,
            policy: plan.policy,
            source: plan.source,
            part_size: plan.part_size,
            checkpoint: plan.checkpoint,
            store: self.store.clone(),
            tenant: plan.tenant,
            handle: tokio::runtime::Handle::current(),
            stored_chunk_rows: self.stored_chunk_rows,
            aggregate_cache: self.aggregate_cache,
            file_name: plan.file_name,
        };
        let stop = cancel.clone();
        let worker = tokio::task::spawn_blocking(move || run(plan, reader, failure, tx, stop));
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
                Ok(Err(WorkerError::Read(reason))) => ScoringStop::Read(reason),
                Ok(Err(WorkerError::Store(e))) => ScoringStop::Store(e),
                Ok(Ok(())) => ScoringStop::Other("it ended without the last part".into()),
                Err(e) => ScoringStop::Other(e.to_string()),
            },
        };
        Scored::Stopped(stop)
    }
}

/// Aggregate keys per BatchGetItem, and BatchGetItems in flight.
const KEYS_PER_READ: usize = 100;
const READS_IN_FLIGHT: usize = 8;
/// Rows between looks at the cancel flag.
const CANCEL_CHECK_ROWS: u64 = 1024;

struct Plan {
    pub kind: FileKind,
    pub model: Arc<Model>,
    pub policy: Policy,
    pub source: FeatureSource,
    pub part_size: usize,
    pub checkpoint: Checkpoint,
    pub store: DynamoStore,
    pub tenant: TenantId,
    pub handle: tokio::runtime::Handle,
    pub stored_chunk_rows: usize,
    pub aggregate_cache: usize,
    pub file_name: String,
}

#[derive(Debug)]
enum WorkerError {
    /// The object could not be read (after retries): try the invocation again.
    Read(String),
    Store(StoreError),
}

type Item = (u64, Result<LabelledTransaction, RowError>);

/// Runs until the file ends (then sends the last flush), the receiver goes away, or `cancel`.
fn run<R: Read + Send + 'static>(
    plan: Plan,
    reader: R,
    failure: ReadFailure,
    tx: mpsc::Sender<Flush>,
    cancel: Arc<AtomicBool>,
) -> Result<(), WorkerError> {
    let line = Arc::new(AtomicU64::new(0));
    let input = LineTracker::new(decoder(plan.kind, reader), line.clone());
    let mut rows = TransactionReader::new(plan.file_name.clone(), plan.kind.format, input);
    let mut scorer = BatchScorer::new(
        plan.model.clone(),
        plan.policy.clone(),
        plan.kind.format,
        plan.source,
        plan.part_size,
        &plan.checkpoint,
    );
    let send = |f: Flush| tx.blocking_send(f).is_ok();
    match plan.source {
        FeatureSource::File => {
            for item in &mut rows {
                scorer.push(line.load(Ordering::Relaxed), item, None);
                if scorer.flush_due() && !send(scorer.take_flush(false)) {
                    return Ok(());
                }
                if scorer.row().is_multiple_of(CANCEL_CHECK_ROWS) && cancel.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
        }
        FeatureSource::Stored => {
            let mut cache = Cache::default();
            let mut chunk: Vec<Item> = Vec::with_capacity(plan.stored_chunk_rows);
            loop {
                chunk.clear();
                for item in rows.by_ref().take(plan.stored_chunk_rows) {
                    chunk.push((line.load(Ordering::Relaxed), item));
                }
                if chunk.is_empty() || cancel.load(Ordering::Relaxed) {
                    break;
                }
                let first = scorer.row();
                let wanted = chunk
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| first + *j as u64 >= plan.checkpoint.results_rows_done)
                    .filter_map(|(_, (_, item))| item.as_ref().ok());
                cache.load(&plan, wanted).map_err(WorkerError::Store)?;
                for (l, item) in chunk.drain(..) {
                    let aggs = item.as_ref().ok().map(|t| StoredAggregates {
                        customer: cache.customer(&t.tx.customer_id),
                        terminal: cache.terminal(&t.tx.terminal_id),
                    });
                    scorer.push(l, item, aggs);
                    if scorer.flush_due() && !send(scorer.take_flush(false)) {
                        return Ok(());
                    }
                }
            }
        }
    }
    if cancel.load(Ordering::Relaxed) {
        return Ok(());
    }
    if let Some(reason) = failure.get() {
        return Err(WorkerError::Read(reason));
    }
    send(scorer.take_flush(true));
    Ok(())
}

/// Stored aggregates by entity, read in bulk and kept for the job (bounded).
#[derive(Default)]
struct Cache {
    customers: HashMap<CustomerId, EntityAggregate>,
    terminals: HashMap<TerminalId, EntityAggregate>,
    empty: EntityAggregate,
}

impl Cache {
    fn customer(&self, c: &CustomerId) -> &EntityAggregate {
        self.customers.get(c).unwrap_or(&self.empty)
    }

    fn terminal(&self, t: &TerminalId) -> &EntityAggregate {
        self.terminals.get(t).unwrap_or(&self.empty)
    }

    /// Reads the aggregates of `rows`' entities that are not cached yet: BatchGetItems of up to
    /// 100 keys, several in flight. An entity with no item gets an empty aggregate.
    fn load<'a>(&mut self, plan: &Plan, rows: impl Iterator<Item = &'a LabelledTransaction>) -> Result<(), StoreError> {
        let mut customers = HashSet::new();
        let mut terminals = HashSet::new();
        for t in rows {
            if !self.customers.contains_key(&t.tx.customer_id) {
                customers.insert(t.tx.customer_id.clone());
            }
            if !self.terminals.contains_key(&t.tx.terminal_id) {
                terminals.insert(t.tx.terminal_id.clone());
            }
        }
        if customers.is_empty() && terminals.is_empty() {
            return Ok(());
        }
        if self.customers.len() + self.terminals.len() + customers.len() + terminals.len() > plan.aggregate_cache {
            self.customers.clear();
            self.terminals.clear();
        }
        // Groups of at most 100 keys, customers first.
        let keys: Vec<Result<CustomerId, TerminalId>> = customers
            .into_iter()
            .map(Ok)
            .chain(terminals.into_iter().map(Err))
            .collect();
        let groups: Vec<(Vec<CustomerId>, Vec<TerminalId>)> = keys
            .chunks(KEYS_PER_READ)
            .map(|g| {
                let cs = g.iter().filter_map(|k| k.as_ref().ok().cloned()).collect();
                let ts = g.iter().filter_map(|k| k.as_ref().err().cloned()).collect();
                (cs, ts)
            })
            .collect();
        for wave in groups.chunks(READS_IN_FLIGHT) {
            let found = plan.handle.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for (cs, ts) in wave.iter().cloned() {
                    let store = plan.store.clone();
                    let tenant = plan.tenant.clone();
                    set.spawn(async move {
                        let found = store.aggregates(&tenant, &cs, &ts).await;
                        found.map(|f| (cs, ts, f))
                    });
                }
                let mut all = Vec::new();
                while let Some(r) = set.join_next().await {
                    all.push(r.map_err(|e| StoreError::Unavailable(format!("aggregate read task: {e}")))??);
                }
                Ok::<_, StoreError>(all)
            })?;
            for (cs, ts, (mut by_c, mut by_t)) in found {
                for c in cs {
                    let agg = by_c.remove(&c).unwrap_or_default();
                    self.customers.insert(c, agg);
                }
                for t in ts {
                    let agg = by_t.remove(&t).unwrap_or_default();
                    self.terminals.insert(t, agg);
                }
            }
        }
        Ok(())
    }
}
