//! The fused likelihood op: Σ_pixels log p(x|params) per row, with its gradient.

use crate::Likelihood;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Rows are processed in parallel only above this many pixels: below, the pool costs more.
const PARALLEL_ABOVE: usize = 1 << 15;

/// (B, P·D) params and (B, D) x → (B,) row sums of log p.
///
/// When `params` is part of a graph being differentiated, the forward pass also keeps the
/// per-pixel derivatives (one `exp`/`log1p` per pixel serves both), and the backward pass only
/// scales them by the incoming gradient.
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
struct LogLikGrad(Likelihood);

/// Checks shapes and returns (rows, pixels, params per pixel).
fn dims(lik: Likelihood, lp: &Layout, lx: &Layout) -> Result<(usize, usize, usize)> {
    let (&[b, pd], &[bx, d]) = (lp.dims(), lx.dims()) else {
        bail!(
            "log_prob: params {:?} and x {:?} must be 2-d",
            lp.dims(),
            lx.dims()
        )
    };
    let p = lik.params_per_pixel();
    if b != bx || pd != p * d {
        bail!(
            "log_prob: params {:?} do not fit x {:?} ({p} per pixel)",
            lp.dims(),
            lx.dims()
        )
    }
    Ok((b, d, p))
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("log_prob: inputs must be contiguous"),
    }
}

/// One row: Σ_j log p, and the derivatives into `grad`.
#[inline]
fn row_sum_grad(lik: Likelihood, params: &[f32], x: &[f32], grad: &mut [f32]) -> f32 {
    let d = x.len();
    let mut acc = 0f64;
    if lik.params_per_pixel() == 2 {
        let (ga, gb) = grad.split_at_mut(d);
        for j in 0..d {
            let (f, da, db) = lik.pixel(params[j], params[d + j], x[j]);
            acc += f64::from(f);
            ga[j] = da;
            gb[j] = db;
        }
    } else {
        for j in 0..d {
            let (f, da, _) = lik.pixel(params[j], 0.0, x[j]);
            acc += f64::from(f);
            grad[j] = da;
        }
    }
    acc as f32
}

/// One row: Σ_j log p, written from the likelihood's pixel function.
#[inline]
fn row_sum(lik: Likelihood, params: &[f32], x: &[f32]) -> f32 {
    let d = x.len();
    let mut acc = 0f64;
    if lik.params_per_pixel() == 2 {
        for j in 0..d {
            acc += f64::from(lik.pixel(params[j], params[d + j], x[j]).0);
        }
    } else {
        for j in 0..d {
            acc += f64::from(lik.pixel(params[j], 0.0, x[j]).0);
        }
    }
    acc as f32
}

/// One row of the gradient, scaled by the incoming gradient `g` of the row's sum.
#[inline]
fn row_grad(lik: Likelihood, params: &[f32], x: &[f32], g: f32, out: &mut [f32]) {
    let d = x.len();
    if lik.params_per_pixel() == 2 {
        let (oa, ob) = out.split_at_mut(d);
        for j in 0..d {
            let (_, da, db) = lik.pixel(params[j], params[d + j], x[j]);
            oa[j] = g * da;
            ob[j] = g * db;
        }
    } else {
        for j in 0..d {
            out[j] = g * lik.pixel(params[j], 0.0, x[j]).1;
        }
    }
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
        let (b, d, p) = dims(lik, lp, lx)?;
        let (params, x) = (slice(sp, lp)?, slice(sx, lx)?);
        let parallel = b * d > PARALLEL_ABOVE;
        let out: Vec<f32> = match &self.stash {
            None => {
                let row = |(pr, xr): (&[f32], &[f32])| row_sum(lik, pr, xr);
                if parallel {
                    params
                        .par_chunks(p * d)
                        .zip(x.par_chunks(d))
                        .map(row)
                        .collect()
                } else {
                    params.chunks(p * d).zip(x.chunks(d)).map(row).collect()
                }
            }
            Some(stash) => {
                let mut grad = vec![0f32; b * p * d];
                let row =
                    |((pr, xr), g): ((&[f32], &[f32]), &mut [f32])| row_sum_grad(lik, pr, xr, g);
                let out = if parallel {
                    params
                        .par_chunks(p * d)
                        .zip(x.par_chunks(d))
                        .zip(grad.par_chunks_mut(p * d))
                        .map(row)
                        .collect()
                } else {
                    params
                        .chunks(p * d)
                        .zip(x.chunks(d))
                        .zip(grad.chunks_mut(p * d))
                        .map(row)
                        .collect()
                };
                let mut slot = stash
                    .lock()
                    .map_err(|_| candle_core::Error::Msg("log_prob stash poisoned".into()))?;
                *slot = Some(grad);
                out
            }
        };
        Ok((CpuStorage::F32(out), Shape::from(b)))
    }

    fn bwd(
        &self,
        params: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let stashed = self.stash.as_ref().and_then(|s| s.lock().ok()?.take());
        let grad = match stashed {
            Some(mut grad) => {
                // Scale each row's derivatives by the gradient of that row's sum.
                let g = grad_res.to_vec1::<f32>()?;
                let row_len = grad.len() / g.len().max(1);
                for (row, gr) in grad.chunks_mut(row_len).zip(g) {
                    row.iter_mut().for_each(|v| *v *= gr);
                }
                Tensor::from_vec(grad, params.shape(), params.device())?
            }
            None => {
                let g = grad_res.contiguous()?;
                params.apply_op3_no_bwd(x, &g, &LogLikGrad(self.lik))?
            }
        };
        Ok((Some(grad), None))
    }
}

/// One row of the gradient pass: (output, params), (x, incoming gradient).
type GradRow<'a> = ((&'a mut [f32], &'a [f32]), (&'a [f32], &'a f32));

impl CustomOp3 for LogLikGrad {
    fn name(&self) -> &'static str {
        "vae-log-prob-grad"
    }

    fn cpu_fwd(
        &self,
        sp: &CpuStorage,
        lp: &Layout,
        sx: &CpuStorage,
        lx: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, d, p) = dims(self.0, lp, lx)?;
        let (params, x, g) = (slice(sp, lp)?, slice(sx, lx)?, slice(sg, lg)?);
        if g.len() != b {
            bail!("log_prob grad: {} incoming gradients for {b} rows", g.len())
        }
        let mut out = vec![0f32; b * p * d];
        let row = |((o, pr), (xr, &gr)): GradRow| row_grad(self.0, pr, xr, gr, o);
        if b * d > PARALLEL_ABOVE {
            out.par_chunks_mut(p * d)
                .zip(params.par_chunks(p * d))
                .zip(x.par_chunks(d).zip(g.par_iter()))
                .for_each(row);
        } else {
            out.chunks_mut(p * d)
                .zip(params.chunks(p * d))
                .zip(x.chunks(d).zip(g.iter()))
                .for_each(row);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, p * d))))
    }
}
