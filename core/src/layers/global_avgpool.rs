//! Global average pooling: `[n, h, w, c] -> [n, c]`, the mean of each channel over the
//! whole image.
//!
//! ```text
//! y[n, ch] = sum_{y,x} x[n, y, x, ch] / (h * w)          dx[n, y, x, ch] = dy[n, ch] / (h * w)
//! ```
//! The output is flat, so a dense layer can follow directly. The int8 pass (same scale
//! and zero point in and out) is the average pool's ([`crate::layers::avgpool`]): the
//! `q`s summed in 32 bits, divided by `h * w` rounding half away from zero, clamped.

use super::avgpool::div_round;
use super::{Record, Site};
use crate::error::{Error, ShapeError};
use crate::quant::{clamp_i8, QLayer};
use crate::shape::Shape;

/// The kind code of global average pooling in the weights file; its record's fields are
/// all 0.
pub const KIND: u8 = 9;
/// The Rust expression of the layer.
pub(crate) const RUST: &str = "microconv::Layer::GlobalAvgPool";

/// Checks a record of [`KIND`].
pub(crate) fn from_record(r: &Record) -> Result<(), &'static str> {
    Record::unused_zero(&[r.padding as u32, r.a, r.b, r.c])
}

/// Output shape `(1, 1, c)` for `input`.
pub const fn output_shape(input: Shape) -> Result<Shape, ShapeError> {
    if input.is_empty() {
        return Err(ShapeError::Zero);
    }
    // h * w * c fits (checked by the input's own length); the sum in int8 is i32: at
    // most 128 * h * w, which must fit.
    match (input.h * input.w).checked_mul(128) {
        Some(v) if v <= i32::MAX as usize => Ok(Shape::flat(input.c)),
        _ => Err(ShapeError::Overflow),
    }
}

fn check(input: Shape, n: usize, x: usize, y: usize, what: [&'static str; 2]) -> Result<(), Error> {
    output_shape(input).map_err(|reason| Error::Shape {
        layer: usize::MAX,
        reason,
    })?;
    Error::expect_len(what[0], n.saturating_mul(input.len()), x)?;
    Error::expect_len(what[1], n.saturating_mul(input.c), y)
}

/// Forward pass over a batch of `n` samples.
pub fn forward(input: Shape, n: usize, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
    check(
        input,
        n,
        x.len(),
        y.len(),
        ["global avgpool input", "global avgpool output"],
    )?;
    let c = input.c;
    let inv = 1.0 / (input.h * input.w) as f32;
    for (xi, yi) in x.chunks_exact(input.len()).zip(y.chunks_exact_mut(c)) {
        yi.fill(0.0);
        for px in xi.chunks_exact(c) {
            for (a, &v) in yi.iter_mut().zip(px) {
                *a += v;
            }
        }
        yi.iter_mut().for_each(|a| *a *= inv);
    }
    Ok(())
}

/// Backward pass: overwrites `dx` with `dL/dx`.
pub fn backward(input: Shape, n: usize, dy: &[f32], dx: &mut [f32]) -> Result<(), Error> {
    check(
        input,
        n,
        dx.len(),
        dy.len(),
        [
            "global avgpool input gradient",
            "global avgpool output gradient",
        ],
    )?;
    let c = input.c;
    let inv = 1.0 / (input.h * input.w) as f32;
    for (dxi, dyi) in dx.chunks_exact_mut(input.len()).zip(dy.chunks_exact(c)) {
        for px in dxi.chunks_exact_mut(c) {
            for (a, &v) in px.iter_mut().zip(dyi) {
                *a = v * inv;
            }
        }
    }
    Ok(())
}

/// Int8 forward pass (see the module doc).
pub(crate) fn forward_i8(site: &Site, l: &QLayer<'_>, x: &[i8], y: &mut [i8]) -> Result<(), Error> {
    let input = site.input;
    check(
        input,
        site.n,
        x.len(),
        y.len(),
        ["int8 global avgpool input", "int8 global avgpool output"],
    )?;
    let c = input.c;
    let count = (input.h * input.w) as i32;
    for (xi, yi) in x.chunks_exact(input.len()).zip(y.chunks_exact_mut(c)) {
        for (ch, o) in yi.iter_mut().enumerate() {
            let sum: i32 = xi.chunks_exact(c).map(|px| px[ch] as i32).sum();
            *o = clamp_i8(div_round(sum, count), l.act_min, l.act_max);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::quant::QParams;
    use crate::testutil::{check_grad, dot, rand_vec};
    use std::vec;

    #[test]
    fn means_and_gradients() {
        let input = Shape::new(2, 2, 2);
        let x = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 6.0, 60.0];
        let mut y = [0.0; 2];
        forward(input, 1, &x, &mut y).unwrap();
        assert_eq!(y, [3.0, 30.0]);
        let input = Shape::new(3, 5, 4);
        let n = 2;
        let x = rand_vec(1, n * input.len(), 1.0);
        let r = rand_vec(2, n * 4, 1.0);
        let mut dx = vec![9.0; x.len()];
        backward(input, n, &r, &mut dx).unwrap();
        check_grad("global avgpool dx", &x, &dx, 1e-2, 1e-3, |x| {
            let mut y = vec![0.0; n * 4];
            forward(input, n, x, &mut y).unwrap();
            dot(&y, &r)
        });
        assert!(forward(input, n, &x[1..], &mut [0.0; 8]).is_err());
        assert!(backward(input, n, &r[1..], &mut dx).is_err());
        assert_eq!(output_shape(Shape::new(0, 3, 3)), Err(ShapeError::Zero));
        assert_eq!(
            output_shape(Shape::new(1 << 16, 1 << 16, 1)),
            Err(ShapeError::Overflow)
        );
    }

    #[test]
    fn int8_is_the_rounded_mean() {
        let input = Shape::new(3, 3, 2);
        let n = 3;
        let mut rng = crate::rng::Rng::new(8);
        let xq: vec::Vec<i8> = (0..n * input.len())
            .map(|_| (rng.below(256) as i32 - 128) as i8)
            .collect();
        let l = QLayer {
            params: None,
            output: QParams {
                scale: 0.1,
                zero: 0,
            },
            act_min: -128,
            act_max: 127,
        };
        let site = Site {
            index: 0,
            input,
            output: Shape::flat(2),
            n,
        };
        let mut yq = vec![0i8; n * 2];
        forward_i8(&site, &l, &xq, &mut yq).unwrap();
        for s in 0..n {
            for ch in 0..2 {
                let sum: i32 = (0..9).map(|p| xq[s * 18 + p * 2 + ch] as i32).sum();
                // 9 never splits a tie: the nearest integer to the exact mean.
                let want = (sum as f64 / 9.0).round() as i8;
                assert_eq!(yq[s * 2 + ch], want);
            }
        }
    }
}
