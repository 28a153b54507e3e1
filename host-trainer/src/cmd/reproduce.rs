//! `host-trainer reproduce`: the seed experiment's options, table and chart around
//! [`crate::reproduce::run`].

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::Common;
use crate::config::LossName;
use crate::{outputs, plot, reproduce};

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Optimizer steps per loss
    #[arg(long, default_value_t = 20_000)]
    pub steps: usize,
    /// Losses to run
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [LossName::Naive, LossName::LogSoftmax, LossName::Fused])]
    pub losses: Vec<LossName>,
    /// Where to draw the losses' training curves (.png and .svg appended)
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// Do not draw the chart
    #[arg(long)]
    pub no_plots: bool,
}

/// Trains the seed CNN with each loss, prints the table and draws the chart.
pub fn run(args: Args) -> Result<()> {
    let Args {
        common,
        steps,
        losses,
        out,
        no_plots,
    } = args;
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
        &mut |l| println!("{l}"),
    )?;
    println!("\n{}", reproduce::table(&rows, steps));
    if !no_plots {
        let title = format!("the seed CNN, {steps} steps: the naive loss against the stable ones");
        match plot::compare(&reproduce::series(&rows), &out, &title) {
            Ok([png, svg]) => println!("chart {} and {}", png.display(), svg.display()),
            Err(e) => println!("no chart: {e:#}"),
        }
    }
    Ok(())
}
