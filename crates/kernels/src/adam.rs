//! Adam (Kingma & Ba). Fused on the CPU: one in-place pass per parameter tensor instead of a
//! dozen tensor ops, with its moments kept as plain vectors. The reference keeps them as tensors
//! and updates them with candle's ops (any device). Both save and restore the same state.

use crate::simd::{loop_simd, Simd};
use crate::Kernels;
use candle_core::{backprop::GradStore, bail, CpuStorage, InplaceOp2, Layout, Result, Tensor, Var};
use rayon::prelude::*;
use std::cell::RefCell;

/// Adam with PyTorch's defaults (β₁ 0.9, β₂ 0.999, ε 1e-8) and no weight decay.
#[derive(Debug)]
pub struct Adam {
    params: Vec<(String, Var)>,
    moments: Moments,
    step: u64,
    lr: f64,
}

/// Adam's first and second moments, one entry per parameter tensor.
#[derive(Debug)]
enum Moments {
    /// Plain vectors, updated in place by the fused CPU kernel.
    Host { m: Vec<Vec<f32>>, v: Vec<Vec<f32>> },
    /// Tensors beside the parameters, updated by candle's ops (the reference, any device).
    Tensors { m: Vec<Var>, v: Vec<Var> },
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// The optimizer's state: step count and moments, in parameter-name order.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    pub step: u64,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl Adam {
    /// The fused optimizer over `params` (sorted by name so the state has a stable order).
    pub fn new(params: Vec<(String, Var)>, lr: f64) -> Self {
        let params = sorted(params);
        let zeros =
            |p: &[(String, Var)]| p.iter().map(|(_, v)| vec![0f32; v.elem_count()]).collect();
        Self {
            moments: Moments::Host {
                m: zeros(&params),
                v: zeros(&params),
            },
            params,
            step: 0,
            lr,
        }
    }

    /// An optimizer on `kernels`: the fused update, or candle's ops (needed off the CPU).
    pub fn with_kernels(params: Vec<(String, Var)>, lr: f64, kernels: Kernels) -> Result<Self> {
        if kernels == Kernels::Fused {
            return Ok(Self::new(params, lr));
        }
        let params = sorted(params);
        let zeros = || {
            params
                .iter()
                .map(|(_, p)| Var::zeros(p.shape(), p.dtype(), p.device()))
                .collect::<Result<Vec<_>>>()
        };
        Ok(Self {
            moments: Moments::Tensors {
                m: zeros()?,
                v: zeros()?,
            },
            params,
            step: 0,
            lr,
        })
    }

    /// Backpropagates `loss` and applies one update.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = crate::backward::backward(loss)?;
        self.step(&grads)
    }

    /// Applies one update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - BETA1.powi(t);
        let bc2 = 1.0 - BETA2.powi(t);
        let (step_size, inv_sqrt_bc2) = (self.lr / bc1, 1.0 / bc2.sqrt());
        for (i, (_, var)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            match &mut self.moments {
                Moments::Host { m, v } => {
                    let update = Update {
                        m: RefCell::new(&mut m[i]),
                        v: RefCell::new(&mut v[i]),
                        step_size: step_size as f32,
                        inv_sqrt_bc2: inv_sqrt_bc2 as f32,
                    };
                    var.as_tensor().inplace_op2(&g.contiguous()?, &update)?;
                }
                Moments::Tensors { m, v } => {
                    let (m, v) = (&m[i], &v[i]);
                    m.set(&((m.as_tensor() * BETA1)? + (g * (1.0 - BETA1))?)?)?;
                    v.set(&((v.as_tensor() * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?)?;
                    let denom = ((v.sqrt()? * inv_sqrt_bc2)? + EPS)?;
                    let delta = ((m.as_tensor() / denom)? * step_size)?;
                    var.set(&(var.as_tensor() - delta)?)?;
                }
            }
        }
        Ok(())
    }

    /// A copy of the state, for checkpoints.
    pub fn state(&self) -> Result<AdamState> {
        let (m, v) = match &self.moments {
            Moments::Host { m, v } => (m.clone(), v.clone()),
            Moments::Tensors { m, v } => {
                let host = |vars: &[Var]| {
                    vars.iter()
                        .map(|t| t.flatten_all()?.to_vec1::<f32>())
                        .collect::<Result<Vec<_>>>()
                };
                (host(m)?, host(v)?)
            }
        };
        Ok(AdamState {
            step: self.step,
            m,
            v,
        })
    }

    /// Restores a state saved by [`Adam::state`] for the same parameters.
    pub fn restore(&mut self, state: AdamState) -> Result<()> {
        let fits = |s: &[Vec<f32>]| {
            s.len() == self.params.len()
                && s.iter()
                    .zip(&self.params)
                    .all(|(s, (_, p))| s.len() == p.elem_count())
        };
        if !fits(&state.m) || !fits(&state.v) {
            bail!("optimizer state does not fit the model's parameters")
        }
        self.step = state.step;
        match &mut self.moments {
            Moments::Host { m, v } => {
                *m = state.m;
                *v = state.v;
            }
            Moments::Tensors { m, v } => {
                for (vars, saved) in [(m, state.m), (v, state.v)] {
                    for (var, saved) in vars.iter().zip(saved) {
                        var.set(&Tensor::from_vec(saved, var.shape(), var.device())?)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Parameter names in state order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _)| n.as_str())
    }
}

/// Parameters in name order, so the state's order is stable across processes.
fn sorted(mut params: Vec<(String, Var)>) -> Vec<(String, Var)> {
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// `x`, or 0 where it is subnormal. A weight that stops getting gradient has moments that decay
/// by β each step until they stick a few ulps above 0 (0.9·k ulps rounds back to k): after a
/// few epochs half of the first layer's moments were subnormal, and on Intel cores every vector
/// op that touches one takes a microcode assist. Their share of an update is below 1e-30, far
/// under an ulp of any weight, so flushing them changes no weight.
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

/// A chunk of the update: (parameters, gradients), (first moments, second moments).
type Chunk<'a> = ((&'a mut [f32], &'a [f32]), (&'a mut [f32], &'a mut [f32]));

/// One Adam step over a chunk, with (step size, 1/√(1 − β₂ᵗ)), at `width` (from
/// [`loop_simd`]; the baseline build runs 4 lanes). Every width gives the same bits: the same
/// operations per element, sqrt and division exact.
fn update_at(width: Option<Simd>, chunk: Chunk, k: (f32, f32)) {
    crate::at_width!(
        width,
        |chunk: Chunk, k: (f32, f32)| {
            let ((p, g), (m, v)) = chunk;
            let (step_size, inv_sqrt_bc2) = k;
            let (b1, b2, eps) = (BETA1 as f32, BETA2 as f32, EPS as f32);
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = flush(b1 * *m + (1.0 - b1) * g);
                *v = flush(b2 * *v + (1.0 - b2) * g * g);
                *p -= step_size * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
            }
        },
        (chunk, k)
    )
}

struct Update<'a> {
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<&'a mut Vec<f32>>,
    step_size: f32,
    inv_sqrt_bc2: f32,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(theta), CpuStorage::F32(grad)) = (s1, s2) else {
            bail!("adam: parameters and gradients must be f32")
        };
        let (Some((t0, t1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            bail!("adam: parameters and gradients must be contiguous")
        };
        let (theta, grad) = (&mut theta[t0..t1], &grad[g0..g1]);
        let (mut m, mut v) = (self.m.borrow_mut(), self.v.borrow_mut());
        if theta.len() != grad.len() || theta.len() != m.len() {
            bail!(
                "adam: {} parameters, {} gradients, {} moments",
                theta.len(),
                grad.len(),
                m.len()
            )
        }
        let width = loop_simd().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let k = (self.step_size, self.inv_sqrt_bc2);
        let update = |chunk: Chunk| update_at(width, chunk, k);
        // Element-wise, so chunks can go to the pool's threads; small tensors stay on this one.
        const CHUNK: usize = 1 << 15;
        if theta.len() > 2 * CHUNK {
            theta
                .par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .for_each(update);
        } else {
            update(((theta, grad), (&mut m[..], &mut v[..])));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A weight that got one gradient and then none for 1500 steps: without the flush its
    /// moments decay into subnormals and stay there; with it they reach exactly 0, and the
    /// weight ends where the unflushed update would have left it.
    #[test]
    fn moments_of_a_weight_without_gradient_never_turn_subnormal() {
        let dev = Device::Cpu;
        let w = Var::from_slice(&[0.5f32, -0.25], 2, &dev).unwrap();
        let mut adam = Adam::new(vec![("w".into(), w.clone())], 1e-3);
        let grads = |g: [f32; 2]| {
            let t = Tensor::from_slice(&g, 2, &dev).unwrap();
            (w.as_tensor() * t)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        adam.step(&grads([1.0, 1e-3])).unwrap();
        // A plain f32 Adam on the same gradients, to see where subnormals would appear.
        let (mut m, mut v) = ([0.1f32, 1e-4], [1e-3f32, 1e-9]);
        let mut plain_subnormal = false;
        for _ in 0..1500 {
            adam.step(&grads([0.0, 0.0])).unwrap();
            for i in 0..2 {
                m[i] *= 0.9;
                v[i] *= 0.999;
                plain_subnormal |= m[i].is_subnormal() || v[i].is_subnormal();
            }
            let state = adam.state().unwrap();
            for x in state.m.iter().chain(&state.v).flatten() {
                assert!(!x.is_subnormal(), "subnormal moment {x:e}");
            }
        }
        assert!(
            plain_subnormal,
            "the test no longer reaches the subnormal range"
        );
        let state = adam.state().unwrap();
        assert_eq!(state.m[0], vec![0.0, 0.0]);
    }
    use candle_core::Device;

    /// Each width this CPU runs updates parameters and moments to the portable build's bits,
    /// over a chunk with whole and partial vectors, tiny, subnormal and zero gradients.
    #[test]
    fn every_width_gives_the_portable_update_to_the_bit() {
        let n = 1003;
        let wave = |i: usize, s: f32| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * s;
        let g: Vec<f32> = (0..n)
            .map(|i| match i % 5 {
                0 => 0.0,
                1 => 1e-39,
                2 => wave(i, 1e-20),
                _ => wave(i, 3.0),
            })
            .collect();
        let start = || {
            let p: Vec<f32> = (0..n).map(|i| wave(i, 2.0)).collect();
            let m: Vec<f32> = (0..n).map(|i| wave(i + 1, 1e-3)).collect();
            let v: Vec<f32> = (0..n).map(|i| wave(i + 2, 1e-4).abs()).collect();
            (p, m, v)
        };
        let run = |width: Option<Simd>| {
            let (mut p, mut m, mut v) = start();
            for step in 1..=3 {
                let k = (1e-3 * step as f32, 1.0 + 0.5 / step as f32);
                update_at(width, ((&mut p, &g), (&mut m, &mut v)), k);
            }
            use crate::testing::bits;
            (bits(&p), bits(&m), bits(&v))
        };
        let portable = run(None);
        for width in Simd::available() {
            assert!(
                run(Some(width)) == portable,
                "{width:?} differs from the portable update"
            );
        }
    }

    /// The textbook update, tensor by tensor, as candle-nn's AdamW does it with no decay.
    #[test]
    fn matches_reference_adam() {
        let dev = Device::Cpu;
        let init = [0.5f32, -1.0, 2.0];
        let x = Var::from_slice(&init, 3, &dev).unwrap();
        let mut opt = Adam::new(vec![("x".into(), x.clone())], 0.1);
        let z = Var::from_slice(&init, 3, &dev).unwrap();
        let mut tensors =
            Adam::with_kernels(vec![("z".into(), z.clone())], 0.1, Kernels::Reference).unwrap();
        let y = Var::from_slice(&init, 3, &dev).unwrap();
        let mut reference = <candle_nn::AdamW as candle_nn::Optimizer>::new(
            vec![y.clone()],
            candle_nn::ParamsAdamW {
                lr: 0.1,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..20 {
            let loss = |v: &Var| {
                (v.as_tensor().sqr().unwrap() * 3.0)
                    .unwrap()
                    .sum_all()
                    .unwrap()
            };
            opt.backward_step(&loss(&x)).unwrap();
            tensors.backward_step(&loss(&z)).unwrap();
            candle_nn::Optimizer::backward_step(&mut reference, &loss(&y)).unwrap();
        }
        let b = y.to_vec1::<f32>().unwrap();
        for a in [x.to_vec1::<f32>().unwrap(), z.to_vec1::<f32>().unwrap()] {
            for (a, b) in a.iter().zip(&b) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
        assert_eq!(opt.state().unwrap().step, 20);
        assert_eq!(tensors.state().unwrap().step, 20);
    }
}
