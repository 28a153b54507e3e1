//! `host-trainer reproduce`: the seed experiment. The seed CNN, its init (normal(1),
//! truncated normal(1) for the last layer), Adam 1e-3, batch 128, dropout keep 0.75,
//! trained once per loss; prints one table row per loss.

use anyhow::Result;

use crate::data::Dataset;
use crate::train::{train, ArchName, InitName, LossName, Schedule, TrainConfig};

/// One row of the table.
pub struct Row {
    /// The loss.
    pub loss: LossName,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Lowest and highest every-100-steps training accuracy.
    pub train_range: (f64, f64),
    /// Seconds of training.
    pub seconds: f64,
}

/// The seed's configuration for `loss`.
pub fn seed_config(loss: LossName, steps: usize, seed: u64, threads: usize) -> TrainConfig {
    TrainConfig {
        arch: ArchName::Seed,
        loss,
        init: InitName::Seed,
        lr: 1e-3,
        schedule: Schedule::Constant,
        batch: 128,
        steps,
        seed,
        threads,
        holdout: 5_000,
        augment: false,
        log_every: 100,
    }
}

/// Runs the experiment for `losses`.
pub fn run(
    losses: &[LossName],
    steps: usize,
    seed: u64,
    threads: usize,
    train_set: &Dataset,
    test: &Dataset,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &loss in losses {
        log(&format!("== loss {} ({} steps) ==", loss.name(), steps));
        let out = train(
            &seed_config(loss, steps, seed, threads),
            train_set,
            test,
            &mut |l| log(&format!("[{}] {l}", loss.name())),
        )?;
        let lo = out
            .history
            .iter()
            .map(|h| h.1)
            .fold(f64::INFINITY, f64::min);
        let hi = out
            .history
            .iter()
            .map(|h| h.1)
            .fold(f64::NEG_INFINITY, f64::max);
        log(&format!(
            "[{}] test accuracy {:.4} ({:.0} s)",
            loss.name(),
            out.test_accuracy,
            out.seconds
        ));
        rows.push(Row {
            loss,
            test_accuracy: out.test_accuracy,
            train_range: (lo, hi),
            seconds: out.seconds,
        });
    }
    Ok(rows)
}

/// The table, in Markdown.
pub fn table(rows: &[Row], steps: usize) -> String {
    let mut s = format!("| loss | training accuracy over {steps} steps (min - max) | test accuracy | seconds |\n|---|---|---|---|\n");
    for r in rows {
        s += &format!(
            "| {} | {:.2} - {:.2} | {:.4} | {:.0} |\n",
            r.loss.name(),
            r.train_range.0,
            r.train_range.1,
            r.test_accuracy,
            r.seconds
        );
    }
    s
}
