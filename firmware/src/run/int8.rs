//! Int8 inference (`microconv::quant`): the network sees pixels - 128 (the same real
//! values as the float network's pixels / 255) and answers int8 logits, dequantized.

use microconv::quant::{argmax_i8, infer_i8, QNet};
use microconv::{Arch, Error};

use crate::protocol::SCORES;

use super::{scores_for, Runner};

/// An int8 network and the two buffers inference needs, in bytes (static on a board).
pub struct Int8Classifier<'m> {
    net: QNet<'m>,
    buf: &'m mut [i8],
    input: &'m mut [i8],
}

impl<'m> Int8Classifier<'m> {
    /// Checks the architecture and the buffers against it (`buf`:
    /// [`Arch::inference_len`]`(1)`, `input`: one image, `arch.input.len()`). The
    /// network's input quantization must be pixels - 128 (scale 1/255, zero -128).
    pub fn new(net: QNet<'m>, buf: &'m mut [i8], input: &'m mut [i8]) -> Result<Self, Error> {
        net.arch.validate()?;
        Error::expect_len(
            "int8 inference buffer",
            net.arch.inference_len(1),
            buf.len(),
        )?;
        Error::expect_len("input", net.arch.input.len(), input.len())?;
        if net.input.zero != -128 || net.input.scale != 1.0 / 255.0 {
            return Err(Error::InvalidParameter {
                name: "int8 input quantization (must be scale 1/255, zero -128)",
            });
        }
        Ok(Int8Classifier { net, buf, input })
    }
}

impl<'m> Runner<'m> for Int8Classifier<'m> {
    fn arch(&self) -> &Arch<'m> {
        &self.net.arch
    }

    /// The scores are the int8 logits dequantized (`scale * (q - zero)`).
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        Error::expect_len("image", self.input.len(), pixels.len())?;
        for (x, &p) in self.input.iter_mut().zip(pixels) {
            *x = (p as i32 - 128) as i8;
        }
        let logits = infer_i8(&self.net, self.input, 1, self.buf)?;
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
