//! events: the table's stream (DynamoDB Streams, NEW_AND_OLD_IMAGES) → EventBridge.
//!
//! This decodes the stream records ([`verdict::adapters::dynamodb::decode_record`]), runs
//! [`verdict::app::events::StreamConsumer`] (the events to the bus, the decisions and labels to
//! the archive in the data bucket), and maps its report to Lambda's partial batch response
//! (`ReportBatchItemFailures`): the sequence numbers of the records to retry.
//!
//! The event is read as JSON and each record decoded on its own: a record that does not
//! deserialize is unreadable (logged, skipped), not a failed invocation. A record without a
//! sequence number fails the whole batch ([`BatchError`]): it cannot be reported alone, and an
//! empty `itemIdentifier` (or an archive object named by nothing) must never be produced.

use aws_lambda_events::event::dynamodb::EventRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use verdict::adapters::dynamodb::decode_record;
use verdict::app::archive::Archiver;
use verdict::app::events::{Publisher, StreamConsumer};
use verdict::domain::events::{RecordContent, StreamRecord};
use verdict::ports::events::EventBus;
use verdict::ports::objects::Objects;
use verdict::ports::Sleep;

pub use aws_lambda_events::event::dynamodb::Event as StreamEvent;
pub use verdict::adapters::runtime::TokioSleep;
pub use verdict::adapters::{EventBridgeBus, ObjectStore};
pub use verdict::app::events::PublishReport;

/// The partial batch response: `{"batchItemFailures": [{"itemIdentifier": "<sequence number>"}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFailure {
    pub item_identifier: String,
}

/// Why a whole batch fails (Lambda retries it, bisecting it down to the bad record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError(pub String);

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BatchError {}

/// Clients and configuration, built once per container.
pub struct Deps<B, O, S = TokioSleep> {
    pub bus: B,
    pub objects: O,
    /// Waits between re-sends of refused entries.
    pub sleep: S,
    /// The data bucket (`DATA_BUCKET`) the archive goes to; `None`: no archive.
    pub data_bucket: Option<String>,
}

/// One record of the event: its sequence number (required) and its decoded change.
fn record(i: usize, raw: &Value) -> Result<StreamRecord, BatchError> {
    let sequence_number = raw
        .pointer("/dynamodb/SequenceNumber")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| BatchError(format!("stream record {i} has no dynamodb.SequenceNumber")))?
        .to_owned();
    match serde_json::from_value::<EventRecord>(raw.clone()) {
        Ok(r) => Ok(StreamRecord {
            sequence_number,
            content: decode_record(&r).content,
        }),
        Err(e) => Ok(StreamRecord {
            sequence_number,
            content: RecordContent::Unreadable(format!("not a DynamoDB stream record: {e}")),
        }),
    }
}

pub async fn handle<B: EventBus, O: Objects, S: Sleep>(
    deps: &Deps<B, O, S>,
    event: Value,
) -> Result<Response, BatchError> {
    let Some(raw) = event.get("Records").and_then(Value::as_array) else {
        return Err(BatchError("the event has no Records array".into()));
    };
    let records = raw
        .iter()
        .enumerate()
        .map(|(i, r)| record(i, r))
        .collect::<Result<Vec<StreamRecord>, BatchError>>()?;
    let consumer = StreamConsumer {
        publisher: Publisher::new(&deps.bus, &deps.sleep),
        archiver: deps.data_bucket.as_deref().map(|bucket| Archiver {
            objects: &deps.objects,
            bucket,
        }),
    };
    let report = consumer.consume(&records).await;
    tracing::info!(
        records = records.len(),
        published = report.published,
        ignored = report.ignored,
        unreadable = report.unreadable,
        truncated = report.truncated,
        refused = report.refused,
        failed = report.failed.len(),
        archived = report.archived,
        "stream batch"
    );
    Ok(Response {
        batch_item_failures: report
            .failed
            .into_iter()
            .map(|item_identifier| ItemFailure { item_identifier })
            .collect(),
    })
}
