//! `verdict features`: the feature matrix of a transaction file, for use outside Verdict.

use super::progress;
use anyhow::Context;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;
use verdict::features::{OfflineFeatures, FEATURE_NAMES};
use verdict::io::{sort_by_time, TransactionReader};

/// Rows between two progress updates.
const PROGRESS_EVERY: usize = 16_384;

#[derive(clap::Args)]
pub struct Args {
    /// Transaction file to read: .csv, .ndjson or .jsonl, optionally followed by .gz
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// CSV file to write: `id`, the 15 features in model order, then `label_fraud` (1, 0, or empty
    /// when the row has no label)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if !args.out.to_string_lossy().to_ascii_lowercase().ends_with(".csv") {
        anyhow::bail!("{}: the feature matrix is written as CSV; name the file *.csv", args.out.display());
    }

    let bar = progress::bar("reading");
    let mut txs = Vec::new();
    for (i, row) in TransactionReader::open(&args.data)?.enumerate() {
        txs.push(row?);
        if i % PROGRESS_EVERY == 0 {
            bar.set_length(i as u64 + 1);
            bar.set_position(i as u64);
        }
    }
    // Features read each entity's past, so rows must be walked in time order.
    sort_by_time(&mut txs);

    progress::phase(&bar, "features", txs.len() as u64);
    let write_err = || format!("cannot write {}", args.out.display());
    let mut out = BufWriter::with_capacity(1 << 16, File::create(&args.out).with_context(write_err)?);
    writeln!(out, "id,{},label_fraud", FEATURE_NAMES.join(",")).with_context(write_err)?;
    let mut offline = OfflineFeatures::new();
    for (i, t) in txs.iter().enumerate() {
        let f = offline.push(&t.tx, t.label);
        write!(out, "{}", t.tx.id).with_context(write_err)?;
        for v in f.as_slice() {
            // `{}` prints the shortest text that reads back as the same f64.
            write!(out, ",{v}").with_context(write_err)?;
        }
        match t.label {
            Some(l) => writeln!(out, ",{}", u8::from(l.fraud)),
            None => writeln!(out, ","),
        }
        .with_context(write_err)?;
        if i % PROGRESS_EVERY == 0 {
            bar.set_position(i as u64);
        }
    }
    out.flush().with_context(write_err)?;
    bar.finish_and_clear();
    println!(
        "{} rows x {} features written to {} in {:.2} s",
        txs.len(),
        FEATURE_NAMES.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
