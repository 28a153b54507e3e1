//! The `host-trainer` commands: one module each, holding the command's clap `Args` and
//! its `run`. `main.rs` parses the command line into a [`Command`] and calls
//! [`Command::run`]. A new command is its module here plus one variant of [`Command`]
//! (and its arm in [`Command::run`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::{data, interop, params_file, weights};

pub mod bench;
pub mod board;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod predict;
pub mod quantize;
pub mod reproduce;
pub mod summary;
pub mod train;

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Train a network, print the test accuracy, save its parameters
    Train(train::Args),
    /// The seed experiment: the seed CNN trained with the naive, log-softmax and fused losses
    Reproduce(reproduce::Args),
    /// Send test images of the model's dataset (MNIST by default, --data for others) to the
    /// firmware (QEMU or a serial port) and compare its scores with the host's
    Board(board::Args),
    /// Train on the microcontroller: the model's last layer, or any selection of its
    /// layers (--layers), learns on the device from examples of a task it does badly on,
    /// with before/after accuracy and a bit-for-bit check against the same steps on the
    /// host (firmware built with the `train` feature)
    Finetune(finetune::Args),
    /// Write a weights file for firmware (docs/weights-format.md), or safetensors for
    /// PyTorch and NumPy (docs/safetensors.md) when --out ends in .safetensors
    Export(export::Args),
    /// Quantize saved parameters to int8 (TFLite's scheme) and compare with float on the test set
    Quantize(quantize::Args),
    /// Measure training and inference speed and peak memory per architecture and thread count
    Bench(bench::Args),
    /// Classify image files (PNG, JPEG, PGM/PPM) of any size, colour or polarity, brought to
    /// MNIST's 28x28 convention first (host-trainer/src/predict.rs says how), or for a
    /// model trained on an image folder converted as its folder was (docs/data.md)
    Predict(predict::Args),
    /// Evaluate saved parameters on the test set
    Eval(eval::Args),
    /// A network's layers, output shapes, parameters and multiply-adds, and the firmware
    /// RAM and flash it needs (float and int8)
    Summary(summary::Args),
}

impl Command {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        match self {
            Command::Train(a) => train::run(a),
            Command::Reproduce(a) => reproduce::run(a),
            Command::Board(a) => board::run(a),
            Command::Finetune(a) => finetune::run(a),
            Command::Export(a) => export::run(a),
            Command::Quantize(a) => quantize::run(a),
            Command::Bench(a) => bench::run(a),
            Command::Predict(a) => predict::run(a),
            Command::Eval(a) => eval::run(a),
            Command::Summary(a) => summary::run(a),
        }
    }
}

/// The options of every command that trains or reads MNIST.
#[derive(Args, Clone)]
pub struct Common {
    /// Directory with MNIST's four IDX files (gzip or raw), or an image folder (one
    /// subfolder per class, docs/data.md) [default: the repo's data/mnist]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Threads [default: all cores]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of initialisation, shuffling, augmentation and dropout
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Common {
    /// `--threads`, or all cores.
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .max(1)
    }

    /// The training and test sets from `--data` (IDX files or an image folder).
    pub fn load(&self) -> Result<(data::Dataset, data::Dataset)> {
        self.load_for(None)
    }

    /// [`Common::load`], an image folder's images converted to `input` (the network's)
    /// if given ([`crate::folder`]).
    pub fn load_for(
        &self,
        input: Option<microconv::Shape>,
    ) -> Result<(data::Dataset, data::Dataset)> {
        crate::folder::load_dir(&self.data.clone().unwrap_or_else(data::default_dir), input)
    }
}

/// Where the firmware is: QEMU or a serial port (`board`, `finetune`).
#[derive(Args, Clone)]
pub struct LinkArgs {
    /// Start QEMU's mps2-an386 with this firmware ELF
    #[arg(long, conflicts_with = "port", required_unless_present = "port")]
    pub qemu: Option<PathBuf>,
    /// Serial port of a board, for example /dev/ttyUSB0
    #[arg(long)]
    pub port: Option<String>,
    /// Baud rate of the serial port
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
}

impl LinkArgs {
    /// The target, with QEMU's raw defmt log going to `defmt_log`.
    pub fn target(&self, defmt_log: &Path) -> Result<crate::board::Target> {
        Ok(match (&self.qemu, &self.port) {
            (Some(elf), _) => crate::board::Target::Qemu {
                elf: elf.clone(),
                defmt_log: defmt_log.to_path_buf(),
            },
            (None, Some(path)) => crate::board::Target::Port {
                path: path.clone(),
                baud: self.baud,
            },
            (None, None) => bail!("give --qemu FIRMWARE.elf or --port DEVICE"),
        })
    }

    /// What the firmware's tick counts, and how many per tick: QEMU's `-icount shift=0`
    /// counts instructions, 40 per SysTick tick; a board's DWT counts cycles.
    pub fn tick_scale(&self) -> f64 {
        if self.qemu.is_some() {
            40.0
        } else {
            1.0
        }
    }
}

/// [`load_any`] with the model's class names: a parameter file's own (version 3), or
/// else those of the labels file beside it ([`params_file::labels_path`]); none if
/// neither has them.
pub fn load_any_named(path: &Path) -> Result<(crate::config::ArchSpec, Vec<f32>, Vec<String>)> {
    if crate::bytes::head(path, 8)?.starts_with(b"MCPARAMS") {
        let (arch, names, p) = params_file::load_model_named(path)?;
        return Ok((arch, p, names));
    }
    let (arch, p) = load_any(path)?;
    let names = params_file::load_labels(path, arch.arch().classes())?;
    Ok((arch, p, names))
}

/// Parameters from a parameter file (`train`), a weights file (`export`) or a safetensors
/// file, by content, with their architecture (a weights file of a network that is not
/// built in becomes a described network named after the file).
pub fn load_any(path: &Path) -> Result<(crate::config::ArchSpec, Vec<f32>)> {
    let head = crate::bytes::head(path, 9)?;
    if interop::looks_like(&head) {
        let (name, p) = interop::load(path)?;
        return Ok((name.into(), p));
    }
    if head.starts_with(b"MCONVNET") {
        let wf = weights::WeightsFile::read(path)?;
        let m = wf
            .model()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let what = path.display().to_string();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| crate::network::valid_name(s))
            .unwrap_or_else(|| "custom".into());
        let arch =
            crate::config::ArchSpec::of(&m.arch(), &stem, &what).with_context(|| what.clone())?;
        return Ok((arch, m.params().to_vec()));
    }
    params_file::load_model(path)
}
