//! Batch normalization over the channels (Keras's `BatchNormalization`, axis -1), for
//! training only: the host folds it into the preceding conv2d, depthwise or dense layer
//! at export ([`BatchNorm::fold`]), so firmware never runs it.
//!
//! ```text
//! x, y, dy, dx  [n, h, w, c]
//! params        [4 * c]: gamma [c] (the "weights"), then beta, running mean, running variance [c each] (the "biases")
//! training:   mean[ch], var[ch] over the n*h*w positions of the call (biased variance)
//!             xh = (x - mean) / sqrt(var + eps);  y = gamma * xh + beta
//!             dgamma += sum dy * xh;  dbeta += sum dy
//!             dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xh * mean(dy * xh))
//! inference:  y = gamma * (x - running mean) / sqrt(running var + eps) + beta
//! running statistics, after each training step:  r = momentum * r + (1 - momentum) * batch's
//! ```
//! The statistics are those of the samples of one call: a batch that the host splits
//! across threads normalizes each thread's share by its own statistics (as "ghost" batch
//! normalization does), so results depend on the thread count but not on anything else.
//! The running averages are updated from the whole batch's statistics
//! ([`BatchNorm::update_running`]). Their gradient is zero, so the optimizer leaves them.

use core::fmt;

use super::{ParamShapes, Record};
use crate::error::{check_len, Error, ShapeError};
use crate::shape::Shape;

/// The kind code of batch normalization in the weights file; its record is `(a =
/// momentum as f32 bits, b = epsilon as f32 bits)`, the rest 0.
pub const KIND: u8 = 11;

/// A batch normalization layer's configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    /// Weight of the old value in the running averages, in `[0, 1)` (Keras: 0.99).
    pub momentum: f32,
    /// Added to the variance before its square root, `> 0` (Keras: 0.001).
    pub epsilon: f32,
}

/// `1 / sqrt(v + eps)`.
fn inv_std(v: f32, eps: f32) -> f32 {
    1.0 / libm::sqrtf(v + eps)
}

impl BatchNorm {
    /// Batch normalization with the given momentum and epsilon.
    pub const fn new(momentum: f32, epsilon: f32) -> Self {
        BatchNorm { momentum, epsilon }
    }

    /// Checks `0 <= momentum < 1` and `epsilon > 0` (both finite).
    pub const fn validate(&self) -> Result<(), Error> {
        if !(self.momentum >= 0.0 && self.momentum < 1.0) {
            return Err(Error::InvalidParameter {
                name: "batchnorm momentum",
            });
        }
        if !(self.epsilon > 0.0 && self.epsilon < f32::INFINITY) {
            return Err(Error::InvalidParameter {
                name: "batchnorm epsilon",
            });
        }
        Ok(())
    }

    /// This layer's record in the weights file.
    pub(crate) fn record(&self) -> Record {
        Record {
            a: self.momentum.to_bits(),
            b: self.epsilon.to_bits(),
            ..Record::of(KIND)
        }
    }

    /// The layer a record of [`KIND`] describes.
    pub(crate) fn from_record(r: &Record) -> Result<Self, &'static str> {
        Record::unused_zero(&[r.padding as u32, r.c])?;
        let l = BatchNorm::new(f32::from_bits(r.a), f32::from_bits(r.b));
        l.validate()
            .map_err(|_| "batchnorm momentum or epsilon out of range")?;
        Ok(l)
    }

    /// The Rust expression that builds this layer (bit for bit).
    pub(crate) fn write_rust(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "microconv::Layer::BatchNorm(microconv::layers::BatchNorm::new(f32::from_bits({:#x}), f32::from_bits({:#x})))",
            self.momentum.to_bits(),
            self.epsilon.to_bits()
        )
    }

    /// Output shape: the input's.
    pub const fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        Ok(input)
    }

    /// Number of weights: `gamma`, one per channel.
    pub const fn weight_len(&self, input: Shape) -> usize {
        input.c
    }

    /// Number of parameters: `4 * c` (gamma, beta, running mean, running variance).
    pub const fn param_len(&self, input: Shape) -> usize {
        input.c.saturating_mul(4)
    }

    /// The parameter tensors: weights `gamma [c]`, "bias" `[3 * c]` (beta, running mean,
    /// running variance).
    pub const fn param_shapes(&self, input: Shape) -> ParamShapes {
        let c = input.c;
        ParamShapes {
            weights: (1, [c, 0, 0, 0]),
            weights_i8: (1, [c, 0, 0, 0]),
            bias: c.saturating_mul(3),
            fan_in: 1,
            fan_out: 1,
        }
    }

    /// The initial parameters: gamma 1, beta 0, running mean 0, running variance 1.
    pub fn init(w: &mut [f32], b: &mut [f32]) {
        w.fill(1.0);
        let c = w.len();
        for (i, v) in b.iter_mut().enumerate() {
            *v = if i >= 2 * c { 1.0 } else { 0.0 };
        }
    }

    fn check(input: Shape, n: usize, x: usize, w: usize, b: usize) -> Result<(), Error> {
        Error::expect_len("batchnorm input", n.saturating_mul(input.len()), x)?;
        Error::expect_len("batchnorm gamma", input.c, w)?;
        Error::expect_len("batchnorm beta and running statistics", 3 * input.c, b)
    }

    /// Sum and sum of squares (in f64) of channel `ch` over the `n` samples of `x`: what
    /// the batch statistics are made of.
    pub fn channel_sums(input: Shape, n: usize, x: &[f32], ch: usize) -> (f64, f64) {
        let c = input.c.max(1);
        let mut s = (0.0f64, 0.0f64);
        for &v in x
            .iter()
            .skip(ch)
            .step_by(c)
            .take(n.saturating_mul(input.h * input.w))
        {
            s.0 += v as f64;
            s.1 += v as f64 * v as f64;
        }
        s
    }

    /// Mean and biased variance of channel `ch` of the `n` samples of `x`.
    fn moments(input: Shape, n: usize, x: &[f32], ch: usize) -> (f32, f32) {
        let m = (n * input.h * input.w).max(1) as f64;
        let mean = BatchNorm::channel_sums(input, n, x, ch).0 / m;
        let mut var = 0.0f64;
        for &v in x.iter().skip(ch).step_by(input.c.max(1)) {
            let d = v as f64 - mean;
            var += d * d;
        }
        (mean as f32, (var / m) as f32)
    }

    /// Per channel `(mean, 1 / sqrt(var + eps))`: the call's batch statistics in
    /// training, the running ones in inference.
    fn stats(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        b: &[f32],
        train: bool,
        ch: usize,
    ) -> (f32, f32) {
        let c = input.c;
        if train {
            let (mean, var) = BatchNorm::moments(input, n, x, ch);
            (mean, inv_std(var, self.epsilon))
        } else {
            (b[c + ch], inv_std(b[2 * c + ch], self.epsilon))
        }
    }

    /// Forward pass over `n` samples (`train`: with the batch's statistics; see the
    /// module doc).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: &mut [f32],
        train: bool,
    ) -> Result<(), Error> {
        BatchNorm::check(input, n, x.len(), w.len(), b.len())?;
        check_len("batchnorm output", y, x.len())?;
        let c = input.c;
        for ch in 0..c {
            let (mean, is) = self.stats(input, n, x, b, train, ch);
            let (scale, shift) = (w[ch] * is, b[ch]);
            for (o, &v) in y
                .iter_mut()
                .skip(ch)
                .step_by(c)
                .zip(x.iter().skip(ch).step_by(c))
            {
                *o = (v - mean) * scale + shift;
            }
        }
        Ok(())
    }

    /// Backward pass: accumulates `dgamma`, `dbeta` into `dw`, `db[..c]` (the running
    /// statistics' gradient, `db[c..]`, stays as it is: zero) and, if `dx` is given,
    /// overwrites it with `dL/dx`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        (w, b): (&[f32], &[f32]),
        dy: &[f32],
        mut dx: Option<&mut [f32]>,
        (dw, db): (&mut [f32], &mut [f32]),
        train: bool,
    ) -> Result<(), Error> {
        BatchNorm::check(input, n, x.len(), w.len(), b.len())?;
        check_len("batchnorm output gradient", dy, x.len())?;
        check_len("batchnorm gamma gradient", dw, input.c)?;
        check_len("batchnorm beta gradient", db, 3 * input.c)?;
        if let Some(d) = &dx {
            check_len("batchnorm input gradient", d, x.len())?;
        }
        let c = input.c;
        let m = (n * input.h * input.w).max(1) as f64;
        for ch in 0..c {
            let (mean, is) = self.stats(input, n, x, b, train, ch);
            let (mut sdy, mut sdyxh) = (0.0f64, 0.0f64);
            for (&g, &v) in dy
                .iter()
                .skip(ch)
                .step_by(c)
                .zip(x.iter().skip(ch).step_by(c))
            {
                sdy += g as f64;
                sdyxh += g as f64 * ((v - mean) * is) as f64;
            }
            dw[ch] += sdyxh as f32;
            db[ch] += sdy as f32;
            let Some(dx) = dx.as_deref_mut() else {
                continue;
            };
            let k = w[ch] * is;
            let (mdy, mdyxh) = if train {
                ((sdy / m) as f32, (sdyxh / m) as f32)
            } else {
                (0.0, 0.0)
            };
            for ((d, &g), &v) in dx
                .iter_mut()
                .skip(ch)
                .step_by(c)
                .zip(dy.iter().skip(ch).step_by(c))
                .zip(x.iter().skip(ch).step_by(c))
            {
                *d = k * (g - mdy - (v - mean) * is * mdyxh);
            }
        }
        Ok(())
    }

    /// Moves the running statistics (`b[c..2c]` mean, `b[2c..]` variance) toward a
    /// batch's, given per channel as `sums[ch] = (sum, sum of squares)` over `count`
    /// values ([`BatchNorm::channel_sums`], added up over the parts of a split batch).
    pub fn update_running(&self, count: usize, sums: impl Fn(usize) -> (f64, f64), b: &mut [f32]) {
        let c = b.len() / 3;
        let (mo, m) = (self.momentum as f64, count.max(1) as f64);
        for ch in 0..c {
            let (s, s2) = sums(ch);
            let mean = s / m;
            let var = (s2 / m - mean * mean).max(0.0);
            b[c + ch] = (mo * b[c + ch] as f64 + (1.0 - mo) * mean) as f32;
            b[2 * c + ch] = (mo * b[2 * c + ch] as f64 + (1.0 - mo) * var) as f32;
        }
    }

    /// Folds this layer's inference transform (parameters `bn`: gamma, beta, running
    /// mean, running variance) into the layer before it, whose weights `w` have their
    /// output channel fastest (`[.., cout]`: conv2d's HWIO, depthwise's `[k*k, c*m]`,
    /// dense's `[in, out]`) and whose biases are `bias [cout]`:
    /// `w' = w * s`, `b' = (b - mean) * s + beta` with `s = gamma / sqrt(var + eps)`.
    pub fn fold(&self, bn: &[f32], w: &mut [f32], bias: &mut [f32]) -> Result<(), Error> {
        let c = bias.len();
        check_len("batchnorm parameters to fold", bn, 4 * c)?;
        if w.len().checked_rem(c) != Some(0) {
            return Err(Error::BufferLen {
                buffer: "weights to fold batchnorm into",
                expected: c,
                actual: w.len(),
            });
        }
        for ch in 0..c {
            let s = bn[ch] * inv_std(bn[3 * c + ch], self.epsilon);
            for v in w.iter_mut().skip(ch).step_by(c) {
                *v *= s;
            }
            bias[ch] = (bias[ch] - bn[2 * c + ch]) * s + bn[c + ch];
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
    use std::vec::Vec;

    const BN: BatchNorm = BatchNorm::new(0.9, 1e-3);

    /// gamma, then beta, running mean, running variance (positive).
    fn params(c: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let w: Vec<f32> = rand_vec(seed, c, 1.0).iter().map(|v| v + 1.5).collect();
        let mut b = rand_vec(seed + 1, 3 * c, 0.5);
        for v in &mut b[2 * c..] {
            *v = v.abs() + 0.5;
        }
        (w, b)
    }

    #[test]
    fn gradients_match_finite_differences_in_training_and_inference() {
        for (i, &(h, w_, c, n)) in [(3, 4, 2, 2), (1, 1, 5, 6), (2, 3, 3, 1)]
            .iter()
            .enumerate()
        {
            let input = Shape::new(h, w_, c);
            let x = rand_vec(10 + i as u64, n * input.len(), 2.0);
            let (w, b) = params(c, 20 + i as u64);
            let r = rand_vec(30 + i as u64, x.len(), 1.0);
            for train in [true, false] {
                let loss = |x: &[f32], w: &[f32], b: &[f32]| {
                    let mut y = vec![0.0; x.len()];
                    BN.forward(input, n, x, w, b, &mut y, train).unwrap();
                    dot(&y, &r)
                };
                let (mut dx, mut dw, mut db) = (vec![7.0; x.len()], vec![0.0; c], vec![0.0; 3 * c]);
                BN.backward(
                    input,
                    n,
                    &x,
                    (&w, &b),
                    &r,
                    Some(&mut dx),
                    (&mut dw, &mut db),
                    train,
                )
                .unwrap();
                let tag = std::format!("bn{i} train={train}");
                check_grad(&std::format!("{tag} dx"), &x, &dx, 1e-2, 3e-3, |x| {
                    loss(x, &w, &b)
                });
                check_grad(&std::format!("{tag} dgamma"), &w, &dw, 1e-2, 3e-3, |w| {
                    loss(&x, w, &b)
                });
                // beta's gradient; the running statistics' is zero in training, and in
                // inference they are not trained (the optimizer must leave them).
                check_grad(
                    &std::format!("{tag} dbeta"),
                    &b[..c],
                    &db[..c],
                    1e-2,
                    3e-3,
                    |bb| {
                        let mut b2 = b.clone();
                        b2[..c].copy_from_slice(bb);
                        loss(&x, &w, &b2)
                    },
                );
                assert!(db[c..].iter().all(|&v| v == 0.0), "{tag}");
            }
        }
    }

    #[test]
    fn training_output_is_normalized_and_running_averages_move_toward_the_batch() {
        let input = Shape::new(2, 2, 3);
        let n = 4;
        let x: Vec<f32> = rand_vec(1, n * input.len(), 3.0)
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % 3) as f32 * 5.0)
            .collect();
        let (w, mut b) = (vec![1.0; 3], vec![0.0; 9]);
        BatchNorm::init(&mut [0.0; 3], &mut b);
        assert_eq!(b, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let mut y = vec![0.0; x.len()];
        BN.forward(input, n, &x, &w, &b, &mut y, true).unwrap();
        for ch in 0..3 {
            let v: Vec<f32> = y.iter().skip(ch).step_by(3).copied().collect();
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f32>() / v.len() as f32;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-2,
                "{ch}: {mean} {var}"
            );
        }
        // The whole batch's statistics from two halves' sums.
        let half = 2 * input.len();
        let sums = |ch| {
            let (a, b) = BatchNorm::channel_sums(input, 2, &x[..half], ch);
            let (c, d) = BatchNorm::channel_sums(input, 2, &x[half..], ch);
            (a + c, b + d)
        };
        BN.update_running(n * 4, sums, &mut b);
        for ch in 0..3 {
            let (mean, var) = BatchNorm::moments(input, n, &x, ch);
            assert!((b[3 + ch] - 0.1 * mean).abs() < 1e-5, "{ch}");
            assert!((b[6 + ch] - (0.9 + 0.1 * var)).abs() < 1e-4, "{ch}");
        }
    }

    #[test]
    fn folding_into_the_layer_before_gives_the_same_outputs() {
        // A dense layer 5 -> 3 then batchnorm (inference), against the folded dense layer.
        let d = crate::layers::Dense::new(3);
        let input = Shape::flat(5);
        let x = rand_vec(2, 4 * 5, 1.0);
        let mut w = rand_vec(3, 15, 1.0);
        let mut bias = rand_vec(4, 3, 1.0);
        let (g, rest) = params(3, 5);
        let bn: Vec<f32> = g.iter().chain(&rest).copied().collect();
        let mut y = vec![0.0; 12];
        d.forward(input, 4, &x, &w, &bias, &mut y, &crate::gemm::PortableGemm)
            .unwrap();
        let mut want = vec![0.0; 12];
        BN.forward(Shape::flat(3), 4, &y, &g, &rest, &mut want, false)
            .unwrap();
        BN.fold(&bn, &mut w, &mut bias).unwrap();
        d.forward(input, 4, &x, &w, &bias, &mut y, &crate::gemm::PortableGemm)
            .unwrap();
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert!(BN.fold(&bn[..11], &mut w, &mut bias).is_err());
        assert!(BN.fold(&bn, &mut w[..14], &mut bias).is_err());
    }

    #[test]
    fn bad_records_and_buffers_are_errors() {
        assert!(BatchNorm::new(1.0, 1e-3).validate().is_err());
        assert!(BatchNorm::new(0.5, 0.0).validate().is_err());
        assert!(BatchNorm::new(f32::NAN, 1e-3).validate().is_err());
        let r = BN.record();
        assert_eq!(BatchNorm::from_record(&r), Ok(BN));
        assert!(BatchNorm::from_record(&Record {
            a: 1.0f32.to_bits(),
            ..r
        })
        .is_err());
        assert!(BatchNorm::from_record(&Record { c: 1, ..r }).is_err());
        let input = Shape::new(2, 2, 2);
        let (x, w, b) = ([0.0; 8], [1.0; 2], [0.0; 6]);
        let mut y = [0.0; 8];
        assert!(BN.forward(input, 1, &x, &w, &b, &mut y, true).is_ok());
        assert!(BN.forward(input, 1, &x, &w[..1], &b, &mut y, true).is_err());
        assert!(BN.forward(input, 1, &x, &w, &b[..5], &mut y, true).is_err());
        assert!(BN
            .forward(input, 1, &x, &w, &b, &mut y[..7], false)
            .is_err());
    }
}
