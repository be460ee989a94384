//! `verdict load`: scores the most recent transactions of a file over HTTP against a local stack
//! (`cargo lambda watch`), from `--concurrency` clients (each one request at a time), and reports
//! the decision mix, the rate and the latencies. Where the file holds labels (a simulation
//! does), the mix is also set against them: frauds blocked, sent to review and missed, and the
//! legitimate payments blocked or reviewed (false positives).
//! Exits non-zero if any request failed.
//!
//! Bounded on purpose: at most [`MAX_COUNT`] requests and `--max-seconds`, and only to a loopback
//! address over plain HTTP. It is a smoke test and a demo, not a load generator for remote hosts.

use super::progress;
use anyhow::Context;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use verdict::domain::io::TransactionReader;
use verdict::domain::{Label, Transaction};

/// The most requests one run sends.
pub const MAX_COUNT: usize = 10_000;
/// Consecutive transport errors (nothing answering) after which the run stops.
const MAX_TRANSPORT_ERRORS: usize = 5;
/// Failed responses shown in full (the rest are counted).
const SHOWN_FAILURES: usize = 5;
/// The most clients one run starts: well under the ~100 simultaneous connections past which
/// `cargo lambda watch` 1.9.2 stops answering for good (README, "Run it locally").
pub const MAX_CONCURRENCY: usize = 64;

#[derive(clap::Args)]
pub struct Args {
    /// Base URL of the API: a loopback address, plain HTTP
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9000/lambda-url/api")]
    url: String,
    /// File holding the API key (e.g. .local/api-key from `make dev`); else the VERDICT_API_KEY variable
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Transactions to send (.csv or .ndjson, optionally .gz): the last --count of them, in time order
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// How many transactions to score (at most 10000)
    #[arg(long, value_name = "N", default_value_t = 300)]
    count: usize,
    /// Stop sending after this many seconds (what was not sent counts as failed)
    #[arg(long, value_name = "S", default_value_t = 300)]
    max_seconds: u64,
    /// Timeout of one request, in seconds
    #[arg(long, value_name = "S", default_value_t = 30)]
    timeout: u64,
    /// Clients sending at once, each one request at a time (at most 64: `cargo lambda watch`
    /// 1.9.2 hangs past about 100 simultaneous connections); serve the api with as many
    /// instances (`cargo lambda watch --concurrency N`) to measure more than one
    #[arg(long, value_name = "N", default_value_t = 1)]
    concurrency: usize,
}

/// Accepts only `http://` on 127.0.0.0/8, `localhost` or `[::1]`; returns the URL without a
/// trailing slash.
pub fn loopback_url(raw: &str) -> anyhow::Result<String> {
    let rest = raw
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url {raw:?}: must start with http:// (the local stack speaks plain HTTP)"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback =
        host == "localhost" || host == "::1" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback,
        "--url {raw:?}: only a loopback address (127.0.0.1, localhost, [::1]) may be targeted"
    );
    Ok(raw.trim_end_matches('/').to_owned())
}

fn read_key(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let raw = match file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read the API key from {}", path.display()))?
        }
        None => std::env::var("VERDICT_API_KEY")
            .map_err(|_| anyhow::anyhow!("no API key: give --key-file FILE or set VERDICT_API_KEY"))?,
    };
    let key = raw.trim().to_owned();
    anyhow::ensure!(
        key.starts_with("vk_") && key.is_ascii() && !key.contains(char::is_whitespace),
        "the API key {} is not a Verdict key (vk_…)",
        file.map_or("in VERDICT_API_KEY".to_owned(), |p| format!("in {}", p.display()))
    );
    Ok(key)
}

/// The last `count` transactions of the file with their labels, in time order; memory stays
/// bounded by `count`.
fn last_transactions(path: &PathBuf, count: usize) -> anyhow::Result<Vec<(Transaction, Option<Label>)>> {
    let mut kept = VecDeque::with_capacity(count);
    for row in TransactionReader::open(path)? {
        let row = row?;
        if kept.len() == count {
            kept.pop_front();
        }
        kept.push_back((row.tx, row.label));
    }
    let mut txs: Vec<(Transaction, Option<Label>)> = kept.into();
    txs.sort_by(|(a, _), (b, _)| (a.occurred_at, a.id.as_str()).cmp(&(b.occurred_at, b.id.as_str())));
    Ok(txs)
}

/// Decisions by the file's label: `[fraud, legit]` × `[approve, review, block]`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LabelMix {
    pub fraud: [usize; 3],
    pub legit: [usize; 3],
}

impl LabelMix {
    /// Counts one decision; unlabelled transactions and other decisions are not counted.
    pub fn add(&mut self, decision: &str, label: Option<Label>) {
        let (Some(label), Some(i)) = (
            label,
            ["approve", "review", "block"].iter().position(|d| *d == decision),
        ) else {
            return;
        };
        if label.fraud {
            self.fraud[i] += 1;
        } else {
            self.legit[i] += 1;
        }
    }

    /// The lines the summary prints, or none when nothing labelled was decided.
    pub fn lines(&self) -> Vec<String> {
        let frauds: usize = self.fraud.iter().sum();
        let legit: usize = self.legit.iter().sum();
        if frauds + legit == 0 {
            return Vec::new();
        }
        let share = |n: usize, of: usize| 100.0 * n as f64 / of.max(1) as f64;
        let [missed, reviewed, blocked] = self.fraud;
        let [approved, legit_reviewed, legit_blocked] = self.legit;
        vec![
            format!(
                "frauds (the file's labels): {frauds}: blocked {blocked}, sent to review {reviewed}, missed {missed} \
                 (caught {:.1}%)",
                share(blocked + reviewed, frauds)
            ),
            format!(
                "legitimate: {legit}: approved {approved}; false positives: blocked {legit_blocked}, \
                 sent to review {legit_reviewed} ({:.1}%)",
                share(legit_blocked + legit_reviewed, legit)
            ),
        ]
    }
}

/// The request body `POST /v1/transactions` takes (the file's labels stay out of it).
pub fn body(tx: &Transaction) -> String {
    serde_json::json!({
        "id": tx.id.as_str(),
        "occurred_at": tx.occurred_at.to_rfc3339(),
        "amount": tx.amount.minor,
        "currency": tx.amount.currency.as_str(),
        "customer_id": tx.customer_id.as_str(),
        "terminal_id": tx.terminal_id.as_str(),
    })
    .to_string()
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return format!("{name}: none");
    }
    format!(
        "{name}: p50 {:.1}  p90 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&values, 0.50),
        percentile(&values, 0.90),
        percentile(&values, 0.95),
        percentile(&values, 0.99),
        values[values.len() - 1]
    )
}

/// What one response said.
enum Outcome {
    Decided {
        decision: String,
        replay: bool,
        processing_ms: Option<f64>,
    },
    Failed(String),
}

fn outcome(status: u16, text: &str) -> Outcome {
    let short: String = text.chars().take(300).collect();
    if !(200..300).contains(&status) {
        return Outcome::Failed(format!("HTTP {status}: {short}"));
    }
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return Outcome::Failed(format!("HTTP {status} but not JSON: {short}")),
    };
    match v.get("decision").and_then(|d| d.as_str()) {
        Some(d) => Outcome::Decided {
            decision: d.to_owned(),
            replay: v.get("idempotent_replay").and_then(|r| r.as_bool()).unwrap_or(false),
            processing_ms: v.get("processing_ms").and_then(|p| p.as_f64()),
        },
        None => Outcome::Failed(format!("HTTP {status} without a decision: {short}")),
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let base = loopback_url(&a.url)?;
    anyhow::ensure!(
        (1..=MAX_COUNT).contains(&a.count),
        "--count {}: must be 1 to {MAX_COUNT}",
        a.count
    );
    anyhow::ensure!(
        a.max_seconds > 0 && a.timeout > 0,
        "--max-seconds and --timeout must be positive"
    );
    anyhow::ensure!(
        (1..=MAX_CONCURRENCY).contains(&a.concurrency),
        "--concurrency {}: must be 1 to {MAX_CONCURRENCY}",
        a.concurrency
    );
    let key = read_key(a.key_file.as_ref())?;
    let txs = last_transactions(&a.data, a.count)?;
    anyhow::ensure!(!txs.is_empty(), "{} holds no transactions", a.data.display());

    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Never through a proxy from the environment: the target is this machine.
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(a.timeout)))
        .build();
    let agent: ureq::Agent = config.into();

    // Fail fast, with the URL, when nothing answers.
    let health = format!("{base}/v1/health");
    match agent.get(&health).call() {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => anyhow::bail!(
            "GET {health} answered HTTP {}; is the api running?",
            r.status().as_u16()
        ),
        Err(e) => anyhow::bail!("GET {health}: {e}; is `make dev` (cargo lambda watch) running?"),
    }

    let url = format!("{base}/v1/transactions");
    let auth = format!("Bearer {key}");
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let started = Instant::now();
    let pb = progress::bar("scoring");
    pb.set_length(txs.len() as u64);
    let next = AtomicUsize::new(0);
    // Consecutive requests, over all clients, that got no answer.
    let unanswered = AtomicUsize::new(0);
    type Answer = Result<(u16, String, f64), String>;
    let results: Mutex<Vec<(String, Option<Label>, Answer)>> = Mutex::new(Vec::with_capacity(txs.len()));
    std::thread::scope(|scope| {
        for _ in 0..a.concurrency {
            scope.spawn(|| loop {
                if Instant::now() >= deadline || unanswered.load(Ordering::Relaxed) >= MAX_TRANSPORT_ERRORS {
                    return;
                }
                let Some((tx, label)) = txs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let t0 = Instant::now();
                let result = agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(body(tx));
                pb.inc(1);
                let answer = match result {
                    Ok(mut r) => {
                        unanswered.store(0, Ordering::Relaxed);
                        let status = r.status().as_u16();
                        let text = r.body_mut().read_to_string().unwrap_or_default();
                        Ok((status, text, t0.elapsed().as_secs_f64() * 1e3))
                    }
                    Err(e) => {
                        unanswered.fetch_add(1, Ordering::Relaxed);
                        Err(e.to_string())
                    }
                };
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((tx.id.to_string(), *label, answer));
            });
        }
    });
    pb.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let transport_errors = unanswered.load(Ordering::Relaxed);

    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let sent = results.len();
    let mut latencies = Vec::with_capacity(sent);
    let mut processing = Vec::with_capacity(sent);
    let mut mix: BTreeMap<String, usize> = BTreeMap::new();
    let mut replays = 0usize;
    let mut failures: Vec<String> = Vec::new();
    let mut by_label = LabelMix::default();
    for (id, label, answer) in results {
        match answer {
            Err(e) => failures.push(format!("{id}: {e}")),
            Ok((status, text, ms)) => match outcome(status, &text) {
                Outcome::Decided {
                    decision,
                    replay,
                    processing_ms,
                } => {
                    latencies.push(ms);
                    processing.extend(processing_ms);
                    by_label.add(&decision, label);
                    *mix.entry(decision).or_default() += 1;
                    replays += replay as usize;
                }
                Outcome::Failed(why) => failures.push(format!("{id}: {why}")),
            },
        }
    }

    let decided: usize = mix.values().sum();
    let unsent = txs.len() - sent;
    println!(
        "scored {decided} of {} transactions in {elapsed:.1} s ({:.1}/s) at {url}, {} client{}",
        txs.len(),
        sent as f64 / elapsed.max(1e-9),
        a.concurrency,
        if a.concurrency == 1 { "" } else { "s" }
    );
    let parts: Vec<String> = ["approve", "review", "block"]
        .iter()
        .map(|d| d.to_string())
        .chain(
            mix.keys()
                .filter(|k| !["approve", "review", "block"].contains(&k.as_str()))
                .cloned(),
        )
        .map(|d| {
            let n = mix.get(&d).copied().unwrap_or(0);
            format!("{d} {n} ({:.1}%)", 100.0 * n as f64 / decided.max(1) as f64)
        })
        .collect();
    println!(
        "decisions: {}{}",
        parts.join(", "),
        if replays > 0 {
            format!("; {replays} idempotent replays")
        } else {
            String::new()
        }
    );
    for line in by_label.lines() {
        println!("{line}");
    }
    println!("{}", summary("latency ms (client round trip)", latencies));
    println!("{}", summary("processing_ms (server)", processing));
    println!(
        "failed: {}{}",
        failures.len(),
        if unsent > 0 {
            format!(", not sent: {unsent}")
        } else {
            String::new()
        }
    );
    for f in failures.iter().take(SHOWN_FAILURES) {
        eprintln!("  {f}");
    }
    if failures.len() > SHOWN_FAILURES {
        eprintln!("  … and {} more", failures.len() - SHOWN_FAILURES);
    }
    if transport_errors >= MAX_TRANSPORT_ERRORS {
        anyhow::bail!("stopped after {MAX_TRANSPORT_ERRORS} requests in a row got no answer from {url}");
    }
    if unsent > 0 {
        anyhow::bail!(
            "--max-seconds {} ran out with {unsent} transactions not sent",
            a.max_seconds
        );
    }
    anyhow::ensure!(failures.is_empty(), "{} of {sent} requests failed", failures.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_is_accepted() {
        for ok in [
            "http://127.0.0.1:9000/lambda-url/api",
            "http://127.0.0.1:9000/lambda-url/api/",
            "http://localhost:9000",
            "http://[::1]:9000/x",
            "http://127.1.2.3",
        ] {
            assert!(loopback_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            loopback_url("http://127.0.0.1:9000/a/").unwrap(),
            "http://127.0.0.1:9000/a"
        );
        for bad in [
            "https://127.0.0.1:9000",
            "http://10.0.0.1:9000",
            "http://example.com",
            "http://127.0.0.1.example.com/",
            "http://user@evil.com:80",
            "http://127.0.0.1@evil.com/",
            "127.0.0.1:9000",
            "",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_mix_against_labels_counts_frauds_caught_and_missed_and_false_positives() {
        let fraud = Some(Label {
            fraud: true,
            scenario: 1,
        });
        let legit = Some(Label::default());
        let mut m = LabelMix::default();
        for (d, l) in [
            ("block", fraud),
            ("block", fraud),
            ("review", fraud),
            ("approve", fraud),
            ("approve", legit),
            ("approve", legit),
            ("review", legit),
            ("block", legit),
            ("block", None),
        ] {
            m.add(d, l);
        }
        assert_eq!(
            m,
            LabelMix {
                fraud: [1, 1, 2],
                legit: [2, 1, 1]
            }
        );
        let lines = m.lines();
        assert!(
            lines[0].contains("4: blocked 2, sent to review 1, missed 1 (caught 75.0%)"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("4: approved 2; false positives: blocked 1, sent to review 1 (50.0%)"),
            "{lines:?}"
        );
        assert!(
            LabelMix::default().lines().is_empty(),
            "an unlabelled file prints nothing"
        );
    }

    #[test]
    fn outcomes_need_2xx_and_a_decision() {
        assert!(matches!(
            outcome(200, r#"{"decision":"block","processing_ms":1.5}"#),
            Outcome::Decided { .. }
        ));
        assert!(matches!(outcome(401, r#"{"type":"x"}"#), Outcome::Failed(_)));
        assert!(matches!(outcome(200, "ok"), Outcome::Failed(_)));
        assert!(matches!(outcome(200, "{}"), Outcome::Failed(_)));
    }
}
