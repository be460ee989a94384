//! events: the table's stream (DynamoDB Streams, NEW_AND_OLD_IMAGES) → EventBridge.
//!
//! This decodes the stream records ([`verdict::adapters::dynamodb::decode_record`]), runs
//! [`verdict::app::events::StreamConsumer`] (the events to the bus, the decisions and labels to
//! the archive in the data bucket), and maps its report to Lambda's partial batch response
//! (`ReportBatchItemFailures`): the sequence numbers of the records to retry.

use serde::{Deserialize, Serialize};
use verdict::adapters::dynamodb::decode_record;
use verdict::app::archive::Archiver;
use verdict::app::events::{Publisher, StreamConsumer};
use verdict::domain::events::StreamRecord;
use verdict::ports::events::EventBus;
use verdict::ports::objects::Objects;

pub use aws_lambda_events::event::dynamodb::Event as StreamEvent;
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

/// Clients and configuration, built once per container.
pub struct Deps<B, O> {
    pub bus: B,
    pub objects: O,
    /// The data bucket (`DATA_BUCKET`) the archive goes to; `None`: no archive.
    pub data_bucket: Option<String>,
}

pub async fn handle<B: EventBus, O: Objects>(deps: &Deps<B, O>, event: StreamEvent) -> Response {
    let records: Vec<StreamRecord> = event.records.iter().map(decode_record).collect();
    let consumer = StreamConsumer {
        publisher: Publisher::new(&deps.bus),
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
        failed = report.failed.len(),
        archived = report.archived,
        "stream batch"
    );
    Response {
        batch_item_failures: report
            .failed
            .into_iter()
            .map(|item_identifier| ItemFailure { item_identifier })
            .collect(),
    }
}
