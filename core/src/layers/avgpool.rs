//! Average pooling with SAME/VALID padding.
//!
//! ```text
//! x  [n, h,  w,  c]
//! y  [n, oh, ow, c]     y[n,oy,ox,c] = mean over the window's in-bounds positions of x[n, oy*s+ky-pt, ox*s+kx-pl, c]
//! ```
//! As in TensorFlow, SAME padding averages over the in-bounds positions only: a border
//! window holding 4 of its 9 positions divides by 4, not 9. The backward pass gives each
//! in-bounds input of a window `dy / count`.
//!
//! The int8 pass (input and output share scale and zero point) is TensorFlow Lite's:
//! the `q`s of the window summed in 32 bits, divided by the count rounding half away
//! from zero, clamped to the layer's `[act_min, act_max]`.

use core::fmt;

use super::{Record, Site};
use crate::error::{check_len, Error, ShapeError};
use crate::quant::{clamp_i8, QLayer};
use crate::shape::{window_axis, window_output, Padding, Shape};

/// The kind code of average pooling in the weights file; its record is `(padding, a =
/// size, b = stride)`, `c` 0.
pub const KIND: u8 = 8;

/// An average-pool layer's configuration: a square `size x size` window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool {
    /// Window height and width.
    pub size: usize,
    /// Stride along both axes.
    pub stride: usize,
    /// Border handling.
    pub padding: Padding,
}

/// `sum / count` rounded half away from zero (TensorFlow Lite's int8 average pool);
/// `count` is at least 1.
pub(crate) const fn div_round(sum: i32, count: i32) -> i32 {
    if sum > 0 {
        (sum + count / 2) / count
    } else {
        (sum - count / 2) / count
    }
}

impl AvgPool {
    /// A `size x size` window with the given stride and padding.
    pub const fn new(size: usize, stride: usize, padding: Padding) -> Self {
        AvgPool {
            size,
            stride,
            padding,
        }
    }

    /// Output shape for `input`.
    pub const fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        window_output(input, self.size, self.stride, self.padding, input.c)
    }

    /// This layer's record in the weights file.
    pub(crate) fn record(&self) -> Record {
        Record {
            kind: KIND,
            padding: self.padding.code(),
            a: self.size as u32,
            b: self.stride as u32,
            c: 0,
        }
    }

    /// The layer a record of [`KIND`] describes.
    pub(crate) fn from_record(r: &Record) -> Result<Self, &'static str> {
        Record::unused_zero(&[r.c])?;
        Ok(AvgPool::new(r.a as usize, r.b as usize, r.padding()?))
    }

    /// The Rust expression that builds this layer.
    pub(crate) fn write_rust(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "microconv::Layer::AvgPool(microconv::layers::AvgPool::new({}, {}, {}))",
            self.size,
            self.stride,
            self.padding.rust_path()
        )
    }

    /// Output shape and padding before (rows, columns) for `input`.
    fn geom(&self, input: Shape) -> Result<(Shape, usize, usize), Error> {
        let e = |reason| Error::Shape {
            layer: usize::MAX,
            reason,
        };
        let output = self.output_shape(input).map_err(e)?;
        let (_, pt) = window_axis(input.h, self.size, self.stride, self.padding).map_err(e)?;
        let (_, pl) = window_axis(input.w, self.size, self.stride, self.padding).map_err(e)?;
        Ok((output, pt, pl))
    }

    /// Calls `f(out_pixel, y0, y1, x0, x1)` for every output pixel with its window
    /// `[y0, y1) x [x0, x1)` clipped to the input (never empty: SAME pads less than a
    /// window).
    fn each_window(
        &self,
        input: Shape,
        (output, pt, pl): (Shape, usize, usize),
        mut f: impl FnMut(usize, usize, usize, usize, usize),
    ) {
        for oy in 0..output.h {
            let y0 = (oy * self.stride).saturating_sub(pt);
            let y1 = (oy * self.stride + self.size)
                .saturating_sub(pt)
                .min(input.h);
            for ox in 0..output.w {
                let x0 = (ox * self.stride).saturating_sub(pl);
                let x1 = (ox * self.stride + self.size)
                    .saturating_sub(pl)
                    .min(input.w);
                f(oy * output.w + ox, y0, y1, x0, x1);
            }
        }
    }

    /// Forward pass over a batch of `n` samples.
    pub fn forward(&self, input: Shape, n: usize, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
        let g = self.geom(input)?;
        let output = g.0;
        check_len("avgpool input", x, n.saturating_mul(input.len()))?;
        check_len("avgpool output", y, n.saturating_mul(output.len()))?;
        let c = input.c;
        for (xi, yi) in x
            .chunks_exact(input.len())
            .zip(y.chunks_exact_mut(output.len()))
        {
            self.each_window(input, g, |o, y0, y1, x0, x1| {
                let out = &mut yi[o * c..][..c];
                out.fill(0.0);
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        for (a, &v) in out.iter_mut().zip(&xi[(iy * input.w + ix) * c..][..c]) {
                            *a += v;
                        }
                    }
                }
                let inv = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                out.iter_mut().for_each(|a| *a *= inv);
            });
        }
        Ok(())
    }

    /// Backward pass: overwrites `dx` with `dL/dx`.
    pub fn backward(
        &self,
        input: Shape,
        n: usize,
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<(), Error> {
        let g = self.geom(input)?;
        let output = g.0;
        check_len(
            "avgpool output gradient",
            dy,
            n.saturating_mul(output.len()),
        )?;
        check_len("avgpool input gradient", dx, n.saturating_mul(input.len()))?;
        dx.fill(0.0);
        let c = input.c;
        for (dyi, dxi) in dy
            .chunks_exact(output.len())
            .zip(dx.chunks_exact_mut(input.len()))
        {
            self.each_window(input, g, |o, y0, y1, x0, x1| {
                let inv = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                let d = &dyi[o * c..][..c];
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        for (a, &v) in dxi[(iy * input.w + ix) * c..][..c].iter_mut().zip(d) {
                            *a += v * inv;
                        }
                    }
                }
            });
        }
        Ok(())
    }

    /// Int8 forward pass (see the module doc).
    pub(crate) fn forward_i8(
        &self,
        site: &Site,
        l: &QLayer<'_>,
        x: &[i8],
        y: &mut [i8],
    ) -> Result<(), Error> {
        let input = site.input;
        let g = self.geom(input)?;
        let output = g.0;
        check_len("int8 avgpool input", x, site.n * input.len())?;
        check_len("int8 avgpool output", y, site.n * output.len())?;
        let c = input.c;
        for (xi, yi) in x
            .chunks_exact(input.len())
            .zip(y.chunks_exact_mut(output.len()))
        {
            self.each_window(input, g, |o, y0, y1, x0, x1| {
                let count = ((y1 - y0) * (x1 - x0)) as i32;
                for ch in 0..c {
                    let mut sum = 0i32;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            sum += xi[(iy * input.w + ix) * c + ch] as i32;
                        }
                    }
                    yi[o * c + ch] = clamp_i8(div_round(sum, count), l.act_min, l.act_max);
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::quant::QParams;
    use crate::testutil::{check_grad, dot, rand_vec};
    use std::vec;

    const POOLS: [AvgPool; 4] = [
        AvgPool::new(2, 2, Padding::Same),
        AvgPool::new(3, 2, Padding::Same),
        AvgPool::new(3, 1, Padding::Same),
        AvgPool::new(2, 1, Padding::Valid),
    ];

    #[test]
    fn same_padding_averages_the_valid_positions_only() {
        // 3x3 input, 2x2 window stride 2 SAME -> 2x2; padding after only.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let mut y = [0.0; 4];
        AvgPool::new(2, 2, Padding::Same)
            .forward(Shape::new(3, 3, 1), 1, &x, &mut y)
            .unwrap();
        // Windows {1,2,4,5}, {3,6}, {7,8}, {9}: divided by 4, 2, 2 and 1.
        assert_eq!(y, [3.0, 4.5, 7.5, 9.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (i, pool) in POOLS.iter().enumerate() {
            let input = Shape::new(5, 6, 2);
            let out = pool.output_shape(input).unwrap();
            let n = 2;
            let x = rand_vec(10 + i as u64, n * input.len(), 1.0);
            let r = rand_vec(20, n * out.len(), 1.0);
            let mut dx = vec![7.0; x.len()];
            pool.backward(input, n, &r, &mut dx).unwrap();
            check_grad(&std::format!("avgpool{i} dx"), &x, &dx, 1e-2, 1e-3, |x| {
                let mut y = vec![0.0; n * out.len()];
                pool.forward(input, n, x, &mut y).unwrap();
                dot(&y, &r)
            });
        }
    }

    #[test]
    fn bad_shapes_and_buffers_are_errors() {
        let input = Shape::new(3, 3, 2);
        assert_eq!(
            AvgPool::new(4, 1, Padding::Valid).output_shape(input),
            Err(ShapeError::WindowLargerThanInput)
        );
        assert_eq!(
            AvgPool::new(2, 0, Padding::Same).output_shape(input),
            Err(ShapeError::Zero)
        );
        let p = AvgPool::new(2, 2, Padding::Same);
        let mut y = [0.0; 8];
        assert!(p.forward(input, 1, &[0.0; 18], &mut y).is_ok());
        assert!(p.forward(input, 1, &[0.0; 17], &mut y).is_err());
        assert!(p.forward(input, 1, &[0.0; 18], &mut y[..7]).is_err());
        assert!(p.backward(input, 1, &y, &mut [0.0; 17]).is_err());
    }

    #[test]
    fn int8_rounds_half_away_from_zero_like_tflite() {
        assert_eq!(
            [
                div_round(5, 2),
                div_round(-5, 2),
                div_round(7, 4),
                div_round(-7, 4)
            ],
            [3, -3, 2, -2]
        );
        assert_eq!(
            [div_round(4, 3), div_round(-4, 3), div_round(0, 9)],
            [1, -1, 0]
        );
        // Against the float pool on dequantized values: within half a step (plus the
        // clamp), and exactly the rounded float mean of the q's.
        let q = QParams {
            scale: 0.05,
            zero: 3,
        };
        for pool in POOLS {
            let input = Shape::new(5, 6, 3);
            let out = pool.output_shape(input).unwrap();
            let n = 2;
            let mut rng = crate::rng::Rng::new(5);
            let xq: vec::Vec<i8> = (0..n * input.len())
                .map(|_| (rng.below(256) as i32 - 128) as i8)
                .collect();
            let xf: vec::Vec<f32> = xq.iter().map(|&v| v as f32).collect();
            let mut yf = vec![0.0; n * out.len()];
            pool.forward(input, n, &xf, &mut yf).unwrap();
            let l = QLayer {
                params: None,
                output: q,
                act_min: -100,
                act_max: 127,
            };
            let site = Site {
                index: 0,
                input,
                output: out,
                n,
            };
            let mut yq = vec![0i8; n * out.len()];
            pool.forward_i8(&site, &l, &xq, &mut yq).unwrap();
            for (&a, &f) in yq.iter().zip(&yf) {
                // f is the mean of the q's; ties (f = k + 0.5) go away from zero.
                // (f32 rounding can move an exact tie by an ulp: snap to it first.)
                let half = (f as f64 * 2.0).round() / 2.0;
                let f = if (f as f64 - half).abs() < 1e-4 {
                    half
                } else {
                    f as f64
                };
                let want = f.round().clamp(-100.0, 127.0) as i8;
                assert_eq!(a, want, "mean {f}");
            }
            assert!(pool.forward_i8(&site, &l, &xq[1..], &mut yq).is_err());
        }
    }
}
