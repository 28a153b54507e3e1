//! A training run's configuration: the architecture, loss, initialiser and schedule by
//! their command-line names, and [`TrainConfig`], which checkpoints store so that a
//! resumed run continues with the settings it started with.

use anyhow::Result;
use clap::ValueEnum;
use microconv::archs::{SEED, SMALL};
use microconv::loss::{Loss, Reduction};
use microconv::Arch;
use serde::{Deserialize, Serialize};

/// The architectures the CLI knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    /// The known architecture with `arch`'s input and layers.
    pub fn of(arch: &Arch<'_>) -> Result<Self> {
        [ArchName::Small, ArchName::Seed]
            .into_iter()
            .find(|a| {
                let k = a.arch();
                k.input == arch.input && k.layers == arch.layers
            })
            .ok_or_else(|| anyhow::anyhow!("an architecture this build does not know"))
    }
    /// Looks a name up.
    pub fn from_name(s: &str) -> Result<Self> {
        <Self as ValueEnum>::from_str(s, false)
            .map_err(|_| anyhow::anyhow!("unknown architecture `{s}` (known: small, seed)"))
    }
}

/// The losses, by their CLI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitName {
    /// He normal (the default).
    He,
    /// Glorot uniform.
    Glorot,
    /// The seed's normal(1) / truncated normal(1).
    Seed,
}

/// Learning-rate schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Cosine decay from `lr` to 0 over the run.
    Cosine,
}

/// Everything a training run needs. Checkpoints store it (JSON, the names as the CLI
/// spells them), all but `log_every`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Print a line every this many steps (0: never). Not stored: a resumed run logs
    /// every 100 steps unless told otherwise.
    #[serde(skip, default = "hundred")]
    pub log_every: usize,
}

fn hundred() -> usize {
    100
}
