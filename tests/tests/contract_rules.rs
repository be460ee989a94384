//! The rules contract (`verdict::ports::contract::rules`) against the DynamoDB adapter on moto
//! (shared's unit tests run it on the fake), and what only the adapter can show: the scoring
//! read stays one BatchGetItem, the stored shape, tolerant reads of odd items, the size limit.

use aws_sdk_dynamodb::types::AttributeValue;
use verdict::adapters::dynamodb::{ItemKey, Keys};
use verdict::adapters::DynamoStore;
use verdict::domain::auth::ApiKey;
use verdict::domain::rules::{AuditEntry, ListEntry, ListKind, ListMeta, RulesetPointer};
use verdict::domain::{ListName, TenantId, Timestamp};
use verdict::ports::contract::decisions::tx;
use verdict::ports::contract::rules::{rule, rules_contract, ruleset, RulesSeed};
use verdict::ports::rules::{RulesAdmin, RulesRead};
use verdict::ports::{DecisionStore, StoreError};
use verdict_integration::Stack;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

/// The seeding the contract needs, as raw writes to the table.
struct Seed<'a>(&'a Stack);

impl Seed<'_> {
    async fn set(&self, key: &ItemKey, attribute: &str, value: AttributeValue) {
        self.0
            .dynamodb
            .update_item()
            .table_name(&self.0.table)
            .key("pk", AttributeValue::S(key.pk.clone()))
            .key("sk", AttributeValue::S(key.sk.clone()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .expect("UpdateItem");
    }
}

impl RulesSeed for Seed<'_> {
    async fn force_list_entry_count(&self, tenant: &TenantId, name: &ListName, entries: u64) {
        let key = Keys::new(tenant).list_meta(name);
        self.set(&key, "entries", AttributeValue::N(entries.to_string())).await;
    }
}

#[tokio::test]
async fn the_dynamodb_adapter_keeps_the_rules_contract() {
    let st = Stack::new().await;
    rules_contract(&st.store, &Seed(&st), &acme(), &TenantId::parse("globex").unwrap()).await;
}

fn audit(n: i64) -> AuditEntry {
    AuditEntry {
        at: Timestamp::from_unix(1_764_000_000 + n).unwrap(),
        actor: "vk_0123456789ab".into(),
        action: "test".into(),
        target: format!("change {n}"),
        detail: String::new(),
    }
}

fn meta(name: &str) -> ListMeta {
    ListMeta {
        name: ListName::parse(name).unwrap(),
        kind: ListKind::String,
        description: String::new(),
        version: 0,
        entries: 0,
        created_by: "vk_0123456789ab".into(),
        created_at: Timestamp::from_unix(1_764_000_000).unwrap(),
        updated_at: Timestamp::from_unix(1_764_000_000).unwrap(),
    }
}

fn entry(value: &str) -> ListEntry {
    ListEntry {
        value: value.into(),
        expires_at: None,
        note: None,
        added_by: "vk_0123456789ab".into(),
        added_at: Timestamp::from_unix(1_764_000_000).unwrap(),
    }
}

/// A published ruleset `v` that the pointer points at, and one list with an entry.
async fn seed_rules(store: &DynamoStore, tenant: &TenantId) {
    store
        .put_ruleset(tenant, &ruleset(1, vec![rule("big", 1)]), &audit(1))
        .await
        .unwrap();
    store.publish_ruleset(tenant, 1, &audit(2)).await.unwrap();
    let to = RulesetPointer {
        version: 1,
        previous_version: None,
        activated_by: "vk_0123456789ab".into(),
        activated_at: Timestamp::from_unix(1_764_000_003).unwrap(),
    };
    store.move_ruleset_pointer(tenant, None, &to, &audit(3)).await.unwrap();
    store.create_list(tenant, &meta("blocked"), &audit(4)).await.unwrap();
    store
        .add_list_entries(tenant, &ListName::parse("blocked").unwrap(), &[entry("x")], &audit(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_scoring_read_brings_the_rules_pointers_in_its_one_batch_get() {
    let st = Stack::new().await;
    let tenant = acme();
    seed_rules(&st.store, &tenant).await;
    st.store
        .set_thresholds(&tenant, verdict::domain::policy::Thresholds::new(0.2, 0.7).unwrap())
        .await
        .unwrap();
    let t = tx("tx-1", "2018-08-08T10:00:00Z", 1_000, "c-1");
    // A first read may learn the shard layout; the steady state is what counts.
    st.store
        .load_for_scoring(&tenant, Some(&ApiKey::generate().hash()), &t, None)
        .await
        .unwrap();
    st.calls.take();
    let snap = st
        .store
        .load_for_scoring(&tenant, Some(&ApiKey::generate().hash()), &t, None)
        .await
        .unwrap();
    assert_eq!(st.calls.take(), ["BatchGetItem"], "no request for the rules");
    assert_eq!(snap.rules.active_ruleset, Some(1));
    assert_eq!(
        snap.rules.lists.into_iter().collect::<Vec<_>>(),
        [(ListName::parse("blocked").unwrap(), 1)]
    );
    assert!(snap.thresholds.is_some(), "the thresholds beside them");

    // The stored shape docs/dynamodb.md describes.
    let config = st.raw_item(&Keys::new(&tenant).config()).await;
    assert_eq!(config.get("ruleset_active"), Some(&AttributeValue::N("1".into())));
    assert_eq!(
        config.get("ruleset_by"),
        Some(&AttributeValue::S("vk_0123456789ab".into()))
    );
    assert!(!config.contains_key("ruleset_prev"));
    let AttributeValue::M(versions) = &config["list_versions"] else {
        panic!("list_versions is not a map: {config:?}");
    };
    assert_eq!(versions.get("blocked"), Some(&AttributeValue::N("1".into())));
    let entry = st
        .raw_item(&Keys::new(&tenant).list_entry(&ListName::parse("blocked").unwrap(), "x"))
        .await;
    assert!(!entry.contains_key("expires_at"), "never the table's TTL attribute");
}

#[tokio::test]
async fn unreadable_pointers_in_the_config_read_as_none_and_a_move_from_none_repairs_them() {
    let st = Stack::new().await;
    let tenant = acme();
    seed_rules(&st.store, &tenant).await;
    let seed = Seed(&st);
    let config = Keys::new(&tenant).config();
    seed.set(&config, "ruleset_active", AttributeValue::S("one".into()))
        .await;
    seed.set(
        &config,
        "list_versions",
        AttributeValue::M(
            [
                ("blocked".to_owned(), AttributeValue::S("1".into())),
                ("not a name!".to_owned(), AttributeValue::N("3".into())),
                ("fine".to_owned(), AttributeValue::N("7".into())),
            ]
            .into(),
        ),
    )
    .await;
    let t = tx("tx-1", "2018-08-08T10:00:00Z", 1_000, "c-1");
    let snap = st
        .store
        .load_for_scoring(&tenant, Some(&ApiKey::generate().hash()), &t, None)
        .await
        .expect("odd pointers never fail the decision");
    assert_eq!(snap.rules.active_ruleset, None);
    assert_eq!(
        snap.rules.lists.into_iter().collect::<Vec<_>>(),
        [(ListName::parse("fine").unwrap(), 7)]
    );
    assert_eq!(st.store.ruleset_pointer(&tenant).await.unwrap(), None);
    let to = RulesetPointer {
        version: 1,
        previous_version: None,
        activated_by: "vk_0123456789ab".into(),
        activated_at: Timestamp::from_unix(1_764_000_010).unwrap(),
    };
    st.store
        .move_ruleset_pointer(&tenant, None, &to, &audit(10))
        .await
        .expect("a move from none replaces an unreadable pointer");
    assert_eq!(st.store.ruleset_pointer(&tenant).await.unwrap(), Some(to));

    // list_versions not a map: the next list change rebuilds it from the lists.
    seed.set(&config, "list_versions", AttributeValue::S("garbage".into()))
        .await;
    let blocked = ListName::parse("blocked").unwrap();
    let c = st
        .store
        .add_list_entries(&tenant, &blocked, &[entry("y")], &audit(11))
        .await
        .unwrap();
    assert_eq!((c.added, c.version, c.entries), (1, 2, 2));
    let snap = st
        .store
        .load_for_scoring(&tenant, Some(&ApiKey::generate().hash()), &t, None)
        .await
        .unwrap();
    assert_eq!(snap.rules.lists.into_iter().collect::<Vec<_>>(), [(blocked, 2)]);
}

#[tokio::test]
async fn odd_stored_items_are_skipped_in_pages_and_corrupt_when_asked_for() {
    let st = Stack::new().await;
    let tenant = acme();
    seed_rules(&st.store, &tenant).await;
    let blocked = ListName::parse("blocked").unwrap();
    let keys = Keys::new(&tenant);
    let seed = Seed(&st);
    st.store
        .add_list_entries(&tenant, &blocked, &[entry("a#1"), entry("b")], &audit(6))
        .await
        .unwrap();
    seed.set(
        &keys.list_entry(&blocked, "a#1"),
        "added_at",
        AttributeValue::N("5".into()),
    )
    .await;
    seed.set(&keys.ruleset(1), "ruleset", AttributeValue::S("{not json".into()))
        .await;
    let page = st.store.list_entries(&tenant, &blocked, 10, None).await.unwrap();
    assert_eq!(
        page.items.iter().map(|e| e.value.as_str()).collect::<Vec<_>>(),
        ["b", "x"]
    );
    let contents = st.store.list_contents(&tenant, &blocked).await.unwrap().unwrap();
    assert_eq!(contents.entries.len(), 2);
    assert!(st.store.rulesets(&tenant, 10, None).await.unwrap().items.is_empty());
    assert!(matches!(
        st.store.ruleset(&tenant, 1).await,
        Err(StoreError::Corrupt { .. })
    ));
    // An odd audit item is left out of its page.
    let first = st.store.audit(&tenant, 1, None).await.unwrap();
    assert_eq!(first.items[0].target, "change 6");
    let out = st
        .dynamodb
        .query()
        .table_name(&st.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("T#acme#AUDIT".into()))
        .send()
        .await
        .unwrap();
    let newest = out.items.unwrap().pop().unwrap();
    let key = ItemKey {
        pk: "T#acme#AUDIT".into(),
        sk: match &newest["sk"] {
            AttributeValue::S(s) => s.clone(),
            _ => unreachable!(),
        },
    };
    seed.set(&key, "at", AttributeValue::S("yesterday".into())).await;
    let page = st.store.audit(&tenant, 10, None).await.unwrap();
    assert_eq!(page.items.first().map(|a| a.target.as_str()), Some("change 5"));
}

#[tokio::test]
async fn a_ruleset_over_the_item_size_limit_is_refused_naming_its_size() {
    let st = Stack::new().await;
    let tenant = acme();
    let mut big = rule("big", 1);
    big.spec.expression = "x".repeat(2_000);
    big.spec.description = "d".repeat(1_000);
    let rs = ruleset(1, vec![big; 200]);
    match st.store.put_ruleset(&tenant, &rs, &audit(1)).await {
        Err(StoreError::Rejected(m)) => assert!(m.contains("bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(st.store.latest_ruleset_version(&tenant).await.unwrap(), None);
    assert!(st.store.audit(&tenant, 10, None).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn the_parts_of_one_large_change_are_audited_last_part_first() {
    let st = Stack::new().await;
    let tenant = acme();
    let name = ListName::parse("big").unwrap();
    st.store.create_list(&tenant, &meta("big"), &audit(1)).await.unwrap();
    let entries: Vec<ListEntry> = (0..6 * 97).map(|i| entry(&format!("v{i:04}"))).collect();
    let c = st
        .store
        .add_list_entries(&tenant, &name, &entries, &audit(2))
        .await
        .unwrap();
    assert_eq!((c.added, c.version, c.entries), (582, 6, 582));
    let page = st.store.audit(&tenant, 10, None).await.unwrap();
    let details: Vec<&str> = page.items.iter().map(|a| a.detail.as_str()).collect();
    let expected: Vec<String> = (1..=6)
        .rev()
        .map(|i| format!("(part {i} of 6: 97 added, 0 updated)"))
        .chain(["".to_owned()])
        .collect();
    assert_eq!(details, expected);
}

/// Concurrent overlapping adds to one list: each part conditional on the meta's version, so a
/// part that lost reads again; the count stays the number of entries stored.
#[tokio::test]
async fn concurrent_adds_to_one_list_keep_its_count_exact() {
    let st = Stack::new().await;
    let tenant = acme();
    let name = ListName::parse("shared").unwrap();
    st.store.create_list(&tenant, &meta("shared"), &audit(1)).await.unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|k| {
            let store = st.store.clone();
            let (tenant, name) = (tenant.clone(), name.clone());
            tokio::spawn(async move {
                let entries: Vec<ListEntry> = (k * 25..k * 25 + 50).map(|i| entry(&format!("v{i:03}"))).collect();
                store
                    .add_list_entries(&tenant, &name, &entries, &audit(10 + k as i64))
                    .await
            })
        })
        .collect();
    let mut changes = Vec::new();
    for t in tasks {
        changes.push(t.await.unwrap().expect("each add goes through"));
    }
    let added: u64 = changes.iter().map(|c| c.added).sum();
    let updated: u64 = changes.iter().map(|c| c.updated).sum();
    assert_eq!((added, updated), (125, 75), "each value added once");
    let contents = st.store.list_contents(&tenant, &name).await.unwrap().unwrap();
    assert_eq!(contents.entries.len(), 125);
    assert_eq!((contents.meta.entries, contents.meta.version), (125, 4));
}
