//! The simulator (determinism, faithfulness to the handbook) and the transaction files it writes.

use std::collections::HashMap;
use std::path::PathBuf;
use verdict::domain::io::{read_all, sort_by_time, write_all, FileError, TransactionReader, TransactionWriter};
use verdict::domain::{
    Currency, CustomerId, Label, LabelledTransaction, Money, TerminalId, Timestamp, Transaction, TransactionId,
};
use verdict::offline::sim::{parse_date, simulate, SimConfig, Simulation};

/// A fresh directory for one test's files.
fn dir(test: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-tests").join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small(seed: u64) -> SimConfig {
    SimConfig {
        customers: 200,
        terminals: 400,
        days: 20,
        seed,
        ..SimConfig::default()
    }
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

// --- Determinism -------------------------------------------------------------------------------

#[test]
fn same_seed_gives_byte_identical_csv_and_ndjson_and_another_seed_differs() {
    let d = dir("determinism");
    let write = |name: &str, seed: u64| -> Vec<u8> {
        let txs = simulate(&small(seed), &mut no_progress()).unwrap();
        let path = d.join(name);
        write_all(&path, &txs, &mut no_progress()).unwrap();
        std::fs::read(path).unwrap()
    };
    let (csv_a, csv_b, csv_c) = (write("a.csv", 7), write("b.csv", 7), write("c.csv", 8));
    let (json_a, json_b, json_c) = (write("a.ndjson", 7), write("b.ndjson", 7), write("c.ndjson", 8));
    assert!(csv_a.len() > 100_000, "{} bytes", csv_a.len());
    assert!(csv_a == csv_b, "same seed, different CSV");
    assert!(json_a == json_b, "same seed, different NDJSON");
    assert!(csv_a != csv_c, "another seed, same CSV");
    assert!(json_a != json_c, "another seed, same NDJSON");
}

#[test]
fn streaming_simulation_equals_simulate_and_summary_counts_it() {
    let cfg = small(3);
    let sim = Simulation::run(&cfg, &mut no_progress()).unwrap();
    let streamed: Vec<LabelledTransaction> = sim.iter().collect();
    let txs = simulate(&cfg, &mut no_progress()).unwrap();
    assert_eq!(streamed, txs);
    let s = sim.summary();
    assert_eq!(s.transactions, txs.len() as u64);
    assert_eq!(s.frauds, txs.iter().filter(|t| t.label.unwrap().fraud).count() as u64);
    for k in 1..=3u8 {
        assert_eq!(
            s.by_scenario[k as usize],
            txs.iter().filter(|t| t.label.unwrap().scenario == k).count() as u64
        );
    }
}

// --- Faithfulness ------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    n: f64,
    sum: f64,
    sum_sq: f64,
}

impl Stats {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        self.sum += x;
        self.sum_sq += x * x;
    }
    fn mean(&self) -> f64 {
        self.sum / self.n
    }
    fn sd(&self) -> f64 {
        (self.sum_sq / self.n - self.mean().powi(2)).sqrt()
    }
}

#[test]
fn mid_size_run_is_faithful_to_the_handbook() {
    let cfg = SimConfig {
        customers: 1000,
        terminals: 2000,
        days: 60,
        seed: 11,
        ..SimConfig::default()
    };
    let txs = simulate(&cfg, &mut no_progress()).unwrap();
    let start = cfg.start.midnight().assume_utc().unix_timestamp();

    // Volume: U(0,4) a day is 2 on average; N(noon, 20000 s) stays inside the day 96.9% of the
    // time; with 2000 terminals every customer has some in reach (about 15.7 on average).
    let expected = 1000.0 * 60.0 * 2.0 * 0.969;
    let n = txs.len() as f64;
    println!("transactions: {n} (expected about {expected})");
    assert!((0.93 * expected..1.07 * expected).contains(&n), "{n} transactions");

    // Sorted, numbered in order, every time strictly inside its simulated day.
    let mut time_of_day = Stats::default();
    for (i, t) in txs.iter().enumerate() {
        assert_eq!(t.tx.id.as_str(), format!("tx-{:08}", i + 1));
        let s = t.tx.occurred_at.unix() - start;
        assert!((0..60 * 86_400).contains(&s), "{} outside the run", t.tx.occurred_at);
        assert_ne!(s % 86_400, 0, "a handbook time is never exactly midnight");
        time_of_day.push((s % 86_400) as f64);
        assert_eq!(t.tx.amount.currency, Currency::EUR);
    }
    assert!(
        txs.windows(2).all(|w| w[0].tx.occurred_at <= w[1].tx.occurred_at),
        "not sorted by time"
    );
    // A normal(43200, 20000) cut at 0 and 86400 keeps its mean and has sd 0.91 · 20000.
    println!(
        "time of day: mean {:.0} s, sd {:.0} s",
        time_of_day.mean(),
        time_of_day.sd()
    );
    assert!((time_of_day.mean() - 43_200.0).abs() < 400.0);
    assert!((17_600.0..18_800.0).contains(&time_of_day.sd()));

    // Legitimate amounts: per customer the mean is in U(5,100) and sd/mean is 1/2.
    let mut legit: HashMap<&str, Stats> = HashMap::new();
    for t in txs.iter().filter(|t| !t.label.unwrap().fraud) {
        legit
            .entry(t.tx.customer_id.as_str())
            .or_default()
            .push(t.tx.amount.major());
    }
    let mut cv = Stats::default();
    for s in legit.values().filter(|s| s.n >= 50.0) {
        assert!((3.0..110.0).contains(&s.mean()), "customer mean amount {}", s.mean());
        cv.push(s.sd() / s.mean());
    }
    println!("customers with >= 50 legit tx: {}, mean sd/mean {:.3}", cv.n, cv.mean());
    assert!(cv.n > 500.0);
    // Not 1/2: redrawing negative amounts from U(0, 2·mean) cuts the left tail at -2 sd, which
    // takes sd/mean to about 0.467; amounts above 220 (fraud, left out here) take a bit more.
    assert!((0.44..0.48).contains(&cv.mean()), "sd/mean {}", cv.mean());

    // Labels.
    let mut by_scenario = [0usize; 4];
    let mut s3_ratio = Stats::default();
    for t in &txs {
        let l = t.label.expect("the simulator labels every transaction");
        assert_eq!(l.fraud, l.scenario != 0, "{l:?}");
        by_scenario[l.scenario as usize] += 1;
        if t.tx.amount.minor > 22_000 {
            assert!(
                l.fraud,
                "{} has amount {} but is not fraud",
                t.tx.id,
                t.tx.amount.major()
            );
        }
        match l.scenario {
            1 => assert!(t.tx.amount.minor > 22_000),
            3 => {
                assert_eq!(t.tx.amount.minor % 5, 0, "scenario 3 multiplies by 5");
                if let Some(s) = legit.get(t.tx.customer_id.as_str()).filter(|s| s.n >= 20.0) {
                    s3_ratio.push(t.tx.amount.major() / s.mean());
                }
            }
            _ => {}
        }
    }
    let frauds = by_scenario[1] + by_scenario[2] + by_scenario[3];
    let rate = frauds as f64 / n;
    println!(
        "frauds {frauds} ({:.3}%), by scenario {by_scenario:?}, s3 amount / customer mean {:.2}",
        100.0 * rate,
        s3_ratio.mean()
    );
    assert!(by_scenario[1] >= 10, "scenario 1: {}", by_scenario[1]);
    // Scenario 2: 2 terminals a day for 28 days, each ~0.97 transactions a day: about 2,500.
    assert!(
        (1_800..3_300).contains(&by_scenario[2]),
        "scenario 2: {}",
        by_scenario[2]
    );
    // Scenario 3: 3 customers a day, a third of their ~27 transactions in 14 days: about 1,450.
    assert!(
        (1_000..2_000).contains(&by_scenario[3]),
        "scenario 3: {}",
        by_scenario[3]
    );
    assert!((0.025..0.045).contains(&rate), "fraud rate {rate}");
    assert!(
        (4.0..6.5).contains(&s3_ratio.mean()),
        "scenario 3 amounts are {}x the customer's mean",
        s3_ratio.mean()
    );

    // Scenario 2 compromises at most 2 terminals a day.
    let s2_terminals: std::collections::HashSet<&str> = txs
        .iter()
        .filter(|t| t.label.unwrap().scenario == 2)
        .map(|t| t.tx.terminal_id.as_str())
        .collect();
    assert!(
        (60..=120).contains(&s2_terminals.len()),
        "{} terminals",
        s2_terminals.len()
    );
}

#[test]
fn default_config_is_the_handbook_run() {
    let cfg = SimConfig::default();
    assert_eq!(
        (cfg.customers, cfg.terminals, cfg.days, cfg.seed),
        (5_000, 10_000, 183, 42)
    );
    assert_eq!(cfg.start, parse_date("2018-04-01").unwrap());
}

// --- Files -------------------------------------------------------------------------------------

fn tx(id: &str, at: &str, minor: i64, currency: &str, label: Option<Label>) -> LabelledTransaction {
    LabelledTransaction {
        tx: Transaction {
            id: TransactionId::parse(id).unwrap(),
            occurred_at: Timestamp::parse("occurred_at", at).unwrap(),
            amount: Money::new(minor, Currency::parse(currency).unwrap()).unwrap(),
            customer_id: CustomerId::parse("card_9.x:1").unwrap(),
            terminal_id: TerminalId::parse("t-1").unwrap(),
        },
        label,
        extras: None,
    }
}

/// Simulated rows plus the shapes the simulator never makes.
fn sample() -> Vec<LabelledTransaction> {
    let mut txs = simulate(
        &SimConfig {
            customers: 50,
            terminals: 1000,
            days: 5,
            ..SimConfig::default()
        },
        &mut no_progress(),
    )
    .unwrap();
    txs.push(tx("unlabelled", "2018-04-02T10:00:00.123456789Z", 0, "JPY", None));
    txs.push(tx(
        "fraud-no-scenario",
        "2018-04-03T10:00:00Z",
        1_000_000_000_000_000,
        "KWD",
        Some(Label {
            fraud: true,
            scenario: 0,
        }),
    ));
    txs
}

#[test]
fn files_round_trip_in_every_format() {
    let d = dir("round-trip");
    let txs = sample();
    assert!(txs.len() > 300);
    for name in ["t.csv", "t.ndjson", "t.jsonl", "t.csv.gz", "t.ndjson.gz", "T.CSV"] {
        let path = d.join(name);
        let mut calls = 0;
        write_all(&path, &txs, &mut |_, _| calls += 1).unwrap();
        assert!(calls >= 1);
        assert_eq!(read_all(&path).unwrap(), txs, "{name}");
        let streamed: Vec<_> = TransactionReader::open(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(streamed, txs, "{name}");
    }
    // Gzip really compresses, and the plain files are what their extension says.
    let plain = std::fs::metadata(d.join("t.csv")).unwrap().len();
    assert!(std::fs::metadata(d.join("t.csv.gz")).unwrap().len() < plain / 2);
    let csv = std::fs::read_to_string(d.join("t.csv")).unwrap();
    assert!(csv.starts_with(
        "id,occurred_at,amount,currency,customer_id,terminal_id,label_fraud,label_scenario\ntx-00000001,2018-04-01T"
    ));
    assert!(csv.contains("\nunlabelled,2018-04-02T10:00:00.123456789Z,0,JPY,card_9.x:1,t-1,,\n"));
    let json = std::fs::read_to_string(d.join("t.ndjson")).unwrap();
    assert!(json.contains(
        "\n{\"id\":\"fraud-no-scenario\",\"occurred_at\":\"2018-04-03T10:00:00Z\",\"amount\":1000000000000000,\"currency\":\"KWD\",\"customer_id\":\"card_9.x:1\",\"terminal_id\":\"t-1\",\"label\":{\"fraud\":true,\"scenario\":0}}\n"
    ));
}

#[test]
fn streaming_writer_writes_what_write_all_writes() {
    let d = dir("streaming-writer");
    let txs = sample();
    write_all(d.join("a.ndjson"), &txs, &mut no_progress()).unwrap();
    let mut w = TransactionWriter::create(d.join("b.ndjson")).unwrap();
    for t in &txs {
        w.write(t).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(
        std::fs::read(d.join("a.ndjson")).unwrap(),
        std::fs::read(d.join("b.ndjson")).unwrap()
    );
    // Into memory too.
    let mut w = TransactionWriter::new("memory", verdict::domain::io::Format::Csv, Vec::new()).unwrap();
    w.write(&txs[0]).unwrap();
    let bytes = w.into_inner().unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap().lines().count(), 2);
}

#[test]
fn ndjson_rows_carry_the_optional_fields_the_api_accepts_and_ignore_unknown_ones() {
    let d = dir("extra-fields");
    let path = d.join("api.ndjson");
    std::fs::write(
        &path,
        concat!(
            r#"{"metadata":{"order":"42"},"id":"a","occurred_at":"2018-04-01T12:00:00+02:00","amount":1250,"currency":"EUR","#,
            r#""customer_id":"c1","terminal_id":"t1","ip":"10.0.0.1","email":"x@example.com","colour":"red"}"#,
            "\n\n",
            r#"{"id":"b","occurred_at":"2018-04-01T12:00:00Z","amount":1,"currency":"EUR","customer_id":"c1","terminal_id":"t1","label":{"fraud":true}}"#,
            "\r\n",
        ),
    )
    .unwrap();
    let txs = read_all(&path).unwrap();
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].tx.occurred_at.to_rfc3339(), "2018-04-01T10:00:00Z");
    assert_eq!(txs[0].tx.amount.minor, 1250);
    assert_eq!(txs[0].label, None);
    assert_eq!(txs[0].extras().ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(txs[0].extras().email.as_deref(), Some("x@example.com"));
    assert_eq!(txs[0].extras().metadata["order"], "42");
    assert!(txs[1].extras.is_none());
    assert_eq!(
        txs[1].label,
        Some(Label {
            fraud: true,
            scenario: 0
        })
    );
    // The optional fields are checked as the API checks them, and the error names the field.
    let bad = d.join("bad.ndjson");
    std::fs::write(
        &bad,
        r#"{"metadata":{"order":[1,2]},"id":"a","occurred_at":"2018-04-01T12:00:00Z","amount":1,"currency":"EUR","customer_id":"c1","terminal_id":"t1"}"#,
    )
    .unwrap();
    let e = read_all(&bad).unwrap_err().to_string();
    assert!(
        e.ends_with(r#"line 1, field metadata: key "order": must be a string, found an array"#),
        "{e}"
    );
}

#[test]
fn csv_optional_columns_carry_the_request_fields() {
    let d = dir("csv-extras");
    let path = d.join("extras.csv");
    std::fs::write(
        &path,
        "id,occurred_at,amount,currency,customer_id,terminal_id,email,country,metadata.order\n\
         a,2018-04-01T10:00:00Z,1250,EUR,c1,t1,x@example.com,FR,42\n\
         b,2018-04-01T11:00:00Z,1,EUR,c1,t1,,,\n",
    )
    .unwrap();
    let txs = read_all(&path).unwrap();
    assert_eq!(txs[0].extras().email.as_deref(), Some("x@example.com"));
    assert_eq!(txs[0].extras().country.as_deref(), Some("FR"));
    assert_eq!(txs[0].extras().metadata["order"], "42");
    assert!(txs[1].extras.is_none(), "empty cells are absent fields");
    let bad = d.join("bad.csv");
    std::fs::write(
        &bad,
        "id,occurred_at,amount,currency,customer_id,terminal_id,country\na,2018-04-01T10:00:00Z,1,EUR,c1,t1,France\n",
    )
    .unwrap();
    let e = read_all(&bad).unwrap_err().to_string();
    assert!(
        e.ends_with(r#"line 2, field country: "France" is not an ISO 3166 alpha-2 code"#),
        "{e}"
    );
}

#[test]
fn sort_by_time_orders_by_time_then_id_and_is_stable() {
    let mut txs = vec![
        tx("b", "2018-04-01T10:00:00Z", 1, "EUR", None),
        tx("c", "2018-04-01T09:00:00Z", 1, "EUR", None),
        tx("a", "2018-04-01T10:00:00Z", 2, "EUR", None),
        tx("a", "2018-04-01T10:00:00Z", 3, "EUR", None),
    ];
    sort_by_time(&mut txs);
    let order: Vec<(&str, i64)> = txs.iter().map(|t| (t.tx.id.as_str(), t.tx.amount.minor)).collect();
    assert_eq!(order, [("c", 1), ("a", 2), ("a", 3), ("b", 1)]);
}

// --- Bad input ---------------------------------------------------------------------------------

/// Writes `content` to `name` and returns the path and the first error reading it gives.
fn first_error(test: &str, name: &str, content: &[u8]) -> (String, String) {
    let path = dir(test).join(name);
    std::fs::write(&path, content).unwrap();
    let err = read_all(&path).expect_err("bad input must be refused");
    assert!(matches!(err, FileError::Row(_)), "{err:?}");
    // The streaming reader gives the same error.
    let streamed = TransactionReader::open(&path).unwrap().find_map(Result::err).unwrap();
    assert_eq!(streamed.to_string(), err.to_string());
    (path.display().to_string(), err.to_string())
}

const HEADER: &str = "id,occurred_at,amount,currency,customer_id,terminal_id,label_fraud,label_scenario\n";
const GOOD_ROW: &str = "tx-1,2018-04-01T10:00:00Z,1250,EUR,c-1,t-1,0,0\n";

fn csv_with(bad_row: &str, at_line: usize) -> Vec<u8> {
    let mut s = HEADER.to_owned();
    for _ in 2..at_line {
        s.push_str(GOOD_ROW);
    }
    s.push_str(bad_row);
    s.push_str(GOOD_ROW);
    s.into_bytes()
}

#[test]
fn bad_csv_rows_name_file_line_and_field() {
    let cases: &[(&str, &str, String)] = &[
        (
            "fractional",
            "tx-2,2018-04-01T10:00:00Z,12.5,EUR,c-1,t-1,0,0\n",
            r#"line 17, field amount: "12.5" is not an integer number of minor units"#.into(),
        ),
        (
            "negative",
            "tx-2,2018-04-01T10:00:00Z,-5,EUR,c-1,t-1,0,0\n",
            "line 17, field amount: -5 must not be negative".into(),
        ),
        (
            "above-money",
            "tx-2,2018-04-01T10:00:00Z,1000000000000001,EUR,c-1,t-1,0,0\n",
            "line 17, field amount: 1000000000000001 is larger than 1000000000000000 minor units".into(),
        ),
        (
            "huge",
            "tx-2,2018-04-01T10:00:00Z,99999999999999999999,EUR,c-1,t-1,0,0\n",
            "line 17, field amount: is too large".into(),
        ),
        (
            "timestamp",
            "tx-2,yesterday,5,EUR,c-1,t-1,0,0\n",
            r#"line 17, field occurred_at: "yesterday" is not an RFC 3339 timestamp"#.into(),
        ),
        (
            "currency",
            "tx-2,2018-04-01T10:00:00Z,5,eur,c-1,t-1,0,0\n",
            r#"line 17, field currency: "eur" is not an ISO 4217 code (three upper-case letters)"#.into(),
        ),
        (
            "id",
            "tx#2,2018-04-01T10:00:00Z,5,EUR,c-1,t-1,0,0\n",
            "line 17, field id: contains '#'".into(),
        ),
        (
            "empty-customer",
            "tx-2,2018-04-01T10:00:00Z,5,EUR,,t-1,0,0\n",
            "line 17, field customer_id: must not be empty".into(),
        ),
        (
            "label",
            "tx-2,2018-04-01T10:00:00Z,5,EUR,c-1,t-1,yes,0\n",
            r#"line 17, field label_fraud: "yes" is not one of 0, 1, true, false"#.into(),
        ),
        (
            "scenario",
            "tx-2,2018-04-01T10:00:00Z,5,EUR,c-1,t-1,1,300\n",
            "line 17, field label_scenario: 300 is not a scenario number between 0 and 255".into(),
        ),
        (
            "short",
            "tx-2,2018-04-01T10:00:00Z,5,EUR,c-1,t-1,0\n",
            "line 17: expected 8 fields as in the header, found 7".into(),
        ),
        (
            "long",
            "tx-2,2018-04-01T10:00:00Z,5,EUR,c-1,t-1,0,0,9\n",
            "line 17: expected 8 fields as in the header, found 9".into(),
        ),
    ];
    for (test, row, expected) in cases {
        let (path, err) = first_error(&format!("csv-{test}"), "data.csv", &csv_with(row, 17));
        assert!(
            err.starts_with(&format!("{path} {expected}")),
            "{test}: got {err:?}, expected {expected:?}"
        );
        assert!(path.ends_with("data.csv"));
    }
}

#[test]
fn the_issue_example_message_is_exact() {
    let (path, err) = first_error(
        "example",
        "data.csv",
        &csv_with("tx-2,2018-04-01T10:00:00Z,12.5,EUR,c-1,t-1,0,0\n", 17),
    );
    assert_eq!(
        err,
        format!(r#"{path} line 17, field amount: "12.5" is not an integer number of minor units"#)
    );
}

#[test]
fn bad_csv_files_are_refused_without_panicking() {
    let (p, e) = first_error("csv-empty", "empty.csv", b"");
    assert_eq!(e, format!("{p} line 1: the file is empty; expected a CSV header"));
    let (p, e) = first_error(
        "csv-no-amount",
        "h.csv",
        b"id,occurred_at,currency,customer_id,terminal_id\na,2018-04-01T10:00:00Z,EUR,c,t\n",
    );
    assert_eq!(
        e,
        format!("{p} line 1, field amount: column is missing from the header (expected id,occurred_at,amount,currency,customer_id,terminal_id,label_fraud,label_scenario)")
    );
    let (p, e) = first_error(
        "csv-twice",
        "h.csv",
        b"id,id,occurred_at,amount,currency,customer_id,terminal_id\n",
    );
    assert_eq!(e, format!("{p} line 1, field id: appears twice in the header"));
    let mut bad_utf8 = csv_with("tx-2,2018-04-01T10:00:00Z,5,EUR,c-\u{e9},t-1,0,0\n", 3);
    let at = bad_utf8.iter().position(|&b| b == 0xc3).unwrap();
    bad_utf8[at] = 0xff;
    let (p, e) = first_error("csv-utf8", "u.csv", &bad_utf8);
    assert_eq!(
        e,
        format!("{p} line 3, field customer_id: is not valid UTF-8 (at byte 3)")
    );
    // A broken gzip stream is an error at the line where it breaks, not a panic.
    let (p, e) = first_error("csv-gz", "broken.csv.gz", b"\x1f\x8b\x08\x00garbage");
    assert!(e.starts_with(&format!("{p} line 1: cannot read: ")), "{e}");
}

#[test]
fn bad_ndjson_lines_name_file_line_and_field() {
    let good = r#"{"id":"a","occurred_at":"2018-04-01T10:00:00Z","amount":1250,"currency":"EUR","customer_id":"c","terminal_id":"t"}"#;
    let with = |bad: &str| format!("{good}\n{good}\n{bad}\n{good}\n").into_bytes();
    let cases: &[(&str, &str, &str)] = &[
        (
            "json",
            r#"{"id":"a","#,
            "line 3: is not valid JSON (column 10: EOF while parsing a value)",
        ),
        (
            "array",
            r#"["a","2018-04-01T10:00:00Z",1250,"EUR","c","t"]"#,
            "line 3: is not a transaction object (found a JSON array)",
        ),
        (
            "scalar",
            "42",
            "line 3: is not a transaction object (column 2: invalid type: integer `42`, expected struct JsonTransaction)",
        ),
        (
            "missing",
            r#"{"id":"a","occurred_at":"2018-04-01T10:00:00Z","amount":1250,"currency":"EUR","customer_id":"c"}"#,
            "line 3, field terminal_id: is missing",
        ),
        (
            "fractional",
            r#"{"id":"a","occurred_at":"2018-04-01T10:00:00Z","amount":12.5,"currency":"EUR","customer_id":"c","terminal_id":"t"}"#,
            "line 3, field amount: 12.5 is not an integer number of minor units",
        ),
        (
            "string-amount",
            r#"{"id":"a","occurred_at":"2018-04-01T10:00:00Z","amount":"1250","currency":"EUR","customer_id":"c","terminal_id":"t"}"#,
            "line 3, field amount: must be an integer number of minor units, found a string",
        ),
        (
            "negative",
            r#"{"id":"a","occurred_at":"2018-04-01T10:00:00Z","amount":-1,"currency":"EUR","customer_id":"c","terminal_id":"t"}"#,
            "line 3, field amount: -1 must not be negative",
        ),
        (
            "timestamp",
            r#"{"id":"a","occurred_at":"2018-04-01 10:00","amount":1,"currency":"EUR","customer_id":"c","terminal_id":"t"}"#,
            r#"line 3, field occurred_at: "2018-04-01 10:00" is not an RFC 3339 timestamp"#,
        ),
        (
            "currency",
            r#"{"id":"a","occurred_at":"2018-04-01T10:00:00Z","amount":1,"currency":"EURO","customer_id":"c","terminal_id":"t"}"#,
            r#"line 3, field currency: "EURO" is not an ISO 4217 code"#,
        ),
        (
            "id-type",
            r#"{"id":7,"occurred_at":"2018-04-01T10:00:00Z","amount":1,"currency":"EUR","customer_id":"c","terminal_id":"t"}"#,
            "line 3, field id: must be a string, found a number",
        ),
        (
            "label",
            r#"{"id":"a","occurred_at":"2018-04-01T10:00:00Z","amount":1,"currency":"EUR","customer_id":"c","terminal_id":"t","label":{"fraud":1}}"#,
            "line 3, field label.fraud: must be true or false, found a number",
        ),
        (
            "label-type",
            r#"{"id":"a","occurred_at":"2018-04-01T10:00:00Z","amount":1,"currency":"EUR","customer_id":"c","terminal_id":"t","label":true}"#,
            "line 3, field label: must be an object, found a boolean",
        ),
    ];
    for (test, bad, expected) in cases {
        let (path, err) = first_error(&format!("ndjson-{test}"), "data.ndjson", &with(bad));
        assert!(
            err.starts_with(&format!("{path} {expected}")),
            "{test}: got {err:?}, expected {expected:?}"
        );
    }
    let (p, e) = first_error("ndjson-empty", "e.ndjson", b"\n  \n");
    assert_eq!(e, format!("{p} line 1: the file is empty"));
    let (p, e) = first_error(
        "ndjson-utf8",
        "u.jsonl",
        &[good.as_bytes(), b"\n{\"id\":\"\xff\"}\n"].concat(),
    );
    assert_eq!(e, format!("{p} line 2: is not valid UTF-8 (at byte 8)"));
}

#[test]
fn file_errors_name_the_file() {
    let d = dir("file-errors");
    let e = read_all(d.join("missing.csv")).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("cannot open {}: ", d.join("missing.csv").display())),
        "{e}"
    );
    let e = read_all(d.join("data.parquet")).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: unknown file type; expected .csv, .ndjson or .jsonl, optionally followed by .gz",
            d.join("data.parquet").display()
        )
    );
    let target = d.join("no-such-dir").join("x.csv");
    let e = write_all(&target, &[], &mut no_progress()).unwrap_err().to_string();
    assert!(e.starts_with(&format!("cannot create {}: ", target.display())), "{e}");
}
