//! A tree ensemble flattened into one node array, and its evaluator.
//!
//! Every source (our trainer, LightGBM, XGBoost) converts into this shape. Each node also carries
//! its expected value (the cover-weighted mean of the leaves below it) so Saabas attributions come
//! from the same walk that scores.

use crate::domain::features::FEATURE_COUNT;
use serde::{Deserialize, Serialize};

/// How a split compares a feature value with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// `x <= threshold` goes left (LightGBM).
    LessOrEqual,
    /// `x < threshold` goes left (forust).
    Less,
    /// `(x as f32) < (threshold as f32)` goes left (XGBoost, which works in single precision).
    LessF32,
}

/// What a split does with a missing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// NaN follows `default_left`.
    #[default]
    NanDefault,
    /// NaN and zero both follow `default_left` (LightGBM `missing_type=Zero`).
    ZeroDefault,
    /// NaN is treated as 0.0 and compared (LightGBM `missing_type=None`).
    AsZero,
}

/// One node. A leaf has `left == right == 0` (the root is never a child).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u32,
    pub threshold: f64,
    pub left: u32,
    pub right: u32,
    #[serde(default)]
    pub default_left: bool,
    #[serde(default)]
    pub missing: Missing,
    /// The leaf's output, or an internal node's expected output.
    pub value: f64,
    /// Training weight (hessian sum or row count) that reached the node.
    pub cover: f64,
}

impl Node {
    pub fn leaf(value: f64, cover: f64) -> Self {
        Node {
            feature: 0,
            threshold: 0.0,
            left: 0,
            right: 0,
            default_left: false,
            missing: Missing::NanDefault,
            value,
            cover,
        }
    }

    pub fn is_leaf(&self) -> bool {
        self.left == 0 && self.right == 0
    }
}

/// One tree; node indices are local to it and node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Why a forest is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForestError {
    #[error("tree {tree} is empty")]
    EmptyTree { tree: usize },
    #[error("tree {tree} node {node}: child index {child} is out of range or points backwards")]
    BadChild { tree: usize, node: usize, child: u32 },
    #[error("tree {tree} node {node}: feature index {feature} is out of range (the schema has {count} features)")]
    BadFeature {
        tree: usize,
        node: usize,
        feature: u32,
        count: usize,
    },
    #[error("tree {tree} node {node}: {what} is not a finite number")]
    NotFinite {
        tree: usize,
        node: usize,
        what: &'static str,
    },
    #[error("base margin is not a finite number")]
    BadBase,
}

/// A binary classifier: probability = sigmoid(base_margin + sum of tree outputs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    pub comparison: Comparison,
    pub base_margin: f64,
    pub trees: Vec<Tree>,
}

impl Forest {
    /// Checks the structure so evaluation can index without bounds surprises, and fills every
    /// internal node's expected value from its children's covers.
    pub fn validate(&mut self) -> Result<(), ForestError> {
        if !self.base_margin.is_finite() {
            return Err(ForestError::BadBase);
        }
        for (t, tree) in self.trees.iter_mut().enumerate() {
            if tree.nodes.is_empty() {
                return Err(ForestError::EmptyTree { tree: t });
            }
            let n = tree.nodes.len();
            for (i, node) in tree.nodes.iter().enumerate() {
                if node.is_leaf() {
                    if !node.value.is_finite() {
                        return Err(ForestError::NotFinite {
                            tree: t,
                            node: i,
                            what: "leaf value",
                        });
                    }
                    continue;
                }
                for child in [node.left, node.right] {
                    // Children after parents keeps every tree acyclic.
                    if child as usize >= n || child as usize <= i {
                        return Err(ForestError::BadChild {
                            tree: t,
                            node: i,
                            child,
                        });
                    }
                }
                if node.feature as usize >= FEATURE_COUNT {
                    return Err(ForestError::BadFeature {
                        tree: t,
                        node: i,
                        feature: node.feature,
                        count: FEATURE_COUNT,
                    });
                }
                if node.threshold.is_nan() {
                    return Err(ForestError::NotFinite {
                        tree: t,
                        node: i,
                        what: "threshold",
                    });
                }
            }
            // Children come after parents, so a reverse sweep sees children first.
            for i in (0..n).rev() {
                let node = tree.nodes[i];
                if node.is_leaf() {
                    continue;
                }
                let (l, r) = (tree.nodes[node.left as usize], tree.nodes[node.right as usize]);
                let cover = l.cover + r.cover;
                let value = if cover > 0.0 {
                    (l.value * l.cover + r.value * r.cover) / cover
                } else {
                    (l.value + r.value) / 2.0
                };
                tree.nodes[i].value = value;
                tree.nodes[i].cover = cover;
            }
        }
        Ok(())
    }

    pub fn compile(&self) -> CompiledForest {
        let mut nodes = Vec::with_capacity(self.trees.iter().map(|t| t.nodes.len()).sum());
        let mut roots = Vec::with_capacity(self.trees.len());
        for tree in &self.trees {
            let base = nodes.len() as u32;
            roots.push(base);
            nodes.extend(tree.nodes.iter().map(|n| FlatNode {
                threshold: n.threshold,
                threshold_f32: n.threshold as f32,
                value: n.value,
                left: if n.is_leaf() { LEAF } else { base + n.left },
                right: base + n.right,
                feature: n.feature as u16,
                default_left: n.default_left,
                missing: n.missing,
            }));
        }
        CompiledForest {
            nodes,
            roots,
            comparison: self.comparison,
            base_margin: self.base_margin,
        }
    }
}

const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct FlatNode {
    threshold: f64,
    threshold_f32: f32,
    value: f64,
    left: u32,
    right: u32,
    feature: u16,
    default_left: bool,
    missing: Missing,
}

/// The evaluator's form: all trees in one contiguous array with absolute child indices.
#[derive(Debug, Clone)]
pub struct CompiledForest {
    nodes: Vec<FlatNode>,
    roots: Vec<u32>,
    comparison: Comparison,
    base_margin: f64,
}

/// A score with its Saabas attribution: `bias + contributions.sum() == margin`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attribution {
    pub margin: f64,
    pub bias: f64,
    pub contributions: [f64; FEATURE_COUNT],
}

#[inline(always)]
fn go_left(n: &FlatNode, x: f64, cmp: Comparison) -> bool {
    let x = if x.is_nan() {
        match n.missing {
            Missing::AsZero => 0.0,
            _ => return n.default_left,
        }
    } else if n.missing == Missing::ZeroDefault && x.abs() <= 1e-35 {
        return n.default_left;
    } else {
        x
    };
    match cmp {
        Comparison::LessOrEqual => x <= n.threshold,
        Comparison::Less => x < n.threshold,
        Comparison::LessF32 => (x as f32) < n.threshold_f32,
    }
}

impl CompiledForest {
    pub fn tree_count(&self) -> usize {
        self.roots.len()
    }

    /// Raw margin (log-odds). Allocates nothing.
    pub fn margin(&self, x: &[f64; FEATURE_COUNT]) -> f64 {
        let mut sum = self.base_margin;
        for &root in &self.roots {
            let mut n = &self.nodes[root as usize];
            while n.left != LEAF {
                let next = if go_left(n, x[n.feature as usize], self.comparison) {
                    n.left
                } else {
                    n.right
                };
                n = &self.nodes[next as usize];
            }
            sum += n.value;
        }
        sum
    }

    pub fn probability(&self, x: &[f64; FEATURE_COUNT]) -> f64 {
        sigmoid(self.margin(x))
    }

    /// Margin plus Saabas path attributions in one walk. Allocates nothing.
    pub fn attribute(&self, x: &[f64; FEATURE_COUNT]) -> Attribution {
        let mut contributions = [0.0; FEATURE_COUNT];
        let mut bias = self.base_margin;
        let mut margin = self.base_margin;
        for &root in &self.roots {
            let mut n = &self.nodes[root as usize];
            bias += n.value;
            while n.left != LEAF {
                let f = n.feature as usize;
                let next = &self.nodes[if go_left(n, x[f], self.comparison) {
                    n.left
                } else {
                    n.right
                } as usize];
                contributions[f] += next.value - n.value;
                n = next;
            }
            margin += n.value;
        }
        Attribution {
            margin,
            bias,
            contributions,
        }
    }
}

pub fn sigmoid(m: f64) -> f64 {
    1.0 / (1.0 + (-m).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 10 ? (x1 <= 0.5 ? -1 : 2) : 3, covers 1/1/2.
    fn stump() -> Forest {
        let split = |feature, threshold, left, right| Node {
            feature,
            threshold,
            left,
            right,
            default_left: true,
            missing: Missing::NanDefault,
            value: 0.0,
            cover: 0.0,
        };
        let mut f = Forest {
            comparison: Comparison::LessOrEqual,
            base_margin: 0.5,
            trees: vec![Tree {
                nodes: vec![
                    split(0, 10.0, 1, 2),
                    split(1, 0.5, 3, 4),
                    Node::leaf(3.0, 2.0),
                    Node::leaf(-1.0, 1.0),
                    Node::leaf(2.0, 1.0),
                ],
            }],
        };
        f.validate().unwrap();
        f
    }

    #[test]
    fn scores_and_attributes_by_hand() {
        let f = stump();
        // Expected values: node1 = 0.5, root = (0.5*2 + 3*2)/4 = 1.75.
        assert_eq!(f.trees[0].nodes[1].value, 0.5);
        assert_eq!(f.trees[0].nodes[0].value, 1.75);
        let c = f.compile();
        let mut x = [0.0; FEATURE_COUNT];
        x[0] = 10.0;
        x[1] = 1.0;
        assert_eq!(c.margin(&x), 2.5);
        let a = c.attribute(&x);
        assert_eq!(a.margin, 2.5);
        assert_eq!(a.bias, 2.25);
        assert_eq!(a.contributions[0], 0.5 - 1.75);
        assert_eq!(a.contributions[1], 2.0 - 0.5);
        assert!((a.bias + a.contributions.iter().sum::<f64>() - a.margin).abs() < 1e-12);
        x[0] = f64::NAN;
        assert_eq!(c.margin(&x), 2.5, "NaN follows default_left");
        x[0] = 10.5;
        assert_eq!(c.probability(&x), sigmoid(3.5));
    }

    #[test]
    fn rejects_malformed_structure() {
        let mut f = stump();
        f.trees[0].nodes[1].left = 1;
        assert!(matches!(f.validate(), Err(ForestError::BadChild { node: 1, .. })));
        let mut f = stump();
        f.trees[0].nodes[0].feature = 99;
        assert!(matches!(f.validate(), Err(ForestError::BadFeature { feature: 99, .. })));
        let mut f = stump();
        f.trees[0].nodes[2].value = f64::INFINITY;
        assert!(f.validate().is_err());
    }
}
