//! Rectified linear unit, elementwise on any shape.
//!
//! ```text
//! x, y, dy, dx  [n, h, w, c]      y = max(x, 0);  dx = dy where y > 0, else 0
//! ```
//! (`dx` at exactly `x = 0` is 0, as in TensorFlow and PyTorch. NaN inputs propagate.)

use super::{Record, Site};
use crate::error::{check_len, Error};

/// The kind code of ReLU in the weights file; its record's fields are all 0.
pub const KIND: u8 = 4;
/// The Rust expression of the layer.
pub(crate) const RUST: &str = "microconv::Layer::Relu";

/// Checks a record of [`KIND`].
pub(crate) fn from_record(r: &Record) -> Result<(), &'static str> {
    Record::unused_zero(&[r.padding as u32, r.a, r.b, r.c])
}

/// Int8 forward pass: `max(q, z_in)` (the quantized real zero).
pub(crate) fn forward_i8(site: &Site, z_in: i32, x: &[i8], y: &mut [i8]) -> Result<(), Error> {
    let xs = x.chunks_exact(site.input.len()).take(site.n);
    for (xi, yi) in xs.zip(y.chunks_exact_mut(site.output.len())) {
        for (o, &v) in yi.iter_mut().zip(xi) {
            *o = (v as i32).max(z_in) as i8;
        }
    }
    Ok(())
}

/// Forward pass: `y = max(x, 0)`.
pub fn forward(x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    check_len("relu output", y, x.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = if v > 0.0 || v.is_nan() { v } else { 0.0 };
    }
    Ok(())
}

/// [`forward`] in place: `x = max(x, 0)` (the same values).
pub(crate) fn forward_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = if *v > 0.0 || v.is_nan() { *v } else { 0.0 };
    }
}

/// The int8 pass in place: `x = max(x, z_in)` (the same values as `forward_i8`).
pub(crate) fn forward_in_place_i8(z_in: i32, x: &mut [i8]) {
    for v in x.iter_mut() {
        *v = (*v as i32).max(z_in) as i8;
    }
}

/// Backward pass from the forward output `y`: `dx = dy * (y > 0)`.
pub fn backward(y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<(), Error> {
    check_len("relu output gradient", dy, y.len())?;
    check_len("relu input gradient", dx, y.len())?;
    for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
        *d = if v > 0.0 { g } else { 0.0 };
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
    fn gradient_matches_finite_differences() {
        let x = rand_vec(1, 40, 1.0);
        let r = rand_vec(2, 40, 1.0);
        let mut y = vec![0.0; 40];
        forward(&x, &mut y).unwrap();
        let mut dx = vec![0.0; 40];
        backward(&y, &r, &mut dx).unwrap();
        check_grad("relu dx", &x, &dx, 1e-3, 1e-3, |x| {
            let mut y = vec![0.0; 40];
            forward(x, &mut y).unwrap();
            dot(&y, &r)
        });
        assert!(forward(&x, &mut y[..3]).is_err());
    }
}
