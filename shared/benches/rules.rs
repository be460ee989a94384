//! `cargo bench -p verdict --bench rules`: what a ruleset adds to a decision.
//!
//! 50 rules, 3 of them `in_list` lookups on 100,000-entry lists (ip with CIDR ranges, email,
//! customer id), the rest comparisons over tx, features and the score. Every rule is evaluated
//! (ALL_MATCHED), the most work a ruleset of that size does. Besides criterion's timings it prints
//! p50/p99/p99.9 over 100,000 single decisions, because the budget (10 µs) is a p99.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};
use verdict::domain::decision::RequestExtras;
use verdict::domain::features::{FeatureVector, FEATURE_COUNT};
use verdict::domain::policy::{Input, Policy, Thresholds};
use verdict::domain::rules::bench_fixture::{email_entries, ip_entries, lists, ruleset};
use verdict::domain::rules::engine::CompiledRuleset;
use verdict::domain::rules::lists::{ListIndex, ListLookup};
use verdict::domain::rules::ListKind;
use verdict::domain::{Currency, CustomerId, ListName, Money, TerminalId, Timestamp, Transaction, TransactionId};

struct Case {
    tx: Transaction,
    extras: RequestExtras,
    features: FeatureVector,
    score: f64,
}

impl Case {
    fn input(&self) -> Input<'_> {
        Input {
            transaction: &self.tx,
            extras: &self.extras,
            features: &self.features,
            score: self.score,
            model_version: "m-1",
        }
    }
}

/// Transactions with every optional field, about half of them in each list.
fn cases(n: usize) -> Vec<Case> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let mut f = [0.0; FEATURE_COUNT];
            for v in &mut f {
                *v = rng.gen_range(0.0..3.0);
            }
            let ip = if rng.gen_bool(0.5) {
                format!(
                    "{}.{}.{}.{}",
                    11 + rng.gen_range(0..200),
                    rng.gen::<u8>(),
                    rng.gen::<u8>(),
                    rng.gen::<u8>()
                )
            } else {
                format!("2001:db8:{:x}::{:x}", rng.gen::<u16>(), rng.gen::<u16>())
            };
            Case {
                tx: Transaction {
                    id: TransactionId::parse(&format!("tx-{i}")).unwrap(),
                    occurred_at: Timestamp::from_unix(1_767_225_600 + rng.gen_range(0..86_400 * 30)).unwrap(),
                    amount: Money::new(rng.gen_range(100..500_000), Currency::EUR).unwrap(),
                    customer_id: CustomerId::parse(&format!("c-{}", rng.gen_range(0..200_000))).unwrap(),
                    terminal_id: TerminalId::parse(&format!("t-{}", rng.gen_range(0..10_000))).unwrap(),
                },
                extras: RequestExtras {
                    ip: Some(ip),
                    email: Some(format!(
                        "User{}@Example{}.com",
                        rng.gen_range(0..200_000),
                        rng.gen_range(0..100)
                    )),
                    device_id: Some(format!("d-{}", rng.gen::<u32>())),
                    country: Some(["FR", "DE", "NG", "US"][rng.gen_range(0..4)].into()),
                    metadata: [("channel".to_owned(), ["web", "app"][rng.gen_range(0..2)].to_owned())]
                        .into_iter()
                        .collect(),
                },
                features: FeatureVector(f),
                score: rng.gen_range(0.0..1.0),
            }
        })
        .collect()
}

/// p50/p99/p99.9 of `f` over `n` single calls, each timed on its own.
fn percentiles(label: &str, n: usize, mut f: impl FnMut(usize)) {
    for i in 0..n / 10 {
        f(i);
    }
    let mut t: Vec<Duration> = (0..n)
        .map(|i| {
            let start = Instant::now();
            f(i);
            start.elapsed()
        })
        .collect();
    t.sort();
    let at = |q: f64| t[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "{label}: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}  (n = {n}, each timed with Instant)",
        at(0.5),
        at(0.99),
        at(0.999),
        t[n - 1]
    );
}

fn bench(c: &mut Criterion) {
    let lists = Arc::new(lists());
    let compiled = Arc::new(CompiledRuleset::compile(&ruleset()).unwrap());
    let cases = cases(4_096);
    let thresholds = Thresholds::default();
    let with_rules = Policy::with_rules(thresholds, Arc::clone(&compiled), lists.clone() as Arc<dyn ListLookup>);
    let plain = Policy::thresholds(thresholds);
    let hits: usize = cases
        .iter()
        .map(|c| with_rules.evaluate(&c.input()).rules.unwrap().hits.len())
        .sum();
    println!(
        "rules: 50 rules ({} on cel's interpreter), {:.1} hits per decision on average",
        compiled.interpreted(),
        hits as f64 / cases.len() as f64
    );

    let mut g = c.benchmark_group("rules");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    let mut i = 0;
    g.bench_function("policy_50_rules_3_lists", |b| {
        b.iter(|| {
            i = (i + 1) % cases.len();
            black_box(with_rules.evaluate(&cases[i].input()))
        })
    });
    g.bench_function("policy_thresholds_only", |b| {
        b.iter(|| {
            i = (i + 1) % cases.len();
            black_box(plain.evaluate(&cases[i].input()))
        })
    });
    let ip = &lists[&ListName::parse("bad_ips").unwrap()];
    let email = &lists[&ListName::parse("bad_emails").unwrap()];
    let customer = &lists[&ListName::parse("bad_customers").unwrap()];
    g.bench_function("lookup_ip_100k", |b| {
        b.iter(|| {
            i = (i + 1) % cases.len();
            let c = &cases[i];
            black_box(ip.contains(c.extras.ip.as_deref().unwrap(), c.tx.occurred_at))
        })
    });
    g.bench_function("lookup_email_100k", |b| {
        b.iter(|| {
            i = (i + 1) % cases.len();
            let c = &cases[i];
            black_box(email.contains(c.extras.email.as_deref().unwrap(), c.tx.occurred_at))
        })
    });
    g.bench_function("lookup_customer_100k", |b| {
        b.iter(|| {
            i = (i + 1) % cases.len();
            let c = &cases[i];
            black_box(customer.contains(c.tx.customer_id.as_str(), c.tx.occurred_at))
        })
    });
    g.bench_function("compile_50_rules", |b| {
        b.iter(|| black_box(CompiledRuleset::compile(&ruleset()).unwrap()))
    });
    g.finish();

    let mut g = c.benchmark_group("rules_build");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    let (ips, emails) = (ip_entries(), email_entries());
    g.bench_function("index_100k_ip", |b| {
        b.iter(|| black_box(ListIndex::build(ListKind::Ip, &ips)))
    });
    g.bench_function("index_100k_email", |b| {
        b.iter(|| black_box(ListIndex::build(ListKind::Email, &emails)))
    });
    g.finish();

    percentiles("rules: policy with 50 rules, 3 lists", 100_000, |i| {
        black_box(with_rules.evaluate(&cases[i % cases.len()].input()));
    });
    percentiles("rules: policy, thresholds only", 100_000, |i| {
        black_box(plain.evaluate(&cases[i % cases.len()].input()));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
