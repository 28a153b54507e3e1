//! The layers, one file each. Every layer is a pair of functions over flat `f32` slices:
//!
//! - `forward(x) -> y`, and
//! - `backward(x, y, dy) -> dx` (plus `dw`, `db` for layers with parameters, which are
//!   **accumulated** with `+=` so that gradients of several batches can be summed;
//!   `dx` is overwritten).
//!
//! Data is NHWC (`[n, h, w, c]`, channels fastest); conv weights are HWIO
//! (`[kh, kw, c_in, c_out]`) and dense weights `[in, out]`, as in TensorFlow and CMSIS-NN,
//! so parameters can be compared with TensorFlow's directly.

pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod flatten;
pub mod maxpool;
pub mod relu;

pub use conv2d::{Conv2d, ConvAlgo, ConvKernels};
pub use dense::Dense;
pub use dropout::Dropout;
pub use maxpool::MaxPool;
