//! The parameter initialisers (the PRNG they draw from is [`crate::rng`]).

use crate::arch::Arch;
use crate::error::Error;

/// The PRNG and hash moved to [`crate::rng`]; re-exported here so `init::Rng` keeps working.
pub use crate::rng::{hash32, mix64, Rng};

/// How parameters are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// The seed experiment's: every weight and bias ~ normal(0, 1), except the last
    /// layer's, ~ truncated normal(0, 1). Makes logits huge on purpose.
    Seed,
    /// He (Kaiming) normal for weights, `std = sqrt(2 / fan_in)`, zero biases: the
    /// default, suited to ReLU networks.
    He,
    /// Glorot (Xavier) uniform, `U(-l, l)` with `l = sqrt(6 / (fan_in + fan_out))`, zero biases.
    Glorot,
}

/// Fills `params` (length [`Arch::param_count`]) for `arch` with `init`, deterministically from `seed`.
///
/// Parameters are drawn layer by layer, weights then biases, in memory order.
pub fn init_params(
    arch: &Arch<'_>,
    init: Init,
    seed: u64,
    params: &mut [f32],
) -> Result<(), Error> {
    arch.validate()?;
    crate::error::check_len("params", params, arch.param_count())?;
    let mut rng = Rng::new(seed);
    let last = arch.last_param_layer();
    for (i, layer) in arch.layers.iter().enumerate() {
        let (input, _) = arch.layer_io(i)?;
        // fan_in, fan_out and the weight count (biases follow the weights).
        let (fan_in, fan_out, wlen) = match layer.param_shapes(input) {
            Some(p) => (p.fan_in, p.fan_out, layer.weight_len(input)),
            None => continue,
        };
        let range = arch.param_range(i)?;
        let (w, b) = params[range].split_at_mut(wlen);
        if let crate::layers::Layer::BatchNorm(_) = layer {
            // The identity: gamma 1, beta 0, running mean 0 and variance 1 (no draw).
            crate::layers::BatchNorm::init(w, b);
            continue;
        }
        match init {
            Init::Seed => {
                let truncated = Some(i) == last;
                for v in w.iter_mut().chain(b.iter_mut()) {
                    *v = if truncated {
                        rng.truncated_normal()
                    } else {
                        rng.normal()
                    } as f32;
                }
            }
            Init::He => {
                let std = libm::sqrt(2.0 / fan_in as f64);
                w.iter_mut().for_each(|v| *v = (rng.normal() * std) as f32);
                b.fill(0.0);
            }
            Init::Glorot => {
                let l = libm::sqrt(6.0 / (fan_in + fan_out) as f64);
                w.iter_mut()
                    .for_each(|v| *v = ((rng.uniform_f64() * 2.0 - 1.0) * l) as f32);
                b.fill(0.0);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(1);
        let n = 200_000;
        let (mut s, mut s2, mut tmax) = (0.0, 0.0, 0.0f64);
        for _ in 0..n {
            let z = r.normal();
            s += z;
            s2 += z * z;
            tmax = tmax.max(r.truncated_normal().abs());
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        assert!(tmax <= 2.0);
    }

    #[test]
    fn deterministic_and_shuffle_is_permutation() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut v = [0u32; 100];
        for (i, x) in v.iter_mut().enumerate() {
            *x = i as u32;
        }
        a.shuffle(&mut v);
        let mut seen = [false; 100];
        v.iter().for_each(|&x| seen[x as usize] = true);
        assert!(seen.iter().all(|&s| s));
        assert_ne!(v[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(hash32(3, 9), hash32(3, 9));
        assert_ne!(hash32(3, 9), hash32(3, 10));
    }
}
