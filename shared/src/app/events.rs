//! Events out: one batch of stream records (one shard, in order) → the events of its committed
//! changes on the bus, in PutEvents calls of up to 10.
//!
//! - An entry the bus refuses is sent again alone (up to [`Publisher::entry_attempts`] in all),
//!   never with the entries already published beside it.
//! - If it still fails (or a whole call does), that record and every record after it in the
//!   batch are reported as failed, and nothing after it is sent: Lambda retries the shard from
//!   the lowest reported sequence number, so the order of the shard is kept and nothing before it
//!   is sent again. Entries of the same call after the failed one may have been published; the
//!   retry sends them again with the same `event_id`.
//! - An unreadable record is logged and skipped, so it never blocks the shard; a record no
//!   event describes is skipped silently.
//!
//! Delivery is therefore at least once, and exactly once per `event_id` for a consumer that
//! deduplicates on it.

use crate::app::archive::Archiver;
use crate::domain::events::{Event, RecordContent, StreamRecord};
use crate::ports::events::{EntryOutcome, EventBus, MAX_ENTRIES_PER_CALL};
use crate::ports::objects::Objects;

/// What one batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Events the bus accepted (an entry sent again after a failure counts once).
    pub published: usize,
    /// Records no event describes.
    pub ignored: usize,
    /// Unreadable records, skipped.
    pub unreadable: usize,
    /// Sequence numbers to report as `batchItemFailures`, in order: the first failed record
    /// and everything after it.
    pub failed: Vec<String>,
    /// Archive objects written.
    pub archived: usize,
}

pub struct Publisher<'a, B> {
    pub bus: &'a B,
    /// Sends of one entry (or one whole call) before its record is reported failed.
    pub entry_attempts: usize,
}

impl<'a, B: EventBus> Publisher<'a, B> {
    pub fn new(bus: &'a B) -> Self {
        Publisher { bus, entry_attempts: 3 }
    }

    pub async fn publish(&self, records: &[StreamRecord]) -> PublishReport {
        let mut report = PublishReport::default();
        // (index of the record, its event), in stream order.
        let mut events: Vec<(usize, Event)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match &r.content {
                RecordContent::Publish(change) => events.push((i, change.to_event())),
                RecordContent::Ignore => report.ignored += 1,
                RecordContent::Unreadable(reason) => {
                    report.unreadable += 1;
                    tracing::error!(sequence_number = %r.sequence_number, reason = %reason,
                        "stream record unreadable: skipped, no event published");
                }
            }
        }
        for chunk in events.chunks(MAX_ENTRIES_PER_CALL) {
            if let Some(first_failed) = self.send(chunk, &mut report).await {
                report.failed = records[first_failed..]
                    .iter()
                    .map(|r| r.sequence_number.clone())
                    .collect();
                break;
            }
        }
        report
    }

    /// Sends one call's events, then the failed ones again alone. `Some(record index)`: the
    /// first record whose event could not be published.
    async fn send(&self, chunk: &[(usize, Event)], report: &mut PublishReport) -> Option<usize> {
        let mut pending: Vec<&(usize, Event)> = chunk.iter().collect();
        for attempt in 1..=self.entry_attempts.max(1) {
            let batch: Vec<Event> = pending.iter().map(|(_, e)| e.clone()).collect();
            match self.bus.put_events(&batch).await {
                Ok(outcomes) => {
                    let mut still = Vec::new();
                    for (p, outcome) in pending.iter().zip(&outcomes) {
                        match outcome {
                            EntryOutcome::Published => report.published += 1,
                            EntryOutcome::Failed { code, message } => {
                                tracing::warn!(event_id = %p.1.event_id, code = %code, message = %message,
                                    attempt, "event refused by the bus");
                                still.push(*p);
                            }
                        }
                    }
                    pending = still;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "PutEvents failed");
                    if !e.is_retryable() {
                        break;
                    }
                }
            }
            if pending.is_empty() {
                return None;
            }
        }
        pending.iter().map(|(i, _)| *i).min()
    }
}

/// The stream consumer: publishes a batch's events, then archives its decisions and labels.
///
/// Publishing comes first: only the records before the first one reported failed are archived,
/// so the retry Lambda starts at that record archives the rest, each once. An archive failure
/// reports the whole batch (from its first record): its retry starts at the same record, names
/// its objects the same and overwrites them; its events go out again under the same ids.
pub struct StreamConsumer<'a, B, O> {
    pub publisher: Publisher<'a, B>,
    /// `None`: no archive (a stack without a data bucket).
    pub archiver: Option<Archiver<'a, O>>,
}

impl<B: EventBus, O: Objects> StreamConsumer<'_, B, O> {
    pub async fn consume(&self, records: &[StreamRecord]) -> PublishReport {
        let mut report = self.publisher.publish(records).await;
        let Some(archiver) = &self.archiver else {
            return report;
        };
        let done = records.len() - report.failed.len();
        match archiver.archive(&records[..done]).await {
            Ok(keys) => report.archived = keys.len(),
            Err(e) => {
                tracing::error!(error = %e, "archive failed; the whole batch is reported for a retry");
                report.failed = records.iter().map(|r| r.sequence_number.clone()).collect();
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::Change;
    use crate::domain::labels::{LabelValue, StoredLabel};
    use crate::domain::{TenantId, Timestamp, TransactionId};
    use crate::ports::in_memory::{block_on, InMemoryBus};

    fn label_record(seq: u32, tx: &str) -> StreamRecord {
        StreamRecord {
            sequence_number: format!("{seq:05}"),
            content: RecordContent::Publish(Change::Label {
                tenant: TenantId::parse("acme").unwrap(),
                transaction_id: TransactionId::parse(tx).unwrap(),
                label: StoredLabel {
                    value: LabelValue::Fraud,
                    source: "test".into(),
                    labelled_at: Timestamp::parse("labelled_at", "2026-01-01T00:00:00Z").unwrap(),
                    file: None,
                    etag: None,
                    line: None,
                },
                previous: None,
            }),
        }
    }

    fn records(n: u32) -> Vec<StreamRecord> {
        (0..n).map(|i| label_record(i, &format!("tx{i}"))).collect()
    }

    fn id_of(r: &StreamRecord) -> String {
        match &r.content {
            RecordContent::Publish(c) => c.event_id(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_batch_goes_out_in_calls_of_ten_in_stream_order() {
        let bus = InMemoryBus::default();
        let recs = records(23);
        let report = block_on(Publisher::new(&bus).publish(&recs));
        assert_eq!(report.published, 23);
        assert!(report.failed.is_empty());
        let sizes: Vec<usize> = bus.calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 3]);
        let ids: Vec<String> = bus.published().iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(ids, recs.iter().map(id_of).collect::<Vec<_>>());
    }

    #[test]
    fn a_refused_entry_is_sent_again_alone() {
        let bus = InMemoryBus::default();
        let recs = records(5);
        let flaky = id_of(&recs[2]);
        bus.fail_entry(&flaky, 1);
        let report = block_on(Publisher::new(&bus).publish(&recs));
        assert!(report.failed.is_empty());
        assert_eq!(report.published, 5);
        assert_eq!(bus.calls().len(), 2);
        assert_eq!(
            bus.calls()[1],
            vec![flaky.clone()],
            "the retry carries the failed entry only"
        );
        let mut ids: Vec<String> = bus.published().iter().map(|e| e.event_id.clone()).collect();
        ids.sort();
        let mut want: Vec<String> = recs.iter().map(id_of).collect();
        want.sort();
        assert_eq!(ids, want, "each event published exactly once");
    }

    #[test]
    fn an_entry_that_keeps_failing_reports_its_record_and_what_follows_and_stops() {
        let bus = InMemoryBus::default();
        let recs = records(15);
        bus.fail_entry(&id_of(&recs[3]), 99);
        let report = block_on(Publisher::new(&bus).publish(&recs));
        let want: Vec<String> = recs[3..].iter().map(|r| r.sequence_number.clone()).collect();
        assert_eq!(report.failed, want);
        // The first call (0..10) went out, then record 3 alone twice more; 10..15 never sent.
        assert_eq!(bus.calls().len(), 3);
        assert!(bus.calls()[1..].iter().all(|c| c == &vec![id_of(&recs[3])]));
        assert!(!bus.published().iter().any(|e| e.event_id == id_of(&recs[12])));
        assert_eq!(report.published, 9);
    }

    #[test]
    fn a_failed_call_reports_from_its_first_record() {
        let bus = InMemoryBus::default();
        let recs = records(12);
        // The first call succeeds; the second fails three times.
        let publisher = Publisher::new(&bus);
        block_on(async {
            let first = publisher.publish(&recs[..10]).await;
            assert!(first.failed.is_empty());
        });
        bus.fail_calls(3);
        let report = block_on(publisher.publish(&recs[10..]));
        assert_eq!(report.failed, vec!["00010".to_owned(), "00011".to_owned()]);
    }

    #[test]
    fn unreadable_and_other_records_are_skipped_without_blocking() {
        let bus = InMemoryBus::default();
        let mut recs = records(2);
        recs.insert(
            1,
            StreamRecord {
                sequence_number: "x".into(),
                content: RecordContent::Unreadable("garbled".into()),
            },
        );
        recs.push(StreamRecord {
            sequence_number: "y".into(),
            content: RecordContent::Ignore,
        });
        let report = block_on(Publisher::new(&bus).publish(&recs));
        assert_eq!(
            (report.published, report.unreadable, report.ignored, report.failed.len()),
            (2, 1, 1, 0)
        );
    }

    #[test]
    fn a_redelivered_batch_publishes_the_same_ids_again() {
        let bus = InMemoryBus::default();
        let recs = records(4);
        block_on(Publisher::new(&bus).publish(&recs));
        block_on(Publisher::new(&bus).publish(&recs));
        let ids: std::collections::BTreeSet<String> = bus.published().iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(bus.published().len(), 8, "at least once: the bus saw both deliveries");
        assert_eq!(ids.len(), 4, "deduplicated by event_id: each change once");
    }

    mod archive {
        use super::*;
        use crate::app::archive::{read_lines, Archiver};
        use crate::ports::in_memory::InMemoryObjects;
        use std::collections::BTreeMap;

        fn consumer<'a>(
            bus: &'a InMemoryBus,
            objects: &'a InMemoryObjects,
        ) -> StreamConsumer<'a, InMemoryBus, InMemoryObjects> {
            StreamConsumer {
                publisher: Publisher::new(bus),
                archiver: Some(Archiver {
                    objects,
                    bucket: "data",
                }),
            }
        }

        /// Every archived line's event id, with how many objects hold it.
        fn archived(objects: &InMemoryObjects) -> BTreeMap<String, usize> {
            let mut ids = BTreeMap::new();
            for key in objects.keys("data", "archive/") {
                for line in read_lines(&objects.object("data", &key).unwrap()).unwrap() {
                    *ids.entry(line["event_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
                }
            }
            ids
        }

        #[test]
        fn labels_go_to_day_partitioned_gzip_ndjson_named_by_the_first_sequence_number() {
            let (bus, objects) = (InMemoryBus::default(), InMemoryObjects::default());
            let report = block_on(consumer(&bus, &objects).consume(&records(3)));
            assert_eq!(report.archived, 1);
            assert_eq!(
                objects.keys("data", "archive/"),
                vec![format!(
                    "archive/acme/labels/date=2026-01-01/{:0>40}.ndjson.gz",
                    "00000"
                )]
            );
            assert_eq!(archived(&objects).len(), 3);
        }

        #[test]
        fn a_redelivered_batch_overwrites_its_own_objects() {
            let (bus, objects) = (InMemoryBus::default(), InMemoryObjects::default());
            let recs = records(5);
            block_on(consumer(&bus, &objects).consume(&recs));
            block_on(consumer(&bus, &objects).consume(&recs));
            // Redelivered with more records behind it: the same start, the same name.
            let more = records(8);
            block_on(consumer(&bus, &objects).consume(&more));
            assert_eq!(objects.keys("data", "archive/").len(), 1);
            let ids = archived(&objects);
            assert_eq!(ids.len(), 8);
            assert!(ids.values().all(|n| *n == 1), "{ids:?}");
        }

        #[test]
        fn a_retry_from_a_failed_record_archives_each_record_once() {
            let (bus, objects) = (InMemoryBus::default(), InMemoryObjects::default());
            let recs = records(15);
            bus.fail_entry(&id_of(&recs[6]), 3);
            let report = block_on(consumer(&bus, &objects).consume(&recs));
            assert_eq!(report.failed.first(), Some(&recs[6].sequence_number));
            assert_eq!(archived(&objects).len(), 6, "only the records before the failure");
            // Lambda retries from the reported record.
            let report = block_on(consumer(&bus, &objects).consume(&recs[6..]));
            assert!(report.failed.is_empty());
            let ids = archived(&objects);
            assert_eq!(ids.len(), 15);
            assert!(ids.values().all(|n| *n == 1), "{ids:?}");
        }

        #[test]
        fn a_batch_split_after_a_crash_archives_each_record_once() {
            // The first run wrote its objects but its answer was lost; Lambda bisects the batch.
            let (bus, objects) = (InMemoryBus::default(), InMemoryObjects::default());
            let mut recs = records(10);
            // A second day in the batch, first seen in its second half.
            if let RecordContent::Publish(Change::Label { label, .. }) = &mut recs[7].content {
                label.labelled_at = Timestamp::parse("labelled_at", "2026-01-02T00:00:00Z").unwrap();
            }
            block_on(consumer(&bus, &objects).consume(&recs));
            block_on(consumer(&bus, &objects).consume(&recs[..5]));
            block_on(consumer(&bus, &objects).consume(&recs[5..]));
            let ids = archived(&objects);
            assert_eq!(ids.len(), 10);
            assert!(ids.values().all(|n| *n == 1), "{ids:?}");
        }

        #[test]
        fn the_same_change_twice_in_a_batch_is_archived_once() {
            let (bus, objects) = (InMemoryBus::default(), InMemoryObjects::default());
            let mut recs = records(2);
            let mut dup = recs[1].clone();
            dup.sequence_number = "00009".into();
            recs.push(dup);
            block_on(consumer(&bus, &objects).consume(&recs));
            assert_eq!(archived(&objects).values().sum::<usize>(), 2);
        }
    }
}
