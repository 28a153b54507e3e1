//! `host-trainer bench`: one child process per architecture and thread count
//! ([`crate::bench`]), printed as a table or JSON lines; `--layers` times each layer.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::bench::{self, Role};
use crate::config::ArchName;
use crate::data;
use crate::engine::Backend;

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    /// Directory with MNIST's IDX files [default: the repo's data/mnist]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Architectures
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ArchName::Small, ArchName::Seed])]
    pub archs: Vec<ArchName>,
    /// Thread counts [default: 1 and all cores]
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Samples per training step
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed steps per configuration [default: 200 for small, 30 for seed]
    #[arg(long)]
    pub steps: Option<usize>,
    /// Untimed steps first
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Matrix-product backend
    #[arg(long, value_enum, default_value_t = Backend::Gemm)]
    pub backend: Backend,
    /// Skip the inference measurements
    #[arg(long)]
    pub no_infer: bool,
    /// Keep one core busy with another process while measuring
    #[arg(long)]
    pub busy: bool,
    /// Print one JSON object per configuration instead of a table
    #[arg(long)]
    pub json: bool,
    /// Time each layer's forward and backward pass instead (one thread, --batch images)
    #[arg(long)]
    pub layers: bool,
}

impl Args {
    /// MNIST from `--data`.
    fn load(&self) -> Result<(data::Dataset, data::Dataset)> {
        data::load_mnist(&self.data.clone().unwrap_or_else(data::default_dir))
    }

    /// The measurement of `arch` with `threads` threads.
    fn case(&self, arch: ArchName, threads: usize) -> bench::Case {
        bench::Case {
            arch,
            threads,
            batch: self.batch,
            steps: self.steps.unwrap_or(match arch {
                ArchName::Small => 200,
                ArchName::Seed => 30,
            }),
            warmup: self.warmup,
            backend: self.backend,
            infer: !self.no_infer,
        }
    }
}

/// Measures every architecture and thread count, each in its own process.
pub fn run(args: Args) -> Result<()> {
    // The processes bench starts itself (bench::Role), not options a user gives.
    let role = Role::from_env();
    if role == Some(Role::Spin) {
        bench::spin();
    }
    if args.layers {
        return layers(&args);
    }
    if args.batch == 0 || args.steps == Some(0) {
        bail!("--batch and --steps must be at least 1");
    }
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if args.threads.is_empty() {
        if all > 1 {
            vec![1, all]
        } else {
            vec![1]
        }
    } else {
        args.threads.clone()
    };
    if threads.contains(&0) {
        bail!("--threads must be at least 1");
    }
    if role == Some(Role::Child) {
        let (tr, te) = args.load()?;
        let r = bench::run_case(&args.case(args.archs[0], threads[0]), &tr, &te)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let _load = if args.busy {
        Some(bench::Busy::start()?)
    } else {
        None
    };
    if !args.json {
        println!(
            "host-trainer bench: batch {}, backend {:?}{}; each line is its own process",
            args.batch,
            args.backend,
            if args.busy {
                ", one core kept busy by another process"
            } else {
                ""
            }
        );
    }
    let mut records = Vec::new();
    for &arch in &args.archs {
        for &t in &threads {
            let r = bench::run_child(&args.case(arch, t), args.data.as_deref())?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            }
            records.push(r);
        }
    }
    if !args.json {
        bench::print_table(&records, &mut std::io::stdout())?;
    }
    Ok(())
}

/// `--layers`: each layer's forward and backward time, per architecture.
fn layers(args: &Args) -> Result<()> {
    let (tr, _) = args.load()?;
    let runs = args.steps.unwrap_or(20);
    for &arch in &args.archs {
        println!(
            "{}: {} images, one thread, backend {:?}, median of {runs} runs",
            arch.name(),
            args.batch,
            args.backend,
        );
        let t = bench::layer_profile(arch, &tr, args.batch, args.backend, runs)?;
        bench::print_layers(&t, &mut std::io::stdout())?;
    }
    Ok(())
}
