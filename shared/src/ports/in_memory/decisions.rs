//! Decisions, keys, aggregates and tenant config in memory, held to what the DynamoDB adapter
//! does by [`crate::ports::contract::decisions`] and [`crate::ports::contract::aggregates`]
//! (rules and lists: [`super::rules`], held by [`crate::ports::contract::rules`]).

use super::lock;
use crate::domain::auth::{KeyHash, KeyRecord};
use crate::domain::decision::{DecisionRecord, IdempotencyKey};
use crate::domain::features::{transaction_delta, AggregateDelta, EntityAggregate};
use crate::domain::policy::Thresholds;
use crate::domain::{CustomerId, TenantId, TerminalId, Transaction, TransactionId};
use crate::ports::{
    ActiveModel, AggregateReads, AggregateSeeding, CommitOutcome, DecisionCommit, DecisionStore, FoundAggregates,
    IdempotencyRecord, Page, ScoringSnapshot, StoreError,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

type Scoped<K> = (TenantId, K);

#[derive(Default)]
pub(super) struct State {
    keys: HashMap<String, KeyRecord>,
    decisions: BTreeMap<Scoped<String>, DecisionRecord>,
    idempotency: HashMap<Scoped<String>, IdempotencyRecord>,
    customers: HashMap<Scoped<String>, EntityAggregate>,
    terminals: HashMap<Scoped<String>, EntityAggregate>,
    thresholds: HashMap<TenantId, Thresholds>,
    active_models: HashMap<TenantId, ActiveModel>,
    /// Committed by "another request" just before the next commit (a lost race, for tests).
    racing: Vec<(TenantId, DecisionRecord, Transaction)>,
    /// The entities of each bulk aggregate read, in the order asked.
    aggregate_reads: Vec<(Vec<CustomerId>, Vec<TerminalId>)>,
    /// Review items, opened by the commit of a `review` decision ([`super::reviews`]).
    pub(super) reviews: BTreeMap<Scoped<String>, crate::domain::review::Review>,
    /// Rules, rulesets, the pointer, lists and the audit ([`super::rules`]): in this fake, as
    /// the pointers ride in the CONFIG item the decision reads in the adapter.
    pub(super) rules: super::rules::RulesState,
}

/// Decisions, aggregates, keys and tenant config in memory, with the DynamoDB adapter's
/// semantics: a commit is all or nothing and the first decision for a transaction id (or an
/// idempotency key) wins. Unlike the adapter it has no clock: idempotency records never expire,
/// and aggregates are the in-memory ring (`EntityAggregate::add`), so tests feed days in order.
#[derive(Default)]
pub struct InMemoryDecisions {
    state: Mutex<State>,
    /// Labels and fraud counters, for services that need both (the review service): its
    /// decisions are added with [`InMemoryLabels::add_decision`], apart from the commits here.
    pub labels: super::InMemoryLabels,
}

impl InMemoryDecisions {
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn put_key(&self, hash: &KeyHash, rec: KeyRecord) {
        self.state().keys.insert(hash.0.clone(), rec);
    }

    pub fn set_thresholds(&self, tenant: &TenantId, t: Thresholds) {
        self.state().thresholds.insert(tenant.clone(), t);
    }

    pub fn set_active_model(&self, tenant: &TenantId, m: ActiveModel) {
        self.state().active_models.insert(tenant.clone(), m);
    }

    /// The next `commit` finds this decision already committed, as if a concurrent request had
    /// won the race after this one's read.
    pub fn commit_first_on_next_commit(&self, tenant: &TenantId, record: DecisionRecord, tx: Transaction) {
        self.state().racing.push((tenant.clone(), record, tx));
    }

    pub fn customer_aggregate(&self, tenant: &TenantId, c: &CustomerId) -> EntityAggregate {
        let key = (tenant.clone(), c.as_str().to_owned());
        self.state().customers.get(&key).cloned().unwrap_or_default()
    }

    pub fn terminal_aggregate(&self, tenant: &TenantId, t: &TerminalId) -> EntityAggregate {
        let key = (tenant.clone(), t.as_str().to_owned());
        self.state().terminals.get(&key).cloned().unwrap_or_default()
    }

    pub fn decision_count(&self) -> usize {
        self.state().decisions.len()
    }

    /// Counts `tx` in its customer's and terminal's aggregates, as its committed decision would.
    pub fn add_to_aggregates(&self, tenant: &TenantId, tx: &Transaction) {
        self.state().add(tenant, tx, &transaction_delta(tx));
    }

    /// The customers and terminals of each [`AggregateReads::aggregates`] call so far.
    pub fn aggregate_reads(&self) -> Vec<(Vec<CustomerId>, Vec<TerminalId>)> {
        self.state().aggregate_reads.clone()
    }
}

impl State {
    fn commit(&mut self, tenant: &TenantId, c: &DecisionCommit<'_>) -> CommitOutcome {
        let tx = c.transaction;
        let id_key = (tenant.clone(), tx.id.as_str().to_owned());
        let idem_key = c.idempotency_key.map(|k| (tenant.clone(), k.as_str().to_owned()));
        if self.decisions.contains_key(&id_key) || idem_key.as_ref().is_some_and(|k| self.idempotency.contains_key(k)) {
            return CommitOutcome::AlreadyDecided;
        }
        if let Some(review) = crate::domain::review::Review::opened_by(c.record) {
            self.reviews.insert(id_key.clone(), review);
        }
        self.decisions.insert(id_key, c.record.clone());
        if let Some(k) = idem_key {
            self.idempotency.insert(
                k,
                IdempotencyRecord {
                    transaction_id: tx.id.clone(),
                    fingerprint: c.record.request_fingerprint.clone(),
                },
            );
        }
        self.add(tenant, tx, &c.delta);
        CommitOutcome::Committed
    }

    fn add(&mut self, tenant: &TenantId, tx: &Transaction, delta: &AggregateDelta) {
        for map_key in [
            (&mut self.customers, tx.customer_id.as_str()),
            (&mut self.terminals, tx.terminal_id.as_str()),
        ] {
            let (map, entity) = map_key;
            map.entry((tenant.clone(), entity.to_owned()))
                .or_default()
                .add(delta.day, &delta.counter);
        }
    }
}

impl AggregateReads for InMemoryDecisions {
    async fn aggregates(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> Result<FoundAggregates, StoreError> {
        let mut s = self.state();
        s.aggregate_reads.push((customers.to_vec(), terminals.to_vec()));
        let scoped = |k: &str| (tenant.clone(), k.to_owned());
        let mut found = FoundAggregates::default();
        for c in customers {
            if let Some(a) = s.customers.get(&scoped(c.as_str())) {
                found.customers.insert(c.clone(), a.clone());
            }
        }
        for t in terminals {
            if let Some(a) = s.terminals.get(&scoped(t.as_str())) {
                found.terminals.insert(t.clone(), a.clone());
            }
        }
        Ok(found)
    }
}

impl AggregateSeeding for InMemoryDecisions {
    async fn seed_aggregates(
        &self,
        tenant: &TenantId,
        customers: &[(CustomerId, EntityAggregate)],
        terminals: &[(TerminalId, EntityAggregate)],
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let empty = EntityAggregate::default();
        for (c, agg) in customers.iter().filter(|(_, a)| *a != empty) {
            s.customers.insert((tenant.clone(), c.as_str().to_owned()), agg.clone());
        }
        for (t, agg) in terminals.iter().filter(|(_, a)| *a != empty) {
            s.terminals.insert((tenant.clone(), t.as_str().to_owned()), agg.clone());
        }
        Ok(())
    }
}

impl DecisionStore for InMemoryDecisions {
    async fn key(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.state().keys.get(&hash.0).cloned())
    }

    async fn load_for_scoring(
        &self,
        tenant: &TenantId,
        key: Option<&KeyHash>,
        tx: &Transaction,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<ScoringSnapshot, StoreError> {
        let s = self.state();
        let scoped = |k: &str| (tenant.clone(), k.to_owned());
        Ok(ScoringSnapshot {
            key: key.and_then(|k| s.keys.get(&k.0).cloned()),
            customer: s
                .customers
                .get(&scoped(tx.customer_id.as_str()))
                .cloned()
                .unwrap_or_default(),
            terminal: s
                .terminals
                .get(&scoped(tx.terminal_id.as_str()))
                .cloned()
                .unwrap_or_default(),
            existing: s.decisions.get(&scoped(tx.id.as_str())).cloned(),
            idempotency: idempotency_key.and_then(|k| s.idempotency.get(&scoped(k.as_str())).cloned()),
            thresholds: s.thresholds.get(tenant).copied(),
            active_model: s.active_models.get(tenant).cloned(),
            rules: s.rules.pointers(tenant),
            aggregate_write: Default::default(),
        })
    }

    async fn commit(&self, tenant: &TenantId, commit: &DecisionCommit<'_>) -> Result<CommitOutcome, StoreError> {
        let mut s = self.state();
        for (t, record, tx) in std::mem::take(&mut s.racing) {
            let winner = DecisionCommit {
                record: &record,
                transaction: &tx,
                idempotency_key: None,
                delta: transaction_delta(&tx),
                aggregates: crate::ports::AggregateWritePlan::NONE,
            };
            s.commit(&t, &winner);
        }
        Ok(s.commit(tenant, commit))
    }

    async fn decision(&self, tenant: &TenantId, id: &TransactionId) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(self
            .state()
            .decisions
            .get(&(tenant.clone(), id.as_str().to_owned()))
            .cloned())
    }

    /// Newest first by `occurred_at` then id, as the adapter's index sorts. The cursor is the
    /// offset of the next item, which is enough for a fake that nothing writes to mid-page.
    async fn decisions_for_customer(
        &self,
        tenant: &TenantId,
        customer: &CustomerId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        // As the adapter: at least one item a page, at most its longest page.
        let limit = limit.clamp(1, 1000);
        let from = match cursor {
            None => 0,
            Some(c) => c
                .strip_prefix("mem:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or(StoreError::BadCursor)?,
        };
        let s = self.state();
        let mut all: Vec<&DecisionRecord> = s
            .decisions
            .iter()
            .filter(|((t, _), d)| t == tenant && d.customer_id == *customer)
            .map(|(_, d)| d)
            .collect();
        all.sort_by(|a, b| (b.occurred_at, &b.id).cmp(&(a.occurred_at, &a.id)));
        let items: Vec<DecisionRecord> = all.iter().skip(from).take(limit).map(|d| (*d).clone()).collect();
        let next = from + items.len();
        Ok(Page {
            next_cursor: (next < all.len()).then(|| format!("mem:{next}")),
            items,
        })
    }

    async fn active_model(&self, tenant: &TenantId) -> Result<Option<ActiveModel>, StoreError> {
        Ok(self.state().active_models.get(tenant).cloned())
    }
}

impl crate::ports::DecisionWindow for InMemoryDecisions {
    async fn decisions_between(
        &self,
        tenant: &TenantId,
        from: crate::domain::Timestamp,
        to: crate::domain::Timestamp,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        let limit = limit.clamp(1, 1000);
        let skip = match cursor {
            None => 0,
            Some(c) => c
                .strip_prefix("win:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or(StoreError::BadCursor)?,
        };
        let s = self.state();
        let all: Vec<&DecisionRecord> = s
            .decisions
            .iter()
            .filter(|((t, _), d)| t == tenant && d.occurred_at >= from && d.occurred_at < to)
            .map(|(_, d)| d)
            .collect();
        let items: Vec<DecisionRecord> = all.iter().skip(skip).take(limit).map(|d| (*d).clone()).collect();
        let next = skip + items.len();
        Ok(Page {
            next_cursor: (next < all.len()).then(|| format!("win:{next}")),
            items,
        })
    }
}

impl crate::ports::rules::TenantPolicyRead for InMemoryDecisions {
    async fn tenant_policy(&self, tenant: &TenantId) -> Result<crate::ports::rules::TenantPolicy, StoreError> {
        let s = self.state();
        Ok(crate::ports::rules::TenantPolicy {
            thresholds: s.thresholds.get(tenant).copied(),
            rules: s.rules.pointers(tenant),
        })
    }
}
