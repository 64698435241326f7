//! The fused likelihood op: Σ_pixels log p(x|params) per row, with its gradient.
//!
//! The pixel loops are written so LLVM vectorizes them: the likelihood is chosen once per
//! call (not per pixel), sums run in 8 independent f32 lanes, the transcendental functions are
//! branch-free polynomials, and on x86-64 an AVX-512 or AVX2+FMA copy of the loop is picked at
//! run time (`VAELAB_LOOP_SIMD` caps it), every copy giving the same numbers to the bit.

use super::family::Likelihood;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;
use vaelab_kernels::simd::{loop_simd, Simd};

/// Pixels per parallel task: smaller tasks cost more in scheduling than they gain.
const PIXELS_PER_TASK: usize = 1 << 15;

/// (B, P·D) params and (B', D) x → (B,) row sums of log p, where B is a multiple of B' and
/// params rows i·r .. (i+1)·r all score x row i (r = B / B': K posterior samples per image).
///
/// When `params` is part of a graph being differentiated, the forward pass also keeps the
/// per-pixel derivatives, and the backward pass only scales them by the incoming gradient.
pub(crate) fn log_prob(lik: Likelihood, params: &Tensor, x: &Tensor) -> Result<Tensor> {
    let params = params.contiguous()?;
    let x = x.contiguous()?;
    let stash = params.track_op().then(|| Mutex::new(None));
    params.apply_op2(&x, LogLik { lik, stash })
}

struct LogLik {
    lik: Likelihood,
    /// d log p / d params, (B, P·D), filled by the forward pass when a backward pass will come.
    stash: Option<Mutex<Option<Vec<f32>>>>,
}

/// The shape of one call.
#[derive(Clone, Copy)]
struct Dims {
    /// Pixels per image.
    d: usize,
    /// Decoder outputs per pixel (1 or 2).
    p: usize,
    /// Params rows per x row.
    repeat: usize,
}

fn dims(lik: Likelihood, lp: &Layout, lx: &Layout) -> Result<(usize, Dims)> {
    let (&[b, pd], &[bx, d]) = (lp.dims(), lx.dims()) else {
        bail!(
            "log_prob: params {:?} and x {:?} must be 2-d",
            lp.dims(),
            lx.dims()
        )
    };
    let p = lik.params_per_pixel();
    if bx == 0 || b % bx != 0 || pd != p * d {
        bail!(
            "log_prob: params {:?} do not fit x {:?} ({p} per pixel)",
            lp.dims(),
            lx.dims()
        )
    }
    Ok((
        b,
        Dims {
            d,
            p,
            repeat: b / bx,
        },
    ))
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("log_prob: inputs must be contiguous"),
    }
}

/// Pixels evaluated per block before they are summed.
pub(super) const BLOCK: usize = 256;

/// One pixel's (log p, d/da, d/db), inlined into the pixel loops by force: a closure cannot
/// carry `#[inline(always)]`, and LLVM left the bigger mass kernels as a call per pixel
/// (30–80 ns a pixel instead of 1–5, vectorized).
pub(super) trait PixelFn: Copy {
    /// (log p, d/da, d/db) of pixel value x under parameters (a, b).
    fn eval(self, a: f32, b: f32, x: f32) -> (f32, f32, f32);
}

/// A [`PixelFn`] holding `$val: $ty`, whose `eval` binds it to `$s` and returns `$body`.
macro_rules! kernel {
    ($ty:ty = $val:expr; |$s:ident, $a:ident, $b:ident, $x:ident| $body:expr) => {{
        #[derive(Clone, Copy)]
        struct K($ty);
        impl $crate::likelihood::fused::PixelFn for K {
            #[inline(always)]
            fn eval(self, $a: f32, $b: f32, $x: f32) -> (f32, f32, f32) {
                let $s = self.0;
                $body
            }
        }
        K($val)
    }};
}

/// Σ_j f(a_j, b_j, x_j).0 over one row; derivatives into `ga`/`gb` when given.
///
/// Each block is a plain element-wise loop (which LLVM vectorizes) into a buffer, summed
/// afterwards in 8 lanes and then in f64.
#[inline(always)]
fn row<F: PixelFn>(
    f: F,
    a: &[f32],
    b: &[f32],
    x: &[f32],
    mut grad: Option<(&mut [f32], &mut [f32])>,
) -> f32 {
    let n = x.len();
    let mut total = 0f64;
    let mut vals = [0f32; BLOCK];
    for lo in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - lo);
        let (a, b, x) = (&a[lo..lo + len], &b[lo..lo + len], &x[lo..lo + len]);
        let v = &mut vals[..len];
        match grad.as_mut() {
            None => {
                for j in 0..len {
                    v[j] = f.eval(a[j], b[j], x[j]).0;
                }
            }
            Some((ga, gb)) => {
                let (ga, gb) = (&mut ga[lo..lo + len], &mut gb[lo..lo + len]);
                for j in 0..len {
                    let (value, da, db) = f.eval(a[j], b[j], x[j]);
                    v[j] = value;
                    ga[j] = da;
                    gb[j] = db;
                }
            }
        }
        let mut lanes = [0f32; 8];
        let mut chunks = v.chunks_exact(8);
        for c in &mut chunks {
            for l in 0..8 {
                lanes[l] += c[l];
            }
        }
        total += lanes
            .iter()
            .chain(chunks.remainder())
            .map(|&v| f64::from(v))
            .sum::<f64>();
    }
    total as f32
}

/// The read-only inputs of a block of rows: rows `first..first + out.len()` of a call.
#[derive(Clone, Copy)]
struct Rows<'a> {
    dm: Dims,
    first: usize,
    params: &'a [f32],
    x: &'a [f32],
}

/// Sums into `out` and derivatives into `grad` for the rows of `job`.
#[inline(always)]
fn rows<F: PixelFn>(
    f: F,
    job: Rows<'_>,
    out: &mut [f32],
    mut grad: Option<&mut [f32]>,
    scratch: &mut Vec<f32>,
) {
    let Dims { d, p, repeat } = job.dm;
    for (i, o) in out.iter_mut().enumerate() {
        let r = job.first + i;
        let pr = &job.params[r * p * d..(r + 1) * p * d];
        let xr = &job.x[(r / repeat) * d..(r / repeat + 1) * d];
        let (a, b) = if p == 2 { pr.split_at(d) } else { (pr, pr) };
        let g = grad.as_deref_mut().map(|g| {
            let g = &mut g[i * p * d..(i + 1) * p * d];
            if p == 2 {
                g.split_at_mut(d)
            } else {
                // One-parameter families have no second derivative to keep.
                scratch.resize(d, 0.0);
                (g, scratch.as_mut_slice())
            }
        });
        *o = row(f, a, b, xr, g);
    }
}

/// Picks the likelihood once and calls `$f(kernel, args…)` with its pixel function inlined:
/// the one list of families every pixel loop dispatches on (`rows` here, the streamed head's
/// panels in `streamed.rs`), so a new family enters in one place.
macro_rules! dispatch {
    ($lik:expr, $f:ident, $($arg:expr),*) => {{
        use $crate::likelihood::{family::Likelihood, mass::{last_level, Mass}};
        match $lik {
            Likelihood::Bernoulli => $f($crate::likelihood::fused::kernel!(() = (); |_s, a, b, x| Likelihood::Bernoulli.pixel(a, b, x)), $($arg),*),
            Likelihood::ContinuousBernoulli => $f($crate::likelihood::fused::kernel!(() = (); |_s, a, b, x| Likelihood::ContinuousBernoulli.pixel(a, b, x)), $($arg),*),
            Likelihood::GaussianLearned => $f($crate::likelihood::fused::kernel!(() = (); |_s, a, b, x| Likelihood::GaussianLearned.pixel(a, b, x)), $($arg),*),
            Likelihood::Gaussian { sigma } => $f($crate::likelihood::fused::kernel!(f32 = sigma; |s, a, b, x| Likelihood::Gaussian { sigma: s }.pixel(a, b, x)), $($arg),*),
            Likelihood::Laplace { scale } => $f($crate::likelihood::fused::kernel!(f32 = scale; |s, a, b, x| Likelihood::Laplace { scale: s }.pixel(a, b, x)), $($arg),*),
            Likelihood::Discretized { mass, levels } => {
                let last = last_level(levels);
                match mass {
                    Mass::Gaussian { sigma } => $f($crate::likelihood::fused::kernel!((f32, f32) = (sigma, last); |s, a, b, x| Mass::Gaussian { sigma: s.0 }.pixel(a, b, x, s.1)), $($arg),*),
                    Mass::GaussianLearned { log_sigma_min } => $f($crate::likelihood::fused::kernel!((f32, f32) = (log_sigma_min, last); |s, a, b, x| Mass::GaussianLearned { log_sigma_min: s.0 }.pixel(a, b, x, s.1)), $($arg),*),
                    Mass::Laplace { scale } => $f($crate::likelihood::fused::kernel!((f32, f32) = (scale, last); |s, a, b, x| Mass::Laplace { scale: s.0 }.pixel(a, b, x, s.1)), $($arg),*),
                    Mass::Logistic => $f($crate::likelihood::fused::kernel!(f32 = last; |s, a, b, x| Mass::Logistic.pixel(a, b, x, s)), $($arg),*),
                    Mass::ContinuousBernoulli => $f($crate::likelihood::fused::kernel!(f32 = last; |s, a, b, x| Mass::ContinuousBernoulli.pixel(a, b, x, s)), $($arg),*),
                }
            }
        }
    }};
}
pub(super) use {dispatch, kernel};

/// Runs `job` at `width` (from [`loop_simd`]): the AVX-512 copy gains on a CPU with 256-bit
/// units behind AVX-512 too (Zen 4: 1.3–1.5× for the discretized masses, more registers and
/// masked selects), Intel's 512-bit units more.
fn rows_at(
    width: Option<Simd>,
    lik: Likelihood,
    job: Rows<'_>,
    out: &mut [f32],
    grad: Option<&mut [f32]>,
) {
    let mut scratch = Vec::new();
    vaelab_kernels::at_width!(
        width,
        |lik: Likelihood,
         job: Rows<'_>,
         out: &mut [f32],
         grad: Option<&mut [f32]>,
         scratch: &mut Vec<f32>| { dispatch!(lik, rows, job, out, grad, scratch) },
        (lik, job, out, grad, &mut scratch)
    )
}

impl CustomOp2 for LogLik {
    fn name(&self) -> &'static str {
        "vae-log-prob"
    }

    fn cpu_fwd(
        &self,
        sp: &CpuStorage,
        lp: &Layout,
        sx: &CpuStorage,
        lx: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let lik = self.lik;
        let width = loop_simd().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let (b, dm) = dims(lik, lp, lx)?;
        let (params, x) = (slice(sp, lp)?, slice(sx, lx)?);
        let rows_per_task = (PIXELS_PER_TASK / dm.d.max(1)).max(1);
        let row_len = dm.p * dm.d;
        let mut out = vec![0f32; b];
        let mut grad = self.stash.as_ref().map(|_| vec![0f32; b * row_len]);
        let task = |(t, (o, g)): (usize, (&mut [f32], Option<&mut [f32]>))| {
            let job = Rows {
                dm,
                first: t * rows_per_task,
                params,
                x,
            };
            rows_at(width, lik, job, o, g)
        };
        match grad.as_mut() {
            Some(g) => out
                .par_chunks_mut(rows_per_task)
                .zip(g.par_chunks_mut(rows_per_task * row_len))
                .map(|(o, g)| (o, Some(g)))
                .enumerate()
                .for_each(task),
            None => out
                .par_chunks_mut(rows_per_task)
                .map(|o| (o, None))
                .enumerate()
                .for_each(task),
        }
        if let (Some(stash), Some(grad)) = (&self.stash, grad) {
            let mut slot = stash
                .lock()
                .map_err(|_| candle_core::Error::Msg("log_prob stash poisoned".into()))?;
            *slot = Some(grad);
        }
        Ok((CpuStorage::F32(out), Shape::from(b)))
    }

    fn bwd(
        &self,
        params: &Tensor,
        _x: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(mut grad) = self.stash.as_ref().and_then(|s| s.lock().ok()?.take()) else {
            bail!("log_prob: backward without a forward pass that kept its derivatives")
        };
        // Scale each row's derivatives by the gradient of that row's sum.
        let g = grad_res.to_vec1::<f32>()?;
        let row_len = grad.len() / g.len().max(1);
        for (row, gr) in grad.chunks_mut(row_len).zip(g) {
            row.iter_mut().for_each(|v| *v *= gr);
        }
        Ok((
            Some(Tensor::from_vec(grad, params.shape(), params.device())?),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::likelihood::bounds::LOG_SCALE_FLOOR;
    use crate::likelihood::mass::Mass;

    /// Every family, the masses on 8-bit and binary data among them.
    fn families() -> Vec<Likelihood> {
        let mut all = vec![
            Likelihood::Bernoulli,
            Likelihood::ContinuousBernoulli,
            Likelihood::Gaussian { sigma: 0.1 },
            Likelihood::GaussianLearned,
            Likelihood::Laplace { scale: 0.2 },
        ];
        for levels in [256, 2] {
            for mass in [
                Mass::ContinuousBernoulli,
                Mass::Gaussian { sigma: 0.05 },
                Mass::GaussianLearned {
                    log_sigma_min: LOG_SCALE_FLOOR,
                },
                Mass::Laplace { scale: 0.05 },
                Mass::Logistic,
            ] {
                all.push(Likelihood::Discretized { mass, levels });
            }
        }
        all
    }

    /// Each width this CPU runs gives the portable loop's values and derivatives to the bit
    /// (the same per-pixel arithmetic, sums in the same order), on rows long enough for whole
    /// and partial vectors and blocks, logits from saturated to 0, and every grey level.
    #[test]
    fn every_width_gives_the_portable_numbers_to_the_bit() {
        let (rows, d) = (3, 777);
        let widths: Vec<Option<Simd>> = Simd::available().into_iter().map(Some).collect();
        assert!(
            cfg!(not(target_arch = "x86_64")) || !widths.is_empty(),
            "an x86-64 CPU here without AVX2"
        );
        let x: Vec<f32> = (0..d).map(|i| (i * 37 % 256) as f32 / 255.0).collect();
        for lik in families() {
            let p = lik.params_per_pixel();
            let params: Vec<f32> = (0..rows * p * d)
                .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 60.0 + 1e-3 * (i % 3) as f32)
                .collect();
            let run = |width: Option<Simd>| {
                let job = Rows {
                    dm: Dims { d, p, repeat: rows },
                    first: 0,
                    params: &params,
                    x: &x,
                };
                let (mut out, mut grad) = (vec![0f32; rows], vec![0f32; rows * p * d]);
                rows_at(width, lik, job, &mut out, Some(&mut grad));
                let mut fwd = vec![0f32; rows];
                rows_at(width, lik, job, &mut fwd, None);
                (out, grad, fwd)
            };
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let (out, grad, fwd) = run(None);
            assert_eq!(bits(&out), bits(&fwd), "{lik:?}: forward alone");
            assert!(out.iter().all(|v| v.is_finite()), "{lik:?}: {out:?}");
            for &w in &widths {
                let (o, g, f) = run(w);
                assert_eq!(bits(&o), bits(&out), "{lik:?} at {w:?}: values");
                assert_eq!(bits(&g), bits(&grad), "{lik:?} at {w:?}: derivatives");
                assert_eq!(bits(&f), bits(&fwd), "{lik:?} at {w:?}: forward alone");
            }
        }
    }
}
