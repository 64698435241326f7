//! A dense layer whose output is handed to a consumer 16 columns at a time and never stored:
//! y = x·Wᵀ + b for a consumer that reduces each row (the IWAE bound's likelihood), at 16 lanes
//! (AVX-512) or 8 (AVX2 + FMA), chosen at run time.
//!
//! Why: scoring K = 1000 draws per image, gemm packs Wᵀ again for every block of rows, the
//! bias is copied into every output row, the block's output (rows × pixels) is written, and the
//! likelihood reads it back. Here Wᵀ is packed once, a tile of up to 8 rows × 32 columns is
//! accumulated in registers and handed over while it is in L1. Each output is gemm's value to
//! the bit: gemm takes a fan-in of up to 512 in one block ([`MAX_FAN_IN`]), so its sum is one
//! FMA chain over k from zero with the bias added last, which is what both widths here do.
//! A tile skips the inputs that all its rows have at zero (a ReLU layer's dead units, and
//! those off for every draw of one image): those FMAs would leave the sum's bits as they are.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m256, __m512, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_storeu_ps, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

use crate::matmul::{live_columns, with_data};
use crate::simd::Simd;
use candle_core::{bail, Result, Tensor};

/// Columns of one handed-out panel.
pub const PANEL: usize = 16;
/// The widest fan-in covered: gemm sums up to 512 terms in one block on every CPU.
pub const MAX_FAN_IN: usize = 512;
/// Columns of a tile: two zmm, or two halves of two ymm.
const NT: usize = 32;
/// Rows of a tile at 16 lanes (2 × 8 accumulators, room for the loads).
#[cfg(target_arch = "x86_64")]
const MR: usize = 8;
/// Rows of a half tile at 8 lanes (2 × 6 accumulators of the 16 registers).
#[cfg(target_arch = "x86_64")]
const MR8: usize = 6;
/// Rows whose inputs stay in L2 (96 × 400 floats: 150 KB) while every column group passes
/// over them; each group's packed weights (400 × 32 floats: 50 KB) are read once per chunk.
#[cfg(target_arch = "x86_64")]
const CHUNK: usize = 96;

/// A tile's output: per row, its two panels.
#[cfg(target_arch = "x86_64")]
type Tile = [[[f32; PANEL]; 2]; MR];

/// The rows a tile reads: each `k` inputs from `at` on, of which it sums only `live`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Rows<'a> {
    at: *const f32,
    k: usize,
    live: &'a [u32],
}

/// Takes a streamed layer's output.
pub trait PanelSink {
    /// y[row][col .. col + 16]: for each row, every panel once, `col` increasing.
    fn panel(&mut self, row: usize, col: usize, values: &[f32; PANEL]);
}

/// W of a dense layer (fan_out, fan_in) packed for [`StreamedDense::run`], with its bias.
#[derive(Debug, Clone)]
pub struct StreamedDense {
    width: Simd,
    fan_in: usize,
    fan_out: usize,
    /// Column groups of 32: packed[g][k][c] = W[32g + c][k], zero past fan_out.
    packed: Vec<f32>,
    /// The bias, zero past fan_out.
    bias: Vec<f32>,
}

impl StreamedDense {
    /// Packs row-major `w` (fan_out, fan_in) and `b` (fan_out) to run at `width`; `None` where
    /// there is no width or the shape is not covered (fan_out not a multiple of 16, fan_in 0
    /// or above [`MAX_FAN_IN`]).
    pub fn new(
        w: &[f32],
        b: &[f32],
        (fan_out, fan_in): (usize, usize),
        width: Option<Simd>,
    ) -> Option<Self> {
        let width = width.filter(|w| Simd::available().contains(w))?;
        let covered = fan_out > 0
            && fan_out.is_multiple_of(PANEL)
            && (1..=MAX_FAN_IN).contains(&fan_in)
            && w.len() == fan_out * fan_in
            && b.len() == fan_out;
        if !covered {
            return None;
        }
        let groups = fan_out.div_ceil(NT);
        let mut packed = vec![0f32; groups * fan_in * NT];
        for (o, row) in w.chunks_exact(fan_in).enumerate() {
            let (g, c) = (o / NT, o % NT);
            for (k, &v) in row.iter().enumerate() {
                packed[(g * fan_in + k) * NT + c] = v;
            }
        }
        let mut bias = b.to_vec();
        bias.resize(groups * NT, 0.0);
        Some(Self {
            width,
            fan_in,
            fan_out,
            packed,
            bias,
        })
    }

    /// As [`StreamedDense::new`] for a layer's W (fan_out, fan_in) and b given as CPU tensors.
    pub fn of_layer(w: &Tensor, b: &Tensor, width: Option<Simd>) -> Result<Option<Self>> {
        let dims = w.dims2()?;
        let (w, b) = (w.contiguous()?, b.contiguous()?);
        with_data(&w, |w| with_data(&b, |b| Ok(Self::new(w, b, dims, width))))
    }

    /// As [`StreamedDense::run`] for `x` (rows, fan_in) given as a CPU tensor.
    pub fn stream<S: PanelSink>(&self, x: &Tensor, sink: &mut S) -> Result<()> {
        let (_, fan_in) = x.dims2()?;
        if fan_in != self.fan_in {
            bail!("streamed dense: x has {fan_in} columns, W {}", self.fan_in)
        }
        with_data(&x.contiguous()?, |x| {
            self.run(x, sink);
            Ok(())
        })
    }

    /// Inputs per row.
    pub fn fan_in(&self) -> usize {
        self.fan_in
    }

    /// Outputs per row.
    pub fn fan_out(&self) -> usize {
        self.fan_out
    }

    /// y = x·Wᵀ + b for row-major `x` (rows, fan_in), every panel of y handed to `sink`.
    pub fn run<S: PanelSink>(&self, x: &[f32], sink: &mut S) {
        assert_eq!(
            x.len() % self.fan_in,
            0,
            "streamed dense: x is not whole rows"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `new` kept the width only if this CPU runs it, and x holds whole rows of
        // fan_in.
        unsafe {
            match self.width {
                Simd::Avx512 => self.run16(x, sink),
                Simd::Avx2 => self.run8(x, sink),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = sink;
    }

    /// Hands row `row0 + i`'s columns 32g .. 32g + 32 of `out` to the sink (the second panel
    /// only where it is inside fan_out).
    #[inline(always)]
    fn hand<S: PanelSink>(&self, sink: &mut S, row0: usize, g: usize, out: &[[[f32; PANEL]; 2]]) {
        for (i, [lo, hi]) in out.iter().enumerate() {
            sink.panel(row0 + i, g * NT, lo);
            if g * NT + PANEL < self.fan_out {
                sink.panel(row0 + i, g * NT + PANEL, hi);
            }
        }
    }

    /// Every column group over the rows, chunk by chunk, in tiles of up to `tile_rows` rows
    /// that `tile(mr, rows, w, b, out)` fills, each handed to the sink. `live` lists the
    /// inputs j, in order, that some row of the tile has nonzero: a ReLU layer's zeros (dead
    /// units, and units off for every draw of one image) add nothing to the sum but FMAs.
    ///
    /// # Safety
    /// `tile` must fill `out` from `mr` rows of x at `rows.at` (summing `rows.live`), a group's
    /// packed weights at `w` and its bias at `b`, reading nothing else; inlined into each
    /// width's copy below.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn sweep<S: PanelSink>(
        &self,
        x: &[f32],
        sink: &mut S,
        tile_rows: usize,
        tile: impl Fn(usize, Rows, *const f32, *const f32, &mut Tile),
    ) {
        let k = self.fan_in;
        let rows = x.len() / k;
        let mut out = [[[0f32; PANEL]; 2]; MR];
        // The chunk's tiles' live inputs, one after another, and where each tile's list ends:
        // found once per chunk, used by every column group.
        let mut live: Vec<u32> = Vec::with_capacity(CHUNK * k);
        let mut ends: Vec<usize> = Vec::with_capacity(CHUNK);
        for start in (0..rows).step_by(CHUNK) {
            let end = rows.min(start + CHUNK);
            live.clear();
            ends.clear();
            for r in (start..end).step_by(tile_rows) {
                // The sums skip the other inputs with the same bits for finite weights: an FMA
                // of a zero leaves a nonzero sum as it is and a sum at +0 (where every chain
                // starts) at +0, and a chain reaches −0 only through a result below 1.4e-45.
                live_columns(&x[r * k..(r + tile_rows).min(end) * k], k, &mut live);
                ends.push(live.len());
            }
            for g in 0..self.bias.len() / NT {
                let w = self.packed.as_ptr().add(g * k * NT);
                let b = self.bias.as_ptr().add(g * NT);
                let mut from = 0;
                for (t, &to) in ends.iter().enumerate() {
                    let r = start + t * tile_rows;
                    let mr = tile_rows.min(end - r);
                    let input = Rows {
                        at: x.as_ptr().add(r * k),
                        k,
                        live: &live[from..to],
                    };
                    tile(mr, input, w, b, &mut out);
                    self.hand(sink, r, g, &out[..mr]);
                    from = to;
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn run16<S: PanelSink>(&self, x: &[f32], sink: &mut S) {
        // SAFETY: AVX-512F is enabled here; `sweep` passes whole rows and a group's weights.
        self.sweep(x, sink, MR, |mr, rows, w, b, out| unsafe {
            tile16(mr, rows, w, b, out)
        })
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run8<S: PanelSink>(&self, x: &[f32], sink: &mut S) {
        // SAFETY: AVX2 and FMA are enabled here; as in `run16`.
        self.sweep(x, sink, MR8, |mr, rows, w, b, out| unsafe {
            for half in 0..2 {
                tile8(mr, rows, w, b, half, out);
            }
        })
    }
}

/// Picks the 16-lane tile for `mr` ≤ 8 rows.
///
/// # Safety
/// AVX-512F must be available; `rows.at` must hold `mr` rows of `rows.k` floats, every index
/// of `rows.live` be below k, `w` hold k × 32 and `b` 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile16(mr: usize, rows: Rows, w: *const f32, b: *const f32, out: &mut Tile) {
    match mr {
        1 => tile16_of::<1>(rows, w, b, out),
        2 => tile16_of::<2>(rows, w, b, out),
        3 => tile16_of::<3>(rows, w, b, out),
        4 => tile16_of::<4>(rows, w, b, out),
        5 => tile16_of::<5>(rows, w, b, out),
        6 => tile16_of::<6>(rows, w, b, out),
        7 => tile16_of::<7>(rows, w, b, out),
        _ => tile16_of::<8>(rows, w, b, out),
    }
}

/// out[i][0..32] = b + Σ_{j in live} a[i·k + j] · w[j][0..32] for i < R (a = `rows.at`), the
/// sum one FMA chain from zero.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile16_of<const R: usize>(rows: Rows, w: *const f32, b: *const f32, out: &mut Tile) {
    let Rows { at: a, k, live } = rows;
    let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
    for &j in live {
        let j = j as usize;
        let w0 = _mm512_loadu_ps(w.add(j * NT));
        let w1 = _mm512_loadu_ps(w.add(j * NT + 16));
        for (i, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*a.add(i * k + j));
            acc[0] = _mm512_fmadd_ps(x, w0, acc[0]);
            acc[1] = _mm512_fmadd_ps(x, w1, acc[1]);
        }
    }
    let (b0, b1) = (_mm512_loadu_ps(b), _mm512_loadu_ps(b.add(16)));
    for (row, acc) in out.iter_mut().zip(&acc) {
        _mm512_storeu_ps(row[0].as_mut_ptr(), _mm512_add_ps(b0, acc[0]));
        _mm512_storeu_ps(row[1].as_mut_ptr(), _mm512_add_ps(b1, acc[1]));
    }
}

/// Picks the 8-lane half tile for `mr` ≤ 6 rows and columns 16·half .. 16·half + 16.
///
/// # Safety
/// AVX2 and FMA must be available; otherwise as [`tile16`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile8(mr: usize, rows: Rows, w: *const f32, b: *const f32, half: usize, out: &mut Tile) {
    let (w, b) = (w.add(16 * half), b.add(16 * half));
    match mr {
        1 => tile8_of::<1>(rows, w, b, half, out),
        2 => tile8_of::<2>(rows, w, b, half, out),
        3 => tile8_of::<3>(rows, w, b, half, out),
        4 => tile8_of::<4>(rows, w, b, half, out),
        5 => tile8_of::<5>(rows, w, b, half, out),
        _ => tile8_of::<6>(rows, w, b, half, out),
    }
}

/// out[i][16·half..][..16] = b + Σ_{j in live} a[i·k + j] · w[j·32..][..16] for i < R (`w`
/// and `b` already offset to the half).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile8_of<const R: usize>(
    rows: Rows,
    w: *const f32,
    b: *const f32,
    half: usize,
    out: &mut Tile,
) {
    let Rows { at: a, k, live } = rows;
    let mut acc: [[__m256; 2]; R] = [[_mm256_setzero_ps(); 2]; R];
    for &j in live {
        let j = j as usize;
        let w0 = _mm256_loadu_ps(w.add(j * NT));
        let w1 = _mm256_loadu_ps(w.add(j * NT + 8));
        for (i, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_set1_ps(*a.add(i * k + j));
            acc[0] = _mm256_fmadd_ps(x, w0, acc[0]);
            acc[1] = _mm256_fmadd_ps(x, w1, acc[1]);
        }
    }
    let (b0, b1) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));
    for (row, acc) in out.iter_mut().zip(&acc) {
        let at = row[half].as_mut_ptr();
        _mm256_storeu_ps(at, _mm256_add_ps(b0, acc[0]));
        _mm256_storeu_ps(at.add(8), _mm256_add_ps(b1, acc[1]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bits, wave};
    use candle_core::{Device, Tensor};

    /// Collects every panel into a matrix, failing on a panel out of order or handed twice.
    struct Collect {
        y: Vec<f32>,
        cols: usize,
        next: Vec<usize>,
    }

    impl PanelSink for Collect {
        fn panel(&mut self, row: usize, col: usize, values: &[f32; PANEL]) {
            assert_eq!(col, self.next[row], "row {row}: panels out of order");
            self.next[row] = col + PANEL;
            self.y[row * self.cols + col..][..PANEL].copy_from_slice(values);
        }
    }

    /// Every width this CPU runs gives the fused dense op's output (gemm's) to the bit, on
    /// whole and partial tiles, a last group of one panel, fan-ins from 1 to 512, and inputs
    /// that whole tiles have at zero (skipped).
    #[test]
    fn every_width_gives_the_dense_ops_bits() {
        let dev = Device::Cpu;
        for (rows, fan_in, fan_out) in [(1000, 400, 784), (37, 13, 48), (8, 512, 64), (5, 1, 16)] {
            let w = wave(fan_out * fan_in, 0.3);
            let b = wave(fan_out, 1.7);
            // A ReLU layer's output: about half zeros, every third input a dead unit (−0 in
            // odd rows), and rows 8..14 off but for input 2, so tiles skip inputs.
            let x: Vec<f32> = wave(rows * fan_in, 2.9)
                .iter()
                .enumerate()
                .map(|(n, v)| {
                    let (r, j) = (n / fan_in, n % fan_in);
                    if j % 3 == 1 {
                        if r % 2 == 1 {
                            -0.0
                        } else {
                            0.0
                        }
                    } else if (8..14).contains(&r) && j != 2 {
                        0.0
                    } else {
                        v.max(0.0)
                    }
                })
                .collect();
            let expect = crate::ops::dense(
                crate::Kernels::Fused,
                &Tensor::from_slice(&x, (rows, fan_in), &dev).unwrap(),
                &Tensor::from_slice(&w, (fan_out, fan_in), &dev).unwrap(),
                &Tensor::from_slice(&b, fan_out, &dev).unwrap(),
                false,
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
            for width in Simd::available() {
                let dense = StreamedDense::new(&w, &b, (fan_out, fan_in), Some(width)).unwrap();
                let mut sink = Collect {
                    y: vec![f32::NAN; rows * fan_out],
                    cols: fan_out,
                    next: vec![0; rows],
                };
                dense.run(&x, &mut sink);
                assert!(sink.next.iter().all(|&n| n == fan_out), "a row left short");
                assert_eq!(
                    bits(&sink.y),
                    bits(&expect),
                    "{rows}×{fan_in}→{fan_out} at {width:?}"
                );
            }
        }
    }

    #[test]
    fn shapes_it_does_not_cover_are_refused() {
        let w = Some(Simd::Avx2);
        assert!(StreamedDense::new(&[0.0; 20], &[0.0; 20], (20, 1), w).is_none());
        let wide = vec![0.0; 16 * 513];
        assert!(StreamedDense::new(&wide, &[0.0; 16], (16, 513), w).is_none());
        assert!(StreamedDense::new(&[0.0; 16], &[0.0; 16], (16, 1), None).is_none());
    }
}
