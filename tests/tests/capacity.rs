//! What one decision costs in DynamoDB request units, from the sizes of the items it reads and
//! writes, as DynamoDB bills them. Prints the arithmetic (run with `-- --nocapture`); the figures
//! in docs/dynamodb.md and the README come from here.
//!
//! Billing rules used (DynamoDB developer guide, "Item sizes" and "Capacity unit consumption"):
//! - item size: per attribute, its name's UTF-8 bytes plus the value: a string's UTF-8 bytes; a
//!   number 1 byte per two significant digits plus 1; a boolean or null 1; a map or list 3 bytes
//!   plus 1 per element plus the elements; a string set the strings;
//! - a strongly consistent read: 1 RRU per 4 KB of each item, rounded up per item, and 1 for an
//!   item that does not exist;
//! - a transactional write: 2 WRU per 1 KB of each item, rounded up per item; an update is billed
//!   on the larger of the item before and after.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use verdict::adapters::dynamodb::{ItemKey, Keys};
use verdict::domain::auth::{ApiKey, KeyRecord, Scope};
use verdict::domain::decision::IdempotencyKey;
use verdict::domain::features::transaction_delta;
use verdict::domain::shards::ShardCount;
use verdict::domain::{TenantId, Timestamp, Transaction};
use verdict::ports::contract::decisions::{record, tx};
use verdict::ports::{CommitOutcome, DecisionCommit, DecisionStore};
use verdict_integration::Stack;

type Item = HashMap<String, AttributeValue>;

fn number_size(raw: &str) -> usize {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
        AttributeValue::Ns(ns) => ns.iter().map(|n| number_size(n)).sum(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value_size(v) + 1).sum::<usize>(),
        AttributeValue::L(l) => 3 + l.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        AttributeValue::B(b) => b.as_ref().len(),
        _ => 0,
    }
}

fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn rru(size: Option<usize>) -> usize {
    size.map_or(1, |s| s.div_ceil(4096).max(1))
}

fn transact_wru(size: usize) -> usize {
    2 * size.div_ceil(1024).max(1)
}

async fn get(st: &Stack, key: &ItemKey) -> Option<Item> {
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

/// The busy terminal's shards (the default is 1; a busy merchant is raised).
const TERMINAL_SHARDS: u8 = 4;
/// A busy terminal's day: this many decisions, with amounts of a realistic size.
const DECISIONS_PER_DAY_AT_TERMINAL: u64 = 200_000;

#[tokio::test]
async fn one_decision_costs_what_its_item_sizes_say() {
    let st = Stack::new().await;
    let tenant = TenantId::parse("acme").unwrap();
    let keys = Keys::new(&tenant);
    let api = ApiKey::generate();
    st.store
        .put_key(
            &api.hash(),
            &KeyRecord {
                key_id: api.key_id(),
                tenant: tenant.clone(),
                scopes: Scope::parse_list("transactions:write,transactions:read").unwrap(),
                created_at: 1_700_000_000,
                expires_at: Some(4_000_000_000),
                revoked_at: None,
            },
        )
        .await
        .unwrap();
    st.store
        .change_aggregate_shards(&tenant, |l| {
            l.set_terminals(ShardCount::new(TERMINAL_SHARDS as u64).unwrap());
            Ok(())
        })
        .await
        .unwrap();
    // 64 days of history for the customer (one payment a day) and the terminal's shards (a busy
    // merchant: six-digit counts and ten-digit sums every day), written as the adapter writes them.
    let first = Timestamp::parse("t", "2018-06-01T12:00:00Z").unwrap().epoch_day();
    let mut history: Vec<Transaction> = Vec::new();
    for d in 0..64 {
        let at = Timestamp::from_unix((first + d) as i64 * 86_400 + 43_200).unwrap();
        let mut t = tx(&format!("h-{d}"), &at.to_rfc3339(), 4_250, "cust_4961");
        t.terminal_id = verdict::domain::TerminalId::parse("term_0042").unwrap();
        history.push(t);
    }
    for t in &history {
        let r = record(t, "fp");
        let snap = st
            .store
            .load_for_scoring(&tenant, Some(&api.hash()), t, None)
            .await
            .unwrap();
        let commit = DecisionCommit {
            record: &r,
            transaction: t,
            idempotency_key: None,
            delta: transaction_delta(t),
            aggregates: &snap.aggregate_write,
        };
        assert_eq!(
            st.store.commit(&tenant, &commit).await.unwrap(),
            CommitOutcome::Committed
        );
    }
    for k in 0..TERMINAL_SHARDS {
        let key = keys.terminal_aggregate_shard(&history[0].terminal_id, k);
        let mut item: Item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
            ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
        ]);
        let per_shard = DECISIONS_PER_DAY_AT_TERMINAL / TERMINAL_SHARDS as u64;
        for d in 0..64 {
            let day = first + d;
            item.insert(format!("c{day}"), AttributeValue::N((per_shard + 17).to_string()));
            item.insert(
                format!("a{day}"),
                AttributeValue::N((per_shard * 4_731 + 93).to_string()),
            );
            item.insert(format!("f{day}"), AttributeValue::N("37".into()));
        }
        st.dynamodb
            .put_item()
            .table_name(&st.table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    // The decision measured: the 65th day, with an Idempotency-Key.
    let at = Timestamp::from_unix((first + 64) as i64 * 86_400 + 43_200).unwrap();
    let mut t = tx("tx_7f3a9c1e2b4d", &at.to_rfc3339(), 4_250, "cust_4961");
    t.terminal_id = history[0].terminal_id.clone();
    let idem = IdempotencyKey::parse("order-2018-08-04-000123").unwrap();
    let layout_terminal = ShardCount::new(TERMINAL_SHARDS as u64).unwrap();
    let read_keys: Vec<(&str, ItemKey)> = [
        ("api key", verdict::adapters::dynamodb::api_key(&api.hash()).unwrap()),
        ("decision (absent)", keys.decision(&t.id)),
        ("tenant config", keys.config()),
        ("active model", keys.active_model()),
        ("idempotency (absent)", keys.idempotency(&idem)),
        ("customer aggregate", keys.customer_aggregate(&t.customer_id)),
    ]
    .into_iter()
    .chain((0..TERMINAL_SHARDS).map(|k| ("terminal shard", keys.terminal_aggregate_shard(&t.terminal_id, k))))
    .collect();
    let mut before = HashMap::new();
    println!("read: one BatchGetItem, strongly consistent");
    let mut read_units = 0;
    for (what, key) in &read_keys {
        let item = get(&st, key).await;
        let size = item.as_ref().map(item_size);
        read_units += rru(size);
        println!("  {what:<22} {:>6} B  {} RRU", size.unwrap_or(0), rru(size));
        before.insert(key.clone(), size.unwrap_or(0));
    }
    println!("  total {read_units} RRU");

    let snap = st
        .store
        .load_for_scoring(&tenant, Some(&api.hash()), &t, Some(&idem))
        .await
        .unwrap();
    let r = record(&t, "fp");
    let commit = DecisionCommit {
        record: &r,
        transaction: &t,
        idempotency_key: Some(&idem),
        delta: transaction_delta(&t),
        aggregates: &snap.aggregate_write,
    };
    assert_eq!(
        st.store.commit(&tenant, &commit).await.unwrap(),
        CommitOutcome::Committed
    );
    let terminal_shard = layout_terminal.shard_of(&t.id);
    let written = [
        ("decision (put)", keys.decision(&t.id)),
        ("idempotency (put)", keys.idempotency(&idem)),
        ("customer aggregate", keys.customer_aggregate(&t.customer_id)),
        (
            "terminal shard",
            keys.terminal_aggregate_shard(&t.terminal_id, terminal_shard),
        ),
    ];
    println!("write: one TransactWriteItems");
    let mut write_units = 0;
    for (what, key) in &written {
        let after = item_size(&get(&st, key).await.expect("written"));
        let billed = after.max(before.get(key).copied().unwrap_or(0));
        write_units += transact_wru(billed);
        println!("  {what:<22} {billed:>6} B  {} WRU", transact_wru(billed));
    }
    println!("  total {write_units} WRU");
    // On-demand list prices, us-east-1, since the November 2024 reduction.
    let (per_m_rru, per_m_wru) = (0.125, 0.625);
    println!(
        "per million decisions: {read_units} M RRU × ${per_m_rru} + {write_units} M WRU × ${per_m_wru} = ${:.2}",
        read_units as f64 * per_m_rru + write_units as f64 * per_m_wru
    );
    // What the docs claim: a decision reads one unit per key and writes at most 14 units.
    assert_eq!(read_units, read_keys.len(), "an item outgrew 4 KB");
    assert!(write_units <= 14, "{write_units} WRU");
}
