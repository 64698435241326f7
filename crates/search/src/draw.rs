//! A space and its trials: seeded random points, or a scrambled Sobol sequence.

use crate::{Dist, SearchError};
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use toml::Table;

/// How points of [0, 1)^d are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Independent uniform draws (ChaCha8 from the seed); a point that repeats an earlier
    /// trial is drawn again, so `trials` trials are `trials` distinct configurations.
    Random,
    /// Owen-scrambled Sobol points (Burley's scramble, seeded): evenly spread in every
    /// dimension, in counts of 2^m.
    Sobol,
}

impl Method {
    /// Reads `random` or `sobol`.
    pub fn parse(text: &str) -> Option<Method> {
        [Method::Random, Method::Sobol]
            .into_iter()
            .find(|m| m.name() == text)
    }

    /// Its name in a sweep file.
    pub fn name(self) -> &'static str {
        match self {
            Method::Random => "random",
            Method::Sobol => "sobol",
        }
    }
}

/// The most trials one search draws (the Sobol sequence's length in `sobol_burley`).
pub const MAX_TRIALS: usize = 1 << 16;

/// A search: its keys and their distributions (in a fixed order), the method, the count, the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub method: Method,
    pub trials: usize,
    pub seed: u64,
    pub keys: Vec<(String, Dist)>,
}

impl Space {
    /// Whether the space can give its trials at all, checked before drawing.
    pub fn check(&self) -> Result<(), SearchError> {
        if self.trials == 0 || self.trials > MAX_TRIALS {
            return Err(SearchError::Space(format!(
                "`trials` = {} is not allowed; allowed: 1 to {MAX_TRIALS}",
                self.trials
            )));
        }
        if self.keys.is_empty() {
            return Err(SearchError::Space(
                "no key to search over; add e.g. lr = { log_uniform = [1e-4, 1e-2] }".into(),
            ));
        }
        if self.keys.len() > sobol_burley::NUM_DIMENSIONS as usize {
            return Err(SearchError::Space(format!(
                "{} keys; a search takes at most {}",
                self.keys.len(),
                sobol_burley::NUM_DIMENSIONS
            )));
        }
        if self.method == Method::Random {
            let points = self
                .keys
                .iter()
                .try_fold(1u128, |n, (_, d)| d.size().map(|s| n.saturating_mul(s)));
            if let Some(points) = points.filter(|&p| p < self.trials as u128) {
                return Err(SearchError::Space(format!(
                    "{} random trials asked for, but the space holds only {points} distinct \
                     configurations; lower `trials` or list them in [grid]",
                    self.trials
                )));
            }
        }
        Ok(())
    }

    /// What the plan should warn about (Sobol points off a power of two lose their balance).
    pub fn warnings(&self) -> Vec<String> {
        let n = self.trials;
        if self.method == Method::Sobol && !n.is_power_of_two() {
            let below = 1usize << (usize::BITS - 1 - n.leading_zeros());
            return vec![format!(
                "[search] sobol with {n} trials: Sobol points are evenly spread only in counts \
                 of 2^m; {below} or {} trials keep that balance",
                below * 2
            )];
        }
        Vec::new()
    }

    /// The trials, in order: one table of key → value each.
    pub fn draw(&self) -> Result<Vec<Table>, SearchError> {
        self.check()?;
        let point = |u: &[f64]| -> Table {
            self.keys
                .iter()
                .zip(u)
                .map(|((key, dist), &u)| (key.clone(), dist.at(u)))
                .collect()
        };
        let d = self.keys.len();
        match self.method {
            Method::Sobol => {
                let seed = (self.seed ^ (self.seed >> 32)) as u32;
                Ok((0..self.trials as u32)
                    .map(|i| {
                        let u: Vec<f64> = (0..d as u32)
                            .map(|j| sobol_burley::sample(i, j, seed) as f64)
                            .collect();
                        point(&u)
                    })
                    .collect())
            }
            Method::Random => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
                let mut seen = HashSet::new();
                let mut out = Vec::with_capacity(self.trials);
                // A space of a few distinct points may take many draws to fill; give up well
                // past what any fillable space needs.
                let budget = self.trials.saturating_mul(1000).max(100_000);
                for _ in 0..budget {
                    let u: Vec<f64> = (0..d).map(|_| rng.random::<f64>()).collect();
                    let trial = point(&u);
                    if seen.insert(trial.to_string()) {
                        out.push(trial);
                        if out.len() == self.trials {
                            return Ok(out);
                        }
                    }
                }
                Err(SearchError::Space(format!(
                    "drew only {} distinct configurations of the {} asked for; widen the \
                     ranges or lower `trials`",
                    out.len(),
                    self.trials
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::Value;

    fn space(method: Method, trials: usize, seed: u64) -> Space {
        Space {
            method,
            trials,
            seed,
            keys: vec![
                (
                    "beta".into(),
                    Dist::Uniform {
                        low: 0.0,
                        high: 1.0,
                    },
                ),
                (
                    "lr".into(),
                    Dist::LogUniform {
                        low: 1e-4,
                        high: 1e-2,
                    },
                ),
                ("latent_dim".into(), Dist::IntUniform { low: 0, high: 63 }),
            ],
        }
    }

    fn column(trials: &[Table], key: &str) -> Vec<f64> {
        trials
            .iter()
            .map(|t| match &t[key] {
                Value::Float(f) => *f,
                Value::Integer(i) => *i as f64,
                v => panic!("{v}"),
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_trials_and_another_seed_others() {
        for method in [Method::Random, Method::Sobol] {
            let a = space(method, 16, 7).draw().unwrap();
            assert_eq!(a, space(method, 16, 7).draw().unwrap());
            assert_ne!(a, space(method, 16, 8).draw().unwrap(), "{method:?}");
            // More trials extend the list: the first 16 stay.
            assert_eq!(a, space(method, 32, 7).draw().unwrap()[..16]);
        }
    }

    #[test]
    fn sobol_points_fill_every_stratum_of_every_key_once_in_powers_of_two() {
        // 64 points of a (0, 2)-net in base 2: each of 64 equal bins of each coordinate holds
        // exactly one point; random points leave bins empty (with probability ≈ 1 − 64!/64^64).
        let trials = space(Method::Sobol, 64, 3).draw().unwrap();
        let beta = column(&trials, "beta");
        let mut bins: Vec<usize> = beta.iter().map(|b| (b * 64.0).floor() as usize).collect();
        bins.sort_unstable();
        bins.dedup();
        assert_eq!(bins.len(), 64, "{beta:?}");
        let mut dims = column(&trials, "latent_dim");
        dims.sort_by(f64::total_cmp);
        assert_eq!(dims, (0..64).map(f64::from).collect::<Vec<_>>());
        // The first two keys together (Sobol's first two dimensions form a (0, 2)-sequence):
        // each of the 8 × 8 cells of (beta, u(lr)) holds one point, u(lr) read back through
        // the log.
        let span = (1e-2f64).ln() - (1e-4f64).ln();
        let mut cells: Vec<(usize, usize)> = beta
            .iter()
            .zip(column(&trials, "lr"))
            .map(|(b, lr)| {
                (
                    (b * 8.0) as usize,
                    ((lr.ln() - (1e-4f64).ln()) / span * 8.0) as usize,
                )
            })
            .collect();
        cells.sort_unstable();
        cells.dedup();
        assert_eq!(cells.len(), 64);
        let random = space(Method::Random, 64, 3).draw().unwrap();
        let mut bins: Vec<usize> = column(&random, "beta")
            .iter()
            .map(|b| (b * 64.0).floor() as usize)
            .collect();
        bins.sort_unstable();
        bins.dedup();
        assert!(bins.len() < 64);
    }

    #[test]
    fn random_draws_follow_their_distributions() {
        // Kolmogorov–Smirnov against each key's CDF, at the 0.1 % level (critical value for
        // n = 2000: 1.95 / √n ≈ 0.044); ln(lr) is uniform on [ln 1e-4, ln 1e-2].
        let n = 2000;
        let trials = space(Method::Random, n, 11).draw().unwrap();
        let ks = |mut xs: Vec<f64>, cdf: &dyn Fn(f64) -> f64| {
            xs.sort_by(f64::total_cmp);
            xs.iter()
                .enumerate()
                .map(|(i, &x)| {
                    let f = cdf(x);
                    (f - i as f64 / n as f64)
                        .abs()
                        .max(((i + 1) as f64 / n as f64 - f).abs())
                })
                .fold(0.0, f64::max)
        };
        let crit = 1.95 / (n as f64).sqrt();
        assert!(ks(column(&trials, "beta"), &|x| x) < crit);
        let lr = column(&trials, "lr");
        assert!(lr.iter().all(|&v| (1e-4..=1e-2).contains(&v)));
        let span = (1e-2f64).ln() - (1e-4f64).ln();
        assert!(ks(lr, &|x| (x.ln() - (1e-4f64).ln()) / span) < crit);
        // Integers: each of 64 values ≈ n / 64 = 31 times (a χ² with 63 d.o.f., under 110).
        let mut counts = [0usize; 64];
        for k in column(&trials, "latent_dim") {
            counts[k as usize] += 1;
        }
        let e = n as f64 / 64.0;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 110.0, "{chi2}");
    }

    #[test]
    fn random_trials_never_repeat_and_an_overfull_space_is_refused() {
        let small = |trials| Space {
            method: Method::Random,
            trials,
            seed: 0,
            keys: vec![
                (
                    "likelihood".into(),
                    Dist::Choice(vec![Value::from("bernoulli"), Value::from("gaussian")]),
                ),
                ("latent_dim".into(), Dist::IntUniform { low: 2, high: 4 }),
            ],
        };
        let all = small(6).draw().unwrap();
        let distinct: HashSet<String> = all.iter().map(|t| t.to_string()).collect();
        assert_eq!(distinct.len(), 6);
        let err = small(7).draw().unwrap_err().to_string();
        assert!(err.contains("only 6 distinct"), "{err}");
    }

    #[test]
    fn sobol_off_a_power_of_two_is_warned_about_and_bad_counts_refused() {
        assert!(space(Method::Sobol, 32, 0).warnings().is_empty());
        let w = space(Method::Sobol, 30, 0).warnings().join("");
        assert!(w.contains("16 or 32"), "{w}");
        assert!(space(Method::Random, 30, 0).warnings().is_empty());
        assert!(space(Method::Sobol, 0, 0).draw().is_err());
        assert!(space(Method::Sobol, MAX_TRIALS + 1, 0).draw().is_err());
    }
}
