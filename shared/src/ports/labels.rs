//! What the label applier ([`crate::app::labels`]) needs besides job leases
//! ([`crate::ports::jobs`]) and re-invoking ([`crate::ports::reinvoke`]):
//! - [`LabelStore`]: the decisions a file labels and the fraud counters a label moves
//!   (DynamoDB: `adapters/dynamodb/labels.rs`);
//! - [`LabelFiles`]: the label file's rows from a resume point, and the reports (S3, read on a
//!   blocking thread: the labels function implements it).
//!
//! Waiting for a live lease to run out goes through [`crate::ports::Sleep`].

use crate::domain::io::FileKind;
use crate::domain::labels::{LabelChunk, Resume, StoredLabel};
use crate::domain::{CustomerId, TenantId, TerminalId, Timestamp, TransactionId};
use crate::ports::StoreError;
use std::collections::HashMap;
use std::future::Future;

/// A stored decision as labelling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTarget {
    pub occurred_at: Timestamp,
    pub customer_id: CustomerId,
    /// Absent only on decisions stored without their inputs' terminal.
    pub terminal_id: Option<TerminalId>,
    pub label: Option<StoredLabel>,
}

/// One label write: the new label, the one it replaces (the condition), and the fraud delta.
#[derive(Debug, Clone, Copy)]
pub struct LabelWrite<'a> {
    pub label: &'a StoredLabel,
    pub previous: Option<&'a StoredLabel>,
    /// Added to `f<day>` of each listed aggregate (+1, -1; 0 moves none).
    pub fraud_delta: i64,
    pub day: i32,
    pub customer: Option<&'a CustomerId>,
    pub terminal: Option<&'a TerminalId>,
}

/// The answer to [`LabelStore::write_label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelWriteOutcome {
    Written,
    /// The decision's label is no longer `previous` (or the decision is gone): read it again.
    Changed,
}

/// Each aggregate's newest day bucket (absent: no aggregate), for the retention rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewestDays {
    pub customers: HashMap<CustomerId, i32>,
    pub terminals: HashMap<TerminalId, i32>,
}

/// Decisions' labels and the fraud counters. Every method takes the tenant.
pub trait LabelStore: Send + Sync {
    /// The decisions of `ids` that exist, with their current labels.
    fn label_targets(
        &self,
        tenant: &TenantId,
        ids: &[TransactionId],
    ) -> impl Future<Output = Result<HashMap<TransactionId, LabelTarget>, StoreError>> + Send;

    fn newest_days(
        &self,
        tenant: &TenantId,
        customers: &[CustomerId],
        terminals: &[TerminalId],
    ) -> impl Future<Output = Result<NewestDays, StoreError>> + Send;

    /// Sets the label and moves the counters atomically, on the condition that the decision
    /// still carries `previous` (same value and `labelled_at`; none: no label yet).
    fn write_label(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        write: &LabelWrite<'_>,
    ) -> impl Future<Output = Result<LabelWriteOutcome, StoreError>> + Send;
}

/// One label file version to read, from where its job got.
#[derive(Debug, Clone)]
pub struct LabelSource<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// Pins the read (the event's version id); else `etag` does.
    pub version_id: Option<&'a str>,
    pub etag: &'a str,
    /// `s3://bucket/key`: the name row errors give.
    pub file: &'a str,
    pub kind: FileKind,
    pub resume: Resume,
    /// The first byte to read: `resume`'s offset when ranged, else 0.
    pub offset: u64,
    /// Lines per [`LabelChunk`].
    pub chunk_rows: usize,
}

/// The chunks of one open label file, read ahead while the caller applies the last one.
pub trait LabelChunks: Send {
    /// The next chunk; `None` after the one marked `end`, or when the reader died before it.
    fn next(&mut self) -> impl Future<Output = Option<LabelChunk>> + Send;
}

/// A report being written in parts (a large error report stays out of memory).
pub trait ReportWriter: Send {
    fn write(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn finish(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The label file and the reports beside it. Buckets are given per call, as events name them.
pub trait LabelFiles: Send + Sync {
    type Chunks: LabelChunks;
    type Writer: ReportWriter;

    /// `None` when the object is gone or was replaced by a newer upload.
    fn open(&self, source: &LabelSource<'_>) -> impl Future<Output = Result<Option<Self::Chunks>, StoreError>> + Send;

    fn writer(&self, bucket: &str, key: &str, content_type: &str) -> Self::Writer;

    fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

pub mod memory {
    //! [`LabelStore`] and [`LabelFiles`] in memory, for the label applier's unit tests. The
    //! store keeps DynamoDB's rules: the conditional label write, `ADD f<day>` on each listed
    //! aggregate, an aggregate's newest day being the newest day it holds.

    use super::*;
    use crate::domain::labels::open_reader;
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    enum Entity {
        Customer(CustomerId),
        Terminal(TerminalId),
    }

    #[derive(Debug, Default)]
    pub struct MemoryLabels {
        decisions: Mutex<HashMap<(String, TransactionId), LabelTarget>>,
        /// Per aggregate: the days it holds, with their fraud counts.
        days: Mutex<HashMap<(String, Entity), BTreeMap<i32, i64>>>,
        /// A write another labeller gets in just before the next one.
        race: Mutex<Option<(String, TransactionId, StoredLabel, i64)>>,
    }

    fn poisoned<T>(_: T) -> StoreError {
        StoreError::Unavailable("poisoned".into())
    }

    impl MemoryLabels {
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

    impl LabelStore for MemoryLabels {
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

    type Objects = Arc<Mutex<HashMap<(String, String), (Vec<u8>, String)>>>;

    /// Objects by bucket and key, each with an etag; what was opened from where.
    #[derive(Debug, Default)]
    pub struct MemoryFiles {
        objects: Objects,
        /// `(offset, next_line)` of every open.
        opens: Mutex<Vec<(u64, u64)>>,
    }

    impl MemoryFiles {
        /// Stores an object; returns its etag (a digest of the bytes, as S3's is).
        pub fn upload(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> String {
            use sha2::{Digest, Sha256};
            let etag = hex::encode(&Sha256::digest(&bytes)[..16]);
            self.objects
                .lock()
                .unwrap()
                .insert((bucket.to_owned(), key.to_owned()), (bytes, etag.clone()));
            etag
        }

        pub fn text(&self, bucket: &str, key: &str) -> Option<String> {
            self.objects
                .lock()
                .unwrap()
                .get(&(bucket.to_owned(), key.to_owned()))
                .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
        }

        pub fn opens(&self) -> Vec<(u64, u64)> {
            self.opens.lock().unwrap().clone()
        }
    }

    /// A file's chunks, read in full when opened.
    pub struct MemoryChunks(VecDeque<LabelChunk>);

    impl LabelChunks for MemoryChunks {
        async fn next(&mut self) -> Option<LabelChunk> {
            self.0.pop_front()
        }
    }

    pub struct MemoryReport {
        objects: Objects,
        at: (String, String),
        bytes: Vec<u8>,
    }

    impl ReportWriter for MemoryReport {
        async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
            self.bytes.extend_from_slice(bytes);
            Ok(())
        }

        async fn finish(self) -> Result<(), StoreError> {
            self.objects
                .lock()
                .map_err(poisoned)?
                .insert(self.at, (self.bytes, String::new()));
            Ok(())
        }
    }

    impl LabelFiles for MemoryFiles {
        type Chunks = MemoryChunks;
        type Writer = MemoryReport;

        async fn open(&self, s: &LabelSource<'_>) -> Result<Option<MemoryChunks>, StoreError> {
            let bytes = match self
                .objects
                .lock()
                .map_err(poisoned)?
                .get(&(s.bucket.to_owned(), s.key.to_owned()))
            {
                Some((bytes, etag)) if *etag == s.etag => bytes.clone(),
                _ => return Ok(None),
            };
            self.opens
                .lock()
                .map_err(poisoned)?
                .push((s.offset, s.resume.next_line));
            let rest = bytes.get(s.offset as usize..).unwrap_or_default().to_vec();
            let mut reader = open_reader(s.file, s.kind, std::io::Cursor::new(rest), &s.resume, s.offset);
            let mut chunks = VecDeque::new();
            loop {
                let c = reader.next_chunk(s.chunk_rows);
                let end = c.end;
                chunks.push_back(c);
                if end {
                    break;
                }
            }
            Ok(Some(MemoryChunks(chunks)))
        }

        fn writer(&self, bucket: &str, key: &str, _content_type: &str) -> MemoryReport {
            MemoryReport {
                objects: self.objects.clone(),
                at: (bucket.to_owned(), key.to_owned()),
                bytes: Vec::new(),
            }
        }

        async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>, _content_type: &str) -> Result<(), StoreError> {
            self.objects
                .lock()
                .map_err(poisoned)?
                .insert((bucket.to_owned(), key.to_owned()), (bytes, String::new()));
            Ok(())
        }
    }
}

pub mod contract {
    //! The label-write rules as one test body, run against [`super::memory::MemoryLabels`] (unit
    //! tests) and against the DynamoDB adapter on moto (tests/tests/labels.rs). It panics on the
    //! first broken rule.

    use super::*;
    use crate::domain::labels::LabelValue;

    /// A decision the caller stored (unlabelled) before calling [`label_rules`].
    pub struct Seeded {
        pub id: TransactionId,
        pub occurred_at: Timestamp,
        pub customer: CustomerId,
        pub terminal: TerminalId,
    }

    fn label(value: LabelValue, at: &str) -> StoredLabel {
        StoredLabel {
            value,
            source: "cb".into(),
            labelled_at: Timestamp::parse("t", at).unwrap(),
            file: Some("s3://b/k".into()),
            etag: Some("e".into()),
            line: Some(2),
        }
    }

    pub async fn label_rules<S: LabelStore>(store: &S, tenant: &TenantId, d: &Seeded, unknown: &TransactionId) {
        let ids = [d.id.clone(), unknown.clone()];
        let targets = store.label_targets(tenant, &ids).await.unwrap();
        assert_eq!(targets.len(), 1, "only stored decisions are targets");
        let t = &targets[&d.id];
        assert_eq!(
            (&t.occurred_at, &t.customer_id, t.terminal_id.as_ref(), &t.label),
            (&d.occurred_at, &d.customer, Some(&d.terminal), &None)
        );
        let day = d.occurred_at.epoch_day();
        let newest = store
            .newest_days(
                tenant,
                std::slice::from_ref(&d.customer),
                std::slice::from_ref(&d.terminal),
            )
            .await
            .unwrap();
        assert_eq!(newest.customers.get(&d.customer), Some(&day));
        assert_eq!(newest.terminals.get(&d.terminal), Some(&day));

        fn write<'a>(
            label: &'a StoredLabel,
            previous: Option<&'a StoredLabel>,
            fraud_delta: i64,
            day: i32,
        ) -> LabelWrite<'a> {
            LabelWrite {
                label,
                previous,
                fraud_delta,
                day,
                customer: None,
                terminal: None,
            }
        }
        let fraud = &label(LabelValue::Fraud, "2030-01-01T00:00:00Z");
        let legit = &label(LabelValue::Legit, "2030-01-02T00:00:00Z");
        let stale = &label(LabelValue::Fraud, "2029-01-01T00:00:00Z");
        let mut first = write(fraud, None, 1, day);
        first.customer = Some(&d.customer);
        first.terminal = Some(&d.terminal);
        assert_eq!(
            store.write_label(tenant, &d.id, &first).await.unwrap(),
            LabelWriteOutcome::Written
        );
        assert_eq!(
            store.write_label(tenant, &d.id, &first).await.unwrap(),
            LabelWriteOutcome::Changed,
            "no label any more: the first write wins once"
        );
        assert_eq!(
            store
                .write_label(tenant, &d.id, &write(legit, Some(stale), -1, day))
                .await
                .unwrap(),
            LabelWriteOutcome::Changed,
            "a previous label that is not the stored one"
        );
        assert_eq!(
            store
                .write_label(tenant, unknown, &write(fraud, None, 0, day))
                .await
                .unwrap(),
            LabelWriteOutcome::Changed,
            "no such decision"
        );
        let got = store.label_targets(tenant, &ids).await.unwrap();
        assert_eq!(got[&d.id].label.as_ref(), Some(fraud));
        assert_eq!(
            store
                .write_label(tenant, &d.id, &write(legit, Some(fraud), 0, day))
                .await
                .unwrap(),
            LabelWriteOutcome::Written
        );
        let got = store.label_targets(tenant, &ids).await.unwrap();
        assert_eq!(got[&d.id].label.as_ref(), Some(legit), "the label with its provenance");
        let newest = store
            .newest_days(
                tenant,
                std::slice::from_ref(&d.customer),
                std::slice::from_ref(&d.terminal),
            )
            .await
            .unwrap();
        assert_eq!(
            newest.customers.get(&d.customer),
            Some(&day),
            "a fraud count adds no newer day"
        );
        let other = TenantId::parse(&format!("{tenant}-other")).unwrap();
        assert!(
            store.label_targets(&other, &ids).await.unwrap().is_empty(),
            "tenant-scoped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll, Waker};

    #[test]
    fn the_in_memory_store_keeps_the_label_rules() {
        let store = memory::MemoryLabels::default();
        let tenant = TenantId::parse("acme").unwrap();
        let d = contract::Seeded {
            id: TransactionId::parse("tx-1").unwrap(),
            occurred_at: Timestamp::parse("t", "2018-08-01T10:00:00Z").unwrap(),
            customer: CustomerId::parse("c-1").unwrap(),
            terminal: TerminalId::parse("t-1").unwrap(),
        };
        store.add_decision(
            &tenant,
            &d.id,
            LabelTarget {
                occurred_at: d.occurred_at,
                customer_id: d.customer.clone(),
                terminal_id: Some(d.terminal.clone()),
                label: None,
            },
        );
        let unknown = TransactionId::parse("tx-none").unwrap();
        let f = std::pin::pin!(contract::label_rules(&store, &tenant, &d, &unknown));
        // The fake never waits.
        assert!(matches!(
            f.poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(())
        ));
    }
}
