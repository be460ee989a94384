//! Ranking metrics: AUC ROC and average precision, with the same definitions as scikit-learn's
//! `roc_auc_score` and `average_precision_score`. Card precision@k lives in `protocol`.
//!
//! Conventions shared by both functions:
//! - `scores` and `labels` of different lengths give `None` (there is no meaningful pairing).
//! - NaN scores rank below every other score, -inf included, and tie with one another,
//!   so a model that emits NaN is penalised rather than crashing the evaluation.
//! - `0.0` and `-0.0` are the same score.
//! - Both are O(n log n): one sort, then one pass over tie groups.

use std::cmp::Ordering;

/// Total order on scores: NaN lowest, otherwise numeric order (so `-0.0 == 0.0`).
pub(crate) fn cmp_score(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        // Neither is NaN, so partial_cmp is always Some.
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Pairs sorted by score, descending; ties stay in input order (irrelevant to the metrics,
/// which only look at whole tie groups).
fn sorted_desc(scores: &[f64], labels: &[bool]) -> Vec<(f64, bool)> {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| cmp_score(b.0, a.0));
    pairs
}

/// Calls `f(positives, negatives)` once per group of equal scores, highest score first.
fn for_each_tie_group(sorted: &[(f64, bool)], mut f: impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0usize, 0usize);
        while j < sorted.len() && cmp_score(sorted[j].0, sorted[i].0) == Ordering::Equal {
            if sorted[j].1 {
                pos += 1;
            } else {
                neg += 1;
            }
            j += 1;
        }
        f(pos, neg);
        i = j;
    }
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (Mann-Whitney U / (P·N)). Equals
/// `sklearn.metrics.roc_auc_score`.
///
/// `None` when the lengths differ or when either class is absent (AUC is undefined).
pub fn auc_roc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let sorted = sorted_desc(scores, labels);
    let total_pos = labels.iter().filter(|&&l| l).count();
    let total_neg = labels.len() - total_pos;
    if total_pos == 0 || total_neg == 0 {
        return None;
    }
    // Walking from the top: each positive beats every negative below its group and ties
    // half of the negatives inside it. Counts stay in f64 so P·N cannot overflow.
    let mut neg_above = 0f64;
    let mut wins = 0f64;
    for_each_tie_group(&sorted, |pos, neg| {
        let neg_below = total_neg as f64 - neg_above - neg as f64;
        wins += pos as f64 * (neg_below + 0.5 * neg as f64);
        neg_above += neg as f64;
    });
    Some(wins / (total_pos as f64 * total_neg as f64))
}

/// Average precision: `Σ_n (R_n − R_{n−1}) · P_n` over the distinct score thresholds, highest
/// first, where `P_n`, `R_n` are the precision and recall of predicting positive for every
/// score ≥ threshold n. Tied scores form one threshold, as in
/// `sklearn.metrics.average_precision_score` (no interpolation).
///
/// `None` when the lengths differ or there are no positives (recall is undefined).
/// With no negatives the value is 1.0, as in scikit-learn.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let total_pos = labels.iter().filter(|&&l| l).count();
    if total_pos == 0 {
        return None;
    }
    let sorted = sorted_desc(scores, labels);
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut ap = 0f64;
    for_each_tie_group(&sorted, |pos, neg| {
        tp += pos;
        fp += neg;
        // A group without positives adds no recall, hence nothing to the sum.
        if pos > 0 {
            let recall_step = pos as f64 / total_pos as f64;
            let precision = tp as f64 / (tp + fp) as f64;
            ap += recall_step * precision;
        }
    });
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: bool = true;
    const F: bool = false;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// O(n²) pair counting: the definition, without sorting.
    fn naive_auc(scores: &[f64], labels: &[bool]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    wins += match cmp_score(si, sj) {
                        Ordering::Greater => 1.0,
                        Ordering::Equal => 0.5,
                        Ordering::Less => 0.0,
                    };
                }
            }
        }
        wins / pairs
    }

    /// O(n²) AP: for each distinct threshold, count tp/fp with score ≥ threshold.
    fn naive_ap(scores: &[f64], labels: &[bool]) -> f64 {
        let mut thresholds: Vec<f64> = scores.to_vec();
        thresholds.sort_by(|a, b| cmp_score(*b, *a));
        thresholds.dedup_by(|a, b| cmp_score(*a, *b) == Ordering::Equal);
        let total_pos = labels.iter().filter(|&&l| l).count() as f64;
        let (mut prev_recall, mut ap) = (0.0, 0.0);
        for t in thresholds {
            let (mut tp, mut fp) = (0.0, 0.0);
            for (s, &l) in scores.iter().zip(labels) {
                if cmp_score(*s, t) != Ordering::Less {
                    if l {
                        tp += 1.0
                    } else {
                        fp += 1.0
                    }
                }
            }
            let recall = tp / total_pos;
            ap += (recall - prev_recall) * tp / (tp + fp);
            prev_recall = recall;
        }
        ap
    }

    /// Deterministic pseudo-random data with many ties (scores on a 0.1 grid).
    fn lcg_data(n: usize, seed: u64) -> (Vec<f64>, Vec<bool>) {
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u32
        };
        let mut scores = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let s = (next() % 11) as f64 / 10.0;
            // Positives lean towards high scores so the AUC is informative.
            let label = (next() % 10) as f64 / 10.0 < s * 0.6;
            scores.push(s);
            labels.push(label);
        }
        (scores, labels)
    }

    #[test]
    fn auc_without_ties() {
        // Positives {0.8, 0.4}, negatives {0.6, 0.1}: pairs won 0.8>0.6, 0.8>0.1, 0.4>0.1;
        // lost 0.4<0.6. AUC = 3/4.
        let auc = auc_roc(&[0.8, 0.6, 0.4, 0.1], &[T, F, T, F]).unwrap();
        assert!(close(auc, 0.75), "{auc}");
        // Perfect and reversed rankings.
        assert_eq!(auc_roc(&[0.9, 0.1], &[T, F]), Some(1.0));
        assert_eq!(auc_roc(&[0.1, 0.9], &[T, F]), Some(0.0));
    }

    #[test]
    fn auc_with_ties_counts_half() {
        // Scores [0.2, 0.5, 0.5, 0.5], labels [F, F, T, T].
        // Average ranks (ascending): 0.2 -> 1; the three 0.5s share ranks 2,3,4 -> 3 each.
        // Positive rank sum R = 3 + 3 = 6; U = R − P(P+1)/2 = 6 − 3 = 3; AUC = U/(P·N) = 3/4.
        // Pairwise: each positive beats 0.2 (1) and ties the negative 0.5 (½): 2·1.5/4 = 0.75.
        let auc = auc_roc(&[0.2, 0.5, 0.5, 0.5], &[F, F, T, T]).unwrap();
        assert!(close(auc, 0.75), "{auc}");
        // All scores equal: every pair is a tie, AUC = 0.5.
        assert_eq!(auc_roc(&[0.3; 4], &[T, F, T, F]), Some(0.5));
    }

    #[test]
    fn auc_one_class_or_bad_input_is_none() {
        assert_eq!(auc_roc(&[0.1, 0.2], &[F, F]), None);
        assert_eq!(auc_roc(&[0.1, 0.2], &[T, T]), None);
        assert_eq!(auc_roc(&[], &[]), None);
        assert_eq!(auc_roc(&[0.1, 0.2], &[T]), None);
    }

    #[test]
    fn nan_scores_rank_lowest() {
        // NaN positive below every negative, above nothing: positives {0.9, NaN} vs
        // negatives {0.5, -inf}: 0.9 wins both (2), NaN loses both (0). AUC = 2/4.
        let auc = auc_roc(&[0.9, f64::NAN, 0.5, f64::NEG_INFINITY], &[T, T, F, F]).unwrap();
        assert!(close(auc, 0.5), "{auc}");
        // Two NaNs tie with each other: positive NaN vs negative NaN = ½.
        assert_eq!(auc_roc(&[f64::NAN, f64::NAN], &[T, F]), Some(0.5));
        // AP: threshold 0.9 -> tp 1 fp 0, P 1, R ½; 0.5 -> no recall step; -inf -> none;
        // NaN -> tp 2 fp 2, P ½, R 1. AP = ½·1 + ½·½ = 0.75.
        let ap = average_precision(&[0.9, f64::NAN, 0.5, f64::NEG_INFINITY], &[T, T, F, F]).unwrap();
        assert!(close(ap, 0.75), "{ap}");
    }

    #[test]
    fn signed_zero_is_one_score() {
        // -0.0 and 0.0 tie, as in numpy: AUC ½.
        assert_eq!(auc_roc(&[0.0, -0.0], &[T, F]), Some(0.5));
    }

    #[test]
    fn ap_without_ties() {
        // Descending: 0.9 T, 0.8 F, 0.7 T, 0.1 F; P = 2.
        // 0.9: tp1 fp0 P=1   R=½  -> ½·1
        // 0.8: tp1 fp1        R=½  -> no step
        // 0.7: tp2 fp1 P=⅔   R=1  -> ½·⅔
        // AP = ½ + ⅓ = 5/6.
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.1], &[T, F, T, F]).unwrap();
        assert!(close(ap, 5.0 / 6.0), "{ap}");
    }

    #[test]
    fn ap_groups_ties_like_sklearn() {
        // Scores [0.9, 0.8, 0.8, 0.3, 0.1], labels [T, F, T, F, T]; P = 3.
        // 0.9: tp1 fp0 P=1   R=⅓  -> ⅓·1
        // 0.8: tp2 fp1 P=⅔   R=⅔  -> ⅓·⅔   (both 0.8 rows form one threshold)
        // 0.3: tp2 fp2        R=⅔  -> no step
        // 0.1: tp3 fp2 P=3/5 R=1  -> ⅓·3/5
        // AP = ⅓ + 2/9 + 1/5 = (15 + 10 + 9)/45 = 34/45 ≈ 0.755556 (sklearn 1.x agrees).
        // Ranking the tied positive first would give ⅓ + ⅓ + 1/5 = 13/15 instead.
        let expected = 34.0 / 45.0;
        let ap = average_precision(&[0.9, 0.8, 0.8, 0.3, 0.1], &[T, F, T, F, T]).unwrap();
        assert!(close(ap, expected), "{ap}");
        // Same data with the tied pair swapped in the input: same value.
        let ap = average_precision(&[0.9, 0.8, 0.8, 0.3, 0.1], &[T, T, F, F, T]).unwrap();
        assert!(close(ap, expected), "{ap}");
    }

    #[test]
    fn ap_no_positives_is_none_all_positives_is_one() {
        assert_eq!(average_precision(&[0.1, 0.2], &[F, F]), None);
        assert_eq!(average_precision(&[], &[]), None);
        assert_eq!(average_precision(&[0.1], &[T, F]), None);
        // Every threshold has precision 1, so AP = Σ ΔR = 1 (sklearn gives 1.0 too).
        assert_eq!(average_precision(&[0.1, 0.7, 0.7], &[T, T, T]), Some(1.0));
        // All tied, half positive: a single threshold, P = ½, R = 1.
        assert_eq!(average_precision(&[0.4; 4], &[T, F, F, T]), Some(0.5));
    }

    #[test]
    fn fast_paths_match_naive_definitions() {
        for seed in 1..=20 {
            let (scores, labels) = lcg_data(257, seed);
            let auc = auc_roc(&scores, &labels).unwrap();
            let ap = average_precision(&scores, &labels).unwrap();
            assert!(close(auc, naive_auc(&scores, &labels)), "seed {seed}: auc {auc}");
            assert!(close(ap, naive_ap(&scores, &labels)), "seed {seed}: ap {ap}");
            assert!(
                auc > 0.5 && auc < 1.0 && ap > 0.0 && ap < 1.0,
                "seed {seed}: uninformative data"
            );
        }
    }
}
