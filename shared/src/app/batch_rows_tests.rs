//! The scoring loop ([`score_rows`]) and the `stored` source's reads ([`StoredSource`]) over the
//! in-memory aggregates: which entities are read, how often, and what a row is scored on.

use super::*;
use crate::domain::batch::{write_result_header, ResultRow};
use crate::domain::features::{self, EntityAggregate, Feature};
use crate::domain::model::stump_artifact;
use crate::domain::pipeline;
use crate::domain::{CustomerId, TerminalId};
use crate::ports::in_memory::{block_on, InMemoryDecisions};
use std::io::Cursor;

const HEADER: &str = "id,occurred_at,amount,currency,customer_id,terminal_id\n";

/// Splits on the customer's 30-day count, so a row's score shows whether its history was read.
fn model() -> Arc<Model> {
    let mut a = stump_artifact(1.5, -2.0, -0.5, 4.0);
    a.forest.trees[0].nodes[0].feature = Feature::CustomerTxCount30d as u32;
    Arc::new(Model::seal(a).unwrap())
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn tx(id: &str, day: u32, minor: i64, customer: &str, terminal: &str) -> Transaction {
    let text = format!("{HEADER}{id},2018-04-{day:02}T10:00:00Z,{minor},EUR,{customer},{terminal}\n");
    let mut rows = TransactionReader::new("t.csv", Format::Csv, Cursor::new(text.into_bytes()));
    rows.next().unwrap().unwrap().tx
}

fn csv(rows: &[Transaction]) -> Vec<u8> {
    let mut out = HEADER.to_owned();
    for t in rows {
        out.push_str(&format!(
            "{},{},{},EUR,{},{}\n",
            t.id, t.occurred_at, t.amount.minor, t.customer_id, t.terminal_id
        ));
    }
    out.into_bytes()
}

/// c1 and t1 have stored history; nobody else has.
fn store() -> InMemoryDecisions {
    let s = InMemoryDecisions::default();
    for (i, day) in [1, 2, 3].into_iter().enumerate() {
        s.add_to_aggregates(&acme(), &tx(&format!("h{i}"), day, 90_000, "c1", "t1"));
    }
    s
}

fn plan(checkpoint: Checkpoint, chunk: usize, cache: usize) -> ScoringPlan {
    ScoringPlan {
        kind: FileKind {
            format: Format::Csv,
            gzip: false,
        },
        model: model(),
        policy: Policy::default(),
        source: FeatureSource::Stored,
        part_size: 0,
        checkpoint,
        tenant: acme(),
        file_name: "s3://data/batches/incoming/acme/day.csv".into(),
        stored_chunk_rows: chunk,
        aggregate_cache: cache,
    }
}

/// A thread whose reads finish at once (the fake never waits).
#[derive(Default)]
struct Collect {
    flushes: Vec<Flush>,
}

impl ScoringThread for Collect {
    fn send(&mut self, flush: Flush) -> bool {
        self.flushes.push(flush);
        true
    }

    fn cancelled(&self) -> bool {
        false
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        block_on(f)
    }
}

/// Scores `rows` from `checkpoint` in chunks of `chunk` rows; the flushes sent.
fn score(store: &InMemoryDecisions, rows: &[Transaction], checkpoint: Checkpoint, chunk: usize) -> Vec<Flush> {
    let mut thread = Collect::default();
    let body = Cursor::new(csv(rows));
    score_rows(
        plan(checkpoint, chunk, 100),
        body,
        ReadFailure::default(),
        store,
        &mut thread,
    )
    .unwrap();
    thread.flushes
}

fn ids<T: AsRef<str>>(v: &[T]) -> Vec<&str> {
    v.iter().map(AsRef::as_ref).collect()
}

fn reads(store: &InMemoryDecisions) -> Vec<(Vec<String>, Vec<String>)> {
    let s = |v: &[CustomerId]| v.iter().map(|c| c.to_string()).collect();
    let t = |v: &[TerminalId]| v.iter().map(|c| c.to_string()).collect();
    store.aggregate_reads().iter().map(|(c, ts)| (s(c), t(ts))).collect()
}

/// What the API would decide for `t` on the stored aggregates.
fn as_the_api_would(store: &InMemoryDecisions, t: &Transaction) -> ResultRow {
    let c = store.customer_aggregate(&acme(), &t.customer_id);
    let term = store.terminal_aggregate(&acme(), &t.terminal_id);
    let x = features::compute(t, &c, &term);
    let m = model();
    let decided = pipeline::decide(&m, &Policy::default(), t, &Default::default(), &x);
    ResultRow::new(t, &decided, m.version())
}

#[test]
fn stored_rows_read_each_entity_once_and_score_on_what_is_stored() {
    let store = store();
    let rows = [
        tx("a", 10, 150_000, "c1", "t1"),
        tx("b", 10, 2_000, "c2", "t1"),
        tx("c", 11, 150_000, "c1", "t2"),
        tx("d", 11, 150_000, "c3", "t1"),
    ];
    let flushes = score(&store, &rows, Checkpoint::default(), 2);

    // One read per chunk, for the entities not read before.
    let want = vec![
        (vec!["c1".to_owned(), "c2".to_owned()], vec!["t1".to_owned()]),
        (vec!["c3".to_owned()], vec!["t2".to_owned()]),
    ];
    assert_eq!(reads(&store), want);

    let [last] = &flushes[..] else {
        panic!("one flush: {:?}", flushes.len())
    };
    assert!(last.last);
    let got = ResultRow::read_all(Format::Csv, last.results.as_deref().unwrap()).unwrap();
    // c2, c3 and t2 have no item: an empty history, as the API would see it.
    let want: Vec<ResultRow> = rows.iter().map(|t| as_the_api_would(&store, t)).collect();
    assert_eq!(got, want);
    assert_ne!(got[0].score, got[3].score, "c1's history counts, c3 has none");
}

#[test]
fn rows_before_the_checkpoint_are_replayed_without_reading_their_entities() {
    let store = store();
    let rows = [
        tx("a", 10, 150_000, "c8", "t8"),
        tx("b", 10, 2_000, "c9", "t9"),
        tx("c", 11, 150_000, "c1", "t1"),
        tx("d", 11, 150_000, "c9", "t2"),
    ];
    let done = Checkpoint {
        results_rows_done: 2,
        errors_rows_done: 2,
        next_line: 4,
        ..Checkpoint::default()
    };
    // One chunk of three spans the checkpoint.
    let flushes = score(&store, &rows, done, 3);

    let want = vec![
        (vec!["c1".to_owned()], vec!["t1".to_owned()]),
        (vec!["c9".to_owned()], vec!["t2".to_owned()]),
    ];
    assert_eq!(reads(&store), want, "c8, t8 and row b's t9 are never read");
    // A resumed job's results continue the file: no header.
    let mut results = Vec::new();
    write_result_header(Format::Csv, &mut Default::default(), &mut results);
    results.extend_from_slice(flushes.last().unwrap().results.as_deref().unwrap());
    let got = ResultRow::read_all(Format::Csv, &results).unwrap();
    assert_eq!(got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
}

#[test]
fn the_cache_keeps_its_bound_and_a_chunk_after_clearing_still_gets_its_cached_entities() {
    let store = store();
    let tenant = acme();
    let mut stored = StoredSource::new(&store, &tenant, 4, 0);
    let row = |tx: Transaction| -> Row {
        let t = LabelledTransaction {
            tx,
            label: None,
            extras: None,
        };
        (2, Ok(t))
    };
    let mut load = |chunk: Vec<Row>| {
        block_on(stored.load(0, &chunk)).unwrap();
        assert!(stored.cached() <= 4, "{} cached", stored.cached());
        let aggs: Vec<(EntityAggregate, EntityAggregate)> = chunk
            .iter()
            .map(|(_, r)| {
                let a = stored.get(&r.as_ref().unwrap().tx);
                (a.customer.clone(), a.terminal.clone())
            })
            .collect();
        aggs
    };
    load(vec![row(tx("a", 10, 1, "c1", "t1")), row(tx("b", 10, 1, "c2", "t1"))]);
    load(vec![row(tx("c", 10, 1, "c2", "t1"))]);
    assert_eq!(store.aggregate_reads().len(), 1, "cached: not read again");

    // c1 and t1 are cached, c5 and t5 do not fit beside them: the cache is emptied, and the
    // chunk's c1 and t1 are read again with the new ones rather than scored as empty.
    let got = load(vec![row(tx("d", 10, 1, "c1", "t1")), row(tx("e", 10, 1, "c5", "t5"))]);
    let c1 = store.customer_aggregate(&tenant, &CustomerId::parse("c1").unwrap());
    assert_ne!(c1, EntityAggregate::default());
    assert_eq!(got[0].0, c1);
    assert_eq!(
        got[0].1,
        store.terminal_aggregate(&tenant, &TerminalId::parse("t1").unwrap())
    );
    let empty = (EntityAggregate::default(), EntityAggregate::default());
    assert_eq!(got[1], empty, "no history stored for c5, t5");
    let last = reads(&store).pop().unwrap();
    assert_eq!((ids(&last.0), ids(&last.1)), (vec!["c1", "c5"], vec!["t1", "t5"]));
}

#[test]
fn an_object_that_could_not_be_read_to_its_end_sends_no_last_part() {
    let store = store();
    let failure = ReadFailure::default();
    failure.set("connection reset".into());
    let mut thread = Collect::default();
    let body = Cursor::new(csv(&[tx("a", 10, 1, "c1", "t1")]));
    let stop = score_rows(plan(Checkpoint::default(), 2, 100), body, failure, &store, &mut thread).unwrap_err();
    assert!(
        matches!(stop, ScoringStop::Read(ref r) if r == "connection reset"),
        "{stop:?}"
    );
    assert!(thread.flushes.is_empty(), "a truncated file must not complete the job");
}

/// Scores `rows` from the start with `cache` entities cached at most, in chunks of `chunk` rows;
/// the results as written.
fn score_with_cache(store: &InMemoryDecisions, rows: &[Transaction], chunk: usize, cache: usize) -> Vec<ResultRow> {
    let mut thread = Collect::default();
    score_rows(
        plan(Checkpoint::default(), chunk, cache),
        Cursor::new(csv(rows)),
        ReadFailure::default(),
        store,
        &mut thread,
    )
    .unwrap();
    let mut results = Vec::new();
    for f in &thread.flushes {
        results.extend_from_slice(f.results.as_deref().unwrap_or_default());
    }
    ResultRow::read_all(Format::Csv, &results).unwrap()
}

/// 25 customers and 25 terminals, four in five with stored history (1 to 4 earlier
/// transactions). Each customer pays twice in a row and each terminal takes three in a row, so
/// consecutive chunks share entities; then a second pass in a scattered order.
fn many_entities() -> (InMemoryDecisions, Vec<Transaction>) {
    let s = InMemoryDecisions::default();
    for e in 0..25 {
        for h in 0..(e % 5) {
            s.add_to_aggregates(
                &acme(),
                &tx(
                    &format!("h{e}-{h}"),
                    1 + h as u32,
                    40_000,
                    &format!("c{e}"),
                    &format!("t{e}"),
                ),
            );
        }
    }
    let mut rows = Vec::new();
    for i in 0..75 {
        let (c, t) = ((i / 2) % 25, (i / 3) % 25);
        rows.push(tx(&format!("a{i}"), 10, 150_000, &format!("c{c}"), &format!("t{t}")));
    }
    for i in 0..25 {
        let e = (i * 7 + 3) % 25;
        rows.push(tx(
            &format!("b{i}"),
            11,
            150_000,
            &format!("c{e}"),
            &format!("t{}", (e + 11) % 25),
        ));
    }
    (s, rows)
}

#[test]
fn more_entities_than_the_cache_holds_are_each_scored_on_their_stored_history() {
    let (store, rows) = many_entities();
    let want: Vec<ResultRow> = rows.iter().map(|t| as_the_api_would(&store, t)).collect();
    assert!(
        want.iter()
            .map(|r| r.score.to_bits())
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1,
        "the model must tell histories apart for this test to mean anything"
    );
    // Chunks smaller than the bound, one that fills it exactly, and one larger than the bound
    // (it is read whole and cached alone, over the bound, until the next chunk).
    for (chunk, cache) in [(3, 10), (4, 10), (5, 10), (7, 10), (10, 20), (30, 10), (100, 10)] {
        let got = score_with_cache(&store, &rows, chunk, cache);
        assert_eq!(got, want, "chunk {chunk}, cache {cache}");
    }
}
