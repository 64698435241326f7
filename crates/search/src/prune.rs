//! Early stopping: when a trial is judged (its rungs) and whether it goes on, from its metric
//! and those of the trials it is compared with. No files, no clocks: the caller decides who the
//! peers are and where the values come from.

use serde::{Deserialize, Serialize};

/// Which rule stops trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Asynchronous successive halving (Li et al. 2020): at rungs `min_epochs · η^k`, a trial
    /// goes on when it is among the best `max(1, ⌊n/η⌋)` of the `n` values at the rung.
    Asha { reduction_factor: usize },
    /// The median rule (Golovin et al. 2017, Optuna's `MedianPruner`): at every epoch from
    /// `min_epochs`, a trial goes on unless it is worse than its peers' median there.
    Median,
}

impl Rule {
    /// The name in sweep files.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Asha { .. } => "asha",
            Rule::Median => "median",
        }
    }
}

/// Whether lower or higher values of the metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Minimize,
    Maximize,
}

impl Direction {
    /// Parses `"minimize"` / `"maximize"`.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "minimize" => Some(Direction::Minimize),
            "maximize" => Some(Direction::Maximize),
            _ => None,
        }
    }

    /// The name in sweep files.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }

    /// How bad a value is, lower being better; a missing or NaN value is the worst.
    fn badness(self, v: Option<f64>) -> f64 {
        match v.filter(|v| !v.is_nan()) {
            None => f64::INFINITY,
            Some(v) if self == Direction::Minimize => v,
            Some(v) => -v,
        }
    }
}

/// A rule with its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruner {
    pub rule: Rule,
    /// No trial is judged before this many epochs (ASHA's first rung).
    pub min_epochs: usize,
    /// A rung with fewer peers than this stops nobody.
    pub grace: usize,
    pub direction: Direction,
}

/// What a rung decided for one trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Whether the trial goes on to its next rung.
    pub keep: bool,
    /// The worst value that still goes on (`None` when the rung had too few peers to judge).
    pub threshold: Option<f64>,
}

impl Pruner {
    /// The epochs after which a trial of `epochs` epochs is judged, ascending. The last epoch
    /// never is: a trial that got there has nothing left to save.
    pub fn rungs(&self, epochs: usize) -> Vec<usize> {
        let first = self.min_epochs.max(1);
        match self.rule {
            Rule::Median => (first..epochs).collect(),
            Rule::Asha { reduction_factor } => {
                let eta = reduction_factor.max(2);
                std::iter::successors(Some(first), |r| r.checked_mul(eta))
                    .take_while(|&r| r < epochs)
                    .collect()
            }
        }
    }

    /// The verdict for a trial whose metric at a rung is `own`, against `peers`: the values
    /// there of the trials it is compared with (itself not among them).
    pub fn judge(&self, own: Option<f64>, peers: &[Option<f64>]) -> Verdict {
        if peers.len() < self.grace {
            return Verdict {
                keep: true,
                threshold: None,
            };
        }
        let d = self.direction;
        let mut bad: Vec<f64> = peers.iter().map(|&v| d.badness(v)).collect();
        let threshold = match self.rule {
            Rule::Asha { reduction_factor } => {
                bad.push(d.badness(own));
                bad.sort_by(f64::total_cmp);
                let top = (bad.len() / reduction_factor.max(2)).max(1);
                bad[top - 1]
            }
            Rule::Median => {
                if bad.is_empty() {
                    return Verdict {
                        keep: true,
                        threshold: None,
                    };
                }
                bad.sort_by(f64::total_cmp);
                let n = bad.len();
                if n % 2 == 1 {
                    bad[n / 2]
                } else {
                    (bad[n / 2 - 1] + bad[n / 2]) / 2.0
                }
            }
        };
        let keep = d.badness(own) <= threshold;
        // Back from badness to the metric's own sign.
        let threshold = match d {
            Direction::Minimize => threshold,
            Direction::Maximize => -threshold,
        };
        Verdict {
            keep,
            threshold: Some(threshold).filter(|t| t.is_finite()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asha(eta: usize) -> Pruner {
        Pruner {
            rule: Rule::Asha {
                reduction_factor: eta,
            },
            min_epochs: 1,
            grace: 0,
            direction: Direction::Minimize,
        }
    }

    #[test]
    fn asha_rungs_grow_by_the_reduction_factor_and_stop_before_the_last_epoch() {
        let p = Pruner {
            min_epochs: 2,
            ..asha(3)
        };
        assert_eq!(p.rungs(20), vec![2, 6, 18]);
        assert_eq!(p.rungs(18), vec![2, 6]);
        assert_eq!(p.rungs(2), Vec::<usize>::new());
        let m = Pruner {
            rule: Rule::Median,
            ..p
        };
        assert_eq!(m.rungs(6), vec![2, 3, 4, 5]);
    }

    /// Counted, not recomputed: among n distinct values judged each against the other n − 1,
    /// exactly max(1, ⌊n/η⌋) go on, and they are the smallest ones.
    #[test]
    fn asha_keeps_the_best_fraction_of_every_rung() {
        for eta in [2, 3, 4] {
            for n in 1..=20usize {
                // A fixed shuffle of 0..n.
                let values: Vec<f64> = (0..n).map(|i| ((i * 7919 + 3) % n) as f64).collect();
                let kept: Vec<f64> = (0..n)
                    .filter(|&i| {
                        let peers: Vec<Option<f64>> = (0..n)
                            .filter(|&j| j != i)
                            .map(|j| Some(values[j]))
                            .collect();
                        asha(eta).judge(Some(values[i]), &peers).keep
                    })
                    .map(|i| values[i])
                    .collect();
                let want = (n / eta).max(1);
                assert_eq!(kept.len(), want, "eta {eta}, n {n}");
                assert!(kept.iter().all(|&v| v < want as f64), "{kept:?}");
            }
        }
    }

    #[test]
    fn maximizing_keeps_the_largest_and_missing_values_are_the_worst() {
        let p = Pruner {
            direction: Direction::Maximize,
            ..asha(2)
        };
        let v = p.judge(Some(5.0), &[Some(1.0), Some(9.0), Some(3.0)]);
        assert!(v.keep);
        assert_eq!(v.threshold, Some(5.0));
        assert!(!p.judge(Some(3.0), &[Some(1.0), Some(9.0), Some(5.0)]).keep);
        assert!(!asha(2).judge(None, &[Some(1e9)]).keep);
        assert!(!asha(2).judge(Some(f64::NAN), &[Some(1e9)]).keep);
        assert!(asha(2).judge(Some(1e9), &[None, Some(f64::NAN)]).keep);
    }

    #[test]
    fn the_first_trial_and_a_rung_short_of_grace_keep_everyone() {
        assert!(asha(3).judge(Some(1e9), &[]).keep);
        let p = Pruner {
            grace: 3,
            ..asha(3)
        };
        let v = p.judge(Some(1e9), &[Some(1.0), Some(2.0)]);
        assert_eq!(
            v,
            Verdict {
                keep: true,
                threshold: None
            }
        );
        assert!(!p.judge(Some(1e9), &[Some(1.0), Some(2.0), Some(3.0)]).keep);
    }

    /// The median rule stops a trial exactly when more than half its peers are better (an odd
    /// count of peers); between two middle values it takes their mean.
    #[test]
    fn the_median_rule_stops_what_more_than_half_the_peers_beat() {
        let p = Pruner {
            rule: Rule::Median,
            ..asha(3)
        };
        let peers: Vec<f64> = vec![4.0, 1.0, 7.0, 3.0, 9.0];
        let wrapped: Vec<Option<f64>> = peers.iter().map(|&v| Some(v)).collect();
        for own in [0.5, 3.0, 3.5, 4.0, 4.5, 6.5, 10.0] {
            let better = peers.iter().filter(|&&p| p < own).count();
            let v = p.judge(Some(own), &wrapped);
            assert_eq!(v.keep, better <= peers.len() / 2, "own {own}");
            assert_eq!(v.threshold, Some(4.0));
        }
        let even = [
            Some(4.0),
            Some(1.0),
            Some(7.0),
            Some(3.0),
            Some(9.0),
            Some(6.0),
        ];
        assert_eq!(p.judge(Some(5.0), &even).threshold, Some(5.0));
        assert!(p.judge(Some(5.0), &even).keep);
        assert!(!p.judge(Some(5.5), &even).keep);
        assert!(p.judge(Some(1e9), &[]).keep);
    }
}
