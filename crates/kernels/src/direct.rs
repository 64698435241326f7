//! Direct convolutions for the conv body's 4×4 stride-2 layers, at 16 lanes (AVX-512) or at 8
//! (AVX2 + FMA): no im2col, no col2im, no gemm packing of the images.
//!
//! Why: im2col + gemm spends its time copying the images into columns and packing them, and on
//! AVX2-only CPUs (Zen 1–3, older Xeons) it lost to PyTorch (issue 25). Each product here is one
//! register-tiled kernel: a tile of up to 8 output positions × 32 channels (two zmm per
//! position) accumulated over (channel, tap), every input pixel broadcast straight from a
//! zero-padded copy of its map. At 8 lanes the same tile is run as two halves of 16 channels,
//! up to 6 positions each (12 ymm accumulators of the 16 registers). Both widths add the same
//! products in the same order, so they give the same bits.
//!
//! With `s` the small map's channels and `b` the big map's, a weight is always `W[s][b][ky][kx]`:
//! - [`down`]: the convolution big → small (the conv's forward, the transposed conv's dx);
//! - [`up`]: the transposed convolution small → big (its forward, the conv's dx), split into its
//!   four output phases, each a 2×2 convolution, so it never scatters;
//! - [`wgrad`]: dW[s][b·16 + ky·4 + kx] = Σ small[s][p] · big[b][2oy − 1 + ky][2ox − 1 + kx],
//!   tiles of 8 (b, ky, kx) rows × 32 s columns accumulated over positions.

use crate::simd::Simd;
use rayon::prelude::*;
use std::arch::x86_64::{
    __m256, __m512, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_storeu_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps,
    _mm512_setzero_ps, _mm512_storeu_ps,
};

/// Columns of a tile: two zmm, or two halves of two ymm.
const NT: usize = 32;
/// Most output positions in a tile (2 × 8 accumulators, room for the loads).
const MR: usize = 8;
/// Most output positions of a half tile at 8 lanes (2 × 6 accumulators of 16 registers).
const MR8: usize = 6;
/// (b, ky, kx) rows of a weight-gradient tile.
const WR: usize = 8;
/// Rows of a weight-gradient quarter tile at 8 lanes (4 rows × 16 columns: 8 accumulators).
const WR8: usize = 4;

impl Simd {
    /// Output positions of one tile call.
    fn rows(self) -> usize {
        match self {
            Simd::Avx512 => MR,
            Simd::Avx2 => MR8,
        }
    }
}

/// A map's geometry: channels and sides, and its padded copy's sides (one zero pixel around).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Map {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Map {
    fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    fn padded_plane(&self) -> usize {
        (self.h + 2) * (self.w + 2)
    }

    /// Offset of padded pixel (ch, y, x).
    fn at(&self, ch: usize, y: usize, x: usize) -> usize {
        ch * self.padded_plane() + y * (self.w + 2) + x
    }

    /// Copies one image into `dst` with a one-pixel zero border.
    fn pad(&self, src: &[f32], dst: &mut Vec<f32>) {
        dst.clear();
        dst.resize(self.c * self.padded_plane(), 0.0);
        for ch in 0..self.c {
            for y in 0..self.h {
                let from = &src[(ch * self.h + y) * self.w..][..self.w];
                let at = self.at(ch, y + 1, 1);
                dst[at..at + self.w].copy_from_slice(from);
            }
        }
    }
}

/// Weights laid out for [`tile`]: row k reads the input pixel at a position's base + `koff[k]`;
/// columns are zero-padded to whole tiles and stored tile after tile, `[tile][k][32]`.
struct Panel {
    koff: Vec<usize>,
    /// The largest of `koff`, to bound a tile's reads once.
    reach: usize,
    n: usize,
    w: Vec<f32>,
}

impl Panel {
    fn new(koff: Vec<usize>, n: usize, weight: impl Fn(usize, usize) -> f32) -> Self {
        let k = koff.len();
        let mut w = vec![0f32; n.div_ceil(NT) * k * NT];
        for col in 0..n {
            let (t, j) = (col / NT, col % NT);
            for kk in 0..k {
                w[(t * k + kk) * NT + j] = weight(kk, col);
            }
        }
        let reach = koff.iter().max().copied().unwrap_or(0);
        Self { koff, reach, n, w }
    }

    fn tiles(&self) -> usize {
        self.n.div_ceil(NT)
    }

    /// Runs every tile of a row of `len` output positions whose input bases are `base`,
    /// `base + step`, …, and stores each value, after `out`'s epilogue, at `out.at +
    /// column · out.col_stride + position · out.pos_stride`.
    fn run(
        &self,
        simd: Simd,
        input: &[f32],
        (base, step, len): (usize, usize, usize),
        out: &mut Out,
    ) {
        let last = base + (len - 1) * step + self.reach;
        assert!(last < input.len(), "direct conv: tile reads past its map");
        let far = out.at + (self.n - 1) * out.col_stride + (len - 1) * out.pos_stride;
        assert!(
            far < out.dst.len(),
            "direct conv: tile writes past its output"
        );
        let mut tile = [[0f32; NT]; MR];
        let k = self.koff.len();
        let mut p = 0;
        while p < len {
            let mr = simd.rows().min(len - p);
            let a = input[base + p * step..].as_ptr();
            for t in 0..self.tiles() {
                let w = self.w[t * k * NT..(t + 1) * k * NT].as_ptr();
                let cols = NT.min(self.n - t * NT);
                // SAFETY: `simd` runs on this CPU (conv.rs passes only a width of
                // `Simd::available`, via `conv_simd`); the first assert bounds every input read,
                // and the panel holds k × 32 weights per tile.
                unsafe {
                    match simd {
                        Simd::Avx512 => dispatch(mr, a, step, &self.koff, w, &mut tile),
                        Simd::Avx2 => {
                            for half in 0..cols.div_ceil(16) {
                                dispatch8(mr, a, step, &self.koff, w, half, &mut tile);
                            }
                        }
                    }
                };
                for j in 0..cols {
                    let col = t * NT + j;
                    let bias = out.epi.bias.map_or(0.0, |b| b[col]);
                    let at = out.at + col * out.col_stride + p * out.pos_stride;
                    // SAFETY: the second assert bounds the farthest write of this row.
                    unsafe {
                        let dst = out.dst.as_mut_ptr().add(at);
                        for (i, row) in tile.iter().enumerate().take(mr) {
                            let v = row[j] + bias;
                            *dst.add(i * out.pos_stride) =
                                if out.epi.relu { v.max(0.0) } else { v };
                        }
                    }
                }
            }
            p += mr;
        }
    }
}

/// Where a row of tiles lands: `dst[at + column · col_stride + position · pos_stride]`.
struct Out<'a, 'b> {
    dst: &'a mut [f32],
    at: usize,
    col_stride: usize,
    pos_stride: usize,
    epi: Epilogue<'b>,
}

/// Picks the kernel for `mr` positions.
///
/// # Safety
/// AVX-512F must be available, `a + (mr−1)·step + max(koff)` in bounds, `w` hold koff.len()·32.
unsafe fn dispatch(
    mr: usize,
    a: *const f32,
    step: usize,
    koff: &[usize],
    w: *const f32,
    out: &mut [[f32; NT]; MR],
) {
    match mr {
        1 => tile::<1>(a, step, koff, w, out),
        2 => tile::<2>(a, step, koff, w, out),
        3 => tile::<3>(a, step, koff, w, out),
        4 => tile::<4>(a, step, koff, w, out),
        5 => tile::<5>(a, step, koff, w, out),
        6 => tile::<6>(a, step, koff, w, out),
        7 => tile::<7>(a, step, koff, w, out),
        _ => tile::<8>(a, step, koff, w, out),
    }
}

/// out[i][0..32] = Σ_k a[i·step + koff[k]] · w[k][0..32] for i < R.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(
    a: *const f32,
    step: usize,
    koff: &[usize],
    w: *const f32,
    out: &mut [[f32; NT]; MR],
) {
    let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
    for (k, &off) in koff.iter().enumerate() {
        let b0 = _mm512_loadu_ps(w.add(k * NT));
        let b1 = _mm512_loadu_ps(w.add(k * NT + 16));
        let src = a.add(off);
        for (i, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*src.add(i * step));
            acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
        }
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
    }
}

/// Picks the 8-lane kernel for `mr` ≤ 6 positions and columns 16·half .. 16·half + 16.
///
/// # Safety
/// AVX2 and FMA must be available; otherwise as [`dispatch`].
unsafe fn dispatch8(
    mr: usize,
    a: *const f32,
    step: usize,
    koff: &[usize],
    w: *const f32,
    half: usize,
    out: &mut [[f32; NT]; MR],
) {
    let w = w.add(16 * half);
    match mr {
        1 => tile8::<1>(a, step, koff, w, half, out),
        2 => tile8::<2>(a, step, koff, w, half, out),
        3 => tile8::<3>(a, step, koff, w, half, out),
        4 => tile8::<4>(a, step, koff, w, half, out),
        5 => tile8::<5>(a, step, koff, w, half, out),
        _ => tile8::<6>(a, step, koff, w, half, out),
    }
}

/// out[i][16·half..][..16] = Σ_k a[i·step + koff[k]] · w[k·32..][..16] for i < R (`w` already
/// offset to the half).
#[target_feature(enable = "avx2,fma")]
unsafe fn tile8<const R: usize>(
    a: *const f32,
    step: usize,
    koff: &[usize],
    w: *const f32,
    half: usize,
    out: &mut [[f32; NT]; MR],
) {
    let mut acc: [[__m256; 2]; R] = [[_mm256_setzero_ps(); 2]; R];
    for (k, &off) in koff.iter().enumerate() {
        let b0 = _mm256_loadu_ps(w.add(k * NT));
        let b1 = _mm256_loadu_ps(w.add(k * NT + 8));
        let src = a.add(off);
        for (i, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_set1_ps(*src.add(i * step));
            acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
        }
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        let at = row.as_mut_ptr().add(16 * half);
        _mm256_storeu_ps(at, acc[0]);
        _mm256_storeu_ps(at.add(8), acc[1]);
    }
}

/// What happens to a value before it is stored: the bias of its channel, then the ReLU.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
}

/// The convolution big → small for a batch: `big` is (batch, big.c, big.h, big.w), the result
/// (batch, s, big.h/2, big.w/2); W is [s][big.c][4][4].
pub(crate) fn down(
    simd: Simd,
    big_maps: &[f32],
    big: Map,
    s: usize,
    w: &[f32],
    epi: Epilogue,
) -> Vec<f32> {
    let (oh, ow) = (big.h / 2, big.w / 2);
    let koff = (0..big.c * 16)
        .map(|k| big.at(k / 16, (k / 4) % 4, k % 4))
        .collect();
    let panel = Panel::new(koff, s, |k, col| w[col * big.c * 16 + k]);
    let out_len = s * oh * ow;
    let mut y = vec![0f32; big_maps.len() / big.len() * out_len];
    y.par_chunks_mut(out_len)
        .zip(big_maps.par_chunks(big.len()))
        .for_each_init(Vec::new, |padded, (yb, xb)| {
            big.pad(xb, padded);
            for oy in 0..oh {
                let mut out = Out {
                    dst: yb,
                    at: oy * ow,
                    col_stride: oh * ow,
                    pos_stride: 1,
                    epi,
                };
                panel.run(simd, padded, (big.at(0, 2 * oy, 0), 2, ow), &mut out);
            }
        });
    y
}

/// The taps of output phase r (0: even rows, 1: odd rows) of a 4×4 stride-2 padding-1
/// transposed convolution: (kernel index, padded input offset) pairs.
const PHASE_TAPS: [[(usize, usize); 2]; 2] = [[(1, 1), (3, 0)], [(0, 2), (2, 1)]];

/// The transposed convolution small → big for a batch: `small_maps` is (batch, small.c,
/// small.h, small.w), the result (batch, b, 2·small.h, 2·small.w); W is [small.c][b][4][4].
pub(crate) fn up(
    simd: Simd,
    small_maps: &[f32],
    small: Map,
    b: usize,
    w: &[f32],
    epi: Epilogue,
) -> Vec<f32> {
    let (bh, bw) = (2 * small.h, 2 * small.w);
    // Output pixel (2y + ry, 2x + rx) sums W[s][·][ky][kx]·x[s][y + dy][x + dx] over the phase's
    // 2×2 taps; in padded coordinates the input row is y + (dy + 1).
    let phases: Vec<(usize, usize, Panel)> = (0..4)
        .map(|r| {
            let (ry, rx) = (r / 2, r % 2);
            let taps = |k: usize| (PHASE_TAPS[ry][(k / 2) % 2], PHASE_TAPS[rx][k % 2]);
            let koff = (0..small.c * 4)
                .map(|k| {
                    let ((_, py), (_, px)) = taps(k);
                    small.at(k / 4, py, px)
                })
                .collect();
            let panel = Panel::new(koff, b, |k, col| {
                let ((ky, _), (kx, _)) = taps(k);
                w[((k / 4 * b + col) * 4 + ky) * 4 + kx]
            });
            (ry, rx, panel)
        })
        .collect();
    let out_len = b * bh * bw;
    let mut y = vec![0f32; small_maps.len() / small.len() * out_len];
    y.par_chunks_mut(out_len)
        .zip(small_maps.par_chunks(small.len()))
        .for_each_init(Vec::new, |padded, (yb, xb)| {
            small.pad(xb, padded);
            for (ry, rx, panel) in &phases {
                for row in 0..small.h {
                    let mut out = Out {
                        dst: yb,
                        at: (2 * row + ry) * bw + rx,
                        col_stride: bh * bw,
                        pos_stride: 2,
                        epi,
                    };
                    panel.run(simd, padded, (small.at(0, row, 0), 1, small.w), &mut out);
                }
            }
        });
    y
}

/// dW[s][b·16 + ky·4 + kx] = Σ_images Σ_p small[s][p] · big[b][2oy − 1 + ky][2ox − 1 + kx]
/// for `small` (batch, s, big.h/2, big.w/2) and `big` (batch, big.c, big.h, big.w).
pub(crate) fn wgrad(
    simd: Simd,
    small_maps: &[f32],
    s: usize,
    big_maps: &[f32],
    big: Map,
) -> Vec<f32> {
    let (oh, ow) = (big.h / 2, big.w / 2);
    let positions = oh * ow;
    let s_pad = s.div_ceil(NT) * NT;
    let (row_tiles, col_tiles) = (big.c * 16 / WR, s_pad / NT);
    let bases: Vec<usize> = (0..positions)
        .map(|p| big.at(0, 2 * (p / ow), 2 * (p % ow)))
        .collect();
    let rows: Vec<[usize; WR]> = (0..row_tiles)
        .map(|t| std::array::from_fn(|i| t * WR + i).map(|n| big.at(n / 16, (n / 4) % 4, n % 4)))
        .collect();
    let small_len = s * positions;
    let images: Vec<(&[f32], &[f32])> = small_maps
        .chunks(small_len)
        .zip(big_maps.chunks(big.len()))
        .collect();
    let acc = crate::ordered::ordered_sum(
        images,
        || {
            let tiles = vec![[[0f32; NT]; WR]; row_tiles * col_tiles];
            (tiles, Vec::new(), vec![0f32; positions * s_pad])
        },
        |(mut tiles, mut padded, mut small_t), _, (sb, bb)| {
            big.pad(bb, &mut padded);
            // The small map transposed to [p][s], so a tile's 32 columns are one load.
            for (ch, plane) in sb.chunks(positions).enumerate() {
                for (p, &v) in plane.iter().enumerate() {
                    small_t[p * s_pad + ch] = v;
                }
            }
            let reach = bases.last().copied().unwrap_or(0) + big.at(big.c - 1, 3, 3);
            assert!(reach < padded.len(), "direct wgrad: reads past its map");
            for (rt, offs) in rows.iter().enumerate() {
                for ct in 0..col_tiles {
                    let out = &mut tiles[rt * col_tiles + ct];
                    let (big, small) = (padded.as_ptr(), small_t[ct * NT..].as_ptr());
                    // SAFETY: `simd` runs on this CPU (as in `Panel::run`); the assert bounds
                    // every big-map read and small_t holds positions × s_pad values.
                    unsafe {
                        match simd {
                            Simd::Avx512 => wtile(big, offs, &bases, small, s_pad, out),
                            Simd::Avx2 => {
                                for quarter in 0..4 {
                                    wtile8(big, offs, &bases, small, s_pad, quarter, out)
                                }
                            }
                        }
                    };
                }
            }
            (tiles, padded, small_t)
        },
        |(tiles, _, _)| tiles.as_flattened().as_flattened(),
    );
    let n = big.c * 16;
    let mut dw = vec![0f32; s * n];
    for (k, row) in dw.chunks_mut(n).enumerate() {
        let (ct, j) = (k / NT, k % NT);
        for (col, v) in row.iter_mut().enumerate() {
            *v = acc[(((col / WR) * col_tiles + ct) * WR + col % WR) * NT + j];
        }
    }
    dw
}

/// out[i][0..32] += Σ_p big[offs[i] + bases[p]] · small_t[p·ld .. p·ld + 32].
#[target_feature(enable = "avx512f")]
unsafe fn wtile(
    big: *const f32,
    offs: &[usize; WR],
    bases: &[usize],
    small_t: *const f32,
    ld: usize,
    out: &mut [[f32; NT]; WR],
) {
    let mut acc: [[__m512; 2]; WR] = [[_mm512_setzero_ps(); 2]; WR];
    let rows: [*const f32; WR] = offs.map(|o| big.add(o));
    for (p, &base) in bases.iter().enumerate() {
        let b0 = _mm512_loadu_ps(small_t.add(p * ld));
        let b1 = _mm512_loadu_ps(small_t.add(p * ld + 16));
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let x = _mm512_set1_ps(*row.add(base));
            acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
        }
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        for (half, v) in acc.iter().enumerate() {
            let at = row.as_mut_ptr().add(16 * half);
            let sum = std::arch::x86_64::_mm512_add_ps(_mm512_loadu_ps(at), *v);
            _mm512_storeu_ps(at, sum);
        }
    }
}

/// As [`wtile`] at 8 lanes for one quarter of the tile: rows 4·(q / 2) .. + 4, columns
/// 16·(q mod 2) .. + 16.
#[target_feature(enable = "avx2,fma")]
unsafe fn wtile8(
    big: *const f32,
    offs: &[usize; WR],
    bases: &[usize],
    small_t: *const f32,
    ld: usize,
    quarter: usize,
    out: &mut [[f32; NT]; WR],
) {
    let (r0, c0) = (WR8 * (quarter / 2), 16 * (quarter % 2));
    let mut acc: [[__m256; 2]; WR8] = [[_mm256_setzero_ps(); 2]; WR8];
    let rows: [*const f32; WR8] = std::array::from_fn(|i| big.add(offs[r0 + i]));
    let small_t = small_t.add(c0);
    for (p, &base) in bases.iter().enumerate() {
        let b0 = _mm256_loadu_ps(small_t.add(p * ld));
        let b1 = _mm256_loadu_ps(small_t.add(p * ld + 8));
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let x = _mm256_set1_ps(*row.add(base));
            acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
        }
    }
    for (row, acc) in out[r0..r0 + WR8].iter_mut().zip(&acc) {
        for (half, v) in acc.iter().enumerate() {
            let at = row.as_mut_ptr().add(c0 + 8 * half);
            _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), *v));
        }
    }
}
