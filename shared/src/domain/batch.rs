//! Batch scoring, the pure part: which uploads are batches, how each row is scored and written,
//! the error report, the summary, and the checkpoint state that makes a job resumable.
//!
//! `functions/batch-score` does the I/O (S3 streams, multipart uploads, the DynamoDB job item);
//! everything here is deterministic, so a resumed job writes the same bytes as a clean run.
//!
//! **Feature source** (object metadata `x-amz-meta-features`, default `file`):
//! - `file`: each row's features come from the rows before it in the same file, through
//!   [`OfflineFeatures`] (the same `features::compute` as the API). The file is self-contained: a
//!   backfill or a replay scores the same whatever the table holds, and the output does not depend
//!   on when it runs. The file must be in `occurred_at` order; a row that goes back in time is
//!   refused with a row error (its features would see later rows). Memory grows with the number of
//!   distinct customers and terminals (about 1.9 KB each), not with the number of rows.
//! - `stored`: each row's features come from the stored per-entity aggregates in DynamoDB, read
//!   and never written, exactly as the API would compute them for that transaction now. Rows need
//!   no order, but the result depends on when the job runs (the aggregates move with live
//!   traffic), and rows of the file do not see each other.

use crate::domain::csv_line::CsvLine;
use crate::domain::decision::{risk_score, Decision, ReasonRecord};
use crate::domain::features::{self, EntityAggregate, FeatureVector, OfflineFeatures};
use crate::domain::io::{FileKind, Format, RowError};
use crate::domain::model::Model;
use crate::domain::pipeline::{self, Decided, REASONS_PER_DECISION};
use crate::domain::policy::{Policy, Thresholds};
use crate::domain::rules::{HitStatus, RuleHit, RulesApplied};
use crate::domain::{CustomerId, LabelledTransaction, RuleId, TenantId, TerminalId, Timestamp, Transaction};
pub use crate::domain::{JobStatus, ObjectRef};
use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Uploads under this prefix are batches: `batches/incoming/{tenant}/{name}.{csv|ndjson}[.gz]`.
pub const INCOMING_PREFIX: &str = "batches/incoming/";
/// Results go here, outside the trigger prefix so writing them never triggers a run.
pub const RESULTS_PREFIX: &str = "batches/results/";
/// S3 refuses a multipart part below this size, except the last.
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;
/// Object metadata naming the feature source (`x-amz-meta-features`; S3 strips the prefix).
pub const FEATURES_METADATA: &str = "features";

/// Why an upload is not a batch job at all, or not one that can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{key}: not a batch upload; expected {INCOMING_PREFIX}{{tenant}}/{{name}}.csv or .ndjson, optionally .gz")]
    NotABatchKey { key: String },
    #[error("{key}: the tenant segment {tenant:?} {reason}")]
    BadTenant {
        key: String,
        tenant: String,
        reason: String,
    },
    #[error("{key}: unknown file type; expected .csv, .ndjson or .jsonl, optionally followed by .gz")]
    UnknownFormat { key: String },
    #[error("object metadata x-amz-meta-{FEATURES_METADATA}: {value:?} is not one of file, stored")]
    BadFeatureSource { value: String },
}

// ---------------------------------------------------------------------------------------------
// Keys

/// An upload under [`INCOMING_PREFIX`]: its tenant and file, and where its outputs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFile {
    pub tenant: TenantId,
    /// The part after the tenant, e.g. `2018-08-08.csv.gz` (may hold further `/`).
    pub file: String,
    /// From the extension; `None` when it names no known format (a recorded failure).
    pub kind: Option<FileKind>,
}

impl BatchFile {
    /// Parses a decoded object key. A key outside the prefix or without a valid tenant is no
    /// tenant's job (nothing can be recorded for it); an unknown extension is a job that fails.
    pub fn parse(key: &str) -> Result<BatchFile, BatchError> {
        let not_batch = || BatchError::NotABatchKey { key: key.to_owned() };
        let rest = key.strip_prefix(INCOMING_PREFIX).ok_or_else(not_batch)?;
        let (tenant, file) = rest.split_once('/').ok_or_else(not_batch)?;
        if file.is_empty() || file.ends_with('/') {
            return Err(not_batch());
        }
        let tenant = TenantId::parse(tenant).map_err(|e| BatchError::BadTenant {
            key: key.to_owned(),
            tenant: tenant.to_owned(),
            reason: e.reason,
        })?;
        let kind = FileKind::from_path(Path::new(file)).ok();
        Ok(BatchFile {
            tenant,
            file: file.to_owned(),
            kind,
        })
    }

    /// The file name without its format and gzip extensions (the whole file when unknown).
    pub fn name(&self) -> &str {
        let lower = self.file.to_ascii_lowercase();
        let mut end = self.file.len();
        if lower.ends_with(".gz") {
            end -= 3;
        }
        for ext in [".csv", ".ndjson", ".jsonl"] {
            if self.kind.is_some() && lower[..end].ends_with(ext) {
                end -= ext.len();
                break;
            }
        }
        &self.file[..end]
    }

    fn results_base(&self) -> String {
        format!("{RESULTS_PREFIX}{}/{}", self.tenant, self.name())
    }

    /// `batches/results/{tenant}/{name}.{csv|ndjson}`: the input's format, never gzipped.
    pub fn results_key(&self) -> Option<String> {
        let ext = match self.kind?.format {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        };
        Some(format!("{}.{ext}", self.results_base()))
    }

    pub fn summary_key(&self) -> String {
        format!("{}.summary.json", self.results_base())
    }

    pub fn errors_key(&self) -> String {
        format!("{}.errors.csv", self.results_base())
    }
}

// ---------------------------------------------------------------------------------------------
// Options

/// Where row features come from; see the module notes for the trade-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSource {
    /// The file's own history, in time order.
    #[default]
    File,
    /// The stored per-entity aggregates, read-only.
    Stored,
}

impl FeatureSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            FeatureSource::File => "file",
            FeatureSource::Stored => "stored",
        }
    }

    pub fn parse(raw: &str) -> Result<FeatureSource, BatchError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "file" => Ok(FeatureSource::File),
            "stored" => Ok(FeatureSource::Stored),
            _ => Err(BatchError::BadFeatureSource { value: raw.to_owned() }),
        }
    }

    /// From the object's user metadata (keys as S3 returns them, without `x-amz-meta-`).
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<FeatureSource, BatchError> {
        match metadata.iter().find(|(k, _)| k.eq_ignore_ascii_case(FEATURES_METADATA)) {
            None => Ok(FeatureSource::default()),
            Some((_, v)) => FeatureSource::parse(v),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Job state

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    pub part_number: i32,
    pub etag: String,
}

/// A multipart upload in progress; no id until its first part.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Upload {
    pub upload_id: Option<String>,
    pub parts: Vec<PartRef>,
}

impl Upload {
    pub fn next_part_number(&self) -> i32 {
        self.parts.len() as i32 + 1
    }
}

/// What a job has decided so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Data rows read, good and bad.
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub approve: u64,
    pub review: u64,
    pub block: u64,
}

impl Counts {
    pub fn rows_scored(&self) -> u64 {
        self.approve + self.review + self.block
    }

    fn add_decision(&mut self, d: Decision) {
        match d {
            Decision::Approve => self.approve += 1,
            Decision::Review => self.review += 1,
            Decision::Block => self.block += 1,
        }
    }
}

/// How far a job got. Rows are the reader's items (good or bad rows) in file order, counted from
/// 0; each output stream is covered by its uploaded parts up to its own row.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Rows whose results are in `results` parts (and in `counts`).
    pub results_rows_done: u64,
    /// Rows whose error-report lines are in `errors` parts.
    pub errors_rows_done: u64,
    /// The first input line after `results_rows_done` (1-based), for people reading the item.
    pub next_line: u64,
    /// Every row is in an uploaded part (or a put object): only completion is left.
    pub reading_done: bool,
    pub results: Upload,
    pub errors: Upload,
    /// As of `results_rows_done`.
    pub counts: Counts,
    /// Time spent working, summed over invocations.
    pub busy_ms: u64,
}

impl Checkpoint {
    /// The first row any stream still needs; rows before it are only replayed for features.
    pub fn resume_row(&self) -> u64 {
        self.results_rows_done.min(self.errors_rows_done)
    }
}

/// The model a job is pinned to when it starts, so one file is scored by one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedModel {
    pub version: String,
    pub object_key: String,
}

/// What a batch job pins when it starts, and how far it got: the payload of its job item
/// ([`crate::ports::jobs`]). Its serde form is the item's flat attributes (docs/dynamodb.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "StoredProgress", try_from = "StoredProgress")]
pub struct BatchProgress {
    pub feature_source: FeatureSource,
    pub model: PinnedModel,
    pub thresholds: Thresholds,
    /// The ruleset active when the job started, which every row is decided by (its lists as they
    /// are when each part is scored). `None`: the thresholds alone.
    pub ruleset: Option<u32>,
    pub checkpoint: Checkpoint,
}

/// [`BatchProgress`] as stored: flat, with the attribute names of docs/dynamodb.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredProgress {
    feature_source: FeatureSource,
    model_version: String,
    model_object_key: String,
    review_threshold: f64,
    block_threshold: f64,
    /// Absent on jobs started before rules existed, which keep deciding by thresholds alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ruleset_version: Option<u32>,
    #[serde(default)]
    results_rows_done: u64,
    #[serde(default)]
    errors_rows_done: u64,
    #[serde(default)]
    next_line: u64,
    #[serde(default)]
    reading_done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    results_upload_id: Option<String>,
    #[serde(default)]
    results_parts: Vec<PartRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errors_upload_id: Option<String>,
    #[serde(default)]
    errors_parts: Vec<PartRef>,
    #[serde(default)]
    counts: Counts,
    #[serde(default)]
    busy_ms: u64,
}

impl From<BatchProgress> for StoredProgress {
    fn from(p: BatchProgress) -> Self {
        let cp = p.checkpoint;
        StoredProgress {
            feature_source: p.feature_source,
            model_version: p.model.version,
            model_object_key: p.model.object_key,
            review_threshold: p.thresholds.review,
            block_threshold: p.thresholds.block,
            ruleset_version: p.ruleset,
            results_rows_done: cp.results_rows_done,
            errors_rows_done: cp.errors_rows_done,
            next_line: cp.next_line,
            reading_done: cp.reading_done,
            results_upload_id: cp.results.upload_id,
            results_parts: cp.results.parts,
            errors_upload_id: cp.errors.upload_id,
            errors_parts: cp.errors.parts,
            counts: cp.counts,
            busy_ms: cp.busy_ms,
        }
    }
}

impl TryFrom<StoredProgress> for BatchProgress {
    type Error = String;

    fn try_from(s: StoredProgress) -> Result<Self, String> {
        let thresholds = Thresholds::new(s.review_threshold, s.block_threshold).map_err(|e| e.to_string())?;
        Ok(BatchProgress {
            feature_source: s.feature_source,
            model: PinnedModel {
                version: s.model_version,
                object_key: s.model_object_key,
            },
            thresholds,
            ruleset: s.ruleset_version,
            checkpoint: Checkpoint {
                results_rows_done: s.results_rows_done,
                errors_rows_done: s.errors_rows_done,
                next_line: s.next_line,
                reading_done: s.reading_done,
                results: Upload {
                    upload_id: s.results_upload_id,
                    parts: s.results_parts,
                },
                errors: Upload {
                    upload_id: s.errors_upload_id,
                    parts: s.errors_parts,
                },
                counts: s.counts,
                busy_ms: s.busy_ms,
            },
        })
    }
}

/// A running (or just finished) batch job, as its summary describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchJob {
    pub object: ObjectRef,
    pub size: u64,
    pub progress: BatchProgress,
    pub invocations: u64,
    pub started_at: Timestamp,
}

// ---------------------------------------------------------------------------------------------
// Summary

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub started_at: Timestamp,
    pub completed_at: Timestamp,
    /// Wall time from the first event to completion, hand-overs and waits included.
    pub elapsed_ms: u64,
    /// Time spent working, summed over invocations.
    pub busy_ms: u64,
    pub invocations: u64,
    /// `rows_read` per second of `busy_ms`.
    pub rows_per_second: f64,
}

/// `{name}.summary.json`, written beside the results when a job ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub status: JobStatus,
    pub tenant: String,
    pub source: SourceInfo,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub results_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub errors_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feature_source: Option<FeatureSource>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thresholds: Option<Thresholds>,
    /// The policy every row was decided by (the pinned thresholds' policy).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_version: Option<String>,
    pub counts: Counts,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timings: Option<Timings>,
}

impl Summary {
    pub fn completed(file: &BatchFile, job: &BatchJob, completed_at: Timestamp) -> Summary {
        let p = &job.progress;
        let cp = &p.checkpoint;
        let elapsed_ms = (completed_at.inner() - job.started_at.inner())
            .whole_milliseconds()
            .max(0) as u64;
        let busy_s = cp.busy_ms as f64 / 1000.0;
        Summary {
            status: JobStatus::Completed,
            tenant: file.tenant.to_string(),
            source: SourceInfo {
                bucket: job.object.bucket.clone(),
                key: job.object.key.clone(),
                etag: job.object.etag.clone(),
                size: job.size,
            },
            error: None,
            results_key: file.results_key(),
            errors_key: Some(file.errors_key()),
            feature_source: Some(p.feature_source),
            model_version: Some(p.model.version.clone()),
            thresholds: Some(p.thresholds),
            policy_version: Some(Policy::version_of(p.thresholds, p.ruleset)),
            counts: cp.counts,
            timings: Some(Timings {
                started_at: job.started_at,
                completed_at,
                elapsed_ms,
                busy_ms: cp.busy_ms,
                invocations: job.invocations,
                rows_per_second: if busy_s > 0.0 {
                    (cp.counts.rows_read as f64 / busy_s).round()
                } else {
                    0.0
                },
            }),
        }
    }

    pub fn failed(tenant: &TenantId, source: SourceInfo, error: String) -> Summary {
        Summary {
            status: JobStatus::Failed,
            tenant: tenant.to_string(),
            source,
            error: Some(error),
            results_key: None,
            errors_key: None,
            feature_source: None,
            model_version: None,
            thresholds: None,
            policy_version: None,
            counts: Counts::default(),
            timings: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Strings, integers and finite floats only.
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Output rows

/// The results file's CSV columns.
pub const RESULT_COLUMNS: [&str; 13] = [
    "id",
    "decision",
    "score",
    "risk_score",
    "reason_1_code",
    "reason_1_text",
    "reason_2_code",
    "reason_2_text",
    "reason_3_code",
    "reason_3_text",
    "model_version",
    "ruleset_version",
    "rule_hits",
];

/// The error report's columns.
pub const ERROR_COLUMNS: [&str; 3] = ["line", "field", "reason"];

/// One scored row as the results file holds it (and as tests read it back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    pub id: String,
    pub decision: Decision,
    pub score: f64,
    pub risk_score: u8,
    pub reasons: Vec<ReasonOut>,
    pub model_version: String,
    /// The ruleset and its hits, as the API's decision carries them. In CSV: `ruleset_version`
    /// and `rule_hits` (`<id>@<version>:<action>:<mode>:<status>`, `;`-separated; no error text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesApplied>,
}

fn hits_text(r: &RulesApplied) -> String {
    let mut out = String::new();
    for (i, h) in r.hits.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        let status = match h.status {
            HitStatus::Matched => "matched",
            HitStatus::Error => "error",
        };
        out.push_str(&format!(
            "{}@{}:{}:{}:{status}",
            h.rule_id,
            h.rule_version,
            h.action.as_str(),
            h.mode.as_str()
        ));
    }
    out
}

fn parse_hits(version: &str, text: &str) -> Result<Option<RulesApplied>, String> {
    if version.is_empty() {
        return Ok(None);
    }
    let ruleset_version = version.parse().map_err(|e| format!("ruleset_version: {e}"))?;
    let hits = text
        .split(';')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let bad = || format!("rule_hits: {h:?} is not <id>@<version>:<action>:<mode>:<status>");
            let (id, rest) = h.split_once('@').ok_or_else(bad)?;
            let parts: Vec<&str> = rest.split(':').collect();
            let [v, action, mode, status] = parts.as_slice() else {
                return Err(bad());
            };
            let word = |w: &str| serde_json::Value::String(w.to_owned());
            Ok(RuleHit {
                rule_id: RuleId::parse(id).map_err(|_| bad())?,
                rule_version: v.parse().map_err(|_| bad())?,
                action: serde_json::from_value(word(action)).map_err(|_| bad())?,
                mode: serde_json::from_value(word(mode)).map_err(|_| bad())?,
                status: serde_json::from_value(word(status)).map_err(|_| bad())?,
                error: None,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Some(RulesApplied { ruleset_version, hits }))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonOut {
    pub code: String,
    pub text: String,
}

impl From<&ReasonRecord> for ReasonOut {
    fn from(r: &ReasonRecord) -> Self {
        ReasonOut {
            code: r.code().to_owned(),
            text: r.text().to_owned(),
        }
    }
}

impl ResultRow {
    /// Every reason as code and text, as the API keeps them: rule hits first, then the model's
    /// [`REASONS_PER_DECISION`]. The CSV form has columns for the first [`REASONS_PER_DECISION`].
    pub fn new(tx: &Transaction, decided: &Decided, model_version: &str) -> Self {
        ResultRow {
            id: tx.id.to_string(),
            decision: decided.decision,
            score: decided.score,
            risk_score: risk_score(decided.score),
            reasons: decided.reasons.iter().map(ReasonOut::from).collect(),
            model_version: model_version.to_owned(),
            rules: decided.rules.clone(),
        }
    }

    /// Appends the row (with its line break) in `format`; `csv` is reused from row to row.
    pub fn write(&self, format: Format, csv: &mut CsvLine, out: &mut Vec<u8>) {
        match format {
            Format::Ndjson => {
                // Strings, integers and floats: serialising cannot fail.
                let _ = serde_json::to_writer(&mut *out, self);
                out.push(b'\n');
            }
            Format::Csv => {
                csv.field(out, &self.id);
                csv.field(out, self.decision.as_str());
                csv.display(out, self.score);
                csv.display(out, self.risk_score);
                for i in 0..REASONS_PER_DECISION {
                    match self.reasons.get(i) {
                        Some(r) => {
                            csv.field(out, &r.code);
                            csv.text(out, &r.text);
                        }
                        None => {
                            csv.field(out, "");
                            csv.field(out, "");
                        }
                    }
                }
                csv.field(out, &self.model_version);
                match &self.rules {
                    Some(r) => {
                        csv.display(out, r.ruleset_version);
                        csv.field(out, &hits_text(r));
                    }
                    None => {
                        csv.field(out, "");
                        csv.field(out, "");
                    }
                }
                csv.end(out);
            }
        }
    }

    /// Reads a results file back (for tests and tools).
    pub fn read_all(format: Format, bytes: &[u8]) -> Result<Vec<ResultRow>, String> {
        match format {
            Format::Ndjson => bytes
                .split(|b| *b == b'\n')
                .enumerate()
                .filter(|(_, l)| !l.is_empty())
                .map(|(i, l)| serde_json::from_slice(l).map_err(|e| format!("line {}: {e}", i + 1)))
                .collect(),
            Format::Csv => {
                let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
                let header = rdr.headers().map_err(|e| e.to_string())?.clone();
                if header.iter().ne(RESULT_COLUMNS.iter().copied()) {
                    return Err(format!("header is {header:?}, expected {RESULT_COLUMNS:?}"));
                }
                let mut rows = Vec::new();
                for (i, rec) in rdr.records().enumerate() {
                    let line = i + 2;
                    let rec = rec.map_err(|e| format!("line {line}: {e}"))?;
                    let field = |k: usize| rec.get(k).unwrap_or_default();
                    let decision = match field(1) {
                        "approve" => Decision::Approve,
                        "review" => Decision::Review,
                        "block" => Decision::Block,
                        d => return Err(format!("line {line}: decision {d:?}")),
                    };
                    let reasons = (0..REASONS_PER_DECISION)
                        .filter(|r| !field(4 + 2 * r).is_empty())
                        .map(|r| ReasonOut {
                            code: field(4 + 2 * r).to_owned(),
                            text: field(5 + 2 * r).to_owned(),
                        })
                        .collect();
                    rows.push(ResultRow {
                        id: field(0).to_owned(),
                        decision,
                        score: field(2).parse().map_err(|e| format!("line {line}: score: {e}"))?,
                        risk_score: field(3).parse().map_err(|e| format!("line {line}: risk_score: {e}"))?,
                        reasons,
                        model_version: field(10).to_owned(),
                        rules: parse_hits(field(11), field(12)).map_err(|e| format!("line {line}: {e}"))?,
                    });
                }
                Ok(rows)
            }
        }
    }
}

pub fn write_result_header(format: Format, csv: &mut CsvLine, out: &mut Vec<u8>) {
    if format == Format::Csv {
        csv.record(out, RESULT_COLUMNS);
    }
}

pub fn write_error_header(csv: &mut CsvLine, out: &mut Vec<u8>) {
    csv.record(out, ERROR_COLUMNS);
}

/// One error-report line: `line,field,reason` (the reason always quoted).
pub fn write_error_row(e: &RowError, csv: &mut CsvLine, out: &mut Vec<u8>) {
    csv.display(out, e.line);
    csv.field(out, e.field.unwrap_or(""));
    csv.text(out, &e.reason);
    csv.end(out);
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Decompresses when the file is gzipped.
pub fn decoder(kind: FileKind, input: impl Read + Send + 'static) -> Box<dyn Read + Send> {
    if kind.gzip {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, input)))
    } else {
        Box::new(input)
    }
}

/// Hands its input on one line at a time and counts lines, so the line of every row the
/// transaction reader yields is known (the reader names lines only in its errors). Readers
/// above it (csv's, a `BufReader`) stop at the end of a record, which is the end of a line.
pub struct LineTracker<R> {
    inner: BufReader<R>,
    line: Arc<AtomicU64>,
    at_line_start: bool,
}

impl<R: Read> LineTracker<R> {
    /// `line` then holds the 1-based line of the last byte handed on (0 before any).
    pub fn new(inner: R, line: Arc<AtomicU64>) -> Self {
        line.store(0, Ordering::Relaxed);
        LineTracker {
            inner: BufReader::with_capacity(1 << 16, inner),
            line,
            at_line_start: true,
        }
    }
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.inner.fill_buf()?;
        let n = avail.len().min(out.len());
        if n == 0 {
            return Ok(0);
        }
        let take = avail[..n].iter().position(|b| *b == b'\n').map_or(n, |i| i + 1);
        out[..take].copy_from_slice(&avail[..take]);
        let ends_line = avail[take - 1] == b'\n';
        self.inner.consume(take);
        if self.at_line_start {
            self.line.fetch_add(1, Ordering::Relaxed);
        }
        self.at_line_start = ends_line;
        Ok(take)
    }
}

// ---------------------------------------------------------------------------------------------
// Scoring a file

/// Scores the rows of one file in order into a results buffer and an error-report buffer, and
/// says when a part is due. Rows before the checkpoint are replayed: they rebuild the feature
/// history (and the time-order check) but write only to the streams not yet covered.
pub struct BatchScorer {
    model: Arc<Model>,
    policy: Policy,
    format: Format,
    source: FeatureSource,
    part_size: usize,
    history: OfflineFeatures,
    latest: Option<Timestamp>,
    results_from: u64,
    errors_from: u64,
    results: Vec<u8>,
    errors: Vec<u8>,
    /// Writes both files' CSV lines.
    csv: CsvLine,
    results_rows_done: u64,
    errors_rows_done: u64,
    /// Running: after the last row pushed.
    next_line: u64,
    counts: Counts,
    /// As of `results_rows_done`, what a checkpoint records.
    done_next_line: u64,
    done_counts: Counts,
    row: u64,
}

/// The bytes of one checkpoint: parts to upload and where they leave the job.
#[derive(Debug, Clone, PartialEq)]
pub struct Flush {
    /// A results part: at least the part size, unless `last`.
    pub results: Option<Vec<u8>>,
    /// An error-report part: at least the part size, unless `last`.
    pub errors: Option<Vec<u8>>,
    pub results_rows_done: u64,
    pub errors_rows_done: u64,
    pub next_line: u64,
    /// As of `results_rows_done`.
    pub counts: Counts,
    pub last: bool,
}

/// What one row needs from outside: for `stored`, the entities' aggregates.
pub struct StoredAggregates<'a> {
    pub customer: &'a EntityAggregate,
    pub terminal: &'a EntityAggregate,
}

/// Entity keys per bulk aggregate read: one DynamoDB BatchGetItem's worth.
pub const KEYS_PER_READ: usize = 100;

/// One bulk read of stored aggregates: at most [`KEYS_PER_READ`] entities, customers first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateRead {
    pub customers: Vec<CustomerId>,
    pub terminals: Vec<TerminalId>,
}

/// The stored aggregates a `stored` job has read, kept for the job: an entity is read once while
/// it stays cached. Bounded (each is about 2 KB): when a chunk's entities would not fit beside
/// what it holds, the cache is emptied first, so it holds at most `capacity` entities, or one
/// chunk's when that alone is more.
#[derive(Debug)]
pub struct AggregateCache {
    customers: HashMap<CustomerId, EntityAggregate>,
    terminals: HashMap<TerminalId, EntityAggregate>,
    capacity: usize,
    empty: EntityAggregate,
}

impl AggregateCache {
    pub fn new(capacity: usize) -> Self {
        AggregateCache {
            customers: HashMap::new(),
            terminals: HashMap::new(),
            capacity,
            empty: EntityAggregate::default(),
        }
    }

    /// Entities held.
    pub fn len(&self) -> usize {
        self.customers.len() + self.terminals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reads that bring the entities of `rows` into the cache, in groups of
    /// [`KEYS_PER_READ`]; none when all are cached. Empties the cache first when the missing ones
    /// would not fit, and then asks for all of them.
    pub fn reads<'t>(&mut self, rows: impl Iterator<Item = &'t Transaction> + Clone) -> Vec<AggregateRead> {
        let (customers, terminals) = self.missing(rows.clone());
        if customers.is_empty() && terminals.is_empty() {
            return Vec::new();
        }
        let (customers, terminals) = if self.len() + customers.len() + terminals.len() > self.capacity {
            self.customers.clear();
            self.terminals.clear();
            // The chunk's entities that were cached are gone too.
            self.missing(rows)
        } else {
            (customers, terminals)
        };
        let keys: Vec<Result<CustomerId, TerminalId>> = customers
            .into_iter()
            .map(Ok)
            .chain(terminals.into_iter().map(Err))
            .collect();
        keys.chunks(KEYS_PER_READ)
            .map(|group| {
                let mut read = AggregateRead::default();
                for k in group {
                    match k {
                        Ok(c) => read.customers.push(c.clone()),
                        Err(t) => read.terminals.push(t.clone()),
                    }
                }
                read
            })
            .collect()
    }

    /// Distinct entities of `rows` not cached, in the order they first appear.
    fn missing<'t>(&self, rows: impl Iterator<Item = &'t Transaction>) -> (Vec<CustomerId>, Vec<TerminalId>) {
        let (mut seen_c, mut seen_t) = (HashSet::new(), HashSet::new());
        let (mut customers, mut terminals) = (Vec::new(), Vec::new());
        for t in rows {
            if !self.customers.contains_key(&t.customer_id) && seen_c.insert(&t.customer_id) {
                customers.push(t.customer_id.clone());
            }
            if !self.terminals.contains_key(&t.terminal_id) && seen_t.insert(&t.terminal_id) {
                terminals.push(t.terminal_id.clone());
            }
        }
        (customers, terminals)
    }

    /// What `read` found. An entity it did not find has no stored history: an empty aggregate.
    pub fn insert(
        &mut self,
        read: AggregateRead,
        mut customers: HashMap<CustomerId, EntityAggregate>,
        mut terminals: HashMap<TerminalId, EntityAggregate>,
    ) {
        for c in read.customers {
            let agg = customers.remove(&c).unwrap_or_default();
            self.customers.insert(c, agg);
        }
        for t in read.terminals {
            let agg = terminals.remove(&t).unwrap_or_default();
            self.terminals.insert(t, agg);
        }
    }

    /// The row's aggregates; empty for an entity that was never read.
    pub fn get(&self, tx: &Transaction) -> StoredAggregates<'_> {
        StoredAggregates {
            customer: self.customers.get(&tx.customer_id).unwrap_or(&self.empty),
            terminal: self.terminals.get(&tx.terminal_id).unwrap_or(&self.empty),
        }
    }
}

impl BatchScorer {
    /// `part_size` is raised to [`MIN_PART_BYTES`] if below it.
    pub fn new(
        model: Arc<Model>,
        policy: Policy,
        format: Format,
        source: FeatureSource,
        part_size: usize,
        from: &Checkpoint,
    ) -> Self {
        let part_size = part_size.max(MIN_PART_BYTES);
        let capacity = part_size + (64 << 10);
        let mut s = BatchScorer {
            model,
            policy,
            format,
            source,
            part_size,
            history: OfflineFeatures::new(),
            latest: None,
            results_from: from.results_rows_done,
            errors_from: from.errors_rows_done,
            results: Vec::with_capacity(capacity),
            errors: Vec::new(),
            csv: CsvLine::new(),
            results_rows_done: from.results_rows_done,
            errors_rows_done: from.errors_rows_done,
            next_line: from.next_line,
            counts: from.counts,
            done_next_line: from.next_line,
            done_counts: from.counts,
            row: 0,
        };
        if from.results_rows_done == 0 {
            write_result_header(format, &mut s.csv, &mut s.results);
        }
        if from.errors_rows_done == 0 {
            write_error_header(&mut s.csv, &mut s.errors);
        }
        s
    }

    /// The index of the next row.
    pub fn row(&self) -> u64 {
        self.row
    }

    /// Whether the next row's result will be written (else it is replayed for history only).
    pub fn next_row_scored(&self) -> bool {
        self.row >= self.results_from
    }

    /// Takes the reader's next item. `line` is the line the row ends on; `stored` is required
    /// for a good row that will be scored when the source is `stored`.
    pub fn push(&mut self, line: u64, item: Result<LabelledTransaction, RowError>, stored: Option<StoredAggregates>) {
        let row = self.row;
        self.row += 1;
        let scored = row >= self.results_from;
        // The tracker's line, not csv's: csv counts a record after a blank line one line short.
        let item = item
            .map_err(|e| RowError {
                line: if line > 0 { line } else { e.line },
                ..e
            })
            .and_then(|t| self.features(line, &t.tx, scored, stored).map(|x| (t, x)));
        if scored {
            self.counts.rows_read += 1;
        }
        match item {
            Ok((row, Some(x))) => {
                let decided = pipeline::decide(&self.model, &self.policy, &row.tx, row.extras(), &x);
                let out = ResultRow::new(&row.tx, &decided, self.model.version());
                out.write(self.format, &mut self.csv, &mut self.results);
                self.counts.add_decision(decided.decision);
            }
            Ok((_, None)) => {}
            Err(e) => {
                if scored {
                    self.counts.rows_rejected += 1;
                }
                if row >= self.errors_from {
                    write_error_row(&e, &mut self.csv, &mut self.errors);
                }
            }
        }
        if scored {
            self.next_line = line + 1;
        }
    }

    /// Features for a row, `None` when it is only replayed. In `file` mode every row goes
    /// through the history, replayed or not, so a resumed job sees the same state.
    fn features(
        &mut self,
        line: u64,
        tx: &Transaction,
        scored: bool,
        stored: Option<StoredAggregates>,
    ) -> Result<Option<FeatureVector>, RowError> {
        match self.source {
            FeatureSource::File => {
                if let Some(latest) = self.latest.filter(|l| tx.occurred_at < *l) {
                    return Err(RowError {
                        file: String::new(),
                        line,
                        field: Some("occurred_at"),
                        reason: format!(
                            "{} is earlier than {latest} on a row above: scoring from the file's own history \
                             needs the file sorted by occurred_at (or use x-amz-meta-features: stored)",
                            tx.occurred_at
                        ),
                    });
                }
                self.latest = Some(tx.occurred_at);
                // Labels in the file are ignored: a batch scores, it does not learn.
                let x = self.history.push(tx, None);
                Ok(scored.then_some(x))
            }
            FeatureSource::Stored if !scored => Ok(None),
            FeatureSource::Stored => match stored {
                Some(a) => Ok(Some(features::compute(tx, a.customer, a.terminal))),
                None => Err(RowError {
                    file: String::new(),
                    line,
                    field: None,
                    reason: "internal: the stored aggregates of this row were not loaded".into(),
                }),
            },
        }
    }

    /// Whether a buffer holds a full part.
    pub fn flush_due(&self) -> bool {
        self.results.len() >= self.part_size || self.errors.len() >= self.part_size
    }

    /// The parts that are full (all that is left when `last`), and the checkpoint after them.
    pub fn take_flush(&mut self, last: bool) -> Flush {
        let capacity = self.part_size + (64 << 10);
        let mut results = None;
        let mut errors = None;
        if last || self.results.len() >= self.part_size {
            results = Some(std::mem::replace(&mut self.results, Vec::with_capacity(capacity)));
            self.results_rows_done = self.row;
            self.done_counts = self.counts;
            self.done_next_line = self.next_line;
        }
        if last || self.errors.len() >= self.part_size {
            errors = Some(std::mem::take(&mut self.errors));
            self.errors_rows_done = self.row;
        }
        Flush {
            results,
            errors,
            results_rows_done: self.results_rows_done,
            errors_rows_done: self.errors_rows_done,
            next_line: self.done_next_line,
            counts: self.done_counts,
            last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::io::TransactionReader;

    fn tiny_model() -> Arc<Model> {
        Arc::new(Model::seal(crate::domain::model::stump_artifact(100.0, -2.0, -0.5, 4.0)).unwrap())
    }

    #[test]
    fn keys_parse_into_tenant_name_and_outputs() {
        let f = BatchFile::parse("batches/incoming/acme/2018-08-08.CSV.gz").unwrap();
        assert_eq!(f.tenant.as_str(), "acme");
        assert_eq!(f.name(), "2018-08-08");
        assert_eq!(
            f.kind,
            Some(FileKind {
                format: Format::Csv,
                gzip: true
            })
        );
        assert_eq!(f.results_key().unwrap(), "batches/results/acme/2018-08-08.csv");
        assert_eq!(f.summary_key(), "batches/results/acme/2018-08-08.summary.json");
        assert_eq!(f.errors_key(), "batches/results/acme/2018-08-08.errors.csv");
        let f = BatchFile::parse("batches/incoming/acme/sub/day.jsonl").unwrap();
        assert_eq!(f.results_key().unwrap(), "batches/results/acme/sub/day.ndjson");

        let unknown = BatchFile::parse("batches/incoming/acme/notes.txt").unwrap();
        assert_eq!(unknown.kind, None);
        assert_eq!(unknown.results_key(), None);
        assert_eq!(unknown.summary_key(), "batches/results/acme/notes.txt.summary.json");

        for key in [
            "batches/incoming/acme",
            "batches/incoming/acme/",
            "batches/incoming//x.csv",
            "models/incoming/acme/x.csv",
            "",
        ] {
            assert!(BatchFile::parse(key).is_err(), "{key}");
        }
        assert!(matches!(
            BatchFile::parse("batches/incoming/ac#me/x.csv"),
            Err(BatchError::BadTenant { .. })
        ));
    }

    #[test]
    fn feature_source_comes_from_metadata() {
        let mut m = HashMap::new();
        assert_eq!(FeatureSource::from_metadata(&m).unwrap(), FeatureSource::File);
        m.insert("Features".to_owned(), " Stored ".to_owned());
        assert_eq!(FeatureSource::from_metadata(&m).unwrap(), FeatureSource::Stored);
        m.insert("Features".to_owned(), "live".to_owned());
        assert_eq!(
            FeatureSource::from_metadata(&m).unwrap_err().to_string(),
            "object metadata x-amz-meta-features: \"live\" is not one of file, stored"
        );
    }

    #[test]
    fn line_tracker_knows_the_line_of_every_row() {
        let text = "id,occurred_at,amount,currency,customer_id,terminal_id\n\
                    a,2018-04-01T10:00:00Z,100,EUR,c1,t1\n\
                    \n\
                    b,2018-04-01T11:00:00Z,x,EUR,c1,t1\n\
                    c,2018-04-01T12:00:00Z,300,EUR,c1,t1";
        let line = Arc::new(AtomicU64::new(0));
        let input = LineTracker::new(io::Cursor::new(text.as_bytes().to_vec()), line.clone());
        let r = TransactionReader::new("t.csv", Format::Csv, input);
        let mut seen = Vec::new();
        for item in r {
            seen.push((item.is_ok(), line.load(Ordering::Relaxed)));
        }
        assert_eq!(seen, vec![(true, 2), (false, 4), (true, 5)]);

        let text = "{\"id\":\"a\",\"occurred_at\":\"2018-04-01T10:00:00Z\",\"amount\":1,\"currency\":\"EUR\",\"customer_id\":\"c\",\"terminal_id\":\"t\"}\n\n\nnot json\n";
        let input = LineTracker::new(io::Cursor::new(text.as_bytes().to_vec()), line.clone());
        let r = TransactionReader::new("t.ndjson", Format::Ndjson, input);
        let mut seen = Vec::new();
        for item in r {
            seen.push((item.map_err(|e| e.line), line.load(Ordering::Relaxed)));
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1], (Err(4), 4));
        assert_eq!(seen[0].1, 1);
    }

    fn rows(text: &str) -> Vec<(u64, Result<LabelledTransaction, RowError>)> {
        let line = Arc::new(AtomicU64::new(0));
        let input = LineTracker::new(io::Cursor::new(text.as_bytes().to_vec()), line.clone());
        let r = TransactionReader::new("t.csv", Format::Csv, input);
        r.map(|item| (line.load(Ordering::Relaxed), item)).collect()
    }

    const FILE: &str = "id,occurred_at,amount,currency,customer_id,terminal_id\n\
                        a,2018-04-01T10:00:00Z,5000,EUR,c1,t1\n\
                        b,2018-04-01T11:00:00Z,50000,EUR,c1,t1\n\
                        c,2018-04-01T09:00:00Z,100,EUR,c2,t1\n\
                        d,2018-04-02T09:00:00Z,-1,EUR,c2,t1\n\
                        e,2018-04-02T10:00:00Z,700,EUR,c2,t2\n";

    fn score_all(from: &Checkpoint, format: Format) -> (BatchScorer, Flush) {
        let mut s = BatchScorer::new(tiny_model(), Policy::default(), format, FeatureSource::File, 0, from);
        for (line, item) in rows(FILE) {
            s.push(line, item, None);
        }
        let f = s.take_flush(true);
        (s, f)
    }

    #[test]
    fn scores_good_rows_and_reports_bad_ones_with_lines() {
        let (_, f) = score_all(&Checkpoint::default(), Format::Csv);
        assert!(f.last);
        assert_eq!(f.results_rows_done, 5);
        assert_eq!(
            f.counts,
            Counts {
                rows_read: 5,
                rows_rejected: 2,
                approve: 2,
                review: 0,
                block: 1
            }
        );
        let results = f.results.unwrap();
        let out = ResultRow::read_all(Format::Csv, &results).unwrap();
        assert_eq!(out.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b", "e"]);
        assert_eq!(out[1].decision, Decision::Block);
        assert_eq!(out[1].reasons[0].code, "AMOUNT_HIGH");
        assert!(out[1].reasons[0].text.contains(','), "{}", out[1].reasons[0].text);
        assert_eq!(out[0].model_version.len(), 16);

        let errors = String::from_utf8(f.errors.unwrap()).unwrap();
        let lines: Vec<_> = errors.lines().collect();
        assert_eq!(lines[0], "line,field,reason");
        assert!(
            lines[1].starts_with("4,occurred_at,\"2018-04-01T09:00:00Z is earlier than"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "5,amount,\"-1 must not be negative\"");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn results_keep_their_bytes_and_odd_values_read_back_through_the_csv_crate() {
        let (_, f) = score_all(&Checkpoint::default(), Format::Csv);
        let results = String::from_utf8(f.results.unwrap()).unwrap();
        let lines: Vec<&str> = results.lines().collect();
        assert_eq!(lines[0], RESULT_COLUMNS.join(","));
        // Bytes of an ordinary row as the hand-rolled writer wrote them: the text always quoted.
        assert_eq!(
            lines[2],
            "b,block,0.8807970779778823,88,AMOUNT_HIGH,\"amount is 500.00, 10.0× the typical 50.00; this raises the \
             risk\",,,,,56fed45b563bb9d2,,"
        );

        let reason = |code: &str, text: &str| ReasonOut {
            code: code.into(),
            text: text.into(),
        };
        let odd = ResultRow {
            id: "id,with \"quotes\"".into(),
            decision: Decision::Review,
            score: 0.5,
            risk_score: 50,
            reasons: vec![
                reason("RULE,1", "line one\nline \"two\", with a comma"),
                reason("X", ""),
                reason("\"quoted\"", "\r\n"),
            ],
            model_version: "v,1".into(),
            rules: Some(RulesApplied {
                ruleset_version: 7,
                hits: vec![
                    RuleHit {
                        rule_id: RuleId::parse("big.amount").unwrap(),
                        rule_version: 2,
                        action: crate::domain::rules::RuleAction::Block,
                        mode: crate::domain::rules::RuleMode::Active,
                        status: HitStatus::Matched,
                        error: None,
                    },
                    RuleHit {
                        rule_id: RuleId::parse("needs_key").unwrap(),
                        rule_version: 1,
                        action: crate::domain::rules::RuleAction::Tag,
                        mode: crate::domain::rules::RuleMode::Shadow,
                        status: HitStatus::Error,
                        error: None,
                    },
                ],
            }),
        };
        let plain = ResultRow {
            reasons: vec![reason("AMOUNT_HIGH", "plain")],
            rules: None,
            ..odd.clone()
        };
        let (mut csv, mut out) = (CsvLine::new(), Vec::new());
        write_result_header(Format::Csv, &mut csv, &mut out);
        for r in [&odd, &plain, &odd] {
            r.write(Format::Csv, &mut csv, &mut out);
        }
        assert_eq!(
            ResultRow::read_all(Format::Csv, &out).unwrap(),
            [odd.clone(), plain, odd]
        );
    }

    #[test]
    fn error_rows_with_odd_reasons_read_back_through_the_csv_crate() {
        let (mut csv, mut out) = (CsvLine::new(), Vec::new());
        write_error_header(&mut csv, &mut out);
        let errors = [
            (7, Some("we,ird"), "\"x\" is not a number, see\nthe next line"),
            (8, None, "plain"),
        ];
        for (line, field, reason) in errors {
            let e = RowError {
                file: "f".into(),
                line,
                field,
                reason: reason.into(),
            };
            write_error_row(&e, &mut csv, &mut out);
        }
        assert!(out.ends_with(b"\n8,,\"plain\"\n"), "ordinary rows keep their bytes");
        let mut rdr = csv::Reader::from_reader(&out[..]);
        assert_eq!(rdr.headers().unwrap().iter().collect::<Vec<_>>(), ERROR_COLUMNS);
        let back: Vec<Vec<String>> = rdr
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        let want: Vec<Vec<String>> = errors
            .iter()
            .map(|(l, f, r)| vec![l.to_string(), f.unwrap_or("").to_owned(), (*r).to_owned()])
            .collect();
        assert_eq!(back, want);
    }

    #[test]
    fn a_resumed_run_writes_what_the_clean_run_wrote_after_the_checkpoint() {
        let (_, clean) = score_all(&Checkpoint::default(), Format::Ndjson);
        let clean_rows = clean.results.unwrap();
        let clean_text = String::from_utf8(clean_rows).unwrap();
        // As if rows 0..3 were in uploaded results parts and no error part was uploaded yet.
        let mut s = BatchScorer::new(
            tiny_model(),
            Policy::default(),
            Format::Ndjson,
            FeatureSource::File,
            0,
            &Checkpoint::default(),
        );
        for (line, item) in rows(FILE).into_iter().take(3) {
            s.push(line, item, None);
        }
        let cp = Checkpoint {
            results_rows_done: 3,
            next_line: s.next_line,
            counts: s.counts,
            ..Checkpoint::default()
        };
        let first = String::from_utf8(s.take_flush(true).results.unwrap()).unwrap();
        let (_, resumed) = score_all(&cp, Format::Ndjson);
        assert_eq!(
            format!("{first}{}", String::from_utf8(resumed.results.unwrap()).unwrap()),
            clean_text
        );
        assert_eq!(resumed.counts, clean.counts);
        assert_eq!(resumed.errors, clean.errors);
        assert_eq!(resumed.next_line, 7);
    }

    #[test]
    fn parts_are_due_at_the_part_size_and_never_smaller() {
        let mut s = BatchScorer::new(
            tiny_model(),
            Policy::default(),
            Format::Csv,
            FeatureSource::Stored,
            1,
            &Checkpoint::default(),
        );
        assert_eq!(s.part_size, MIN_PART_BYTES);
        let agg = EntityAggregate::default();
        let mut n = 0;
        while !s.flush_due() {
            let t = &rows(FILE)[0];
            let item = t.1.clone();
            s.push(
                2,
                item,
                Some(StoredAggregates {
                    customer: &agg,
                    terminal: &agg,
                }),
            );
            n += 1;
        }
        let f = s.take_flush(false);
        assert!(f.results.as_ref().unwrap().len() >= MIN_PART_BYTES);
        assert_eq!(f.errors, None);
        assert_eq!(f.results_rows_done, n);
        assert_eq!(f.errors_rows_done, 0);
        assert_eq!(f.counts.rows_read, n);
    }

    #[test]
    fn aggregate_reads_group_new_entities_by_the_hundred_customers_first() {
        let tx = |i: usize, terminal: usize| Transaction {
            customer_id: CustomerId::parse(&format!("c{i}")).unwrap(),
            terminal_id: TerminalId::parse(&format!("t{terminal}")).unwrap(),
            ..rows(FILE)[0].1.clone().unwrap().tx
        };
        // 150 customers and 60 terminals, each seen twice.
        let chunk: Vec<Transaction> = (0..300).map(|i| tx(i % 150, i % 60)).collect();
        let mut cache = AggregateCache::new(1000);
        let reads = cache.reads(chunk.iter());
        let sizes: Vec<(usize, usize)> = reads.iter().map(|r| (r.customers.len(), r.terminals.len())).collect();
        assert_eq!(sizes, [(100, 0), (50, 50), (0, 10)]);
        assert_eq!(reads[0].customers[0].as_str(), "c0", "in the order they first appear");
        for r in reads {
            cache.insert(r, HashMap::new(), HashMap::new());
        }
        assert_eq!(cache.len(), 210);
        assert!(cache.reads(chunk.iter()).is_empty(), "all cached: nothing to read");
        assert_eq!(*cache.get(&chunk[0]).customer, EntityAggregate::default());
    }

    #[test]
    fn summary_serialises_with_counts_and_timings() {
        let file = BatchFile::parse("batches/incoming/acme/x.csv").unwrap();
        let started = Timestamp::parse("t", "2026-01-01T00:00:00Z").unwrap();
        let job = BatchJob {
            object: ObjectRef {
                bucket: "b".into(),
                key: "batches/incoming/acme/x.csv".into(),
                etag: "e".into(),
            },
            size: 10,
            progress: BatchProgress {
                feature_source: FeatureSource::File,
                model: PinnedModel {
                    version: "v".into(),
                    object_key: "k".into(),
                },
                thresholds: Thresholds::default(),
                ruleset: None,
                checkpoint: Checkpoint {
                    busy_ms: 2000,
                    counts: Counts {
                        rows_read: 10,
                        ..Counts::default()
                    },
                    ..Checkpoint::default()
                },
            },
            invocations: 2,
            started_at: started,
        };
        let done = Timestamp::parse("t", "2026-01-01T00:00:03Z").unwrap();
        let s = Summary::completed(&file, &job, done);
        let v: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["counts"]["rows_read"], 10);
        assert_eq!(v["timings"]["elapsed_ms"], 3000);
        assert_eq!(v["timings"]["rows_per_second"], 5.0);
        assert_eq!(v["results_key"], "batches/results/acme/x.csv");
        assert_eq!(v["feature_source"], "file");
        assert!(v.get("error").is_none());
    }
}
