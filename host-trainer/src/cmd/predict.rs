//! `host-trainer predict`: image files brought to MNIST's convention ([`crate::predict`])
//! and classified, one line per file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::load_any_named;
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
    /// Which way round the ink is: auto decides from the picture's border (MNIST-style
    /// models only; a model trained on an image folder gets pictures as its folder was read)
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
    let (spec, p, names) = load_any_named(&args.params)?;
    let arch = spec.arch();
    // A model trained on an image folder (it has class names), or one that does not
    // take MNIST's 28x28x1, gets pictures as the folder's images were read.
    let as_folder =
        !names.is_empty() || arch.input != microconv::Shape::new(predict::SIDE, predict::SIDE, 1);
    let images = &args.images;
    let mut failed = 0;
    for path in images {
        let what = path.display().to_string();
        let x = predict::load(path).and_then(|img| {
            if as_folder {
                let x = crate::folder::convert(&img, arch.input, &what)?;
                let mut f = vec![0.0; x.len()];
                crate::data::scale(&x, &mut f);
                Ok(predict::Prepared {
                    x: f,
                    warnings: Vec::new(),
                })
            } else {
                predict::prepare(&img, args.ink, &what)
            }
        });
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
            save_input(&x, arch.input, path, dir)?;
        }
        let logits = engine::predict(&arch, &p, &x, 1, 1)?;
        println!(
            "{what}: {}",
            top_scores(&logits, args.top, &names).join(", ")
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be classified",
            images.len()
        );
    }
    Ok(())
}

/// Saves the network's input for `path` as `<dir>/<name>.mnist.png` (MNIST's 28x28
/// grey), or `<dir>/<name>.input.png` (any other input, grey or RGB).
fn save_input(x: &[f32], input: microconv::Shape, path: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let name = path.file_stem().unwrap_or_default().to_string_lossy();
    if input == microconv::Shape::new(predict::SIDE, predict::SIDE, 1) {
        return predict::save_png(x, &dir.join(format!("{name}.mnist.png")));
    }
    let bytes: Vec<u8> = x.iter().map(|v| (v * 255.0).round() as u8).collect();
    let (w, h) = (input.w as u32, input.h as u32);
    let out = dir.join(format!("{name}.input.png"));
    let saved = match input.c {
        1 => image::GrayImage::from_raw(w, h, bytes).map(|i| i.save(&out)),
        3 => image::RgbImage::from_raw(w, h, bytes).map(|i| i.save(&out)),
        c => bail!("--show: a {c}-channel input cannot be saved as a picture"),
    };
    match saved {
        Some(r) => r.map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display())),
        None => bail!("--show: the input is not {w}x{h}x{}", input.c),
    }
}

/// The `top` (at least 1) most probable classes as `class (probability)`, most probable
/// first, ties to the lower class; a class with a name is `number name`.
fn top_scores(logits: &[f32], top: usize, names: &[String]) -> Vec<String> {
    let prob = predict::probabilities(logits);
    let mut order: Vec<usize> = (0..prob.len()).collect();
    order.sort_by(|&a, &b| prob[b].total_cmp(&prob[a]).then(a.cmp(&b)));
    order
        .iter()
        .take(top.max(1))
        .map(|&c| match names.get(c) {
            Some(n) if *n != c.to_string() => format!("{c} {n} ({:.4})", prob[c]),
            _ => format!("{c} ({:.4})", prob[c]),
        })
        .collect()
}
