//! The model artifact: trees plus everything needed to trust and explain them.
//!
//! On disk an artifact is one header line, `verdict-model/1 sha256:<hex>`, followed by the JSON
//! body whose exact bytes the digest covers. The loader refuses a bad digest or a feature schema
//! that differs from the code's.

pub mod forest;
pub mod import;
pub mod reasons;
pub mod train;

use crate::domain::features::{FeatureVector, FEATURE_COUNT, FEATURE_NAMES, FEATURE_SCHEMA_VERSION};
pub use forest::{Attribution, Comparison, CompiledForest, Forest, ForestError, Missing, Node, Tree};
pub use reasons::{Reason, Reasons, MAX_REASONS};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

pub const ARTIFACT_FORMAT_VERSION: u32 = 1;
const HEADER_PREFIX: &str = "verdict-model/1 sha256:";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a Verdict model: the first line must start with {HEADER_PREFIX:?}")]
    NotAnArtifact { path: String },
    #[error("{path}: digest mismatch: header says sha256 {expected}, body hashes to {actual}; the file is corrupt or was edited")]
    Digest {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: body is not a valid artifact: {reason}")]
    Body { path: String, reason: String },
    #[error("{path}: feature schema mismatch: the model has v{model_version} {model_names:?}, the code has v{code_version} {code_names:?}")]
    Schema {
        path: String,
        model_version: u32,
        model_names: Vec<String>,
        code_version: u32,
        code_names: Vec<String>,
    },
    #[error("{path}: {source}")]
    Forest { path: String, source: ForestError },
    #[error("{path}: {reason}")]
    Import { path: String, reason: String },
    #[error("training failed: {0}")]
    Train(String),
}

/// The names, order and version of the model's inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSchema {
    pub version: u32,
    pub names: Vec<String>,
}

impl FeatureSchema {
    pub fn current() -> Self {
        FeatureSchema {
            version: FEATURE_SCHEMA_VERSION,
            names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Typical values of a feature on the training data, used to phrase reasons.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct FeatureStats {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
}

impl FeatureStats {
    /// Stats of each column of `rows`.
    pub fn of_rows(rows: &[FeatureVector]) -> Vec<FeatureStats> {
        (0..FEATURE_COUNT)
            .map(|j| {
                let mut col: Vec<f64> = rows.iter().map(|r| r.0[j]).filter(|v| v.is_finite()).collect();
                if col.is_empty() {
                    return FeatureStats::default();
                }
                col.sort_by(f64::total_cmp);
                let q = |p: f64| col[((col.len() - 1) as f64 * p).round() as usize];
                FeatureStats {
                    mean: col.iter().sum::<f64>() / col.len() as f64,
                    p50: q(0.5),
                    p95: q(0.95),
                }
            })
            .collect()
    }
}

/// Where the trees came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    Verdict,
    Lightgbm,
    Xgboost,
}

/// The artifact body, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format_version: u32,
    /// Human name, e.g. "handbook-gbdt".
    pub name: String,
    pub created_at: String,
    pub source: ModelSource,
    pub feature_schema: FeatureSchema,
    /// Hyper-parameters exactly as training used them.
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// Free-form facts about training: rows, frauds, dates, seed, duration.
    pub training: BTreeMap<String, serde_json::Value>,
    /// Held-out metrics, when known.
    pub metrics: BTreeMap<String, f64>,
    pub feature_stats: Vec<FeatureStats>,
    pub forest: Forest,
}

impl ModelArtifact {
    /// Serialises to the on-disk form: header line with digest, then the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).expect("artifact serialises: all keys are strings and floats are finite");
        let digest = hex::encode(Sha256::digest(&body));
        let mut out = Vec::with_capacity(body.len() + 100);
        out.extend_from_slice(HEADER_PREFIX.as_bytes());
        out.extend_from_slice(digest.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&body);
        out
    }

    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        std::fs::write(path, self.to_bytes()).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// A loaded, verified model ready to score.
#[derive(Debug, Clone)]
pub struct Model {
    pub artifact: ModelArtifact,
    pub sha256: String,
    compiled: CompiledForest,
}

/// One scored row: probability, log-odds and the attribution behind it.
#[derive(Debug, Clone, Copy)]
pub struct Score {
    pub probability: f64,
    pub attribution: Attribution,
}

impl Model {
    /// Verifies and loads an artifact. `origin` names the file or object in errors.
    pub fn from_bytes(origin: &str, bytes: &[u8]) -> Result<Self, ModelError> {
        let path = origin.to_owned();
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| ModelError::NotAnArtifact { path: path.clone() })?;
        let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| ModelError::NotAnArtifact { path: path.clone() })?;
        let expected = header
            .strip_prefix(HEADER_PREFIX)
            .ok_or_else(|| ModelError::NotAnArtifact { path: path.clone() })?
            .trim();
        let body = &bytes[nl + 1..];
        let actual = hex::encode(Sha256::digest(body));
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(ModelError::Digest {
                path,
                expected: expected.to_owned(),
                actual,
            });
        }
        let artifact: ModelArtifact = serde_json::from_slice(body).map_err(|e| ModelError::Body {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Self::from_artifact(&path, artifact, actual)
    }

    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&path.display().to_string(), &bytes)
    }

    /// Checks schema and structure of an in-memory artifact; `sha256` is its stored digest.
    pub fn from_artifact(origin: &str, mut artifact: ModelArtifact, sha256: String) -> Result<Self, ModelError> {
        let path = origin.to_owned();
        if artifact.format_version != ARTIFACT_FORMAT_VERSION {
            return Err(ModelError::Body {
                path,
                reason: format!(
                    "format_version {} is not supported (expected {ARTIFACT_FORMAT_VERSION})",
                    artifact.format_version
                ),
            });
        }
        let code = FeatureSchema::current();
        if artifact.feature_schema != code {
            return Err(ModelError::Schema {
                path,
                model_version: artifact.feature_schema.version,
                model_names: artifact.feature_schema.names.clone(),
                code_version: code.version,
                code_names: code.names,
            });
        }
        if artifact.feature_stats.len() != FEATURE_COUNT {
            artifact.feature_stats = vec![FeatureStats::default(); FEATURE_COUNT];
        }
        artifact
            .forest
            .validate()
            .map_err(|source| ModelError::Forest { path, source })?;
        let compiled = artifact.forest.compile();
        Ok(Model {
            artifact,
            sha256,
            compiled,
        })
    }

    /// Builds, digests and loads an artifact in memory (what `train` and `import` return).
    pub fn seal(artifact: ModelArtifact) -> Result<Self, ModelError> {
        let bytes = artifact.to_bytes();
        Self::from_bytes("<in memory>", &bytes)
    }

    /// Short, stable identity of this exact artifact.
    pub fn version(&self) -> &str {
        &self.sha256[..16]
    }

    pub fn tree_count(&self) -> usize {
        self.compiled.tree_count()
    }

    /// Probability of fraud. Allocates nothing.
    pub fn probability(&self, x: &FeatureVector) -> f64 {
        self.compiled.probability(&x.0)
    }

    /// Probability plus the per-feature attribution. Allocates nothing.
    pub fn score(&self, x: &FeatureVector) -> Score {
        let attribution = self.compiled.attribute(&x.0);
        Score {
            probability: forest::sigmoid(attribution.margin),
            attribution,
        }
    }

    /// The `k` largest contributions by magnitude, as readable reasons. Allocates nothing.
    pub fn reasons(&self, x: &FeatureVector, score: &Score, k: usize) -> Reasons {
        Reasons::top(x, &score.attribution.contributions, &self.artifact.feature_stats, k)
    }
}

/// A valid one-split artifact on `amount` (feature 0): leaf `low` at or below `threshold`,
/// `high` above, on `base_margin`. For tests and examples across the workspace, which need a
/// model without training one.
#[doc(hidden)]
pub fn stump_artifact(threshold: f64, base_margin: f64, low: f64, high: f64) -> ModelArtifact {
    let mut forest = Forest {
        comparison: Comparison::LessOrEqual,
        base_margin,
        trees: vec![Tree {
            nodes: vec![
                Node {
                    feature: 0,
                    threshold,
                    left: 1,
                    right: 2,
                    default_left: true,
                    missing: Missing::NanDefault,
                    value: 0.0,
                    cover: 100.0,
                },
                Node::leaf(low, 90.0),
                Node::leaf(high, 10.0),
            ],
        }],
    };
    // Fixed shape with valid indices: cannot fail.
    forest.validate().expect("a stump is a valid forest");
    ModelArtifact {
        format_version: ARTIFACT_FORMAT_VERSION,
        name: "tiny".into(),
        created_at: "2026-11-24T00:00:00Z".into(),
        source: ModelSource::Verdict,
        feature_schema: FeatureSchema::current(),
        hyperparameters: BTreeMap::new(),
        training: BTreeMap::new(),
        metrics: BTreeMap::new(),
        feature_stats: vec![
            FeatureStats {
                mean: 50.0,
                p50: 45.0,
                p95: 120.0
            };
            FEATURE_COUNT
        ],
        forest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny_artifact() -> ModelArtifact {
        stump_artifact(220.0, -4.0, -0.5, 6.0)
    }

    #[test]
    fn round_trips_and_verifies_digest() {
        let bytes = tiny_artifact().to_bytes();
        let m = Model::from_bytes("tiny.vmodel", &bytes).unwrap();
        assert_eq!(m.version().len(), 16);
        let mut x = FeatureVector::default();
        x.0[0] = 300.0;
        assert!((m.probability(&x) - forest::sigmoid(2.0)).abs() < 1e-15);

        let mut tampered = bytes.clone();
        let i = tampered.len() - 5;
        tampered[i] ^= 1;
        let err = Model::from_bytes("tiny.vmodel", &tampered).unwrap_err();
        assert!(matches!(err, ModelError::Digest { .. }), "{err}");
        assert!(err.to_string().contains("tiny.vmodel"));

        let err = Model::from_bytes("x", b"{}\n{}").unwrap_err();
        assert!(matches!(err, ModelError::NotAnArtifact { .. }));
    }

    #[test]
    fn refuses_a_different_feature_schema_naming_both() {
        let mut a = tiny_artifact();
        a.feature_schema.names.swap(0, 1);
        let err = Model::seal(a).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ModelError::Schema { .. }));
        assert!(
            msg.contains("the model has v2 [\"during_weekend\", \"amount\""),
            "{msg}"
        );
        assert!(msg.contains("the code has v2 [\"amount\", \"during_weekend\""), "{msg}");
    }
}
