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

/// The architecture of a run or of a saved model: a built-in one by name, or one a
/// user described ([`crate::network`]). Serialized as the built-in's name (`"small"`,
/// as checkpoints always stored it) or as `{"name": ..., "description": ...}` with the
/// canonical description text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArchSpec {
    /// A built-in architecture.
    Builtin(ArchName),
    /// A described network.
    Described(Described),
}

/// A described network as runs and files record it: its canonical description text,
/// checked and parsed when read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DescribedRecord", into = "DescribedRecord")]
pub struct Described(pub crate::network::Network);

/// The serialized form of [`Described`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescribedRecord {
    /// The network's name.
    pub name: String,
    /// Its canonical description (TOML).
    pub description: String,
}

impl TryFrom<DescribedRecord> for Described {
    type Error = String;
    fn try_from(r: DescribedRecord) -> std::result::Result<Self, String> {
        let n = crate::network::from_text(&r.description, "checkpoint")
            .map_err(|e| format!("{e:#}"))?;
        if n.name != r.name {
            return Err(format!(
                "checkpoint: network name `{}` but its description names `{}`",
                r.name, n.name
            ));
        }
        Ok(Described(n))
    }
}

impl From<Described> for DescribedRecord {
    fn from(d: Described) -> Self {
        DescribedRecord {
            name: d.0.name,
            description: d.0.text,
        }
    }
}

impl ArchSpec {
    /// The architecture.
    pub fn arch(&self) -> Arch<'static> {
        match self {
            ArchSpec::Builtin(a) => a.arch(),
            ArchSpec::Described(d) => d.0.arch,
        }
    }
    /// The name (a built-in's, or the description's).
    pub fn name(&self) -> &str {
        match self {
            ArchSpec::Builtin(a) => a.name(),
            ArchSpec::Described(d) => &d.0.name,
        }
    }
    /// The canonical description text (for a built-in too).
    pub fn text(&self) -> String {
        match self {
            ArchSpec::Builtin(a) => crate::network::canonical(a.name(), &a.arch()),
            ArchSpec::Described(d) => d.0.text.clone(),
        }
    }
    /// The built-in architecture `arch` is, or else a described network named `name`
    /// with its layers (for architectures read from weights files); `what` names the
    /// file in errors.
    pub fn of(arch: &Arch<'_>, name: &str, what: &str) -> Result<Self> {
        match ArchName::of(arch) {
            Ok(a) => Ok(ArchSpec::Builtin(a)),
            Err(_) => Ok(ArchSpec::Described(Described(crate::network::from_arch(
                name, arch, what,
            )?))),
        }
    }
}

impl From<ArchName> for ArchSpec {
    fn from(a: ArchName) -> Self {
        ArchSpec::Builtin(a)
    }
}

/// `--arch`: a built-in name or a description file, resolved against the data once it
/// is loaded ([`ArchArg::resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub enum ArchArg {
    /// `small`, `seed`.
    Builtin(ArchName),
    /// A description file.
    File(crate::network::Description),
}

impl ArchArg {
    /// Parses `--arch`: a built-in name, or else the path of a description file (read
    /// and checked here, resolved later).
    pub fn parse(s: &str) -> Result<Self> {
        if let Ok(a) = <ArchName as ValueEnum>::from_str(s, false) {
            return Ok(ArchArg::Builtin(a));
        }
        let p = std::path::Path::new(s);
        if !p.exists() {
            anyhow::bail!("--arch {s}: neither a built-in architecture (small, seed) nor a network description file");
        }
        Ok(ArchArg::File(crate::network::Description::read(p)?))
    }

    /// The architecture for data of samples `data.0` and `data.1` classes.
    pub fn resolve(&self, data: Option<(microconv::Shape, usize)>) -> Result<ArchSpec> {
        Ok(match self {
            ArchArg::Builtin(a) => ArchSpec::Builtin(*a),
            ArchArg::File(d) => ArchSpec::Described(Described(d.resolve(data)?)),
        })
    }

    /// The name a run's files take.
    pub fn name(&self) -> &str {
        match self {
            ArchArg::Builtin(a) => a.name(),
            ArchArg::File(d) => &d.name,
        }
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
    pub arch: ArchSpec,
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
