//! A network: a `const` layer list, the sizes of every buffer it needs, and the
//! forward pass, backward pass and training step over those buffers.
//!
//! Memory, all from the caller (sizes from the `const fn`s of [`Arch`]):
//!
//! | buffer | elements | holds |
//! |---|---|---|
//! | params | [`Arch::param_count`] | each layer's weights then biases, in layer order |
//! | grads | [`Arch::param_count`] | same layout as params |
//! | optimizer state | [`crate::optim::Optimizer::state_len`] | Adam's `m` then `v` |
//! | `Workspace::acts` | [`Arch::activations_len`]`(batch)` | every layer's output, in layer order |
//! | `Workspace::grad` | [`Arch::grad_buffer_len`]`(batch)` | two ping-pong gradient buffers and the loss' row scratch |
//! | `Workspace::scratch` | [`Arch::im2col_len`]`(images)` | im2col patches (0 with [`ConvAlgo::Direct`]) |
//! | inference buffer | [`Arch::inference_len`]`(batch)` | two ping-pong activation buffers |

use core::ops::Range;

use crate::error::{check_len, Error, ShapeError};
use crate::gemm::{Gemm, PortableGemm};
use crate::layers::{flatten, relu, Conv2d, ConvAlgo, ConvKernels, Dense, Dropout, MaxPool};
use crate::loss::{batch_loss, BatchLoss, Loss, Reduction};
use crate::optim::Optimizer;
use crate::rng::mix64;
use crate::shape::Shape;

/// One layer of a network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer {
    /// 2-D convolution with bias ([`crate::layers::conv2d`]).
    Conv2d(Conv2d),
    /// Max-pooling ([`crate::layers::maxpool`]).
    MaxPool(MaxPool),
    /// Fully connected layer with bias ([`crate::layers::dense`]).
    Dense(Dense),
    /// ReLU ([`crate::layers::relu`]).
    Relu,
    /// Inverted dropout, identity outside training ([`crate::layers::dropout`]).
    Dropout(Dropout),
    /// `[h, w, c] -> [h*w*c]` ([`crate::layers::flatten`]).
    Flatten,
}

impl Layer {
    /// Output shape of this layer for `input`.
    pub const fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        if input.is_empty() {
            return Err(ShapeError::Zero);
        }
        match self {
            Layer::Conv2d(c) => c.output_shape(input),
            Layer::MaxPool(p) => p.output_shape(input),
            Layer::Dense(d) => d.output_shape(input),
            Layer::Relu | Layer::Dropout(_) => Ok(input),
            Layer::Flatten => Ok(Shape::flat(input.len())),
        }
    }

    /// Number of parameters this layer owns for `input`.
    pub const fn param_len(&self, input: Shape) -> usize {
        match self {
            Layer::Conv2d(c) => c.param_len(input),
            Layer::Dense(d) => d.param_len(input),
            _ => 0,
        }
    }

    /// Short lower-case name (`"conv2d"`, `"maxpool"`, ...).
    pub const fn name(&self) -> &'static str {
        match self {
            Layer::Conv2d(_) => "conv2d",
            Layer::MaxPool(_) => "maxpool",
            Layer::Dense(_) => "dense",
            Layer::Relu => "relu",
            Layer::Dropout(_) => "dropout",
            Layer::Flatten => "flatten",
        }
    }
}

/// A network architecture: the shape of one input sample and the layer list. Build it
/// in a `const` and size every buffer with its `const fn`s:
///
/// ```
/// use microconv::archs::SMALL;
/// static mut PARAMS: [f32; SMALL.param_count()] = [0.0; SMALL.param_count()];
/// const _: () = assert!(SMALL.is_valid());
/// assert_eq!(SMALL.classes(), 10);
/// ```
///
/// The size functions never panic: for an invalid architecture (see [`Arch::validate`])
/// they return 0, and every runtime entry point reports the error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arch<'a> {
    /// Shape of one input sample.
    pub input: Shape,
    /// The layers, first to last. The last must output a flat vector of class scores.
    pub layers: &'a [Layer],
}

const fn shape_err(layer: usize, reason: ShapeError) -> Error {
    Error::Shape { layer, reason }
}

impl<'a> Arch<'a> {
    /// An architecture taking samples of shape `input` through `layers`.
    pub const fn new(input: Shape, layers: &'a [Layer]) -> Self {
        Arch { input, layers }
    }

    /// Input and output shapes of layer `i`.
    pub const fn layer_io(&self, i: usize) -> Result<(Shape, Shape), Error> {
        if i >= self.layers.len() {
            return Err(shape_err(i, ShapeError::NoLayers));
        }
        if self.input.is_empty() {
            return Err(shape_err(0, ShapeError::Zero));
        }
        if self.input.checked_len().is_none() {
            return Err(shape_err(0, ShapeError::Overflow));
        }
        let mut s = self.input;
        let mut j = 0;
        loop {
            let out = match self.layers[j].output_shape(s) {
                Ok(o) => o,
                Err(e) => return Err(shape_err(j, e)),
            };
            if out.checked_len().is_none() {
                return Err(shape_err(j, ShapeError::Overflow));
            }
            if let Layer::Dropout(d) = &self.layers[j] {
                if let Err(e) = d.validate() {
                    return Err(e);
                }
            }
            if j == i {
                return Ok((s, out));
            }
            s = out;
            j += 1;
        }
    }

    /// Checks the whole architecture: every layer accepts its input, sizes fit in
    /// `usize`, hyper-parameters are in range, and the last layer is flat.
    pub const fn validate(&self) -> Result<(), Error> {
        if self.layers.is_empty() {
            return Err(shape_err(0, ShapeError::NoLayers));
        }
        let last = self.layers.len() - 1;
        let mut total: usize = 0;
        let mut i = 0;
        while i < self.layers.len() {
            let (ins, outs) = match self.layer_io(i) {
                Ok(io) => io,
                Err(e) => return Err(e),
            };
            let p = self.layers[i].param_len(ins);
            total = match total.checked_add(p) {
                Some(t) if p != usize::MAX => t,
                _ => return Err(shape_err(i, ShapeError::Overflow)),
            };
            if i == last && !outs.is_flat() {
                return Err(shape_err(i, ShapeError::OutputNotFlat));
            }
            i += 1;
        }
        Ok(())
    }

    /// `validate().is_ok()`, usable in `const _: () = assert!(ARCH.is_valid());`.
    pub const fn is_valid(&self) -> bool {
        self.validate().is_ok()
    }

    /// Output shape of the whole network (`(1, 1, classes)`).
    pub const fn output(&self) -> Shape {
        if !self.is_valid() {
            return Shape::new(0, 0, 0);
        }
        match self.layer_io(self.layers.len() - 1) {
            Ok((_, o)) => o,
            Err(_) => Shape::new(0, 0, 0),
        }
    }

    /// Number of classes (the last layer's width).
    pub const fn classes(&self) -> usize {
        self.output().c
    }

    /// Offset of layer `i`'s parameters in the parameter buffer (or the total when
    /// `i == layers.len()`).
    pub const fn param_offset(&self, i: usize) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let mut off = 0;
        let mut j = 0;
        while j < i && j < self.layers.len() {
            if let Ok((ins, _)) = self.layer_io(j) {
                off += self.layers[j].param_len(ins);
            }
            j += 1;
        }
        off
    }

    /// Total number of parameters (weights and biases).
    pub const fn param_count(&self) -> usize {
        self.param_offset(self.layers.len())
    }

    /// The range of layer `i`'s parameters (weights then biases) in the parameter buffer.
    pub fn param_range(&self, i: usize) -> Result<Range<usize>, Error> {
        self.validate()?;
        let start = self.param_offset(i);
        Ok(start..self.param_offset(i + 1))
    }

    /// Index of the last layer with parameters, if any.
    pub fn last_param_layer(&self) -> Option<usize> {
        (0..self.layers.len())
            .rev()
            .find(|&i| matches!(self.layers[i], Layer::Conv2d(_) | Layer::Dense(_)))
    }

    /// Largest per-sample length among the input and every layer's output.
    pub const fn max_len(&self) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let mut m = self.input.len();
        let mut i = 0;
        while i < self.layers.len() {
            if let Ok((_, o)) = self.layer_io(i) {
                if o.len() > m {
                    m = o.len();
                }
            }
            i += 1;
        }
        m
    }

    /// Per-sample length of every layer output, summed.
    const fn outputs_len(&self) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let mut s: usize = 0;
        let mut i = 0;
        while i < self.layers.len() {
            if let Ok((_, o)) = self.layer_io(i) {
                s = s.saturating_add(o.len());
            }
            i += 1;
        }
        s
    }

    /// Elements of `Workspace::acts` for a batch of `batch`: every layer's output is
    /// kept for the backward pass.
    pub const fn activations_len(&self, batch: usize) -> usize {
        self.outputs_len().saturating_mul(batch)
    }

    /// Elements of `Workspace::grad` for a batch of `batch`: two ping-pong buffers of
    /// [`Arch::max_len`] per sample, then one row of scratch for the loss.
    pub const fn grad_buffer_len(&self, batch: usize) -> usize {
        self.max_len()
            .saturating_mul(batch)
            .saturating_mul(2)
            .saturating_add(self.classes())
    }

    /// Elements of the buffer [`infer`] needs for a batch of `batch`: two ping-pong
    /// buffers (only the live activations, not every layer's).
    pub const fn inference_len(&self, batch: usize) -> usize {
        self.max_len().saturating_mul(batch).saturating_mul(2)
    }

    /// Elements of scratch for [`ConvAlgo::Im2col`] to process `images` images per
    /// matrix product in every conv layer (at least 1 image's worth is required).
    pub const fn im2col_len(&self, images: usize) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let mut m = 0;
        let mut i = 0;
        while i < self.layers.len() {
            if let (Layer::Conv2d(c), Ok((ins, _))) = (&self.layers[i], self.layer_io(i)) {
                let l = c.im2col_len(ins);
                if l > m {
                    m = l;
                }
            }
            i += 1;
        }
        m.saturating_mul(images)
    }

    /// Per-sample length of layer `i`'s output.
    fn out_len(&self, i: usize) -> Result<usize, Error> {
        Ok(self.layer_io(i)?.1.len())
    }
}

/// How the layers compute: which matrix-multiply kernel, which convolution algorithm.
#[derive(Clone, Copy)]
pub struct Exec<'g> {
    /// Matrix multiply used by dense layers and im2col convolutions.
    pub gemm: &'g dyn Gemm,
    /// Convolution algorithm.
    pub conv: ConvAlgo,
    /// Platform convolution kernels tried first (see [`ConvKernels`]); `None` runs
    /// the core's own.
    pub kernels: Option<&'g dyn ConvKernels>,
}

impl Exec<'static> {
    /// The readable reference: [`PortableGemm`] and direct convolution; needs no scratch.
    pub const REFERENCE: Exec<'static> = Exec {
        gemm: &PortableGemm,
        conv: ConvAlgo::Direct,
        kernels: None,
    };
}

/// Training or inference (only dropout cares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Inference: dropout is the identity.
    Eval,
    /// Training: dropout draws its masks from `seed` (one per step); `first_sample` is
    /// the index of this call's first sample within the whole batch, so that a batch
    /// split across threads draws the same masks as a single pass.
    Train {
        /// Per-step seed.
        seed: u64,
        /// Index of the first sample of this call within the batch.
        first_sample: u64,
    },
}

/// Scratch memory of a training pass (see the module table for sizes).
pub struct Workspace<'w> {
    /// Every layer's output for the batch.
    pub acts: &'w mut [f32],
    /// Gradient ping-pong buffers and the loss' row scratch.
    pub grad: &'w mut [f32],
    /// im2col scratch (may be empty with [`ConvAlgo::Direct`]).
    pub scratch: &'w mut [f32],
}

/// Splits layer `i`'s parameters into (weights, biases).
fn layer_params<'p>(
    arch: &Arch<'_>,
    params: &'p [f32],
    i: usize,
    ins: Shape,
) -> (&'p [f32], &'p [f32]) {
    let r = arch.param_offset(i)..arch.param_offset(i + 1);
    let wlen = match arch.layers[i] {
        Layer::Conv2d(c) => c.weight_len(ins),
        Layer::Dense(d) => d.weight_len(ins),
        _ => 0,
    };
    params[r].split_at(wlen)
}

/// Runs layer `i` forward on `n` samples (`x`: its input, `y`: its output). [`forward`]
/// and [`infer`] call this for every layer; it is public so that a host can time or
/// test one layer at a time.
#[allow(clippy::too_many_arguments)]
pub fn layer_forward(
    arch: &Arch<'_>,
    i: usize,
    params: &[f32],
    n: usize,
    x: &[f32],
    y: &mut [f32],
    mode: Mode,
    exec: &Exec<'_>,
    scratch: &mut [f32],
) -> Result<(), Error> {
    let (ins, outs) = arch.layer_io(i)?;
    let (w, b) = layer_params(arch, params, i, ins);
    let at = |e: Error| match e {
        Error::Shape { reason, .. } => Error::Shape { layer: i, reason },
        e => e,
    };
    match arch.layers[i] {
        Layer::Conv2d(c) => match exec.kernels {
            Some(k) if k.forward(&c, ins, n, x, w, b, y, scratch).map_err(at)? => Ok(()),
            _ => c.forward(ins, n, x, w, b, y, exec.conv, scratch, exec.gemm),
        },
        Layer::MaxPool(p) => p.forward(ins, n, x, y),
        Layer::Dense(d) => d.forward(ins, n, x, w, b, y, exec.gemm),
        Layer::Relu => relu::forward(x, y),
        Layer::Flatten => flatten::forward(x, y),
        Layer::Dropout(d) => match mode {
            Mode::Eval => flatten::forward(x, y),
            Mode::Train { seed, first_sample } => d.forward_train(
                mix64(seed ^ i as u64),
                first_sample.wrapping_mul(outs.len() as u64),
                x,
                y,
            ),
        },
    }
    .map_err(at)
}

/// Forward pass over a batch of `n` samples `x` (`[n, input]`), keeping every layer's
/// output in `acts` ([`Arch::activations_len`]`(n)`). The logits are the last
/// `n * classes` elements of `acts` (see [`logits`]).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    arch: &Arch<'_>,
    params: &[f32],
    x: &[f32],
    n: usize,
    acts: &mut [f32],
    mode: Mode,
    exec: &Exec<'_>,
    scratch: &mut [f32],
) -> Result<(), Error> {
    arch.validate()?;
    if n == 0 {
        return Err(Error::EmptyBatch);
    }
    check_len("params", params, arch.param_count())?;
    check_len("input batch", x, n.saturating_mul(arch.input.len()))?;
    check_len("activations", acts, arch.activations_len(n))?;
    let mut off = 0;
    let mut prev = 0..0;
    for i in 0..arch.layers.len() {
        let len = n * arch.out_len(i)?;
        let (done, rest) = acts.split_at_mut(off);
        let xin = if i == 0 { x } else { &done[prev.clone()] };
        layer_forward(
            arch,
            i,
            params,
            n,
            xin,
            &mut rest[..len],
            mode,
            exec,
            scratch,
        )?;
        prev = off..off + len;
        off += len;
    }
    Ok(())
}

/// The logits `[n, classes]` inside `acts` after [`forward`].
pub fn logits<'x>(arch: &Arch<'_>, acts: &'x [f32], n: usize) -> Result<&'x [f32], Error> {
    check_len("activations", acts, arch.activations_len(n))?;
    Ok(&acts[acts.len() - n * arch.classes()..])
}

/// Inference over `n` samples with only two live activation buffers in `buf`
/// ([`Arch::inference_len`]`(n)`); returns the logits `[n, classes]` (a part of `buf`).
///
/// ```
/// use microconv::archs::SMALL;
/// use microconv::net::{infer, Exec};
///
/// // Every buffer sized at compile time (on a microcontroller: `static`s).
/// let params = vec![0.01f32; SMALL.param_count()];
/// let mut buf = [0.0f32; SMALL.inference_len(1)];
/// let image = [0.5f32; 28 * 28];
/// let logits = infer(&SMALL, &params, &image, 1, &mut buf, &Exec::REFERENCE, &mut []).unwrap();
/// assert_eq!(logits.len(), 10);
/// let digit = microconv::loss::argmax(logits);
/// assert!(digit < 10);
///
/// // A buffer of the wrong size is an error, not a panic.
/// let mut small = [0.0f32; 16];
/// assert!(infer(&SMALL, &params, &image, 1, &mut small, &Exec::REFERENCE, &mut []).is_err());
/// ```
pub fn infer<'b>(
    arch: &Arch<'_>,
    params: &[f32],
    x: &[f32],
    n: usize,
    buf: &'b mut [f32],
    exec: &Exec<'_>,
    scratch: &mut [f32],
) -> Result<&'b [f32], Error> {
    arch.validate()?;
    if n == 0 {
        return Err(Error::EmptyBatch);
    }
    check_len("params", params, arch.param_count())?;
    check_len("input batch", x, n.saturating_mul(arch.input.len()))?;
    check_len("inference buffer", buf, arch.inference_len(n))?;
    let half = arch.max_len() * n;
    let (mut cur, mut next) = buf.split_at_mut(half);
    let mut cur_len = 0;
    for i in 0..arch.layers.len() {
        let len = n * arch.out_len(i)?;
        let xin = if i == 0 { x } else { &cur[..cur_len] };
        layer_forward(
            arch,
            i,
            params,
            n,
            xin,
            &mut next[..len],
            Mode::Eval,
            exec,
            scratch,
        )?;
        core::mem::swap(&mut cur, &mut next);
        cur_len = len;
    }
    Ok(&cur[..cur_len])
}

/// Backward pass after [`forward`] (same `x`, `n`, `acts`, `mode`): from `dlogits`
/// (`[n, classes]`), **accumulates** the parameter gradients into `grads` and, if
/// `dinput` is given, writes `dL/dx` there.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    arch: &Arch<'_>,
    params: &[f32],
    x: &[f32],
    n: usize,
    dlogits: &[f32],
    grads: &mut [f32],
    ws: &mut Workspace<'_>,
    mode: Mode,
    exec: &Exec<'_>,
    dinput: Option<&mut [f32]>,
) -> Result<(), Error> {
    arch.validate()?;
    check_len("logits gradient", dlogits, n.saturating_mul(arch.classes()))?;
    check_len("gradient buffer", ws.grad, arch.grad_buffer_len(n))?;
    ws.grad[..dlogits.len()].copy_from_slice(dlogits);
    backward_in_place(arch, params, x, n, grads, ws, mode, exec, dinput)
}

/// [`backward`] with `dlogits` already in the first `n * classes` elements of `ws.grad`.
#[allow(clippy::too_many_arguments)]
fn backward_in_place(
    arch: &Arch<'_>,
    params: &[f32],
    x: &[f32],
    n: usize,
    grads: &mut [f32],
    ws: &mut Workspace<'_>,
    mode: Mode,
    exec: &Exec<'_>,
    mut dinput: Option<&mut [f32]>,
) -> Result<(), Error> {
    if n == 0 {
        return Err(Error::EmptyBatch);
    }
    check_len("params", params, arch.param_count())?;
    check_len("grads", grads, arch.param_count())?;
    check_len("input batch", x, n.saturating_mul(arch.input.len()))?;
    check_len("activations", ws.acts, arch.activations_len(n))?;
    check_len("gradient buffer", ws.grad, arch.grad_buffer_len(n))?;
    if let Some(d) = &dinput {
        check_len("input gradient", d, x.len())?;
    }
    let half = arch.max_len() * n;
    let (ga, rest) = ws.grad.split_at_mut(half);
    let (mut dy_buf, mut dx_buf) = (ga, &mut rest[..half]);
    let acts: &[f32] = ws.acts;
    let mut end = acts.len();
    for i in (0..arch.layers.len()).rev() {
        let (ins, outs) = arch.layer_io(i)?;
        let (in_len, out_len) = (n * ins.len(), n * outs.len());
        let y = &acts[end - out_len..end];
        let xin = if i == 0 {
            x
        } else {
            &acts[end - out_len - in_len..end - out_len]
        };
        end -= out_len;
        let dy = &dy_buf[..out_len];
        let dx: Option<&mut [f32]> = if i > 0 {
            Some(&mut dx_buf[..in_len])
        } else {
            dinput.as_deref_mut()
        };
        layer_backward(
            arch, i, params, n, xin, y, dy, dx, grads, mode, exec, ws.scratch,
        )?;
        core::mem::swap(&mut dy_buf, &mut dx_buf);
    }
    Ok(())
}

/// Runs layer `i` backward on `n` samples: from its input `x`, output `y` and output
/// gradient `dy`, **accumulates** its parameter gradients into `grads` (the whole
/// network's, [`Arch::param_count`] long) and, if `dx` is given, writes `dL/dx`.
/// [`backward`] calls this for every layer; it is public so that a host can time or
/// test one layer at a time.
#[allow(clippy::too_many_arguments)]
pub fn layer_backward(
    arch: &Arch<'_>,
    i: usize,
    params: &[f32],
    n: usize,
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    grads: &mut [f32],
    mode: Mode,
    exec: &Exec<'_>,
    scratch: &mut [f32],
) -> Result<(), Error> {
    let (ins, outs) = arch.layer_io(i)?;
    check_len("params", params, arch.param_count())?;
    check_len("grads", grads, arch.param_count())?;
    let r = arch.param_offset(i)..arch.param_offset(i + 1);
    let (w, _) = layer_params(arch, params, i, ins);
    let (dw, db) = grads[r].split_at_mut(w.len());
    let at = |e: Error| match e {
        Error::Shape { reason, .. } => Error::Shape { layer: i, reason },
        e => e,
    };
    match (arch.layers[i], dx) {
        (Layer::Conv2d(c), mut dx) => {
            let done = match exec.kernels {
                Some(k) => {
                    check_len("conv2d output gradient", dy, n * outs.len())?;
                    check_len("conv2d input", x, n * ins.len())?;
                    check_len("conv2d weight gradient", dw, w.len())?;
                    if let Some(d) = &dx {
                        check_len("conv2d input gradient", d, n * ins.len())?;
                    }
                    k.backward(&c, ins, n, x, w, dy, dx.as_deref_mut(), dw, db, scratch)
                        .map_err(at)?
                }
                None => false,
            };
            if done {
                Ok(())
            } else {
                c.backward(ins, n, x, w, dy, dx, dw, db, exec.conv, scratch, exec.gemm)
            }
        }
        (Layer::Dense(d), dx) => d.backward(ins, n, x, w, dy, dx, dw, db, exec.gemm),
        (_, None) => Ok(()),
        (Layer::MaxPool(p), Some(dx)) => p.backward(ins, n, x, dy, dx),
        (Layer::Relu, Some(dx)) => relu::backward(y, dy, dx),
        (Layer::Flatten, Some(dx)) => flatten::backward(dy, dx),
        (Layer::Dropout(d), Some(dx)) => match mode {
            Mode::Eval => flatten::backward(dy, dx),
            Mode::Train { seed, first_sample } => d.backward(
                mix64(seed ^ i as u64),
                first_sample.wrapping_mul(outs.len() as u64),
                dy,
                dx,
            ),
        },
    }
    .map_err(at)
}

/// Forward, loss and backward for `labels.len()` samples: accumulates the gradients
/// into `grads` and returns the loss. `total` is the size of the whole batch the
/// reduction is over (`labels.len()` unless the batch is split across threads).
#[allow(clippy::too_many_arguments)]
pub fn forward_backward(
    arch: &Arch<'_>,
    params: &[f32],
    grads: &mut [f32],
    ws: &mut Workspace<'_>,
    x: &[f32],
    labels: &[u8],
    loss: Loss,
    reduction: Reduction,
    total: usize,
    mode: Mode,
    exec: &Exec<'_>,
) -> Result<BatchLoss, Error> {
    let n = labels.len();
    forward(arch, params, x, n, ws.acts, mode, exec, ws.scratch)?;
    let classes = arch.classes();
    check_len("gradient buffer", ws.grad, arch.grad_buffer_len(n))?;
    let (head, tmp) = ws.grad.split_at_mut(ws.grad.len() - classes);
    let out = batch_loss(
        loss,
        reduction,
        logits(arch, ws.acts, n)?,
        classes,
        labels,
        total,
        Some(&mut head[..n * classes]),
        tmp,
    )?;
    backward_in_place(arch, params, x, n, grads, ws, mode, exec, None)?;
    Ok(out)
}

/// One whole training step: zero the gradients, forward, loss, backward, optimizer
/// update. `seed` draws this step's dropout masks (use a different one every step).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    arch: &Arch<'_>,
    params: &mut [f32],
    grads: &mut [f32],
    opt_state: &mut [f32],
    ws: &mut Workspace<'_>,
    x: &[f32],
    labels: &[u8],
    loss: Loss,
    reduction: Reduction,
    opt: &mut Optimizer,
    seed: u64,
    exec: &Exec<'_>,
) -> Result<BatchLoss, Error> {
    grads.fill(0.0);
    let mode = Mode::Train {
        seed,
        first_sample: 0,
    };
    let out = forward_backward(
        arch,
        params,
        grads,
        ws,
        x,
        labels,
        loss,
        reduction,
        labels.len(),
        mode,
        exec,
    )?;
    opt.step(params, grads, opt_state)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::init::{init_params, Init};
    use crate::layers::Dropout;
    use crate::optim::Adam;
    use crate::shape::Padding;
    use crate::testutil::{check_grad, rand_vec};
    use std::vec;
    use std::vec::Vec;

    const TINY: Arch<'static> = Arch::new(
        Shape::new(6, 6, 2),
        &[
            Layer::Conv2d(Conv2d::with(3, 1, Padding::Same, 3)),
            Layer::Relu,
            Layer::MaxPool(MaxPool::new(2, 2, Padding::Valid)),
            Layer::Conv2d(Conv2d::with(2, 2, Padding::Valid, 4)),
            Layer::Relu,
            Layer::Flatten,
            Layer::Dense(Dense::new(6)),
            Layer::Relu,
            Layer::Dropout(Dropout::new(0.6)),
            Layer::Dense(Dense::new(3)),
        ],
    );

    struct Bufs {
        acts: Vec<f32>,
        grad: Vec<f32>,
        scratch: Vec<f32>,
    }

    fn bufs(n: usize, images: usize) -> Bufs {
        Bufs {
            acts: vec![0.0; TINY.activations_len(n)],
            grad: vec![0.0; TINY.grad_buffer_len(n)],
            scratch: vec![0.0; TINY.im2col_len(images)],
        }
    }

    fn loss_of(params: &[f32], x: &[f32], labels: &[u8], loss: Loss, mode: Mode) -> f64 {
        let n = labels.len();
        let mut b = bufs(n, 0);
        forward(
            &TINY,
            params,
            x,
            n,
            &mut b.acts,
            mode,
            &Exec::REFERENCE,
            &mut [],
        )
        .unwrap();
        let mut tmp = [0.0; 3];
        batch_loss(
            loss,
            Reduction::Sum,
            logits(&TINY, &b.acts, n).unwrap(),
            3,
            labels,
            n,
            None,
            &mut tmp,
        )
        .unwrap()
        .value as f64
    }

    #[test]
    fn sizes() {
        // conv 3*3*2*3+3, conv 2*2*3*4+4, dense 4*6+6, dense 6*3+3
        assert_eq!(TINY.param_count(), 57 + 52 + 30 + 21);
        assert_eq!(TINY.classes(), 3);
        assert_eq!(TINY.max_len(), 108);
        assert_eq!(TINY.inference_len(2), 432);
        assert!(TINY.is_valid());
        let dense = [Layer::Dense(Dense::new(3))];
        let bad = Arch::new(Shape::new(4, 4, 1), &dense);
        assert_eq!(
            bad.validate(),
            Err(Error::Shape {
                layer: 0,
                reason: ShapeError::NeedsFlatInput
            })
        );
        assert_eq!(bad.param_count(), 0);
        let not_flat = Arch::new(Shape::new(4, 4, 1), &[Layer::Relu]);
        assert_eq!(
            not_flat.validate(),
            Err(Error::Shape {
                layer: 0,
                reason: ShapeError::OutputNotFlat
            })
        );
        assert_eq!(
            Arch::new(Shape::new(4, 4, 1), &[]).validate(),
            Err(Error::Shape {
                layer: 0,
                reason: ShapeError::NoLayers
            })
        );
    }

    #[test]
    fn whole_network_gradients_match_finite_differences() {
        let n = 3;
        let mut params = vec![0.0; TINY.param_count()];
        init_params(&TINY, Init::Glorot, 5, &mut params).unwrap();
        // Non-zero biases so that ReLUs are not at their kink.
        for (p, r) in params.iter_mut().zip(rand_vec(9, TINY.param_count(), 0.1)) {
            *p += r;
        }
        let x = rand_vec(6, n * TINY.input.len(), 1.0);
        let labels = [2u8, 0, 1];
        let mode = Mode::Train {
            seed: 77,
            first_sample: 0,
        };
        for loss in [Loss::Fused, Loss::LogSoftmax, Loss::Naive] {
            let mut b = bufs(n, 0);
            let mut grads = vec![0.0; TINY.param_count()];
            let mut ws = Workspace {
                acts: &mut b.acts,
                grad: &mut b.grad,
                scratch: &mut b.scratch,
            };
            forward_backward(
                &TINY,
                &params,
                &mut grads,
                &mut ws,
                &x,
                &labels,
                loss,
                Reduction::Sum,
                n,
                mode,
                &Exec::REFERENCE,
            )
            .unwrap();
            check_grad(
                &std::format!("net {loss:?} params"),
                &params,
                &grads,
                2e-4,
                2e-2,
                |p| loss_of(p, &x, &labels, loss, mode),
            );
            // dL/dx through the whole network.
            let mut dl = vec![0.0; n * 3];
            let mut tmp = [0.0; 3];
            batch_loss(
                loss,
                Reduction::Sum,
                logits(&TINY, ws.acts, n).unwrap(),
                3,
                &labels,
                n,
                Some(&mut dl),
                &mut tmp,
            )
            .unwrap();
            let mut dx = vec![0.0; x.len()];
            let mut g2 = vec![0.0; TINY.param_count()];
            backward(
                &TINY,
                &params,
                &x,
                n,
                &dl,
                &mut g2,
                &mut ws,
                mode,
                &Exec::REFERENCE,
                Some(&mut dx),
            )
            .unwrap();
            assert_eq!(g2, grads);
            check_grad(
                &std::format!("net {loss:?} input"),
                &x,
                &dx,
                1e-3,
                2e-2,
                |x| loss_of(&params, x, &labels, loss, mode),
            );
        }
    }

    #[test]
    fn split_batch_equals_whole_batch() {
        let n = 4;
        let mut params = vec![0.0; TINY.param_count()];
        init_params(&TINY, Init::He, 1, &mut params).unwrap();
        let x = rand_vec(2, n * TINY.input.len(), 1.0);
        let labels = [0u8, 1, 2, 1];
        let mut whole = vec![0.0; TINY.param_count()];
        let mut b = bufs(n, 2);
        let mut ws = Workspace {
            acts: &mut b.acts,
            grad: &mut b.grad,
            scratch: &mut b.scratch,
        };
        let exec = Exec {
            gemm: &PortableGemm,
            conv: ConvAlgo::Im2col,
            kernels: None,
        };
        let mode = |first| Mode::Train {
            seed: 3,
            first_sample: first,
        };
        let lw = forward_backward(
            &TINY,
            &params,
            &mut whole,
            &mut ws,
            &x,
            &labels,
            Loss::Fused,
            Reduction::Mean,
            n,
            mode(0),
            &exec,
        )
        .unwrap();
        let mut parts = vec![0.0; TINY.param_count()];
        let mut total = 0.0;
        for h in 0..2 {
            let mut b = bufs(2, 1);
            let mut ws = Workspace {
                acts: &mut b.acts,
                grad: &mut b.grad,
                scratch: &mut b.scratch,
            };
            let xs = &x[h * 2 * TINY.input.len()..(h + 1) * 2 * TINY.input.len()];
            total += forward_backward(
                &TINY,
                &params,
                &mut parts,
                &mut ws,
                xs,
                &labels[h * 2..h * 2 + 2],
                Loss::Fused,
                Reduction::Mean,
                n,
                mode(2 * h as u64),
                &exec,
            )
            .unwrap()
            .value;
        }
        assert!((total - lw.value).abs() < 1e-5);
        for (a, b) in parts.iter().zip(&whole) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn infer_equals_forward_and_training_learns() {
        let n = 8;
        let mut params = vec![0.0; TINY.param_count()];
        init_params(&TINY, Init::He, 11, &mut params).unwrap();
        let x = rand_vec(12, n * TINY.input.len(), 1.0);
        let labels: Vec<u8> = (0..n as u8).map(|i| i % 3).collect();
        let mut b = bufs(n, 0);
        forward(
            &TINY,
            &params,
            &x,
            n,
            &mut b.acts,
            Mode::Eval,
            &Exec::REFERENCE,
            &mut [],
        )
        .unwrap();
        let mut ib = vec![0.0; TINY.inference_len(n)];
        let inf = infer(&TINY, &params, &x, n, &mut ib, &Exec::REFERENCE, &mut [])
            .unwrap()
            .to_vec();
        assert_eq!(inf, logits(&TINY, &b.acts, n).unwrap());
        // Memorise 8 random samples.
        let mut opt = Optimizer::Adam(Adam::new(0.01));
        let mut grads = vec![0.0; TINY.param_count()];
        let mut state = vec![0.0; opt.state_len(TINY.param_count())];
        let mut ws = Workspace {
            acts: &mut b.acts,
            grad: &mut b.grad,
            scratch: &mut b.scratch,
        };
        let first = train_step(
            &TINY,
            &mut params,
            &mut grads,
            &mut state,
            &mut ws,
            &x,
            &labels,
            Loss::Fused,
            Reduction::Mean,
            &mut opt,
            0,
            &Exec::REFERENCE,
        )
        .unwrap();
        let mut last = first;
        for s in 1..300 {
            last = train_step(
                &TINY,
                &mut params,
                &mut grads,
                &mut state,
                &mut ws,
                &x,
                &labels,
                Loss::Fused,
                Reduction::Mean,
                &mut opt,
                s,
                &Exec::REFERENCE,
            )
            .unwrap();
        }
        assert!(last.value < first.value * 0.75, "{first:?} -> {last:?}");
    }

    #[test]
    fn wrong_buffers_are_errors_not_panics() {
        let params = vec![0.0; TINY.param_count()];
        let x = vec![0.0; 2 * TINY.input.len()];
        let mut acts = vec![0.0; TINY.activations_len(2)];
        let e = &Exec::REFERENCE;
        assert!(forward(
            &TINY,
            &params[1..],
            &x,
            2,
            &mut acts,
            Mode::Eval,
            e,
            &mut []
        )
        .is_err());
        assert!(forward(
            &TINY,
            &params,
            &x[1..],
            2,
            &mut acts,
            Mode::Eval,
            e,
            &mut []
        )
        .is_err());
        assert!(forward(
            &TINY,
            &params,
            &x,
            2,
            &mut acts[1..],
            Mode::Eval,
            e,
            &mut []
        )
        .is_err());
        assert_eq!(
            forward(&TINY, &params, &[], 0, &mut [], Mode::Eval, e, &mut []),
            Err(Error::EmptyBatch)
        );
        let im = Exec {
            gemm: &PortableGemm,
            conv: ConvAlgo::Im2col,
            kernels: None,
        };
        assert!(matches!(
            forward(&TINY, &params, &x, 2, &mut acts, Mode::Eval, &im, &mut []),
            Err(Error::Shape { .. } | Error::BufferLen { .. })
        ));
        let mut ib = vec![0.0; 3];
        assert!(infer(&TINY, &params, &x, 2, &mut ib, e, &mut []).is_err());
    }
}
