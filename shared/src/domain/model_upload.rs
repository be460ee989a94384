//! Model import, the pure part: which upload is which format, what its metadata or manifest asks
//! for, and whether the model is fit to serve.
//!
//! An upload lands at `models/incoming/<tenant>/<name>`. It may say, in S3 object metadata:
//!
//! - `x-amz-meta-name`: the registry name (else the manifest's, else the artifact's or file's);
//! - `x-amz-meta-activate`: `true` or `false` (default `false`: kept as a candidate).
//!
//! or in a manifest object beside it, `<key>.manifest.json`, uploaded *before* the model:
//!
//! ```json
//! {"name": "handbook-lgbm", "activate": true, "metrics": {"auc": 0.88},
//!  "reference": {"columns": ["amount", "..."], "features": [[45.84, null, ...]], "predictions": [0.0063]}}
//! ```
//!
//! Every field is optional; unknown fields are refused (a typo must not silently keep a model
//! inactive). In `reference`, `columns` names the features of each row (default: Verdict's order,
//! as many as the row has), `null` is a missing value (JSON has no NaN), features not named are
//! missing, and `predictions` are the source library's probabilities for the rows. When metadata
//! and manifest both set `name` or `activate` they must agree.
//!
//! Validation: format, then feature schema and structure (and the digest, for a Verdict artifact),
//! then a reference sample: the manifest's, where every score must be within [`TOLERANCE`] of the
//! source library's, or else [`builtin_sample`], where every probability must be finite and in
//! `[0, 1]`.

use crate::domain::features::{FeatureVector, FEATURE_COUNT, FEATURE_NAMES};
use crate::domain::model::import::{import, ImportFormat};
use crate::domain::model::{Model, ModelError, ModelSource};
use crate::domain::TenantId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub const INCOMING_PREFIX: &str = "models/incoming/";
pub const ACTIVE_PREFIX: &str = "models/active/";
pub const REJECTED_PREFIX: &str = "models/rejected/";
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// Larger uploads are refused unread: a 1,000-tree LightGBM text model is about 10 MB.
pub const MAX_MODEL_BYTES: u64 = 64 << 20;
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
pub const MAX_REFERENCE_ROWS: usize = 100_000;
/// Largest |Verdict − source library| accepted on a reference row.
pub const TOLERANCE: f64 = 1e-6;
const MAX_NAME_LEN: usize = 128;

/// Why an upload was refused. The message is what the registry item records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("{origin}: the file is empty")]
    Empty { origin: String },
    #[error("{origin}: {size} bytes is larger than the {max}-byte limit for a model")]
    TooLarge { origin: String, size: u64, max: u64 },
    #[error("{origin}: {reason}")]
    UnknownFormat { origin: String, reason: String },
    #[error("{origin}: {reason}")]
    Metadata { origin: String, reason: String },
    #[error("{origin}: {reason}")]
    Manifest { origin: String, reason: String },
    /// The model itself: digest, body, feature schema, structure, or an import error.
    #[error("{reason}")]
    Model { code: &'static str, reason: String },
    #[error("{origin}: reference sample: {reason}")]
    ReferenceInvalid { origin: String, reason: String },
    #[error(
        "{origin}: reference sample: {mismatched} of {rows} rows differ from the source library's predictions \
         by more than {TOLERANCE:e}; first at row {row}: Verdict {ours:.9}, expected {expected:.9} (max |difference| {max_diff:.3e})"
    )]
    ReferenceMismatch {
        origin: String,
        rows: usize,
        mismatched: usize,
        row: usize,
        ours: f64,
        expected: f64,
        max_diff: f64,
    },
    #[error("{origin}: built-in sample row {row}: the model's probability is {probability}, not a number in [0, 1]")]
    BadProbability {
        origin: String,
        row: usize,
        probability: f64,
    },
}

impl Rejection {
    /// A stable, machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Empty { .. } => "empty",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::UnknownFormat { .. } => "unknown_format",
            Rejection::Metadata { .. } => "bad_metadata",
            Rejection::Manifest { .. } => "bad_manifest",
            Rejection::Model { code, .. } => code,
            Rejection::ReferenceInvalid { .. } => "bad_reference",
            Rejection::ReferenceMismatch { .. } => "reference_mismatch",
            Rejection::BadProbability { .. } => "bad_probability",
        }
    }

    fn model(source: ModelError) -> Self {
        let code = match &source {
            ModelError::NotAnArtifact { .. } => "not_an_artifact",
            ModelError::Digest { .. } => "digest_mismatch",
            ModelError::Body { .. } => "invalid_artifact",
            ModelError::Schema { .. } => "feature_schema",
            ModelError::Forest { .. } => "invalid_trees",
            ModelError::Import { .. } | ModelError::Io { .. } | ModelError::Train(_) => "invalid_model_file",
        };
        Rejection::Model {
            code,
            reason: source.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keys in the model bucket
// ---------------------------------------------------------------------------------------------

/// Why an event's object key is not an upload this function handles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object key {key:?}: {reason}")]
pub struct KeyError {
    pub key: String,
    pub reason: String,
}

/// `<prefix><tenant>/<name>`, split and checked. Shared by every S3-triggered function.
pub fn split_tenant_key(prefix: &str, key: &str) -> Result<(TenantId, String), KeyError> {
    let err = |reason: String| KeyError {
        key: key.to_owned(),
        reason,
    };
    let rest = key
        .strip_prefix(prefix)
        .ok_or_else(|| err(format!("is not under {prefix}")))?;
    let (tenant, name) = rest
        .split_once('/')
        .ok_or_else(|| err(format!("expected {prefix}<tenant>/<file>")))?;
    let tenant = TenantId::parse(tenant).map_err(|e| err(format!("tenant segment: {}", e.reason)))?;
    if name.is_empty() || name.ends_with('/') {
        return Err(err("names a folder, not a file".into()));
    }
    Ok((tenant, name.to_owned()))
}

/// An upload under `models/incoming/<tenant>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingModel {
    pub tenant: TenantId,
    /// The object key as uploaded.
    pub key: String,
    /// The key below the tenant's folder, e.g. `handbook.txt` or `2018/handbook.txt`.
    pub name: String,
}

impl IncomingModel {
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        let (tenant, name) = split_tenant_key(INCOMING_PREFIX, key)?;
        Ok(IncomingModel {
            tenant,
            key: key.to_owned(),
            name,
        })
    }

    /// A manifest travels with its model and is never imported itself.
    pub fn is_manifest(&self) -> bool {
        self.key.ends_with(MANIFEST_SUFFIX)
    }

    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.key)
    }

    /// Where an accepted model's artifact lives (the only prefix the api may read).
    pub fn active_key(&self, version: &str) -> String {
        active_key(&self.tenant, version)
    }

    /// Where a refused upload is moved.
    pub fn rejected_key(&self) -> String {
        format!("{REJECTED_PREFIX}{}/{}", self.tenant, self.name)
    }

    pub fn rejected_manifest_key(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.rejected_key())
    }

    /// The file's stem, the default registry name for an imported model.
    pub fn stem(&self) -> &str {
        let file = self.name.rsplit('/').next().unwrap_or(&self.name);
        match file.split_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem,
            _ => file,
        }
    }
}

pub fn active_key(tenant: &TenantId, version: &str) -> String {
    format!("{ACTIVE_PREFIX}{tenant}/{version}.vmodel")
}

// ---------------------------------------------------------------------------------------------
// Format detection
// ---------------------------------------------------------------------------------------------

/// What an upload is, from its bytes (never its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadFormat {
    Verdict,
    Lightgbm,
    Xgboost,
}

impl UploadFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            UploadFormat::Verdict => "verdict",
            UploadFormat::Lightgbm => "lightgbm",
            UploadFormat::Xgboost => "xgboost",
        }
    }
}

impl fmt::Display for UploadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const ACCEPTED: &str = "expected a Verdict artifact (first line `verdict-model/1 sha256:…`), a LightGBM text model \
                        (Booster.save_model(\"model.txt\"), first line `tree`) or an XGBoost JSON model \
                        (Booster.save_model(\"model.json\"))";

pub fn detect_format(origin: &str, bytes: &[u8]) -> Result<UploadFormat, Rejection> {
    let unknown = |reason: String| Rejection::UnknownFormat {
        origin: origin.to_owned(),
        reason,
    };
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(Rejection::Empty {
            origin: origin.to_owned(),
        });
    };
    let body = &body[start..];
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(unknown(format!(
            "the file is gzip-compressed; upload the model uncompressed ({ACCEPTED})"
        )));
    }
    if body.starts_with(b"verdict-model/") {
        return Ok(UploadFormat::Verdict);
    }
    let first_line = body.split(|&b| b == b'\n').next().unwrap_or_default();
    if first_line.strip_suffix(b"\r").unwrap_or(first_line) == b"tree" {
        return Ok(UploadFormat::Lightgbm);
    }
    if body[0] == b'{' {
        // JSON continues with whitespace, a key or `}`; UBJSON with a type marker.
        return match body[1..].iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'"') | Some(b'}') | None => Ok(UploadFormat::Xgboost),
            Some(_) => Err(unknown(format!(
                "this looks like XGBoost's binary UBJSON format; save the model as JSON instead ({ACCEPTED})"
            ))),
        };
    }
    Err(unknown(format!("unrecognised model format; {ACCEPTED}")))
}

// ---------------------------------------------------------------------------------------------
// Metadata and manifest
// ---------------------------------------------------------------------------------------------

/// The reference sample: rows and the source library's predictions for them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSample {
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    pub features: Vec<Vec<Option<f64>>>,
    pub predictions: Vec<f64>,
}

/// `<key>.manifest.json`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub activate: Option<bool>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub reference: Option<ReferenceSample>,
}

impl Manifest {
    pub fn parse(origin: &str, bytes: &[u8]) -> Result<Manifest, Rejection> {
        let bad = |reason: String| Rejection::Manifest {
            origin: origin.to_owned(),
            reason,
        };
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            let hint = if e.is_syntax() {
                " (JSON has no NaN: write a missing value as null)"
            } else {
                ""
            };
            bad(format!("is not a valid manifest: {e}{hint}"))
        })?;
        if let Some(name) = &m.name {
            check_name(name).map_err(|r| bad(format!("name: {r}")))?;
        }
        if let Some((k, v)) = m.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(bad(format!("metrics.{k}: {v} is not a finite number")));
        }
        Ok(m)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// What the upload asks for, from metadata and manifest together.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UploadOptions {
    pub name: Option<String>,
    pub activate: bool,
    pub metrics: BTreeMap<String, f64>,
    pub reference: Option<ReferenceSample>,
}

/// Combines S3 user metadata (keys without `x-amz-meta-`, as S3 returns them) and the manifest.
pub fn upload_options(
    origin: &str,
    metadata: &HashMap<String, String>,
    manifest: Option<Manifest>,
) -> Result<UploadOptions, Rejection> {
    let bad = |reason: String| Rejection::Metadata {
        origin: origin.to_owned(),
        reason,
    };
    let meta = |k: &str| {
        metadata
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.trim())
    };
    let meta_name = match meta("name") {
        Some(n) => {
            check_name(n).map_err(|r| bad(format!("x-amz-meta-name: {r}")))?;
            Some(n.to_owned())
        }
        None => None,
    };
    let meta_activate = match meta("activate") {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
        Some(v) => return Err(bad(format!("x-amz-meta-activate: {v:?} is not true or false"))),
    };
    let manifest = manifest.unwrap_or_default();
    let name = match (meta_name, manifest.name) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(format!(
                "x-amz-meta-name {a:?} and the manifest's name {b:?} disagree"
            )))
        }
        (a, b) => a.or(b),
    };
    let activate = match (meta_activate, manifest.activate) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(format!(
                "x-amz-meta-activate {a} and the manifest's activate {b} disagree"
            )))
        }
        (a, b) => a.or(b).unwrap_or(false),
    };
    Ok(UploadOptions {
        name,
        activate,
        metrics: manifest.metrics,
        reference: manifest.reference,
    })
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// How the scores were checked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScoreCheck {
    /// The manifest's reference sample, against the source library's predictions.
    Reference { rows: usize, max_abs_diff: f64 },
    /// [`builtin_sample`]: probabilities only.
    BuiltIn { rows: usize },
}

impl fmt::Display for ScoreCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScoreCheck::Reference { rows, max_abs_diff } => write!(
                f,
                "reference sample of {rows} rows, max |difference| {max_abs_diff:.3e} <= {TOLERANCE:e}"
            ),
            ScoreCheck::BuiltIn { rows } => write!(f, "built-in sample of {rows} rows, probabilities in [0, 1]"),
        }
    }
}

/// A model fit to serve, with the bytes to store under `models/active/`.
#[derive(Debug)]
pub struct Validated {
    pub model: Model,
    /// The Verdict artifact: the upload itself, or the converted model.
    pub artifact_bytes: Vec<u8>,
    pub format: UploadFormat,
    /// The registry name: metadata or manifest, else the artifact's (Verdict) or the file's stem.
    pub name: String,
    /// The artifact's metrics, then the manifest's (which win).
    pub metrics: BTreeMap<String, f64>,
    pub check: ScoreCheck,
}

impl Validated {
    pub fn source(&self) -> ModelSource {
        self.model.artifact.source.clone()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The registry version of a refused upload: the first 16 hex digits of the upload's digest.
pub fn rejected_version(upload_sha256: &str) -> String {
    upload_sha256.chars().take(16).collect()
}

/// Checks an upload end to end. `origin` names it in every reason; `default_name` is used when
/// neither metadata nor manifest names an imported model.
pub fn validate(
    origin: &str,
    default_name: &str,
    bytes: &[u8],
    options: &UploadOptions,
) -> Result<Validated, Rejection> {
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(Rejection::TooLarge {
            origin: origin.to_owned(),
            size: bytes.len() as u64,
            max: MAX_MODEL_BYTES,
        });
    }
    let format = detect_format(origin, bytes)?;
    // Checked before the (slower) import, so a bad sample is reported as such.
    let reference = options
        .reference
        .as_ref()
        .map(|r| reference_rows(origin, r))
        .transpose()?;
    let (model, artifact_bytes, name) = match format {
        UploadFormat::Verdict => {
            // The artifact is stored as uploaded: renaming it would change its digest.
            let model = Model::from_bytes(origin, bytes).map_err(Rejection::model)?;
            let name = options.name.clone().unwrap_or_else(|| model.artifact.name.clone());
            (model, bytes.to_vec(), name)
        }
        UploadFormat::Lightgbm | UploadFormat::Xgboost => {
            let f = if format == UploadFormat::Lightgbm {
                ImportFormat::Lightgbm
            } else {
                ImportFormat::Xgboost
            };
            let mut artifact = import(f, origin, bytes).map_err(Rejection::model)?;
            artifact.name = options.name.clone().unwrap_or_else(|| default_name.to_owned());
            artifact.metrics.extend(options.metrics.clone());
            let out = artifact.to_bytes();
            let model = Model::from_bytes(origin, &out).map_err(Rejection::model)?;
            let name = model.artifact.name.clone();
            (model, out, name)
        }
    };
    let check = match reference {
        Some((rows, expected)) => compare_reference(origin, &model, &rows, &expected)?,
        None => check_builtin(origin, &model)?,
    };
    let mut metrics = model.artifact.metrics.clone();
    metrics.extend(options.metrics.clone());
    Ok(Validated {
        model,
        artifact_bytes,
        format,
        name,
        metrics,
        check,
    })
}

/// The sample as feature vectors in Verdict's order, with the expected probabilities.
fn reference_rows(origin: &str, r: &ReferenceSample) -> Result<(Vec<FeatureVector>, Vec<f64>), Rejection> {
    let bad = |reason: String| Rejection::ReferenceInvalid {
        origin: origin.to_owned(),
        reason,
    };
    if r.features.is_empty() {
        return Err(bad("features is empty".into()));
    }
    if r.features.len() > MAX_REFERENCE_ROWS {
        return Err(bad(format!("{} rows; at most {MAX_REFERENCE_ROWS}", r.features.len())));
    }
    if r.features.len() != r.predictions.len() {
        return Err(bad(format!(
            "{} feature rows but {} predictions",
            r.features.len(),
            r.predictions.len()
        )));
    }
    let columns: Vec<usize> = match &r.columns {
        Some(names) => {
            let mut seen = [false; FEATURE_COUNT];
            let mut at = Vec::with_capacity(names.len());
            for (i, n) in names.iter().enumerate() {
                let j = FEATURE_NAMES.iter().position(|f| f == n).ok_or_else(|| {
                    bad(format!(
                        "columns[{i}]: {n:?} is not a Verdict feature; they are {}",
                        FEATURE_NAMES.join(", ")
                    ))
                })?;
                if std::mem::replace(&mut seen[j], true) {
                    return Err(bad(format!("columns[{i}]: {n:?} appears twice")));
                }
                at.push(j);
            }
            at
        }
        None => (0..FEATURE_COUNT).collect(),
    };
    let mut rows = Vec::with_capacity(r.features.len());
    for (i, row) in r.features.iter().enumerate() {
        let width_ok = if r.columns.is_some() {
            row.len() == columns.len()
        } else {
            !row.is_empty() && row.len() <= FEATURE_COUNT
        };
        if !width_ok {
            return Err(bad(format!(
                "features[{i}] has {} values; expected {}",
                row.len(),
                if r.columns.is_some() {
                    columns.len().to_string()
                } else {
                    format!("1 to {FEATURE_COUNT} (Verdict's features in order)")
                }
            )));
        }
        // A feature the sample does not give is missing, as it was for the source library.
        let mut x = [f64::NAN; FEATURE_COUNT];
        for (v, &j) in row.iter().zip(&columns) {
            x[j] = v.unwrap_or(f64::NAN);
        }
        rows.push(FeatureVector(x));
    }
    if let Some((i, p)) = r
        .predictions
        .iter()
        .enumerate()
        .find(|(_, p)| !(p.is_finite() && (0.0..=1.0).contains(*p)))
    {
        return Err(bad(format!("predictions[{i}] = {p} is not a probability")));
    }
    Ok((rows, r.predictions.clone()))
}

fn compare_reference(
    origin: &str,
    model: &Model,
    rows: &[FeatureVector],
    expected: &[f64],
) -> Result<ScoreCheck, Rejection> {
    let mut max_diff = 0.0f64;
    let mut first = None;
    let mut mismatched = 0;
    for (i, (x, &want)) in rows.iter().zip(expected).enumerate() {
        let ours = model.probability(x);
        let d = (ours - want).abs();
        // NaN fails the comparison too.
        if d.is_nan() || d > TOLERANCE {
            mismatched += 1;
            first.get_or_insert((i, ours, want));
        }
        if d.is_finite() {
            max_diff = max_diff.max(d);
        } else {
            max_diff = f64::INFINITY;
        }
    }
    match first {
        None => Ok(ScoreCheck::Reference {
            rows: rows.len(),
            max_abs_diff: max_diff,
        }),
        Some((row, ours, expected)) => Err(Rejection::ReferenceMismatch {
            origin: origin.to_owned(),
            rows: rows.len(),
            mismatched,
            row,
            ours,
            expected,
            max_diff,
        }),
    }
}

fn check_builtin(origin: &str, model: &Model) -> Result<ScoreCheck, Rejection> {
    let rows = builtin_sample();
    for (i, x) in rows.iter().enumerate() {
        let p = model.probability(x);
        if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
            return Err(Rejection::BadProbability {
                origin: origin.to_owned(),
                row: i,
                probability: p,
            });
        }
    }
    Ok(ScoreCheck::BuiltIn { rows: rows.len() })
}

/// Feature rows spanning what scoring meets: quiet and busy entities, tiny and huge amounts,
/// night and weekend, risky terminals, zeros and missing values.
pub fn builtin_sample() -> Vec<FeatureVector> {
    // amount, weekend, night, cust (count, mean) x 1/7/30 d, term (count, risk) x 1/7/30 d, ratios x3
    const ROWS: [[f64; FEATURE_COUNT]; 10] = [
        [0.0; FEATURE_COUNT],
        [
            45.84, 0.0, 0.0, 4.0, 29.14, 23.0, 39.29, 85.0, 35.63, 4.0, 0.0, 22.0, 0.0, 79.0, 0.0, 1.57, 1.17, 1.29,
        ],
        [
            250.0, 1.0, 1.0, 1.0, 250.0, 3.0, 120.0, 10.0, 80.0, 2.0, 0.5, 10.0, 0.3, 40.0, 0.2, 1.0, 2.08, 3.13,
        ],
        [
            0.01, 0.0, 1.0, 12.0, 3.2, 40.0, 4.1, 150.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.003, 0.002, 0.002,
        ],
        [
            5000.0, 1.0, 0.0, 1.0, 5000.0, 1.0, 5000.0, 1.0, 5000.0, 30.0, 1.0, 200.0, 1.0, 800.0, 1.0, 1.0, 1.0, 1.0,
        ],
        [
            1e6, 0.0, 0.0, 50.0, 1e5, 300.0, 5e4, 1000.0, 2e4, 500.0, 0.0, 3000.0, 0.01, 12000.0, 0.02, 10.0, 20.0,
            50.0,
        ],
        [
            99.9, 0.0, 0.0, 2.0, 60.0, 9.0, 55.0, 31.0, 58.0, 7.0, 0.14, 49.0, 0.06, 210.0, 0.04, 1.66, 1.82, 1.72,
        ],
        [
            12.5, 1.0, 0.0, 1.0, 12.5, 1.0, 12.5, 1.0, 12.5, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0,
        ],
        [f64::NAN; FEATURE_COUNT],
        [
            f64::NAN,
            0.0,
            1.0,
            f64::NAN,
            f64::NAN,
            3.0,
            f64::NAN,
            9.0,
            20.0,
            f64::NAN,
            1.0,
            0.0,
            f64::NAN,
            5.0,
            0.0,
            f64::NAN,
            f64::NAN,
            1.0,
        ],
    ];
    ROWS.iter().map(|r| FeatureVector(*r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::ModelArtifact;

    fn artifact(leaf: f64) -> ModelArtifact {
        let mut a = crate::domain::model::stump_artifact(100.0, -2.0, -1.0, leaf);
        a.metrics = BTreeMap::from([("auc".to_owned(), 0.9)]);
        a
    }

    #[test]
    fn keys_give_the_tenant_and_refuse_anything_else() {
        let m = IncomingModel::parse("models/incoming/acme/2018/handbook.txt").unwrap();
        assert_eq!(m.tenant.as_str(), "acme");
        assert_eq!(m.name, "2018/handbook.txt");
        assert_eq!(m.stem(), "handbook");
        assert_eq!(m.rejected_key(), "models/rejected/acme/2018/handbook.txt");
        assert_eq!(m.active_key("0123"), "models/active/acme/0123.vmodel");
        assert_eq!(m.manifest_key(), "models/incoming/acme/2018/handbook.txt.manifest.json");
        assert!(IncomingModel::parse("models/incoming/acme/x.txt.manifest.json")
            .unwrap()
            .is_manifest());
        for bad in [
            "models/incoming/acme",
            "models/incoming/acme/",
            "models/incoming//x.txt",
            "models/incoming/ac#me/x.txt",
            "models/active/acme/x.txt",
            "",
        ] {
            let e = IncomingModel::parse(bad).unwrap_err();
            assert_eq!(e.key, bad);
        }
        assert!(IncomingModel::parse("models/incoming/ac#me/x.txt")
            .unwrap_err()
            .to_string()
            .contains("tenant segment"));
    }

    #[test]
    fn formats_are_detected_from_bytes() {
        let d = |b: &[u8]| detect_format("o", b);
        assert_eq!(d(&artifact(1.0).to_bytes()).unwrap(), UploadFormat::Verdict);
        assert_eq!(d(b"tree\nversion=v4\n").unwrap(), UploadFormat::Lightgbm);
        assert_eq!(d(b"\xEF\xBB\xBFtree\r\nversion=v4").unwrap(), UploadFormat::Lightgbm);
        assert_eq!(d(b"  {\"learner\": {}}").unwrap(), UploadFormat::Xgboost);
        assert_eq!(d(b"{}").unwrap(), UploadFormat::Xgboost);
        assert_eq!(d(b"").unwrap_err().code(), "empty");
        assert_eq!(d(b" \n").unwrap_err().code(), "empty");
        assert!(d(b"{L\x00\x00").unwrap_err().to_string().contains("UBJSON"));
        assert!(d(&[0x1f, 0x8b, 8, 0]).unwrap_err().to_string().contains("gzip"));
        let e = d(b"binf\x00\x01").unwrap_err();
        assert_eq!(e.code(), "unknown_format");
        assert!(e.to_string().starts_with("o: unrecognised model format"), "{e}");
    }

    #[test]
    fn metadata_and_manifest_combine_and_must_agree() {
        let md = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let o = upload_options("o", &md(&[("name", "champ"), ("activate", "TRUE")]), None).unwrap();
        assert_eq!((o.name.as_deref(), o.activate), (Some("champ"), true));
        assert!(!upload_options("o", &md(&[]), None).unwrap().activate);
        let e = upload_options("o", &md(&[("activate", "yes")]), None).unwrap_err();
        assert_eq!(e.to_string(), "o: x-amz-meta-activate: \"yes\" is not true or false");

        let m = Manifest::parse("m", br#"{"name":"champ","activate":true,"metrics":{"auc":0.9}}"#).unwrap();
        let o = upload_options("o", &md(&[("activate", "true")]), Some(m.clone())).unwrap();
        assert_eq!(o.metrics["auc"], 0.9);
        let e = upload_options("o", &md(&[("activate", "false")]), Some(m.clone())).unwrap_err();
        assert!(e.to_string().contains("disagree"), "{e}");
        let e = upload_options("o", &md(&[("name", "other")]), Some(m)).unwrap_err();
        assert!(
            e.to_string().contains("\"other\" and the manifest's name \"champ\""),
            "{e}"
        );

        let e = Manifest::parse("m", br#"{"activte":true}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `activte`"), "{e}");
        let e = Manifest::parse("m", br#"{"reference":{"features":[[NaN]],"predictions":[0.1]}}"#).unwrap_err();
        assert!(e.to_string().contains("write a missing value as null"), "{e}");
        assert!(Manifest::parse("m", br#"{"name":""}"#).is_err());
    }

    #[test]
    fn a_verdict_artifact_passes_and_keeps_its_bytes() {
        let bytes = artifact(3.0).to_bytes();
        let v = validate("o", "file", &bytes, &UploadOptions::default()).unwrap();
        assert_eq!(v.artifact_bytes, bytes);
        assert_eq!(v.name, "tiny");
        assert_eq!(v.format, UploadFormat::Verdict);
        assert_eq!(v.check, ScoreCheck::BuiltIn { rows: 10 });
        assert_eq!(v.metrics["auc"], 0.9);
    }

    #[test]
    fn a_tampered_artifact_is_refused_for_its_digest() {
        let mut bytes = artifact(3.0).to_bytes();
        let i = bytes.len() - 3;
        bytes[i] ^= 1;
        let e = validate("s3://b/k", "k", &bytes, &UploadOptions::default()).unwrap_err();
        assert_eq!(e.code(), "digest_mismatch");
        assert!(e.to_string().starts_with("s3://b/k: digest mismatch"), "{e}");
    }

    #[test]
    fn reference_scores_must_match_within_tolerance() {
        let bytes = artifact(3.0).to_bytes();
        let model = Model::from_bytes("o", &bytes).unwrap();
        let rows = vec![vec![Some(50.0)], vec![Some(150.0)], vec![None]];
        let want: Vec<f64> = rows
            .iter()
            .map(|r| {
                let mut x = [f64::NAN; FEATURE_COUNT];
                x[0] = r[0].unwrap_or(f64::NAN);
                model.probability(&FeatureVector(x))
            })
            .collect();
        let opts = |predictions: Vec<f64>| UploadOptions {
            reference: Some(ReferenceSample {
                columns: Some(vec!["amount".into()]),
                features: rows.clone(),
                predictions,
            }),
            ..Default::default()
        };
        let v = validate("o", "f", &bytes, &opts(want.clone())).unwrap();
        assert!(matches!(v.check, ScoreCheck::Reference { rows: 3, max_abs_diff } if max_abs_diff == 0.0));

        let mut off = want.clone();
        off[1] += 2e-6;
        let e = validate("o", "f", &bytes, &opts(off)).unwrap_err();
        assert_eq!(e.code(), "reference_mismatch");
        assert!(e.to_string().contains("1 of 3 rows differ"), "{e}");
        assert!(e.to_string().contains("first at row 1"), "{e}");

        let e = validate("o", "f", &bytes, &opts(vec![0.1])).unwrap_err();
        assert_eq!(e.to_string(), "o: reference sample: 3 feature rows but 1 predictions");
        let mut bad = opts(want);
        if let Some(r) = bad.reference.as_mut() {
            r.columns = Some(vec!["amount".into(), "amount".into()]);
        }
        assert!(validate("o", "f", &bytes, &bad)
            .unwrap_err()
            .to_string()
            .contains("appears twice"));
    }

    #[test]
    fn the_builtin_sample_has_every_feature() {
        for x in builtin_sample() {
            assert_eq!(x.0.len(), FEATURE_COUNT);
        }
        assert_eq!(rejected_version(&sha256_hex(b"x")).len(), 16);
    }
}
