//! ReLU6, elementwise on any shape (MobileNet's activation).
//!
//! ```text
//! x, y, dy, dx  [n, h, w, c]      y = min(max(x, 0), 6);  dx = dy where 0 < x < 6, else 0
//! ```
//! (`dx` at exactly 0 and 6 is 0, as in TensorFlow's `Relu6Grad`. NaN inputs propagate.)
//!
//! In int8 it is a clamp to `[q(0), q(6)]`: the quantizer folds it into the output clamp
//! of a preceding convolution or dense layer (`act_min`, `act_max`) as it does ReLU, and
//! a ReLU6 layer's own int8 pass applies its record's clamp.

use super::{Record, Site};
use crate::error::{check_len, Error};
use crate::quant::{clamp_i8, QLayer};

/// The kind code of ReLU6 in the weights file; its record's fields are all 0.
pub const KIND: u8 = 10;
/// The Rust expression of the layer.
pub(crate) const RUST: &str = "microconv::Layer::Relu6";
/// The upper bound.
const SIX: f32 = 6.0;

/// Checks a record of [`KIND`].
pub(crate) fn from_record(r: &Record) -> Result<(), &'static str> {
    Record::unused_zero(&[r.padding as u32, r.a, r.b, r.c])
}

/// Int8 forward pass: `q` clamped to the layer's `[act_min, act_max]` (the quantized 0
/// and 6, written by the quantizer).
pub(crate) fn forward_i8(site: &Site, l: &QLayer<'_>, x: &[i8], y: &mut [i8]) -> Result<(), Error> {
    check_len("int8 relu6 input", x, site.n * site.input.len())?;
    check_len("int8 relu6 output", y, site.n * site.output.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = clamp_i8(v as i32, l.act_min, l.act_max);
    }
    Ok(())
}

/// Forward pass: `y = min(max(x, 0), 6)`.
pub fn forward(x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    check_len("relu6 output", y, x.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = if v.is_nan() {
            v
        } else if v > SIX {
            SIX
        } else if v > 0.0 {
            v
        } else {
            0.0
        };
    }
    Ok(())
}

/// Backward pass from the forward output `y`: `dx = dy * (0 < y < 6)`.
pub fn backward(y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<(), Error> {
    check_len("relu6 output gradient", dy, y.len())?;
    check_len("relu6 input gradient", dx, y.len())?;
    for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
        *d = if v > 0.0 && v < SIX { g } else { 0.0 };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testutil::{check_grad, dot, rand_vec};
    use std::vec;

    #[test]
    fn clamps_and_gradient_matches_finite_differences() {
        let mut y = [0.0; 5];
        forward(&[-1.0, 0.0, 3.0, 6.0, 7.5], &mut y).unwrap();
        assert_eq!(y, [0.0, 0.0, 3.0, 6.0, 6.0]);
        let mut dx = [9.0; 5];
        backward(&y, &[1.0; 5], &mut dx).unwrap();
        assert_eq!(dx, [0.0, 0.0, 1.0, 0.0, 0.0]);
        // Inputs spread over [-8, 8): both kinks are crossed.
        let x = rand_vec(1, 60, 8.0);
        let r = rand_vec(2, 60, 1.0);
        let mut y = vec![0.0; 60];
        forward(&x, &mut y).unwrap();
        let mut dx = vec![0.0; 60];
        backward(&y, &r, &mut dx).unwrap();
        check_grad("relu6 dx", &x, &dx, 1e-3, 1e-3, |x| {
            let mut y = vec![0.0; 60];
            forward(x, &mut y).unwrap();
            dot(&y, &r)
        });
        assert!(forward(&x, &mut y[..3]).is_err());
        assert!(backward(&y, &r[1..], &mut dx).is_err());
    }
}
