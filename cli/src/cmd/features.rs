//! `verdict features`: the feature matrix of a transaction file, for use outside Verdict.

use super::progress;
use anyhow::Context;
use indicatif::ProgressBar;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use verdict::domain::csv_line::CsvLine;
use verdict::domain::features::{OfflineFeatures, FEATURE_NAMES};
use verdict::domain::io::{read_all, sort_by_time, TransactionReader};
use verdict::domain::LabelledTransaction;

/// Rows between two progress updates.
const PROGRESS_EVERY: u64 = 16_384;

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
        anyhow::bail!(
            "{}: the feature matrix is written as CSV; name the file *.csv",
            args.out.display()
        );
    }

    // Features read each entity's past, so rows are walked in `sort_by_time` order. A file already
    // in that order (as `verdict simulate` writes them) streams through in constant memory; any
    // other is read whole and sorted.
    let bar = progress::counter("features");
    let rows = TransactionReader::open(&args.data)?.map(|r| r.map_err(anyhow::Error::from));
    let rows = match write_features(rows, &args.out, &bar)? {
        Some(rows) => rows,
        None => {
            bar.set_message("sorting");
            let mut txs = read_all(&args.data)?;
            sort_by_time(&mut txs);
            bar.set_message("features");
            write_features(txs.into_iter().map(Ok), &args.out, &bar)?.context("rows are out of order after sorting")?
        }
    };
    bar.finish_and_clear();
    println!(
        "{rows} rows x {} features written to {} in {:.2} s",
        FEATURE_NAMES.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes the matrix of `rows`, or returns `None` at the first row out of time order.
fn write_features(
    rows: impl Iterator<Item = anyhow::Result<LabelledTransaction>>,
    out: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<Option<u64>> {
    let write_err = || format!("cannot write {}", out.display());
    let mut w = BufWriter::with_capacity(1 << 16, File::create(out).with_context(write_err)?);
    // One line at a time through the csv crate, into `line`.
    let (mut csv, mut line) = (CsvLine::new(), Vec::with_capacity(512));
    let header = std::iter::once("id").chain(FEATURE_NAMES).chain(["label_fraud"]);
    csv.record(&mut line, header);
    w.write_all(&line).with_context(write_err)?;
    let mut offline = OfflineFeatures::new();
    let mut last: Option<LabelledTransaction> = None;
    let mut n = 0;
    bar.set_position(0);
    for row in rows {
        let t = row?;
        if let Some(prev) = &last {
            if (&t.tx.occurred_at, &t.tx.id) < (&prev.tx.occurred_at, &prev.tx.id) {
                return Ok(None);
            }
        }
        let f = offline.push(&t.tx, t.label);
        line.clear();
        csv.field(&mut line, t.tx.id.as_str());
        for v in f.as_slice() {
            // `Display` prints the shortest text that reads back as the same f64.
            csv.display(&mut line, v);
        }
        match t.label {
            Some(l) => csv.display(&mut line, u8::from(l.fraud)),
            None => csv.field(&mut line, ""),
        }
        csv.end(&mut line);
        w.write_all(&line).with_context(write_err)?;
        n += 1;
        if n % PROGRESS_EVERY == 0 {
            bar.set_position(n);
        }
        last = Some(t);
    }
    w.flush().with_context(write_err)?;
    Ok(Some(n))
}
