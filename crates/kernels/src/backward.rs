//! The training step's backward pass: candle's `backward`, with the fused ops' weight gradients
//! handed to the optimizer as the ops computed them.
//!
//! candle stores an argument's first gradient as `zeros_like(arg) + grad` (`GradStore::or_insert`
//! then `add`, in its `backprop.rs`): for every weight of every step a zero-filled copy, read
//! twice and written again (2.6 MB a step for the classic model). Inside [`backward`] the fused
//! dense and conv ops [`hold`] their weights' gradients here and give candle none; a weight's
//! contributions are summed in the order the backward visits them, as candle sums them, so the
//! gradients are the same bits.

use candle_core::{backprop::GradStore, Result, Shape, Tensor, TensorId};
use std::cell::RefCell;
use std::collections::HashMap;

/// The gradients held during one [`backward`] on this thread, by weight.
type Held = HashMap<TensorId, (Vec<f32>, Shape)>;

thread_local! {
    /// `Some` while this thread runs [`backward`]: candle calls the ops' backward on the thread
    /// that called it.
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// `loss.backward()`, with the fused ops' weight gradients entered without candle's zero-fill.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    /// Stops holding when the backward ends, on an error too.
    struct Holding;
    impl Drop for Holding {
        fn drop(&mut self) {
            HELD.with(|h| h.borrow_mut().take());
        }
    }
    HELD.with(|h| *h.borrow_mut() = Some(Held::new()));
    let holding = Holding;
    let mut grads = loss.backward()?;
    let held = HELD.with(|h| h.borrow_mut().take()).unwrap_or_default();
    drop(holding);
    for (id, (grad, shape)) in held {
        let grad = Tensor::from_vec(grad, shape, loss.device())?;
        // A weight that candle's own ops also used (none in vaelab's models) gets both parts.
        let grad = match grads.get_id(id) {
            Some(other) => (other + grad)?,
            None => grad,
        };
        grads.insert_id(id, grad);
    }
    Ok(grads)
}

/// The gradient `grad` of `weight` for candle: `None` when a [`backward`] on this thread holds
/// it (added to what it holds for `weight` already), else the tensor.
pub(crate) fn hold(weight: &Tensor, grad: Vec<f32>) -> Result<Option<Tensor>> {
    let grad = HELD.with(|h| {
        let mut h = h.borrow_mut();
        // Only a variable's own gradient can be held: any other tensor's must flow on.
        match h.as_mut().filter(|_| weight.is_variable()) {
            Some(held) => {
                match held.get_mut(&weight.id()) {
                    Some((sum, _)) => sum.iter_mut().zip(&grad).for_each(|(s, g)| *s += g),
                    None => {
                        held.insert(weight.id(), (grad, weight.shape().clone()));
                    }
                }
                None
            }
            None => Some(grad),
        }
    });
    grad.map(|g| Tensor::from_vec(g, weight.shape(), weight.device()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::conv;
    use crate::dense::dense;
    use crate::testing::{bits, wave};
    use candle_core::{Device, Var};

    /// Bit for bit the gradients of candle's own backward: a conv layer's weights, a dense
    /// weight used once and one used twice (its two parts summed), and none for the data.
    #[test]
    fn gives_candle_backwards_gradients_bit_for_bit() {
        let dev = Device::Cpu;
        let var = |n: usize, shape: &[usize], s: f32| {
            Var::from_vec(wave(n, s), shape.to_vec(), &dev).unwrap()
        };
        let (cw, cb) = (var(3 * 16, &[3, 1, 4, 4], 0.1), var(3, &[3], 0.7));
        let w1 = var(6 * 48, &[6, 48], 0.3);
        let b1 = var(6, &[6], 1.0);
        let w2 = var(6 * 6, &[6, 6], 0.2);
        let b2 = var(6, &[6], 0.5);
        // Two 1×8×8 images → 3×4×4 maps → 48 features per image.
        let x = Tensor::from_vec(wave(2 * 64, 2.0), (2, 1, 8, 8), &dev).unwrap();
        let loss = || {
            let c = conv(&x, &cw, &cb, true, false).unwrap();
            let h = dense(&c.flatten_from(1).unwrap(), &w1, &b1, true).unwrap();
            // w2 twice, as a chain: its gradient has two contributions.
            let y = dense(&dense(&h, &w2, &b2, true).unwrap(), &w2, &b2, false).unwrap();
            (&y * &y).unwrap().sum_all().unwrap()
        };
        let plain = loss().backward().unwrap();
        let held = backward(&loss()).unwrap();
        let vars = [(&cw, "conv W"), (&cb, "conv b"), (&w1, "w1"), (&b1, "b1")];
        for (var, name) in vars.into_iter().chain([(&w2, "w2"), (&b2, "b2")]) {
            let values = |g: &GradStore| {
                let g = g.get(var.as_tensor()).unwrap();
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            };
            let (a, b) = (values(&plain), values(&held));
            assert!(
                a.iter().any(|g| *g != 0.0),
                "{name}: a zero gradient tests nothing"
            );
            assert_eq!(bits(&a), bits(&b), "{name}");
        }
        assert!(held.get(&x).is_none());
        // Outside `backward` nothing is held: the plain backward above had every gradient.
        assert!(HELD.with(|h| h.borrow().is_none()));
    }
}
