//! [`EventBus`] in memory: records what was published and every call's size, and fails the
//! entries a test names, as many times as it asks. The events contract
//! ([`crate::ports::contract::events`]) holds it to what EventBridge does on moto.

use super::lock;
use crate::domain::events::Event;
use crate::ports::events::{check_batch_size, EntryOutcome, EventBus, INVALID_CALL_CODE};
use crate::ports::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct InMemoryBus {
    published: Mutex<Vec<Event>>,
    /// The number of entries of each call, in order.
    calls: Mutex<Vec<Vec<String>>>,
    /// Event id → how many more times its entry fails, and with which code.
    failing: Mutex<HashMap<String, (usize, String)>>,
    /// Event ids whose calls are refused whole as invalid (a whole-call ValidationException).
    poison: Mutex<Vec<String>>,
    /// Every call is refused whole for good, not as invalid (access denied).
    denied: Mutex<bool>,
    /// How many more whole calls fail.
    down: Mutex<usize>,
}

impl InMemoryBus {
    /// Everything accepted, in order (a re-sent event appears again).
    pub fn published(&self) -> Vec<Event> {
        lock(&self.published).clone()
    }

    /// The event ids of each call, in order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        lock(&self.calls).clone()
    }

    /// The entry of `event_id` fails the next `times` times it is sent.
    pub fn fail_entry(&self, event_id: &str, times: usize) {
        self.refuse_entry(event_id, times, "InternalFailure");
    }

    /// The entry of `event_id` is refused with `code` the next `times` times it is sent.
    pub fn refuse_entry(&self, event_id: &str, times: usize, code: &str) {
        lock(&self.failing).insert(event_id.to_owned(), (times, code.to_owned()));
    }

    /// Every call carrying `event_id` is refused whole as invalid, as EventBridge answers:
    /// `Rejected`, or that entry's [`INVALID_CALL_CODE`] outcome when it is alone.
    pub fn reject_calls_with(&self, event_id: &str) {
        lock(&self.poison).push(event_id.to_owned());
    }

    /// Every call is refused whole for good (`Rejected`, as an access denied would be).
    pub fn deny_calls(&self) {
        *lock(&self.denied) = true;
    }

    /// The next `calls` calls fail whole (`Unavailable`).
    pub fn fail_calls(&self, calls: usize) {
        *lock(&self.down) = calls;
    }
}

impl EventBus for InMemoryBus {
    async fn put_events(&self, events: &[Event]) -> Result<Vec<EntryOutcome>, StoreError> {
        check_batch_size(events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        lock(&self.calls).push(events.iter().map(|e| e.event_id.clone()).collect());
        {
            let mut down = lock(&self.down);
            if *down > 0 {
                *down -= 1;
                return Err(StoreError::Unavailable("PutEvents: the bus is down".into()));
            }
        }
        if *lock(&self.denied) {
            return Err(StoreError::Rejected(
                "PutEvents: AccessDeniedException (injected)".into(),
            ));
        }
        if events.iter().any(|e| lock(&self.poison).contains(&e.event_id)) {
            if events.len() == 1 {
                return Ok(vec![EntryOutcome::Failed {
                    code: INVALID_CALL_CODE.into(),
                    message: "injected".into(),
                }]);
            }
            return Err(StoreError::Rejected("PutEvents: ValidationException (injected)".into()));
        }
        let mut failing = lock(&self.failing);
        let mut published = lock(&self.published);
        Ok(events
            .iter()
            .map(|e| match failing.get_mut(&e.event_id) {
                Some((n, code)) if *n > 0 => {
                    *n -= 1;
                    EntryOutcome::Failed {
                        code: code.clone(),
                        message: "injected".into(),
                    }
                }
                _ => {
                    published.push(e.clone());
                    EntryOutcome::Published
                }
            })
            .collect())
    }
}
