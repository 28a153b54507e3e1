//! `host-trainer train`: options, output files, the progress bar and the closing report
//! around [`crate::train::train_with`].

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::Common;
use crate::checkpoint::Checkpoint;
use crate::config::{ArchArg, ArchSpec, InitName, LossName, Schedule, TrainConfig};
use crate::outputs::{self, TrainFiles};
use crate::train::{self as training, TrainOutcome};
use crate::{params_file, plot, progress};

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Architecture: `small`, `seed`, or a network description file (TOML,
    /// docs/network-description.md)
    #[arg(long, default_value = "small")]
    pub arch: String,
    /// Loss
    #[arg(long, value_enum, default_value_t = LossName::Fused)]
    pub loss: LossName,
    /// Parameter initialisation
    #[arg(long, value_enum, default_value_t = InitName::He)]
    pub init: InitName,
    /// Optimizer steps
    #[arg(long, default_value_t = 12_000)]
    pub steps: usize,
    /// Passes over the training images (MNIST: 60,000; less any --validation ones)
    /// instead of --steps (rounded up to whole steps)
    #[arg(long, conflicts_with = "steps")]
    pub epochs: Option<f64>,
    /// Samples per step
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Adam learning rate (peak, with the cosine schedule)
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f32,
    /// Learning-rate schedule
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    pub schedule: Schedule,
    /// Shift training images randomly by up to 2 pixels (true/false)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub augment: bool,
    /// Where to save the parameters [default: runs/<arch>.params]; the checkpoint
    /// (.ckpt), metrics (.metrics.csv) and curves (.curves.png/.svg) go beside it
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Save a checkpoint every this many steps (0: only at the end)
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: usize,
    /// Continue the run saved in this checkpoint, with its configuration (the
    /// options that would change it cannot be given with this one)
    #[arg(long, conflicts_with_all = ["arch", "loss", "init", "steps", "epochs", "batch", "lr", "schedule", "augment", "seed", "threads"])]
    pub resume: Option<PathBuf>,
    /// Evaluate every this many steps, for the metrics and curves (0: at the end only):
    /// on the validation images with --validation, else on the test set
    #[arg(long, default_value_t = 2000)]
    pub eval_every: usize,
    /// Hold this many training images out for validation (drawn with --seed, never
    /// trained on); the test set is then evaluated once, at the end
    #[arg(long, default_value_t = 0, conflicts_with = "resume")]
    pub validation: usize,
    /// Do not draw the training curves
    #[arg(long)]
    pub no_plots: bool,
    #[command(flatten)]
    pub hooks: TestHooks,
}

/// Fault injection for the crash-safety and NaN tests. The options exist only in builds
/// with the `test-hooks` feature (which `cargo test --workspace` enables through the
/// `tests/` crate); a shipped `host-trainer` refuses them as unknown arguments.
#[derive(clap::Args, Debug, Default)]
pub struct TestHooks {
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
    /// `--stop-after`.
    pub fn stop_after(&self) -> Option<usize> {
        self.stop_after
    }
    /// `--inject-nan`.
    pub fn inject_nan(&self) -> Option<(usize, usize)> {
        self.inject_nan
    }
    /// `--slow-checkpoint-ms`.
    pub fn slow_checkpoint(&self) -> Option<std::time::Duration> {
        self.slow_checkpoint_ms
            .map(std::time::Duration::from_millis)
    }
}

#[cfg(not(feature = "test-hooks"))]
impl TestHooks {
    /// Never: the build has no test hooks.
    pub fn stop_after(&self) -> Option<usize> {
        None
    }
    /// Never: the build has no test hooks.
    pub fn inject_nan(&self) -> Option<(usize, usize)> {
        None
    }
    /// Never: the build has no test hooks.
    pub fn slow_checkpoint(&self) -> Option<std::time::Duration> {
        None
    }
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

/// Trains, saves the parameters, draws the curves and prints the test accuracy.
pub fn run(args: Args) -> Result<()> {
    let resume = match &args.resume {
        Some(p) => Some(Checkpoint::load(p)?),
        None => None,
    };
    if let Some(e) = args.epochs.filter(|e| !(e.is_finite() && *e > 0.0)) {
        bail!("--epochs must be a positive number, got {e}");
    }
    // A description file is read and checked before anything else (its errors are
    // one line naming the file); it is resolved against the data once that is loaded.
    let described = match &resume {
        Some(_) => None,
        None => Some(ArchArg::parse(&args.arch)?),
    };
    let name = match (&resume, &described) {
        (Some(c), _) => c.header.config.arch.name().to_string(),
        (None, Some(a)) => a.name().to_string(),
        (None, None) => args.arch.clone(),
    };
    let resumed = args.resume.as_deref().zip(resume.as_ref());
    let out = outputs::train_files(resumed, args.out.clone(), &name, args.no_plots)?;
    // An image folder is converted to the network's input where the network states it.
    let input = match (&resume, &described) {
        (Some(c), _) => Some(c.header.config.arch.arch().input),
        (None, Some(ArchArg::Builtin(a))) => Some(a.arch().input),
        (None, Some(ArchArg::File(d))) => d.input,
        (None, None) => None,
    };
    let (tr, te) = args.common.load_for(input)?;
    let validation = match &resume {
        Some(c) => c.header.validation,
        None => args.validation,
    };
    let cfg = match &resume {
        Some(c) => c.config(100),
        None => {
            let arch = ArchArg::parse(&args.arch)?
                .resolve(Some((tr.shape(), crate::data::classes(&tr, &te))))?;
            config(
                &args,
                arch,
                steps(&args, tr.len().saturating_sub(validation)),
            )
        }
    };
    let arch = &cfg.arch;
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
    let opts = training::RunOptions {
        checkpoint: Some(out.beside("ckpt")),
        checkpoint_every: args.checkpoint_every,
        resume,
        stop_after: args.hooks.stop_after(),
        metrics: Some(out.beside("metrics.csv")),
        metrics_from: out.metrics_from.clone(),
        params_path: std::path::absolute(&out.params).ok(),
        eval_every: args.eval_every,
        validation,
        inject_nan: args.hooks.inject_nan(),
        slow_checkpoint: args.hooks.slow_checkpoint(),
    };
    let bar = progress::Bar::new(cfg.steps as u64);
    let o = training::train_with(&cfg, opts, &tr, &te, &mut |l| bar.line(l), &mut |t| {
        bar.tick(t)
    })?;
    bar.finish();
    if let Some(step) = o.stopped_at {
        println!(
            "stopped before step {step}; continue with --resume {}",
            out.beside("ckpt").display()
        );
        return Ok(());
    }
    report(&cfg, &o, &out, args.no_plots, &tr.class_names)
}

/// `--steps`, or `--epochs` passes over the `train_len` images trained on, rounded up
/// to whole steps.
fn steps(args: &Args, train_len: usize) -> usize {
    match args.epochs {
        Some(e) => (e * train_len as f64 / args.batch.max(1) as f64).ceil() as usize,
        None => args.steps,
    }
}

/// The configuration of a new run (not resumed).
fn config(args: &Args, arch: ArchSpec, steps: usize) -> TrainConfig {
    TrainConfig {
        arch,
        loss: args.loss,
        init: args.init,
        lr: args.lr,
        schedule: args.schedule,
        batch: args.batch,
        steps,
        seed: args.common.seed,
        threads: args.common.threads(),
        holdout: 0,
        augment: args.augment,
        log_every: 100,
    }
}

/// Saves the parameters (printing the accuracy even if that fails), draws the curves and
/// prints the closing lines.
fn report(
    cfg: &TrainConfig,
    o: &TrainOutcome,
    out: &TrainFiles,
    no_plots: bool,
    classes: &[String],
) -> Result<()> {
    let arch = &cfg.arch;
    let saved = outputs::write_or_rescue(
        &out.params,
        &params_file::to_bytes_named(arch, classes, &o.params),
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
        out.beside("ckpt").display(),
        out.beside("metrics.csv").display()
    );
    if !no_plots {
        let rows = plot::read_metrics(&out.beside("metrics.csv"))?;
        let title = format!("{} CNN, {} steps of {}", arch.name(), cfg.steps, cfg.batch);
        match plot::curves(&rows, &out.beside("curves"), &title) {
            Ok([png, svg]) => {
                println!("training curves {} and {}", png.display(), svg.display())
            }
            Err(e) => println!("no training curves: {e:#}"),
        }
    }
    if !classes.is_empty() {
        println!("classes: {}", classes.join(", "));
    }
    if let Some(v) = o.validation_accuracy {
        println!("validation accuracy: {v:.4}");
    }
    println!("test accuracy: {:.4}", o.test_accuracy);
    Ok(())
}
