//! The review queue: what analysts do with the `review` decisions. Items are opened by the
//! decision's own commit (see [`crate::ports::reviews`]); this service reads the queue, claims
//! and releases items, and resolves them through the existing paths: the label through
//! [`crate::app::labels::label_transaction`] (the labels API's path, shared with label files),
//! list entries through [`RulesService`] ([`check_entry`] and [`RulesService::apply_entries`]).
//!
//! Resolving is fenced, so a refusal writes nothing and a retry completes without duplicating:
//! 1. read the item; check every list entry (the list exists, its kind is card, email or IP,
//!    it has room, the transaction has a value that parses) and that the label can apply (the
//!    transaction exists and has occurred): any refusal here writes nothing;
//! 2. record the intent on the item (`resolving`) with one conditional update: open, held by
//!    the caller unexpired, no other resolution pending. From here no claim, release or other
//!    resolution gets in (409);
//! 3. write the label (labels path) and add the list entries (rules service), as recorded;
//! 4. close the item, conditioned on the pending resolution being this one.
//!
//! A crash after 2 is completed by the next resolve of the item: the author's retry returns the
//! resolved item; anyone else's completes the recorded resolution (as its author's) and is then
//! told the item is resolved (409). Steps 3 and 4 are idempotent (the same label again is
//! `unchanged`; the close of an item already closed by the same key returns it).

use crate::app::labels::{label_transaction, LabelError, LabelOutcome};
use crate::app::rules::{check_entry, EntryInput, RulesError, RulesService};
use crate::domain::labels::{LabelRequest, LabelRow, LabelValue};
use crate::domain::review::{
    list_field, LabelStatus, ListAdded, Resolution, ResolutionLabel, ResolveRequest, Review, ReviewSort, ReviewStatus,
    DEFAULT_LEASE_SECS, MAX_HISTORY, MAX_LEASE_SECS,
};
use crate::domain::rules::{ListEntry, MAX_LIST_ENTRIES};
use crate::domain::{ListName, TenantId, Timestamp, TransactionId};
use crate::ports::labels::LabelStore;
use crate::ports::reviews::{ReviewRefusal, ReviewStore};
use crate::ports::rules::RulesAdmin;
use crate::ports::{DecisionStore, Page, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{0}")]
    NotFound(String),
    /// The item's state does not allow it: held by another key, not held, resolved.
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The stored transaction does not take the label (it occurs later, or its stored data does
    /// not allow it): not the request's fault, so not a 400.
    #[error("{0}")]
    NotApplicable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn refused(id: &TransactionId, r: ReviewRefusal) -> ReviewError {
    match r {
        ReviewRefusal::Missing => ReviewError::NotFound(format!("No review item for transaction \"{id}\".")),
        ReviewRefusal::HeldByOther { holder, expires_at } => {
            let until = Timestamp::from_unix(expires_at).map_or_else(|_| expires_at.to_string(), |t| t.to_rfc3339());
            ReviewError::Conflict(format!("The review of \"{id}\" is claimed by {holder} until {until}."))
        }
        ReviewRefusal::NotHeld => ReviewError::Conflict(format!(
            "You do not hold an unexpired claim on the review of \"{id}\"; claim it first."
        )),
        ReviewRefusal::AlreadyResolved => ReviewError::Conflict(format!("The review of \"{id}\" is already resolved.")),
        ReviewRefusal::Pending { by } => ReviewError::Conflict(format!(
            "A resolution of the review of \"{id}\" by {by} is being carried out; resolve it again to complete it."
        )),
        ReviewRefusal::HistoryFull => ReviewError::Conflict(format!(
            "The review of \"{id}\" has {MAX_HISTORY} history entries, the most it keeps; resolve it."
        )),
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ReviewError {
    ReviewError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks a requested lease: absent is the default; 1 s ..= [`MAX_LEASE_SECS`].
pub fn lease_secs(requested: Option<i64>) -> Result<i64, ReviewError> {
    match requested {
        None => Ok(DEFAULT_LEASE_SECS),
        Some(s) if (1..=MAX_LEASE_SECS).contains(&s) => Ok(s),
        Some(_) => Err(invalid(
            "lease_seconds",
            format!("must be between 1 and {MAX_LEASE_SECS}"),
        )),
    }
}

/// A resolve's answer: the closed item, the list entries it did not add because they were
/// already there (left as they were; not in the stored `lists_added`), and those it could not
/// add because their list was deleted or filled up after the check (neither stored).
#[derive(Debug)]
pub struct Resolved {
    pub review: Review,
    pub already_present: Vec<ListAdded>,
    pub skipped: Vec<ListAdded>,
}

pub struct ReviewService<'a, S> {
    store: &'a S,
}

impl<'a, S: ReviewStore + LabelStore + RulesAdmin + DecisionStore> ReviewService<'a, S> {
    pub fn new(store: &'a S) -> Self {
        ReviewService { store }
    }

    pub async fn queue(
        &self,
        tenant: &TenantId,
        status: ReviewStatus,
        sort: ReviewSort,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Review>, ReviewError> {
        Ok(self.store.reviews(tenant, status, sort, limit, cursor).await?)
    }

    pub async fn get(&self, tenant: &TenantId, id: &TransactionId) -> Result<Review, ReviewError> {
        self.store
            .review(tenant, id)
            .await?
            .ok_or_else(|| refused(id, ReviewRefusal::Missing))
    }

    /// Claims for `key_id` for `lease` seconds ([`lease_secs`]); the holder's re-claim renews.
    pub async fn claim(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        key_id: &str,
        lease: i64,
    ) -> Result<Review, ReviewError> {
        let now = Timestamp::now();
        self.store
            .claim(tenant, id, key_id, now, now.unix() + lease)
            .await?
            .map_err(|r| refused(id, r))
    }

    pub async fn release(&self, tenant: &TenantId, id: &TransactionId, key_id: &str) -> Result<Review, ReviewError> {
        self.store
            .release(tenant, id, key_id, Timestamp::now())
            .await?
            .map_err(|r| refused(id, r))
    }

    pub async fn resolve(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        key_id: &str,
        request: ResolveRequest,
    ) -> Result<Resolved, ReviewError> {
        let now = Timestamp::now();
        let review = self.get(tenant, id).await?;
        // A resolution recorded before a crash is completed first, whoever asks.
        if let Some(pending) = review.pending {
            let mine = pending.resolved_by == key_id;
            let done = self.complete(tenant, id, pending).await?;
            return if mine {
                Ok(done)
            } else {
                Err(refused(id, ReviewRefusal::AlreadyResolved))
            };
        }
        if review.status == ReviewStatus::Resolved {
            return Err(refused(id, ReviewRefusal::AlreadyResolved));
        }
        match review.live_claim(now.unix()) {
            Some(c) if c.holder == key_id => {}
            Some(c) => {
                return Err(refused(
                    id,
                    ReviewRefusal::HeldByOther {
                        holder: c.holder.clone(),
                        expires_at: c.expires_at,
                    },
                ))
            }
            None => return Err(refused(id, ReviewRefusal::NotHeld)),
        }
        // 1. Everything that could refuse, before anything is written.
        if request.label != ResolutionLabel::None || !request.add_to_list.is_empty() {
            let decision = self
                .store
                .decision(tenant, id)
                .await?
                .ok_or_else(|| ReviewError::NotFound(format!("No transaction \"{id}\".")))?;
            if request.label != ResolutionLabel::None && decision.occurred_at > now {
                return Err(ReviewError::NotApplicable(format!(
                    "Transaction \"{id}\" occurs at {}, after now: it cannot be labelled yet; resolve it then.",
                    decision.occurred_at
                )));
            }
        }
        if let Some(value) = label_value(request.label) {
            self.label_can_apply(tenant, id, value, now).await?;
        }
        let entries = self.list_entries(tenant, id, key_id, &request.add_to_list, now).await?;
        // 2. The intent, fenced by the claim.
        let intent = Resolution {
            outcome: request.outcome,
            label: request.label,
            label_status: LabelStatus::Applied,
            note: request.note,
            resolved_by: key_id.to_owned(),
            resolved_at: now,
            lists_added: entries
                .iter()
                .map(|(name, e)| ListAdded {
                    list: name.to_string(),
                    value: e.value.clone(),
                })
                .collect(),
        };
        let recorded = self
            .store
            .begin_resolve(tenant, id, key_id, Timestamp::now(), &intent)
            .await?
            .map_err(|r| refused(id, r))?;
        let pending = recorded.pending.ok_or_else(|| refused(id, ReviewRefusal::NotHeld))?;
        // 3. and 4.
        self.complete(tenant, id, pending).await
    }

    /// Carries out a recorded resolution: the label, the list entries, the close. Each step is
    /// idempotent, so running it twice (a retry, two callers) changes nothing more.
    async fn complete(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        mut pending: Resolution,
    ) -> Result<Resolved, ReviewError> {
        let by = pending.resolved_by.as_str();
        if let Some(value) = label_value(pending.label) {
            let label = LabelRequest {
                row: LabelRow {
                    transaction_id: id.clone(),
                    label: value,
                    source: format!("review:{by}"),
                    // The recorded time, so a retry writes the same label.
                    labelled_at: pending.resolved_at,
                },
                note: pending.note.clone(),
            };
            // Checked before the intent was recorded; if it no longer applies (superseded, or
            // the transaction changed since), the item still closes: a recorded resolution must
            // never block the item for good. The analyst's label stays recorded (on a retry it
            // may have been written, and its event published, before a newer one superseded
            // it); `label_status` says what the label step found.
            let found = match label_transaction(self.store, tenant, by, &label).await {
                Ok(done) if done.outcome == LabelOutcome::Superseded => {
                    (LabelStatus::Superseded, Some("superseded by a newer label".to_owned()))
                }
                Ok(_) => (LabelStatus::Applied, None),
                Err(LabelError::NotFound(_)) => {
                    (LabelStatus::NotApplicable, Some("the transaction is gone".to_owned()))
                }
                Err(LabelError::Invalid { reason, .. }) => (LabelStatus::NotApplicable, Some(reason)),
                Err(LabelError::NotApplicable(why)) => (LabelStatus::NotApplicable, Some(why)),
                Err(LabelError::Busy(id)) => {
                    return Err(ReviewError::Store(StoreError::Unavailable(format!(
                        "transaction {id}: its label kept changing"
                    ))))
                }
                Err(LabelError::Store(s)) => return Err(ReviewError::Store(s)),
            };
            if let (status, Some(why)) = &found {
                tracing::warn!(transaction = %id, by, reason = %why, status = status.as_str(), "review resolution: label not in force; closed anyway");
            }
            pending.label_status = found.0;
        }
        // Added only if absent: an entry already there keeps its expiry, note and author. One
        // this resolution wrote before a crash (same author, same note) counts as added.
        let rules = RulesService::new(self.store);
        let note = format!("review of {id}");
        let (mut added, mut already_present, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        for wanted in &pending.lists_added {
            let name = ListName::parse(&wanted.list).map_err(|e| invalid("add_to_list", e.reason))?;
            let entry = ListEntry {
                value: wanted.value.clone(),
                expires_at: None,
                note: Some(note.clone()),
                added_by: by.to_owned(),
                added_at: pending.resolved_at,
            };
            let there = match rules.add_entry_if_absent(tenant, by, &name, entry).await {
                Ok(there) => there,
                // Deleted or filled since the check: reported, not failing the close.
                Err(RulesError::NotFound(_) | RulesError::Invalid(_)) => {
                    tracing::warn!(transaction = %id, list = %name, "review resolution: list gone or full; entry skipped");
                    skipped.push(wanted.clone());
                    continue;
                }
                Err(e) => return Err(rules_error(&name, e)),
            };
            match there {
                Some(there) if there.added_by != by || there.note.as_deref() != Some(note.as_str()) => {
                    already_present.push(wanted.clone())
                }
                _ => added.push(wanted.clone()),
            }
        }
        // Closed with a fresh clock: resolved_at is when it was closed.
        let resolution = Resolution {
            resolved_at: Timestamp::now(),
            lists_added: added,
            ..pending
        };
        let review = self
            .store
            .finish_resolve(tenant, id, &resolution)
            .await?
            .map_err(|r| refused(id, r))?;
        Ok(Resolved {
            review,
            already_present,
            skipped,
        })
    }

    /// Refuses a label that would not apply: a decision stored without its terminal, or a
    /// different label dated after `now` (ours would be superseded).
    async fn label_can_apply(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        value: LabelValue,
        now: Timestamp,
    ) -> Result<(), ReviewError> {
        let Some(target) = self
            .store
            .label_targets(tenant, std::slice::from_ref(id))
            .await?
            .remove(id)
        else {
            return Err(ReviewError::NotFound(format!("No transaction \"{id}\".")));
        };
        if target.terminal_id.is_none() {
            return Err(ReviewError::NotApplicable(format!(
                "Transaction \"{id}\" was stored without its terminal_id: it cannot be labelled."
            )));
        }
        match target.label {
            Some(l) if l.value != value && l.labelled_at > now => Err(ReviewError::Conflict(format!(
                "Transaction \"{id}\" has a newer label ({}, labelled at {} by {}); it would supersede this \
                 resolution's label: resolve with label none, or after that time.",
                l.value.as_str(),
                l.labelled_at,
                l.source
            ))),
            _ => Ok(()),
        }
    }

    /// The entry each named list gets: the transaction's value of the list kind's field.
    async fn list_entries(
        &self,
        tenant: &TenantId,
        id: &TransactionId,
        key_id: &str,
        lists: &[ListName],
        now: Timestamp,
    ) -> Result<Vec<(ListName, ListEntry)>, ReviewError> {
        if lists.is_empty() {
            return Ok(Vec::new());
        }
        let decision = self
            .store
            .decision(tenant, id)
            .await?
            .ok_or_else(|| ReviewError::NotFound(format!("No transaction \"{id}\".")))?;
        let inputs = decision.inputs.to_json();
        let rules = RulesService::new(self.store);
        let mut out = Vec::with_capacity(lists.len());
        for (i, name) in lists.iter().enumerate() {
            let field = format!("add_to_list[{i}]");
            let meta = match rules.list(tenant, name).await {
                Ok(m) => m,
                Err(RulesError::NotFound(_)) => return Err(invalid(field, format!("no list \"{name}\""))),
                Err(e) => return Err(rules_error(name, e)),
            };
            let Some(source) = list_field(meta.kind) else {
                return Err(invalid(
                    field,
                    format!("list \"{name}\" is not a card (customer_id), email or ip list"),
                ));
            };
            if meta.entries >= MAX_LIST_ENTRIES as u64 {
                return Err(invalid(
                    field,
                    format!("list \"{name}\" is full ({MAX_LIST_ENTRIES} entries)"),
                ));
            }
            let Some(value) = inputs.get(source).and_then(|v| v.as_str()) else {
                return Err(invalid(
                    field,
                    format!("the transaction has no {source} for list \"{name}\""),
                ));
            };
            let input = EntryInput {
                value: value.to_owned(),
                expires_at: None,
                note: Some(format!("review of {id}")),
            };
            let entry = check_entry(meta.kind, input, key_id, now).map_err(|problems| {
                let why: Vec<String> = problems.into_iter().map(|(f, r)| format!("{f}: {r}")).collect();
                invalid(field.clone(), why.join("; "))
            })?;
            out.push((name.clone(), entry));
        }
        Ok(out)
    }
}

fn label_value(label: ResolutionLabel) -> Option<LabelValue> {
    match label {
        ResolutionLabel::Fraud => Some(LabelValue::Fraud),
        ResolutionLabel::Legit => Some(LabelValue::Legit),
        ResolutionLabel::None => None,
    }
}

fn rules_error(name: &ListName, e: RulesError) -> ReviewError {
    match e {
        RulesError::NotFound(_) => invalid("add_to_list", format!("no list \"{name}\"")),
        RulesError::Invalid(p) => invalid(
            "add_to_list",
            p.into_iter().map(|p| p.message).collect::<Vec<_>>().join("; "),
        ),
        RulesError::Conflict(why) => ReviewError::Conflict(why),
        RulesError::Store(s) => ReviewError::Store(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::Decision;
    use crate::domain::features::transaction_delta;
    use crate::domain::review::Outcome;
    use crate::domain::rules::ListKind;
    use crate::ports::contract::decisions;
    use crate::ports::in_memory::{block_on as run, InMemoryDecisions};
    use crate::ports::labels::LabelTarget;
    use crate::ports::reviews::ReviewStore;
    use crate::ports::{AggregateWritePlan, DecisionCommit};

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    /// A `review` decision of `id` (customer `c-rev`) occurring at `at`, known to the labels too.
    fn review_decision(store: &InMemoryDecisions, id: &str, at: &str) -> TransactionId {
        let t = decisions::tx(id, at, 1_000, "c-rev");
        let mut record = decisions::record(&t, &format!("fp-{id}"));
        record.decision = Decision::Review;
        record.inputs = serde_json::json!({"id": id, "customer_id": "c-rev", "terminal_id": "t-1"}).into();
        let c = DecisionCommit {
            record: &record,
            transaction: &t,
            idempotency_key: None,
            delta: transaction_delta(&t),
            aggregates: AggregateWritePlan::NONE,
        };
        run(store.commit(&acme(), &c)).unwrap();
        store.labels.add_decision(
            &acme(),
            &t.id,
            LabelTarget {
                occurred_at: t.occurred_at,
                customer_id: t.customer_id.clone(),
                terminal_id: Some(t.terminal_id.clone()),
                label: None,
            },
        );
        t.id
    }

    fn lists(store: &InMemoryDecisions) {
        let rules = RulesService::new(store);
        for (name, kind) in [("cards", ListKind::CustomerId), ("terms", ListKind::TerminalId)] {
            run(rules.create_list(&acme(), "k", ListName::parse(name).unwrap(), kind, String::new())).unwrap();
        }
    }

    fn body(outcome: Outcome, label: ResolutionLabel, add: &[&str]) -> ResolveRequest {
        ResolveRequest {
            outcome,
            label,
            note: None,
            add_to_list: add.iter().map(|n| ListName::parse(n).unwrap()).collect(),
        }
    }

    fn label_of(store: &InMemoryDecisions, id: &TransactionId) -> Option<LabelValue> {
        let mut t = run(store.label_targets(&acme(), std::slice::from_ref(id))).unwrap();
        t.remove(id).unwrap().label.map(|l| l.value)
    }

    fn cards(store: &InMemoryDecisions) -> (u64, u64) {
        let meta = run(RulesService::new(store).list(&acme(), &ListName::parse("cards").unwrap())).unwrap();
        (meta.entries, meta.version)
    }

    #[test]
    fn a_refused_resolve_writes_no_label_no_entry_and_no_intent() {
        let store = InMemoryDecisions::default();
        lists(&store);
        let s = ReviewService::new(&store);
        let id = review_decision(&store, "r-1", "2018-08-01T10:00:00Z");
        run(s.claim(&acme(), &id, "vk_a", 900)).unwrap();
        let fraud_to_cards = || body(Outcome::Block, ResolutionLabel::Fraud, &["cards"]);
        // A terminal list is not offered.
        match run(s.resolve(
            &acme(),
            &id,
            "vk_a",
            body(Outcome::Block, ResolutionLabel::Fraud, &["cards", "terms"]),
        )) {
            Err(ReviewError::Invalid { field, reason }) => assert_eq!(field, "add_to_list[1]", "{reason}"),
            other => panic!("{other:?}"),
        }
        // The lease ran out before the resolve: 409, and nothing written (before: the label and
        // the entry were written first).
        store.expire_claim(&acme(), &id, 0);
        assert!(matches!(
            run(s.resolve(&acme(), &id, "vk_a", fraud_to_cards())),
            Err(ReviewError::Conflict(_))
        ));
        assert_eq!(label_of(&store, &id), None, "no label");
        assert_eq!(cards(&store), (0, 0), "no entry, no version");
        let item = run(store.review(&acme(), &id)).unwrap().unwrap();
        assert!(item.pending.is_none() && item.status == ReviewStatus::Open);

        // A transaction that occurs after now cannot take the label yet: not a 400 on `label`.
        let ahead = review_decision(&store, "r-2", "2999-01-01T00:00:00Z");
        run(s.claim(&acme(), &ahead, "vk_a", 900)).unwrap();
        assert!(matches!(
            run(s.resolve(&acme(), &ahead, "vk_a", fraud_to_cards())),
            Err(ReviewError::NotApplicable(_))
        ));
        assert!(run(store.review(&acme(), &ahead)).unwrap().unwrap().pending.is_none());
        assert_eq!(cards(&store), (0, 0));
    }

    #[test]
    fn a_full_list_is_refused_before_the_label_is_written() {
        use crate::domain::rules::AuditEntry;
        use crate::ports::rules::RulesAdmin;
        let store = InMemoryDecisions::default();
        lists(&store);
        let s = ReviewService::new(&store);
        let id = review_decision(&store, "r-1", "2018-08-01T10:00:00Z");
        run(s.claim(&acme(), &id, "vk_a", 900)).unwrap();
        let now = Timestamp::now();
        let full: Vec<ListEntry> = (0..MAX_LIST_ENTRIES)
            .map(|i| ListEntry {
                value: format!("c-{i}"),
                expires_at: None,
                note: None,
                added_by: "k".into(),
                added_at: now,
            })
            .collect();
        let audit = AuditEntry {
            at: now,
            actor: "k".into(),
            action: "list.entries.add".into(),
            target: "list:cards".into(),
            detail: String::new(),
        };
        run(store.add_list_entries(&acme(), &ListName::parse("cards").unwrap(), &full, &audit)).unwrap();
        // Before the fence, the label was written and then the list's cap refused the entry.
        match run(s.resolve(
            &acme(),
            &id,
            "vk_a",
            body(Outcome::Block, ResolutionLabel::Fraud, &["cards"]),
        )) {
            Err(ReviewError::Invalid { field, .. }) => assert_eq!(field, "add_to_list[0]"),
            other => panic!("{other:?}"),
        }
        assert_eq!(label_of(&store, &id), None, "no label");
        assert!(run(store.review(&acme(), &id)).unwrap().unwrap().pending.is_none());
    }

    #[test]
    fn a_recorded_resolution_is_completed_once_as_recorded() {
        let store = InMemoryDecisions::default();
        lists(&store);
        let s = ReviewService::new(&store);
        let id = review_decision(&store, "r-1", "2018-08-01T10:00:00Z");
        run(s.claim(&acme(), &id, "vk_a", 900)).unwrap();
        // The intent was recorded, then the function died.
        let intent = Resolution {
            outcome: Outcome::Block,
            label: ResolutionLabel::Fraud,
            label_status: LabelStatus::Applied,
            note: None,
            resolved_by: "vk_a".into(),
            resolved_at: Timestamp::now(),
            lists_added: vec![ListAdded {
                list: "cards".into(),
                value: "c-rev".into(),
            }],
        };
        run(store.begin_resolve(&acme(), &id, "vk_a", Timestamp::now(), &intent))
            .unwrap()
            .unwrap();
        assert!(matches!(
            run(s.claim(&acme(), &id, "vk_b", 900)),
            Err(ReviewError::Conflict(_))
        ));
        // The author's retry, with another body, completes what was recorded.
        let done = run(s.resolve(
            &acme(),
            &id,
            "vk_a",
            body(Outcome::Approve, ResolutionLabel::Legit, &[]),
        ))
        .unwrap();
        let r = done.review.resolution.expect("resolved");
        assert_eq!((r.outcome, r.label), (Outcome::Block, ResolutionLabel::Fraud));
        assert_eq!(r.lists_added, intent.lists_added);
        assert!(r.resolved_at >= intent.resolved_at, "closed on a fresh clock");
        assert_eq!(label_of(&store, &id), Some(LabelValue::Fraud));
        let after = cards(&store);
        assert_eq!(after, (1, 1));
        // Resolving again: 409, and nothing moves.
        assert!(matches!(
            run(s.resolve(
                &acme(),
                &id,
                "vk_a",
                body(Outcome::Block, ResolutionLabel::Fraud, &["cards"])
            )),
            Err(ReviewError::Conflict(_))
        ));
        assert_eq!(cards(&store), after);
    }

    /// The intent vk_a recorded on `id` (claimed), as if the function then died.
    fn recorded(store: &InMemoryDecisions, id: &TransactionId, label: ResolutionLabel, list: &str) -> Resolution {
        let intent = Resolution {
            outcome: Outcome::Block,
            label,
            label_status: LabelStatus::Applied,
            note: None,
            resolved_by: "vk_a".into(),
            resolved_at: Timestamp::now(),
            lists_added: vec![ListAdded {
                list: list.into(),
                value: "c-rev".into(),
            }],
        };
        run(store.begin_resolve(&acme(), id, "vk_a", Timestamp::now(), &intent))
            .unwrap()
            .unwrap();
        intent
    }

    /// Another labeller's `value`, dated an hour ahead of now.
    fn newer_label(store: &InMemoryDecisions, id: &TransactionId, value: LabelValue) {
        let at = Timestamp::from_unix(Timestamp::now().unix() + 3600).unwrap();
        let label = LabelRequest {
            row: LabelRow {
                transaction_id: id.clone(),
                label: value,
                source: "analyst".into(),
                labelled_at: at,
            },
            note: None,
        };
        run(label_transaction(store, &acme(), "vk_x", &label)).unwrap();
    }

    #[test]
    fn a_list_gone_since_the_check_is_skipped_and_the_item_closes() {
        let store = InMemoryDecisions::default();
        lists(&store);
        let s = ReviewService::new(&store);
        let id = review_decision(&store, "r-1", "2018-08-01T10:00:00Z");
        run(s.claim(&acme(), &id, "vk_a", 900)).unwrap();
        // Checked when it existed; no list "gone" by the completion.
        recorded(&store, &id, ResolutionLabel::Fraud, "gone");
        let done = run(s.resolve(&acme(), &id, "vk_a", body(Outcome::Block, ResolutionLabel::Fraud, &[]))).unwrap();
        assert_eq!(done.review.status, ReviewStatus::Resolved);
        assert!(done.review.pending.is_none());
        let r = done.review.resolution.expect("resolved");
        assert!(r.lists_added.is_empty(), "nothing was added");
        assert_eq!(
            done.skipped,
            vec![ListAdded {
                list: "gone".into(),
                value: "c-rev".into()
            }]
        );
        assert_eq!(label_of(&store, &id), Some(LabelValue::Fraud));
    }

    #[test]
    fn a_label_superseded_at_completion_closes_the_item_keeping_the_label_marked_superseded() {
        let store = InMemoryDecisions::default();
        lists(&store);
        let s = ReviewService::new(&store);
        let id = review_decision(&store, "r-1", "2018-08-01T10:00:00Z");
        run(s.claim(&acme(), &id, "vk_a", 900)).unwrap();
        recorded(&store, &id, ResolutionLabel::Fraud, "cards");
        newer_label(&store, &id, LabelValue::Legit);
        let done = run(s.resolve(&acme(), &id, "vk_a", body(Outcome::Block, ResolutionLabel::Fraud, &[]))).unwrap();
        assert_eq!(done.review.status, ReviewStatus::Resolved);
        let r = done.review.resolution.expect("resolved");
        assert_eq!(r.label, ResolutionLabel::Fraud, "the analyst's label is kept");
        assert_eq!(r.label_status, LabelStatus::Superseded, "and marked not in force");
        assert_eq!(label_of(&store, &id), Some(LabelValue::Legit), "the newer label stays");
        assert_eq!(cards(&store).0, 1, "the entries are still added");
    }

    #[test]
    fn a_label_a_newer_one_would_supersede_is_refused_before_anything_is_written() {
        let store = InMemoryDecisions::default();
        lists(&store);
        let s = ReviewService::new(&store);
        let id = review_decision(&store, "r-1", "2018-08-01T10:00:00Z");
        run(s.claim(&acme(), &id, "vk_a", 900)).unwrap();
        newer_label(&store, &id, LabelValue::Legit);
        match run(s.resolve(
            &acme(),
            &id,
            "vk_a",
            body(Outcome::Block, ResolutionLabel::Fraud, &["cards"]),
        )) {
            Err(ReviewError::Conflict(why)) => assert!(why.contains("newer label (legit"), "{why}"),
            other => panic!("{other:?}"),
        }
        let item = run(store.review(&acme(), &id)).unwrap().unwrap();
        assert!(item.pending.is_none() && item.status == ReviewStatus::Open);
        assert_eq!(cards(&store).0, 0);
    }

    #[test]
    fn renewing_a_claim_adds_no_history_line() {
        let store = InMemoryDecisions::default();
        let s = ReviewService::new(&store);
        let id = review_decision(&store, "r-1", "2018-08-01T10:00:00Z");
        for _ in 0..5 {
            run(s.claim(&acme(), &id, "vk_a", 900)).unwrap();
        }
        let item = run(s.get(&acme(), &id)).unwrap();
        assert_eq!(item.history.len(), 2, "opened, claimed");
    }

    #[test]
    fn a_lease_defaults_to_fifteen_minutes_and_is_bounded() {
        assert_eq!(lease_secs(None).unwrap(), 900);
        assert_eq!(lease_secs(Some(1)).unwrap(), 1);
        assert_eq!(lease_secs(Some(MAX_LEASE_SECS)).unwrap(), MAX_LEASE_SECS);
        for bad in [0, -5, MAX_LEASE_SECS + 1] {
            match lease_secs(Some(bad)) {
                Err(ReviewError::Invalid { field, .. }) => assert_eq!(field, "lease_seconds"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn refusals_say_why_in_the_callers_words() {
        let id = TransactionId::parse("tx-1").unwrap();
        assert!(matches!(refused(&id, ReviewRefusal::Missing), ReviewError::NotFound(_)));
        let held = refused(
            &id,
            ReviewRefusal::HeldByOther {
                holder: "vk_a".into(),
                expires_at: 1_533_723_301,
            },
        );
        assert_eq!(
            held.to_string(),
            "The review of \"tx-1\" is claimed by vk_a until 2018-08-08T10:15:01Z."
        );
        assert!(matches!(refused(&id, ReviewRefusal::NotHeld), ReviewError::Conflict(_)));
        assert!(matches!(
            refused(&id, ReviewRefusal::AlreadyResolved),
            ReviewError::Conflict(_)
        ));
    }
}
