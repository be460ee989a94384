//! The [`DecisionStore`] contract: one body of assertions, run against
//! [`InMemoryDecisions`] and against the DynamoDB adapter on moto, so the fake the services' unit
//! tests rely on behaves as the real adapter does.

use crate::domain::auth::{ApiKey, KeyHash, KeyRecord, Scope};
use crate::domain::decision::{
    features_map, Decision, DecisionRecord, IdempotencyKey, ModelReason, ModelRef, ReasonRecord, RuleReason,
};
use crate::domain::features::{self, transaction_delta, EntityAggregate};
use crate::domain::policy::Thresholds;
use crate::domain::{Currency, CustomerId, Money, TenantId, TerminalId, Timestamp, Transaction, TransactionId};
use crate::ports::in_memory::InMemoryDecisions;
use crate::ports::{CommitOutcome, DecisionCommit, DecisionStore};

/// What a contract test sets up beyond the port (admin writes the functions do not make): the
/// store itself for the fake, a wrapper of the adapter in the integration tests.
pub trait Seed {
    fn seed_key(&self, hash: &KeyHash, rec: &KeyRecord) -> impl std::future::Future<Output = ()>;
    fn seed_thresholds(&self, tenant: &TenantId, t: Thresholds) -> impl std::future::Future<Output = ()>;
}

impl Seed for InMemoryDecisions {
    async fn seed_key(&self, hash: &KeyHash, rec: &KeyRecord) {
        self.put_key(hash, rec.clone());
    }
    async fn seed_thresholds(&self, tenant: &TenantId, t: Thresholds) {
        self.set_thresholds(tenant, t);
    }
}

pub fn tx(id: &str, at: &str, minor: i64, customer: &str) -> Transaction {
    Transaction {
        id: TransactionId::parse(id).unwrap(),
        occurred_at: Timestamp::parse("occurred_at", at).unwrap(),
        amount: Money::new(minor, Currency::EUR).unwrap(),
        customer_id: CustomerId::parse(customer).unwrap(),
        terminal_id: TerminalId::parse("t-1").unwrap(),
    }
}

/// A record with both kinds of reason (rule first), so the round trip covers the union.
pub fn record(t: &Transaction, fingerprint: &str) -> DecisionRecord {
    let x = features::compute(t, &EntityAggregate::default(), &EntityAggregate::default());
    DecisionRecord {
        id: t.id.clone(),
        decision: Decision::Block,
        score: 0.9123,
        risk_score: 91,
        reasons: vec![
            ReasonRecord::Rule(RuleReason {
                rule_id: "high-amount".into(),
                rule_version: 2,
                action: "block".into(),
                text: "High amount".into(),
            }),
            ReasonRecord::Model(ModelReason {
                code: "AMOUNT_HIGH".into(),
                feature: "amount".into(),
                value: t.amount.major(),
                contribution: 1.5,
                text: "amount is high".into(),
            }),
        ],
        model: ModelRef {
            id: "m".into(),
            version: "0123456789abcdef".into(),
        },
        policy_version: Some("thresholds:review=0.3,block=0.8;ruleset:3".into()),
        rules: Some(crate::domain::rules::RulesApplied {
            ruleset_version: 3,
            hits: vec![
                crate::domain::rules::RuleHit {
                    rule_id: crate::domain::RuleId::parse("high-amount").unwrap(),
                    rule_version: 2,
                    action: crate::domain::rules::RuleAction::Block,
                    mode: crate::domain::rules::RuleMode::Active,
                    status: crate::domain::rules::HitStatus::Matched,
                    error: None,
                },
                crate::domain::rules::RuleHit {
                    rule_id: crate::domain::RuleId::parse("needs-key").unwrap(),
                    rule_version: 1,
                    action: crate::domain::rules::RuleAction::Review,
                    mode: crate::domain::rules::RuleMode::Shadow,
                    status: crate::domain::rules::HitStatus::Error,
                    error: Some("no such key: channel".into()),
                },
            ],
        }),
        features: features_map(&x),
        inputs: serde_json::json!({"id": t.id.as_str()}).into(),
        request_fingerprint: fingerprint.into(),
        created_at: Timestamp::parse("t", "2018-08-08T10:00:01Z").unwrap(),
        occurred_at: t.occurred_at,
        customer_id: t.customer_id.clone(),
        request_id: Some("req-1".into()),
        processing_ms: Some(0.25),
        label: None,
    }
}

/// The commit the api makes for `r`: the decision, its idempotency record, its aggregate deltas.
pub fn commit<'a>(r: &'a DecisionRecord, t: &'a Transaction, idem: Option<&'a IdempotencyKey>) -> DecisionCommit<'a> {
    DecisionCommit {
        record: r,
        transaction: t,
        idempotency_key: idem,
        delta: transaction_delta(t),
        aggregates: crate::ports::AggregateWritePlan::NONE,
    }
}

/// Decisions, keys, aggregates, idempotency, history paging and tenant isolation.
pub async fn decision_store<S: DecisionStore>(store: &S, seed: &impl Seed) {
    let acme = TenantId::parse("acme").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    let key = ApiKey::generate();
    let rec = KeyRecord {
        key_id: key.key_id(),
        tenant: acme.clone(),
        scopes: [Scope::TransactionsWrite, Scope::TransactionsRead].into(),
        created_at: 1,
        expires_at: None,
        revoked_at: None,
    };
    assert_eq!(store.key(&key.hash()).await.unwrap(), None);
    seed.seed_key(&key.hash(), &rec).await;
    assert_eq!(store.key(&key.hash()).await.unwrap(), Some(rec.clone()));
    seed.seed_thresholds(&acme, Thresholds::new(0.2, 0.7).unwrap()).await;

    // Nothing yet: an empty snapshot with the key and the tenant's config.
    let t1 = tx("tx-1", "2018-08-08T10:00:00Z", 12_345, "c-1");
    let idem = IdempotencyKey::parse("order-1").unwrap();
    let snap = store
        .load_for_scoring(&acme, Some(&key.hash()), &t1, Some(&idem))
        .await
        .unwrap();
    assert_eq!(snap.key, Some(rec.clone()));
    assert_eq!(snap.thresholds, Some(Thresholds::new(0.2, 0.7).unwrap()));
    assert!(snap.existing.is_none() && snap.idempotency.is_none());
    assert!(snap.customer.days().is_empty() && snap.terminal.days().is_empty());

    // A commit writes the decision, the idempotency record and both aggregates, together.
    let r1 = record(&t1, "fp-1");
    assert_eq!(
        store.commit(&acme, &commit(&r1, &t1, Some(&idem))).await.unwrap(),
        CommitOutcome::Committed
    );
    let snap = store
        .load_for_scoring(&acme, Some(&key.hash()), &t1, Some(&idem))
        .await
        .unwrap();
    assert_eq!(
        snap.existing.as_ref(),
        Some(&r1),
        "the record round-trips, both reason kinds included"
    );
    let idem_rec = snap.idempotency.expect("idempotency record");
    assert_eq!(
        (idem_rec.transaction_id.as_str(), idem_rec.fingerprint.as_str()),
        ("tx-1", "fp-1")
    );
    let mut expected = EntityAggregate::default();
    let d = transaction_delta(&t1);
    expected.add(d.day, &d.counter);
    assert_eq!(snap.customer, expected);
    assert_eq!(snap.terminal, expected);
    assert_eq!(store.decision(&acme, &t1.id).await.unwrap(), Some(r1.clone()));

    // The same transaction id, or the same idempotency key for another id: nothing is written.
    let other_body = record(&t1, "fp-other");
    assert_eq!(
        store.commit(&acme, &commit(&other_body, &t1, None)).await.unwrap(),
        CommitOutcome::AlreadyDecided
    );
    let t9 = tx("tx-9", "2018-08-08T11:00:00Z", 1, "c-1");
    assert_eq!(
        store
            .commit(&acme, &commit(&record(&t9, "fp-9"), &t9, Some(&idem)))
            .await
            .unwrap(),
        CommitOutcome::AlreadyDecided
    );
    assert_eq!(store.decision(&acme, &t9.id).await.unwrap(), None);
    assert_eq!(store.decision(&acme, &t1.id).await.unwrap(), Some(r1.clone()));
    let snap = store
        .load_for_scoring(&acme, Some(&key.hash()), &t1, None)
        .await
        .unwrap();
    assert_eq!(snap.customer, expected, "a refused commit adds nothing");

    // History: newest first, paged without gaps or repeats, only this customer's.
    let mut all = vec![r1.clone()];
    for (i, at) in [
        "2018-08-09T10:00:00Z",
        "2018-08-07T10:00:00Z",
        "2018-08-10T10:00:00Z",
        "2018-08-09T09:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        let t = tx(&format!("tx-h{i}"), at, 100 + i as i64, "c-1");
        let r = record(&t, "fp");
        store.commit(&acme, &commit(&r, &t, None)).await.unwrap();
        all.push(r);
    }
    let t_other = tx("tx-o", "2018-08-09T10:00:00Z", 1, "c-2");
    store
        .commit(&acme, &commit(&record(&t_other, "fp"), &t_other, None))
        .await
        .unwrap();
    all.sort_by(|a, b| (b.occurred_at, &b.id).cmp(&(a.occurred_at, &a.id)));
    let c1 = CustomerId::parse("c-1").unwrap();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .decisions_for_customer(&acme, &c1, 2, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        pages.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, all);

    // Another tenant sees none of it.
    let snap = store
        .load_for_scoring(&globex, Some(&key.hash()), &t1, Some(&idem))
        .await
        .unwrap();
    assert!(snap.existing.is_none() && snap.idempotency.is_none() && snap.thresholds.is_none());
    assert!(snap.customer.days().is_empty());
    assert_eq!(store.decision(&globex, &t1.id).await.unwrap(), None);
    let page = store.decisions_for_customer(&globex, &c1, 10, None).await.unwrap();
    assert!(page.items.is_empty() && page.next_cursor.is_none());
}

/// Backtests' read: every decision of the window once over small pages, none outside it (the
/// bounds are `[from, to)`), none of another tenant, and a forged cursor refused.
pub async fn decision_window<S: DecisionStore + crate::ports::DecisionWindow>(store: &S) {
    use std::collections::BTreeSet;
    let acme = TenantId::parse("acme").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    let at = |s: &str| Timestamp::parse("t", s).unwrap();
    let mut inside = BTreeSet::new();
    for (i, when) in [
        "2018-08-07T23:59:59.999Z", // before
        "2018-08-08T00:00:00Z",     // the first instant: in
        "2018-08-08T12:00:00Z",
        "2018-08-09T06:30:00Z",
        "2018-08-09T23:59:59Z",
        "2018-08-10T00:00:00Z", // the end: out
    ]
    .iter()
    .enumerate()
    {
        for k in 0..5 {
            let t = tx(&format!("w-{i}-{k}"), when, 1_000, &format!("c-{k}"));
            let r = record(&t, "fp");
            store.commit(&acme, &commit(&r, &t, None)).await.unwrap();
            if (1..=4).contains(&i) {
                inside.insert(t.id.to_string());
            }
            if k == 0 {
                let mut other = t.clone();
                other.id = TransactionId::parse(&format!("g-{i}")).unwrap();
                let r = record(&other, "fp");
                store.commit(&globex, &commit(&r, &other, None)).await.unwrap();
            }
        }
    }
    let (from, to) = (at("2018-08-08T00:00:00Z"), at("2018-08-10T00:00:00Z"));
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .decisions_between(&acme, from, to, 3, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|d| d.id.to_string()));
        pages += 1;
        assert!(pages < 200, "the walk ends");
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "each decision once: {seen:?}");
    assert_eq!(unique, inside);
    for forged in ["", "!!", "eyJkYXkiOjB9", "win:x"] {
        assert!(
            matches!(
                store.decisions_between(&acme, from, to, 3, Some(forged)).await,
                Err(crate::ports::StoreError::BadCursor)
            ),
            "{forged:?}"
        );
    }
}
