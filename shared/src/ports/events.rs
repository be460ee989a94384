//! The event bus (EventBridge in production, [`crate::ports::in_memory::InMemoryBus`] in unit
//! tests): publishes up to [`MAX_ENTRIES_PER_CALL`] entries per call and says, entry by entry,
//! which were accepted, as PutEvents does.

use crate::domain::events::Event;
use crate::ports::StoreError;
use std::future::Future;

/// PutEvents takes at most 10 entries.
pub const MAX_ENTRIES_PER_CALL: usize = 10;

/// What the bus answered for one entry, in the order of the entries sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    Published,
    /// The bus refused this entry alone (throttled, an internal failure…): it may be sent again.
    Failed {
        code: String,
        message: String,
    },
}

pub trait EventBus: Send + Sync {
    /// Publishes `events` (at most [`MAX_ENTRIES_PER_CALL`]; more is [`StoreError::Rejected`]
    /// before anything is sent); one outcome per event, in order. An error of the whole call
    /// ([`StoreError::Unavailable`]) means none of them is known to be published.
    fn put_events(&self, events: &[Event]) -> impl Future<Output = Result<Vec<EntryOutcome>, StoreError>> + Send;
}

/// The refusal of a call with too many entries, shared by the adapter and the fake.
pub fn check_batch_size(events: &[Event]) -> Result<(), StoreError> {
    if events.len() > MAX_ENTRIES_PER_CALL {
        return Err(StoreError::Rejected(format!(
            "PutEvents takes at most {MAX_ENTRIES_PER_CALL} entries, not {}",
            events.len()
        )));
    }
    Ok(())
}
