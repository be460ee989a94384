//! The handbook's train / delay / test protocol and its card precision@k, re-implemented from
//! the description in DESIGN.md.
//!
//! Days are UTC calendar days (`Timestamp::epoch_day`). Fraud "known" at a point in time means a
//! transaction labelled fraud (`label == Some(Label { fraud: true, .. })`); unlabelled rows never
//! make a customer known-compromised.

use crate::domain::metrics::{auc_roc, average_precision, cmp_score};
use crate::domain::LabelledTransaction;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Julian day number of 1970-01-01, to turn a `time::Date` into an epoch day.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

fn epoch_day(date: time::Date) -> i64 {
    date.to_julian_day() as i64 - UNIX_EPOCH_JULIAN_DAY
}

/// Indices into the slice given to [`split`], each list in ascending (slice) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// The handbook's split.
///
/// - train: transactions on days `[start, start + train_days)`;
/// - delay: the next `delay_days` days, in neither set (their labels are not known yet);
/// - test day `i` (0-based): day `start + train_days + delay_days + i`, minus the customers
///   already known to be compromised: those with a fraud in the training period, or with a fraud
///   on any day in `[start + train_days, start + train_days + i)` (each test day, the labels of
///   one more day after training have come in).
///
/// The slice need not be sorted: indices come back in slice order, which is time order when the
/// slice is. Unlabelled transactions are split by day like any other.
pub fn split(
    data: &[LabelledTransaction],
    train_start: time::Date,
    train_days: u32,
    delay_days: u32,
    test_days: u32,
) -> Split {
    let start = epoch_day(train_start);
    let train_end = start + train_days as i64; // exclusive
    let test_start = train_end + delay_days as i64;
    let test_end = test_start + test_days as i64; // exclusive

    let is_fraud = |t: &LabelledTransaction| t.label.is_some_and(|l| l.fraud);

    // Per customer, the first post-training day with a fraud: that customer is known on every
    // test day i with train_end + i > that day.
    let mut compromised_in_training: HashSet<&str> = HashSet::new();
    let mut first_fraud_after_training: HashMap<&str, i64> = HashMap::new();
    for t in data.iter().filter(|t| is_fraud(t)) {
        let day = t.tx.occurred_at.epoch_day() as i64;
        let customer = t.tx.customer_id.as_str();
        if (start..train_end).contains(&day) {
            compromised_in_training.insert(customer);
        } else if day >= train_end {
            let first = first_fraud_after_training.entry(customer).or_insert(day);
            *first = (*first).min(day);
        }
    }

    let mut out = Split::default();
    for (idx, t) in data.iter().enumerate() {
        let day = t.tx.occurred_at.epoch_day() as i64;
        if (start..train_end).contains(&day) {
            out.train.push(idx);
        } else if (test_start..test_end).contains(&day) {
            let i = day - test_start;
            let customer = t.tx.customer_id.as_str();
            let known = compromised_in_training.contains(customer)
                || first_fraud_after_training
                    .get(customer)
                    .is_some_and(|&d| d < train_end + i);
            if !known {
                out.test.push(idx);
            }
        }
    }
    out
}

/// Card precision@k, the handbook's daily card-level precision.
///
/// `rows` are `(epoch day, customer, score, fraud)`. For each day present, in day order:
/// group that day's rows by customer (max score, fraud if any row is fraud), drop customers
/// detected on earlier days, rank by score descending (ties by customer id ascending, so the
/// result does not depend on row order; NaN ranks lowest), and take the top `k`. The day's
/// precision is frauds among them divided by `k`, even when fewer than `k` customers are left,
/// as in the handbook. The frauds found become detected. Returns the mean over days.
///
/// `None` when there are no rows or `k == 0`.
pub fn card_precision_at_k(rows: &[(i32, &str, f64, bool)], k: usize) -> Option<f64> {
    if rows.is_empty() || k == 0 {
        return None;
    }
    // day -> customer -> (max score, any fraud)
    let mut days: BTreeMap<i32, HashMap<&str, (f64, bool)>> = BTreeMap::new();
    for &(day, customer, score, fraud) in rows {
        let card = days.entry(day).or_default().entry(customer).or_insert((score, fraud));
        if cmp_score(score, card.0) == Ordering::Greater {
            card.0 = score;
        }
        card.1 |= fraud;
    }

    let mut detected: HashSet<&str> = HashSet::new();
    let mut sum = 0f64;
    for cards in days.values() {
        let mut ranked: Vec<(&str, f64, bool)> = cards
            .iter()
            .filter(|(c, _)| !detected.contains(*c))
            .map(|(&c, &(s, f))| (c, s, f))
            .collect();
        ranked.sort_by(|a, b| cmp_score(b.1, a.1).then_with(|| a.0.cmp(b.0)));
        ranked.truncate(k);
        let found: Vec<&str> = ranked.iter().filter(|c| c.2).map(|c| c.0).collect();
        sum += found.len() as f64 / k as f64;
        detected.extend(found);
    }
    Some(sum / days.len() as f64)
}

/// The protocol's three metrics on one test set. Metrics are `null` in JSON when undefined
/// (e.g. AUC with one class present).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub auc: Option<f64>,
    pub average_precision: Option<f64>,
    /// Card precision at the `k` given to [`evaluate`]; the protocol (and the CLI) uses 100.
    pub card_precision_at_100: Option<f64>,
    /// Labelled transactions evaluated.
    pub transactions: usize,
    /// Of which fraud.
    pub frauds: usize,
}

/// AUC, AP and card precision@k of `(transaction, score)` pairs, typically the test indices of
/// [`split`] with the model's scores. Unlabelled transactions are skipped: with no ground truth
/// they cannot count for or against the model.
pub fn evaluate(test: &[(&LabelledTransaction, f64)], k: usize) -> Evaluation {
    let labelled: Vec<(&LabelledTransaction, f64, bool)> = test
        .iter()
        .filter_map(|&(t, s)| t.label.map(|l| (t, s, l.fraud)))
        .collect();
    let scores: Vec<f64> = labelled.iter().map(|r| r.1).collect();
    let labels: Vec<bool> = labelled.iter().map(|r| r.2).collect();
    let rows: Vec<(i32, &str, f64, bool)> = labelled
        .iter()
        .map(|&(t, s, f)| (t.tx.occurred_at.epoch_day(), t.tx.customer_id.as_str(), s, f))
        .collect();
    Evaluation {
        auc: auc_roc(&scores, &labels),
        average_precision: average_precision(&scores, &labels),
        card_precision_at_100: card_precision_at_k(&rows, k),
        transactions: labelled.len(),
        frauds: labels.iter().filter(|&&f| f).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, CustomerId, Label, Money, TerminalId, Timestamp, Transaction, TransactionId};
    use time::macros::date;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// A transaction at noon UTC on `date`.
    fn tx(id: &str, date: time::Date, customer: &str, label: Option<bool>) -> LabelledTransaction {
        let noon = date.with_hms(12, 0, 0).unwrap().assume_utc();
        LabelledTransaction {
            tx: Transaction {
                id: TransactionId::parse(id).unwrap(),
                occurred_at: Timestamp::from_unix(noon.unix_timestamp()).unwrap(),
                amount: Money::new(1000, Currency::EUR).unwrap(),
                customer_id: CustomerId::parse(customer).unwrap(),
                terminal_id: TerminalId::parse("t1").unwrap(),
            },
            label: label.map(|fraud| Label { fraud, scenario: 0 }),
            extras: None,
        }
    }

    #[test]
    fn epoch_day_matches_timestamp() {
        // 2018-04-01 is epoch day 17622 (see domain tests).
        assert_eq!(epoch_day(date!(2018 - 04 - 01)), 17622);
        assert_eq!(epoch_day(date!(1970 - 01 - 01)), 0);
    }

    #[test]
    fn split_removes_known_compromised_day_by_day() {
        // train 07-25, 07-26 | delay 07-27, 07-28 | test 07-29 (i=0), 07-30 (i=1), 07-31 (i=2)
        // Known on test day i: training frauds + frauds on days [07-27, 07-27 + i).
        //   i=0: training only; i=1: + 07-27; i=2: + 07-27, 07-28.
        let data = vec![
            tx("0", date!(2018 - 07 - 24), "early", Some(false)), // before training: nowhere
            tx("1", date!(2018 - 07 - 25), "clean", Some(false)), // train
            tx("2", date!(2018 - 07 - 26), "trainfraud", Some(true)), // train; known from the start
            tx("3", date!(2018 - 07 - 27), "delay1", Some(true)), // delay; known from i=1
            tx("4", date!(2018 - 07 - 27), "unlabelled", None),   // delay; no label -> never known
            tx("5", date!(2018 - 07 - 28), "delay2", Some(true)), // delay; known from i=2
            tx("6", date!(2018 - 07 - 28), "clean", Some(false)), // delay: nowhere
            // test day 0
            tx("7", date!(2018 - 07 - 29), "trainfraud", Some(false)), // excluded
            tx("8", date!(2018 - 07 - 29), "delay1", Some(true)),      // kept: 07-27 not known yet
            tx("9", date!(2018 - 07 - 29), "delay2", Some(true)),      // kept
            tx("10", date!(2018 - 07 - 29), "testfraud", Some(true)),  // kept
            // test day 1
            tx("11", date!(2018 - 07 - 30), "delay1", Some(true)), // excluded: 07-27 known
            tx("12", date!(2018 - 07 - 30), "delay2", Some(false)), // kept: 07-28 not yet known
            tx("13", date!(2018 - 07 - 30), "clean", Some(false)), // kept
            tx("14", date!(2018 - 07 - 30), "unlabelled", Some(false)), // kept
            // test day 2
            tx("15", date!(2018 - 07 - 31), "delay2", Some(false)), // excluded: 07-28 known
            tx("16", date!(2018 - 07 - 31), "testfraud", Some(false)), // kept: its 07-29 fraud is known only from i=3
            tx("17", date!(2018 - 07 - 31), "trainfraud", Some(false)), // excluded
            tx("18", date!(2018 - 08 - 01), "clean", Some(false)),  // after test: nowhere
        ];
        let s = split(&data, date!(2018 - 07 - 25), 2, 2, 3);
        assert_eq!(s.train, vec![1, 2]);
        assert_eq!(s.test, vec![8, 9, 10, 12, 13, 14, 16]);
    }

    #[test]
    fn split_with_short_delay_uses_previous_test_days() {
        // delay 0: test day i knows frauds on days [train_end, train_end + i), which are the
        // earlier test days themselves (the handbook's rule, applied literally).
        let data = vec![
            tx("0", date!(2018 - 07 - 25), "a", Some(false)),
            tx("1", date!(2018 - 07 - 26), "b", Some(true)), // test day 0
            tx("2", date!(2018 - 07 - 27), "b", Some(true)), // test day 1: b known from day 0
            tx("3", date!(2018 - 07 - 27), "a", Some(false)),
        ];
        let s = split(&data, date!(2018 - 07 - 25), 1, 0, 2);
        assert_eq!(s.train, vec![0]);
        assert_eq!(s.test, vec![1, 3]);
        // Zero-length periods are empty, not an error.
        assert_eq!(split(&data, date!(2018 - 07 - 25), 0, 0, 0), Split::default());
    }

    #[test]
    fn cp_at_k_excludes_detected_cards_on_later_days() {
        // k = 2.
        // Day 10: a max(0.9, 0.2)=0.9 fraud | b 0.8 legit | c 0.7 fraud | d 0.1 fraud
        //   top 2 = a, b -> 1 fraud / 2 = 0.5; detected = {a}.  (c, d missed, not detected)
        // Day 11: a 0.95 fraud (excluded: detected) | c 0.6 fraud | b 0.5 legit | e 0.4 legit
        //   top 2 = c, b -> 1/2 = 0.5; detected = {a, c}.  (Without exclusion: a, c -> 1.0.)
        // Day 12: c 0.99 fraud (excluded) | b 0.3 legit | d 0.2 fraud
        //   top 2 = b, d -> 1/2 = 0.5.  (Without exclusion: c, b -> 0.5, so day 11 is the check.)
        // Mean = (0.5 + 0.5 + 0.5) / 3 = 0.5.  Without exclusion: (0.5 + 1.0 + 0.5) / 3 = 2/3.
        let mut rows = vec![
            (10, "a", 0.9, true),
            (10, "a", 0.2, false),
            (10, "b", 0.8, false),
            (10, "c", 0.7, true),
            (10, "d", 0.1, true),
            (11, "a", 0.95, true),
            (11, "c", 0.6, true),
            (11, "b", 0.5, false),
            (11, "e", 0.4, false),
            (12, "c", 0.99, true),
            (12, "b", 0.3, false),
            (12, "d", 0.2, true),
        ];
        assert!(close(card_precision_at_k(&rows, 2).unwrap(), 0.5));
        // Row order, including day order, does not matter.
        rows.reverse();
        assert!(close(card_precision_at_k(&rows, 2).unwrap(), 0.5));
        // k = 1: day 10 a (fraud) 1/1; day 11 c (fraud) 1/1; day 12 b (legit) 0/1. Mean 2/3.
        assert!(close(card_precision_at_k(&rows, 1).unwrap(), 2.0 / 3.0));
    }

    #[test]
    fn cp_at_k_divides_by_k_when_fewer_cards() {
        // 3 cards, 2 fraud, k = 5: 2/5 = 0.4 (not 2/3).
        let rows = [(1, "a", 0.9, true), (1, "b", 0.5, false), (1, "c", 0.1, true)];
        assert!(close(card_precision_at_k(&rows, 5).unwrap(), 0.4));
        // A day whose cards were all detected still counts, at 0: day 1 -> a found, 1/5;
        // day 2 only a again -> 0/5. Mean 0.1.
        let rows = [(1, "a", 0.9, true), (2, "a", 0.9, true)];
        assert!(close(card_precision_at_k(&rows, 5).unwrap(), 0.1));
    }

    #[test]
    fn cp_at_k_breaks_ties_by_customer_and_handles_edges() {
        // a and b tie at 0.5; k = 1 takes "a" (legit) in either row order -> 0.
        assert_eq!(
            card_precision_at_k(&[(1, "b", 0.5, true), (1, "a", 0.5, false)], 1),
            Some(0.0)
        );
        assert_eq!(
            card_precision_at_k(&[(1, "a", 0.5, false), (1, "b", 0.5, true)], 1),
            Some(0.0)
        );
        // NaN ranks lowest: b (0.1, fraud) beats a (NaN) -> 1.
        assert_eq!(
            card_precision_at_k(&[(1, "a", f64::NAN, false), (1, "b", 0.1, true)], 1),
            Some(1.0)
        );
        assert_eq!(card_precision_at_k(&[], 100), None);
        assert_eq!(card_precision_at_k(&[(1, "a", 0.5, true)], 0), None);
    }

    #[test]
    fn evaluate_computes_all_three_and_serialises_field_names() {
        let d1 = date!(2018 - 08 - 08);
        let d2 = date!(2018 - 08 - 09);
        let txs = [
            tx("0", d1, "a", Some(true)),
            tx("1", d1, "b", Some(false)),
            tx("2", d2, "a", Some(true)),
            tx("3", d2, "c", Some(false)),
            tx("4", d2, "d", None), // skipped: no label
        ];
        let scored: Vec<(&LabelledTransaction, f64)> = txs.iter().zip([0.9, 0.2, 0.3, 0.6, 1.0]).collect();
        let e = evaluate(&scored, 1);
        // Positives {0.9, 0.3}, negatives {0.2, 0.6}: wins 0.9>0.2, 0.9>0.6, 0.3>0.2 -> AUC 3/4.
        // AP: 0.9 P=1 R=½; 0.6 no step; 0.3 P=⅔ R=1; AP = ½ + ⅓ = 5/6.
        // CP@1: day 1 a (fraud) 1/1, a detected; day 2 a excluded, c (legit) 0/1. Mean ½.
        assert!(close(e.auc.unwrap(), 0.75));
        assert!(close(e.average_precision.unwrap(), 5.0 / 6.0));
        assert!(close(e.card_precision_at_100.unwrap(), 0.5));
        assert_eq!((e.transactions, e.frauds), (4, 2));

        let json = serde_json::to_value(e).unwrap();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "auc",
                "average_precision",
                "card_precision_at_100",
                "frauds",
                "transactions"
            ]
        );

        // Empty test set: metrics null, counts zero.
        let empty = evaluate(&[], 100);
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"auc":null,"average_precision":null,"card_precision_at_100":null,"transactions":0,"frauds":0}"#
        );
    }
}
