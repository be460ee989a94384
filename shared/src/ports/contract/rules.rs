//! The contract of [`RulesAdmin`] (and so [`RulesRead`](crate::ports::rules::RulesRead)) with the
//! pointers [`DecisionStore::load_for_scoring`] reads: one suite, run against
//! [`InMemoryDecisions`] and against the DynamoDB adapter on moto, so the fake the services are
//! tested over cannot drift from the real thing.
//!
//! It panics on the first broken promise, like any test body. `tenant` and `other` must be two
//! tenants with nothing stored yet; the list cap is checked on a third, `<tenant>-lists`.

use crate::domain::auth::ApiKey;
use crate::domain::rules::{
    AuditEntry, ListEntry, ListKind, ListMeta, MatchMode, Rule, RuleAction, RuleMode, RuleSpec, Ruleset,
    RulesetPointer, RulesetStatus, MAX_LISTS, MAX_LIST_ENTRIES,
};
use crate::domain::{ListName, RuleId, TenantId, Timestamp};
use crate::ports::contract::decisions::tx;
use crate::ports::in_memory::InMemoryDecisions;
use crate::ports::rules::{ListChange, RulesAdmin, RulesPointers};
use crate::ports::{DecisionStore, Page, StoreError};
use std::collections::BTreeMap;
use std::future::Future;

/// What the suite sets up beyond the port.
pub trait RulesSeed {
    /// Makes a list's stored entry count `entries` without writing entries, so the 100,000 cap
    /// is reached without 100,000 writes.
    fn force_list_entry_count(&self, tenant: &TenantId, name: &ListName, entries: u64) -> impl Future<Output = ()>;
}

impl RulesSeed for InMemoryDecisions {
    async fn force_list_entry_count(&self, tenant: &TenantId, name: &ListName, entries: u64) {
        InMemoryDecisions::force_list_entry_count(self, tenant, name, entries);
    }
}

/// Hands out audit entries one second apart, and remembers those of the changes that happened.
struct Audit {
    clock: i64,
    written: Vec<AuditEntry>,
}

impl Audit {
    fn next(&mut self, action: &str, target: &str) -> AuditEntry {
        self.clock += 1;
        AuditEntry {
            at: Timestamp::from_unix(1_764_000_000 + self.clock).unwrap(),
            actor: "vk_0123456789ab".into(),
            action: action.into(),
            target: target.into(),
            detail: format!("change {}", self.clock),
        }
    }

    fn happened(&mut self, a: &AuditEntry) {
        self.written.push(a.clone());
    }
}

fn id(raw: &str) -> RuleId {
    RuleId::parse(raw).unwrap()
}

fn list(raw: &str) -> ListName {
    ListName::parse(raw).unwrap()
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix(1_764_000_000 + seconds).unwrap()
}

pub fn rule(rule_id: &str, version: u32) -> Rule {
    Rule {
        spec: RuleSpec {
            id: id(rule_id),
            name: format!("Rule {rule_id}"),
            description: format!("version {version}"),
            expression: format!("tx.amount > {version}00"),
            action: RuleAction::Block,
            priority: version as i32,
            mode: RuleMode::Active,
        },
        version,
        created_by: "vk_0123456789ab".into(),
        created_at: at(version as i64),
    }
}

pub fn ruleset(version: u32, rules: Vec<Rule>) -> Ruleset {
    Ruleset {
        version,
        status: RulesetStatus::Draft,
        mode: MatchMode::AllMatched,
        description: format!("ruleset {version}"),
        rules,
        created_by: "vk_0123456789ab".into(),
        created_at: at(100 + version as i64),
        published_by: None,
        published_at: None,
    }
}

fn meta(name: &str, kind: ListKind) -> ListMeta {
    ListMeta {
        name: list(name),
        kind,
        description: format!("the {name} list"),
        version: 0,
        entries: 0,
        created_by: "vk_0123456789ab".into(),
        created_at: at(200),
        updated_at: at(200),
    }
}

fn entry(value: &str, note: Option<&str>) -> ListEntry {
    ListEntry {
        value: value.into(),
        expires_at: note.map(|_| at(10_000)),
        note: note.map(str::to_owned),
        added_by: "vk_0123456789ab".into(),
        added_at: at(300),
    }
}

fn change(added: u64, updated: u64, removed: u64, absent: u64, version: u64, entries: u64) -> ListChange {
    ListChange {
        added,
        updated,
        removed,
        absent,
        version,
        entries,
    }
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::NotFound(_)))
}

fn is_rejected<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Rejected(_)))
}

fn is_limit<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::LimitReached(_)))
}

/// Every item of a paged read, `limit` a page, checking pages are at most `limit` long.
async fn all_pages<T, F, Fut>(limit: usize, mut page: F) -> Vec<T>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..10_000 {
        let p = page(cursor.take()).await.expect("a page");
        assert!(
            p.items.len() <= limit,
            "a page of {} items for limit {limit}",
            p.items.len()
        );
        out.extend(p.items);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("pages never ended");
}

async fn pointers<S: DecisionStore>(store: &S, tenant: &TenantId) -> RulesPointers {
    let t = tx("tx-rules", "2018-08-08T10:00:00Z", 1_000, "c-1");
    store
        .load_for_scoring(tenant, Some(&ApiKey::generate().hash()), &t, None)
        .await
        .expect("load_for_scoring")
        .rules
}

fn values(entries: &[ListEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.value.as_str()).collect()
}

pub async fn rules_contract<S: RulesAdmin + DecisionStore>(
    store: &S,
    seed: &impl RulesSeed,
    tenant: &TenantId,
    other: &TenantId,
) {
    let mut audit = Audit {
        clock: 0,
        written: Vec::new(),
    };

    // Nothing yet.
    assert_eq!(store.rule(tenant, &id("big"), None).await.unwrap(), None);
    let empty = store.rules(tenant, 10, None).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());
    assert_eq!(store.latest_ruleset_version(tenant).await.unwrap(), None);
    assert!(store.rulesets(tenant, 10, None).await.unwrap().items.is_empty());
    assert_eq!(store.ruleset(tenant, 1).await.unwrap(), None);
    assert_eq!(store.ruleset_pointer(tenant).await.unwrap(), None);
    assert!(store.lists(tenant).await.unwrap().is_empty());
    assert!(store.audit(tenant, 10, None).await.unwrap().items.is_empty());
    assert_eq!(pointers(store, tenant).await, RulesPointers::default());

    // Rules: versions are new and follow the latest; the latest is what `None` reads.
    for (rule_id, version) in [("big", 1), ("big", 2), ("a.ip", 1), ("c:mail", 1), ("b_x", 1)] {
        let a = audit.next("rule.create", &format!("rule:{rule_id}@{version}"));
        store.put_rule(tenant, &rule(rule_id, version), &a).await.unwrap();
        audit.happened(&a);
    }
    for (rule_id, version, why) in [
        ("big", 2, "an existing version"),
        ("big", 1, "an older version"),
        ("big", 4, "a version that skips one"),
    ] {
        let a = audit.next("rule.create", "refused");
        assert!(
            is_conflict(store.put_rule(tenant, &rule(rule_id, version), &a).await),
            "{why}"
        );
    }
    assert_eq!(
        store.rule(tenant, &id("big"), None).await.unwrap(),
        Some(rule("big", 2))
    );
    assert_eq!(
        store.rule(tenant, &id("big"), Some(1)).await.unwrap(),
        Some(rule("big", 1))
    );
    assert_eq!(store.rule(tenant, &id("big"), Some(3)).await.unwrap(), None);
    // Pages: the latest version of each id, by id.
    let p1 = store.rules(tenant, 2, None).await.unwrap();
    assert_eq!(p1.items, [rule("a.ip", 1), rule("b_x", 1)]);
    let p2 = store.rules(tenant, 2, p1.next_cursor.as_deref()).await.unwrap();
    assert_eq!(p2.items, [rule("big", 2), rule("c:mail", 1)]);
    assert_eq!(p2.next_cursor, None, "no empty last page");
    assert!(matches!(
        store.rules(tenant, 2, Some("bm9wZQ")).await,
        Err(StoreError::BadCursor)
    ));

    // Rulesets: created as drafts, newest first, published once.
    let rs = |v: u32| ruleset(v, vec![rule("big", 2), rule("a.ip", 1)]);
    for v in 1..=3 {
        let a = audit.next("ruleset.create", &format!("ruleset:{v}"));
        store.put_ruleset(tenant, &rs(v), &a).await.unwrap();
        audit.happened(&a);
    }
    let a = audit.next("ruleset.create", "refused");
    assert!(is_conflict(store.put_ruleset(tenant, &rs(2), &a).await));
    assert_eq!(store.latest_ruleset_version(tenant).await.unwrap(), Some(3));
    assert_eq!(store.ruleset(tenant, 2).await.unwrap(), Some(rs(2)));
    let p1 = store.rulesets(tenant, 2, None).await.unwrap();
    assert_eq!(p1.items, [rs(3), rs(2)]);
    let p2 = store.rulesets(tenant, 2, p1.next_cursor.as_deref()).await.unwrap();
    assert_eq!((p2.items, p2.next_cursor), (vec![rs(1)], None));
    assert!(matches!(
        store.rulesets(tenant, 2, Some("bm9wZQ")).await,
        Err(StoreError::BadCursor)
    ));

    let a = audit.next("ruleset.publish", "ruleset:9");
    assert!(is_not_found(store.publish_ruleset(tenant, 9, &a).await));
    let a = audit.next("ruleset.publish", "ruleset:1");
    let published = store.publish_ruleset(tenant, 1, &a).await.unwrap();
    audit.happened(&a);
    let expected = Ruleset {
        status: RulesetStatus::Published,
        published_by: Some(a.actor.clone()),
        published_at: Some(a.at),
        ..rs(1)
    };
    assert_eq!(published, expected, "published by the audit's actor, at its time");
    assert_eq!(store.ruleset(tenant, 1).await.unwrap(), Some(expected.clone()));
    let a = audit.next("ruleset.publish", "ruleset:1");
    assert!(
        is_conflict(store.publish_ruleset(tenant, 1, &a).await),
        "published already"
    );

    // The pointer: only to a published version, only from the version read.
    let pointer = |version: u32, previous: Option<u32>| RulesetPointer {
        version,
        previous_version: previous,
        activated_by: "vk_0123456789ab".into(),
        activated_at: at(400 + version as i64),
    };
    for (to, expected, why) in [
        (2, None, "a draft"),
        (9, None, "a missing version"),
        (2, Some(7), "a draft, stale"),
    ] {
        let a = audit.next("ruleset.activate", "refused");
        assert!(
            is_not_found(
                store
                    .move_ruleset_pointer(tenant, expected, &pointer(to, None), &a)
                    .await
            ),
            "{why}"
        );
    }
    let a = audit.next("ruleset.activate", "refused");
    assert!(
        is_conflict(store.move_ruleset_pointer(tenant, Some(1), &pointer(1, None), &a).await),
        "no pointer yet, not 1"
    );
    let a = audit.next("ruleset.activate", "ruleset:1");
    store
        .move_ruleset_pointer(tenant, None, &pointer(1, None), &a)
        .await
        .unwrap();
    audit.happened(&a);
    assert_eq!(store.ruleset_pointer(tenant).await.unwrap(), Some(pointer(1, None)));
    assert_eq!(pointers(store, tenant).await.active_ruleset, Some(1));

    let a = audit.next("ruleset.publish", "ruleset:2");
    store.publish_ruleset(tenant, 2, &a).await.unwrap();
    audit.happened(&a);
    let a = audit.next("ruleset.activate", "refused");
    assert!(
        is_conflict(store.move_ruleset_pointer(tenant, None, &pointer(2, Some(1)), &a).await),
        "stale: the pointer is at 1"
    );
    let a = audit.next("ruleset.activate", "refused");
    assert!(is_conflict(
        store
            .move_ruleset_pointer(tenant, Some(3), &pointer(2, Some(1)), &a)
            .await
    ));
    assert_eq!(store.ruleset_pointer(tenant).await.unwrap(), Some(pointer(1, None)));
    let a = audit.next("ruleset.activate", "ruleset:2");
    store
        .move_ruleset_pointer(tenant, Some(1), &pointer(2, Some(1)), &a)
        .await
        .unwrap();
    audit.happened(&a);
    assert_eq!(store.ruleset_pointer(tenant).await.unwrap(), Some(pointer(2, Some(1))));
    assert_eq!(pointers(store, tenant).await.active_ruleset, Some(2));
    // Back to 1 (a rollback).
    let a = audit.next("ruleset.rollback", "ruleset:1");
    store
        .move_ruleset_pointer(tenant, Some(2), &pointer(1, Some(2)), &a)
        .await
        .unwrap();
    audit.happened(&a);
    assert_eq!(pointers(store, tenant).await.active_ruleset, Some(1));

    // Lists: created empty, by name; a name is taken once.
    let odd = list("odd_values");
    let emails = list("blocked_emails");
    for m in [
        meta("odd_values", ListKind::String),
        meta("blocked_emails", ListKind::Email),
    ] {
        let a = audit.next("list.create", &format!("list:{}", m.name));
        store.create_list(tenant, &m, &a).await.unwrap();
        audit.happened(&a);
    }
    let a = audit.next("list.create", "refused");
    assert!(is_conflict(
        store.create_list(tenant, &meta("odd_values", ListKind::Ip), &a).await
    ));
    assert_eq!(
        store.lists(tenant).await.unwrap(),
        [
            meta("blocked_emails", ListKind::Email),
            meta("odd_values", ListKind::String)
        ]
    );
    assert_eq!(
        store.list_meta(tenant, &odd).await.unwrap(),
        Some(meta("odd_values", ListKind::String))
    );
    assert_eq!(store.list_meta(tenant, &list("nope")).await.unwrap(), None);
    assert_eq!(
        pointers(store, tenant).await.lists,
        BTreeMap::from([(emails.clone(), 0), (odd.clone(), 0)])
    );

    // Adding: new values are added, values already there updated; a retry double-counts nothing.
    let first = [entry("A#1", None), entry("a#1", Some("lower")), entry("b/2:x", None)];
    let a = audit.next("list.entries.add", "list:odd_values");
    let c = store.add_list_entries(tenant, &odd, &first, &a).await.unwrap();
    audit.happened(&a);
    assert_eq!(c, change(3, 0, 0, 0, 1, 3));
    let retried = [
        entry("A#1", Some("now with a note")),
        entry("a#1", Some("lower")),
        entry("b/2:x", None),
        entry("B:3", None),
    ];
    let a = audit.next("list.entries.add", "list:odd_values");
    let c = store.add_list_entries(tenant, &odd, &retried, &a).await.unwrap();
    audit.happened(&a);
    assert_eq!(c, change(1, 3, 0, 0, 2, 4), "a retry with one more value");
    assert_eq!(pointers(store, tenant).await.lists.get(&odd), Some(&2));
    let contents = store.list_contents(tenant, &odd).await.unwrap().expect("the list");
    assert_eq!(values(&contents.entries), ["A#1", "B:3", "a#1", "b/2:x"], "byte order");
    // One entry by value: exact bytes; absent, or on a list that does not exist, is None.
    let one = store.list_entry(tenant, &odd, "A#1").await.unwrap().expect("A#1");
    assert_eq!(one.note.as_deref(), Some("now with a note"));
    assert_eq!(store.list_entry(tenant, &odd, "a#2").await.unwrap(), None);
    assert_eq!(store.list_entry(tenant, &list("nope"), "A#1").await.unwrap(), None);
    assert_eq!(
        contents.entries[0], retried[0],
        "the new expiry and note replace the old"
    );
    assert_eq!((contents.meta.version, contents.meta.entries), (2, 4));
    assert_eq!(contents.meta.updated_at, a.at);

    // Removing: values there are removed, the others counted absent; nothing to remove writes
    // nothing.
    let a = audit.next("list.entries.remove", "list:odd_values");
    let c = store
        .remove_list_entries(tenant, &odd, &["a#1".into(), "zz".into()], &a)
        .await
        .unwrap();
    audit.happened(&a);
    assert_eq!(c, change(0, 0, 1, 1, 3, 3));
    let a = audit.next("list.entries.remove", "list:odd_values");
    let c = store
        .remove_list_entries(tenant, &odd, &["a#1".into()], &a)
        .await
        .unwrap();
    assert_eq!(c, change(0, 0, 0, 1, 3, 3), "nothing there: no new version");
    let a = audit.next("list.entries.add", "list:odd_values");
    let c = store.add_list_entries(tenant, &odd, &[], &a).await.unwrap();
    assert_eq!(c, change(0, 0, 0, 0, 3, 3), "nothing to add: no new version");
    let long = "v".repeat(1_001);
    assert!(
        is_rejected(store.add_list_entries(tenant, &odd, &[entry(&long, None)], &a).await),
        "a value longer than a sort key can hold"
    );
    let c = store.remove_list_entries(tenant, &odd, &[long], &a).await.unwrap();
    assert_eq!(c, change(0, 0, 0, 1, 3, 3));
    for r in [
        store.add_list_entries(tenant, &list("nope"), &first, &a).await,
        store
            .remove_list_entries(tenant, &list("nope"), &["x".into()], &a)
            .await,
    ] {
        assert!(is_not_found(r));
    }
    assert_eq!(store.list_contents(tenant, &list("nope")).await.unwrap(), None);

    // A change larger than one atomic write is written in parts of 97, each with its version
    // and its audit entry; the counts add up.
    let many: Vec<ListEntry> = (0..150)
        .map(|i| entry(&format!("user{i:03}#Mail/é:{i}"), None))
        .chain([entry("B:3", Some("again"))])
        .collect();
    let a = audit.next("list.entries.add", "list:odd_values");
    let c = store.add_list_entries(tenant, &odd, &many, &a).await.unwrap();
    assert_eq!(c, change(150, 1, 0, 0, 5, 153));
    let a1 = AuditEntry {
        detail: format!("{} (part 1 of 2: 96 added, 1 updated)", a.detail),
        ..a.clone()
    };
    let a2 = AuditEntry {
        detail: format!("{} (part 2 of 2: 54 added, 0 updated)", a.detail),
        ..a.clone()
    };
    audit.happened(&a1);
    audit.happened(&a2);
    assert_eq!(
        pointers(store, tenant).await.lists,
        BTreeMap::from([(emails.clone(), 0), (odd.clone(), 5)])
    );

    // Paging the entries in value order: every value once, cursors round-trip `#`, `/`, `:`.
    let mut expected_values: Vec<String> = many.iter().map(|e| e.value.clone()).collect();
    expected_values.extend(["A#1".into(), "b/2:x".into()]);
    expected_values.sort();
    expected_values.dedup();
    for limit in [1, 7, 1000] {
        let paged = all_pages(limit, |c| {
            let odd = odd.clone();
            async move { store.list_entries(tenant, &odd, limit, c.as_deref()).await }
        })
        .await;
        assert_eq!(values(&paged), expected_values, "pages of {limit}");
    }
    let contents = store.list_contents(tenant, &odd).await.unwrap().unwrap();
    assert_eq!(values(&contents.entries), expected_values);
    assert_eq!((contents.meta.version, contents.meta.entries), (5, 153));
    assert!(matches!(
        store.list_entries(tenant, &odd, 2, Some("bm9wZQ")).await,
        Err(StoreError::BadCursor)
    ));
    let none = store.list_entries(tenant, &list("nope"), 10, None).await.unwrap();
    assert!(none.items.is_empty() && none.next_cursor.is_none());

    // The cap: a change that would exceed it writes nothing; values already there still update.
    let cap = MAX_LIST_ENTRIES as u64;
    seed.force_list_entry_count(tenant, &emails, cap - 2).await;
    let three = [entry("x@a.io", None), entry("y@a.io", None), entry("z@a.io", None)];
    let a = audit.next("list.entries.add", "refused");
    assert!(is_limit(store.add_list_entries(tenant, &emails, &three, &a).await));
    let meta_now = store.list_meta(tenant, &emails).await.unwrap().unwrap();
    assert_eq!((meta_now.version, meta_now.entries), (0, cap - 2), "nothing written");
    assert!(store
        .list_entries(tenant, &emails, 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
    let a = audit.next("list.entries.add", "list:blocked_emails");
    let c = store.add_list_entries(tenant, &emails, &three[..2], &a).await.unwrap();
    audit.happened(&a);
    assert_eq!(c, change(2, 0, 0, 0, 1, cap));
    let a = audit.next("list.entries.add", "list:blocked_emails");
    let c = store.add_list_entries(tenant, &emails, &three[..1], &a).await.unwrap();
    audit.happened(&a);
    assert_eq!(c, change(0, 1, 0, 0, 2, cap), "full, but an update adds nothing");
    let a = audit.next("list.entries.add", "refused");
    assert!(is_limit(store.add_list_entries(tenant, &emails, &three[2..], &a).await));

    // The audit: one entry per change that happened, newest first, paged.
    for limit in [1, 4, 1000] {
        let paged = all_pages(limit, |c| async move { store.audit(tenant, limit, c.as_deref()).await }).await;
        let mut expected = audit.written.clone();
        expected.reverse();
        assert_eq!(paged, expected, "pages of {limit}");
    }
    assert!(matches!(
        store.audit(tenant, 2, Some("bm9wZQ")).await,
        Err(StoreError::BadCursor)
    ));

    // At most MAX_LISTS lists a tenant.
    let crowded = TenantId::parse(&format!("{tenant}-lists")).unwrap();
    for i in 0..MAX_LISTS {
        let a = audit.next("list.create", "crowded");
        store
            .create_list(&crowded, &meta(&format!("l{i:03}"), ListKind::Bin), &a)
            .await
            .unwrap();
    }
    let a = audit.next("list.create", "refused");
    assert!(is_limit(
        store.create_list(&crowded, &meta("one_more", ListKind::Bin), &a).await
    ));
    assert_eq!(store.lists(&crowded).await.unwrap().len(), MAX_LISTS);
    assert_eq!(pointers(store, &crowded).await.lists.len(), MAX_LISTS);

    // Another tenant sees none of it, and cannot change any of it.
    assert_eq!(store.rule(other, &id("big"), None).await.unwrap(), None);
    assert_eq!(store.rule(other, &id("big"), Some(1)).await.unwrap(), None);
    assert!(store.rules(other, 10, None).await.unwrap().items.is_empty());
    assert_eq!(store.latest_ruleset_version(other).await.unwrap(), None);
    assert!(store.rulesets(other, 10, None).await.unwrap().items.is_empty());
    assert_eq!(store.ruleset(other, 1).await.unwrap(), None);
    assert_eq!(store.ruleset_pointer(other).await.unwrap(), None);
    assert!(store.lists(other).await.unwrap().is_empty());
    assert_eq!(store.list_meta(other, &odd).await.unwrap(), None);
    assert_eq!(store.list_contents(other, &odd).await.unwrap(), None);
    assert!(store
        .list_entries(other, &odd, 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store.audit(other, 10, None).await.unwrap().items.is_empty());
    assert_eq!(pointers(store, other).await, RulesPointers::default());
    let a = audit.next("refused", "refused");
    assert!(is_not_found(store.publish_ruleset(other, 3, &a).await));
    assert!(is_not_found(
        store.move_ruleset_pointer(other, None, &pointer(1, None), &a).await
    ));
    assert!(is_not_found(store.add_list_entries(other, &odd, &first, &a).await));
    assert!(store.audit(other, 10, None).await.unwrap().items.is_empty());
}
