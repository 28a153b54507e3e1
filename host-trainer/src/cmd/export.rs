//! `host-trainer export`: a weights file for the firmware ([`crate::export`]) or a
//! safetensors file ([`crate::interop`]), by the name of `--out`.

use std::path::PathBuf;

use anyhow::Result;

use super::load_any_named;
use crate::{export, interop, outputs};

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    /// Parameters: a file written by `train`, a weights file or a safetensors file
    #[arg(long, default_value = "runs/small.params")]
    pub params: PathBuf,
    /// The file to write: .safetensors for safetensors, anything else for firmware
    #[arg(long, default_value = "runs/small.mcw")]
    pub out: PathBuf,
}

/// Converts `--params` into `--out`.
pub fn run(args: Args) -> Result<()> {
    let (arch, p, names) = load_any_named(&args.params)?;
    let out = outputs::resolve(&args.out, &format!("{}.mcw", arch.name()));
    if outputs::prepare(&out, "weights file")?.exists {
        println!("note: replacing {}", out.display());
    }
    if out.extension().is_some_and(|e| e == "safetensors") {
        let crate::config::ArchSpec::Builtin(name) = arch else {
            anyhow::bail!(
                "{}: safetensors export of a described network (`{}`) is not supported yet; export a .mcw weights file",
                args.params.display(),
                arch.name()
            );
        };
        interop::save(&out, name, &p)?;
        println!(
            "wrote {} ({} bytes, safetensors; names and layouts in docs/safetensors.md)",
            out.display(),
            std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0)
        );
    } else {
        // Firmware never runs batchnorm: it is folded into the layers before.
        let (folded, p) = crate::fold::fold_batchnorm(&arch.arch(), &p)?;
        let n = export::export(&folded, &p, &args.params, &out)?;
        println!("wrote {} ({n} bytes)", out.display());
        // The weights format has no class names: they go beside it (docs/data.md).
        if !names.is_empty() {
            crate::params_file::save_labels(&out, &names)?;
            println!(
                "class names in {}",
                crate::params_file::labels_path(&out).display()
            );
        }
    }
    Ok(())
}
