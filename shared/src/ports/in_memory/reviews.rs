//! [`ReviewStore`] on [`InMemoryDecisions`], whose commit opens the items; held to the DynamoDB
//! adapter by [`crate::ports::contract::reviews`].

use super::InMemoryDecisions;
use crate::domain::review::{
    Resolution, Review, ReviewAction, ReviewClaim, ReviewEvent, ReviewSort, ReviewStatus, MAX_HISTORY,
};
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

/// Open, no other key's resolution pending.
fn open_not_pending(r: &Review, holder: &str) -> Result<(), ReviewRefusal> {
    open_and(r)?;
    match &r.pending {
        Some(p) if p.resolved_by != holder => Err(ReviewRefusal::Pending {
            by: p.resolved_by.clone(),
        }),
        _ => Ok(()),
    }
}

fn held_by(r: &Review, holder: &str, now: i64) -> Result<(), ReviewRefusal> {
    open_not_pending(r, holder)?;
    match r.live_claim(now) {
        Some(c) if c.holder == holder => Ok(()),
        Some(c) => Err(ReviewRefusal::HeldByOther {
            holder: c.holder.clone(),
            expires_at: c.expires_at,
        }),
        None => Err(ReviewRefusal::NotHeld),
    }
}

fn append(r: &mut Review, action: ReviewAction, holder: &str, at: Timestamp) -> Result<(), ReviewRefusal> {
    if action != ReviewAction::Resolved && r.history.len() >= MAX_HISTORY {
        return Err(ReviewRefusal::HistoryFull);
    }
    r.history.push(ReviewEvent {
        action,
        by: Some(holder.to_owned()),
        at,
    });
    Ok(())
}

/// The queue's position of an item: what the adapter's index sort key orders by.
fn position(r: &Review, sort: ReviewSort) -> (u8, Timestamp, String) {
    let risk = match sort {
        ReviewSort::Oldest => 0,
        ReviewSort::Risk => 100 - r.risk_score.min(100),
    };
    (risk, r.opened_at, r.transaction_id.as_str().to_owned())
}

/// The fake's cursor: like the adapter's, tied to the tenant, status and sort, and holding the
/// last item's sort key (not an offset), so an item leaving the queue between pages skips nothing.
fn cursor_of(tenant: &TenantId, status: ReviewStatus, sort: ReviewSort, last: &(u8, Timestamp, String)) -> String {
    let sort = match sort {
        ReviewSort::Oldest => "oldest",
        ReviewSort::Risk => "risk",
    };
    format!(
        "rev#{tenant}#{}#{sort}#{}#{}#{}",
        status.as_str(),
        last.0,
        last.1.to_rfc3339(),
        last.2
    )
}

fn parse_cursor(
    raw: &str,
    tenant: &TenantId,
    status: ReviewStatus,
    sort: ReviewSort,
) -> Result<(u8, Timestamp, String), StoreError> {
    let parts: Vec<&str> = raw.splitn(7, '#').collect();
    let [prefix, t, st, so, risk, at, id] = parts[..] else {
        return Err(StoreError::BadCursor);
    };
    let so_ok = matches!((so, sort), ("oldest", ReviewSort::Oldest) | ("risk", ReviewSort::Risk));
    if prefix != "rev" || t != tenant.as_str() || st != status.as_str() || !so_ok {
        return Err(StoreError::BadCursor);
    }
    let risk = risk.parse::<u8>().map_err(|_| StoreError::BadCursor)?;
    let at = Timestamp::parse("cursor", at).map_err(|_| StoreError::BadCursor)?;
    TransactionId::parse(id).map_err(|_| StoreError::BadCursor)?;
    Ok((risk, at, id.to_owned()))
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
        let after = cursor.map(|c| parse_cursor(c, tenant, status, sort)).transpose()?;
        let s = self.state();
        let mut all: Vec<((u8, Timestamp, String), &Review)> = s
            .reviews
            .iter()
            .filter(|((t, _), r)| t == tenant && r.status == status)
            .map(|(_, r)| (position(r, sort), r))
            .filter(|(p, _)| after.as_ref().is_none_or(|a| p > a))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let more = all.len() > limit;
        all.truncate(limit);
        Ok(Page {
            next_cursor: more
                .then(|| all.last().map(|(p, _)| cursor_of(tenant, status, sort, p)))
                .flatten(),
            items: all.into_iter().map(|(_, r)| r.clone()).collect(),
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
            if let Some(p) = &r.pending {
                return Err(ReviewRefusal::Pending {
                    by: p.resolved_by.clone(),
                });
            }
            match r.live_claim(now.unix()) {
                // The holder's renewal: a new expiry, no history line.
                Some(c) if c.holder == holder => {}
                Some(c) => {
                    return Err(ReviewRefusal::HeldByOther {
                        holder: c.holder.clone(),
                        expires_at: c.expires_at,
                    })
                }
                // A free item is taken even at the history cap, without its line: a full
                // history must not lock the item for good.
                None if r.history.len() >= MAX_HISTORY => {}
                None => append(r, ReviewAction::Claimed, holder, now)?,
            }
            r.claim = Some(ReviewClaim {
                holder: holder.to_owned(),
                expires_at: until,
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
            if r.pending.is_some() {
                return Err(ReviewRefusal::Pending { by: holder.to_owned() });
            }
            append(r, ReviewAction::Released, holder, now)?;
            r.claim = None;
            Ok(())
        }))
    }

    async fn begin_resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        holder: &str,
        now: Timestamp,
        intent: &Resolution,
    ) -> Result<ReviewChange, StoreError> {
        Ok(self.change(tenant, id, |r| {
            open_not_pending(r, holder)?;
            if r.pending.is_some() {
                // The caller's own, recorded before a crash: completed as recorded.
                return Ok(());
            }
            held_by(r, holder, now.unix())?;
            r.pending = Some(intent.clone());
            Ok(())
        }))
    }

    async fn finish_resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        resolution: &Resolution,
    ) -> Result<ReviewChange, StoreError> {
        let by = resolution.resolved_by.as_str();
        Ok(self.change(tenant, id, |r| {
            if r.status == ReviewStatus::Resolved {
                return match &r.resolution {
                    Some(done) if done.resolved_by == by => Ok(()),
                    _ => Err(ReviewRefusal::AlreadyResolved),
                };
            }
            match &r.pending {
                Some(p) if p.resolved_by == by => {}
                Some(p) => {
                    return Err(ReviewRefusal::Pending {
                        by: p.resolved_by.clone(),
                    })
                }
                None => return Err(ReviewRefusal::NotHeld),
            }
            r.claim = None;
            r.pending = None;
            r.status = ReviewStatus::Resolved;
            r.resolution = Some(resolution.clone());
            append(r, ReviewAction::Resolved, by, resolution.resolved_at)
        }))
    }
}
