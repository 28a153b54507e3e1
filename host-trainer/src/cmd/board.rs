//! `host-trainer board`: options and report around [`crate::board::run`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{Common, LinkArgs};
use crate::board;

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub link: LinkArgs,
    /// The weights file the firmware was built with
    #[arg(long, default_value = "firmware/models/small.mcw")]
    pub weights: PathBuf,
    /// Test images to send
    #[arg(long, default_value_t = 10_000)]
    pub images: usize,
    /// Send raw images (the model's H*W*C bytes each) instead of PackBits-compressed ones
    #[arg(long)]
    pub raw: bool,
    /// Fail unless every board answer equals the host's prediction
    #[arg(long)]
    pub require_agreement: bool,
    /// QEMU processes sharing the images (with --qemu)
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Where to save QEMU's raw defmt log
    #[arg(long, default_value = "runs/qemu-defmt.bin")]
    pub defmt_log: PathBuf,
}

/// Sends the test images, prints the firmware's log and the comparison with the host.
pub fn run(args: Args) -> Result<()> {
    let (_, te) = args.common.load()?;
    let target = args.link.target(&args.defmt_log)?;
    let r = board::run(
        &target,
        &args.weights,
        &te,
        &board::Options {
            images: args.images,
            packed: !args.raw,
            threads: args.common.threads(),
            jobs: args.jobs,
        },
        &|l: &str| println!("{l}"),
    )?;
    if let Some(elf) = &args.link.qemu {
        print_defmt_logs(elf, &args.defmt_log, args.jobs);
    }
    let unit = if args.link.qemu.is_some() {
        "instructions (QEMU -icount shift=0, 40 per SysTick tick)"
    } else {
        "cycles (DWT)"
    };
    let scale = args.link.tick_scale();
    println!(
        "firmware parameters: {}, stack high-water mark: {} bytes",
        r.firmware_params, r.stack_bytes
    );
    println!(
        "per inference: {:.0} {unit} (min {:.0}, max {:.0})",
        r.ticks.0 * scale,
        r.ticks.1 as f64 * scale,
        r.ticks.2 as f64 * scale
    );
    println!(
        "time per image: {:.2} ms (wire and inference); frames sent again: {}",
        r.ms_per_image, r.retries
    );
    println!(
        "bit-identical scores: {}/{} (max |difference| {:e})",
        r.bit_exact, r.images, r.max_abs_diff
    );
    println!("agreement with host: {}/{}", r.agree, r.images);
    println!(
        "board accuracy: {:.4} (host: {:.4})",
        r.correct as f64 / r.images.max(1) as f64,
        r.host_correct as f64 / r.images.max(1) as f64
    );
    if args.require_agreement && r.agree != r.images {
        bail!(
            "{} of {} board answers differ from the host's",
            r.images - r.agree,
            r.images
        );
    }
    Ok(())
}

/// Prints each QEMU process's defmt log, decoded if `defmt-print` is installed.
fn print_defmt_logs(elf: &Path, defmt_log: &Path, jobs: usize) {
    let logs: Vec<PathBuf> = if jobs > 1 {
        (0..jobs)
            .map(|j| defmt_log.with_extension(format!("{j}.bin")))
            .collect()
    } else {
        vec![defmt_log.to_path_buf()]
    };
    for log in logs.iter().filter(|l| l.exists()) {
        match board::decode_defmt(elf, log) {
            Some(text) => println!(
                "firmware log (defmt, {}):\n{}",
                log.display(),
                text.trim_end()
            ),
            None => println!(
                "raw defmt log saved to {} (install defmt-print to decode it)",
                log.display()
            ),
        }
    }
}
