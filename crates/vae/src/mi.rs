//! The mutual information I_q(x; z) of the encoder's aggregate posterior, as He, Spokoyny,
//! Neubig & Berg-Kirkpatrick estimate it (ICLR 2019, code jxhe/vae-lagging-encoder, `calc_mi`):
//! I = E_x E_q(z|x) log q(z|x) − E_x E_q(z|x) log q(z), with the aggregate q(z) = (1/N) Σ_j
//! q(z|x_j) over the N evaluation images and one z per image. The estimate cannot exceed log N.

use rayon::prelude::*;

const LOG_2PI: f64 = 1.837_877_066_409_345_3;

/// I_q(x; z) from each image's posterior (μ, log σ²) rows and one standard-normal draw per image
/// (`eps`, same shape): z_i = μ_i + σ_i ε_i.
pub fn mutual_information(mu: &[Vec<f32>], logvar: &[Vec<f32>], eps: &[Vec<f32>]) -> f64 {
    let n = mu.len();
    if n == 0 {
        return 0.0;
    }
    let l = mu[0].len() as f64;
    // E_q log q(z|x) = −½ Σ_d (log 2π + 1 + log σ²_d), exactly.
    let neg_entropy = logvar
        .iter()
        .map(|lv| -0.5 * (l * (LOG_2PI + 1.0) + lv.iter().map(|&v| f64::from(v)).sum::<f64>()))
        .sum::<f64>()
        / n as f64;
    let inv_var: Vec<Vec<f64>> = logvar
        .iter()
        .map(|lv| lv.iter().map(|&v| (-f64::from(v)).exp()).collect())
        .collect();
    let norm: Vec<f64> = logvar
        .iter()
        .map(|lv| -0.5 * (l * LOG_2PI + lv.iter().map(|&v| f64::from(v)).sum::<f64>()))
        .collect();
    // Per image in parallel, summed in order: the same bits on any number of threads.
    let per_image: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| {
            let z: Vec<f64> = mu[i]
                .iter()
                .zip(&logvar[i])
                .zip(&eps[i])
                .map(|((&m, &lv), &e)| f64::from(m) + (0.5 * f64::from(lv)).exp() * f64::from(e))
                .collect();
            // log q(z_i | x_j) for every j, then log-mean-exp over j.
            let dens: Vec<f64> = (0..n)
                .map(|j| {
                    let quad: f64 = z
                        .iter()
                        .zip(&mu[j])
                        .zip(&inv_var[j])
                        .map(|((&z, &m), &iv)| (z - f64::from(m)).powi(2) * iv)
                        .sum();
                    norm[j] - 0.5 * quad
                })
                .collect();
            crate::iwae::log_mean_exp(&dens)
        })
        .collect();
    let log_qz = per_image.iter().sum::<f64>() / n as f64;
    neg_entropy - log_qz
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    fn draws(n: usize, l: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut r = rng::stream(seed, rng::Stream::Mi, 0);
        (0..n).map(|_| rng::normals(&mut r, l)).collect()
    }

    /// A q that ignores x carries no information: MI ≈ 0.
    #[test]
    fn q_independent_of_x_gives_zero() {
        let (n, l) = (1000, 4);
        let mu = vec![vec![0.3, -1.0, 0.0, 2.0]; n];
        let lv = vec![vec![0.0, -1.0, 0.5, 0.2]; n];
        let mi = mutual_information(&mu, &lv, &draws(n, l, 1));
        assert!(mi.abs() < 0.1, "{mi}");
    }

    /// A q that tells each of N images apart (means far apart, tiny variances): MI ≈ log N,
    /// the estimator's ceiling, up to the one-draw noise of log q(z|x) (std 1/√N · √(L/2) ≈
    /// 0.03 nats here; tolerance 0.1).
    #[test]
    fn q_that_identifies_every_image_gives_log_n() {
        let (n, l) = (1000, 2);
        let mu: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32, -(i as f32)]).collect();
        let lv = vec![vec![-8.0, -8.0]; n];
        let mi = mutual_information(&mu, &lv, &draws(n, l, 2));
        assert!((mi - (n as f64).ln()).abs() < 0.1, "{mi}");
    }

    /// Between the two: two clusters of images, each cluster's posteriors identical, MI ≈ log 2.
    #[test]
    fn two_indistinguishable_halves_give_log_two() {
        let (n, l) = (1000, 1);
        let mu: Vec<Vec<f32>> = (0..n)
            .map(|i| vec![if i < n / 2 { -50.0 } else { 50.0 }])
            .collect();
        let lv = vec![vec![0.0]; n];
        let mi = mutual_information(&mu, &lv, &draws(n, l, 3));
        assert!((mi - 2f64.ln()).abs() < 0.05, "{mi}");
    }
}
