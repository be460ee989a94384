//! Converts models trained in Python (LightGBM text, XGBoost JSON) into a Verdict artifact.
//!
//! Each format parser turns the file into trees whose `feature` is the model's own column index;
//! [`finish`] then maps those columns onto Verdict's features by name and seals the structure.
//! Every problem with the file is a [`ModelError::Import`] naming the file and where in it.

pub mod lightgbm;
pub mod xgboost;

pub use lightgbm::import_lightgbm;
pub use xgboost::import_xgboost;

use super::{Comparison, FeatureSchema, Forest};
use super::{ModelArtifact, ModelError, ModelSource, Node, Tree, ARTIFACT_FORMAT_VERSION};
use crate::domain::features::{FEATURE_COUNT, FEATURE_NAMES, HANDBOOK_FEATURE_COUNT};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The file formats `import` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// LightGBM's text model (`Booster.save_model("model.txt")`).
    Lightgbm,
    /// XGBoost's JSON model (`Booster.save_model("model.json")`).
    Xgboost,
}

impl FromStr for ImportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "lightgbm" | "lgbm" => Ok(ImportFormat::Lightgbm),
            "xgboost" | "xgb" => Ok(ImportFormat::Xgboost),
            other => Err(format!("unknown model format {other:?}: expected lightgbm or xgboost")),
        }
    }
}

impl fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImportFormat::Lightgbm => "lightgbm",
            ImportFormat::Xgboost => "xgboost",
        })
    }
}

/// Converts a model file's bytes; `origin` names the file in errors and in the artifact.
pub fn import(format: ImportFormat, origin: &str, bytes: &[u8]) -> Result<ModelArtifact, ModelError> {
    match format {
        ImportFormat::Lightgbm => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                import_error(
                    origin,
                    format!("not a LightGBM text model: byte {} is not valid UTF-8", e.valid_up_to()),
                )
            })?;
            import_lightgbm(origin, text)
        }
        ImportFormat::Xgboost => import_xgboost(origin, bytes),
    }
}

pub(crate) fn import_error(origin: &str, reason: impl Into<String>) -> ModelError {
    ModelError::Import {
        path: origin.to_owned(),
        reason: reason.into(),
    }
}

/// What a format parser hands to [`finish`].
pub(crate) struct Parsed {
    pub source: ModelSource,
    pub comparison: Comparison,
    pub base_margin: f64,
    /// Trees whose `feature` indexes `feature_names`.
    pub trees: Vec<Tree>,
    /// The model's column names, in its own order; empty when the file has none.
    pub feature_names: Vec<String>,
    /// How many columns the model was trained on.
    pub num_features: usize,
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    pub training: BTreeMap<String, serde_json::Value>,
}

/// LightGBM's and XGBoost's placeholder names, which say nothing about meaning.
fn is_placeholder(name: &str, i: usize) -> bool {
    name.strip_prefix("Column_")
        .or_else(|| name.strip_prefix('f'))
        .is_some_and(|n| n == i.to_string())
}

/// For each model column, the Verdict feature it feeds, or None when no split reads it.
fn map_features(p: &Parsed) -> Result<Vec<Option<u32>>, String> {
    let mut used = vec![false; p.num_features];
    for tree in &p.trees {
        for n in tree.nodes.iter().filter(|n| !n.is_leaf()) {
            if let Some(u) = used.get_mut(n.feature as usize) {
                *u = true;
            }
        }
    }
    let names = &p.feature_names;
    if names.is_empty() || names.iter().enumerate().all(|(i, n)| is_placeholder(n, i)) {
        // Without names, the only safe reading is Verdict's own order: all features, or exactly the
        // handbook's 15 that lead it.
        if p.num_features != FEATURE_COUNT && p.num_features != HANDBOOK_FEATURE_COUNT {
            return Err(format!(
                "the model has {} unnamed features (no feature names in the file); Verdict maps features by name, \
                 or positionally only when there are exactly {HANDBOOK_FEATURE_COUNT} or {FEATURE_COUNT} in this \
                 order: {}",
                p.num_features,
                FEATURE_NAMES.join(", ")
            ));
        }
        return Ok((0..p.num_features as u32).map(Some).collect());
    }
    if names.len() != p.num_features {
        return Err(format!(
            "the file lists {} feature names but says the model has {} features",
            names.len(),
            p.num_features
        ));
    }
    let mut map = Vec::with_capacity(names.len());
    let mut seen = [false; FEATURE_COUNT];
    for (i, name) in names.iter().enumerate() {
        match FEATURE_NAMES.iter().position(|v| v == name) {
            Some(j) if seen[j] => {
                return Err(format!(
                    "feature name {name:?} appears twice in the model's feature list"
                ))
            }
            Some(j) => {
                seen[j] = true;
                map.push(Some(j as u32));
            }
            // A column no split reads cannot change a score, so it need not exist in Verdict.
            None if !used[i] => map.push(None),
            None => {
                return Err(format!(
                    "the model splits on feature {name:?} (column {i}), which Verdict does not compute; \
                     Verdict's features are: {}",
                    FEATURE_NAMES.join(", ")
                ))
            }
        }
    }
    Ok(map)
}

/// Maps features, builds and validates the forest, and fills in the artifact.
pub(crate) fn finish(origin: &str, mut p: Parsed) -> Result<ModelArtifact, String> {
    if p.trees.is_empty() {
        return Err("the model has no trees".into());
    }
    let map = map_features(&p)?;
    for tree in &mut p.trees {
        for n in tree.nodes.iter_mut().filter(|n| !n.is_leaf()) {
            // map_features refused every used column that has no Verdict feature.
            n.feature = map.get(n.feature as usize).copied().flatten().unwrap_or(0);
        }
    }
    let ignored: Vec<serde_json::Value> = p
        .feature_names
        .iter()
        .zip(&map)
        .filter(|(_, m)| m.is_none())
        .map(|(n, _)| serde_json::Value::from(n.as_str()))
        .collect();
    let mut forest = Forest {
        comparison: p.comparison,
        base_margin: p.base_margin,
        trees: p.trees,
    };
    forest
        .validate()
        .map_err(|e| format!("the converted trees are not valid: {e}"))?;

    let mut training = p.training;
    training.insert("source_file".into(), origin.into());
    training.insert("num_trees".into(), forest.trees.len().into());
    training.insert("num_features".into(), p.num_features.into());
    training.insert("model_feature_names".into(), p.feature_names.clone().into());
    if !ignored.is_empty() {
        training.insert("ignored_unused_features".into(), ignored.into());
    }
    training.insert("base_margin".into(), p.base_margin.into());
    Ok(ModelArtifact {
        format_version: ARTIFACT_FORMAT_VERSION,
        name: name_from_origin(origin),
        created_at: now_rfc3339(),
        source: p.source,
        feature_schema: FeatureSchema::current(),
        hyperparameters: p.hyperparameters,
        training,
        metrics: BTreeMap::new(),
        // No training data comes with the file; the loader fills neutral stats.
        feature_stats: Vec::new(),
        forest,
    })
}

/// The file's stem, e.g. "fraud_lgbm" for "s3://bucket/models/fraud_lgbm.txt".
fn name_from_origin(origin: &str) -> String {
    let file = origin.rsplit(['/', '\\']).next().unwrap_or(origin);
    let stem = file.split_once('.').map_or(file, |(s, _)| s);
    if stem.is_empty() {
        "imported".into()
    } else {
        stem.into()
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// A parameter value as JSON: integers and finite floats become numbers, the rest stays text.
pub(crate) fn param_value(s: &str) -> serde_json::Value {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return i.into();
    }
    match s.parse::<f64>() {
        // "nan"/"inf" parse as floats in Rust but are not JSON numbers; keep them as text.
        Ok(f) if f.is_finite() => f.into(),
        _ => s.into(),
    }
}

/// One node in a format's own numbering, as the layout walk sees it.
pub(crate) enum SourceNode {
    Split { left: usize, right: usize, node: Node },
    Leaf(Node),
}

/// Renumbers a tree breadth-first from `root` so every child comes after its parent.
///
/// `get(id)` describes node `id` (ids below `count`, already range-checked). A node reached twice
/// means the file's child links do not form a tree. With `require_all`, every id must be reached.
pub(crate) fn layout(
    count: usize,
    root: usize,
    require_all: bool,
    mut get: impl FnMut(usize) -> SourceNode,
) -> Result<Vec<Node>, String> {
    let mut seen = vec![false; count];
    let mut order = vec![root];
    seen[root] = true;
    let mut nodes = Vec::with_capacity(count);
    let mut i = 0;
    while i < order.len() {
        let id = order[i];
        i += 1;
        match get(id) {
            SourceNode::Leaf(mut node) => {
                node.left = 0;
                node.right = 0;
                nodes.push(node);
            }
            SourceNode::Split { left, right, mut node } => {
                for child in [left, right] {
                    if seen[child] {
                        return Err(format!(
                            "node {id} links to node {child}, which already has a parent; the links do not form a tree"
                        ));
                    }
                    seen[child] = true;
                }
                node.left = order.len() as u32;
                node.right = order.len() as u32 + 1;
                order.push(left);
                order.push(right);
                nodes.push(node);
            }
        }
    }
    if require_all {
        if let Some(id) = seen.iter().position(|s| !s) {
            return Err(format!("node {id} is not reachable from the root"));
        }
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::Missing;

    fn split(feature: u32) -> Node {
        Node {
            feature,
            threshold: 1.0,
            left: 0,
            right: 0,
            default_left: false,
            missing: Missing::NanDefault,
            value: 0.0,
            cover: 0.0,
        }
    }

    #[test]
    fn format_parses_by_name() {
        assert_eq!("lightgbm".parse::<ImportFormat>().unwrap(), ImportFormat::Lightgbm);
        assert_eq!("XGBoost".parse::<ImportFormat>().unwrap(), ImportFormat::Xgboost);
        let e = "onnx".parse::<ImportFormat>().unwrap_err();
        assert!(e.contains("onnx") && e.contains("lightgbm or xgboost"), "{e}");
        assert_eq!(ImportFormat::Xgboost.to_string(), "xgboost");
    }

    #[test]
    fn layout_puts_children_after_parents() {
        // Source: 0 -> (2, 1); 2 -> (3, 4); ids 1, 3, 4 are leaves with values 1, 3, 4.
        let nodes = layout(5, 0, true, |id| match id {
            0 => SourceNode::Split {
                left: 2,
                right: 1,
                node: split(0),
            },
            2 => SourceNode::Split {
                left: 3,
                right: 4,
                node: split(1),
            },
            _ => SourceNode::Leaf(Node::leaf(id as f64, 1.0)),
        })
        .unwrap();
        assert_eq!(nodes.len(), 5);
        assert_eq!((nodes[0].left, nodes[0].right), (1, 2));
        assert_eq!(nodes[1].feature, 1);
        assert_eq!((nodes[1].left, nodes[1].right), (3, 4));
        assert_eq!([nodes[2].value, nodes[3].value, nodes[4].value], [1.0, 3.0, 4.0]);
    }

    #[test]
    fn layout_refuses_cycles_and_orphans() {
        let e = layout(3, 0, true, |id| match id {
            0 => SourceNode::Split {
                left: 1,
                right: 1,
                node: split(0),
            },
            _ => SourceNode::Leaf(Node::leaf(0.0, 1.0)),
        })
        .unwrap_err();
        assert!(e.contains("node 0 links to node 1"), "{e}");
        let e = layout(3, 0, true, |id| match id {
            0 => SourceNode::Split {
                left: 1,
                right: 0,
                node: split(0),
            },
            _ => SourceNode::Leaf(Node::leaf(0.0, 1.0)),
        })
        .unwrap_err();
        assert!(e.contains("links to node 0"), "{e}");
        let e = layout(4, 0, true, |id| match id {
            0 => SourceNode::Split {
                left: 1,
                right: 2,
                node: split(0),
            },
            _ => SourceNode::Leaf(Node::leaf(0.0, 1.0)),
        })
        .unwrap_err();
        assert_eq!(e, "node 3 is not reachable from the root");
        assert_eq!(
            layout(4, 0, false, |id| if id == 0 {
                SourceNode::Split {
                    left: 1,
                    right: 2,
                    node: split(0),
                }
            } else {
                SourceNode::Leaf(Node::leaf(0.0, 1.0))
            })
            .unwrap()
            .len(),
            3
        );
    }

    #[test]
    fn names_come_from_the_origin() {
        assert_eq!(name_from_origin("s3://b/models/fraud_lgbm.txt"), "fraud_lgbm");
        assert_eq!(name_from_origin("C:\\m\\x.model.json"), "x");
        assert_eq!(name_from_origin("/tmp/"), "imported");
    }

    #[test]
    fn parameter_values_keep_their_type() {
        assert_eq!(param_value("31"), serde_json::json!(31));
        assert_eq!(param_value("0.05"), serde_json::json!(0.05));
        assert_eq!(param_value("1e-3"), serde_json::json!(0.001));
        assert_eq!(param_value("gbdt"), serde_json::json!("gbdt"));
        assert_eq!(param_value("nan"), serde_json::json!("nan"));
        assert_eq!(param_value("inf"), serde_json::json!("inf"));
        assert_eq!(param_value(""), serde_json::json!(""));
    }

    #[test]
    fn placeholder_names_are_positional() {
        assert!(is_placeholder("Column_3", 3));
        assert!(is_placeholder("f14", 14));
        assert!(!is_placeholder("f14", 13));
        assert!(!is_placeholder("amount", 0));
        assert!(!is_placeholder("fraud", 0));
    }
}
