//! `host-trainer predict`: image files brought to MNIST's convention ([`crate::predict`])
//! and classified, one line per file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::load_any;
use crate::engine;
use crate::predict::{self, Polarity};

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    /// Image files
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Parameter file written by `train`, or a weights file (.mcw) written by `export`
    #[arg(long, default_value = "runs/small.params")]
    pub params: PathBuf,
    /// Which way round the ink is: auto decides from the picture's border
    #[arg(long, value_enum, default_value_t = Polarity::Auto)]
    pub ink: Polarity,
    /// Scores to print per image
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Save the 28x28 picture the network saw, as <name>.mnist.png, in this directory
    #[arg(long = "show", visible_alias = "save-input", value_name = "DIR")]
    pub save_input: Option<PathBuf>,
}

/// Classifies every image; a file that fails is reported and the others go on (a single
/// file's failure is the command's error).
pub fn run(args: Args) -> Result<()> {
    let (spec, p) = load_any(&args.params)?;
    let arch = spec.arch();
    if arch.input != microconv::Shape::new(predict::SIDE, predict::SIDE, 1) {
        bail!(
            "{}: the network does not take 28x28x1 images (predict brings pictures to MNIST's convention only)",
            args.params.display()
        );
    }
    let images = &args.images;
    let mut failed = 0;
    for path in images {
        let what = path.display().to_string();
        let x = predict::load(path).and_then(|img| predict::prepare(&img, args.ink, &what));
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
        if let Some(dir) = &args.save_input {
            save_input(&x, path, dir)?;
        }
        let logits = engine::predict(&arch, &p, &x, 1, 1)?;
        println!("{what}: {}", top_scores(&logits, args.top).join(", "));
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be classified",
            images.len()
        );
    }
    Ok(())
}

/// Saves the network's 28x28 input for `path` as `<dir>/<name>.mnist.png`.
fn save_input(x: &[f32], path: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let name = path.file_stem().unwrap_or_default().to_string_lossy();
    predict::save_png(x, &dir.join(format!("{name}.mnist.png")))
}

/// The `top` (at least 1) most probable classes as `class (probability)`, most probable
/// first, ties to the lower class.
fn top_scores(logits: &[f32], top: usize) -> Vec<String> {
    let prob = predict::probabilities(logits);
    let mut order: Vec<usize> = (0..prob.len()).collect();
    order.sort_by(|&a, &b| prob[b].total_cmp(&prob[a]).then(a.cmp(&b)));
    order
        .iter()
        .take(top.max(1))
        .map(|&c| format!("{c} ({:.4})", prob[c]))
        .collect()
}
