//! Row sums of log p(x|params) taken from a dense head's output as it is computed
//! ([`StreamedDense`]): the values of [`super::fused`]'s forward pass to the bit, without the
//! params (draws × pixels) ever written. The IWAE bound's scoring of K draws per image.

use super::family::Likelihood;
use super::fused::{dispatch, PixelFn, BLOCK};
use candle_core::{Result, Tensor};
use vaelab_kernels::streamed::PANEL;
use vaelab_kernels::{PanelSink, StreamedDense};

/// `lik` where this path covers it: the one-parameter families and masses (those with a
/// learned scale read two decoder outputs per pixel and take the two-step path).
fn covered(lik: Likelihood) -> Option<Likelihood> {
    (lik.params_per_pixel() == 1).then_some(lik)
}

/// log p of each pixel of a panel under `f`, its one parameter in both slots: the fused op's
/// per-pixel arithmetic, in a loop the compiler vectorizes.
#[inline(always)]
fn panel_values<F: PixelFn>(f: F, a: &[f32; PANEL], x: &[f32; PANEL], v: &mut [f32; PANEL]) {
    for j in 0..PANEL {
        v[j] = f.eval(a[j], a[j], x[j]).0;
    }
}

/// Scores a panel under `lik`, matched once per 16 pixels through the fused op's list of
/// families.
#[inline(always)]
fn values(lik: Likelihood, a: &[f32; PANEL], x: &[f32; PANEL], v: &mut [f32; PANEL]) {
    dispatch!(lik, panel_values, a, x, v)
}

/// Per-row sums kept as the fused op keeps them: 8 f32 lanes within a block of [`BLOCK`]
/// pixels, each block's lanes then added in f64.
struct Sums {
    lanes: Vec<[f32; 8]>,
    totals: Vec<f64>,
}

impl Sums {
    fn new(rows: usize) -> Self {
        Self {
            lanes: vec![[0.0; 8]; rows],
            totals: vec![0.0; rows],
        }
    }

    #[inline(always)]
    fn add(&mut self, row: usize, col: usize, v: &[f32; PANEL], d: usize) {
        let lanes = &mut self.lanes[row];
        for chunk in v.chunks_exact(8) {
            for l in 0..8 {
                lanes[l] += chunk[l];
            }
        }
        let end = col + PANEL;
        if end.is_multiple_of(BLOCK) || end == d {
            self.totals[row] += lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
            *lanes = [0.0; 8];
        }
    }

    fn into_rows(self) -> Vec<f32> {
        self.totals.into_iter().map(|t| t as f32).collect()
    }
}

/// The panel consumer: one image's pixels scored by the density and, if asked, a mass.
struct Sink<'a> {
    x: &'a [f32],
    density: Likelihood,
    mass: Option<Likelihood>,
    sums: Sums,
    mass_sums: Sums,
}

impl PanelSink for Sink<'_> {
    #[inline(always)]
    fn panel(&mut self, row: usize, col: usize, a: &[f32; PANEL]) {
        // `score` checked that x has the head's columns: every panel lies inside it.
        let x: &[f32; PANEL] = self.x[col..col + PANEL]
            .try_into()
            .expect("a panel is 16 pixels");
        let d = self.x.len();
        let mut v = [0f32; PANEL];
        values(self.density, a, x, &mut v);
        self.sums.add(row, col, &v, d);
        if let Some(m) = self.mass {
            values(m, a, x, &mut v);
            self.mass_sums.add(row, col, &v, d);
        }
    }
}

/// A model's dense head, packed, with the likelihood (and mass) its output is scored by.
#[derive(Debug, Clone)]
pub struct StreamedScore {
    head: StreamedDense,
    density: Likelihood,
    mass: Option<Likelihood>,
}

impl StreamedScore {
    /// The head W (pixels, fan_in), b (pixels) scored by `lik` and `mass`; `None` where the
    /// kernel or a family is not covered (the caller then decodes and scores in two steps).
    pub fn new(
        w: &Tensor,
        b: &Tensor,
        lik: Likelihood,
        mass: Option<Likelihood>,
    ) -> Result<Option<Self>> {
        let (Some(density), Ok(mass)) =
            (covered(lik), mass.map(|m| covered(m).ok_or(())).transpose())
        else {
            return Ok(None);
        };
        let width =
            vaelab_kernels::loop_simd().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(StreamedDense::of_layer(w, b, width)?.map(|head| Self {
            head,
            density,
            mass,
        }))
    }

    /// Σ_pixels log p(x | head(h_r)) for each row r of `h` (rows, fan_in), and the same as the
    /// mass when one was given, for one image's pixels `x`.
    pub fn score(&self, h: &Tensor, x: &[f32]) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        if x.len() != self.head.fan_out() {
            candle_core::bail!(
                "streamed score: {} pixels for a head of {}",
                x.len(),
                self.head.fan_out()
            )
        }
        let rows = h.dim(0)?;
        let mut sink = Sink {
            x,
            density: self.density,
            mass: self.mass,
            sums: Sums::new(rows),
            mass_sums: Sums::new(if self.mass.is_some() { rows } else { 0 }),
        };
        self.head.stream(h, &mut sink)?;
        let mass = self.mass.map(|_| sink.mass_sums.into_rows());
        Ok((sink.sums.into_rows(), mass))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::likelihood::bounds::LOG_SCALE_FLOOR;
    use crate::likelihood::mass::Mass;
    use candle_core::Device;
    use vaelab_kernels::{ops, Kernels};

    fn wave(n: usize, s: f32, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.731 + s).sin() * scale)
            .collect()
    }

    /// For each covered family and mass, the streamed sums equal the fused op's on the dense
    /// op's output, to the bit; a row count that leaves partial tiles, 784 pixels (a last
    /// panel alone in its group, a short last block) and 8-bit data.
    #[test]
    fn gives_the_two_step_scores_to_the_bit() {
        let dev = Device::Cpu;
        let (rows, fan_in, d) = (29, 40, 784);
        let w = Tensor::from_vec(wave(d * fan_in, 0.2, 0.4), (d, fan_in), &dev).unwrap();
        let b = Tensor::from_vec(wave(d, 1.1, 0.5), d, &dev).unwrap();
        let h = Tensor::from_vec(wave(rows * fan_in, 2.3, 1.0), (rows, fan_in), &dev)
            .unwrap()
            .relu()
            .unwrap();
        let x: Vec<f32> = (0..d).map(|i| (i * 37 % 256) as f32 / 255.0).collect();
        let xt = Tensor::from_slice(&x, (1, d), &dev).unwrap();
        let params = ops::dense(Kernels::Fused, &h, &w, &b, false).unwrap();
        let two_step = |lik| {
            super::super::log_prob(Kernels::Fused, lik, &params, &xt)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let on_8bit = |mass| Likelihood::Discretized { mass, levels: 256 };
        let cases = [
            (
                Likelihood::Bernoulli,
                Some(on_8bit(Mass::ContinuousBernoulli)),
            ),
            (Likelihood::ContinuousBernoulli, None),
            (
                Likelihood::Gaussian { sigma: 0.1 },
                Some(on_8bit(Mass::Gaussian { sigma: 0.1 })),
            ),
            (
                Likelihood::Laplace { scale: 0.2 },
                Some(on_8bit(Mass::Laplace { scale: 0.2 })),
            ),
            (on_8bit(Mass::Gaussian { sigma: 0.05 }), None),
        ];
        for (lik, mass) in cases {
            let s = StreamedScore::new(&w, &b, lik, mass).unwrap();
            let Some(s) = s else {
                assert!(
                    vaelab_kernels::loop_simd().unwrap().is_none(),
                    "{lik:?} refused"
                );
                continue;
            };
            let (density, m) = s.score(&h, &x).unwrap();
            assert_eq!(bits(&density), bits(&two_step(lik)), "{lik:?}");
            assert!(
                density.iter().all(|v| v.is_finite()),
                "{lik:?}: {density:?}"
            );
            assert_eq!(m.is_some(), mass.is_some());
            if let (Some(m), Some(mass)) = (m, mass) {
                assert_eq!(bits(&m), bits(&two_step(mass)), "{mass:?}");
            }
        }
    }

    #[test]
    fn two_parameter_families_are_left_to_the_two_step_path() {
        let dev = Device::Cpu;
        let w = Tensor::zeros((32, 4), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros(32, candle_core::DType::F32, &dev).unwrap();
        let learned = Likelihood::Discretized {
            mass: Mass::GaussianLearned {
                log_sigma_min: LOG_SCALE_FLOOR,
            },
            levels: 256,
        };
        let logistic = Likelihood::Discretized {
            mass: Mass::Logistic,
            levels: 256,
        };
        for (lik, mass) in [
            (Likelihood::GaussianLearned, None),
            (Likelihood::Bernoulli, Some(learned)),
            (logistic, None),
        ] {
            assert!(StreamedScore::new(&w, &b, lik, mass).unwrap().is_none());
        }
    }
}
