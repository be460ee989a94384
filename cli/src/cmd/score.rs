use super::pipeline::Dataset;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use verdict::domain::decision::{risk_score, Thresholds};
use verdict::domain::model::Model;

/// Score a transaction file offline: features from the file's own history, the model's score,
/// a decision and the top reasons for every row. Writes .csv or .ndjson by extension.
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
    /// Reasons per row
    #[arg(long, default_value_t = 3)]
    reasons: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let thresholds = Thresholds::new(a.review, a.block)?;
    let model = Model::load(&a.model)?;
    let ds = Dataset::load(&a.data)?;
    let ndjson = a.out.extension().is_some_and(|e| e == "ndjson" || e == "jsonl");
    let file = std::fs::File::create(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    if !ndjson {
        writeln!(w, "id,decision,score,risk_score,reason_codes,reasons")?;
    }
    let mut mix = [0usize; 3];
    let pb = super::progress::bar("score");
    pb.set_length(ds.rows.len() as u64);
    for (i, (row, x)) in ds.rows.iter().zip(&ds.features).enumerate() {
        let s = model.score(x);
        let decision = thresholds.decide(s.probability);
        mix[decision as usize] += 1;
        let reasons = model.reasons(x, &s, a.reasons);
        if ndjson {
            let line = serde_json::json!({
                "id": row.tx.id, "decision": decision, "score": s.probability,
                "risk_score": risk_score(s.probability), "reasons": reasons,
                "model": {"id": model.artifact.name, "version": model.version()},
            });
            serde_json::to_writer(&mut w, &line)?;
            w.write_all(b"\n")?;
        } else {
            let codes: Vec<String> = reasons.iter().map(|r| r.code()).collect();
            let texts: Vec<String> = reasons.iter().map(|r| r.to_string().replace('"', "'")).collect();
            writeln!(
                w,
                "{},{},{:.6},{},{},\"{}\"",
                row.tx.id,
                decision.as_str(),
                s.probability,
                risk_score(s.probability),
                codes.join("|"),
                texts.join(" | ")
            )?;
        }
        if i % 65_536 == 0 {
            pb.set_position(i as u64);
        }
    }
    pb.finish_and_clear();
    w.flush()?;
    eprintln!(
        "scored {} transactions with {} (version {}): approve {}, review {}, block {} -> {}",
        ds.rows.len(),
        model.artifact.name,
        model.version(),
        mix[0],
        mix[1],
        mix[2],
        a.out.display()
    );
    Ok(())
}
