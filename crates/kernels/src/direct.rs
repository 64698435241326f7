//! Direct convolutions for the conv body's 4×4 stride-2 layers, at 16 lanes (AVX-512) or at 8
//! (AVX2 + FMA): no im2col, no col2im, no gemm packing of the images.
//!
//! Why: im2col + gemm spends its time copying the images into columns and packing them, and on
//! AVX2-only CPUs (Zen 1–3, older Xeons) it lost to PyTorch (issue 25). Each product here is one
//! register-tiled kernel: a tile of up to 8 output positions × 32 channels (two zmm per
//! position) accumulated over (channel, tap), every input pixel broadcast straight from a
//! zero-padded copy of its map. A map's positions are cut into tiles of nearly equal size across
//! its rows, since a tile of one or two positions leaves most FMA slots idle. At 8 lanes the
//! same tile is run as two halves of 16 channels, up to 6 positions each (12 ymm accumulators of
//! the 16 registers). Both widths add the same products in the same order, so they give the
//! same bits.
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
    __m256, __m512, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_max_ps,
    _mm256_permute2f128_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
    _mm256_unpackhi_ps, _mm256_unpacklo_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps,
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

    /// Copies one image into `dst` with a one-pixel zero border. Only the interior is ever
    /// written, so a buffer already sized for this map keeps its zero border from the first
    /// image (saves a memset of the whole map per image).
    fn pad(&self, src: &[f32], dst: &mut Vec<f32>) {
        let len = self.c * self.padded_plane();
        if dst.len() != len {
            dst.clear();
            dst.resize(len, 0.0);
        }
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

    /// Runs every tile over `at`'s output positions, in tiles of nearly equal size (a 7 × 7 map
    /// at 6 a tile is 6, 6, 6, 6, 5, 5, 5, 5, 5, not seven rows of 6 + 1: a one-position tile
    /// runs at a fraction of the FMA rate), and stores each value, after `out`'s epilogue, at
    /// `at.outs[p] + column · out.col_stride`.
    fn run(&self, simd: Simd, input: &[f32], at: &Positions, out: &mut Out) {
        let len = at.bases.len();
        if len == 0 {
            return;
        }
        let last = at.bases.iter().max().copied().unwrap_or(0) + self.reach;
        assert!(last < input.len(), "direct conv: tile reads past its map");
        let far = at.outs.iter().max().copied().unwrap_or(0) + (self.n - 1) * out.col_stride;
        assert!(
            far < out.dst.len(),
            "direct conv: tile writes past its output"
        );
        let mut tile = [[0f32; NT]; MR];
        let k = self.koff.len();
        let tiles = len.div_ceil(simd.rows());
        let mut p = 0;
        for done in 0..tiles {
            let mr = (len - p).div_ceil(tiles - done);
            let bases = &at.bases[p..p + mr];
            for t in 0..self.tiles() {
                let w = self.w[t * k * NT..(t + 1) * k * NT].as_ptr();
                let cols = NT.min(self.n - t * NT);
                // SAFETY: `simd` runs on this CPU (conv.rs passes only a width of
                // `Simd::available`, via `conv_simd`); the first assert bounds every input read,
                // the panel holds k × 32 weights per tile, and mr ≤ `simd.rows()`.
                unsafe {
                    match simd {
                        Simd::Avx512 => dispatch(input.as_ptr(), bases, &self.koff, w, &mut tile),
                        Simd::Avx2 => {
                            for half in 0..cols.div_ceil(16) {
                                dispatch8(input.as_ptr(), bases, &self.koff, w, half, &mut tile);
                            }
                        }
                    }
                };
                // Eight positions from a contiguous run's first one are this channel's (`p + 8
                // ≤ len`), and the lanes past `mr` land on the next tile's positions, which it
                // overwrites: whole columns go out as vectors, at 8 lanes for both widths (a
                // 16-lane CPU runs AVX2 too, and a tile has at most 8 positions).
                let vector = at.contiguous && p + MR <= len;
                let scalar_from = if vector { cols / 8 * 8 } else { 0 };
                if vector {
                    let o = at.outs[p];
                    for c0 in (0..scalar_from).step_by(8) {
                        let col = t * NT + c0;
                        let bias: [f32; 8] = match out.epi.bias {
                            Some(b) => std::array::from_fn(|j| b[col + j]),
                            None => [0.0; 8],
                        };
                        // SAFETY: this CPU has AVX2 (either `simd` implies it); lane i of
                        // column j lands at o + i + (col + j)·stride ≤ max(outs) + (n − 1)·
                        // stride, which the second assert bounds.
                        unsafe {
                            let dst = out.dst.as_mut_ptr().add(o + col * out.col_stride);
                            store8(&tile, c0, bias, out.epi.relu, dst, out.col_stride);
                        }
                    }
                }
                for j in scalar_from..cols {
                    let col = t * NT + j;
                    let bias = out.epi.bias.map_or(0.0, |b| b[col]);
                    let dst = out.dst.as_mut_ptr();
                    for (row, &o) in tile.iter().zip(&at.outs[p..p + mr]) {
                        let v = row[j] + bias;
                        // SAFETY: the second assert bounds the farthest write.
                        unsafe {
                            *dst.add(o + col * out.col_stride) =
                                if out.epi.relu { v.max(0.0) } else { v };
                        }
                    }
                }
            }
            p += mr;
        }
    }
}

/// A layer's output positions for one image: position p reads its padded input from `bases[p]`
/// (plus a tap's offset) and writes channel c at `outs[p] + c · col_stride`.
struct Positions {
    bases: Vec<usize>,
    outs: Vec<usize>,
    /// `outs` is `outs[0]`, `outs[0] + 1`, …: a column's values of a tile are adjacent.
    contiguous: bool,
}

impl Positions {
    fn new(bases: Vec<usize>, outs: Vec<usize>) -> Self {
        let contiguous = outs.windows(2).all(|w| w[1] == w[0] + 1);
        Self {
            bases,
            outs,
            contiguous,
        }
    }
}

/// Writes columns c0 .. c0 + 8 of the tile's eight rows to `dst + i + j · stride` (row i, column
/// c0 + j) after the epilogue, `bias[j]` and the ReLU: an 8 × 8 transpose in registers, so each
/// column is one store instead of eight scalar ones.
///
/// # Safety
/// AVX2 must be available and `dst + 7 · stride + 8` in bounds.
#[target_feature(enable = "avx2,fma")]
unsafe fn store8(
    tile: &[[f32; NT]; MR],
    c0: usize,
    bias: [f32; 8],
    relu: bool,
    dst: *mut f32,
    stride: usize,
) {
    let cols = transpose8(std::array::from_fn(|i| {
        _mm256_loadu_ps(tile[i][c0..].as_ptr())
    }));
    for (j, (&b, &col)) in bias.iter().zip(&cols).enumerate() {
        let v = _mm256_add_ps(col, _mm256_set1_ps(b));
        let v = if relu {
            _mm256_max_ps(v, _mm256_setzero_ps())
        } else {
            v
        };
        _mm256_storeu_ps(dst.add(j * stride), v);
    }
}

/// The 8 × 8 transpose: lane i of output j is lane j of input i.
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // u[4h + c]: columns c and c + 4 of rows 4h .. 4h + 4.
    let u: [__m256; 8] = std::array::from_fn(|q| {
        let (half, c) = (q / 4 * 4, q % 4);
        let (a, b) = (t[half + c / 2], t[half + 2 + c / 2]);
        if c % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    std::array::from_fn(|j| {
        let (lo, hi) = (u[j % 4], u[4 + j % 4]);
        if j < 4 {
            _mm256_permute2f128_ps::<0x20>(lo, hi)
        } else {
            _mm256_permute2f128_ps::<0x31>(lo, hi)
        }
    })
}

/// Where a layer's tiles land: `dst[position's out + column · col_stride]`.
struct Out<'a, 'b> {
    dst: &'a mut [f32],
    col_stride: usize,
    epi: Epilogue<'b>,
}

/// Picks the kernel for `bases.len()` ≤ 8 positions.
///
/// # Safety
/// AVX-512F must be available, `input + base + max(koff)` in bounds for every base, `w` hold
/// koff.len()·32.
unsafe fn dispatch(
    input: *const f32,
    bases: &[usize],
    koff: &[usize],
    w: *const f32,
    out: &mut [[f32; NT]; MR],
) {
    match bases.len() {
        1 => tile::<1>(rows(input, bases), koff, w, out),
        2 => tile::<2>(rows(input, bases), koff, w, out),
        3 => tile::<3>(rows(input, bases), koff, w, out),
        4 => tile::<4>(rows(input, bases), koff, w, out),
        5 => tile::<5>(rows(input, bases), koff, w, out),
        6 => tile::<6>(rows(input, bases), koff, w, out),
        7 => tile::<7>(rows(input, bases), koff, w, out),
        _ => tile::<8>(rows(input, bases), koff, w, out),
    }
}

/// The first R positions' input pointers.
///
/// # Safety
/// Each base must lie inside the allocation `input` points into.
unsafe fn rows<const R: usize>(input: *const f32, bases: &[usize]) -> [*const f32; R] {
    std::array::from_fn(|i| input.add(bases[i]))
}

/// out[i][0..32] = Σ_k rows[i][koff[k]] · w[k][0..32] for i < R.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(
    rows: [*const f32; R],
    koff: &[usize],
    w: *const f32,
    out: &mut [[f32; NT]; MR],
) {
    let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
    for (k, &off) in koff.iter().enumerate() {
        let b0 = _mm512_loadu_ps(w.add(k * NT));
        let b1 = _mm512_loadu_ps(w.add(k * NT + 16));
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let x = _mm512_set1_ps(*row.add(off));
            acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
        }
    }
    for (row, acc) in out.iter_mut().zip(&acc) {
        _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
    }
}

/// Picks the 8-lane kernel for `bases.len()` ≤ 6 positions and columns 16·half .. 16·half + 16.
///
/// # Safety
/// AVX2 and FMA must be available; otherwise as [`dispatch`].
unsafe fn dispatch8(
    input: *const f32,
    bases: &[usize],
    koff: &[usize],
    w: *const f32,
    half: usize,
    out: &mut [[f32; NT]; MR],
) {
    let w = w.add(16 * half);
    match bases.len() {
        1 => tile8::<1>(rows(input, bases), koff, w, half, out),
        2 => tile8::<2>(rows(input, bases), koff, w, half, out),
        3 => tile8::<3>(rows(input, bases), koff, w, half, out),
        4 => tile8::<4>(rows(input, bases), koff, w, half, out),
        5 => tile8::<5>(rows(input, bases), koff, w, half, out),
        _ => tile8::<6>(rows(input, bases), koff, w, half, out),
    }
}

/// out[i][16·half..][..16] = Σ_k rows[i][koff[k]] · w[k·32..][..16] for i < R (`w` already
/// offset to the half).
#[target_feature(enable = "avx2,fma")]
unsafe fn tile8<const R: usize>(
    rows: [*const f32; R],
    koff: &[usize],
    w: *const f32,
    half: usize,
    out: &mut [[f32; NT]; MR],
) {
    let mut acc: [[__m256; 2]; R] = [[_mm256_setzero_ps(); 2]; R];
    for (k, &off) in koff.iter().enumerate() {
        let b0 = _mm256_loadu_ps(w.add(k * NT));
        let b1 = _mm256_loadu_ps(w.add(k * NT + 8));
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let x = _mm256_set1_ps(*row.add(off));
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

/// A thread's buffers for one image at a time: its padded input, and its output, which the
/// tiles' scattered stores fill while it sits in L1, before one sequential copy into the batch
/// (the batch is megabytes: on Zen 3 the epilogue's share of a conv epoch fell from 7.7 % to
/// 5.4 %, the copy costs ~2 %). Every output value is overwritten, so it is never cleared.
#[derive(Default)]
struct Scratch {
    padded: Vec<f32>,
    out: Vec<f32>,
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
    // Output (oy, ox) reads the padded window at (2oy, 2ox); the whole map is one run of
    // tiles, so a tile may span two rows.
    let at = Positions::new(
        (0..oh * ow)
            .map(|p| big.at(0, 2 * (p / ow), 2 * (p % ow)))
            .collect(),
        (0..oh * ow).collect(),
    );
    per_image(
        big_maps,
        big.len(),
        s * oh * ow,
        |xb, Scratch { padded, out }| {
            big.pad(xb, padded);
            let mut to = Out {
                dst: out,
                col_stride: oh * ow,
                epi,
            };
            panel.run(simd, padded, &at, &mut to);
        },
    )
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
    let phases: Vec<(Positions, Panel)> = (0..4)
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
            // Phase output (y, x) lands at big pixel (2y + ry, 2x + rx).
            let at = Positions::new(
                (0..small.h * small.w)
                    .map(|p| small.at(0, p / small.w, p % small.w))
                    .collect(),
                (0..small.h * small.w)
                    .map(|p| (2 * (p / small.w) + ry) * bw + 2 * (p % small.w) + rx)
                    .collect(),
            );
            (at, panel)
        })
        .collect();
    per_image(
        small_maps,
        small.len(),
        b * bh * bw,
        |xb, Scratch { padded, out }| {
            small.pad(xb, padded);
            for (at, panel) in &phases {
                let mut to = Out {
                    dst: out,
                    col_stride: bh * bw,
                    epi,
                };
                panel.run(simd, padded, at, &mut to);
            }
        },
    )
}

/// Runs `image` on every image of `maps` (`in_len` values each) in parallel, each filling its
/// thread's [`Scratch`] output of `out_len` values, and gathers those into one batch, which is
/// never zero-filled first: every value of it is copied in.
fn per_image(
    maps: &[f32],
    in_len: usize,
    out_len: usize,
    image: impl Fn(&[f32], &mut Scratch) + Sync,
) -> Vec<f32> {
    let n = maps.len() / in_len * out_len;
    let mut y: Vec<f32> = Vec::with_capacity(n);
    y.spare_capacity_mut()[..n]
        .par_chunks_mut(out_len)
        .zip(maps.par_chunks(in_len))
        .for_each_init(Scratch::default, |scratch, (yb, xb)| {
            scratch.out.resize(out_len, 0.0);
            image(xb, scratch);
            for (to, &v) in yb.iter_mut().zip(&scratch.out) {
                to.write(v);
            }
        });
    // SAFETY: n is a whole number of out_len chunks, one per image, and each was written whole.
    unsafe { y.set_len(n) };
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
            transpose(simd, sb, positions, &mut small_t, s_pad);
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

/// Writes `src`, [channel][position], into `dst` as [position][ld]: in 8 × 8 blocks transposed
/// in registers at either width (a plain scatter stalled on each value: 7.5 % of a conv epoch
/// on Zen 3), the positions and channels past the last whole block value by value. `_runs` is a
/// width this CPU runs, so it has AVX2 (`Simd::available`).
fn transpose(_runs: Simd, src: &[f32], positions: usize, dst: &mut [f32], ld: usize) {
    let channels = src.len() / positions;
    assert!(
        ld >= channels && dst.len() >= positions * ld,
        "transpose: dst too small"
    );
    let (pv, cv) = (positions / 8 * 8, channels / 8 * 8);
    for c0 in (0..cv).step_by(8) {
        for p0 in (0..pv).step_by(8) {
            // SAFETY: `_runs` runs on this CPU and implies AVX2; the block reads channels
            // c0 .. c0 + 8 ≤ channels at positions p0 .. p0 + 8 ≤ positions, and writes rows
            // p0 .. p0 + 8 at columns c0 .. c0 + 8 ≤ ld, inside dst by the assert.
            unsafe {
                let from = src.as_ptr().add(c0 * positions + p0);
                block8(from, positions, dst.as_mut_ptr().add(p0 * ld + c0), ld);
            }
        }
    }
    for (ch, plane) in src.chunks_exact(positions).enumerate() {
        let from = if ch < cv { pv } else { 0 };
        for (p, &v) in plane.iter().enumerate().skip(from) {
            dst[p * ld + ch] = v;
        }
    }
}

/// Rows `src + i · src_ld` (8 floats each, i < 8) written as columns: `dst + j · dst_ld` gets
/// lane j of every row.
///
/// # Safety
/// AVX2 must be available; the 8 rows of 8 floats at both ends in bounds.
#[target_feature(enable = "avx2,fma")]
unsafe fn block8(src: *const f32, src_ld: usize, dst: *mut f32, dst_ld: usize) {
    let cols = transpose8(std::array::from_fn(|i| {
        _mm256_loadu_ps(src.add(i * src_ld))
    }));
    for (j, &col) in cols.iter().enumerate() {
        _mm256_storeu_ps(dst.add(j * dst_ld), col);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bits, wave};

    /// A pixel of a (c, h, w) map, zero outside it.
    fn pixel(map: &[f32], m: Map, ch: usize, y: isize, x: isize) -> f32 {
        let inside = (0..m.h as isize).contains(&y) && (0..m.w as isize).contains(&x);
        if inside {
            map[(ch * m.h + y as usize) * m.w + x as usize]
        } else {
            0.0
        }
    }

    /// The stride-2 4×4 padding-1 convolution by its definition, one `mul_add` chain per output
    /// over (channel, ky, kx) from zero, then the bias and the ReLU: the order the tiles add in.
    fn down_by_definition(x: &[f32], big: Map, s: usize, w: &[f32], b: &[f32]) -> Vec<f32> {
        let (oh, ow) = (big.h / 2, big.w / 2);
        let mut y = Vec::new();
        for img in x.chunks(big.len()) {
            for o in 0..s {
                for (oy, ox) in (0..oh * ow).map(|p| (p / ow, p % ow)) {
                    let mut acc = 0f32;
                    for k in 0..big.c * 16 {
                        let (ch, ky, kx) = (k / 16, (k / 4) % 4, k % 4);
                        let (iy, ix) = (2 * oy + ky, 2 * ox + kx);
                        let v = pixel(img, big, ch, iy as isize - 1, ix as isize - 1);
                        acc = v.mul_add(w[o * big.c * 16 + k], acc);
                    }
                    y.push((acc + b[o]).max(0.0));
                }
            }
        }
        y
    }

    /// Its transpose by definition: big pixel (Y, X) gathers small pixel (iy, ix) through tap
    /// (ky, kx) where Y = 2iy − 1 + ky and X = 2ix − 1 + kx, over (channel, ky, kx) in order.
    fn up_by_definition(x: &[f32], small: Map, b: usize, w: &[f32], bias: &[f32]) -> Vec<f32> {
        let (bh, bw) = (2 * small.h, 2 * small.w);
        let mut y = Vec::new();
        for img in x.chunks(small.len()) {
            for col in 0..b {
                for (oy, ox) in (0..bh * bw).map(|p| (p / bw, p % bw)) {
                    let mut acc = 0f32;
                    for k in 0..small.c * 16 {
                        let (ch, ky, kx) = (k / 16, (k / 4) % 4, k % 4);
                        let ny = oy as isize + 1 - ky as isize;
                        let nx = ox as isize + 1 - kx as isize;
                        if ny % 2 != 0 || nx % 2 != 0 {
                            continue;
                        }
                        let v = pixel(img, small, ch, ny / 2, nx / 2);
                        acc = v.mul_add(w[((ch * b + col) * 4 + ky) * 4 + kx], acc);
                    }
                    y.push((acc + bias[col]).max(0.0));
                }
            }
        }
        y
    }

    /// The transpose at every width is the plain scatter, on shapes with and without a
    /// remainder past the 8 × 8 blocks.
    #[test]
    fn transpose_moves_every_value_to_its_place() {
        for simd in Simd::available() {
            for (channels, positions, ld) in [(8, 8, 8), (17, 13, 32), (64, 49, 64), (3, 196, 32)] {
                let src = wave(channels * positions, 1.0);
                let mut want = vec![f32::NAN; positions * ld];
                for ch in 0..channels {
                    for p in 0..positions {
                        want[p * ld + ch] = src[ch * positions + p];
                    }
                }
                let mut got = vec![f32::NAN; positions * ld];
                transpose(simd, &src, positions, &mut got, ld);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{channels} × {positions}, {simd:?}"
                );
            }
        }
    }

    /// Every width gives the definition's bits on maps whose positions split into uneven tiles
    /// (one position, 7 × 7, 14 × 14) and channel counts that cut the 32- and 16-column tiles.
    #[test]
    fn every_width_gives_the_definitions_bits() {
        fn epi(bias: &[f32]) -> Epilogue<'_> {
            Epilogue {
                bias: Some(bias),
                relu: true,
            }
        }
        for simd in Simd::available() {
            for (c, side, s) in [(3, 2, 17), (5, 14, 33), (2, 28, 16)] {
                let big = Map {
                    c,
                    h: side,
                    w: side,
                };
                let x = wave(2 * big.len(), 1.0);
                let w = wave(s * c * 16, 0.3);
                let b = wave(s, 2.0);
                let want = down_by_definition(&x, big, s, &w, &b);
                let got = down(simd, &x, big, s, &w, epi(&b));
                assert_eq!(bits(&got), bits(&want), "down {c}→{s} at {side}, {simd:?}");
            }
            for (c, side, b) in [(4, 1, 17), (6, 7, 33), (3, 5, 16)] {
                let small = Map {
                    c,
                    h: side,
                    w: side,
                };
                let x = wave(2 * small.len(), 1.0);
                let w = wave(c * b * 16, 0.3);
                let bias = wave(b, 2.0);
                let want = up_by_definition(&x, small, b, &w, &bias);
                let got = up(simd, &x, small, b, &w, epi(&bias));
                assert_eq!(bits(&got), bits(&want), "up {c}→{b} at {side}, {simd:?}");
            }
        }
    }
}
