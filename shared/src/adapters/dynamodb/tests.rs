use super::*;

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

#[test]
fn every_key_is_scoped_by_its_tenant() {
    let t = tenant("acme");
    let k = Keys::new(&t);
    let id = TransactionId::parse("tx-1").unwrap();
    let c = CustomerId::parse("c-1").unwrap();
    assert_eq!(k.decision(&id), ItemKey::new("T#acme#TX#tx-1".into(), "DECISION"));
    assert_eq!(k.customer_history(&c), "T#acme#CUST#c-1");
    assert_eq!(k.customer_aggregate(&c).sk, "AGG");
    assert_eq!(
        k.terminal_aggregate(&TerminalId::parse("t-1").unwrap()).pk,
        "T#acme#TERM#t-1"
    );
    assert_eq!(
        k.idempotency(&IdempotencyKey::parse("a:b").unwrap()).pk,
        "T#acme#IDEM#a:b"
    );
    assert_eq!(k.config(), ItemKey::new("T#acme".into(), "CONFIG"));
    assert_eq!(k.active_model(), ItemKey::new("T#acme#MODEL".into(), "ACTIVE"));
    assert_eq!(k.model_version("abc").sk, "V#abc");
    assert_eq!(k.key_id("vk_1").pk, "T#acme#KEYID#vk_1");
    assert_eq!(k.decision_id("T#acme#TX#tx-1"), Some(id));
    assert_eq!(Keys::new(&tenant("acm")).decision_id("T#acme#TX#tx-1"), None);
    assert_eq!(k.decision_id("T#acme#TX#"), None);
    assert!(api_key(&KeyHash("ab".into())).is_none());
    assert_eq!(
        api_key(&KeyHash("a".repeat(64))).unwrap().pk,
        format!("KEY#{}", "a".repeat(64))
    );
}

#[test]
fn history_sort_keys_order_by_time() {
    let id = TransactionId::parse("x").unwrap();
    let at = |s| Timestamp::parse("t", s).unwrap();
    let a = history_sort_key(&at("2018-08-08T10:00:00Z"), &id);
    let b = history_sort_key(&at("2018-08-08T10:00:00.5Z"), &id);
    let c = history_sort_key(&at("2018-08-08T10:00:01+00:00"), &id);
    assert_eq!(a, "2018-08-08T10:00:00.000000000Z#x");
    assert!(a < b && b < c, "{a} {b} {c}");
}

#[test]
fn aggregate_update_never_adds_and_removes_the_same_attribute() {
    for day in [0, 63, 64, 17_622, -5] {
        let u = aggregate_update(
            &AggregateDelta {
                day,
                counter: DayCounter {
                    count: 1,
                    amount_minor: 250,
                    frauds: 1,
                },
            },
            &[],
            i32::MAX,
        );
        let added: Vec<_> = u
            .names
            .iter()
            .filter(|(k, _)| k.starts_with("#d"))
            .map(|(_, v)| v.clone())
            .collect();
        let removed: Vec<_> = u
            .names
            .iter()
            .filter(|(k, _)| k.starts_with("#p"))
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(added.len(), 3);
        assert_eq!(removed.len(), 3 * PRUNE_DAYS as usize);
        for a in &added {
            assert!(!removed.contains(a), "{a} is both added and removed");
        }
        for r in &removed {
            let (_, d) = parse_day_attribute(r).unwrap();
            assert!(d <= day - RETENTION_DAYS, "{r} is still within retention of {day}");
        }
        assert_eq!(u.values[":d1"], AttributeValue::N("250".into()));
        assert!(u.expression.starts_with("ADD #d0 :d0, #d1 :d1, #d2 :d2 REMOVE #p0, "));
    }
    let label = aggregate_update(
        &AggregateDelta {
            day: 10,
            counter: DayCounter {
                count: 0,
                amount_minor: 0,
                frauds: 1,
            },
        },
        &[],
        i32::MAX,
    );
    assert!(label.expression.starts_with("ADD #d2 :d2 REMOVE"));
    assert_eq!(label.names["#d2"], "f10");
}

fn day(count: u64, amount_minor: i64, frauds: u64) -> DayCounter {
    DayCounter {
        count,
        amount_minor,
        frauds,
    }
}

#[test]
fn a_transaction_dated_ahead_prunes_from_today_not_from_its_own_day() {
    let delta = AggregateDelta {
        day: 1001,
        counter: day(1, 1, 0),
    };
    let u = aggregate_update(&delta, &[], 1000);
    let removed: Vec<i32> = u
        .names
        .iter()
        .filter(|(k, _)| k.starts_with("#p"))
        .filter_map(|(_, v)| parse_day_attribute(v).map(|(_, d)| d))
        .collect();
    // Today's decisions still read 1000 - 63 = 937; the band starts below it.
    assert_eq!(removed.iter().max(), Some(&(1000 - RETENTION_DAYS)));
}

#[test]
fn aggregates_parse_and_odd_attributes_are_ignored_not_fatal() {
    let key = ItemKey::new("T#a#CUST#c".into(), "AGG");
    let mut item = key.to_item();
    item.insert("c100".into(), n(2));
    item.insert("a100".into(), n(750));
    item.insert("f100".into(), n(1));
    item.insert("c99".into(), n(1));
    item.insert("expires_at".into(), n(5));
    let all = day_windows(None, 200);
    let mut sum = AggregateSum::default();
    assert!(sum.add_item(&item, &key, &all).is_empty());
    assert_eq!(sum.finish(&key).days(), vec![(99, day(1, 0, 0)), (100, day(2, 750, 1))]);

    // Not a number, not a whole number, far outside the window: each ignored, the rest read.
    item.insert("a99".into(), s("lots"));
    item.insert("f99".into(), n("1.5"));
    item.insert("c5".into(), n(3));
    item.insert("c99999".into(), n(3));
    let mut sum = AggregateSum::default();
    let mut ignored = sum.add_item(&item, &key, &day_windows(Some(100), 100));
    ignored.sort();
    assert_eq!(ignored, vec!["a99", "c5", "c99999", "f99"]);
    assert_eq!(sum.finish(&key).days(), vec![(99, day(1, 0, 0)), (100, day(2, 750, 1))]);
    assert_eq!(parse_day_attribute("c-3"), Some((b'c', -3)));
    assert_eq!(parse_day_attribute("created_at"), None);
    assert_eq!(parse_day_attribute("a"), None);
}

#[test]
fn shards_sum_per_day_saturate_and_negative_counts_read_as_zero() {
    let key = ItemKey::new("T#a#TERM#t".into(), "AGG");
    let all = day_windows(None, 200);
    let item = |attrs: &[(&str, &str)]| {
        let mut item = key.to_item();
        for (k, v) in attrs {
            item.insert((*k).into(), n(v));
        }
        item
    };
    let mut sum = AggregateSum::default();
    let a = item(&[
        ("c100", "2"),
        ("a100", "9223372036854775807"),
        ("f100", "-1"),
        ("c101", "-4"),
    ]);
    let b = item(&[("c100", "3"), ("a100", "10"), ("f100", "2"), ("f101", "-1")]);
    assert!(sum.add_item(&a, &key, &all).is_empty());
    assert!(sum.add_item(&b, &key, &all).is_empty());
    let agg = sum.finish(&key);
    // A fraud taken back in one shard and counted in another sums right; sums saturate.
    assert_eq!(agg.days(), vec![(100, day(5, i64::MAX, 1)), (101, day(0, 0, 0))]);
    let mut huge = AggregateSum::default();
    huge.add_item(&item(&[("c100", "99999999999999999999999999999999999")]), &key, &all);
    assert_eq!(huge.finish(&key).days(), vec![(100, day(u64::MAX, 0, 0))]);
    // Two shards holding days a retention apart: the newer one stands, as in the ring.
    let mut ring = AggregateSum::default();
    ring.add_item(&item(&[("c100", "5")]), &key, &all);
    ring.add_item(&item(&[("c164", "1")]), &key, &all);
    ring.add_item(&item(&[("c100", "5")]), &key, &all);
    assert_eq!(ring.finish(&key).days(), vec![(164, day(1, 0, 0))]);
}

#[test]
fn a_write_repairs_what_its_read_ignored_and_sets_an_unreadable_counter_of_its_own_day() {
    let delta = AggregateDelta {
        day: 100,
        counter: day(1, 250, 0),
    };
    let u = aggregate_update(&delta, &["c5".to_owned(), "a100".to_owned()], 1000);
    // a100 did not read as a number: ADD would fail on it, so it is overwritten.
    assert!(
        u.expression.starts_with("SET #d1 = :d1 ADD #d0 :d0 REMOVE "),
        "{}",
        u.expression
    );
    // Only while it is still not a number: a concurrent decision may have repaired it.
    assert_eq!(u.condition.as_deref(), Some("NOT attribute_type(#d1, :number)"));
    assert_eq!(u.values[":number"], AttributeValue::S("N".into()));
    assert!(aggregate_update(&delta, &["c5".to_owned()], 1000).condition.is_none());
    // The write day's own counters survive the bound on removals.
    let mut many: Vec<String> = (0..150).map(|d| format!("a{d}")).collect();
    many.push("c100".into());
    let w = shard_write(0, many, 100);
    assert_eq!(w.remove.len(), MAX_REMOVALS_FOR_TESTS);
    assert_eq!(w.remove[..2], ["a100", "c100"]);
    let removed: Vec<&String> = u
        .names
        .iter()
        .filter(|(k, _)| k.starts_with("#p"))
        .map(|(_, v)| v)
        .collect();
    assert!(removed.iter().any(|r| *r == "c5"), "{removed:?}");
    assert!(!removed.iter().any(|r| *r == "a100"), "{removed:?}");
    assert_eq!(removed.len(), 3 * PRUNE_DAYS as usize + 1);
}

#[test]
fn cursors_only_resume_their_own_customer_of_their_own_tenant() {
    let t = tenant("acme");
    let k = Keys::new(&t);
    let c1 = CustomerId::parse("c-1").unwrap();
    let id = TransactionId::parse("tx-9").unwrap();
    let at = Timestamp::parse("t", "2018-08-08T10:00:00Z").unwrap();
    let key = k.decision(&id);
    let cursor = Cursor {
        pk: key.pk.clone(),
        sk: key.sk.clone(),
        gsi1pk: k.customer_history(&c1),
        gsi1sk: history_sort_key(&at, &id),
    };
    let raw = cursor.encode();
    assert_eq!(Cursor::decode(&raw, &k, &c1).unwrap(), cursor);
    let other = CustomerId::parse("c-2").unwrap();
    assert!(matches!(Cursor::decode(&raw, &k, &other), Err(StoreError::BadCursor)));
    let t2 = tenant("globex");
    assert!(matches!(
        Cursor::decode(&raw, &Keys::new(&t2), &c1),
        Err(StoreError::BadCursor)
    ));
    for junk in ["", "!!!", "e30", &URL_SAFE_NO_PAD.encode("[1]")] {
        assert!(
            matches!(Cursor::decode(junk, &k, &c1), Err(StoreError::BadCursor)),
            "{junk}"
        );
    }
    let mixed = Cursor {
        gsi1sk: history_sort_key(&at, &TransactionId::parse("tx-8").unwrap()),
        ..cursor
    };
    assert!(matches!(
        Cursor::decode(&mixed.encode(), &k, &c1),
        Err(StoreError::BadCursor)
    ));
}

#[test]
fn key_records_round_trip_and_scopes_are_a_string_set() {
    let rec = KeyRecord {
        key_id: "vk_0123".into(),
        tenant: tenant("acme"),
        scopes: Scope::parse_list("transactions:write,models:read").unwrap(),
        created_at: 10,
        expires_at: Some(20),
        revoked_at: None,
    };
    let key = api_key(&KeyHash("0".repeat(64))).unwrap();
    let item = key_record_item(&key, &rec);
    assert!(matches!(&item["scopes"], AttributeValue::Ss(v) if v.len() == 2));
    assert_eq!(item[TTL_ATTRIBUTE], AttributeValue::N("20".into()));
    assert_eq!(parse_key_record(&item, &key).unwrap(), rec);
    let mut bad = item.clone();
    bad.insert("scopes".into(), AttributeValue::Ss(vec!["admin".into()]));
    assert!(matches!(parse_key_record(&bad, &key), Err(StoreError::Corrupt { .. })));
}

#[test]
fn table_spec_builds_a_create_table_request() {
    assert_eq!(TABLE.hash_key, "pk");
    assert_eq!(TABLE.indexes[0].name, "gsi1");
    assert_eq!(TABLE.ttl_attribute, "expires_at");
    assert_eq!(BillingMode::from(TABLE.billing_mode), BillingMode::PayPerRequest);
    assert_eq!(ProjectionType::from(TABLE.indexes[0].projection), ProjectionType::All);
}
