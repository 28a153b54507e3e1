//! The host engine: the core's layers with a fast matrix multiply ([`crate::kernels`]),
//! the batch split across threads (data parallel), and no buffer allocated per step.
//!
//! Determinism: with the same seed and thread count, results are bit-identical. The
//! thread count changes how each batch is split, so the order in which per-thread
//! gradients are summed (and so the last bits of every step) differs between thread
//! counts; dropout masks do not (they are a function of the sample's index in the batch).

use std::thread;

use anyhow::{bail, Result};
use microconv::loss::{argmax, BatchLoss, Loss, Reduction};
use microconv::net::{self, Exec, Mode, Workspace};
use microconv::optim::Optimizer;
use microconv::{Arch, Layer};

pub use crate::kernels::{fast, Backend};

/// Floats of im2col scratch per thread: 1.25 MB, so that the block a matrix product
/// reads stays in this CPU's 2 MB L2 cache. Measured on the seed and small networks
/// (`host-trainer bench`, 2 threads): 160K, 320K, 640K, 2M and 8M floats gave
/// 99/90/96/103/115 ms per seed step and 16.4/15.1/16.0/17.3/17.4 ms per small step.
const IM2COL_FLOATS: usize = 320_000;

/// Images per im2col matrix product: enough rows for the kernel to run at full speed
/// while the scratch stays a few MB.
pub fn im2col_images(arch: &Arch<'_>, batch: usize) -> usize {
    let per = arch.im2col_len(1).max(1);
    (IM2COL_FLOATS / per).clamp(1, batch.max(1))
}

/// One thread's share of the batch and its buffers.
struct Worker {
    range: std::ops::Range<usize>,
    acts: Vec<f32>,
    grad: Vec<f32>,
    scratch: Vec<f32>,
    grads: Vec<f32>,
}

/// `layer 3 (conv2d 5x5, 16 filters)`: a layer as messages name it (counted from 0).
pub fn layer_label(arch: &Arch<'_>, i: usize) -> String {
    // The core names every kind (`Layer::name`); the two with sizes get them added.
    let what = match arch.layers.get(i) {
        Some(Layer::Conv2d(c)) => format!("conv2d {k}x{k}, {} filters", c.filters, k = c.kernel),
        Some(Layer::Dense(d)) => format!("dense, {} units", d.units),
        Some(l) => l.name().into(),
        None => "?".into(),
    };
    format!("layer {i} ({what})")
}

/// The first layer with a non-finite value in its output, from a forward pass's
/// activations (`acts`: every layer's output for `n` samples, in layer order).
pub fn first_nonfinite_output(arch: &Arch<'_>, acts: &[f32], n: usize) -> Option<usize> {
    let mut off = 0;
    for i in 0..arch.layers.len() {
        let len = n * arch.layer_io(i).ok()?.1.len();
        let out = acts.get(off..off + len)?;
        if out.iter().any(|v| !v.is_finite()) {
            return Some(i);
        }
        off += len;
    }
    None
}

/// Splits `n` into `parts` contiguous ranges whose sizes differ by at most one.
pub fn split(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|i| (i * n / parts)..((i + 1) * n / parts))
        .collect()
}

/// Trains one network: parameters, optimizer state and every thread's buffers, all
/// allocated once.
pub struct Trainer {
    arch: Arch<'static>,
    /// The parameters.
    pub params: Vec<f32>,
    /// Optimizer state.
    pub state: Vec<f32>,
    /// The optimizer (its step count is part of the training state).
    pub opt: Optimizer,
    loss: Loss,
    reduction: Reduction,
    batch: usize,
    workers: Vec<Worker>,
    exec: Exec<'static>,
}

impl Trainer {
    /// A trainer for batches of `batch` samples split across `threads` threads.
    pub fn new(
        arch: Arch<'static>,
        params: Vec<f32>,
        opt: Optimizer,
        loss: Loss,
        reduction: Reduction,
        batch: usize,
        threads: usize,
    ) -> Result<Self> {
        arch.validate()?;
        if params.len() != arch.param_count() {
            bail!(
                "{} parameters given, the architecture has {}",
                params.len(),
                arch.param_count()
            );
        }
        if batch == 0 {
            bail!("batch size must be at least 1");
        }
        let ranges = split(batch, threads);
        let most = ranges.iter().map(|r| r.len()).max().unwrap_or(1);
        let images = im2col_images(&arch, most);
        let workers = ranges
            .into_iter()
            .map(|range| Worker {
                range,
                acts: vec![0.0; arch.activations_len(most)],
                grad: vec![0.0; arch.grad_buffer_len(most)],
                scratch: vec![0.0; arch.im2col_len(images)],
                grads: vec![0.0; arch.param_count()],
            })
            .collect();
        let state = vec![0.0; opt.state_len(arch.param_count())];
        Ok(Trainer {
            arch,
            params,
            state,
            opt,
            loss,
            reduction,
            batch,
            workers,
            exec: fast(),
        })
    }

    /// Logits of the current parameters for `n` images, computed with the training
    /// threads' own buffers (no memory beyond the logits when they are large enough):
    /// the same values as [`predict`] with as many threads.
    pub fn predict(&mut self, x: Images<'_>, n: usize) -> Result<Vec<f32>> {
        let mut bufs: Vec<(Vec<f32>, Vec<f32>)> = self
            .workers
            .iter_mut()
            .map(|w| (std::mem::take(&mut w.acts), std::mem::take(&mut w.scratch)))
            .collect();
        let r = predict_into(&self.arch, &self.params, x, n, self.exec, &mut bufs);
        for (w, (a, s)) in self.workers.iter_mut().zip(bufs) {
            (w.acts, w.scratch) = (a, s);
        }
        r
    }

    /// Runs the layers with `backend` from now on (the default is [`Backend::Gemm`]).
    pub fn set_backend(&mut self, backend: Backend) {
        self.exec = backend.exec();
    }

    /// One training step on a batch (`x`: `[batch, input]`, `labels`: `[batch]`).
    /// `seed` draws the dropout masks. Stops with an error, leaving the parameters
    /// untouched, if the loss or a gradient is not finite.
    pub fn step(&mut self, x: &[f32], labels: &[u8], seed: u64) -> Result<BatchLoss> {
        let (arch, params, loss, red, batch, exec) = (
            &self.arch,
            &self.params[..],
            self.loss,
            self.reduction,
            self.batch,
            &self.exec,
        );
        if labels.len() != batch || x.len() != batch * arch.input.len() {
            bail!(
                "batch of {} labels / {} values, expected {batch} samples",
                labels.len(),
                x.len()
            );
        }
        let inlen = arch.input.len();
        let results: Vec<Result<Result<BatchLoss, microconv::Error>>> = thread::scope(|s| {
            let mut handles = Vec::new();
            for w in self.workers.iter_mut() {
                let r = w.range.clone();
                let run = move || {
                    w.grads.fill(0.0);
                    let n = r.len();
                    let mut ws = Workspace {
                        acts: &mut w.acts[..arch.activations_len(n)],
                        grad: &mut w.grad[..arch.grad_buffer_len(n)],
                        scratch: &mut w.scratch,
                    };
                    let mode = Mode::Train {
                        seed,
                        first_sample: r.start as u64,
                    };
                    net::forward_backward(
                        arch,
                        params,
                        &mut w.grads,
                        &mut ws,
                        &x[r.start * inlen..r.end * inlen],
                        &labels[r.clone()],
                        loss,
                        red,
                        batch,
                        mode,
                        exec,
                    )
                };
                handles.push(s.spawn(run));
            }
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a training thread panicked"))
                })
                .collect()
        });
        let mut total = BatchLoss {
            value: 0.0,
            correct: 0,
        };
        // Where a non-finite value first appeared, for the message when there is one.
        let diverged = |workers: &[Worker]| {
            let first = workers
                .iter()
                .filter_map(|w| first_nonfinite_output(arch, &w.acts, w.range.len()))
                .min();
            first.map_or(String::from("every layer's output is finite"), |i| {
                format!("the first non-finite output is {}'s", layer_label(arch, i))
            })
        };
        for r in results {
            match r? {
                Ok(r) => {
                    total.value += r.value;
                    total.correct += r.correct;
                }
                Err(e) => bail!("{e}; {}", diverged(&self.workers)),
            }
        }
        if !total.value.is_finite() {
            bail!(
                "the loss is {}; {} (training diverged)",
                total.value,
                diverged(&self.workers)
            );
        }
        let parts = split(self.params.len(), self.workers.len());
        let (first, rest) = self.workers.split_at_mut(1);
        let g = &mut first[0].grads;
        // Sum the other workers' gradients into the first's and look for non-finite
        // values, each thread over its own range of parameters.
        let bad = thread::scope(|s| {
            let mut tail = &mut g[..];
            let mut handles = Vec::new();
            for r in parts.iter().cloned() {
                let (mine, t) = tail.split_at_mut(r.len());
                tail = t;
                let rest = &*rest;
                handles.push(s.spawn(move || {
                    for w in rest {
                        for (a, b) in mine.iter_mut().zip(&w.grads[r.clone()]) {
                            *a += b;
                        }
                    }
                    mine.iter()
                        .position(|v| !v.is_finite())
                        .map(|i| r.start + i)
                }));
            }
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .find(Option::is_some)
                .flatten()
        });
        if let Some(i) = bad {
            let layer = (0..arch.layers.len())
                .find(|&l| arch.param_range(l).is_ok_and(|r| r.contains(&i)))
                .map_or(String::new(), |l| format!(", in {}", layer_label(arch, l)));
            bail!(
                "the gradient of parameter {i}{layer} is {} (training diverged)",
                g[i]
            );
        }
        parallel_update(&mut self.opt, &mut self.params, g, &mut self.state, &parts)?;
        self.update_batchnorm(x)?;
        Ok(total)
    }

    /// Batchnorm's running averages after a step, from the whole batch's statistics
    /// (each worker's share of `x` and the activations it left); nothing without
    /// batchnorm layers.
    fn update_batchnorm(&mut self, x: &[f32]) -> Result<()> {
        let arch = &self.arch;
        if !arch.layers.iter().any(|l| matches!(l, Layer::BatchNorm(_))) {
            return Ok(());
        }
        let inlen = arch.input.len();
        let shares: Vec<(&[f32], &[f32], usize)> = self
            .workers
            .iter()
            .map(|w| {
                let (r, n) = (w.range.clone(), w.range.len());
                (
                    &x[r.start * inlen..r.end * inlen],
                    &w.acts[..arch.activations_len(n)],
                    n,
                )
            })
            .collect();
        net::update_running_stats(arch, &mut self.params, &shares)?;
        Ok(())
    }
}

/// One optimizer update with the parameters split into `parts` (contiguous ranges that
/// cover them), one thread per part. Every element's update depends only on its own
/// parameter, gradient and state, so the result is the same as one call over all of
/// them; the step count advances once.
fn parallel_update(
    opt: &mut Optimizer,
    params: &mut [f32],
    grads: &[f32],
    state: &mut [f32],
    parts: &[std::ops::Range<usize>],
) -> Result<()> {
    let n = params.len();
    if state.len() != opt.state_len(n) || grads.len() != n {
        bail!("optimizer buffers do not match the parameters");
    }
    // The state is `k` buffers of `n` values (Adam: m then v; SGD: its accumulator or
    // nothing), split the same way as the parameters.
    let k = state.len() / n.max(1);
    let mut bufs: Vec<&mut [f32]> = state.chunks_mut(n.max(1)).collect();
    let template = *opt;
    let results: Vec<Result<Result<Optimizer, microconv::Error>>> = thread::scope(|s| {
        let mut p_tail = &mut params[..];
        let mut handles = Vec::new();
        for r in parts {
            let (p, pt) = p_tail.split_at_mut(r.len());
            p_tail = pt;
            let g = &grads[r.clone()];
            let mut st = Vec::with_capacity(k);
            for b in bufs.iter_mut() {
                let taken = std::mem::take(b);
                let (mine, rest) = taken.split_at_mut(r.len());
                *b = rest;
                st.push(mine);
            }
            handles.push(s.spawn(move || -> Result<Optimizer, microconv::Error> {
                let mut o = template;
                match (&mut o, st.as_mut_slice()) {
                    (Optimizer::Adam(a), [m, v]) => a.step(p, g, m, v)?,
                    (_, [acc]) => o.step(p, g, acc)?,
                    _ => o.step(p, g, &mut [])?,
                }
                Ok(o)
            }));
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("an optimizer thread panicked"))
            })
            .collect()
    });
    for r in results {
        *opt = r??;
    }
    Ok(())
}

/// Images to classify: already scaled floats (`[n, input]`), or 8-bit pixels scaled to
/// `[0, 1]` (`p / 255`, as [`crate::data::scale`] does) chunk by chunk, so that a whole
/// test set never exists as floats.
#[derive(Clone, Copy)]
pub enum Images<'a> {
    /// Scaled values.
    F32(&'a [f32]),
    /// 8-bit pixels.
    U8(&'a [u8]),
}

impl Images<'_> {
    fn len(&self) -> usize {
        match self {
            Images::F32(x) => x.len(),
            Images::U8(x) => x.len(),
        }
    }
}

/// The images of one inference chunk: `range` of `x`, scaled into `tmp` if they are
/// bytes.
fn chunk<'a>(x: Images<'a>, range: std::ops::Range<usize>, tmp: &'a mut Vec<f32>) -> &'a [f32] {
    match x {
        Images::F32(v) => &v[range],
        Images::U8(v) => {
            tmp.resize(range.len(), 0.0);
            crate::data::scale(&v[range], tmp);
            tmp
        }
    }
}

/// Logits for `n` images (`x`: `[n, input]`), computed in chunks across `threads`.
pub fn predict(
    arch: &Arch<'_>,
    params: &[f32],
    x: &[f32],
    n: usize,
    threads: usize,
) -> Result<Vec<f32>> {
    predict_with(arch, params, x, n, threads, Backend::Gemm)
}

/// [`predict`] with a chosen backend.
pub fn predict_with(
    arch: &Arch<'_>,
    params: &[f32],
    x: &[f32],
    n: usize,
    threads: usize,
    backend: Backend,
) -> Result<Vec<f32>> {
    predict_into(
        arch,
        params,
        Images::F32(x),
        n,
        backend.exec(),
        &mut no_bufs(threads),
    )
}

/// Empty buffers for `threads` inference threads (each grows its own to the size needed).
fn no_bufs(threads: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    (0..threads.max(1)).map(|_| Default::default()).collect()
}

/// Logits for `n` images of 8-bit pixels (`[n, input]`), scaled chunk by chunk.
pub fn predict_u8(
    arch: &Arch<'_>,
    params: &[f32],
    pixels: &[u8],
    n: usize,
    threads: usize,
) -> Result<Vec<f32>> {
    predict_into(
        arch,
        params,
        Images::U8(pixels),
        n,
        fast(),
        &mut no_bufs(threads),
    )
}

/// Images per inference chunk: every path uses the same chunks, so that the logits do
/// not depend on which buffers computed them.
const CHUNK: usize = 64;

/// The inference behind every `predict`: the images split across `bufs.len()` threads,
/// each running [`net::infer`] on chunks of [`CHUNK`] images with its own pair of
/// buffers (activations, im2col scratch), which are grown to the sizes needed if they
/// are smaller (a trainer lends its own, large enough already).
fn predict_into(
    arch: &Arch<'_>,
    params: &[f32],
    x: Images<'_>,
    n: usize,
    exec: Exec<'static>,
    bufs: &mut [(Vec<f32>, Vec<f32>)],
) -> Result<Vec<f32>> {
    let exec = &exec;
    let classes = arch.classes();
    let inlen = arch.input.len();
    if x.len() != n * inlen {
        bail!("{} input values for {n} images of {inlen}", x.len());
    }
    let mut out = vec![0.0; n * classes];
    let ranges = split(n, bufs.len());
    let images = im2col_images(arch, CHUNK);
    let (act_len, col_len) = (arch.inference_len(CHUNK), arch.im2col_len(images));
    thread::scope(|s| -> Result<()> {
        let mut rest = &mut out[..];
        let mut handles = Vec::new();
        for (r, (buf, scratch)) in ranges.into_iter().zip(bufs.iter_mut()) {
            let (mine, tail) = rest.split_at_mut(r.len() * classes);
            rest = tail;
            handles.push(s.spawn(move || -> Result<(), microconv::Error> {
                if buf.len() < act_len {
                    buf.resize(act_len, 0.0);
                }
                if scratch.len() < col_len {
                    scratch.resize(col_len, 0.0);
                }
                let mut tmp = Vec::new();
                for (c, o) in mine.chunks_mut(CHUNK * classes).enumerate() {
                    let m = o.len() / classes;
                    let start = r.start + c * CHUNK;
                    let lg = net::infer(
                        arch,
                        params,
                        chunk(x, start * inlen..(start + m) * inlen, &mut tmp),
                        m,
                        &mut buf[..arch.inference_len(m)],
                        exec,
                        &mut scratch[..col_len],
                    )?;
                    o.copy_from_slice(lg);
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("an inference thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(out)
}

/// Fraction of `labels` that the argmax of `logits` gets right.
pub fn accuracy(logits: &[f32], labels: &[u8]) -> f64 {
    accuracy_by(logits, labels, argmax)
}

/// Fraction of `labels` that `argmax` of each row of `logits` (`[labels.len(), classes]`)
/// gets right, for logits of any type.
pub fn accuracy_by<T>(logits: &[T], labels: &[u8], argmax: impl Fn(&[T]) -> usize) -> f64 {
    let classes = logits.len() / labels.len().max(1);
    let ok = logits
        .chunks_exact(classes.max(1))
        .zip(labels)
        .filter(|(l, &t)| argmax(l) == t as usize)
        .count();
    ok as f64 / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_update_equals_one_update() {
        use microconv::optim::{Adam, Sgd};
        let n = 1001;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        for opt in [
            Optimizer::Adam(Adam::new(1e-2)),
            Optimizer::Sgd(Sgd::new(0.1, 0.9)),
            Optimizer::Sgd(Sgd::new(0.1, 0.0)),
        ] {
            let (mut o1, mut o2) = (opt, opt);
            let mut p1: Vec<f32> = (0..n).map(|i| i as f32 / 100.0).collect();
            let mut p2 = p1.clone();
            let mut s1 = vec![0.0; opt.state_len(n)];
            let mut s2 = s1.clone();
            for _ in 0..3 {
                o1.step(&mut p1, &g, &mut s1).unwrap();
                parallel_update(&mut o2, &mut p2, &g, &mut s2, &split(n, 3)).unwrap();
            }
            assert_eq!(o1, o2, "step counts");
            assert!(p1.iter().zip(&p2).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(s1.iter().zip(&s2).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn predicting_from_bytes_and_with_a_trainers_buffers_equals_predict() {
        let arch = microconv::archs::SMALL;
        let mut params = vec![0.0; arch.param_count()];
        microconv::init::init_params(&arch, microconv::init::Init::He, 3, &mut params).unwrap();
        let n = 150;
        let px: Vec<u8> = (0..n * 784).map(|i| (i * 37 % 251) as u8).collect();
        let mut xf = vec![0.0; px.len()];
        crate::data::scale(&px, &mut xf);
        let want = predict(&arch, &params, &xf, n, 2).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&predict_u8(&arch, &params, &px, n, 2).unwrap()),
            bits(&want)
        );
        // Training buffers smaller (batch 8) and larger (128) than a chunk needs.
        for batch in [8, 128] {
            let opt = Optimizer::Adam(microconv::optim::Adam::new(1e-3));
            let mut t = Trainer::new(
                arch,
                params.clone(),
                opt,
                Loss::Fused,
                Reduction::Mean,
                batch,
                2,
            )
            .unwrap();
            assert_eq!(bits(&t.predict(Images::U8(&px), n).unwrap()), bits(&want));
            assert_eq!(bits(&t.predict(Images::F32(&xf), n).unwrap()), bits(&want));
        }
    }

    #[test]
    fn split_is_contiguous_and_balanced() {
        assert_eq!(split(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(split(1, 4), vec![0..1]);
        assert_eq!(split(0, 2), vec![0..0]);
    }
}
