//! `host-trainer train`: the training loop (shuffled epochs, optional shift
//! augmentation, learning-rate schedule), printing the seed's every-100-steps lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use microconv::init::{init_params, mix64, Init, Rng};
use microconv::loss::Reduction;
use microconv::optim::{Adam, Optimizer};

use crate::checkpoint::{Checkpoint, Header};
pub use crate::config::{ArchName, InitName, LossName, Schedule, TrainConfig};
use crate::data::Dataset;
use crate::engine::{accuracy, Images, Trainer};

/// What a run produced.
pub struct TrainOutcome {
    /// Trained parameters.
    pub params: Vec<f32>,
    /// Accuracy on the whole test set.
    pub test_accuracy: f64,
    /// Training wall time in seconds (without the final evaluation), over all sessions
    /// of a resumed run.
    pub seconds: f64,
    /// `(step, batch training accuracy with dropout off)` every `log_every` steps.
    pub history: Vec<(usize, f64)>,
    /// The step the run stopped at, if [`RunOptions::stop_after`] stopped it early.
    pub stopped_at: Option<usize>,
}

/// The optional parts of a run: checkpoints, metrics, resuming, progress.
#[derive(Default)]
pub struct RunOptions {
    /// Save a checkpoint here every [`checkpoint_every`](Self::checkpoint_every) steps
    /// and at the end.
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (0: only at the end).
    pub checkpoint_every: usize,
    /// Continue this run (its configuration must be the run's).
    pub resume: Option<Checkpoint>,
    /// Stop before this step, after saving a checkpoint, as if interrupted there.
    pub stop_after: Option<usize>,
    /// Write the metrics (CSV, see [`METRICS_HEADER`]) here.
    pub metrics: Option<PathBuf>,
    /// A resumed run's earlier metrics rows are read from here [default: `metrics`]
    /// (a run moved elsewhere with `--out` takes its history along).
    pub metrics_from: Option<PathBuf>,
    /// Where the run saves its parameters, recorded in its checkpoints so that a resumed
    /// run writes where this one did.
    pub params_path: Option<PathBuf>,
    /// Test-set accuracy every this many steps, in the metrics (0: only at the end).
    pub eval_every: usize,
    /// Fault injection for tests: before step `.0`, parameter `.1` becomes NaN.
    pub inject_nan: Option<(usize, usize)>,
    /// For the crash-safety test: pause this long in the middle of each checkpoint write.
    pub slow_checkpoint: Option<std::time::Duration>,
}

/// The columns of the metrics file. One row every `log_every` steps and one at the end:
/// `loss` is the mean training loss per sample over the steps since the previous row,
/// `batch_accuracy` the seed's accuracy on the batch about to be trained (dropout off),
/// `test_accuracy` on the whole test set where evaluated, `seconds` of training so far.
pub const METRICS_HEADER: &str = "step,loss,batch_accuracy,test_accuracy,lr,seconds";

/// The largest metrics file read back (a resumed run's history, the curves): 256 MiB, a
/// row every 100 steps for far more steps than any run takes.
pub const METRICS_MAX_BYTES: u64 = 256 << 20;

/// What the progress display gets after every step.
pub struct Tick {
    /// Steps done.
    pub done: usize,
    /// Steps of the whole run.
    pub steps: usize,
    /// Mean loss per sample of the step just taken.
    pub loss: f32,
    /// The latest every-`log_every` batch accuracy.
    pub batch_accuracy: Option<f64>,
}

/// The metrics file: rows of earlier sessions of a resumed run are kept (those before the
/// step it resumes at), every row is flushed as it is written.
struct Metrics {
    out: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    /// A write failed (a full disk, say): the run goes on without metrics.
    broken: bool,
}

impl Metrics {
    fn open(path: &Path, from: Option<&Path>, resume_at: Option<usize>) -> Result<Self> {
        let mut kept = String::new();
        let old =
            crate::bytes::read_at_most(from.unwrap_or(path), METRICS_MAX_BYTES, "metrics file")
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
        if let (Some(at), Some(old)) = (resume_at, old) {
            let columns = METRICS_HEADER.split(',').count();
            for line in old.lines().skip(1) {
                // A row cut short by a crash has fewer columns: dropped (written again).
                let whole = old.ends_with('\n') && line.split(',').count() == columns;
                let step = line.split(',').next().and_then(|s| s.parse::<usize>().ok());
                if whole && step.is_some_and(|s| s < at) {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut m = Metrics {
            out: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
            broken: false,
        };
        m.write(&format!("{METRICS_HEADER}\n{kept}"))?;
        Ok(m)
    }

    /// Writes `text`; the first failure is returned, later writes do nothing.
    fn write(&mut self, text: &str) -> Result<()> {
        if self.broken {
            return Ok(());
        }
        let r = self
            .out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
            .with_context(|| format!("cannot write {}", self.path.display()));
        self.broken = r.is_err();
        r
    }

    fn row(
        &mut self,
        step: usize,
        loss: Option<f64>,
        batch_acc: Option<f64>,
        test_acc: Option<f64>,
        lr: f32,
        seconds: f64,
    ) -> Result<()> {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
        self.write(&format!(
            "{step},{},{},{},{lr:e},{seconds:.3}\n",
            opt(loss),
            opt(batch_acc),
            opt(test_acc)
        ))
    }
}

/// Copies image `src` (rows x cols) into `dst` shifted by `(dy, dx)`, zero-filling.
fn shifted(src: &[u8], dst: &mut [f32], rows: usize, cols: usize, dy: isize, dx: isize) {
    for r in 0..rows {
        let sr = r as isize - dy;
        for c in 0..cols {
            let sc = c as isize - dx;
            dst[r * cols + c] =
                if (0..rows as isize).contains(&sr) && (0..cols as isize).contains(&sc) {
                    src[sr as usize * cols + sc as usize] as f32 / 255.0
                } else {
                    0.0
                };
        }
    }
}

/// Trains per `cfg` on `train`, evaluates on `test`, and reports progress lines to `log`.
pub fn train(
    cfg: &TrainConfig,
    train: &Dataset,
    test: &Dataset,
    log: &mut dyn FnMut(&str),
) -> Result<TrainOutcome> {
    train_with(cfg, RunOptions::default(), train, test, log, &mut |_| {})
}

/// The checkpoint's header for `cfg` at `step`.
fn header(
    cfg: &TrainConfig,
    step: usize,
    rng: &Rng,
    pos: usize,
    t: u32,
    seconds: f64,
    window: (f64, usize),
) -> Header {
    Header {
        config: cfg.clone(),
        step,
        rng: rng.state(),
        pos,
        adam_t: t,
        seconds,
        window,
        out: None,
    }
}

/// [`train`] with checkpoints, metrics, resuming and a progress callback (`tick`, after
/// every step). A resumed run gives bit-identical parameters to an uninterrupted one
/// with the same configuration (thread count included).
pub fn train_with(
    cfg: &TrainConfig,
    opts: RunOptions,
    train: &Dataset,
    test: &Dataset,
    log: &mut dyn FnMut(&str),
    tick: &mut dyn FnMut(&Tick),
) -> Result<TrainOutcome> {
    let arch = cfg.arch.arch();
    if arch.input.len() != train.pixels() || arch.input.len() != test.pixels() {
        bail!(
            "architecture `{}` takes {}x{} images, the data has {}x{}",
            cfg.arch.name(),
            arch.input.h,
            arch.input.w,
            train.rows,
            train.cols
        );
    }
    if cfg.holdout >= train.len() {
        bail!(
            "holdout of {} leaves no training images out of {}",
            cfg.holdout,
            train.len()
        );
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        bail!("learning rate must be a positive number, got {}", cfg.lr);
    }
    let mut params = vec![0.0; arch.param_count()];
    let init = match cfg.init {
        InitName::He => Init::He,
        InitName::Glorot => Init::Glorot,
        InitName::Seed => Init::Seed,
    };
    init_params(&arch, init, cfg.seed, &mut params)?;
    let (loss, reduction) = cfg.loss.loss();
    let mut trainer = Trainer::new(
        arch,
        params,
        Optimizer::Adam(Adam::new(cfg.lr)),
        loss,
        reduction,
        cfg.batch,
        cfg.threads,
    )?;

    let mut rng = Rng::new(mix64(cfg.seed ^ 0x5348_5546));
    let mut order: Vec<usize> = (cfg.holdout..train.len()).collect();
    let mut pos = order.len();
    let mut first = 0;
    let mut seconds_before = 0.0;
    // Sum of per-sample losses since the last metrics row, and how many steps.
    let mut window = (0.0f64, 0usize);
    if let Some(c) = &opts.resume {
        let h = &c.header;
        let expected = header(cfg, h.step, &rng, h.pos, h.adam_t, h.seconds, h.window);
        // The paths may differ: a run can be moved with `--out`.
        let same = Header {
            rng: h.rng,
            out: h.out.clone(),
            config: TrainConfig {
                log_every: h.config.log_every,
                ..expected.config
            },
            ..expected
        };
        if &same != h {
            bail!("the checkpoint is of another run (its configuration differs from this one's)");
        }
        if c.params.len() != trainer.params.len()
            || c.state.len() != trainer.state.len()
            || c.order.len() != order.len()
            || h.pos > order.len()
            || h.step > cfg.steps
            || c.order
                .iter()
                .any(|&i| !(cfg.holdout..train.len()).contains(&(i as usize)))
        {
            bail!("the checkpoint's arrays do not fit this run (other data or architecture)");
        }
        trainer.params.copy_from_slice(&c.params);
        trainer.state.copy_from_slice(&c.state);
        if let Optimizer::Adam(a) = &mut trainer.opt {
            a.t = h.adam_t;
        }
        order = c.order.iter().map(|&i| i as usize).collect();
        rng = Rng::new(h.rng);
        pos = h.pos;
        first = h.step;
        seconds_before = h.seconds;
        window = h.window;
    }
    let mut metrics = match &opts.metrics {
        Some(p) => Some(Metrics::open(
            p,
            opts.metrics_from.as_deref(),
            opts.resume.as_ref().map(|_| first),
        )?),
        None => None,
    };
    let px = train.pixels();
    let mut x = vec![0.0f32; cfg.batch * px];
    let mut y = vec![0u8; cfg.batch];
    let mut history = Vec::new();
    let start = Instant::now();
    let seconds = |start: &Instant| seconds_before + start.elapsed().as_secs_f64();
    let per_sample = if reduction == Reduction::Sum {
        1.0 / cfg.batch as f64
    } else {
        1.0
    };
    let mut last_acc = None;
    let lr_at = |step: usize| match cfg.schedule {
        Schedule::Cosine => {
            cfg.lr * 0.5 * (1.0 + (std::f32::consts::PI * step as f32 / cfg.steps as f32).cos())
        }
        Schedule::Constant => cfg.lr,
    };
    let save = |path: &Path,
                step: usize,
                trainer: &Trainer,
                rng: &Rng,
                pos: usize,
                order: &[usize],
                secs: f64,
                window: (f64, usize)| {
        let t = match &trainer.opt {
            Optimizer::Adam(a) => a.t,
            Optimizer::Sgd(_) => 0,
        };
        let c = Checkpoint {
            header: Header {
                out: opts.params_path.clone(),
                ..header(cfg, step, rng, pos, t, secs, window)
            },
            params: trainer.params.clone(),
            state: trainer.state.clone(),
            order: order.iter().map(|&i| i as u32).collect(),
        };
        match opts.slow_checkpoint {
            Some(pause) => c.save_slowly(path, pause),
            None => c.save(path),
        }
    };
    // The test set stays bytes; the trainer's own buffers compute its logits.
    let evaluate = |t: &mut Trainer| -> Result<f64> {
        let logits = t.predict(Images::U8(&test.images), test.len())?;
        Ok(accuracy(&logits, &test.labels))
    };
    for step in first..cfg.steps {
        if let Some(path) = &opts.checkpoint {
            let due = opts.checkpoint_every > 0 && step % opts.checkpoint_every == 0;
            if step > first && (due || opts.stop_after == Some(step)) {
                let saved = save(
                    path,
                    step,
                    &trainer,
                    &rng,
                    pos,
                    &order,
                    seconds(&start),
                    window,
                );
                match saved {
                    // Stopping on purpose without a checkpoint would lose the run.
                    Err(e) if opts.stop_after == Some(step) => return Err(e),
                    // A full disk or a directory gone read-only need not end the run:
                    // its parameters are saved (or rescued) at the end.
                    Err(e) => log(&format!(
                        "warning: {e:#}; training goes on (the last good checkpoint is kept)"
                    )),
                    Ok(()) => {}
                }
            }
        }
        if opts.stop_after == Some(step) {
            return Ok(TrainOutcome {
                test_accuracy: evaluate(&mut trainer)?,
                params: trainer.params,
                seconds: seconds(&start),
                history,
                stopped_at: Some(step),
            });
        }
        for b in 0..cfg.batch {
            if pos == order.len() {
                rng.shuffle(&mut order);
                pos = 0;
            }
            let i = order[pos];
            pos += 1;
            y[b] = train.labels[i];
            let dst = &mut x[b * px..(b + 1) * px];
            if cfg.augment {
                let (dy, dx) = (rng.below(5) as isize - 2, rng.below(5) as isize - 2);
                shifted(train.image(i), dst, train.rows, train.cols, dy, dx);
            } else {
                crate::data::scale(train.image(i), dst);
            }
        }
        let lr = lr_at(step);
        if cfg.log_every > 0 && step % cfg.log_every == 0 {
            // As the seed: accuracy on the current batch, dropout off, before the step.
            let logits = trainer.predict(Images::F32(&x), cfg.batch)?;
            let acc = accuracy(&logits, &y);
            history.push((step, acc));
            last_acc = Some(acc);
            log(&format!("step {step}, training accuracy {acc:.4}"));
            if let Some(m) = &mut metrics {
                let test_acc = if opts.eval_every > 0 && step > 0 && step % opts.eval_every == 0 {
                    Some(evaluate(&mut trainer)?)
                } else {
                    None
                };
                let mean = (window.1 > 0).then(|| window.0 / window.1 as f64);
                if let Err(e) = m.row(step, mean, Some(acc), test_acc, lr, seconds(&start)) {
                    log(&format!("warning: {e:#}; training goes on without metrics"));
                }
                window = (0.0, 0);
            }
        }
        if let Optimizer::Adam(a) = &mut trainer.opt {
            a.lr = lr;
        }
        if let Some((at, i)) = opts.inject_nan {
            if at == step {
                match trainer.params.get_mut(i) {
                    Some(p) => *p = f32::NAN,
                    None => bail!("--inject-nan: no parameter {i}"),
                }
            }
        }
        let l = trainer
            .step(&x, &y, mix64(cfg.seed.wrapping_add(step as u64)))
            .with_context(|| {
                let kept = match &opts.checkpoint {
                    Some(p) if p.exists() => format!(" (last good checkpoint: {})", p.display()),
                    _ => String::new(),
                };
                format!("training stopped at step {step}{kept}")
            })?;
        let mean = l.value as f64 * per_sample;
        window = (window.0 + mean, window.1 + 1);
        tick(&Tick {
            done: step + 1,
            steps: cfg.steps,
            loss: mean as f32,
            batch_accuracy: last_acc,
        });
    }
    let secs = seconds(&start);
    if let Some(path) = &opts.checkpoint {
        if let Err(e) = save(path, cfg.steps, &trainer, &rng, pos, &order, secs, window) {
            log(&format!(
                "warning: {e:#}; the final checkpoint is not saved"
            ));
        }
    }
    let test_accuracy = evaluate(&mut trainer)?;
    if let Some(m) = &mut metrics {
        let mean = (window.1 > 0).then(|| window.0 / window.1 as f64);
        let last = m.row(
            cfg.steps,
            mean,
            None,
            Some(test_accuracy),
            lr_at(cfg.steps),
            secs,
        );
        if let Err(e) = last {
            log(&format!(
                "warning: {e:#}; the last metrics row is not saved"
            ));
        }
    }
    Ok(TrainOutcome {
        params: trainer.params,
        test_accuracy,
        seconds: secs,
        history,
        stopped_at: None,
    })
}
