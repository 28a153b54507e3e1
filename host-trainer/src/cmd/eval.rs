//! `host-trainer eval`: accuracy and confusion matrix ([`crate::eval`]) of saved
//! parameters on the test set; an int8 weights file runs on the firmware's own classifier.

use std::path::PathBuf;

use anyhow::Result;

use super::{load_any, Common};
use crate::data::Dataset;
use crate::{board, engine, eval, outputs, weights};

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Parameters: a file written by `train`, a weights file (float or int8) or safetensors
    #[arg(long, default_value = "runs/small.params")]
    pub params: PathBuf,
    /// Where to draw the confusion matrix (.png and .svg appended)
    /// [default: <params>.confusion]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not draw the confusion matrix
    #[arg(long)]
    pub no_plots: bool,
}

/// Evaluates `--params`, prints the report and draws the confusion matrix.
pub fn run(args: Args) -> Result<()> {
    let params = &args.params;
    let stem = match &args.out {
        Some(o) => {
            let name = params.file_stem().unwrap_or_default().to_string_lossy();
            outputs::resolve(o, &format!("{name}.confusion"))
        }
        None => params.with_extension("confusion"),
    };
    if !args.no_plots {
        for ext in ["png", "svg"] {
            outputs::prepare(&stem.with_extension(ext), "confusion matrix picture")?;
        }
    }
    let (_, te) = args.common.load()?;
    let (classes, predicted) = predictions(&args, &te)?;
    let m = eval::Confusion::new(classes, &predicted, &te.labels)?;
    print!("{}", m.report());
    if !args.no_plots {
        let title = format!("confusion matrix, {}", params.display());
        match m.picture(&stem, &title) {
            Ok([png, svg]) => {
                println!("confusion matrix {} and {}", png.display(), svg.display())
            }
            Err(e) => println!("no confusion matrix picture: {e:#}"),
        }
    }
    println!("test accuracy: {:.4}", m.accuracy());
    Ok(())
}

/// The number of classes and the predicted class of every test image.
fn predictions(args: &Args, te: &Dataset) -> Result<(usize, Vec<usize>)> {
    let params = &args.params;
    let threads = args.common.threads();
    if weights::is_int8_file(params) {
        // An int8 weights file: the firmware's own int8 classifier, on the same
        // 8-bit pixels the board gets.
        let wf = weights::WeightsFile::read_any(params)?;
        let model = weights::HostModel::parse(wf.bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", params.display()))?;
        crate::train::check_data(&model.arch(), &params.display().to_string(), te)?;
        let scores = board::host_scores(&model, te, te.len(), threads)?;
        let p: Vec<usize> = scores.iter().map(|s| microconv::loss::argmax(s)).collect();
        Ok((model.arch().classes(), p))
    } else {
        let (spec, p) = load_any(params)?;
        let arch = spec.arch();
        crate::train::check_data(&arch, spec.name(), te)?;
        let logits = engine::predict_u8(&arch, &p, &te.images, te.len(), threads)?;
        let p = logits
            .chunks_exact(arch.classes())
            .map(microconv::loss::argmax)
            .collect();
        Ok((arch.classes(), p))
    }
}
