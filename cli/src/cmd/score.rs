use super::pipeline::Dataset;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use verdict::domain::batch::{write_result_header, ResultRow};
use verdict::domain::csv_line::CsvLine;
use verdict::domain::io::Format;
use verdict::domain::model::Model;
use verdict::domain::pipeline;
use verdict::domain::policy::{Policy, Thresholds};
use verdict::offline::rules_file::{load_lists, load_ruleset, ListArg};

/// Score a transaction file offline: features from the file's own history, then the same decision
/// pipeline (model and policy) as the API and batch scoring. Writes .csv or .ndjson by extension,
/// in batch scoring's results format.
#[derive(clap::Args)]
pub struct Args {
    /// Model artifact
    #[arg(long)]
    model: PathBuf,
    /// Transaction file (.csv or .ndjson, optionally .gz); labels, if present, are ignored for scoring
    #[arg(long)]
    data: PathBuf,
    /// Output file (.csv or .ndjson)
    #[arg(long)]
    out: PathBuf,
    /// Score from which a transaction goes to review
    #[arg(long, default_value_t = Thresholds::default().review)]
    review: f64,
    /// Score from which a transaction is blocked
    #[arg(long, default_value_t = Thresholds::default().block)]
    block: f64,
    /// A ruleset to apply ({"mode": …, "rules": [rule, …]}, the API's rule bodies)
    #[arg(long)]
    rules: Option<PathBuf>,
    /// A list the rules use: NAME=KIND:PATH (one value per line); repeat for more
    #[arg(long = "list", requires = "rules")]
    lists: Vec<ListArg>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let thresholds = Thresholds::new(a.review, a.block)?;
    let policy = match &a.rules {
        None => Policy::thresholds(thresholds),
        Some(path) => {
            let (_, compiled) = load_ruleset(path).map_err(anyhow::Error::msg)?;
            Policy::with_rules(
                thresholds,
                Arc::new(compiled),
                Arc::new(load_lists(&a.lists).map_err(anyhow::Error::msg)?),
            )
        }
    };
    let model = Model::load(&a.model)?;
    let ds = Dataset::load(&a.data)?;
    let format = if a.out.extension().is_some_and(|e| e == "ndjson" || e == "jsonl") {
        Format::Ndjson
    } else {
        Format::Csv
    };
    let file = std::fs::File::create(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut csv = CsvLine::new();
    write_result_header(format, &mut csv, &mut buf);
    let mut mix = [0usize; 3];
    let pb = super::progress::bar("score");
    pb.set_length(ds.rows.len() as u64);
    for (i, (row, x)) in ds.rows.iter().zip(&ds.features).enumerate() {
        let decided = pipeline::decide(&model, &policy, &row.tx, row.extras(), x);
        mix[decided.decision as usize] += 1;
        ResultRow::new(&row.tx, &decided, model.version()).write(format, &mut csv, &mut buf);
        if buf.len() >= 1 << 16 {
            w.write_all(&buf)?;
            buf.clear();
        }
        if i % 65_536 == 0 {
            pb.set_position(i as u64);
        }
    }
    w.write_all(&buf)?;
    pb.finish_and_clear();
    w.flush()?;
    eprintln!(
        "scored {} transactions with {} (version {}) under {}: approve {}, review {}, block {} -> {}",
        ds.rows.len(),
        model.artifact.name,
        model.version(),
        policy.version(),
        mix[0],
        mix[1],
        mix[2],
        a.out.display()
    );
    Ok(())
}
