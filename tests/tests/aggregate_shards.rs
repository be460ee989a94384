//! Sharded aggregates and tolerant aggregate items, on the DynamoDB adapter against moto: where
//! decisions and labels write, what reads sum, what a layout change does, and what odd stored
//! attributes do (nothing fatal; the next write repairs them).

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use verdict::adapters::dynamodb::{ItemKey, Keys};
use verdict::adapters::DynamoStore;
use verdict::domain::auth::{ApiKey, KeyHash, KeyRecord, Scope};
use verdict::domain::features::{transaction_delta, DayCounter};
use verdict::domain::shards::{ShardCount, DEFAULT_TERMINAL_SHARDS};
use verdict::domain::{TenantId, TerminalId, Transaction};
use verdict::ports::contract::decisions::{record, tx};
use verdict::ports::{CommitOutcome, DecisionCommit, DecisionStore, ScoringSnapshot};
use verdict_integration::{label_fraud, Stack};

type Item = HashMap<String, AttributeValue>;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn n(v: u64) -> ShardCount {
    ShardCount::new(v).unwrap()
}

async fn key(st: &Stack, tenant: &TenantId) -> KeyHash {
    let api = ApiKey::generate();
    let rec = KeyRecord {
        key_id: api.key_id(),
        tenant: tenant.clone(),
        scopes: Scope::parse_list("transactions:write").unwrap(),
        created_at: 1_700_000_000,
        expires_at: None,
        revoked_at: None,
    };
    st.store.put_key(&api.hash(), &rec).await.unwrap();
    api.hash()
}

/// One decision as the api makes it: read, then commit on what the read planned.
async fn decide(store: &DynamoStore, tenant: &TenantId, key: &KeyHash, t: &Transaction) -> ScoringSnapshot {
    let snap = store.load_for_scoring(tenant, Some(key), t, None).await.unwrap();
    let r = record(t, "fp");
    let commit = DecisionCommit {
        record: &r,
        transaction: t,
        idempotency_key: None,
        delta: transaction_delta(t),
        aggregates: &snap.aggregate_write,
    };
    assert_eq!(store.commit(tenant, &commit).await.unwrap(), CommitOutcome::Committed);
    snap
}

fn at_terminal(i: usize, terminal: &str) -> Transaction {
    let mut t = tx(
        &format!("tx-{terminal}-{i}"),
        "2018-08-08T10:00:00Z",
        100 + i as i64,
        &format!("c-{i}"),
    );
    t.terminal_id = TerminalId::parse(terminal).unwrap();
    t
}

async fn item(st: &Stack, key: &ItemKey) -> Option<Item> {
    st.dynamodb
        .get_item()
        .table_name(&st.table)
        .key("pk", AttributeValue::S(key.pk.clone()))
        .key("sk", AttributeValue::S(key.sk.clone()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

fn num(item: &Item, name: &str) -> i64 {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().unwrap(),
        other => panic!("{name} is {other:?}"),
    }
}

/// The count stored for `day` in each of the terminal's first `shards` shard items.
async fn counts_by_shard(st: &Stack, terminal: &TerminalId, shards: u8, day: i32) -> Vec<i64> {
    let tenant = acme();
    let keys = Keys::new(&tenant);
    let mut out = Vec::new();
    for k in 0..shards {
        let c = match item(st, &keys.terminal_aggregate_shard(terminal, k)).await {
            Some(i) if i.contains_key(&format!("c{day}")) => num(&i, &format!("c{day}")),
            _ => 0,
        };
        out.push(c);
    }
    out
}

#[tokio::test]
async fn a_busy_terminal_spreads_over_its_shards_and_every_read_sums_them() {
    let st = Stack::new().await;
    let tenant = acme();
    let key = key(&st, &tenant).await;
    let big = TerminalId::parse("t-big").unwrap();
    st.store
        .change_aggregate_shards(&tenant, |l| l.set_terminal(&big, n(8)))
        .await
        .unwrap();
    for i in 0..40 {
        decide(&st.store, &tenant, &key, &at_terminal(i, "t-big")).await;
    }
    let day = tx("x", "2018-08-08T10:00:00Z", 1, "c").occurred_at.epoch_day();
    let per_shard = counts_by_shard(&st, &big, 8, day).await;
    assert_eq!(per_shard.iter().sum::<i64>(), 40, "{per_shard:?}");
    assert!(
        per_shard.iter().filter(|c| **c > 0).count() >= 6,
        "40 decisions used few of 8 shards: {per_shard:?}"
    );

    let agg = st.store.terminal_aggregate(&tenant, &big).await.unwrap();
    assert_eq!(agg.window(day, day).count, 40);
    assert_eq!(agg.window(day, day).amount_minor, (0..40).map(|i| 100 + i).sum::<i64>());
    let snap = st
        .store
        .load_for_scoring(&tenant, Some(&key), &at_terminal(99, "t-big"), None)
        .await
        .unwrap();
    assert_eq!(snap.terminal, agg);

    // A fraud label counts in the shard that counted its transaction.
    let labelled = at_terminal(7, "t-big");
    label_fraud(&st.store, &tenant, &labelled).await;
    let shard = n(8).shard_of(&labelled.id);
    let shard_item = item(&st, &Keys::new(&tenant).terminal_aggregate_shard(&big, shard))
        .await
        .unwrap();
    assert_eq!(num(&shard_item, &format!("f{day}")), 1);
    assert_eq!(
        st.store
            .terminal_aggregate(&tenant, &big)
            .await
            .unwrap()
            .window(day, day)
            .frauds,
        1
    );
}

#[tokio::test]
async fn a_container_with_an_older_layout_reads_the_shards_a_raise_added_once_then_one_read_again() {
    let st = Stack::new().await;
    let tenant = acme();
    let key = key(&st, &tenant).await;
    // Container A has seen the default layout.
    let a = DynamoStore::new(st.dynamodb.clone(), &st.table);
    decide(&a, &tenant, &key, &at_terminal(0, "t-1")).await;
    // Container B raises the terminals to 16 and decides there.
    let b = DynamoStore::new(st.dynamodb.clone(), &st.table);
    b.change_aggregate_shards(&tenant, |l| {
        l.set_terminals(n(16));
        Ok(())
    })
    .await
    .unwrap();
    for i in 1..30 {
        decide(&b, &tenant, &key, &at_terminal(i, "t-1")).await;
    }
    let day = at_terminal(0, "t-1").occurred_at.epoch_day();
    let per_shard = counts_by_shard(&st, &TerminalId::parse("t-1").unwrap(), 16, day).await;
    assert!(
        per_shard[DEFAULT_TERMINAL_SHARDS as usize..].iter().any(|c| *c > 0),
        "nothing landed beyond the old shard count: {per_shard:?}"
    );

    st.calls.take();
    let snap = a
        .load_for_scoring(&tenant, Some(&key), &at_terminal(40, "t-1"), None)
        .await
        .unwrap();
    assert_eq!(snap.terminal.window(day, day).count, 30);
    assert_eq!(
        st.calls.take(),
        ["BatchGetItem", "BatchGetItem"],
        "the layout change costs one more read"
    );
    let snap = a
        .load_for_scoring(&tenant, Some(&key), &at_terminal(41, "t-1"), None)
        .await
        .unwrap();
    assert_eq!(snap.terminal.window(day, day).count, 30);
    assert_eq!(st.calls.take(), ["BatchGetItem"], "then one read again");
}

#[tokio::test]
async fn lowering_the_count_writes_fewer_shards_but_keeps_reading_the_old_ones() {
    let st = Stack::new().await;
    let tenant = acme();
    let key = key(&st, &tenant).await;
    st.store
        .change_aggregate_shards(&tenant, |l| {
            l.set_terminals(n(8));
            Ok(())
        })
        .await
        .unwrap();
    for i in 0..20 {
        decide(&st.store, &tenant, &key, &at_terminal(i, "t-1")).await;
    }
    let lowered = st
        .store
        .change_aggregate_shards(&tenant, |l| {
            l.set_terminals(n(2));
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(lowered.terminals.shards, n(2));
    assert_eq!(lowered.terminals.read_count(), n(8));
    for i in 20..40 {
        decide(&st.store, &tenant, &key, &at_terminal(i, "t-1")).await;
    }
    let terminal = TerminalId::parse("t-1").unwrap();
    let day = at_terminal(0, "t-1").occurred_at.epoch_day();
    let agg = st.store.terminal_aggregate(&tenant, &terminal).await.unwrap();
    assert_eq!(agg.window(day, day).count, 40);
    // The 20 decisions after the change all went to shards 0 and 1.
    let before = counts_by_shard(&st, &terminal, 8, day).await;
    let moved: i64 = before[..2].iter().sum();
    let first_twenty_low: i64 = (0..20)
        .filter(|i| n(8).shard_of(&at_terminal(*i, "t-1").id) < 2)
        .count() as i64;
    assert_eq!(moved, first_twenty_low + 20, "{before:?}");
}

#[tokio::test]
async fn odd_aggregate_attributes_never_fail_a_decision_and_the_next_write_repairs_them() {
    let st = Stack::new().await;
    let tenant = acme();
    let key = key(&st, &tenant).await;
    let t = tx("tx-odd", "2018-08-08T10:00:00Z", 500, "c-odd");
    let day = t.occurred_at.epoch_day();
    let agg_key = Keys::new(&tenant).customer_aggregate(&t.customer_id);
    let bad: Item = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(agg_key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(agg_key.sk.clone())),
        // The day this decision adds to holds a string: ADD would fail on it.
        (format!("c{day}"), AttributeValue::S("three".into())),
        // A counter gone negative (a relabel that raced the prune).
        (format!("c{}", day - 1), AttributeValue::N("-5".into())),
        (format!("a{}", day - 1), AttributeValue::N("700".into())),
        // A sum beyond i64.
        (format!("c{}", day - 2), AttributeValue::N("1".into())),
        (
            format!("a{}", day - 2),
            AttributeValue::N("99999999999999999999999".into()),
        ),
        (format!("f{}", day - 3), AttributeValue::N("1.5".into())),
        // Far outside retention (beyond the band every write prunes) and far in the future.
        (format!("c{}", day - 400), AttributeValue::N("9".into())),
        (format!("c{}", day + 10_000), AttributeValue::N("9".into())),
    ]);
    st.dynamodb
        .put_item()
        .table_name(&st.table)
        .set_item(Some(bad))
        .send()
        .await
        .unwrap();

    let snap = decide(&st.store, &tenant, &key, &t).await;
    let days: HashMap<i32, DayCounter> = snap.customer.days().into_iter().collect();
    assert_eq!(days[&(day - 1)].count, 0, "a negative count reads as 0");
    assert_eq!(days[&(day - 2)].amount_minor, i64::MAX, "an overflowing sum saturates");
    assert!(!days.contains_key(&(day + 10_000)) && !days.contains_key(&(day - 400)));

    let repaired = item(&st, &agg_key).await.unwrap();
    assert_eq!(
        num(&repaired, &format!("c{day}")),
        1,
        "the unreadable counter of the day was reset to this decision"
    );
    for gone in [
        format!("f{}", day - 3),
        format!("c{}", day - 400),
        format!("c{}", day + 10_000),
    ] {
        assert!(!repaired.contains_key(&gone), "{gone} is still stored: {repaired:?}");
    }
    // What was readable stays as it was.
    assert_eq!(num(&repaired, &format!("a{}", day - 1)), 700);

    // The next decision of that customer reads and writes normally.
    let next = tx("tx-odd-2", "2018-08-08T11:00:00Z", 300, "c-odd");
    let snap = decide(&st.store, &tenant, &key, &next).await;
    assert_eq!(snap.customer.window(day, day).count, 1);
    assert_eq!(
        st.store
            .customer_aggregate(&tenant, &t.customer_id)
            .await
            .unwrap()
            .window(day, day)
            .count,
        2
    );
}

#[tokio::test]
async fn a_repair_that_a_concurrent_decision_made_first_is_not_made_twice() {
    let st = Stack::new().await;
    let tenant = acme();
    let key = key(&st, &tenant).await;
    let t = tx("tx-late", "2018-08-08T10:00:00Z", 500, "c-race");
    let day = t.occurred_at.epoch_day();
    let agg_key = Keys::new(&tenant).customer_aggregate(&t.customer_id);
    let put = |v: AttributeValue| {
        st.dynamodb
            .put_item()
            .table_name(&st.table)
            .item("pk", AttributeValue::S(agg_key.pk.clone()))
            .item("sk", AttributeValue::S(agg_key.sk.clone()))
            .item(format!("c{day}"), v)
            .send()
    };
    put(AttributeValue::S("three".into())).await.unwrap();
    // This decision reads the counter as unreadable and plans to reset it...
    let snap = st.store.load_for_scoring(&tenant, Some(&key), &t, None).await.unwrap();
    // ...but another decision repairs it and counts first.
    put(AttributeValue::N("5".into())).await.unwrap();
    let r = record(&t, "fp");
    let commit = DecisionCommit {
        record: &r,
        transaction: &t,
        idempotency_key: None,
        delta: transaction_delta(&t),
        aggregates: &snap.aggregate_write,
    };
    assert_eq!(
        st.store.commit(&tenant, &commit).await.unwrap(),
        CommitOutcome::Committed
    );
    // Its count is added to the repaired one, not reset over it.
    assert_eq!(num(&item(&st, &agg_key).await.unwrap(), &format!("c{day}")), 6);
    assert!(st.store.decision(&tenant, &t.id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_label_whose_fraud_counter_is_not_a_number_is_refused_and_changes_nothing() {
    use verdict::adapters::dynamodb::{LabelWrite, LabelWriteOutcome};
    use verdict::domain::labels::{LabelValue, StoredLabel};
    let st = Stack::new().await;
    let tenant = acme();
    let key = key(&st, &tenant).await;
    let t = tx("tx-f", "2018-08-08T10:00:00Z", 500, "c-f");
    decide(&st.store, &tenant, &key, &t).await;
    let day = t.occurred_at.epoch_day();
    let agg_key = Keys::new(&tenant).customer_aggregate(&t.customer_id);
    st.dynamodb
        .update_item()
        .table_name(&st.table)
        .key("pk", AttributeValue::S(agg_key.pk.clone()))
        .key("sk", AttributeValue::S(agg_key.sk.clone()))
        .update_expression("SET #f = :s")
        .expression_attribute_names("#f", format!("f{day}"))
        .expression_attribute_values(":s", AttributeValue::S("one".into()))
        .send()
        .await
        .unwrap();
    let label = StoredLabel {
        value: LabelValue::Fraud,
        source: "test".into(),
        labelled_at: t.occurred_at,
        file: None,
        etag: None,
        line: None,
        note: None,
    };
    let write = LabelWrite {
        label: &label,
        previous: None,
        fraud_delta: 1,
        day,
        customer: Some(&t.customer_id),
        terminal: Some(&t.terminal_id),
    };
    let outcome = st.store.write_label(&tenant, &t.id, &write).await.unwrap();
    assert_eq!(outcome, LabelWriteOutcome::Refused);
    // All or nothing: the label is not stored and the terminal's counter did not move.
    assert!(st
        .store
        .decision(&tenant, &t.id)
        .await
        .unwrap()
        .unwrap()
        .label
        .is_none());
    assert_eq!(
        st.store
            .terminal_aggregate(&tenant, &t.terminal_id)
            .await
            .unwrap()
            .window(day, day)
            .frauds,
        0
    );
}
