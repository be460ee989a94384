//! XGBoost's JSON model format (`Booster.save_model("model.json")`, xgboost 2.x and 3.x).
//!
//! Trees live in `learner.gradient_booster.model.trees[]` as parallel arrays indexed by node id; a
//! leaf has `left_children == -1` and its value in `split_conditions`. XGBoost works in single
//! precision, so values go through `f32` and splits compare as `f32` (`x < threshold` goes left).
//! `base_score` is a probability; 2.x writes it as `"5E-1"`, 3.x as `"[5E-1]"`.

use super::{finish, import_error, layout, param_value, Parsed, SourceNode};
use crate::domain::model::{Comparison, Missing, ModelArtifact, ModelError, ModelSource, Node, Tree};
use serde_json::Value;
use std::collections::BTreeMap;

/// Converts an XGBoost JSON model; `origin` names the file in errors.
pub fn import_xgboost(origin: &str, json: &[u8]) -> Result<ModelArtifact, ModelError> {
    parse(json)
        .and_then(|p| finish(origin, p))
        .map_err(|reason| import_error(origin, reason))
}

/// A JSON value and the path that reached it, so errors can say where.
#[derive(Clone)]
struct At<'a> {
    v: &'a Value,
    path: String,
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl<'a> At<'a> {
    fn opt(&self, key: &str) -> Option<At<'a>> {
        self.v.get(key).map(|v| At {
            v,
            path: format!("{}.{key}", self.path),
        })
    }

    fn key(&self, key: &str) -> Result<At<'a>, String> {
        if !self.v.is_object() {
            return Err(format!("{}: expected an object, found {}", self.path, describe(self.v)));
        }
        self.opt(key)
            .ok_or_else(|| format!("{}: field {key:?} is missing", self.path))
    }

    fn items(&self) -> Result<Vec<At<'a>>, String> {
        let a = self
            .v
            .as_array()
            .ok_or_else(|| format!("{}: expected an array, found {}", self.path, describe(self.v)))?;
        Ok(a.iter()
            .enumerate()
            .map(|(i, v)| At {
                v,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    fn str(&self) -> Result<&'a str, String> {
        self.v
            .as_str()
            .ok_or_else(|| format!("{}: expected a string, found {}", self.path, describe(self.v)))
    }

    /// XGBoost writes most scalars as strings ("15"), some as numbers.
    fn count(&self) -> Result<usize, String> {
        let n = match self.v {
            Value::String(s) => s.trim().parse::<usize>().ok(),
            Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            _ => None,
        };
        n.ok_or_else(|| format!("{}: expected a whole number, found {}", self.path, describe(self.v)))
    }

    /// An array of exactly `len` items, each converted by `f` (which returns None when wrong).
    fn array<T>(&self, len: usize, what: &str, f: impl Fn(&Value) -> Option<T>) -> Result<Vec<T>, String> {
        let a = self
            .v
            .as_array()
            .ok_or_else(|| format!("{}: expected an array, found {}", self.path, describe(self.v)))?;
        if a.len() != len {
            return Err(format!(
                "{}: has {} values, expected {len} (tree_param.num_nodes)",
                self.path,
                a.len()
            ));
        }
        a.iter()
            .enumerate()
            .map(|(i, v)| f(v).ok_or_else(|| format!("{}[{i}]: expected {what}, found {}", self.path, describe(v))))
            .collect()
    }
}

fn as_f32(v: &Value) -> Option<f64> {
    // Values were f32 when written; rounding back recovers them exactly.
    v.as_f64().map(|x| x as f32 as f64).filter(|x| x.is_finite())
}

fn parse(json: &[u8]) -> Result<Parsed, String> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => return Err("the file is empty".into()),
        Some(b'{') => {}
        Some(_) => {
            return Err(
                "not an XGBoost JSON model: it does not start with '{' (UBJSON or the old binary format?); \
                        save the model with a .json file name"
                    .into(),
            )
        }
    }
    let root: Value = serde_json::from_slice(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let top = At {
        v: &root,
        path: "$".into(),
    };
    let learner = top.key("learner")?;

    let objective = learner.key("objective")?;
    let objective_name = objective.key("name")?.str()?;
    if !matches!(objective_name, "binary:logistic" | "binary:logitraw") {
        return Err(format!(
            "{}: objective {objective_name:?} is not supported; Verdict imports binary:logistic and binary:logitraw",
            objective.path
        ));
    }
    let param = learner.key("learner_model_param")?;
    let num_features = param.key("num_feature")?.count()?;
    for (k, max) in [("num_class", 1), ("num_target", 1)] {
        if let Some(v) = param.opt(k) {
            if v.count()? > max {
                return Err(format!(
                    "{}: is {}; Verdict imports single-output binary classifiers",
                    v.path,
                    v.count()?
                ));
            }
        }
    }
    let base_at = param.key("base_score")?;
    let base_score = parse_base_score(&base_at)?;
    let base_margin = if objective_name == "binary:logistic" {
        if !(base_score > 0.0 && base_score < 1.0) {
            return Err(format!(
                "{}: {base_score} is not a probability strictly between 0 and 1",
                base_at.path
            ));
        }
        // XGBoost's own ProbToMargin, in single precision.
        -(1.0f32 / base_score - 1.0f32).ln() as f64
    } else {
        base_score as f64
    };

    let feature_names: Vec<String> = match learner.opt("feature_names") {
        Some(a) => a
            .items()?
            .iter()
            .map(|n| n.str().map(str::to_owned))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };

    let booster = learner.key("gradient_booster")?;
    let booster_name = booster.key("name")?.str()?;
    if booster_name != "gbtree" {
        return Err(format!(
            "{}: booster {booster_name:?} is not supported; Verdict imports gbtree models",
            booster.path
        ));
    }
    let model = booster.key("model")?;
    let trees_at = model.key("trees")?;
    let tree_items = trees_at.items()?;
    let gbtree_param = model.key("gbtree_model_param")?;
    let declared = gbtree_param.key("num_trees")?.count()?;
    if declared != tree_items.len() {
        return Err(format!(
            "{}: says {declared} trees but {} has {}",
            gbtree_param.path,
            trees_at.path,
            tree_items.len()
        ));
    }
    if let Some(info) = model.opt("tree_info") {
        for item in info.items()? {
            if item.count()? != 0 {
                return Err(format!(
                    "{}: is {}; a binary classifier has one output group 0",
                    item.path,
                    describe(item.v)
                ));
            }
        }
    }
    let trees = tree_items
        .iter()
        .enumerate()
        .map(|(t, at)| tree(t, at, num_features, &feature_names))
        .collect::<Result<Vec<_>, _>>()?;

    let mut hyperparameters = BTreeMap::new();
    hyperparameters.insert("objective".into(), Value::from(objective_name));
    hyperparameters.insert("booster".into(), Value::from(booster_name));
    flatten_params(objective.v, &mut hyperparameters);
    flatten_params(param.v, &mut hyperparameters);
    flatten_params(gbtree_param.v, &mut hyperparameters);
    // The raw string, so "[2.14E-1]" stays as the file says.
    hyperparameters.insert("base_score".into(), base_at.v.clone());

    let mut training = BTreeMap::new();
    training.insert("objective".into(), Value::from(objective_name));
    training.insert("base_score".into(), Value::from(base_score as f64));
    if let Some(v) = top.opt("version").and_then(|v| v.v.as_array().cloned()) {
        let v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        training.insert("xgboost_version".into(), v.join(".").into());
    }
    if let Some(a) = learner
        .opt("attributes")
        .filter(|a| a.v.as_object().is_some_and(|o| !o.is_empty()))
    {
        training.insert("attributes".into(), a.v.clone());
    }
    Ok(Parsed {
        source: ModelSource::Xgboost,
        comparison: Comparison::LessF32,
        base_margin,
        trees,
        feature_names,
        num_features,
        hyperparameters,
        training,
    })
}

/// "5E-1" (2.x) or "[5E-1]" (3.x, a one-element vector).
fn parse_base_score(at: &At) -> Result<f32, String> {
    let s = match at.v {
        Value::String(s) => s.trim(),
        Value::Number(n) => {
            return n
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| format!("{}: not a number", at.path))
        }
        other => {
            return Err(format!(
                "{}: expected a number as a string, found {}",
                at.path,
                describe(other)
            ))
        }
    };
    let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(s);
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    if parts.len() != 1 {
        return Err(format!(
            "{}: {s:?} has {} values; Verdict imports single-output models",
            at.path,
            parts.len()
        ));
    }
    parts[0]
        .parse::<f32>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("{}: {s:?} is not a number", at.path))
}

/// Copies scalar parameters (and those of nested parameter objects) as `name -> value`.
fn flatten_params(v: &Value, out: &mut BTreeMap<String, Value>) {
    let Some(obj) = v.as_object() else { return };
    for (k, v) in obj {
        match v {
            Value::String(s) => {
                out.insert(k.clone(), param_value(s));
            }
            Value::Number(_) | Value::Bool(_) => {
                out.insert(k.clone(), v.clone());
            }
            Value::Object(_) => flatten_params(v, out),
            _ => {}
        }
    }
}

fn tree(t: usize, at: &At, num_features: usize, names: &[String]) -> Result<Tree, String> {
    let tp = at.key("tree_param")?;
    let n = tp.key("num_nodes")?.count()?;
    if n == 0 {
        return Err(format!("{}: the tree has no nodes", tp.path));
    }
    if let Some(s) = tp.opt("size_leaf_vector") {
        if s.count()? > 1 {
            return Err(format!(
                "{}: is {}; Verdict imports single-output trees",
                s.path,
                s.count()?
            ));
        }
    }
    let int = |v: &Value| v.as_i64();
    let left = at.key("left_children")?.array(n, "a node index", int)?;
    let right = at.key("right_children")?.array(n, "a node index", int)?;
    let feature = at.key("split_indices")?.array(n, "a feature index", |v| v.as_u64())?;
    let cond = at.key("split_conditions")?.array(n, "a finite number", as_f32)?;
    let default_left = at.key("default_left")?.array(n, "0, 1, true or false", |v| match v {
        Value::Bool(b) => Some(*b),
        Value::Number(x) => x.as_u64().filter(|x| *x <= 1).map(|x| x == 1),
        _ => None,
    })?;
    let hess = at
        .key("sum_hessian")?
        .array(n, "a finite number", |v| v.as_f64().filter(|x| x.is_finite()))?;
    let split_type = match at.opt("split_type") {
        Some(s) => s.array(n, "0 or 1", |v| v.as_u64())?,
        None => vec![0; n],
    };

    for i in 0..n {
        let (l, r) = (left[i], right[i]);
        if l == -1 || r == -1 {
            if l != r {
                return Err(format!(
                    "{}: node {i} has left child {l} and right child {r}; a leaf has -1 for both",
                    at.path
                ));
            }
            continue;
        }
        for (name, c) in [("left_children", l), ("right_children", r)] {
            if c <= 0 || c as usize >= n {
                return Err(format!(
                    "{}.{name}[{i}]: child {c} is out of range (the tree has {n} nodes)",
                    at.path
                ));
            }
        }
        if feature[i] as usize >= num_features {
            return Err(format!(
                "{}.split_indices[{i}]: feature {} is out of range (the model has {num_features} features)",
                at.path, feature[i]
            ));
        }
        if split_type[i] != 0 {
            let name = names
                .get(feature[i] as usize)
                .map_or(String::new(), |n| format!(" ({n:?})"));
            return Err(format!(
                "{}.split_type[{i}]: the split on feature {}{name} is categorical; Verdict imports numerical splits only",
                at.path, feature[i]
            ));
        }
    }

    // XGBoost may keep pruned nodes in the arrays; only what the root reaches matters.
    let nodes = layout(n, 0, false, |i| {
        if left[i] == -1 {
            SourceNode::Leaf(Node::leaf(cond[i], hess[i]))
        } else {
            let node = Node {
                feature: feature[i] as u32,
                threshold: cond[i],
                left: 0,
                right: 0,
                default_left: default_left[i],
                missing: Missing::NanDefault,
                value: 0.0,
                cover: 0.0,
            };
            SourceNode::Split {
                left: left[i] as usize,
                right: right[i] as usize,
                node,
            }
        }
    })
    .map_err(|e| format!("{} (tree {t}): {e}", at.path))?;
    Ok(Tree { nodes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::features::FeatureVector;
    use crate::domain::model::Model;
    use serde_json::json;

    /// Tree 0: amount < 220 ? (during_night < 0.5 ? -1 : 0.5) : 2, node ids shuffled so the
    /// right branch comes first; tree 1 is a lone leaf of 0.125.
    fn model() -> Value {
        json!({
            "learner": {
                "attributes": {"best_iteration": "1"},
                "feature_names": ["during_night", "amount"],
                "feature_types": [],
                "gradient_booster": {
                    "model": {
                        "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "2"},
                        "iteration_indptr": [0, 1, 2],
                        "tree_info": [0, 0],
                        "trees": [
                            {
                                "base_weights": [0.0, 2.0, 0.0, -1.0, 0.5],
                                "default_left": [1, 0, 0, 0, 0],
                                "id": 0,
                                "left_children": [2, -1, 3, -1, -1],
                                "right_children": [1, -1, 4, -1, -1],
                                "split_conditions": [220.0, 2.0, 0.5, -1.0, 0.5],
                                "split_indices": [1, 0, 0, 0, 0],
                                "split_type": [0, 0, 0, 0, 0],
                                "sum_hessian": [10.0, 1.0, 9.0, 6.0, 3.0],
                                "loss_changes": [1.0, 0.0, 1.0, 0.0, 0.0],
                                "parents": [2147483647, 0, 0, 2, 2],
                                "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
                                "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "5", "size_leaf_vector": "1"}
                            },
                            {
                                "base_weights": [0.125], "default_left": [0], "id": 1, "left_children": [-1],
                                "right_children": [-1], "split_conditions": [0.125], "split_indices": [0],
                                "split_type": [0], "sum_hessian": [10.0],
                                "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "1", "size_leaf_vector": "1"}
                            }
                        ]
                    },
                    "name": "gbtree"
                },
                "learner_model_param": {"base_score": "[2.5E-1]", "boost_from_average": "1", "num_class": "0", "num_feature": "2", "num_target": "1"},
                "objective": {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "3"}}
            },
            "version": [3, 2, 0]
        })
    }

    fn import(v: &Value) -> Result<ModelArtifact, ModelError> {
        import_xgboost("x.json", &serde_json::to_vec(v).unwrap())
    }

    fn err(v: &Value) -> String {
        let e = import(v).unwrap_err();
        assert!(matches!(e, ModelError::Import { .. }), "{e}");
        let s = e.to_string();
        assert!(s.starts_with("x.json: "), "{s}");
        s
    }

    fn x(amount: f64, night: f64) -> FeatureVector {
        let mut x = FeatureVector::default();
        x.0[0] = amount;
        x.0[2] = night;
        x
    }

    #[test]
    fn converts_structure_base_score_and_metadata() {
        let a = import(&model()).unwrap();
        assert_eq!(a.name, "x");
        assert_eq!(a.source, ModelSource::Xgboost);
        assert_eq!(a.forest.comparison, Comparison::LessF32);
        assert_eq!(
            a.forest.base_margin,
            -(3.0f32.ln()) as f64,
            "logit(0.25) = -ln 3 in f32"
        );
        let t0 = &a.forest.trees[0].nodes;
        assert_eq!((t0[0].feature, t0[0].threshold, t0[0].default_left), (0, 220.0, true));
        assert_eq!((t0[0].left, t0[0].right), (1, 2));
        assert_eq!(
            (t0[1].feature, t0[1].threshold),
            (2, 0.5),
            "during_night is Verdict feature 2"
        );
        assert_eq!(t0[2], Node::leaf(2.0, 1.0));
        assert_eq!([t0[3].value, t0[4].value], [-1.0, 0.5]);
        assert_eq!(t0[0].cover, 10.0);
        assert_eq!(a.hyperparameters["scale_pos_weight"], json!(3));
        assert_eq!(a.hyperparameters["base_score"], json!("[2.5E-1]"));
        assert_eq!(a.hyperparameters["num_parallel_tree"], json!(1));
        assert_eq!(a.training["xgboost_version"], json!("3.2.0"));
        assert_eq!(a.training["base_score"], json!(0.25));
        assert_eq!(a.training["attributes"], json!({"best_iteration": "1"}));
        assert_eq!(a.training["num_trees"], json!(2));
    }

    #[test]
    fn scores_like_xgboost_at_ties_and_missing() {
        let m = Model::seal(import(&model()).unwrap()).unwrap();
        let base = -(3.0f32.ln()) as f64;
        let margin = |a, n| m.score(&x(a, n)).attribution.margin;
        assert_eq!(margin(220.0, 0.0), base + 2.0 + 0.125, "ties go right with <");
        assert_eq!(margin(219.99, 0.0), base - 1.0 + 0.125);
        assert_eq!(margin(219.99, 0.5), base + 0.5 + 0.125);
        // 219.99999999 rounds to 220.0 in f32, as XGBoost's float DMatrix would store it.
        assert_eq!(margin(219.999_999_99, 0.0), base + 2.0 + 0.125);
        assert_eq!(margin(f64::NAN, 0.0), base - 1.0 + 0.125, "NaN follows default_left");
        assert_eq!(margin(0.0, f64::NAN), base + 0.5 + 0.125, "default right");
    }

    #[test]
    fn reads_xgboost_2_forms() {
        let mut v = model();
        v["learner"]["learner_model_param"]["base_score"] = json!("5E-1");
        v["learner"]["gradient_booster"]["model"]["trees"][0]["default_left"] =
            json!([true, false, false, false, false]);
        let a = import(&v).unwrap();
        assert_eq!(a.forest.base_margin, 0.0);
        assert!(a.forest.trees[0].nodes[0].default_left);
        let mut v = model();
        v["learner"]["objective"]["name"] = json!("binary:logitraw");
        v["learner"]["learner_model_param"]["base_score"] = json!("-2E0");
        assert_eq!(
            import(&v).unwrap().forest.base_margin,
            -2.0,
            "logitraw's base score is already a margin"
        );
    }

    #[test]
    fn maps_by_name_or_position() {
        let mut v = model();
        v["learner"]["feature_names"] = json!(["during_night", "merchant"]);
        let e = err(&v);
        assert!(
            e.contains("splits on feature \"merchant\" (column 1)") && e.contains("terminal_risk_30d"),
            "{e}"
        );
        let mut v = model();
        v["learner"]["feature_names"] = json!([]);
        assert!(err(&v).contains("2 unnamed features"));
        v["learner"]["learner_model_param"]["num_feature"] = json!("15");
        let a = import(&v).unwrap();
        assert_eq!(
            a.forest.trees[0].nodes[0].feature, 1,
            "positional: column 1 is during_weekend"
        );
        assert_eq!(a.forest.trees[0].nodes[1].feature, 0);
    }

    #[test]
    fn refuses_unsupported_models() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "/learner/objective/name",
                json!("reg:squarederror"),
                "$.learner.objective: objective \"reg:squarederror\" is not supported",
            ),
            ("/learner/objective/name", json!("multi:softprob"), "not supported"),
            (
                "/learner/gradient_booster/name",
                json!("dart"),
                "booster \"dart\" is not supported",
            ),
            ("/learner/learner_model_param/num_class", json!("3"), "num_class: is 3"),
            (
                "/learner/learner_model_param/base_score",
                json!("[5E-1,2E-1]"),
                "has 2 values",
            ),
            (
                "/learner/learner_model_param/base_score",
                json!("1E0"),
                "not a probability strictly between 0 and 1",
            ),
            (
                "/learner/gradient_booster/model/trees/0/split_type",
                json!([1, 0, 0, 0, 0]),
                "trees[0].split_type[0]: the split on feature 1 (\"amount\") is categorical",
            ),
            (
                "/learner/gradient_booster/model/trees/0/tree_param/size_leaf_vector",
                json!("2"),
                "single-output",
            ),
            (
                "/learner/gradient_booster/model/tree_info",
                json!([0, 1]),
                "tree_info[1]: is the number 1",
            ),
        ];
        for (ptr, value, want) in cases {
            let mut v = model();
            *v.pointer_mut(ptr).unwrap() = value;
            let e = err(&v);
            assert!(e.contains(want), "{ptr}: wanted {want:?} in {e:?}");
        }
    }

    #[test]
    fn malformed_files_name_tree_and_field() {
        let t0 = "/learner/gradient_booster/model/trees/0";
        let cases: Vec<(String, Value, &str)> = vec![
            (
                format!("{t0}/split_conditions"),
                json!([220.0, "abc", 0.5, -1.0, 0.5]),
                "trees[0].split_conditions[1]: expected a finite number, found the string \"abc\"",
            ),
            (
                format!("{t0}/split_conditions"),
                json!([220.0, 2.0, 0.5, -1.0]),
                "trees[0].split_conditions: has 4 values, expected 5",
            ),
            (
                format!("{t0}/split_conditions"),
                json!([1e300, 2.0, 0.5, -1.0, 0.5]),
                "split_conditions[0]: expected a finite number, found the number 1e+300",
            ),
            (
                format!("{t0}/left_children"),
                json!([2, -1, 9, -1, -1]),
                "trees[0].left_children[2]: child 9 is out of range (the tree has 5 nodes)",
            ),
            (
                format!("{t0}/right_children"),
                json!([1, -1, 0, -1, -1]),
                "trees[0].right_children[2]: child 0 is out of range",
            ),
            (
                format!("{t0}/left_children"),
                json!([2, -1, 3, -1, 2]),
                "trees[0]: node 4 has left child 2 and right child -1",
            ),
            (
                format!("{t0}/left_children"),
                json!([2, -1, 1, -1, -1]),
                "(tree 0): node 2 links to node 1, which already has a parent",
            ),
            (
                format!("{t0}/split_indices"),
                json!([7, 0, 0, 0, 0]),
                "trees[0].split_indices[0]: feature 7 is out of range (the model has 2 features)",
            ),
            (
                format!("{t0}/default_left"),
                json!([2, 0, 0, 0, 0]),
                "trees[0].default_left[0]: expected 0, 1, true or false",
            ),
            (
                format!("{t0}/tree_param/num_nodes"),
                json!("five"),
                "trees[0].tree_param.num_nodes: expected a whole number, found the string \"five\"",
            ),
            (
                format!("{t0}/tree_param/num_nodes"),
                json!("0"),
                "the tree has no nodes",
            ),
            (
                format!("{t0}/sum_hessian"),
                json!(null),
                "trees[0].sum_hessian: expected an array, found null",
            ),
            (
                "/learner/gradient_booster/model/trees".into(),
                json!([]),
                "says 2 trees but $.learner.gradient_booster.model.trees has 0",
            ),
            (
                "/learner/gradient_booster/model/trees".into(),
                json!({}),
                "model.trees: expected an array, found an object",
            ),
            (
                "/learner/learner_model_param/num_feature".into(),
                json!(null),
                "num_feature: expected a whole number, found null",
            ),
            (
                "/learner/learner_model_param/base_score".into(),
                json!("[abc]"),
                "base_score: \"[abc]\" is not a number",
            ),
            (
                "/learner/feature_names".into(),
                json!([1, 2]),
                "feature_names[0]: expected a string, found the number 1",
            ),
            (
                "/learner".into(),
                json!([]),
                "$.learner: expected an object, found an array",
            ),
        ];
        for (ptr, value, want) in cases {
            let mut v = model();
            *v.pointer_mut(&ptr).unwrap() = value;
            let e = err(&v);
            assert!(e.contains(want), "{ptr}: wanted {want:?} in {e:?}");
        }
        let mut v = model();
        v["learner"]["gradient_booster"]["model"]["trees"][1]
            .as_object_mut()
            .unwrap()
            .remove("sum_hessian");
        assert!(err(&v).contains("trees[1]: field \"sum_hessian\" is missing"));
        let mut v = model();
        v["learner"]["gradient_booster"]["model"]["trees"] = json!([]);
        v["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"] = json!("0");
        assert!(err(&v).contains("the model has no trees"));

        let raw = |b: &[u8]| import_xgboost("x.json", b).unwrap_err().to_string();
        assert_eq!(raw(b""), "x.json: the file is empty");
        assert!(raw(b"{\"a\": 1}").contains("$: field \"learner\" is missing"));
        assert!(raw(b"{\"learner\": ").contains("not valid JSON: EOF while parsing"));
        assert!(raw(b"[1]").contains("does not start with '{'"));
        assert!(raw(b"{L\x00\x00").contains("not valid JSON"));
    }

    #[test]
    fn never_panics_on_any_truncation() {
        let bytes = serde_json::to_vec(&model()).unwrap();
        for cut in 0..bytes.len() {
            assert!(import_xgboost("x.json", &bytes[..cut]).is_err());
        }
    }
}
