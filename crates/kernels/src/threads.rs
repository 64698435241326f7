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

/// The thread count `configure` settled on: `RAYON_NUM_THREADS` when set, else every core.
pub fn configured() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
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

#[cfg(test)]
mod tests {
    // nextest runs each test in its own process, so setting the variable touches no other test.
    #[test]
    fn configured_reads_rayon_num_threads_and_falls_back_to_every_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", "3");
        assert_eq!(super::configured(), 3);
        super::configure(Some(5));
        assert_eq!(super::configured(), 5);
        for unusable in ["0", "many", ""] {
            std::env::set_var("RAYON_NUM_THREADS", unusable);
            assert_eq!(super::configured(), cores, "RAYON_NUM_THREADS={unusable:?}");
        }
    }
}
