//! Max-pooling with SAME/VALID padding.
//!
//! ```text
//! x  [n, h,  w,  c]
//! y  [n, oh, ow, c]     y[n,oy,ox,c] = max over the window's in-bounds positions of x[n, oy*s+ky-pt, ox*s+kx-pl, c]
//! ```
//! Padding positions are ignored (as TensorFlow does), never treated as zeros. The
//! backward pass sends each `dy` to the **first** maximum of its window in row-major
//! order (TensorFlow and PyTorch do the same); it recomputes that position from `x`
//! instead of storing indices, so training needs no extra buffer.

use crate::error::{check_len, Error, ShapeError};
use crate::shape::{window_axis, window_output, Padding, Shape};

/// Channels whose running maxima are kept on the stack at once.
const CHANNEL_BLOCK: usize = 64;

/// A max-pool layer's configuration: a square `size x size` window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool {
    /// Window height and width.
    pub size: usize,
    /// Stride along both axes.
    pub stride: usize,
    /// Border handling.
    pub padding: Padding,
}

impl MaxPool {
    /// A `size x size` window with the given stride and padding.
    pub const fn new(size: usize, stride: usize, padding: Padding) -> Self {
        MaxPool {
            size,
            stride,
            padding,
        }
    }

    /// Output shape for `input`.
    pub const fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        window_output(input, self.size, self.stride, self.padding, input.c)
    }

    /// Calls `f(out_index, in_index_of_first_max)` for every output value of one image.
    ///
    /// Channels are the innermost loop (contiguous in NHWC), processed in blocks of
    /// [`CHANNEL_BLOCK`] with the running maxima on the stack.
    fn each_argmax(
        &self,
        input: Shape,
        output: Shape,
        pt: usize,
        pl: usize,
        x: &[f32],
        mut f: impl FnMut(usize, usize),
    ) {
        let c = input.c;
        let mut best_v = [0.0f32; CHANNEL_BLOCK];
        let mut best_i = [0usize; CHANNEL_BLOCK];
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
                let out = (oy * output.w + ox) * c;
                let mut c0 = 0;
                while c0 < c {
                    let cb = CHANNEL_BLOCK.min(c - c0);
                    // SAME windows always hold at least one in-bounds position: start there.
                    let first = (y0 * input.w + x0) * c + c0;
                    best_v[..cb].copy_from_slice(&x[first..first + cb]);
                    for (k, bi) in best_i[..cb].iter_mut().enumerate() {
                        *bi = first + k;
                    }
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            let at = (iy * input.w + ix) * c + c0;
                            // `>` keeps the first maximum in row-major order; a NaN never
                            // wins, except that a NaN in first place stays (and propagates).
                            for (k, (bv, bi)) in best_v[..cb]
                                .iter_mut()
                                .zip(best_i[..cb].iter_mut())
                                .enumerate()
                            {
                                let v = x[at + k];
                                if v > *bv {
                                    *bv = v;
                                    *bi = at + k;
                                }
                            }
                        }
                    }
                    for (k, &bi) in best_i[..cb].iter().enumerate() {
                        f(out + c0 + k, bi);
                    }
                    c0 += cb;
                }
            }
        }
    }

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

    /// Forward pass over a batch of `n` samples.
    pub fn forward(&self, input: Shape, n: usize, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
        let (output, pt, pl) = self.geom(input)?;
        check_len("maxpool input", x, n * input.len())?;
        check_len("maxpool output", y, n * output.len())?;
        for (xi, yi) in x
            .chunks_exact(input.len())
            .zip(y.chunks_exact_mut(output.len()))
        {
            self.each_argmax(input, output, pt, pl, xi, |o, i| yi[o] = xi[i]);
        }
        Ok(())
    }

    /// Backward pass: overwrites `dx` with `dL/dx`.
    pub fn backward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<(), Error> {
        let (output, pt, pl) = self.geom(input)?;
        check_len("maxpool input", x, n * input.len())?;
        check_len("maxpool output gradient", dy, n * output.len())?;
        check_len("maxpool input gradient", dx, n * input.len())?;
        dx.fill(0.0);
        for ((xi, dyi), dxi) in x
            .chunks_exact(input.len())
            .zip(dy.chunks_exact(output.len()))
            .zip(dx.chunks_exact_mut(input.len()))
        {
            self.each_argmax(input, output, pt, pl, xi, |o, i| dxi[i] += dyi[o]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testutil::{check_grad, dot, rand_vec};
    use std::vec;

    #[test]
    fn forward_picks_max_and_ignores_padding() {
        // 3x3 input, 2x2 window stride 2 SAME -> 2x2; pad after only.
        let x = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0];
        let mut y = [0.0; 4];
        MaxPool::new(2, 2, Padding::Same)
            .forward(Shape::new(3, 3, 1), 1, &x, &mut y)
            .unwrap();
        // Padding is ignored, not zero: the corner window holds only -9.
        assert_eq!(y, [-1.0, -3.0, -7.0, -9.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (i, pool) in [
            MaxPool::new(2, 2, Padding::Same),
            MaxPool::new(3, 2, Padding::Same),
            MaxPool::new(2, 1, Padding::Valid),
        ]
        .iter()
        .enumerate()
        {
            let input = Shape::new(5, 5, 2);
            let out = pool.output_shape(input).unwrap();
            let n = 2;
            let x = rand_vec(10 + i as u64, n * input.len(), 1.0);
            let r = rand_vec(20, n * out.len(), 1.0);
            let mut dx = vec![0.0; x.len()];
            pool.backward(input, n, &x, &r, &mut dx).unwrap();
            check_grad(&std::format!("maxpool{i} dx"), &x, &dx, 1e-4, 1e-2, |x| {
                let mut y = vec![0.0; n * out.len()];
                pool.forward(input, n, x, &mut y).unwrap();
                dot(&y, &r)
            });
        }
    }

    #[test]
    fn ties_go_to_the_first_maximum() {
        let x = [0.0, 0.0, 0.0, 0.0];
        let mut dx = [9.0; 4];
        MaxPool::new(2, 2, Padding::Valid)
            .backward(Shape::new(2, 2, 1), 1, &x, &[1.0], &mut dx)
            .unwrap();
        assert_eq!(dx, [1.0, 0.0, 0.0, 0.0]);
    }
}
