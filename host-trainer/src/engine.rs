//! The host engine: the core's layers with a fast matrix multiply, the batch split
//! across threads (data parallel), and no buffer allocated per step.
//!
//! Determinism: with the same seed and thread count, results are bit-identical. The
//! thread count changes how each batch is split, so the order in which per-thread
//! gradients are summed (and so the last bits of every step) differs between thread
//! counts; dropout masks do not (they are a function of the sample's index in the batch).

use std::thread;

use anyhow::{bail, Result};
use microconv::gemm::{check_dims, Gemm, MatMut, MatRef};
use microconv::layers::ConvAlgo;
use microconv::loss::{argmax, BatchLoss, Loss, Reduction};
use microconv::net::{self, Exec, Mode, Workspace};
use microconv::optim::Optimizer;
use microconv::Arch;

/// `matrixmultiply`'s packed, cache-blocked SIMD kernel (AVX/FMA picked at run time).
#[derive(Clone, Copy, Debug, Default)]
pub struct FastGemm;

impl Gemm for FastGemm {
    fn gemm(
        &self,
        a: MatRef<'_>,
        b: MatRef<'_>,
        mut c: MatMut<'_>,
        accumulate: bool,
    ) -> Result<(), microconv::Error> {
        check_dims(&a, &b, &c)?;
        let (m, k, n) = (a.rows(), a.cols(), b.cols());
        let (rsc, csc) = (c.rs() as isize, c.cs() as isize);
        let beta = if accumulate { 1.0 } else { 0.0 };
        // SAFETY: `MatRef::new`/`MatMut::new` checked that every element
        // `(i, j) -> i * rs + j * cs` of each view lies inside its slice, strides fit in
        // isize because the extent fits in a slice length, and `check_dims` checked that
        // the dimensions agree; `c` is borrowed mutably and cannot alias `a` or `b`.
        // With beta = 0, sgemm does not read `c`. Exercised by `fast_gemm_matches_portable`.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.data().as_ptr(),
                a.rs() as isize,
                a.cs() as isize,
                b.data().as_ptr(),
                b.rs() as isize,
                b.cs() as isize,
                beta,
                c.data().as_mut_ptr(),
                rsc,
                csc,
            );
        }
        Ok(())
    }
}

/// The fast execution: [`FastGemm`] and im2col convolutions.
pub const FAST: Exec<'static> = Exec {
    gemm: &FastGemm,
    conv: ConvAlgo::Im2col,
};

/// Images per im2col matrix product: enough rows for the kernel to run at full speed
/// while the scratch stays a few MB.
fn im2col_images(arch: &Arch<'_>, batch: usize) -> usize {
    let per = arch.im2col_len(1).max(1);
    (2_000_000 / per).clamp(1, batch.max(1))
}

/// One thread's share of the batch and its buffers.
struct Worker {
    range: std::ops::Range<usize>,
    acts: Vec<f32>,
    grad: Vec<f32>,
    scratch: Vec<f32>,
    grads: Vec<f32>,
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
        })
    }

    /// One training step on a batch (`x`: `[batch, input]`, `labels`: `[batch]`).
    /// `seed` draws the dropout masks. Stops with an error, leaving the parameters
    /// untouched, if the loss or a gradient is not finite.
    pub fn step(&mut self, x: &[f32], labels: &[u8], seed: u64) -> Result<BatchLoss> {
        let (arch, params, loss, red, batch) = (
            &self.arch,
            &self.params[..],
            self.loss,
            self.reduction,
            self.batch,
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
                        &FAST,
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
        for r in results {
            let r = r??;
            total.value += r.value;
            total.correct += r.correct;
        }
        let (first, rest) = self.workers.split_at_mut(1);
        let g = &mut first[0].grads;
        for w in rest.iter() {
            for (a, b) in g.iter_mut().zip(&w.grads) {
                *a += b;
            }
        }
        if !total.value.is_finite() {
            bail!("the loss is {} (training diverged)", total.value);
        }
        if let Some(i) = g.iter().position(|v| !v.is_finite()) {
            bail!("gradient of parameter {i} is {} (training diverged)", g[i]);
        }
        self.opt.step(&mut self.params, g, &mut self.state)?;
        Ok(total)
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
    const CHUNK: usize = 256;
    let classes = arch.classes();
    let inlen = arch.input.len();
    if x.len() != n * inlen {
        bail!("{} input values for {n} images of {inlen}", x.len());
    }
    let mut out = vec![0.0; n * classes];
    let ranges = split(n, threads);
    let images = im2col_images(arch, CHUNK);
    thread::scope(|s| -> Result<()> {
        let mut rest = &mut out[..];
        let mut handles = Vec::new();
        for r in ranges {
            let (mine, tail) = rest.split_at_mut(r.len() * classes);
            rest = tail;
            handles.push(s.spawn(move || -> Result<(), microconv::Error> {
                let mut buf = vec![0.0; arch.inference_len(CHUNK)];
                let mut scratch = vec![0.0; arch.im2col_len(images)];
                for (c, o) in mine.chunks_mut(CHUNK * classes).enumerate() {
                    let m = o.len() / classes;
                    let start = r.start + c * CHUNK;
                    let lg = net::infer(
                        arch,
                        params,
                        &x[start * inlen..(start + m) * inlen],
                        m,
                        &mut buf[..arch.inference_len(m)],
                        &FAST,
                        &mut scratch,
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
    let classes = logits.len() / labels.len().max(1);
    let ok = logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(l, &t)| argmax(l) == t as usize)
        .count();
    ok as f64 / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use microconv::gemm::PortableGemm;

    #[test]
    fn fast_gemm_matches_portable() {
        let (m, k, n) = (37, 53, 29);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        for (ta, tb, acc) in [
            (false, false, false),
            (true, false, true),
            (false, true, false),
            (true, true, true),
        ] {
            let av = if ta {
                MatRef::row_major(&a, k, m).unwrap().t()
            } else {
                MatRef::row_major(&a, m, k).unwrap()
            };
            let bv = if tb {
                MatRef::row_major(&b, n, k).unwrap().t()
            } else {
                MatRef::row_major(&b, k, n).unwrap()
            };
            let mut c1 = vec![1.0f32; m * n];
            let mut c2 = c1.clone();
            FastGemm
                .gemm(av, bv, MatMut::row_major(&mut c1, m, n).unwrap(), acc)
                .unwrap();
            PortableGemm
                .gemm(av, bv, MatMut::row_major(&mut c2, m, n).unwrap(), acc)
                .unwrap();
            for (x, y) in c1.iter().zip(&c2) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
        // Mismatched dimensions are an error, not undefined behaviour.
        let mut c = vec![0.0f32; 4];
        let r = FastGemm.gemm(
            MatRef::row_major(&a, 2, 3).unwrap(),
            MatRef::row_major(&b, 2, 2).unwrap(),
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            false,
        );
        assert!(r.is_err());
    }

    #[test]
    fn split_is_contiguous_and_balanced() {
        assert_eq!(split(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(split(1, 4), vec![0..1]);
        assert_eq!(split(0, 2), vec![0..0]);
    }
}
