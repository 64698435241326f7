//! How candle's CPU kernels use the cores.

/// Sets the thread counts candle reads, before any kernel runs (call first thing in `main`).
///
/// `threads` (default: all cores) goes to the gemm matmuls through `RAYON_NUM_THREADS`.
/// Element-wise ops stay on the calling thread (`CANDLE_NUM_THREADS=1`) unless the user set
/// it: on small MLP batches candle's spinning barrier pool competes with the gemm workers for
/// the cores, and a 2-core epoch of the classic model went from 3.68 s to 3.10 s without it.
pub fn configure(threads: Option<usize>) {
    if let Some(n) = threads {
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Runs `f` inside a rayon pool of `threads` workers: the fused kernels size their
/// parallelism from the pool they run in, so runs side by side each get their own share.
pub fn in_pool<R: Send>(
    threads: usize,
    f: impl FnOnce() -> R + Send,
) -> Result<R, rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    Ok(pool.install(f))
}
