//! `verdict import`: a LightGBM or XGBoost model trained in Python becomes a Verdict artifact.

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use std::path::PathBuf;
use verdict::domain::model::import::{import, ImportFormat};
use verdict::domain::model::Model;

#[derive(clap::Args)]
#[command(
    after_help = "Features are matched to Verdict's 15 features by name; a model without names must have \
exactly 15 features, in Verdict's order. The artifact scores like the Python library's own predict (to 1e-6).\n\n\
Example:\n  verdict import --format lightgbm model.txt --out fraud.vmodel --name fraud-lgbm"
)]
pub struct Args {
    /// Format of IN: `lightgbm` (text from Booster.save_model) or `xgboost` (JSON from save_model("x.json"))
    #[arg(long, value_name = "FORMAT", value_parser = PossibleValuesParser::new(["lightgbm", "xgboost"]).try_map(|s| s.parse::<ImportFormat>()))]
    pub format: ImportFormat,

    /// The model file to convert
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Where to write the Verdict model artifact (overwritten if it exists)
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,

    /// Name stored in the artifact [default: IN's file name without extension]
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let origin = args.input.display().to_string();
    let bytes = std::fs::read(&args.input).with_context(|| format!("cannot read {origin}"))?;
    let mut artifact = import(args.format, &origin, &bytes)?;
    if let Some(name) = args.name {
        anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
        artifact.name = name;
    }
    artifact.save(&args.out)?;
    // Load what was written, so the figures printed are those of the file on disk.
    let model = Model::load(&args.out)?;
    println!("imported {} model {origin} -> {}", args.format, args.out.display());
    println!("name     {}", model.artifact.name);
    println!("version  {}", model.version());
    println!("trees    {}", model.tree_count());
    println!("sha256   {}", model.sha256);
    Ok(())
}
