//! The latent's discretization: each dimension of z cut into 2^bits buckets of equal mass under
//! the prior N(0, 1) (Townsend et al.'s choice), so that p(z) is uniform over buckets and q(z|x)
//! is the Gaussian's mass on each bucket.

use constriction::stream::model::{Distribution, Inverse};
use probability::distribution::Gaussian;

/// Buckets of equal prior mass per latent dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    bits: u8,
}

impl Buckets {
    /// 2^`bits` buckets (at most 2^16: the coder's 24-bit masses must leave room for q).
    pub fn new(bits: u8) -> Self {
        Self {
            bits: bits.clamp(2, 16),
        }
    }

    /// log₂ of the bucket count.
    pub fn bits(self) -> u8 {
        self.bits
    }

    /// How many buckets.
    pub fn count(self) -> u32 {
        1 << self.bits
    }

    /// The z each bucket decodes to: its prior median Φ⁻¹((j + ½) / B).
    pub fn centre(self, j: u32) -> f32 {
        standard().inverse((f64::from(j) + 0.5) / f64::from(self.count())) as f32
    }

    /// The bucket holding z.
    pub fn of(self, z: f64) -> u32 {
        let b = f64::from(self.count());
        ((standard().distribution(z) * b).floor()).clamp(0.0, b - 1.0) as u32
    }

    /// q(z|x) = N(μ, σ²) as a distribution over bucket indices (bucket j spans j ± ½).
    pub fn posterior(self, mu: f32, sigma: f32) -> BucketPosterior {
        BucketPosterior {
            mu: f64::from(mu),
            sigma: f64::from(sigma).max(1e-12),
            count: f64::from(self.count()),
        }
    }
}

fn standard() -> Gaussian {
    Gaussian::new(0.0, 1.0)
}

/// N(μ, σ²) pushed onto the bucket axis s: P(s ≤ j − ½) = Φ((Φ⁻¹(j / B) − μ) / σ).
#[derive(Debug, Clone, Copy)]
pub struct BucketPosterior {
    mu: f64,
    sigma: f64,
    count: f64,
}

impl Distribution for BucketPosterior {
    type Value = f64;

    fn distribution(&self, s: f64) -> f64 {
        let u = (s + 0.5) / self.count;
        if u <= 0.0 {
            return 0.0;
        }
        if u >= 1.0 {
            return 1.0;
        }
        standard().distribution((standard().inverse(u) - self.mu) / self.sigma)
    }
}

impl Inverse for BucketPosterior {
    fn inverse(&self, p: f64) -> f64 {
        let z = self.mu + self.sigma * standard().inverse(p.clamp(1e-300, 1.0 - 1e-16));
        standard().distribution(z) * self.count - 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_have_equal_prior_mass_and_centres_inside_them() {
        let b = Buckets::new(8);
        let g = standard();
        for j in [0u32, 1, 17, 128, 254, 255] {
            let c = f64::from(b.centre(j));
            assert_eq!(b.of(c), j, "bucket {j}'s centre {c}");
            // The bucket's edges by the CDF: mass 1/256 each.
            let lo = if j == 0 {
                0.0
            } else {
                g.distribution(g.inverse(f64::from(j) / 256.0))
            };
            let hi = g.distribution(g.inverse(f64::from(j + 1) / 256.0).min(40.0));
            assert!((hi - lo - 1.0 / 256.0).abs() < 1e-9);
        }
    }

    #[test]
    fn the_posterior_on_buckets_is_the_gaussians_mass() {
        // Against direct integration of N(0.3, 0.2²) over each bucket's z-interval, by the
        // trapezoid rule on a fine grid (not through the CDFs used above).
        let b = Buckets::new(6);
        let q = b.posterior(0.3, 0.2);
        let edge = |j: u32| standard().inverse(f64::from(j) / 64.0).clamp(-9.0, 9.0);
        let pdf = |z: f64| {
            (-(z - 0.3f64).powi(2) / (2.0 * 0.04)).exp()
                / (0.2 * (2.0 * std::f64::consts::PI).sqrt())
        };
        let mut total = 0.0;
        for j in 0..64u32 {
            let (lo, hi) = (edge(j), edge(j + 1));
            let n = 2000;
            let h = (hi - lo) / n as f64;
            let integral: f64 = (0..n)
                .map(|i| 0.5 * h * (pdf(lo + i as f64 * h) + pdf(lo + (i + 1) as f64 * h)))
                .sum();
            let mass = q.distribution(f64::from(j) + 0.5) - q.distribution(f64::from(j) - 0.5);
            assert!(
                (mass - integral).abs() < 1e-6,
                "bucket {j}: {mass} vs {integral}"
            );
            total += mass;
        }
        assert!((total - 1.0).abs() < 1e-12);
        // The inverse lands on the bucket whose cumulative mass brackets p.
        for p in [0.01, 0.3, 0.5, 0.9, 0.999] {
            let s = q.inverse(p).round();
            assert!(q.distribution(s - 0.5) <= p + 1e-12 && p <= q.distribution(s + 0.5) + 1e-12);
        }
    }
}
