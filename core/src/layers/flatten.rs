//! Flatten: `[n, h, w, c] -> [n, h*w*c]`.
//!
//! NHWC is already contiguous per sample, so this is a copy that changes only the shape
//! the next layer sees (a dense layer insists on a flat input, so the intent is explicit).

use super::{Record, Site};
use crate::error::{check_len, Error};

/// The kind code of flatten in the weights file; its record's fields are all 0.
pub const KIND: u8 = 6;
/// The Rust expression of the layer.
pub(crate) const RUST: &str = "microconv::Layer::Flatten";

/// Checks a record of [`KIND`].
pub(crate) fn from_record(r: &Record) -> Result<(), &'static str> {
    Record::unused_zero(&[r.padding as u32, r.a, r.b, r.c])
}

/// Int8 forward pass: a copy (also dropout's, which is the identity in inference).
pub(crate) fn forward_i8(site: &Site, x: &[i8], y: &mut [i8]) -> Result<(), Error> {
    let xs = x.chunks_exact(site.input.len()).take(site.n);
    for (xi, yi) in xs.zip(y.chunks_exact_mut(site.output.len())) {
        yi.copy_from_slice(xi);
    }
    Ok(())
}

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
