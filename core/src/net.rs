//! A network's passes: the forward pass, backward pass and training step over the
//! buffers whose sizes [`Arch`] gives (the architecture and its sizes are in
//! [`crate::arch`], what each layer kind does in [`crate::layers`]).
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

use crate::error::{check_len, Error};
#[cfg(doc)]
use crate::layers::ConvAlgo;
use crate::layers::Site;
use crate::loss::{batch_loss, BatchLoss, Loss, Reduction};
use crate::optim::Optimizer;
use crate::shape::Shape;

/// [`Arch`] lives in [`crate::arch`]; [`Layer`], [`Exec`] and [`Mode`] in
/// [`crate::layers`]. Re-exported here, where they were first.
pub use crate::arch::Arch;
pub use crate::layers::{Exec, Layer, Mode};

/// Splits layer `i`'s parameters into (weights, biases).
fn layer_params<'p>(
    arch: &Arch<'_>,
    params: &'p [f32],
    i: usize,
    ins: Shape,
) -> (&'p [f32], &'p [f32]) {
    let r = arch.param_offset(i)..arch.param_offset(i + 1);
    params[r].split_at(arch.layers[i].weight_len(ins))
}

/// Layer `i` of `arch` on `n` samples.
fn site(arch: &Arch<'_>, i: usize, n: usize) -> Result<Site, Error> {
    let (input, output) = arch.layer_io(i)?;
    Ok(Site {
        index: i,
        input,
        output,
        n,
    })
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
    let site = site(arch, i, n)?;
    let wb = layer_params(arch, params, i, site.input);
    arch.layers[i].forward(&site, x, wb, y, mode, exec, scratch)
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
    let site = site(arch, i, n)?;
    check_len("params", params, arch.param_count())?;
    check_len("grads", grads, arch.param_count())?;
    let r = arch.param_offset(i)..arch.param_offset(i + 1);
    let wb = layer_params(arch, params, i, site.input);
    let dwb = grads[r].split_at_mut(wb.0.len());
    arch.layers[i].backward(&site, (x, y, dy), wb, dx, dwb, mode, exec, scratch)
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

/// After a training pass: moves every batchnorm layer's running mean and variance toward
/// the statistics of the batch ([`crate::layers::BatchNorm::update_running`]). The batch
/// may be split into `parts`, each `(x, acts, n)`: its `n` input samples and the
/// activations its [`forward`] left; the statistics are the whole batch's. A network
/// without batchnorm is left as it is.
pub fn update_running_stats(
    arch: &Arch<'_>,
    params: &mut [f32],
    parts: &[(&[f32], &[f32], usize)],
) -> Result<(), Error> {
    check_len("params", params, arch.param_count())?;
    for (i, l) in arch.layers.iter().enumerate() {
        let Layer::BatchNorm(bn) = l else { continue };
        let (ins, _) = arch.layer_io(i)?;
        // Where layer i's input starts in a part's activations (per sample).
        let mut before = 0;
        for j in 0..i.saturating_sub(1) {
            before += arch.out_len(j)?;
        }
        let mut inputs: [(&[f32], usize); 64] = [(&[], 0); 64];
        if parts.len() > inputs.len() {
            return Err(Error::InvalidParameter {
                name: "batch parts (at most 64)",
            });
        }
        let mut count = 0usize;
        for (slot, &(x, acts, n)) in inputs.iter_mut().zip(parts) {
            check_len("input batch", x, n.saturating_mul(arch.input.len()))?;
            check_len("activations", acts, arch.activations_len(n))?;
            let len = n * ins.len();
            *slot = (
                if i == 0 {
                    x
                } else {
                    &acts[n * before..n * before + len]
                },
                n,
            );
            count += n * ins.h * ins.w;
        }
        let inputs = &inputs[..parts.len()];
        let sums = |ch| {
            inputs.iter().fold((0.0, 0.0), |(a, b), &(x, n)| {
                let (s, s2) = crate::layers::BatchNorm::channel_sums(ins, n, x, ch);
                (a + s, b + s2)
            })
        };
        let r = arch.param_range(i)?;
        let (_, b) = params[r].split_at_mut(ins.c);
        bn.update_running(count, sums, b);
    }
    Ok(())
}

/// One whole training step: zero the gradients, forward, loss, backward, optimizer
/// update (and batchnorm's running statistics, [`update_running_stats`]). `seed` draws this step's dropout masks (use a different one every step).
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
    update_running_stats(arch, params, &[(x, ws.acts, labels.len())])?;
    opt.step(params, grads, opt_state)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::error::ShapeError;
    use crate::gemm::PortableGemm;
    use crate::init::{init_params, Init};
    use crate::layers::Dropout;
    use crate::layers::{Conv2d, ConvAlgo, Dense, MaxPool};
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

    /// Batchnorm's running statistics: moved toward the batch's by `momentum`, the
    /// same (to rounding) whether the batch comes whole or in two parts.
    #[test]
    fn running_statistics_follow_the_batch_in_one_part_or_two() {
        use crate::layers::BatchNorm;
        const BN: &[Layer] = &[
            Layer::Conv2d(Conv2d::with(3, 1, Padding::Same, 3)),
            Layer::BatchNorm(BatchNorm::new(0.75, 1e-3)),
            Layer::Relu,
            Layer::Flatten,
            Layer::Dense(Dense::new(2)),
        ];
        let arch = Arch::new(Shape::new(4, 4, 1), BN);
        let n = 6;
        let mut params = vec![0.0; arch.param_count()];
        init_params(&arch, Init::He, 5, &mut params).unwrap();
        let x = rand_vec(6, n * 16, 1.0);
        let mut acts = vec![0.0; arch.activations_len(n)];
        let mode = Mode::Train {
            seed: 1,
            first_sample: 0,
        };
        forward(
            &arch,
            &params,
            &x,
            n,
            &mut acts,
            mode,
            &Exec::REFERENCE,
            &mut [],
        )
        .unwrap();
        let mut whole = params.clone();
        update_running_stats(&arch, &mut whole, &[(&x, &acts, n)]).unwrap();
        // The conv's output (the batchnorm's input) is the first n * 48 activations;
        // the layer's parameters are gamma, beta, running mean, running variance (3 each).
        let r = arch.param_range(1).unwrap();
        for ch in 0..3 {
            let v: Vec<f64> = acts[..n * 48]
                .iter()
                .skip(ch)
                .step_by(3)
                .map(|&a| a as f64)
                .collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / v.len() as f64;
            let got_mean = whole[r.start + 6 + ch] as f64;
            let got_var = whole[r.start + 9 + ch] as f64;
            assert!(
                (got_mean - 0.25 * mean).abs() < 1e-5,
                "{ch}: {got_mean} {mean}"
            );
            assert!(
                (got_var - (0.75 + 0.25 * var)).abs() < 1e-5,
                "{ch}: {got_var} {var}"
            );
        }
        // Two parts, each with its own forward pass.
        let (mut a1, mut a2) = (
            vec![0.0; arch.activations_len(2)],
            vec![0.0; arch.activations_len(4)],
        );
        forward(
            &arch,
            &params,
            &x[..32],
            2,
            &mut a1,
            mode,
            &Exec::REFERENCE,
            &mut [],
        )
        .unwrap();
        forward(
            &arch,
            &params,
            &x[32..],
            4,
            &mut a2,
            mode,
            &Exec::REFERENCE,
            &mut [],
        )
        .unwrap();
        let mut parts = params.clone();
        update_running_stats(&arch, &mut parts, &[(&x[..32], &a1, 2), (&x[32..], &a2, 4)]).unwrap();
        for (a, b) in whole.iter().zip(&parts) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // Everything but the running statistics is untouched.
        for (i, (a, b)) in params.iter().zip(&whole).enumerate() {
            if !(r.start + 6..r.end).contains(&i) {
                assert_eq!(a, b, "{i}");
            }
        }
        assert!(update_running_stats(&arch, &mut parts, &[(&x, &acts[1..], n)]).is_err());
    }
}
