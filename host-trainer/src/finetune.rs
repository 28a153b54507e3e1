//! `host-trainer finetune`: training on the microcontroller, shown on a task the model
//! does badly on. The board (QEMU or a serial port) runs firmware built with the `train`
//! feature; this command chooses which layers learn (CONFIGURE: all, the last k, biases
//! only, or a list; momentum; samples per update), sends it labelled examples of the
//! shifted task, measures held-out accuracy on that task and on plain MNIST before and
//! after (EVALUATE frames, counted on the device), and replays every step on the host
//! with the same code (`microconv_firmware::finetune`) to check that the device's
//! weights are the host's, bit for bit (DIGEST's CRC-32). Without a board
//! ([`run`] with no target) only the host replica runs: the same numbers, fast, for
//! choosing a learning rate and a selection.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use microconv::Arch;
use microconv_firmware::finetune::{
    all_layers, arena_len, last_layer, last_layers, marks_len, ram_bytes, trainable_len, Buffers,
    FineTune, TrainConfig, MAX_LAYERS,
};
use microconv_firmware::protocol::{
    kind, pack_bits, packed_max, Classification, Configured, Digest, ErrorCode, Pong, Trained,
    MAX_ACCUMULATE,
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

/// A labelled image: the model's input (`h*w*c` bytes) and its class.
pub type Sample = (Vec<u8>, u8);

impl Task {
    /// The task's version of image `src` of shape `shape` (channels last).
    pub fn apply(self, src: &[u8], shape: microconv::Shape) -> Vec<u8> {
        let mut out = vec![0u8; src.len()];
        match self {
            Task::Inverted => {
                for (o, &p) in out.iter_mut().zip(src) {
                    *o = 255 - p;
                }
            }
            Task::Shifted => {
                let (w, c) = (shape.w, shape.c.max(1));
                for (i, o) in out.iter_mut().enumerate() {
                    let (r, col) = (i / c / w, i / c % w);
                    if r >= 6 && col >= 6 {
                        *o = src
                            .get(((r - 6) * w + col - 6) * c + i % c)
                            .copied()
                            .unwrap_or(0);
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

/// Which layers learn (`--layers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layers {
    /// Every layer with parameters (`all`).
    All,
    /// The last `k` layers with parameters (`last` is `last:1`).
    Last(usize),
    /// The biases of every layer (`biases`).
    Biases,
    /// These layer indices (`0,3,10`: indices into the architecture's layer list,
    /// layers with parameters only).
    List(Vec<usize>),
}

impl std::str::FromStr for Layers {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!("--layers {s:?}: expected all, biases, last, last:K or a list of layer indices such as 0,3,10")
        };
        Ok(match s {
            "all" => Layers::All,
            "biases" => Layers::Biases,
            "last" => Layers::Last(1),
            _ => {
                if let Some(k) = s.strip_prefix("last:") {
                    match k.parse() {
                        Ok(k) if k > 0 => Layers::Last(k),
                        _ => return Err(bad()),
                    }
                } else {
                    let v: std::result::Result<Vec<usize>, _> =
                        s.split(',').map(|t| t.trim().parse()).collect();
                    match v {
                        Ok(v) if !v.is_empty() => Layers::List(v),
                        _ => return Err(bad()),
                    }
                }
            }
        })
    }
}

impl std::fmt::Display for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layers::All => write!(f, "all"),
            Layers::Biases => write!(f, "biases"),
            Layers::Last(k) => write!(f, "last:{k}"),
            Layers::List(v) => {
                let s: Vec<String> = v.iter().map(|i| i.to_string()).collect();
                write!(f, "{}", s.join(","))
            }
        }
    }
}

impl Layers {
    /// The device's configuration for `arch`, or why it is not one.
    pub fn config(&self, arch: &Arch<'_>, momentum: f32, accumulate: u8) -> Result<TrainConfig> {
        let params = |i: usize| {
            matches!(
                arch.layers.get(i),
                Some(microconv::Layer::Conv2d(_) | microconv::Layer::Dense(_))
            )
        };
        let (layers, biases_only) = match self {
            Layers::All => (all_layers(arch), false),
            Layers::Biases => (all_layers(arch), true),
            Layers::Last(k) => (last_layers(arch, *k), false),
            Layers::List(v) => {
                let mut m = 0u32;
                for &i in v {
                    if i >= arch.layers.len() || i >= MAX_LAYERS || !params(i) {
                        let with: Vec<String> = (0..arch.layers.len())
                            .filter(|&j| params(j))
                            .map(|j| format!("{j} ({})", arch.layers[j].name()))
                            .collect();
                        bail!(
                            "--layers: layer {i} has no parameters or does not exist; the layers that can learn are {}",
                            with.join(", ")
                        );
                    }
                    m |= 1 << i;
                }
                (m, false)
            }
        };
        if !(momentum.is_finite() && (0.0..1.0).contains(&momentum)) {
            bail!("--momentum must be in [0, 1), got {momentum}");
        }
        if !(1..=MAX_ACCUMULATE).contains(&accumulate) {
            bail!("--accumulate must be 1..={MAX_ACCUMULATE}, got {accumulate}");
        }
        Ok(TrainConfig {
            layers,
            biases_only,
            momentum,
            accumulate,
        })
    }
}

/// The learning rate (`--lr`): a number, or `auto`: chosen by [`choose_lr`] on a
/// validation split of the training examples, before the board sees any of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// This rate (of the first step).
    Fixed(f32),
    /// The best of `--lr-grid` on held-out folds of the `--samples` examples.
    Auto,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "auto" {
            return Ok(Rate::Auto);
        }
        match s.parse::<f32>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::Fixed(r)),
            _ => Err(format!(
                "--lr {s:?}: expected a positive number such as 0.005, or auto (chosen on a validation split of the training examples)"
            )),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Fixed(r) => write!(f, "{r}"),
            Rate::Auto => write!(f, "auto"),
        }
    }
}

/// What to run.
pub struct Config {
    /// Which layers learn.
    pub layers: Layers,
    /// SGD momentum, `[0, 1)`.
    pub momentum: f32,
    /// Samples per update (gradients averaged), `1..=64`.
    pub accumulate: u8,
    /// The shifted task.
    pub task: Task,
    /// Training examples sent (the first ones of the training set, in order).
    pub samples: usize,
    /// Passes over those examples (epochs), in the same order each time.
    pub passes: usize,
    /// After each example of the task, the same image as plain MNIST (rehearsal, so
    /// that the model keeps its accuracy on the original digits).
    pub rehearse: bool,
    /// SGD's learning rate (of the first step), or `auto`.
    pub lr: Rate,
    /// The learning rate of the last step: linear from `lr` to this (`None`: constant).
    pub lr_end: Option<f32>,
    /// Test images evaluated per set (the first ones of the test set).
    pub held_out: usize,
    /// The rates `--lr auto` tries.
    pub lr_grid: Vec<f32>,
    /// Examples of the `samples` held out at a time by `--lr auto` (a fold): the
    /// examples are split, seeded, into `samples / validation` folds.
    pub validation: usize,
    /// Seed of that split.
    pub seed: u64,
    /// Threads for the host replicas of `--lr auto`.
    pub threads: usize,
}

/// One rate of `--lr auto`'s grid, summed over the folds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The rate (of the first step).
    pub lr: f32,
    /// Validation examples of the task classified right after training without them.
    pub task_right: usize,
    /// The same images in plain MNIST's polarity classified right, after training.
    pub plain_right: usize,
    /// Those plain images classified right by the model before any training.
    pub plain_before: usize,
    /// Validation examples in all.
    pub total: usize,
}

impl Candidate {
    /// Whether the plain digits fell by at most 1 point of the validation images.
    pub fn keeps_mnist(&self) -> bool {
        self.plain_before.saturating_sub(self.plain_right) * 100 <= self.total
    }
}

/// What `--lr auto` chose, and from what.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// The chosen rate.
    pub lr: f32,
    /// Every rate tried, in grid order.
    pub grid: Vec<Candidate>,
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
    /// Parameters that learn.
    pub trainable: usize,
    /// RAM bytes the selection needs, and what the firmware has (0 without a board).
    pub ram: (usize, usize),
    /// The learning rate used (of the first step).
    pub lr: f32,
    /// How `--lr auto` chose it (`None`: given).
    pub selection: Option<Selection>,
    /// Requests sent again after the device dropped them in transit (Timeout,
    /// BadChecksum).
    pub retries: usize,
}

/// The examples of one run in the order they are trained on: `passes` times the
/// task's examples, each followed by its plain image when `rehearse`.
fn recipe(task: &[Sample], plain: &[Sample], passes: usize, rehearse: bool) -> Vec<Sample> {
    let mut out = Vec::with_capacity(task.len() * passes.max(1) * (1 + usize::from(rehearse)));
    for _ in 0..passes.max(1) {
        for (t, p) in task.iter().zip(plain) {
            out.push(t.clone());
            if rehearse {
                out.push(p.clone());
            }
        }
    }
    out
}

/// The learning rate of step `i` of `steps`: linear from `lr` to `end`, or constant.
fn lr_at(i: usize, steps: usize, lr: f32, end: Option<f32>) -> f32 {
    match end {
        Some(end) if steps > 1 => {
            let f = i as f64 / (steps - 1) as f64;
            (lr as f64 + (end as f64 - lr as f64) * f) as f32
        }
        _ => lr,
    }
}

/// The host's buffers of one replica.
struct Replica {
    arena: Vec<f32>,
    marks: Vec<u8>,
    buf: Vec<f32>,
    input: Vec<f32>,
}

impl Replica {
    fn new(arch: &Arch<'_>, tc: &TrainConfig) -> Self {
        let default = last_layer(arch);
        Replica {
            arena: vec![0.0; arena_len(arch, tc).max(arena_len(arch, &default))],
            marks: vec![0u8; marks_len(arch, tc).max(marks_len(arch, &default))],
            buf: vec![0.0; arch.inference_len(1)],
            input: vec![0.0; arch.input.len()],
        }
    }

    /// A fresh model training `tc` at rate `lr`.
    fn start<'m>(
        &'m mut self,
        arch: Arch<'m>,
        params: &'m [f32],
        tc: TrainConfig,
        lr: f32,
    ) -> Result<FineTune<'m>> {
        let mut ft = FineTune::new(
            arch,
            params,
            Buffers {
                arena: &mut self.arena,
                marks: &mut self.marks,
                buf: &mut self.buf,
                input: &mut self.input,
            },
            lr,
        )
        .map_err(|e| anyhow::anyhow!("the model cannot train: {e}"))?;
        ft.configure(tc)
            .map_err(|e| anyhow::anyhow!("cannot train this selection: {e}"))?;
        Ok(ft)
    }
}

/// `--lr auto`: for each rate of `cfg.lr_grid`, trains host replicas (the device's code,
/// bit-identical to it) with `cfg`'s recipe on the training examples less one fold of
/// `cfg.validation` (seeded split of the `cfg.samples` examples; every fold in turn)
/// and counts the fold's examples right, on the task and in plain polarity. The rate
/// with the most task examples right among those that keep plain digits within 1 point
/// of the untrained model (all of them if none does) wins; ties go to the earlier
/// rate of the grid. The test images that `run` scores are not used.
pub fn choose_lr(
    arch: &Arch<'_>,
    params: &[f32],
    tc: &TrainConfig,
    train: &Dataset,
    cfg: &Config,
) -> Result<Selection> {
    let n = cfg.samples.min(train.len());
    let v = cfg.validation;
    if v == 0 || 2 * v > n {
        bail!(
            "--validation must be 1..={} (examples of the --samples {n} held out at a time to choose --lr auto), got {v}",
            n / 2
        );
    }
    if cfg.lr_grid.is_empty() {
        bail!("--lr-grid is empty: give the rates --lr auto tries, such as 0.003,0.004,0.005");
    }
    if let Some(bad) = cfg.lr_grid.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        bail!("--lr-grid: every rate must be a positive number, got {bad}");
    }
    let folds = n / v;
    let mut order: Vec<usize> = (0..n).collect();
    microconv::init::Rng::new(microconv::init::mix64(cfg.seed ^ 0x4c52_4155)).shuffle(&mut order);
    let task = |i: usize| {
        (
            cfg.task.apply(train.image(i), train.shape()),
            train.labels[i],
        )
    };
    let plain = |i: usize| (train.image(i).to_vec(), train.labels[i]);
    // Before training: the plain images every fold validates on.
    let mut r0 = Replica::new(arch, tc);
    let mut ft0 = r0.start(*arch, params, *tc, cfg.lr_grid[0])?;
    let mut plain_before = 0;
    for &i in order.iter().take(folds * v) {
        let (img, label) = plain(i);
        plain_before += usize::from(ft0.classify(&img)?.0 == label);
    }
    // One job per (rate, fold), spread over the threads; results in job order.
    let jobs: Vec<(usize, usize)> = (0..cfg.lr_grid.len())
        .flat_map(|r| (0..folds).map(move |f| (r, f)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(vec![(0usize, 0usize); jobs.len()]);
    let failure = std::sync::Mutex::new(None::<anyhow::Error>);
    std::thread::scope(|s| {
        for _ in 0..cfg.threads.clamp(1, jobs.len()) {
            s.spawn(|| {
                let mut rep = Replica::new(arch, tc);
                loop {
                    let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(r, f)) = jobs.get(j) else { break };
                    let held = &order[f * v..(f + 1) * v];
                    let kept: Vec<usize> = (0..n).filter(|i| !held.contains(i)).collect();
                    let t: Vec<_> = kept.iter().map(|&i| task(i)).collect();
                    let p: Vec<_> = kept.iter().map(|&i| plain(i)).collect();
                    let ex = recipe(&t, &p, cfg.passes, cfg.rehearse);
                    let out = (|| -> Result<(usize, usize)> {
                        let lr = cfg.lr_grid[r];
                        let mut ft = rep.start(*arch, params, *tc, lr)?;
                        for (k, (img, label)) in ex.iter().enumerate() {
                            ft.set_lr(lr_at(k, ex.len(), lr, cfg.lr_end))?;
                            ft.train(img, *label)?;
                        }
                        let (mut a, mut b) = (0, 0);
                        for &i in held {
                            let (img, label) = task(i);
                            a += usize::from(ft.classify(&img)?.0 == label);
                            let (img, label) = plain(i);
                            b += usize::from(ft.classify(&img)?.0 == label);
                        }
                        Ok((a, b))
                    })();
                    match out {
                        Ok(x) => {
                            if let Ok(mut res) = results.lock() {
                                res[j] = x;
                            }
                        }
                        Err(e) => {
                            if let Ok(mut fail) = failure.lock() {
                                fail.get_or_insert(e);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a --lr auto worker panicked"))?;
    let grid: Vec<Candidate> = cfg
        .lr_grid
        .iter()
        .enumerate()
        .map(|(r, &lr)| {
            let (a, b) = jobs
                .iter()
                .zip(&results)
                .filter(|((jr, _), _)| *jr == r)
                .fold((0, 0), |acc, (_, x)| (acc.0 + x.0, acc.1 + x.1));
            Candidate {
                lr,
                task_right: a,
                plain_right: b,
                plain_before,
                total: folds * v,
            }
        })
        .collect();
    let any_keeps = grid.iter().any(Candidate::keeps_mnist);
    let mut best: Option<&Candidate> = None;
    for c in grid.iter().filter(|c| !any_keeps || c.keeps_mnist()) {
        if best.is_none_or(|b| c.task_right > b.task_right) {
            best = Some(c);
        }
    }
    let lr = best.map_or(cfg.lr_grid[0], |c| c.lr);
    Ok(Selection { lr, grid })
}

fn packed(label: u8, lr: Option<f32>, img: &[u8]) -> Result<Vec<u8>> {
    let mut p = vec![label];
    if let Some(lr) = lr {
        p.extend_from_slice(&lr.to_le_bytes());
    }
    let mut buf = vec![0u8; packed_max(img.len())];
    let n = pack_bits(img, &mut buf).context("PackBits buffer too small")?;
    p.extend_from_slice(buf.get(..n).unwrap_or_default());
    Ok(p)
}

/// Times a request refused in transit (Timeout, BadChecksum) is sent again.
const MAX_RETRIES: usize = 5;

/// Sends one request and waits for its answer of kind `want` (an ERROR answer is an
/// error naming its code). A request refused in transit is sent again, up to
/// [`MAX_RETRIES`] times, counted in `retries`: the device drops a frame whose bytes
/// stop for its frame timeout (200 ms of the device's clock: under QEMU's `-icount`,
/// 70-140 ms of wall time on a loaded 2-core machine, so a short stall of the emulator
/// or the host is enough) or whose CRC is wrong, and a dropped frame changes nothing
/// on the device. A frame applied twice could not go unnoticed: TRAINED's step count
/// and DIGEST's evaluation count are checked.
fn ask(link: &mut Link, k: u8, payload: &[u8], want: u8, retries: &mut usize) -> Result<Vec<u8>> {
    let mut attempts = 0;
    loop {
        link.send(k, payload)?;
        let (got, p) = link.recv(Duration::from_secs(30))?;
        if got == kind::ERROR {
            let code = p.first().copied().and_then(ErrorCode::from_u8);
            if matches!(code, Some(ErrorCode::Timeout | ErrorCode::BadChecksum))
                && attempts < MAX_RETRIES
            {
                attempts += 1;
                *retries += 1;
                continue;
            }
            if code == Some(ErrorCode::Unsupported) {
                bail!("{}: the firmware cannot train (build it with --features mps2-an386,train and a float model)", link.what);
            }
            bail!("{}: request {k:#04x} refused: {code:?}", link.what);
        }
        if got != want {
            bail!("{}: answer of kind {got:#04x} to {k:#04x}", link.what);
        }
        return Ok(p);
    }
}

/// Evaluates `images` (already transformed) with their labels on the device and on
/// the host replica; returns (device right, agreements, mean ticks).
fn evaluate(
    link: Option<&mut Link>,
    host: &mut FineTune<'_>,
    images: &[Sample],
    retries: &mut usize,
) -> Result<(usize, usize, f64)> {
    let Some(link) = link else {
        let mut right = 0;
        for (img, label) in images {
            right += usize::from(host.classify(img)?.0 == *label);
        }
        return Ok((right, images.len(), 0.0));
    };
    let mut agree = 0;
    let mut ticks = 0u64;
    for (img, label) in images {
        let p = ask(
            link,
            kind::EVALUATE,
            &packed(*label, None, img)?,
            kind::RESULT,
            retries,
        )?;
        let c = Classification::from_bytes(&p).context("malformed RESULT")?;
        let (h, _) = host.classify(img)?;
        agree += usize::from(h == c.digit);
        ticks += c.ticks as u64;
    }
    let d = Digest::from_bytes(&ask(link, kind::DIGEST, &[], kind::DIGEST_RESULT, retries)?)
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

/// The options `run` refuses before any work.
fn check(cfg: &Config, train: &Dataset, test: &Dataset) -> Result<()> {
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
    if let Rate::Fixed(lr) = cfg.lr {
        if !(lr.is_finite() && lr > 0.0) {
            bail!("--lr must be a positive number, got {lr}");
        }
    }
    if let Some(end) = cfg.lr_end {
        if !(end.is_finite() && end > 0.0) {
            bail!("--lr-end must be a positive number, got {end}");
        }
    }
    Ok(())
}

/// The learning rate: `--lr`'s, or the one `--lr auto` chooses on held-out folds of the
/// training examples (logged with its grid).
fn select_rate(
    arch: &Arch<'_>,
    params: &[f32],
    tc: &TrainConfig,
    train: &Dataset,
    cfg: &Config,
    weights: &Path,
    log: &dyn Fn(&str),
) -> Result<(Option<Selection>, f32)> {
    let selection = match cfg.lr {
        Rate::Fixed(_) => None,
        Rate::Auto => {
            let t = Instant::now();
            let sel = choose_lr(arch, params, tc, train, cfg)
                .with_context(|| format!("--lr auto with {}", weights.display()))?;
            let folds = cfg.samples / cfg.validation;
            log(&format!(
                "--lr auto: {folds} folds of {} of the {} training examples (seed {}), each held out in turn from the same recipe on the host replica ({:.1} s); right of {} held out, {} / plain digits (untrained: {}):",
                cfg.validation,
                cfg.samples,
                cfg.seed,
                t.elapsed().as_secs_f64(),
                folds * cfg.validation,
                cfg.task.name(),
                sel.grid.first().map_or(0, |c| c.plain_before)
            ));
            for c in &sel.grid {
                log(&format!(
                    "  lr {}: {} / {}{}{}",
                    c.lr,
                    c.task_right,
                    c.plain_right,
                    if c.keeps_mnist() {
                        ""
                    } else {
                        " (plain digits fall by more than 1 point)"
                    },
                    if c.lr == sel.lr { "  <- chosen" } else { "" }
                ));
            }
            Some(sel)
        }
    };
    let lr0 = match (&cfg.lr, &selection) {
        (Rate::Fixed(lr), _) => *lr,
        (Rate::Auto, Some(s)) => s.lr,
        (Rate::Auto, None) => bail!("--lr auto chose no rate"),
    };
    Ok((selection, lr0))
}

/// Before training: the device runs these weights (PING), learns the chosen layers
/// (CONFIGURE, unless the firmware's default), holds the host's parameters and has not
/// trained (DIGEST). Returns the device's training capacity in bytes (0 for the default).
#[allow(clippy::too_many_arguments)] // one call site; the facts the checks compare
fn handshake(
    link: &mut Link,
    arch: &Arch<'_>,
    tc: &TrainConfig,
    host: &FineTune<'_>,
    cfg: &Config,
    weights: &Path,
    ram_needed: usize,
    trainable: usize,
    retries: &mut usize,
) -> Result<usize> {
    let mut capacity = 0;
    let pong = ask(link, kind::PING, &[], kind::PONG, retries)?;
    crate::board::check_pong(&link.what, &pong, arch, weights)?;
    if *tc != last_layer(arch) {
        link.send(kind::CONFIGURE, &tc.to_bytes())?;
        let (got, p) = link.recv(Duration::from_secs(30))?;
        if got == kind::ERROR {
            let code = p.first().copied().and_then(ErrorCode::from_u8);
            match code {
                Some(ErrorCode::NoMemory) => bail!(
                    "{}: the firmware has not the RAM for --layers {} with momentum {} and {} samples per update ({} B needed)",
                    link.what, cfg.layers, cfg.momentum, cfg.accumulate, ram_needed
                ),
                Some(ErrorCode::Unsupported) => bail!("{}: the firmware cannot train (build it with --features mps2-an386,train and a float model)", link.what),
                _ => bail!("{}: CONFIGURE refused: {code:?}", link.what),
            }
        }
        let c = (got == kind::CONFIGURED)
            .then(|| Configured::from_bytes(&p))
            .flatten()
            .with_context(|| format!("{}: answer of kind {got:#04x} to CONFIGURE", link.what))?;
        if c.crc != host.digest() || c.trainable as usize != trainable {
            bail!(
                "{}: the device's trainable parameters differ from the host's after CONFIGURE",
                link.what
            );
        }
        capacity = c.capacity as usize;
    }
    let d0 = Digest::from_bytes(&ask(link, kind::DIGEST, &[], kind::DIGEST_RESULT, retries)?)
        .context("malformed DIGEST_RESULT")?;
    if d0.steps != 0 || d0.crc != host.digest() {
        bail!(
            "{}: the device has trained already or holds other weights (restart it)",
            link.what
        );
    }
    Ok(capacity)
}

/// The first `n` images of `set` with their labels, through `t` (or as they are).
fn pick_images(set: &Dataset, n: usize, t: Option<Task>) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let img = set.image(i);
            let x = match t {
                Some(t) => t.apply(img, set.shape()),
                None => img.to_vec(),
            };
            (x, set.labels[i])
        })
        .collect()
}

/// Runs the demonstration on `target`, or on the host replica alone when `target` is
/// `None` (then the accuracies are the host's and no instruction counts are measured).
pub fn run(
    target: Option<&Target>,
    weights: &Path,
    train: &Dataset,
    test: &Dataset,
    cfg: &Config,
    log: &dyn Fn(&str),
) -> Result<Report> {
    let start = Instant::now();
    check(cfg, train, test)?;
    let wf = WeightsFile::read(weights)?;
    let model = wf
        .model()
        .map_err(|e| anyhow::anyhow!("{}: {e}", weights.display()))?;
    let arch = model.arch();
    crate::board::check_data(&arch, "training", train, weights)?;
    crate::board::check_data(&arch, "test", test, weights)?;
    let tc = cfg.layers.config(&arch, cfg.momentum, cfg.accumulate)?;
    let (selection, lr0) = select_rate(&arch, model.params(), &tc, train, cfg, weights, log)?;
    let mut replica = Replica::new(&arch, &tc);
    let mut host = replica
        .start(arch, model.params(), tc, lr0)
        .with_context(|| format!("{} with --layers {}", weights.display(), cfg.layers))?;
    let mut r = Report {
        trainable: trainable_len(&arch, &tc),
        ram: (ram_bytes(&arch, &tc), 0),
        lr: lr0,
        selection,
        ..Report::default()
    };

    let mut link = match target {
        Some(t) => Some(open(t)?),
        None => None,
    };
    let mut retries = 0usize;
    if let Some(link) = link.as_mut() {
        r.ram.1 = handshake(
            link,
            &arch,
            &tc,
            &host,
            cfg,
            weights,
            r.ram.0,
            r.trainable,
            &mut retries,
        )?;
    }
    let task_set = pick_images(test, cfg.held_out, Some(cfg.task));
    let mnist_set = pick_images(test, cfg.held_out, None);
    let n = cfg.held_out as f64;
    let mut agree = (0, 0);
    let mut inference_ticks = Vec::new();
    let mut eval_both = |link: Option<&mut Link>,
                         host: &mut FineTune<'_>,
                         retries: &mut usize|
     -> Result<(f64, f64)> {
        let mut link = link;
        let (a, ag1, t1) = evaluate(link.as_deref_mut(), host, &task_set, retries)?;
        let (b, ag2, t2) = evaluate(link, host, &mnist_set, retries)?;
        agree.0 += ag1 + ag2;
        agree.1 += 2 * cfg.held_out;
        inference_ticks.extend([t1, t2]);
        Ok((a as f64 / n, b as f64 / n))
    };
    let before = eval_both(link.as_mut(), &mut host, &mut retries)?;
    log(&format!(
        "before: {} held-out {:.4}, MNIST {:.4} ({} test images each)",
        cfg.task.name(),
        before.0,
        before.1,
        cfg.held_out
    ));
    let task_examples = pick_images(train, cfg.samples, Some(cfg.task));
    let plain_examples = pick_images(train, cfg.samples, None);
    let examples = recipe(&task_examples, &plain_examples, cfg.passes, cfg.rehearse);
    let (mut losses, mut ticks) = (Vec::new(), 0u64);
    let steps = examples.len();
    for (i, (img, label)) in examples.iter().enumerate() {
        let lr = lr_at(i, steps, lr0, cfg.lr_end);
        host.set_lr(lr)?;
        let (host_loss, _) = host.train(img, *label)?;
        if let Some(link) = link.as_mut() {
            let p = ask(
                link,
                kind::TRAIN,
                &packed(*label, Some(lr), img)?,
                kind::TRAINED,
                &mut retries,
            )?;
            let t = Trained::from_bytes(&p).context("malformed TRAINED")?;
            if t.loss.to_bits() != host_loss.to_bits() || t.steps as usize != i + 1 {
                bail!(
                    "step {}: the device's loss {} differs from the host's {host_loss}",
                    i + 1,
                    t.loss
                );
            }
            ticks += t.ticks as u64;
        }
        losses.push(host_loss as f64);
        if (i + 1) % 100 == 0 {
            log(&format!(
                "trained on {} examples, loss {:.4}",
                i + 1,
                host_loss
            ));
        }
    }
    let after = eval_both(link.as_mut(), &mut host, &mut retries)?;
    log(&format!(
        "after:  {} held-out {:.4}, MNIST {:.4}",
        cfg.task.name(),
        after.0,
        after.1
    ));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    if let Some(link) = link.as_mut() {
        let d = Digest::from_bytes(&ask(
            link,
            kind::DIGEST,
            &[],
            kind::DIGEST_RESULT,
            &mut retries,
        )?)
        .context("malformed DIGEST_RESULT")?;
        let pong = ask(link, kind::PING, &[], kind::PONG, &mut retries)?;
        r.weights_equal = d.crc == host.digest() && d.steps as usize == examples.len();
        r.steps = d.steps;
        r.stack_bytes = Pong::from_bytes(&pong).map_or(0, |p| p.stack);
    } else {
        r.weights_equal = true;
        r.steps = host.steps;
    }
    let k = losses.len().min(50);
    r.task = (before.0, after.0);
    r.mnist = (before.1, after.1);
    r.agree = agree;
    r.loss = (mean(&losses[..k]), mean(&losses[losses.len() - k..]));
    r.ticks_per_step = ticks as f64 / examples.len() as f64;
    r.ticks_per_inference = mean(&inference_ticks);
    r.seconds = start.elapsed().as_secs_f64();
    r.retries = retries;
    Ok(r)
}
