//! Inverted dropout: active only while training.
//!
//! ```text
//! x, y, dy, dx  [n, d]     training:  y = x * mask / keep,  dx = dy * mask / keep
//!                          inference: y = x
//! ```
//! `mask[i] = hash32(seed, first + i) < keep * 2^32`: a counter-based hash, so the mask
//! is a pure function of `(seed, global element index)`. The backward pass recomputes it
//! (no mask buffer), and splitting a batch across threads gives the same masks.

use core::fmt;

use super::{flatten, Mode, Record, Site};
use crate::error::{check_len, Error};
use crate::rng::{hash32, mix64};

/// The kind code of dropout in the weights file; its record is `(a = keep as f32 bits)`,
/// the rest 0.
pub const KIND: u8 = 5;

/// A dropout layer's configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of keeping a unit, in `(0, 1]`.
    pub keep: f32,
}

impl Dropout {
    /// This layer's record in the weights file.
    pub(crate) fn record(&self) -> Record {
        Record {
            a: self.keep.to_bits(),
            ..Record::of(KIND)
        }
    }

    /// The layer a record of [`KIND`] describes.
    pub(crate) fn from_record(r: &Record) -> Result<Self, &'static str> {
        Record::unused_zero(&[r.padding as u32, r.b, r.c])?;
        Ok(Dropout::new(f32::from_bits(r.a)))
    }

    /// The Rust expression that builds this layer (`keep` bit for bit).
    pub(crate) fn write_rust(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "microconv::Layer::Dropout(microconv::layers::Dropout::new(f32::from_bits({:#x})))",
            self.keep.to_bits()
        )
    }

    /// The forward pass in a network: the identity in [`Mode::Eval`]; in training, the
    /// masks of layer `site.index` drawn from the step's seed, counted from the call's
    /// first sample.
    pub(crate) fn forward_pass(
        &self,
        mode: Mode,
        site: &Site,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), Error> {
        match mode {
            Mode::Eval => flatten::forward(x, y),
            Mode::Train { seed, first_sample } => self.forward_train(
                mix64(seed ^ site.index as u64),
                first_sample.wrapping_mul(site.output.len() as u64),
                x,
                y,
            ),
        }
    }

    /// The backward pass of [`Dropout::forward_pass`], with the same masks.
    pub(crate) fn backward_pass(
        &self,
        mode: Mode,
        site: &Site,
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<(), Error> {
        match mode {
            Mode::Eval => flatten::backward(dy, dx),
            Mode::Train { seed, first_sample } => self.backward(
                mix64(seed ^ site.index as u64),
                first_sample.wrapping_mul(site.output.len() as u64),
                dy,
                dx,
            ),
        }
    }

    /// Dropout keeping each unit with probability `keep`.
    pub const fn new(keep: f32) -> Self {
        Dropout { keep }
    }

    /// Checks `0 < keep <= 1`.
    pub const fn validate(&self) -> Result<(), Error> {
        if self.keep > 0.0 && self.keep <= 1.0 {
            Ok(())
        } else {
            Err(Error::InvalidParameter {
                name: "dropout keep probability",
            })
        }
    }

    fn threshold(&self) -> u64 {
        // keep * 2^32 as an integer; keep == 1 keeps everything.
        (self.keep as f64 * 4_294_967_296.0) as u64
    }

    /// Scale applied to kept units, or 0 for a dropped one, for element `index`.
    #[inline]
    fn factor(&self, seed: u64, index: u64, threshold: u64) -> f32 {
        if (hash32(seed, index) as u64) < threshold {
            1.0 / self.keep
        } else {
            0.0
        }
    }

    /// Forward pass while training. `first` is the global index of `x[0]` (so that a
    /// thread working on part of a batch draws the same mask as a whole-batch pass).
    pub fn forward_train(
        &self,
        seed: u64,
        first: u64,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), Error> {
        self.validate()?;
        check_len("dropout output", y, x.len())?;
        let t = self.threshold();
        for (i, (o, v)) in y.iter_mut().zip(x).enumerate() {
            *o = v * self.factor(seed, first + i as u64, t);
        }
        Ok(())
    }

    /// Backward pass of [`Dropout::forward_train`] with the same `seed` and `first`.
    pub fn backward(&self, seed: u64, first: u64, dy: &[f32], dx: &mut [f32]) -> Result<(), Error> {
        self.forward_train(seed, first, dy, dx)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testutil::{check_grad, dot, rand_vec};
    use std::vec;

    #[test]
    fn keeps_the_right_fraction_and_scales() {
        let d = Dropout::new(0.75);
        let x = vec![1.0f32; 100_000];
        let mut y = vec![0.0; x.len()];
        d.forward_train(42, 0, &x, &mut y).unwrap();
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / x.len() as f64;
        assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        // Same seed -> same mask; a split pass equals the whole pass.
        let mut y2 = vec![0.0; x.len()];
        d.forward_train(42, 0, &x[..500], &mut y2[..500]).unwrap();
        d.forward_train(42, 500, &x[500..], &mut y2[500..]).unwrap();
        assert_eq!(y, y2);
        d.forward_train(43, 0, &x, &mut y2).unwrap();
        assert_ne!(y, y2);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let d = Dropout::new(0.5);
        let x = rand_vec(1, 30, 1.0);
        let r = rand_vec(2, 30, 1.0);
        let mut dx = vec![0.0; 30];
        d.backward(9, 3, &r, &mut dx).unwrap();
        check_grad("dropout dx", &x, &dx, 1e-2, 1e-4, |x| {
            let mut y = vec![0.0; 30];
            d.forward_train(9, 3, x, &mut y).unwrap();
            dot(&y, &r)
        });
    }

    #[test]
    fn keep_out_of_range_is_an_error() {
        for keep in [0.0, -0.5, 1.5, f32::NAN] {
            assert!(Dropout::new(keep)
                .forward_train(0, 0, &[1.0], &mut [0.0])
                .is_err());
        }
        assert!(Dropout::new(1.0).validate().is_ok());
    }
}
