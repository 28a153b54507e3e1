//! Training on the device: the last (dense) layer of a float model fine-tuned from
//! labelled samples, with the core's forward and backward passes and SGD.
//!
//! ```text
//! frozen:    layers 0 .. L-2, parameters read in place from flash (the weights file)
//! trainable: layer L-1 (dense, [in, classes] weights + [classes] bias), a RAM copy
//! one step (batch 1):  f = frozen(x)                    [in]       features
//!                      z = f W + b                      [classes]  logits
//!                      loss = log_sum_exp(z) - z[label] (fused cross-entropy)
//!                      dz = softmax(z) - onehot(label)
//!                      dW = f^T dz, db = dz             (Dense::backward, no dx)
//!                      W -= lr dW, b -= lr db            (Sgd, no momentum)
//! ```
//!
//! Why this shape: the last layer of the small CNN holds 5,130 of its 13,194 parameters
//! and learning it needs only its input features (512 floats), its gradient (5,130) and
//! the inference buffers the classifier has anyway; training every layer would need
//! every layer's activations and a full gradient (about 230 KB with Adam). SGD without
//! momentum needs no optimizer state; batch 1 needs no gradient accumulation across
//! samples. Every buffer is the caller's, sized by [`head_len`] and [`features_len`],
//! so firmware declares them `static`. The same code runs on the host (`host-trainer
//! finetune` replays the device's steps and compares [`FineTune::digest`]).

use microconv::crc32::Crc32;
use microconv::layers::Dense;
use microconv::loss::{argmax, cross_entropy_with_logits};
use microconv::net::{layer_forward, Exec, Mode};
use microconv::optim::Sgd;
use microconv::{Arch, Error, Layer};

use crate::protocol::IMAGE_LEN;

/// Classes of the digit models.
const CLASSES: usize = 10;

/// The last layer when it is dense: its index and its input length.
const fn head(arch: &Arch<'_>) -> Option<(usize, usize)> {
    let n = arch.layers.len();
    if n == 0 {
        return None;
    }
    match (&arch.layers[n - 1], arch.layer_io(n - 1)) {
        (Layer::Dense(_), Ok((ins, _))) => Some((n - 1, ins.len())),
        _ => None,
    }
}

/// Elements of the trainable copy (and of its gradient): the last dense layer's weights
/// then biases; 0 if the last layer is not dense.
pub const fn head_len(arch: &Arch<'_>) -> usize {
    match head(arch) {
        Some((i, _)) => arch.param_offset(i + 1) - arch.param_offset(i),
        None => 0,
    }
}

/// Elements of the features buffer: the last layer's input.
pub const fn features_len(arch: &Arch<'_>) -> usize {
    match head(arch) {
        Some((_, n)) => n,
        None => 0,
    }
}

/// The memory of a [`FineTune`], all of it the caller's (firmware declares it `static`).
pub struct Buffers<'m> {
    /// The trainable copy: [`head_len`].
    pub head: &'m mut [f32],
    /// Its gradient: [`head_len`].
    pub grad: &'m mut [f32],
    /// Inference ping-pong buffers: [`Arch::inference_len`]`(1)`.
    pub buf: &'m mut [f32],
    /// One image as floats: 784.
    pub input: &'m mut [f32],
    /// The last layer's input: [`features_len`].
    pub features: &'m mut [f32],
}

/// Bytes of RAM a [`FineTune`] of `arch` needs: its [`Buffers`].
pub const fn ram_bytes(arch: &Arch<'_>) -> usize {
    4 * (2 * head_len(arch) + arch.inference_len(1) + IMAGE_LEN + features_len(arch))
}

/// A model whose last dense layer learns on the device.
pub struct FineTune<'m> {
    arch: Arch<'m>,
    params: &'m [f32],
    head: &'m mut [f32],
    grad: &'m mut [f32],
    buf: &'m mut [f32],
    input: &'m mut [f32],
    features: &'m mut [f32],
    sgd: Sgd,
    /// Training steps taken.
    pub steps: u32,
}

impl<'m> FineTune<'m> {
    /// Fine-tuning of `arch` with parameters `params` (read in place; the last layer's are
    /// copied into `b.head`), learning rate `lr`; buffers sized as [`Buffers`] says.
    pub fn new(arch: Arch<'m>, params: &'m [f32], b: Buffers<'m>, lr: f32) -> Result<Self, Error> {
        let Buffers {
            head,
            grad,
            buf,
            input,
            features,
        } = b;
        arch.validate()?;
        if self::head(&arch).is_none() || arch.classes() != CLASSES {
            return Err(Error::InvalidParameter {
                name: "fine-tuning needs a last dense layer with 10 outputs",
            });
        }
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::InvalidParameter {
                name: "learning rate",
            });
        }
        Error::expect_len("params", arch.param_count(), params.len())?;
        Error::expect_len("trainable copy", head_len(&arch), head.len())?;
        Error::expect_len("gradient", head_len(&arch), grad.len())?;
        Error::expect_len("inference buffer", arch.inference_len(1), buf.len())?;
        Error::expect_len("input", IMAGE_LEN, input.len())?;
        Error::expect_len("features", features_len(&arch), features.len())?;
        let start = arch.param_offset(arch.layers.len() - 1);
        let Some(src) = params.get(start..) else {
            return Err(Error::InvalidParameter { name: "params" });
        };
        head.copy_from_slice(src);
        Ok(FineTune {
            arch,
            params,
            head,
            grad,
            buf,
            input,
            features,
            sgd: Sgd::new(lr, 0.0),
            steps: 0,
        })
    }

    /// The trainable layer's parameters (weights `[in, 10]`, then biases).
    pub fn head(&self) -> &[f32] {
        self.head
    }

    /// CRC-32 of the trainable parameters' bytes (little-endian `f32`s): equal digests
    /// mean bit-identical weights.
    pub fn digest(&self) -> u32 {
        let mut crc = Crc32::new();
        for v in self.head.iter() {
            crc.update(&v.to_le_bytes());
        }
        crc.finish()
    }

    /// Frozen layers on `pixels` (scaled to `[0, 1]`, as in training): fills `features`.
    fn features(&mut self, pixels: &[u8]) -> Result<(), Error> {
        Error::expect_len("image", IMAGE_LEN, pixels.len())?;
        for (x, &p) in self.input.iter_mut().zip(pixels) {
            *x = p as f32 / 255.0;
        }
        let last = self.arch.layers.len() - 1;
        let half = self.arch.max_len();
        let (a, b) = self.buf.split_at_mut(half);
        let (mut cur, mut next) = (a, b);
        let mut len = self.input.len();
        cur[..len].copy_from_slice(self.input);
        for i in 0..last {
            let out = self.arch.layer_io(i)?.1.len();
            layer_forward(
                &self.arch,
                i,
                self.params,
                1,
                &cur[..len],
                &mut next[..out],
                Mode::Eval,
                &Exec::REFERENCE,
                &mut [],
            )?;
            core::mem::swap(&mut cur, &mut next);
            len = out;
        }
        Error::expect_len("features", self.features.len(), len)?;
        self.features.copy_from_slice(&cur[..len]);
        Ok(())
    }

    /// The trainable layer on the current features: the logits.
    fn logits(&self) -> Result<[f32; CLASSES], Error> {
        let (ins, _) = self.arch.layer_io(self.arch.layers.len() - 1)?;
        let (w, b) = self.head.split_at(self.head.len() - CLASSES);
        let mut z = [0.0f32; CLASSES];
        Dense::new(CLASSES).forward(
            ins,
            1,
            self.features,
            w,
            b,
            &mut z,
            &microconv::gemm::PortableGemm,
        )?;
        Ok(z)
    }

    /// Classifies one 28x28 image with the current (possibly fine-tuned) weights.
    pub fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; CLASSES]), Error> {
        self.features(pixels)?;
        let z = self.logits()?;
        Ok((argmax(&z) as u8, z))
    }

    /// Sets SGD's learning rate (positive and finite).
    pub fn set_lr(&mut self, lr: f32) -> Result<(), Error> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::InvalidParameter {
                name: "learning rate",
            });
        }
        self.sgd.lr = lr;
        Ok(())
    }

    /// The architecture.
    pub fn arch(&self) -> &Arch<'m> {
        &self.arch
    }

    /// One SGD step on one labelled image; returns the loss and the predicted digit
    /// before the step.
    pub fn train(&mut self, pixels: &[u8], label: u8) -> Result<(f32, u8), Error> {
        let label = label as usize;
        if label >= CLASSES {
            return Err(Error::InvalidParameter { name: "label" });
        }
        self.features(pixels)?;
        let z = self.logits()?;
        let before = argmax(&z) as u8;
        let mut dz = [0.0f32; CLASSES];
        let loss = cross_entropy_with_logits(&z, label, 1.0, Some(&mut dz))?;
        let (ins, _) = self.arch.layer_io(self.arch.layers.len() - 1)?;
        let (w, _) = self.head.split_at(self.head.len() - CLASSES);
        self.grad.fill(0.0); // Dense::backward accumulates
        let (gw, gb) = self.grad.split_at_mut(self.grad.len() - CLASSES);
        Dense::new(CLASSES).backward(
            ins,
            1,
            self.features,
            w,
            &dz,
            None,
            gw,
            gb,
            &microconv::gemm::PortableGemm,
        )?;
        self.sgd.step(self.head, self.grad, &mut [])?;
        self.steps = self.steps.wrapping_add(1);
        Ok((loss, before))
    }
}
