//! The review store's contract: items opened by the decision commit, the claim lease, release,
//! resolve and the queue's orders and pages, as one test body run against
//! [`crate::ports::in_memory::InMemoryDecisions`] and against the DynamoDB adapter on moto. It
//! panics on the first broken promise. Expired claims are made by claiming with an expiry in the
//! past, so nothing waits.

use crate::domain::decision::Decision;
use crate::domain::features::transaction_delta;
use crate::domain::review::{
    LabelStatus, ListAdded, Outcome, Resolution, ResolutionLabel, ReviewAction, ReviewSort, ReviewStatus, MAX_HISTORY,
};
use crate::domain::{TenantId, Timestamp, TransactionId};
use crate::ports::contract::decisions;
use crate::ports::reviews::{ReviewRefusal, ReviewStore};
use crate::ports::{CommitOutcome, DecisionCommit, DecisionStore};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse("t", s).unwrap()
}

/// Commits a decision of `decision` with `risk`, created at `created`.
async fn commit<S: DecisionStore>(
    store: &S,
    tenant: &TenantId,
    id: &str,
    decision: Decision,
    risk: u8,
    created: &str,
) -> CommitOutcome {
    let t = decisions::tx(id, "2018-08-01T10:00:00Z", 1_000, "c-rev");
    let mut record = decisions::record(&t, &format!("fp-{id}"));
    record.decision = decision;
    record.risk_score = risk;
    record.created_at = ts(created);
    let c = DecisionCommit {
        record: &record,
        transaction: &t,
        idempotency_key: None,
        delta: transaction_delta(&t),
        aggregates: crate::ports::AggregateWritePlan::NONE,
    };
    store.commit(tenant, &c).await.unwrap()
}

fn id(s: &str) -> TransactionId {
    TransactionId::parse(s).unwrap()
}

pub async fn review_rules<S: DecisionStore + ReviewStore>(store: &S) {
    let acme = TenantId::parse("acme-rev").unwrap();
    let beta = TenantId::parse("beta-rev").unwrap();
    // Opened by the commit of a review decision only; a replayed commit opens no second one.
    assert_eq!(
        commit(store, &acme, "r-1", Decision::Review, 40, "2018-08-01T10:00:01Z").await,
        CommitOutcome::Committed
    );
    assert_eq!(
        commit(store, &acme, "r-1", Decision::Review, 40, "2018-08-01T10:00:01Z").await,
        CommitOutcome::AlreadyDecided
    );
    commit(store, &acme, "r-2", Decision::Review, 90, "2018-08-01T10:00:02Z").await;
    commit(store, &acme, "r-3", Decision::Review, 40, "2018-08-01T10:00:03Z").await;
    commit(store, &acme, "a-1", Decision::Approve, 5, "2018-08-01T10:00:04Z").await;
    commit(store, &acme, "b-1", Decision::Block, 99, "2018-08-01T10:00:05Z").await;
    commit(store, &beta, "r-9", Decision::Review, 50, "2018-08-01T10:00:00Z").await;

    let r1 = store.review(&acme, &id("r-1")).await.unwrap().expect("r-1 opened");
    assert_eq!(r1.status, ReviewStatus::Open);
    assert_eq!((r1.risk_score, r1.opened_at), (40, ts("2018-08-01T10:00:01Z")));
    assert_eq!(r1.history.len(), 1, "one opening, despite the replay");
    assert_eq!(r1.history[0].action, ReviewAction::Opened);
    assert!(r1.claim.is_none() && r1.resolution.is_none());
    assert!(store.review(&acme, &id("a-1")).await.unwrap().is_none());
    assert!(store.review(&acme, &id("b-1")).await.unwrap().is_none());
    assert!(
        store.review(&acme, &id("r-9")).await.unwrap().is_none(),
        "beta's item is not acme's"
    );

    // The queue: oldest first, or highest risk first (then oldest), paged, per tenant.
    let ids = |p: &crate::ports::Page<crate::domain::review::Review>| -> Vec<String> {
        p.items.iter().map(|r| r.transaction_id.to_string()).collect()
    };
    let oldest = store
        .reviews(&acme, ReviewStatus::Open, ReviewSort::Oldest, 10, None)
        .await
        .unwrap();
    assert_eq!(ids(&oldest), ["r-1", "r-2", "r-3"]);
    assert_eq!(oldest.next_cursor, None);
    let risk = store
        .reviews(&acme, ReviewStatus::Open, ReviewSort::Risk, 10, None)
        .await
        .unwrap();
    assert_eq!(ids(&risk), ["r-2", "r-1", "r-3"]);
    let first = store
        .reviews(&acme, ReviewStatus::Open, ReviewSort::Risk, 2, None)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["r-2", "r-1"]);
    let cursor = first.next_cursor.expect("a second page");
    let second = store
        .reviews(&acme, ReviewStatus::Open, ReviewSort::Risk, 2, Some(&cursor))
        .await
        .unwrap();
    assert_eq!((ids(&second), second.next_cursor), (vec!["r-3".to_string()], None));
    assert!(store
        .reviews(&acme, ReviewStatus::Open, ReviewSort::Risk, 2, Some("garbage"))
        .await
        .is_err());
    let beta_q = store
        .reviews(&beta, ReviewStatus::Open, ReviewSort::Oldest, 10, None)
        .await
        .unwrap();
    assert_eq!(ids(&beta_q), ["r-9"]);

    // Claims: one holder at a time; the holder renews; an expired claim is free.
    let now = Timestamp::now();
    let t = now.unix();
    let held = store
        .claim(&acme, &id("r-1"), "vk_a", now, t + 900)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        held.claim.as_ref().map(|c| (c.holder.as_str(), c.expires_at)),
        Some(("vk_a", t + 900))
    );
    match store.claim(&acme, &id("r-1"), "vk_b", now, t + 900).await.unwrap() {
        Err(ReviewRefusal::HeldByOther { holder, expires_at }) => {
            assert_eq!((holder.as_str(), expires_at), ("vk_a", t + 900))
        }
        other => panic!("{other:?}"),
    }
    let renewed = store
        .claim(&acme, &id("r-1"), "vk_a", now, t + 1200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.claim.unwrap().expires_at, t + 1200);
    assert_eq!(
        store.claim(&acme, &id("nope"), "vk_a", now, t + 900).await.unwrap(),
        Err(ReviewRefusal::Missing)
    );
    assert_eq!(
        store.claim(&beta, &id("r-1"), "vk_a", now, t + 900).await.unwrap(),
        Err(ReviewRefusal::Missing),
        "another tenant's item does not exist"
    );
    // r-3: claimed with an expiry already past, so another key may take it.
    store
        .claim(&acme, &id("r-3"), "vk_a", now, t - 1)
        .await
        .unwrap()
        .unwrap();
    let taken = store
        .claim(&acme, &id("r-3"), "vk_b", now, t + 900)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.claim.unwrap().holder, "vk_b");
    // Releasing needs the claim (another's is named); then anyone may claim.
    assert_eq!(
        store.release(&acme, &id("r-1"), "vk_b", now).await.unwrap(),
        Err(ReviewRefusal::HeldByOther {
            holder: "vk_a".into(),
            expires_at: t + 1200
        })
    );
    assert_eq!(
        store.release(&acme, &id("r-2"), "vk_b", now).await.unwrap(),
        Err(ReviewRefusal::NotHeld)
    );
    let released = store.release(&acme, &id("r-1"), "vk_a", now).await.unwrap().unwrap();
    assert!(released.claim.is_none());
    store
        .claim(&acme, &id("r-1"), "vk_b", now, t + 900)
        .await
        .unwrap()
        .unwrap();

    // Resolving: the intent is recorded (fenced by an unexpired claim), then closed.
    let resolution = Resolution {
        outcome: Outcome::Block,
        label: ResolutionLabel::Fraud,
        label_status: LabelStatus::Applied,
        note: Some("stolen card".into()),
        resolved_by: "vk_b".into(),
        resolved_at: now,
        lists_added: vec![ListAdded {
            list: "blocked_cards".into(),
            value: "c-rev".into(),
        }],
    };
    assert_eq!(
        store
            .begin_resolve(&acme, &id("r-1"), "vk_a", now, &resolution)
            .await
            .unwrap(),
        Err(ReviewRefusal::HeldByOther {
            holder: "vk_b".into(),
            expires_at: t + 900
        })
    );
    assert_eq!(
        store
            .begin_resolve(&acme, &id("r-2"), "vk_b", now, &resolution)
            .await
            .unwrap(),
        Err(ReviewRefusal::NotHeld),
        "never claimed"
    );
    assert_eq!(
        store.finish_resolve(&acme, &id("r-2"), &resolution).await.unwrap(),
        Err(ReviewRefusal::NotHeld),
        "nothing pending"
    );
    let pending = store
        .begin_resolve(&acme, &id("r-1"), "vk_b", now, &resolution)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.status, ReviewStatus::Open);
    assert_eq!(pending.pending.as_ref(), Some(&resolution));
    // While it is pending: the author's retry gets the recorded one back (even with another
    // body, and after the lease ran out); nobody claims, releases or records another.
    let other_body = Resolution {
        label: ResolutionLabel::Legit,
        ..resolution.clone()
    };
    let retry = store
        .begin_resolve(
            &acme,
            &id("r-1"),
            "vk_b",
            Timestamp::from_unix(t + 5000).unwrap(),
            &other_body,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retry.pending.as_ref(), Some(&resolution), "the recorded one stays");
    let pending_refusal = Err(ReviewRefusal::Pending { by: "vk_b".into() });
    let later = Timestamp::from_unix(t + 5000).unwrap();
    assert_eq!(
        store.claim(&acme, &id("r-1"), "vk_a", later, t + 6000).await.unwrap(),
        pending_refusal,
        "an expired lease does not free an item with a pending resolution"
    );
    assert_eq!(
        store.claim(&acme, &id("r-1"), "vk_b", now, t + 1000).await.unwrap(),
        pending_refusal
    );
    assert_eq!(
        store.release(&acme, &id("r-1"), "vk_b", now).await.unwrap(),
        pending_refusal
    );
    let mut as_a = resolution.clone();
    as_a.resolved_by = "vk_a".into();
    assert_eq!(
        store
            .begin_resolve(&acme, &id("r-1"), "vk_a", now, &as_a)
            .await
            .unwrap(),
        pending_refusal
    );
    assert_eq!(
        store.finish_resolve(&acme, &id("r-1"), &as_a).await.unwrap(),
        pending_refusal,
        "only the pending one closes it"
    );
    // Closed with what completion found (differs from the intent): stored as given.
    let closed = Resolution {
        label_status: LabelStatus::Superseded,
        ..resolution.clone()
    };
    let done = store.finish_resolve(&acme, &id("r-1"), &closed).await.unwrap().unwrap();
    assert_eq!(done.status, ReviewStatus::Resolved);
    assert_eq!(done.resolution.as_ref(), Some(&closed));
    assert!(done.claim.is_none() && done.pending.is_none());
    assert_eq!(
        store.finish_resolve(&acme, &id("r-1"), &resolution).await.unwrap(),
        Ok(done.clone()),
        "closing again is idempotent and appends nothing"
    );
    assert_eq!(
        store
            .begin_resolve(&acme, &id("r-1"), "vk_b", now, &resolution)
            .await
            .unwrap(),
        Err(ReviewRefusal::AlreadyResolved)
    );
    assert_eq!(
        store.claim(&acme, &id("r-1"), "vk_a", now, t + 900).await.unwrap(),
        Err(ReviewRefusal::AlreadyResolved)
    );
    let read = store.review(&acme, &id("r-1")).await.unwrap().unwrap();
    assert_eq!(read, done);
    let actions: Vec<(ReviewAction, Option<&str>)> = read.history.iter().map(|e| (e.action, e.by.as_deref())).collect();
    assert_eq!(
        actions,
        [
            (ReviewAction::Opened, None),
            // The renewal by vk_a appended nothing.
            (ReviewAction::Claimed, Some("vk_a")),
            (ReviewAction::Released, Some("vk_a")),
            (ReviewAction::Claimed, Some("vk_b")),
            (ReviewAction::Resolved, Some("vk_b")),
        ]
    );
    let open = store
        .reviews(&acme, ReviewStatus::Open, ReviewSort::Oldest, 10, None)
        .await
        .unwrap();
    assert_eq!(ids(&open), ["r-2", "r-3"]);
    let resolved = store
        .reviews(&acme, ReviewStatus::Resolved, ReviewSort::Risk, 10, None)
        .await
        .unwrap();
    assert_eq!(ids(&resolved), ["r-1"]);

    // Cursors: tied to the tenant, status and sort; by position, so an item resolved between
    // pages makes the next page skip nothing.
    for i in 4..=7 {
        commit(
            store,
            &acme,
            &format!("r-{i}"),
            Decision::Review,
            40,
            &format!("2018-08-01T10:00:0{i}Z"),
        )
        .await;
    }
    let first = store
        .reviews(&acme, ReviewStatus::Open, ReviewSort::Oldest, 2, None)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["r-2", "r-3"]);
    let cursor = first.next_cursor.expect("more");
    for (tenant, status, sort) in [
        (&acme, ReviewStatus::Open, ReviewSort::Risk),
        (&acme, ReviewStatus::Resolved, ReviewSort::Oldest),
        (&beta, ReviewStatus::Open, ReviewSort::Oldest),
    ] {
        assert!(
            matches!(
                store.reviews(tenant, status, sort, 2, Some(&cursor)).await,
                Err(crate::ports::StoreError::BadCursor)
            ),
            "{tenant} {status:?} {sort:?}"
        );
    }
    // r-2 and r-3 (the first page) leave the open queue; the second page is still r-4, r-5.
    for rid in ["r-2", "r-3"] {
        store
            .claim(&acme, &id(rid), "vk_b", now, t + 900)
            .await
            .unwrap()
            .unwrap();
        store
            .begin_resolve(&acme, &id(rid), "vk_b", now, &resolution)
            .await
            .unwrap()
            .unwrap();
        store
            .finish_resolve(&acme, &id(rid), &resolution)
            .await
            .unwrap()
            .unwrap();
    }
    let second = store
        .reviews(&acme, ReviewStatus::Open, ReviewSort::Oldest, 2, Some(&cursor))
        .await
        .unwrap();
    assert_eq!(ids(&second), ["r-4", "r-5"]);

    // History is capped: past MAX_HISTORY a claim is refused; the renewal needs no line.
    let mut n = 1; // the opening
    while n < MAX_HISTORY {
        store
            .claim(&acme, &id("r-6"), "vk_a", now, t + 900)
            .await
            .unwrap()
            .unwrap();
        n += 1;
        if n == MAX_HISTORY {
            break;
        }
        store.release(&acme, &id("r-6"), "vk_a", now).await.unwrap().unwrap();
        n += 1;
    }
    let full = store.review(&acme, &id("r-6")).await.unwrap().unwrap();
    assert_eq!(full.history.len(), MAX_HISTORY);
    assert!(
        store
            .claim(&acme, &id("r-6"), "vk_a", now, t + 1000)
            .await
            .unwrap()
            .is_ok(),
        "a renewal"
    );
    assert_eq!(
        store.release(&acme, &id("r-6"), "vk_a", now).await.unwrap(),
        Err(ReviewRefusal::HistoryFull)
    );
    // At the cap a free item is still taken (without a line), or it would be locked for good:
    // vk_a's claim lapses (renewed into the past) and vk_b takes the item.
    store
        .claim(&acme, &id("r-6"), "vk_a", now, t - 1)
        .await
        .unwrap()
        .unwrap();
    let taken = store
        .claim(&acme, &id("r-6"), "vk_b", now, t + 900)
        .await
        .unwrap()
        .expect("a free item at the history cap is claimable");
    assert_eq!(taken.claim.as_ref().map(|c| c.holder.as_str()), Some("vk_b"));
    assert_eq!(taken.history.len(), MAX_HISTORY, "taken without a history line");
    let mut r = resolution.clone();
    r.resolved_by = "vk_b".into();
    store
        .begin_resolve(&acme, &id("r-6"), "vk_b", now, &r)
        .await
        .unwrap()
        .unwrap();
    let closed = store.finish_resolve(&acme, &id("r-6"), &r).await.unwrap().unwrap();
    assert_eq!(
        closed.history.len(),
        MAX_HISTORY + 1,
        "the resolution always gets its line"
    );
}
