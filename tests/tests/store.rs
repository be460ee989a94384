//! The DynamoDB and S3 adapters against moto: one read and one write per decision, replay and
//! race handling, tenant isolation, pagination, keys, the model pointer and the aggregates.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use verdict::adapters::dynamodb::{ItemKey, Keys};
use verdict::app::scoring::{Origin, Scorer};
use verdict::domain::auth::{ApiKey, AuthError, KeyRecord, Principal, Scope};
use verdict::domain::decision::{
    features_map, Decision, DecisionRecord, IdempotencyKey, ModelReason, ModelRef, ReasonRecord, ScoreRequest,
};
use verdict::domain::features::{self, transaction_delta, EntityAggregate, Feature, RETENTION_DAYS};
use verdict::domain::model::Model;
use verdict::domain::policy::Thresholds;
use verdict::domain::registry::{ModelRegistration, ModelStatus};
use verdict::domain::{Currency, CustomerId, Money, TenantId, TerminalId, Timestamp, Transaction, TransactionId};
use verdict::ports::contract::decisions::commit;
use verdict::ports::{ActiveModel, CommitOutcome, DecisionStore, IdempotencyRecord, ModelBlobs, StoreError};
use verdict_integration::{label_fraud, Stack};

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

fn tx(id: &str, at: &str, minor: i64, customer: &str, terminal: &str) -> Transaction {
    Transaction {
        id: TransactionId::parse(id).unwrap(),
        occurred_at: Timestamp::parse("occurred_at", at).unwrap(),
        amount: Money::new(minor, Currency::EUR).unwrap(),
        customer_id: CustomerId::parse(customer).unwrap(),
        terminal_id: TerminalId::parse(terminal).unwrap(),
    }
}

/// A decision record as the scorer would make it for `t` (features from empty aggregates).
fn record(t: &Transaction, fingerprint: &str) -> DecisionRecord {
    let x = features::compute(t, &EntityAggregate::default(), &EntityAggregate::default());
    DecisionRecord {
        id: t.id.clone(),
        decision: Decision::Review,
        score: 0.4217,
        risk_score: 42,
        reasons: vec![ReasonRecord::Model(ModelReason {
            code: "AMOUNT_HIGH".into(),
            feature: "amount".into(),
            value: t.amount.major(),
            contribution: 1.25,
            text: "amount is high".into(),
        })],
        model: ModelRef {
            id: "tiny".into(),
            version: "0123456789abcdef".into(),
        },
        policy_version: None,
        rules: None,
        features: features_map(&x),
        inputs: serde_json::json!({
            "id": t.id.as_str(),
            "amount": t.amount.minor,
            "currency": "EUR",
            "metadata": {"order": "42", "nested": {"n": 1.5}},
            "note": null,
        })
        .into(),
        request_fingerprint: fingerprint.into(),
        created_at: Timestamp::parse("created_at", "2026-11-24T10:00:00.123456Z").unwrap(),
        occurred_at: t.occurred_at,
        customer_id: t.customer_id.clone(),
        request_id: None,
        processing_ms: None,
        label: None,
    }
}

fn key_record(tenant: &TenantId, key: &ApiKey) -> KeyRecord {
    KeyRecord {
        key_id: key.key_id(),
        tenant: tenant.clone(),
        scopes: Scope::parse_list("transactions:write,transactions:read,models:read").unwrap(),
        created_at: 1_700_000_000,
        expires_at: Some(4_000_000_000),
        revoked_at: None,
    }
}

fn day_of(at: &str) -> i32 {
    Timestamp::parse("t", at).unwrap().epoch_day()
}

#[tokio::test]
async fn snapshot_reads_every_item_in_one_batch() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    let api = ApiKey::generate();
    let key = key_record(&acme, &api);
    st.store.put_key(&api.hash(), &key).await.unwrap();
    let thresholds = Thresholds::new(0.25, 0.9).unwrap();
    st.store.set_thresholds(&acme, thresholds).await.unwrap();
    st.store
        .register_model(&acme, &registration("v1", "models/acme/v1"))
        .await
        .unwrap();
    st.store.activate_model(&acme, "v1", "models/acme/v1").await.unwrap();

    let t = tx("tx-1", "2018-08-08T10:00:00Z", 12_345, "c-1", "t-1");
    let r = record(&t, "fp-1");
    let idem = IdempotencyKey::parse("order-42:retry").unwrap();
    assert_eq!(
        st.store.commit(&acme, &commit(&r, &t, Some(&idem))).await.unwrap(),
        CommitOutcome::Committed
    );
    st.calls.take();

    let snap = st
        .store
        .load_for_scoring(&acme, Some(&api.hash()), &t, Some(&idem))
        .await
        .unwrap();
    assert_eq!(
        st.calls.take(),
        ["BatchGetItem"],
        "the whole snapshot is one round trip"
    );
    assert_eq!(snap.key, Some(key));
    assert_eq!(snap.existing, Some(r));
    assert_eq!(
        snap.idempotency,
        Some(IdempotencyRecord {
            transaction_id: t.id.clone(),
            fingerprint: "fp-1".into()
        })
    );
    assert_eq!(snap.thresholds, Some(thresholds));
    assert_eq!(
        snap.active_model,
        Some(ActiveModel {
            version: "v1".into(),
            object_key: "models/acme/v1".into()
        })
    );
    let day = t.occurred_at.epoch_day();
    for agg in [&snap.customer, &snap.terminal] {
        let w = agg.window(day, day);
        assert_eq!((w.count, w.amount_minor, w.frauds), (1, 12_345, 0));
    }

    // A fresh transaction of another customer, no idempotency key: six keys, nothing found but the key.
    let other = tx("tx-2", "2018-08-08T11:00:00Z", 500, "c-2", "t-2");
    let snap = st
        .store
        .load_for_scoring(&acme, Some(&api.hash()), &other, None)
        .await
        .unwrap();
    assert_eq!(st.calls.take(), ["BatchGetItem"]);
    assert!(snap.key.is_some() && snap.existing.is_none() && snap.idempotency.is_none());
    assert_eq!(snap.customer, EntityAggregate::default());
    assert_eq!(snap.terminal, EntityAggregate::default());
    assert_eq!(snap.thresholds, Some(thresholds), "tenant config is in the same batch");
}

#[tokio::test]
async fn commit_is_one_transaction_and_a_replay_counts_nothing() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    let t = tx("tx-1", "2018-08-08T10:00:00Z", 2_500, "c-1", "t-1");
    let r = record(&t, "fp");
    let idem = IdempotencyKey::parse("k-1").unwrap();

    assert_eq!(
        st.store.commit(&acme, &commit(&r, &t, Some(&idem))).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        st.calls.take(),
        ["TransactWriteItems"],
        "the whole decision is one round trip"
    );
    assert_eq!(
        st.store.commit(&acme, &commit(&r, &t, Some(&idem))).await.unwrap(),
        CommitOutcome::AlreadyDecided
    );
    assert_eq!(
        st.store.commit(&acme, &commit(&r, &t, None)).await.unwrap(),
        CommitOutcome::AlreadyDecided
    );
    // Another transaction reusing the idempotency key is refused as a whole.
    let t2 = tx("tx-2", "2018-08-08T10:05:00Z", 7_000, "c-1", "t-1");
    let r2 = record(&t2, "fp2");
    assert_eq!(
        st.store.commit(&acme, &commit(&r2, &t2, Some(&idem))).await.unwrap(),
        CommitOutcome::AlreadyDecided
    );
    assert_eq!(
        st.store.decision(&acme, &t2.id).await.unwrap(),
        None,
        "nothing of tx-2 was written"
    );

    assert_eq!(st.store.decision(&acme, &t.id).await.unwrap(), Some(r));
    let day = t.occurred_at.epoch_day();
    let c = st
        .store
        .customer_aggregate(&acme, &t.customer_id)
        .await
        .unwrap()
        .window(day, day);
    let m = st
        .store
        .terminal_aggregate(&acme, &t.terminal_id)
        .await
        .unwrap()
        .window(day, day);
    assert_eq!((c.count, c.amount_minor), (1, 2_500));
    assert_eq!((m.count, m.amount_minor), (1, 2_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_duplicates_make_one_decision_and_count_once() {
    let st = Arc::new(Stack::new().await);
    let acme = tenant("acme");
    let t = Arc::new(tx("tx-dup", "2018-08-08T10:00:00Z", 9_999, "card-1", "t-1"));
    let r = Arc::new(record(&t, "fp"));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (st, acme, t, r) = (st.clone(), acme.clone(), t.clone(), r.clone());
            tokio::spawn(async move { st.store.commit(&acme, &commit(&r, &t, None)).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    let committed = outcomes.iter().filter(|o| **o == CommitOutcome::Committed).count();
    let replays = outcomes.iter().filter(|o| **o == CommitOutcome::AlreadyDecided).count();
    assert_eq!((committed, replays), (1, 49));

    let day = t.occurred_at.epoch_day();
    let c = st
        .store
        .customer_aggregate(&acme, &t.customer_id)
        .await
        .unwrap()
        .window(day, day);
    let m = st
        .store
        .terminal_aggregate(&acme, &t.terminal_id)
        .await
        .unwrap()
        .window(day, day);
    assert_eq!((c.count, c.amount_minor), (1, 9_999));
    assert_eq!((m.count, m.amount_minor), (1, 9_999));
    assert_eq!(st.store.decision(&acme, &t.id).await.unwrap().as_ref(), Some(&*r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transactions_of_one_card_never_lose_an_update() {
    let st = Arc::new(Stack::new().await);
    let acme = tenant("acme");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (st, acme) = (st.clone(), acme.clone());
            tokio::spawn(async move {
                // Two days, two terminals: every update hits the same customer item.
                let at = format!("2018-08-0{}T10:{:02}:00Z", 8 + i % 2, i);
                let t = tx(&format!("tx-{i}"), &at, 100 + i, "card-1", &format!("t-{}", i % 2));
                let r = record(&t, "fp");
                st.store.commit(&acme, &commit(&r, &t, None)).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), CommitOutcome::Committed);
    }
    let (d8, d9) = (day_of("2018-08-08T00:00:00Z"), day_of("2018-08-09T00:00:00Z"));
    let customer = st
        .store
        .customer_aggregate(&acme, &CustomerId::parse("card-1").unwrap())
        .await
        .unwrap();
    let all = customer.window(d8, d9);
    assert_eq!(all.count, 40);
    assert_eq!(all.amount_minor, (0..40).map(|i| 100 + i).sum::<i64>());
    let even = customer.window(d8, d8);
    assert_eq!(
        (even.count, even.amount_minor),
        (20, (0..40).step_by(2).map(|i| 100 + i).sum::<i64>())
    );
    let t1 = st
        .store
        .terminal_aggregate(&acme, &TerminalId::parse("t-1").unwrap())
        .await
        .unwrap();
    assert_eq!(t1.window(d8, d9).count, 20);
    assert_eq!(t1.window(d9, d9).count, 20);
}

#[tokio::test]
async fn tenants_are_isolated() {
    let st = Stack::new().await;
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    let ta = tx("tx-1", "2018-08-08T10:00:00Z", 1_000, "c-1", "t-1");
    let tb = tx("tx-1", "2018-08-08T12:00:00Z", 2_000, "c-1", "t-1");
    let (ra, rb) = (record(&ta, "fp-a"), record(&tb, "fp-b"));
    let idem = IdempotencyKey::parse("same-key").unwrap();

    assert_eq!(
        st.store.commit(&a, &commit(&ra, &ta, Some(&idem))).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        st.store.decision(&b, &tb.id).await.unwrap(),
        None,
        "B cannot see A's tx-1"
    );
    let api_b = ApiKey::generate();
    st.store.put_key(&api_b.hash(), &key_record(&b, &api_b)).await.unwrap();
    let snap = st
        .store
        .load_for_scoring(&b, Some(&api_b.hash()), &tb, Some(&idem))
        .await
        .unwrap();
    assert!(snap.existing.is_none() && snap.idempotency.is_none());
    assert_eq!(
        snap.customer,
        EntityAggregate::default(),
        "B does not see A's aggregates"
    );

    // B's tx-1, with the same idempotency key, is its own decision.
    assert_eq!(
        st.store.commit(&b, &commit(&rb, &tb, Some(&idem))).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(st.store.decision(&a, &ta.id).await.unwrap(), Some(ra.clone()));
    assert_eq!(st.store.decision(&b, &tb.id).await.unwrap(), Some(rb.clone()));
    let day = ta.occurred_at.epoch_day();
    for (t, amount) in [(&a, 1_000), (&b, 2_000)] {
        let c = st
            .store
            .customer_aggregate(t, &ta.customer_id)
            .await
            .unwrap()
            .window(day, day);
        assert_eq!((c.count, c.amount_minor), (1, amount), "{t}");
    }
    let page = st
        .store
        .decisions_for_customer(&b, &tb.customer_id, 10, None)
        .await
        .unwrap();
    assert_eq!(page.items, vec![rb]);
    let page = st
        .store
        .decisions_for_customer(&a, &ta.customer_id, 10, None)
        .await
        .unwrap();
    assert_eq!(page.items, vec![ra]);
    assert_eq!(st.store.active_model(&b).await.unwrap(), None);
}

#[tokio::test]
async fn history_pages_newest_first_and_cursors_stay_in_their_query() {
    let st = Stack::new().await;
    let (a, b) = (tenant("acme"), tenant("globex"));
    let c1 = CustomerId::parse("c-1").unwrap();
    let c2 = CustomerId::parse("c-2").unwrap();
    // 25 for acme/c-1 out of time order, with fractional seconds that a naive RFC 3339 would misorder.
    for i in [
        3, 17, 0, 24, 11, 5, 9, 21, 14, 1, 2, 4, 6, 7, 8, 10, 12, 13, 15, 16, 18, 19, 20, 22, 23,
    ] {
        let t = tx(
            &format!("tx-{i:02}"),
            &format!(
                "2018-08-{:02}T10:00:00{}Z",
                1 + i / 2,
                if i % 2 == 1 { ".5" } else { "" }
            ),
            100 * (i + 1),
            "c-1",
            "t-1",
        );
        assert_eq!(
            st.store.commit(&a, &commit(&record(&t, "fp"), &t, None)).await.unwrap(),
            CommitOutcome::Committed
        );
    }
    // Noise: another customer of acme and the same customer id at another tenant.
    for (tn, cust) in [(&a, "c-2"), (&b, "c-1"), (&b, "c-1")] {
        let t = tx(
            &format!("other-{}", rand::random::<u32>()),
            "2018-08-30T10:00:00Z",
            1,
            cust,
            "t-9",
        );
        st.store.commit(tn, &commit(&record(&t, "fp"), &t, None)).await.unwrap();
    }
    st.calls.take();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    let mut first_cursor = None;
    loop {
        let page = st
            .store
            .decisions_for_customer(&a, &c1, 10, cursor.as_deref())
            .await
            .unwrap();
        sizes.push(page.items.len());
        seen.extend(page.items.iter().map(|d| d.id.to_string()));
        assert!(page.items.iter().all(|d| d.customer_id == c1));
        first_cursor.get_or_insert(page.next_cursor.clone());
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(st.calls.take(), ["Query", "Query", "Query"]);
    let expected: Vec<String> = (0..25).rev().map(|i| format!("tx-{i:02}")).collect();
    assert_eq!(seen, expected, "newest first, no gaps");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25, "no duplicates");

    // Exactly one full page: no cursor to an empty page.
    let all = st.store.decisions_for_customer(&a, &c1, 25, None).await.unwrap();
    assert_eq!((all.items.len(), all.next_cursor), (25, None));
    st.calls.take();

    // A cursor only resumes the query it came from.
    let cursor = first_cursor.flatten().unwrap();
    let wrong_customer = st.store.decisions_for_customer(&a, &c2, 10, Some(&cursor)).await;
    assert!(
        matches!(wrong_customer, Err(StoreError::BadCursor)),
        "{wrong_customer:?}"
    );
    let wrong_tenant = st.store.decisions_for_customer(&b, &c1, 10, Some(&cursor)).await;
    assert!(matches!(wrong_tenant, Err(StoreError::BadCursor)), "{wrong_tenant:?}");
    // Forged: acme's own cursor edited to start inside globex's partition.
    let mut forged: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&cursor).unwrap()).unwrap();
    forged["gsi1pk"] = Keys::new(&b).customer_history(&c1).into();
    let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    let r = st.store.decisions_for_customer(&a, &c1, 10, Some(&forged)).await;
    assert!(matches!(r, Err(StoreError::BadCursor)), "{r:?}");
    for junk in ["", "not base64!", "e30", "bnVsbA"] {
        let r = st.store.decisions_for_customer(&a, &c1, 10, Some(junk)).await;
        assert!(matches!(r, Err(StoreError::BadCursor)), "{junk:?}: {r:?}");
    }
    assert_eq!(
        st.calls.take(),
        Vec::<String>::new(),
        "bad cursors are refused before any read"
    );
    // Globex sees its own two only.
    let page = st.store.decisions_for_customer(&b, &c1, 10, None).await.unwrap();
    assert_eq!(page.items.len(), 2);
}

#[tokio::test]
async fn api_keys_are_stored_by_hash_looked_up_and_revoked() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    let api = ApiKey::generate();
    let rec = key_record(&acme, &api);
    assert_eq!(st.store.key(&api.hash()).await.unwrap(), None);
    st.store.put_key(&api.hash(), &rec).await.unwrap();
    assert_eq!(st.store.key(&api.hash()).await.unwrap(), Some(rec.clone()));
    assert!(
        st.store.put_key(&api.hash(), &rec).await.is_err(),
        "an existing key is never overwritten"
    );

    // Only the hash is stored: the plaintext appears nowhere in the table.
    let scan = st.dynamodb.scan().table_name(&st.table).send().await.unwrap();
    let dump = format!("{:?}", scan.items());
    assert!(!dump.contains(api.expose()) && !dump.contains(&api.expose()[3..]));
    assert!(dump.contains(&api.hash().0));

    let other = tenant("globex");
    assert!(matches!(
        st.store.revoke_key(&other, &rec.key_id, 1_800_000_000).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        st.store.revoke_key(&acme, "vk_000000000000", 1_800_000_000).await,
        Err(StoreError::NotFound(_))
    ));
    let revoked = st.store.revoke_key(&acme, &rec.key_id, 1_800_000_000).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(1_800_000_000));
    let again = st.store.revoke_key(&acme, &rec.key_id, 1_900_000_000).await.unwrap();
    assert_eq!(
        again.revoked_at,
        Some(1_800_000_000),
        "the first revocation time stands"
    );
    let stored = st.store.key(&api.hash()).await.unwrap().unwrap();
    assert_eq!(
        stored,
        KeyRecord {
            revoked_at: Some(1_800_000_000),
            ..rec
        }
    );
    assert_eq!(stored.authenticate(&api.hash(), 1_800_000_001), Err(AuthError::Revoked));
    assert!(stored.authenticate(&api.hash(), 1_799_999_999).is_ok());
    // The scoring batch re-reads the key, so a revocation holds on the next request.
    let t = tx("tx-1", "2018-08-08T10:00:00Z", 1, "c", "t");
    let snap = st
        .store
        .load_for_scoring(&acme, Some(&api.hash()), &t, None)
        .await
        .unwrap();
    assert_eq!(snap.key.unwrap().revoked_at, Some(1_800_000_000));
}

fn registration(version: &str, object_key: &str) -> ModelRegistration {
    ModelRegistration {
        version: version.into(),
        name: "handbook-gbdt".into(),
        sha256: format!("{version}-sha"),
        object_key: object_key.into(),
        source: "upload".into(),
        status: ModelStatus::Candidate,
        metrics: BTreeMap::from([("auc".into(), 0.8812), ("ap".into(), 0.7)]),
        uploaded_at: Timestamp::parse("t", "2026-11-24T09:00:00Z").unwrap(),
        uploaded_by: "ci".into(),
        trees: 300,
    }
}

#[tokio::test]
async fn model_pointer_and_blobs_round_trip() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    st.blobs.put("models/acme/v1.vmodel", bytes.clone()).await.unwrap();
    assert_eq!(st.blobs.fetch("models/acme/v1.vmodel").await.unwrap(), bytes);
    assert!(matches!(
        st.blobs.fetch("models/acme/nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        !st.blobs.create_bucket_if_missing().await.unwrap(),
        "bucket exists already"
    );

    assert_eq!(st.store.active_model(&acme).await.unwrap(), None);
    let v1 = registration("v1", "models/acme/v1.vmodel");
    let v2 = registration("v2", "models/acme/v2.vmodel");
    st.store.register_model(&acme, &v1).await.unwrap();
    st.store.register_model(&acme, &v1).await.unwrap(); // same bytes again: fine
    assert!(st
        .store
        .register_model(
            &acme,
            &ModelRegistration {
                sha256: "other".into(),
                ..v1.clone()
            }
        )
        .await
        .is_err());
    st.store.register_model(&acme, &v2).await.unwrap();
    assert_eq!(st.store.model(&acme, "v1").await.unwrap(), Some(v1.clone()));
    assert_eq!(st.store.models(&acme).await.unwrap(), vec![v1.clone(), v2.clone()]);

    let p = st.store.activate_model(&acme, "v1", &v1.object_key).await.unwrap();
    assert_eq!((p.version.as_str(), p.previous_version), ("v1", None));
    let p = st.store.activate_model(&acme, "v2", &v2.object_key).await.unwrap();
    assert_eq!(p.previous_version.as_deref(), Some("v1"));
    let same = st.store.activate_model(&acme, "v2", &v2.object_key).await.unwrap();
    assert_eq!(same, p, "activating the active version changes nothing");
    assert!(matches!(
        st.store.activate_model(&acme, "v3", "models/acme/v3.vmodel").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        st.store.activate_model(&acme, "v1", "models/acme/elsewhere").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(st.store.model_pointer(&acme).await.unwrap(), Some(p));
    assert_eq!(
        st.store.active_model(&acme).await.unwrap(),
        Some(ActiveModel {
            version: "v2".into(),
            object_key: v2.object_key.clone()
        })
    );
    // Rolling back keeps the chain.
    let back = st.store.activate_model(&acme, "v1", &v1.object_key).await.unwrap();
    assert_eq!(back.previous_version.as_deref(), Some("v2"));
    assert_eq!(st.store.active_model(&tenant("globex")).await.unwrap(), None);
    assert_eq!(st.store.model(&tenant("globex"), "v1").await.unwrap(), None);
}

#[tokio::test]
async fn stored_aggregates_match_the_in_memory_ones() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    let (cust, term) = ("card-7", "term-3");
    let mut mem_c = EntityAggregate::default();
    let mut mem_t = EntityAggregate::default();
    let days = [
        "2018-07-01T09:00:00Z",
        "2018-07-01T23:59:59Z",
        "2018-07-20T12:00:00Z",
        "2018-07-28T08:00:00Z",
        "2018-08-01T00:00:00Z",
        "2018-08-01T01:00:00Z",
        "2018-08-05T18:30:00Z",
    ];
    for (i, at) in days.iter().enumerate() {
        let t = tx(&format!("tx-{i}"), at, 1_000 + 37 * i as i64, cust, term);
        st.store
            .commit(&acme, &commit(&record(&t, "fp"), &t, None))
            .await
            .unwrap();
        let d = transaction_delta(&t);
        mem_c.add(d.day, &d.counter);
        mem_t.add(d.day, &d.counter);
        if i % 3 == 0 {
            label_fraud(&st.store, &acme, &t).await;
            mem_c.record_fraud(d.day);
            mem_t.record_fraud(d.day);
        }
    }
    let c = CustomerId::parse(cust).unwrap();
    let m = TerminalId::parse(term).unwrap();
    let stored_c = st.store.customer_aggregate(&acme, &c).await.unwrap();
    let stored_t = st.store.terminal_aggregate(&acme, &m).await.unwrap();
    assert_eq!(stored_c, mem_c);
    assert_eq!(stored_t, mem_t);
    assert_eq!(stored_c.days().len(), 5);

    // The features of a new transaction are the same from either.
    let probe = tx("probe", "2018-08-12T03:00:00Z", 5_000, cust, term);
    let online = features::compute(&probe, &stored_c, &stored_t);
    assert_eq!(online, features::compute(&probe, &mem_c, &mem_t));
    // Customer: 2018-07-14..=08-12 holds five plus the probe; terminal: 07-07..=08-05 (seven days
    // of label delay) holds five, two of them (07-28 and 08-05) labelled fraud.
    assert_eq!(online.get(Feature::CustomerTxCount30d), 6.0);
    assert_eq!(online.get(Feature::TerminalTxCount30d), 5.0);
    assert_eq!(online.get(Feature::TerminalRisk30d), 0.4);

    // Much later: the update prunes days past retention and the features still agree.
    let late_at = "2018-09-05T12:00:00Z";
    let late = tx("late", late_at, 4_200, cust, term);
    st.store
        .commit(&acme, &commit(&record(&late, "fp"), &late, None))
        .await
        .unwrap();
    let d = transaction_delta(&late);
    mem_c.add(d.day, &d.counter);
    mem_t.add(d.day, &d.counter);
    let raw = st
        .raw_item(&ItemKey {
            pk: format!("T#acme#CUST#{cust}"),
            sk: "AGG".into(),
        })
        .await;
    let july_1 = day_of("2018-07-01T00:00:00Z");
    assert!(d.day - july_1 >= RETENTION_DAYS && d.day - july_1 < RETENTION_DAYS + 7);
    assert!(
        !raw.contains_key(&format!("c{july_1}")),
        "a day past retention was pruned"
    );
    assert!(raw.contains_key(&format!("c{}", day_of("2018-07-20T00:00:00Z"))));
    let stored_c = st.store.customer_aggregate(&acme, &c).await.unwrap();
    let stored_t = st.store.terminal_aggregate(&acme, &m).await.unwrap();
    let probe = tx("probe2", "2018-09-06T12:00:00Z", 100, cust, term);
    assert_eq!(
        features::compute(&probe, &stored_c, &stored_t),
        features::compute(&probe, &mem_c, &mem_t)
    );
}

#[tokio::test]
async fn corrupt_decisions_are_reported_by_key_not_panicked_on() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    let t = tx("tx-1", "2018-08-08T10:00:00Z", 100, "c-1", "t-1");
    let put = |pk: String, sk: &str, attr: &str, v: AttributeValue| {
        st.dynamodb
            .put_item()
            .table_name(&st.table)
            .item("pk", AttributeValue::S(pk))
            .item("sk", AttributeValue::S(sk.into()))
            .item(attr, v)
            .send()
    };
    put(
        "T#acme#TX#tx-1".into(),
        "DECISION",
        "score",
        AttributeValue::S("high".into()),
    )
    .await
    .unwrap();
    let api = ApiKey::generate();
    st.store.put_key(&api.hash(), &key_record(&acme, &api)).await.unwrap();

    let err = st
        .store
        .load_for_scoring(&acme, Some(&api.hash()), &t, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { key, .. } if key == "T#acme#TX#tx-1/DECISION"),
        "{err}"
    );
    let err = st.store.decision(&acme, &t.id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { key, .. } if key == "T#acme#TX#tx-1/DECISION"),
        "{err}"
    );
}

// -- the scoring service over the real adapters ---------------------------------------------------

fn tiny_model_bytes() -> Vec<u8> {
    verdict::domain::model::stump_artifact(220.0, -3.0, -0.5, 6.0).to_bytes()
}

#[tokio::test]
async fn the_scorer_reads_once_writes_once_and_replays() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    let bytes = tiny_model_bytes();
    let model = Model::from_bytes("tiny", &bytes).unwrap();
    let object_key = format!("models/acme/{}.vmodel", model.version());
    st.blobs.put(&object_key, bytes).await.unwrap();
    let mut reg = registration(model.version(), &object_key);
    reg.sha256 = model.sha256.clone();
    st.store.register_model(&acme, &reg).await.unwrap();
    st.store
        .activate_model(&acme, model.version(), &object_key)
        .await
        .unwrap();
    let api = ApiKey::generate();
    let key = key_record(&acme, &api);
    st.store.put_key(&api.hash(), &key).await.unwrap();
    let principal: Principal = key.authenticate(&api.hash(), 1_700_000_001).unwrap();
    st.calls.take();

    let scorer = Scorer::new(st.store.clone(), st.blobs.clone(), None);
    let body = br#"{"id":"tx-big","occurred_at":"2018-08-08T10:00:00Z","amount":50000,"currency":"EUR",
        "customer_id":"c-1","terminal_id":"t-1"}"#;
    let request = ScoreRequest::parse_json(body).unwrap();
    let first = scorer
        .score(&principal, &request, None, &Origin::now("test"))
        .await
        .unwrap();
    assert!(!first.replay);
    assert_eq!(
        first.record.decision,
        Decision::Block,
        "500 EUR is over the tiny model's 220"
    );
    assert_eq!(first.record.model.version, model.version());
    assert_eq!(
        st.calls.take(),
        ["BatchGetItem", "TransactWriteItems"],
        "one read, one write"
    );

    let again = scorer
        .score(&principal, &request, None, &Origin::now("test"))
        .await
        .unwrap();
    assert!(again.replay);
    assert_eq!(again.record, first.record);
    assert_eq!(st.calls.take(), ["BatchGetItem"], "a replay only reads");

    let changed =
        ScoreRequest::parse_json(&String::from_utf8_lossy(body).replace("50000", "50001").into_bytes()).unwrap();
    let err = scorer
        .score(&principal, &changed, None, &Origin::now("test"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, verdict::app::scoring::ScoreError::Conflict { .. }),
        "{err}"
    );
    let day = request.inputs.occurred_at.epoch_day();
    let c = st
        .store
        .customer_aggregate(&acme, &request.inputs.customer_id)
        .await
        .unwrap()
        .window(day, day);
    assert_eq!((c.count, c.amount_minor), (1, 50_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_listed_per_tenant_and_a_rotation_never_extends_the_old_key() {
    use verdict::adapters::dynamodb::NewKey;
    let st = Stack::new().await;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let a1 = ApiKey::generate();
    let r1 = KeyRecord {
        created_at: 1_700_000_000,
        expires_at: Some(1_700_100_000),
        ..key_record(&acme, &a1)
    };
    st.store.put_key(&a1.hash(), &r1).await.unwrap();
    let a2 = ApiKey::generate();
    let r2 = KeyRecord {
        created_at: 1_700_000_100,
        expires_at: None,
        ..key_record(&acme, &a2)
    };
    st.store.put_key(&a2.hash(), &r2).await.unwrap();
    let g = ApiKey::generate();
    st.store.put_key(&g.hash(), &key_record(&globex, &g)).await.unwrap();

    let listed = st.store.list_keys(&acme).await.unwrap();
    assert_eq!(
        listed,
        vec![r1.clone(), r2.clone()],
        "acme's keys, oldest first, nobody else's"
    );
    assert_eq!(st.store.list_keys(&globex).await.unwrap().len(), 1);

    // Rotating r1 (expiring at 1_700_100_000) with a grace ending later keeps its expiry.
    let n1 = ApiKey::generate();
    let new = NewKey {
        hash: &n1.hash(),
        key_id: n1.key_id(),
        created_at: 1_700_000_200,
        expires_at: Some(1_800_000_000),
    };
    let rotated = st
        .store
        .rotate_key(&acme, &r1.key_id, new, 1_750_000_000)
        .await
        .unwrap();
    assert_eq!(rotated.old.expires_at, Some(1_700_100_000), "never extended");
    assert_eq!((&rotated.new.tenant, &rotated.new.scopes), (&acme, &r1.scopes));
    assert_eq!(st.store.key(&n1.hash()).await.unwrap(), Some(rotated.new.clone()));
    // Rotating r2 (no expiry) sets it to the end of the grace.
    let n2 = ApiKey::generate();
    let new = NewKey {
        hash: &n2.hash(),
        key_id: n2.key_id(),
        created_at: 1_700_000_300,
        expires_at: None,
    };
    let rotated = st
        .store
        .rotate_key(&acme, &r2.key_id, new, 1_700_086_400)
        .await
        .unwrap();
    assert_eq!(rotated.old.expires_at, Some(1_700_086_400));
    assert_eq!(
        st.store.key(&a2.hash()).await.unwrap().unwrap().expires_at,
        Some(1_700_086_400)
    );
    assert_eq!(st.store.list_keys(&acme).await.unwrap().len(), 4);

    // Another tenant's, a revoked or an unknown key is not rotated, and nothing is written.
    let n3 = ApiKey::generate();
    let h3 = n3.hash();
    let mk = || NewKey {
        hash: &h3,
        key_id: n3.key_id(),
        created_at: 1,
        expires_at: None,
    };
    assert!(matches!(
        st.store.rotate_key(&globex, &r1.key_id, mk(), 2).await,
        Err(StoreError::NotFound(_))
    ));
    // An expired key is not rotated: r1 expires at 1_700_100_000.
    let late = NewKey {
        hash: &h3,
        key_id: n3.key_id(),
        created_at: 1_700_100_000,
        expires_at: None,
    };
    assert!(matches!(
        st.store.rotate_key(&acme, &r1.key_id, late, 1_800_000_000).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(st.store.key(&h3).await.unwrap(), None, "nothing written");
    st.store.revoke_key(&acme, &r2.key_id, 1_700_000_400).await.unwrap();
    assert!(matches!(
        st.store.rotate_key(&acme, &r2.key_id, mk(), 2).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        st.store.rotate_key(&acme, "vk_000000000000", mk(), 2).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(st.store.key(&h3).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_serves_one_tenant_and_is_listed_and_removed_by_it() {
    use verdict::domain::oidc::IssuerConfig;
    use verdict::ports::oidc::IssuerStore;
    let st = Stack::new().await;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let c = IssuerConfig::new(
        "https://idp.example/acme",
        "https://idp.example/jwks",
        "verdict",
        acme.clone(),
        Some("org"),
        Some("permissions"),
        Some(900),
        Some(30),
    )
    .unwrap();
    assert!(st.store.put_issuer(&c, 1_700_000_000).await.unwrap());
    let taken = IssuerConfig {
        tenant: globex.clone(),
        ..c.clone()
    };
    assert!(
        !st.store.put_issuer(&taken, 1_700_000_001).await.unwrap(),
        "one issuer, one tenant"
    );
    assert_eq!(st.store.issuer(&c.issuer).await.unwrap(), Some(c.clone()));
    assert_eq!(st.store.issuer("https://idp.example/other").await.unwrap(), None);
    assert_eq!(st.store.list_issuers(&acme).await.unwrap(), vec![c.clone()]);
    assert!(st.store.list_issuers(&globex).await.unwrap().is_empty());
    assert!(
        !st.store.remove_issuer(&globex, &c.issuer).await.unwrap(),
        "not globex's"
    );
    assert!(st.store.remove_issuer(&acme, &c.issuer).await.unwrap());
    assert_eq!(st.store.issuer(&c.issuer).await.unwrap(), None);

    // An item edited into something the checks refuse is no issuer, never a 5xx.
    assert!(st.store.put_issuer(&c, 1_700_000_002).await.unwrap());
    let key = verdict::adapters::dynamodb::issuer(&c.issuer);
    st.dynamodb
        .update_item()
        .table_name(&st.table)
        .key("pk", AttributeValue::S(key.pk.clone()))
        .key("sk", AttributeValue::S(key.sk.clone()))
        .update_expression("SET jwks_url = :u")
        .expression_attribute_values(":u", AttributeValue::S("http://evil.example/jwks".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(st.store.issuer(&c.issuer).await.unwrap(), None);
}
