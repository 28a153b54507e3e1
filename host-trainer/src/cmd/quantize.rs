//! `host-trainer quantize`: int8 parameters ([`crate::quantize`]) compared with float on
//! the test set, optionally written as an int8 weights file.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::{load_any_named, Common};
use crate::{engine, outputs, quantize};

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Parameter file written by `train`, or a weights file (.mcw) written by `export`
    #[arg(long, default_value = "runs/small.params")]
    pub params: PathBuf,
    /// Training images whose activations set the int8 ranges (min and max)
    #[arg(long, default_value_t = 1000)]
    pub calibration: usize,
    /// Write the int8 weights file (version 2) here, for the firmware
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Calibrates, quantizes, compares int8 with float and writes `--out`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        common,
        params,
        calibration,
        out,
    } = args;
    let (spec, p, names) = load_any_named(&params)?;
    // The int8 model holds no batchnorm: folded into the layers before, as firmware runs it.
    let (arch, p) = crate::fold::fold_batchnorm(&spec.arch(), &p)?;
    let out = match out {
        Some(o) => {
            let name = spec.name();
            let o = outputs::resolve(&o, &format!("{name}-int8.mcw"));
            if outputs::prepare(&o, "int8 weights file")?.exists {
                println!("note: replacing {}", o.display());
            }
            Some(o)
        }
        None => None,
    };
    // An image folder is read at the model's input, as `train` read it.
    let (tr, te) = common.load_for(Some(arch.input))?;
    crate::train::check_data(&arch, spec.name(), &tr)?;
    crate::train::check_data(&arch, spec.name(), &te)?;
    if calibration == 0 || calibration > tr.len() {
        bail!("--calibration must be between 1 and {}", tr.len());
    }
    let mut calib = vec![0.0; calibration * tr.pixels()];
    tr.fill(&(0..calibration).collect::<Vec<_>>(), &mut calib);
    let q = quantize::quantize(arch, &p, &calib, calibration)?;
    let threads = common.threads();
    let fl = engine::predict_u8(&arch, &p, &te.images, te.len(), threads)?;
    let ql = q.predict(&te.images, te.len(), threads)?;
    let classes = arch.classes();
    let same = fl
        .chunks_exact(classes)
        .zip(ql.chunks_exact(classes))
        .filter(|(a, b)| microconv::loss::argmax(a) == microconv::quant::argmax_i8(b))
        .count();
    let (fa, qa) = (
        engine::accuracy(&fl, &te.labels),
        quantize::accuracy_i8(&ql, &te.labels),
    );
    println!(
        "calibration: min/max of every layer's output over the first {calibration} training images"
    );
    println!(
        "test accuracy: f32 {fa:.4}, int8 {qa:.4} ({:+.2} points)",
        (qa - fa) * 100.0
    );
    println!(
        "int8 and f32 predictions agree on {same}/{} test images",
        te.len()
    );
    println!(
        "parameter bytes: f32 {}, int8 {} (weights int8; biases, multipliers, shifts int32)",
        p.len() * 4,
        q.param_bytes()
    );
    if let Some(out) = out {
        let bytes = q.to_file()?;
        outputs::write_or_rescue(&out, &bytes, "int8 weights")?;
        crate::params_file::save_labels(&out, &names)?;
        println!(
            "wrote {} ({} bytes, int8 weights file version 2)",
            out.display(),
            bytes.len()
        );
    }
    Ok(())
}
