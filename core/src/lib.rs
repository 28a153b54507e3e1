//! # microconv
//!
//! A `#![no_std]`, allocation-free library of conv-net layers with forward **and**
//! backward passes, numerically stable losses and optimizers. Every byte of memory
//! comes from slices the caller hands in, so the same code trains on a desktop and
//! runs (or fine-tunes) on a microcontroller.
//!
//! ## Layout
//! - [`layers`]: one file per layer kind (`conv2d`, `maxpool`, `dense`, `relu`, `dropout`,
//!   `flatten`): its shapes, `forward` / `backward` over flat `f32` slices in NHWC order,
//!   its int8 kernel and its weights-file record; [`Layer`] and the one dispatch over it.
//! - [`loss`]: `log_sum_exp`, `softmax`, `log_softmax` and three cross-entropies
//!   (the fused, stable one, the log-softmax one and the seed's naive one).
//! - [`optim`]: Adam and SGD with momentum, updating parameters in place.
//! - [`rng`]: a small deterministic PRNG (SplitMix64) and hash; [`init`]: the initialisers.
//! - [`arch`]: a network as a `const` layer list ([`Arch`]) and every `const fn` size;
//!   [`net`]: the forward and backward passes and the whole training step over them.
//! - [`gemm`]: the matrix-multiply hook: a portable reference kernel here, faster ones
//!   plugged in by the host (as are convolution kernels: [`layers::ConvKernels`]).
//! - [`quant`]: int8 inference (TensorFlow Lite's arithmetic, every rounding rule written
//!   out), bit-identical on the host and a Cortex-M4; [`weights`]: the weights file, one
//!   header for both precisions ([`weights::Precision::of`]), float and int8 tensors, read
//!   in place.
//!
//! Features: `micromath` (fast approximate `exp`/`ln`), `dsp` (the int8 convolution's
//! `SMLAD`/`SXTB16` through inline assembly on Armv7E-M and later; the crate's only
//! `unsafe` code, each block justified where it stands), `defmt` (`defmt::Format` for the
//! error types, so that firmware logs them without `core::fmt`).
//!
//! ## Example: one training step, every buffer declared statically
//! ```
//! use microconv::{Arch, Layer, Shape, Padding, net, loss::{Loss, Reduction}, optim::{Adam, Optimizer}};
//! use microconv::layers::{Conv2d, MaxPool, Dense};
//!
//! const ARCH: Arch = Arch::new(Shape::new(8, 8, 1), &[
//!     Layer::Conv2d(Conv2d::new(3, 4)),
//!     Layer::Relu,
//!     Layer::MaxPool(MaxPool::new(2, 2, Padding::Valid)),
//!     Layer::Flatten,
//!     Layer::Dense(Dense::new(3)),
//! ]);
//! const BATCH: usize = 2;
//! const OPT: Optimizer = Optimizer::Adam(Adam::new(1e-3));
//! let mut params = [0.0f32; ARCH.param_count()];
//! let mut grads = [0.0f32; ARCH.param_count()];
//! let mut state = [0.0f32; OPT.state_len(ARCH.param_count())];
//! let mut acts = [0.0f32; ARCH.activations_len(BATCH)];
//! let mut gbuf = [0.0f32; ARCH.grad_buffer_len(BATCH)];
//! microconv::init::init_params(&ARCH, microconv::init::Init::He, 42, &mut params).unwrap();
//!
//! let x = [0.5f32; 8 * 8 * BATCH];
//! let labels = [0u8, 2];
//! let mut opt = OPT;
//! let mut ws = net::Workspace { acts: &mut acts, grad: &mut gbuf, scratch: &mut [] };
//! let stats = net::train_step(&ARCH, &mut params, &mut grads, &mut state, &mut ws, &x, &labels,
//!     Loss::Fused, Reduction::Mean, &mut opt, 7, &net::Exec::REFERENCE).unwrap();
//! assert!(stats.value.is_finite());
//! ```
#![no_std]
#![deny(missing_docs)]
// No unsafe code, with one exception: the Cortex-M DSP instructions of the int8
// convolution (`layers::conv2d::int8::dsp`, feature `dsp`, Arm only), each block justified in place.
#![deny(unsafe_code)]
// Input-dependent paths return errors, never panic: no unwrap/expect/panic! outside
// tests. Indexing stays, as a documented exception (README, Reliability): the kernels
// index buffers whose lengths were checked on entry, and the weights-file readers
// (weights/) index after explicit length checks and are fuzzed (fuzz/).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// build.rs sets this when the `dsp` feature is on for an Arm core without the DSP
// extension (Cortex-M0/M0+/M3/M23, or an Armv8-M Mainline core not named as M33/M55...).
#[cfg(microconv_dsp_unavailable)]
compile_error!(
    "microconv: the `dsp` feature needs an Arm core with the DSP extension (Armv7E-M: thumbv7em-*, \
     or Armv8-M Mainline with `-C target-cpu=cortex-m33` (m35p, m55, m85) or `-C target-feature=+dsp`); \
     this target has no SMLAD/SXTB16. Build without `dsp`: the portable int8 kernels give the same \
     results bit for bit."
);

pub mod arch;
pub mod crc32;
pub mod error;
pub mod gemm;
pub mod init;
pub mod layers;
pub mod loss;
pub mod math;
pub mod net;
pub mod optim;
pub mod plan;
pub mod quant;
pub mod rng;
pub mod shape;
pub mod weights;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod testutil;

pub use arch::Arch;
pub use error::Error;
pub use layers::Layer;
pub use shape::{Padding, Shape};

/// The float weights file under its old path: [`weights::float`] and the shared
/// [`weights`] items (kept so that code written against `microconv::format` still builds).
pub mod format {
    pub use crate::weights::float::*;
    pub use crate::weights::{Aligned, FormatError, MAGIC, MAX_LAYERS};
}

/// The int8 weights file under its old path: [`weights::int8`].
pub mod qformat {
    pub use crate::weights::int8::*;
}

/// Architectures that ship with microconv.
pub mod archs;

/// The Rust examples of the crate's README (crates.io's page), compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeDoctests;

/// The Rust examples of the repository's README, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
