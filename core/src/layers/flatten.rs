//! Flatten: `[n, h, w, c] -> [n, h*w*c]`.
//!
//! NHWC is already contiguous per sample, so this is a copy that changes only the shape
//! the next layer sees (a dense layer insists on a flat input, so the intent is explicit).

use crate::error::{check_len, Error};

/// Forward pass: `y = x`.
pub fn forward(x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    check_len("flatten output", y, x.len())?;
    y.copy_from_slice(x);
    Ok(())
}

/// Backward pass: `dx = dy`.
pub fn backward(dy: &[f32], dx: &mut [f32]) -> Result<(), Error> {
    forward(dy, dx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_both_ways() {
        let mut y = [0.0; 3];
        forward(&[1.0, 2.0, 3.0], &mut y).unwrap();
        assert_eq!(y, [1.0, 2.0, 3.0]);
        let mut dx = [0.0; 3];
        backward(&y, &mut dx).unwrap();
        assert_eq!(dx, y);
        assert!(forward(&[1.0], &mut dx).is_err());
    }
}
