//! Imported LightGBM and XGBoost models score like the Python libraries that trained them.
//!
//! The fixtures come from scripts/make_fixtures.py (pinned lightgbm and xgboost): two models,
//! rows to score (including rows exactly on split thresholds and rows with NaN), and each
//! library's own `predict` for those rows.

use std::path::PathBuf;
use verdict::domain::features::{FeatureVector, FEATURE_COUNT, FEATURE_NAMES, HANDBOOK_FEATURE_COUNT};
use verdict::domain::model::import::{import, ImportFormat};
use verdict::domain::model::{Comparison, Model, ModelError, ModelSource};

const TOLERANCE: f64 = 1e-6;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(name)
}

fn read(name: &str) -> (String, Vec<u8>) {
    let path = fixture(name);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/make_fixtures.py", path.display()));
    (path.display().to_string(), bytes)
}

fn rows() -> Vec<FeatureVector> {
    let mut r = csv::Reader::from_path(fixture("parity_features.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    // The fixture models were trained on the handbook's 15 features, as a Python user would;
    // Verdict's later features are not read by them and stay 0.
    assert_eq!(
        header,
        FEATURE_NAMES[..HANDBOOK_FEATURE_COUNT],
        "parity_features.csv columns are the handbook features in Verdict's order"
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let mut x = [0.0; FEATURE_COUNT];
            for (j, v) in rec.iter().enumerate() {
                x[j] = v.parse().unwrap_or_else(|_| panic!("not a number: {v:?}"));
            }
            FeatureVector(x)
        })
        .collect()
}

/// (lightgbm_prob, xgboost_prob) per row.
fn expected() -> Vec<(f64, f64)> {
    let mut r = csv::Reader::from_path(fixture("parity_predictions.csv")).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["lightgbm_prob", "xgboost_prob"]
    );
    r.records()
        .map(|rec| rec.unwrap())
        .map(|rec| (rec[0].parse().unwrap(), rec[1].parse().unwrap()))
        .collect()
}

fn load(format: ImportFormat, name: &str) -> Model {
    let (origin, bytes) = read(name);
    Model::seal(import(format, &origin, &bytes).unwrap()).unwrap()
}

/// Largest |ours - python| over all rows, and how many rows exceed the tolerance.
fn compare(model: &Model, rows: &[FeatureVector], python: impl Fn(usize) -> f64) -> (f64, usize) {
    let mut max = 0.0f64;
    let mut over = 0;
    for (i, x) in rows.iter().enumerate() {
        let d = (model.probability(x) - python(i)).abs();
        max = max.max(d);
        // NaN counts as over.
        over += usize::from(d.is_nan() || d > TOLERANCE);
    }
    (max, over)
}

fn check_parity(format: ImportFormat, name: &str, column: fn(&(f64, f64)) -> f64, source: ModelSource) {
    let rows = rows();
    let want = expected();
    assert_eq!(rows.len(), want.len());
    assert!(rows.len() >= 300, "a few hundred rows, got {}", rows.len());
    assert!(
        rows.iter().filter(|x| x.0.iter().any(|v| v.is_nan())).count() >= 10,
        "rows with NaN exercise missing values"
    );

    let model = load(format, name);
    assert_eq!(model.artifact.source, source);
    assert_eq!(model.tree_count(), 60);
    let (max, over) = compare(&model, &rows, |i| column(&want[i]));
    println!("{format}: max |verdict - python| over {} rows = {max:.3e}", rows.len());
    assert_eq!(
        over, 0,
        "{format}: {over} rows differ by more than {TOLERANCE} (max {max:.3e})"
    );

    // The fixture has rows on thresholds: the other comparison must visibly break parity.
    let mut wrong = model.artifact.clone();
    wrong.forest.comparison = match wrong.forest.comparison {
        Comparison::LessOrEqual => Comparison::Less,
        _ => Comparison::LessOrEqual,
    };
    let (_, broken) = compare(&Model::seal(wrong).unwrap(), &rows, |i| column(&want[i]));
    assert!(
        broken >= 10,
        "{format}: only {broken} rows notice the wrong comparison; the tie rows are not exercised"
    );

    // Saabas: bias plus contributions is the margin, which is the log-odds of the probability.
    for x in &rows {
        let s = model.score(x);
        let a = s.attribution;
        let logit = (s.probability / (1.0 - s.probability)).ln();
        let sum = a.bias + a.contributions.iter().sum::<f64>();
        assert!(
            (sum - logit).abs() <= 1e-9,
            "{format}: bias + contributions {sum} != logit(p) {logit}"
        );
        assert!((s.probability - model.probability(x)).abs() <= 1e-15);
    }
}

#[test]
fn lightgbm_matches_python_predictions() {
    check_parity(
        ImportFormat::Lightgbm,
        "lightgbm_model.txt",
        |p| p.0,
        ModelSource::Lightgbm,
    );
    let m = load(ImportFormat::Lightgbm, "lightgbm_model.txt");
    assert_eq!(m.artifact.hyperparameters["num_leaves"], serde_json::json!(15));
    assert_eq!(m.artifact.hyperparameters["learning_rate"], serde_json::json!(0.1));
    assert_eq!(m.artifact.training["objective"], serde_json::json!("binary sigmoid:1"));
    assert_eq!(
        m.artifact.forest.base_margin, 0.0,
        "LightGBM's init score lives in the first tree"
    );
}

#[test]
fn xgboost_matches_python_predictions() {
    check_parity(
        ImportFormat::Xgboost,
        "xgboost_model.json",
        |p| p.1,
        ModelSource::Xgboost,
    );
    let m = load(ImportFormat::Xgboost, "xgboost_model.json");
    assert_eq!(
        m.artifact.hyperparameters["objective"],
        serde_json::json!("binary:logistic")
    );
    assert_eq!(m.artifact.training["xgboost_version"], serde_json::json!("3.2.0"));
    let p = m.artifact.training["base_score"].as_f64().unwrap();
    assert!(
        (p - 0.0294).abs() < 1e-7,
        "base_score is the training fraud rate, got {p}"
    );
    assert!((m.artifact.forest.base_margin - (p / (1.0 - p)).ln()).abs() < 1e-6);
}

fn refused(format: ImportFormat, origin: &str, bytes: &[u8]) -> String {
    match import(format, origin, bytes) {
        Err(e @ ModelError::Import { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{origin}: ")),
                "the error names the file: {msg}"
            );
            msg
        }
        Err(e) => panic!("expected an import error, got {e}"),
        Ok(_) => panic!("{origin}: a corrupted model was accepted"),
    }
}

#[test]
fn corrupted_lightgbm_file_is_refused_naming_it() {
    let (origin, bytes) = read("lightgbm_model.txt");
    let text = String::from_utf8(bytes).unwrap();

    let cut = text.find("Tree=30").unwrap() + 200;
    let msg = refused(ImportFormat::Lightgbm, &origin, &text.as_bytes()[..cut]);
    assert!(
        msg.contains("after tree 30 without the \"end of trees\" line; it is truncated"),
        "{msg}"
    );

    // A child link pointing past the tree's nodes.
    let line = text.lines().position(|l| l.starts_with("left_child=")).unwrap();
    let flipped: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == line {
                format!("left_child=99{}", &l["left_child=".len() + 1..])
            } else {
                l.to_owned()
            }
        })
        .collect();
    let msg = refused(ImportFormat::Lightgbm, &origin, flipped.join("\n").as_bytes());
    assert!(
        msg.contains(&format!("line {}, tree 0, field left_child: value 0 is 99", line + 1)),
        "{msg}"
    );

    // A number turned into text.
    let msg = refused(
        ImportFormat::Lightgbm,
        &origin,
        text.replacen("leaf_value=", "leaf_value=0x1", 1).as_bytes(),
    );
    assert!(msg.contains("tree 0, field leaf_value: value 0 (\"0x1"), "{msg}");
}

#[test]
fn corrupted_xgboost_file_is_refused_naming_it() {
    let (origin, bytes) = read("xgboost_model.json");

    let msg = refused(ImportFormat::Xgboost, &origin, &bytes[..bytes.len() / 2]);
    assert!(msg.contains("not valid JSON: EOF while parsing"), "{msg}");

    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["learner"]["gradient_booster"]["model"]["trees"][7]["split_indices"][0] = serde_json::json!(99);
    let msg = refused(ImportFormat::Xgboost, &origin, &serde_json::to_vec(&v).unwrap());
    assert!(
        msg.contains("trees[7].split_indices[0]: feature 99 is out of range (the model has 15 features)"),
        "{msg}"
    );

    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["learner"]["gradient_booster"]["model"]["trees"][3]["left_children"][0] = serde_json::json!(1000);
    let msg = refused(ImportFormat::Xgboost, &origin, &serde_json::to_vec(&v).unwrap());
    assert!(
        msg.contains("trees[3].left_children[0]: child 1000 is out of range"),
        "{msg}"
    );

    // Feeding one format to the other importer is refused, not misread.
    let (lgb_origin, lgb) = read("lightgbm_model.txt");
    assert!(refused(ImportFormat::Xgboost, &lgb_origin, &lgb).contains("does not start with '{'"));
    assert!(refused(ImportFormat::Lightgbm, &origin, &bytes).contains("line 1: not a LightGBM text model"));
}
