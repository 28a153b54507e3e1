//! Float inference: the core's reference kernels on pixels / 255, as in training, run by
//! the core's planned inference (`microconv::plan`) in one arena.

use microconv::loss::argmax;
use microconv::plan::infer_planned;
use microconv::{Arch, Error};

use crate::protocol::SCORES;

use super::{scores_for, Runner};

/// A float network with its parameters and the one arena inference needs (static on a
/// board).
pub struct FloatClassifier<'m> {
    arch: Arch<'m>,
    params: &'m [f32],
    arena: &'m mut [f32],
}

impl<'m> FloatClassifier<'m> {
    /// Checks the architecture and the buffers against it: `params`
    /// ([`Arch::param_count`]) and `arena` ([`Arch::planned_len`]`(1)`, which holds the
    /// image too).
    pub fn new(arch: Arch<'m>, params: &'m [f32], arena: &'m mut [f32]) -> Result<Self, Error> {
        arch.validate()?;
        Error::expect_len("params", arch.param_count(), params.len())?;
        Error::expect_len("inference arena", arch.planned_len(1), arena.len())?;
        Ok(FloatClassifier {
            arch,
            params,
            arena,
        })
    }
}

impl<'m> Runner<'m> for FloatClassifier<'m> {
    fn arch(&self) -> &Arch<'m> {
        &self.arch
    }

    /// The network sees pixels / 255 (written straight into the arena's input); the
    /// scores are its logits, the same bits as `microconv::net::infer` gives.
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        let input_len = self.arch.planned_input_len(1);
        Error::expect_len("image", input_len, pixels.len())?;
        for (x, &p) in self.arena[..input_len].iter_mut().zip(pixels) {
            *x = p as f32 / 255.0;
        }
        let logits = infer_planned(&self.arch, self.params, 1, self.arena)?;
        let mut scores = [0.0; SCORES];
        scores_for(&mut scores, logits.len())?.copy_from_slice(logits);
        Ok((argmax(logits) as u8, scores))
    }
}
