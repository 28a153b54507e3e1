//! Optimizers: update parameter slices in place from gradient slices, with their state
//! in a caller-provided slice.

use crate::error::{check_len, Error};
use crate::math::sqrt;

/// Adam, with TensorFlow's defaults and TensorFlow's epsilon placement.
///
/// For step `t = 1, 2, ...`:
/// ```text
/// m = b1 m + (1 - b1) g
/// v = b2 v + (1 - b2) g^2
/// lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)
/// p -= lr_t * m / (sqrt(v) + eps)
/// ```
/// This is `tf.train.AdamOptimizer` and Keras' Adam ("epsilon hat" of Kingma & Ba,
/// section 2): epsilon is added to `sqrt(v)` *without* bias correction. PyTorch adds it
/// after bias-correcting `v` (`sqrt(v / (1 - b2^t)) + eps`); the two differ only while
/// `sqrt(v)` is near `eps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to `sqrt(v)`.
    pub epsilon: f32,
    /// Steps taken so far.
    pub t: u32,
}

impl Adam {
    /// Adam with learning rate `lr` and TensorFlow's defaults (0.9, 0.999, 1e-8).
    pub const fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            t: 0,
        }
    }

    /// One step. `m` and `v` are the moment buffers, as long as `params`, zero at the start.
    pub fn step(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) -> Result<(), Error> {
        check_len("gradients", grads, params.len())?;
        check_len("adam m", m, params.len())?;
        check_len("adam v", v, params.len())?;
        self.t = self.t.saturating_add(1);
        let t = self.t as i32;
        // Bias corrections in f64: b^t for large t underflows gracefully to 0.
        let c1 = 1.0 - libm::pow(self.beta1 as f64, t as f64);
        let c2 = 1.0 - libm::pow(self.beta2 as f64, t as f64);
        let lr_t = (self.lr as f64 * libm::sqrt(c2) / c1) as f32;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.epsilon);
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(m.iter_mut())
            .zip(v.iter_mut())
        {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= lr_t * *m / (sqrt(*v) + eps);
        }
        Ok(())
    }
}

/// Stochastic gradient descent with (optional) momentum, TensorFlow's and PyTorch's form:
/// `a = momentum * a + g; p -= lr * a` (with `momentum = 0` this is plain SGD and the
/// accumulator is unused).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum in `[0, 1)`.
    pub momentum: f32,
}

impl Sgd {
    /// SGD with learning rate `lr` and `momentum`.
    pub const fn new(lr: f32, momentum: f32) -> Self {
        Sgd { lr, momentum }
    }

    /// One step. `acc` (momentum accumulator, as long as `params`) may be empty when
    /// `momentum == 0`.
    pub fn step(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        acc: &mut [f32],
    ) -> Result<(), Error> {
        check_len("gradients", grads, params.len())?;
        if self.momentum == 0.0 && acc.is_empty() {
            for (p, &g) in params.iter_mut().zip(grads) {
                *p -= self.lr * g;
            }
            return Ok(());
        }
        check_len("sgd momentum", acc, params.len())?;
        for ((p, &g), a) in params.iter_mut().zip(grads).zip(acc.iter_mut()) {
            *a = self.momentum * *a + g;
            *p -= self.lr * *a;
        }
        Ok(())
    }
}

/// Either optimizer, with its state in one slice of [`Optimizer::state_len`] elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Adam: state is `m` then `v`.
    Adam(Adam),
    /// SGD: state is the momentum accumulator (empty when momentum is 0).
    Sgd(Sgd),
}

impl Optimizer {
    /// Elements of state for `params` parameters.
    pub const fn state_len(&self, params: usize) -> usize {
        match self {
            Optimizer::Adam(_) => params.saturating_mul(2),
            Optimizer::Sgd(s) => {
                if s.momentum == 0.0 {
                    0
                } else {
                    params
                }
            }
        }
    }

    /// One update of `params` from `grads`.
    ///
    /// ```
    /// use microconv::optim::{Adam, Optimizer};
    ///
    /// const OPT: Optimizer = Optimizer::Adam(Adam::new(0.1));
    /// let mut params = [1.0f32, -1.0];
    /// let mut state = [0.0f32; OPT.state_len(2)]; // Adam: m and v
    /// let mut opt = OPT;
    /// opt.step(&mut params, &[0.5, -0.5], &mut state).unwrap();
    /// // Adam's first step moves each parameter by about lr against its gradient's sign.
    /// assert!((params[0] - 0.9).abs() < 1e-4 && (params[1] + 0.9).abs() < 1e-4);
    /// ```
    pub fn step(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        state: &mut [f32],
    ) -> Result<(), Error> {
        check_len("optimizer state", state, self.state_len(params.len()))?;
        match self {
            Optimizer::Adam(a) => {
                let (m, v) = state.split_at_mut(params.len());
                a.step(params, grads, m, v)
            }
            Optimizer::Sgd(s) => s.step(params, grads, state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr() {
        // At t = 1, m = 0.1 g, v = 0.001 g^2, lr_t = lr * sqrt(0.001) / 0.1:
        // the step is lr * sign(g) (up to eps).
        let mut p = [1.0f32, -2.0];
        let mut st = [0.0f32; 4];
        let mut o = Optimizer::Adam(Adam::new(0.01));
        o.step(&mut p, &[3.0, -0.5], &mut st).unwrap();
        assert!(
            (p[0] - 0.99).abs() < 1e-6 && (p[1] + 1.99).abs() < 1e-6,
            "{p:?}"
        );
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        let mut p = [5.0f32, -3.0];
        let mut st = [0.0f32; 4];
        let mut o = Optimizer::Adam(Adam::new(0.1));
        for _ in 0..500 {
            let g = [2.0 * p[0], 2.0 * p[1]];
            o.step(&mut p, &g, &mut st).unwrap();
        }
        assert!(p[0].abs() < 0.05 && p[1].abs() < 0.05, "{p:?}");
    }

    #[test]
    fn sgd_momentum_matches_hand_computation() {
        let mut p = [1.0f32];
        let mut a = [0.0f32];
        let mut s = Sgd::new(0.1, 0.9);
        s.step(&mut p, &[1.0], &mut a).unwrap(); // a = 1, p = 0.9
        s.step(&mut p, &[1.0], &mut a).unwrap(); // a = 1.9, p = 0.71
        assert!((p[0] - 0.71).abs() < 1e-6);
        let mut plain = Optimizer::Sgd(Sgd::new(0.5, 0.0));
        assert_eq!(plain.state_len(1), 0);
        plain.step(&mut p, &[0.02], &mut []).unwrap();
        assert!((p[0] - 0.70).abs() < 1e-6);
        assert!(plain.step(&mut p, &[0.0, 1.0], &mut []).is_err());
    }
}
