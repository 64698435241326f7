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
    let l = mu[0].len();
    let sum = |lv: &[f32]| lv.iter().map(|&v| f64::from(v)).sum::<f64>();
    // E_q log q(z|x) = −½ Σ_d (log 2π + 1 + log σ²_d), exactly.
    let neg_entropy = logvar
        .iter()
        .map(|lv| -0.5 * (l as f64 * (LOG_2PI + 1.0) + sum(lv)))
        .sum::<f64>()
        / n as f64;
    // Dimension-major, so the inner loop runs over images j contiguously; with a = 1/(σ√2)
    // and b = μ·a, ½(z − μ)²/σ² = (z·a − b)²: two fused multiply-adds per term.
    let mut a_t = vec![0f32; l * n];
    let mut b_t = vec![0f32; l * n];
    for (j, (m, lv)) in mu.iter().zip(logvar).enumerate() {
        for d in 0..l {
            let a = (-0.5 * lv[d]).exp() * std::f32::consts::FRAC_1_SQRT_2;
            a_t[d * n + j] = a;
            b_t[d * n + j] = m[d] * a;
        }
    }
    let norm: Vec<f32> = logvar
        .iter()
        .map(|lv| (-0.5 * (l as f64 * LOG_2PI + sum(lv))) as f32)
        .collect();
    let cols = Cols {
        a_t: &a_t,
        b_t: &b_t,
        norm: &norm,
    };
    // Images in groups of [`GROUP`] in parallel, each group's densities computed together so
    // the posteriors stream from memory once per group; summed in order: the same bits on any
    // number of threads.
    let indices: Vec<usize> = (0..n).collect();
    let per_group: Vec<f64> = indices
        .par_chunks(GROUP)
        .map_init(
            || vec![0f32; GROUP * n],
            |dens, group| {
                let zs: Vec<Vec<f32>> = group
                    .iter()
                    .map(|&i| {
                        let z = mu[i].iter().zip(&logvar[i]).zip(&eps[i]);
                        z.map(|((&m, &lv), &e)| m + (0.5 * lv).exp() * e).collect()
                    })
                    .collect();
                log_mean_q(&zs, cols, &mut dens[..group.len() * n])
            },
        )
        .collect();
    neg_entropy - per_group.iter().sum::<f64>() / n as f64
}

/// Images whose densities are computed in one pass over the posteriors.
const GROUP: usize = 8;
/// Posteriors per tile of that pass: 20 dimensions of a and b stay in L1.
const TILE: usize = 256;

/// The posteriors of all images, dimension-major: `a_t[d·n + j]` = 1/(σ√2), `b_t[d·n + j]` =
/// μ/(σ√2), and each one's log normalizer.
#[derive(Clone, Copy)]
struct Cols<'a> {
    a_t: &'a [f32],
    b_t: &'a [f32],
    norm: &'a [f32],
}

/// Σ over the images z of `zs` of log (1/N) Σ_j q(z | x_j); `dens` is scratch for their N
/// log densities each.
fn log_mean_q(zs: &[Vec<f32>], cols: Cols, dens: &mut [f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: both features were just detected.
        return unsafe { log_mean_q_avx2(zs, cols, dens) };
    }
    log_mean_q_portable(zs, cols, dens)
}

fn log_mean_q_portable(zs: &[Vec<f32>], cols: Cols, dens: &mut [f32]) -> f64 {
    log_mean_q_body(zs, cols, dens)
}

/// The same loops compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn log_mean_q_avx2(zs: &[Vec<f32>], cols: Cols, dens: &mut [f32]) -> f64 {
    log_mean_q_body(zs, cols, dens)
}

/// log q(z | x_j) for every z and j in f32 (a difference squared, never expanded: no
/// cancellation), tile by tile of j, then each z's log-mean-exp with a branch-free exp.
#[inline(always)]
fn log_mean_q_body(zs: &[Vec<f32>], cols: Cols, dens: &mut [f32]) -> f64 {
    let n = cols.norm.len();
    for row in dens.chunks_mut(n) {
        row.copy_from_slice(cols.norm);
    }
    for start in (0..n).step_by(TILE) {
        let end = (start + TILE).min(n);
        for d in 0..zs[0].len() {
            let a = &cols.a_t[d * n + start..d * n + end];
            let b = &cols.b_t[d * n + start..d * n + end];
            for (z, row) in zs.iter().zip(dens.chunks_mut(n)) {
                let zd = z[d];
                for ((o, &a), &b) in row[start..end].iter_mut().zip(a).zip(b) {
                    let t = zd.mul_add(a, -b);
                    *o = (-t).mul_add(t, *o);
                }
            }
        }
    }
    let mut out = 0f64;
    for row in dens.chunks(n) {
        // Plain loops over eight lanes, so they vectorize inside the AVX2 copy (iterator
        // adapters here stayed out-of-line calls: two thirds of the time).
        let mut max = [f32::NEG_INFINITY; LANES];
        for c in row.chunks(LANES) {
            for (m, &v) in max.iter_mut().zip(c) {
                *m = m.max(v);
            }
        }
        let max = max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = [0f32; LANES];
        for c in row.chunks(LANES) {
            for (t, &v) in total.iter_mut().zip(c) {
                *t += vaelab_kernels::fastmath::exp_neg(v - max);
            }
        }
        let total: f64 = total.iter().map(|&t| f64::from(t)).sum();
        out += f64::from(max) + (total / n as f64).ln();
    }
    out
}

/// Accumulators of the max and the sum: one AVX2 register of f32.
const LANES: usize = 8;

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
