//! Pareto-smoothed importance sampling's shape estimate k̂ (Vehtari, Simpson, Gelman, Yao &
//! Gabry, *Pareto Smoothed Importance Sampling*, JMLR 2024): a generalized Pareto fit to the
//! largest of an image's K importance weights. The larger k̂, the heavier their tail, and above
//! [`khat_bound`] the IWAE estimate of that image's log p(x) is not to be trusted (its variance
//! may be infinite, its bias large). The fit is Zhang & Stephens' (2009), with the weakly
//! informative prior the `loo` package adds, so k̂ matches `loo::psis` and `arviz.psislw`.

/// Fewer tail weights than this and no fit is made (loo's `enough_tail_samples`).
const MIN_TAIL: usize = 5;
/// Zhang & Stephens' grid has this many points plus ⌊√M⌋ (loo's `min_grid_pts`).
const MIN_GRID: usize = 30;
/// The prior on the grid's scale (Zhang & Stephens' "3").
const GRID_PRIOR: f64 = 3.0;
/// loo's weakly informative prior: k̂ is shrunk toward 0.5 as if by this many extra weights.
const PRIOR_WEIGHTS: f64 = 10.0;

/// Weights in the fitted tail: M = ⌈min(0.2 K, 3 √K)⌉ (the K draws are independent, so the
/// relative efficiency is 1).
pub fn tail_len(samples: usize) -> usize {
    let s = samples as f64;
    (0.2 * s).min(3.0 * s.sqrt()).ceil() as usize
}

/// The k̂ above which an estimate from `samples` weights is unreliable: min(1 − 1/log₁₀ K, 0.7)
/// (the paper's sample-size-dependent threshold; 0.7 from K ≈ 2,200 up).
pub fn khat_bound(samples: usize) -> f64 {
    (1.0 - 1.0 / (samples as f64).log10()).min(0.7)
}

/// k̂ of one image's log importance weights: `None` when there are too few to fit a tail
/// (K < 25), when a weight is NaN, or when the tail is flat (all its weights equal: nothing
/// heavy to measure).
pub fn khat(log_weights: &[f64]) -> Option<f64> {
    let s = log_weights.len();
    let m = tail_len(s);
    if m < MIN_TAIL || m >= s || log_weights.iter().any(|w| w.is_nan()) {
        return None;
    }
    let mut sorted = log_weights.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Shifted by the largest so the exponentials below cannot overflow.
    let top = sorted[s - 1];
    if !top.is_finite() {
        return None;
    }
    let tail = &sorted[s - m..];
    let cutoff = sorted[s - m - 1] - top;
    if tail[m - 1] - tail[0] < f64::EPSILON / 100.0 {
        return None;
    }
    let exceed: Vec<f64> = tail
        .iter()
        .map(|w| (w - top).exp() - cutoff.exp())
        .collect();
    gpd_shape(&exceed)
}

/// The generalized Pareto shape of ascending exceedances `x` (Zhang & Stephens 2009, section
/// 4; positive for heavy tails), shrunk toward 0.5 by the weakly informative prior.
fn gpd_shape(x: &[f64]) -> Option<f64> {
    let n = x.len();
    let nf = n as f64;
    let grid = MIN_GRID + nf.sqrt().floor() as usize;
    // The sample's first quartile (1-based index ⌊n/4 + 0.5⌋).
    let quartile = x[((nf / 4.0 + 0.5).floor() as usize).max(1) - 1];
    let largest = x[n - 1];
    if quartile <= 0.0 || largest <= 0.0 {
        return None;
    }
    let mean_log1p = |theta: f64| x.iter().map(|&xi| (-theta * xi).ln_1p()).sum::<f64>() / nf;
    let theta: Vec<f64> = (1..=grid)
        .map(|j| {
            let spread = 1.0 - (grid as f64 / (j as f64 - 0.5)).sqrt();
            1.0 / largest + spread / GRID_PRIOR / quartile
        })
        .collect();
    // The profile log-likelihood of each grid point, then its posterior mean.
    let profile: Vec<f64> = theta
        .iter()
        .map(|&t| {
            let k = mean_log1p(t);
            nf * ((-t / k).ln() - k - 1.0)
        })
        .collect();
    let peak = profile
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !peak.is_finite() {
        return None;
    }
    let (mut mass, mut weighted) = (0.0, 0.0);
    for (&t, &l) in theta.iter().zip(&profile) {
        if l.is_finite() {
            let w = (l - peak).exp();
            mass += w;
            weighted += w * t;
        }
    }
    let k = mean_log1p(weighted / mass);
    let shrunk = (nf * k + PRIOR_WEIGHTS * 0.5) / (nf + PRIOR_WEIGHTS);
    shrunk.is_finite().then_some(shrunk)
}

/// A run's k̂ over its test images: how many of them the IWAE bound can be trusted on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reliability {
    /// The bound k̂ is compared with ([`khat_bound`] of K).
    pub bound: f64,
    /// Share of images whose k̂ exceeds it (images with no k̂ count as below).
    pub share_above: f64,
    /// The largest k̂ of any image.
    pub max: f64,
}

/// The summary of per-image k̂ values from `samples` weights each; `None` when no image has one.
pub fn reliability(khats: &[Option<f64>], samples: usize) -> Option<Reliability> {
    let max = khats.iter().flatten().copied().reduce(f64::max)?;
    let bound = khat_bound(samples);
    let above = khats.iter().flatten().filter(|&&k| k > bound).count();
    Some(Reliability {
        bound,
        share_above: above as f64 / khats.len() as f64,
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use rand_chacha::rand_core::SeedableRng;

    /// Log weights whose tail is Pareto with shape ξ: w = U^(−ξ) has P(w > t) = t^(−1/ξ).
    fn pareto_log_weights(xi: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| -xi * r.random_range(f64::MIN_POSITIVE..1.0).ln())
            .collect()
    }

    #[test]
    fn khat_finds_the_shape_of_a_known_pareto_tail() {
        // Over 20 seeds, the mean k̂ of 5,000 weights sits within 0.05 of the true shape, and
        // each seed within 0.3 (the fit's spread at M = 213 tail weights is ~0.08; the prior's
        // pull toward 0.5 is 0.03 at ξ = 1.2, which is why the largest shape here is 1.0).
        for xi in [0.2, 0.5, 0.8, 1.0] {
            let ks: Vec<f64> = (0..20)
                .map(|seed| khat(&pareto_log_weights(xi, 5000, seed)).unwrap())
                .collect();
            let mean = ks.iter().sum::<f64>() / ks.len() as f64;
            assert!((mean - xi).abs() < 0.05, "ξ = {xi}: mean k̂ {mean}");
            for k in ks {
                assert!((k - xi).abs() < 0.3, "ξ = {xi}: k̂ {k}");
            }
        }
    }

    #[test]
    fn khat_matches_arviz() {
        // (ξ, K, arviz.psislw's k̂) from scripts/psis_reference.py: an independent
        // implementation of the same fit, on weights that are a closed form of the index.
        let expected = [
            (0.3, 100, 0.4072383352557095),
            (0.3, 1000, 0.3089512697869791),
            (0.3, 5000, 0.2904166826772283),
            (0.7, 100, 0.6731214150136073),
            (0.7, 1000, 0.6637371818673561),
            (0.7, 5000, 0.6584801995532552),
            (1.1, 100, 0.9215063512906779),
            (1.1, 1000, 1.008464590003729),
            (1.1, 5000, 1.0438421284763235),
        ];
        for (xi, s, k) in expected {
            let lw: Vec<f64> = (0..s)
                .map(|i| {
                    let u = (0.1 + i as f64 * 0.618_033_988_749_894_9).fract();
                    -xi * u.ln() + 0.01 * (i % 7) as f64
                })
                .collect();
            let got = khat(&lw).unwrap();
            assert!(
                (got - k).abs() < 1e-9,
                "ξ = {xi}, K = {s}: {got} vs arviz {k}"
            );
        }
    }

    #[test]
    fn light_tails_give_a_small_khat() {
        // Gaussian log weights of spread 0.1: nearly equal weights, a tail far lighter than any
        // Pareto's; k̂ below zero up to the prior's pull toward 0.5.
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let lw: Vec<f64> = (0..2000)
            .map(|_| 0.1 * r.sample::<f64, _>(rand_distr::StandardNormal))
            .collect();
        let k = khat(&lw).unwrap();
        assert!(k < 0.1, "k̂ {k}");
    }

    #[test]
    fn khat_is_unchanged_by_shifting_or_reordering_the_weights() {
        // A constant added to every log weight (a normalizer) and the draws' order are not
        // information about the tail.
        let lw = pareto_log_weights(0.6, 1000, 3);
        let k = khat(&lw).unwrap();
        let mut moved: Vec<f64> = lw.iter().map(|w| w - 812.5).collect();
        moved.reverse();
        assert!((khat(&moved).unwrap() - k).abs() < 1e-9);
    }

    #[test]
    fn too_few_or_degenerate_weights_have_no_khat() {
        assert_eq!(khat(&[0.0; 24]), None);
        assert_eq!(khat(&[1.5; 1000]), None);
        let mut lw = pareto_log_weights(0.5, 100, 1);
        assert!(khat(&lw).is_some());
        lw[3] = f64::NAN;
        assert_eq!(khat(&lw), None);
    }

    #[test]
    fn the_bound_follows_the_sample_size_rule() {
        // min(1 − 1/log₁₀ K, 0.7): 0.5 at K = 100, 2/3 at 1,000, 0.7 from ~2,154 up.
        assert!((khat_bound(100) - 0.5).abs() < 1e-12);
        assert!((khat_bound(1000) - 2.0 / 3.0).abs() < 1e-12);
        assert!((khat_bound(2000) - (1.0 - 1.0 / 2000f64.log10())).abs() < 1e-12);
        assert_eq!(khat_bound(5000), 0.7);
        assert_eq!(tail_len(5000), 213);
        assert_eq!(tail_len(100), 20);
    }

    #[test]
    fn reliability_counts_images_above_the_bound() {
        let ks = [Some(0.2), Some(0.9), None, Some(0.71)];
        let r = reliability(&ks, 5000).unwrap();
        assert_eq!(r.bound, 0.7);
        assert_eq!(r.share_above, 0.5);
        assert_eq!(r.max, 0.9);
        assert_eq!(reliability(&[None, None], 5000), None);
    }
}
