//! `host-trainer eval`: accuracy and confusion matrix ([`crate::eval`]) of saved
//! parameters on the test set; an int8 weights file runs on the firmware's own classifier.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{load_any_named, Common};
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
    let model = Model::load(&args.params)?;
    let (_, te) = args.common.load_for(Some(model.input))?;
    let names = class_names(&args.params, &model.classes, &te)?;
    let (classes, predicted) = predictions(&args, &model, &te)?;
    let m = eval::Confusion::new(classes, &predicted, &te.labels)?;
    print!("{}", m.report_named(&names));
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

/// What `eval` needs of a model before the data is read: its input and its class
/// names (the parameter file's, or its labels file's).
struct Model {
    input: microconv::Shape,
    classes: Vec<String>,
    /// The float model (not for an int8 weights file).
    float: Option<(crate::config::ArchSpec, Vec<f32>)>,
}

impl Model {
    fn load(params: &Path) -> Result<Self> {
        if weights::is_int8_file(params) {
            let wf = weights::WeightsFile::read_any(params)?;
            let model = weights::HostModel::parse(wf.bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", params.display()))?;
            let arch = model.arch();
            let classes = crate::params_file::load_labels(params, arch.classes())?;
            return Ok(Model {
                input: arch.input,
                classes,
                float: None,
            });
        }
        let (spec, p, classes) = load_any_named(params)?;
        Ok(Model {
            input: spec.arch().input,
            classes,
            float: Some((spec, p)),
        })
    }
}

/// The class names to print: the model's, which an image folder's must be (same names,
/// same order: the labels are their positions).
fn class_names(params: &Path, model: &[String], te: &Dataset) -> Result<Vec<String>> {
    let data = &te.class_names;
    if !model.is_empty() && !data.is_empty() && model != data.as_slice() {
        bail!(
            "{}: the model's classes are {} but {}'s are {}",
            params.display(),
            model.join(", "),
            te.labels_file,
            data.join(", ")
        );
    }
    Ok(if model.is_empty() {
        data.clone()
    } else {
        model.to_vec()
    })
}

/// The number of classes and the predicted class of every test image.
fn predictions(args: &Args, model: &Model, te: &Dataset) -> Result<(usize, Vec<usize>)> {
    let params = &args.params;
    let threads = args.common.threads();
    if let Some((spec, p)) = &model.float {
        let arch = spec.arch();
        crate::train::check_data(&arch, spec.name(), te)?;
        let logits = engine::predict_u8(&arch, p, &te.images, te.len(), threads)?;
        let p = logits
            .chunks_exact(arch.classes())
            .map(microconv::loss::argmax)
            .collect();
        Ok((arch.classes(), p))
    } else {
        // An int8 weights file: the firmware's own int8 classifier, on the same
        // 8-bit pixels the board gets.
        let wf = weights::WeightsFile::read_any(params)?;
        let model = weights::HostModel::parse(wf.bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", params.display()))?;
        crate::train::check_data(&model.arch(), &params.display().to_string(), te)?;
        // The firmware's classifier ([`board::host_scores`]) answers up to SCORES
        // scores, as the wire protocol does (v2: any input shape).
        let arch = model.arch();
        let classes = arch.classes();
        if classes > microconv_firmware::protocol::SCORES {
            bail!(
                "{}: an int8 model of {classes} classes: the firmware's classifier, which int8 eval runs, answers at most {}; evaluate the float parameters (.params or .mcw) instead",
                params.display(),
                microconv_firmware::protocol::SCORES
            );
        }
        let scores = board::host_scores(&model, te, te.len(), threads)?;
        let p: Vec<usize> = scores
            .iter()
            .map(|s| microconv::loss::argmax(&s[..classes]))
            .collect();
        Ok((classes, p))
    }
}
