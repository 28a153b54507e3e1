//! The training display: a progress bar with rate, ETA, loss and accuracy (indicatif) when
//! stdout is a terminal; plain lines only otherwise (CI, logs, pipes). The every-100-steps
//! lines are printed either way.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::train::Tick;

/// A progress bar, or nothing when stdout is not a terminal.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar over `steps` steps.
    pub fn new(steps: u64) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let b = ProgressBar::new(steps);
            let style = ProgressStyle::with_template(
                "{bar:32.cyan/blue} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b
        });
        Bar { bar }
    }

    /// Prints a line (above the bar, if there is one).
    pub fn line(&self, l: &str) {
        match &self.bar {
            Some(b) => b.println(l),
            None => println!("{l}"),
        }
    }

    /// Advances the bar after a step.
    pub fn tick(&self, t: &Tick) {
        if let Some(b) = &self.bar {
            b.set_position(t.done as u64);
            let acc = t
                .batch_accuracy
                .map_or(String::new(), |a| format!(", batch accuracy {a:.3}"));
            b.set_message(format!("loss {:.4}{acc}", t.loss));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
