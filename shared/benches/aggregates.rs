//! `cargo bench -p verdict --bench aggregates`: what sharding adds to a decision's compute, the
//! decode of an entity's aggregate items (64 days each, as a busy terminal's shards hold them)
//! into the summed `EntityAggregate`, at 1, 4, 16 and 32 shards.

use aws_sdk_dynamodb::types::AttributeValue;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::collections::HashMap;
use verdict::adapters::dynamodb::{day_windows, AggregateSum, ItemKey};

fn shard_item(key: &ItemKey, first_day: i32) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
    ]);
    for d in first_day..first_day + 64 {
        item.insert(format!("c{d}"), AttributeValue::N("50017".into()));
        item.insert(format!("a{d}"), AttributeValue::N("236550093".into()));
        item.insert(format!("f{d}"), AttributeValue::N("37".into()));
    }
    item
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate_decode");
    let first = 17_700;
    let valid = day_windows(Some(first + 63), first + 63);
    for shards in [1usize, 4, 16, 32] {
        let keys: Vec<ItemKey> = (0..shards)
            .map(|k| {
                verdict::adapters::dynamodb::Keys::new(&verdict::domain::TenantId::parse("acme").unwrap())
                    .terminal_aggregate_shard(&verdict::domain::TerminalId::parse("term_0042").unwrap(), k as u8)
            })
            .collect();
        let items: Vec<_> = keys.iter().map(|k| shard_item(k, first)).collect();
        group.bench_function(format!("{shards}_shards"), |b| {
            b.iter(|| {
                let mut sum = AggregateSum::default();
                for (item, key) in items.iter().zip(&keys) {
                    black_box(sum.add_item(black_box(item), key, &valid));
                }
                black_box(sum.finish(&keys[0]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
