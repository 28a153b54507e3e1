//! `host-trainer reproduce`: the seed experiment. The seed CNN, its init (normal(1),
//! truncated normal(1) for the last layer), Adam 1e-3, batch 128, dropout keep 0.75,
//! trained once per loss; prints one table row per loss.

use anyhow::Result;

use crate::data::Dataset;
use crate::train::{train_with, ArchName, InitName, LossName, RunOptions, Schedule, TrainConfig};

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
    /// `(step, batch accuracy)` every 100 steps.
    pub history: Vec<(usize, f64)>,
    /// `(step, mean loss per sample over the 100 steps before)`.
    pub losses: Vec<(usize, f64)>,
}

/// The seed's configuration for `loss`.
pub fn seed_config(loss: LossName, steps: usize, seed: u64, threads: usize) -> TrainConfig {
    TrainConfig {
        arch: ArchName::Seed.into(),
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
        let (mut losses, mut sum) = (Vec::new(), 0.0f64);
        let out = train_with(
            &seed_config(loss, steps, seed, threads),
            RunOptions::default(),
            train_set,
            test,
            &mut |l| log(&format!("[{}] {l}", loss.name())),
            &mut |t| {
                sum += t.loss as f64;
                if t.done % 100 == 0 || t.done == t.steps {
                    let n = (t.done - 1) % 100 + 1;
                    losses.push((t.done, sum / n as f64));
                    sum = 0.0;
                }
            },
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
            history: out.history,
            losses,
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

/// The seed's story in one picture: the three losses' training curves.
pub fn series(rows: &[Row]) -> Vec<crate::plot::Series> {
    rows.iter()
        .map(|r| crate::plot::Series {
            name: format!("{} (test {:.4})", r.loss.name(), r.test_accuracy),
            loss: r.losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
            accuracy: r.history.iter().map(|&(s, a)| (s as f64, a)).collect(),
        })
        .collect()
}
