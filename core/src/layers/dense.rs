//! Fully connected layer.
//!
//! ```text
//! x  [n, in]         (a flat input: put `Flatten` before it)
//! w  [in, out]       (TensorFlow's layout)
//! b  [out]
//! y  [n, out]        y = x · w + b
//! ```

use core::fmt;

use super::{ParamShapes, Record, Site};
use crate::error::{check_len, Error, ShapeError};
use crate::gemm::{add_bias, Gemm, MatMut, MatRef};
use crate::quant::{clamp_i8, params_of, requantize, QLayer, QTensors};
use crate::shape::Shape;

/// The kind code of dense in the weights file; its record is `(a = units)`, the rest 0.
pub const KIND: u8 = 3;

/// A dense layer's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dense {
    /// Output units.
    pub units: usize,
}

impl Dense {
    /// This layer's record in the weights file.
    pub(crate) fn record(&self) -> Record {
        Record {
            a: self.units as u32,
            ..Record::of(KIND)
        }
    }

    /// The layer a record of [`KIND`] describes.
    pub(crate) fn from_record(r: &Record) -> Result<Self, &'static str> {
        Record::unused_zero(&[r.padding as u32, r.b, r.c])?;
        Ok(Dense::new(r.a as usize))
    }

    /// The Rust expression that builds this layer.
    pub(crate) fn write_rust(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "microconv::Layer::Dense(microconv::layers::Dense::new({}))",
            self.units
        )
    }

    /// The weights' and biases' shapes for `input`: `[in, out]` weights (`[out, in]` in
    /// int8), `units` biases.
    pub const fn param_shapes(&self, input: Shape) -> ParamShapes {
        let (n_in, n_out) = (input.len(), self.units);
        ParamShapes {
            weights: (2, [n_in, n_out, 0, 0]),
            weights_i8: (2, [n_out, n_in, 0, 0]),
            bias: n_out,
            fan_in: n_in,
            fan_out: n_out,
        }
    }

    /// Int8 forward pass (weights `[out, in]`, see [`crate::quant`]).
    pub(crate) fn forward_i8(
        &self,
        site: &Site,
        l: &QLayer<'_>,
        z_in: i32,
        x: &[i8],
        y: &mut [i8],
    ) -> Result<(), Error> {
        let (ins, outs) = (site.input, site.output);
        let p = params_of(l, "int8 dense parameters")?;
        check_len("int8 dense weights", p.weights, ins.len() * outs.len())?;
        check_len("int8 dense bias", p.bias, outs.len())?;
        check_len("int8 dense multipliers", p.multiplier, outs.len())?;
        check_len("int8 dense shifts", p.shift, outs.len())?;
        let xs = x.chunks_exact(ins.len()).take(site.n);
        for (xi, yi) in xs.zip(y.chunks_exact_mut(outs.len())) {
            dense_sample_i8(z_in, l, &p, xi, yi);
        }
        Ok(())
    }

    /// A dense layer with `units` outputs.
    pub const fn new(units: usize) -> Self {
        Dense { units }
    }

    /// Output shape `(1, 1, units)`; the input must be flat.
    pub const fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        if input.is_empty() || self.units == 0 {
            Err(ShapeError::Zero)
        } else if !input.is_flat() {
            Err(ShapeError::NeedsFlatInput)
        } else {
            Ok(Shape::flat(self.units))
        }
    }

    /// Number of weights, `in * out` (saturating).
    pub const fn weight_len(&self, input: Shape) -> usize {
        input.len().saturating_mul(self.units)
    }

    /// Number of parameters: weights then biases.
    pub const fn param_len(&self, input: Shape) -> usize {
        self.weight_len(input).saturating_add(self.units)
    }

    fn check(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        b: usize,
        y: usize,
    ) -> Result<(), Error> {
        self.output_shape(input).map_err(|reason| Error::Shape {
            layer: usize::MAX,
            reason,
        })?;
        check_len("dense input", x, n.saturating_mul(input.len()))?;
        check_len("dense weights", w, self.weight_len(input))?;
        Error::expect_len("dense bias", self.units, b)?;
        Error::expect_len("dense output", n.saturating_mul(self.units), y)
    }

    /// Forward pass over a batch of `n` samples.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: &mut [f32],
        gemm: &dyn Gemm,
    ) -> Result<(), Error> {
        self.check(input, n, x, w, b.len(), y.len())?;
        let k = input.len();
        gemm.gemm(
            MatRef::row_major(x, n, k)?,
            MatRef::row_major(w, k, self.units)?,
            MatMut::row_major(y, n, self.units)?,
            false,
        )?;
        add_bias(y, b);
        Ok(())
    }

    /// Backward pass: `dw += x^T · dy`, `db += sum over the batch of dy`, and, if given,
    /// `dx = dy · w^T` (overwritten).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: &mut [f32],
        gemm: &dyn Gemm,
    ) -> Result<(), Error> {
        self.check(input, n, x, w, db.len(), dy.len())?;
        check_len("dense weight gradient", dw, w.len())?;
        let k = input.len();
        let dym = MatRef::row_major(dy, n, self.units)?;
        gemm.gemm(
            MatRef::row_major(x, n, k)?.t(),
            dym,
            MatMut::row_major(dw, k, self.units)?,
            true,
        )?;
        for row in dy.chunks_exact(self.units) {
            for (a, v) in db.iter_mut().zip(row) {
                *a += v;
            }
        }
        if let Some(dx) = dx {
            check_len("dense input gradient", dx, x.len())?;
            gemm.gemm(
                dym,
                MatRef::row_major(w, k, self.units)?.t(),
                MatMut::row_major(dx, n, k)?,
                false,
            )?;
        }
        Ok(())
    }

    /// The input gradient alone, `dx = dy · w^T` (overwritten), computed as
    /// [`Dense::backward`] computes it with the same `gemm`, without a weight gradient.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        input: Shape,
        n: usize,
        w: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        gemm: &dyn Gemm,
    ) -> Result<(), Error> {
        self.output_shape(input).map_err(|reason| Error::Shape {
            layer: usize::MAX,
            reason,
        })?;
        let k = input.len();
        check_len("dense weights", w, self.weight_len(input))?;
        check_len("dense output gradient", dy, n.saturating_mul(self.units))?;
        check_len("dense input gradient", dx, n.saturating_mul(k))?;
        gemm.gemm(
            MatRef::row_major(dy, n, self.units)?,
            MatRef::row_major(w, k, self.units)?.t(),
            MatMut::row_major(dx, n, k)?,
            false,
        )
    }

    /// Calls `f(j, g)` for every parameter `j` (weights `[in, units]`, then biases), in
    /// that order, with its whole gradient over the `n` samples: the value
    /// [`Dense::backward`] with [`crate::gemm::PortableGemm`] accumulates into a zeroed
    /// gradient, bit for bit (the same sums in the same order, zero inputs skipped as
    /// that kernel skips them). Each gradient is complete when `f` sees it, so `f` can
    /// update the parameter in place.
    pub fn each_param_gradient(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        dy: &[f32],
        mut f: impl FnMut(usize, f32),
    ) -> Result<(), Error> {
        self.output_shape(input).map_err(|reason| Error::Shape {
            layer: usize::MAX,
            reason,
        })?;
        let k = input.len();
        check_len("dense input", x, n.saturating_mul(k))?;
        check_len("dense output gradient", dy, n.saturating_mul(self.units))?;
        let u = self.units;
        for i in 0..k {
            for j in 0..u {
                let mut acc = 0.0f32;
                for p in 0..n {
                    let xv = x[p * k + i];
                    if xv != 0.0 {
                        acc += xv * dy[p * u + j];
                    }
                }
                f(i * u + j, acc);
            }
        }
        for j in 0..u {
            let mut acc = 0.0f32;
            for row in dy.chunks_exact(u) {
                acc += row[j];
            }
            f(k * u + j, acc);
        }
        Ok(())
    }
}

/// Int8 dense layer over one sample (weights `[out, in]`).
fn dense_sample_i8(z_in: i32, l: &QLayer<'_>, p: &QTensors<'_>, x: &[i8], y: &mut [i8]) {
    let n_in = x.len();
    for (u, o) in y.iter_mut().enumerate() {
        let w = &p.weights[u * n_in..][..n_in];
        let mut acc = p.bias[u];
        for (&a, &b) in x.iter().zip(w) {
            acc = acc.wrapping_add((a as i32 - z_in) * b as i32);
        }
        let r = requantize(acc, p.multiplier[u], p.shift[u]);
        *o = clamp_i8(l.output.zero.saturating_add(r), l.act_min, l.act_max);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::gemm::PortableGemm;
    use crate::testutil::{check_grad, dot, rand_vec};
    use std::vec;

    #[test]
    fn gradients_match_finite_differences() {
        let d = Dense::new(4);
        let input = Shape::flat(6);
        let n = 3;
        let x = rand_vec(1, n * 6, 1.0);
        let w = rand_vec(2, 24, 0.5);
        let b = rand_vec(3, 4, 0.5);
        let r = rand_vec(4, n * 4, 1.0);
        let g = &PortableGemm;
        let loss = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; n * 4];
            d.forward(input, n, x, w, b, &mut y, g).unwrap();
            dot(&y, &r)
        };
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; 24], vec![0.0; 4]);
        d.backward(input, n, &x, &w, &r, Some(&mut dx), &mut dw, &mut db, g)
            .unwrap();
        check_grad("dense dx", &x, &dx, 1e-2, 1e-3, |x| loss(x, &w, &b));
        check_grad("dense dw", &w, &dw, 1e-2, 1e-3, |w| loss(&x, w, &b));
        check_grad("dense db", &b, &db, 1e-2, 1e-3, |b| loss(&x, &w, b));
    }

    #[test]
    fn split_backward_equals_backward() {
        let d = Dense::new(5);
        let input = Shape::flat(7);
        let n = 3;
        let mut x = rand_vec(11, n * 7, 1.0);
        x[2] = 0.0; // a ReLU zero: skipped by the kernel
        x[9] = 0.0;
        let w = rand_vec(12, 35, 0.5);
        let dy = rand_vec(13, n * 5, 1.0);
        let g = &PortableGemm;
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; 35], vec![0.0; 5]);
        d.backward(input, n, &x, &w, &dy, Some(&mut dx), &mut dw, &mut db, g)
            .unwrap();
        let mut dx2 = vec![9.0; x.len()];
        d.backward_input(input, n, &w, &dy, &mut dx2, g).unwrap();
        assert_eq!(dx, dx2);
        let mut all = [f32::NAN; 40];
        d.each_param_gradient(input, n, &x, &dy, |j, v| all[j] = v)
            .unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
        assert_eq!(bits(&all[..35]), bits(&dw));
        assert_eq!(bits(&all[35..]), bits(&db));
        assert!(d
            .backward_input(input, n, &w, &dy[1..], &mut dx2, g)
            .is_err());
        assert!(d
            .each_param_gradient(input, n, &x[1..], &dy, |_, _| {})
            .is_err());
    }

    #[test]
    fn needs_flat_input() {
        assert_eq!(
            Dense::new(3).output_shape(Shape::new(2, 2, 1)),
            Err(ShapeError::NeedsFlatInput)
        );
        assert_eq!(
            Dense::new(0).output_shape(Shape::flat(2)),
            Err(ShapeError::Zero)
        );
    }
}
