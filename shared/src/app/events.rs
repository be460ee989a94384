//! Events out: one batch of stream records (one shard, in order) → the events of its committed
//! changes on the bus, in PutEvents calls of up to 10 entries and less than 256 KB.
//!
//! - An entry too large for a call alone is sent shortened ([`Event::shortened`]: a decision
//!   without `reasons` and `inputs`, `truncated: true`); one that still is, is skipped.
//! - The entries the bus refuses for now (throttled, an internal failure, no answer for them)
//!   are sent again together, after a short jittered wait, up to [`Publisher::entry_attempts`]
//!   sends in all, never with the entries already published beside them.
//! - An entry refused for its content (one of [`crate::ports::events::PERMANENT_ENTRY_CODES`])
//!   is logged, counted and skipped, like an unreadable record, so it does not block the shard
//!   (except a lone entry refused as invalid, below).
//!   An entry refused for the permissions (`NotAuthorized…`, `AccessDenied…`) fails its record:
//!   the shard waits (alarmed) until they are fixed, rather than every event being dropped.
//! - A call refused whole for good is split into single entries, so only an entry refused as
//!   invalid alone is skipped, and only if another entry of the split got through (a malformed
//!   bus name refuses them all; a lone entry has nothing to compare with): otherwise, as for a
//!   refusal that is no entry's fault (access denied, no such bus), the record fails there and
//!   nothing after it is sent.
//! - If an entry still fails (or a whole call does, for now), that record and every record
//!   after it in the batch are reported as failed, and nothing after it is sent: Lambda retries
//!   the shard from the lowest reported sequence number, so the order of the shard is kept and
//!   nothing before it is sent again. Entries of the same call after the failed one may have
//!   been published; the retry sends them again with the same `event_id`.
//! - An unreadable record is logged and skipped; a record no event describes is skipped
//!   silently.
//!
//! Delivery is therefore at least once, and exactly once per `event_id` for a consumer that
//! deduplicates on it.

use crate::app::archive::Archiver;
use crate::domain::events::{Event, RecordContent, StreamRecord};
use crate::ports::events::{
    entry_size, EntryOutcome, EventBus, INVALID_CALL_CODE, MAX_ENTRIES_PER_CALL, MAX_REQUEST_BYTES,
};
use crate::ports::objects::Objects;
use crate::ports::Sleep;
use std::time::Duration;

/// What one batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Events the bus accepted (an entry sent again after a failure counts once).
    pub published: usize,
    /// Records no event describes.
    pub ignored: usize,
    /// Unreadable records, skipped.
    pub unreadable: usize,
    /// Events sent shortened, too large whole.
    pub truncated: usize,
    /// Events the bus can never accept (too large even shortened, or refused for good): skipped.
    pub refused: usize,
    /// Sequence numbers to report as `batchItemFailures`, in order: the first failed record
    /// and everything after it.
    pub failed: Vec<String>,
    /// Archive objects written.
    pub archived: usize,
}

pub struct Publisher<'a, B, S> {
    pub bus: &'a B,
    /// Waits between sends of refused entries.
    pub sleep: &'a S,
    /// Sends of one entry (or one whole call) before its record is reported failed.
    pub entry_attempts: usize,
}

/// (index of the record, its event).
type Pending<'e> = Vec<&'e (usize, Event)>;

/// How one group of entries ended.
enum Sent<'e> {
    Done,
    /// Still failing for now after every attempt: the first record index among them.
    Failed(usize),
    /// The whole call was refused for good.
    Refused(Pending<'e>),
    /// A one-entry call refused as invalid: the entry's fault or the call's, which only the
    /// other entries of its split can tell.
    Invalid(&'e (usize, Event)),
}

impl<'a, B: EventBus, S: Sleep> Publisher<'a, B, S> {
    pub fn new(bus: &'a B, sleep: &'a S) -> Self {
        Publisher {
            bus,
            sleep,
            entry_attempts: 3,
        }
    }

    pub async fn publish(&self, records: &[StreamRecord]) -> PublishReport {
        let mut report = PublishReport::default();
        let mut events: Vec<(usize, Event)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match &r.content {
                RecordContent::Publish(change) => {
                    if let Some(event) = self.fitting(change.to_event(), &r.sequence_number, &mut report) {
                        events.push((i, event));
                    }
                }
                RecordContent::Ignore => report.ignored += 1,
                RecordContent::Unreadable(reason) => {
                    report.unreadable += 1;
                    tracing::error!(sequence_number = %r.sequence_number, reason = %reason,
                        "stream record unreadable: skipped, no event published");
                }
            }
        }
        for call in calls(&events) {
            if let Some(first_failed) = self.send(call, &mut report).await {
                report.failed = records[first_failed..]
                    .iter()
                    .map(|r| r.sequence_number.clone())
                    .collect();
                break;
            }
        }
        report
    }

    /// The event as it can be sent: whole, shortened, or (too large even so) `None`.
    fn fitting(&self, event: Event, sequence_number: &str, report: &mut PublishReport) -> Option<Event> {
        let size = entry_size(&event);
        if size <= MAX_REQUEST_BYTES {
            return Some(event);
        }
        match event.shortened().filter(|s| entry_size(s) <= MAX_REQUEST_BYTES) {
            Some(short) => {
                report.truncated += 1;
                tracing::warn!(event_id = %event.event_id, size, "event too large for the bus: sent shortened");
                Some(short)
            }
            None => {
                report.refused += 1;
                tracing::error!(event_id = %event.event_id, %sequence_number, size,
                    "event too large for the bus even shortened: skipped");
                None
            }
        }
    }

    /// Sends one call's events; `Some(record index)`: the first record whose event could not
    /// be published.
    async fn send(&self, call: Pending<'_>, report: &mut PublishReport) -> Option<usize> {
        match self.attempts(call, report).await {
            Sent::Done => None,
            Sent::Failed(i) => Some(i),
            // A lone entry refused as invalid: nothing shows it is the entry, not the bus name.
            Sent::Invalid(p) => Some(p.0),
            // Refused whole: each entry alone, so only the one the bus cannot take is lost.
            Sent::Refused(pending) => {
                let (mut published, mut invalid, mut first_failed) = (false, Vec::new(), None);
                for p in pending {
                    match self.attempts(vec![p], report).await {
                        Sent::Done => published = true,
                        Sent::Invalid(p) => invalid.push(p),
                        Sent::Failed(i) => first_failed = Some(i),
                        // Not the entry's fault (access denied, no such bus): block until fixed.
                        Sent::Refused(_) => first_failed = Some(p.0),
                    }
                    // Nothing after a failed record is sent: the retry starts there, in order.
                    if first_failed.is_some() {
                        break;
                    }
                }
                if !published {
                    // No entry of the split got through: the call, not the entries, is at fault.
                    return invalid.first().map(|p| p.0).into_iter().chain(first_failed).min();
                }
                for p in invalid {
                    report.refused += 1;
                    tracing::error!(event_id = %p.1.event_id, "event refused as invalid by the bus: skipped");
                }
                first_failed
            }
        }
    }

    /// Sends `pending`, then the entries refused for now again, together.
    async fn attempts<'e>(&self, mut pending: Pending<'e>, report: &mut PublishReport) -> Sent<'e> {
        let attempts = self.entry_attempts.max(1);
        let alone = pending.len() == 1;
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.sleep.sleep(backoff(attempt)).await;
            }
            let batch: Vec<Event> = pending.iter().map(|(_, e)| e.clone()).collect();
            match self.bus.put_events(&batch).await {
                Ok(outcomes) => {
                    let (mut still, mut blocked) = (Vec::new(), None);
                    for (n, p) in pending.iter().enumerate() {
                        match outcomes.get(n) {
                            Some(EntryOutcome::Published) => report.published += 1,
                            Some(EntryOutcome::Failed { code, .. }) if alone && code == INVALID_CALL_CODE => {
                                return Sent::Invalid(p);
                            }
                            Some(outcome @ EntryOutcome::Failed { code, message }) if outcome.is_blocking() => {
                                tracing::error!(event_id = %p.1.event_id, code = %code, message = %message,
                                    "event refused by the bus for its permissions: the shard waits until fixed");
                                blocked = blocked.or(Some(p.0));
                            }
                            Some(outcome @ EntryOutcome::Failed { code, message }) if outcome.is_permanent() => {
                                report.refused += 1;
                                tracing::error!(event_id = %p.1.event_id, code = %code, message = %message,
                                    "event refused for good by the bus: skipped");
                            }
                            Some(EntryOutcome::Failed { code, message }) => {
                                tracing::warn!(event_id = %p.1.event_id, code = %code, message = %message,
                                    attempt, "event refused by the bus");
                                still.push(*p);
                            }
                            None => {
                                tracing::warn!(event_id = %p.1.event_id, attempt, "the bus answered nothing for this event");
                                still.push(*p);
                            }
                        }
                    }
                    if let Some(i) = blocked {
                        return Sent::Failed(still.iter().map(|(i, _)| *i).chain([i]).min().unwrap_or(i));
                    }
                    pending = still;
                }
                Err(e) if e.is_retryable() => tracing::warn!(error = %e, attempt, "PutEvents failed"),
                Err(e) => {
                    tracing::warn!(error = %e, entries = pending.len(), "PutEvents refused whole");
                    return Sent::Refused(pending);
                }
            }
            if pending.is_empty() {
                return Sent::Done;
            }
        }
        Sent::Failed(pending.iter().map(|(i, _)| *i).min().unwrap_or_default())
    }
}

/// The events in calls of at most [`MAX_ENTRIES_PER_CALL`] entries and [`MAX_REQUEST_BYTES`]
/// (each event fits alone), in order.
fn calls(events: &[(usize, Event)]) -> Vec<Pending<'_>> {
    let mut calls: Vec<Pending<'_>> = Vec::new();
    let mut bytes = 0;
    for e in events {
        let size = entry_size(&e.1);
        match calls.last_mut() {
            Some(call) if call.len() < MAX_ENTRIES_PER_CALL && bytes + size <= MAX_REQUEST_BYTES => {
                call.push(e);
                bytes += size;
            }
            _ => {
                calls.push(vec![e]);
                bytes = size;
            }
        }
    }
    calls
}

/// The wait before send `attempt` (2, 3…): 50 ms doubling, with ±50 % jitter so shards
/// throttled together do not retry together.
fn backoff(attempt: usize) -> Duration {
    let base = 50u64 << (attempt.saturating_sub(2)).min(6);
    let jitter: f64 = rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.5);
    Duration::from_millis((base as f64 * jitter) as u64)
}

/// The stream consumer: publishes a batch's events, then archives its decisions and labels.
///
/// Publishing comes first: only the records before the first one reported failed are archived,
/// so the retry Lambda starts at that record archives the rest, each once. An archive failure
/// reports the whole batch (from its first record): its retry starts at the same record, names
/// its objects the same and overwrites them; its events go out again under the same ids.
pub struct StreamConsumer<'a, B, S, O> {
    pub publisher: Publisher<'a, B, S>,
    /// `None`: no archive (a stack without a data bucket).
    pub archiver: Option<Archiver<'a, O>>,
}

impl<B: EventBus, S: Sleep, O: Objects> StreamConsumer<'_, B, S, O> {
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
    use std::sync::Mutex;

    /// Records the waits instead of waiting.
    #[derive(Default)]
    struct Waits(Mutex<Vec<Duration>>);

    impl Sleep for Waits {
        async fn sleep(&self, duration: Duration) {
            self.0.lock().unwrap().push(duration);
        }
    }

    static NO_WAITS: Waits = Waits(Mutex::new(Vec::new()));

    /// A bus that accepts the call and answers for none of its entries.
    struct Mute;

    impl EventBus for Mute {
        async fn put_events(&self, _: &[Event]) -> Result<Vec<EntryOutcome>, crate::ports::StoreError> {
            Ok(Vec::new())
        }
    }

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
                    note: None,
                },
                previous: None,
            }),
        }
    }

    /// A label whose source is `bytes` long, to make large events.
    fn big_label_record(seq: u32, bytes: usize) -> StreamRecord {
        let mut r = label_record(seq, &format!("tx{seq}"));
        if let RecordContent::Publish(Change::Label { label, .. }) = &mut r.content {
            label.source = "s".repeat(bytes);
        }
        r
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
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
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
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
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
    fn refused_entries_are_sent_again_together_after_a_jittered_wait() {
        let bus = InMemoryBus::default();
        let waits = Waits::default();
        let recs = records(5);
        bus.fail_entry(&id_of(&recs[1]), 1);
        bus.fail_entry(&id_of(&recs[3]), 1);
        let report = block_on(Publisher::new(&bus, &waits).publish(&recs));
        assert!(report.failed.is_empty());
        assert_eq!(bus.calls()[1], vec![id_of(&recs[1]), id_of(&recs[3])]);
        let waits = waits.0.lock().unwrap().clone();
        assert_eq!(waits.len(), 1, "one wait, before the one re-send");
        assert!((25..=75).contains(&waits[0].as_millis()), "{waits:?}");
    }

    #[test]
    fn calls_are_split_by_bytes_as_well_as_by_count() {
        let bus = InMemoryBus::default();
        // Five events of about 60 KB: four fit in one call under 256 KB, five do not.
        let recs: Vec<StreamRecord> = (0..5).map(|i| big_label_record(i, 60 * 1024)).collect();
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!(report.published, 5);
        let sizes: Vec<usize> = bus.calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 1]);
    }

    #[test]
    fn an_event_too_large_even_shortened_is_skipped_without_blocking() {
        let bus = InMemoryBus::default();
        let mut recs = records(3);
        recs[1] = big_label_record(1, 300 * 1024);
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!((report.published, report.refused), (2, 1));
    }

    #[test]
    fn an_entry_refused_for_good_is_skipped_not_retried_and_does_not_block() {
        let bus = InMemoryBus::default();
        let recs = records(4);
        bus.refuse_entry(&id_of(&recs[1]), usize::MAX, "MalformedDetail");
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!((report.published, report.refused), (3, 1));
        assert_eq!(bus.calls().len(), 1, "never sent again");
    }

    #[test]
    fn a_call_refused_whole_is_split_and_only_the_bad_entry_is_skipped() {
        let bus = InMemoryBus::default();
        let recs = records(4);
        bus.reject_calls_with(&id_of(&recs[2]));
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!((report.published, report.refused), (3, 1));
        let ids: Vec<String> = bus.published().iter().map(|e| e.event_id.clone()).collect();
        assert!(!ids.contains(&id_of(&recs[2])));
    }

    #[test]
    fn a_call_refused_whole_for_no_entry_s_fault_fails_the_batch_and_skips_nothing() {
        let bus = InMemoryBus::default();
        let recs = records(3);
        bus.deny_calls();
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        assert_eq!(report.refused, 0);
        let all: Vec<String> = recs.iter().map(|r| r.sequence_number.clone()).collect();
        assert_eq!(report.failed, all);
    }

    #[test]
    fn an_entry_refused_for_its_permissions_fails_its_record_and_is_not_skipped() {
        for code in [
            "NotAuthorizedForSourceException",
            "NotAuthorizedForDetailTypeException",
            "AccessDeniedException",
        ] {
            let bus = InMemoryBus::default();
            let recs = records(4);
            bus.refuse_entry(&id_of(&recs[1]), usize::MAX, code);
            let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
            assert_eq!(report.refused, 0, "{code}: not skipped");
            let want: Vec<String> = recs[1..].iter().map(|r| r.sequence_number.clone()).collect();
            assert_eq!(report.failed, want, "{code}: its record and what follows fail");
            // Entries after it went out in the same call; they are reported and sent again in order.
            assert_eq!(bus.calls().len(), 1, "{code}: no call after the refusal");
        }
    }

    #[test]
    fn a_call_refused_whole_for_no_entry_s_fault_stops_at_the_first_single_entry_call() {
        let bus = InMemoryBus::default();
        let recs = records(15);
        bus.deny_calls();
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        assert_eq!(report.failed.len(), 15);
        // The whole call, then the first entry alone; nothing after it is tried.
        assert_eq!(
            bus.calls(),
            vec![recs[..10].iter().map(id_of).collect(), vec![id_of(&recs[0])]]
        );
    }

    #[test]
    fn a_split_whose_entries_are_all_refused_as_invalid_fails_and_skips_nothing() {
        // As a malformed bus name would: every call refused as invalid, alone or not.
        let bus = InMemoryBus::default();
        let recs = records(3);
        for r in &recs {
            bus.reject_calls_with(&id_of(r));
        }
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        assert_eq!(report.refused, 0);
        let all: Vec<String> = recs.iter().map(|r| r.sequence_number.clone()).collect();
        assert_eq!(report.failed, all);
    }

    #[test]
    fn a_lone_entry_refused_whole_as_invalid_fails_its_record() {
        // One entry, nothing to compare with: the bus name may be the fault.
        let bus = InMemoryBus::default();
        let recs = records(1);
        bus.reject_calls_with(&id_of(&recs[0]));
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        assert_eq!(report.refused, 0);
        assert_eq!(report.failed, vec![recs[0].sequence_number.clone()]);
    }

    #[test]
    fn an_entry_the_bus_answers_nothing_for_counts_as_failed() {
        let recs = records(2);
        let report = block_on(Publisher::new(&Mute, &Waits::default()).publish(&recs));
        assert_eq!(report.published, 0);
        assert_eq!(report.failed, vec!["00000".to_owned(), "00001".to_owned()]);
    }

    #[test]
    fn an_entry_that_keeps_failing_reports_its_record_and_what_follows_and_stops() {
        let bus = InMemoryBus::default();
        let recs = records(15);
        bus.fail_entry(&id_of(&recs[3]), 99);
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
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
        let publisher = Publisher::new(&bus, &NO_WAITS);
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
        let report = block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        assert_eq!(
            (report.published, report.unreadable, report.ignored, report.failed.len()),
            (2, 1, 1, 0)
        );
    }

    #[test]
    fn a_redelivered_batch_publishes_the_same_ids_again() {
        let bus = InMemoryBus::default();
        let recs = records(4);
        block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
        block_on(Publisher::new(&bus, &Waits::default()).publish(&recs));
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
        ) -> StreamConsumer<'a, InMemoryBus, Waits, InMemoryObjects> {
            StreamConsumer {
                publisher: Publisher::new(bus, &NO_WAITS),
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
        fn a_label_changed_back_and_forth_at_the_same_time_is_archived_three_times() {
            let (bus, objects) = (InMemoryBus::default(), InMemoryObjects::default());
            let value = |r: &StreamRecord| match &r.content {
                RecordContent::Publish(Change::Label { label, .. }) => label.clone(),
                _ => unreachable!(),
            };
            let fraud = label_record(0, "tx0");
            let mut legit = label_record(1, "tx0");
            let mut again = label_record(2, "tx0");
            if let RecordContent::Publish(Change::Label { label, previous, .. }) = &mut legit.content {
                label.value = LabelValue::Legit;
                *previous = Some(value(&fraud));
            }
            if let RecordContent::Publish(Change::Label { previous, .. }) = &mut again.content {
                *previous = Some(value(&legit));
            }
            block_on(consumer(&bus, &objects).consume(&[fraud, legit, again]));
            assert_eq!(archived(&objects).values().sum::<usize>(), 3);
            assert_eq!(archived(&objects).len(), 3, "three distinct event ids");
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
