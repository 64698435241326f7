//! A dense layer as one fused op on the CPU: y = act(x·Wᵀ + b), with a hand-written backward.
//!
//! candle's generic path costs four tensor ops forward (transpose, matmul, broadcast add, ReLU)
//! and more backward, and its matmul backward always computes the input's gradient — for the
//! first layer that is a 128×400×784 product for the data, which has no use for it. Here the
//! bias is the gemm's initial accumulator, the ReLU is applied in place, and the backward
//! computes dx only when x needs it.

use crate::backward::hold;
use crate::matmul::{contiguous, matmul, with_data};
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
        // dW = gzᵀ·x: gzᵀ[o][r] = gz[r][o] → row stride 1, column stride fan_out.
        let mut dw = vec![0f32; if want_w { fan_out * fan_in } else { 0 }];
        with_data(x, |x| {
            if !want_w {
                return Ok(());
            }
            matmul(
                (fan_out, fan_in, rows),
                &mut dw,
                false,
                &gz,
                (1, fan_out),
                x,
                (fan_in, 1),
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_same_op, wave};
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
