//! Helpers shared by the fused kernels' tests.

use candle_core::Tensor;

/// Fails unless `a` and `b` agree element by element within 1e-4 relative (plus 1e-4 absolute).
pub fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    let (a, b) = (
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{what}: {x} vs {y}"
        );
    }
}

/// `n` deterministic values in [−0.8, 0.8], shifted by `s`.
pub fn wave(n: usize, s: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.731 + s).sin()) * 0.8)
        .collect()
}
