//! events: the table's stream (DynamoDB Streams, NEW_AND_OLD_IMAGES) → EventBridge.
//!
//! This decodes the stream records ([`verdict::adapters::dynamodb::decode_record`]), runs
//! [`verdict::app::events::Publisher`] over the bus, and maps its report to Lambda's partial
//! batch response (`ReportBatchItemFailures`): the sequence numbers of the records to retry.

use serde::{Deserialize, Serialize};
use verdict::adapters::dynamodb::decode_record;
use verdict::app::events::Publisher;
use verdict::domain::events::StreamRecord;
use verdict::ports::events::EventBus;

pub use aws_lambda_events::event::dynamodb::Event as StreamEvent;
pub use verdict::adapters::EventBridgeBus;
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

pub async fn handle<B: EventBus>(bus: &B, event: StreamEvent) -> Response {
    let records: Vec<StreamRecord> = event.records.iter().map(decode_record).collect();
    let report = Publisher::new(bus).publish(&records).await;
    tracing::info!(
        records = records.len(),
        published = report.published,
        ignored = report.ignored,
        unreadable = report.unreadable,
        failed = report.failed.len(),
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
