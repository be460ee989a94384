use super::pipeline::{print_evaluation, Dataset, ParamArgs, Window};
use std::path::PathBuf;
use std::time::Instant;
use verdict::domain::model::Model;
use verdict::offline::sim::{simulate, SimConfig};

/// Run the whole handbook protocol at default sizes: simulate 5,000 customers x 10,000 terminals
/// x 183 days, train on 7 days from 2018-07-25, wait 7 days, test on 7 days. The last line of
/// output is one JSON object with the metrics and timings.
#[derive(clap::Args)]
pub struct Args {
    /// Simulator seed
    #[arg(long, default_value_t = SimConfig::default().seed)]
    seed: u64,
    /// Optionally keep the trained model here
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    params: ParamArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let cfg = SimConfig {
        seed: a.seed,
        ..SimConfig::default()
    };
    let pb = super::progress::bar("simulate");
    let rows = simulate(&cfg, &mut super::progress::callback(&pb))?;
    pb.finish_and_clear();
    let simulate_s = started.elapsed().as_secs_f64();

    let t = Instant::now();
    let ds = Dataset::from_rows(rows);
    let features_s = t.elapsed().as_secs_f64();

    let window = Window {
        train_start: super::pipeline::parse_date("2018-07-25")?,
        train_days: 7,
        delay_days: 7,
        test_days: 7,
    };
    let t = Instant::now();
    let mut artifact = ds.train(&window, &a.params.params())?;
    let train_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let model = Model::seal(artifact.clone())?;
    let e = ds.evaluate(&model, &window);
    let evaluate_s = t.elapsed().as_secs_f64();
    eprintln!(
        "simulated {} transactions; trained {} trees on {} rows; tested from {}",
        ds.rows.len(),
        model.tree_count(),
        artifact.training["rows"],
        window.test_start()
    );
    if let Some(out) = &a.out {
        for (k, v) in [
            ("auc", e.auc),
            ("average_precision", e.average_precision),
            ("card_precision_at_100", e.card_precision_at_100),
        ] {
            if let Some(v) = v {
                artifact.metrics.insert(k.into(), v);
            }
        }
        artifact.save(out)?;
    }
    let r = |x: f64| serde_json::json!((x * 1000.0).round() / 1000.0);
    print_evaluation(
        &e,
        &[
            ("seed", a.seed.into()),
            ("simulate_seconds", r(simulate_s)),
            ("features_seconds", r(features_s)),
            ("train_seconds", r(train_s)),
            ("evaluate_seconds", r(evaluate_s)),
            ("total_seconds", r(started.elapsed().as_secs_f64())),
        ],
    )
}
