//! The event bus (EventBridge in production, [`crate::ports::in_memory::InMemoryBus`] in unit
//! tests): publishes up to [`MAX_ENTRIES_PER_CALL`] entries per call and says, entry by entry,
//! which were accepted, as PutEvents does. A call also totals at most [`MAX_REQUEST_BYTES`]
//! by EventBridge's own count ([`entry_size`]).

use crate::domain::events::Event;
use crate::ports::StoreError;
use std::future::Future;

/// PutEvents takes at most 10 entries.
pub const MAX_ENTRIES_PER_CALL: usize = 10;

/// A PutEvents request totals less than 256 KB, its entries counted by [`entry_size`].
pub const MAX_REQUEST_BYTES: usize = 256 * 1024 - 1;

/// An entry's size as EventBridge counts it ("Calculating PutEvents event entry size"): the
/// UTF-8 bytes of source, detail-type and detail (and of each resource: none here), plus 14
/// for a time, counted whether or not one is sent.
pub fn entry_size(event: &Event) -> usize {
    14 + event.kind.source().len() + event.kind.detail_type().len() + event.detail.to_string().len()
}

/// Entry error codes of the entry's own content: no later attempt can get past them. Such an
/// entry is logged, counted and skipped, like an unreadable record; only a lone entry refused
/// whole as invalid ([`INVALID_CALL_CODE`]) fails its record instead, since a bad bus name
/// would refuse it just the same.
pub const PERMANENT_ENTRY_CODES: &[&str] = &["MalformedDetail", "InvalidArgument", "ValidationException"];

/// Prefixes of entry error codes that say the permissions are wrong
/// (`NotAuthorizedForSourceException`, `NotAuthorizedForDetailTypeException`,
/// `AccessDeniedException`): no entry's fault, so the record fails and the shard waits
/// (alarmed) until they are fixed, rather than every event being dropped.
pub const BLOCKING_ENTRY_CODE_PREFIXES: &[&str] = &["NotAuthorized", "AccessDenied"];

/// The error code of a whole call refused as invalid. Refused with one entry only, the bus
/// reports it as that entry's [`EntryOutcome::Failed`], so the publisher can split a refused
/// call and skip only the entry at fault; whether it was the entry's fault or the call's (a
/// malformed bus name refuses every entry) only the other entries of the split can tell. Any
/// other whole-call refusal (access denied, no such bus) stays an error and blocks the shard
/// until it is fixed.
pub const INVALID_CALL_CODE: &str = "ValidationException";

/// What the bus answered for one entry, in the order of the entries sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    Published,
    /// The bus refused this entry alone: throttled or an internal failure (it may be sent
    /// again), one of [`PERMANENT_ENTRY_CODES`] (it never will be accepted), or a permission
    /// problem ([`BLOCKING_ENTRY_CODE_PREFIXES`]).
    Failed {
        code: String,
        message: String,
    },
}

impl EntryOutcome {
    /// A refusal that sending again cannot change.
    pub fn is_permanent(&self) -> bool {
        matches!(self, EntryOutcome::Failed { code, .. } if PERMANENT_ENTRY_CODES.contains(&code.as_str()))
    }

    /// A refusal for the permissions, not the entry: only fixing them gets it published.
    pub fn is_blocking(&self) -> bool {
        matches!(self, EntryOutcome::Failed { code, .. }
            if BLOCKING_ENTRY_CODE_PREFIXES.iter().any(|p| code.starts_with(p)))
    }
}

pub trait EventBus: Send + Sync {
    /// Publishes `events` (at most [`MAX_ENTRIES_PER_CALL`] and [`MAX_REQUEST_BYTES`]; more is
    /// [`StoreError::Rejected`] before anything is sent); one outcome per event, in order. An error of the whole call
    /// ([`StoreError::Unavailable`]) means none of them is known to be published.
    fn put_events(&self, events: &[Event]) -> impl Future<Output = Result<Vec<EntryOutcome>, StoreError>> + Send;
}

/// The refusal of a call with too many entries or bytes, shared by the adapter and the fake.
pub fn check_batch_size(events: &[Event]) -> Result<(), StoreError> {
    if events.len() > MAX_ENTRIES_PER_CALL {
        return Err(StoreError::Rejected(format!(
            "PutEvents takes at most {MAX_ENTRIES_PER_CALL} entries, not {}",
            events.len()
        )));
    }
    let bytes: usize = events.iter().map(entry_size).sum();
    if bytes > MAX_REQUEST_BYTES {
        return Err(StoreError::Rejected(format!(
            "PutEvents takes at most {MAX_REQUEST_BYTES} bytes, not {bytes}"
        )));
    }
    Ok(())
}
