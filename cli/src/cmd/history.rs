//! `verdict history load`: folds a labelled transaction file (a simulation) into a tenant's
//! per-customer and per-terminal aggregates, with the fraud labels it would have received by
//! then, so that the first transactions scored afterwards see real velocity and terminal risk
//! instead of cold-start values. `make dev` and `make demo` run it before scoring.
//!
//! - The aggregates are folded in memory by the domain's `EntityAggregate` (what decisions read)
//!   and written through the store's `AggregateSeeding` port, in the form decisions' commits and
//!   the labels path keep them: one item per entity, BatchWriteItems of 25.
//! - "By then" is the time of the first transaction left out (`--leave-last N`: the ones
//!   `verdict load --count N` scores). A fraud label counts when its transaction's day is at least
//!   `--label-delay-days` (7, the handbook protocol's delay) before that day: the day-bucket form
//!   of the delay the terminal features read with, so the online features of the scored
//!   transactions are the offline ones (`verdict features`) of the same file.
//! - For a table without live traffic of these entities: it refuses to write over aggregates that
//!   exist unless `--replace` (which replaces their shard 0; loading the same file again is
//!   the same state).

use super::aws::{block_on, parse_tenant, store_error, Aws};
use super::progress;
use anyhow::Context;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;
use verdict::adapters::DynamoStore;
use verdict::domain::features::{transaction_delta, EntityAggregate, LABEL_DELAY_DAYS};
use verdict::domain::io::TransactionReader;
use verdict::domain::{CustomerId, LabelledTransaction, TerminalId, Timestamp};
use verdict::ports::{AggregateReads, AggregateSeeding};

/// The most transactions `--leave-last` holds back (they are kept in memory).
pub const MAX_LEAVE_LAST: usize = 1_000_000;
/// Entities per store call: the progress bar moves between calls.
const ENTITIES_PER_CALL: usize = 1_000;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Fold a labelled transaction file into the tenant's customer and terminal aggregates
    Load(LoadArgs),
}

#[derive(clap::Args)]
struct LoadArgs {
    /// The tenant whose aggregates are written
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// DynamoDB table
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
    /// The history: a labelled transaction file (.csv or .ndjson, optionally .gz) in time order,
    /// as `verdict simulate` writes it
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Leave the file's last N transactions out: the ones `verdict load --count N` scores next
    #[arg(long, value_name = "N", default_value_t = 0)]
    leave_last: usize,
    /// Days after its transaction's day before a fraud label is known
    #[arg(long, value_name = "DAYS", default_value_t = LABEL_DELAY_DAYS)]
    label_delay_days: i32,
    /// Write even where a customer or terminal already has an aggregate (its shard 0 is replaced)
    #[arg(long)]
    replace: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.command {
        Command::Load(a) => load(a),
    }
}

/// A history folded into aggregates, and what the fold counted.
#[derive(Debug, Default)]
pub struct History {
    pub customers: HashMap<CustomerId, EntityAggregate>,
    pub terminals: HashMap<TerminalId, EntityAggregate>,
    pub transactions: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// The time labels are known as of: the first left-out transaction's, else the last one's.
    pub as_of: Option<Timestamp>,
    /// Frauds whose label had arrived by `as_of` (counted), and those still to arrive (not).
    pub frauds_known: u64,
    pub frauds_pending: u64,
    /// Transactions left out, and the first of them.
    pub left_out: usize,
}

/// Folds `rows` (in time order) except the last `leave_last` into aggregates: every transaction
/// counted on its day, a fraud label only if its day is `label_delay_days` or more before the
/// day of `as_of`.
pub fn fold(
    rows: impl IntoIterator<Item = anyhow::Result<LabelledTransaction>>,
    leave_last: usize,
    label_delay_days: i32,
) -> anyhow::Result<History> {
    let mut h = History::default();
    let mut held: VecDeque<LabelledTransaction> = VecDeque::with_capacity(leave_last.min(MAX_LEAVE_LAST));
    // Frauds wait until `as_of` is known: (day, customer, terminal).
    let mut frauds: Vec<(i32, CustomerId, TerminalId)> = Vec::new();
    let mut count = |h: &mut History, row: LabelledTransaction| {
        let tx = row.tx;
        if let Some(last) = h.last {
            anyhow::ensure!(
                tx.occurred_at >= last,
                "transaction {} ({}) is earlier than one before it ({}): the history must be in time order",
                tx.id,
                tx.occurred_at.to_rfc3339(),
                last.to_rfc3339()
            );
        }
        h.first.get_or_insert(tx.occurred_at);
        h.last = Some(tx.occurred_at);
        h.transactions += 1;
        let d = transaction_delta(&tx);
        h.customers
            .entry(tx.customer_id.clone())
            .or_default()
            .add(d.day, &d.counter);
        h.terminals
            .entry(tx.terminal_id.clone())
            .or_default()
            .add(d.day, &d.counter);
        if row.label.is_some_and(|l| l.fraud) {
            frauds.push((d.day, tx.customer_id, tx.terminal_id));
        }
        Ok(())
    };
    for row in rows {
        held.push_back(row?);
        if held.len() > leave_last {
            if let Some(row) = held.pop_front() {
                count(&mut h, row)?;
            }
        }
    }
    h.left_out = held.len();
    h.as_of = match held.front() {
        Some(first_left_out) => {
            let at = first_left_out.tx.occurred_at;
            if let Some(last) = h.last {
                anyhow::ensure!(
                    at >= last,
                    "transaction {} ({}) is earlier than the history before it ({}): the file must be in time order",
                    first_left_out.tx.id,
                    at.to_rfc3339(),
                    last.to_rfc3339()
                );
            }
            Some(at)
        }
        None => h.last,
    };
    if let Some(as_of) = h.as_of {
        let known_through = as_of.epoch_day() - label_delay_days;
        for (day, customer, terminal) in frauds {
            if day > known_through {
                h.frauds_pending += 1;
                continue;
            }
            h.frauds_known += 1;
            // Both counters, as the labels path moves them.
            for agg in [h.customers.get_mut(&customer), h.terminals.get_mut(&terminal)]
                .into_iter()
                .flatten()
            {
                agg.record_fraud(day);
            }
        }
    }
    Ok(h)
}

fn load(a: LoadArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let tenant = parse_tenant(&a.tenant)?;
    anyhow::ensure!(
        a.leave_last <= MAX_LEAVE_LAST,
        "--leave-last {}: at most {MAX_LEAVE_LAST}",
        a.leave_last
    );
    anyhow::ensure!(
        (0..=366).contains(&a.label_delay_days),
        "--label-delay-days {}: must be 0 to 366",
        a.label_delay_days
    );

    let bar = progress::counter("folding");
    let rows = TransactionReader::open(&a.data)?.map(|row| {
        bar.inc(1);
        row.map_err(anyhow::Error::from)
    });
    let h =
        fold(rows, a.leave_last, a.label_delay_days).with_context(|| format!("cannot fold {}", a.data.display()))?;
    bar.finish_and_clear();
    anyhow::ensure!(
        h.transactions > 0,
        "{} holds no transactions before the last {} left out",
        a.data.display(),
        a.leave_last
    );
    let customers: Vec<(CustomerId, EntityAggregate)> = h.customers.into_iter().collect();
    let terminals: Vec<(TerminalId, EntityAggregate)> = h.terminals.into_iter().collect();

    block_on(async {
        let aws = Aws::from_env().await;
        let err = |e| store_error(&aws.target, e);
        aws.require_table(&a.table).await?;
        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        let bar = progress::bar("checking");
        bar.set_length((customers.len() + terminals.len()) as u64);
        if !a.replace {
            let mut existing = 0usize;
            for chunk in customers.chunks(ENTITIES_PER_CALL) {
                let ids: Vec<CustomerId> = chunk.iter().map(|(c, _)| c.clone()).collect();
                existing += store.aggregates(&tenant, &ids, &[]).await.map_err(err)?.customers.len();
                bar.inc(chunk.len() as u64);
            }
            for chunk in terminals.chunks(ENTITIES_PER_CALL) {
                let ids: Vec<TerminalId> = chunk.iter().map(|(t, _)| t.clone()).collect();
                existing += store.aggregates(&tenant, &[], &ids).await.map_err(err)?.terminals.len();
                bar.inc(chunk.len() as u64);
            }
            if existing > 0 {
                bar.finish_and_clear();
                anyhow::bail!(
                    "{existing} of these customers and terminals already have aggregates for tenant {tenant} in \
                     table {}: loading would replace their counts (decisions' and labels' too). Give --replace \
                     to do so anyway",
                    a.table
                );
            }
        }
        progress::phase(&bar, "writing", (customers.len() + terminals.len()) as u64);
        for chunk in customers.chunks(ENTITIES_PER_CALL) {
            store.seed_aggregates(&tenant, chunk, &[]).await.map_err(err)?;
            bar.inc(chunk.len() as u64);
        }
        for chunk in terminals.chunks(ENTITIES_PER_CALL) {
            store.seed_aggregates(&tenant, &[], chunk).await.map_err(err)?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        anyhow::Ok(())
    })??;

    let at = |t: Option<Timestamp>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    println!(
        "history: {} transactions ({} to {}) folded into {} customers' and {} terminals' aggregates of tenant {} in {}",
        h.transactions,
        at(h.first),
        at(h.last),
        customers.len(),
        terminals.len(),
        tenant,
        a.table
    );
    println!(
        "labels as of {}: {} frauds counted (days up to {} before), {} not yet known; {} transactions left out for scoring; {:.1} s",
        at(h.as_of),
        h.frauds_known,
        if a.label_delay_days == 1 {
            "1 day".to_owned()
        } else {
            format!("{} days", a.label_delay_days)
        },
        h.frauds_pending,
        h.left_out,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use verdict::domain::features::{compute, OfflineFeatures};
    use verdict::domain::{Currency, Label, Money, Transaction, TransactionId};

    fn row(id: &str, at: &str, cents: i64, customer: &str, terminal: &str, fraud: bool) -> LabelledTransaction {
        LabelledTransaction {
            tx: Transaction {
                id: TransactionId::parse(id).unwrap(),
                occurred_at: Timestamp::parse("occurred_at", at).unwrap(),
                amount: Money::new(cents, Currency::EUR).unwrap(),
                customer_id: CustomerId::parse(customer).unwrap(),
                terminal_id: TerminalId::parse(terminal).unwrap(),
            },
            label: Some(Label {
                fraud,
                scenario: if fraud { 2 } else { 0 },
            }),
            extras: None,
        }
    }

    fn history() -> Vec<LabelledTransaction> {
        vec![
            row("a", "2018-04-01T10:00:00Z", 1_000, "c1", "t1", true),
            row("b", "2018-04-02T10:00:00Z", 2_000, "c2", "t1", false),
            row("c", "2018-04-09T10:00:00Z", 3_000, "c1", "t1", true),
            row("d", "2018-04-10T09:00:00Z", 4_000, "c1", "t2", false),
            // Left out: scored next.
            row("e", "2018-04-10T10:00:00Z", 5_000, "c1", "t1", false),
            row("f", "2018-04-10T11:00:00Z", 6_000, "c2", "t1", true),
        ]
    }

    #[test]
    fn the_fold_leaves_out_the_last_rows_and_counts_only_labels_known_by_then() {
        let h = fold(history().into_iter().map(Ok), 2, LABEL_DELAY_DAYS).unwrap();
        assert_eq!(h.transactions, 4);
        assert_eq!(h.left_out, 2);
        assert_eq!(h.as_of.unwrap().to_rfc3339(), "2018-04-10T10:00:00Z");
        // Day 0's fraud is 9 days old by then; day 8's (2018-04-09) is 1 day old: not known.
        assert_eq!((h.frauds_known, h.frauds_pending), (1, 1));
        let c1 = &h.customers[&CustomerId::parse("c1").unwrap()];
        let t1 = &h.terminals[&TerminalId::parse("t1").unwrap()];
        let day0 = Timestamp::parse("x", "2018-04-01T00:00:00Z").unwrap().epoch_day();
        assert_eq!(c1.window(day0, day0 + 30).count, 3);
        assert_eq!(c1.window(day0, day0 + 30).frauds, 1);
        assert_eq!(t1.window(day0, day0 + 30).count, 3);
        assert_eq!(t1.window(day0, day0 + 30).frauds, 1);
        assert_eq!(
            t1.window(day0 + 8, day0 + 8).frauds,
            0,
            "the recent fraud is not yet labelled"
        );
    }

    #[test]
    fn the_left_out_transactions_get_the_features_the_offline_path_computes() {
        let rows = history();
        let h = fold(rows.clone().into_iter().map(Ok), 2, LABEL_DELAY_DAYS).unwrap();
        let mut offline = OfflineFeatures::new();
        for r in &rows[..4] {
            offline.push(&r.tx, r.label);
        }
        let e = &rows[4].tx;
        let online = compute(e, &h.customers[&e.customer_id], &h.terminals[&e.terminal_id]);
        assert_eq!(online, offline.push(e, rows[4].label));
    }

    #[test]
    fn a_history_out_of_time_order_is_refused() {
        let mut rows = history();
        rows.swap(1, 2);
        let e = fold(rows.into_iter().map(Ok), 0, LABEL_DELAY_DAYS).unwrap_err();
        assert!(e.to_string().contains("time order"), "{e}");
        let mut rows = history();
        rows.swap(3, 4);
        rows[4].tx.occurred_at = Timestamp::parse("x", "2018-04-10T08:00:00Z").unwrap();
        let e = fold(rows.into_iter().map(Ok), 2, LABEL_DELAY_DAYS).unwrap_err();
        assert!(e.to_string().contains("time order"), "{e}");
    }

    #[test]
    fn without_leaving_anything_out_labels_are_known_as_of_the_last_transaction() {
        let h = fold(history().into_iter().map(Ok), 0, LABEL_DELAY_DAYS).unwrap();
        assert_eq!(h.transactions, 6);
        assert_eq!(h.as_of.unwrap().to_rfc3339(), "2018-04-10T11:00:00Z");
        assert_eq!((h.frauds_known, h.frauds_pending), (1, 2));
    }
}
