//! The steps the train, evaluate, handbook and score commands share.

use super::progress;
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;
use time::Date;
use verdict::domain::features::{FeatureVector, OfflineFeatures};
use verdict::domain::model::train::{train, TrainParams};
use verdict::domain::model::{Model, ModelArtifact};
use verdict::domain::LabelledTransaction;
use verdict::offline::protocol::{self, Evaluation};

/// A time-ordered file with every row's features.
pub struct Dataset {
    pub rows: Vec<LabelledTransaction>,
    pub features: Vec<FeatureVector>,
}

pub fn parse_date(raw: &str) -> anyhow::Result<Date> {
    Date::parse(raw, time::macros::format_description!("[year]-[month]-[day]"))
        .with_context(|| format!("{raw:?} is not a date like 2018-07-25"))
}

impl Dataset {
    pub fn load(path: &Path) -> anyhow::Result<Dataset> {
        let mut rows = verdict::domain::io::read_all(path)?;
        verdict::domain::io::sort_by_time(&mut rows);
        Ok(Dataset::from_rows(rows))
    }

    /// Rows must be in time order.
    pub fn from_rows(rows: Vec<LabelledTransaction>) -> Dataset {
        let pb = progress::bar("features");
        pb.set_length(rows.len() as u64);
        let mut offline = OfflineFeatures::new();
        let features = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if i % 65_536 == 0 {
                    pb.set_position(i as u64);
                }
                offline.push(&r.tx, r.label)
            })
            .collect();
        pb.finish_and_clear();
        Dataset { rows, features }
    }

    fn fraud(&self, i: usize) -> bool {
        self.rows[i].label.is_some_and(|l| l.fraud)
    }

    pub fn train(&self, window: &Window, params: &TrainParams) -> anyhow::Result<ModelArtifact> {
        let split = protocol::split(&self.rows, window.train_start, window.train_days, window.delay_days, 0);
        let labelled: Vec<usize> = split
            .train
            .into_iter()
            .filter(|&i| self.rows[i].label.is_some())
            .collect();
        anyhow::ensure!(
            !labelled.is_empty(),
            "no labelled transactions between {} and the {} days after",
            window.train_start,
            window.train_days
        );
        let x: Vec<FeatureVector> = labelled.iter().map(|&i| self.features[i]).collect();
        let y: Vec<bool> = labelled.iter().map(|&i| self.fraud(i)).collect();
        let mut facts = BTreeMap::new();
        facts.insert("train_start".into(), window.train_start.to_string().into());
        facts.insert("train_days".into(), window.train_days.into());
        facts.insert("delay_days".into(), window.delay_days.into());
        Ok(train("handbook-gbdt", &x, &y, params, facts)?)
    }

    /// Scores the protocol's test set (known-compromised customers removed) and measures it.
    pub fn evaluate(&self, model: &Model, window: &Window) -> Evaluation {
        let split = protocol::split(
            &self.rows,
            window.train_start,
            window.train_days,
            window.delay_days,
            window.test_days,
        );
        let scored: Vec<(&LabelledTransaction, f64)> = split
            .test
            .iter()
            .map(|&i| (&self.rows[i], model.probability(&self.features[i])))
            .collect();
        protocol::evaluate(&scored, 100)
    }
}

/// The protocol's dates: train, then a label delay, then test.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub train_start: Date,
    pub train_days: u32,
    pub delay_days: u32,
    pub test_days: u32,
}

impl Window {
    pub fn test_start(&self) -> Date {
        self.train_start + time::Duration::days((self.train_days + self.delay_days) as i64)
    }

    /// The window whose test period starts at `test_start`.
    pub fn ending_at(test_start: Date, train_days: u32, delay_days: u32, test_days: u32) -> Window {
        Window {
            train_start: test_start - time::Duration::days((train_days + delay_days) as i64),
            train_days,
            delay_days,
            test_days,
        }
    }
}

/// Model hyper-parameters as flags, shared by `train` and `handbook`.
#[derive(clap::Args, Debug, Clone)]
pub struct ParamArgs {
    /// Number of trees
    #[arg(long, default_value_t = TrainParams::default().trees)]
    pub trees: usize,
    /// Learning rate (shrinkage per tree)
    #[arg(long, default_value_t = TrainParams::default().learning_rate)]
    pub learning_rate: f32,
    /// Maximum depth of each tree
    #[arg(long, default_value_t = TrainParams::default().max_depth)]
    pub max_depth: usize,
    /// Minimum hessian sum in a leaf
    #[arg(long, default_value_t = TrainParams::default().min_leaf_weight)]
    pub min_leaf_weight: f32,
    /// L2 regularisation on leaf weights
    #[arg(long, default_value_t = TrainParams::default().l2)]
    pub l2: f32,
    /// Row subsample per tree (1.0 = all rows)
    #[arg(long, default_value_t = TrainParams::default().subsample)]
    pub subsample: f32,
    /// Column subsample per tree (1.0 = all features)
    #[arg(long, default_value_t = TrainParams::default().colsample_bytree)]
    pub colsample: f64,
    /// Weight of a fraud row relative to a legitimate one
    #[arg(long, default_value_t = TrainParams::default().fraud_weight)]
    pub fraud_weight: f64,
    /// Training seed (training is deterministic for a fixed seed)
    #[arg(long, default_value_t = TrainParams::default().seed)]
    pub train_seed: u64,
}

impl ParamArgs {
    pub fn params(&self) -> TrainParams {
        TrainParams {
            trees: self.trees,
            learning_rate: self.learning_rate,
            max_depth: self.max_depth,
            min_leaf_weight: self.min_leaf_weight,
            l2: self.l2,
            subsample: self.subsample,
            colsample_bytree: self.colsample,
            fraud_weight: self.fraud_weight,
            seed: self.train_seed,
            ..TrainParams::default()
        }
    }
}

/// Prints one JSON line on stdout: the evaluation plus any extra fields.
pub fn print_evaluation(e: &Evaluation, extra: &[(&str, serde_json::Value)]) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(e)?;
    if let serde_json::Value::Object(m) = &mut v {
        for (k, x) in extra {
            m.insert((*k).to_owned(), x.clone());
        }
    }
    println!("{}", serde_json::to_string(&v)?);
    Ok(())
}
