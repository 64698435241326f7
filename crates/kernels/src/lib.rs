//! The hot ops of vaelab on the CPU, knowing nothing of VAEs: fused dense and 4×4 stride-2 conv
//! layers with hand-written backward passes, a dense layer streamed into a row reduction (direct convolutions at 16 or 8 lanes where the CPU
//! has them), a fused Adam, fast transcendental functions, thread pools, and candle's stock ops as
//! the reference each fused op is tested against. [`Kernels`] is the one switch between them.

pub mod adam;
mod backward;
mod choice;
pub mod conv;
mod dense;
#[cfg(target_arch = "x86_64")]
mod direct;
pub mod fastmath;
mod matmul;
pub mod ops;
mod ordered;
pub mod reference;
pub mod simd;
pub mod streamed;
#[cfg(test)]
mod testing;
pub mod threads;

pub use adam::{Adam, AdamState};
pub use backward::backward;
pub use choice::Kernels;
pub use simd::{conv_simd, cpu_line, loop_simd, Simd};
pub use streamed::{PanelSink, StreamedDense};
