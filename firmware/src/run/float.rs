//! Float inference: the core's reference kernels on pixels / 255, as in training.

use microconv::loss::argmax;
use microconv::net::{infer, Exec};
use microconv::{Arch, Error};

use crate::protocol::SCORES;

use super::{scores_for, Runner};

/// A float network with its parameters and the two buffers inference needs (static on
/// a board).
pub struct FloatClassifier<'m> {
    arch: Arch<'m>,
    params: &'m [f32],
    buf: &'m mut [f32],
    input: &'m mut [f32],
}

impl<'m> FloatClassifier<'m> {
    /// Checks the architecture and the buffers against it: `params`
    /// ([`Arch::param_count`]), `buf` ([`Arch::inference_len`]`(1)`) and `input` (one
    /// image, `arch.input.len()`).
    pub fn new(
        arch: Arch<'m>,
        params: &'m [f32],
        buf: &'m mut [f32],
        input: &'m mut [f32],
    ) -> Result<Self, Error> {
        arch.validate()?;
        Error::expect_len("params", arch.param_count(), params.len())?;
        Error::expect_len("inference buffer", arch.inference_len(1), buf.len())?;
        Error::expect_len("input", arch.input.len(), input.len())?;
        Ok(FloatClassifier {
            arch,
            params,
            buf,
            input,
        })
    }
}

impl<'m> Runner<'m> for FloatClassifier<'m> {
    fn arch(&self) -> &Arch<'m> {
        &self.arch
    }

    /// The network sees pixels / 255; the scores are its logits.
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        Error::expect_len("image", self.input.len(), pixels.len())?;
        for (x, &p) in self.input.iter_mut().zip(pixels) {
            *x = p as f32 / 255.0;
        }
        let logits = infer(
            &self.arch,
            self.params,
            self.input,
            1,
            self.buf,
            &Exec::REFERENCE,
            &mut [],
        )?;
        let mut scores = [0.0; SCORES];
        scores_for(&mut scores, logits.len())?.copy_from_slice(logits);
        Ok((argmax(logits) as u8, scores))
    }
}
