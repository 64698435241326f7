//! A dense layer as one fused op on the CPU: y = act(x·Wᵀ + b), with a hand-written backward.
//!
//! candle's generic path costs four tensor ops forward (transpose, matmul, broadcast add, ReLU)
//! and more backward, and its matmul backward always computes the input's gradient — for the
//! first layer that is a 128×400×784 product for the data, which has no use for it. Here the
//! bias is the gemm's initial accumulator, the ReLU is applied in place, and the backward
//! computes dx only when x needs it.

use crate::backward::hold;
use crate::matmul::{contiguous, live_columns, matmul, with_data};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// act(x·Wᵀ + b) for x (B, I), W (O, I), b (O); `relu` picks the activation (else identity).
pub fn dense(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, Dense { relu })
}

struct Dense {
    relu: bool,
}

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "dense"
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
        let (&[rows, fan_in], &[fan_out, w_in], &[b_len]) = (lx.dims(), lw.dims(), lb.dims())
        else {
            bail!(
                "dense: x {:?}, W {:?}, b {:?} must be 2-d, 2-d, 1-d",
                lx.dims(),
                lw.dims(),
                lb.dims()
            )
        };
        if w_in != fan_in || b_len != fan_out {
            bail!(
                "dense: x {:?}, W {:?}, b {:?} do not fit",
                lx.dims(),
                lw.dims(),
                lb.dims()
            )
        }
        let (x, w, b) = (
            contiguous(sx, lx, "x")?,
            contiguous(sw, lw, "W")?,
            contiguous(sb, lb, "b")?,
        );
        let mut y: Vec<f32> = Vec::with_capacity(rows * fan_out);
        for _ in 0..rows {
            y.extend_from_slice(b);
        }
        // y += x·Wᵀ: Wᵀ[k][n] = W[n][k], so its row stride is 1 and its column stride fan_in.
        matmul(
            (rows, fan_out, fan_in),
            &mut y,
            true,
            x,
            (fan_in, 1),
            w,
            (1, fan_in),
        );
        if self.relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, fan_out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, fan_in) = x.dims2()?;
        let fan_out = w.dim(0)?;
        let grad = grad.contiguous()?;
        // dL/d(pre-activation): the ReLU passes the gradient where it was open.
        let gz: Vec<f32> = with_data(&grad, |g| {
            if self.relu {
                with_data(y, |y| {
                    Ok(g.iter()
                        .zip(y)
                        .map(|(&g, &y)| if y > 0.0 { g } else { 0.0 })
                        .collect())
                })
            } else {
                Ok(g.to_vec())
            }
        })?;
        // Frozen weights (the E-step's decoder) need no gradient.
        let want_w = w.track_op();
        let mut db = vec![0f32; if want_w { fan_out } else { 0 }];
        for row in gz.chunks(fan_out).take_while(|_| want_w) {
            db.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
        }
        let mut dw = vec![0f32; if want_w { fan_out * fan_in } else { 0 }];
        with_data(x, |x| {
            if want_w {
                weight_gradient(&gz, x, (rows, fan_in, fan_out), self.relu, &mut dw);
            }
            Ok(())
        })?;
        let dx = if x.track_op() {
            let mut dx = vec![0f32; rows * fan_in];
            with_data(w, |w| {
                matmul(
                    (rows, fan_in, fan_out),
                    &mut dx,
                    false,
                    &gz,
                    (fan_out, 1),
                    w,
                    (fan_in, 1),
                );
                Ok(())
            })?;
            Some(Tensor::from_vec(dx, (rows, fan_in), x.device())?)
        } else {
            None
        };
        if !want_w {
            return Ok((dx, None, None));
        }
        Ok((dx, hold(w, dw)?, hold(b, db)?))
    }
}

/// dW (fan_out, fan_in) = gzᵀ·x for gz (rows, fan_out) and x (rows, fan_in), into a zeroed `dw`.
///
/// A ReLU layer's (`relu`) units that are off for every row of the batch (about half of the
/// classic encoder's first layer once trained) have an all-zero column in gz and a zero row in
/// dW: the product runs over the live units only. Each sum is still gemm's to the bit: it runs
/// over the same k (the rows), one block of at most 512 like the full product's, and only m
/// shrinks.
fn weight_gradient(
    gz: &[f32],
    x: &[f32],
    (rows, fan_in, fan_out): (usize, usize, usize),
    relu: bool,
    dw: &mut [f32],
) {
    // gemm sums k ≤ 512 in one block whatever m is; other layers have no column to skip.
    let may_skip = relu && rows <= 512;
    let mut live = Vec::new();
    if may_skip {
        live_columns(gz, fan_out, &mut live);
    }
    // m ≥ 2 keeps gemm off its gemv path.
    let compact = may_skip && live.len() < fan_out && live.len() != 1;
    if !compact {
        // dW = gzᵀ·x: gzᵀ[o][r] = gz[r][o] → row stride 1, column stride fan_out.
        matmul(
            (fan_out, fan_in, rows),
            dw,
            false,
            gz,
            (1, fan_out),
            x,
            (fan_in, 1),
        );
        return;
    }
    if live.is_empty() {
        return;
    }
    let n = live.len();
    let packed: Vec<f32> = gz
        .chunks_exact(fan_out)
        .flat_map(|row| live.iter().map(move |&o| row[o as usize]))
        .collect();
    // The live units' rows land first, then move down to their places: live[i] ≥ i, so from
    // the last one no row is overwritten before it has moved.
    matmul(
        (n, fan_in, rows),
        dw,
        false,
        &packed,
        (1, n),
        x,
        (fan_in, 1),
    );
    for (i, &o) in live.iter().enumerate().rev() {
        let o = o as usize;
        if o != i {
            dw.copy_within(i * fan_in..(i + 1) * fan_in, o * fan_in);
            dw[i * fan_in..(i + 1) * fan_in].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_same_op, bits, wave};
    use candle_core::{Device, Var};

    /// The fused op against candle's own ops, values and every gradient.
    #[test]
    fn matches_candle_ops_forward_and_backward() {
        let dev = Device::Cpu;
        let v = wave;
        for relu in [true, false] {
            let (rows, fan_in, fan_out) = (7, 13, 5);
            let w = Var::from_vec(v(fan_out * fan_in, 0.1), (fan_out, fan_in), &dev).unwrap();
            let b = Var::from_vec(v(fan_out, 2.0), fan_out, &dev).unwrap();
            let x = Var::from_vec(v(rows * fan_in, 1.0), (rows, fan_in), &dev).unwrap();
            let fused = dense(&x, &w, &b, relu).unwrap();
            let plain = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let plain = if relu { plain.relu().unwrap() } else { plain };
            let vars = [(&w, "dW"), (&b, "db"), (&x, "dx")];
            assert_same_op(&fused, &plain, &vars, &format!("relu={relu}"));
        }
    }

    /// Which units of a test's batch are live.
    type Live = fn(usize) -> bool;

    /// With units dead for the whole batch, the weight gradient is the full gemm's to the bit:
    /// at every shape and pattern (one live unit, none, all; −0 in dead columns and zeros in
    /// live ones; more rows than one block, which keeps the full product).
    #[test]
    fn dead_units_leave_gemms_weight_gradient_bits() {
        let cases = [
            (7, 13, 5),
            (128, 784, 400),
            (130, 33, 64),
            (600, 20, 40),
            (3, 17, 2),
        ];
        for (rows, fan_in, fan_out) in cases {
            let x = wave(rows * fan_in, 0.3);
            let patterns: [(&str, Live); 5] = [
                ("all live", |_| true),
                ("half dead", |o| o % 2 == 1 || o % 7 == 0),
                ("one live", |o| o == 1),
                ("none live", |_| false),
                ("most dead", |o| o % 5 == 3),
            ];
            for (name, live) in patterns {
                let mut gz = wave(rows * fan_out, 1.7);
                for (i, g) in gz.iter_mut().enumerate() {
                    let (r, o) = (i / fan_out, i % fan_out);
                    if !live(o) {
                        *g = if r % 3 == 0 { -0.0 } else { 0.0 };
                    } else if r % 4 == 1 {
                        *g = 0.0;
                    }
                }
                let mut full = vec![0f32; fan_out * fan_in];
                let strides = ((1, fan_out), (fan_in, 1));
                matmul(
                    (fan_out, fan_in, rows),
                    &mut full,
                    false,
                    &gz,
                    strides.0,
                    &x,
                    strides.1,
                );
                let mut skipped = vec![0f32; fan_out * fan_in];
                weight_gradient(&gz, &x, (rows, fan_in, fan_out), true, &mut skipped);
                let what = format!("rows {rows}, fan_in {fan_in}, fan_out {fan_out}, {name}");
                assert_eq!(bits(&skipped), bits(&full), "{what}");
                let zero_rows = full
                    .chunks(fan_in)
                    .filter(|r| r.iter().all(|v| v.to_bits() == 0))
                    .count();
                let dead = (0..fan_out).filter(|&o| !live(o)).count();
                assert_eq!(zero_rows, dead, "{what}: a +0 row per dead unit");
            }
        }
    }

    /// A ReLU layer with units off for every row, through the op: candle's gradients.
    #[test]
    fn dead_units_get_candles_gradients() {
        let dev = Device::Cpu;
        let (rows, fan_in, fan_out) = (9, 11, 6);
        let w = Var::from_vec(wave(fan_out * fan_in, 0.1), (fan_out, fan_in), &dev).unwrap();
        // Units 1 and 4 start far below zero: off for every row.
        let bias: Vec<f32> = (0..fan_out)
            .map(|o| if o % 3 == 1 { -50.0 } else { 0.5 })
            .collect();
        let b = Var::from_vec(bias, fan_out, &dev).unwrap();
        let x = Var::from_vec(wave(rows * fan_in, 1.0), (rows, fan_in), &dev).unwrap();
        let fused = dense(&x, &w, &b, true).unwrap();
        let plain = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            .relu()
            .unwrap();
        assert_same_op(
            &fused,
            &plain,
            &[(&w, "dW"), (&b, "db"), (&x, "dx")],
            "dead units",
        );
        let column = |o: usize| fused.narrow(1, o, 1).unwrap().sum_all().unwrap();
        assert_eq!(column(1).to_scalar::<f32>().unwrap(), 0.0, "unit 1 is off");
    }

    #[test]
    fn data_input_gets_no_gradient() {
        let dev = Device::Cpu;
        let w = Var::ones((3, 4), candle_core::DType::F32, &dev).unwrap();
        let b = Var::zeros(3, candle_core::DType::F32, &dev).unwrap();
        let x = Tensor::ones((2, 4), candle_core::DType::F32, &dev).unwrap();
        let grads = dense(&x, &w, &b, true)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&x).is_none());
        assert_eq!(
            grads.get(&w).unwrap().to_vec2::<f32>().unwrap()[0],
            vec![2.0; 4]
        );
    }
}
