//! Rectified linear unit, elementwise on any shape.
//!
//! ```text
//! x, y, dy, dx  [n, h, w, c]      y = max(x, 0);  dx = dy where y > 0, else 0
//! ```
//! (`dx` at exactly `x = 0` is 0, as in TensorFlow and PyTorch. NaN inputs propagate.)

use crate::error::{check_len, Error};

/// Forward pass: `y = max(x, 0)`.
pub fn forward(x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    check_len("relu output", y, x.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = if v > 0.0 || v.is_nan() { v } else { 0.0 };
    }
    Ok(())
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
