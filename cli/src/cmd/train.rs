use super::pipeline::{parse_date, Dataset, ParamArgs, Window};
use std::path::PathBuf;
use verdict::domain::model::Model;

/// Train a model on the labelled transactions of a date range.
#[derive(clap::Args)]
pub struct Args {
    /// Labelled transaction file (.csv or .ndjson, optionally .gz), e.g. from `verdict simulate`
    #[arg(long)]
    data: PathBuf,
    /// First day of training (UTC), e.g. 2018-07-25
    #[arg(long)]
    train_start: String,
    /// Days of training data
    #[arg(long, default_value_t = 7)]
    train_days: u32,
    /// Label delay in days; recorded so evaluation can rebuild the protocol
    #[arg(long, default_value_t = 7)]
    delay_days: u32,
    /// Where to write the model artifact
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    params: ParamArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let window = Window {
        train_start: parse_date(&a.train_start)?,
        train_days: a.train_days,
        delay_days: a.delay_days,
        test_days: 0,
    };
    let ds = Dataset::load(&a.data)?;
    let artifact = ds.train(&window, &a.params.params())?;
    artifact.save(&a.out)?;
    let model = Model::load(&a.out)?;
    eprintln!(
        "trained {} trees on {} rows ({} frauds) in {}s -> {} (version {})",
        model.tree_count(),
        artifact.training["rows"],
        artifact.training["frauds"],
        artifact.training["train_seconds"],
        a.out.display(),
        model.version()
    );
    Ok(())
}
