//! A parallel sum over a batch whose rounding is fixed: the images are grouped in runs of a
//! constant size, each run folded in order into its own accumulator, and the runs' partials
//! added in order. rayon's `fold`/`reduce` groups items by how the work was stolen, so a float
//! sum through it changes from run to run on two or more threads.

use rayon::prelude::*;

/// Images per partial sum: the grouping that fixes the rounding, whatever the thread count.
pub(crate) const IMAGES_PER_PARTIAL: usize = 32;

/// Values per task when the partials are added (each value sums the partials in order).
const ADD_CHUNK: usize = 4096;

/// Folds `items` (with their index) into accumulators from `init`, `IMAGES_PER_PARTIAL` items
/// each, in parallel, then adds the accumulators' values (`flat`) in order, in parallel over
/// the values: `Σ_partials` for each value, partial 0 first.
pub(crate) fn ordered_sum<T: Send, A: Send>(
    items: Vec<T>,
    init: impl Fn() -> A + Sync + Send,
    fold: impl Fn(A, usize, T) -> A + Sync + Send,
    flat: impl Fn(&A) -> &[f32] + Sync,
) -> Vec<f32> {
    let partials: Vec<A> = items
        .into_par_iter()
        .enumerate()
        .chunks(IMAGES_PER_PARTIAL)
        .map(|run| run.into_iter().fold(init(), |acc, (i, t)| fold(acc, i, t)))
        .collect();
    let parts: Vec<&[f32]> = partials.iter().map(&flat).collect();
    let Some(first) = parts.first() else {
        return flat(&init()).to_vec();
    };
    let mut total = first.to_vec();
    total
        .par_chunks_mut(ADD_CHUNK)
        .enumerate()
        .for_each(|(c, out)| {
            let at = c * ADD_CHUNK;
            for p in &parts[1..] {
                let p = &p[at..at + out.len()];
                out.iter_mut().zip(p).for_each(|(o, v)| *o += v);
            }
        });
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum is the same bits on one thread and on four, run after run, and equals the
    /// sequential sum of the runs' sequential sums.
    #[test]
    fn the_sum_does_not_depend_on_threads_or_scheduling() {
        let items: Vec<f32> = (0..1000).map(|i| 1.0 / (1.0 + i as f32 * 0.37)).collect();
        let sum = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                ordered_sum(items.clone(), || [0f32], |[a], _, x| [a + x], |a| &a[..])[0]
            })
        };
        let by_hand = items
            .chunks(IMAGES_PER_PARTIAL)
            .map(|c| c.iter().fold(0f32, |a, x| a + x))
            .fold(None, |acc: Option<f32>, p| Some(acc.map_or(p, |a| a + p)))
            .unwrap();
        for _ in 0..20 {
            assert_eq!(sum(1).to_bits(), by_hand.to_bits());
            assert_eq!(sum(4).to_bits(), by_hand.to_bits());
        }
    }
}
