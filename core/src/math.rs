//! Scalar math used by the core: `libm` by default, `micromath`'s fast approximations
//! with the `micromath` feature.
//!
//! Accuracy cost of the `micromath` feature, measured by `cargo test -p microconv
//! --features micromath --lib math -- --nocapture` (max relative error against f64):
//!
//! | function | `libm` (default) | `micromath` |
//! |---|---|---|
//! | `exp` on [-80, 80] | 6.8e-8 | 2.4e-3 |
//! | `ln` on [1e-30, 1e30] | 5.9e-8 | 1.4e-3 |
//!
//! `sqrt` always comes from `libm`: micromath's is off by up to 6e-2, which would
//! distort Adam's step sizes. The approximations are fine for inference (argmax of the
//! logits does not need `exp`) but make losses and gradients noisier; train with the default.

/// `e^x`.
#[inline]
pub fn exp(x: f32) -> f32 {
    #[cfg(feature = "micromath")]
    {
        micromath::F32Ext::exp(x)
    }
    #[cfg(not(feature = "micromath"))]
    {
        libm::expf(x)
    }
}

/// Natural logarithm.
#[inline]
pub fn ln(x: f32) -> f32 {
    #[cfg(feature = "micromath")]
    {
        micromath::F32Ext::ln(x)
    }
    #[cfg(not(feature = "micromath"))]
    {
        libm::logf(x)
    }
}

/// Square root (always `libm`, see the module doc).
#[inline]
pub fn sqrt(x: f32) -> f32 {
    libm::sqrtf(x)
}

/// Cosine (used by the Box-Muller normal sampler; always `libm`, initialisation only).
#[inline]
pub fn cos(x: f32) -> f32 {
    libm::cosf(x)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// Largest relative error of `f` against `f64` reference `r` over `[lo, hi]`.
    fn max_rel(f: fn(f32) -> f32, r: fn(f64) -> f64, lo: f32, hi: f32) -> f64 {
        let mut worst = 0.0f64;
        for i in 0..=20_000 {
            let x = lo + (hi - lo) * i as f32 / 20_000.0;
            let want = r(x as f64);
            let got = f(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        worst
    }

    /// Prints the accuracy of the selected backend; asserts the bound that backend promises.
    #[test]
    fn report() {
        let e = max_rel(exp, f64::exp, -80.0, 80.0);
        let l = max_rel(ln, f64::ln, 1e-30, 1e30);
        let l1 = max_rel(ln, f64::ln, 1.5, 100.0);
        let s = max_rel(sqrt, f64::sqrt, 1e-20, 1e20);
        std::println!("math backend: exp rel err {e:.3e} on [-80,80], ln {l:.3e} on [1e-30,1e30] ({l1:.3e} on [1.5,100]), sqrt {s:.3e}");
        if cfg!(feature = "micromath") {
            assert!(
                e < 5e-3 && l < 5e-3 && s < 1e-6,
                "micromath worse than documented"
            );
        } else {
            assert!(e < 1e-6 && l1 < 1e-6 && s < 1e-6, "libm worse than 1e-6");
        }
    }
}
