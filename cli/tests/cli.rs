//! The `verdict` binary end to end on a small simulation: simulate, train, evaluate, score,
//! features and import, plus the errors a user sees for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn verdict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .output()
        .expect("the verdict binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = verdict(args);
    assert!(
        out.status.success(),
        "verdict {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("verdict-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn simulate_train_evaluate_score_round_trip() {
    let data = tmp("tx.csv");
    let model = tmp("m.vmodel");
    // 140 days from 2018-04-01 cover the protocol's train, delay and test weeks.
    ok(&[
        "simulate",
        "--customers",
        "400",
        "--terminals",
        "800",
        "--days",
        "140",
        "--seed",
        "3",
        "--out",
        s(&data),
    ]);
    ok(&[
        "train",
        "--data",
        s(&data),
        "--train-start",
        "2018-07-25",
        "--trees",
        "50",
        "--out",
        s(&model),
    ]);

    let line = ok(&[
        "evaluate",
        "--data",
        s(&data),
        "--model",
        s(&model),
        "--test-start",
        "2018-08-08",
    ]);
    let e: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    for k in ["auc", "average_precision", "card_precision_at_100"] {
        let v = e[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {line}"));
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    // A trained model ranks frauds well above chance even on a small run.
    assert!(e["auc"].as_f64().unwrap() > 0.75, "{line}");
    assert!(
        e["frauds"].as_u64().unwrap() > 0 && e["transactions"].as_u64().unwrap() > 1000,
        "{line}"
    );

    let scored = tmp("scored.ndjson");
    ok(&["score", "--model", s(&model), "--data", s(&data), "--out", s(&scored)]);
    let text = std::fs::read_to_string(&scored).unwrap();
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let input_rows = std::fs::read_to_string(&data).unwrap().lines().count() - 1;
    assert_eq!(rows.len(), input_rows);
    let blocked = rows
        .iter()
        .find(|r| r["decision"] == "block")
        .expect("some transaction is blocked");
    assert!(blocked["score"].as_f64().unwrap() >= 0.8);
    assert_eq!(blocked["reasons"].as_array().unwrap().len(), 3);
    assert!(blocked["reasons"][0]["text"].as_str().unwrap().contains("risk"));

    let features = tmp("features.csv");
    ok(&["features", "--data", s(&data), "--out", s(&features)]);
    let header = std::fs::read_to_string(&features)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        header.starts_with("id,amount,during_weekend,during_night,customer_tx_count_1d"),
        "{header}"
    );
    assert!(header.ends_with("amount_to_customer_mean_30d,label_fraud"), "{header}");
}

#[test]
fn handbook_help_lists_its_flags() {
    // Only the help here: the full-size run is measured by `make handbook`, not by tests.
    let help = ok(&["handbook", "--help"]);
    assert!(help.contains("--seed") && help.contains("--trees"), "{help}");
}

#[test]
fn bad_input_names_file_line_and_field() {
    let data = tmp("bad.csv");
    std::fs::write(
        &data,
        "id,occurred_at,amount,currency,customer_id,terminal_id\n\
         tx-1,2018-04-01T10:00:00Z,1250,EUR,c-1,t-1\n\
         tx-2,2018-04-01T11:00:00Z,12.5,EUR,c-1,t-1\n",
    )
    .unwrap();
    let out = verdict(&["features", "--data", s(&data), "--out", s(&tmp("f.csv"))]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv line 3, field amount"), "{err}");

    let model = tmp("broken.vmodel");
    std::fs::write(&model, "verdict-model/1 sha256:00\n{}").unwrap();
    let out = verdict(&[
        "evaluate",
        "--data",
        s(&data),
        "--model",
        s(&model),
        "--test-start",
        "2018-08-08",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.vmodel: digest mismatch"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn import_converts_a_lightgbm_model() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/lightgbm_model.txt");
    let out = tmp("lgb.vmodel");
    let text = ok(&["import", "--format", "lightgbm", s(&fixture), "--out", s(&out)]);
    assert!(text.contains("trees    60"), "{text}");
    let bytes = std::fs::read(&out).unwrap();
    let m = verdict_model_version(&bytes);
    assert!(text.contains(&m), "{text} should name version {m}");
}

/// The version the CLI prints is the digest prefix in the artifact's header line.
fn verdict_model_version(bytes: &[u8]) -> String {
    let header = std::str::from_utf8(&bytes[..bytes.iter().position(|&b| b == b'\n').unwrap()]).unwrap();
    header.rsplit(':').next().unwrap()[..16].to_owned()
}

#[test]
fn shards_set_refuses_bad_counts_before_reaching_the_table() {
    for (args, want) in [
        (
            &["--terminals", "40"][..],
            "--terminals 40: shard count must be 1 to 32",
        ),
        (&["--customers", "0"][..], "--customers 0: shard count must be 1 to 32"),
        (&["--terminal", "t#1", "--shards", "4"][..], "--terminal \"t#1\""),
        (&[][..], "nothing to change"),
    ] {
        let mut all = vec!["shards", "set", "--tenant", "acme", "--table", "no-such-table"];
        all.extend_from_slice(args);
        let out = verdict(&all);
        assert!(!out.status.success(), "{all:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{all:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
