//! `verdict simulate`: the Fraud Detection Handbook's generator, written straight to a file.

use super::progress;
use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;
use verdict::domain::io::{FileKind, TransactionWriter};
use verdict::offline::sim::{parse_date, Date, SimConfig, Simulation};

/// Rows between two progress updates while writing.
const PROGRESS_EVERY: usize = 16_384;

#[derive(clap::Args)]
pub struct Args {
    /// Number of customers (cards)
    #[arg(long, value_name = "N", default_value_t = SimConfig::default().customers)]
    customers: usize,
    /// Number of terminals (merchants)
    #[arg(long, value_name = "M", default_value_t = SimConfig::default().terminals)]
    terminals: usize,
    /// Number of days to simulate
    #[arg(long, value_name = "D", default_value_t = SimConfig::default().days)]
    days: u32,
    /// First simulated day (YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DATE", default_value = "2018-04-01", value_parser = parse_date)]
    start: Date,
    /// Random seed: the same seed and sizes give a byte-identical file
    #[arg(long, value_name = "S", default_value_t = SimConfig::default().seed)]
    seed: u64,
    /// Output file: .csv, .ndjson or .jsonl, optionally followed by .gz
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    // Refuse a bad file name before spending the time to simulate.
    FileKind::from_path(&args.out)?;
    let cfg = SimConfig {
        customers: args.customers,
        terminals: args.terminals,
        days: args.days,
        start: args.start,
        seed: args.seed,
    };

    let bar = progress::bar("simulating");
    let sim = Simulation::run(&cfg, &mut progress::callback(&bar)).context("cannot simulate")?;

    progress::phase(&bar, "writing", sim.len() as u64);
    let mut out = TransactionWriter::create(&args.out)?;
    for (i, t) in sim.iter().enumerate() {
        out.write(&t)?;
        if i % PROGRESS_EVERY == 0 {
            bar.set_position(i as u64);
        }
    }
    out.finish()?;
    bar.finish_and_clear();

    let s = sim.summary();
    println!(
        "{} transactions, {} frauds ({:.3}%; scenario 1: {}, scenario 2: {}, scenario 3: {}) written to {} in {:.2} s",
        s.transactions,
        s.frauds,
        100.0 * s.fraud_rate(),
        s.by_scenario[1],
        s.by_scenario[2],
        s.by_scenario[3],
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
