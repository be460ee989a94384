//! [`LabelStore`] and [`LabelReading`] in memory, for the label applier's unit tests. The
//! store keeps DynamoDB's rules: the conditional label write, `ADD f<day>` on each listed
//! aggregate, an aggregate's newest day being the newest day it holds.

use crate::domain::labels::{open_reader, LabelChunk, StoredLabel};
use crate::domain::{CustomerId, TenantId, TerminalId, TransactionId};
use crate::ports::labels::{
    LabelChunks, LabelReading, LabelStore, LabelTarget, LabelWrite, LabelWriteOutcome, NewestDays, ReadPlan,
};
use crate::ports::StoreError;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Entity {
    Customer(CustomerId),
    Terminal(TerminalId),
}

#[derive(Debug, Default)]
pub struct InMemoryLabels {
    decisions: Mutex<HashMap<(String, TransactionId), LabelTarget>>,
    /// Per aggregate: the days it holds, with their fraud counts.
    days: Mutex<HashMap<(String, Entity), BTreeMap<i32, i64>>>,
    /// A write another labeller gets in just before the next one.
    race: Mutex<Option<(String, TransactionId, StoredLabel, i64)>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("poisoned".into())
}

impl InMemoryLabels {
    /// A decision as the api stores it (its aggregates get its day, as the commit's delta).
    pub fn add_decision(&self, tenant: &TenantId, id: &TransactionId, target: LabelTarget) {
        let day = target.occurred_at.epoch_day();
        let mut days = self.days.lock().unwrap();
        days.entry((tenant.to_string(), Entity::Customer(target.customer_id.clone())))
            .or_default()
            .entry(day)
            .or_insert(0);
        if let Some(t) = &target.terminal_id {
            days.entry((tenant.to_string(), Entity::Terminal(t.clone())))
                .or_default()
                .entry(day)
                .or_insert(0);
        }
        self.decisions
            .lock()
            .unwrap()
            .insert((tenant.to_string(), id.clone()), target);
    }

    /// Test hook: the customer's aggregate holds `day` (later payments moved its window).
    pub fn touch_customer_day(&self, tenant: &TenantId, customer: &CustomerId, day: i32) {
        self.days
            .lock()
            .unwrap()
            .entry((tenant.to_string(), Entity::Customer(customer.clone())))
            .or_default()
            .entry(day)
            .or_insert(0);
    }

    /// Test hook: just before the next label write, another labeller sets `label` on `id`
    /// (moving its aggregates' fraud counts by `fraud_delta`): a race the caller lost.
    pub fn race_next_write(&self, tenant: &TenantId, id: &TransactionId, label: StoredLabel, fraud_delta: i64) {
        *self.race.lock().unwrap() = Some((tenant.to_string(), id.clone(), label, fraud_delta));
    }

    pub fn label(&self, tenant: &TenantId, id: &TransactionId) -> Option<StoredLabel> {
        self.decisions
            .lock()
            .unwrap()
            .get(&(tenant.to_string(), id.clone()))
            .and_then(|t| t.label.clone())
    }

    fn frauds(&self, tenant: &TenantId, e: Entity) -> BTreeMap<i32, i64> {
        self.days
            .lock()
            .unwrap()
            .get(&(tenant.to_string(), e))
            .map(|d| d.iter().filter(|(_, f)| **f != 0).map(|(d, f)| (*d, *f)).collect())
            .unwrap_or_default()
    }

    /// The customer's non-zero fraud counters by day.
    pub fn customer_frauds(&self, tenant: &TenantId, c: &CustomerId) -> BTreeMap<i32, i64> {
        self.frauds(tenant, Entity::Customer(c.clone()))
    }

    pub fn terminal_frauds(&self, tenant: &TenantId, t: &TerminalId) -> BTreeMap<i32, i64> {
        self.frauds(tenant, Entity::Terminal(t.clone()))
    }
}

fn same(a: &StoredLabel, b: &StoredLabel) -> bool {
    a.value == b.value && a.labelled_at == b.labelled_at
}

impl LabelStore for InMemoryLabels {
    async fn label_targets(
        &self,
        tenant: &TenantId,
        ids: &[TransactionId],
    ) -> Result<HashMap<TransactionId, LabelTarget>, StoreError> {
        let d = self.decisions.lock().map_err(poisoned)?;
        Ok(ids
            .iter()
            .filter_map(|id| {
                d.get(&(tenant.to_string(), id.clone()))
                    .map(|t| (id.clone(), t.clone()))
            })
            .collect())
    }

    async fn newest_days(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> Result<NewestDays, StoreError> {
        let days = self.days.lock().map_err(poisoned)?;
        let newest = |e: Entity| {
            days.get(&(tenant.to_string(), e))
                .and_then(|d| d.keys().next_back().copied())
        };
        Ok(NewestDays {
            customers: customers
                .iter()
                .filter_map(|c| newest(Entity::Customer(c.clone())).map(|d| (c.clone(), d)))
                .collect(),
            terminals: terminals
                .iter()
                .filter_map(|t| newest(Entity::Terminal(t.clone())).map(|d| (t.clone(), d)))
                .collect(),
        })
    }

    async fn write_label(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        w: &LabelWrite<'_>,
    ) -> Result<LabelWriteOutcome, StoreError> {
        let mut decisions = self.decisions.lock().map_err(poisoned)?;
        let race = self.race.lock().map_err(poisoned)?.take();
        if let Some((t, rid, label, delta)) = race {
            if let Some(target) = decisions.get_mut(&(t.clone(), rid)) {
                target.label = Some(label);
                let day = target.occurred_at.epoch_day();
                let mut days = self.days.lock().map_err(poisoned)?;
                let entities = [Entity::Customer(target.customer_id.clone())]
                    .into_iter()
                    .chain(target.terminal_id.clone().map(Entity::Terminal));
                for e in entities {
                    *days.entry((t.clone(), e)).or_default().entry(day).or_insert(0) += delta;
                }
            }
        }
        let Some(target) = decisions.get_mut(&(tenant.to_string(), id.clone())) else {
            return Ok(LabelWriteOutcome::Changed);
        };
        let holds = match (&target.label, w.previous) {
            (None, None) => true,
            (Some(now), Some(p)) => same(now, p),
            _ => false,
        };
        if !holds {
            return Ok(LabelWriteOutcome::Changed);
        }
        target.label = Some(w.label.clone());
        if w.fraud_delta != 0 {
            let mut days = self.days.lock().map_err(poisoned)?;
            let entities = w
                .customer
                .map(|c| Entity::Customer(c.clone()))
                .into_iter()
                .chain(w.terminal.map(|t| Entity::Terminal(t.clone())));
            for e in entities {
                *days
                    .entry((tenant.to_string(), e))
                    .or_default()
                    .entry(w.day)
                    .or_insert(0) += w.fraud_delta;
            }
        }
        Ok(LabelWriteOutcome::Written)
    }
}

/// Parses a whole file at once when started, and records where each read started.
#[derive(Debug, Default)]
pub struct InlineReading {
    /// `(offset, next_line)` of every start.
    starts: Mutex<Vec<(u64, u64)>>,
}

impl InlineReading {
    pub fn starts(&self) -> Vec<(u64, u64)> {
        self.starts.lock().unwrap().clone()
    }
}

/// A file's chunks, all read when started.
pub struct MemoryChunks(VecDeque<LabelChunk>);

impl LabelChunks for MemoryChunks {
    async fn next(&mut self) -> Option<LabelChunk> {
        self.0.pop_front()
    }
}

impl LabelReading for InlineReading {
    type Chunks = MemoryChunks;

    fn start<R: Read + Send + 'static>(&self, plan: ReadPlan, input: R) -> MemoryChunks {
        if let Ok(mut starts) = self.starts.lock() {
            starts.push((plan.offset, plan.resume.next_line));
        }
        let mut reader = open_reader(plan.file, plan.kind, input, &plan.resume, plan.offset);
        let mut chunks = VecDeque::new();
        loop {
            let c = reader.next_chunk(plan.chunk_rows);
            let end = c.end;
            chunks.push_back(c);
            if end {
                break;
            }
        }
        MemoryChunks(chunks)
    }
}

/// The labels half of [`super::InMemoryDecisions`], delegated to its [`InMemoryLabels`].
impl LabelStore for super::InMemoryDecisions {
    async fn label_targets(
        &self,
        tenant: &TenantId,
        ids: &[TransactionId],
    ) -> Result<HashMap<TransactionId, LabelTarget>, StoreError> {
        self.labels.label_targets(tenant, ids).await
    }

    async fn newest_days(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> Result<NewestDays, StoreError> {
        self.labels.newest_days(tenant, customers, terminals).await
    }

    async fn write_label(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        write: &LabelWrite<'_>,
    ) -> Result<LabelWriteOutcome, StoreError> {
        self.labels.write_label(tenant, id, write).await
    }
}
