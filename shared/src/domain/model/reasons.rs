//! Reason codes: the largest per-feature contributions, phrased for a fraud analyst.

use super::FeatureStats;
use crate::domain::features::{Feature, FeatureVector, FEATURE_COUNT};
use std::fmt;
use std::sync::LazyLock;

pub const MAX_REASONS: usize = 5;

/// One feature's push on a score. `contribution` is in log-odds; positive raises risk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reason {
    pub feature: Feature,
    pub value: f64,
    pub contribution: f64,
    pub typical: FeatureStats,
}

impl Reason {
    /// A stable code, e.g. `TERMINAL_RISK_7D_HIGH`: the feature's name in capitals, then the
    /// direction. Built once, since every decision names its reasons.
    pub fn code(&self) -> &'static str {
        static CODES: LazyLock<[[String; 2]; FEATURE_COUNT]> = LazyLock::new(|| {
            Feature::ALL.map(|f| ["HIGH", "LOW"].map(|dir| format!("{}_{dir}", f.name().to_ascii_uppercase())))
        });
        // The same test as the text's "raises": a NaN contribution is LOW, as it always was.
        let dir = if self.contribution >= 0.0 { 0 } else { 1 };
        &CODES[self.feature as usize][dir]
    }

    fn ratio_phrase(&self) -> String {
        let typ = self.typical.p50.max(self.typical.mean.min(f64::MAX));
        if typ > 0.0 && self.value > 0.0 {
            let r = self.value / typ;
            if r >= 1.5 {
                return format!("{r:.1}× the typical {typ:.2}");
            }
            if r <= 0.67 {
                return format!("below the typical {typ:.2}");
            }
            return format!("close to the typical {typ:.2}");
        }
        format!("typical is {typ:.2}")
    }
}

fn window_phrase(f: Feature) -> &'static str {
    match f.window_days() {
        Some(1) => "1 day",
        Some(7) => "7 days",
        _ => "30 days",
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Feature::*;
        let v = self.value;
        let effect = if self.contribution >= 0.0 { "raises" } else { "lowers" };
        match self.feature {
            Amount => write!(f, "amount is {v:.2}, {}; this {effect} the risk", self.ratio_phrase()),
            DuringWeekend if v >= 0.5 => write!(f, "made on a weekend; this {effect} the risk"),
            DuringWeekend => write!(f, "made on a weekday; this {effect} the risk"),
            DuringNight if v >= 0.5 => write!(f, "made at night (00:00-06:59 UTC); this {effect} the risk"),
            DuringNight => write!(f, "made during the day; this {effect} the risk"),
            CustomerTxCount1d | CustomerTxCount7d | CustomerTxCount30d => write!(
                f,
                "customer made {v:.0} transactions in the last {}, {}; this {effect} the risk",
                window_phrase(self.feature),
                self.ratio_phrase()
            ),
            CustomerMeanAmount1d | CustomerMeanAmount7d | CustomerMeanAmount30d => write!(
                f,
                "customer's mean amount over {} is {v:.2}, {}; this {effect} the risk",
                window_phrase(self.feature),
                self.ratio_phrase()
            ),
            TerminalTxCount1d | TerminalTxCount7d | TerminalTxCount30d => write!(
                f,
                "terminal had {v:.0} transactions in the {} before the 7-day label delay, {}; this {effect} the risk",
                window_phrase(self.feature),
                self.ratio_phrase()
            ),
            AmountToCustomerMean1d | AmountToCustomerMean7d | AmountToCustomerMean30d => write!(
                f,
                "amount is {v:.1}× the customer's mean amount over {} (typical {:.1}×); this {effect} the risk",
                window_phrase(self.feature),
                self.typical.p50
            ),
            TerminalRisk1d | TerminalRisk7d | TerminalRisk30d => {
                let pct = v * 100.0;
                let typ = self.typical.mean * 100.0;
                let level = if v <= self.typical.mean {
                    "at or below normal"
                } else if v >= (self.typical.p95.max(self.typical.mean * 5.0)).max(0.05) {
                    "far above normal"
                } else {
                    "above normal"
                };
                write!(
                    f,
                    "terminal fraud rate over {} is {pct:.0}%, {level} (typical {typ:.1}%); this {effect} the risk",
                    window_phrase(self.feature)
                )
            }
        }
    }
}

/// Up to [`MAX_REASONS`] reasons, largest magnitude first, held inline.
#[derive(Debug, Clone, Copy)]
pub struct Reasons {
    items: [Option<Reason>; MAX_REASONS],
}

impl Reasons {
    pub fn top(x: &FeatureVector, contributions: &[f64; FEATURE_COUNT], stats: &[FeatureStats], k: usize) -> Reasons {
        let k = k.min(MAX_REASONS);
        let mut items: [Option<Reason>; MAX_REASONS] = [None; MAX_REASONS];
        for (i, &c) in contributions.iter().enumerate() {
            if c == 0.0 || !c.is_finite() {
                continue;
            }
            let feature = Feature::ALL[i];
            let r = Reason {
                feature,
                value: x.0[i],
                contribution: c,
                typical: stats.get(i).copied().unwrap_or_default(),
            };
            // Insertion into a tiny sorted array: cheaper than sorting 15 entries.
            let pos = items[..k]
                .iter()
                .position(|o| !matches!(o, Some(o) if o.contribution.abs() >= c.abs()))
                .unwrap_or(k);
            if pos < k {
                for j in (pos + 1..k).rev() {
                    items[j] = items[j - 1];
                }
                items[pos] = Some(r);
            }
        }
        Reasons { items }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Reason> {
        self.items.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_largest_magnitudes_in_order() {
        let mut c = [0.0; FEATURE_COUNT];
        c[0] = 0.3;
        c[12] = 2.5;
        c[4] = -1.0;
        c[7] = 0.1;
        let mut x = FeatureVector::default();
        x.0[12] = 0.34;
        x.0[0] = 412.5;
        let stats = vec![
            FeatureStats {
                mean: 0.01,
                p50: 0.0,
                p95: 0.02
            };
            FEATURE_COUNT
        ];
        let r = Reasons::top(&x, &c, &stats, 3);
        let got: Vec<_> = r.iter().map(|r| r.feature).collect();
        assert_eq!(
            got,
            vec![Feature::TerminalRisk7d, Feature::CustomerMeanAmount1d, Feature::Amount]
        );
        let first = r.iter().next().unwrap();
        assert_eq!(first.code(), "TERMINAL_RISK_7D_HIGH");
        assert_eq!(
            first.to_string(),
            "terminal fraud rate over 7 days is 34%, far above normal (typical 1.0%); this raises the risk"
        );
        let codes: Vec<_> = r.iter().map(|r| r.code()).collect();
        assert_eq!(codes[1], "CUSTOMER_MEAN_AMOUNT_1D_LOW");
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn amount_reason_compares_with_typical() {
        let r = Reason {
            feature: Feature::Amount,
            value: 412.5,
            contribution: 3.0,
            typical: FeatureStats {
                mean: 52.0,
                p50: 55.0,
                p95: 150.0,
            },
        };
        assert_eq!(
            r.to_string(),
            "amount is 412.50, 7.5× the typical 55.00; this raises the risk"
        );
    }
}
