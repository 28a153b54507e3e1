//! Float inference: the core's reference kernels on pixels / 255, as in training, run by
//! the core's planned inference (`microconv::plan`) in one arena: the plan worked out as
//! the pass goes ([`AnyArch`], any model) or at build time ([`CompiledF32`], the
//! embedded model's).

use microconv::loss::argmax;
use microconv::plan::infer_planned;
use microconv::{Arch, Error};

use crate::protocol::SCORES;

use super::{scores_for, AnyArch, Runner};

/// How a float classifier runs its network on the image at the start of its arena.
pub trait InferF32 {
    /// The logits of `arch` with `params`, a part of `arena`.
    fn infer<'b>(
        &mut self,
        arch: &Arch<'_>,
        params: &[f32],
        arena: &'b mut [f32],
    ) -> Result<&'b [f32], Error>;
    /// Parameters and classes when known as constants (`None`: from the architecture).
    fn sizes(&self) -> Option<(usize, usize)> {
        None
    }
}

impl InferF32 for AnyArch {
    fn infer<'b>(
        &mut self,
        arch: &Arch<'_>,
        params: &[f32],
        arena: &'b mut [f32],
    ) -> Result<&'b [f32], Error> {
        infer_planned(arch, params, 1, arena)
    }
}

/// microconv-build's generated `infer_f32`: parameters, arena -> logits.
pub type InferF32Fn = for<'b> fn(&[f32], &'b mut [f32]) -> Result<&'b [f32], Error>;

/// The embedded model's float inference, generated at build time (microconv-build's
/// `infer_f32`: its plan and shapes are constants and only its layers' kernels are
/// linked), with the model's sizes as constants (`PARAM_COUNT`, `CLASSES`).
#[derive(Clone, Copy)]
pub struct CompiledF32 {
    /// The generated function: parameters, arena -> logits.
    pub infer: InferF32Fn,
    /// Parameters of the model.
    pub param_count: usize,
    /// Classes it scores.
    pub classes: usize,
}

impl InferF32 for CompiledF32 {
    fn infer<'b>(
        &mut self,
        _: &Arch<'_>,
        params: &[f32],
        arena: &'b mut [f32],
    ) -> Result<&'b [f32], Error> {
        (self.infer)(params, arena)
    }
    fn sizes(&self) -> Option<(usize, usize)> {
        Some((self.param_count, self.classes))
    }
}

/// A float network with its parameters and the one arena inference needs (static on a
/// board), run by `I`.
pub struct FloatClassifier<'m, I = AnyArch> {
    arch: Arch<'m>,
    params: &'m [f32],
    arena: &'m mut [f32],
    infer: I,
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
            infer: AnyArch,
        })
    }
}

impl<'m> FloatClassifier<'m, CompiledF32> {
    /// The embedded model's classifier: `infer` generated for `arch` at build time,
    /// which checked the architecture; `infer` checks `params` and `arena` on each call.
    pub fn compiled(
        arch: Arch<'m>,
        params: &'m [f32],
        arena: &'m mut [f32],
        infer: CompiledF32,
    ) -> Self {
        FloatClassifier {
            arch,
            params,
            arena,
            infer,
        }
    }
}

impl<'m, I: InferF32> Runner<'m> for FloatClassifier<'m, I> {
    fn arch(&self) -> &Arch<'m> {
        &self.arch
    }

    fn param_count(&self) -> usize {
        match self.infer.sizes() {
            Some((p, _)) => p,
            None => self.arch.param_count(),
        }
    }

    fn classes(&self) -> usize {
        match self.infer.sizes() {
            Some((_, c)) => c,
            None => self.arch.classes(),
        }
    }

    /// The network sees pixels / 255 (written straight into the arena's input); the
    /// scores are its logits, the same bits as `microconv::net::infer` gives.
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        let input_len = self.arch.planned_input_len(1);
        Error::expect_len("image", input_len, pixels.len())?;
        let have = self.arena.len();
        let input = self.arena.get_mut(..input_len).ok_or(Error::BufferLen {
            buffer: "inference arena",
            expected: input_len,
            actual: have,
        })?;
        for (x, &p) in input.iter_mut().zip(pixels) {
            *x = p as f32 / 255.0;
        }
        let logits = self.infer.infer(&self.arch, self.params, self.arena)?;
        let mut scores = [0.0; SCORES];
        for (s, &l) in scores_for(&mut scores, logits.len())?
            .iter_mut()
            .zip(logits)
        {
            *s = l;
        }
        Ok((argmax(logits) as u8, scores))
    }
}
