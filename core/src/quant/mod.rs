//! Int8 inference: the same layer list as [`crate::Arch`], run on 8-bit activations and weights
//! with 32-bit accumulators and integer-only requantization, as TensorFlow Lite
//! specifies it (and CMSIS-NN implements it), so that the host and a microcontroller
//! compute bit-identical outputs.
//!
//! # The arithmetic, including every rounding rule
//!
//! ```text
//! activation  real = s * (q - z)        q: i8, one (s, z) per tensor (asymmetric)
//! weight      real = s_w[c] * q         q: i8 in [-127, 127], one s_w per output channel (symmetric)
//! bias        real = s_in * s_w[c] * q  q: i32
//!
//! conv / dense, output channel c:
//!   acc  = bias_q[c] + sum over the window of (x_q - z_in) * w_q        (i32; exact for
//!          any real model, and wrapping, as SMLAD does, for a file whose biases push
//!          it past i32; padding positions contribute nothing: they are real zeros)
//!   y_q  = clamp(z_out + mbqm(acc, m[c], shift[c]), act_min, act_max)   (the sum saturating)
//!   where m[c] * 2^shift[c] ~ s_in * s_w[c] / s_out, m in [2^30, 2^31)   (quantize_multiplier)
//!   and ReLU is the clamp act_min = z_out (the quantized real zero)
//! max-pool: the largest q of the window (same s, z in and out; padding ignored)
//! ReLU:     max(q, z)   (after a fused conv it changes nothing)
//! average pool, global average pool: sum of the window's in-bounds q (i32) / count,
//!           rounded half away from zero ((sum +- count/2) / count, truncating), then the
//!           clamp (same s, z in and out)
//! ReLU6:    clamp(q, act_min, act_max) = [z, z + round(6 / s)] (folded into a preceding
//!           conv / depthwise / dense clamp by the quantizer, where it then changes nothing)
//! depthwise conv: as conv, one input channel per output channel (weights [c*m, k, k, 1])
//! flatten, dropout: copies
//!
//! mbqm(x, m, shift) = rdivpot(srdhm(x * 2^max(shift, 0), m), max(-shift, 0))
//! srdhm(a, b)       = (a*b + (a*b >= 0 ? 2^30 : 1 - 2^30)) / 2^31, the division
//!                     truncating toward zero; i32::MAX for a = b = i32::MIN
//! rdivpot(x, e)     = (x >> e) + (remainder > threshold), remainder = x & (2^e - 1),
//!                     threshold = (2^e - 1) >> 1, plus 1 if x < 0   (round half away from zero)
//! quantize_multiplier(r): r = f * 2^e with f in [0.5, 1) (frexp); m = round(f * 2^31),
//!                     half away from zero; m = 2^31 becomes 2^30 with e + 1; e < -31 gives 0
//! ```
//!
//! Weights are stored output-channel first (`[cout, kh, kw, cin]` for convolutions,
//! `[out, in]` for dense layers, as CMSIS-NN does) so that each output is one contiguous
//! dot product.

//!
//! This module holds the arithmetic and the int8 types that every layer shares; each
//! layer's int8 kernel is in its file under [`crate::layers`] (the convolution's in
//! `layers/conv2d/int8.rs`), and [`infer_i8`] runs a network ([`infer`]).

use crate::error::Error;

pub mod infer;
pub use infer::{argmax_i8, infer_i8, QNet};

/// Scale and zero point of an int8 tensor: `real = scale * (q - zero)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Real value of one step.
    pub scale: f32,
    /// The `q` that stands for real zero, in `[-128, 127]`.
    pub zero: i32,
}

impl QParams {
    /// The real value of `q`.
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero) as f32
    }
}

/// The int8 parameters of one layer with weights.
#[derive(Clone, Copy, Debug)]
pub struct QTensors<'a> {
    /// Weights, output channel first (see the module doc).
    pub weights: &'a [i8],
    /// Biases in units of `s_in * s_w[c]`.
    pub bias: &'a [i32],
    /// Per-output-channel multiplier `m[c]` in `[2^30, 2^31)` (or 0).
    pub multiplier: &'a [i32],
    /// Per-output-channel power-of-two exponent.
    pub shift: &'a [i32],
}

/// One layer of an int8 network: its parameters (convolution and dense layers), the
/// quantization of its output and the clamp applied to it.
#[derive(Clone, Copy, Debug)]
pub struct QLayer<'a> {
    /// Parameters of convolution and dense layers; `None` for the others.
    pub params: Option<QTensors<'a>>,
    /// Scale and zero point of the layer's output.
    pub output: QParams,
    /// Smallest output value (the zero point when a ReLU is fused in, else -128).
    pub act_min: i8,
    /// Largest output value.
    pub act_max: i8,
}

/// TensorFlow Lite's `SaturatingRoundingDoublingHighMul`: `round(a * b / 2^31)`.
pub const fn srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 {
        1i64 << 30
    } else {
        1 - (1i64 << 30)
    };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// TensorFlow Lite's `RoundingDivideByPOT`: `x / 2^e`, rounded half away from zero.
pub const fn rdivpot(x: i32, e: u32) -> i32 {
    if e == 0 {
        return x;
    }
    let e = if e > 31 { 31 } else { e };
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> e) + (remainder > threshold) as i32
}

/// TensorFlow Lite's `MultiplyByQuantizedMultiplier`: `x * m * 2^shift / 2^31`, with
/// the rounding of [`srdhm`] then [`rdivpot`].
pub const fn requantize(x: i32, m: i32, shift: i32) -> i32 {
    let left = if shift > 0 { shift as u32 } else { 0 };
    let right = if shift > 0 { 0 } else { shift.unsigned_abs() };
    rdivpot(srdhm(x.wrapping_shl(left), m), right)
}

/// [`requantize`] for one output channel, its shift split once into the left shift and
/// the rounding divide's exponent, mask and threshold: the same values (tested), fewer
/// instructions per output value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Requant {
    m: i32,
    left: u32,
    right: u32,
    mask: i32,
}

impl Requant {
    /// The requantization by `m * 2^shift`.
    pub(crate) const fn new(m: i32, shift: i32) -> Self {
        let left = if shift > 0 { shift as u32 } else { 0 };
        let right = if shift > 0 { 0 } else { shift.unsigned_abs() };
        let right = if right > 31 { 31 } else { right };
        Requant {
            m,
            left,
            right,
            mask: ((1i64 << right) - 1) as i32,
        }
    }

    /// `requantize(x, m, shift)`.
    #[inline(always)]
    pub(crate) const fn apply(&self, x: i32) -> i32 {
        let v = srdhm(x.wrapping_shl(self.left), self.m);
        let threshold = (self.mask >> 1) + (v < 0) as i32;
        (v >> self.right) + ((v & self.mask) > threshold) as i32
    }
}

/// Splits a positive real multiplier into `(m, shift)` with `m` in `[2^30, 2^31)`
/// (see the module doc); `(0, 0)` for zero, negative or non-finite input.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real.is_nan() || real <= 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let (frac, mut exp) = libm::frexp(real);
    let mut q = libm::round(frac * (1i64 << 31) as f64) as i64;
    if q == 1i64 << 31 {
        q /= 2;
        exp += 1;
    }
    if exp < -31 {
        return (0, 0);
    }
    (q as i32, exp)
}

/// `v` clamped to `[lo, hi]`, as an i8 (`hi` wins if `lo > hi`, which the weights
/// parsers refuse; `i32::clamp` would panic there).
pub(crate) fn clamp_i8(v: i32, lo: i8, hi: i8) -> i8 {
    v.max(lo as i32).min(hi as i32) as i8
}

/// The parameters of a conv2d or dense layer (an error naming `name` if missing).
pub(crate) fn params_of<'a>(l: &QLayer<'a>, name: &'static str) -> Result<QTensors<'a>, Error> {
    l.params.ok_or(Error::InvalidParameter { name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn rounding_rules() {
        // Halves round away from zero.
        assert_eq!(
            [rdivpot(5, 1), rdivpot(-5, 1), rdivpot(3, 1), rdivpot(-3, 1)],
            [3, -3, 2, -2]
        );
        assert_eq!([rdivpot(6, 2), rdivpot(-6, 2), rdivpot(7, 0)], [2, -2, 7]);
        assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(srdhm(1 << 30, 1 << 30), 1 << 29);
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        assert_eq!(quantize_multiplier(0.75), (1_610_612_736, 0));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
        // Requant gives requantize's values, for every shift the files allow.
        let mut rng = Rng::new(9);
        for _ in 0..20_000 {
            let m = (1 << 30) + rng.below(1 << 30) as i32;
            let shift = rng.below(62) as i32 - 31;
            let x = (rng.below(u32::MAX as usize) as u32) as i32;
            assert_eq!(
                Requant::new(m, shift).apply(x),
                requantize(x, m, shift),
                "{x} {m} {shift}"
            );
        }
        // requantize(x, m, shift) is round(x * real) within one step, for many reals.
        for _ in 0..20_000 {
            let real = libm::exp(-12.0 * rng.uniform_f64());
            let (m, sh) = quantize_multiplier(real);
            let x = (rng.below(2_000_001) as i32) - 1_000_000;
            let got = requantize(x, m, sh) as f64;
            let want = x as f64 * real;
            assert!(
                (got - want).abs() <= 0.5 + 1e-6 * want.abs() + 1.0,
                "{x} * {real}: {got} vs {want}"
            );
        }
    }
}
