//! `host-trainer finetune`: training on the microcontroller, shown on a task the model
//! does badly on. The board (QEMU or a serial port) runs firmware built with the `train`
//! feature; this command sends it labelled examples of the shifted task, measures
//! held-out accuracy on that task and on plain MNIST before and after (EVALUATE frames,
//! counted on the device), and replays every step on the host with the same code
//! (`microconv_firmware::finetune`) to check that the device's weights are the host's,
//! bit for bit (DIGEST's CRC-32).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use microconv_firmware::finetune::{features_len, head_len, Buffers, FineTune};
use microconv_firmware::protocol::{
    kind, pack_bits, Classification, Digest, ErrorCode, Trained, IMAGE_LEN, PONG_LEN,
};

use crate::board::{open, Link, Target};
use crate::data::Dataset;
use crate::export::WeightsFile;

/// The shifted tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Dark digits on a light background (255 - pixel).
    Inverted,
    /// Digits moved 6 pixels down and 6 right (cut at the border).
    Shifted,
}

impl Task {
    /// The task's version of MNIST image `src`.
    pub fn apply(self, src: &[u8]) -> [u8; IMAGE_LEN] {
        let mut out = [0u8; IMAGE_LEN];
        match self {
            Task::Inverted => {
                for (o, &p) in out.iter_mut().zip(src) {
                    *o = 255 - p;
                }
            }
            Task::Shifted => {
                for (i, o) in out.iter_mut().enumerate() {
                    let (r, c) = (i / 28, i % 28);
                    if r >= 6 && c >= 6 {
                        *o = src.get((r - 6) * 28 + c - 6).copied().unwrap_or(0);
                    }
                }
            }
        }
        out
    }

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Inverted => "inverted",
            Task::Shifted => "shifted",
        }
    }
}

/// What to run.
pub struct Config {
    /// The shifted task.
    pub task: Task,
    /// Training examples sent (the first ones of the training set, in order).
    pub samples: usize,
    /// SGD's learning rate.
    pub lr: f32,
    /// Test images evaluated per set (the first ones of the test set).
    pub held_out: usize,
}

/// Accuracies measured on the device, and the check against the host.
#[derive(Debug, Default)]
pub struct Report {
    /// Shifted task, held out: before and after.
    pub task: (f64, f64),
    /// Plain MNIST test images: before and after.
    pub mnist: (f64, f64),
    /// Device answers equal to the host replica's predictions, out of all evaluations.
    pub agree: (usize, usize),
    /// Whether the device's trainable weights equal the host's (CRC-32 of their bits).
    pub weights_equal: bool,
    /// Training steps the device reported.
    pub steps: u32,
    /// Mean loss of the first and the last 50 steps.
    pub loss: (f64, f64),
    /// Instructions (QEMU) or cycles (DWT) per training step, mean.
    pub ticks_per_step: f64,
    /// Instructions or cycles per classification, mean.
    pub ticks_per_inference: f64,
    /// Stack high-water mark in bytes, from the last PING.
    pub stack_bytes: u32,
    /// Wall time in seconds.
    pub seconds: f64,
}

fn packed(label: u8, lr: Option<f32>, img: &[u8]) -> Result<Vec<u8>> {
    let mut p = vec![label];
    if let Some(lr) = lr {
        p.extend_from_slice(&lr.to_le_bytes());
    }
    let mut buf = vec![0u8; 2 * IMAGE_LEN];
    let n = pack_bits(img, &mut buf).context("PackBits buffer too small")?;
    p.extend_from_slice(buf.get(..n).unwrap_or_default());
    Ok(p)
}

/// Sends one request and waits for its answer of kind `want` (an ERROR answer is an
/// error naming its code).
fn ask(link: &mut Link, k: u8, payload: &[u8], want: u8) -> Result<Vec<u8>> {
    link.send(k, payload)?;
    let (got, p) = link.recv(Duration::from_secs(30))?;
    if got == kind::ERROR {
        let code = p.first().copied().and_then(ErrorCode::from_u8);
        if code == Some(ErrorCode::Unsupported) {
            bail!("{}: the firmware cannot train (build it with --features mps2-an386,train and a float model)", link.what);
        }
        bail!("{}: request {k:#04x} refused: {code:?}", link.what);
    }
    if got != want {
        bail!("{}: answer of kind {got:#04x} to {k:#04x}", link.what);
    }
    Ok(p)
}

/// Evaluates `images` (already transformed) with their labels on the device and on
/// the host replica; returns (device right, agreements, mean ticks).
fn evaluate(
    link: &mut Link,
    host: &mut FineTune<'_>,
    images: &[([u8; IMAGE_LEN], u8)],
) -> Result<(usize, usize, f64)> {
    let mut agree = 0;
    let mut ticks = 0u64;
    for (img, label) in images {
        let p = ask(
            link,
            kind::EVALUATE,
            &packed(*label, None, img)?,
            kind::RESULT,
        )?;
        let c = Classification::from_bytes(&p).context("malformed RESULT")?;
        let (h, _) = host.classify(img)?;
        agree += usize::from(h == c.digit);
        ticks += c.ticks as u64;
    }
    let d = Digest::from_bytes(&ask(link, kind::DIGEST, &[], kind::DIGEST_RESULT)?)
        .context("malformed DIGEST_RESULT")?;
    if d.total as usize != images.len() {
        bail!(
            "{}: the device counted {} evaluations, {} were sent",
            link.what,
            d.total,
            images.len()
        );
    }
    Ok((
        d.right as usize,
        agree,
        ticks as f64 / images.len().max(1) as f64,
    ))
}

/// Runs the demonstration.
pub fn run(
    target: &Target,
    weights: &Path,
    train: &Dataset,
    test: &Dataset,
    cfg: &Config,
    log: &dyn Fn(&str),
) -> Result<Report> {
    let start = Instant::now();
    if cfg.samples == 0
        || cfg.samples > train.len()
        || cfg.held_out == 0
        || cfg.held_out > test.len()
    {
        bail!(
            "--samples must be 1..={} and --held-out 1..={}",
            train.len(),
            test.len()
        );
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", cfg.lr);
    }
    let wf = WeightsFile::read(weights)?;
    let model = wf
        .model()
        .map_err(|e| anyhow::anyhow!("{}: {e}", weights.display()))?;
    let arch = model.arch();
    let (mut head, mut grad) = (vec![0.0; head_len(&arch)], vec![0.0; head_len(&arch)]);
    let (mut buf, mut input) = (vec![0.0; arch.inference_len(1)], vec![0.0; IMAGE_LEN]);
    let mut features = vec![0.0; features_len(&arch)];
    let mut host = FineTune::new(
        arch,
        model.params(),
        Buffers {
            head: &mut head,
            grad: &mut grad,
            buf: &mut buf,
            input: &mut input,
            features: &mut features,
        },
        cfg.lr,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", weights.display()))?;

    let mut link = open(target)?;
    let pong = ask(&mut link, kind::PING, &[], kind::PONG)?;
    let word = |p: &[u8], i: usize| {
        p.get(4 * i..4 * i + 4)
            .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    };
    if pong.len() != PONG_LEN || word(&pong, 0) as usize != arch.param_count() {
        bail!(
            "the firmware runs a model with {} parameters but {} has {}: flash the firmware built with these weights",
            word(&pong, 0),
            weights.display(),
            arch.param_count()
        );
    }
    let d0 = Digest::from_bytes(&ask(&mut link, kind::DIGEST, &[], kind::DIGEST_RESULT)?)
        .context("malformed DIGEST_RESULT")?;
    if d0.steps != 0 || d0.crc != host.digest() {
        bail!(
            "{}: the device has trained already or holds other weights (restart it)",
            link.what
        );
    }
    let pick = |set: &Dataset, n: usize, t: Option<Task>| -> Vec<([u8; IMAGE_LEN], u8)> {
        (0..n)
            .map(|i| {
                let img = set.image(i);
                let x = match t {
                    Some(t) => t.apply(img),
                    None => {
                        let mut a = [0u8; IMAGE_LEN];
                        a.copy_from_slice(img);
                        a
                    }
                };
                (x, set.labels[i])
            })
            .collect()
    };
    let task_set = pick(test, cfg.held_out, Some(cfg.task));
    let mnist_set = pick(test, cfg.held_out, None);
    let mut r = Report::default();
    let n = cfg.held_out as f64;
    let mut agree = (0, 0);
    let mut inference_ticks = Vec::new();
    let mut eval_both = |link: &mut Link, host: &mut FineTune<'_>| -> Result<(f64, f64)> {
        let (a, ag1, t1) = evaluate(link, host, &task_set)?;
        let (b, ag2, t2) = evaluate(link, host, &mnist_set)?;
        agree.0 += ag1 + ag2;
        agree.1 += 2 * cfg.held_out;
        inference_ticks.extend([t1, t2]);
        Ok((a as f64 / n, b as f64 / n))
    };
    let before = eval_both(&mut link, &mut host)?;
    log(&format!(
        "before: {} held-out {:.4}, MNIST {:.4} ({} test images each)",
        cfg.task.name(),
        before.0,
        before.1,
        cfg.held_out
    ));
    let examples = pick(train, cfg.samples, Some(cfg.task));
    let (mut losses, mut ticks) = (Vec::new(), 0u64);
    for (i, (img, label)) in examples.iter().enumerate() {
        let p = ask(
            &mut link,
            kind::TRAIN,
            &packed(*label, Some(cfg.lr), img)?,
            kind::TRAINED,
        )?;
        let t = Trained::from_bytes(&p).context("malformed TRAINED")?;
        let (host_loss, _) = host.train(img, *label)?;
        if t.loss.to_bits() != host_loss.to_bits() || t.steps as usize != i + 1 {
            bail!(
                "step {}: the device's loss {} differs from the host's {host_loss}",
                i + 1,
                t.loss
            );
        }
        losses.push(t.loss as f64);
        ticks += t.ticks as u64;
        if (i + 1) % 100 == 0 {
            log(&format!(
                "trained on {} examples, loss {:.4}",
                i + 1,
                t.loss
            ));
        }
    }
    let after = eval_both(&mut link, &mut host)?;
    log(&format!(
        "after:  {} held-out {:.4}, MNIST {:.4}",
        cfg.task.name(),
        after.0,
        after.1
    ));
    let d = Digest::from_bytes(&ask(&mut link, kind::DIGEST, &[], kind::DIGEST_RESULT)?)
        .context("malformed DIGEST_RESULT")?;
    let pong = ask(&mut link, kind::PING, &[], kind::PONG)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let k = losses.len().min(50);
    r.task = (before.0, after.0);
    r.mnist = (before.1, after.1);
    r.agree = agree;
    r.weights_equal = d.crc == host.digest() && d.steps as usize == cfg.samples;
    r.steps = d.steps;
    r.loss = (mean(&losses[..k]), mean(&losses[losses.len() - k..]));
    r.ticks_per_step = ticks as f64 / cfg.samples as f64;
    r.ticks_per_inference = mean(&inference_ticks);
    r.stack_bytes = word(&pong, 5);
    r.seconds = start.elapsed().as_secs_f64();
    Ok(r)
}
