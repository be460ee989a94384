use super::pipeline::{parse_date, print_evaluation, Dataset, Window};
use std::path::PathBuf;
use verdict::domain::model::Model;

/// Evaluate a model on the handbook protocol's test set: prints one JSON line with
/// auc, average_precision, card_precision_at_100, transactions and frauds.
#[derive(clap::Args)]
pub struct Args {
    /// Labelled transaction file (.csv or .ndjson, optionally .gz)
    #[arg(long)]
    data: PathBuf,
    /// Model artifact from `verdict train` or `verdict import`
    #[arg(long)]
    model: PathBuf,
    /// First test day (UTC), e.g. 2018-08-08
    #[arg(long)]
    test_start: String,
    /// Number of test days
    #[arg(long, default_value_t = 7)]
    test_days: u32,
    /// Training days before the delay; customers with frauds there are excluded from the test set
    #[arg(long, default_value_t = 7)]
    train_days: u32,
    /// Label delay in days between training and test
    #[arg(long, default_value_t = 7)]
    delay_days: u32,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let model = Model::load(&a.model)?;
    let window = Window::ending_at(parse_date(&a.test_start)?, a.train_days, a.delay_days, a.test_days);
    let ds = Dataset::load(&a.data)?;
    let e = ds.evaluate(&model, &window);
    print_evaluation(&e, &[])
}
