//! Int8 inference (`microconv::quant`): the network sees pixels - 128 (the same real
//! values as the float network's pixels / 255) and answers int8 logits, dequantized. Run
//! by the core's planned inference (`microconv::plan`) in one arena.

use microconv::plan::infer_planned_i8;
use microconv::quant::{argmax_i8, QNet};
use microconv::{Arch, Error};

use crate::protocol::SCORES;

use super::{scores_for, Runner};

/// An int8 network and the one arena inference needs, in bytes (static on a board).
pub struct Int8Classifier<'m> {
    net: QNet<'m>,
    arena: &'m mut [i8],
}

impl<'m> Int8Classifier<'m> {
    /// Checks the architecture and the arena against it ([`Arch::planned_len`]`(1)`
    /// bytes, which hold the image too). The network's input quantization must be
    /// pixels - 128 (scale 1/255, zero -128).
    pub fn new(net: QNet<'m>, arena: &'m mut [i8]) -> Result<Self, Error> {
        net.arch.validate()?;
        Error::expect_len("int8 inference arena", net.arch.planned_len(1), arena.len())?;
        if net.input.zero != -128 || net.input.scale != 1.0 / 255.0 {
            return Err(Error::InvalidParameter {
                name: "int8 input quantization (must be scale 1/255, zero -128)",
            });
        }
        Ok(Int8Classifier { net, arena })
    }
}

impl<'m> Runner<'m> for Int8Classifier<'m> {
    fn arch(&self) -> &Arch<'m> {
        &self.net.arch
    }

    /// The scores are the int8 logits dequantized (`scale * (q - zero)`).
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        let input_len = self.net.arch.planned_input_len(1);
        Error::expect_len("image", input_len, pixels.len())?;
        for (x, &p) in self.arena[..input_len].iter_mut().zip(pixels) {
            *x = (p as i32 - 128) as i8;
        }
        let logits = infer_planned_i8(&self.net, 1, self.arena)?;
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
