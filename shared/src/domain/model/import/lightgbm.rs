//! LightGBM's text model format (`Booster.save_model`), binary objective only.
//!
//! The file is a header of `key=value` lines, one block per tree (`Tree=N` then `key=value`
//! lines of space-separated arrays), `end of trees`, then feature importances and a
//! `parameters:` section of `[key: value]` lines. In a tree, internal nodes and leaves are
//! numbered separately; a negative child `c` is leaf `!c`. Leaf values already include the
//! learning rate (and, in the first tree, the initial score), so the base margin is zero.

use super::{finish, import_error, layout, param_value, Parsed, SourceNode};
use crate::domain::model::{Comparison, Missing, ModelArtifact, ModelError, ModelSource, Node, Tree};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

/// A `key=value` line and where it was.
#[derive(Clone, Copy)]
struct Field<'a> {
    line: usize,
    value: &'a str,
}

struct Block<'a> {
    tree: usize,
    line: usize,
    fields: HashMap<&'a str, Field<'a>>,
}

impl<'a> Block<'a> {
    fn field(&self, key: &str) -> Result<Field<'a>, String> {
        self.fields
            .get(key)
            .copied()
            .ok_or_else(|| format!("tree {} (line {}): field {key} is missing", self.tree, self.line))
    }

    fn scalar<T: FromStr>(&self, key: &str, kind: &str) -> Result<T, String> {
        let f = self.field(key)?;
        f.value.trim().parse().map_err(|_| {
            format!(
                "line {}, tree {}, field {key}: {:?} is not {kind}",
                f.line, self.tree, f.value
            )
        })
    }

    /// A space-separated array that must have exactly `len` items.
    fn array<T: FromStr>(&self, key: &str, kind: &str, len: usize, why: &str) -> Result<Vec<T>, String> {
        let f = self.field(key)?;
        let items: Vec<&str> = f.value.split_whitespace().collect();
        if items.len() != len {
            return Err(format!(
                "line {}, tree {}, field {key}: has {} values, expected {len} ({why})",
                f.line,
                self.tree,
                items.len()
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(k, s)| {
                s.parse().map_err(|_| {
                    format!(
                        "line {}, tree {}, field {key}: value {k} ({s:?}) is not {kind}",
                        f.line, self.tree
                    )
                })
            })
            .collect()
    }
}

/// Converts a LightGBM text model; `origin` names the file in errors.
pub fn import_lightgbm(origin: &str, text: &str) -> Result<ModelArtifact, ModelError> {
    parse(text)
        .and_then(|p| finish(origin, p))
        .map_err(|reason| import_error(origin, reason))
}

/// `(line number, trimmed line)`, numbered from 1.
fn numbered(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()))
}

fn parse(text: &str) -> Result<Parsed, String> {
    let mut lines = numbered(text).peekable();
    match lines.next() {
        Some((_, "tree")) => {}
        Some((n, l)) => {
            return Err(format!(
                "line {n}: not a LightGBM text model: the first line should be \"tree\", found {:?}",
                truncate(l)
            ))
        }
        None => return Err("the file is empty".into()),
    }

    // A cut-off file is the likeliest damage; say so before some half line confuses the parse.
    if !text.lines().any(|l| l.trim() == "end of trees") {
        let trees = text.lines().filter(|l| l.trim_start().starts_with("Tree=")).count();
        let after = if trees > 0 {
            format!(" after tree {}", trees - 1)
        } else {
            String::new()
        };
        return Err(format!(
            "the file ends at line {}{after} without the \"end of trees\" line; it is truncated",
            text.lines().count()
        ));
    }

    // Header, up to the first tree.
    let mut header: HashMap<&str, Field> = HashMap::new();
    while let Some(&(n, l)) = lines.peek() {
        if l.starts_with("Tree=") || l == "end of trees" {
            break;
        }
        lines.next();
        if l.is_empty() {
            continue;
        }
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        header.insert(k, Field { line: n, value: v });
    }

    // Tree blocks.
    let mut blocks: Vec<Block> = Vec::new();
    let mut last_line = 1;
    let mut ended = false;
    while let Some((n, l)) = lines.next() {
        last_line = n;
        if l == "end of trees" {
            ended = true;
            break;
        }
        if l.is_empty() {
            continue;
        }
        let Some(id) = l.strip_prefix("Tree=") else {
            return Err(format!(
                "line {n}: expected \"Tree={}\" or \"end of trees\", found {:?}",
                blocks.len(),
                truncate(l)
            ));
        };
        if id.trim().parse::<usize>().ok() != Some(blocks.len()) {
            return Err(format!(
                "line {n}: expected \"Tree={}\", found {:?}; trees must be numbered in order",
                blocks.len(),
                truncate(l)
            ));
        }
        let mut block = Block {
            tree: blocks.len(),
            line: n,
            fields: HashMap::new(),
        };
        while let Some(&(n, l)) = lines.peek() {
            if l.is_empty() || l.starts_with("Tree=") || l == "end of trees" {
                break;
            }
            lines.next();
            last_line = n;
            let Some((k, v)) = l.split_once('=') else {
                return Err(format!(
                    "line {n}, tree {}: expected key=value, found {:?}",
                    block.tree,
                    truncate(l)
                ));
            };
            if block.fields.insert(k, Field { line: n, value: v }).is_some() {
                return Err(format!("line {n}, tree {}: field {k} appears twice", block.tree));
            }
        }
        blocks.push(block);
    }
    if !ended {
        let inside = blocks
            .last()
            .map_or(String::new(), |b| format!(" after tree {}", b.tree));
        return Err(format!(
            "the file ends at line {last_line}{inside} without the \"end of trees\" line; it is truncated"
        ));
    }

    // Parameters, after the trees.
    let mut hyperparameters = BTreeMap::new();
    let mut in_params = false;
    let mut params_ended = false;
    for (n, l) in lines {
        last_line = n;
        if l == "parameters:" {
            in_params = true;
        } else if l == "end of parameters" {
            params_ended = true;
            break;
        } else if in_params && !l.is_empty() {
            let kv = l
                .strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.split_once(':'));
            let Some((k, v)) = kv else {
                return Err(format!(
                    "line {n}: expected \"[name: value]\" in the parameters section, found {:?}",
                    truncate(l)
                ));
            };
            hyperparameters.insert(k.trim().to_owned(), param_value(v));
        }
    }
    if in_params && !params_ended {
        return Err(format!("the file ends at line {last_line} inside the parameters section without \"end of parameters\"; it is truncated"));
    }

    let head = |k: &str| header.get(k).copied();
    let head_usize = |k: &str| -> Result<Option<usize>, String> {
        head(k)
            .map(|f| {
                f.value
                    .trim()
                    .parse()
                    .map_err(|_| format!("line {}, header field {k}: {:?} is not a whole number", f.line, f.value))
            })
            .transpose()
    };
    for k in ["num_class", "num_tree_per_iteration"] {
        if let Some(v) = head_usize(k)? {
            if v != 1 {
                return Err(format!(
                    "line {}: {k}={v}; Verdict imports binary classifiers, which have 1",
                    head(k).map_or(0, |f| f.line)
                ));
            }
        }
    }
    let num_features = head_usize("max_feature_idx")?.ok_or("header field max_feature_idx is missing")? + 1;
    let feature_names: Vec<String> = head("feature_names")
        .map(|f| f.value.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();

    let objective = head("objective").ok_or("header field objective is missing")?;
    let mut tokens = objective.value.split_whitespace();
    if tokens.next() != Some("binary") {
        return Err(format!(
            "line {}: objective {:?} is not supported; Verdict imports binary classifiers (objective=binary)",
            objective.line, objective.value
        ));
    }
    let mut sigmoid = 1.0;
    for t in tokens {
        if let Some(s) = t.strip_prefix("sigmoid:") {
            sigmoid = s
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    format!(
                        "line {}, field objective: sigmoid {s:?} is not a positive number",
                        objective.line
                    )
                })?;
        }
    }
    let average_output = header.contains_key("average_output");

    if let Some(f) = head("tree_sizes") {
        let expected = f.value.split_whitespace().count();
        if expected != blocks.len() {
            return Err(format!(
                "line {}: tree_sizes lists {expected} trees but the file has {}; it is truncated or edited",
                f.line,
                blocks.len()
            ));
        }
    }
    if blocks.is_empty() {
        return Err("the model has no trees".into());
    }

    // probability = sigmoid(S * raw), raw = sum (or, for random forests, mean) of leaf values.
    let scale = if average_output {
        sigmoid / blocks.len() as f64
    } else {
        sigmoid
    };
    let trees = blocks
        .iter()
        .map(|b| tree(b, num_features, &feature_names, scale))
        .collect::<Result<Vec<_>, _>>()?;

    let mut training = BTreeMap::new();
    training.insert("objective".into(), objective.value.trim().into());
    training.insert("sigmoid".into(), sigmoid.into());
    training.insert("average_output".into(), average_output.into());
    if let Some(v) = head("version") {
        training.insert("lightgbm_format".into(), v.value.trim().into());
    }
    Ok(Parsed {
        source: ModelSource::Lightgbm,
        comparison: Comparison::LessOrEqual,
        base_margin: 0.0,
        trees,
        feature_names,
        num_features,
        hyperparameters,
        training,
    })
}

fn tree(b: &Block, num_features: usize, names: &[String], scale: f64) -> Result<Tree, String> {
    let t = b.tree;
    let leaves: usize = b.scalar("num_leaves", "a whole number")?;
    if leaves == 0 {
        return Err(format!(
            "line {}, tree {t}, field num_leaves: must be at least 1",
            b.field("num_leaves")?.line
        ));
    }
    if b.fields.contains_key("num_cat") && b.scalar::<usize>("num_cat", "a whole number")? > 0 {
        return Err(format!(
            "tree {t} (line {}): has categorical splits; Verdict imports numerical splits only",
            b.line
        ));
    }
    if b.fields.contains_key("is_linear") && b.scalar::<u8>("is_linear", "0 or 1")? != 0 {
        return Err(format!(
            "tree {t} (line {}): is a linear tree (linear_tree=true); Verdict imports constant leaves only",
            b.line
        ));
    }
    let inner = leaves - 1;
    let why_inner = format!("num_leaves={leaves} means {inner} splits");
    let why_leaf = format!("num_leaves={leaves}");
    let split_feature: Vec<usize> = b.array("split_feature", "a feature index", inner, &why_inner)?;
    let threshold: Vec<f64> = b.array("threshold", "a number", inner, &why_inner)?;
    let decision_type: Vec<u8> = b.array("decision_type", "a whole number from 0 to 255", inner, &why_inner)?;
    let left_child: Vec<i64> = b.array("left_child", "a whole number", inner, &why_inner)?;
    let right_child: Vec<i64> = b.array("right_child", "a whole number", inner, &why_inner)?;
    let leaf_value: Vec<f64> = b.array("leaf_value", "a number", leaves, &why_leaf)?;
    // A lone root leaf needs no cover; older files may leave its count empty.
    let leaf_count: Vec<f64> = if leaves == 1 && b.fields.get("leaf_count").is_none_or(|f| f.value.trim().is_empty()) {
        vec![0.0]
    } else {
        b.array("leaf_count", "a number", leaves, &why_leaf)?
    };

    let at = |key: &str| b.fields.get(key).map_or(b.line, |f| f.line);
    for (i, &f) in split_feature.iter().enumerate() {
        if f >= num_features {
            return Err(format!(
                "line {}, tree {t}, field split_feature: value {i} is {f}, but the model has {num_features} features",
                at("split_feature")
            ));
        }
        let dt = decision_type[i];
        if dt & 1 != 0 {
            let name = names.get(f).map_or(String::new(), |n| format!(" ({n:?})"));
            return Err(format!(
                "line {}, tree {t}, field decision_type: split {i} on feature {f}{name} is categorical; Verdict imports numerical splits only",
                at("decision_type")
            ));
        }
        if (dt >> 2) & 3 == 3 {
            return Err(format!(
                "line {}, tree {t}, field decision_type: value {i} ({dt}) has an unknown missing type",
                at("decision_type")
            ));
        }
        if threshold[i].is_nan() {
            return Err(format!(
                "line {}, tree {t}, field threshold: value {i} is not a number",
                at("threshold")
            ));
        }
    }
    for (key, children) in [("left_child", &left_child), ("right_child", &right_child)] {
        for (i, &c) in children.iter().enumerate() {
            let ok = if c >= 0 {
                (c as usize) < inner
            } else {
                ((!c) as usize) < leaves
            };
            if !ok {
                return Err(format!(
                    "line {}, tree {t}, field {key}: value {i} is {c}, out of range for num_leaves={leaves} (splits 0..{inner}, leaves -1..-{leaves})",
                    at(key)
                ));
            }
        }
    }
    for (j, (&v, &c)) in leaf_value.iter().zip(&leaf_count).enumerate() {
        if !v.is_finite() {
            return Err(format!(
                "line {}, tree {t}, field leaf_value: value {j} is not a finite number",
                at("leaf_value")
            ));
        }
        if !c.is_finite() || c < 0.0 {
            return Err(format!(
                "line {}, tree {t}, field leaf_count: value {j} is not a count",
                at("leaf_count")
            ));
        }
    }

    // Ids: splits are 0..inner, leaf j is inner + j; the root is split 0, or leaf 0 alone.
    let id = |c: i64| if c >= 0 { c as usize } else { inner + (!c) as usize };
    let nodes = layout(inner + leaves, 0, true, |i| {
        if i < inner {
            let dt = decision_type[i];
            let missing = match (dt >> 2) & 3 {
                0 => Missing::AsZero,
                1 => Missing::ZeroDefault,
                _ => Missing::NanDefault,
            };
            let node = Node {
                feature: split_feature[i] as u32,
                threshold: threshold[i],
                left: 0,
                right: 0,
                default_left: dt & 2 != 0,
                missing,
                value: 0.0,
                cover: 0.0,
            };
            SourceNode::Split {
                left: id(left_child[i]),
                right: id(right_child[i]),
                node,
            }
        } else {
            let j = i - inner;
            let value = if scale == 1.0 {
                leaf_value[j]
            } else {
                leaf_value[j] * scale
            };
            SourceNode::Leaf(Node::leaf(value, leaf_count[j]))
        }
    })
    .map_err(|e| format!("tree {t} (line {}): {e}", b.line))?;
    Ok(Tree { nodes })
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::features::{FeatureVector, FEATURE_NAMES};
    use crate::domain::model::Model;

    const NAMES: &str =
        "amount during_weekend during_night customer_tx_count_1d customer_mean_amount_1d customer_tx_count_7d \
        customer_mean_amount_7d customer_tx_count_30d customer_mean_amount_30d terminal_tx_count_1d terminal_risk_1d \
        terminal_tx_count_7d terminal_risk_7d terminal_tx_count_30d terminal_risk_30d";

    /// Two trees in a shuffled column order: `terminal_risk_7d amount`.
    /// Tree 0: amount <= 220 ? (risk <= 0.5 ? -3 : 1) : 2, with LightGBM numbering
    /// (root split 0, split 1 on the left, leaves -1, -2, -3). Tree 1 is a lone leaf of 0.25.
    fn model(objective: &str) -> String {
        format!(
            "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=1\nobjective={objective}\n\
             feature_names=terminal_risk_7d amount\nfeature_infos=[0:1] [0:500]\ntree_sizes=1 1\n\n\
             Tree=0\nnum_leaves=3\nnum_cat=0\nsplit_feature=1 0\nsplit_gain=1 1\nthreshold=220 0.5\ndecision_type=0 8\n\
             left_child=1 -1\nright_child=-3 -2\nleaf_value=-3 1 2\nleaf_weight=1 1 1\nleaf_count=60 30 10\n\
             internal_value=0 0\ninternal_weight=0 0\ninternal_count=100 90\nis_linear=0\nshrinkage=1\n\n\n\
             Tree=1\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\nleft_child=\n\
             right_child=\nleaf_value=0.25\nleaf_weight=\nleaf_count=100\ninternal_value=\ninternal_weight=\n\
             internal_count=\nis_linear=0\nshrinkage=0.1\n\n\nend of trees\n\nfeature_importances:\namount=1\n\n\
             parameters:\n[boosting: gbdt]\n[objective: binary]\n[learning_rate: 0.1]\n[num_leaves: 3]\n[data: ]\n\
             end of parameters\n\npandas_categorical:null\n"
        )
    }

    fn x(amount: f64, risk7: f64) -> FeatureVector {
        let mut x = FeatureVector::default();
        x.0[0] = amount;
        x.0[FEATURE_NAMES.iter().position(|n| *n == "terminal_risk_7d").unwrap()] = risk7;
        x
    }

    fn err(text: &str) -> String {
        let e = import_lightgbm("m.txt", text).unwrap_err();
        assert!(matches!(e, ModelError::Import { .. }), "{e}");
        let s = e.to_string();
        assert!(s.starts_with("m.txt: "), "{s}");
        s
    }

    #[test]
    fn converts_structure_names_and_metadata() {
        let a = import_lightgbm("models/lgb.txt", &model("binary sigmoid:1")).unwrap();
        assert_eq!(a.name, "lgb");
        assert_eq!(a.source, ModelSource::Lightgbm);
        assert_eq!(a.forest.comparison, Comparison::LessOrEqual);
        assert_eq!(a.forest.trees.len(), 2);
        let t0 = &a.forest.trees[0].nodes;
        // BFS: root, split 1, leaf -3, then leaves -1, -2.
        assert_eq!(t0[0].feature, 0, "amount is Verdict feature 0");
        assert_eq!(t0[0].threshold, 220.0);
        assert!(!t0[0].default_left);
        assert_eq!(t0[0].missing, Missing::AsZero);
        assert_eq!(t0[1].feature, 12, "terminal_risk_7d is Verdict feature 12");
        assert_eq!(t0[1].missing, Missing::NanDefault);
        assert!(!t0[1].default_left);
        assert_eq!([t0[2].value, t0[3].value, t0[4].value], [2.0, -3.0, 1.0]);
        assert_eq!(t0[0].cover, 100.0);
        assert_eq!(a.forest.trees[1].nodes, vec![Node::leaf(0.25, 100.0)]);
        assert_eq!(a.hyperparameters["learning_rate"], serde_json::json!(0.1));
        assert_eq!(a.hyperparameters["boosting"], serde_json::json!("gbdt"));
        assert_eq!(a.hyperparameters["data"], serde_json::json!(""));
        assert_eq!(a.training["num_trees"], serde_json::json!(2));
        assert_eq!(a.training["objective"], serde_json::json!("binary sigmoid:1"));
        assert_eq!(a.training["lightgbm_format"], serde_json::json!("v4"));
        assert_eq!(
            a.training["model_feature_names"],
            serde_json::json!(["terminal_risk_7d", "amount"])
        );
    }

    #[test]
    fn scores_like_lightgbm_at_ties_and_missing() {
        let m = Model::seal(import_lightgbm("lgb.txt", &model("binary sigmoid:1")).unwrap()).unwrap();
        let p = |m: &Model, a, r| m.score(&x(a, r)).attribution.margin;
        assert_eq!(p(&m, 220.0, 0.5), -3.0 + 0.25, "ties go left with <=");
        assert_eq!(p(&m, 220.0, 0.6), 1.0 + 0.25);
        assert_eq!(p(&m, 220.000001, 0.0), 2.0 + 0.25);
        // amount has missing type None: NaN is read as 0 and compared, not sent right by default.
        assert_eq!(p(&m, f64::NAN, 0.9), 1.0 + 0.25);
        // Missing type Zero (decision_type 4, default right): NaN and zero both go right.
        let zero = import_lightgbm(
            "lgb.txt",
            &model("binary sigmoid:1").replace("decision_type=0 8", "decision_type=4 8"),
        )
        .unwrap();
        assert_eq!(zero.forest.trees[0].nodes[0].missing, Missing::ZeroDefault);
        let m = Model::seal(zero).unwrap();
        assert_eq!(p(&m, 0.0, 0.9), 2.0 + 0.25);
        assert_eq!(p(&m, f64::NAN, 0.9), 2.0 + 0.25);
        assert_eq!(p(&m, 1.0, 0.9), 1.0 + 0.25);
        // risk has missing type NaN with default right.
        assert_eq!(p(&m, 10.0, f64::NAN), 1.0 + 0.25);
        assert!((m.probability(&x(10.0, 0.0)) - 1.0 / (1.0 + (2.75f64).exp())).abs() < 1e-15);
    }

    #[test]
    fn applies_sigmoid_scale_and_random_forest_average() {
        let m = Model::seal(import_lightgbm("lgb.txt", &model("binary sigmoid:2")).unwrap()).unwrap();
        assert_eq!(m.score(&x(300.0, 0.0)).attribution.margin, 2.0 * (2.0 + 0.25));
        let rf = model("binary sigmoid:2").replace(
            "objective=binary sigmoid:2\n",
            "objective=binary sigmoid:2\naverage_output\n",
        );
        let m = Model::seal(import_lightgbm("lgb.txt", &rf).unwrap()).unwrap();
        assert_eq!(m.score(&x(300.0, 0.0)).attribution.margin, 2.0 * (2.0 + 0.25) / 2.0);
    }

    #[test]
    fn accepts_unnamed_columns_only_when_there_are_fifteen() {
        let names: Vec<String> = (0..15).map(|i| format!("Column_{i}")).collect();
        let text = model("binary sigmoid:1")
            .replace("max_feature_idx=1", "max_feature_idx=14")
            .replace(
                "feature_names=terminal_risk_7d amount",
                &format!("feature_names={}", names.join(" ")),
            );
        let a = import_lightgbm("lgb.txt", &text).unwrap();
        assert_eq!(
            a.forest.trees[0].nodes[0].feature, 1,
            "positional: column 1 is during_weekend"
        );
        let two = model("binary sigmoid:1").replace(
            "feature_names=terminal_risk_7d amount",
            "feature_names=Column_0 Column_1",
        );
        let e = err(&two);
        assert!(
            e.contains("2 unnamed features") && e.contains("amount, during_weekend"),
            "{e}"
        );
        let named = model("binary sigmoid:1")
            .replace("max_feature_idx=1", "max_feature_idx=14")
            .replace(
                "feature_names=terminal_risk_7d amount",
                &format!("feature_names={NAMES}"),
            );
        assert_eq!(
            import_lightgbm("lgb.txt", &named).unwrap().forest.trees[0].nodes[0].feature,
            1
        );
    }

    #[test]
    fn refuses_unknown_used_features_but_ignores_unused_ones() {
        let e = err(&model("binary sigmoid:1").replace(
            "feature_names=terminal_risk_7d amount",
            "feature_names=terminal_risk_7d merchant_mcc",
        ));
        assert!(e.contains("\"merchant_mcc\"") && e.contains("column 1"), "{e}");
        assert!(e.contains("amount, during_weekend, during_night"), "{e}");
        let text = model("binary sigmoid:1")
            .replace("max_feature_idx=1", "max_feature_idx=2")
            .replace(
                "feature_names=terminal_risk_7d amount",
                "feature_names=terminal_risk_7d amount card_id",
            );
        let a = import_lightgbm("lgb.txt", &text).unwrap();
        assert_eq!(a.training["ignored_unused_features"], serde_json::json!(["card_id"]));
        let e =
            err(&model("binary sigmoid:1")
                .replace("feature_names=terminal_risk_7d amount", "feature_names=amount amount"));
        assert!(e.contains("\"amount\" appears twice"), "{e}");
    }

    #[test]
    fn refuses_unsupported_models() {
        let e = err(&model("regression"));
        assert!(e.contains("line 7: objective \"regression\" is not supported"), "{e}");
        let e = err(&model("multiclass num_class:3").replace("num_class=1", "num_class=3"));
        assert!(e.contains("num_class=3"), "{e}");
        let e = err(&model("binary sigmoid:1").replace("decision_type=0 8", "decision_type=1 8"));
        assert!(
            e.contains("line 18, tree 0, field decision_type") && e.contains("categorical") && e.contains("\"amount\""),
            "{e}"
        );
        let e = err(&model("binary sigmoid:1").replacen("is_linear=0", "is_linear=1", 1));
        assert!(e.contains("tree 0") && e.contains("linear"), "{e}");
        let e = err(&model("binary sigmoid:0"));
        assert!(e.contains("sigmoid \"0\""), "{e}");
    }

    #[test]
    fn malformed_files_name_line_tree_and_field() {
        let good = model("binary sigmoid:1");
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "the file is empty"),
            ("{\"learner\":{}}".into(), "line 1: not a LightGBM text model"),
            (
                good.replace("threshold=220 0.5", "threshold=220 abc"),
                "line 17, tree 0, field threshold: value 1 (\"abc\") is not a number",
            ),
            (
                good.replace("threshold=220 0.5", "threshold=220"),
                "line 17, tree 0, field threshold: has 1 values, expected 2 (num_leaves=3 means 2 splits)",
            ),
            (
                good.replace("threshold=220 0.5", "threshold=220 nan"),
                "line 17, tree 0, field threshold: value 1 is not a number",
            ),
            (
                good.replace("left_child=1 -1", "left_child=1 -4"),
                "line 19, tree 0, field left_child: value 1 is -4, out of range",
            ),
            (
                good.replace("right_child=-3 -2", "right_child=5 -2"),
                "line 20, tree 0, field right_child: value 0 is 5, out of range",
            ),
            (
                good.replace("left_child=1 -1", "left_child=1 -2"),
                "tree 0 (line 12): node 1 links to node 3, which already has a parent",
            ),
            (
                good.replace("left_child=1 -1", "left_child=0 -1"),
                "tree 0 (line 12): node 0 links to node 0",
            ),
            (
                good.replace("split_feature=1 0", "split_feature=1 7"),
                "line 15, tree 0, field split_feature: value 1 is 7, but the model has 2 features",
            ),
            (
                good.replace("leaf_value=-3 1 2", "leaf_value=-3 1 inf"),
                "line 21, tree 0, field leaf_value: value 2 is not a finite number",
            ),
            (
                good.replace("leaf_count=60 30 10", "leaf_count=60 x 10"),
                "line 23, tree 0, field leaf_count: value 1 (\"x\") is not a number",
            ),
            (
                good.replace("num_leaves=3", "num_leaves=three"),
                "line 13, tree 0, field num_leaves: \"three\" is not a whole number",
            ),
            (
                good.replace("num_leaves=3", "num_leaves=0"),
                "tree 0, field num_leaves: must be at least 1",
            ),
            (
                good.replace("leaf_value=-3 1 2\n", ""),
                "tree 0 (line 12): field leaf_value is missing",
            ),
            (
                good.replace("leaf_value=0.25\n", "leaf_value=0.25\nleaf_value=0.25\n"),
                "tree 1: field leaf_value appears twice",
            ),
            (
                good.replace("Tree=1", "Tree=7"),
                "expected \"Tree=1\", found \"Tree=7\"",
            ),
            (
                good.replace("max_feature_idx=1\n", ""),
                "header field max_feature_idx is missing",
            ),
            (
                good.replace("max_feature_idx=1", "max_feature_idx=-1"),
                "line 6, header field max_feature_idx: \"-1\" is not a whole number",
            ),
            (
                good.replace("objective=binary sigmoid:1\n", ""),
                "header field objective is missing",
            ),
            (
                good.replace("tree_sizes=1 1", "tree_sizes=1 1 1"),
                "tree_sizes lists 3 trees but the file has 2",
            ),
            (
                good[..good.find("Tree=1").unwrap() + 20].to_owned(),
                "after tree 1 without the \"end of trees\" line; it is truncated",
            ),
            (
                good[..good.find("[num_leaves").unwrap()].to_owned(),
                "inside the parameters section without \"end of parameters\"",
            ),
            (
                good.replace("[learning_rate: 0.1]", "learning_rate=0.1"),
                "expected \"[name: value]\" in the parameters section",
            ),
            (good.replace("Tree=0", "Tree0"), "expected \"Tree=0\", found \"Tree=1\""),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "wanted {want:?} in {e:?}");
        }
        // No trees at all.
        let start = good.find("Tree=0").unwrap();
        let end = good.find("end of trees").unwrap();
        let empty = format!("{}{}", &good[..start], &good[end..]).replace("tree_sizes=1 1\n", "");
        assert!(err(&empty).contains("the model has no trees"));
    }

    #[test]
    fn never_panics_on_any_truncation() {
        let good = model("binary sigmoid:1");
        for cut in 0..good.len() {
            if good.is_char_boundary(cut) {
                let _ = import_lightgbm("m.txt", &good[..cut]);
            }
        }
        // Every line removed in turn either fails cleanly or still imports.
        let lines: Vec<&str> = good.lines().collect();
        for skip in 0..lines.len() {
            let text: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| *l)
                .collect();
            let _ = import_lightgbm("m.txt", &text.join("\n"));
        }
    }
}
