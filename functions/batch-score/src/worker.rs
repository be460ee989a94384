//! The scoring thread: streams the object, scores it through `verdict::domain::batch::BatchScorer` and
//! sends each full part to the async side, which uploads and checkpoints it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use verdict::adapters::s3::ObjectReader;
use verdict::adapters::DynamoStore;
use verdict::domain::batch::{decoder, BatchScorer, Checkpoint, FeatureSource, Flush, LineTracker, StoredAggregates};
use verdict::domain::features::EntityAggregate;
use verdict::domain::io::{FileKind, RowError, TransactionReader};
use verdict::domain::model::Model;
use verdict::domain::policy::{Policy, Thresholds};
use verdict::domain::{CustomerId, LabelledTransaction, TenantId, TerminalId};
use verdict::ports::StoreError;

/// Aggregate keys per BatchGetItem, and BatchGetItems in flight.
const KEYS_PER_READ: usize = 100;
const READS_IN_FLIGHT: usize = 8;
/// Rows between looks at the cancel flag.
const CANCEL_CHECK_ROWS: u64 = 1024;

pub(crate) struct Plan {
    pub kind: FileKind,
    pub model: Arc<Model>,
    pub thresholds: Thresholds,
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
pub(crate) enum WorkerError {
    /// The object could not be read (after retries): try the invocation again.
    Read(String),
    Store(StoreError),
}

type Item = (u64, Result<LabelledTransaction, RowError>);

/// Runs until the file ends (then sends the last flush), the receiver goes away, or `cancel`.
pub(crate) fn run(
    plan: Plan,
    reader: ObjectReader,
    tx: mpsc::Sender<Flush>,
    cancel: Arc<AtomicBool>,
) -> Result<(), WorkerError> {
    let failure = reader.failure();
    let line = Arc::new(AtomicU64::new(0));
    let input = LineTracker::new(decoder(plan.kind, reader), line.clone());
    let mut rows = TransactionReader::new(plan.file_name.clone(), plan.kind.format, input);
    let mut scorer = BatchScorer::new(
        plan.model.clone(),
        Policy::thresholds(plan.thresholds),
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
