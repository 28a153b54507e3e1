//! Training on the device: any selection of a float model's layers (all, the last k,
//! biases only, or a list) learns from labelled samples, with the core's forward and
//! backward passes and SGD (optional momentum, optional averaging over a few samples).
//!
//! ```text
//! frozen layers:    parameters read in place from flash (the weights file)
//! learning layers:  a RAM copy of their parameters (weights then biases, layer order)
//! one step:   forward, recording only what backward needs:
//!               the input of each learning conv/dense layer above the first (floats),
//!               each ReLU's sign (1 bit per value) and each max-pool's choice (1 byte
//!               per output) above the first learning layer;
//!             loss = log_sum_exp(z) - z[label], dz = softmax(z) - onehot(label);
//!             backward from the last layer down to the first learning one: each layer
//!               computes dx with its weights first, then its parameter gradients one at
//!               a time (Conv2d/Dense::each_param_gradient), each applied at once:
//!               p -= lr g, or a = m a + g; p -= lr a (momentum), or summed over
//!               `accumulate` samples and applied averaged
//! ```
//!
//! Dropout layers are the identity here, as in inference (no masks on the device).
//!
//! No gradient buffer exists (each gradient is applied as soon as it is complete, TTE's
//! operator reordering); only momentum and accumulation keep one value per learning
//! parameter. Every buffer is the caller's ([`Buffers`]), planned by `const fn`s of the
//! architecture and the [`TrainConfig`]: [`arena_len`], [`marks_len`], [`ram_bytes`];
//! a firmware declares the largest it supports `static` and refuses selections that do
//! not fit. The gradients equal the core's whole-network backward pass bit for bit
//! (tested in `firmware/tests/finetune.rs`); the same code runs on the host, where
//! `host-trainer finetune` replays the device's steps and compares [`FineTune::digest`].

use microconv::crc32::Crc32;
use microconv::gemm::PortableGemm;
use microconv::layers::{flatten, relu, ConvAlgo};
use microconv::loss::{argmax, cross_entropy_with_logits};
use microconv::{Arch, Error, Layer};

pub use crate::protocol::TrainConfig;
use crate::protocol::SCORES;

/// Classes of the digit models.
/// Most layers a [`TrainConfig`] can name (bits of a `u32`).
pub const MAX_LAYERS: usize = 32;

const fn has_params(l: &Layer) -> bool {
    matches!(l, Layer::Conv2d(_) | Layer::Dense(_))
}

/// Whether on-device training runs layer `l` (the kinds the shipped digit models are
/// made of; the newer ones, such as depthwise convolution, train on the host only).
const fn trains_on_device(l: &Layer) -> bool {
    matches!(
        l,
        Layer::Conv2d(_)
            | Layer::Dense(_)
            | Layer::MaxPool(_)
            | Layer::Relu
            | Layer::Flatten
            | Layer::Dropout(_)
    )
}

const fn learns(c: &TrainConfig, i: usize) -> bool {
    i < MAX_LAYERS && (c.layers >> i) & 1 == 1
}

/// Mask of the last `k` layers with parameters (all of them if there are fewer).
pub const fn last_layers(arch: &Arch<'_>, k: usize) -> u32 {
    let mut mask = 0u32;
    let mut left = k;
    let mut i = arch.layers.len();
    while i > 0 && left > 0 {
        i -= 1;
        if i < MAX_LAYERS && has_params(&arch.layers[i]) {
            mask |= 1 << i;
            left -= 1;
        }
    }
    mask
}

/// Mask of every layer with parameters.
pub const fn all_layers(arch: &Arch<'_>) -> u32 {
    last_layers(arch, usize::MAX)
}

/// The last layer, SGD without momentum, one sample per update: what a firmware trains
/// until a CONFIGURE frame says otherwise.
pub const fn last_layer(arch: &Arch<'_>) -> TrainConfig {
    plain(last_layers(arch, 1), false)
}

/// `layers` (or only their biases) with SGD without momentum, one sample per update.
pub const fn plain(layers: u32, biases_only: bool) -> TrainConfig {
    TrainConfig {
        layers,
        biases_only,
        momentum: 0.0,
        accumulate: 1,
    }
}

/// (weights, biases) that layer `i` owns; (0, 0) for layers without parameters.
const fn weights_biases(arch: &Arch<'_>, i: usize) -> (usize, usize) {
    match (&arch.layers[i], arch.layer_io(i)) {
        (Layer::Conv2d(c), Ok((ins, _))) => (c.weight_len(ins), c.filters),
        (Layer::Dense(d), Ok((ins, _))) => (d.weight_len(ins), d.units),
        _ => (0, 0),
    }
}

/// Elements of layer `i`'s block in the trainable copy (0 if it does not learn).
const fn block_len(arch: &Arch<'_>, c: &TrainConfig, i: usize) -> usize {
    if !learns(c, i) {
        return 0;
    }
    let (w, b) = weights_biases(arch, i);
    if c.biases_only {
        b
    } else {
        w + b
    }
}

/// Parameters that learn: the length of the trainable copy.
pub const fn trainable_len(arch: &Arch<'_>, c: &TrainConfig) -> usize {
    let mut t = 0;
    let mut i = 0;
    while i < arch.layers.len() {
        t += block_len(arch, c, i);
        i += 1;
    }
    t
}

/// The lowest layer that learns (`layers.len()` if none).
const fn first_learning(arch: &Arch<'_>, c: &TrainConfig) -> usize {
    let mut i = 0;
    while i < arch.layers.len() && !learns(c, i) {
        i += 1;
    }
    i
}

/// Whether layer `i` keeps its input for the backward pass (a learning layer's weight
/// gradient needs it; layer 0's input is the image buffer).
const fn saves_input(arch: &Arch<'_>, c: &TrainConfig, i: usize) -> bool {
    i > 0 && learns(c, i) && !c.biases_only && has_params(&arch.layers[i])
}

/// Floats of saved layer inputs.
pub const fn saved_len(arch: &Arch<'_>, c: &TrainConfig) -> usize {
    let mut s = 0;
    let mut i = 0;
    while i < arch.layers.len() {
        if saves_input(arch, c, i) {
            if let Ok((ins, _)) = arch.layer_io(i) {
                s += ins.len();
            }
        }
        i += 1;
    }
    s
}

/// Bytes layer `i` records for the backward pass: a bit per ReLU output, a byte per
/// max-pool output, for layers above the first learning one.
const fn mark_len(arch: &Arch<'_>, c: &TrainConfig, i: usize) -> usize {
    if i <= first_learning(arch, c) {
        return 0;
    }
    match (&arch.layers[i], arch.layer_io(i)) {
        (Layer::Relu, Ok((_, o))) => o.len().div_ceil(8),
        (Layer::MaxPool(_), Ok((_, o))) => o.len(),
        _ => 0,
    }
}

/// Bytes of recorded ReLU signs and max-pool positions ([`Buffers::marks`]).
pub const fn marks_len(arch: &Arch<'_>, c: &TrainConfig) -> usize {
    let mut s = 0;
    let mut i = 0;
    while i < arch.layers.len() {
        s += mark_len(arch, c, i);
        i += 1;
    }
    s
}

/// Optimizer state per learning parameter: momentum, and the accumulated gradient.
const fn state_copies(c: &TrainConfig) -> usize {
    (c.momentum != 0.0) as usize + (c.accumulate > 1) as usize
}

/// Floats of [`Buffers::arena`] a configuration uses: the trainable copy, its momentum
/// and accumulated gradient if any, then the saved layer inputs.
pub const fn arena_len(arch: &Arch<'_>, c: &TrainConfig) -> usize {
    trainable_len(arch, c) * (1 + state_copies(c)) + saved_len(arch, c)
}

/// Bytes of RAM training with `c` needs: the arena, the marks, the inference buffers
/// ([`Arch::inference_len`]`(1)`, also the backward pass' gradient buffers) and the
/// image as floats.
pub const fn ram_bytes(arch: &Arch<'_>, c: &TrainConfig) -> usize {
    4 * (arena_len(arch, c) + arch.inference_len(1) + arch.input.len()) + marks_len(arch, c)
}

/// The memory of a [`FineTune`], all of it the caller's (firmware declares it `static`).
pub struct Buffers<'m> {
    /// Trainable copy, optimizer state, saved inputs: at least [`arena_len`] of every
    /// configuration to be used.
    pub arena: &'m mut [f32],
    /// ReLU signs and max-pool positions: at least [`marks_len`].
    pub marks: &'m mut [u8],
    /// Inference ping-pong buffers, then the backward pass' gradients:
    /// [`Arch::inference_len`]`(1)`.
    pub buf: &'m mut [f32],
    /// One image as floats: the model's input, `h*w*c`.
    pub input: &'m mut [f32],
}

/// A model whose selected layers learn on the device.
pub struct FineTune<'m> {
    arch: Arch<'m>,
    params: &'m [f32],
    arena: &'m mut [f32],
    marks: &'m mut [u8],
    buf: &'m mut [f32],
    input: &'m mut [f32],
    config: TrainConfig,
    lr: f32,
    /// Samples accumulated since the last update.
    pending: u8,
    /// Training steps taken (samples trained on) since the last configuration.
    pub steps: u32,
}

/// Layer `i`'s weights and biases: from the trainable copy `t` where they learn, from
/// flash `params` otherwise.
fn layer_wb<'a>(
    arch: &Arch<'_>,
    c: &TrainConfig,
    params: &'a [f32],
    t: &'a [f32],
    i: usize,
) -> Result<(&'a [f32], &'a [f32]), Error> {
    let (wl, bl) = weights_biases(arch, i);
    let start = arch.param_offset(i);
    let bad = Error::InvalidParameter { name: "params" };
    let flash = params.get(start..start + wl + bl).ok_or(bad)?;
    let (fw, fb) = flash.split_at(wl);
    if !learns(c, i) {
        return Ok((fw, fb));
    }
    let off = block_offset(arch, c, i);
    let block = t.get(off..off + block_len(arch, c, i)).ok_or(bad)?;
    Ok(if c.biases_only {
        (fw, block)
    } else {
        block.split_at(wl)
    })
}

/// Offset of layer `i`'s block in the trainable copy.
fn block_offset(arch: &Arch<'_>, c: &TrainConfig, i: usize) -> usize {
    (0..i).map(|j| block_len(arch, c, j)).sum()
}

/// The bias gradients alone (`db[u] = sum of dy[.., u]`, in the order
/// `each_param_gradient` sums them), for biases-only training.
fn each_bias_gradient(dy: &[f32], units: usize, mut f: impl FnMut(usize, f32)) {
    for u in 0..units {
        let mut acc = 0.0f32;
        for row in dy.chunks_exact(units) {
            acc += row[u];
        }
        f(u, acc);
    }
}

impl<'m> FineTune<'m> {
    /// Training of `arch` with parameters `params` (read in place; the last layer's
    /// are copied into the arena), learning rate `lr`; buffers sized as [`Buffers`]
    /// says. Call [`FineTune::configure`] to train other layers.
    pub fn new(arch: Arch<'m>, params: &'m [f32], b: Buffers<'m>, lr: f32) -> Result<Self, Error> {
        let Buffers {
            arena,
            marks,
            buf,
            input,
        } = b;
        arch.validate()?;
        let n = arch.layers.len();
        if n > MAX_LAYERS
            || !matches!(arch.layers[n - 1], Layer::Dense(_))
            || arch.classes() > SCORES
        {
            return Err(Error::InvalidParameter {
                name: "training needs at most 32 layers, the last dense with at most 32 outputs",
            });
        }
        if !arch.layers.iter().all(trains_on_device) {
            return Err(Error::InvalidParameter {
                name: "on-device training runs conv2d, dense, max-pool, ReLU, flatten and dropout layers only (train this network on the host)",
            });
        }
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::InvalidParameter {
                name: "learning rate",
            });
        }
        Error::expect_len("params", arch.param_count(), params.len())?;
        Error::expect_len("inference buffer", arch.inference_len(1), buf.len())?;
        Error::expect_len("input", arch.input.len(), input.len())?;
        let mut ft = FineTune {
            arch,
            params,
            arena,
            marks,
            buf,
            input,
            config: last_layer(&arch),
            lr,
            pending: 0,
            steps: 0,
        };
        ft.configure(last_layer(&arch))?;
        Ok(ft)
    }

    /// Checks that `c` can train this model in these buffers: its fields in range,
    /// its layers present and with parameters, its buffers within the arena and marks
    /// (else [`Error::BufferLen`]).
    pub fn check(&self, c: &TrainConfig) -> Result<(), Error> {
        if !c.is_valid() {
            return Err(Error::InvalidParameter {
                name: "training configuration (momentum, samples per update or no layer)",
            });
        }
        let n = self.arch.layers.len();
        for i in 0..MAX_LAYERS {
            if learns(c, i) && (i >= n || !has_params(&self.arch.layers[i])) {
                return Err(Error::InvalidParameter {
                    name: "a selected layer has no parameters or does not exist",
                });
            }
        }
        Error::expect_len(
            "training arena",
            arena_len(&self.arch, c).max(self.arena.len()),
            self.arena.len(),
        )?;
        Error::expect_len(
            "training marks",
            marks_len(&self.arch, c).max(self.marks.len()),
            self.marks.len(),
        )
    }

    /// Trains `c` from now on: restores the parameters from flash, clears the
    /// optimizer state and the step count. On error nothing changes.
    pub fn configure(&mut self, c: TrainConfig) -> Result<(), Error> {
        self.check(&c)?;
        let t = trainable_len(&self.arch, &c);
        for i in 0..self.arch.layers.len() {
            if !learns(&c, i) {
                continue;
            }
            let (wl, bl) = weights_biases(&self.arch, i);
            let start = self.arch.param_offset(i);
            let src = if c.biases_only {
                start + wl..start + wl + bl
            } else {
                start..start + wl + bl
            };
            let off = block_offset(&self.arch, &c, i);
            let Some(src) = self.params.get(src) else {
                return Err(Error::InvalidParameter { name: "params" });
            };
            self.arena[off..off + src.len()].copy_from_slice(src);
        }
        self.arena[t..t * (1 + state_copies(&c))].fill(0.0);
        self.config = c;
        self.pending = 0;
        self.steps = 0;
        Ok(())
    }

    /// The configuration being trained.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Floats of the arena and bytes of marks these buffers hold.
    pub fn capacity(&self) -> (usize, usize) {
        (self.arena.len(), self.marks.len())
    }

    /// The learning parameters (each learning layer's weights then biases, or its
    /// biases only, in layer order).
    pub fn trainable(&self) -> &[f32] {
        &self.arena[..trainable_len(&self.arch, &self.config)]
    }

    /// CRC-32 of the learning parameters' bytes (little-endian `f32`s): equal digests
    /// mean bit-identical weights.
    pub fn digest(&self) -> u32 {
        let mut crc = Crc32::new();
        for v in self.trainable() {
            crc.update(&v.to_le_bytes());
        }
        crc.finish()
    }

    /// The forward pass on `pixels` (scaled to `[0, 1]`, as in training), with the
    /// same kernels as `microconv::net::infer` with `Exec::REFERENCE`; with `record`,
    /// keeps what the backward pass needs. Returns the logits and the ends of the saved
    /// inputs and marks.
    fn forward(
        &mut self,
        pixels: &[u8],
        record: bool,
    ) -> Result<([f32; SCORES], usize, usize), Error> {
        Error::expect_len("image", self.arch.input.len(), pixels.len())?;
        for (x, &p) in self.input.iter_mut().zip(pixels) {
            *x = p as f32 / 255.0;
        }
        let c = self.config;
        let arch = self.arch;
        let t = trainable_len(&arch, &c);
        let (state, saved) = self.arena.split_at_mut(t * (1 + state_copies(&c)));
        let trained = &state[..t];
        let first = first_learning(&arch, &c);
        let (a, b) = self.buf.split_at_mut(arch.max_len());
        let (mut cur, mut next) = (a, b);
        let (mut save, mut mark) = (0, 0);
        for i in 0..arch.layers.len() {
            let (ins, outs) = arch.layer_io(i)?;
            let x: &[f32] = if i == 0 {
                self.input
            } else {
                &cur[..ins.len()]
            };
            let y = &mut next[..outs.len()];
            if record && saves_input(&arch, &c, i) {
                saved[save..save + x.len()].copy_from_slice(x);
                save += x.len();
            }
            let keep = record && i > first;
            match arch.layers[i] {
                Layer::Conv2d(conv) => {
                    let (w, bias) = layer_wb(&arch, &c, self.params, trained, i)?;
                    conv.forward(
                        ins,
                        1,
                        x,
                        w,
                        bias,
                        y,
                        ConvAlgo::Direct,
                        &mut [],
                        &PortableGemm,
                    )?
                }
                Layer::Dense(d) => {
                    let (w, bias) = layer_wb(&arch, &c, self.params, trained, i)?;
                    d.forward(ins, 1, x, w, bias, y, &PortableGemm)?
                }
                Layer::MaxPool(p) if keep => {
                    let at = &mut self.marks[mark..mark + outs.len()];
                    p.forward_argmax(ins, 1, x, y, at)?;
                    mark += outs.len();
                }
                Layer::MaxPool(p) => p.forward(ins, 1, x, y)?,
                Layer::Relu => {
                    relu::forward(x, y)?;
                    if keep {
                        let bits = &mut self.marks[mark..mark + outs.len().div_ceil(8)];
                        bits.fill(0);
                        for (k, &v) in y.iter().enumerate() {
                            if v > 0.0 {
                                bits[k / 8] |= 1 << (k % 8);
                            }
                        }
                        mark += bits.len();
                    }
                }
                Layer::Flatten | Layer::Dropout(_) => flatten::forward(x, y)?,
                // Refused by `FineTune::new` (`trains_on_device`).
                _ => {
                    return Err(Error::InvalidParameter {
                        name: "layer kind not trained on the device",
                    })
                }
            }
            core::mem::swap(&mut cur, &mut next);
        }
        let n = self.arch.classes();
        let mut z = [0.0f32; SCORES];
        z[..n].copy_from_slice(&cur[..n]);
        Ok((z, save, mark))
    }

    /// Classifies one image (the model's input, `h*w*c` bytes) with the current
    /// (possibly trained) weights: the class and the scores (the model's `classes()`
    /// logits, then zeros).
    pub fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        let (z, _, _) = self.forward(pixels, false)?;
        Ok((argmax(&z[..self.arch.classes()]) as u8, z))
    }

    /// Sets SGD's learning rate (positive and finite).
    pub fn set_lr(&mut self, lr: f32) -> Result<(), Error> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::InvalidParameter {
                name: "learning rate",
            });
        }
        self.lr = lr;
        Ok(())
    }

    /// The architecture.
    pub fn arch(&self) -> &Arch<'m> {
        &self.arch
    }

    /// One training step on one labelled image (an update every
    /// [`TrainConfig::accumulate`] steps); returns the loss and the predicted digit
    /// before the step.
    pub fn train(&mut self, pixels: &[u8], label: u8) -> Result<(f32, u8), Error> {
        let label = label as usize;
        let n = self.arch.classes();
        if label >= n {
            return Err(Error::InvalidParameter { name: "label" });
        }
        let (z, mut save, mut mark) = self.forward(pixels, true)?;
        let before = argmax(&z[..n]) as u8;
        let mut dz = [0.0f32; SCORES];
        let loss = cross_entropy_with_logits(&z[..n], label, 1.0, Some(&mut dz[..n]))?;

        let c = self.config;
        let arch = self.arch;
        let t = trainable_len(&arch, &c);
        let (state, saved) = self.arena.split_at_mut(t * (1 + state_copies(&c)));
        let (trained, rest) = state.split_at_mut(t);
        let (mom, acc) = rest.split_at_mut(if c.momentum != 0.0 { t } else { 0 });
        let update = self.pending + 1 >= c.accumulate;
        let inv = 1.0 / c.accumulate as f32;
        let (lr, m) = (self.lr, c.momentum);
        let first = first_learning(&arch, &c);
        let (a, b) = self.buf.split_at_mut(arch.max_len());
        let (mut dy, mut dx) = (a, b);
        dy[..n].copy_from_slice(&dz[..n]);
        for i in (first..arch.layers.len()).rev() {
            let (ins, outs) = arch.layer_io(i)?;
            let g = &dy[..outs.len()];
            let d = &mut dx[..ins.len()];
            let need_dx = i > first;
            match arch.layers[i] {
                Layer::Conv2d(_) | Layer::Dense(_) => {
                    if need_dx {
                        let (w, _) = layer_wb(&arch, &c, self.params, trained, i)?;
                        match arch.layers[i] {
                            Layer::Conv2d(conv) => conv.backward_input(ins, 1, w, g, d)?,
                            Layer::Dense(dl) => {
                                dl.backward_input(ins, 1, w, g, d, &PortableGemm)?
                            }
                            _ => {}
                        }
                    }
                    if learns(&c, i) {
                        let off = block_offset(&arch, &c, i);
                        let len = block_len(&arch, &c, i);
                        let p = &mut trained[off..off + len];
                        let mut mo = mom.get_mut(off..off + len);
                        let mut ac = if c.accumulate > 1 {
                            acc.get_mut(off..off + len)
                        } else {
                            None
                        };
                        let mut apply = |j: usize, gv: f32| {
                            let gv = match ac.as_deref_mut() {
                                Some(a) if update => {
                                    let s = (a[j] + gv) * inv;
                                    a[j] = 0.0;
                                    s
                                }
                                Some(a) => {
                                    a[j] += gv;
                                    return;
                                }
                                None => gv,
                            };
                            match mo.as_deref_mut() {
                                Some(mv) => {
                                    mv[j] = m * mv[j] + gv;
                                    p[j] -= lr * mv[j];
                                }
                                None => p[j] -= lr * gv,
                            }
                        };
                        let x: &[f32] = if !saves_input(&arch, &c, i) {
                            self.input
                        } else {
                            save -= ins.len();
                            &saved[save..save + ins.len()]
                        };
                        match (arch.layers[i], c.biases_only) {
                            (Layer::Conv2d(conv), false) => {
                                conv.each_param_gradient(ins, 1, x, g, &mut apply)?
                            }
                            (Layer::Dense(dl), false) => {
                                dl.each_param_gradient(ins, 1, x, g, &mut apply)?
                            }
                            (_, true) => {
                                let units = weights_biases(&arch, i).1;
                                each_bias_gradient(g, units, &mut apply)
                            }
                            _ => {}
                        }
                    }
                }
                Layer::Relu if need_dx => {
                    mark -= outs.len().div_ceil(8);
                    let bits = &self.marks[mark..mark + outs.len().div_ceil(8)];
                    for (k, (o, &v)) in d.iter_mut().zip(g).enumerate() {
                        *o = if bits[k / 8] >> (k % 8) & 1 == 1 {
                            v
                        } else {
                            0.0
                        };
                    }
                }
                Layer::MaxPool(p) if need_dx => {
                    mark -= outs.len();
                    p.backward_argmax(ins, 1, &self.marks[mark..mark + outs.len()], g, d)?
                }
                Layer::Flatten | Layer::Dropout(_) if need_dx => flatten::backward(g, d)?,
                _ => {}
            }
            if need_dx {
                core::mem::swap(&mut dy, &mut dx);
            }
        }
        self.pending = if update { 0 } else { self.pending + 1 };
        self.steps = self.steps.wrapping_add(1);
        Ok((loss, before))
    }
}
