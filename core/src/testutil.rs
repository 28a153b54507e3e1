//! Helpers for the unit tests: random data and finite-difference gradient checks.
extern crate std;
use std::vec::Vec;

use crate::rng::Rng;

/// `n` values uniform in `[-scale, scale)`.
pub fn rand_vec(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| ((r.uniform_f64() * 2.0 - 1.0) * scale as f64) as f32)
        .collect()
}

/// Checks `analytic[i]` against the central difference of `f` around `x[i]` for every
/// `i`, with step `eps`: `|a - n| <= tol * max(1, |a|, |n|)`. `f` is evaluated in f32 by
/// the layer but summed in f64 by the caller.
pub fn check_grad(
    name: &str,
    x: &[f32],
    analytic: &[f32],
    eps: f32,
    tol: f64,
    mut f: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let mut xs = x.to_vec();
    let mut worst = 0.0f64;
    for i in 0..x.len() {
        let orig = xs[i];
        xs[i] = orig + eps;
        let up = f(&xs);
        xs[i] = orig - eps;
        let down = f(&xs);
        xs[i] = orig;
        let num = (up - down) / (2.0 * eps as f64);
        let a = analytic[i] as f64;
        let err = (a - num).abs() / 1f64.max(a.abs()).max(num.abs());
        worst = worst.max(err);
        assert!(
            err <= tol,
            "{name}[{i}]: analytic {a} vs numeric {num} (rel err {err:.2e} > {tol:.0e})"
        );
    }
    std::eprintln!(
        "{name}: {} gradients checked, worst rel err {worst:.2e}",
        x.len()
    );
}

/// `sum(y * r)` in f64: a scalar loss whose gradient w.r.t. `y` is `r`.
pub fn dot(y: &[f32], r: &[f32]) -> f64 {
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}
