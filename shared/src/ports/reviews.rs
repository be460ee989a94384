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
    /// expired claim is free; the holder's own claim is renewed). Appends `claimed` to history.
    fn claim(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        until: i64,
    ) -> impl Future<Output = Result<ReviewChange, StoreError>> + Send;

    /// Drops `holder`'s unexpired claim. Appends `released`.
    fn release(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<ReviewChange, StoreError>> + Send;

    /// Closes an open item `holder` holds unexpired at `now`, with `resolution`. Appends
    /// `resolved` and moves the item to the resolved queue.
    fn resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        resolution: &Resolution,
    ) -> impl Future<Output = Result<ReviewChange, StoreError>> + Send;
}
