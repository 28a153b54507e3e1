//! Int8 inference (`microconv::quant`): the network sees pixels - 128 (the same real
//! values as the float network's pixels / 255) and answers int8 logits, dequantized. Run
//! by the core's planned inference (`microconv::plan`) in one arena: the plan worked out
//! as the pass goes ([`AnyArch`], any model) or at build time ([`CompiledI8`], the
//! embedded model's).

use microconv::plan::infer_planned_i8;
use microconv::quant::{argmax_i8, QNet};
use microconv::{Arch, Error};

use crate::protocol::SCORES;

use super::{scores_for, AnyArch, Runner};

/// How an int8 classifier runs its network on the quantized image at the start of its
/// arena.
pub trait InferI8 {
    /// The int8 logits of `net`, a part of `arena`.
    fn infer<'b>(&mut self, net: &QNet<'_>, arena: &'b mut [i8]) -> Result<&'b [i8], Error>;
    /// Parameters and classes when known as constants (`None`: from the architecture).
    fn sizes(&self) -> Option<(usize, usize)> {
        None
    }
}

impl InferI8 for AnyArch {
    fn infer<'b>(&mut self, net: &QNet<'_>, arena: &'b mut [i8]) -> Result<&'b [i8], Error> {
        infer_planned_i8(net, 1, arena)
    }
}

/// microconv-build's generated `infer_i8`: arena, scratch -> int8 logits.
pub type InferI8Fn = for<'b> fn(&'b mut [i8], &mut [u32]) -> Result<&'b [i8], Error>;

/// The embedded model's int8 inference, generated at build time (microconv-build's
/// `infer_i8`: its plan and shapes are constants and only its layers' kernels are
/// linked), with the scratch it takes its convolutions' patches from
/// (`I8_SCRATCH_LEN` words, sized for the model) and the model's sizes as constants
/// (`PARAM_COUNT`, `CLASSES`).
pub struct CompiledI8<'s> {
    /// The generated function: arena, scratch -> logits.
    pub infer: InferI8Fn,
    /// Its scratch.
    pub scratch: &'s mut [u32],
    /// Parameters of the model.
    pub param_count: usize,
    /// Classes it scores.
    pub classes: usize,
}

impl InferI8 for CompiledI8<'_> {
    fn infer<'b>(&mut self, _: &QNet<'_>, arena: &'b mut [i8]) -> Result<&'b [i8], Error> {
        (self.infer)(arena, self.scratch)
    }
    fn sizes(&self) -> Option<(usize, usize)> {
        Some((self.param_count, self.classes))
    }
}

/// An int8 network and the one arena inference needs, in bytes (static on a board), run
/// by `I`.
pub struct Int8Classifier<'m, I = AnyArch> {
    net: QNet<'m>,
    arena: &'m mut [i8],
    infer: I,
}

/// The network's input quantization must be pixels - 128 (scale 1/255, zero -128).
fn check_input(net: &QNet<'_>) -> Result<(), Error> {
    if net.input.zero != -128 || net.input.scale != 1.0 / 255.0 {
        return Err(Error::InvalidParameter {
            name: "int8 input quantization (must be scale 1/255, zero -128)",
        });
    }
    Ok(())
}

impl<'m> Int8Classifier<'m> {
    /// Checks the architecture and the arena against it ([`Arch::planned_len`]`(1)`
    /// bytes, which hold the image too). The network's input quantization must be
    /// pixels - 128 (scale 1/255, zero -128).
    pub fn new(net: QNet<'m>, arena: &'m mut [i8]) -> Result<Self, Error> {
        net.arch.validate()?;
        Error::expect_len("int8 inference arena", net.arch.planned_len(1), arena.len())?;
        check_input(&net)?;
        Ok(Int8Classifier {
            net,
            arena,
            infer: AnyArch,
        })
    }
}

impl<'m> Int8Classifier<'m, CompiledI8<'m>> {
    /// The embedded model's classifier: `infer` generated for `net` at build time,
    /// which checked the architecture; it checks `arena` and the scratch on each call.
    /// The input quantization must be pixels - 128, as for [`Int8Classifier::new`].
    pub fn compiled(
        net: QNet<'m>,
        arena: &'m mut [i8],
        infer: CompiledI8<'m>,
    ) -> Result<Self, Error> {
        check_input(&net)?;
        Ok(Int8Classifier { net, arena, infer })
    }
}

impl<'m, I: InferI8> Runner<'m> for Int8Classifier<'m, I> {
    fn arch(&self) -> &Arch<'m> {
        &self.net.arch
    }

    fn param_count(&self) -> usize {
        match self.infer.sizes() {
            Some((p, _)) => p,
            None => self.net.arch.param_count(),
        }
    }

    fn classes(&self) -> usize {
        match self.infer.sizes() {
            Some((_, c)) => c,
            None => self.net.arch.classes(),
        }
    }

    /// The scores are the int8 logits dequantized (`scale * (q - zero)`).
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        let input_len = self.net.arch.planned_input_len(1);
        Error::expect_len("image", input_len, pixels.len())?;
        let have = self.arena.len();
        let input = self.arena.get_mut(..input_len).ok_or(Error::BufferLen {
            buffer: "int8 inference arena",
            expected: input_len,
            actual: have,
        })?;
        for (x, &p) in input.iter_mut().zip(pixels) {
            *x = (p as i32 - 128) as i8;
        }
        let logits = self.infer.infer(&self.net, self.arena)?;
        let mut scores = [0.0; SCORES];
        let out = scores_for(&mut scores, logits.len())?;
        if let Some(last) = self.net.layers.last() {
            for (s, &l) in out.iter_mut().zip(logits) {
                *s = last.output.dequantize(l);
            }
        }
        Ok((argmax_i8(logits) as u8, scores))
    }
}
