//! `cargo bench -p verdict`: decision latency at 100 and 300 trees, batch throughput, training time.
//!
//! Besides criterion's timings, each latency group prints p50/p99 over 200,000 single calls,
//! because the budget is a p99.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use verdict::domain::decision::RequestExtras;
use verdict::domain::features::{self, EntityAggregate, FeatureVector, OfflineFeatures};
use verdict::domain::model::train::{train, TrainParams};
use verdict::domain::model::Model;
use verdict::domain::pipeline;
use verdict::domain::policy::{Policy, Thresholds};
use verdict::domain::LabelledTransaction;
use verdict::offline::protocol;
use verdict::offline::sim::{simulate, SimConfig};

struct Fixture {
    rows: Vec<LabelledTransaction>,
    features: Vec<FeatureVector>,
    train_x: Vec<FeatureVector>,
    train_y: Vec<bool>,
}

fn fixture() -> Fixture {
    let rows = simulate(&SimConfig::default(), &mut |_, _| {}).unwrap();
    let mut off = OfflineFeatures::new();
    let features: Vec<_> = rows.iter().map(|r| off.push(&r.tx, r.label)).collect();
    let start = time::macros::date!(2018 - 07 - 25);
    let split = protocol::split(&rows, start, 7, 7, 0);
    let train_x = split.train.iter().map(|&i| features[i]).collect();
    let train_y = split
        .train
        .iter()
        .map(|&i| rows[i].label.is_some_and(|l| l.fraud))
        .collect();
    Fixture {
        rows,
        features,
        train_x,
        train_y,
    }
}

fn model(f: &Fixture, trees: usize) -> Model {
    let params = TrainParams {
        trees,
        ..TrainParams::default()
    };
    Model::seal(train("bench", &f.train_x, &f.train_y, &params, BTreeMap::new()).unwrap()).unwrap()
}

/// Aggregates shaped like a busy customer and terminal: every day of the windows populated.
fn aggregates(day: i32) -> (EntityAggregate, EntityAggregate) {
    let mut c = EntityAggregate::default();
    let mut t = EntityAggregate::default();
    for d in day - 40..=day {
        c.record_transaction(d, 5_000);
        for _ in 0..3 {
            t.record_transaction(d, 4_000);
        }
        if d % 5 == 0 {
            t.record_fraud(d);
        }
    }
    (c, t)
}

fn percentiles(name: &str, mut run: impl FnMut()) {
    const N: usize = 200_000;
    for _ in 0..10_000 {
        run();
    }
    let mut ns = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        run();
        ns.push(t.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    let p = |q: f64| ns[((N - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "{name}: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs over {N} calls",
        p(0.5),
        p(0.99),
        p(0.999)
    );
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let tx = f.rows[f.rows.len() / 2].tx.clone();
    let (cust, term) = aggregates(tx.occurred_at.epoch_day());

    for trees in [100, 300] {
        let m = model(&f, trees);
        let decide = || {
            let x = features::compute(black_box(&tx), black_box(&cust), black_box(&term));
            let s = m.score(&x);
            let r = m.reasons(&x, &s, 3);
            black_box((s.probability, r));
        };
        percentiles(&format!("decision/features+score+reasons/{trees} trees"), decide);
        c.bench_function(&format!("decision/features+score+reasons/{trees}_trees"), |b| {
            b.iter(decide)
        });
    }

    // The one pipeline as the API, batch and the CLI run it: features, score, the model's
    // reasons as records, and the policy (the default thresholds, with its version built).
    let m = model(&f, 300);
    let pipeline = || {
        let x = features::compute(black_box(&tx), black_box(&cust), black_box(&term));
        let policy = Policy::thresholds(Thresholds::default());
        let d = pipeline::decide(&m, &policy, &tx, &RequestExtras::NONE, &x);
        black_box((d, policy.version().len()));
    };
    percentiles(
        "decision/pipeline (features+score+reason records+policy)/300 trees",
        pipeline,
    );

    let m = model(&f, 300);
    let mut g = c.benchmark_group("batch");
    let n = 100_000;
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function("features+score/100k_rows/300_trees", |b| {
        b.iter(|| {
            let mut off = OfflineFeatures::new();
            let mut sum = 0.0;
            for r in &f.rows[..n] {
                let x = off.push(&r.tx, r.label);
                sum += m.probability(&x);
            }
            black_box(sum)
        })
    });
    g.bench_function("score_only/100k_rows/300_trees", |b| {
        b.iter(|| black_box(f.features[..n].iter().map(|x| m.probability(x)).sum::<f64>()))
    });
    g.finish();

    let mut g = c.benchmark_group("train");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    let name = format!(
        "handbook_train_set/{}_rows/{}_trees_default_params",
        f.train_x.len(),
        TrainParams::default().trees
    );
    g.bench_function(name, |b| {
        b.iter_batched(
            || (),
            |_| {
                black_box(
                    train(
                        "bench",
                        &f.train_x,
                        &f.train_y,
                        &TrainParams::default(),
                        BTreeMap::new(),
                    )
                    .unwrap(),
                )
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(model_benches, benches);
criterion_main!(model_benches);
