//! Softmax, log-softmax and three cross-entropies, all with the max-shift.
//!
//! The seed experiment trains the same network with three ways of writing the same
//! loss; only the naive one fails. Plain names here:
//!
//! | [`Loss`] | per sample, label `t`, logits `x` | gradient `dL/dx` |
//! |---|---|---|
//! | [`Loss::Fused`] | `log_sum_exp(x) - x[t]`, in one pass | `softmax(x) - onehot(t)`, in the same pass |
//! | [`Loss::LogSoftmax`] | `-log_softmax(x)[t]` | chained through `log_softmax`'s Jacobian |
//! | [`Loss::Naive`] | `-log(softmax(x)[t] + 1e-10)` | chained through `log` and `softmax`'s Jacobian |
//!
//! `log_sum_exp(x) = m + ln(sum(exp(x - m)))` with `m = max(x)` never overflows and keeps
//! the exact value: for logits `[1, 1000]`, `log_softmax = [-999, 0]`. The naive loss
//! computes `softmax` first, which rounds to `[0, 1]` in `f32`; `log(0 + 1e-10)` then
//! reports -23.03 instead of -999, and the softmax Jacobian `p (1 - p)` is exactly 0, so
//! **its gradient vanishes and the network never learns**. It is here, faithfully, to
//! show that failure; never train with it.
//!
//! ## Non-finite logits (the rules)
//! The math primitives ([`log_sum_exp`], [`softmax`], [`log_softmax`]) follow IEEE
//! arithmetic: NaN in gives NaN out, `+inf` gives `log_sum_exp = +inf`, `-inf` entries
//! are probability 0, an all `-inf` (or empty) row has `log_sum_exp = -inf`.
//! The losses are stricter, because a training loop must not continue on garbage:
//! - a NaN or `+inf` logit, or a row of only `-inf`: [`Error::NonFiniteLogits`];
//! - a `-inf` logit elsewhere is a class with probability 0: fine, and if it is the
//!   label's logit the loss is `+inf` (the exact value) with a finite gradient;
//! - huge finite logits (up to `f32::MAX`) are exact thanks to the max-shift;
//! - an empty batch: [`Error::EmptyBatch`]; a label `>= classes`: [`Error::LabelOutOfRange`];
//! - a single class: loss 0 and gradient 0.

use crate::error::{check_len, Error};
use crate::math::{exp, ln};

/// The `1e-10` the seed's naive loss adds inside the `log`.
pub const NAIVE_EPSILON: f32 = 1e-10;

/// Which cross-entropy to compute (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The seed's `-y * log(softmax(x) + 1e-10)`: saturates and stops learning.
    Naive,
    /// `-y * log_softmax(x)`: stable.
    LogSoftmax,
    /// Cross-entropy on logits with its gradient `softmax - y` in one pass (TensorFlow's
    /// `softmax_cross_entropy_with_logits`): stable and the cheapest.
    Fused,
}

/// How per-sample losses (and so gradients) are combined over a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Sum over the batch (the seed's naive and log-softmax variants).
    Sum,
    /// Mean over the batch (the seed's fused variant).
    Mean,
}

/// Largest element (NaN if any element is NaN), `-inf` for an empty row.
fn max_of(x: &[f32]) -> f32 {
    let mut m = f32::NEG_INFINITY;
    for &v in x {
        if v.is_nan() {
            return f32::NAN;
        }
        if v > m {
            m = v;
        }
    }
    m
}

/// `ln(sum(exp(x)))`, computed as `m + ln(sum(exp(x - m)))` with `m = max(x)`.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let m = max_of(x);
    if !m.is_finite() {
        // NaN, +inf, or all -inf / empty: the IEEE answer is m itself.
        return m;
    }
    let s: f32 = x.iter().map(|&v| exp(v - m)).sum();
    m + ln(s)
}

/// `out = softmax(x) = exp(x - m) / sum(exp(x - m))`.
pub fn softmax(x: &[f32], out: &mut [f32]) -> Result<(), Error> {
    check_len("softmax output", out, x.len())?;
    let m = max_of(x);
    if !m.is_finite() {
        out.fill(f32::NAN);
        return Ok(());
    }
    let mut s = 0.0;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp(v - m);
        s += *o;
    }
    let inv = 1.0 / s;
    out.iter_mut().for_each(|o| *o *= inv);
    Ok(())
}

/// `out = log_softmax(x) = (x - m) - ln(sum(exp(x - m)))`.
pub fn log_softmax(x: &[f32], out: &mut [f32]) -> Result<(), Error> {
    check_len("log_softmax output", out, x.len())?;
    let m = max_of(x);
    if !m.is_finite() {
        out.fill(f32::NAN);
        return Ok(());
    }
    let s: f32 = x.iter().map(|&v| exp(v - m)).sum();
    let l = ln(s);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m) - l;
    }
    Ok(())
}

/// Checks one row of logits, its label and its gradient buffer against the loss
/// rules; returns the row's max.
fn check_row(x: &[f32], label: usize, dx: &Option<&mut [f32]>) -> Result<f32, Error> {
    if label >= x.len() {
        return Err(Error::LabelOutOfRange {
            sample: 0,
            label,
            classes: x.len(),
        });
    }
    if let Some(d) = dx {
        check_len("logits gradient", d, x.len())?;
    }
    let m = max_of(x);
    if !m.is_finite() {
        return Err(Error::NonFiniteLogits { sample: 0 });
    }
    Ok(m)
}

/// Fused cross-entropy of one sample: `log_sum_exp(x) - x[label]`, and, if `dx` is given,
/// `dx = scale * (softmax(x) - onehot(label))`, in one pass over `exp(x - m)`.
///
/// ```
/// use microconv::loss::cross_entropy_with_logits;
///
/// let logits = [2.0f32, -1.0, 1000.0];
/// let mut grad = [0.0f32; 3];
/// let loss = cross_entropy_with_logits(&logits, 0, 1.0, Some(&mut grad)).unwrap();
/// assert!((loss - 998.0).abs() < 1e-3); // huge logits: finite, no overflow
/// assert!((grad[2] - 1.0).abs() < 1e-6 && (grad[0] + 1.0).abs() < 1e-6);
/// // A NaN logit or an out-of-range label is an error.
/// assert!(cross_entropy_with_logits(&[f32::NAN, 0.0], 0, 1.0, None).is_err());
/// assert!(cross_entropy_with_logits(&logits, 3, 1.0, None).is_err());
/// ```
pub fn cross_entropy_with_logits(
    x: &[f32],
    label: usize,
    scale: f32,
    dx: Option<&mut [f32]>,
) -> Result<f32, Error> {
    let m = check_row(x, label, &dx)?;
    let s: f32 = x.iter().map(|&v| exp(v - m)).sum();
    let ls = ln(s);
    // ln(s) - (x[t] - m) rather than (m + ln s) - x[t]: no cancellation for huge logits.
    let loss = ls - (x[label] - m);
    if let Some(dx) = dx {
        let inv = 1.0 / s;
        for (i, (d, &v)) in dx.iter_mut().zip(x).enumerate() {
            let p = exp(v - m) * inv;
            *d = scale * if i == label { p - 1.0 } else { p };
        }
    }
    Ok(loss)
}

/// `-log_softmax(x)[label]`, with the gradient chained through `log_softmax`'s
/// Jacobian: `dls = -scale * onehot`, `dx_i = dls_i - softmax_i * sum(dls)`.
/// `tmp` holds `log_softmax(x)` (same length as `x`).
pub fn log_softmax_cross_entropy(
    x: &[f32],
    label: usize,
    scale: f32,
    dx: Option<&mut [f32]>,
    tmp: &mut [f32],
) -> Result<f32, Error> {
    check_row(x, label, &dx)?;
    log_softmax(x, tmp)?;
    let loss = -tmp[label];
    if let Some(dx) = dx {
        // Upstream gradient of -y·ls is -y (times scale); its sum is -scale.
        let sum_dls = -scale;
        for (i, (d, &l)) in dx.iter_mut().zip(tmp.iter()).enumerate() {
            let dls = if i == label { -scale } else { 0.0 };
            *d = dls - exp(l) * sum_dls;
        }
    }
    Ok(loss)
}

/// The seed's naive loss, `-log(softmax(x)[label] + 1e-10)`, with its true gradient:
/// `g_j = -y_j / (p_j + 1e-10)` through `log`, then the softmax Jacobian
/// `dx_i = p_i * (g_i - sum_j g_j p_j)`. When `p` rounds to one-hot this is exactly 0.
/// `tmp` holds `softmax(x)`.
pub fn naive_cross_entropy(
    x: &[f32],
    label: usize,
    scale: f32,
    dx: Option<&mut [f32]>,
    tmp: &mut [f32],
) -> Result<f32, Error> {
    check_row(x, label, &dx)?;
    softmax(x, tmp)?;
    let loss = -ln(tmp[label] + NAIVE_EPSILON);
    if let Some(dx) = dx {
        let g_t = -scale / (tmp[label] + NAIVE_EPSILON);
        let dot = g_t * tmp[label];
        for (i, (d, &p)) in dx.iter_mut().zip(tmp.iter()).enumerate() {
            let g = if i == label { g_t } else { 0.0 };
            *d = p * (g - dot);
        }
    }
    Ok(loss)
}

/// What [`batch_loss`] returns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchLoss {
    /// The reduced loss (sum or mean over the samples given).
    pub value: f32,
    /// Number of samples whose largest logit is at their label (first max wins ties).
    pub correct: usize,
}

/// Index of the largest value (the first one on ties); 0 for an empty slice.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Loss of a batch of logits `[n, classes]` against `labels [n]`, and, if `dlogits` is
/// given, its gradient.
///
/// `total` is the number of samples the reduction is over: normally `n`, or the whole
/// batch's size when a thread handles only part of it (so that `Mean` divides by the
/// whole batch). `tmp` needs `classes` elements (for the two unfused losses).
#[allow(clippy::too_many_arguments)]
pub fn batch_loss(
    loss: Loss,
    reduction: Reduction,
    logits: &[f32],
    classes: usize,
    labels: &[u8],
    total: usize,
    mut dlogits: Option<&mut [f32]>,
    tmp: &mut [f32],
) -> Result<BatchLoss, Error> {
    let n = labels.len();
    if n == 0 || total == 0 {
        return Err(Error::EmptyBatch);
    }
    if classes == 0 {
        return Err(Error::InvalidParameter { name: "classes" });
    }
    check_len("logits", logits, n.saturating_mul(classes))?;
    check_len("loss scratch", tmp, classes)?;
    if let Some(d) = &dlogits {
        check_len("logits gradient", d, n.saturating_mul(classes))?;
    }
    let scale = match reduction {
        Reduction::Sum => 1.0,
        Reduction::Mean => 1.0 / total as f32,
    };
    let mut sum = 0.0f32;
    let mut correct = 0;
    for (i, (row, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let t = label as usize;
        if t >= classes {
            return Err(Error::LabelOutOfRange {
                sample: i,
                label: t,
                classes,
            });
        }
        let dx = dlogits
            .as_deref_mut()
            .map(|d| &mut d[i * classes..(i + 1) * classes]);
        let l = match loss {
            Loss::Fused => cross_entropy_with_logits(row, t, scale, dx),
            Loss::LogSoftmax => log_softmax_cross_entropy(row, t, scale, dx, tmp),
            Loss::Naive => naive_cross_entropy(row, t, scale, dx, tmp),
        }
        .map_err(|e| match e {
            Error::NonFiniteLogits { .. } => Error::NonFiniteLogits { sample: i },
            e => e,
        })?;
        sum += l;
        if argmax(row) == t {
            correct += 1;
        }
    }
    Ok(BatchLoss {
        value: sum * scale,
        correct,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testutil::{check_grad, rand_vec};
    use std::vec;

    const INF: f32 = f32::INFINITY;

    fn fused(x: &[f32], t: usize) -> Result<(f32, std::vec::Vec<f32>), Error> {
        let mut d = vec![0.0; x.len()];
        cross_entropy_with_logits(x, t, 1.0, Some(&mut d)).map(|l| (l, d))
    }

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn uniform_logits() {
        let (l, d) = fused(&[1.0, 1.0, 1.0, 1.0], 3).unwrap();
        assert!(close(l, 1.386294, 1e-6), "{l}");
        for (a, b) in d.iter().zip([0.25, 0.25, 0.25, -0.75]) {
            assert!(close(*a, b, 1e-6));
        }
    }

    #[test]
    fn log_softmax_values_and_seed_vectors() {
        let mut out = [0.0; 4];
        log_softmax(&[1.0, 2.0, 3.0, 4.0], &mut out).unwrap();
        for (a, b) in out
            .iter()
            .zip([-3.4401897, -2.4401897, -1.4401897, -0.4401897])
        {
            assert!(close(*a, b, 1e-6), "{out:?}");
        }
        // The seed's vectors: logits [1, 1000].
        let x = [1.0f32, 1000.0];
        let mut p = [0.0; 2];
        softmax(&x, &mut p).unwrap();
        assert_eq!(p, [0.0, 1.0]);
        let naive: f32 = p.iter().map(|&v| ln(v + NAIVE_EPSILON)).sum();
        assert!(close(naive, -23.02585, 1e-6), "{naive}");
        let mut ls = [0.0; 2];
        log_softmax(&x, &mut ls).unwrap();
        assert_eq!(ls.iter().sum::<f32>(), -999.0);
    }

    #[test]
    #[allow(clippy::approx_constant)] // 0.693147 is the issue's expected value, written as given.
    fn huge_and_shifted_logits() {
        let (l, d) = fused(&[f32::MAX, 1.0, 2.0, 3.0], 0).unwrap();
        assert_eq!((l, d.as_slice()), (0.0, &[0.0, 0.0, 0.0, 0.0][..]));
        let (l, d) = fused(&[f32::MAX, 1.0, 2.0, 3.0], 1).unwrap();
        assert!(l.is_finite() && close(l, f32::MAX, 1e-6), "{l}");
        assert_eq!(d, [1.0, -1.0, 0.0, 0.0]);
        let (l, _) = fused(&[1e8, 1e8], 1).unwrap();
        assert!(close(l, 0.693147, 1e-6), "{l}");
        let base = [1.0, 2.0, 3.0, 4.0];
        let shifted = base.map(|v| v + 1e7);
        let (a, da) = fused(&base, 2).unwrap();
        let (b, db) = fused(&shifted, 2).unwrap();
        assert_eq!((a, da), (b, db));
        assert!(close(log_sum_exp(&[1e30, 1e30]), 1e30, 1e-6));
    }

    #[test]
    fn one_class_and_infinities() {
        assert_eq!(fused(&[5.0], 0).unwrap(), (0.0, vec![0.0]));
        // -inf is a class of probability 0.
        assert_eq!(fused(&[0.0, -INF], 0).unwrap(), (0.0, vec![0.0, 0.0]));
        let (l, d) = fused(&[0.0, -INF], 1).unwrap();
        assert_eq!((l, d), (INF, vec![1.0, -1.0]));
        for bad in [[-INF, -INF], [INF, 0.0], [f32::NAN, 0.0], [0.0, f32::NAN]] {
            assert_eq!(
                fused(&bad, 0),
                Err(Error::NonFiniteLogits { sample: 0 }),
                "{bad:?}"
            );
        }
        // The math primitives follow IEEE.
        assert_eq!(log_sum_exp(&[-INF, -INF]), -INF);
        assert_eq!(log_sum_exp(&[]), -INF);
        assert_eq!(log_sum_exp(&[INF, 0.0]), INF);
        assert!(log_sum_exp(&[f32::NAN, 0.0]).is_nan());
    }

    #[test]
    fn batch_errors() {
        let mut tmp = [0.0; 3];
        let r = batch_loss(Loss::Fused, Reduction::Mean, &[], 3, &[], 0, None, &mut tmp);
        assert_eq!(r, Err(Error::EmptyBatch));
        let r = batch_loss(
            Loss::Fused,
            Reduction::Mean,
            &[0.0; 6],
            3,
            &[0, 3],
            2,
            None,
            &mut tmp,
        );
        assert_eq!(
            r,
            Err(Error::LabelOutOfRange {
                sample: 1,
                label: 3,
                classes: 3
            })
        );
        let r = batch_loss(
            Loss::Naive,
            Reduction::Sum,
            &[0.0, 0.0, 0.0, 1.0, f32::NAN, 0.0],
            3,
            &[0, 1],
            2,
            None,
            &mut tmp,
        );
        assert_eq!(r, Err(Error::NonFiniteLogits { sample: 1 }));
        let r = batch_loss(
            Loss::Fused,
            Reduction::Sum,
            &[0.0; 5],
            3,
            &[0, 1],
            2,
            None,
            &mut tmp,
        );
        assert!(matches!(r, Err(Error::BufferLen { .. })));
        assert!(matches!(
            cross_entropy_with_logits(&[0.0; 2], 2, 1.0, None),
            Err(Error::LabelOutOfRange { .. })
        ));
    }

    #[test]
    fn naive_gradient_vanishes_at_huge_logits() {
        // The seed's failure: softmax is one-hot in f32, the gradient is exactly 0.
        let mut tmp = [0.0; 3];
        for label in 0..3 {
            let mut d = [9.0; 3];
            let l = naive_cross_entropy(&[500.0, -300.0, 20.0], label, 1.0, Some(&mut d), &mut tmp)
                .unwrap();
            assert_eq!(d, [0.0; 3]);
            assert!(
                close(l, if label == 0 { 0.0 } else { 23.02585 }, 1e-6),
                "{l}"
            );
        }
        let mut d = [0.0; 3];
        let l = log_softmax_cross_entropy(&[500.0, -300.0, 20.0], 1, 1.0, Some(&mut d), &mut tmp)
            .unwrap();
        assert_eq!((l, d), (800.0, [1.0, -1.0, 0.0]));
    }

    #[test]
    fn all_three_agree_and_match_finite_differences() {
        let classes = 5;
        let n = 4;
        let x = rand_vec(3, n * classes, 3.0);
        let labels = [0u8, 4, 2, 2];
        let mut tmp = [0.0; 5];
        let mut grads = [vec![], vec![], vec![]];
        for (k, loss) in [Loss::Fused, Loss::LogSoftmax, Loss::Naive]
            .into_iter()
            .enumerate()
        {
            for red in [Reduction::Sum, Reduction::Mean] {
                let mut d = vec![0.0; n * classes];
                let v = batch_loss(loss, red, &x, classes, &labels, n, Some(&mut d), &mut tmp)
                    .unwrap()
                    .value;
                check_grad(&std::format!("{loss:?} {red:?}"), &x, &d, 1e-2, 2e-3, |x| {
                    let mut t = [0.0; 5];
                    batch_loss(loss, red, x, classes, &labels, n, None, &mut t)
                        .unwrap()
                        .value as f64
                });
                if red == Reduction::Sum {
                    grads[k] = d;
                    assert!(v > 0.0);
                }
            }
        }
        for (a, b) in grads[0]
            .iter()
            .zip(&grads[1])
            .chain(grads[0].iter().zip(&grads[2]))
        {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
