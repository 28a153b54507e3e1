//! `host-trainer`: train microconv networks on MNIST, reproduce the seed experiment,
//! evaluate saved parameters.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use host_trainer::engine::Backend;
use host_trainer::train::{ArchName, InitName, LossName, Schedule, TrainConfig};
use host_trainer::{
    bench, board, data, engine, export, outputs, params_file, progress, reproduce, train,
};

#[derive(Parser)]
#[command(
    name = "host-trainer",
    version,
    about = "Train microconv networks on MNIST, reproduce the seed experiment, evaluate and export weights"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Directory with MNIST's four IDX files (gzip or raw) [default: the repo's data/mnist]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Threads [default: all cores]
    #[arg(long)]
    threads: Option<usize>,
    /// Seed of initialisation, shuffling, augmentation and dropout
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Common {
    fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .max(1)
    }
    fn load(&self) -> Result<(data::Dataset, data::Dataset)> {
        data::load_mnist(&self.data.clone().unwrap_or_else(data::default_dir))
    }
}

/// Where the firmware is: QEMU or a serial port (`board`, `finetune`).
#[derive(Args, Clone)]
struct LinkArgs {
    /// Start QEMU's mps2-an386 with this firmware ELF
    #[arg(long, conflicts_with = "port", required_unless_present = "port")]
    qemu: Option<PathBuf>,
    /// Serial port of a board, for example /dev/ttyUSB0
    #[arg(long)]
    port: Option<String>,
    /// Baud rate of the serial port
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
}

impl LinkArgs {
    /// The target, with QEMU's raw defmt log going to `defmt_log`.
    fn target(&self, defmt_log: &std::path::Path) -> Result<board::Target> {
        Ok(match (&self.qemu, &self.port) {
            (Some(elf), _) => board::Target::Qemu {
                elf: elf.clone(),
                defmt_log: defmt_log.to_path_buf(),
            },
            (None, Some(path)) => board::Target::Port {
                path: path.clone(),
                baud: self.baud,
            },
            (None, None) => bail!("give --qemu FIRMWARE.elf or --port DEVICE"),
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a network, print the test accuracy, save its parameters
    Train {
        #[command(flatten)]
        common: Common,
        /// Architecture
        #[arg(long, value_enum, default_value_t = ArchName::Small)]
        arch: ArchName,
        /// Loss
        #[arg(long, value_enum, default_value_t = LossName::Fused)]
        loss: LossName,
        /// Parameter initialisation
        #[arg(long, value_enum, default_value_t = InitName::He)]
        init: InitName,
        /// Optimizer steps
        #[arg(long, default_value_t = 12_000)]
        steps: usize,
        /// Passes over the 60,000 training images instead of --steps (rounded up to whole steps)
        #[arg(long, conflicts_with = "steps")]
        epochs: Option<f64>,
        /// Samples per step
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Adam learning rate (peak, with the cosine schedule)
        #[arg(long, default_value_t = 2e-3)]
        lr: f32,
        /// Learning-rate schedule
        #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
        schedule: Schedule,
        /// Shift training images randomly by up to 2 pixels (true/false)
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        augment: bool,
        /// Where to save the parameters [default: runs/<arch>.params]; the checkpoint
        /// (.ckpt), metrics (.metrics.csv) and curves (.curves.png/.svg) go beside it
        #[arg(long)]
        out: Option<PathBuf>,
        /// Save a checkpoint every this many steps (0: only at the end)
        #[arg(long, default_value_t = 1000)]
        checkpoint_every: usize,
        /// Continue the run saved in this checkpoint, with its configuration (the
        /// options that would change it cannot be given with this one)
        #[arg(long, conflicts_with_all = ["arch", "loss", "init", "steps", "epochs", "batch", "lr", "schedule", "augment", "seed", "threads"])]
        resume: Option<PathBuf>,
        /// Evaluate on the test set every this many steps, for the metrics (0: at the end only)
        #[arg(long, default_value_t = 2000)]
        eval_every: usize,
        /// Do not draw the training curves
        #[arg(long)]
        no_plots: bool,
        #[command(flatten)]
        hooks: TestHooks,
    },
    /// The seed experiment: the seed CNN trained with the naive, log-softmax and fused losses
    Reproduce {
        #[command(flatten)]
        common: Common,
        /// Optimizer steps per loss
        #[arg(long, default_value_t = 20_000)]
        steps: usize,
        /// Losses to run
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = [LossName::Naive, LossName::LogSoftmax, LossName::Fused])]
        losses: Vec<LossName>,
        /// Where to draw the losses' training curves (.png and .svg appended)
        #[arg(long, default_value = "runs/reproduce")]
        out: PathBuf,
        /// Do not draw the chart
        #[arg(long)]
        no_plots: bool,
    },
    /// Send MNIST test images to the firmware (QEMU or a serial port) and compare with the host
    Board {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        link: LinkArgs,
        /// The weights file the firmware was built with
        #[arg(long, default_value = "firmware/models/small.mcw")]
        weights: PathBuf,
        /// Test images to send
        #[arg(long, default_value_t = 10_000)]
        images: usize,
        /// Send raw 784-byte images instead of PackBits-compressed ones
        #[arg(long)]
        raw: bool,
        /// Fail unless every board answer equals the host's prediction
        #[arg(long)]
        require_agreement: bool,
        /// QEMU processes sharing the images (with --qemu)
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Where to save QEMU's raw defmt log
        #[arg(long, default_value = "runs/qemu-defmt.bin")]
        defmt_log: PathBuf,
    },
    /// Train on the microcontroller: the model's last layer, or any selection of its
    /// layers (--layers), learns on the device from examples of a task it does badly on,
    /// with before/after accuracy and a bit-for-bit check against the same steps on the
    /// host (firmware built with the `train` feature)
    Finetune {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        link: LinkArgs,
        /// The weights file the firmware was built with (float)
        #[arg(long, default_value = "firmware/models/small.mcw")]
        weights: PathBuf,
        /// The task the model does badly on
        #[arg(long, value_enum, default_value_t = host_trainer::finetune::Task::Inverted)]
        task: host_trainer::finetune::Task,
        /// Training examples sent to the device (the first of the training set)
        #[arg(long, default_value_t = 400)]
        samples: usize,
        /// SGD's learning rate, or auto: the best of --lr-grid on held-out folds of the
        /// training examples (host replica, before the board sees any)
        #[arg(long, default_value = "0.003")]
        lr: host_trainer::finetune::Rate,
        /// The rates --lr auto tries
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "0.003,0.005,0.007,0.01,0.014,0.02,0.03,0.05"
        )]
        lr_grid: Vec<f32>,
        /// Training examples held out at a time by --lr auto: --samples / this folds,
        /// split by --seed
        #[arg(long, default_value_t = 100)]
        validation: usize,
        /// Learning rate of the last step: linear decay from --lr (default: constant)
        #[arg(long)]
        lr_end: Option<f32>,
        /// Passes over the training examples
        #[arg(long, default_value_t = 1)]
        passes: usize,
        /// After each example, the same image as plain MNIST (rehearsal against forgetting)
        #[arg(long)]
        rehearse: bool,
        /// Layers that learn: last, last:K, all, biases, or layer indices such as 0,3,10
        #[arg(long, default_value = "last")]
        layers: host_trainer::finetune::Layers,
        /// SGD momentum, in [0, 1)
        #[arg(long, default_value_t = 0.0)]
        momentum: f32,
        /// Samples per update (their gradients averaged), 1..=64
        #[arg(long, default_value_t = 1)]
        accumulate: u8,
        /// Test images evaluated per set, before and after
        #[arg(long, default_value_t = 500)]
        held_out: usize,
        /// Fail unless held-out accuracy on the task rises by at least this much (0.3 = 30 points)
        #[arg(long)]
        require_gain: Option<f64>,
        /// Fail unless held-out accuracy on the task ends at least this high
        #[arg(long)]
        require_accuracy: Option<f64>,
        /// Fail if MNIST's held-out accuracy drops by more than this (0.01 = 1 point)
        #[arg(long)]
        max_forgetting: Option<f64>,
        /// Where to save QEMU's raw defmt log
        #[arg(long, default_value = "runs/qemu-finetune-defmt.bin")]
        defmt_log: PathBuf,
    },
    /// Write a weights file for firmware (docs/weights-format.md), or safetensors for
    /// PyTorch and NumPy (docs/safetensors.md) when --out ends in .safetensors
    Export {
        /// Parameters: a file written by `train`, a weights file or a safetensors file
        #[arg(long, default_value = "runs/small.params")]
        params: PathBuf,
        /// The file to write: .safetensors for safetensors, anything else for firmware
        #[arg(long, default_value = "runs/small.mcw")]
        out: PathBuf,
    },
    /// Quantize saved parameters to int8 (TFLite's scheme) and compare with float on the test set
    Quantize {
        #[command(flatten)]
        common: Common,
        /// Parameter file written by `train`, or a weights file (.mcw) written by `export`
        #[arg(long, default_value = "runs/small.params")]
        params: PathBuf,
        /// Training images whose activations set the int8 ranges (min and max)
        #[arg(long, default_value_t = 1000)]
        calibration: usize,
        /// Write the int8 weights file (version 2) here, for the firmware
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure training and inference speed and peak memory per architecture and thread count
    Bench {
        /// Directory with MNIST's IDX files [default: the repo's data/mnist]
        #[arg(long)]
        data: Option<PathBuf>,
        /// Architectures
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ArchName::Small, ArchName::Seed])]
        archs: Vec<ArchName>,
        /// Thread counts [default: 1 and all cores]
        #[arg(long, value_delimiter = ',')]
        threads: Vec<usize>,
        /// Samples per training step
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Timed steps per configuration [default: 200 for small, 30 for seed]
        #[arg(long)]
        steps: Option<usize>,
        /// Untimed steps first
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Matrix-product backend
        #[arg(long, value_enum, default_value_t = Backend::Gemm)]
        backend: Backend,
        /// Skip the inference measurements
        #[arg(long)]
        no_infer: bool,
        /// Keep one core busy with another process while measuring
        #[arg(long)]
        busy: bool,
        /// Print one JSON object per configuration instead of a table
        #[arg(long)]
        json: bool,
        /// Time each layer's forward and backward pass instead (one thread, --batch images)
        #[arg(long)]
        layers: bool,
    },
    /// Classify image files (PNG, JPEG, PGM/PPM) of any size, colour or polarity, brought to
    /// MNIST's 28x28 convention first (host-trainer/src/predict.rs says how)
    Predict {
        /// Image files
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Parameter file written by `train`, or a weights file (.mcw) written by `export`
        #[arg(long, default_value = "runs/small.params")]
        params: PathBuf,
        /// Which way round the ink is: auto decides from the picture's border
        #[arg(long, value_enum, default_value_t = host_trainer::predict::Polarity::Auto)]
        ink: host_trainer::predict::Polarity,
        /// Scores to print per image
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// Save the 28x28 picture the network saw, as <name>.mnist.png, in this directory
        #[arg(long = "show", visible_alias = "save-input", value_name = "DIR")]
        save_input: Option<PathBuf>,
    },
    /// Evaluate saved parameters on the test set
    Eval {
        #[command(flatten)]
        common: Common,
        /// Parameters: a file written by `train`, a weights file (float or int8) or safetensors
        #[arg(long, default_value = "runs/small.params")]
        params: PathBuf,
        /// Where to draw the confusion matrix (.png and .svg appended)
        /// [default: <params>.confusion]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not draw the confusion matrix
        #[arg(long)]
        no_plots: bool,
    },
}

/// Fault injection for the crash-safety and NaN tests. The options exist only in builds
/// with the `test-hooks` feature (which `cargo test --workspace` enables through the
/// `tests/` crate); a shipped `host-trainer` refuses them as unknown arguments.
#[derive(Args, Debug, Default)]
struct TestHooks {
    /// Stop before this step after saving a checkpoint, as if interrupted (for tests)
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
    /// Fault injection for tests, STEP:PARAM: parameter PARAM becomes NaN before STEP
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true, value_parser = parse_pair)]
    inject_nan: Option<(usize, usize)>,
    /// Pause this many milliseconds in the middle of each checkpoint write (for tests)
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    slow_checkpoint_ms: Option<u64>,
}

#[cfg(feature = "test-hooks")]
impl TestHooks {
    fn stop_after(&self) -> Option<usize> {
        self.stop_after
    }
    fn inject_nan(&self) -> Option<(usize, usize)> {
        self.inject_nan
    }
    fn slow_checkpoint(&self) -> Option<std::time::Duration> {
        self.slow_checkpoint_ms
            .map(std::time::Duration::from_millis)
    }
}

#[cfg(not(feature = "test-hooks"))]
impl TestHooks {
    fn stop_after(&self) -> Option<usize> {
        None
    }
    fn inject_nan(&self) -> Option<(usize, usize)> {
        None
    }
    fn slow_checkpoint(&self) -> Option<std::time::Duration> {
        None
    }
}

fn run(cli: Cli) -> Result<()> {
    let say = |l: &str| println!("{l}");
    match cli.command {
        Command::Train {
            common,
            arch,
            loss,
            init,
            steps,
            epochs,
            batch,
            lr,
            schedule,
            augment,
            out,
            checkpoint_every,
            resume,
            eval_every,
            no_plots,
            hooks,
        } => {
            let resume_path = resume;
            let resume = match &resume_path {
                Some(p) => Some(host_trainer::checkpoint::Checkpoint::load(p)?),
                None => None,
            };
            if let Some(e) = epochs.filter(|e| !(e.is_finite() && *e > 0.0)) {
                bail!("--epochs must be a positive number, got {e}");
            }
            let arch = match &resume {
                Some(c) => c.config(100).arch,
                None => arch,
            };
            let resumed = resume_path.as_deref().zip(resume.as_ref());
            let out = outputs::train_files(resumed, out, arch, no_plots)?;
            let beside = |ext: &str| out.beside(ext);
            let (tr, te) = common.load()?;
            let steps = match epochs {
                Some(e) => (e * tr.len() as f64 / batch.max(1) as f64).ceil() as usize,
                None => steps,
            };
            let cfg = match &resume {
                Some(c) => c.config(100),
                None => TrainConfig {
                    arch,
                    loss,
                    init,
                    lr,
                    schedule,
                    batch,
                    steps,
                    seed: common.seed,
                    threads: common.threads(),
                    holdout: 0,
                    augment,
                    log_every: 100,
                },
            };
            if cfg.batch == 0 || cfg.steps == 0 {
                bail!("--batch and --steps must be at least 1");
            }
            if let Some(c) = &resume {
                println!(
                    "resuming at step {} of {} (configuration from the checkpoint)",
                    c.header.step, cfg.steps
                );
            }
            println!(
                "training `{}` ({} parameters), loss {}, {} steps of {}, {} threads",
                arch.name(),
                arch.arch().param_count(),
                cfg.loss.name(),
                cfg.steps,
                cfg.batch,
                cfg.threads
            );
            let opts = train::RunOptions {
                checkpoint: Some(beside("ckpt")),
                checkpoint_every,
                resume,
                stop_after: hooks.stop_after(),
                metrics: Some(beside("metrics.csv")),
                metrics_from: out.metrics_from.clone(),
                params_path: std::path::absolute(&out.params).ok(),
                eval_every,
                inject_nan: hooks.inject_nan(),
                slow_checkpoint: hooks.slow_checkpoint(),
            };
            let bar = progress::Bar::new(cfg.steps as u64);
            let o = train::train_with(&cfg, opts, &tr, &te, &mut |l| bar.line(l), &mut |t| {
                bar.tick(t)
            })?;
            bar.finish();
            if let Some(step) = o.stopped_at {
                println!(
                    "stopped before step {step}; continue with --resume {}",
                    beside("ckpt").display()
                );
                return Ok(());
            }
            let saved = outputs::write_or_rescue(
                &out.params,
                &params_file::to_bytes(arch.name(), &o.params),
                "parameters",
            );
            if saved.is_err() {
                println!("test accuracy: {:.4}", o.test_accuracy);
            }
            saved?;
            println!(
                "trained in {:.1} s ({:.2} ms/step); parameters saved to {}",
                o.seconds,
                o.seconds * 1e3 / cfg.steps as f64,
                out.params.display()
            );
            println!(
                "checkpoint {}, metrics {}",
                beside("ckpt").display(),
                beside("metrics.csv").display()
            );
            if !no_plots {
                let rows = host_trainer::plot::read_metrics(&beside("metrics.csv"))?;
                let title = format!("{} CNN, {} steps of {}", arch.name(), cfg.steps, cfg.batch);
                match host_trainer::plot::curves(&rows, &beside("curves"), &title) {
                    Ok([png, svg]) => {
                        println!("training curves {} and {}", png.display(), svg.display())
                    }
                    Err(e) => println!("no training curves: {e:#}"),
                }
            }
            println!("test accuracy: {:.4}", o.test_accuracy);
        }
        Command::Reproduce {
            common,
            steps,
            losses,
            out,
            no_plots,
        } => {
            if steps == 0 {
                bail!("--steps must be at least 1");
            }
            let out = outputs::resolve(&out, "reproduce");
            if !no_plots {
                for ext in ["png", "svg"] {
                    outputs::prepare(&out.with_extension(ext), "chart")?;
                }
            }
            let (tr, te) = common.load()?;
            let rows = reproduce::run(
                &losses,
                steps,
                common.seed,
                common.threads(),
                &tr,
                &te,
                &mut |l| say(l),
            )?;
            println!("\n{}", reproduce::table(&rows, steps));
            if !no_plots {
                let title =
                    format!("the seed CNN, {steps} steps: the naive loss against the stable ones");
                match host_trainer::plot::compare(&reproduce::series(&rows), &out, &title) {
                    Ok([png, svg]) => println!("chart {} and {}", png.display(), svg.display()),
                    Err(e) => println!("no chart: {e:#}"),
                }
            }
        }
        Command::Board {
            common,
            jobs,
            link,
            weights,
            images,
            raw,
            require_agreement,
            defmt_log,
        } => {
            let (_, te) = common.load()?;
            let target = link.target(&defmt_log)?;
            let qemu = link.qemu;
            let r = board::run(
                &target,
                &weights,
                &te,
                images,
                !raw,
                common.threads(),
                jobs,
                &|l: &str| println!("{l}"),
            )?;
            if let Some(elf) = &qemu {
                let logs: Vec<PathBuf> = if jobs > 1 {
                    (0..jobs)
                        .map(|j| defmt_log.with_extension(format!("{j}.bin")))
                        .collect()
                } else {
                    vec![defmt_log.clone()]
                };
                for log in logs.iter().filter(|l| l.exists()) {
                    match board::decode_defmt(elf, log) {
                        Some(text) => println!(
                            "firmware log (defmt, {}):\n{}",
                            log.display(),
                            text.trim_end()
                        ),
                        None => println!(
                            "raw defmt log saved to {} (install defmt-print to decode it)",
                            log.display()
                        ),
                    }
                }
            }
            let unit = if qemu.is_some() {
                "instructions (QEMU -icount shift=0, 40 per SysTick tick)"
            } else {
                "cycles (DWT)"
            };
            let scale = if qemu.is_some() { 40.0 } else { 1.0 };
            println!(
                "firmware parameters: {}, stack high-water mark: {} bytes",
                r.firmware_params, r.stack_bytes
            );
            println!(
                "per inference: {:.0} {unit} (min {:.0}, max {:.0})",
                r.ticks.0 * scale,
                r.ticks.1 as f64 * scale,
                r.ticks.2 as f64 * scale
            );
            println!(
                "time per image: {:.2} ms (wire and inference); frames sent again: {}",
                r.ms_per_image, r.retries
            );
            println!(
                "bit-identical scores: {}/{} (max |difference| {:e})",
                r.bit_exact, r.images, r.max_abs_diff
            );
            println!("agreement with host: {}/{}", r.agree, r.images);
            println!(
                "board accuracy: {:.4} (host: {:.4})",
                r.correct as f64 / r.images.max(1) as f64,
                r.host_correct as f64 / r.images.max(1) as f64
            );
            if require_agreement && r.agree != r.images {
                bail!(
                    "{} of {} board answers differ from the host's",
                    r.images - r.agree,
                    r.images
                );
            }
        }
        Command::Finetune {
            common,
            link,
            weights,
            task,
            samples,
            lr,
            lr_grid,
            validation,
            lr_end,
            passes,
            rehearse,
            layers,
            momentum,
            accumulate,
            held_out,
            require_gain,
            require_accuracy,
            max_forgetting,
            defmt_log,
        } => {
            let (tr, te) = common.load()?;
            let target = link.target(&defmt_log)?;
            let qemu = link.qemu;
            let cfg = host_trainer::finetune::Config {
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
                lr_grid,
                validation,
                seed: common.seed,
                threads: common.threads(),
            };
            println!(
                "training layers {layers} on the device: {samples} {} training images{}{}, SGD lr {lr}{}, momentum {momentum}, {accumulate} sample(s) per update",
                task.name(),
                if rehearse { ", each followed by its plain MNIST image" } else { "" },
                if passes > 1 { format!(", {passes} passes") } else { String::new() },
                lr_end.map(|e| format!(" decaying linearly to {e}")).unwrap_or_default()
            );
            let r = host_trainer::finetune::run(Some(&target), &weights, &tr, &te, &cfg, &|l| {
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
            if let Some(elf) = &qemu {
                if let Some(text) = board::decode_defmt(elf, &defmt_log) {
                    println!("firmware log (defmt):\n{}", text.trim_end());
                }
            }
            let unit = if qemu.is_some() {
                "instructions"
            } else {
                "cycles"
            };
            let scale = if qemu.is_some() { 40.0 } else { 1.0 };
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
                if r.selection.is_some() { " (chosen by --lr auto)" } else { "" },
                r.retries
            );
            println!("took {:.1} s", r.seconds);
            if !r.weights_equal || r.agree.0 != r.agree.1 {
                bail!("the device's training differs from the host's");
            }
            if let Some(g) = require_gain {
                if r.task.1 - r.task.0 < g {
                    bail!(
                        "held-out accuracy on the {} task rose by {:.4}, less than --require-gain {g}",
                        task.name(),
                        r.task.1 - r.task.0
                    );
                }
            }
            if let Some(a) = require_accuracy {
                // Counts of right answers out of --held-out: compare them, not rounded floats.
                if (r.task.1 * held_out as f64).round() < (a * held_out as f64).round() {
                    bail!(
                        "held-out accuracy on the {} task is {:.4}, below --require-accuracy {a}",
                        task.name(),
                        r.task.1
                    );
                }
            }
            if let Some(f) = max_forgetting {
                let drop = ((r.mnist.0 - r.mnist.1) * held_out as f64).round();
                if drop > (f * held_out as f64).round() {
                    bail!(
                        "MNIST's held-out accuracy fell from {:.4} to {:.4}, more than --max-forgetting {f}",
                        r.mnist.0,
                        r.mnist.1
                    );
                }
            }
        }
        Command::Export { params, out } => {
            let (arch, p) = load_any(&params)?;
            let name = train::ArchName::of(&arch)?;
            let out = outputs::resolve(&out, &format!("{}.mcw", name.name()));
            if outputs::prepare(&out, "weights file")?.exists {
                println!("note: replacing {}", out.display());
            }
            if out.extension().is_some_and(|e| e == "safetensors") {
                host_trainer::interop::save(&out, name, &p)?;
                println!(
                    "wrote {} ({} bytes, safetensors; names and layouts in docs/safetensors.md)",
                    out.display(),
                    std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0)
                );
            } else {
                let n = export::export(name, &p, &params, &out)?;
                println!("wrote {} ({n} bytes)", out.display());
            }
        }
        Command::Bench {
            data,
            archs,
            threads,
            batch,
            steps,
            warmup,
            backend,
            no_infer,
            busy,
            json,
            layers,
        } => {
            // The processes bench starts itself (bench::Role), not options a user gives.
            let role = bench::Role::from_env();
            if role == Some(bench::Role::Spin) {
                bench::spin();
            }
            if layers {
                let (tr, _) = data::load_mnist(&data.unwrap_or_else(data::default_dir))?;
                for &arch in &archs {
                    println!(
                        "{}: {batch} images, one thread, backend {backend:?}, median of {} runs",
                        arch.name(),
                        steps.unwrap_or(20)
                    );
                    let t = bench::layer_profile(arch, &tr, batch, backend, steps.unwrap_or(20))?;
                    bench::print_layers(&t, &mut std::io::stdout())?;
                }
                return Ok(());
            }
            if batch == 0 || steps == Some(0) {
                bail!("--batch and --steps must be at least 1");
            }
            let all = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = if threads.is_empty() {
                if all > 1 {
                    vec![1, all]
                } else {
                    vec![1]
                }
            } else {
                threads
            };
            if threads.contains(&0) {
                bail!("--threads must be at least 1");
            }
            let case = |arch: ArchName, t: usize| bench::Case {
                arch,
                threads: t,
                batch,
                steps: steps.unwrap_or(match arch {
                    ArchName::Small => 200,
                    ArchName::Seed => 30,
                }),
                warmup,
                backend,
                infer: !no_infer,
            };
            if role == Some(bench::Role::Child) {
                let (tr, te) = data::load_mnist(&data.unwrap_or_else(data::default_dir))?;
                let r = bench::run_case(&case(archs[0], threads[0]), &tr, &te)?;
                println!("{}", serde_json::to_string(&r)?);
                return Ok(());
            }
            let _load = if busy {
                Some(bench::Busy::start()?)
            } else {
                None
            };
            if !json {
                println!(
                    "host-trainer bench: batch {batch}, backend {backend:?}{}; each line is its own process",
                    if busy { ", one core kept busy by another process" } else { "" }
                );
            }
            let mut records = Vec::new();
            for &arch in &archs {
                for &t in &threads {
                    let r = bench::run_child(&case(arch, t), data.as_deref())?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    }
                    records.push(r);
                }
            }
            if !json {
                bench::print_table(&records, &mut std::io::stdout())?;
            }
        }
        Command::Quantize {
            common,
            params,
            calibration,
            out,
        } => {
            let (arch, p) = load_any(&params)?;
            let out = match out {
                Some(o) => {
                    let name = train::ArchName::of(&arch)?.name();
                    let o = outputs::resolve(&o, &format!("{name}-int8.mcw"));
                    if outputs::prepare(&o, "int8 weights file")?.exists {
                        println!("note: replacing {}", o.display());
                    }
                    Some(o)
                }
                None => None,
            };
            let (tr, te) = common.load()?;
            if calibration == 0 || calibration > tr.len() {
                bail!("--calibration must be between 1 and {}", tr.len());
            }
            let mut calib = vec![0.0; calibration * tr.pixels()];
            tr.fill(&(0..calibration).collect::<Vec<_>>(), &mut calib);
            let q = host_trainer::quantize::quantize(arch, &p, &calib, calibration)?;
            let threads = common.threads();
            let fl = engine::predict_u8(&arch, &p, &te.images, te.len(), threads)?;
            let ql = q.predict(&te.images, te.len(), threads)?;
            let classes = arch.classes();
            let same = fl
                .chunks_exact(classes)
                .zip(ql.chunks_exact(classes))
                .filter(|(a, b)| microconv::loss::argmax(a) == microconv::quant::argmax_i8(b))
                .count();
            let (fa, qa) = (
                engine::accuracy(&fl, &te.labels),
                host_trainer::quantize::accuracy_i8(&ql, &te.labels),
            );
            println!("calibration: min/max of every layer's output over the first {calibration} training images");
            println!(
                "test accuracy: f32 {fa:.4}, int8 {qa:.4} ({:+.2} points)",
                (qa - fa) * 100.0
            );
            println!(
                "int8 and f32 predictions agree on {same}/{} test images",
                te.len()
            );
            println!(
                "parameter bytes: f32 {}, int8 {} (weights int8; biases, multipliers, shifts int32)",
                p.len() * 4,
                q.param_bytes()
            );
            if let Some(out) = out {
                let bytes = q.to_file()?;
                outputs::write_or_rescue(&out, &bytes, "int8 weights")?;
                println!(
                    "wrote {} ({} bytes, int8 weights file version 2)",
                    out.display(),
                    bytes.len()
                );
            }
        }
        Command::Predict {
            images,
            params,
            ink,
            top,
            save_input,
        } => {
            use host_trainer::predict;
            let (arch, p) = load_any(&params)?;
            if arch.input.len() != predict::SIDE * predict::SIDE {
                bail!(
                    "{}: the network does not take 28x28 images",
                    params.display()
                );
            }
            let mut failed = 0;
            for path in &images {
                let what = path.display().to_string();
                let x = predict::load(path).and_then(|img| predict::prepare(&img, ink, &what));
                let x = match x {
                    Ok(p) => {
                        for w in &p.warnings {
                            eprintln!("warning: {what}: {w}");
                        }
                        p.x
                    }
                    Err(e) if images.len() == 1 => return Err(e),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        failed += 1;
                        continue;
                    }
                };
                if let Some(dir) = &save_input {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
                    let name = path.file_stem().unwrap_or_default().to_string_lossy();
                    predict::save_png(&x, &dir.join(format!("{name}.mnist.png")))?;
                }
                let logits = engine::predict(&arch, &p, &x, 1, 1)?;
                let prob = predict::probabilities(&logits);
                let mut order: Vec<usize> = (0..prob.len()).collect();
                order.sort_by(|&a, &b| prob[b].total_cmp(&prob[a]).then(a.cmp(&b)));
                let scores: Vec<String> = order
                    .iter()
                    .take(top.max(1))
                    .map(|&c| format!("{c} ({:.4})", prob[c]))
                    .collect();
                println!("{what}: {}", scores.join(", "));
            }
            if failed > 0 {
                bail!(
                    "{failed} of {} images could not be classified",
                    images.len()
                );
            }
        }
        Command::Eval {
            common,
            params,
            out,
            no_plots,
        } => {
            let stem = match out {
                Some(o) => {
                    let name = params.file_stem().unwrap_or_default().to_string_lossy();
                    outputs::resolve(&o, &format!("{name}.confusion"))
                }
                None => params.with_extension("confusion"),
            };
            if !no_plots {
                for ext in ["png", "svg"] {
                    outputs::prepare(&stem.with_extension(ext), "confusion matrix picture")?;
                }
            }
            let (_, te) = common.load()?;
            let (classes, predicted) = if is_int8_file(&params) {
                // An int8 weights file: the firmware's own int8 classifier, on the same
                // 8-bit pixels the board gets.
                let wf = export::WeightsFile::read_any(&params)?;
                let model = board::HostModel::parse(wf.bytes())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", params.display()))?;
                let scores = board::host_scores(&model, &te, te.len(), common.threads())?;
                let p: Vec<usize> = scores.iter().map(|s| microconv::loss::argmax(s)).collect();
                (model.arch().classes(), p)
            } else {
                let (arch, p) = load_any(&params)?;
                let logits = engine::predict_u8(&arch, &p, &te.images, te.len(), common.threads())?;
                let p = logits
                    .chunks_exact(arch.classes())
                    .map(microconv::loss::argmax)
                    .collect();
                (arch.classes(), p)
            };
            let m = host_trainer::eval::Confusion::new(classes, &predicted, &te.labels)?;
            print!("{}", m.report());
            if !no_plots {
                let title = format!("confusion matrix, {}", params.display());
                match m.picture(&stem, &title) {
                    Ok([png, svg]) => {
                        println!("confusion matrix {} and {}", png.display(), svg.display())
                    }
                    Err(e) => println!("no confusion matrix picture: {e:#}"),
                }
            }
            println!("test accuracy: {:.4}", m.accuracy());
        }
    }
    Ok(())
}

/// Whether `path` is an int8 weights file (version 2), by its header.
fn is_int8_file(path: &std::path::Path) -> bool {
    host_trainer::bytes::head(path, 12)
        .is_ok_and(|b| b.starts_with(b"MCONVNET") && b.get(8..12) == Some(&2u32.to_le_bytes()[..]))
}

/// `A:B` as two numbers.
#[cfg(feature = "test-hooks")]
fn parse_pair(s: &str) -> std::result::Result<(usize, usize), String> {
    let (a, b) = s.split_once(':').ok_or("expected STEP:PARAM")?;
    Ok((
        a.parse().map_err(|e| format!("{a}: {e}"))?,
        b.parse().map_err(|e| format!("{b}: {e}"))?,
    ))
}

/// Parameters from a parameter file (`train`) or a weights file (`export`), by content.
fn load_any(path: &std::path::Path) -> Result<(microconv::Arch<'static>, Vec<f32>)> {
    let head = host_trainer::bytes::head(path, 9)?;
    if host_trainer::interop::looks_like(&head) {
        let (name, p) = host_trainer::interop::load(path)?;
        return Ok((name.arch(), p));
    }
    if head.starts_with(b"MCONVNET") {
        let wf = export::WeightsFile::read(path)?;
        let m = wf
            .model()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let arch = train::ArchName::of(&m.arch())
            .with_context(|| path.display().to_string())?
            .arch();
        return Ok((arch, m.params().to_vec()));
    }
    let (name, p) = params_file::load_model(path)?;
    Ok((name.arch(), p))
}

fn main() -> ExitCode {
    // `host-trainer ... | head`: when the reader goes away, stop quietly with the status
    // a shell gives a process killed by SIGPIPE (128 + 13), not a panic message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info)
    }));
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_documented() {
        Cli::command().debug_assert();
        // Every option of every command says what it does.
        for sub in Cli::command().get_subcommands() {
            assert!(sub.get_about().is_some(), "{}", sub.get_name());
            for a in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                assert!(
                    a.get_help().is_some(),
                    "{} --{}",
                    sub.get_name(),
                    a.get_id()
                );
            }
        }
    }

    #[test]
    fn defaults_and_conflicts() {
        let c = Cli::try_parse_from(["host-trainer", "train"]).unwrap();
        let Command::Train {
            steps,
            batch,
            lr,
            checkpoint_every,
            resume,
            ..
        } = c.command
        else {
            panic!("not train")
        };
        assert_eq!(
            (steps, batch, lr, checkpoint_every),
            (12_000, 64, 2e-3, 1000)
        );
        assert!(resume.is_none());
        for bad in [
            &["host-trainer", "train", "--steps", "5", "--epochs", "1"][..],
            &["host-trainer", "train", "--resume", "x.ckpt", "--lr", "0.1"],
            &["host-trainer", "train", "--resume", "x.ckpt", "--seed", "2"],
            &["host-trainer", "predict"],
            &["host-trainer", "board"],
            &["host-trainer", "train", "--inject-nan", "5"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let hooks = Cli::try_parse_from(["host-trainer", "train", "--inject-nan", "5:7"]);
        #[cfg(feature = "test-hooks")]
        {
            let Command::Train { hooks, .. } = hooks.unwrap().command else {
                panic!()
            };
            assert_eq!(hooks.inject_nan(), Some((5, 7)));
        }
        // A build without the feature (what `cargo build --release` ships) has no hooks.
        #[cfg(not(feature = "test-hooks"))]
        assert_eq!(
            hooks.err().map(|e| e.kind()),
            Some(clap::error::ErrorKind::UnknownArgument)
        );
        let _ = Cli::try_parse_from(["host-trainer", "bench", "--child"])
            .map(|_| panic!("bench --child is not an option"));
    }
}
