//! The core's deterministic PRNG and hash: SplitMix64, identical on every target and
//! free of `std`. Initialisers ([`crate::init`]), dropout masks ([`crate::layers::dropout`])
//! and the host's shuffling draw from here.

/// SplitMix64: tiny, fast, statistically solid for initialisation and shuffling, and
/// identical on every target. Not cryptographic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a strong 64-bit mixer.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A counter-based random 32-bit value for `(seed, index)`: the same inputs give the same
/// value whatever order they are asked in (used for dropout masks, so that masks do not
/// depend on how a batch is split across threads).
pub const fn hash32(seed: u64, index: u64) -> u32 {
    (mix64(seed ^ mix64(index.wrapping_mul(GOLDEN).wrapping_add(GOLDEN))) >> 32) as u32
}

impl Rng {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }
    /// The internal state, to save in a checkpoint.
    pub const fn state(&self) -> u64 {
        self.state
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }
    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform integer in `0..n` (`n > 0`), without modulo bias worth noticing
    /// (Lemire's multiply-shift on 64 bits).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Standard normal (Box-Muller, in `f64`).
    pub fn normal(&mut self) -> f64 {
        // u1 in (0, 1] so that ln(u1) is finite.
        let u1 = 1.0 - self.uniform_f64();
        let u2 = self.uniform_f64();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(core::f64::consts::TAU * u2)
    }
    /// Standard normal truncated to `[-2, 2]` by resampling, as TensorFlow's `truncated_normal`.
    pub fn truncated_normal(&mut self) -> f64 {
        loop {
            let z = self.normal();
            if z.abs() <= 2.0 {
                return z;
            }
        }
    }
    /// Fisher-Yates shuffle of `items`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
