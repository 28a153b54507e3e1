//! `host-trainer finetune`: options, report and the `--require-*` checks around
//! [`crate::finetune::run`].

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::{Common, LinkArgs};
use crate::board;
use crate::finetune::{self, Layers, Task};

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub link: LinkArgs,
    /// The weights file the firmware was built with (float)
    #[arg(long, default_value = "firmware/models/small.mcw")]
    pub weights: PathBuf,
    /// The task the model does badly on
    #[arg(long, value_enum, default_value_t = Task::Inverted)]
    pub task: Task,
    /// Training examples sent to the device (the first of the training set)
    #[arg(long, default_value_t = 400)]
    pub samples: usize,
    /// SGD's learning rate, or auto: the best of --lr-grid on held-out folds of the
    /// training examples (host replica, before the board sees any)
    #[arg(long, default_value = "0.003")]
    pub lr: finetune::Rate,
    /// The rates --lr auto tries
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.003,0.005,0.007,0.01,0.014,0.02,0.03,0.05"
    )]
    pub lr_grid: Vec<f32>,
    /// Training examples held out at a time by --lr auto: --samples / this folds,
    /// split by --seed
    #[arg(long, default_value_t = 100)]
    pub validation: usize,
    /// Learning rate of the last step: linear decay from --lr (default: constant)
    #[arg(long)]
    pub lr_end: Option<f32>,
    /// Passes over the training examples
    #[arg(long, default_value_t = 1)]
    pub passes: usize,
    /// After each example, the same image as plain MNIST (rehearsal against forgetting)
    #[arg(long)]
    pub rehearse: bool,
    /// Layers that learn: last, last:K, all, biases, or layer indices such as 0,3,10
    #[arg(long, default_value = "last")]
    pub layers: Layers,
    /// SGD momentum, in [0, 1)
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f32,
    /// Samples per update (their gradients averaged), 1..=64
    #[arg(long, default_value_t = 1)]
    pub accumulate: u8,
    /// Test images evaluated per set, before and after
    #[arg(long, default_value_t = 500)]
    pub held_out: usize,
    /// Fail unless held-out accuracy on the task rises by at least this much (0.3 = 30 points)
    #[arg(long)]
    pub require_gain: Option<f64>,
    /// Fail unless held-out accuracy on the task ends at least this high
    #[arg(long)]
    pub require_accuracy: Option<f64>,
    /// Fail if MNIST's held-out accuracy drops by more than this (0.01 = 1 point)
    #[arg(long)]
    pub max_forgetting: Option<f64>,
    /// Where to save QEMU's raw defmt log
    #[arg(long, default_value = "runs/qemu-finetune-defmt.bin")]
    pub defmt_log: PathBuf,
}

/// Trains on the device, prints the before/after table and checks the `--require-*`s.
pub fn run(args: Args) -> Result<()> {
    let (tr, te) = args.common.load()?;
    let target = args.link.target(&args.defmt_log)?;
    let Args {
        ref layers,
        momentum,
        accumulate,
        task,
        samples,
        passes,
        rehearse,
        lr,
        lr_end,
        held_out,
        ref lr_grid,
        validation,
        ..
    } = args;
    let cfg = finetune::Config {
        layers: layers.clone(),
        momentum,
        accumulate,
        task,
        samples,
        passes,
        rehearse,
        lr,
        lr_end,
        held_out,
        lr_grid: lr_grid.clone(),
        validation,
        seed: args.common.seed,
        threads: args.common.threads(),
    };
    println!(
        "training layers {layers} on the device: {samples} {} training images{}{}, SGD lr {lr}{}, momentum {momentum}, {accumulate} sample(s) per update",
        task.name(),
        if rehearse { ", each followed by its plain MNIST image" } else { "" },
        if passes > 1 { format!(", {passes} passes") } else { String::new() },
        lr_end.map(|e| format!(" decaying linearly to {e}")).unwrap_or_default()
    );
    let r = finetune::run(Some(&target), &args.weights, &tr, &te, &cfg, &|l| {
        println!("{l}")
    })?;
    println!(
        "parameters that learn: {}; RAM the selection needs: {} B{}",
        r.trainable,
        r.ram.0,
        if r.ram.1 > 0 {
            format!(" of the firmware's {} B", r.ram.1)
        } else {
            String::new()
        }
    );
    if let Some(elf) = &args.link.qemu {
        if let Some(text) = board::decode_defmt(elf, &args.defmt_log) {
            println!("firmware log (defmt):\n{}", text.trim_end());
        }
    }
    let unit = if args.link.qemu.is_some() {
        "instructions"
    } else {
        "cycles"
    };
    let scale = args.link.tick_scale();
    println!("| held-out accuracy ({held_out} test images) | before | after |");
    println!("|---|---|---|");
    println!(
        "| {} digits | {:.4} | {:.4} |",
        task.name(),
        r.task.0,
        r.task.1
    );
    println!("| MNIST digits | {:.4} | {:.4} |", r.mnist.0, r.mnist.1);
    println!(
        "loss (mean of the first / last 50 steps): {:.4} -> {:.4}",
        r.loss.0, r.loss.1
    );
    println!(
        "per training step: {:.0} {unit}; per inference: {:.0} {unit}; stack high-water mark: {} bytes",
        r.ticks_per_step * scale,
        r.ticks_per_inference * scale,
        r.stack_bytes
    );
    println!(
        "device predictions equal to the host's: {}/{}",
        r.agree.0, r.agree.1
    );
    println!(
        "weights after {} steps: {}",
        r.steps,
        if r.weights_equal {
            "bit-identical to the host's (same CRC-32)"
        } else {
            "DIFFERENT from the host's"
        }
    );
    println!(
        "learning rate {}{}; requests sent again after the device dropped them in transit: {}",
        r.lr,
        if r.selection.is_some() {
            " (chosen by --lr auto)"
        } else {
            ""
        },
        r.retries
    );
    println!("took {:.1} s", r.seconds);
    if !r.weights_equal || r.agree.0 != r.agree.1 {
        bail!("the device's training differs from the host's");
    }
    check_requirements(&args, &r)
}

/// `--require-gain`, `--require-accuracy` and `--max-forgetting`.
fn check_requirements(args: &Args, r: &finetune::Report) -> Result<()> {
    let (task, held_out) = (args.task, args.held_out);
    if let Some(g) = args.require_gain {
        if r.task.1 - r.task.0 < g {
            bail!(
                "held-out accuracy on the {} task rose by {:.4}, less than --require-gain {g}",
                task.name(),
                r.task.1 - r.task.0
            );
        }
    }
    if let Some(a) = args.require_accuracy {
        // Counts of right answers out of --held-out: compare them, not rounded floats.
        if (r.task.1 * held_out as f64).round() < (a * held_out as f64).round() {
            bail!(
                "held-out accuracy on the {} task is {:.4}, below --require-accuracy {a}",
                task.name(),
                r.task.1
            );
        }
    }
    if let Some(f) = args.max_forgetting {
        let drop = ((r.mnist.0 - r.mnist.1) * held_out as f64).round();
        if drop > (f * held_out as f64).round() {
            bail!(
                "MNIST's held-out accuracy fell from {:.4} to {:.4}, more than --max-forgetting {f}",
                r.mnist.0,
                r.mnist.1
            );
        }
    }
    Ok(())
}
