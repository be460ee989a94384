//! One busy terminal, 16 concurrent clients, no injected faults: how often decisions' transactions
//! collide on the terminal's aggregate, by shard count.
//!
//! moto applies requests one at a time, so it never produces a `TransactionConflict`. The fault
//! proxy (`tests/fault_proxy.py`, `simulate_conflicts`) holds each TransactWriteItems for a few
//! milliseconds while it claims the items it touches, and cancels any other transaction that
//! touches one of them meanwhile, as DynamoDB does. Every decision here has its own customer, so
//! the only shared items are the terminal's shards. Prints the table the README quotes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use verdict::adapters::DynamoStore;
use verdict::domain::auth::{ApiKey, KeyHash, KeyRecord, Scope};
use verdict::domain::features::transaction_delta;
use verdict::domain::shards::ShardCount;
use verdict::domain::{TenantId, TerminalId, TransactionId};
use verdict::ports::contract::decisions::{record, tx};
use verdict::ports::{CommitOutcome, DecisionCommit, DecisionStore};
use verdict_integration::faults::Proxy;
use verdict_integration::Stack;

const CLIENTS: usize = 16;
const DECISIONS_PER_CLIENT: usize = 15;
/// How long the proxy holds a transaction's items: DynamoDB's write window, roughly.
const HOLD_MS: u64 = 10;

struct Run {
    shards: u8,
    decisions: usize,
    attempts: u64,
    conflicts: u64,
    gave_up: usize,
    seconds: f64,
}

async fn run(proxy: &Proxy, shards: u8) -> Run {
    let st = Stack::new().await;
    let tenant = TenantId::parse(&format!("busy-{shards}")).unwrap();
    let api = ApiKey::generate();
    st.store
        .put_key(
            &api.hash(),
            &KeyRecord {
                key_id: api.key_id(),
                tenant: tenant.clone(),
                scopes: Scope::parse_list("transactions:write").unwrap(),
                created_at: 1_700_000_000,
                expires_at: None,
                revoked_at: None,
            },
        )
        .await
        .unwrap();
    let terminal = TerminalId::parse("merchant-1").unwrap();
    let count = ShardCount::new(shards as u64).unwrap();
    st.store
        .change_aggregate_shards(&tenant, |l| l.set_terminal(&terminal, count))
        .await
        .unwrap();
    let faulted = proxy.clients(&st).await;
    proxy.reset_stats();
    let gave_up = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let store: DynamoStore = faulted.store.clone();
        let tenant = tenant.clone();
        let key: KeyHash = api.hash();
        let gave_up = gave_up.clone();
        clients.push(tokio::spawn(async move {
            for i in 0..DECISIONS_PER_CLIENT {
                let mut t = tx(
                    &format!("tx-{c}-{i}"),
                    "2018-08-08T10:00:00Z",
                    1_000,
                    &format!("cust-{c}-{i}"),
                );
                t.terminal_id = TerminalId::parse("merchant-1").unwrap();
                let snap = store.load_for_scoring(&tenant, Some(&key), &t, None).await.unwrap();
                let r = record(&t, "fp");
                let commit = DecisionCommit {
                    record: &r,
                    transaction: &t,
                    idempotency_key: None,
                    delta: transaction_delta(&t),
                    aggregates: &snap.aggregate_write,
                };
                match store.commit(&tenant, &commit).await {
                    Ok(CommitOutcome::Committed) => {}
                    Ok(other) => panic!("{}: {other:?}", t.id),
                    // Five conflicting attempts: the api answers 503 and the client retries.
                    Err(e) if e.is_retryable() => {
                        gave_up.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("{}: {e}", t.id),
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = proxy.stats();
    let op = &stats["stats"]["ops"]["TransactWriteItems"];
    let attempts = op["requests"].as_u64().unwrap_or(0);
    let conflicts = op["faults"]["conflict"].as_u64().unwrap_or(0) + op["conflicts"].as_u64().unwrap_or(0);
    let decisions = CLIENTS * DECISIONS_PER_CLIENT;
    let gave_up = gave_up.load(Ordering::Relaxed);
    // What was committed is counted once, whatever the shard count. A give-up is an error the
    // client saw, not proof of nothing stored: an attempt that timed out after it was applied
    // is stored (the client's retry would replay it), so count what the store holds.
    let mut stored = 0;
    for c in 0..CLIENTS {
        for i in 0..DECISIONS_PER_CLIENT {
            let id = TransactionId::parse(&format!("tx-{c}-{i}")).unwrap();
            stored += st.store.decision(&tenant, &id).await.unwrap().is_some() as usize;
        }
    }
    assert!(
        stored >= decisions - gave_up,
        "{shards} shards: {stored} stored, {gave_up} gave up"
    );
    let agg = st.store.terminal_aggregate(&tenant, &terminal).await.unwrap();
    let day = tx("x", "2018-08-08T10:00:00Z", 1, "c").occurred_at.epoch_day();
    assert_eq!(agg.window(day, day).count as usize, stored, "{shards} shards");
    Run {
        shards,
        decisions,
        attempts,
        conflicts,
        gave_up,
        seconds,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicts_on_a_busy_terminal_fall_as_its_shards_rise() {
    let proxy = Proxy::start();
    proxy.configure(serde_json::json!({"simulate_conflicts": true, "hold_ms": HOLD_MS, "rates": {}}));
    let mut runs = Vec::new();
    for shards in [1u8, 2, 4, 8, 16, 32] {
        runs.push(run(&proxy, shards).await);
    }
    println!(
        "{CLIENTS} clients, one terminal, {} decisions per run, transactions held {HOLD_MS} ms:",
        CLIENTS * DECISIONS_PER_CLIENT
    );
    println!("shards  attempts/decision  conflict rate  gave up (503)  decisions/s");
    for r in &runs {
        println!(
            "{:>6}  {:>17.2}  {:>12.1}%  {:>13}  {:>11.0}",
            r.shards,
            r.attempts as f64 / r.decisions as f64,
            100.0 * r.conflicts as f64 / r.attempts.max(1) as f64,
            r.gave_up,
            r.decisions as f64 / r.seconds
        );
    }
    let rate = |r: &Run| r.conflicts as f64 / r.attempts.max(1) as f64;
    let one = runs.iter().find(|r| r.shards == 1).unwrap();
    let sixteen = runs.iter().find(|r| r.shards == 16).unwrap();
    assert!(
        one.conflicts > 0,
        "no conflict at one shard: the simulation saw no contention"
    );
    assert!(
        rate(sixteen) < rate(one) / 2.0,
        "16 shards: {:.3} vs 1 shard: {:.3}",
        rate(sixteen),
        rate(one)
    );
    assert!(sixteen.gave_up <= one.gave_up);
}
