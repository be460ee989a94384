//! The review queue's storage. Items are opened by the decision commit
//! ([`crate::ports::DecisionStore::commit`] writes the item [`Review::opened_by`] gives, in the
//! same atomic write), so a replayed or retried decision never opens a second one. Every change
//! here is conditional: of two analysts racing, one wins and the other is told why.
//! DynamoDB: `adapters/dynamodb/reviews.rs`; in memory: `ports::in_memory::InMemoryDecisions`.

use crate::domain::review::{Resolution, Review, ReviewSort, ReviewStatus};
use crate::domain::{TenantId, Timestamp, TransactionId};
use crate::ports::{Page, StoreError};
use std::future::Future;

/// Why a claim, release or resolve was not made; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewRefusal {
    Missing,
    /// Another key holds an unexpired claim.
    HeldByOther {
        holder: String,
        expires_at: i64,
    },
    /// The caller holds no unexpired claim (release, resolve).
    NotHeld,
    AlreadyResolved,
    /// Another key's resolution is recorded and not yet carried out.
    Pending {
        by: String,
    },
    /// The item's history holds [`crate::domain::review::MAX_HISTORY`] entries.
    HistoryFull,
}

pub type ReviewChange = Result<Review, ReviewRefusal>;

pub trait ReviewStore: Send + Sync {
    fn review(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
    ) -> impl Future<Output = Result<Option<Review>, StoreError>> + Send;

    /// One page of the tenant's items of `status`, in `sort` order; `cursor` is the previous
    /// page's `next_cursor` ([`StoreError::BadCursor`] if not one of this query).
    fn reviews(
        &self,
        tenant: &TenantId,
        status: ReviewStatus,
        sort: ReviewSort,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<Review>, StoreError>> + Send;

    /// Claims an open item for `holder` until `until`, if nobody else holds it at `now` (an
    /// expired claim, or one without an expiry, is free) and no resolution is pending. Taking it
    /// appends `claimed` to history (refused past [`crate::domain::review::MAX_HISTORY`]); the
    /// holder's re-claim of a live claim only moves the expiry and appends nothing.
    fn claim(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        until: i64,
    ) -> impl Future<Output = Result<ReviewChange, StoreError>> + Send;

    /// Drops `holder`'s unexpired claim. Appends `released` (refused past the history cap).
    fn release(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<ReviewChange, StoreError>> + Send;

    /// Records `intent` (by `holder`) as the item's pending resolution, if it is open, `holder`
    /// holds it unexpired at `now` and no resolution is pending. If `holder`'s own is already
    /// pending (a retry after a crash), nothing is written and the item is returned with the
    /// stored one, which the caller completes. Another key's pending one is
    /// [`ReviewRefusal::Pending`].
    fn begin_resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        intent: &Resolution,
    ) -> impl Future<Output = Result<ReviewChange, StoreError>> + Send;

    /// Closes an item whose pending resolution is `resolution.resolved_by`'s: status resolved,
    /// `resolution` stored, the pending one and the claim removed, `resolved` appended, the item
    /// moved to the resolved queue. Idempotent: an item already resolved by the same key is
    /// returned as it is.
    fn finish_resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        resolution: &Resolution,
    ) -> impl Future<Output = Result<ReviewChange, StoreError>> + Send;
}
