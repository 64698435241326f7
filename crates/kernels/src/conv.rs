//! The conv body's layers as fused ops on the CPU: 4×4 convolutions and transposed
//! convolutions of stride 2 and padding 1, y = act(conv(x, W) + b), with hand-written backward.
//!
//! candle's stock CPU path runs the transposed convolution as a direct loop and routes every
//! gradient through another convolution (88 ms of a 128-image step of the anchor's network,
//! measured). Here each image is one im2col (or col2im) and one gemm, images run in parallel on
//! the pool with single-threaded gemms, the bias starts the accumulator and the ReLU is applied
//! in place; the backward computes dx only when x needs it.

use crate::backward::hold;
use crate::matmul::{matmul_with, with_data};
use crate::simd::Simd;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// Kernel side of every layer of the conv body.
pub const K: usize = 4;
/// Stride.
pub const S: usize = 2;
/// Padding.
pub const P: usize = 1;
const KK: usize = K * K;

/// act(conv(x, W) + b) for the conv body's 4×4 stride-2 layers: a convolution, x (B, Ci, H, W),
/// W (Co, Ci, 4, 4) → (B, Co, H/2, W/2); or with `transposed` a transposed convolution,
/// W (Ci, Co, 4, 4) → (B, Co, 2H, 2W); b (Co). CPU tensors only: [`crate::ops::conv`] picks.
pub fn conv(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool, transposed: bool) -> Result<Tensor> {
    let direct = crate::simd::conv_simd().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    conv_with(x, w, b, relu, transposed, direct)
}

/// As [`conv`]; `direct` lets the kernels of [`crate::direct`] at that width take the products
/// they suit (`None`: im2col + gemm; tests run every path this CPU has).
fn conv_with(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    relu: bool,
    transposed: bool,
    direct: Option<Simd>,
) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        Conv {
            relu,
            transposed,
            direct,
        },
    )
}

/// A direct kernel's tile is 32 output channels wide: below 16 most of it would be padding, so
/// such products (the decoder's last layer) stay on im2col + gemm.
fn wide(out_channels: usize) -> bool {
    out_channels >= 16
}

/// Channels whose bias-gradient sums run side by side (independent chains, so the adds overlap
/// instead of waiting on each other's latency).
const BIAS_CHAINS: usize = 8;

/// db[o] = Σ_images (Σ_p g[image][o][p]), each plane summed in order from zero and added to
/// db in image order: the plain loop's bits, `BIAS_CHAINS` channels at a time.
fn bias_grad(g: &[f32], channels: usize, plane: usize) -> Vec<f32> {
    let mut db = vec![0f32; channels];
    if channels == 0 || plane == 0 {
        return db;
    }
    // Groups of channels in parallel: each channel's sums stay in their order.
    db.par_chunks_mut(BIAS_CHAINS)
        .enumerate()
        .for_each(|(gi, dbs)| {
            for img in g.chunks(channels * plane) {
                let group = &img[gi * BIAS_CHAINS * plane..][..dbs.len() * plane];
                if dbs.len() < BIAS_CHAINS {
                    for (d, p) in dbs.iter_mut().zip(group.chunks(plane)) {
                        *d += p.iter().fold(0f32, |a, &v| a + v);
                    }
                    continue;
                }
                // A fixed count, so the chains stay in registers.
                let mut acc = [0f32; BIAS_CHAINS];
                for p in 0..plane {
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a += group[c * plane + p];
                    }
                }
                for (d, a) in dbs.iter_mut().zip(acc) {
                    *d += a;
                }
            }
        });
    db
}

/// The geometry of one stride-2 layer: channels and sides of the big map (the conv's input,
/// the transposed conv's output) and of the small one.
#[derive(Debug, Clone, Copy)]
struct Grid {
    c: usize,
    h: usize,
    w: usize,
}

impl Grid {
    fn small(&self) -> (usize, usize) {
        (self.h / S, self.w / S)
    }

    /// Rows of the column matrix: c × 16.
    fn rows(&self) -> usize {
        self.c * KK
    }

    /// Columns of the column matrix: one per position of the small map.
    fn cols(&self) -> usize {
        let (h, w) = self.small();
        h * w
    }
}

/// im2col of one big map (c, h, w) into (c·16, h/2·w/2): col[(ch·16 + ky·4 + kx), oy·w/2 + ox]
/// = map[ch, 2·oy − 1 + ky, 2·ox − 1 + kx], zero outside.
fn im2col(map: &[f32], g: Grid, col: &mut [f32]) {
    let (sh, sw) = g.small();
    for ch in 0..g.c {
        let plane = &map[ch * g.h * g.w..(ch + 1) * g.h * g.w];
        for ky in 0..K {
            for kx in 0..K {
                let row = &mut col[((ch * KK) + ky * K + kx) * sh * sw..][..sh * sw];
                for oy in 0..sh {
                    let iy = (oy * S + ky) as isize - P as isize;
                    let out = &mut row[oy * sw..(oy + 1) * sw];
                    if iy < 0 || iy >= g.h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let line = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (ox, o) in out.iter_mut().enumerate() {
                        let ix = (ox * S + kx) as isize - P as isize;
                        *o = if ix < 0 || ix >= g.w as isize {
                            0.0
                        } else {
                            line[ix as usize]
                        };
                    }
                }
            }
        }
    }
}

/// col2im, the adjoint of [`im2col`]: adds every column entry to the big-map pixel it came
/// from. `map` must start zeroed (or hold what to add to).
fn col2im(col: &[f32], g: Grid, map: &mut [f32]) {
    let (sh, sw) = g.small();
    for ch in 0..g.c {
        let plane = &mut map[ch * g.h * g.w..(ch + 1) * g.h * g.w];
        for ky in 0..K {
            for kx in 0..K {
                let row = &col[((ch * KK) + ky * K + kx) * sh * sw..][..sh * sw];
                for oy in 0..sh {
                    let iy = (oy * S + ky) as isize - P as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let line = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (ox, &v) in row[oy * sw..(oy + 1) * sw].iter().enumerate() {
                        let ix = (ox * S + kx) as isize - P as isize;
                        if ix >= 0 && ix < g.w as isize {
                            line[ix as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

/// A single-threaded gemm: images already run in parallel.
fn mm(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: (&[f32], (usize, usize)),
    rhs: (&[f32], (usize, usize)),
) {
    matmul_with(
        mnk,
        dst,
        accumulate,
        lhs.0,
        lhs.1,
        rhs.0,
        rhs.1,
        Parallelism::None,
    );
}

struct Conv {
    relu: bool,
    transposed: bool,
    /// The direct kernels' width, `None` for im2col + gemm.
    direct: Option<Simd>,
}

/// Shapes of one call: batch, the big-map grid, the small map's channels.
struct Dims {
    batch: usize,
    big: Grid,
    small_c: usize,
}

#[cfg(target_arch = "x86_64")]
impl Dims {
    /// The big and the small map of one image, for the direct kernels.
    fn maps(&self) -> (crate::direct::Map, crate::direct::Map) {
        let (h, w) = self.big.small();
        (
            crate::direct::Map {
                c: self.big.c,
                h: self.big.h,
                w: self.big.w,
            },
            crate::direct::Map {
                c: self.small_c,
                h,
                w,
            },
        )
    }
}

impl Conv {
    /// Reads the shapes of x, W and b and checks they fit.
    fn dims(&self, x: &[usize], w: &[usize], b: &[usize]) -> Result<Dims> {
        let (&[batch, xc, xh, xw], &[w0, w1, K, K], &[bl]) = (x, w, b) else {
            bail!("conv: x {x:?}, W {w:?}, b {b:?} must be (B,C,H,W), (·,·,4,4), (C)")
        };
        Ok(if self.transposed {
            if w0 != xc || bl != w1 {
                bail!("conv_transpose: x {x:?}, W {w:?}, b {b:?} do not fit")
            }
            Dims {
                batch,
                big: Grid {
                    c: w1,
                    h: xh * S,
                    w: xw * S,
                },
                small_c: xc,
            }
        } else {
            if w1 != xc || bl != w0 || xh % S != 0 || xw % S != 0 {
                bail!("conv: x {x:?}, W {w:?}, b {b:?} do not fit (even sides needed)")
            }
            Dims {
                batch,
                big: Grid {
                    c: xc,
                    h: xh,
                    w: xw,
                },
                small_c: w0,
            }
        })
    }
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => bail!("conv: inputs must be contiguous"),
    }
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        if self.transposed {
            "conv-transpose-s2"
        } else {
            "conv-s2"
        }
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.dims(lx.dims(), lw.dims(), lb.dims())?;
        let (x, w, b) = (slice(sx, lx)?, slice(sw, lw)?, slice(sb, lb)?);
        let g = d.big;
        let (rows, cols) = (g.rows(), g.cols());
        let (sh, sw_) = g.small();
        let (in_len, out_len, out_shape) = if self.transposed {
            (d.small_c * cols, g.c * g.h * g.w, (d.batch, g.c, g.h, g.w))
        } else {
            (
                g.c * g.h * g.w,
                d.small_c * cols,
                (d.batch, d.small_c, sh, sw_),
            )
        };
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = self.direct {
            use crate::direct::Epilogue;
            let epi = Epilogue {
                bias: Some(b),
                relu: self.relu,
            };
            let (big, small) = d.maps();
            if self.transposed && wide(g.c) {
                let y = crate::direct::up(simd, x, small, g.c, w, epi);
                return Ok((CpuStorage::F32(y), Shape::from(out_shape)));
            }
            if !self.transposed && wide(d.small_c) {
                let y = crate::direct::down(simd, x, big, d.small_c, w, epi);
                return Ok((CpuStorage::F32(y), Shape::from(out_shape)));
            }
        }
        let mut y = vec![0f32; d.batch * out_len];
        y.par_chunks_mut(out_len)
            .zip(x.par_chunks(in_len))
            .for_each_init(
                || vec![0f32; rows * cols],
                |col, (yb, xb)| {
                    if self.transposed {
                        // col (Co·16, P) = W_rᵀ·x_b, W_r = W as (Ci, Co·16); then col2im.
                        mm(
                            (rows, cols, d.small_c),
                            col,
                            false,
                            (w, (1, rows)),
                            (xb, (cols, 1)),
                        );
                        let plane = g.h * g.w;
                        for (o, out) in yb.chunks_mut(plane).enumerate() {
                            out.fill(b[o]);
                        }
                        col2im(col, g, yb);
                    } else {
                        // y_b (Co, P) = b + W (Co, Ci·16)·im2col(x_b).
                        im2col(xb, g, col);
                        for (o, out) in yb.chunks_mut(cols).enumerate() {
                            out.fill(b[o]);
                        }
                        mm(
                            (d.small_c, cols, rows),
                            yb,
                            true,
                            (w, (rows, 1)),
                            (col, (cols, 1)),
                        );
                    }
                    if self.relu {
                        yb.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                },
            );
        Ok((CpuStorage::F32(y), Shape::from(out_shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(x.dims(), w.dims(), b.dims())?;
        let g = d.big;
        let (rows, cols) = (g.rows(), g.cols());
        let grad = grad.contiguous()?;
        // dL/d(pre-activation): the ReLU passes the gradient where it was open.
        let gz: Vec<f32> = with_data(&grad, |gr| {
            if self.relu {
                with_data(y, |y| {
                    Ok(gr
                        .par_iter()
                        .zip(y)
                        .map(|(&g, &y)| if y > 0.0 { g } else { 0.0 })
                        .collect())
                })
            } else {
                Ok(gr.to_vec())
            }
        })?;
        let out_c = if self.transposed { g.c } else { d.small_c };
        let out_len = gz.len() / d.batch.max(1);
        let plane = out_len / out_c.max(1);
        let db = bias_grad(&gz, out_c, plane);
        let want_dx = x.track_op();
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = self.direct {
            if !want_dx || wide(if self.transposed { d.small_c } else { g.c }) {
                return self.direct_bwd(simd, &d, (x, w, b), gz, db, want_dx);
            }
        }
        let in_len = x.elem_count() / d.batch.max(1);
        let w_len = w.elem_count();
        let (dw, dx) = with_data(x, |xs| {
            with_data(w, |ws| {
                let mut dx = vec![0f32; if want_dx { xs.len() } else { 0 }];
                let work: Vec<Option<&mut [f32]>> = if want_dx {
                    dx.chunks_mut(in_len).map(Some).collect()
                } else {
                    (0..d.batch).map(|_| None).collect()
                };
                let dw = crate::ordered::ordered_sum(
                    work,
                    || (vec![0f32; w_len], vec![0f32; rows * cols]),
                    |(mut dw, mut col), i, dxb| {
                        let xb = &xs[i * in_len..(i + 1) * in_len];
                        let gb = &gz[i * out_len..(i + 1) * out_len];
                        // dW (small C, big C·16) += small_b · im2col(big_b)ᵀ: the small map
                        // is the conv's output gradient or the transposed conv's input.
                        let (small_b, big_b) = if self.transposed { (xb, gb) } else { (gb, xb) };
                        im2col(big_b, g, &mut col);
                        mm(
                            (d.small_c, rows, cols),
                            &mut dw,
                            true,
                            (small_b, (cols, 1)),
                            (&col, (1, cols)),
                        );
                        match (dxb, self.transposed) {
                            // dx_b (Ci, P) = W_r·im2col(g_b), the column matrix in hand.
                            (Some(dxb), true) => mm(
                                (d.small_c, cols, rows),
                                dxb,
                                false,
                                (ws, (rows, 1)),
                                (&col, (cols, 1)),
                            ),
                            // dx_b = col2im(Wᵀ·g_b).
                            (Some(dxb), false) => {
                                mm(
                                    (rows, cols, d.small_c),
                                    &mut col,
                                    false,
                                    (ws, (1, rows)),
                                    (gb, (cols, 1)),
                                );
                                col2im(&col, g, dxb);
                            }
                            (None, _) => {}
                        }
                        (dw, col)
                    },
                    |(dw, _)| dw,
                );
                Ok((dw, dx))
            })
        })?;
        let dx = if want_dx {
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        Ok((dx, hold(w, dw)?, hold(b, db)?))
    }
}

#[cfg(target_arch = "x86_64")]
impl Conv {
    /// The backward on the direct kernels: dW from [`crate::direct::wgrad`], dx as the adjoint
    /// product (a transposed convolution for the conv, a convolution for the transposed one).
    #[allow(clippy::too_many_arguments)]
    fn direct_bwd(
        &self,
        simd: Simd,
        d: &Dims,
        (x, w, b): (&Tensor, &Tensor, &Tensor),
        gz: Vec<f32>,
        db: Vec<f32>,
        want_dx: bool,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        use crate::direct::{down, up, wgrad, Epilogue};
        let (big, small) = d.maps();
        let plain = Epilogue {
            bias: None,
            relu: false,
        };
        let want_w = w.track_op();
        let (dw, dx) = with_data(x, |xs| {
            with_data(w, |ws| {
                // Frozen weights (the E-step's decoder) need no gradient.
                let wgrad = |small_maps: &[f32], big_maps: &[f32]| {
                    want_w.then(|| wgrad(simd, small_maps, small.c, big_maps, big))
                };
                Ok(if self.transposed {
                    // x is the small map, gz the big one.
                    let dw = wgrad(xs, &gz);
                    (
                        dw,
                        want_dx.then(|| down(simd, &gz, big, small.c, ws, plain)),
                    )
                } else {
                    let dw = wgrad(&gz, xs);
                    (dw, want_dx.then(|| up(simd, &gz, small, big.c, ws, plain)))
                })
            })
        })?;
        let dx = dx
            .map(|dx| Tensor::from_vec(dx, x.shape(), x.device()))
            .transpose()?;
        let Some(dw) = dw else {
            return Ok((dx, None, None));
        };
        Ok((dx, hold(w, dw)?, hold(b, db)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_same_op, wave as values};
    use candle_core::{Device, Var};

    /// Both fused ops against candle's own ops: values and the gradient of x, W and b, with
    /// and without the ReLU, with odd channel counts: few (im2col + gemm) and many (the direct
    /// kernels at every width this CPU runs, with tiles cut at 32 channels and at 16), and the
    /// direct kernels turned off.
    #[test]
    fn match_candle_ops_forward_and_backward() {
        let widths: Vec<Option<Simd>> = std::iter::once(None)
            .chain(Simd::available().into_iter().map(Some))
            .collect();
        for (ci, co) in [(2, 5), (17, 33), (40, 20)] {
            for &direct in &widths {
                match_candle(3, ci, co, direct);
            }
        }
    }

    /// Both widths add the same products in the same order: their values and gradients agree
    /// to the bit, on maps whose positions split into uneven tiles (7 × 7 and 14 × 14).
    #[test]
    fn the_direct_kernels_give_the_same_bits_at_16_and_8_lanes() {
        if Simd::available().len() < 2 {
            eprintln!("skipped: this CPU runs one width only");
            return;
        }
        let dev = Device::Cpu;
        for transposed in [false, true] {
            let (ci, co, side) = (19, 37, if transposed { 7 } else { 14 });
            let wshape = if transposed {
                (ci, co, 4, 4)
            } else {
                (co, ci, 4, 4)
            };
            let x = Var::from_vec(values(2 * ci * side * side, 1.0), (2, ci, side, side), &dev)
                .unwrap();
            let n = wshape.0 * wshape.1 * 16;
            let w = Var::from_vec(values(n, 0.1), wshape, &dev).unwrap();
            let b = Var::from_vec(values(co, 2.0), co, &dev).unwrap();
            let run = |simd| {
                let y = conv_with(&x, &w, &b, true, transposed, Some(simd)).unwrap();
                let g = (&y * &y).unwrap().sum_all().unwrap().backward().unwrap();
                let grads = [&x, &w, &b].map(|v| {
                    g.get(v)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                });
                (y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), grads)
            };
            let (y16, g16) = run(Simd::Avx512);
            let (y8, g8) = run(Simd::Avx2);
            use crate::testing::bits;
            assert_eq!(bits(&y16), bits(&y8), "values, transposed={transposed}");
            for (name, (a, b)) in ["dx", "dW", "db"].iter().zip(g16.iter().zip(&g8)) {
                assert_eq!(bits(a), bits(b), "{name}, transposed={transposed}");
            }
        }
    }

    /// The weight gradient sums the batch in a fixed grouping: the same bits on 1 and on 3
    /// threads, run after run, for im2col + gemm and for every direct width (a batch of 72
    /// gives several partial sums).
    #[test]
    fn gradients_are_the_same_bits_on_any_thread_count() {
        let dev = Device::Cpu;
        let widths: Vec<Option<Simd>> = std::iter::once(None)
            .chain(Simd::available().into_iter().map(Some))
            .collect();
        let (batch, ci, co, side) = (72, 33, 17, 8);
        let x = Var::from_vec(
            values(batch * ci * side * side, 1.0),
            (batch, ci, side, side),
            &dev,
        )
        .unwrap();
        let w = Var::from_vec(values(co * ci * 16, 0.1), (co, ci, 4, 4), &dev).unwrap();
        let b = Var::from_vec(values(co, 2.0), co, &dev).unwrap();
        for direct in widths {
            let dw = |threads: usize| {
                crate::threads::in_pool(threads, || {
                    let y = conv_with(&x, &w, &b, true, false, direct).unwrap();
                    let g = (&y * &y).unwrap().sum_all().unwrap().backward().unwrap();
                    let dw = g.get(&w).unwrap().flatten_all().unwrap();
                    let dw: Vec<f32> = dw.to_vec1().unwrap();
                    dw.into_iter().map(f32::to_bits).collect::<Vec<_>>()
                })
                .unwrap()
            };
            let one = dw(1);
            for _ in 0..5 {
                assert_eq!(dw(3), one, "direct={direct:?}");
            }
        }
    }

    fn match_candle(batch: usize, ci: usize, co: usize, direct: Option<Simd>) {
        let dev = Device::Cpu;
        for transposed in [false, true] {
            for relu in [true, false] {
                let (side, wshape) = if transposed {
                    (4, (ci, co, 4, 4))
                } else {
                    (8, (co, ci, 4, 4))
                };
                let n = |s: (usize, usize, usize, usize)| s.0 * s.1 * s.2 * s.3;
                let x = Var::from_vec(
                    values(batch * ci * side * side, 1.0),
                    (batch, ci, side, side),
                    &dev,
                )
                .unwrap();
                let w = Var::from_vec(values(n(wshape), 0.1), wshape, &dev).unwrap();
                let b = Var::from_vec(values(co, 2.0), co, &dev).unwrap();
                let fused = conv_with(&x, &w, &b, relu, transposed, direct).unwrap();
                let plain = if transposed {
                    x.conv_transpose2d(&w, P, 0, S, 1).unwrap()
                } else {
                    x.conv2d(&w, P, S, 1, 1).unwrap()
                }
                .broadcast_add(&b.reshape((1, co, 1, 1)).unwrap())
                .unwrap();
                let plain = if relu { plain.relu().unwrap() } else { plain };
                let what =
                    format!("{ci}→{co} direct={direct:?} transposed={transposed} relu={relu}");
                let vars = [(&x, "dx"), (&w, "dW"), (&b, "db")];
                assert_same_op(&fused, &plain, &vars, &what);
            }
        }
    }

    /// The bias gradient is the plain nested sum to the bit (each plane in order, then the
    /// images in order), for channel counts that leave a short last group of chains.
    #[test]
    fn bias_gradient_is_the_plain_sums_bits() {
        for (channels, plane) in [(1, 5), (8, 49), (13, 196), (33, 16)] {
            let g = values(3 * channels * plane, 0.4);
            let mut want = vec![0f32; channels];
            for img in g.chunks(channels * plane) {
                for (o, p) in img.chunks(plane).enumerate() {
                    want[o] += p.iter().fold(0f32, |a, &v| a + v);
                }
            }
            let got = bias_grad(&g, channels, plane);
            assert_eq!(crate::testing::bits(&got), crate::testing::bits(&want));
        }
    }

    #[test]
    fn data_input_gets_no_gradient() {
        let dev = Device::Cpu;
        let x = Tensor::ones((2, 1, 4, 4), candle_core::DType::F32, &dev).unwrap();
        let w = Var::ones((3, 1, 4, 4), candle_core::DType::F32, &dev).unwrap();
        let b = Var::zeros(3, candle_core::DType::F32, &dev).unwrap();
        let grads = conv(&x, &w, &b, false, false)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(&w).is_some());
    }
}
