//! [`ReviewStore`] on [`InMemoryDecisions`], whose commit opens the items; held to the DynamoDB
//! adapter by [`crate::ports::contract::reviews`].

use super::InMemoryDecisions;
use crate::domain::review::{Resolution, Review, ReviewAction, ReviewClaim, ReviewEvent, ReviewSort, ReviewStatus};
use crate::domain::{TenantId, Timestamp, TransactionId};
use crate::ports::reviews::{ReviewChange, ReviewRefusal, ReviewStore};
use crate::ports::{Page, StoreError};

impl InMemoryDecisions {
    /// Test hook: sets an item's claim expiry, as time passing would.
    pub fn expire_claim(&self, tenant: &TenantId, id: &TransactionId, expires_at: i64) {
        if let Some(r) = self.state().reviews.get_mut(&(tenant.clone(), id.as_str().to_owned())) {
            if let Some(c) = r.claim.as_mut() {
                c.expires_at = expires_at;
            }
        }
    }

    fn change(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        f: impl FnOnce(&mut Review) -> Result<(), ReviewRefusal>,
    ) -> ReviewChange {
        let mut s = self.state();
        let Some(r) = s.reviews.get_mut(&(tenant.clone(), id.as_str().to_owned())) else {
            return Err(ReviewRefusal::Missing);
        };
        let mut next = r.clone();
        f(&mut next)?;
        *r = next.clone();
        Ok(next)
    }
}

fn open_and(r: &Review) -> Result<(), ReviewRefusal> {
    match r.status {
        ReviewStatus::Resolved => Err(ReviewRefusal::AlreadyResolved),
        ReviewStatus::Open => Ok(()),
    }
}

fn held_by(r: &Review, holder: &str, now: i64) -> Result<(), ReviewRefusal> {
    open_and(r)?;
    match r.live_claim(now) {
        Some(c) if c.holder == holder => Ok(()),
        Some(c) => Err(ReviewRefusal::HeldByOther {
            holder: c.holder.clone(),
            expires_at: c.expires_at,
        }),
        None => Err(ReviewRefusal::NotHeld),
    }
}

impl ReviewStore for InMemoryDecisions {
    async fn review(&self, tenant: &TenantId, id: &TransactionId) -> Result<Option<Review>, StoreError> {
        Ok(self
            .state()
            .reviews
            .get(&(tenant.clone(), id.as_str().to_owned()))
            .cloned())
    }

    async fn reviews(
        &self,
        tenant: &TenantId,
        status: ReviewStatus,
        sort: ReviewSort,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Review>, StoreError> {
        let limit = limit.clamp(1, 1000);
        let from = match cursor {
            None => 0,
            Some(c) => c
                .strip_prefix("rev:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or(StoreError::BadCursor)?,
        };
        let s = self.state();
        let mut all: Vec<&Review> = s
            .reviews
            .iter()
            .filter(|((t, _), r)| t == tenant && r.status == status)
            .map(|(_, r)| r)
            .collect();
        match sort {
            ReviewSort::Oldest => {
                all.sort_by(|a, b| (a.opened_at, &a.transaction_id).cmp(&(b.opened_at, &b.transaction_id)))
            }
            ReviewSort::Risk => all.sort_by(|a, b| {
                (std::cmp::Reverse(a.risk_score), a.opened_at, &a.transaction_id).cmp(&(
                    std::cmp::Reverse(b.risk_score),
                    b.opened_at,
                    &b.transaction_id,
                ))
            }),
        }
        let items: Vec<Review> = all.iter().skip(from).take(limit).map(|r| (*r).clone()).collect();
        let next = from + items.len();
        Ok(Page {
            next_cursor: (next < all.len()).then(|| format!("rev:{next}")),
            items,
        })
    }

    async fn claim(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        until: i64,
    ) -> Result<ReviewChange, StoreError> {
        Ok(self.change(tenant, id, |r| {
            open_and(r)?;
            if let Some(c) = r.live_claim(now.unix()) {
                if c.holder != holder {
                    return Err(ReviewRefusal::HeldByOther {
                        holder: c.holder.clone(),
                        expires_at: c.expires_at,
                    });
                }
            }
            r.claim = Some(ReviewClaim {
                holder: holder.to_owned(),
                expires_at: until,
            });
            r.history.push(ReviewEvent {
                action: ReviewAction::Claimed,
                by: Some(holder.to_owned()),
                at: now,
            });
            Ok(())
        }))
    }

    async fn release(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
    ) -> Result<ReviewChange, StoreError> {
        Ok(self.change(tenant, id, |r| {
            held_by(r, holder, now.unix())?;
            r.claim = None;
            r.history.push(ReviewEvent {
                action: ReviewAction::Released,
                by: Some(holder.to_owned()),
                at: now,
            });
            Ok(())
        }))
    }

    async fn resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        resolution: &Resolution,
    ) -> Result<ReviewChange, StoreError> {
        Ok(self.change(tenant, id, |r| {
            held_by(r, holder, now.unix())?;
            r.claim = None;
            r.status = ReviewStatus::Resolved;
            r.resolution = Some(resolution.clone());
            r.history.push(ReviewEvent {
                action: ReviewAction::Resolved,
                by: Some(holder.to_owned()),
                at: resolution.resolved_at,
            });
            Ok(())
        }))
    }
}
