//! `host-trainer`: train microconv networks on MNIST, reproduce the seed experiment,
//! evaluate saved parameters.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use host_trainer::train::{ArchName, InitName, LossName, Schedule, TrainConfig};
use host_trainer::{data, engine, export, params_file, reproduce, train};

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
        /// Where to save the parameters [default: runs/<arch>.params]
        #[arg(long)]
        out: Option<PathBuf>,
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
    },
    /// Write a weights file for firmware (docs/weights-format.md) from a parameter file
    Export {
        /// Parameter file written by `train`
        #[arg(long, default_value = "runs/small.params")]
        params: PathBuf,
        /// The weights file to write
        #[arg(long, default_value = "runs/small.mcw")]
        out: PathBuf,
    },
    /// Evaluate saved parameters on the test set
    Eval {
        #[command(flatten)]
        common: Common,
        /// Parameter file written by `train`
        #[arg(long)]
        params: PathBuf,
    },
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
            batch,
            lr,
            schedule,
            augment,
            out,
        } => {
            if batch == 0 || steps == 0 {
                bail!("--batch and --steps must be at least 1");
            }
            let (tr, te) = common.load()?;
            let cfg = TrainConfig {
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
            };
            println!(
                "training `{}` ({} parameters), loss {}, {steps} steps of {batch}, {} threads",
                arch.name(),
                arch.arch().param_count(),
                loss.name(),
                cfg.threads
            );
            let o = train::train(&cfg, &tr, &te, &mut |l| say(l))?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("runs/{}.params", arch.name())));
            params_file::save(&out, arch.name(), &o.params)?;
            println!(
                "trained in {:.1} s ({:.2} ms/step); parameters saved to {}",
                o.seconds,
                o.seconds * 1e3 / steps as f64,
                out.display()
            );
            println!("test accuracy: {:.4}", o.test_accuracy);
        }
        Command::Reproduce {
            common,
            steps,
            losses,
        } => {
            if steps == 0 {
                bail!("--steps must be at least 1");
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
        }
        Command::Export { params, out } => {
            let n = export::export(&params, &out)?;
            println!("wrote {} ({n} bytes)", out.display());
        }
        Command::Eval { common, params } => {
            let (name, p) = params_file::load(&params)?;
            let arch = ArchName::from_name(&name)?.arch();
            if p.len() != arch.param_count() {
                bail!(
                    "{}: {} parameters but architecture `{name}` has {}",
                    params.display(),
                    p.len(),
                    arch.param_count()
                );
            }
            let (_, te) = common.load()?;
            let logits = engine::predict(&arch, &p, &te.images, te.len(), common.threads())?;
            println!(
                "test accuracy: {:.4}",
                engine::accuracy(&logits, &te.labels)
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
