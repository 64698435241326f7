//! Row-major f32 matrix products on the gemm crate, and access to a CPU tensor's data.

use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};
use gemm::Parallelism;

pub(crate) fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// dst (m×n, row-major) = [dst +] lhs·rhs, each operand given by its row and column strides,
/// on the current pool's threads.
pub(crate) fn matmul(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    matmul_with(
        mnk,
        dst,
        accumulate,
        lhs,
        lhs_strides,
        rhs,
        rhs_strides,
        parallelism(),
    );
}

/// As [`matmul`], with the gemm's parallelism given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_with(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    parallelism: Parallelism,
) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(n == 0 || k == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts keep every index the kernel touches inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Appends to `live` the columns j < `cols`, in order, that some row of row-major `m` (whole
/// rows of `cols`) has nonzero: the terms a product over a ReLU layer's output can skip.
pub(crate) fn live_columns(m: &[f32], cols: usize, live: &mut Vec<u32>) {
    // A stack buffer for the fan-ins of the streamed head, called once per tile.
    let (mut stack, mut heap) = ([false; 512], Vec::new());
    let any: &mut [bool] = if cols <= stack.len() {
        &mut stack[..cols]
    } else {
        heap.resize(cols, false);
        &mut heap
    };
    for row in m.chunks_exact(cols) {
        for (on, &v) in any.iter_mut().zip(row) {
            *on |= v != 0.0;
        }
    }
    live.extend((0..cols as u32).filter(|&j| any[j as usize]));
}

pub(crate) fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => bail!("{what} must be contiguous"),
    }
}

/// Runs `f` on the f32 data of a contiguous CPU tensor.
pub(crate) fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(contiguous(cpu, layout, "tensor")?),
        _ => bail!("expected a CPU tensor"),
    }
}
