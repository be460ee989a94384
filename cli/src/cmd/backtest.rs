//! `verdict backtest`: what a ruleset would have decided on a transaction file, beside a baseline
//! ruleset (or the thresholds alone), with the file's labels: per-rule hits, precision and recall,
//! and how the decision mix would move. The same replay as `POST /v1/rulesets/{version}/backtest`,
//! with features from the file's own history and scores from the model.

use super::pipeline::Dataset;
use std::path::PathBuf;
use std::time::Instant;
use verdict::domain::backtest::{Backtest, BacktestReport, Case};
use verdict::domain::model::Model;
use verdict::domain::policy::Thresholds;
use verdict::offline::rules_file::{load_lists, load_ruleset, ListArg};

#[derive(clap::Args)]
pub struct Args {
    /// Model artifact that scores the rows
    #[arg(long)]
    model: PathBuf,
    /// Transaction file (.csv or .ndjson, optionally .gz); its labels are the ground truth
    #[arg(long)]
    data: PathBuf,
    /// The ruleset to try: {"mode": …, "rules": [rule, …]}
    #[arg(long)]
    rules: PathBuf,
    /// The ruleset it is compared with (default: the score thresholds alone)
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// A list the rules use: NAME=KIND:PATH (one value per line); repeat for more
    #[arg(long = "list")]
    lists: Vec<ListArg>,
    #[arg(long, default_value_t = Thresholds::default().review)]
    review: f64,
    #[arg(long, default_value_t = Thresholds::default().block)]
    block: f64,
    /// Only rows on or after this day (YYYY-MM-DD); the history before it still feeds features
    #[arg(long)]
    from: Option<String>,
    /// Print the report as JSON only
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let thresholds = Thresholds::new(a.review, a.block)?;
    let model = Model::load(&a.model)?;
    let (ruleset, draft) = load_ruleset(&a.rules).map_err(anyhow::Error::msg)?;
    let baseline = a
        .baseline
        .as_deref()
        .map(load_ruleset)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let lists = load_lists(&a.lists).map_err(anyhow::Error::msg)?;
    let from = a.from.as_deref().map(super::pipeline::parse_date).transpose()?;
    let ds = Dataset::load(&a.data)?;
    let mut run = Backtest::new(&ruleset, &draft, baseline.as_ref().map(|b| &b.1), thresholds, &lists)
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let pb = super::progress::bar("backtest");
    pb.set_length(ds.rows.len() as u64);
    for (i, (row, x)) in ds.rows.iter().zip(&ds.features).enumerate() {
        if from.is_some_and(|d| row.tx.occurred_at.inner().date() < d) {
            continue;
        }
        let score = model.score(x).probability;
        run.push(&Case {
            transaction: &row.tx,
            extras: row.extras(),
            features: x,
            score,
            model_version: model.version(),
            fraud: row.label.map(|l| l.fraud),
        });
        if i % 65_536 == 0 {
            pb.set_position(i as u64);
        }
    }
    pb.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let report = run.report();
    if !a.json {
        print_table(&report);
        eprintln!(
            "replayed {} decisions in {seconds:.2} s ({:.0} decisions/s, scoring included)",
            report.decisions,
            report.decisions as f64 / seconds.max(1e-9)
        );
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn print_table(r: &BacktestReport) {
    let pct = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0));
    println!(
        "{} decisions, {} labelled, {} frauds; baseline: {}",
        r.decisions,
        r.labelled,
        r.frauds,
        r.baseline_version
            .map_or("thresholds only".to_owned(), |v| format!("ruleset {v}"))
    );
    println!(
        "{:<28} {:>7} {:>6} {:>8} {:>7} {:>6} {:>6} {:>9} {:>7}",
        "rule", "action", "mode", "hits", "rate", "fraud", "fp", "precision", "recall"
    );
    for s in &r.rules {
        println!(
            "{:<28} {:>7} {:>6} {:>8} {:>6.2}% {:>6} {:>6} {:>9} {:>7}{}",
            s.rule_id.as_str(),
            s.action.as_str(),
            s.mode.as_str(),
            s.hits,
            s.hit_rate * 100.0,
            s.frauds_caught,
            s.false_positives,
            pct(s.precision),
            pct(s.recall),
            if s.errors > 0 {
                format!("  ({} errors)", s.errors)
            } else {
                String::new()
            }
        );
    }
    for (name, o) in [("baseline", r.baseline), ("draft", r.draft)] {
        println!(
            "{name:<9} approve {:>8}  review {:>7}  block {:>7}  frauds stopped {:>6}  legit stopped {:>6}",
            o.mix.approve, o.mix.review, o.mix.block, o.frauds_stopped, o.legit_stopped
        );
    }
    if r.changes.is_empty() {
        println!("no decision changes");
    }
    for (change, n) in &r.changes {
        println!("  {change:<18} {n}");
    }
}
