//! Helpers shared by the fused kernels' tests.

use candle_core::{Tensor, Var};

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

/// Checks a fused op against candle's: the value, then the gradient of every var in `vars`
/// (named) of Σ y ⊙ mix, with `mix` a fixed weighting so every output counts differently.
pub fn assert_same_op(fused: &Tensor, plain: &Tensor, vars: &[(&Var, &str)], what: &str) {
    assert_eq!(fused.dims(), plain.dims(), "{what}");
    assert_close(fused, plain, what);
    let mix =
        Tensor::from_vec(wave(fused.elem_count(), 3.0), fused.shape(), fused.device()).unwrap();
    let grads = |y: &Tensor| (y * &mix).unwrap().sum_all().unwrap().backward().unwrap();
    let (gf, gp) = (grads(fused), grads(plain));
    for (var, name) in vars {
        let (f, p) = (gf.get(var).unwrap(), gp.get(var).unwrap());
        assert_close(f, p, &format!("{what} {name}"));
    }
}

/// `n` deterministic values in [−0.8, 0.8], shifted by `s`.
pub fn wave(n: usize, s: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.731 + s).sin()) * 0.8)
        .collect()
}

/// The bit patterns of `v`, for comparisons that must hold to the last bit.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}
