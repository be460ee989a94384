//! `verdict`: the command-line face of the model core.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "verdict",
    version,
    about = "Verdict: real-time fraud scoring. Simulate data, train, evaluate, import and score models."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate transactions with the Fraud Detection Handbook's simulator
    Simulate(cmd::simulate::Args),
    /// Compute the 15 features (plus label) of a transaction file, for use in Python
    Features(cmd::features::Args),
    /// Train a gradient-boosted model on a date range of a labelled file
    Train(cmd::train::Args),
    /// Evaluate a model on a test date range (AUC, average precision, card precision@100)
    Evaluate(cmd::evaluate::Args),
    /// Run the whole handbook protocol: simulate, train, evaluate
    Handbook(cmd::handbook::Args),
    /// Convert a LightGBM or XGBoost model into a Verdict artifact
    Import(cmd::import::Args),
    /// Score a transaction file offline, with decisions and reasons
    Score(cmd::score::Args),
    /// Replay a ruleset over a labelled transaction file: per-rule hits, precision, recall, mix
    Backtest(cmd::backtest::Args),
    /// Create, list, rotate or revoke API keys (stored as hashes in the table)
    Keys(cmd::keys::Args),
    /// Add, list or remove the OIDC issuers whose bearer JWTs the api accepts
    Oidc(cmd::oidc::Args),
    /// Show or change how many items a tenant's customer and terminal aggregates are split over
    Shards(cmd::shards::Args),
    /// Create the table and buckets if missing; optionally upload and activate a tenant's model
    Bootstrap(cmd::bootstrap::Args),
    /// Load a simulated history into a tenant's customer and terminal aggregates, with the labels known by then
    History(cmd::history::Args),
    /// Score the last transactions of a file over HTTP against the local stack; report mix and latency
    Load(cmd::load::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Features(a) => cmd::features::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Evaluate(a) => cmd::evaluate::run(a),
        Command::Handbook(a) => cmd::handbook::run(a),
        Command::Import(a) => cmd::import::run(a),
        Command::Score(a) => cmd::score::run(a),
        Command::Backtest(a) => cmd::backtest::run(a),
        Command::Keys(a) => cmd::keys::run(a),
        Command::Oidc(a) => cmd::oidc::run(a),
        Command::Shards(a) => cmd::shards::run(a),
        Command::Bootstrap(a) => cmd::bootstrap::run(a),
        Command::History(a) => cmd::history::run(a),
        Command::Load(a) => cmd::load::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
