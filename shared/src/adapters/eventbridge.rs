//! [`EventBus`] on EventBridge: one PutEvents per call, each entry's outcome as the service
//! reports it (an entry with an `ErrorCode` failed alone).

use crate::domain::events::Event;
use crate::ports::events::{check_batch_size, EntryOutcome, EventBus, INVALID_CALL_CODE};
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
        let out = match self.client.put_events().set_entries(Some(entries)).send().await {
            Ok(out) => out,
            Err(e) => {
                let message = format!("EventBridge PutEvents {}: {}", self.bus_name, DisplayErrorContext(&e));
                // A one-entry call refused as invalid: that entry's own refusal (see EventBus).
                let code = e.as_service_error().and_then(|s| s.meta().code());
                if events.len() == 1 && code == Some(INVALID_CALL_CODE) {
                    return Ok(vec![EntryOutcome::Failed {
                        code: INVALID_CALL_CODE.to_owned(),
                        message,
                    }]);
                }
                return Err(crate::adapters::sdk_errors::classified(message, &e));
            }
        };
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

impl EventBridgeBus {
    /// A local stack's "tap" rule: `rule` on this bus sends every Verdict event to `target_arn`
    /// (an SQS queue the caller made: `verdict bootstrap --events-tap`, the tests), so what
    /// arrived can be listed. Idempotent.
    pub async fn tap_into(&self, rule: &str, target_arn: &str) -> Result<(), StoreError> {
        let fail = |op: &str, e: String| StoreError::Unavailable(format!("EventBridge {op} (tap {rule}): {e}"));
        self.client
            .put_rule()
            .name(rule)
            .event_bus_name(&self.bus_name)
            .event_pattern(TAP_PATTERN)
            .send()
            .await
            .map_err(|e| fail("PutRule", DisplayErrorContext(&e).to_string()))?;
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("tap")
            .arn(target_arn)
            .build()
            .map_err(|e| StoreError::Rejected(format!("tap target: {e}")))?;
        self.client
            .put_targets()
            .rule(rule)
            .event_bus_name(&self.bus_name)
            .targets(target)
            .send()
            .await
            .map_err(|e| fail("PutTargets", DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }
}
