//! `host-trainer bench`: how fast the host trains and infers, per architecture and
//! thread count, with each configuration measured in its own process so that its
//! peak memory is its own.
//!
//! A training step is what the reference script (`tools/bench/reference.py`) times in
//! TensorFlow and PyTorch: forward, loss, backward and an Adam update on a batch of
//! real MNIST images, with the batch already in memory. Inference is the whole test
//! set (10,000 images) in chunks of 256, then single images one at a time (latency).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use microconv::init::{init_params, Init};
use microconv::loss::{Loss, Reduction};
use microconv::net::{self};
use microconv::optim::{Adam, Optimizer};
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::engine::{Backend, Images, Trainer};
use crate::train::ArchName;

/// What one benchmark process measures.
#[derive(Clone, Debug)]
pub struct Case {
    /// The architecture.
    pub arch: ArchName,
    /// Threads the batch is split across.
    pub threads: usize,
    /// Samples per training step.
    pub batch: usize,
    /// Timed training steps (after `warmup` untimed ones).
    pub steps: usize,
    /// Untimed steps first (caches, page faults, the CPU's clock).
    pub warmup: usize,
    /// The matrix-product backend.
    pub backend: Backend,
    /// Also measure inference.
    pub infer: bool,
}

/// One benchmark process's results (one JSON line on stdout in `--child` mode).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// Architecture name.
    pub arch: String,
    /// Threads.
    pub threads: usize,
    /// Batch size.
    pub batch: usize,
    /// Backend name.
    pub backend: String,
    /// Median milliseconds per training step.
    pub step_ms: f64,
    /// 10th and 90th percentile milliseconds per step.
    pub step_ms_p10: f64,
    /// See `step_ms_p10`.
    pub step_ms_p90: f64,
    /// Training samples per second at the median step time.
    pub train_samples_per_s: f64,
    /// Test-set inference, images per second (0 if not measured).
    pub infer_images_per_s: f64,
    /// Median latency of one image, microseconds, one thread (0 if not measured).
    pub latency_us: f64,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// Peak resident set size of this process in MiB (Linux `/proc/self/status` VmHWM),
/// or 0 where that is not available.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs one case in this process: the measurement behind `bench --child`.
pub fn run_case(case: &Case, train: &Dataset, test: &Dataset) -> Result<Record> {
    let arch = case.arch.arch();
    let mut params = vec![0.0; arch.param_count()];
    init_params(&arch, Init::He, 1, &mut params)?;
    let opt = Optimizer::Adam(Adam::new(1e-3));
    let mut trainer = Trainer::new(
        arch,
        params,
        opt,
        Loss::Fused,
        Reduction::Mean,
        case.batch,
        case.threads,
    )?;
    trainer.set_backend(case.backend);
    // Eight different real batches, cycled: the data differs from step to step as in
    // training, without timing the batch assembly.
    let pixels = train.pixels();
    let batches: Vec<(Vec<f32>, Vec<u8>)> = (0..8)
        .map(|b| {
            let idx: Vec<usize> = (0..case.batch)
                .map(|i| (b * case.batch + i) % train.len())
                .collect();
            let mut x = vec![0.0; case.batch * pixels];
            train.fill(&idx, &mut x);
            (x, idx.iter().map(|&i| train.labels[i]).collect())
        })
        .collect();
    let mut times = Vec::with_capacity(case.steps);
    for s in 0..case.warmup + case.steps {
        let (x, y) = &batches[s % batches.len()];
        let t = Instant::now();
        trainer.step(x, y, s as u64)?;
        if s >= case.warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let step_ms = percentile(&times, 0.5);
    let (mut ips, mut lat) = (0.0, 0.0);
    if case.infer {
        // The test set as bytes, scaled chunk by chunk, in the trainer's own buffers (as
        // `train` evaluates): no copy of the set as floats, no second set of buffers.
        let n = test.len();
        let images = Images::U8(&test.images);
        trainer.predict(images, n)?; // warm-up
        let t = Instant::now();
        trainer.predict(images, n)?;
        ips = n as f64 / t.elapsed().as_secs_f64();
        let p = &trainer.params;
        // Batch-1 latency: one thread, buffers allocated once, as an application would.
        let exec = case.backend.exec();
        let mut buf = vec![0.0; arch.inference_len(1)];
        let mut scratch = vec![0.0; arch.im2col_len(1)];
        let mut x = vec![0.0; pixels];
        let mut lats = Vec::new();
        for i in 0..300.min(n) {
            // The image is ready before the clock starts, as the application's would be.
            crate::data::scale(test.image(i), &mut x);
            let t = Instant::now();
            net::infer(&arch, p, &x, 1, &mut buf, &exec, &mut scratch)?;
            lats.push(t.elapsed().as_secs_f64() * 1e6);
        }
        lats.sort_by(f64::total_cmp);
        lat = percentile(&lats[20.min(lats.len())..], 0.5);
    }
    Ok(Record {
        arch: case.arch.name().into(),
        threads: case.threads,
        batch: case.batch,
        backend: format!("{:?}", case.backend).to_lowercase(),
        step_ms,
        step_ms_p10: percentile(&times, 0.1),
        step_ms_p90: percentile(&times, 0.9),
        train_samples_per_s: case.batch as f64 / (step_ms / 1e3),
        infer_images_per_s: ips,
        latency_us: lat,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// A process that keeps one core busy until it is killed: the "machine under load"
/// condition of the benchmark.
pub struct Busy(Child);

/// The environment variable that makes `host-trainer bench` one of the processes a
/// benchmark starts itself, rather than an option a user could give.
pub const ROLE_VAR: &str = "MICROCONV_BENCH_ROLE";

/// What a process started by `bench` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Measure one case in this process and print its record as JSON.
    Child,
    /// Keep one core busy until killed (the load of `--busy`).
    Spin,
}

impl Role {
    /// The role this process was started in, from [`ROLE_VAR`].
    pub fn from_env() -> Option<Role> {
        match std::env::var(ROLE_VAR).as_deref() {
            Ok("child") => Some(Role::Child),
            Ok("spin") => Some(Role::Spin),
            _ => None,
        }
    }
}

impl Busy {
    /// Starts `host-trainer bench` in the [`Role::Spin`] role.
    pub fn start() -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find the host-trainer executable")?;
        let child = Command::new(exe)
            .arg("bench")
            .env(ROLE_VAR, "spin")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the busy process")?;
        Ok(Busy(child))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spins on one core forever (until killed).
pub fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Runs `case` in a child process (`host-trainer bench ...` in the [`Role::Child`]
/// role) and returns its record.
pub fn run_child(case: &Case, data: Option<&std::path::Path>) -> Result<Record> {
    let exe = std::env::current_exe().context("cannot find the host-trainer executable")?;
    let mut cmd = Command::new(exe);
    cmd.env(ROLE_VAR, "child");
    cmd.args([
        "bench",
        "--archs",
        case.arch.name(),
        "--threads",
        &case.threads.to_string(),
        "--batch",
        &case.batch.to_string(),
        "--steps",
        &case.steps.to_string(),
        "--warmup",
        &case.warmup.to_string(),
        "--backend",
        &format!("{:?}", case.backend).to_lowercase(),
    ]);
    if !case.infer {
        cmd.arg("--no-infer");
    }
    if let Some(d) = data {
        cmd.arg("--data").arg(d);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the benchmark process")?;
    if !out.status.success() {
        bail!("the benchmark process for {} failed", case.arch.name());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the benchmark process printed no result")?;
    serde_json::from_str(line).context("the benchmark process printed a malformed result")
}

/// Prints records as a table.
pub fn print_table(records: &[Record], out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "{:<6} {:>7} {:>5} {:<14} {:>9} {:>15} {:>10} {:>13} {:>11} {:>9}",
        "arch",
        "threads",
        "batch",
        "backend",
        "ms/step",
        "(p10-p90)",
        "samples/s",
        "infer img/s",
        "latency us",
        "peak MiB"
    )?;
    for r in records {
        writeln!(
            out,
            "{:<6} {:>7} {:>5} {:<14} {:>9.2} {:>15} {:>10.0} {:>13.0} {:>11.1} {:>9.1}",
            r.arch,
            r.threads,
            r.batch,
            r.backend,
            r.step_ms,
            format!("({:.2}-{:.2})", r.step_ms_p10, r.step_ms_p90),
            r.train_samples_per_s,
            r.infer_images_per_s,
            r.latency_us,
            r.peak_rss_mib
        )?;
    }
    Ok(())
}

/// Time spent in one layer, forward and backward (`bench --layers`).
#[derive(Clone, Debug)]
pub struct LayerTime {
    /// Layer index in the architecture.
    pub index: usize,
    /// Layer name and output shape, for example `conv2d -> 28x28x32`.
    pub what: String,
    /// Median milliseconds of the forward pass over the batch.
    pub forward_ms: f64,
    /// Median milliseconds of the backward pass (parameter gradients, and the input
    /// gradient for every layer but the first, as in training).
    pub backward_ms: f64,
    /// Multiply-accumulates of the forward pass (0 for layers without weights).
    pub macs: u64,
}

/// Times every layer of `arch` on `n` real images, one thread, `reps` repetitions
/// (medians). The layers run exactly as in a training step (same core functions,
/// same buffers).
pub fn layer_profile(
    arch_name: ArchName,
    train: &Dataset,
    n: usize,
    backend: Backend,
    reps: usize,
) -> Result<Vec<LayerTime>> {
    use microconv::net::{layer_backward, layer_forward, Layer, Mode};
    let arch = arch_name.arch();
    let exec = backend.exec();
    let mut params = vec![0.0; arch.param_count()];
    init_params(&arch, Init::He, 1, &mut params)?;
    let mut grads = vec![0.0; arch.param_count()];
    let mut x = vec![0.0; n * arch.input.len()];
    train.fill(&(0..n).map(|i| i % train.len()).collect::<Vec<_>>(), &mut x);
    let mut scratch = vec![0.0; arch.im2col_len(crate::engine::im2col_images(&arch, n))];
    let mode = Mode::Train {
        seed: 1,
        first_sample: 0,
    };
    // Each layer's output, computed once in order; then each layer is timed alone.
    let mut outs: Vec<Vec<f32>> = Vec::new();
    for i in 0..arch.layers.len() {
        let (_, o) = arch.layer_io(i)?;
        let mut y = vec![0.0; n * o.len()];
        let xin = if i == 0 { &x } else { &outs[i - 1] };
        layer_forward(&arch, i, &params, n, xin, &mut y, mode, &exec, &mut scratch)?;
        outs.push(y);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    let mut table = Vec::new();
    for i in 0..arch.layers.len() {
        let (ins, o) = arch.layer_io(i)?;
        let xin = if i == 0 { &x } else { &outs[i - 1] };
        let mut y = vec![0.0; n * o.len()];
        let dy: Vec<f32> = (0..n * o.len())
            .map(|k| ((k * 7919 % 1000) as f32 - 500.0) * 1e-4)
            .collect();
        let mut dx = vec![0.0; n * ins.len()];
        let (mut f, mut b) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            layer_forward(&arch, i, &params, n, xin, &mut y, mode, &exec, &mut scratch)?;
            f.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let d = (i > 0).then_some(&mut dx[..]);
            layer_backward(
                &arch,
                i,
                &params,
                n,
                xin,
                &outs[i],
                &dy,
                d,
                &mut grads,
                mode,
                &exec,
                &mut scratch,
            )?;
            b.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let macs = match arch.layers[i] {
            Layer::Conv2d(c) => (n * o.len() * c.kernel * c.kernel * ins.c) as u64,
            Layer::Dense(_) => (n * ins.len() * o.len()) as u64,
            Layer::DepthwiseConv2d(d) => (n * o.len() * d.kernel * d.kernel) as u64,
            _ => 0,
        };
        table.push(LayerTime {
            index: i,
            what: format!("{} -> {}x{}x{}", arch.layers[i].name(), o.h, o.w, o.c),
            forward_ms: median(f),
            backward_ms: median(b),
            macs,
        });
    }
    Ok(table)
}

/// Prints a [`layer_profile`] table with each layer's share of the total and, for
/// layers with weights, the GFLOP/s reached (forward: 2 flops per MAC; backward: 4,
/// or 2 for the first layer, which computes no input gradient).
pub fn print_layers(table: &[LayerTime], out: &mut impl Write) -> Result<()> {
    let total: f64 = table.iter().map(|l| l.forward_ms + l.backward_ms).sum();
    writeln!(
        out,
        "{:>3} {:<26} {:>9} {:>9} {:>7} {:>9} {:>9}",
        "#", "layer", "fwd ms", "bwd ms", "share", "fwd GF/s", "bwd GF/s"
    )?;
    for l in table {
        let gf = |flops: f64, ms: f64| {
            if l.macs == 0 || ms <= 0.0 {
                "-".to_string()
            } else {
                format!("{:.1}", flops / (ms * 1e6))
            }
        };
        let bwd_flops = l.macs as f64 * if l.index == 0 { 2.0 } else { 4.0 };
        writeln!(
            out,
            "{:>3} {:<26} {:>9.3} {:>9.3} {:>6.1}% {:>9} {:>9}",
            l.index,
            l.what,
            l.forward_ms,
            l.backward_ms,
            100.0 * (l.forward_ms + l.backward_ms) / total.max(1e-12),
            gf(2.0 * l.macs as f64, l.forward_ms),
            gf(bwd_flops, l.backward_ms)
        )?;
    }
    writeln!(out, "    total {total:.2} ms (one thread)")?;
    Ok(())
}
