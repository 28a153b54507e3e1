//! `host-trainer train`: the training loop (shuffled epochs, optional shift
//! augmentation, learning-rate schedule), printing the seed's every-100-steps lines.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use microconv::archs::{SEED, SMALL};
use microconv::init::{init_params, mix64, Init, Rng};
use microconv::loss::{Loss, Reduction};
use microconv::optim::{Adam, Optimizer};
use microconv::Arch;

use crate::data::Dataset;
use crate::engine::{accuracy, predict, Trainer};

/// The architectures the CLI knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArchName {
    /// 13,194 parameters, sized for a Cortex-M4 with 64 KiB RAM.
    Small,
    /// The seed experiment's 3,274,634-parameter CNN.
    Seed,
}

impl ArchName {
    /// The layer list.
    pub fn arch(self) -> Arch<'static> {
        match self {
            ArchName::Small => SMALL,
            ArchName::Seed => SEED,
        }
    }
    /// The name stored in parameter files.
    pub fn name(self) -> &'static str {
        match self {
            ArchName::Small => "small",
            ArchName::Seed => "seed",
        }
    }
    /// Looks a name up.
    pub fn from_name(s: &str) -> Result<Self> {
        <Self as ValueEnum>::from_str(s, false)
            .map_err(|_| anyhow::anyhow!("unknown architecture `{s}` (known: small, seed)"))
    }
}

/// The losses, by their CLI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossName {
    /// `-y * log(softmax + 1e-10)`, summed over the batch: the seed's failure.
    Naive,
    /// `-y * log_softmax`, summed over the batch.
    LogSoftmax,
    /// Fused cross-entropy on logits, mean over the batch.
    Fused,
}

impl LossName {
    /// The core's loss and the seed's reduction for it.
    pub fn loss(self) -> (Loss, Reduction) {
        match self {
            LossName::Naive => (Loss::Naive, Reduction::Sum),
            LossName::LogSoftmax => (Loss::LogSoftmax, Reduction::Sum),
            LossName::Fused => (Loss::Fused, Reduction::Mean),
        }
    }
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            LossName::Naive => "naive",
            LossName::LogSoftmax => "log-softmax",
            LossName::Fused => "fused",
        }
    }
}

/// Initialisers, by CLI name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitName {
    /// He normal (the default).
    He,
    /// Glorot uniform.
    Glorot,
    /// The seed's normal(1) / truncated normal(1).
    Seed,
}

/// Learning-rate schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Cosine decay from `lr` to 0 over the run.
    Cosine,
}

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Architecture.
    pub arch: ArchName,
    /// Loss (and its reduction).
    pub loss: LossName,
    /// Initialiser.
    pub init: InitName,
    /// Adam learning rate.
    pub lr: f32,
    /// Schedule of the learning rate.
    pub schedule: Schedule,
    /// Samples per step.
    pub batch: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Seed of initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Threads.
    pub threads: usize,
    /// The first `holdout` training images are not trained on (TensorFlow's tutorial
    /// held out 5,000 for validation).
    pub holdout: usize,
    /// Random shifts of up to 2 pixels.
    pub augment: bool,
    /// Print a line every this many steps (0: never).
    pub log_every: usize,
}

/// What a run produced.
pub struct TrainOutcome {
    /// Trained parameters.
    pub params: Vec<f32>,
    /// Accuracy on the whole test set.
    pub test_accuracy: f64,
    /// Training wall time in seconds (without the final evaluation).
    pub seconds: f64,
    /// `(step, batch training accuracy with dropout off)` every `log_every` steps.
    pub history: Vec<(usize, f64)>,
}

/// Copies image `src` (rows x cols) into `dst` shifted by `(dy, dx)`, zero-filling.
fn shifted(src: &[u8], dst: &mut [f32], rows: usize, cols: usize, dy: isize, dx: isize) {
    for r in 0..rows {
        let sr = r as isize - dy;
        for c in 0..cols {
            let sc = c as isize - dx;
            dst[r * cols + c] =
                if (0..rows as isize).contains(&sr) && (0..cols as isize).contains(&sc) {
                    src[sr as usize * cols + sc as usize] as f32 / 255.0
                } else {
                    0.0
                };
        }
    }
}

/// Trains per `cfg` on `train`, evaluates on `test`, and reports progress lines to `log`.
pub fn train(
    cfg: &TrainConfig,
    train: &Dataset,
    test: &Dataset,
    log: &mut dyn FnMut(&str),
) -> Result<TrainOutcome> {
    let arch = cfg.arch.arch();
    if arch.input.len() != train.pixels() || arch.input.len() != test.pixels() {
        bail!(
            "architecture `{}` takes {}x{} images, the data has {}x{}",
            cfg.arch.name(),
            arch.input.h,
            arch.input.w,
            train.rows,
            train.cols
        );
    }
    if cfg.holdout >= train.len() {
        bail!(
            "holdout of {} leaves no training images out of {}",
            cfg.holdout,
            train.len()
        );
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        bail!("learning rate must be a positive number, got {}", cfg.lr);
    }
    let mut params = vec![0.0; arch.param_count()];
    let init = match cfg.init {
        InitName::He => Init::He,
        InitName::Glorot => Init::Glorot,
        InitName::Seed => Init::Seed,
    };
    init_params(&arch, init, cfg.seed, &mut params)?;
    let (loss, reduction) = cfg.loss.loss();
    let mut trainer = Trainer::new(
        arch,
        params,
        Optimizer::Adam(Adam::new(cfg.lr)),
        loss,
        reduction,
        cfg.batch,
        cfg.threads,
    )?;

    let mut rng = Rng::new(mix64(cfg.seed ^ 0x5348_5546));
    let mut order: Vec<usize> = (cfg.holdout..train.len()).collect();
    let mut pos = order.len();
    let px = train.pixels();
    let mut x = vec![0.0f32; cfg.batch * px];
    let mut y = vec![0u8; cfg.batch];
    let mut history = Vec::new();
    let start = Instant::now();
    for step in 0..cfg.steps {
        for b in 0..cfg.batch {
            if pos == order.len() {
                rng.shuffle(&mut order);
                pos = 0;
            }
            let i = order[pos];
            pos += 1;
            y[b] = train.labels[i];
            let dst = &mut x[b * px..(b + 1) * px];
            if cfg.augment {
                let (dy, dx) = (rng.below(5) as isize - 2, rng.below(5) as isize - 2);
                shifted(train.image(i), dst, train.rows, train.cols, dy, dx);
            } else {
                crate::data::scale(train.image(i), dst);
            }
        }
        if cfg.log_every > 0 && step % cfg.log_every == 0 {
            // As the seed: accuracy on the current batch, dropout off, before the step.
            let logits = predict(&arch, &trainer.params, &x, cfg.batch, cfg.threads)?;
            let acc = accuracy(&logits, &y);
            history.push((step, acc));
            log(&format!("step {step}, training accuracy {acc:.4}"));
        }
        if let (Schedule::Cosine, Optimizer::Adam(a)) = (cfg.schedule, &mut trainer.opt) {
            a.lr = cfg.lr
                * 0.5
                * (1.0 + (std::f32::consts::PI * step as f32 / cfg.steps as f32).cos());
        }
        trainer
            .step(&x, &y, mix64(cfg.seed.wrapping_add(step as u64)))
            .with_context(|| format!("training stopped at step {step}"))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let logits = predict(
        &arch,
        &trainer.params,
        &test.to_f32(),
        test.len(),
        cfg.threads,
    )?;
    let test_accuracy = accuracy(&logits, &test.labels);
    Ok(TrainOutcome {
        params: trainer.params,
        test_accuracy,
        seconds,
        history,
    })
}
