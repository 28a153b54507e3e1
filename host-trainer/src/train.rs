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
    /// Accuracy on the validation images at the end, if [`RunOptions::validation`].
    pub validation_accuracy: Option<f64>,
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
    /// Accuracy every this many steps, in the metrics (0: only at the end): on the
    /// validation images if there are, else on the test set.
    pub eval_every: usize,
    /// Hold this many training images out for validation: drawn at random (seeded by the
    /// run's seed) from the images trained on, never trained on, evaluated every
    /// `eval_every` steps and at the end; the test set is then evaluated at the end only.
    /// 0 (the default) keeps a run as it was before validation existed.
    pub validation: usize,
    /// Fault injection for tests: before step `.0`, parameter `.1` becomes NaN.
    pub inject_nan: Option<(usize, usize)>,
    /// For the crash-safety test: pause this long in the middle of each checkpoint write.
    pub slow_checkpoint: Option<std::time::Duration>,
}

/// The columns of the metrics file. One row every `log_every` steps and one at the end:
/// `loss` is the mean training loss per sample over the steps since the previous row,
/// `batch_accuracy` the seed's accuracy on the batch about to be trained (dropout off),
/// `test_accuracy` on the whole test set where evaluated (every `eval_every` steps
/// without a validation split, else at the end only), `validation_accuracy` on the
/// validation images where evaluated (empty without them), `seconds` of training so far.
pub const METRICS_HEADER: &str =
    "step,loss,batch_accuracy,test_accuracy,validation_accuracy,lr,seconds";

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
                // Rows of earlier builds have no validation column: given an empty one.
                let mut f: Vec<&str> = line.split(',').collect();
                if f.len() == columns - 1 {
                    f.insert(4, "");
                }
                let whole = old.ends_with('\n') && f.len() == columns;
                let step = f.first().and_then(|s| s.parse::<usize>().ok());
                if whole && step.is_some_and(|s| s < at) {
                    kept.push_str(&f.join(","));
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

    /// One row; `acc` is `(test, validation)` accuracy where evaluated.
    fn row(
        &mut self,
        step: usize,
        loss: Option<f64>,
        batch_acc: Option<f64>,
        acc: (Option<f64>, Option<f64>),
        lr: f32,
        seconds: f64,
    ) -> Result<()> {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
        self.write(&format!(
            "{step},{},{},{},{},{lr:e},{seconds:.3}\n",
            opt(loss),
            opt(batch_acc),
            opt(acc.0),
            opt(acc.1)
        ))
    }
}

/// Copies image `src` (`shape`: rows x cols x channels, channels fastest) into `dst`
/// shifted by `(dy, dx)` pixels, zero-filling.
fn shifted(src: &[u8], dst: &mut [f32], shape: microconv::Shape, dy: isize, dx: isize) {
    let (rows, cols, ch) = (shape.h, shape.w, shape.c);
    for r in 0..rows {
        let sr = r as isize - dy;
        for c in 0..cols {
            let sc = c as isize - dx;
            let inside = (0..rows as isize).contains(&sr) && (0..cols as isize).contains(&sc);
            for k in 0..ch {
                dst[(r * cols + c) * ch + k] = if inside {
                    src[(sr as usize * cols + sc as usize) * ch + k] as f32 / 255.0
                } else {
                    0.0
                };
            }
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
        validation: 0,
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
    let mut run = Run::new(cfg, opts, train, test)?;
    for step in run.first..cfg.steps {
        run.checkpoint(step, log)?;
        if run.opts.stop_after == Some(step) {
            return run.stopped(step);
        }
        run.sampler.fill(cfg, train, &mut run.x, &mut run.y);
        let lr = run.lr_at(step);
        if cfg.log_every > 0 && step % cfg.log_every == 0 {
            run.log_row(step, lr, log)?;
        }
        run.step(step, lr, tick)?;
    }
    run.finish(log)
}

/// The configuration's checks against the data; the architecture.
fn check(cfg: &TrainConfig, train: &Dataset, test: &Dataset) -> Result<microconv::Arch<'static>> {
    let arch = cfg.arch.arch();
    check_data(&arch, cfg.arch.name(), train)?;
    check_data(&arch, cfg.arch.name(), test)?;
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
    Ok(arch)
}

/// The checks of a network (`name`) against a data set: the image shape must be the
/// network's input (an image file of `rows x cols` pixels is one of `rows x cols x 1`),
/// an image folder's class count the network's, and every label one of its classes.
pub fn check_data(arch: &microconv::Arch<'_>, name: &str, data: &Dataset) -> Result<()> {
    let (i, d) = (arch.input, data.shape());
    if i != d {
        bail!(
            "architecture `{name}` takes {}x{}x{} images, the data has {}x{}x{} (labels {})",
            i.h,
            i.w,
            i.c,
            d.h,
            d.w,
            d.c,
            data.labels_file
        );
    }
    let k = arch.classes();
    if !data.class_names.is_empty() && data.class_names.len() != k {
        bail!(
            "{}: {} classes ({}) but architecture `{name}` has {k}",
            data.labels_file,
            data.class_names.len(),
            data.class_names.join(", ")
        );
    }
    data.check_labels(k)
}

/// The sample order: shuffled epochs over the training images `holdout..`, and the
/// random shifts of augmentation, from one RNG.
struct Sampler {
    rng: Rng,
    /// The current epoch's order.
    order: Vec<usize>,
    /// Position in `order` of the next sample (`order.len()`: shuffle first).
    pos: usize,
}

impl Sampler {
    /// Fills `x` and `y` with the next batch, shifted by up to 2 pixels when
    /// `cfg.augment`.
    fn fill(&mut self, cfg: &TrainConfig, train: &Dataset, x: &mut [f32], y: &mut [u8]) {
        let px = train.pixels();
        for b in 0..cfg.batch {
            if self.pos == self.order.len() {
                self.rng.shuffle(&mut self.order);
                self.pos = 0;
            }
            let i = self.order[self.pos];
            self.pos += 1;
            y[b] = train.labels[i];
            let dst = &mut x[b * px..(b + 1) * px];
            if cfg.augment {
                let (dy, dx) = (
                    self.rng.below(5) as isize - 2,
                    self.rng.below(5) as isize - 2,
                );
                shifted(train.image(i), dst, train.shape(), dy, dx);
            } else {
                crate::data::scale(train.image(i), dst);
            }
        }
    }
}

/// A run in progress: the trainer, the sampler and what the metrics and checkpoints need.
struct Run<'a> {
    cfg: &'a TrainConfig,
    opts: RunOptions,
    test: &'a Dataset,
    /// The validation images ([`RunOptions::validation`]), if any.
    validation: Option<Dataset>,
    trainer: Trainer,
    sampler: Sampler,
    /// The first step of this session (a resumed run's checkpoint step, else 0).
    first: usize,
    /// Training seconds of earlier sessions of a resumed run.
    seconds_before: f64,
    start: Instant,
    /// Sum of per-sample losses since the last metrics row, and how many steps.
    window: (f64, usize),
    metrics: Option<Metrics>,
    history: Vec<(usize, f64)>,
    /// The latest every-`log_every` batch accuracy.
    last_acc: Option<f64>,
    /// Turns a step's loss into the mean per sample (1/batch for a summed loss).
    per_sample: f64,
    /// The batch: images and labels.
    x: Vec<f32>,
    y: Vec<u8>,
}

impl<'a> Run<'a> {
    /// A new run per `cfg`, or the one `opts.resume` continues (checked to be the same
    /// run); opens the metrics file.
    fn new(
        cfg: &'a TrainConfig,
        opts: RunOptions,
        train: &Dataset,
        test: &'a Dataset,
    ) -> Result<Self> {
        let arch = check(cfg, train, test)?;
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
        let (order, validation) = split_validation(cfg, opts.validation, train)?;
        let mut sampler = Sampler {
            rng: Rng::new(mix64(cfg.seed ^ 0x5348_5546)),
            pos: order.len(),
            order,
        };
        let (mut first, mut seconds_before, mut window) = (0, 0.0, (0.0f64, 0usize));
        if let Some(c) = &opts.resume {
            resume(c, cfg, opts.validation, &mut trainer, &mut sampler)?;
            (first, seconds_before, window) = (c.header.step, c.header.seconds, c.header.window);
        }
        let metrics = match &opts.metrics {
            Some(p) => Some(Metrics::open(
                p,
                opts.metrics_from.as_deref(),
                opts.resume.as_ref().map(|_| first),
            )?),
            None => None,
        };
        let px = train.pixels();
        Ok(Run {
            cfg,
            opts,
            test,
            validation,
            trainer,
            sampler,
            first,
            seconds_before,
            window,
            metrics,
            history: Vec::new(),
            last_acc: None,
            per_sample: if reduction == Reduction::Sum {
                1.0 / cfg.batch as f64
            } else {
                1.0
            },
            x: vec![0.0f32; cfg.batch * px],
            y: vec![0u8; cfg.batch],
            start: Instant::now(),
        })
    }

    /// Training seconds so far, over all sessions.
    fn seconds(&self) -> f64 {
        self.seconds_before + self.start.elapsed().as_secs_f64()
    }

    /// The learning rate of `step`.
    fn lr_at(&self, step: usize) -> f32 {
        let cfg = self.cfg;
        match cfg.schedule {
            Schedule::Cosine => {
                cfg.lr * 0.5 * (1.0 + (std::f32::consts::PI * step as f32 / cfg.steps as f32).cos())
            }
            Schedule::Constant => cfg.lr,
        }
    }

    /// Saves the checkpoint of the state before `step` to `path`.
    fn save(&self, path: &Path, step: usize, secs: f64) -> Result<()> {
        let t = match &self.trainer.opt {
            Optimizer::Adam(a) => a.t,
            Optimizer::Sgd(_) => 0,
        };
        let s = &self.sampler;
        let c = Checkpoint {
            header: Header {
                out: self.opts.params_path.clone(),
                validation: self.opts.validation,
                ..header(self.cfg, step, &s.rng, s.pos, t, secs, self.window)
            },
            params: self.trainer.params.clone(),
            state: self.trainer.state.clone(),
            order: s.order.iter().map(|&i| i as u32).collect(),
        };
        match self.opts.slow_checkpoint {
            Some(pause) => c.save_slowly(path, pause),
            None => c.save(path),
        }
    }

    /// The checkpoint due before `step` (every `checkpoint_every` steps, and where
    /// `stop_after` stops): a failure is a warning, unless the run stops there.
    fn checkpoint(&self, step: usize, log: &mut dyn FnMut(&str)) -> Result<()> {
        let Some(path) = &self.opts.checkpoint else {
            return Ok(());
        };
        let every = self.opts.checkpoint_every;
        let due = every > 0 && step.is_multiple_of(every);
        let stop = self.opts.stop_after == Some(step);
        if step > self.first && (due || stop) {
            match self.save(path, step, self.seconds()) {
                // Stopping on purpose without a checkpoint would lose the run.
                Err(e) if stop => return Err(e),
                // A full disk or a directory gone read-only need not end the run:
                // its parameters are saved (or rescued) at the end.
                Err(e) => log(&format!(
                    "warning: {e:#}; training goes on (the last good checkpoint is kept)"
                )),
                Ok(()) => {}
            }
        }
        Ok(())
    }

    /// Accuracy on the whole test set. The test set stays bytes; the trainer's own
    /// buffers compute its logits.
    fn evaluate(&mut self) -> Result<f64> {
        evaluate_on(&mut self.trainer, self.test)
    }

    /// Accuracy on the validation images, if there are.
    fn validate(&mut self) -> Result<Option<f64>> {
        match &self.validation {
            Some(v) => evaluate_on(&mut self.trainer, v).map(Some),
            None => Ok(None),
        }
    }

    /// The outcome of a run stopped before `step` by `stop_after`.
    fn stopped(mut self, step: usize) -> Result<TrainOutcome> {
        Ok(TrainOutcome {
            validation_accuracy: self.validate()?,
            test_accuracy: self.evaluate()?,
            seconds: self.seconds(),
            params: self.trainer.params,
            history: self.history,
            stopped_at: Some(step),
        })
    }

    /// The every-`log_every` line and metrics row, before `step`: as the seed, accuracy
    /// on the current batch with dropout off.
    fn log_row(&mut self, step: usize, lr: f32, log: &mut dyn FnMut(&str)) -> Result<()> {
        let logits = self.trainer.predict(Images::F32(&self.x), self.cfg.batch)?;
        let acc = accuracy(&logits, &self.y);
        self.history.push((step, acc));
        self.last_acc = Some(acc);
        log(&format!("step {step}, training accuracy {acc:.4}"));
        if self.metrics.is_none() {
            return Ok(());
        }
        let every = self.opts.eval_every;
        // Without validation images the test set is the periodic one, as it always was.
        let held = if every > 0 && step > 0 && step.is_multiple_of(every) {
            match self.validate()? {
                Some(v) => (None, Some(v)),
                None => (Some(self.evaluate()?), None),
            }
        } else {
            (None, None)
        };
        let mean = (self.window.1 > 0).then(|| self.window.0 / self.window.1 as f64);
        let secs = self.seconds();
        if let Some(m) = &mut self.metrics {
            if let Err(e) = m.row(step, mean, Some(acc), held, lr, secs) {
                log(&format!("warning: {e:#}; training goes on without metrics"));
            }
        }
        self.window = (0.0, 0);
        Ok(())
    }

    /// One optimizer step at learning rate `lr` on the batch in `x`/`y`.
    fn step(&mut self, step: usize, lr: f32, tick: &mut dyn FnMut(&Tick)) -> Result<()> {
        if let Optimizer::Adam(a) = &mut self.trainer.opt {
            a.lr = lr;
        }
        if let Some((at, i)) = self.opts.inject_nan {
            if at == step {
                match self.trainer.params.get_mut(i) {
                    Some(p) => *p = f32::NAN,
                    None => bail!("--inject-nan: no parameter {i}"),
                }
            }
        }
        let checkpoint = &self.opts.checkpoint;
        let l = self
            .trainer
            .step(
                &self.x,
                &self.y,
                mix64(self.cfg.seed.wrapping_add(step as u64)),
            )
            .with_context(|| {
                let kept = match checkpoint {
                    Some(p) if p.exists() => format!(" (last good checkpoint: {})", p.display()),
                    _ => String::new(),
                };
                format!("training stopped at step {step}{kept}")
            })?;
        let mean = l.value as f64 * self.per_sample;
        self.window = (self.window.0 + mean, self.window.1 + 1);
        tick(&Tick {
            done: step + 1,
            steps: self.cfg.steps,
            loss: mean as f32,
            batch_accuracy: self.last_acc,
        });
        Ok(())
    }

    /// The final checkpoint, test accuracy and metrics row.
    fn finish(mut self, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
        let secs = self.seconds();
        if let Some(path) = &self.opts.checkpoint {
            if let Err(e) = self.save(path, self.cfg.steps, secs) {
                log(&format!(
                    "warning: {e:#}; the final checkpoint is not saved"
                ));
            }
        }
        let test_accuracy = self.evaluate()?;
        let validation_accuracy = self.validate()?;
        let lr = self.lr_at(self.cfg.steps);
        let mean = (self.window.1 > 0).then(|| self.window.0 / self.window.1 as f64);
        if let Some(m) = &mut self.metrics {
            let held = (Some(test_accuracy), validation_accuracy);
            let last = m.row(self.cfg.steps, mean, None, held, lr, secs);
            if let Err(e) = last {
                log(&format!(
                    "warning: {e:#}; the last metrics row is not saved"
                ));
            }
        }
        Ok(TrainOutcome {
            params: self.trainer.params,
            test_accuracy,
            validation_accuracy,
            seconds: secs,
            history: self.history,
            stopped_at: None,
        })
    }
}

/// Accuracy of the trainer's network on `data` (kept as bytes; the trainer's own
/// buffers compute the logits).
fn evaluate_on(trainer: &mut Trainer, data: &Dataset) -> Result<f64> {
    let logits = trainer.predict(Images::U8(&data.images), data.len())?;
    Ok(accuracy(&logits, &data.labels))
}

/// The indices of the training images `cfg.holdout..` trained on, in ascending order,
/// and the `validation` of them held out instead (drawn with the run's seed; none if
/// 0, when every image is trained on as before validation existed).
fn split_validation(
    cfg: &TrainConfig,
    validation: usize,
    train: &Dataset,
) -> Result<(Vec<usize>, Option<Dataset>)> {
    let mut order: Vec<usize> = (cfg.holdout..train.len()).collect();
    if validation == 0 {
        return Ok((order, None));
    }
    if validation >= order.len() {
        bail!(
            "--validation {validation} leaves no training images out of {}",
            order.len()
        );
    }
    Rng::new(mix64(cfg.seed ^ 0x5641_4C49_4441_5445)).shuffle(&mut order);
    let mut held = order.split_off(order.len() - validation);
    held.sort_unstable();
    order.sort_unstable();
    Ok((order, Some(train.subset(&held))))
}

/// Continues checkpoint `c`: checks that it is of this run and fits it, then restores
/// the parameters, the optimizer state and the sampler.
fn resume(
    c: &Checkpoint,
    cfg: &TrainConfig,
    validation: usize,
    trainer: &mut Trainer,
    sampler: &mut Sampler,
) -> Result<()> {
    let h = &c.header;
    let expected = header(
        cfg,
        h.step,
        &sampler.rng,
        h.pos,
        h.adam_t,
        h.seconds,
        h.window,
    );
    // The paths may differ: a run can be moved with `--out`.
    let same = Header {
        rng: h.rng,
        out: h.out.clone(),
        validation,
        config: TrainConfig {
            log_every: h.config.log_every,
            ..expected.config
        },
        ..expected
    };
    if &same != h {
        bail!("the checkpoint is of another run (its configuration differs from this one's)");
    }
    // The epoch order is a permutation of the images trained on (this run's order).
    let mut mine = sampler.order.clone();
    let mut theirs: Vec<usize> = c.order.iter().map(|&i| i as usize).collect();
    mine.sort_unstable();
    theirs.sort_unstable();
    if c.params.len() != trainer.params.len()
        || c.state.len() != trainer.state.len()
        || h.pos > sampler.order.len()
        || h.step > cfg.steps
        || mine != theirs
    {
        bail!("the checkpoint's arrays do not fit this run (other data or architecture)");
    }
    trainer.params.copy_from_slice(&c.params);
    trainer.state.copy_from_slice(&c.state);
    if let Optimizer::Adam(a) = &mut trainer.opt {
        a.t = h.adam_t;
    }
    sampler.order = c.order.iter().map(|&i| i as usize).collect();
    sampler.rng = Rng::new(h.rng);
    sampler.pos = h.pos;
    Ok(())
}
