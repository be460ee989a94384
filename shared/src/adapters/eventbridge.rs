//! [`EventBus`] on EventBridge: one PutEvents per call, each entry's outcome as the service
//! reports it (an entry with an `ErrorCode` failed alone).

use crate::domain::events::Event;
use crate::ports::events::{check_batch_size, EntryOutcome, EventBus};
use crate::ports::StoreError;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

/// The bus of a local stack (`verdict bootstrap`, `make dev`), when `EVENT_BUS_NAME` is unset.
pub const LOCAL_EVENT_BUS: &str = "verdict-events";

/// The bus the events function publishes to (`EVENT_BUS_NAME`).
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        EventBridgeBus {
            client,
            bus_name: bus_name.into(),
        }
    }

    pub fn bus_name(&self) -> &str {
        &self.bus_name
    }

    /// Creates the bus unless it exists (local stacks: `verdict bootstrap`, the tests). Returns
    /// whether it was created.
    pub async fn create_if_missing(&self) -> Result<bool, StoreError> {
        match self.client.create_event_bus().name(&self.bus_name).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(crate::adapters::sdk_errors::classified(
                format!(
                    "EventBridge CreateEventBus {}: {}",
                    self.bus_name,
                    DisplayErrorContext(&e)
                ),
                &e,
            )),
        }
    }
}

impl EventBus for EventBridgeBus {
    async fn put_events(&self, events: &[Event]) -> Result<Vec<EntryOutcome>, StoreError> {
        check_batch_size(events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let entries = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(e.kind.source())
                    .detail_type(e.kind.detail_type())
                    .detail(e.detail.to_string())
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                crate::adapters::sdk_errors::classified(
                    format!("EventBridge PutEvents {}: {}", self.bus_name, DisplayErrorContext(&e)),
                    &e,
                )
            })?;
        let results = out.entries();
        if results.len() != events.len() {
            return Err(StoreError::Unavailable(format!(
                "EventBridge PutEvents answered {} entries for {}",
                results.len(),
                events.len()
            )));
        }
        Ok(results
            .iter()
            .map(|r| match r.error_code() {
                Some(code) => EntryOutcome::Failed {
                    code: code.to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                },
                None => EntryOutcome::Published,
            })
            .collect())
    }
}

/// The rule pattern of a tap: every Verdict event.
pub const TAP_PATTERN: &str = r#"{"source": [{"prefix": "verdict."}]}"#;

/// A local stack's "tap": an SQS queue `queue_name` and a rule on `bus_name` sending it every
/// Verdict event, so what arrived on the bus can be listed (`aws sqs receive-message`). Made
/// by `verdict bootstrap --events-tap` and the tests; idempotent. Returns the queue URL.
pub async fn create_tap(
    events: &Client,
    sqs: &aws_sdk_sqs::Client,
    bus_name: &str,
    queue_name: &str,
) -> Result<String, StoreError> {
    let fail = |op: &str, e: String| StoreError::Unavailable(format!("{op} (tap {queue_name}): {e}"));
    let queue_url = sqs
        .create_queue()
        .queue_name(queue_name)
        .send()
        .await
        .map_err(|e| fail("SQS CreateQueue", DisplayErrorContext(&e).to_string()))?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail("SQS GetQueueAttributes", DisplayErrorContext(&e).to_string()))?
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default();
    events
        .put_rule()
        .name(queue_name)
        .event_bus_name(bus_name)
        .event_pattern(TAP_PATTERN)
        .send()
        .await
        .map_err(|e| fail("EventBridge PutRule", DisplayErrorContext(&e).to_string()))?;
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("tap")
        .arn(queue_arn)
        .build()
        .map_err(|e| StoreError::Rejected(format!("tap target: {e}")))?;
    events
        .put_targets()
        .rule(queue_name)
        .event_bus_name(bus_name)
        .targets(target)
        .send()
        .await
        .map_err(|e| fail("EventBridge PutTargets", DisplayErrorContext(&e).to_string()))?;
    Ok(queue_url)
}

/// What [`bootstrap_bus`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBus {
    pub created: bool,
    /// The tap queue's URL, when one was asked for.
    pub tap_queue_url: Option<String>,
}

/// A local stack's bus (`verdict bootstrap`): created unless it exists, with a tap queue when
/// `tap_queue` names one.
pub async fn bootstrap_bus(
    config: &aws_config::SdkConfig,
    bus_name: &str,
    tap_queue: Option<&str>,
) -> Result<LocalBus, StoreError> {
    let events = Client::new(config);
    let created = EventBridgeBus::new(events.clone(), bus_name)
        .create_if_missing()
        .await?;
    let tap_queue_url = match tap_queue {
        Some(q) => Some(create_tap(&events, &aws_sdk_sqs::Client::new(config), bus_name, q).await?),
        None => None,
    };
    Ok(LocalBus { created, tap_queue_url })
}
